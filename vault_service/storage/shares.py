"""Row types of shares and business events (see ``RecordStore`` for the operations)."""

from __future__ import annotations

from dataclasses import dataclass

from vault_service.key_providers.base import WrappedKey


@dataclass(frozen=True)
class ShareRow:
    """A share as stored. The columns serve listing; ``sealed_terms`` (under the share key) are
    authoritative. ``share_key`` is None once the share was revoked or swept."""

    share_id: str
    subject_ref: bytes
    recipient: str
    purpose: str
    record_count: int
    fields: tuple[str, ...]
    expires_at: float | None
    event_name: str
    event_period: float | None
    created_by: str
    created_at: float
    revoked_at: float | None
    sealed_terms: bytes
    share_key: bytes | None = None
    subject_key: WrappedKey | None = None
    subject_state: str = ""


@dataclass(frozen=True)
class EventRow:
    """A business event of a subject, with its keyed MAC."""

    name: str
    at: float
    mac: bytes


@dataclass(frozen=True)
class HoldRow:
    """A legal hold on a subject (``record_id`` empty) or on one record."""

    hold_id: str
    subject_ref: bytes
    record_id: str
    reason: str
    case_reference: str
    created_by: str
    created_at: float
    released_at: float | None = None


@dataclass(frozen=True)
class PendingDeletion:
    """A deletion asked for during a hold, to be carried out at its release."""

    pending_id: str
    kind: str
    subject_ref: bytes
    record_id: str
    requested_by: str
    requested_at: float
