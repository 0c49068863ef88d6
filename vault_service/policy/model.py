"""The policy model: categories, purposes, roles and principals, as frozen dataclasses.

A policy is loaded once from a TOML file (:mod:`.loader`) and consulted by :func:`.decide.decide`
for every request. Nothing here does I/O.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field

from vault_service.values import fast_init


class Action(enum.Enum):
    """Every operation an RPC can perform. Roles list the actions they may take (deny by default)."""

    RECORD_PUT = "record.put"
    RECORD_GET = "record.get"
    RECORD_LIST = "record.list"
    RECORD_UPDATE = "record.update"
    RECORD_DELETE = "record.delete"
    RECORD_RESTRICT = "record.restrict"
    SUBJECT_ERASE = "subject.erase"
    SUBJECT_RESTRICT = "subject.restrict"
    SUBJECT_EXPORT = "subject.export"
    CONSENT_GRANT = "consent.grant"
    CONSENT_REVOKE = "consent.revoke"
    CONSENT_LIST = "consent.list"
    DELETION_VERIFY = "deletion.verify"
    HOLD_PLACE = "hold.place"
    HOLD_RELEASE = "hold.release"
    HOLD_LIST = "hold.list"
    SHARE_CREATE = "share.create"
    SHARE_READ = "share.read"
    SHARE_REVOKE = "share.revoke"
    SHARE_LIST = "share.list"
    SHARE_RECEIVED = "share.received"
    EVENT_RECORD = "event.record"
    KEYS_STATUS = "keys.status"
    AUDIT_QUERY = "audit.query"
    AUDIT_BREACH_SCOPE = "audit.breach_scope"
    AUDIT_TAIL = "audit.tail"
    NOTICE_LIST = "notice.list"
    RECORD_FIND = "record.find"


#: The pseudo-field that stands for a record's binary content in purposes and field subsets.
CONTENT_FIELD = "content"

#: Actions that release plaintext (or, for a search, whether a field equals a value); only these
#: need a purpose.
READ_ACTIONS = frozenset(
    {Action.RECORD_GET, Action.SUBJECT_EXPORT, Action.SHARE_READ, Action.RECORD_FIND}
)

#: How a searchable field's value is normalised before its blind index token is computed
#: (crypto/derive.py): "casefold" (Unicode NFC, surrounding white space removed, case
#: folded: e-mail addresses, chart numbers) or "exact" (NFC only).
NORMALISATIONS = ("casefold", "exact")


@dataclass(frozen=True)
class RetentionRule:
    """How long a category's records live.

    kind "after_creation": shredded ``period`` seconds after the record was created;
    kind "after_event": ``period`` seconds after the subject's business event ``event``;
    kind "read_once": destroyed in the same operation that first releases it, and, with a
    ``period``, shredded that long after its creation if it was never released;
    kind "until_erasure": kept until deleted or the subject is erased (the default).
    """

    kind: str
    period: float = 0.0
    event: str = ""
    #: legal retention: kept (for restriction-exempt purposes only) after the subject's erasure,
    #: until the period ends (only with kind "after_creation")
    survives_erasure: bool = False

    @property
    def by_age(self) -> bool:
        """Shredded ``period`` seconds after creation by the retention sweep."""
        return self.kind == "after_creation" or (self.kind == "read_once" and self.period > 0)

    @property
    def swept(self) -> bool:
        """The retention sweep shreds records of this rule when they are due."""
        return self.by_age or self.kind == "after_event"


UNTIL_ERASURE = RetentionRule("until_erasure")


@dataclass(frozen=True)
class Category:
    """A kind of record (concern_text, face_photo ...): its declared fields and whether it may
    carry a binary content object. With ``content`` the pseudo-field "content" is among
    ``fields``, so purposes grant it like any other field."""

    name: str
    fields: frozenset[str]
    content: bool = False
    description: str = ""
    #: direct identifiers (e-mail, phone, name ...): never shown in a de-identified view
    identifiers: frozenset[str] = frozenset()
    retention: RetentionRule = UNTIL_ERASURE
    #: a purpose whose consent must be in force (from every party it names) for a record of
    #: this category to be stored or updated at all ("recorded only with the consent of
    #: both"); "" means no such condition
    store_consent: str = ""
    #: fields with a blind index (FindRecords by equality), each with its normalisation
    searchable: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Purpose:
    """Why a caller reads: which categories, and optionally which fields of each, it may see."""

    name: str
    categories: frozenset[str]
    #: per category, the visible fields; a category absent here shows all its declared fields
    fields: Mapping[str, frozenset[str]] = field(default_factory=dict)
    description: str = ""
    #: reads need an active consent grant of the subject for this purpose and grantee
    consent_required: bool = False
    #: reads only ever get a de-identified view (identifier fields dropped, free text scrubbed)
    deidentified: bool = False
    #: released text is scrubbed of contact details and national ids (e-mail addresses, phone
    #: numbers, resident registration and card numbers), the rest released as is: for a
    #: partner who must see what a member wrote but never how to reach them around the company
    scrub_text: bool = False
    #: reads are allowed while the subject's processing is restricted (legal obligations, the
    #: subject's own access)
    restriction_exempt: bool = False
    #: may read the records kept under legal retention after the subject's erasure (only the
    #: legal purpose that keeps them; never the subject-access export)
    retained_access: bool = False
    #: the only kind of purpose that may read a dormant subject's records (bringing it back)
    reactivation: bool = False
    #: consent is needed from each of these parties (e.g. "client" and "counselor"), each
    #: revocable on its own: a read sees only what every party's grants cover (implies
    #: ``consent_required``)
    consent_parties: tuple[str, ...] = ()

    def visible_fields(self, category: Category) -> frozenset[str]:
        """The fields of ``category`` this purpose may see."""
        visible = self.fields.get(category.name, category.fields)
        return visible - category.identifiers if self.deidentified else visible


@dataclass(frozen=True)
class Role:
    """A set of allowed actions and the purposes under which the role may read."""

    name: str
    actions: frozenset[Action]
    purposes: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Principal:
    """An authenticated caller."""

    name: str
    role: str


def token_digest(token: str) -> bytes:
    """The digest a policy stores for a bearer token (``token_sha256``): never the token."""
    return hashlib.sha256(token.encode()).digest()


@dataclass(frozen=True)
class PrincipalEntry:
    """A principal as declared in the policy: its token's SHA-256 (never the token) and/or the
    common name of its TLS client certificate."""

    principal: Principal
    token_sha256: bytes | None = None
    cert_cn: str | None = None


@dataclass(frozen=True)
class Dormancy:
    """The company's dormancy rule (the policy's ``[dormancy]`` table; without one, dormancy is
    off). Korea dropped the mandatory separation of dormant accounts in 2023 (PIPA Art. 39-6):
    this is a promise a company makes in its own privacy policy. Periods are in seconds.

    A subject inactive for ``after`` becomes dormant; a notice is due ``notice`` before that; a
    dormant subject is erased ``destroy_after`` after it became dormant (0: never for dormancy,
    its records' own retention rules still apply). With ``separate``, a dormant subject's key is
    kept wrapped under the dormant context (separated storage): no read path but reactivation
    can open it (docs/lifecycle.md)."""

    after: float
    notice: float
    destroy_after: float = 0.0
    separate: bool = True


@dataclass(frozen=True)
class Policy:
    """The whole validated policy."""

    categories: Mapping[str, Category]
    purposes: Mapping[str, Purpose]
    roles: Mapping[str, Role]
    principals: Mapping[str, PrincipalEntry]
    source: str = "<policy>"
    #: business events the policy knows: those its retention rules name, and its ``events``
    #: list (a share may only end at a known event)
    events: frozenset[str] = frozenset()
    #: the dormancy rule; None: dormancy is off
    dormancy: Dormancy | None = None

    def with_principal(self, entry: PrincipalEntry) -> Policy:
        """A copy with one more principal (the development token of ``make run``)."""
        if entry.principal.role not in self.roles:
            raise ValueError(f"unknown role {entry.principal.role!r}")
        return Policy(
            self.categories,
            self.purposes,
            self.roles,
            {**self.principals, entry.principal.name: entry},
            self.source,
            self.events,
            self.dormancy,
        )


@fast_init
@dataclass(frozen=True)
class Grant:
    """A subject's consent: this purpose, for this grantee (a principal or every principal of a
    role), over these categories (and optionally only some fields of each), within a window.
    Revocable; revocation and expiry take effect at the next read (grants are never cached)."""

    grant_id: str
    purpose: str
    categories: frozenset[str]
    valid_from: float
    valid_until: float | None = None
    grantee_principal: str = ""
    grantee_role: str = ""
    #: per category, the only fields covered; a category absent here covers all its fields
    fields: Mapping[str, frozenset[str]] = field(default_factory=dict)
    revoked_at: float | None = None
    #: where the consent was collected; stored only sealed under the subject key
    evidence_reference: str = ""
    #: the evidence reference as stored (sealed under the subject key; opaque here)
    sealed_evidence: bytes = field(default=b"", repr=False)
    #: which party gave it, for a purpose with ``consent_parties`` ("" otherwise)
    party: str = ""

    def active_at(self, now: float) -> bool:
        """Valid at ``now``: started, not expired, not revoked."""
        return (
            self.valid_from <= now
            and (self.valid_until is None or now < self.valid_until)
            and (self.revoked_at is None or now < self.revoked_at)
        )

    def covers(self, principal: Principal) -> bool:
        """Whether the grant names this principal or its role."""
        return self.grantee_principal == principal.name or (
            bool(self.grantee_role) and self.grantee_role == principal.role
        )
