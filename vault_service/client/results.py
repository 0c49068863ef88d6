"""The values the client methods return: typed, immutable views of the API's messages."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

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
