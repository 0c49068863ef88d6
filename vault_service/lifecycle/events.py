"""Business events of a subject (``match_completed``, ``dormancy_notice`` ...), MAC-protected.

Events drive event-bound share expiry and retention rules, so an edited time must not extend
either: each event is stored with a keyed MAC over (subject, name, time) under the index key
(:func:`vault_service.crypto.derive.event_mac`). Reading an event whose MAC fails raises
IntegrityError and a ``event_tampered`` security event; callers fail closed (a share ends, a
retention rule is due).
"""

from __future__ import annotations

import hmac
from collections.abc import Callable

from vault_service import security_events
from vault_service.audit.model import AuditRow
from vault_service.crypto import IndexKey
from vault_service.crypto.derive import event_mac
from vault_service.errors import IntegrityError
from vault_service.storage import RecordStore
from vault_service.storage.rows import EventRow


class BusinessEvents:
    """Records and reads subjects' business events (see the module docstring)."""

    def __init__(self, store: RecordStore, index_key: Callable[[], IndexKey]) -> None:
        self.store = store
        self._index_key = index_key

    def row(self, ref: bytes, name: str, at: float) -> EventRow:
        """The stored form of an event, with its MAC."""
        return EventRow(name, at, event_mac(self._index_key(), ref, name, at))

    def record(self, ref: bytes, name: str, at: float, audit: AuditRow | None) -> bool:
        """Record an event once (the first occurrence stands); False if it already was.
        FailedPrecondition if the subject is unknown or erased."""
        return self.store.record_event(ref, self.row(ref, name, at), audit)

    def time_of(self, ref: bytes, name: str) -> float | None:
        """When the event happened (None if not recorded); IntegrityError if it was edited."""
        event = self.store.get_event(ref, name)
        return None if event is None else self.checked(ref, event)

    def checked(self, ref: bytes, event: EventRow) -> float:
        """The time of an event already read; IntegrityError (a security event) if edited."""
        if not hmac.compare_digest(event.mac, self.row(ref, event.name, event.at).mac):
            security_events.emit("event_tampered")
            raise IntegrityError()
        return event.at

    def due(self, ref: bytes, name: str, period: float, now: float) -> bool:
        """Whether ``period`` has passed since the event; an edited event is due now (an edit
        must never keep data longer)."""
        try:
            at = self.time_of(ref, name)
        except IntegrityError:
            return True
        return at is not None and now >= at + period
