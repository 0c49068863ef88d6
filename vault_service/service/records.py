"""Records: put, update, delete and list (reads are in :mod:`.reads`).

A put or an update seals a complete version under a fresh data key, wrapped by the subject key
(or, for records kept by law after an erasure, the subject's legal key); payloads are
c2sp.org/chunked-encryption messages bound to (subject, record, version, category, field); content
goes to the blob store, streamed in constant memory. The version and its audit entry (which
witnesses the version, for rollback detection) commit in one transaction. An update destroys the
previous version in that transaction, unless a legal hold applies: then the old version is kept
until the hold's release. A delete goes through the one shred path (:mod:`..lifecycle.shredding`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import replace

from vault_service.clock import Clock
from vault_service.crypto import (
    DataKey,
    SubjectKey,
    seal_payload,
    seal_stream,
    seal_value,
    wrap_key,
)
from vault_service.crypto.context import record_context, subject_id_context
from vault_service.crypto.derive import idempotency_ref, request_digest, subject_ref
from vault_service.errors import FailedPrecondition, InvalidArgument, NotFound, VaultError
from vault_service.faults import fault_point
from vault_service.ids import new_record_id
from vault_service.key_hierarchy import KeyHierarchy
from vault_service.key_providers.base import WrappedKey
from vault_service.lifecycle.shredding import Requester, Shredder
from vault_service.policy import Action, Policy
from vault_service.policy.decide import consented
from vault_service.policy.model import CONTENT_FIELD, Category
from vault_service.service import validate
from vault_service.service.access import Access
from vault_service.service.batches import PutItem, batch_item_error, batch_size
from vault_service.service.search import index_spec, index_tokens
from vault_service.service.types import CallContext, ContentStream, Limits
from vault_service.storage import (
    BlobStore,
    Idempotency,
    NewRecord,
    RecordMeta,
    RecordStore,
    RecordVersion,
    SubjectState,
)
from vault_service.storage.blobs import blob_ref as version_blob_ref
from vault_service.storage.rows import KeyKind, ShreddedRecord


class Records:
    """Writes and lists of records (see the module docstring)."""

    def __init__(
        self,
        access: Access,
        keys: KeyHierarchy,
        store: RecordStore,
        blobs: BlobStore,
        shredder: Shredder,
        policy: Policy,
        clock: Clock,
        limits: Limits,
    ) -> None:
        self.access = access
        self.keys = keys
        self.store = store
        self.blobs = blobs
        self.shredder = shredder
        self.policy = policy
        self.clock = clock
        self.limits = limits

    # sealing one version -------------------------------------------------------------------------
    def _seal(
        self,
        ref: bytes,
        key: SubjectKey,
        kind: KeyKind,
        record_id: str,
        version: int,
        category: str,
        fields: Mapping[str, str],
        content_type: str,
        content: bytes | ContentStream | None,
    ) -> RecordVersion:
        """Encrypt a complete version; its content (if any) is written to the blob store now."""
        data_key = DataKey.generate()
        wrapped = wrap_key(key, data_key, record_context("data-key", ref, record_id, version, category))
        payloads = {
            name: seal_payload(
                data_key,
                record_context("payload", ref, record_id, version, category, name),
                value.encode(),
            )
            for name, value in fields.items()
        }
        blob_ref = None
        length = None
        if content is not None:
            blob_ref = version_blob_ref(record_id, version)
            context = record_context("payload", ref, record_id, version, category, CONTENT_FIELD)
            if isinstance(content, ContentStream):
                # encrypted chunk by chunk as the blob store consumes it: constant memory
                limited = content.limited(self.limits.max_object_bytes)
                self.blobs.put(blob_ref, seal_stream(data_key, context, limited))
                length = content.received
            else:
                self.blobs.put(blob_ref, [seal_payload(data_key, context, content)])
                length = len(content)
        data_key.destroy()
        cat = self.policy.categories[category]
        tokens = index_tokens(self.keys, cat, fields)
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
            key_kind=kind,
            index_tokens=tokens,
            index_spec=index_spec(cat),
        )

    def _unwritten(self, new: RecordVersion) -> None:
        """Remove the blob of a version that was not (or not newly) stored."""
        self.shredder.remove_blobs(
            ShreddedRecord(new.record_id, (new.blob_ref,) if new.blob_ref else ())
        )

    def _digest(
        self,
        ref: bytes,
        category: str,
        fields: Mapping[str, str],
        content_type: str,
        content: bytes | ContentStream | None,
    ) -> bytes:
        """What an idempotent retry must match (a streamed upload is identified by its header:
        its content is not known before the write)."""
        if isinstance(content, ContentStream):
            digest = b"stream"
        else:
            digest = hashlib.sha256(content).digest() if content is not None else b"-"
        parts = [ref, category.encode(), content_type.encode(), digest]
        for name in sorted(fields):
            parts += [name.encode(), fields[name].encode()]
        return request_digest(self.keys.index_key, parts)

    def _require_store_consent(
        self, call: CallContext, action: Action, ref: bytes, category: Category, record_id: str = ""
    ) -> None:
        """PERMISSION_DENIED (audited) unless the consent the category's ``store_consent`` names
        is in force, from every party the purpose names (whoever its grantee): a session is
        recorded only with the consent of both. Checked before anything is sealed."""
        if not category.store_consent:
            return
        purpose = self.policy.purposes[category.store_consent]
        grants = self.store.subject_grants(ref, purpose.name)
        if not consented(grants, None, purpose, self.clock.now(), category.name):
            raise self.access.refuse(
                call, action, "no consent to store", purpose=purpose.name, ref=ref, record_id=record_id
            )

    # operations ----------------------------------------------------------------------------------
    def put(
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
        item = PutItem(subject_id, category, fields, content_type, content, idempotency_key)
        new = self._prepare(call, item)
        try:
            stored_id = self.store.insert_record(
                new.version, self.clock.now(), new.idempotency, new.audit
            )
        except Exception:
            self._unwritten(new.version)
            raise
        return self._stored(new, stored_id)

    def put_many(
        self, call: CallContext, items: Sequence[PutItem]
    ) -> list[tuple[str, int] | VaultError]:
        """Store many new records, each exactly as :meth:`put`, in one transaction: per item its
        (record_id, version) or the VaultError that refused it (see :mod:`.batches` for the
        errors that fail the whole batch instead: then nothing is stored)."""
        batch_size(len(items))
        outcomes: list[tuple[str, int] | VaultError | None] = [None] * len(items)
        prepared: list[tuple[int, NewRecord]] = []
        # every item's subject reference once, and their keys in one read (the single call
        # derives and reads its own)
        refs = {i.subject_id: subject_ref(self.keys.index_key, i.subject_id) for i in items}
        keys = self.store.get_subject_keys(list(refs.values()))
        known = {subject_id: (ref, keys.get(ref)) for subject_id, ref in refs.items()}
        try:
            for n, item in enumerate(items):
                try:
                    prepared.append((n, self._prepare(call, item, known)))
                except VaultError as exc:
                    outcomes[n] = batch_item_error(exc)
            stored = self.store.insert_records([p for _, p in prepared], self.clock.now())
        except BaseException:
            for _, new in prepared:
                self._unwritten(new.version)
            raise
        for (n, new), result in zip(prepared, stored, strict=True):
            if isinstance(result, VaultError):
                self._unwritten(new.version)
                outcomes[n] = result
            else:
                outcomes[n] = self._stored(new, result)
        done = [o for o in outcomes if o is not None]
        assert len(done) == len(items)  # every item answered, in its place
        return done

    def _prepare(
        self,
        call: CallContext,
        item: PutItem,
        known: Mapping[str, tuple[bytes, WrappedKey | None]] | None = None,
    ) -> NewRecord:
        """Everything a put does before its one write transaction: validation, authorization,
        consent, the sealed version (its content already in the blob store) and its audit entry.
        ``known``: by subject id, the reference and live wrapped key (if any) a batch has
        derived and read for its items."""
        validate.subject_id(item.subject_id)
        cat = validate.category(self.policy, item.category)
        validate.payload(self.limits, cat, item.fields, item.content)
        validate.content_type(item.content_type)
        validate.idempotency_key(item.idempotency_key)
        ref, wrapped = (known or {}).get(item.subject_id) or (
            subject_ref(self.keys.index_key, item.subject_id),
            None,
        )
        request = self.access.request(call, Action.RECORD_PUT, category=item.category)
        self.access.check(call, request, ref=ref)
        self._require_store_consent(call, Action.RECORD_PUT, ref, cat)
        key, kind = self.keys.key_for_write(ref, cat.retention.survives_erasure, wrapped)
        record_id = new_record_id(self.clock.now())
        new = self._seal(
            ref, key, kind, record_id, 1, item.category, item.fields, item.content_type, item.content
        )
        # the id, sealed under the subject key, so that notices can name the person (it dies
        # with the subject key); the first one written stands
        subject_key = key if kind is KeyKind.SUBJECT else self.keys.subject_key_for_write(ref, wrapped)
        sealed_id = seal_value(subject_key, subject_id_context(ref), item.subject_id.encode())
        new = replace(new, sealed_subject_id=sealed_id)
        fault_point("put.after_wrap")  # keys wrapped, payloads sealed, blob written; no commit
        idem = None
        if item.idempotency_key:
            idem = Idempotency(
                call.principal.name,
                idempotency_ref(self.keys.index_key, item.idempotency_key),
                self._digest(ref, item.category, item.fields, item.content_type, item.content),
            )
        audit = self.access.row(
            call, Action.RECORD_PUT, "stored", ref=ref, record_id=record_id, witnessed_version=1
        )
        return NewRecord(new, idem, audit)

    def _stored(self, new: NewRecord, stored_id: str) -> tuple[str, int]:
        """After a put's commit: an idempotent retry's new blob goes (the first write stands)."""
        fault_point("put.after_commit")  # committed; the caller has not heard back
        if stored_id != new.version.record_id:
            self._unwritten(new.version)
        return stored_id, 1

    def update(
        self,
        call: CallContext,
        record_id: str,
        fields: Mapping[str, str],
        content_type: str = "",
        content: bytes | ContentStream | None = None,
        expected_version: int = 0,
    ) -> tuple[str, int]:
        """Write a new complete version and shred the previous one (kept until the release of a
        legal hold that applies); returns (id, version)."""
        validate.record_id(record_id)
        if expected_version < 0:
            raise InvalidArgument("expected_version must be >= 0")
        self.access.allow(call, Action.RECORD_UPDATE, record_id=record_id)
        meta = self.store.get_meta(record_id)
        if meta is None:
            raise NotFound()
        if expected_version and expected_version != meta.version:
            raise FailedPrecondition("record is not at the expected version")
        cat = validate.category(self.policy, meta.category)
        validate.payload(self.limits, cat, fields, content)
        validate.content_type(content_type)
        ref = meta.subject_ref
        request = self.access.request(call, Action.RECORD_UPDATE, category=meta.category)
        self.access.check(call, request, ref=ref, record_id=record_id)
        if self.store.subject_state(ref) in (None, SubjectState.ERASED):  # kept by law
            raise FailedPrecondition("subject was erased; its records kept by law are read-only")
        self._require_store_consent(call, Action.RECORD_UPDATE, ref, cat, record_id)
        key, kind = self.keys.key_for_write(ref, cat.retention.survives_erasure)
        version = meta.version + 1
        new = self._seal(
            ref, key, kind, record_id, version, meta.category, fields, content_type, content
        )
        audit = self.access.row(
            call,
            Action.RECORD_UPDATE,
            f"version {version}",
            ref=ref,
            record_id=record_id,
            witnessed_version=version,
        )
        try:
            self.shredder.replace_version(
                new, meta.version, audit, Requester(call.principal.name, "update")
            )
        except Exception:
            self._unwritten(new)
            raise
        return record_id, version

    def delete(self, call: CallContext, record_id: str) -> None:
        """Crypto-shred a record (every version): keys, payloads, row, then blobs. Under a legal
        hold the deletion is recorded and carried out at the hold's release; the caller gets
        FAILED_PRECONDITION."""
        validate.record_id(record_id)
        self.access.allow(call, Action.RECORD_DELETE, record_id=record_id)
        audit = self.access.row(call, Action.RECORD_DELETE, "shredded", record_id=record_id)
        if self.shredder.record(record_id, audit, Requester(call.principal.name, "delete")) is None:
            raise NotFound()

    def restrict(self, call: CallContext, record_id: str, restricted: bool) -> bool:
        """Restrict processing of one record while a correction or deletion request on it is
        in progress (seed 003: "will not use the personal information requested until the
        correction or deletion is completed"), or lift it. Meanwhile only restriction-exempt
        purposes read it (every read path decides by :func:`~vault_service.policy.decide.
        state_denial`); updates (the correction), deletion, holds and retention go on, and the
        subject's other records are untouched. False if it already was in that state;
        NOT_FOUND if the record is not live."""
        validate.record_id(record_id)
        self.access.allow(call, Action.RECORD_RESTRICT, record_id=record_id)
        meta = self.store.get_meta(record_id)
        if meta is None:
            raise NotFound()
        reason = "record restricted" if restricted else "record restriction lifted"
        audit = self.access.row(
            call, Action.RECORD_RESTRICT, reason, ref=meta.subject_ref, record_id=record_id
        )
        if self.store.set_record_restriction(record_id, restricted, self.clock.now(), audit):
            return True
        if self.store.get_meta(record_id) is None:  # shredded meanwhile
            raise NotFound()
        return False

    def list(
        self, call: CallContext, subject_id: str, page_size: int = 0, page_token: str = ""
    ) -> tuple[list[RecordMeta], str]:
        """A page of a subject's record metadata; returns (records, next_page_token)."""
        validate.subject_id(subject_id)
        validate.page(page_size, page_token, validate.MAX_PAGE_SIZE)
        ref = subject_ref(self.keys.index_key, subject_id)
        self.access.allow(call, Action.RECORD_LIST, ref=ref)
        size = page_size or 100
        rows = self.store.list_records(ref, size + 1, page_token or None)
        next_token = rows[size - 1].record_id if len(rows) > size else ""
        return rows[:size], next_token
