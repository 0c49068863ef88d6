"""The key hierarchy: service keys, subject keys, legal keys and record data keys, and their cache.

::

    root key (provider, versioned)
      wraps  service keys      "service-key" {name}: the index key, the audit signing key, the
                               blind index key of each searchable field, and the legal key of
                               each subject with records under legal retention
      wraps  subject key       "subject-key" {subject}  ("dormant-subject-key" while its
                               subject is dormant and separated: only reactivation opens it)
        wraps  data key        "data-key"    {subject, record, version, category}

Every unwrap that fails authentication is DATA_LOSS and an ``integrity_failure`` event; a stored
record whose version differs from the one the audit chain witnessed (its rows were rolled back) is
DATA_LOSS too. Unwrapped subject and legal keys are cached with bounds; the cache never decides
correctness (the wrapped key comes from the query that checked the subject is live), and a legal
key is cached apart from the subject key, so that "this process still holds the subject key" is
about the subject key only.

Root versions: new keys are wrapped under the provider's primary version. The store refuses a key
wrapped under a version the operator retired or is destroying (another process may have done so
since this one last looked); then the provider is refreshed and the key wrapped again.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

from vault_service import security_events
from vault_service.clock import Clock
from vault_service.crypto import (
    Context,
    DataKey,
    IndexKey,
    SubjectKey,
    open_value,
    seal_value,
    unwrap_key,
)
from vault_service.crypto.context import record_context, service_key_context, subject_key_context
from vault_service.crypto.keys import SecretKey
from vault_service.crypto.signing import SigningKey
from vault_service.errors import (
    DataLoss,
    FailedPrecondition,
    IntegrityError,
    RootVersionRetired,
    SubjectSeparated,
)
from vault_service.key_providers.base import KeyProvider, WrappedKey
from vault_service.key_providers.cache import SubjectKeyCache
from vault_service.storage import RecordStore, StoredRecord
from vault_service.storage.rows import KeyKind, legal_key_name

T = TypeVar("T")
K = TypeVar("K", bound=SecretKey)

INDEX_KEY_NAME = "subject-index"
SIGNING_KEY_NAME = "audit-signing"
#: the service key of a searchable field: this prefix, then "<category>.<field>"
BLIND_INDEX_PREFIX = "blind-index:"
#: how often a write retries after the store refused a retired root version (each retry first
#: refreshes the provider's view of its versions)
_WRAP_ATTEMPTS = 3


def _no_reactivation(ref: bytes) -> bool:
    raise SubjectSeparated()


def unwrapped(fn: Callable[[], T]) -> T:
    """Run an unwrap: an authentication failure becomes DATA_LOSS and an integrity event."""
    try:
        return fn()
    except IntegrityError:
        security_events.emit("integrity_failure", what="wrapped_key")
        raise DataLoss() from None


class KeyHierarchy:
    """Gets, creates and unwraps the vault's keys (see the module docstring). Thread-safe."""

    def __init__(
        self, store: RecordStore, provider: KeyProvider, cache: SubjectKeyCache, clock: Clock
    ) -> None:
        self.store = store
        self.provider = provider
        self.cache = cache
        self.clock = clock
        #: derives subject references, pseudonyms, digests and event MACs (crypto/derive.py)
        self.index_key = self.service_key(INDEX_KEY_NAME, IndexKey)
        #: signs audit checkpoints, ledger entries and deletion certificates
        self.signing_key = self.service_key(SIGNING_KEY_NAME, SigningKey)
        #: brings a separated (dormant) subject back before a write uses its key; the service
        #: sets it to the dormancy rule's reactivation (lifecycle/dormancy.py)
        self.reactivate: Callable[[bytes], bool] = _no_reactivation
        #: the blind index keys of searchable fields, unwrapped once (service keys live on)
        self._index_keys: dict[str, IndexKey] = {}
        self._index_keys_lock = threading.Lock()

    # wrapping under the current primary root version --------------------------------------------
    def _store_wrapped(self, key: SecretKey, context: Context, put: Callable[[WrappedKey], T]) -> T:
        """Wrap ``key`` under the primary version and ``put`` it. If another process moved the
        primary on (the store refuses a retired version, or the provider a version pending
        destruction), refresh this process's view of the versions and wrap again."""
        for attempt in range(_WRAP_ATTEMPTS):
            last = attempt == _WRAP_ATTEMPTS - 1
            try:
                wrapped = self.provider.wrap(key, context)
            except FailedPrecondition:  # e.g. KMS: the cached primary is pending deletion
                if last:
                    raise
                self.provider.refresh()
                continue
            try:
                return put(wrapped)
            except RootVersionRetired:  # the store refuses a version closed meanwhile
                if last:
                    raise
                self.provider.refresh()
        raise AssertionError("unreachable")

    # service keys --------------------------------------------------------------------------------
    def wrapped_service_key(self, name: str, key_type: type[SecretKey]) -> WrappedKey:
        """The stored service key ``name``; a fresh one is made and stored on first use (the first
        writer wins when several replicas start at once)."""
        wrapped = self.store.get_service_key(name)
        if wrapped is not None:
            return wrapped
        fresh = key_type.generate()
        return self._store_wrapped(
            fresh,
            service_key_context(name),
            lambda w: self.store.put_service_key_if_absent(
                name, w, self.clock.now(), provider=self.provider.name
            ),
        )

    def service_key(self, name: str, key_type: type[K]) -> K:
        """A service key, unwrapped (created on first use)."""
        stored = self.wrapped_service_key(name, key_type)
        return unwrapped(lambda: self.provider.unwrap(stored, service_key_context(name), key_type))

    def blind_index_key(self, category: str, field: str) -> IndexKey:
        """The key of one searchable field's blind index: the service key
        ``blind-index:<category>.<field>`` (a key per field, so tokens of two fields never
        match), created on first use and kept unwrapped in this process."""
        name = f"{BLIND_INDEX_PREFIX}{category}.{field}"
        with self._index_keys_lock:
            cached = self._index_keys.get(name)
        if cached is not None:
            return cached
        key = self.service_key(name, IndexKey)
        with self._index_keys_lock:
            return self._index_keys.setdefault(name, key)

    # subject and legal keys ----------------------------------------------------------------------
    def subject_key(self, ref: bytes, wrapped: WrappedKey) -> SubjectKey:
        """The subject key, from the cache or the provider."""
        return self.cache.get(
            ref,
            wrapped,
            lambda: unwrapped(
                lambda: self.provider.unwrap(wrapped, subject_key_context(ref), SubjectKey)
            ),
        )

    def legal_key(self, ref: bytes, wrapped: WrappedKey) -> SubjectKey:
        """The subject's legal key (records under legal retention), cached apart from the
        subject key."""
        ctx = service_key_context(legal_key_name(ref))
        return self.cache.get(
            ref,
            wrapped,
            lambda: unwrapped(lambda: self.provider.unwrap(wrapped, ctx, SubjectKey)),
            kind=KeyKind.LEGAL,
        )

    def subject_key_for_write(self, ref: bytes, known: WrappedKey | None = None) -> SubjectKey:
        """The subject key, creating the subject and its key on first use; a separated
        (dormant) subject is reactivated first: a write is activity. FailedPrecondition if the
        subject was erased. ``known``: the live wrapped key as a batch read it for all its
        items (store.get_subject_keys), used instead of reading it again; the write's own
        transaction still checks that the subject is live."""
        for _ in range(_WRAP_ATTEMPTS):
            wrapped, known = known or self.store.get_subject_key(ref), None
            if wrapped is None and self.store.get_separated_key(ref) is not None:
                self.reactivate(ref)
                continue
            if wrapped is None:
                fresh = SubjectKey.generate()
                try:
                    wrapped = self._store_wrapped(
                        fresh,
                        subject_key_context(ref),
                        lambda w: self.store.create_subject_key(
                            ref, w, self.clock.now(), provider=self.provider.name
                        ),
                    )
                except SubjectSeparated:  # made dormant since we looked
                    continue
            return self.subject_key(ref, wrapped)
        raise SubjectSeparated()

    def move_subject_key(
        self, ref: bytes, *, separate: bool, put: Callable[[WrappedKey, WrappedKey], bool]
    ) -> bool:
        """Rewrap the subject key into the dormant context (``separate``) or back into the live
        one, and ``put(old, new)`` it (a compare-and-set on ``old`` that also changes the
        subject's state). False if the key is not in the other context (or ``put`` refused)."""
        old = self.store.get_subject_key(ref) if separate else self.store.get_separated_key(ref)
        if old is None:
            return False
        key = unwrapped(
            lambda: self.provider.unwrap(
                old, subject_key_context(ref, separated=not separate), SubjectKey
            )
        )
        try:
            moved = self._store_wrapped(
                key, subject_key_context(ref, separated=separate), lambda w: put(old, w)
            )
        finally:
            key.destroy()  # never cached: unwrapped for this move only
        if moved and separate:
            self.cache.forget_subject(ref)  # this process no longer holds a dormant subject's key
        return moved

    def live_subject_key(self, ref: bytes) -> SubjectKey | None:
        """The subject key while the subject is live; None once it is erased (or unknown).
        A separated (dormant) subject's key is unwrapped for the vault's own bookkeeping (a
        hold's sealed reason, consent evidence), never cached; no record read comes here."""
        wrapped = self.store.get_subject_key(ref)
        if wrapped is not None:
            return self.subject_key(ref, wrapped)
        separated = self.store.get_separated_key(ref)
        if separated is None:
            return None
        ctx = subject_key_context(ref, separated=True)
        return unwrapped(lambda: self.provider.unwrap(separated, ctx, SubjectKey))

    def seal_for_subject(self, ref: bytes, context: Context, value: bytes) -> bytes | None:
        """``value`` sealed under the subject key (it dies with the subject); None if the
        subject is erased or unknown."""
        key = self.live_subject_key(ref)
        return None if key is None else seal_value(key, context, value)

    def open_for_subject(self, ref: bytes, context: Context, sealed: bytes) -> bytes | None:
        """A value sealed by :meth:`seal_for_subject`; None once the subject is erased.
        DATA_LOSS if it fails authentication."""
        key = self.live_subject_key(ref)
        if key is None:
            return None
        return unwrapped(lambda: open_value(key, context, sealed))

    def key_for_write(
        self, ref: bytes, survives_erasure: bool, known: WrappedKey | None = None
    ) -> tuple[SubjectKey, KeyKind]:
        """The key a new record version's data key is wrapped under: the subject key, or for
        records kept by law after an erasure, the subject's legal key (created on first use; the
        subject must exist and be live). ``known``: as :meth:`subject_key_for_write`."""
        subject_key = self.subject_key_for_write(ref, known)
        if not survives_erasure:
            return subject_key, KeyKind.SUBJECT
        wrapped = self.wrapped_service_key(legal_key_name(ref), SubjectKey)
        return self.legal_key(ref, wrapped), KeyKind.LEGAL

    def record_key(self, stored: StoredRecord) -> SubjectKey:
        """The key that wraps a stored record's data key."""
        ref = stored.meta.subject_ref
        if stored.key_kind is KeyKind.LEGAL:
            return self.legal_key(ref, stored.subject_key)
        return self.subject_key(ref, stored.subject_key)

    # data keys -----------------------------------------------------------------------------------
    def data_key(self, stored: StoredRecord) -> DataKey:
        """The record's data key, unwrapped. DATA_LOSS if it fails authentication, or if the
        record's rows are not at the version the audit chain last witnessed (rolled back)."""
        meta = stored.meta
        if stored.witnessed_version is not None and stored.witnessed_version != meta.version:
            security_events.emit("integrity_failure", what="rolled_back_record")
            raise DataLoss()
        key = self.record_key(stored)
        ctx = record_context("data-key", meta.subject_ref, meta.record_id, meta.version, meta.category)
        return unwrapped(lambda: unwrap_key(key, stored.data_key, ctx, DataKey))

    # the cache -----------------------------------------------------------------------------------
    def forget_subject(self, ref: bytes) -> None:
        """Drop every cached key of the subject (after its erasure in this process)."""
        self.cache.forget_subject(ref)

    def holds_subject_key(self, ref: bytes) -> bool:
        """Whether this process still caches the subject's *subject* key (deletion verification)."""
        return self.cache.holds_subject(ref)

    @property
    def cache_max_age(self) -> float:
        """How long any process may keep an unwrapped key cached."""
        return self.cache.max_age
