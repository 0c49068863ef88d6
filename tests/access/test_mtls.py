"""mTLS: a throwaway CA made with the cryptography package; the principal comes from the client
certificate's common name; tokens keep working over TLS."""

from __future__ import annotations

import datetime
import ipaddress
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.conftest import write_config
from vault_service.client import VaultClient
from vault_service.config import load_config
from vault_service.errors import PermissionDenied, Unauthenticated, Unavailable
from vault_service.rpc.server import start_server


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


class CA:
    def __init__(self, cn: str) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(_name(cn))
            .issuer_name(_name(cn))
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self.key, hashes.SHA256())
        )

    def issue(self, directory: Path, cn: str, server: bool = False) -> tuple[Path, Path]:
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(cn))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
        )
        if server:
            builder = builder.add_extension(
                x509.SubjectAlternativeName(
                    [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
                ),
                critical=False,
            )
        cert = builder.sign(self.key, hashes.SHA256())
        cert_path, key_path = directory / f"{cn}.crt", directory / f"{cn}.key"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        os.chmod(key_path, 0o600)
        return cert_path, key_path

    def write(self, path: Path) -> Path:
        path.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))
        return path


@pytest.fixture
def pki(tmp_path: Path) -> dict[str, Any]:
    certs = tmp_path / "pki"
    certs.mkdir()
    server_ca, client_ca, rogue_ca = CA("server-ca"), CA("client-ca"), CA("rogue-ca")
    return {
        "dir": certs,
        "server_ca": server_ca.write(certs / "server-ca.pem"),
        "client_ca": client_ca.write(certs / "client-ca.pem"),
        "server": server_ca.issue(certs, "vault.local", server=True),
        "clinic": client_ca.issue(certs, "clinic-seoul-01"),
        "stranger": client_ca.issue(certs, "stranger"),
        "rogue": rogue_ca.issue(certs, "clinic-seoul-01-rogue"),
    }


def _start(home: Path, pki: dict[str, Any], require: bool) -> Any:
    cert, key = pki["server"]
    write_config(home)
    cfg = (home / "vault.toml").read_text() + (
        f'[tls]\ncert_file = "{cert}"\nkey_file = "{key}"\n'
        f'client_ca_file = "{pki["client_ca"]}"\nrequire_client_cert = {str(require).lower()}\n'
    )
    (home / "vault.toml").write_text(cfg)
    policy = home / "policy.toml"
    policy.write_text(
        policy.read_text() + '\n[principals.clinic-seoul-01]\nrole = "clinic"\n'
        'cert_cn = "clinic-seoul-01"\n'
    )
    return start_server(load_config(home / "vault.toml", {}), {})


@pytest.fixture
def mtls(tmp_path: Path, pki: dict[str, Any]) -> Iterator[tuple[Any, dict[str, Any]]]:
    server = _start(tmp_path, pki, require=True)
    yield server, pki
    server.stop(0)


def _client(server: Any, pki: dict[str, Any], who: str | None, token: str = "") -> VaultClient:
    cert, key = pki[who] if who else ("", "")
    return VaultClient.with_tls(
        f"localhost:{server.port}",
        ca_file=str(pki["server_ca"]),
        cert_file=str(cert),
        key_file=str(key),
        token=token,
        timeout=5,
    )


def test_principal_from_client_certificate(mtls: tuple[Any, dict[str, Any]]) -> None:
    server, pki = mtls
    from tests.conftest import TOKENS

    with _client(server, pki, "clinic", token=TOKENS["app"]) as app:  # a token decides
        rid = app.put_record("m-1", "concern_text", {"text": "over tls"}).record_id
        app.grant_consent(
            "m-1",
            "clinic_proposal",
            {"concern_text": None},
            evidence_reference="form-9",
            grantee_principal="clinic-seoul-01",
        )
        share = app.create_share(
            "m-1",
            "clinic-seoul-01",
            "clinic_proposal",
            [rid],
            ["text"],
            expires_at=server.service.clock.now() + 3600,
        )
    with _client(server, pki, "clinic") as clinic:  # the certificate alone: principal clinic
        (record,) = list(clinic.read_share(share.share_id))
        assert record.fields["text"] == "over tls"
        with pytest.raises(PermissionDenied):
            clinic.put_record("m-1", "concern_text", {"text": "x"})
    rows = server.service.store.audit_rows()
    assert any(r.principal == "clinic-seoul-01" and r.action == "share.read" for r in rows)


def test_unknown_certificate_name_is_unauthenticated(mtls: tuple[Any, dict[str, Any]]) -> None:
    server, pki = mtls
    with _client(server, pki, "stranger") as c, pytest.raises(Unauthenticated):
        c.list_records("m-1")


def test_certificate_from_another_ca_or_none_cannot_connect(mtls: tuple[Any, dict[str, Any]]) -> None:
    server, pki = mtls
    for who in ("rogue", None):
        with _client(server, pki, who) as c, pytest.raises(Unavailable):
            c.list_records("m-1")


def test_token_only_clients_over_tls_when_client_certs_are_optional(
    tmp_path: Path, pki: dict[str, Any]
) -> None:
    from tests.conftest import TOKENS

    server = _start(tmp_path, pki, require=False)
    try:
        with _client(server, pki, None, token=TOKENS["app"]) as app:
            assert app.put_record("m-1", "concern_text", {"text": "x"}).version == 1
        with _client(server, pki, None) as anonymous, pytest.raises(Unauthenticated):
            anonymous.list_records("m-1")
    finally:
        server.stop(0)


def test_group_readable_server_key_is_refused(tmp_path: Path, pki: dict[str, Any]) -> None:
    from vault_service.errors import ConfigError

    os.chmod(pki["server"][1], 0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        _start(tmp_path, pki, require=True)


def test_policy_refuses_a_principal_without_credentials() -> None:
    from vault_service.errors import ConfigError
    from vault_service.policy import load_policy

    text = (
        'version = 1\n[categories.c]\nfields = ["f"]\n[roles.r]\nactions = []\n'
        '[principals.p]\nrole = "r"\n'
    )
    with pytest.raises(ConfigError, match="needs token_sha256 or cert_cn"):
        load_policy(text)
    dup = (
        text.replace('role = "r"\n', 'role = "r"\ncert_cn = "x"\n')
        + '[principals.q]\nrole = "r"\ncert_cn = "x"\n'
    )
    with pytest.raises(ConfigError, match="same certificate name"):
        load_policy(dup)
