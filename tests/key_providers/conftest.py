"""Key providers under test: every implementation, each against its real counterpart.

- local: a keyring file in a temp directory;
- aws-kms: moto's server mode (a subprocess), reset per test;
- openbao: a real Vault-API server (OpenBao in dev mode, started by the tests), both bindings; with
  VAULT_TEST_ADDR and VAULT_TEST_TOKEN set, that server instead (a Vault or OpenBao with a Transit
  engine mounted at ``transit``; every key the tests create has a unique name).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.moto_server import CREDENTIALS, MotoServer
from tests.support.openbao import OpenBaoServer
from tests.support.transit_server import TransitTestServer
from vault_service.key_providers import LocalKeyProvider, create_keyring
from vault_service.key_providers.aws_kms import AwsKmsKeyProvider, KmsSettings
from vault_service.key_providers.base import KeyProvider
from vault_service.key_providers.vault_transit import TransitSettings, VaultTransitKeyProvider

PROVIDERS = [
    "local",
    "aws-kms",
    "openbao-derived",
    "openbao-ad",
]


@pytest.fixture(scope="session")
def moto() -> Iterator[MotoServer]:
    server = MotoServer().start()
    yield server
    server.stop()


@dataclass(frozen=True)
class VaultApi:
    """A Vault-API server the tests may create keys on: ``url``, ``token``."""

    url: str
    token: str


@pytest.fixture(scope="session")
def openbao() -> Iterator[VaultApi]:
    """The real Vault-API server of the session: VAULT_TEST_ADDR/VAULT_TEST_TOKEN, else OpenBao
    started here."""
    if os.environ.get("VAULT_TEST_ADDR") and os.environ.get("VAULT_TEST_TOKEN"):
        yield VaultApi(os.environ["VAULT_TEST_ADDR"], os.environ["VAULT_TEST_TOKEN"])
        return
    server = OpenBaoServer().start()
    yield VaultApi(server.url, server.token)
    server.stop()


@pytest.fixture
def transit() -> Iterator[TransitTestServer]:
    server = TransitTestServer().start()
    yield server
    server.stop()


def kms_provider(moto: MotoServer, **kw: object) -> AwsKmsKeyProvider:
    settings = KmsSettings(
        alias=f"alias/vs-{secrets.token_hex(4)}",
        endpoint_url=moto.url,
        max_attempts=2,
        timeout_seconds=2.0,
        **kw,
    )  # type: ignore[arg-type]
    provider = AwsKmsKeyProvider(settings, CREDENTIALS)
    provider.initialize()
    return provider


def transit_provider(
    url: str, token: str, binding: str, key: str = "vault-service"
) -> VaultTransitKeyProvider:
    provider = VaultTransitKeyProvider(
        TransitSettings(
            url=url, token=token, key=key, binding=binding, max_attempts=3, backoff_seconds=0.01
        )
    )
    provider.initialize()
    return provider


@pytest.fixture(params=PROVIDERS)
def provider(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[KeyProvider]:
    kind = request.param
    if kind == "local":
        create_keyring(tmp_path / "ring.json", None, 1000.0)
        yield LocalKeyProvider(tmp_path / "ring.json")
    elif kind == "aws-kms":
        moto = request.getfixturevalue("moto")
        moto.reset()
        yield kms_provider(moto)
    else:
        api = request.getfixturevalue("openbao")
        yield transit_provider(
            api.url,
            api.token,
            "derived" if kind.endswith("derived") else "associated_data",
            key=f"vault-service-test-{secrets.token_hex(4)}",
        )
