"""The values the client methods return: typed, immutable views of the API's messages."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from vault_service.api.v1 import vault_pb2 as pb


@dataclass(frozen=True)
class PutResult:
    """Where a record was stored."""

    record_id: str
    version: int


@dataclass(frozen=True)
class RecordInfo:
    """Record metadata (no field values)."""

    record_id: str
    category: str
    version: int
    content_type: str
    content_length: int
    field_names: tuple[str, ...]
    created_at: float
    updated_at: float
    #: de-identified views only: the subject's pseudonym for the purpose of the read
    subject_pseudonym: str = ""
    #: processing of the record is restricted (a correction or deletion request in progress)
    restricted: bool = False

    @staticmethod
    def from_pb(m: pb.RecordMetadata) -> RecordInfo:
        return RecordInfo(
            m.record_id,
            m.category,
            m.version,
            m.content_type,
            m.content_length,
            tuple(m.field_names),
            m.created_at,
            m.updated_at,
            m.subject_pseudonym,
            m.restricted,
        )


@dataclass(frozen=True)
class Consent:
    """A consent grant as the service reports it."""

    grant_id: str
    purpose: str
    grantee_principal: str
    grantee_role: str
    scopes: dict[str, tuple[str, ...]]
    valid_from: float
    valid_until: float | None
    evidence_reference: str
    revoked_at: float | None
    #: which party gave it, for a purpose that needs the consent of several parties
    party: str = ""

    @staticmethod
    def from_pb(c: pb.Consent) -> Consent:
        return Consent(
            c.grant_id,
            c.purpose,
            c.grantee_principal,
            c.grantee_role,
            {s.category: tuple(s.fields) for s in c.scopes},
            c.valid_from,
            c.valid_until or None,
            c.evidence_reference,
            c.revoked_at or None,
            c.party,
        )


@dataclass(frozen=True)
class ShareInfo:
    """A share's metadata."""

    share_id: str
    recipient: str
    purpose: str
    record_count: int
    fields: tuple[str, ...]
    expires_at: float | None
    event_name: str
    event_period_seconds: float | None
    created_at: float
    revoked_at: float | None

    @staticmethod
    def from_pb(s: pb.Share) -> ShareInfo:
        return ShareInfo(
            s.share_id,
            s.recipient,
            s.purpose,
            s.record_count,
            tuple(s.fields),
            s.expires_at or None,
            s.event_name,
            s.event_period_seconds or None,
            s.created_at,
            s.revoked_at or None,
        )


@dataclass(frozen=True)
class Record:
    """A decrypted record as released for a purpose."""

    info: RecordInfo
    fields: Mapping[str, str]
    content: bytes | None


@dataclass(frozen=True)
class Page:
    """One page of a listing."""

    records: list[RecordInfo]
    next_page_token: str


#: the fields of an audit event whose values are bytes (hex in :meth:`AuditEvent.as_dict`)
_HASH_FIELDS = ("entry_hash", "prev_hash")


@dataclass(frozen=True)
class AuditEvent:
    """One audit entry: its fields, and its proof (docs/audit.md, "Proofs for users").

    ``category`` and ``role`` are empty, and ``released_fields`` too, where the entry has none;
    ``category_recorded``, ``released_fields_recorded`` and ``role_recorded`` say whether the
    entry records them at all (their presence is part of the entry hash). ``leaf_index``
    (``seq - 1``), ``entry_hash`` and ``prev_hash`` place it in the chain and the tree;
    ``inclusion_proof`` proves it in the tree of ``tree_size`` leaves (0: newer than the
    checkpoint, no proof yet) whose root the signed note ``checkpoint`` states.
    :func:`vault_service.audit.prove.verify_event` checks it all offline."""

    seq: int
    at: float
    principal: str
    action: str
    purpose: str
    subject_pseudonym: str
    record_id: str
    decision: str
    reason: str
    correlation_id: str
    category: str
    released_fields: tuple[str, ...]
    role: str
    leaf_index: int = 0
    entry_hash: bytes = b""
    prev_hash: bytes = b""
    inclusion_proof: tuple[bytes, ...] = ()
    tree_size: int = 0
    witnessed_version: int | None = None
    category_recorded: bool = False
    released_fields_recorded: bool = False
    role_recorded: bool = False
    #: the cosigned checkpoint note the proof is against ("" when the server sent none); not
    #: one of :meth:`as_dict`'s keys (a query page carries it once: ``AuditPage.checkpoint``),
    #: nor of the event's equality: it is what the event is proved against, not the event
    checkpoint: str = field(default="", repr=False, compare=False)

    @staticmethod
    def from_pb(e: pb.AuditEvent, checkpoint: str = "") -> AuditEvent:
        return AuditEvent(
            e.seq,
            e.at,
            e.principal,
            e.action,
            e.purpose,
            e.subject_pseudonym,
            e.record_id,
            e.decision,
            e.reason,
            e.correlation_id,
            e.category,
            tuple(e.released_fields),
            e.role,
            leaf_index=e.leaf_index,
            entry_hash=e.entry_hash,
            prev_hash=e.prev_hash,
            inclusion_proof=tuple(e.inclusion_proof),
            tree_size=e.tree_size,
            witnessed_version=e.witnessed_version if e.HasField("witnessed_version") else None,
            category_recorded=e.HasField("category"),
            released_fields_recorded=e.released_fields_recorded,
            role_recorded=e.HasField("role"),
            checkpoint=checkpoint,
        )

    def as_dict(self) -> dict[str, Any]:
        """As ``query_audit`` returns an event: JSON-ready (``released_fields`` a list, the
        hashes and the proof in hex), every field but ``checkpoint``."""
        data = {name: getattr(self, name) for name in AUDIT_EVENT_FIELDS}
        data["released_fields"] = list(self.released_fields)
        for name in _HASH_FIELDS:
            data[name] = data[name].hex()
        data["inclusion_proof"] = [h.hex() for h in self.inclusion_proof]
        return data

    @staticmethod
    def from_dict(data: Mapping[str, Any], checkpoint: str = "") -> AuditEvent:
        """The event of an :meth:`as_dict` (a JSON line of ``vaultctl audit tail``); keys it
        lacks (a line of an older version) take their defaults, other keys are ignored."""
        known = {k: v for k, v in data.items() if k in AUDIT_EVENT_FIELDS}
        known["released_fields"] = tuple(known.get("released_fields", ()))
        for name in _HASH_FIELDS:
            if name in known:
                known[name] = bytes.fromhex(known[name])
        known["inclusion_proof"] = tuple(bytes.fromhex(h) for h in known.get("inclusion_proof", ()))
        return AuditEvent(**known, checkpoint=checkpoint)


