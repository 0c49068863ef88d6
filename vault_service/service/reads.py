"""Reads: THE one release step that every read path goes through.

GetRecord, DownloadContent, ExportSubject and share reads all fetch a record's current version
(:meth:`Reads.fetch` or their own listing), decide it (:meth:`Reads.decide`: the policy, the
subject's state and consent, in the data the fetch read in one transaction) and release it with
:meth:`Reads.release`, which:

1. refuses a read that would narrow a read-once record (FAILED_PRECONDITION: a read-once record
   is released whole, once: every field the purpose may see, and its content);
2. decrypts what the decision allows (an integrity failure is DATA_LOSS, and nothing is released
   or destroyed);
3. puts the release on the audit record before anything leaves (fail closed), with the record's
   category and the names of the fields it hands out (never their values); for a read-once
   record, in the same transaction that destroys it (:meth:`Shredder.consume_read_once`: the
   first release wins; another read finds nothing);
4. records the subject's activity (dormancy);
5. hands out the fields, and the content inline or as a stream of decrypted pieces (constant
   memory; only the chunks a range covers are decrypted).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace

from vault_service import security_events
from vault_service.audit.model import AuditRow
from vault_service.clock import Clock
from vault_service.crypto import DataKey, PayloadReader, open_payload
from vault_service.crypto.context import Context, record_context
from vault_service.crypto.derive import purpose_pseudonym
from vault_service.errors import (
    DataLoss,
    FailedPrecondition,
    IntegrityError,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    VaultError,
)
from vault_service.key_hierarchy import KeyHierarchy
from vault_service.lifecycle.dormancy import Activity
from vault_service.lifecycle.integrity import Integrity
from vault_service.lifecycle.shredding import Requester, Shredder
from vault_service.policy import Action, Policy, decide
from vault_service.policy.decide import Decision, needs_subject_state
from vault_service.policy.deidentify import scrub_text
from vault_service.policy.model import CONTENT_FIELD
from vault_service.service import validate
from vault_service.service.access import Access
from vault_service.service.batches import GetItem, ReleaseBatch, batch_item_error, batch_size
from vault_service.service.types import STREAM_PIECE, Ask, CallContext, RecordView
from vault_service.storage import BlobStore, RecordStore, StoredRecord, SubjectState
from vault_service.storage.rows import KeyKind, ReadOnceClaim, RecordMeta

#: the audited reason of a read-once record's destruction by the read that released it
READ_ONCE = "read-once: destroyed"


def _payload_context(meta: RecordMeta, field: str) -> Context:
    m = meta
    return record_context("payload", m.subject_ref, m.record_id, m.version, m.category, field)


@dataclass
class Release:
    """A released record: its view, and its content pieces if they were asked for as a stream."""

    view: RecordView
    pieces: Iterator[tuple[int, bytes]] | None = None


class Reads:
    """Fetches, decides and releases records (see the module docstring)."""

    def __init__(
        self,
        access: Access,
        keys: KeyHierarchy,
        store: RecordStore,
        blobs: BlobStore,
        shredder: Shredder,
        activity: Activity,
        policy: Policy,
        clock: Clock,
        integrity: Integrity | None = None,
    ) -> None:
        self.access = access
        self.keys = keys
        self.store = store
        self.blobs = blobs
        self.shredder = shredder
        self.activity = activity
        self.policy = policy
        self.clock = clock
        #: withholds every release once the vault's logs fail a check (lifecycle/integrity.py)
        self.integrity = integrity or Integrity()

    # fetch and decide ----------------------------------------------------------------------------
    def missing(self, call: CallContext, action: Action, purpose: str, record_id: str) -> Exception:
        """The audited answer for a record the caller may not see as existing: NOT_FOUND, or for
        purposes that depend on per-subject state (consent) PERMISSION_DENIED (no oracle)."""
        self.store.append_audit(
            self.access.row(
                call, action, "not found", decision="deny", purpose=purpose, record_id=record_id
            )
        )
        return PermissionDenied() if needs_subject_state(purpose, self.policy) else NotFound()

    def fetch(
        self,
        call: CallContext,
        record_id: str,
        purpose: str,
        action: Action,
        batch: ReleaseBatch | None = None,
    ) -> StoredRecord:
        """The record's current version with the grants ``purpose`` needs, once the caller may
        read for ``purpose`` at all. (A record kept by law after its subject's erasure is still
        found; :meth:`decide` lets only purposes with retained access read it.) In a ``batch``,
        a read-once record an earlier item released is gone, as after that item's single call."""
        if batch is None or purpose not in batch.allowed:
            self.access.check(
                call, self.access.request(call, action, purpose=purpose), record_id=record_id
            )
        if batch is not None:
            batch.allowed.add(purpose)  # the caller may read for it: the same for every item
        if batch is None:
            stored = self.store.get_record(record_id, grants_for=purpose)
        elif record_id in batch.claimed:
            stored = None
        else:
            stored = batch.fetched.get((purpose, record_id))
            if stored is not None and stored.subject_state is SubjectState.DORMANT:
                # an earlier item may have woken the subject: read it as its single call would
                stored = self.store.get_record(record_id, grants_for=purpose)
        if stored is None:
            raise self.missing(call, action, purpose, record_id)
        return stored

    def decide(
        self,
        call: CallContext,
        action: Action,
        purpose: str,
        stored: StoredRecord,
        wanted: frozenset[str] | None,
        *,
        quiet: bool = False,
    ) -> Decision:
        """The policy decision for releasing ``wanted`` of ``stored`` under ``purpose``. A denial
        is audited and raised, unless ``quiet`` (an export skips what it may not release)."""
        state = stored.subject_state
        request = self.access.request(
            call,
            action,
            purpose=purpose,
            category=stored.meta.category,
            fields=wanted,
            subject_restricted=state is SubjectState.RESTRICTED,
            record_restricted=stored.meta.restricted,
            subject_erased=state is SubjectState.ERASED,
            subject_dormant=state is SubjectState.DORMANT,
            grants=stored.grants,
        )
        if quiet:
            return decide(request, self.policy)
        return self.access.check(
            call, request, ref=stored.meta.subject_ref, record_id=stored.meta.record_id
        )

    # the release step ----------------------------------------------------------------------------
    def release(
        self,
        call: CallContext,
        action: Action,
        purpose: str,
        stored: StoredRecord,
        decision: Decision,
        ask: Ask,
        reason: str = "",
        batch: ReleaseBatch | None = None,
    ) -> Release:
        """Release what ``decision`` allows of ``stored`` (see the module docstring). In a
        ``batch``, the audit entry joins the batch's one commit, and a read-once record's
        destruction waits for it (:mod:`.batches`); the caller hands nothing out before."""
        self.integrity.check_release()  # before anything is decrypted or audited
        meta = stored.meta
        visible = decision.fields
        if ask.stream and stored.blob_ref is None:
            raise NotFound("the record has no content")
        read_once = self.policy.categories[meta.category].retention.kind == "read_once"
        if read_once and ask.narrowable:
            self._refuse_narrowing(call, action, purpose, stored, decision, ask)
        if stored.subject_state is SubjectState.DORMANT:
            stored = self._wake(call, action, purpose, stored)
        data_key = self.keys.data_key(stored)
        try:
            fields, content = self._open(stored, data_key, visible, ask)
        except BaseException:
            data_key.destroy()
            raise
        pseudonym = ""
        if decision.scrub:
            fields = {k: scrub_text(v) for k, v in fields.items()}
        if decision.deidentified:
            pseudonym = purpose_pseudonym(self.keys.index_key, purpose, meta.subject_ref)
        how = "de-identified" if decision.deidentified else "scrubbed" if decision.scrub else ""
        said = (f"{reason} ({how})" if how else reason) if reason else f"released {how}".strip()
        streamed = ask.stream and CONTENT_FIELD in visible
        released = frozenset(fields) | (
            {CONTENT_FIELD} if content is not None or streamed else frozenset()
        )
        audit = self.access.row(
            call,
            action,
            said,
            purpose=purpose,
            ref=meta.subject_ref,
            record_id=meta.record_id,
            category=meta.category,
            released=released,
        )
        claim: ReadOnceClaim | None = None
        try:
            if read_once and batch is not None:  # destroyed once the batch's releases commit
                batch.claimed.add(meta.record_id)
                batch.after_commit(
                    lambda: self.shredder.remove_blobs(
                        self._consume(call, action, purpose, stored, audit).shredded
                    )
                )
            elif read_once:
                claim = self._consume(call, action, purpose, stored, audit)
            elif batch is not None:
                batch.audits.append(audit)
            else:
                self.store.append_audit(audit)
        except BaseException:
            data_key.destroy()
            raise
        self.activity.read(meta.subject_ref, stored.subject_state is SubjectState.DORMANT)
        view = RecordView(meta, fields, content, pseudonym)
        if not ask.stream or CONTENT_FIELD not in visible:
            data_key.destroy()
            if claim is not None:
                self.shredder.remove_blobs(claim.shredded)
            return Release(view)
        return Release(view, self._pieces(stored, data_key, ask, claim))

    def _consume(
        self, call: CallContext, action: Action, purpose: str, stored: StoredRecord, audit: AuditRow
    ) -> ReadOnceClaim:
        """A read-once record's release and destruction, on the record together (the first
        release wins: another read finds nothing)."""
        meta = stored.meta
        destroyed = replace(
            audit,
            action=Action.RECORD_DELETE.value,
            reason=READ_ONCE,
            released_fields=None,  # the destruction releases nothing
            role=None,
        )
        claim = self.shredder.consume_read_once(
            meta.record_id,
            meta.subject_ref,
            meta.version,  # the version decrypted: an update meanwhile wins
            (audit, destroyed),
            Requester(call.principal.name, "read-once"),
        )
        if claim is None:  # another read released it first
            raise self.missing(call, action, purpose, meta.record_id)
        return claim

    def _wake(
        self, call: CallContext, action: Action, purpose: str, stored: StoredRecord
    ) -> StoredRecord:
        """A read allowed while the subject is dormant (a reactivation purpose) brings it back
        before anything is decrypted: a separated key moves back under the live context, and
        the record is read with that key (whoever moved it)."""
        ref = stored.meta.subject_ref
        self.activity.reactivate(ref)
        if stored.key_kind is not KeyKind.SUBJECT:
            return stored
        live = self.store.get_subject_key(ref)
        if live is None:  # erased meanwhile
            raise self.missing(call, action, purpose, stored.meta.record_id)
        return replace(stored, subject_key=live)

    def _refuse_narrowing(
        self,
        call: CallContext,
        action: Action,
        purpose: str,
        stored: StoredRecord,
        decision: Decision,
        ask: Ask,
    ) -> None:
        """FAILED_PRECONDITION (audited) if this read would release less of a read-once record
        than its purpose may see: the rest would be destroyed unreleased."""
        whole = self.decide(call, action, purpose, stored, None, quiet=True).fields
        has = set(stored.payloads) | ({CONTENT_FIELD} if stored.blob_ref else set())
        could = whole & has
        released = set(stored.payloads) & decision.fields
        if (ask.content or ask.stream) and stored.blob_ref and CONTENT_FIELD in decision.fields:
            released.add(CONTENT_FIELD)
        if ask.ranged or released != could:
            self.store.append_audit(
                self.access.row(
                    call,
                    action,
                    "read-once record asked for in part",
                    decision="deny",
                    purpose=purpose,
                    ref=stored.meta.subject_ref,
                    record_id=stored.meta.record_id,
                    category=stored.meta.category,
                )
            )
            raise FailedPrecondition(
                "a read-once record is released whole, once: ask for every field it has and its "
                "content, without a range"
            )

    def decrypt_fields(self, stored: StoredRecord, names: frozenset[str]) -> dict[str, str]:
        """Fields of a stored version decrypted for the vault's own use (the blind index
        backfill), never released: no audit, no activity. DATA_LOSS if they fail to
        authenticate."""
        data_key = self.keys.data_key(stored)
        try:
            return self._open(stored, data_key, names, Ask())[0]
        finally:
            data_key.destroy()

    def _open(
        self, stored: StoredRecord, data_key: DataKey, visible: frozenset[str], ask: Ask
    ) -> tuple[dict[str, str], bytes | None]:
        """The visible fields (and the inline content, if asked for), decrypted."""
        meta = stored.meta
        try:
            fields = {
                name: open_payload(data_key, _payload_context(meta, name), ct).decode()
                for name, ct in stored.payloads.items()
                if name in visible
            }
            content = None
            if ask.content and CONTENT_FIELD in visible and stored.blob_ref:
                try:
                    sealed = self.blobs.get(stored.blob_ref)
                except FileNotFoundError:
                    raise IntegrityError() from None
                content = open_payload(data_key, _payload_context(meta, CONTENT_FIELD), sealed)
        except IntegrityError:
            security_events.emit("integrity_failure", what="payload")
            raise DataLoss() from None
        return fields, content

    def _pieces(
        self, stored: StoredRecord, data_key: DataKey, ask: Ask, claim: ReadOnceClaim | None
    ) -> Iterator[tuple[int, bytes]]:
        """The content (or its range) decrypted piece by piece: (offset, bytes). The data key is
        destroyed, and a read-once record's blob removed, when the stream ends however it ends."""
        meta = stored.meta
        assert stored.blob_ref is not None
        try:
            try:
                blob = self.blobs.open(stored.blob_ref)
            except FileNotFoundError:
                security_events.emit("integrity_failure", what="payload")
                raise DataLoss() from None
            try:
                reader = PayloadReader(
                    data_key, _payload_context(meta, CONTENT_FIELD), blob, blob.length
                )
                end = (
                    reader.length if ask.length is None else min(reader.length, ask.offset + ask.length)
                )
                position = ask.offset
                while position < end:
                    data = reader.read(position, min(ask.piece, end - position))
                    if not data:
                        break
                    yield position, data
                    position += len(data)
            except IntegrityError:
                security_events.emit("integrity_failure", what="payload")
                raise DataLoss() from None
            finally:
                blob.close()
        finally:
            data_key.destroy()
            if claim is not None:
                self.shredder.remove_blobs(claim.shredded)

    # the read calls ------------------------------------------------------------------------------
    def get_record(
        self,
        call: CallContext,
        record_id: str,
        purpose: str,
        fields: frozenset[str] | None = None,
        include_content: bool = False,
        batch: ReleaseBatch | None = None,
    ) -> RecordView:
        """Decrypt a record's current version for ``purpose``: only the fields the purpose, the
        subject's consent and its restriction state allow; de-identified where the purpose says.
        In a ``batch`` (:meth:`get_many`), the view may be handed out only after the batch's
        commit."""
        validate.purpose(self.policy, purpose)
        validate.record_id(record_id)
        stored = self.fetch(call, record_id, purpose, Action.RECORD_GET, batch)
        ask = Ask(fields=fields, content=include_content, narrowable=True)
        decision = self.decide(call, Action.RECORD_GET, purpose, stored, ask.wanted())
        return self.release(call, Action.RECORD_GET, purpose, stored, decision, ask, batch=batch).view

    def get_many(self, call: CallContext, items: Sequence[GetItem]) -> list[RecordView | VaultError]:
        """Read many records, each exactly as :meth:`get_record`: per item its view or the
        VaultError that refused it. The releases' audit entries commit in one transaction
        before anything is returned (if it fails, the call fails: nothing is released); then
        the read-once records are destroyed, each in its own transaction, and one that cannot
        be (another read won, or the database failed) is that item's error, not the batch's:
        the others are on the record and destroyed."""
        batch_size(len(items))
        batch = ReleaseBatch.read(self.store, self.policy, items)
        outcomes: list[RecordView | VaultError] = []
        for n, item in enumerate(items):
            batch.item = n
            try:
                outcomes.append(
                    self.get_record(
                        call, item.record_id, item.purpose, item.fields, item.include_content, batch
                    )
                )
            except VaultError as exc:
                outcomes.append(batch_item_error(exc))
        if batch.audits:
            self.store.append_audits(batch.audits)  # before anything leaves: fail closed
        for n, consume in batch.deferred:
            try:
                consume()
            except VaultError as exc:
                outcomes[n] = exc
        return outcomes

    def download_content(
        self,
        call: CallContext,
        record_id: str,
        purpose: str,
        offset: int = 0,
        length: int = 0,
        piece: int = STREAM_PIECE,
    ) -> Iterator[tuple[int, bytes]]:
        """Stream a record's content (or a byte range: ``length`` 0 means to the end) for
        ``purpose``. The release is audited before the first byte leaves."""
        validate.purpose(self.policy, purpose)
        validate.record_id(record_id)
        if offset < 0 or length < 0:
            raise InvalidArgument("offset and length must be >= 0")
        stored = self.fetch(call, record_id, purpose, Action.RECORD_GET)
        ask = Ask(
            fields=frozenset(),
            stream=True,
            offset=offset,
            length=length or None,
            piece=piece,
            narrowable=True,
        )
        decision = self.decide(call, Action.RECORD_GET, purpose, stored, ask.wanted())
        size = stored.meta.content_length or 0
        reason = f"content bytes {offset}-{offset + length if length else size}"
        released = self.release(call, Action.RECORD_GET, purpose, stored, decision, ask, reason)
        assert released.pieces is not None
        yield from released.pieces
