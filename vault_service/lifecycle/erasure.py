"""Erasure: THE one path by which a subject is erased, and the hold release that carries out what
holds deferred.

Every entry point goes through :meth:`Eraser.erase`: EraseSubject (withdrawal), a legal hold's
release, dormancy destruction and the ledger replay. The order:

1. the destruction ledger: ``done`` with every root version that could have wrapped the subject
   key, or ``deferred`` if a legal hold applies (if the ledger cannot be written, nothing is
   erased: UNAVAILABLE);
2. the store: the subject key row is deleted and the subject marked erased, O(1), with the audit
   entry; under a hold the store records the erasure for the release instead and LegalHoldActive
   is raised (a hold found only now gets a ``deferred`` ledger entry too);
3. this process's key cache (other processes' entries age out; deletion verification waits for
   that).

The rows and blobs are purged later by the purge job (already unreadable).
"""

from __future__ import annotations

from dataclasses import replace

from vault_service.audit.model import ALREADY_ERASED, NOTHING_TO_ERASE, AuditRow
from vault_service.clock import Clock
from vault_service.crypto.derive import audit_pseudonym
from vault_service.errors import LegalHoldActive
from vault_service.key_hierarchy import KeyHierarchy
from vault_service.key_providers.base import KeyState
from vault_service.lifecycle.ledger import Destruction, Kind, State
from vault_service.lifecycle.shredding import Requester, Shredder
from vault_service.storage import RecordStore, SubjectState
from vault_service.storage.rows import PendingDeletion, PendingKind


class Eraser:
    """Erases subjects and carries out deferred deletions (see the module docstring)."""

    def __init__(
        self,
        store: RecordStore,
        keys: KeyHierarchy,
        shredder: Shredder,
        clock: Clock,
    ) -> None:
        self.store = store
        self.keys = keys
        self.shredder = shredder
        self.clock = clock

    def _ledger(self, ref: bytes, state: State, cause: str) -> None:
        versions = tuple(
            v.version for v in self.keys.provider.versions() if v.state is not KeyState.DESTROYED
        )
        entry = Destruction(
            Kind.SUBJECT, ref, state, self.clock.now(), root_versions=versions, cause=cause
        )
        self.shredder.note([entry])

    def erase(self, ref: bytes, audit: AuditRow, by: Requester, *, record_pending: bool = True) -> bool:
        """Erase the subject: True if this call erased it, False if it was unknown or erased
        already (audited as such: an erasure is idempotent, clients retry it). Under a legal
        hold: recorded for the release (unless ``record_pending`` is False: it already is) and
        LegalHoldActive raised."""
        state = self.store.subject_state(ref)
        if state is None or state is SubjectState.ERASED:
            reason = NOTHING_TO_ERASE if state is None else ALREADY_ERASED
            self.store.append_audit(replace(audit, reason=reason))
            return False
        held = self.store.holds_cover(ref)
        self._ledger(ref, State.DEFERRED if held else State.DONE, by.cause)
        pending = self.shredder.pending(PendingKind.SUBJECT, ref, "", by) if record_pending else None
        try:
            erased = self.store.erase_subject(ref, self.clock.now(), audit, pending)
        except LegalHoldActive:
            if not held:
                self._ledger(ref, State.DEFERRED, by.cause)
            raise
        if held:  # the hold went meanwhile: it was carried out after all
            self._ledger(ref, State.DONE, by.cause)
        self.keys.forget_subject(ref)
        return erased

    def carry_out(self, pending: PendingDeletion, hold_id: str) -> bool:
        """Carry out one deletion a hold deferred, through the one path of its kind: True if it
        destroyed something; False if another hold still applies (it stays pending) or there
        was nothing left to destroy (it is dropped)."""
        by = Requester(pending.requested_by, f"released hold {hold_id}")
        audit = AuditRow(
            at=self.clock.now(),
            principal=pending.requested_by,
            action="subject.erase" if pending.kind is PendingKind.SUBJECT else "record.delete",
            decision="allow",
            reason=f"carried out at release of hold {hold_id}",
            subject_pseudonym=audit_pseudonym(pending.subject_ref),
            record_id=pending.record_id,
        )
        try:
            if pending.kind is PendingKind.SUBJECT:
                done = self.erase(pending.subject_ref, audit, by, record_pending=False)
            elif pending.kind is PendingKind.RECORD:
                done = (
                    self.shredder.record(pending.record_id, audit, by, record_pending=False) is not None
                )
            else:
                done = self.shredder.version(
                    pending.record_id, pending.subject_ref, pending.version, audit, by
                )
        except LegalHoldActive:
            return False  # another hold still applies: it stays pending
        self.store.drop_pending(pending.pending_id)  # carried out, or moot (already gone)
        return done

    def carry_out_unheld(self, batch: int = 200) -> int:
        """Carry out the pending deletions no hold covers any more (a release interrupted
        before it carried them out); a job run. Returns how many destroyed something."""
        return sum(self.carry_out(p, "(released)") for p in self.store.unheld_pending(batch))

    def release(self, subject_ref: bytes, hold_id: str) -> int:
        """After a hold on the subject was released: carry out every deletion it deferred that
        no other active hold still blocks. Returns how many were carried out."""
        return sum(self.carry_out(p, hold_id) for p in self.store.pending_deletions(subject_ref))
