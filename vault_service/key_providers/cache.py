"""A bounded in-memory cache of unwrapped subject keys, keeping key-provider calls off the hot path.

Bounds: number of entries (least recently used goes first), age since unwrap, and uses per entry.
The cache never decides correctness: an entry is keyed by the subject reference *and the exact
wrapped key* the database returned in the same query that checked the subject is not erased. A read
therefore only hits the cache after the database has just confirmed that this very wrapped key
still exists; after an erasure (in any process) the row is gone and no lookup reaches the cache.
Rewrapping changes the wrapped bytes, so old entries simply age out.

Evicted keys are dropped, not zeroed, because a concurrent request may still be using the object;
Python cannot promise erasure of memory anyway (see ``crypto.keys``).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from vault_service.clock import Clock
from vault_service.crypto import SubjectKey
from vault_service.key_providers.base import WrappedKey

#: the kind of a subject's own key in the cache (the legal key is cached under another kind)
SUBJECT = "subject"


@dataclass(frozen=True)
class CacheLimits:
    """Bounds of the cache. ``max_entries = 0`` disables caching."""

    max_entries: int = 10_000
    max_age_seconds: float = 300.0
    max_uses: int = 100_000


@dataclass
class _Entry:
    key: SubjectKey
    born: float
    uses: int = 0


@dataclass(frozen=True)
class CacheStats:
    """Counters for metrics and benchmarks."""

    hits: int
    misses: int
    evictions: int
    size: int


class SubjectKeyCache:
    """See the module docstring. Thread-safe."""

    def __init__(self, limits: CacheLimits, clock: Clock) -> None:
        self._limits = limits
        self._clock = clock
        self._entries: OrderedDict[tuple[str, bytes, str, bytes], _Entry] = OrderedDict()
        self._lock = threading.Lock()
        self._hits = self._misses = self._evictions = 0

    @property
    def max_age(self) -> float:
        """How long an entry may live (the bound deletion verification waits out)."""
        return self._limits.max_age_seconds if self._limits.max_entries > 0 else 0.0

    def get(
        self,
        subject_ref: bytes,
        wrapped: WrappedKey,
        unwrap: Callable[[], SubjectKey],
        kind: str = SUBJECT,
    ) -> SubjectKey:
        """The cached key for exactly this wrapped key, or ``unwrap()`` (then cached). ``kind``
        keeps a subject's other keys (its legal key) apart from its subject key."""
        if self._limits.max_entries <= 0:
            return unwrap()
        k = (kind, subject_ref, wrapped.root_version, wrapped.ciphertext)
        now = self._clock.now()
        with self._lock:
            entry = self._entries.get(k)
            if entry is not None:
                fresh = now - entry.born < self._limits.max_age_seconds
                if fresh and entry.uses < self._limits.max_uses:
                    entry.uses += 1
                    self._entries.move_to_end(k)
                    self._hits += 1
                    return entry.key
                del self._entries[k]
                self._evictions += 1
            self._misses += 1
        key = unwrap()  # outside the lock: a provider call may take milliseconds
        with self._lock:
            self._entries[k] = _Entry(key, now, 1)
            self._entries.move_to_end(k)
            while len(self._entries) > self._limits.max_entries:
                self._entries.popitem(last=False)
                self._evictions += 1
        return key

    def forget_subject(self, subject_ref: bytes) -> int:
        """Drop every entry of a subject (after an erasure in this process); returns how many."""
        with self._lock:
            doomed = [k for k in self._entries if k[1] == subject_ref]
            for k in doomed:
                del self._entries[k]
            self._evictions += len(doomed)
        return len(doomed)

    def holds_subject(self, subject_ref: bytes) -> bool:
        """Whether the subject's *subject* key is cached (deletion verification asks this: a
        cached legal key is not the erased key)."""
        with self._lock:
            return any(k[0] == SUBJECT and k[1] == subject_ref for k in self._entries)

    def clear(self) -> None:
        """Drop everything."""
        with self._lock:
            self._evictions += len(self._entries)
            self._entries.clear()

    def stats(self) -> CacheStats:
        """Current counters."""
        with self._lock:
            return CacheStats(self._hits, self._misses, self._evictions, len(self._entries))
