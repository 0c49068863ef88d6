"""What an audit entry holds. Never PHI: a keyed pseudonym of the subject, never its id; no field
values, tokens or key material."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class AuditRow:
    """One audit event, as the service records it."""

    at: float
    principal: str
    action: str
    decision: str
    reason: str = ""
    purpose: str = ""
    subject_pseudonym: str = ""
    record_id: str = ""
    correlation_id: str = ""


@dataclass(frozen=True)
class AuditEntry:
    """An event as stored in the chain: its sequence number and hashes."""

    seq: int
    row: AuditRow
    prev_hash: bytes
    entry_hash: bytes
