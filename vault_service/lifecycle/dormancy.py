"""Dormancy: activity, notices, separation of inactive subjects, and their destruction.

The rule is the policy's ``[dormancy]`` table (:class:`~vault_service.policy.model.Dormancy`;
none: off). A subject is active while it is written or read. After ``after`` seconds without
activity it becomes dormant (its records are readable only by reactivation purposes, and such a
read, or any write, brings it back at once); ``notice`` seconds before that a ``dormancy_notice``
event is recorded for the application to tell the person. A subject dormant for
``destroy_after`` more is erased through the one erase path (held subjects wait for their hold's
release); ``destroy_after`` 0 keeps it dormant.

Separated storage (``separate``): becoming dormant and rewrapping the subject key under the
dormant context (``dormant-subject-key``) are one transaction, and so are the key's return and
the subject's reactivation. While separated, no read path can open the key (the ordinary context
fails authentication) and the store refuses to let anything but reactivation change the state.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

from vault_service.audit.model import JOB_PRINCIPAL, AuditRow, job_row
from vault_service.clock import Clock
from vault_service.crypto.derive import audit_pseudonym
from vault_service.errors import LegalHoldActive
from vault_service.key_hierarchy import KeyHierarchy
from vault_service.lifecycle.erasure import Eraser
from vault_service.lifecycle.events import BusinessEvents
from vault_service.lifecycle.shredding import Requester
from vault_service.policy.model import Dormancy
from vault_service.storage import RecordStore, SubjectState

NOTICE_EVENT = "dormancy_notice"
_DAY = 86400.0
#: how many subjects' last read day this process remembers (activity writes at most once a day)
_TOUCHED_MAX = 100_000
#: how often a reactivation retries when a rotation rewrapped the key between its read and write
_MOVE_ATTEMPTS = 3


def _job(ref: bytes, reason: str, at: float) -> AuditRow:
    """The audit entry of a dormancy step for one subject."""
    return job_row("job.dormancy", reason, at, subject_pseudonym=audit_pseudonym(ref))


class Activity:
    """Records that a subject was read, and brings dormant subjects back. Reads are activity too,
    but written at most once a day per subject (a write per read would halve read throughput);
    reading a dormant subject (a reactivation purpose) brings it back at once, audited, its
    separated key moved back first (:meth:`reactivate`)."""

    def __init__(self, store: RecordStore, keys: KeyHierarchy, clock: Clock) -> None:
        self.store = store
        self.keys = keys
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

    def reactivate(self, ref: bytes) -> bool:
        """Bring a separated subject back: its key rewrapped under the live context and the
        subject active, audited, in one transaction. False if it is not separated (any more)."""
        now = self.clock.now()
        audit = _job(ref, "reactivated", now)
        for _ in range(_MOVE_ATTEMPTS):  # a rotation may rewrap the row between read and write
            if self.keys.move_subject_key(
                ref,
                separate=False,
                put=lambda old, new: self.store.reactivate_subject(
                    ref, old, new, now, audit, provider=self.keys.provider.name
                ),
            ):
                return True
            if self.store.get_separated_key(ref) is None:
                return False
        return False


def _make_dormant(
    store: RecordStore, keys: KeyHierarchy, ref: bytes, before: float, now: float, separate: bool
) -> bool:
    """One subject made dormant (its key separated under a separating rule), if it is still
    inactive since ``before``."""
    audit = _job(ref, "dormant, separated" if separate else "dormant", now)
    provider = keys.provider.name
    if not separate:
        return store.make_dormant(ref, before, now, audit, None, provider=provider)
    return keys.move_subject_key(
        ref,
        separate=True,
        put=lambda old, new: store.make_dormant(ref, before, now, audit, (old, new), provider=provider),
    )


def sweep_dormancy(
    store: RecordStore,
    keys: KeyHierarchy,
    events: BusinessEvents,
    eraser: Eraser,
    clock: Clock,
    rule: Dormancy | None,
    batch: int = 500,
) -> dict[str, int]:
    """One dormancy run (see the module docstring); returns counts of notices, subjects made
    dormant and subjects destroyed. No rule (the policy has no ``[dormancy]``): nothing happens."""
    now = clock.now()
    counts = {"notices": 0, "dormant": 0, "destroyed": 0}
    if rule is None:
        return counts

    def each(state: SubjectState, before: float) -> Iterator[bytes]:
        after = b""
        while page := store.inactive_subjects(state, before, batch, after):
            yield from page
            after = page[-1]

    if rule.notice > 0:
        for ref in each(SubjectState.ACTIVE, now - (rule.after - rule.notice)):
            if events.record(ref, NOTICE_EVENT, now, _job(ref, "dormancy notice due", now)):
                counts["notices"] += 1
    for ref in each(SubjectState.ACTIVE, now - rule.after):
        if _make_dormant(store, keys, ref, now - rule.after, now, rule.separate):
            counts["dormant"] += 1
    if rule.destroy_after <= 0:
        return counts  # kept dormant until the records' own retention ends
    by = Requester(JOB_PRINCIPAL, "dormancy")
    for ref in each(SubjectState.DORMANT, now - rule.after - rule.destroy_after):
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
