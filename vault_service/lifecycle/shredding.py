"""Shredding: THE path by which a record, a record version or a share is destroyed, and the purge.

Every entry point that destroys one of them (DeleteRecord, retention, read-once, a hold's
release, an update's replaced version, share revocation and the share sweep, a consent's
revocation, ledger replay) calls :class:`Shredder`, which keeps the order that makes a
destruction survive crashes and restored backups:

1. the destruction ledger (:mod:`.ledger`) first, ``done``, or ``deferred`` if a legal hold
   applies (then the store records it for the hold's release);
2. the store: keys and rows in one transaction with the audit entry (a hold found only now makes
   the store defer it; the ledger then gets a ``deferred`` entry too);
3. blobs last (already unreadable: their data key is gone; a failed blob delete is left to the
   blob sweep).

The one exception to "ledger first" is the version an update replaces: an update that fails must
not destroy its record's current version at the next start, so that entry is written right after
the update commits (see docs/lifecycle.md).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from vault_service import security_events
from vault_service.audit.model import AuditRow, job_row
from vault_service.clock import Clock
from vault_service.crypto.signing import SigningKey
from vault_service.errors import LegalHoldActive
from vault_service.faults import fault_point
from vault_service.ids import new_record_id, record_id_time
from vault_service.lifecycle.ledger import (
    READ_ONCE_CAUSE,
    Destruction,
    DestructionLedger,
    Kind,
    State,
)
from vault_service.logs import fields
from vault_service.policy.model import Grant
from vault_service.storage import BlobStore, RecordStore, RecordVersion, ShreddedRecord
from vault_service.storage.blobs import blob_ref_parts
from vault_service.storage.rows import (
    PendingDeletion,
    PendingKind,
    ReadOnceClaim,
    ShareRow,
    VersionChange,
)

log = logging.getLogger("vault_service.shredding")

#: blobs are checked against the store in batches of this many
_BLOB_BATCH = 500


@dataclass(frozen=True)
class Requester:
    """Who asked for a destruction (the principal the pending deletion is recorded for)."""

    principal: str
    cause: str


class Shredder:
    """Destroys records, versions and shares (see the module docstring)."""

    def __init__(
        self,
        store: RecordStore,
        blobs: BlobStore,
        ledger: DestructionLedger,
        signer: Callable[[], SigningKey],
        clock: Clock,
    ) -> None:
        self.store = store
        self.blobs = blobs
        self.ledger = ledger
        self._signer = signer
        self.clock = clock

    # the ledger ----------------------------------------------------------------------------------
    def note(self, entries: Sequence[Destruction]) -> None:
        """Append destructions to the ledger (UNAVAILABLE if it cannot be written)."""
        self.ledger.append(self._signer(), entries)

    def _entry(
        self, kind: Kind, ref: bytes, held: bool, cause: str, object_id: str = "", version: int = 0
    ) -> Destruction:
        state = State.DEFERRED if held else State.DONE
        return Destruction(kind, ref, state, self.clock.now(), object_id, version, cause=cause)

    def pending(
        self, kind: PendingKind, ref: bytes, record_id: str, by: Requester, version: int = 0
    ) -> PendingDeletion:
        """A deletion to record for a hold's release."""
        now = self.clock.now()
        return PendingDeletion(new_record_id(now), kind, ref, record_id, by.principal, now, version)

    # records -------------------------------------------------------------------------------------
    def record(
        self, record_id: str, audit: AuditRow, by: Requester, *, record_pending: bool = True
    ) -> ShreddedRecord | None:
        """Crypto-shred a record (every version): None if it does not exist. Under a legal hold
        the deletion is recorded for the hold's release (unless ``record_pending`` is False: the
        caller already has one) and LegalHoldActive is raised."""
        owner = self.store.record_owner(record_id)
        if owner is None:
            return None
        ref = owner.subject_ref
        pending = self.pending(PendingKind.RECORD, ref, record_id, by) if record_pending else None
        return self._shred(record_id, ref, owner.held, audit, by.cause, pending)

    def _shred(
        self,
        record_id: str,
        ref: bytes,
        held: bool,
        audit: AuditRow,
        cause: str,
        pending: PendingDeletion | None,
    ) -> ShreddedRecord | None:
        self.note([self._entry(Kind.RECORD, ref, held, cause, record_id)])
        try:
            shredded = self.store.delete_record(record_id, audit, pending)
        except LegalHoldActive:
            if not held:
                self.note([self._entry(Kind.RECORD, ref, True, cause, record_id)])
            raise
        if held:  # the hold went meanwhile: it was carried out after all
            self.note([self._entry(Kind.RECORD, ref, False, cause, record_id)])
        self.remove_blobs(shredded)
        return shredded

    def due_records(
        self, due: Sequence[tuple[str, bytes]], audit: Callable[[str, bytes], AuditRow], cause: str
    ) -> list[str]:
        """Shred records a job found due (retention), each on its own (a crash leaves every
        record whole or gone); a record held meanwhile is skipped (its rule applies again after
        the release). Returns the ids shredded."""
        done: list[str] = []
        for record_id, ref in due:
            try:
                shredded = self._shred(record_id, ref, False, audit(record_id, ref), cause, None)
            except LegalHoldActive:
                continue
            if shredded is not None:
                done.append(record_id)
                fault_point("retention.after_delete")
        return done

    def consume_read_once(
        self,
        record_id: str,
        ref: bytes,
        version: int,
        audits: tuple[AuditRow, AuditRow],
        by: Requester,
    ) -> ReadOnceClaim | None:
        """Claim a read-once record for the one release it gets: its keys and row are destroyed
        now (the caller removes the blobs once the release is over), or under a legal hold it
        is marked consumed (never released again) and destroyed at the release. None if it was
        consumed or destroyed already (another read won)."""
        owner = self.store.record_owner(record_id)
        if owner is None:
            return None
        held = owner.held
        self.note([self._entry(Kind.RECORD, ref, held, READ_ONCE_CAUSE, record_id)])
        claim = self.store.consume_read_once(
            record_id,
            version,
            self.clock.now(),
            audits,
            self.pending(PendingKind.RECORD, ref, record_id, by),
        )
        if claim is not None and claim.held != held:  # a hold came or went meanwhile
            self.note([self._entry(Kind.RECORD, ref, claim.held, READ_ONCE_CAUSE, record_id)])
        if claim is None:
            now = self.store.record_owner(record_id)
            if now is not None and now.version != version:
                # an update won: its version stays (the read got nothing), and the ledger must
                # not destroy it at the next replay
                cancel = Destruction(
                    Kind.RECORD, ref, State.CANCELLED, self.clock.now(), record_id,
                    cause=READ_ONCE_CAUSE,
                )  # fmt: skip
                try:
                    self.note([cancel])
                except Exception:
                    security_events.emit("ledger_write_failed", record_id=record_id)
        return claim

    # versions ------------------------------------------------------------------------------------
    def replace_version(
        self, new: RecordVersion, expected_version: int, audit: AuditRow, by: Requester
    ) -> VersionChange:
        """Write ``new`` and destroy version ``expected_version`` in one transaction; under a
        legal hold the old version is kept until the release. Ledgered after the commit (see the
        module docstring)."""
        pending = self.pending(PendingKind.VERSION, new.subject_ref, new.record_id, by, expected_version)
        change = self.store.replace_version(new, expected_version, self.clock.now(), audit, pending)
        entry = self._entry(
            Kind.VERSION, new.subject_ref, change.kept, by.cause, new.record_id, expected_version
        )
        try:
            self.note([entry])
        except Exception:
            # the update is committed: report it, and let operators know the ledger missed it
            security_events.emit("ledger_write_failed", record_id=new.record_id)
        self.remove_blobs(change.shredded)
        return change

    def version(self, rid: str, ref: bytes, version: int, audit: AuditRow, by: Requester) -> bool:
        """Destroy a version an update replaced while a hold applied (at the hold's release, or
        at a replay); False if it is gone already. If it is the record's current version again
        (a restored backup lost the update), the record goes with it: what it shows was
        superseded. LegalHoldActive while a hold still applies."""
        owner = self.store.record_owner(rid)
        if owner is None or version not in owner.versions:
            return False
        if owner.version == version:
            return self.record(rid, audit, by, record_pending=False) is not None
        self.note([self._entry(Kind.VERSION, ref, owner.held, by.cause, rid, version)])
        shredded = self.store.delete_version(rid, version, audit)
        self.remove_blobs(shredded)
        return shredded is not None

    # shares and consent -------------------------------------------------------------------------
    def shares(self, doomed: Sequence[tuple[str, bytes]], cause: str) -> None:
        """Note the destruction of these shares' keys (share id, subject ref) before the store
        deletes them (the sweep deletes them in one batch)."""
        self.note([self._entry(Kind.SHARE, ref, False, cause, sid) for sid, ref in doomed])

    def revoke_share(
        self, share_id: str, ref: bytes, audit: AuditRow | None, cause: str
    ) -> ShareRow | None:
        """End a share now: ledgered, then its key deleted (with ``audit``, if any). None if
        the share is unknown."""
        self.shares([(share_id, ref)], cause)
        return self.store.revoke_share(share_id, self.clock.now(), audit)

    def revoke_consent(
        self, grant_id: str, ref: bytes, audit: AuditRow | None
    ) -> tuple[bytes, Grant] | None:
        """Withdraw a consent grant: ledgered (a restore must not bring it back), then revoked.
        None if the grant is unknown."""
        self.note([self._entry(Kind.CONSENT, ref, False, "revoked", grant_id)])
        return self.store.revoke_grant(grant_id, self.clock.now(), audit)

    # blobs and purge -----------------------------------------------------------------------------
    def remove_blobs(self, shredded: ShreddedRecord | None) -> None:
        """Delete the blobs of a shredded record (their key is gone; the blob sweep retries)."""
        if shredded is None:
            return
        for ref in shredded.blob_refs:
            try:
                self.blobs.delete(ref)
            except Exception:
                log.warning("blob delete deferred", extra=fields(record_id=shredded.record_id))

    def purge_erased(self, batch: int = 500) -> int:
        """Remove the record rows and blobs of erased subjects (already unreadable); returns the
        records purged in this call (a non-empty
        run is audited as a job run)."""
        done = self.store.purge_erased(batch)
        for shredded in done:
            self.remove_blobs(shredded)
        if done:
            self.store.append_audit(
                job_row("job.purge", f"{len(done)} records of erased subjects", self.clock.now())
            )
        return len(done)

    def orphan_blobs(self) -> int:
        """How many blobs no record points to (deletion verification)."""
        refs = list(self.blobs.list_refs())
        known: set[str] = set()
        for i in range(0, len(refs), _BLOB_BATCH):
            known |= self.store.referenced_blobs(refs[i : i + _BLOB_BATCH])
        return len(refs) - len(known)

    def sweep_blobs(self, min_age_seconds: float) -> int:
        """Remove what interrupted or crashed uploads left: partial writes, and blobs no record
        points to, once older than ``min_age_seconds`` (uploads in progress are spared). A job
        run, audited when it removed anything."""
        removed = self.blobs.remove_partials(min_age_seconds)
        cutoff = self.clock.now() - min_age_seconds
        batch: list[str] = []

        def flush() -> int:
            orphans = [r for r in set(batch) - self.store.referenced_blobs(batch) if not unborn(r)]
            for ref in orphans:
                self.blobs.delete(ref)
            batch.clear()
            return len(orphans)

        def unborn(ref: str) -> bool:
            """A blob of a version after its record's current one: an update in flight (its
            blob is written before its commit; the ref's age is the record's, not the blob's),
            or one that failed, whose next attempt writes the same ref; it goes with its
            record."""
            record_id, version = blob_ref_parts(ref)
            owner = self.store.record_owner(record_id) if version is not None else None
            return owner is not None and version is not None and version > owner.version

        for ref in self.blobs.list_refs():
            born = record_id_time(blob_ref_parts(ref)[0])
            if born is not None and born <= cutoff:
                batch.append(ref)
                if len(batch) >= _BLOB_BATCH:
                    removed += flush()
        removed += flush()
        if removed:
            self.store.append_audit(
                job_row("job.blob_sweep", f"{removed} partial or orphan blobs removed", self.clock.now())
            )
        return removed
