"""The subject-key cache: bounded by entries, age and uses; keyed by the exact wrapped key."""

from __future__ import annotations

from vault_service.clock import FixedClock
from vault_service.crypto import SubjectKey
from vault_service.key_providers.base import WrappedKey
from vault_service.key_providers.cache import CacheLimits, SubjectKeyCache


class Unwrapper:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> SubjectKey:
        self.calls += 1
        return SubjectKey.generate()


W = WrappedKey("1", b"w1")


def test_hit_after_miss_and_keyed_by_wrapped_bytes() -> None:
    cache, unwrap = SubjectKeyCache(CacheLimits(), FixedClock()), Unwrapper()
    a = cache.get(b"s", W, unwrap)
    assert cache.get(b"s", W, unwrap) is a and unwrap.calls == 1
    cache.get(b"s", WrappedKey("2", b"w1"), unwrap)  # rewrapped: a different entry
    cache.get(b"s", WrappedKey("1", b"w2"), unwrap)
    assert unwrap.calls == 3
    assert cache.stats().hits == 1 and cache.stats().misses == 3


def test_bounded_by_entries_lru() -> None:
    cache, unwrap = SubjectKeyCache(CacheLimits(max_entries=2), FixedClock()), Unwrapper()
    cache.get(b"a", W, unwrap)
    cache.get(b"b", W, unwrap)
    cache.get(b"a", W, unwrap)  # a is now most recent
    cache.get(b"c", W, unwrap)  # evicts b
    assert cache.stats().size == 2
    cache.get(b"a", W, unwrap)
    assert unwrap.calls == 3
    cache.get(b"b", W, unwrap)
    assert unwrap.calls == 4


def test_bounded_by_age_and_uses() -> None:
    clock = FixedClock()
    cache = SubjectKeyCache(CacheLimits(max_age_seconds=10, max_uses=3), clock)
    unwrap = Unwrapper()
    for _ in range(3):
        cache.get(b"a", W, unwrap)
    assert unwrap.calls == 1
    cache.get(b"a", W, unwrap)  # fourth use: re-unwrapped
    assert unwrap.calls == 2
    clock.advance(10)
    cache.get(b"a", W, unwrap)  # too old
    assert unwrap.calls == 3


def test_forget_subject_and_disabled_cache() -> None:
    cache, unwrap = SubjectKeyCache(CacheLimits(), FixedClock()), Unwrapper()
    cache.get(b"a", W, unwrap)
    cache.get(b"b", W, unwrap)
    assert cache.holds_subject(b"a")
    assert cache.forget_subject(b"a") == 1 and not cache.holds_subject(b"a")
    cache.get(b"a", W, unwrap)
    assert unwrap.calls == 3
    off, unwrap2 = SubjectKeyCache(CacheLimits(max_entries=0), FixedClock()), Unwrapper()
    off.get(b"a", W, unwrap2)
    off.get(b"a", W, unwrap2)
    assert unwrap2.calls == 2 and off.stats().size == 0
