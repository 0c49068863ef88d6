"""Every row and value type of the record store, in one place.

These are what :class:`~vault_service.storage.records.RecordStore` takes and returns: frozen
dataclasses (and the subject state enum) carrying ciphertext, wrapped keys and pseudonymous subject
references, never plaintext. They hold no behaviour and import nothing of the store, so the store
interface, its SQL implementation and the service can all depend on them without depending on
each other. ``storage.records`` and ``storage.shares`` re-export them under their historical
import paths.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field

from vault_service.audit.model import AuditRow
from vault_service.key_providers.base import WrappedKey
from vault_service.policy.model import Grant
from vault_service.values import fast_init

# subjects, records and the store's own bookkeeping ---------------------------------------------

#: service keys named this, followed by the subject reference in hex, are subjects' legal keys
LEGAL_KEY_PREFIX = "legal:"


def legal_key_name(subject_ref: bytes) -> str:
    """The service-key name of a subject's legal key (records kept by law after an erasure)."""
    return LEGAL_KEY_PREFIX + subject_ref.hex()


class KeyKind(enum.StrEnum):
    """Which key wraps a record's data keys."""

    #: the subject key: the record dies with the subject's erasure
    SUBJECT = "subject"
    #: the subject's legal key: the record is kept by law after an erasure, until its time
    LEGAL = "legal"


class SubjectState(enum.Enum):
    """States of a data subject."""

    ACTIVE = "active"
    RESTRICTED = "restricted"
    DORMANT = "dormant"
    ERASED = "erased"


@dataclass(frozen=True)
class SubjectKeyRow:
    """A subject's wrapped key."""

    subject_ref: bytes
    wrapped: WrappedKey


@fast_init
@dataclass(frozen=True)
class RecordMeta:
    """What may be listed about a record: no field values, no keys."""

    record_id: str
    subject_ref: bytes
    category: str
    version: int
    content_type: str
    content_length: int | None
    field_names: tuple[str, ...]
    created_at: float
    updated_at: float
    #: processing of this record is restricted (a correction or deletion request in progress):
    #: only restriction-exempt purposes read it
    restricted: bool = False


@fast_init
@dataclass(frozen=True)
class StoredRecord:
    """A record's current version as stored: metadata, wrapped keys and ciphertexts, and (read in
    the same transaction) its subject's state and consent grants for the requested purpose."""

    meta: RecordMeta
    subject_key: WrappedKey
    data_key: bytes
    payloads: Mapping[str, bytes]
    blob_ref: str | None
    subject_state: SubjectState = SubjectState.ACTIVE
    grants: tuple[Grant, ...] = ()
    #: which key wraps the data key
    key_kind: KeyKind = KeyKind.SUBJECT
    #: the version the audit chain last recorded for this record (put: 1; update: its new
    #: version), read in the same transaction; None once those entries are pruned. A stored
    #: version other than this one means the record's rows were rolled back.
    witnessed_version: int | None = None


@fast_init
@dataclass(frozen=True)
class RecordVersion:
    """A new version to write: everything already encrypted and wrapped by the service."""

    record_id: str
    subject_ref: bytes
    category: str
    version: int
    content_type: str
    data_key: bytes
    payloads: Mapping[str, bytes]
    blob_ref: str | None = None
    content_length: int | None = None
    key_kind: KeyKind = KeyKind.SUBJECT
    #: the subject's id sealed under the subject key, kept on the subject (first one stands)
    sealed_subject_id: bytes | None = field(default=None, repr=False)
    #: the blind index tokens of this version's searchable fields (they replace the record's),
    #: and the searchable fields they were made for (``search.index_spec``)
    index_tokens: tuple[bytes, ...] = field(default=(), repr=False)
    index_spec: str = ""


@fast_init
@dataclass(frozen=True)
class Idempotency:
    """An idempotency key scoped to a principal (``key`` is already a keyed hash of the caller's
    key), with a keyed digest of the request."""

    principal: str
    key: str
    request_digest: bytes


@fast_init
@dataclass(frozen=True)
class NewRecord:
    """One record of a batch insert: its first version, idempotency key and audit entry."""

    version: RecordVersion
    idempotency: Idempotency | None
    audit: AuditRow | None


