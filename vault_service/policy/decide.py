"""The one policy decision function every request goes through.

``decide(request, policy)`` is pure: the same input gives the same :class:`Decision`. Its input
grows with the project (grants, shares, subject state) without changing the call sites.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from vault_service.policy.model import (
    CONTENT_FIELD,
    READ_ACTIONS,
    Action,
    Category,
    Grant,
    Policy,
    Principal,
    Purpose,
)
from vault_service.values import fast_init


@fast_init
@dataclass(frozen=True)
class AccessRequest:
    """Who wants to do what, why, to which kind of data, and when (server time)."""

    principal: Principal
    action: Action
    now: float
    purpose: str | None = None
    category: str | None = None
    #: fields the caller asked for; None means "every field the purpose allows"
    fields: frozenset[str] | None = None
    #: the subject's processing is restricted (reads only for restriction-exempt purposes)
    subject_restricted: bool = False
    #: this record's processing is restricted (a correction or deletion request in progress)
    record_restricted: bool = False
    #: the subject was erased: only records kept by law remain, for retained-access purposes
    subject_erased: bool = False
    #: the subject is dormant (reads only for reactivation purposes)
    subject_dormant: bool = False
    #: the subject's consent grants for this purpose (active or not: decide checks the window)
    grants: Sequence[Grant] = ()


@fast_init
@dataclass(frozen=True)
class Decision:
    """Allow or deny, a reason safe to audit (no PHI), and the fields that may be released."""

    allowed: bool
    reason: str
    fields: frozenset[str] = frozenset()
    #: the release must be de-identified (identifier fields dropped, free text scrubbed)
    deidentified: bool = False
    #: released text is scrubbed of contact details (de-identified views, ``scrub_text`` purposes)
    scrub: bool = False


def _deny(reason: str) -> Decision:
    return Decision(False, reason)


def active_grants(
    grants: Sequence[Grant], principal: Principal, purpose: str, now: float, category: str = ""
) -> list[Grant]:
    """The grants in force at ``now`` for ``purpose`` that name ``principal`` (or its role),
    over ``category`` if one is given: the one consent rule of reads, shares and share reads."""
    return [
        g
        for g in grants
        if g.purpose == purpose
        and g.covers(principal)
        and g.active_at(now)
        and (not category or category in g.categories)
    ]


def consented(
    grants: Sequence[Grant],
    principal: Principal | None,
    purpose: Purpose,
    now: float,
    category: str = "",
) -> bool:
    """Whether consent for ``purpose`` is in force at ``now`` (for ``principal``; None: for any
    grantee), over ``category`` if one is given: some grant, or for a purpose with
    ``consent_parties`` a grant of every party. The one rule of "is there consent" for reads,
    shares, share reads and the stores that need consent."""
    parties = {
        g.party
        for g in grants
        if g.purpose == purpose.name
        and (principal is None or g.covers(principal))
        and g.active_at(now)
        and (not category or category in g.categories)
    }
    return bool(parties) and set(purpose.consent_parties) <= parties


def consent_cover(
    grants: Sequence[Grant], principal: Principal, purpose: Purpose, now: float, category: Category
) -> frozenset[str]:
    """The fields of ``category`` that consent in force covers: what the principal's grants
    cover, and for a purpose with ``consent_parties`` only what every party's grants cover
    (either party narrowing or revoking its consent narrows or ends the read)."""
    by_party: dict[str, set[str]] = {}
    for grant in active_grants(grants, principal, purpose.name, now, category.name):
        by_party.setdefault(grant.party, set()).update(grant.fields.get(category.name, category.fields))
    if not purpose.consent_parties:
        return frozenset().union(*by_party.values())
    if not set(purpose.consent_parties) <= set(by_party):
        return frozenset()
    return frozenset.intersection(*(frozenset(by_party[p]) for p in purpose.consent_parties))


def decide(request: AccessRequest, policy: Policy) -> Decision:
    """Deny by default; allow only what the principal's role and the purpose both permit.

    With ``category`` unset the check stops at the role and purpose (used before a record is
    fetched, so that a caller without rights never learns whether a record exists).
    """
    role = policy.roles.get(request.principal.role)
    if role is None or request.action not in role.actions:
        return _deny("action not permitted for role")
    if request.action not in READ_ACTIONS:
        if request.category is not None and request.category not in policy.categories:
            return _deny("unknown category")
        return Decision(True, "role permits action")
    if request.purpose is None:
        return _deny("purpose required")
    purpose = policy.purposes.get(request.purpose)
    if purpose is None:
        return _deny("unknown purpose")
    if purpose.name not in role.purposes:
        return _deny("purpose not permitted for role")
    if request.category is None:
        return Decision(True, "role permits purpose")
    category = policy.categories.get(request.category)
    if category is None or category.name not in purpose.categories:
        return _deny("category not permitted for purpose")
    visible = purpose.visible_fields(category)
    if purpose.deidentified:
        visible -= {CONTENT_FIELD}  # images cannot be scrubbed: never in a de-identified view
    if request.fields is not None and not request.fields <= visible:
        return _deny("field not permitted for purpose")
    denial = state_denial(
        purpose,
        erased=request.subject_erased,
        restricted=request.subject_restricted,
        dormant=request.subject_dormant,
        record_restricted=request.record_restricted,
    )
    if denial:
        return _deny(denial)
    wanted = request.fields if request.fields is not None else visible
    if purpose.consent_required:
        covered = consent_cover(request.grants, request.principal, purpose, request.now, category)
        if not covered:
            return _deny("no consent")
        if request.fields is not None and not request.fields <= covered:
            return _deny("field not covered by consent")
        wanted = wanted & covered
    return Decision(
        True,
        "purpose permits fields",
        frozenset(wanted),
        purpose.deidentified,
        purpose.deidentified or purpose.scrub_text,
    )


def state_denial(
    purpose: Purpose,
    *,
    erased: bool,
    restricted: bool,
    dormant: bool,
    record_restricted: bool = False,
) -> str:
    """Why the subject's (or the record's) state forbids reads under ``purpose`` ("" if it does
    not): an erased subject's records kept by law only for ``retained_access`` purposes, a
    restricted subject or record only for ``restriction_exempt`` ones, a dormant subject only for
    ``reactivation`` ones."""
    if erased and not purpose.retained_access:
        return "subject erased"
    if restricted and not purpose.restriction_exempt:
        return "subject restricted"
    if record_restricted and not purpose.restriction_exempt:
        return "record restricted"
    if dormant and not purpose.reactivation:
        return "subject dormant"
    return ""


def needs_subject_state(purpose: str | None, policy: Policy) -> bool:
    """Whether a read under ``purpose`` depends on per-subject state (consent). Then a missing
    record is PERMISSION_DENIED, like a record without consent: no existence oracle."""
    found = policy.purposes.get(purpose or "")
    return found is not None and found.consent_required
