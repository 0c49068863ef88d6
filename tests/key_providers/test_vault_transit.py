"""Vault Transit provider specifics, through the real hvac client against the Transit test server."""

from __future__ import annotations

import pytest

from tests.key_providers.conftest import transit_provider
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


def test_ciphertexts_are_vault_strings(transit: TransitTestServer) -> None:
    p = transit_provider(transit.url, transit.token, "derived")
    w = p.wrap(SubjectKey.generate(), CTX)
    assert w.ciphertext.startswith(b"vault:v1:") and w.root_version == "1"
    p.rotate()
    assert p.wrap(SubjectKey.generate(), CTX).ciphertext.startswith(b"vault:v2:")
    with pytest.raises(IntegrityError):  # version label and ciphertext must agree
        p.unwrap(WrappedKey("2", w.ciphertext), CTX, SubjectKey)


def test_sealed_vault_is_retried_then_unavailable_and_recovers(transit: TransitTestServer) -> None:
    p = transit_provider(transit.url, transit.token, "derived")
    w = p.wrap(SubjectKey.generate(), CTX)
    transit.state.sealed = True
    with pytest.raises(Unavailable):
        p.unwrap(w, CTX, SubjectKey)
    assert p.stats.failing_since is not None and p.stats.failures == 1
    transit.state.sealed = False
    p.unwrap(w, CTX, SubjectKey)
    assert p.stats.failing_since is None


def test_retry_count_is_bounded(transit: TransitTestServer) -> None:
    sleeps: list[float] = []
    p = VaultTransitKeyProvider(
        TransitSettings(url=transit.url, token=transit.token, max_attempts=4, backoff_seconds=0.01),
        sleep=sleeps.append,
    )
    p.initialize()
    transit.state.sealed = True
    with pytest.raises(Unavailable):
        p.wrap(SubjectKey.generate(), CTX)
    assert len(sleeps) == 3
    assert sleeps[0] < sleeps[-1]  # exponential backoff (with jitter of +-50%)


def test_server_down_is_unavailable(transit: TransitTestServer) -> None:
    p = transit_provider(transit.url, transit.token, "derived")
    transit.stop()
    with pytest.raises(Unavailable):
        p.wrap(SubjectKey.generate(), CTX)


def test_forbidden_is_access_denied(transit: TransitTestServer) -> None:
    p = VaultTransitKeyProvider(TransitSettings(url=transit.url, token="wrong"))
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


def test_destroy_trims_and_raises_min_decryption_version(transit: TransitTestServer) -> None:
    p = transit_provider(transit.url, transit.token, "derived")
    w1 = p.wrap(SubjectKey.generate(), CTX)
    p.rotate()
    p.rotate()
    p.destroy_version("1")
    key = transit.state.keys["vault-service"]
    assert key.min_decryption_version == 2 and 1 not in key.versions
    assert key.min_encryption_version == 3
    with pytest.raises(FailedPrecondition, match="destroyed"):
        p.unwrap(w1, CTX, SubjectKey)


def test_binding_mismatch_is_refused(transit: TransitTestServer) -> None:
    transit_provider(transit.url, transit.token, "derived", key="k")
    with pytest.raises(FailedPrecondition, match="derived"):
        transit_provider(transit.url, transit.token, "associated_data", key="k")


def test_settings_from_env() -> None:
    env = {"VAULT_ADDR": "http://v:8200", "VAULT_TOKEN": "s3cr3t-token"}
    s = settings_from_env("", "VAULT_TOKEN", env)
    assert s.url == "http://v:8200" and s.token == "s3cr3t-token"
    assert "s3cr3t" not in repr(s) and "s3cr3t" not in repr(VaultTransitKeyProvider(s))
    with pytest.raises(FailedPrecondition, match="VAULT_ADDR"):
        settings_from_env("", "VAULT_TOKEN", {})
