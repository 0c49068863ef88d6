"""The breach scope (auditor role): which subjects had which categories and fields released to
whom, and when, in a time window; the answer a controller owes within 72 hours of a breach
(PIPA Art. 34, GDPR Art. 33).

It is read from the audit trail alone: every release entry (GetRecord, DownloadContent,
ExportSubject, share reads: the release step writes them; and each record a FindRecords search
returns, a release of the searched field: the actions of ``audit.model.RELEASE_ACTIONS``) names
the subject by its pseudonym, the record's category, the names of the fields released and the
principal with its role. The answer holds pseudonyms, names and counts, never a subject id or a
field value. Entries written before schema 18 recorded no category or fields: they are counted,
as not recorded.

The trail is only as long as ``[audit] retention_days``: pruning deletes older entries. The
answer says when the oldest retained entry was written, whether the trail was ever pruned (its
oldest entry is not entry 1), and whether the window is complete (never pruned, or it starts at
or after the oldest retained entry); a window reaching further back is incomplete, and says so.
The query is audited with its window, its filters and that verdict.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from vault_service.errors import InvalidArgument, Unavailable
from vault_service.policy import Action
from vault_service.service import validate
from vault_service.service.access import Access
from vault_service.service.audit_queries import sequenced
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
class Coverage:
    """How much of the window the trail still holds. ``oldest_at``: the time of the oldest
    retained entry (None: an empty trail); ``pruned``: entries were deleted by retention
    pruning (the oldest retained entry is not entry 1); ``complete``: every entry of the window
    is still there (never pruned, or the window starts at or after ``oldest_at``)."""

    oldest_at: float | None
    pruned: bool
    complete: bool

    @classmethod
    def of(cls, oldest_seq: int | None, oldest_at: float | None, start: float) -> Coverage:
        pruned = oldest_seq is not None and oldest_seq > 1
        complete = not pruned or (oldest_at is not None and start >= oldest_at)
        return cls(oldest_at, pruned, complete)

    def describe(self) -> str:
        """The verdict, as the query's audit entry records it."""
        if self.complete:
            return "window complete"
        return f"window incomplete: trail pruned, oldest retained entry at {self.oldest_at:.0f}"


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
    coverage: Coverage


def _filters(query: BreachQuery) -> str:
    """The filters of a query as audited (policy names: no PHI)."""
    named = [
        f"{what}={value}"
        for what, value in (
            ("principal", query.principal),
            ("category", query.category),
            ("purpose", query.purpose),
        )
        if value
    ]
    return "filters " + " ".join(named) if named else "no filters"


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
        sequenced(self.store)  # every release committed before the query is in the chain
        first = self.store.audit_entries(0, 1)
        asked = Coverage.of(
            first[0].seq if first else None, first[0].row.at if first else None, query.start
        )
        self.store.append_audit(
            self.access.row(
                call,
                Action.AUDIT_BREACH_SCOPE,
                f"breach scope queried: {query.start:.0f}-{query.end:.0f}; {_filters(query)};"
                f" {asked.describe()}",
            )
        )
        sequenced(self.store)
        rows = self.store.breach_scope(query)
        coverage = Coverage.of(rows.oldest_seq, rows.oldest_at, query.start)
        if coverage.complete != asked.complete:
            # a prune ran between the audit entry and the read: the entry would misstate it
            raise Unavailable("the audit trail was pruned during the query: ask again")
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
            coverage=coverage,
        )
