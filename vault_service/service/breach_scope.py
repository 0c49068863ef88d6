"""The breach scope (auditor role): which subjects had which categories and fields released to
whom, and when, in a time window; the answer a controller owes within 72 hours of a breach
(PIPA Art. 34, GDPR Art. 33).

It is read from the audit trail alone: every release entry (GetRecord, DownloadContent,
ExportSubject, share reads: the release step writes them) names the subject by its pseudonym, the
record's category, the names of the fields released and the principal with its role. The answer
holds pseudonyms, names and counts, never a subject id or a field value. Entries written before
schema 18 recorded no category or fields: they are counted, as not recorded. The query is audited.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from vault_service.errors import InvalidArgument
from vault_service.policy import Action
from vault_service.service import validate
from vault_service.service.access import Access
from vault_service.service.types import CallContext
from vault_service.storage import RecordStore
from vault_service.storage.rows import BreachQuery, ReleaseGroup


@dataclass(frozen=True)
class Disclosure:
    """Releases of one subject's records of one category to one principal, for one purpose, by
    one action: the union of the fields released, how many releases, the first and the last.
    ``category`` and ``fields`` are None where the entries did not record them (before schema
    18)."""

    category: str | None
    fields: tuple[str, ...] | None
    principal: str
    role: str | None
    action: str
    purpose: str
    releases: int
    first_at: float
    last_at: float


@dataclass(frozen=True)
class SubjectScope:
    """What was released of one subject in the window (``records``: distinct records)."""

    subject_pseudonym: str
    releases: int
    records: int
    first_at: float
    last_at: float
    disclosures: tuple[Disclosure, ...]


@dataclass(frozen=True)
class Tally:
    """Releases (and distinct subjects) of one category, or to one principal with its role.
    ``recorded`` is False where the entries did not record the category (or the role)."""

    name: str | None
    role: str | None
    releases: int
    subjects: int
    recorded: bool


@dataclass(frozen=True)
class BreachScopeReport:
    """The breach scope of a window, with the filters it was asked with."""

    query: BreachQuery
    subjects: tuple[SubjectScope, ...]
    releases: int
    records: int
    #: releases whose entries recorded no category and fields (written before schema 18)
    unrecorded: int
    by_category: tuple[Tally, ...]
    by_recipient: tuple[Tally, ...]


def _sort_key(value: str | None) -> tuple[bool, str]:
    return (value is None, value or "")


def _disclosures(groups: list[ReleaseGroup]) -> tuple[Disclosure, ...]:
    merged: dict[tuple[str | None, str, str | None, str, str], list[ReleaseGroup]] = defaultdict(list)
    for g in groups:
        merged[(g.category, g.principal, g.role, g.action, g.purpose)].append(g)
    out = []
    for (category, principal, role, action, purpose), alike in merged.items():
        recorded = [g.released_fields for g in alike if g.released_fields is not None]
        out.append(
            Disclosure(
                category=category,
                fields=tuple(sorted({f for names in recorded for f in names})) if recorded else None,
                principal=principal,
                role=role,
                action=action,
                purpose=purpose,
                releases=sum(g.releases for g in alike),
                first_at=min(g.first_at for g in alike),
                last_at=max(g.last_at for g in alike),
            )
        )
    out.sort(key=lambda d: (_sort_key(d.category), d.principal, d.action, d.purpose, d.first_at))
    return tuple(out)


@dataclass
class _Count:
    releases: int = 0
    subjects: set[str] = field(default_factory=set)

    def add(self, g: ReleaseGroup) -> None:
        self.releases += g.releases
        self.subjects.add(g.subject_pseudonym)


def _tallies(counts: dict[tuple[str | None, str | None], _Count], recorded: int) -> tuple[Tally, ...]:
    """``recorded``: which part of the key (0 the name, 1 the role) says whether it was recorded."""
    return tuple(
        Tally(name, role, c.releases, len(c.subjects), (name, role)[recorded] is not None)
        for (name, role), c in sorted(
            counts.items(), key=lambda kv: (_sort_key(kv[0][0]), _sort_key(kv[0][1]))
        )
    )


class BreachScope:
    """The breach-scope query of the auditor role (see the module docstring)."""

    def __init__(self, access: Access, store: RecordStore) -> None:
        self.access = access
        self.store = store

    def scope(self, call: CallContext, query: BreachQuery) -> BreachScopeReport:
        """The releases of ``query``'s window (``start <= at <= end``), per subject pseudonym."""
        if not query.end:
            raise InvalidArgument("to is required: the end of the window (Unix seconds)")
        validate.time(query.start, "from")
        validate.time(query.end, "to")
        if query.start > query.end:
            raise InvalidArgument("from must not be after to")
        for value, what in (
            (query.principal, "principal"),
            (query.category, "category"),
            (query.purpose, "purpose"),
        ):
            validate.policy_name(value, what)
        self.access.allow(call, Action.AUDIT_BREACH_SCOPE)
        self.store.append_audit(
            self.access.row(
                call,
                Action.AUDIT_BREACH_SCOPE,
                f"breach scope queried: {query.start:.0f}-{query.end:.0f}",
            )
        )
        rows = self.store.breach_scope(query)
        per_subject: dict[str, list[ReleaseGroup]] = defaultdict(list)
        by_category: dict[tuple[str | None, str | None], _Count] = defaultdict(_Count)
        by_recipient: dict[tuple[str | None, str | None], _Count] = defaultdict(_Count)
        unrecorded = 0
        for g in rows.groups:
            per_subject[g.subject_pseudonym].append(g)
            by_category[(g.category, None)].add(g)
            by_recipient[(g.principal, g.role)].add(g)
            if g.category is None:
                unrecorded += g.releases
        subjects = tuple(
            SubjectScope(
                subject_pseudonym=pseudonym,
                releases=sum(g.releases for g in groups),
                records=rows.records.get(pseudonym, 0),
                first_at=min(g.first_at for g in groups),
                last_at=max(g.last_at for g in groups),
                disclosures=_disclosures(groups),
            )
            for pseudonym, groups in sorted(per_subject.items())
        )
        return BreachScopeReport(
            query=query,
            subjects=subjects,
            releases=sum(s.releases for s in subjects),
            records=sum(s.records for s in subjects),
            unrecorded=unrecorded,
            by_category=_tallies(by_category, 0),
            by_recipient=_tallies(by_recipient, 1),
        )
