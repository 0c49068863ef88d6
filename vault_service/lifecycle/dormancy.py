"""Dormancy: activity, notices, separation of inactive subjects, and their destruction.

A subject is active while it is written or read. After ``dormant_after`` seconds without activity
it becomes dormant (its records are readable only by reactivation purposes, and such a read brings
it back at once); ``notice`` seconds before that a ``dormancy_notice`` event is recorded for the
application to tell the person. A subject dormant for ``destroy_after`` more is erased through the
one erase path (held subjects wait for their hold's release).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

from vault_service.audit.model import JOB_PRINCIPAL, AuditRow, job_row
from vault_service.clock import Clock
from vault_service.crypto.derive import audit_pseudonym
from vault_service.errors import LegalHoldActive
from vault_service.lifecycle.erasure import Eraser
from vault_service.lifecycle.events import BusinessEvents
from vault_service.lifecycle.shredding import Requester
from vault_service.storage import RecordStore, SubjectState

NOTICE_EVENT = "dormancy_notice"
_DAY = 86400.0
#: how many subjects' last read day this process remembers (activity writes at most once a day)
_TOUCHED_MAX = 100_000


def _job(ref: bytes, reason: str, at: float) -> AuditRow:
    """The audit entry of a dormancy step for one subject."""
    return job_row("job.dormancy", reason, at, subject_pseudonym=audit_pseudonym(ref))


class Activity:
    """Records that a subject was read. Reads are activity too, but written at most once a day
    per subject (a write per read would halve read throughput); reading a dormant subject (a
    reactivation purpose) brings it back at once, audited."""

    def __init__(self, store: RecordStore, clock: Clock) -> None:
        self.store = store
        self.clock = clock
        self._touched: dict[bytes, int] = {}
        self._lock = threading.Lock()

    def read(self, ref: bytes, dormant: bool) -> None:
        now = self.clock.now()
        today = int(now // _DAY)
        with self._lock:
            if not dormant and self._touched.get(ref) == today:
                return
            self._touched[ref] = today
            if len(self._touched) > _TOUCHED_MAX:
                self._touched.clear()
        if self.store.touch_subject(ref, now):
            self.store.append_audit(_job(ref, "reactivated", now))


def sweep_dormancy(
    store: RecordStore,
    events: BusinessEvents,
    eraser: Eraser,
    clock: Clock,
    dormant_after: float,
    notice: float,
    destroy_after: float,
    batch: int = 500,
) -> dict[str, int]:
    """One dormancy run (see the module docstring); returns counts of notices, subjects made
    dormant and subjects destroyed. ``dormant_after`` 0 is dormancy off: nothing happens."""
    now = clock.now()
    counts = {"notices": 0, "dormant": 0, "destroyed": 0}
    if dormant_after <= 0:
        return counts

    def each(state: SubjectState, before: float) -> Iterator[bytes]:
        after = b""
        while page := store.inactive_subjects(state, before, batch, after):
            yield from page
            after = page[-1]

    for ref in each(SubjectState.ACTIVE, now - (dormant_after - notice)):
        if events.record(ref, NOTICE_EVENT, now, _job(ref, "dormancy notice due", now)):
            counts["notices"] += 1
    for ref in each(SubjectState.ACTIVE, now - dormant_after):
        if store.set_subject_state(ref, SubjectState.DORMANT, now, _job(ref, "dormant", now)):
            counts["dormant"] += 1
    by = Requester(JOB_PRINCIPAL, "dormancy")
    for ref in each(SubjectState.DORMANT, now - dormant_after - destroy_after):
        if store.holds_cover(ref):
            continue  # its hold's release lets the next run destroy it
        try:
            erased = eraser.erase(
                ref, _job(ref, "dormant too long: erased", now), by, record_pending=False
            )
        except LegalHoldActive:
            continue  # a hold placed meanwhile: the next run after its release
        if erased:
            counts["destroyed"] += 1
    return counts
