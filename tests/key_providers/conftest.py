"""Key providers under test: every implementation, each against its real counterpart.

- local: a keyring file in a temp directory;
- aws-kms: moto's server mode (a subprocess), reset per test;
- vault-transit: the Transit-protocol test server, both context bindings, through the real hvac;
- vault-real: a real Vault, only when VAULT_ADDR and VAULT_TOKEN are set (a Transit engine must be
  mounted at ``transit``; the key name is unique per run).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.moto_server import CREDENTIALS, MotoServer
from tests.support.transit_server import TransitTestServer
from vault_service.key_providers import LocalKeyProvider, create_keyring
from vault_service.key_providers.aws_kms import AwsKmsKeyProvider, KmsSettings
from vault_service.key_providers.base import KeyProvider
from vault_service.key_providers.vault_transit import TransitSettings, VaultTransitKeyProvider

PROVIDERS = ["local", "aws-kms", "vault-transit-derived", "vault-transit-ad", "vault-real"]


@pytest.fixture(scope="session")
def moto() -> Iterator[MotoServer]:
    server = MotoServer().start()
    yield server
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
    elif kind.startswith("vault-transit"):
        server = request.getfixturevalue("transit")
        yield transit_provider(
            server.url, server.token, "derived" if kind.endswith("derived") else "associated_data"
        )
    else:
        if not (os.environ.get("VAULT_ADDR") and os.environ.get("VAULT_TOKEN")):
            pytest.skip("real Vault: set VAULT_ADDR and VAULT_TOKEN to run the contract on it")
        yield transit_provider(
            os.environ["VAULT_ADDR"],
            os.environ["VAULT_TOKEN"],
            "derived",
            key=f"vault-service-test-{secrets.token_hex(4)}",
        )