#: the fields of an audit event, as the keys of the dicts ``query_audit`` returns
AUDIT_EVENT_FIELDS = tuple(name for name in AuditEvent.__dataclass_fields__ if name != "checkpoint")


@dataclass(frozen=True)
class AuditPage:
    """One page of ``query_audit_page``: the events, each with the page's checkpoint."""

    events: tuple[AuditEvent, ...]
    next_page_token: str
    #: the cosigned checkpoint note the events' proofs are against ("" when none)
    checkpoint: str


@dataclass(frozen=True)
class TailGap:
    """In a tail: entries ``from_seq``..``to_seq`` (both included) are not in the audit trail
    (pruned by retention, or deleted: ``vaultctl audit verify`` tells which), so the stream
    goes on after them."""

    from_seq: int
    to_seq: int

    @property
    def skipped(self) -> int:
        """How many entries are missing."""
        return self.to_seq - self.from_seq + 1


@dataclass(frozen=True)
class BreachDisclosure:
    """Releases of one subject's records of one category to one principal, for one purpose, by
    one action. ``category``, ``fields`` and ``role`` are None where the audit entries did not
    record them (written before schema 18): unknown, not none."""

    category: str | None
    fields: tuple[str, ...] | None
    principal: str
    role: str | None
    action: str
    purpose: str
    releases: int
    first_at: float
    last_at: float

    @staticmethod
    def from_pb(d: pb.BreachDisclosure) -> BreachDisclosure:
        return BreachDisclosure(
            d.category if d.recorded else None,
            tuple(d.fields) if d.recorded else None,
            d.principal,
            d.role if d.recorded else None,
            d.action,
            d.purpose,
            d.releases,
            d.first_at,
            d.last_at,
        )


@dataclass(frozen=True)
class BreachSubject:
    """What was released of one subject (by pseudonym) in the window."""

    subject_pseudonym: str
    releases: int
    records: int
    first_at: float
    last_at: float
    disclosures: tuple[BreachDisclosure, ...]


@dataclass(frozen=True)
class BreachTally:
    """Releases and distinct subjects of a category, or of a principal with its role."""

    name: str | None
    role: str | None
    releases: int
    subjects: int


@dataclass(frozen=True)
class BreachScope:
    """The breach scope of a window (``vaultctl breach-scope``): totals and one entry per subject."""

    start: float
    end: float
    filters: Mapping[str, str]
    releases: int
    records: int
    unrecorded: int
    by_category: tuple[BreachTally, ...]
    by_recipient: tuple[BreachTally, ...]
    subjects: tuple[BreachSubject, ...]
    #: the time of the oldest entry the audit trail still holds (pruning deletes older ones);
    #: None if the server did not say (one from before the field)
    oldest_retained_at: float | None
    #: whether the trail was pruned (its oldest retained entry is not its first ever)
    trail_pruned: bool
    #: whether the trail holds every entry of the window; False: releases before
    #: ``oldest_retained_at`` were pruned and are not in this scope (or the server is too old to say)
    complete: bool

    def as_dict(self) -> dict[str, Any]:
        """The JSON form (``None`` where the audit entries did not record a value)."""
        return {
            "format": "vault-service/breach-scope/v1",
            "from": self.start,
            "to": self.end,
            "filters": dict(self.filters),
            "totals": {
                "subjects": len(self.subjects),
                "releases": self.releases,
                "records": self.records,
                "unrecorded_releases": self.unrecorded,
                "complete": self.complete,
                "trail_pruned": self.trail_pruned,
                "oldest_retained_at": self.oldest_retained_at,
                "by_category": [
                    {"category": t.name, "releases": t.releases, "subjects": t.subjects}
                    for t in self.by_category
                ],
                "by_recipient": [
                    {
                        "principal": t.name,
                        "role": t.role,
                        "releases": t.releases,
                        "subjects": t.subjects,
                    }
                    for t in self.by_recipient
                ],
            },
            "subjects": [
                {
                    "subject_pseudonym": s.subject_pseudonym,
                    "releases": s.releases,
                    "records": s.records,
                    "first_at": s.first_at,
                    "last_at": s.last_at,
                    "disclosures": [
                        {
                            "category": d.category,
                            "fields": None if d.fields is None else list(d.fields),
                            "principal": d.principal,
                            "role": d.role,
                            "action": d.action,
                            "purpose": d.purpose,
                            "releases": d.releases,
                            "first_at": d.first_at,
                            "last_at": d.last_at,
                        }
                        for d in s.disclosures
                    ],
                }
                for s in self.subjects
            ],
        }