@dataclass(frozen=True)
class ShreddedRecord:
    """What a shred left for the caller to remove outside the database (blobs)."""

    record_id: str
    blob_refs: tuple[str, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class RecordOwner:
    """Whose a record is (whatever its subject's state) and what of it exists: the one lookup
    the shred path makes before it writes the destruction ledger."""

    subject_ref: bytes
    #: an active legal hold applies (on the record or on its subject)
    held: bool
    #: the current version, and every version whose data key still exists (older ones are kept
    #: only while a hold applies)
    version: int
    versions: tuple[int, ...]


@dataclass(frozen=True)
class VersionChange:
    """What an update did to the version it replaced: destroyed (its blobs are left for the
    caller to remove), or kept until a legal hold's release."""

    shredded: ShreddedRecord | None
    kept: bool


@dataclass(frozen=True)
class ReadOnceClaim:
    """A read-once record claimed for its one release: destroyed now (``shredded``: the blobs the
    caller removes once the release is over), or, under a legal hold, marked consumed and kept
    until the release (``held``)."""

    held: bool
    shredded: ShreddedRecord | None


@dataclass(frozen=True)
class AuditQuery:
    """Filters of an auditor's query; empty fields match everything."""

    subject_pseudonym: str = ""
    principal: str = ""
    action: str = ""
    decision: str = ""
    since: float | None = None
    until: float | None = None


@dataclass(frozen=True)
class BreachQuery:
    """The releases of a breach window: allowed entries of the release actions with
    ``start <= at <= end``; empty filters match everything (a category filter matches only
    entries that recorded their category)."""

    start: float
    end: float
    principal: str = ""
    category: str = ""
    purpose: str = ""


@dataclass(frozen=True)
class ReleaseGroup:
    """Releases of one subject alike in what and to whom: how many, the first and the last.
    ``category`` and ``released_fields`` are None for entries written before they were
    recorded (schema 18), ``role`` likewise."""

    subject_pseudonym: str
    category: str | None
    released_fields: tuple[str, ...] | None
    principal: str
    role: str | None
    action: str
    purpose: str
    releases: int
    first_at: float
    last_at: float


@dataclass(frozen=True)
class BreachRows:
    """What the store reads for a breach window, in one snapshot: the release groups, per
    subject pseudonym the number of distinct records released, and the oldest entry the trail
    still holds (its seq and time; None for an empty trail): a seq above 1 means entries were
    pruned, so a window starting before that time is incomplete."""

    groups: list[ReleaseGroup]
    records: dict[str, int]
    oldest_seq: int | None = None
    oldest_at: float | None = None


# the lifecycle states of a root version that the operator records (lifecycle/rotation.py)
RETIRED = "retired"
MARKED = "marked_for_destruction"
DESTROYING = "destroying"
DESTROYED = "destroyed"
PENDING = "pending_destruction"
#: root-version lifecycle states under which no new key may be wrapped (the store refuses one)
CLOSED_ROOT_STATES = (RETIRED, MARKED, DESTROYING, DESTROYED, PENDING)


@dataclass(frozen=True)
class RootVersionState:
    """The operator lifecycle of one root-key version, as recorded by the rotation CLI."""

    version: str
    state: str
    updated_at: float
    destroy_at: float | None
    detail: str


# shares, business events, legal holds and deferred deletions -----------------------------------


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
class NoticeRow:
    """A lifecycle notice due: a live subject whose dormancy notice is recorded since its last
    activity, with its sealed id (None for a subject not written since ids were kept)."""

    subject_ref: bytes
    sealed_id: bytes | None
    #: the notice event as stored (its MAC is checked by the caller)
    event: EventRow
    last_activity: float


@dataclass(frozen=True)
class EventRow:
    """A business event of a subject, with its keyed MAC."""

    name: str
    at: float
    mac: bytes


@dataclass(frozen=True)
class HoldRow:
    """A legal hold on a subject (``record_id`` empty) or on one record. Its reason and case
    reference are stored only sealed under the subject key (``sealed``); the service fills them
    in for the caller."""

    hold_id: str
    subject_ref: bytes
    record_id: str
    reason: str
    case_reference: str
    created_by: str
    created_at: float
    released_at: float | None = None
    sealed: bytes = field(default=b"", repr=False)


class PendingKind(enum.StrEnum):
    """What a deletion recorded during a hold destroys at the release."""

    SUBJECT = "subject"
    RECORD = "record"
    #: the version of a record that an update replaced while the hold applied
    VERSION = "version"


@dataclass(frozen=True)
class PendingDeletion:
    """A deletion asked for during a hold, to be carried out at its release."""

    pending_id: str
    kind: PendingKind
    subject_ref: bytes
    record_id: str
    requested_by: str
    requested_at: float
    #: the version, for kind VERSION
    version: int = 0
