"""Ledger replay: at start-up, before anything is served, make the store agree with the
destruction ledger (a restored backup must not bring anything destroyed back).

Per destroyed object, its last ledger entry decides:

- ``done``: if the store still has the object, destroy it again through the one path of its kind.
  Holds the store shows on it from before that moment are stale: the destruction was carried out
  when no hold applied, so they had been released; they are marked released (audited). A hold
  placed after it (the entry was written, then a crash came before the store changed) is real:
  the destruction is recorded for its release instead.
- ``deferred``: if the store still has the object and an active hold covers it, make sure the
  deletion is recorded for the hold's release (a read-once record stays consumed); if no hold
  covers it, carry it out now.

A replayed destruction is audited as a job step (a job's destruction as that job's step: in a
deployment of several processes a replay at one's start can finish what another is doing) and
raises ``erasure_replayed``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from vault_service import security_events
from vault_service.audit.model import JOB_PRINCIPAL, AuditRow, job_row
from vault_service.clock import Clock
from vault_service.crypto.derive import audit_pseudonym
from vault_service.errors import LegalHoldActive
from vault_service.lifecycle.erasure import Eraser
from vault_service.lifecycle.ledger import Destruction, DestructionLedger, Kind, State
from vault_service.lifecycle.shredding import Requester, Shredder
from vault_service.storage import RecordStore, SubjectState
from vault_service.storage.rows import PendingKind

REASON = "destruction ledger replay (restored backup?)"
_PENDING_KIND = {
    Kind.SUBJECT: PendingKind.SUBJECT,
    Kind.RECORD: PendingKind.RECORD,
    Kind.VERSION: PendingKind.VERSION,
}
_ACTION = {
    Kind.SUBJECT: "subject.erase",
    Kind.RECORD: "record.delete",
    Kind.VERSION: "record.delete",
    Kind.SHARE: "share.revoke",
    Kind.CONSENT: "consent.revoke",
}
#: a destruction a job asked for is audited as that job's step when a replay carries it out (the
#: replay of another process may finish it: each destruction is audited once, by its cause)
_JOB_ACTION = {
    "retention": "job.retention",
    "dormancy": "job.dormancy",
    "share sweep": "job.share_sweep",
}


@dataclass
class ReplayReport:
    """What a replay did: objects destroyed again, and deferred deletions recorded again, by kind."""

    redone: dict[str, int] = field(default_factory=dict)
    re_deferred: int = 0

    @property
    def total(self) -> int:
        return sum(self.redone.values())


class Replayer:
    """Replays the destruction ledger into the store (see the module docstring)."""

    def __init__(
        self,
        ledger: DestructionLedger,
        store: RecordStore,
        shredder: Shredder,
        eraser: Eraser,
        clock: Clock,
    ) -> None:
        self.ledger = ledger
        self.store = store
        self.shredder = shredder
        self.eraser = eraser
        self.clock = clock

    def run(self, public_key: bytes) -> ReplayReport:
        """Replay every object's last entry; LedgerTampered if the ledger does not verify."""
        report = ReplayReport()
        for entry in self.ledger.latest(public_key):
            if entry.state is State.CANCELLED or not self._present(entry):
                continue
            ref, oid = entry.subject_ref, entry.object_id
            holdable = entry.kind in _PENDING_KIND
            if holdable and entry.state is State.DONE:
                self.store.release_stale_holds(ref, oid, entry.at, self._row(entry))
            if holdable and self.store.holds_cover(ref, oid):
                # deferred, or a hold placed after a done entry was written and before the
                # store carried it out (a crash between the two): recorded for the release
                self._defer_again(entry)
                report.re_deferred += 1
                continue
            if self._destroy(entry):
                security_events.emit("erasure_replayed", kind=entry.kind.value)
                report.redone[entry.kind.value] = report.redone.get(entry.kind.value, 0) + 1
        return report

    def _row(self, entry: Destruction) -> AuditRow:
        return job_row(
            _JOB_ACTION.get(entry.cause, _ACTION[entry.kind]),
            REASON,
            self.clock.now(),
            subject_pseudonym=audit_pseudonym(entry.subject_ref),
            record_id=entry.object_id,
        )

    def _present(self, entry: Destruction) -> bool:
        """Whether the store still has the destroyed object."""
        if entry.kind is Kind.SUBJECT:
            return self.store.subject_state(entry.subject_ref) not in (None, SubjectState.ERASED)
        if entry.kind is Kind.SHARE:
            return self.store.share_key_exists(entry.object_id)
        if entry.kind is Kind.CONSENT:
            known = self.store.grant_state(entry.object_id)
            return known is not None and not known[1]
        owner = self.store.record_owner(entry.object_id)
        if owner is None:
            return False
        return entry.kind is Kind.RECORD or entry.version in owner.versions

    def _defer_again(self, entry: Destruction) -> None:
        by = Requester(JOB_PRINCIPAL, "replay")
        pending = self.shredder.pending(
            _PENDING_KIND[entry.kind], entry.subject_ref, entry.object_id, by, entry.version
        )
        self.store.ensure_pending(pending)
        if entry.consumed:  # released once already (maybe a delete came after): never again
            self.store.mark_consumed(entry.object_id, self.clock.now())

    def _destroy(self, entry: Destruction) -> bool:
        by = Requester(JOB_PRINCIPAL, "replay")
        audit = self._row(entry)
        try:
            if entry.kind is Kind.SUBJECT:
                return self.eraser.erase(entry.subject_ref, audit, by)
            if entry.kind is Kind.CONSENT:
                revoked = self.shredder.revoke_consent(entry.object_id, entry.subject_ref, audit)
                return revoked is not None
            if entry.kind is Kind.SHARE:
                ended = self.shredder.revoke_share(entry.object_id, entry.subject_ref, audit, "replay")
                return ended is not None
            owner = self.store.record_owner(entry.object_id)
            if entry.kind is Kind.VERSION and owner is not None and owner.version != entry.version:
                return self.shredder.version(
                    entry.object_id, entry.subject_ref, entry.version, audit, by
                )
            # a record, or a record whose current version was destroyed: the versions after it
            # were lost with the restore, and it must not come back
            return self.shredder.record(entry.object_id, audit, by) is not None
        except LegalHoldActive:
            return False  # a hold placed since: recorded for its release
