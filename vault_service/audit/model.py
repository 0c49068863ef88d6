"""What an audit entry holds. Never PHI: a keyed pseudonym of the subject, never its id; no field
values, tokens or key material."""

from __future__ import annotations

from dataclasses import dataclass

from vault_service.values import fast_init

#: the principal of every background job's audit entries (retention, purge, dormancy, replay ...)
JOB_PRINCIPAL = "vault-service"
#: the principal of operator commands run outside the server (vaultctl keys, audit, sweeps)
OPERATOR_PRINCIPAL = "operator-cli"
#: the audited reason of a deletion a legal hold deferred to its release
DEFERRED_REASON = "legal hold: deletion recorded"
#: the audited reasons of an erasure that found nothing to destroy (an erasure is idempotent)
ALREADY_ERASED = "already erased: nothing destroyed"
NOTHING_TO_ERASE = "unknown subject: nothing to erase"


@fast_init
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
    #: the record version a put (1) or an update (its new version) wrote: the rollback witness
    #: reads it back (a typed field, covered by the entry hash; never parsed from ``reason``)
    witnessed_version: int | None = None
    #: the record's category (releases, and the denials that knew it); None: not recorded
    #: (entries written before schema 18)
    category: str | None = None
    #: the names of the fields a release handed out, sorted ("content" for the content), never
    #: their values; None: not a release, or an entry written before schema 18
    released_fields: tuple[str, ...] | None = None
    #: the role of the principal a release went to; None: not recorded
    role: str | None = None


#: the actions whose allowed entries are releases (the release step writes them; a search's
#: "found" entries release whether a field equals the value: service/search.py). Schema 18's
#: partial indexes repeat them, in this order: changing one means a migration for the other
#: (tests/audit/test_breach_scope_index.py)
RELEASE_ACTIONS = ("record.get", "share.read", "subject.export", "record.find")


def job_row(
    action: str, reason: str, at: float, *, subject_pseudonym: str = "", record_id: str = ""
) -> AuditRow:
    """The audit entry of a background job's step."""
    return AuditRow(
        at=at,
        principal=JOB_PRINCIPAL,
        action=action,
        decision="allow",
        reason=reason,
        subject_pseudonym=subject_pseudonym,
        record_id=record_id,
    )


@fast_init
@dataclass(frozen=True)
class AuditEntry:
    """An event as stored in the chain: its sequence number and hashes."""

    seq: int
    row: AuditRow
    prev_hash: bytes
    entry_hash: bytes
