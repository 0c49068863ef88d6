"""Business events: the RecordEvent call (events themselves live in :mod:`..lifecycle.events`,
where retention, dormancy and share expiry read them)."""

from __future__ import annotations

from vault_service.clock import Clock
from vault_service.crypto.derive import subject_ref
from vault_service.errors import InvalidArgument
from vault_service.key_hierarchy import KeyHierarchy
from vault_service.lifecycle.events import BusinessEvents
from vault_service.policy import Action
from vault_service.service import validate
from vault_service.service.access import Access
from vault_service.service.types import CallContext


class Events:
    """Records business events for callers."""

    def __init__(self, access: Access, keys: KeyHierarchy, events: BusinessEvents, clock: Clock) -> None:
        self.access = access
        self.keys = keys
        self.events = events
        self.clock = clock

    def record(self, call: CallContext, subject_id: str, name: str, at: float | None = None) -> bool:
        """Record a business event of a subject (the first occurrence stands); drives
        event-bound share expiry and retention rules. False if it was already recorded."""
        validate.subject_id(subject_id)
        validate.event_name(name)
        now = self.clock.now()
        when = now if at is None else validate.time(at, "at")
        if when > now:
            raise InvalidArgument("an event cannot be recorded in the future")
        ref = subject_ref(self.keys.index_key, subject_id)
        self.access.allow(call, Action.EVENT_RECORD, ref=ref)
        audit = self.access.row(call, Action.EVENT_RECORD, f"event {name}", ref=ref)
        return self.events.record(ref, name, when, audit)
