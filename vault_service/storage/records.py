"""The RecordStore interface: encrypted records, wrapped keys, subjects, idempotency and audit rows.

The store only ever sees ciphertext, wrapped keys and pseudonymous subject references (a keyed hash
of the caller's subject id). Wrapped keys live in their own tables apart from the ciphertext.

Correctness rules every implementation keeps (the contract suite checks them):

- a read returns a record only if, in the same query, its subject is not erased and both the subject
  key and the record's current data key still exist: caches never decide;
- erasing a subject deletes one key row and flips one state row: O(1) in the record count; the record
  rows are purged later by :meth:`RecordStore.purge_erased`;
- every write takes an optional :class:`AuditRow` and writes it in the same transaction, so a
  mutation without its audit entry never commits;
- vendor errors become :class:`~vault_service.errors.Unavailable` (database down or locked) or
  :class:`~vault_service.errors.Internal`; no vendor text escapes.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence

from vault_service.audit.model import AuditEntry, AuditRow
from vault_service.errors import VaultError
from vault_service.key_providers.base import WrappedKey
from vault_service.policy.model import Grant
from vault_service.storage.inventory import KeyInventory

# The row types live in storage.rows; they are re-exported here because callers have always
# imported them from this module (``from vault_service.storage.records import RecordMeta``).
from vault_service.storage.rows import (
    AuditQuery,
    BreachQuery,
    BreachRows,
    EventRow,
    HoldRow,
    Idempotency,
    NewRecord,
    NoticeRow,
    PendingDeletion,
    ReadOnceClaim,
    RecordMeta,
    RecordOwner,
    RecordVersion,
    RootVersionState,
    ShareRow,
    ShreddedRecord,
    StoredRecord,
    SubjectKeyRow,
    SubjectState,
    VersionChange,
)
from vault_service.storage.search_index import SearchIndex
from vault_service.storage.tree_nodes import TreeNodes

__all__ = [
    "AuditQuery",
    "BreachQuery",
    "BreachRows",
    "EventRow",
    "HoldRow",
    "Idempotency",
    "NewRecord",
    "PendingDeletion",
    "RecordMeta",
    "RecordStore",
    "RecordVersion",
    "RootVersionState",
    "ShareRow",
    "ShreddedRecord",
    "StoredRecord",
    "SubjectKeyRow",
    "SubjectState",
]


class RecordStore(KeyInventory, SearchIndex, TreeNodes):
    """Persistent state of the vault (see the module docstring for the rules)."""

    @abc.abstractmethod
    def migrate(self) -> int:
        """Apply pending schema migrations; returns the schema version."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release connections."""

    @abc.abstractmethod
    def ping(self) -> None:
        """Raise Unavailable if the database cannot answer."""

    # service keys ------------------------------------------------------------------------------
    @abc.abstractmethod
    def get_service_key(self, name: str) -> WrappedKey | None:
        """A wrapped service-level key (e.g. the subject index key)."""

    @abc.abstractmethod
    def put_service_key_if_absent(
        self, name: str, wrapped: WrappedKey, now: float, *, provider: str
    ) -> WrappedKey:
        """Store ``wrapped`` unless a key of that name exists; returns the stored one (race-safe).
        RootVersionRetired if ``wrapped`` is under a root version of ``provider`` that is
        retired, marked or being destroyed (checked in the same transaction)."""

    # subjects ----------------------------------------------------------------------------------
    @abc.abstractmethod
    def subject_state(self, subject_ref: bytes) -> SubjectState | None:
        """The subject's state, or None if the vault has never seen it."""

    def get_subject_key(self, subject_ref: bytes) -> WrappedKey | None:
        """The wrapped subject key, or None if absent, erased or separated (dormant)."""
        return self.get_subject_keys([subject_ref]).get(subject_ref)

    @abc.abstractmethod
    def get_subject_keys(self, subject_refs: Sequence[bytes]) -> dict[bytes, WrappedKey]:
        """:meth:`get_subject_key` of many subjects in one read (those with none are absent)."""

    @abc.abstractmethod
    def get_separated_key(self, subject_ref: bytes) -> WrappedKey | None:
        """The subject key while it is separated (wrapped under the dormant context), else None."""

    @abc.abstractmethod
    def make_dormant(
        self,
        subject_ref: bytes,
        before: float,
        now: float,
        audit: AuditRow | None,
        separated: tuple[WrappedKey, WrappedKey] | None,
        *,
        provider: str,
    ) -> bool:
        """Make an active subject with no activity since ``before`` dormant, audited; with
        ``separated`` (old, new), in the same transaction replace its key row ``old`` by ``new``
        (wrapped under the dormant context) and mark it separated. False, changing nothing, if
        the subject is not active, was active since ``before``, or its key row no longer holds
        ``old``. RootVersionRetired if ``new``'s version of ``provider`` was closed."""

    @abc.abstractmethod
    def reactivate_subject(
        self,
        subject_ref: bytes,
        old: WrappedKey,
        new: WrappedKey,
        now: float,
        audit: AuditRow | None,
        *,
        provider: str,
    ) -> bool:
        """Bring a separated subject back: its key row ``old`` becomes ``new`` (wrapped under the
        live context) and not separated, the subject active with activity ``now`` and its notice
        withdrawn, audited, in one transaction. False, changing nothing, if the row no longer
        holds ``old`` separated (rotated, reactivated or erased meanwhile)."""

    @abc.abstractmethod
    def create_subject_key(
        self, subject_ref: bytes, wrapped: WrappedKey, now: float, *, provider: str
    ) -> WrappedKey:
        """Create the subject with this key unless it exists; returns the stored key (race-safe).
        Raises FailedPrecondition if the subject was erased, RootVersionRetired if ``wrapped`` is
        under a root version of ``provider`` that is retired, marked or being destroyed."""

    @abc.abstractmethod
    def erase_subject(
        self,
        subject_ref: bytes,
        now: float,
        audit: AuditRow | None,
        deferred: PendingDeletion | None = None,
    ) -> bool:
        """Destroy the subject key and mark the subject erased (O(1) in its records; its consent
        grants and business events go in the same transaction); False if nothing to erase.
        Under an active legal hold: records ``deferred`` (if given) and raises LegalHoldActive,
        in one transaction that changes nothing else."""

    @abc.abstractmethod
    def purge_erased(self, limit: int) -> list[ShreddedRecord]:
        """Delete up to ``limit`` record rows of erased subjects (already unreadable; their
        grants and events went with the erasure); returns the records' blob refs."""

    # records -----------------------------------------------------------------------------------
    @abc.abstractmethod
    def insert_record(
        self, new: RecordVersion, now: float, idempotency: Idempotency | None, audit: AuditRow | None
    ) -> str:
        """Insert a new record (version 1). With an idempotency key already used for the same
        request, returns the earlier record id and writes nothing; for a different request raises
        AlreadyExists. Raises FailedPrecondition if the subject is erased or has no key."""

    @abc.abstractmethod
    def insert_records(self, items: Sequence[NewRecord], now: float) -> list[str | VaultError]:
        """Each as :meth:`insert_record` (its id, or the VaultError that undid its writes only),
        in one transaction; any other failure rolls it all back and raises."""

    @abc.abstractmethod
    def get_record(self, record_id: str, grants_for: str | None = None) -> StoredRecord | None:
        """The current version, or None if absent, shredded, or its subject erased. With
        ``grants_for`` (a purpose), the subject's grants for it, read in the same transaction."""

    @abc.abstractmethod
    def get_records(self, ids: Sequence[str], grants_for: str | None = None) -> dict[str, StoredRecord]:
        """:meth:`get_record` of each id in one read transaction: those found, by id."""

    @abc.abstractmethod
    def set_subject_state(
        self, subject_ref: bytes, state: SubjectState, now: float, audit: AuditRow | None
    ) -> bool:
        """Move a live subject to ``state`` (active, restricted, dormant); False if it is unknown,
        erased or separated (a separated subject comes back only by :meth:`reactivate_subject`)."""

    @abc.abstractmethod
    def subject_grants(self, subject_ref: bytes, purpose: str | None = None) -> list[Grant]:
        """A subject's grants (all, or for one purpose), revoked ones included."""

    @abc.abstractmethod
    def insert_grant(
        self, subject_ref: bytes, grant: Grant, granted_by: str, now: float, audit: AuditRow | None
    ) -> None:
        """Store a grant. FailedPrecondition if the subject is unknown or erased."""

    @abc.abstractmethod
    def grant_state(self, grant_id: str) -> tuple[bytes, bool] | None:
        """(subject_ref, revoked) of a grant; None if unknown."""

    @abc.abstractmethod
    def plaintext_evidence(self, after: str, limit: int) -> list[tuple[str, bytes, str]]:
        """(grant_id, subject_ref, evidence) of grants whose evidence reference an older version
        stored in plaintext, by grant id after ``after``."""

    @abc.abstractmethod
    def seal_evidence(self, grant_id: str, sealed: bytes) -> None:
        """Replace a grant's plaintext evidence reference by its sealed form ("" if none)."""

    @abc.abstractmethod
    def revoke_grant(
        self, grant_id: str, now: float, audit: AuditRow | None
    ) -> tuple[bytes, Grant] | None:
        """Revoke (idempotently); returns the subject ref and grant, None if unknown."""

    @abc.abstractmethod
    def get_meta(self, record_id: str) -> RecordMeta | None:
        """Metadata of a live record (same visibility rules as :meth:`get_record`)."""

    @abc.abstractmethod
    def set_record_restriction(
        self, record_id: str, restricted: bool, now: float, audit: AuditRow | None
    ) -> bool:
        """Restrict processing of one live record (or lift it), audited in the same transaction;
        the mark survives updates and goes with the record. False if the record is not live or
        already in that state."""

    @abc.abstractmethod
    def list_records(self, subject_ref: bytes, limit: int, after: str | None) -> list[RecordMeta]:
        """A page of a live subject's records ordered by id, starting after ``after``."""

    @abc.abstractmethod
    def replace_version(
        self,
        new: RecordVersion,
        expected_version: int,
        now: float,
        audit: AuditRow | None,
        deferred: PendingDeletion,
    ) -> VersionChange:
        """Write ``new`` (version ``expected_version + 1``) and destroy the old version's data key
        and payloads; under an active legal hold keep them and record ``deferred`` for the
        release instead. An update is activity (a dormant subject becomes active). Raises
        FailedPrecondition if the record changed since ``expected_version``."""

    @abc.abstractmethod
    def delete_version(
        self, record_id: str, version: int, audit: AuditRow | None
    ) -> ShreddedRecord | None:
        """Destroy one kept (not current) version's data key and payloads; None if it is gone.
        LegalHoldActive while a hold applies."""

    @abc.abstractmethod
    def record_owner(self, record_id: str) -> RecordOwner | None:
        """Whose the record is and which versions exist, whatever its state; None if absent."""

    @abc.abstractmethod
    def consume_read_once(
        self,
        record_id: str,
        version: int,
        now: float,
        audits: tuple[AuditRow, AuditRow],
        deferred: PendingDeletion,
    ) -> ReadOnceClaim | None:
        """Claim version ``version`` of a read-once record (the one the caller decrypted) for
        its one release, in one transaction with the audit entries of the release and of the
        destruction: destroy it (data keys, payloads, row), or under a legal hold mark it
        consumed (no read finds it again) and record ``deferred`` (the destruction's entry then
        says it was deferred). None if it is consumed, gone, or at another version already."""

    @abc.abstractmethod
    def referenced_blobs(self, refs: Sequence[str]) -> set[str]:
        """Which of ``refs`` a record still points to (its current version, or a version kept
        under a hold)."""

    @abc.abstractmethod
    def delete_record(
        self, record_id: str, audit: AuditRow | None, deferred: PendingDeletion | None = None
    ) -> ShreddedRecord | None:
        """Crypto-shred: delete the data keys, payloads and row; None if it did not exist. Under
        an active legal hold (on the record or its subject): records ``deferred`` (if given) and
        raises LegalHoldActive."""

    # legal holds and retention -----------------------------------------------------------------
    @abc.abstractmethod
    def place_hold(self, hold: HoldRow, audit: AuditRow | None) -> None:
        """Store a hold. FailedPrecondition if the subject is unknown or erased."""

    @abc.abstractmethod
    def release_hold(self, hold_id: str, now: float, audit: AuditRow | None) -> HoldRow | None:
        """Release (idempotently); None if unknown."""

    @abc.abstractmethod
    def plaintext_hold_terms(self, after: str, limit: int) -> list[tuple[str, bytes, bytes]]:
        """(hold_id, subject_ref, JSON of reason and case reference) of holds an older version
        stored in plaintext, by hold id after ``after``."""

    @abc.abstractmethod
    def seal_hold_terms(self, hold_id: str, sealed: bytes) -> None:
        """Replace a hold's plaintext reason and case reference by their sealed form."""

    @abc.abstractmethod
    def list_holds(self, subject_ref: bytes) -> list[HoldRow]:
        """A subject's holds, released ones included."""

    @abc.abstractmethod
    def legal_records(self, subject_ref: bytes) -> list[tuple[str, float]]:
        """(category, created_at) of the subject's records kept under legal retention."""

    @abc.abstractmethod
    def touch_subject(self, subject_ref: bytes, now: float) -> bool:
        """Record activity: last_activity = now, a dormant subject becomes active again (unless
        separated: see :meth:`reactivate_subject`) and its dormancy notice is withdrawn. Returns
        True if a dormant subject was reactivated."""

    @abc.abstractmethod
    def inactive_subjects(
        self, state: SubjectState, before: float, limit: int, after: bytes = b""
    ) -> list[bytes]:
        """Subjects in ``state`` whose last activity (or creation) is at or before ``before``,
        ordered by reference, after ``after``."""

    @abc.abstractmethod
    def due_notices(self, after: bytes, limit: int) -> list[NoticeRow]:
        """A page (by subject reference, after ``after``) of the dormancy notices due: active
        subjects whose ``dormancy_notice`` event was recorded since their last activity."""

    @abc.abstractmethod
    def subject_residue(self, subject_ref: bytes) -> tuple[bool, int]:
        """What is left of a subject in the database: (its key row still exists, its record rows
        count, their blind index rows included), whatever its state (deletion verification)."""

    @abc.abstractmethod
    def record_residue(self, record_id: str) -> tuple[int, int, int]:
        """What is left of a record in the database: its (record and blind index, data key,
        payload) rows."""

    @abc.abstractmethod
    def pending_deletions(self, subject_ref: bytes) -> list[PendingDeletion]:
        """Deletions recorded during holds on this subject, oldest first."""

    @abc.abstractmethod
    def drop_pending(self, pending_id: str) -> None:
        """Forget a pending deletion (after it was carried out, or found moot)."""

    @abc.abstractmethod
    def unheld_pending(self, limit: int) -> list[PendingDeletion]:
        """Pending deletions that no active hold covers any more (a release whose carrying-out
        was interrupted), oldest first."""

    @abc.abstractmethod
    def ensure_pending(self, pending: PendingDeletion) -> None:
        """Record ``pending`` unless the same deletion (kind, subject, record, version) is."""

    @abc.abstractmethod
    def holds_cover(self, subject_ref: bytes, record_id: str = "") -> bool:
        """Whether an active hold applies to the record (on it or its subject), or with no
        ``record_id`` to the subject (on it or any of its records)."""

    @abc.abstractmethod
    def release_stale_holds(
        self, subject_ref: bytes, record_id: str, before: float, audit: AuditRow | None
    ) -> int:
        """Mark released every active hold :meth:`holds_cover` finds that was placed at or
        before ``before`` (a ledger replay found them in a restored backup, older than a destruction
        carried out without them); returns how many."""

    @abc.abstractmethod
    def mark_consumed(self, record_id: str, now: float) -> None:
        """Mark a read-once record consumed (released once: no read finds it again) without
        destroying it (a hold keeps it)."""

    @abc.abstractmethod
    def due_records(
        self,
        category: str,
        created_before: float | None,
        event: str,
        after: str,
        limit: int,
        include_erased: bool = False,
    ) -> list[tuple[str, bytes, float | None]]:
        """Live, unheld records of ``category`` that may be due: created before the given time,
        or (with ``event``) whose subject recorded that event. Returns (record_id, subject_ref,
        event time or None), ordered by id."""

    # shares and events -------------------------------------------------------------------------
    @abc.abstractmethod
    def record_event(self, subject_ref: bytes, event: EventRow, audit: AuditRow | None) -> bool:
        """Record a business event once (the first time stands); False if it already existed.
        FailedPrecondition if the subject is unknown or erased."""

    @abc.abstractmethod
    def get_event(self, subject_ref: bytes, name: str) -> EventRow | None:
        """A subject's event by name."""

    @abc.abstractmethod
    def insert_share(self, share: ShareRow, wrapped_key: bytes, audit: AuditRow | None) -> None:
        """Store a share and its wrapped key. FailedPrecondition if the subject is erased."""

    @abc.abstractmethod
    def get_share(self, share_id: str) -> ShareRow | None:
        """The share with its wrapped key (None once destroyed), its subject's wrapped key and
        state, read in one transaction. None if the row is gone."""

    @abc.abstractmethod
    def share_key_exists(self, share_id: str) -> bool:
        """Whether the share's key still exists (a ledger replay's check)."""

    @abc.abstractmethod
    def list_shares(
        self, subject_ref: bytes | None = None, recipient: str | None = None
    ) -> list[ShareRow]:
        """Shares of a subject or received by a recipient (metadata; no keys)."""

    @abc.abstractmethod
    def revoke_share(self, share_id: str, now: float, audit: AuditRow | None) -> ShareRow | None:
        """Mark revoked and destroy the share key in one transaction (None if unknown)."""

    @abc.abstractmethod
    def share_ids(self, after: str, limit: int) -> list[str]:
        """Share ids in order, after ``after`` (the sweeper pages through every share)."""

    @abc.abstractmethod
    def purge_shares(self, share_ids: Sequence[str]) -> int:
        """Delete the keys and rows of these shares; returns how many rows went."""

    # audit -------------------------------------------------------------------------------------
    @abc.abstractmethod
    def append_audit(self, audit: AuditRow) -> None:
        """Write one audit row on its own (for reads and denials)."""

    @abc.abstractmethod
    def append_audits(self, audits: Sequence[AuditRow]) -> None:
        """Write several audit rows in one transaction (all or none: a search's page)."""

    @abc.abstractmethod
    def audit_rows(self, limit: int = 1000) -> list[AuditRow]:
        """The latest audit rows, oldest first (for tests and the auditor)."""

    @abc.abstractmethod
    def audit_entries(self, after_seq: int, limit: int) -> list[AuditEntry]:
        """Chained entries with seq > ``after_seq``, in order (for verification)."""

    @abc.abstractmethod
    def witness_unwitnessed(self, limit: int, audit_for: Callable[[str, bytes, int], AuditRow]) -> int:
        """In one transaction: find up to ``limit`` records no audit entry witnesses a version
        of (written before the witness was a column) and append ``audit_for(record_id,
        subject_ref, version)`` for each, the records locked against a concurrent update.
        Returns how many."""

    @abc.abstractmethod
    def audit_head(self) -> AuditEntry | None:
        """The last entry of the chain."""

    @abc.abstractmethod
    def audit_entry(self, seq: int) -> AuditEntry | None:
        """One entry."""

    @abc.abstractmethod
    def audit_first_seq_since(self, at: float) -> int | None:
        """The first entry written at or after ``at`` (None if none)."""

    @abc.abstractmethod
    def delete_audit_before(self, seq: int) -> int:
        """Prune entries with a smaller seq; returns how many."""

    @abc.abstractmethod
    def query_audit(self, query: AuditQuery, after_seq: int, limit: int) -> list[AuditEntry]:
        """Entries matching every set field of ``query``, seq > ``after_seq``, in order."""

    @abc.abstractmethod
    def breach_scope(self, query: BreachQuery) -> BreachRows:
        """The releases of ``query``'s window grouped per subject, and the oldest retained entry,
        in one read (the index of releases by time makes it a range scan of the window)."""
