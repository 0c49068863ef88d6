"""Vault Transit provider specifics, through the real hvac client: against a real Vault-API server
(OpenBao in dev mode) and the Transit test server alike where the server's behaviour is what is
tested (ciphertext format, sealing, a server gone, a bad token, version trimming, bindings), and on
the test server alone where the test counts the calls the provider made."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol

import pytest

from tests.key_providers.conftest import transit_provider
from tests.support.openbao import OpenBaoServer
from tests.support.transit_server import TransitTestServer
from vault_service.crypto import Context, SubjectKey
from vault_service.errors import FailedPrecondition, IntegrityError, Unavailable
from vault_service.key_providers.base import ProviderAccessDenied, WrappedKey
from vault_service.key_providers.vault_transit import (
    TransitSettings,
    VaultTransitKeyProvider,
    settings_from_env,
)

CTX = Context("subject-key", {"subject": "ab" * 16})


class Server(Protocol):
    url: str
    token: str

    def seal(self) -> None: ...
    def unseal(self) -> None: ...
    def stop(self) -> None: ...
    def key_config(self, name: str) -> dict[str, Any]: ...


@pytest.fixture(params=["openbao", "test-server"])
def server(request: pytest.FixtureRequest) -> Iterator[Server]:
    """A server of its own per test (tests seal and stop it): OpenBao, or the test server."""
    started: Server = (
        OpenBaoServer().start() if request.param == "openbao" else TransitTestServer().start()
    )
    yield started
    started.stop()


def test_ciphertexts_are_vault_strings(server: Server) -> None:
    p = transit_provider(server.url, server.token, "derived")
    w = p.wrap(SubjectKey.generate(), CTX)
    assert w.ciphertext.startswith(b"vault:v1:") and w.root_version == "1"
    p.rotate()
    assert p.wrap(SubjectKey.generate(), CTX).ciphertext.startswith(b"vault:v2:")
    with pytest.raises(IntegrityError):  # version label and ciphertext must agree
        p.unwrap(WrappedKey("2", w.ciphertext), CTX, SubjectKey)


def test_sealed_vault_is_retried_then_unavailable_and_recovers(server: Server) -> None:
    p = transit_provider(server.url, server.token, "derived")
    w = p.wrap(SubjectKey.generate(), CTX)
    server.seal()
    with pytest.raises(Unavailable):
        p.unwrap(w, CTX, SubjectKey)
    assert p.stats.failing_since is not None and p.stats.failures == 1
    server.unseal()
    p.unwrap(w, CTX, SubjectKey)
    assert p.stats.failing_since is None


def test_retry_count_is_bounded(server: Server) -> None:
    sleeps: list[float] = []
    p = VaultTransitKeyProvider(
        TransitSettings(url=server.url, token=server.token, max_attempts=4, backoff_seconds=0.01),
        sleep=sleeps.append,
    )
    p.initialize()
    server.seal()
    with pytest.raises(Unavailable):
        p.wrap(SubjectKey.generate(), CTX)
    assert len(sleeps) == 3
    assert sleeps[0] < sleeps[-1]  # exponential backoff (with jitter of +-50%)


def test_server_down_is_unavailable(server: Server) -> None:
    p = transit_provider(server.url, server.token, "derived")
    server.stop()
    with pytest.raises(Unavailable):
        p.wrap(SubjectKey.generate(), CTX)


def test_forbidden_is_access_denied(server: Server) -> None:
    p = VaultTransitKeyProvider(TransitSettings(url=server.url, token="wrong"))
    with pytest.raises(ProviderAccessDenied):
        p.initialize()


def test_derived_rewrap_runs_inside_vault_in_one_batch(transit: TransitTestServer) -> None:
    p = transit_provider(transit.url, transit.token, "derived")
    items = [
        (p.wrap(SubjectKey.generate(), CTX.with_items(n=str(i))), CTX.with_items(n=str(i)))
        for i in range(20)
    ]
    p.rotate()
    before = dict(transit.state.calls)
    fresh = p.rewrap_many(items)
    assert {w.root_version for w in fresh} == {"2"}
    assert transit.state.calls["rewrap"] - before.get("rewrap", 0) == 1
    assert transit.state.calls["decrypt"] == before.get("decrypt", 0)  # key never left Vault


def test_associated_data_rewrap_goes_through_this_process(transit: TransitTestServer) -> None:
    p = transit_provider(transit.url, transit.token, "associated_data", key="ad-key")
    w = p.wrap(SubjectKey.generate(), CTX)
    p.rotate()
    before = transit.state.calls["decrypt"]
    assert p.rewrap(w, CTX).root_version == "2"
    assert transit.state.calls["decrypt"] == before + 1


def test_destroy_trims_and_raises_min_decryption_version(server: Server) -> None:
    p = transit_provider(server.url, server.token, "derived")
    w1 = p.wrap(SubjectKey.generate(), CTX)
    p.rotate()
    p.rotate()
    p.destroy_version("1")
    key = server.key_config("vault-service")
    assert key["min_decryption_version"] == 2 and "1" not in key["keys"]
    assert key["min_encryption_version"] == 3 and key["min_available_version"] == 2
    with pytest.raises(FailedPrecondition, match="destroyed"):
        p.unwrap(w1, CTX, SubjectKey)


def test_binding_mismatch_is_refused(server: Server) -> None:
    transit_provider(server.url, server.token, "derived", key="k")
    with pytest.raises(FailedPrecondition, match="derived"):
        transit_provider(server.url, server.token, "associated_data", key="k")


def test_settings_from_env() -> None:
    env = {"VAULT_ADDR": "http://v:8200", "VAULT_TOKEN": "s3cr3t-token"}
    s = settings_from_env("", "VAULT_TOKEN", env)
    assert s.url == "http://v:8200" and s.token == "s3cr3t-token"
    assert "s3cr3t" not in repr(s) and "s3cr3t" not in repr(VaultTransitKeyProvider(s))
    with pytest.raises(FailedPrecondition, match="VAULT_ADDR"):
        settings_from_env("", "VAULT_TOKEN", {})
