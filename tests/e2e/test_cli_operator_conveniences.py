"""vaultctl conveniences for operators (issue 20, part 6), as real subprocesses: the gRPC
commands find the server from the config when --address is not given, and `principal add`
puts a caller with a fresh token into the policy file (and refuses, leaving it unchanged, what
the server would refuse)."""

from __future__ import annotations

import hashlib
import json
import socket
from pathlib import Path

import pytest

from tests.conftest import TOKENS, write_config
from tests.support.serve import start_serving, stop_serving, vaultctl
from vault_service.cli.common import connect_address
from vault_service.client import VaultClient
from vault_service.errors import PermissionDenied
from vault_service.policy import load_policy


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_grpc_commands_take_the_address_from_the_config(tmp_path: Path) -> None:
    port = _free_port()
    write_config(tmp_path, server__listen=f'"127.0.0.1:{port}"')
    proc, address = start_serving(tmp_path / "vault.toml")
    try:
        assert address.endswith(f":{port}")
        env = {"VAULT_SERVICE_TOKEN": TOKENS["app"]}
        put = ("--json", "record", "put", "--subject", "m-1", "--category", "concern_text")
        r = vaultctl(tmp_path, *put, "--field", "text=no address given", env=env)
        assert r.returncode == 0, r.stderr
        rid = json.loads(r.stdout)["record_id"]
        get = ("--json", "record", "get", "--id", rid, "--purpose", "matching")
        r = vaultctl(tmp_path, *get, env=env)
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["fields"] == {"text": "no address given"}
        # --address still wins: a wrong one is UNAVAILABLE, not the config's server
        r = vaultctl(tmp_path, *get, "--address", f"127.0.0.1:{_free_port()}", "--timeout", "2", env=env)
        assert r.returncode == 1 and "UNAVAILABLE" in r.stderr
    finally:
        stop_serving(proc)


def test_a_wildcard_listen_address_is_dialled_on_loopback() -> None:
    assert connect_address("0.0.0.0:7000") == "127.0.0.1:7000"
    assert connect_address("[::]:7000") == "[::1]:7000"
    assert connect_address("vault.internal:443") == "vault.internal:443"


def test_principal_add_writes_a_token_digest_that_the_server_accepts(tmp_path: Path) -> None:
    write_config(tmp_path)
    policy_file = tmp_path / "policy.toml"
    r = vaultctl(tmp_path, "--json", "principal", "add", "clinic.busan-02", "--role", "clinic")
    assert r.returncode == 0, r.stderr
    added = json.loads(r.stdout)
    token = added["token"]
    assert len(token) >= 43 and token not in policy_file.read_text()  # shown once, never stored
    entry = load_policy(policy_file.read_text()).principals["clinic.busan-02"]
    assert entry.principal.role == "clinic"
    assert entry.token_sha256 == hashlib.sha256(token.encode()).digest()
    proc, address = start_serving(tmp_path / "vault.toml")
    try:
        with VaultClient(address, token, timeout=10) as clinic:
            assert clinic.received_shares() == []  # its role's action
            with pytest.raises(PermissionDenied):  # not its role's
                clinic.put_record("m-1", "concern_text", {"text": "x"})
    finally:
        stop_serving(proc)


@pytest.mark.parametrize(
    ("name", "role", "says"),
    [
        ("clinic", "clinic", "exists already"),
        ("new-one", "superuser", "no role 'superuser'"),
        ("Bad Name", "clinic", "names are lower-case"),
        ('x"]\nrole = "operator"\n[principals."y', "clinic", "names are lower-case"),
    ],
)
def test_principal_add_refusals_leave_the_policy_unchanged(
    tmp_path: Path, name: str, role: str, says: str
) -> None:
    write_config(tmp_path)
    policy_file = tmp_path / "policy.toml"
    text = policy_file.read_text()
    if name == "clinic":
        assert name in load_policy(text).principals
    r = vaultctl(tmp_path, "principal", "add", name, "--role", role)
    assert r.returncode == 2 and says in r.stderr, r.stderr
    assert policy_file.read_text() == text
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_a_config_whose_port_is_chosen_at_start_up_needs_an_address(tmp_path: Path) -> None:
    write_config(tmp_path)  # listen = "127.0.0.1:0"
    env = {"VAULT_SERVICE_TOKEN": TOKENS["app"]}
    r = vaultctl(tmp_path, "record", "get", "--id", "r-1", "--purpose", "matching", env=env)
    assert r.returncode == 2 and "pass --address" in r.stderr


def test_a_remote_or_tls_listen_address_is_never_dialled_in_plaintext(tmp_path: Path) -> None:
    """The token would cross the network unencrypted: vaultctl asks for --address instead."""
    env = {"VAULT_SERVICE_TOKEN": TOKENS["app"]}
    get = ("record", "get", "--id", "r-1", "--purpose", "matching")
    write_config(tmp_path, server__listen='"192.0.2.2:50777"')
    r = vaultctl(tmp_path, *get, env=env)
    assert r.returncode == 2 and "pass --address explicitly" in r.stderr
    write_config(
        tmp_path, server__listen='"127.0.0.1:50777"', tls__cert_file='"c.pem"', tls__key_file='"k.pem"'
    )
    r = vaultctl(tmp_path, *get, env=env)
    assert r.returncode == 2 and "pass --address explicitly" in r.stderr


def test_the_development_principal_name_is_reserved(tmp_path: Path) -> None:
    write_config(tmp_path)
    text = (tmp_path / "policy.toml").read_text()
    r = vaultctl(tmp_path, "principal", "add", "developer", "--role", "operator")
    assert r.returncode == 2 and "'developer' is reserved" in r.stderr
    assert (tmp_path / "policy.toml").read_text() == text
