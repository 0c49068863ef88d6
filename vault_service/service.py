"""The service facade: the one place where policy, keys, crypto, storage and audit meet.

Adapters (gRPC servicer, CLI) call these methods with plain Python values and a :class:`CallContext`
(who is calling, the correlation id). Every method authorizes through ``policy.decide`` first,
writes its audit row in the same transaction as its mutation (or, for reads, before any plaintext is
released), and raises only :class:`~vault_service.errors.VaultError` subclasses.

Key hierarchy (contexts name what each key belongs to)::

    root key (provider)  --wraps-->  subject key  "subject-key"  {subject}
    subject key          --wraps-->  data key     "data-key"     {subject, record, version, category}
    data key             --keys-->   payload      "payload"      {subject, record, version, category,
                                                                  field}
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import struct
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TypeVar

from vault_service import metrics, security_events
from vault_service.audit.model import AuditEntry
from vault_service.clock import Clock
from vault_service.crypto import (
    DataKey,
    IndexKey,
    PayloadReader,
    SubjectKey,
    open_payload,
    seal_payload,
    seal_stream,
    unwrap_key,
    wrap_key,
)
from vault_service.crypto.context import record_context, service_key_context, subject_key_context
from vault_service.crypto.keys import SecretKey
from vault_service.crypto.signing import SigningKey
from vault_service.errors import (
    DataLoss,
    FailedPrecondition,
    IntegrityError,
    InvalidArgument,
    LegalHoldActive,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
)
from vault_service.faults import fault_point
from vault_service.ids import is_record_id, new_record_id, record_id_time
from vault_service.key_providers.base import KeyProvider, KeyState, WrappedKey
from vault_service.key_providers.cache import CacheLimits, SubjectKeyCache
from vault_service.lifecycle.ledger import ErasureLedger
from vault_service.lifecycle.verification import ErasureCheck, verify_erasures
from vault_service.logs import fields
from vault_service.policy import AccessRequest, Action, Category, Policy, Principal, decide
from vault_service.policy.decide import Decision, needs_subject_state
from vault_service.policy.deidentify import scrub_text
from vault_service.policy.model import CONTENT_FIELD, Grant, RetentionRule
from vault_service.security_events import DenialWatch
from vault_service.shares import ShareOperations
from vault_service.storage import (
    AuditQuery,
    AuditRow,
    BlobStore,
    Idempotency,
    RecordMeta,
    RecordStore,
    RecordVersion,
    ShreddedRecord,
    StoredRecord,
    SubjectState,
)
from vault_service.storage.shares import EventRow, HoldRow, PendingDeletion

log = logging.getLogger("vault_service.service")
T = TypeVar("T")
K = TypeVar("K", bound=SecretKey)

INDEX_KEY_NAME = "subject-index"
SIGNING_KEY_NAME = "audit-signing"
MAX_SUBJECT_ID = 256
MAX_IDEMPOTENCY_KEY = 128
MAX_PAGE_SIZE = 500
MAX_AUDIT_PAGE = 1000
EVIDENCE = re.compile(r"^[^\s]{1,128}$")


@dataclass(frozen=True)
class CallContext:
    """Who is calling, and the correlation id of this request."""

    principal: Principal
    correlation_id: str


@dataclass(frozen=True)
class Limits:
    """Size limits checked before any work (RESOURCE_EXHAUSTED beyond them)."""

    max_fields: int = 64
    max_field_bytes: int = 1024 * 1024
    #: content sent inline in one message (PutRecord, UpdateRecord)
    max_content_bytes: int = 8 * 1024 * 1024
    #: content streamed (UploadRecord)
    max_object_bytes: int = 4 * 1024 * 1024 * 1024


@dataclass
class ContentStream:
    """A content object arriving in pieces (a client-streaming upload), encrypted on the fly.

    ``declared_size`` (if the client sent one) is checked up front; the actual size is counted
    as the pieces pass and the upload fails with RESOURCE_EXHAUSTED past the limit."""

    pieces: Iterable[bytes]
    declared_size: int | None = None
    received: int = 0

    def limited(self, limit: int) -> Iterator[bytes]:
        """The pieces, counted; RESOURCE_EXHAUSTED as soon as ``limit`` is exceeded."""
        for piece in self.pieces:
            self.received += len(piece)
            if self.received > limit:
                raise ResourceExhausted(f"content larger than {limit} bytes")
            yield piece


@dataclass(frozen=True)
class RecordView:
    """A decrypted record as released to a caller: only the fields its purpose allows."""

    meta: RecordMeta
    fields: Mapping[str, str]
    content: bytes | None
    #: set for de-identified views: the subject's pseudonym for this purpose
    subject_pseudonym: str = ""


class VaultService:
    """The vault's operations (see the module docstring)."""

    def __init__(
        self,
        store: RecordStore,
        blobs: BlobStore,
        provider: KeyProvider,
        policy: Policy,
        clock: Clock,
        limits: Limits | None = None,
        cache: SubjectKeyCache | None = None,
        ledger: ErasureLedger | None = None,
    ) -> None:
        self.store = store
        self.blobs = blobs
        self.provider = provider
        self.policy = policy
        self.clock = clock
        self.limits = limits or Limits()
        # Caching is opt-in here (the server always passes one); the cache never decides
        # correctness, see key_providers/cache.py.
        self.cache = cache or SubjectKeyCache(CacheLimits(max_entries=0), clock)
        #: erasures recorded outside the store (None only in unit tests of other parts)
        self.ledger = ledger
        #: raises ``repeated_denials``; the server sets its threshold and window from the config
        self.denials = DenialWatch()
        self._touched: dict[bytes, int] = {}
        self._touch_lock = threading.Lock()
        #: bound on how long any process may keep an unwrapped subject key cached
        self.cache_max_age = cache.max_age if cache is not None else 0.0
        self._index_key = self._load_service_key(INDEX_KEY_NAME, IndexKey)
        #: signs audit checkpoints (and deletion certificates)
        self.signing_key = self._load_service_key(SIGNING_KEY_NAME, SigningKey)
        #: time-limited, field-limited shares (see vault_service/shares.py)
        self.shares = ShareOperations(self)

    # keys and references ---------------------------------------------------------------------
    def _load_service_key(self, name: str, key_type: type[K]) -> K:
        """A service-level key, wrapped by the provider and stored; created on first use
        (first writer wins when several replicas start at once)."""
        stored = self._wrapped_service_key(name, key_type)
        return self._unwrap(lambda: self.provider.unwrap(stored, service_key_context(name), key_type))

    def _wrapped_service_key(self, name: str, key_type: type[K]) -> WrappedKey:
        """The stored, provider-wrapped service key ``name``; a fresh ``key_type`` key is made and
        stored on first use (first writer wins when several replicas start at once)."""
        wrapped = self.store.get_service_key(name)
        if wrapped is None:
            fresh = key_type.generate()
            wrapped = self.store.put_service_key_if_absent(
                name, self.provider.wrap(fresh, service_key_context(name)), self.clock.now()
            )
        return wrapped

    def subject_ref(self, subject_id: str) -> bytes:
        """The stored reference of a subject: a keyed hash of its id (the id is never stored)."""
        return hmac.new(
            self._index_key.unsafe_bytes(),
            b"subject-ref/v1\x00" + subject_id.encode(),
            hashlib.sha256,
        ).digest()

    @staticmethod
    def pseudonym(subject_ref: bytes) -> str:
        """How audit entries and logs name a subject."""
        return subject_ref.hex()[:32]

    @staticmethod
    def _unwrap(fn: Callable[[], T]) -> T:
        try:
            return fn()
        except IntegrityError:
            security_events.emit("integrity_failure", what="wrapped_key")
            raise DataLoss() from None

    def _subject_key(self, ref: bytes, wrapped: WrappedKey) -> SubjectKey:
        ctx = subject_key_context(ref)
        return self.cache.get(
            ref, wrapped, lambda: self._unwrap(lambda: self.provider.unwrap(wrapped, ctx, SubjectKey))
        )

    def _subject_key_for_write(self, ref: bytes) -> SubjectKey:
        wrapped = self.store.get_subject_key(ref)
        if wrapped is None:
            fresh = SubjectKey.generate()
            wrapped = self.store.create_subject_key(
                ref, self.provider.wrap(fresh, subject_key_context(ref)), self.clock.now()
            )
        return self._subject_key(ref, wrapped)

    @staticmethod
    def _legal_key_name(ref: bytes) -> str:
        return f"legal:{ref.hex()}"

    def _legal_key_for_write(self, ref: bytes) -> SubjectKey:
        """The subject's legal key (records under legal retention): a service key wrapped by the
        root key, created on first use; it survives the subject's erasure."""
        self._subject_key_for_write(ref)  # the subject must exist and be live
        wrapped = self._wrapped_service_key(self._legal_key_name(ref), SubjectKey)
        return self._key_of(ref, "legal", wrapped)

    def _key_of(self, ref: bytes, kind: str, wrapped: WrappedKey) -> SubjectKey:
        """The key that wraps a record's data key: the subject key or the legal key."""
        if kind != "legal":
            return self._subject_key(ref, wrapped)
        ctx = service_key_context(self._legal_key_name(ref))
        return self.cache.get(
            ref, wrapped, lambda: self._unwrap(lambda: self.provider.unwrap(wrapped, ctx, SubjectKey))
        )

    def _write_key(self, ref: bytes, category: str) -> tuple[SubjectKey, str]:
        if self.policy.categories[category].retention.survives_erasure:
            return self._legal_key_for_write(ref), "legal"
        return self._subject_key_for_write(ref), "subject"

    # validation ------------------------------------------------------------------------------
    def _category(self, name: str) -> Category:
        category = self.policy.categories.get(name)
        if category is None:
            raise InvalidArgument("unknown category")
        return category

    @staticmethod
    def _check_subject_id(subject_id: str) -> None:
        if not subject_id or len(subject_id.encode()) > MAX_SUBJECT_ID:
            raise InvalidArgument(f"subject_id is required (at most {MAX_SUBJECT_ID} bytes)")

    @staticmethod
    def _check_record_id(record_id: str) -> None:
        if not is_record_id(record_id):
            raise InvalidArgument("record_id is malformed")

    def _check_payload(
        self, category: Category, fields: Mapping[str, str], content: bytes | ContentStream | None
    ) -> None:
        if len(fields) > self.limits.max_fields:
            raise ResourceExhausted(f"at most {self.limits.max_fields} fields per record")
        for name, value in fields.items():
            if name not in category.fields or name == CONTENT_FIELD:
                raise InvalidArgument(f"field {name!r} is not declared by the category")
            if len(value.encode()) > self.limits.max_field_bytes:
                raise ResourceExhausted(f"a field is larger than {self.limits.max_field_bytes} bytes")
        if content is not None:
            if not category.content:
                raise InvalidArgument("this category does not take content")
            if isinstance(content, ContentStream):
                declared = content.declared_size
                if declared is not None and declared > self.limits.max_object_bytes:
                    raise ResourceExhausted(f"content larger than {self.limits.max_object_bytes} bytes")
            elif len(content) > self.limits.max_content_bytes:
                raise ResourceExhausted(f"content larger than {self.limits.max_content_bytes} bytes")
        if not fields and content is None:
            raise InvalidArgument("a record needs at least one field or content")

    # authorization and audit -----------------------------------------------------------------
    def _audit(
        self,
        call: CallContext,
        action: Action,
        decision: str,
        reason: str,
        *,
        purpose: str = "",
        ref: bytes | None = None,
        record_id: str = "",
    ) -> AuditRow:
        if decision == "deny":
            self._denied(call, action, reason)
        return AuditRow(
            at=self.clock.now(),
            principal=call.principal.name,
            action=action.value,
            decision=decision,
            reason=reason,
            purpose=purpose,
            subject_pseudonym=self.pseudonym(ref) if ref else "",
            record_id=record_id,
            correlation_id=call.correlation_id,
        )

    def _denied(self, call: CallContext, action: Action, reason: str) -> None:
        """Every refusal: logged (reason only), counted by action and reason, and watched for a
        principal refused again and again."""
        log.info("denied", extra=fields(action=action.value, reason=reason))
        metrics.DENIED.labels(action.value, reason).inc()
        self.denials.denied(call.principal.name)

    def _authorize(
        self,
        call: CallContext,
        request: AccessRequest,
        *,
        ref: bytes | None = None,
        record_id: str = "",
    ) -> frozenset[str]:
        decision = decide(request, self.policy)
        if not decision.allowed:
            self.store.append_audit(
                self._audit(
                    call,
                    request.action,
                    "deny",
                    decision.reason,
                    purpose=request.purpose or "",
                    ref=ref,
                    record_id=record_id,
                )
            )
            raise PermissionDenied()
        return decision.fields

    def _request(self, call: CallContext, action: Action, **kw: object) -> AccessRequest:
        return AccessRequest(principal=call.principal, action=action, now=self.clock.now(), **kw)  # type: ignore[arg-type]

    # encryption of one version ---------------------------------------------------------------
    def _seal_version(
        self,
        ref: bytes,
        subject_key: SubjectKey,
        record_id: str,
        version: int,
        category: str,
        fields: Mapping[str, str],
        content_type: str,
        content: bytes | ContentStream | None,
        key_kind: str = "subject",
    ) -> RecordVersion:
        data_key = DataKey.generate()
        wrapped = wrap_key(
            subject_key,
            data_key,
            record_context("data-key", ref, record_id, version, category),
        )
        base = record_context("payload", ref, record_id, version, category)
        payloads = {
            name: seal_payload(data_key, base.with_items(field=name), value.encode())
            for name, value in fields.items()
        }
        blob_ref = None
        length = None
        if content is not None:
            blob_ref = f"{record_id}.v{version}"
            context = base.with_items(field=CONTENT_FIELD)
            if isinstance(content, ContentStream):
                # encrypted chunk by chunk as the blob store consumes it: constant memory
                sealed_pieces = seal_stream(
                    data_key, context, content.limited(self.limits.max_object_bytes)
                )
                self.blobs.put(blob_ref, sealed_pieces)
                length = content.received
            else:
                self.blobs.put(blob_ref, [seal_payload(data_key, context, content)])
                length = len(content)
        data_key.destroy()
        return RecordVersion(
            record_id=record_id,
            subject_ref=ref,
            category=category,
            version=version,
            content_type=content_type,
            data_key=wrapped,
            payloads=payloads,
            blob_ref=blob_ref,
            content_length=length,
            key_kind=key_kind,
        )

    def _remove_blobs(self, shredded: ShreddedRecord | None) -> None:
        if shredded is None:
            return
        for ref in shredded.blob_refs:
            try:
                self.blobs.delete(ref)
            except Exception:  # the key is gone already; the orphan sweep retries
                log.warning("blob delete deferred", extra=fields(record_id=shredded.record_id))

    def _request_digest(
        self,
        ref: bytes,
        category: str,
        fields: Mapping[str, str],
        content_type: str,
        content: bytes | ContentStream | None,
    ) -> bytes:
        """A keyed digest of a put request (a streamed upload is identified by its header:
        its content is not known before the write)."""
        mac = hmac.new(self._index_key.unsafe_bytes(), b"put-request/v1\x00", hashlib.sha256)
        if isinstance(content, ContentStream):
            digest = b"stream"
        else:
            digest = hashlib.sha256(content).digest() if content is not None else b"-"
        for part in (
            ref,
            category.encode(),
            content_type.encode(),
            digest,
        ):
            mac.update(struct.pack(">I", len(part)) + part)
        for name in sorted(fields):
            for part in (name.encode(), fields[name].encode()):
                mac.update(struct.pack(">I", len(part)) + part)
        return mac.digest()

    # operations ------------------------------------------------------------------------------
    def put_record(
        self,
        call: CallContext,
        subject_id: str,
        category: str,
        fields: Mapping[str, str],
        content_type: str = "",
        content: bytes | ContentStream | None = None,
        idempotency_key: str = "",
    ) -> tuple[str, int]:
        """Store a new record; returns (record_id, version)."""
        self._check_subject_id(subject_id)
        cat = self._category(category)
        self._check_payload(cat, fields, content)
        if len(idempotency_key) > MAX_IDEMPOTENCY_KEY:
            raise InvalidArgument(f"idempotency_key is at most {MAX_IDEMPOTENCY_KEY} characters")
        ref = self.subject_ref(subject_id)
        self._authorize(call, self._request(call, Action.RECORD_PUT, category=category), ref=ref)
        subject_key, key_kind = self._write_key(ref, category)
        record_id = new_record_id(self.clock.now())
        new = self._seal_version(
            ref, subject_key, record_id, 1, category, fields, content_type, content, key_kind
        )
        fault_point("put.after_wrap")  # keys wrapped, payloads sealed, blob written; no commit
        idem = None
        if idempotency_key:
            # Stored as a keyed hash: callers may put anything in their keys.
            idem_ref = hmac.new(
                self._index_key.unsafe_bytes(),
                b"idempotency/v1\x00" + idempotency_key.encode(),
                hashlib.sha256,
            ).hexdigest()
            idem = Idempotency(
                call.principal.name,
                idem_ref,
                self._request_digest(ref, category, fields, content_type, content),
            )
        try:
            stored_id = self.store.insert_record(
                new,
                self.clock.now(),
                idem,
                self._audit(call, Action.RECORD_PUT, "allow", "stored", ref=ref, record_id=record_id),
            )
        except Exception:
            self._remove_blobs(ShreddedRecord(record_id, (new.blob_ref,) if new.blob_ref else ()))
            raise
        fault_point("put.after_commit")  # committed; the caller has not heard back
        if stored_id != record_id:  # an idempotent retry: the first write stands
            self._remove_blobs(ShreddedRecord(record_id, (new.blob_ref,) if new.blob_ref else ()))
        return stored_id, 1

    def get_record(
        self,
        call: CallContext,
        record_id: str,
        purpose: str,
        fields: frozenset[str] | None = None,
        include_content: bool = False,
    ) -> RecordView:
        """Decrypt a record's current version for ``purpose``: only the fields the purpose, the
        subject's consent and its restriction state allow; de-identified where the purpose says."""
        self._check_purpose(purpose)
        self._check_record_id(record_id)
        stored = self._fetch_for_read(call, record_id, purpose)
        wanted = fields
        if include_content and fields is not None:
            wanted = fields | {CONTENT_FIELD}
        decision = self._authorize_read(call, Action.RECORD_GET, purpose, stored, wanted)
        view = self._release(call, Action.RECORD_GET, purpose, stored, decision, include_content)
        self._activity(stored.meta.subject_ref, stored.subject_state is SubjectState.DORMANT)
        if self.policy.categories[stored.meta.category].retention.kind == "read_once":
            self._destroy_after_read(call, stored)
        return view

    def _fetch_for_read(self, call: CallContext, record_id: str, purpose: str) -> StoredRecord:
        """A record's current version, with the grants ``purpose`` needs, once the caller may
        read for ``purpose`` at all. A missing record is audited and refused; for consent-bound
        purposes it must look like one without consent (PermissionDenied, not NotFound)."""
        self._authorize(
            call, self._request(call, Action.RECORD_GET, purpose=purpose), record_id=record_id
        )
        stored = self.store.get_record(record_id, grants_for=purpose)
        if stored is None:
            self.store.append_audit(
                self._audit(
                    call, Action.RECORD_GET, "deny", "not found", purpose=purpose, record_id=record_id
                )
            )
            raise PermissionDenied() if needs_subject_state(purpose, self.policy) else NotFound()
        return stored

    def _destroy_after_read(self, call: CallContext, stored: StoredRecord) -> None:
        """Read-once: destroyed in the operation that released it (before the response leaves;
        if it cannot be destroyed the call fails and nothing is returned). Under a legal hold
        the destruction is recorded for the hold's release."""
        meta = stored.meta
        deferred = PendingDeletion(
            new_record_id(self.clock.now()),
            "record",
            meta.subject_ref,
            meta.record_id,
            call.principal.name,
            self.clock.now(),
        )
        try:
            shredded = self.store.delete_record(
                meta.record_id,
                self._audit(
                    call,
                    Action.RECORD_DELETE,
                    "allow",
                    "read-once: destroyed",
                    ref=meta.subject_ref,
                    record_id=meta.record_id,
                ),
                deferred,
            )
        except LegalHoldActive:
            return
        self._remove_blobs(shredded)

    def _check_purpose(self, purpose: str) -> None:
        if not purpose:
            raise InvalidArgument("purpose is required")
        if purpose not in self.policy.purposes:
            raise InvalidArgument("unknown purpose")

    def _authorize_read(
        self,
        call: CallContext,
        action: Action,
        purpose: str,
        stored: StoredRecord,
        wanted: frozenset[str] | None,
    ) -> Decision:
        request = self._request(
            call,
            action,
            purpose=purpose,
            category=stored.meta.category,
            fields=wanted,
            # after an erasure only records under legal retention remain, for exempt purposes
            subject_restricted=stored.subject_state in (SubjectState.RESTRICTED, SubjectState.ERASED),
            subject_dormant=stored.subject_state is SubjectState.DORMANT,
            grants=stored.grants,
        )
        decision = decide(request, self.policy)
        if not decision.allowed:
            self.store.append_audit(
                self._audit(
                    call,
                    action,
                    "deny",
                    decision.reason,
                    purpose=purpose,
                    ref=stored.meta.subject_ref,
                    record_id=stored.meta.record_id,
                )
            )
            raise PermissionDenied()
        return decision

    def _release(
        self,
        call: CallContext,
        action: Action,
        purpose: str,
        stored: StoredRecord,
        decision: Decision,
        include_content: bool,
        reason: str = "",
    ) -> RecordView:
        """Decrypt what ``decision`` allows, audit the release, then return it (fail closed)."""
        meta = stored.meta
        visible = decision.fields
        data_key = self._data_key(stored)
        base = record_context("payload", meta.subject_ref, meta.record_id, meta.version, meta.category)
        try:
            released = {
                name: open_payload(data_key, base.with_items(field=name), ct).decode()
                for name, ct in stored.payloads.items()
                if name in visible
            }
            content = None
            if include_content and CONTENT_FIELD in visible and stored.blob_ref:
                try:
                    sealed = self.blobs.get(stored.blob_ref)
                except FileNotFoundError:
                    raise IntegrityError() from None
                content = open_payload(data_key, base.with_items(field=CONTENT_FIELD), sealed)
        except IntegrityError:
            security_events.emit("integrity_failure", what="payload")
            raise DataLoss() from None
        finally:
            data_key.destroy()
        pseudonym = ""
        if decision.deidentified:
            released = {k: scrub_text(v) for k, v in released.items()}
            pseudonym = self.purpose_pseudonym(purpose, meta.subject_ref)
        # Fail closed: nothing is released unless the read is on the audit record.
        default = "released de-identified" if decision.deidentified else "released"
        self.store.append_audit(
            self._audit(
                call,
                action,
                "allow",
                reason or default,
                purpose=purpose,
                ref=meta.subject_ref,
                record_id=meta.record_id,
            )
        )
        return RecordView(meta, released, content, pseudonym)

    def _data_key(self, stored: StoredRecord) -> DataKey:
        """The record's data key, unwrapped; DATA_LOSS if it fails authentication or the record's
        rows are older than the audit chain witnessed (rolled back to an earlier version)."""
        meta = stored.meta
        if stored.witnessed_version is not None and stored.witnessed_version != meta.version:
            security_events.emit("integrity_failure", what="rolled_back_record")
            raise DataLoss()
        subject_key = self._key_of(meta.subject_ref, stored.key_kind, stored.subject_key)
        ctx = record_context("data-key", meta.subject_ref, meta.record_id, meta.version, meta.category)
        return self._unwrap(lambda: unwrap_key(subject_key, stored.data_key, ctx, DataKey))

    def _content_pieces(
        self,
        stored: StoredRecord,
        offset: int = 0,
        length: int | None = None,
        piece: int = 4 * 16384,
    ) -> Iterator[tuple[int, bytes]]:
        """The record's content (or the range [offset, offset + length)) decrypted piece by piece
        in constant memory, opening only the chunks the range covers: (offset, bytes)."""
        meta = stored.meta
        if stored.blob_ref is None:
            return
        data_key = self._data_key(stored)
        base = record_context("payload", meta.subject_ref, meta.record_id, meta.version, meta.category)
        try:
            blob = self.blobs.open(stored.blob_ref)
        except FileNotFoundError:
            data_key.destroy()
            self._security_event("integrity_failure")
            raise DataLoss() from None
        try:
            reader = PayloadReader(data_key, base.with_items(field=CONTENT_FIELD), blob, blob.length)
            end = reader.length if length is None else min(reader.length, offset + length)
            position = offset
            while position < end:
                data = reader.read(position, min(piece, end - position))
                if not data:
                    break
                yield position, data
                position += len(data)
        except IntegrityError:
            self._security_event("integrity_failure")
            raise DataLoss() from None
        finally:
            blob.close()
            data_key.destroy()

    def download_content(
        self,
        call: CallContext,
        record_id: str,
        purpose: str,
        offset: int = 0,
        length: int = 0,
        piece: int = 1024 * 1024,
    ) -> Iterator[tuple[int, bytes]]:
        """Stream a record's content (or a byte range: ``length`` 0 means to the end) for
        ``purpose``, decrypting only the chunks the range covers. The release is audited before
        the first byte leaves."""
        self._check_purpose(purpose)
        self._check_record_id(record_id)
        if offset < 0 or length < 0:
            raise InvalidArgument("offset and length must be >= 0")
        stored = self._fetch_for_read(call, record_id, purpose)
        self._authorize_read(call, Action.RECORD_GET, purpose, stored, frozenset({CONTENT_FIELD}))
        if stored.blob_ref is None:
            raise NotFound("the record has no content")
        size = stored.meta.content_length or 0
        self.store.append_audit(
            self._audit(
                call,
                Action.RECORD_GET,
                "allow",
                f"content bytes {offset}-{offset + length if length else size}",
                purpose=purpose,
                ref=stored.meta.subject_ref,
                record_id=record_id,
            )
        )
        yield from self._content_pieces(stored, offset, length or None, piece)

    @staticmethod
    def _security_event(name: str) -> None:
        """A distinct, counted security event (vault_service.security_events; never with PHI)."""
        security_events.emit(name)

    def purpose_pseudonym(self, purpose: str, subject_ref: bytes) -> str:
        """A stable pseudonym of a subject for one purpose (de-identified views): the same subject
        always maps to the same value within a purpose, and values of two purposes do not link."""
        return hmac.new(
            self._index_key.unsafe_bytes(),
            b"purpose-pseudonym/v1\x00" + purpose.encode() + b"\x00" + subject_ref,
            hashlib.sha256,
        ).hexdigest()[:32]

    def list_records(
        self, call: CallContext, subject_id: str, page_size: int = 0, page_token: str = ""
    ) -> tuple[list[RecordMeta], str]:
        """A page of a subject's record metadata; returns (records, next_page_token)."""
        self._check_subject_id(subject_id)
        if not 0 <= page_size <= MAX_PAGE_SIZE:
            raise InvalidArgument(f"page_size must be between 0 and {MAX_PAGE_SIZE}")
        if page_token and not is_record_id(page_token):
            raise InvalidArgument("page_token is malformed")
        ref = self.subject_ref(subject_id)
        self._authorize(call, self._request(call, Action.RECORD_LIST), ref=ref)
        size = page_size or 100
        rows = self.store.list_records(ref, size + 1, page_token or None)
        next_token = rows[size - 1].record_id if len(rows) > size else ""
        return rows[:size], next_token

    def update_record(
        self,
        call: CallContext,
        record_id: str,
        fields: Mapping[str, str],
        content_type: str = "",
        content: bytes | ContentStream | None = None,
        expected_version: int = 0,
    ) -> tuple[str, int]:
        """Write a new complete version and shred the previous one; returns (id, version)."""
        self._check_record_id(record_id)
        if expected_version < 0:
            raise InvalidArgument("expected_version must be >= 0")
        self._authorize(call, self._request(call, Action.RECORD_UPDATE), record_id=record_id)
        meta = self.store.get_meta(record_id)
        if meta is None:
            raise NotFound()
        if expected_version and expected_version != meta.version:
            raise FailedPrecondition("record is not at the expected version")
        self._check_payload(self._category(meta.category), fields, content)
        self._authorize(
            call,
            self._request(call, Action.RECORD_UPDATE, category=meta.category),
            ref=meta.subject_ref,
            record_id=record_id,
        )
        wrapped = self.store.get_subject_key(meta.subject_ref)
        if wrapped is None:
            raise NotFound()
        subject_key, key_kind = self._write_key(meta.subject_ref, meta.category)
        new = self._seal_version(
            meta.subject_ref,
            subject_key,
            record_id,
            meta.version + 1,
            meta.category,
            fields,
            content_type,
            content,
            key_kind,
        )
        try:
            old = self.store.replace_version(
                new,
                meta.version,
                self.clock.now(),
                self._audit(
                    call,
                    Action.RECORD_UPDATE,
                    "allow",
                    f"version {new.version}",
                    ref=meta.subject_ref,
                    record_id=record_id,
                ),
            )
        except Exception:
            self._remove_blobs(ShreddedRecord(record_id, (new.blob_ref,) if new.blob_ref else ()))
            raise
        self._remove_blobs(old)
        return record_id, new.version

    def delete_record(self, call: CallContext, record_id: str) -> None:
        """Crypto-shred a record (every version): keys, payloads, row, then blobs. Under a legal
        hold the deletion is recorded, carried out at the hold's release, and the caller gets
        FAILED_PRECONDITION."""
        self._check_record_id(record_id)
        self._authorize(call, self._request(call, Action.RECORD_DELETE), record_id=record_id)
        meta = self.store.get_meta(record_id)
        deferred = None
        if meta is not None:
            deferred = PendingDeletion(
                new_record_id(self.clock.now()),
                "record",
                meta.subject_ref,
                record_id,
                call.principal.name,
                self.clock.now(),
            )
        shredded = self.store.delete_record(
            record_id,
            self._audit(call, Action.RECORD_DELETE, "allow", "shredded", record_id=record_id),
            deferred,
        )
        if shredded is None:
            raise NotFound()
        self._remove_blobs(shredded)

    def erase_subject(self, call: CallContext, subject_id: str) -> bool:
        """Destroy the subject key: every record unreadable at once, O(1). Rows purge later.

        The erasure is first appended to the erasure ledger (outside the record store; if that
        fails nothing is erased), so a restored backup cannot bring the subject back. Under a
        legal hold the erasure is recorded and carried out at the hold's release."""
        self._check_subject_id(subject_id)
        ref = self.subject_ref(subject_id)
        self._authorize(call, self._request(call, Action.SUBJECT_ERASE), ref=ref)
        deferred = PendingDeletion(
            new_record_id(self.clock.now()), "subject", ref, "", call.principal.name, self.clock.now()
        )
        state = self.store.subject_state(ref)
        if (
            self.ledger is not None
            and state not in (None, SubjectState.ERASED)
            and not self.store.subject_held(ref)
        ):
            self.record_erasure(ref)
        erased = self.store.erase_subject(
            ref,
            self.clock.now(),
            self._audit(call, Action.SUBJECT_ERASE, "allow", "subject key destroyed", ref=ref),
            deferred,
        )
        self.cache.forget_subject(ref)
        return erased

    def record_erasure(self, ref: bytes) -> None:
        """Append the erasure to the ledger, with every root version that could have wrapped
        the subject key (for deletion verification)."""
        if self.ledger is None:
            return
        versions = [v.version for v in self.provider.versions() if v.state is not KeyState.DESTROYED]
        self.ledger.append(self.signing_key, ref, self.clock.now(), versions)

    def verify_deletions(self, call: CallContext | None = None) -> list[ErasureCheck]:
        """Verify every erasure of the ledger (a job run, audited; VERIFIED ones certified)."""
        if call is not None:
            self._authorize(call, self._request(call, Action.DELETION_VERIFY))
        if self.ledger is None:
            return []
        entries = self.ledger.entries(self.signing_key.public_key())
        results = verify_erasures(
            entries,
            self.store,
            self.provider.versions(),
            self.pseudonym,
            self.cache.holds_subject,
            self.cache_max_age,
            self.signing_key,
            self.clock.now(),
            self._legal_until,
            self._orphan_blob_count(),
        )
        counts = {s: sum(r.status == s for r in results) for s in ("VERIFIED", "PENDING", "FAILED")}
        self.store.append_audit(
            AuditRow(
                at=self.clock.now(),
                principal=call.principal.name if call else "operator-cli",
                action="job.verify_deletion",
                decision="allow",
                reason=", ".join(f"{k.lower()} {v}" for k, v in counts.items()),
            )
        )
        for r in results:
            if r.status == "FAILED":
                self._security_event("deletion_verification_failed")
        return results

    def _activity(self, ref: bytes, dormant: bool) -> None:
        """Reads are activity too, but recorded at most once a day per subject (a write per read
        would halve read throughput); reading a dormant subject (a reactivation purpose) brings
        it back at once."""
        today = int(self.clock.now() // 86400)
        with self._touch_lock:
            if not dormant and self._touched.get(ref) == today:
                return
            self._touched[ref] = today
            if len(self._touched) > 100_000:
                self._touched.clear()
        if self.store.touch_subject(ref, self.clock.now()):
            self.store.append_audit(
                AuditRow(
                    at=self.clock.now(),
                    principal="vault-service",
                    action="job.dormancy",
                    decision="allow",
                    reason="reactivated",
                    subject_pseudonym=self.pseudonym(ref),
                )
            )

    def sweep_dormancy(
        self, dormant_after: float, notice: float, destroy_after: float, batch: int = 500
    ) -> dict[str, int]:
        """Dormancy (a job run, audited): record a notice event ``notice`` seconds before a
        subject goes dormant, make subjects inactive for ``dormant_after`` dormant, and erase
        those dormant for ``destroy_after`` more (through the erasure ledger; held ones wait)."""
        now = self.clock.now()
        counts = {"notices": 0, "dormant": 0, "destroyed": 0}

        def each(state: SubjectState, before: float) -> Iterator[bytes]:
            after = b""
            while page := self.store.inactive_subjects(state, before, batch, after):
                yield from page
                after = page[-1]

        def job(ref: bytes, reason: str) -> AuditRow:
            return AuditRow(
                at=now,
                principal="vault-service",
                action="job.dormancy",
                decision="allow",
                reason=reason,
                subject_pseudonym=self.pseudonym(ref),
            )

        for ref in each(SubjectState.ACTIVE, now - (dormant_after - notice)):
            event = EventRow("dormancy_notice", now, self.shares._event_mac(ref, "dormancy_notice", now))
            if self.store.record_event(ref, event, job(ref, "dormancy notice due")):
                counts["notices"] += 1
        for ref in each(SubjectState.ACTIVE, now - dormant_after):
            if self.store.set_subject_state(ref, SubjectState.DORMANT, now, job(ref, "dormant")):
                counts["dormant"] += 1
        for ref in each(SubjectState.DORMANT, now - dormant_after - destroy_after):
            if self.store.subject_held(ref):
                continue
            self.record_erasure(ref)
            self.store.erase_subject(ref, now, job(ref, "dormant too long: erased"))
            self.cache.forget_subject(ref)
            counts["destroyed"] += 1
        return counts

    def _orphan_blob_count(self) -> int:
        """Blobs no record points to (deletion verification)."""
        refs = list(self.blobs.list_refs())
        known: set[str] = set()
        for i in range(0, len(refs), 500):
            known |= self.store.referenced_blobs(refs[i : i + 500])
        return len(refs) - len(known)

    def _legal_until(self, ref: bytes) -> float | None:
        """When the subject's last record under legal retention is due (None if none)."""
        ends = [
            created + self.policy.categories[cat].retention.period
            for cat, created in self.store.legal_records(ref)
            if cat in self.policy.categories
        ]
        return max(ends) if ends else None

    def replay_erasure_ledger(self) -> int:
        """Erase again every ledger subject the database knows as live (a restored backup).
        Runs at start-up, before the server serves. Held subjects are left to their hold's
        release. Returns how many subjects were erased again."""
        if self.ledger is None:
            return 0
        redone = 0
        for entry in self.ledger.entries(self.signing_key.public_key()):
            ref = bytes.fromhex(entry.subject_ref)
            state = self.store.subject_state(ref)
            if state in (None, SubjectState.ERASED) or self.store.subject_held(ref):
                continue
            self.store.erase_subject(
                ref,
                self.clock.now(),
                AuditRow(
                    at=self.clock.now(),
                    principal="vault-service",
                    action="subject.erase",
                    decision="allow",
                    reason="erasure ledger replay (restored backup?)",
                    subject_pseudonym=self.pseudonym(ref),
                ),
            )
            self._security_event("erasure_replayed")
            redone += 1
        return redone

    # consent, restriction, export -------------------------------------------------------------
    def grant_consent(
        self,
        call: CallContext,
        subject_id: str,
        purpose: str,
        categories: Mapping[str, frozenset[str] | None],
        valid_from: float,
        valid_until: float | None,
        evidence_reference: str,
        grantee_principal: str = "",
        grantee_role: str = "",
    ) -> Grant:
        """Record a subject's consent (for a principal or a role) over categories (and, per
        category, optionally only some fields), valid in [valid_from, valid_until)."""
        self._check_subject_id(subject_id)
        spec = self.policy.purposes.get(purpose)
        if spec is None:
            raise InvalidArgument("unknown purpose")
        if bool(grantee_principal) == bool(grantee_role):
            raise InvalidArgument("name exactly one grantee: a principal or a role")
        if grantee_principal and grantee_principal not in self.policy.principals:
            raise InvalidArgument("unknown grantee principal")
        if grantee_role and grantee_role not in self.policy.roles:
            raise InvalidArgument("unknown grantee role")
        if not categories:
            raise InvalidArgument("a grant covers at least one category")
        fields: dict[str, frozenset[str]] = {}
        for name, subset in categories.items():
            if name not in spec.categories:
                raise InvalidArgument(f"category {name!r} is not part of the purpose")
            if subset:
                if not subset <= self.policy.categories[name].fields:
                    raise InvalidArgument(f"unknown field in category {name!r}")
                fields[name] = subset
        if valid_until is not None and valid_until <= valid_from:
            raise InvalidArgument("valid_until must be after valid_from")
        if not EVIDENCE.match(evidence_reference):
            raise InvalidArgument("evidence_reference: 1-128 characters, no spaces")
        ref = self.subject_ref(subject_id)
        self._authorize(call, self._request(call, Action.CONSENT_GRANT), ref=ref)
        grant = Grant(
            grant_id=new_record_id(self.clock.now()),
            purpose=purpose,
            categories=frozenset(categories),
            fields=fields,
            valid_from=valid_from,
            valid_until=valid_until,
            grantee_principal=grantee_principal,
            grantee_role=grantee_role,
            evidence_reference=evidence_reference,
        )
        self._ensure_subject(ref)
        self.store.insert_grant(
            ref,
            grant,
            call.principal.name,
            self.clock.now(),
            self._audit(
                call, Action.CONSENT_GRANT, "allow", f"grant {grant.grant_id}", purpose=purpose, ref=ref
            ),
        )
        return grant

    def _ensure_subject(self, ref: bytes) -> None:
        """A subject may get grants before its first record: create it (with its key)."""
        if self.store.subject_state(ref) is None:
            self._subject_key_for_write(ref)

    def revoke_consent(self, call: CallContext, grant_id: str) -> Grant:
        """Revoke a grant: the next read in every process is denied."""
        if not is_record_id(grant_id):
            raise InvalidArgument("grant_id is malformed")
        self._authorize(call, self._request(call, Action.CONSENT_REVOKE))
        done = self.store.revoke_grant(
            grant_id,
            self.clock.now(),
            self._audit(call, Action.CONSENT_REVOKE, "allow", f"grant {grant_id}"),
        )
        if done is None:
            raise NotFound()
        return done[1]

    def list_consents(self, call: CallContext, subject_id: str) -> list[Grant]:
        """Every grant of a subject, revoked and expired ones included."""
        self._check_subject_id(subject_id)
        ref = self.subject_ref(subject_id)
        self._authorize(call, self._request(call, Action.CONSENT_LIST), ref=ref)
        return self.store.subject_grants(ref)

    def set_restriction(self, call: CallContext, subject_id: str, restricted: bool) -> bool:
        """Restrict processing (reads denied except for restriction-exempt purposes; storage and
        corrections still accepted) or lift the restriction. False if the subject is unknown."""
        self._check_subject_id(subject_id)
        ref = self.subject_ref(subject_id)
        self._authorize(call, self._request(call, Action.SUBJECT_RESTRICT), ref=ref)
        state = SubjectState.RESTRICTED if restricted else SubjectState.ACTIVE
        return self.store.set_subject_state(
            ref,
            state,
            self.clock.now(),
            self._audit(
                call,
                Action.SUBJECT_RESTRICT,
                "allow",
                "restricted" if restricted else "restriction lifted",
                ref=ref,
            ),
        )

    def export_subject(self, call: CallContext, subject_id: str, purpose: str) -> Iterator[RecordView]:
        """Every record of a subject, decrypted, for a subject-rights purpose (access and
        portability). Records of categories the purpose does not cover are left out."""
        self._check_subject_id(subject_id)
        self._check_purpose(purpose)
        ref = self.subject_ref(subject_id)
        self._authorize(call, self._request(call, Action.SUBJECT_EXPORT, purpose=purpose), ref=ref)
        after = ""
        while True:
            page = self.store.list_records(ref, 100, after or None)
            for meta in page:
                stored = self.store.get_record(meta.record_id, grants_for=purpose)
                if stored is None:
                    continue
                decision = decide(
                    self._request(
                        call,
                        Action.SUBJECT_EXPORT,
                        purpose=purpose,
                        category=stored.meta.category,
                        subject_restricted=False,
                        grants=stored.grants,
                    ),
                    self.policy,
                )
                if decision.allowed:
                    yield self._release(
                        call, Action.SUBJECT_EXPORT, purpose, stored, decision, include_content=True
                    )
            if len(page) < 100:
                return
            after = page[-1].record_id

    # legal holds and retention -----------------------------------------------------------------
    def place_hold(
        self, call: CallContext, subject_id: str, reason: str, case_reference: str, record_id: str = ""
    ) -> HoldRow:
        """Block every deletion path for a subject (or one of its records) until released."""
        self._check_subject_id(subject_id)
        if not reason or len(reason) > 200 or not EVIDENCE.match(case_reference):
            raise InvalidArgument("a hold needs a reason (<= 200 chars) and a case reference")
        if record_id:
            self._check_record_id(record_id)
        ref = self.subject_ref(subject_id)
        self._authorize(call, self._request(call, Action.HOLD_PLACE), ref=ref)
        if record_id:
            meta = self.store.get_meta(record_id)
            if meta is None or meta.subject_ref != ref:
                raise NotFound()
        hold = HoldRow(
            new_record_id(self.clock.now()),
            ref,
            record_id,
            reason,
            case_reference,
            call.principal.name,
            self.clock.now(),
        )
        self.store.place_hold(
            hold,
            self._audit(
                call,
                Action.HOLD_PLACE,
                "allow",
                f"hold {hold.hold_id}: {case_reference}",
                ref=ref,
                record_id=record_id,
            ),
        )
        return hold

    def list_holds(self, call: CallContext, subject_id: str) -> list[HoldRow]:
        """A subject's holds, released ones included."""
        self._check_subject_id(subject_id)
        ref = self.subject_ref(subject_id)
        self._authorize(call, self._request(call, Action.HOLD_LIST), ref=ref)
        return self.store.list_holds(ref)

    def release_hold(self, call: CallContext, hold_id: str) -> tuple[HoldRow, int]:
        """Release a hold, then carry out the deletions asked for during it that no other
        active hold still blocks. Returns the hold and how many deletions were carried out."""
        if not is_record_id(hold_id):
            raise InvalidArgument("hold_id is malformed")
        self._authorize(call, self._request(call, Action.HOLD_RELEASE))
        hold = self.store.release_hold(
            hold_id,
            self.clock.now(),
            self._audit(call, Action.HOLD_RELEASE, "allow", f"hold {hold_id} released"),
        )
        if hold is None:
            raise NotFound()
        done = 0
        for pending in self.store.pending_deletions(hold.subject_ref):
            job = AuditRow(
                at=self.clock.now(),
                principal=pending.requested_by,
                action="record.delete" if pending.kind == "record" else "subject.erase",
                decision="allow",
                reason=f"carried out at release of hold {hold_id}",
                subject_pseudonym=self.pseudonym(hold.subject_ref),
                record_id=pending.record_id,
            )
            try:
                if pending.kind == "record":
                    self._remove_blobs(self.store.delete_record(pending.record_id, job))
                else:
                    self.store.erase_subject(pending.subject_ref, self.clock.now(), job)
                    self.cache.forget_subject(pending.subject_ref)
            except LegalHoldActive:
                continue  # another hold still applies: stays pending
            self.store.drop_pending(pending.pending_id)
            done += 1
        return hold, done

    def sweep_retention(self, batch: int = 200, dry_run: bool = False) -> list[tuple[str, str]]:
        """Shred every record whose retention rule says it is due (server time), in batches;
        returns [(record_id, rule)] shredded (or, with ``dry_run``, that would be). Idempotent
        and safe with several processes sweeping at once: each deletion is its own transaction
        and a record already gone is skipped. Held records are left for the hold's release."""
        now = self.clock.now()
        done: list[tuple[str, str]] = []
        for category in self.policy.categories.values():
            rule = category.retention
            if rule.kind not in ("after_creation", "after_event"):
                continue
            after = ""
            while True:
                rows = self.store.due_records(
                    category.name,
                    now - rule.period if rule.kind == "after_creation" else None,
                    rule.event,
                    after,
                    batch,
                    include_erased=rule.survives_erasure,
                )
                if not rows:
                    break
                after = rows[-1][0]
                label = f"{rule.kind} {rule.event} {rule.period / 86400:g}d".replace("  ", " ")
                for record_id, ref, event_at in rows:
                    if rule.kind == "after_event" and not self._event_due(ref, rule, event_at, now):
                        continue
                    if dry_run:
                        done.append((record_id, label))
                        continue
                    try:
                        shredded = self.store.delete_record(
                            record_id,
                            AuditRow(
                                at=now,
                                principal="vault-service",
                                action="job.retention",
                                decision="allow",
                                reason=f"retention {label}",
                                subject_pseudonym=self.pseudonym(ref),
                                record_id=record_id,
                            ),
                        )
                    except LegalHoldActive:
                        continue
                    if shredded is not None:
                        self._remove_blobs(shredded)
                        done.append((record_id, label))
                        fault_point("retention.after_delete")
        return done

    def retention_forecast(self, horizon: float, batch: int = 500) -> list[tuple[float, str]]:
        """When the retention sweep will shred each record due within ``horizon`` seconds from
        now: [(due time, category)], overdue ones (due time <= now) included. Held records are
        left out (a hold stops the clock); so are after-event records whose event has not
        happened (no date is known). Reads only."""
        now = self.clock.now()
        out: list[tuple[float, str]] = []
        for category in self.policy.categories.values():
            rule = category.retention
            if rule.kind not in ("after_creation", "after_event"):
                continue
            after = ""
            while True:
                rows = self.store.due_records(
                    category.name,
                    now + horizon - rule.period if rule.kind == "after_creation" else None,
                    rule.event,
                    after,
                    batch,
                    include_erased=rule.survives_erasure,
                )
                if not rows:
                    break
                after = rows[-1][0]
                for record_id, ref, _ in rows:
                    if rule.kind == "after_creation":
                        meta = self.store.get_meta(record_id)
                        born = meta.created_at if meta is not None else None
                    else:
                        try:
                            born = self.shares.event_time(ref, rule.event)
                        except IntegrityError:
                            born = now - rule.period  # an edited event is due now (see _event_due)
                    if born is not None and born + rule.period <= now + horizon:
                        out.append((born + rule.period, category.name))
        return sorted(out)

    def _event_due(self, ref: bytes, rule: RetentionRule, event_at: float | None, now: float) -> bool:
        try:
            at = self.shares.event_time(ref, rule.event)
        except IntegrityError:
            return True  # an edited event must not keep data longer: due now
        return at is not None and now >= at + rule.period

    def query_audit(
        self, call: CallContext, query: AuditQuery, page_size: int = 0, page_token: str = ""
    ) -> tuple[list[AuditEntry], str]:
        """A page of audit entries matching ``query`` (auditor role); the query is audited too."""
        if not 0 <= page_size <= MAX_AUDIT_PAGE:
            raise InvalidArgument(f"page_size must be between 0 and {MAX_AUDIT_PAGE}")
        if page_token and not page_token.isdigit():
            raise InvalidArgument("page_token is malformed")
        if query.decision not in ("", "allow", "deny"):
            raise InvalidArgument("decision must be 'allow' or 'deny'")
        self._authorize(call, self._request(call, Action.AUDIT_QUERY))
        self.store.append_audit(self._audit(call, Action.AUDIT_QUERY, "allow", "audit queried"))
        size = page_size or 100
        rows = self.store.query_audit(query, int(page_token or 0), size + 1)
        return rows[:size], str(rows[size - 1].seq) if len(rows) > size else ""

    def sweep_blobs(self, min_age_seconds: float) -> int:
        """Remove what interrupted or crashed uploads left: partial writes, and blobs no record
        points to (a crash between the blob write and the record insert), once older than
        ``min_age_seconds`` so that uploads in progress are spared. A job run, audited."""
        removed = self.blobs.remove_partials(min_age_seconds)
        cutoff = self.clock.now() - min_age_seconds
        batch: list[str] = []

        def flush() -> int:
            orphans = set(batch) - self.store.referenced_blobs(batch)
            for ref in orphans:
                self.blobs.delete(ref)
            batch.clear()
            return len(orphans)

        for ref in self.blobs.list_refs():
            born = record_id_time(ref.split(".v")[0])
            if born is not None and born <= cutoff:
                batch.append(ref)
                if len(batch) >= 500:
                    removed += flush()
        removed += flush()
        if removed:
            self.store.append_audit(
                AuditRow(
                    at=self.clock.now(),
                    principal="vault-service",
                    action="job.blob_sweep",
                    decision="allow",
                    reason=f"{removed} partial or orphan blobs removed",
                )
            )
        return removed

    def purge_erased(self, batch: int = 500) -> int:
        """Remove the record rows and blobs of erased subjects (already unreadable); returns the
        number purged in this call (each non-empty run is audited as a job run)."""
        done = self.store.purge_erased(batch)
        for shredded in done:
            self._remove_blobs(shredded)
        if done:
            self.store.append_audit(
                AuditRow(
                    at=self.clock.now(),
                    principal="vault-service",
                    action="job.purge",
                    decision="allow",
                    reason=f"{len(done)} records of erased subjects",
                )
            )
        return len(done)
