"""The KeyProvider contract, run on every implementation (see conftest.py)."""

from __future__ import annotations

import pytest

from vault_service.crypto import Context, SubjectKey
from vault_service.errors import FailedPrecondition, IntegrityError
from vault_service.key_providers.base import KeyProvider, KeyState, WrappedKey

CTX = Context("subject-key", {"subject": "ab" * 16})
OTHER = Context("subject-key", {"subject": "cd" * 16})


def _flip(blob: bytes, i: int) -> bytes:
    b = bytearray(blob)
    b[i] ^= 0x01
    return bytes(b)


def test_round_trip_and_typed_result(provider: KeyProvider) -> None:
    key = SubjectKey.generate()
    wrapped = provider.wrap(key, CTX)
    assert wrapped.root_version == provider.primary_version()
    assert key.unsafe_bytes() not in wrapped.ciphertext
    got = provider.unwrap(wrapped, CTX, SubjectKey)
    assert isinstance(got, SubjectKey) and got == key


def test_context_is_bound(provider: KeyProvider) -> None:
    wrapped = provider.wrap(SubjectKey.generate(), CTX)
    for ctx in (OTHER, Context("service-key", dict(CTX.items)), CTX.with_items(extra="1")):
        with pytest.raises(IntegrityError):
            provider.unwrap(wrapped, ctx, SubjectKey)


def test_tampered_or_truncated_ciphertext_fails(provider: KeyProvider) -> None:
    wrapped = provider.wrap(SubjectKey.generate(), CTX)
    n = len(wrapped.ciphertext)
    for i in sorted({n // 2, n - 1, n - 5}):
        with pytest.raises(IntegrityError):
            provider.unwrap(
                WrappedKey(wrapped.root_version, _flip(wrapped.ciphertext, i)), CTX, SubjectKey
            )
    with pytest.raises(IntegrityError):
        provider.unwrap(WrappedKey(wrapped.root_version, wrapped.ciphertext[: n - 3]), CTX, SubjectKey)


def test_unknown_version_is_refused(provider: KeyProvider) -> None:
    wrapped = provider.wrap(SubjectKey.generate(), CTX)
    with pytest.raises((FailedPrecondition, IntegrityError)):
        provider.unwrap(WrappedKey("999", wrapped.ciphertext), CTX, SubjectKey)


def test_rotate_rewrap_and_versions(provider: KeyProvider) -> None:
    keys = [SubjectKey.generate() for _ in range(5)]
    old = [provider.wrap(k, CTX.with_items(n=str(i))) for i, k in enumerate(keys)]
    first = provider.primary_version()
    second = provider.rotate()
    assert second != first and provider.primary_version() == second
    versions = provider.versions()
    assert [v.version for v in versions][-2:] == [first, second]
    assert [v.primary for v in versions][-2:] == [False, True]
    # old ciphertexts still open until their version is destroyed
    assert provider.unwrap(old[0], CTX.with_items(n="0"), SubjectKey) == keys[0]
    fresh = provider.rewrap_many([(w, CTX.with_items(n=str(i))) for i, w in enumerate(old)])
    assert all(w.root_version == second for w in fresh)
    for i, (w, k) in enumerate(zip(fresh, keys, strict=True)):
        assert provider.unwrap(w, CTX.with_items(n=str(i)), SubjectKey) == k
    assert provider.rewrap(fresh[0], CTX.with_items(n="0")) == fresh[0]  # already primary: no-op
    with pytest.raises(IntegrityError):
        provider.rewrap(old[1], OTHER)


def test_destroy_version(provider: KeyProvider) -> None:
    key = SubjectKey.generate()
    old = provider.wrap(key, CTX)
    with pytest.raises(FailedPrecondition, match="primary"):
        provider.destroy_version(provider.primary_version())
    provider.rotate()
    kept = provider.rewrap(old, CTX)
    result = provider.destroy_version(old.root_version)
    state = {v.version: v for v in provider.versions()}[old.root_version]
    assert state.state in (KeyState.DESTROYED, KeyState.PENDING_DESTRUCTION)
    assert result.state is state.state
    if result.state is KeyState.DESTROYED:
        with pytest.raises(FailedPrecondition):
            provider.unwrap(old, CTX, SubjectKey)
    else:  # KMS: deletion after the pending window, reported with its date
        assert state.destroy_at is not None and result.destroy_at >= state.created_at + 7 * 86400
    assert provider.unwrap(kept, CTX, SubjectKey) == key


def test_probe_and_call_counters(provider: KeyProvider) -> None:
    before = provider.stats.calls
    provider.probe()
    assert provider.stats.calls == before + 2
    assert provider.stats.failing_since is None
