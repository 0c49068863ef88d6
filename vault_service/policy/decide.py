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
    Grant,
    Policy,
    Principal,
    Purpose,
)


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
    #: the subject was erased: only records kept by law remain, for retained-access purposes
    subject_erased: bool = False
    #: the subject is dormant (reads only for reactivation purposes)
    subject_dormant: bool = False
    #: the subject's consent grants for this purpose (active or not: decide checks the window)
    grants: Sequence[Grant] = ()


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
    denial = subject_denial(
        purpose,
        erased=request.subject_erased,
        restricted=request.subject_restricted,
        dormant=request.subject_dormant,
    )
    if denial:
        return _deny(denial)
    wanted = request.fields if request.fields is not None else visible
    if purpose.consent_required:
        covered: set[str] = set()
        for grant in active_grants(
            request.grants, request.principal, purpose.name, request.now, category.name
        ):
            covered |= grant.fields.get(category.name, category.fields)
        if not covered:
            return _deny("no consent")
        if request.fields is not None and not request.fields <= covered:
            return _deny("field not covered by consent")
        wanted = wanted & frozenset(covered)
    return Decision(
        True,
        "purpose permits fields",
        frozenset(wanted),
        purpose.deidentified,
        purpose.deidentified or purpose.scrub_text,
    )


def subject_denial(purpose: Purpose, *, erased: bool, restricted: bool, dormant: bool) -> str:
    """Why the subject's state forbids reads under ``purpose`` ("" if it does not): an erased
    subject's records kept by law only for ``retained_access`` purposes, a restricted subject only
    for ``restriction_exempt`` ones, a dormant subject only for ``reactivation`` ones."""
    if erased and not purpose.retained_access:
        return "subject erased"
    if restricted and not purpose.restriction_exempt:
        return "subject restricted"
    if dormant and not purpose.reactivation:
        return "subject dormant"
    return ""


def needs_subject_state(purpose: str | None, policy: Policy) -> bool:
    """Whether a read under ``purpose`` depends on per-subject state (consent). Then a missing
    record is PERMISSION_DENIED, like a record without consent: no existence oracle."""
    found = policy.purposes.get(purpose or "")
    return found is not None and found.consent_required
