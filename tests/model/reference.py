"""The reference model of the vault's promises, written from the docs (README.md, docs/lifecycle.md,
docs/shares.md, docs/keys.md, docs/policy.md, docs/large-objects.md) as amended by the decisions
D1..D14 of docs/decisions/issue-17.md, never from the service code.

Pure Python: it imports nothing of ``vault_service``; it knows the policy by reading
``tests/model/policy.toml`` itself.

For every operation the model gives an :class:`Expect`: the statuses a conforming vault may answer
(one where the docs decide; several where they do not, each such place marked ``ambiguous:``),
for OK the exact value released, and what each answer changes in the model. Where several answers
conform, the model continues from the one the vault gave (:meth:`Expect.commit`); it never accepts
a release of anything destroyed, of a field the caller may not see, or of a read-once payload twice.

Objects are named by labels (``r3`` records, ``g1`` grants, ``x2`` shares, ``h0`` holds, ``b1``
backups); the test maps them to the vault's ids. :class:`State` is what a backup of the data
directory holds; the destruction ledger (D1), the clock and the root-key epoch live outside it.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import tomllib
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

POLICY_PATH = Path(__file__).with_name("policy.toml")

OK = "OK"
INVALID_ARGUMENT = "INVALID_ARGUMENT"
PERMISSION_DENIED = "PERMISSION_DENIED"
NOT_FOUND = "NOT_FOUND"
FAILED_PRECONDITION = "FAILED_PRECONDITION"
ANY_ERROR = frozenset({INVALID_ARGUMENT, PERMISSION_DENIED, NOT_FOUND, FAILED_PRECONDITION})

HOUR, DAY = 3600.0, 86400.0
#: the dormancy periods of the model's policy (tests/model/policy.toml [dormancy], scaled down)
DORMANT_AFTER, DORMANCY_NOTICE, DORMANT_DESTROY_AFTER = 60 * DAY, 10 * DAY, 120 * DAY
#: the searchable fields of the model's policy (tests/model/policy.toml) and their normalisations
SEARCHABLE = {("note", "title"): "casefold", ("payment", "reference"): "exact"}
#: D6: the range of every time in a request
MAX_TIME = 253402300799.0
#: D9: the most of a caller's value an error message may echo
MAX_ECHO = 64

#: bearer tokens of the principals of policy.toml (which holds only their SHA-256)
TOKENS = {
    name: f"model-{name}-token-0123456789"
    for name in ("app", "clinic", "clinic2", "officer", "legal", "auditor")
}

# record states: readable, or the reason it is not
LIVE = "live"
DESTROYED = "destroyed"  # crypto-shredded: in the destroyed set, never readable again
LOST = "lost"  # written after the backup that was restored: the database never had it
CONSUMED = "consumed"  # a read-once record released under a hold: never released again (D3)
LIMBO = "limbo"  # restored at a version whose destruction a hold defers (D1): exact or not found
GONE = frozenset({DESTROYED, LOST})


# --- the policy, read from policy.toml ----------------------------------------------------------


@dataclass(frozen=True)
class Category:
    """A category: its named fields, whether it has content, identifiers, its retention rule."""

    name: str
    fields: frozenset[str]
    content: bool
    identifiers: frozenset[str]
    rule: str  # "none" | "read_once" | "after_creation" | "after_event"
    period: float = 0.0
    event: str = ""
    survives_erasure: bool = False


@dataclass(frozen=True)
class Purpose:
    """A purpose and its flags (D10: restriction_exempt and retained_access are separate)."""

    name: str
    categories: frozenset[str]
    subsets: dict[str, frozenset[str]]
    consent_required: bool = False
    deidentified: bool = False
    restriction_exempt: bool = False
    retained_access: bool = False
    reactivation: bool = False


@dataclass(frozen=True)
class Policy:
    """What the model needs of the policy file."""

    categories: dict[str, Category]
    purposes: dict[str, Purpose]
    role_actions: dict[str, frozenset[str]]
    role_purposes: dict[str, frozenset[str]]
    principal_roles: dict[str, str]
    events: frozenset[str]

    @staticmethod
    def load(path: Path = POLICY_PATH) -> Policy:
        doc = tomllib.loads(path.read_text())
        cats: dict[str, Category] = {}
        for name, t in doc["categories"].items():
            ret = t.get("retention", {})
            if ret.get("read_once"):  # with days/hours: shredded then if never read
                rule, event = "read_once", ""
                period = ret.get("days", 0) * DAY + ret.get("hours", 0) * HOUR
            elif ret.get("after") == "creation":
                rule, event = "after_creation", ""
                period = ret.get("days", 0) * DAY + ret.get("hours", 0) * HOUR
            elif ret.get("after") == "event":
                rule, event = "after_event", ret["event"]
                period = ret.get("days", 0) * DAY + ret.get("hours", 0) * HOUR
            else:
                rule, period, event = "none", 0.0, ""
            cats[name] = Category(
                name,
                frozenset(t.get("fields", [])),
                bool(t.get("content", False)),
                frozenset(t.get("identifiers", [])),
                rule,
                period,
                event,
                bool(ret.get("survives_erasure", False)),
            )
        purposes = {
            name: Purpose(
                name,
                frozenset(t["categories"]),
                {c: frozenset(f) for c, f in t.get("fields", {}).items()},
                **{
                    flag: bool(t.get(flag, False))
                    for flag in (
                        "consent_required",
                        "deidentified",
                        "restriction_exempt",
                        "retained_access",
                        "reactivation",
                    )
                },
            )
            for name, t in doc["purposes"].items()
        }
        events = set(doc.get("events", []))
        events |= {c.event for c in cats.values() if c.event}
        return Policy(
            cats,
            purposes,
            {n: frozenset(t.get("actions", [])) for n, t in doc["roles"].items()},
            {n: frozenset(t.get("purposes", [])) for n, t in doc["roles"].items()},
            {n: t["role"] for n, t in doc["principals"].items()},
            frozenset(events),
        )

    def all_fields(self, category: str) -> frozenset[str]:
        """Every field of a category, with the pseudo-field ``content`` if it has content."""
        c = self.categories[category]
        return c.fields | ({"content"} if c.content else set())

    def visible(self, purpose: str, category: str) -> frozenset[str]:
        """What ``purpose`` may ever see of ``category`` (docs/policy.md, step 3): its subset or
        every field; de-identified purposes never identifiers, never content."""
        p = self.purposes[purpose]
        if category not in p.categories:
            return frozenset()
        seen = p.subsets.get(category, self.all_fields(category))
        if p.deidentified:
            seen = seen - self.categories[category].identifiers - {"content"}
        return seen

    def may(self, principal: str, action: str) -> bool:
        return action in self.role_actions[self.principal_roles[principal]]


# --- the destruction ledger -----------------------------------------------------------------------


class Ledger(dict[tuple[str, ...], str]):
    """D1's ledger: the last entry per object, kept in the order of those last entries (a new
    entry of an object moves it to the end, as the docs' "last entry wins" and a replay in
    ledger order mean); ``seq`` numbers every entry, so that a hold can be placed before or after
    one. A read-once record once released stays consumed whatever entry follows (docs/lifecycle.md).
    """

    def __init__(self) -> None:
        super().__init__()
        self.seq: dict[tuple[str, ...], int] = {}
        self.count = 0

    def __setitem__(self, key: tuple[str, ...], value: str) -> None:
        if value == "deferred" and self.get(key) == "consumed":
            value = "consumed"
        self.pop(key, None)
        super().__setitem__(key, value)
        self.count += 1
        self.seq[key] = self.count


# --- the state a backup holds ---------------------------------------------------------------------


@dataclass
class Subject:
    """A data subject. ``act_lo``/``act_hi`` bound the activity time the vault has recorded
    (docs/lifecycle.md: every write, and at most once a day a read)."""

    sid: str
    state: str = "active"  # active | dormant | erased
    restricted: bool = False
    erase_pending: bool = False  # asked for during a hold (D1: deferred)
    events: dict[str, float] = field(default_factory=dict)
    act_lo: float = 0.0
    act_hi: float = 0.0
    dormant_since: float = 0.0


@dataclass
class Record:
    """A record as the model knows it; ``kept`` are old versions a hold keeps (D13)."""

    label: str
    subject: str
    category: str
    fields: dict[str, str]
    content: bytes | None
    version: int
    created_at: float
    state: str = LIVE
    delete_pending: bool = False
    kept: set[int] = field(default_factory=set)


@dataclass
class Grant:
    """A consent grant (docs/policy.md): to a principal or a role, over categories."""

    label: str
    subject: str
    purpose: str
    principal: str
    role: str
    categories: frozenset[str]
    valid_from: float
    valid_until: float | None
    evidence: str
    revoked: bool = False
    lost: bool = False

    def active(self, now: float) -> bool:
        return (
            not self.revoked
            and not self.lost
            and self.valid_from <= now
            and (self.valid_until is None or now < self.valid_until)
        )


@dataclass
class Share:
    """A share (docs/shares.md): records, fields, recipient, its end."""

    label: str
    subject: str
    recipient: str
    purpose: str
    records: tuple[str, ...]
    fields: frozenset[str]
    expires_at: float | None
    event: str
    period: float
    state: str = LIVE  # live | destroyed | lost


@dataclass
class Hold:
    """A legal hold on a subject, or on one of its records."""

    label: str
    subject: str
    record: str | None
    active: bool = True
    lost: bool = False
    #: how many ledger entries had been written when it was placed (D1's "from before")
    placed: int = 0


@dataclass
class State:
    """Everything a backup of the data directory restores."""

    subjects: dict[str, Subject] = field(default_factory=dict)
    records: dict[str, Record] = field(default_factory=dict)
    grants: dict[str, Grant] = field(default_factory=dict)
    shares: dict[str, Share] = field(default_factory=dict)
    holds: dict[str, Hold] = field(default_factory=dict)


@dataclass
class Backup:
    """A copy of the restorable state and the root-key epoch it was taken in."""

    state: State
    epoch: int


# --- expectations ---------------------------------------------------------------------------------


@dataclass
class Actual:
    """What the vault answered: a status name, and for OK (or a stream cut short) the value."""

    status: str
    value: Any = None
    message: str = ""


class Discrepancy(AssertionError):
    """The vault answered something the model says no conforming vault may answer."""


@dataclass
class Expect:
    """The answers a conforming vault may give to one operation.

    ``statuses``: the acceptable statuses. ``check(value)`` (for OK, and for streams whatever
    was released before an error) returns a description of what is wrong, or None.
    ``effects[status]`` changes the model for that answer (default: nothing)."""

    op: str
    statuses: frozenset[str]
    check: Callable[[Any], str | None] | None = None
    effects: dict[str, Callable[[Actual], None]] = field(default_factory=dict)
    why: str = ""

    def commit(self, actual: Actual) -> None:
        """Raise :class:`Discrepancy` unless ``actual`` conforms; then apply its effect."""
        if actual.status not in self.statuses:
            raise Discrepancy(
                f"{self.op}: expected {' or '.join(sorted(self.statuses))}"
                f"{f' ({self.why})' if self.why else ''}, got {actual.status}"
                f"{f': {actual.message}' if actual.message else ''}"
                f"{f' value={_short(actual.value)}' if actual.status == OK else ''}"
            )
        if self.check is not None and (actual.status == OK or actual.value is not None):
            problem = self.check(actual.value)
            if problem:
                raise Discrepancy(f"{self.op}: answered {actual.status} but {problem}")
        effect = self.effects.get(actual.status)
        if effect is not None:
            effect(actual)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) < 300 else text[:300] + "…"


def expect(
    op: str,
    statuses: Iterable[str],
    check: Callable[[Any], str | None] | None = None,
    why: str = "",
    **effects: Callable[[Actual], None],
) -> Expect:
    return Expect(op, frozenset(statuses), check, dict(effects), why)


def valid_time(t: float) -> bool:
    """D6: finite and in [0, 253402300799] (0 = unset)."""
    return math.isfinite(t) and 0 <= t <= MAX_TIME


def event_name_ok(name: str) -> bool:
    """RecordEvent's rule (D7): 1-64 of a-z, 0-9, _."""
    return 0 < len(name) <= 64 and all(c in "abcdefghijklmnopqrstuvwxyz0123456789_" for c in name)


# --- the model ------------------------------------------------------------------------------------


class Model:
    """The promises. Methods named after operations return an :class:`Expect`; the test calls
    the vault, then ``Expect.commit`` with its answer."""

    def __init__(self, start: float) -> None:
        self.policy = Policy.load()
        self.now = start
        self.s = State()
        #: D1: the destruction ledger, last entry per object wins: "done" | "deferred" |
        #: "consumed" (a read-once record released under a hold: deferred, never released again)
        self.ledger = Ledger()
        #: every record label, version and share ever destroyed (never restorable, D12)
        self.destroyed: set[str] = set()
        self.epoch = 1
        self.backups: dict[str, Backup] = {}
        #: subject ids whose state after a restore the docs leave open (never used again)
        self.tainted: set[str] = set()
        #: research pseudonyms seen, per subject (stable within the purpose)
        self.pseudonyms: dict[str, str] = {}
        self._n = 0

    def label(self, prefix: str) -> str:
        self._n += 1
        return f"{prefix}{self._n}"

    # -- helpers ---------------------------------------------------------------------------------
    def subject(self, sid: str) -> Subject | None:
        return self.s.subjects.get(sid)

    def usable(self, sid: str) -> bool:
        """A subject id the test may still act on."""
        return sid not in self.tainted

    def records_of(self, sid: str) -> list[Record]:
        return [r for r in self.s.records.values() if r.subject == sid]

    def rule(self, r: Record) -> Category:
        return self.policy.categories[r.category]

    def held_subject(self, sid: str) -> bool:
        """A hold on the subject or on any of its records (blocks its erasure)."""
        return any(h.active and not h.lost and h.subject == sid for h in self.s.holds.values())

    def held_record(self, r: Record) -> bool:
        """A hold on the record or on its subject (blocks its deletion)."""
        return any(
            h.active and not h.lost and h.subject == r.subject and h.record in (None, r.label)
            for h in self.s.holds.values()
        )

    def retained(self, r: Record) -> bool:
        """A record kept by law after its subject's erasure (survives_erasure)."""
        return self.rule(r).survives_erasure

    def touch(self, sid: str, certain: bool, read: bool = False) -> None:
        """Activity (docs/lifecycle.md): a write is recorded now; a read at most once a day, so
        the recorded time is at least a day old; anything else may or may not count."""
        s = self.subject(sid)
        if s is None or s.state == "erased":
            return
        s.act_hi = max(s.act_hi, self.now)
        if certain:
            s.act_lo = max(s.act_lo, self.now - DAY if read else self.now)

    def reactivate(self, sid: str) -> None:
        s = self.subject(sid)
        if s is not None and s.state == "dormant":
            s.state = "active"
            s.act_lo = s.act_hi = self.now

    def destroy(self, r: Record, kind_entry: bool = True) -> None:
        """Crypto-shred a record now (its ledger entry written first, D1)."""
        if kind_entry:
            self.ledger[("record", r.label)] = "done"
        r.state = DESTROYED
        r.delete_pending = False
        for v in r.kept:
            self.ledger[("version", r.label, str(v))] = "done"
        r.kept.clear()
        self.destroyed.add(r.label)

    def erase_now(self, sid: str) -> None:
        """THE erasure (D1): ledger first; every record but those kept by law is unreadable at
        once; grants and shares die with the subject key."""
        s = self.s.subjects[sid]
        self.ledger[("subject", sid)] = "done"
        s.state = "erased"
        s.erase_pending = False
        s.restricted = False
        for r in self.records_of(sid):
            if r.state in (LIVE, CONSUMED, LIMBO) and not (self.retained(r) and r.state == LIVE):
                self.destroy(r, kind_entry=False)
        for x in self.s.shares.values():
            if x.subject == sid and x.state == LIVE:
                x.state = DESTROYED

    def granted(self, sid: str, purpose: str, principal: str, category: str) -> bool:
        """An active grant for ``principal`` (or its role) covering ``category``."""
        role = self.policy.principal_roles[principal]
        return any(
            g.subject == sid
            and g.purpose == purpose
            and (g.principal == principal or g.role == role)
            and category in g.categories
            and g.active(self.now)
            for g in self.s.grants.values()
        )

    def share_end(self, x: Share) -> float | None:
        """The earlier of ``expires_at`` and event + period (docs/shares.md)."""
        ends = [x.expires_at] if x.expires_at else []
        s = self.subject(x.subject)
        if x.event and s is not None and x.event in s.events:
            ends.append(s.events[x.event] + x.period)
        return min(ends) if ends else None

    def due(self, r: Record) -> bool:
        """Whether the retention rule makes the record due now."""
        c = self.rule(r)
        if c.rule == "after_creation" or (c.rule == "read_once" and c.period > 0):
            return self.now >= r.created_at + c.period
        if c.rule == "after_event":
            s = self.s.subjects[r.subject]
            return c.event in s.events and self.now >= s.events[c.event] + c.period
        return False

    # -- background jobs -------------------------------------------------------------------------
    def settle(self) -> None:
        """What the background loops do (the test runs them in-process at these points): the
        retention sweep shreds every due record that no hold covers; the share sweep destroys
        expired shares and those of erased subjects."""
        for r in self.s.records.values():
            if r.state == LIVE and self.due(r) and not self.held_record(r):
                self.destroy(r)
        for x in self.s.shares.values():
            if x.state != LIVE:
                continue
            end = self.share_end(x)
            s = self.s.subjects.get(x.subject)
            if s is None or s.state == "erased":
                x.state = DESTROYED
            elif end is not None and self.now >= end:
                self.ledger[("share", x.label)] = "done"
                x.state = DESTROYED
                self.destroyed.add(x.label)

    def dormancy_ambiguous(self) -> str | None:
        """Why a dormancy sweep now could go either way (then the test does not run it): a
        subject whose recorded activity may lie either side of a threshold (docs/lifecycle.md
        and the config disagree on when "four years later" starts: after the inactivity
        threshold or after the sweep that made it dormant; the model takes both ends)."""
        for s in self.s.subjects.values():
            if s.state == "active":
                lo, hi = self.now - s.act_hi, self.now - s.act_lo
                if lo < DORMANT_AFTER <= hi:
                    return f"{s.sid} may or may not be inactive for the dormancy period"
            elif s.state == "dormant" and not self.held_subject(s.sid):
                certain = self.now - s.dormant_since >= DORMANT_DESTROY_AFTER
                never = self.now - s.act_lo < DORMANT_AFTER + DORMANT_DESTROY_AFTER
                if not certain and not never:
                    return f"{s.sid} may or may not be dormant long enough to be destroyed"
        return None

    def sweep_dormancy(self) -> None:
        """Dormant after DORMANT_AFTER of inactivity; erased DORMANT_DESTROY_AFTER later
        (ledger, verification; held subjects wait: D13 skips held data)."""
        for s in list(self.s.subjects.values()):
            if s.state == "active" and self.now - s.act_hi >= DORMANT_AFTER:
                s.state = "dormant"
                s.dormant_since = self.now
            elif (
                s.state == "dormant"
                and self.now - s.dormant_since >= DORMANT_DESTROY_AFTER
                and not self.held_subject(s.sid)
            ):
                self.erase_now(s.sid)

    # -- records ---------------------------------------------------------------------------------
    def put(
        self,
        label: str,
        sid: str,
        category: str,
        fields: dict[str, str],
        content: bytes | None,
        op: str,
    ) -> Expect:
        """PutRecord / UploadRecord (a new record): a declared category, only its declared
        fields, content only where the category has it; never for an erased subject."""
        errors: set[str] = set()
        c = self.policy.categories.get(category)
        if c is None or not set(fields) <= c.fields or (content is not None and not c.content):
            errors.add(INVALID_ARGUMENT)
        s = self.subject(sid)
        if s is not None and s.state == "erased":
            errors.add(FAILED_PRECONDITION)
        if errors:
            return expect(op, errors)

        def stored(a: Actual) -> None:
            known = self.subject(sid)
            if known is None or known.state == "unknown":
                self.s.subjects[sid] = Subject(sid, act_lo=self.now, act_hi=self.now)
            self.reactivate(sid)
            self.touch(sid, certain=True)
            self.s.records[label] = Record(label, sid, category, dict(fields), content, 1, self.now)
            self.settle()

        def check(value: Any) -> str | None:
            return None if value[1] == 1 else f"version {value[1]}, expected 1"

        statuses = {OK}
        if s is not None and s.erase_pending:
            statuses.add(FAILED_PRECONDITION)  # ambiguous: writes while an erasure is deferred
        return expect(op, statuses, check, OK=stored)

    def update(
        self, label: str, fields: dict[str, str], content: bytes | None, expected_version: int
    ) -> Expect:
        """UpdateRecord: a complete new version; the old one destroyed, or kept by a hold and
        destroyed at its release (D13); a wrong expected_version is FAILED_PRECONDITION."""
        r = self.s.records[label]
        s = self.s.subjects[r.subject]
        op = f"update {label}"
        if r.state in GONE or r.state == CONSUMED:
            if s.state == "erased":
                return expect(op, {NOT_FOUND, FAILED_PRECONDITION}, why="subject erased")
            return expect(op, {NOT_FOUND, FAILED_PRECONDITION} if r.state == CONSUMED else {NOT_FOUND})
        if s.state == "erased":
            return expect(op, {FAILED_PRECONDITION}, why="D11: writes to an erased subject")
        statuses = {OK}
        if expected_version and expected_version != r.version:
            statuses = {FAILED_PRECONDITION}
        if r.state == LIMBO:
            statuses |= {NOT_FOUND, FAILED_PRECONDITION}  # ambiguous: see LIMBO
        if s.erase_pending:
            statuses.add(FAILED_PRECONDITION)  # ambiguous: writes while an erasure is deferred

        def updated(a: Actual) -> None:
            old = r.version
            if self.held_record(r):
                r.kept.add(old)
                self.ledger[("version", label, str(old))] = "deferred"
            else:
                self.ledger[("version", label, str(old))] = "done"
                self.destroyed.add(f"{label}@{old}")
            r.version = a.value[1]
            r.fields = dict(fields)
            r.content = content
            r.state = LIVE
            self.reactivate(r.subject)
            self.touch(r.subject, certain=True)

        def check(value: Any) -> str | None:
            if r.state == LIVE and value[1] != r.version + 1:
                return f"version {value[1]}, expected {r.version + 1}"
            return None

        return expect(op, statuses, check, OK=updated)

    def delete(self, label: str) -> Expect:
        """DeleteRecord: shredded at once, or (under a hold) recorded and carried out at the
        release, FAILED_PRECONDITION (docs/lifecycle.md)."""
        r = self.s.records[label]
        s = self.s.subjects[r.subject]
        op = f"delete {label}"
        if r.state in GONE:
            if s.state == "erased":
                # ambiguous: README says NOT_FOUND (subject erased), D11 FAILED_PRECONDITION
                # (writes to an erased subject); nothing is left to delete, so OK too
                return expect(op, {NOT_FOUND, FAILED_PRECONDITION, OK})
            return expect(op, {NOT_FOUND})
        if r.state == CONSUMED:
            return expect(op, {NOT_FOUND, FAILED_PRECONDITION})  # ambiguous: already doomed

        def done(a: Actual) -> None:
            self.destroy(r)

        if s.state == "erased":  # a record kept by law: ambiguous whether it may be deleted
            return expect(op, {OK, NOT_FOUND, FAILED_PRECONDITION}, OK=done)
        if self.held_record(r):

            def deferred(a: Actual) -> None:
                r.delete_pending = True
                self.ledger[("record", label)] = "deferred"

            return expect(op, {FAILED_PRECONDITION}, why="a legal hold", FAILED_PRECONDITION=deferred)
        statuses = {OK} | ({NOT_FOUND} if r.state == LIMBO else set())
        return expect(op, statuses, OK=done)

    # -- reads -----------------------------------------------------------------------------------
    def _authorize(
        self, who: str, action: str, purpose: str, r: Record, asked: frozenset[str] | None
    ) -> tuple[set[str], frozenset[str]]:
        """docs/policy.md "How a request is decided", steps 1-5, for a read of ``r``: the
        statuses (empty: allowed) and what the caller may see of it."""
        pol = self.policy
        if not pol.may(who, action):
            # ambiguous: a malformed request (missing or unknown purpose) may be refused as
            # such before the role is looked at
            bad = {INVALID_ARGUMENT} if purpose not in pol.purposes else set()
            return {PERMISSION_DENIED} | bad, frozenset()
        if purpose not in pol.purposes:
            return {INVALID_ARGUMENT}, frozenset()
        if purpose not in pol.role_purposes[pol.principal_roles[who]]:
            return {PERMISSION_DENIED}, frozenset()
        p = pol.purposes[purpose]
        absent = {PERMISSION_DENIED} if p.consent_required else {NOT_FOUND}
        in_purpose = r.category in p.categories
        s = self.s.subjects[r.subject]
        if r.state in GONE or r.state == CONSUMED:
            # ambiguous: a gone record outside the purpose may be either
            return (absent if in_purpose or p.consent_required else {NOT_FOUND, PERMISSION_DENIED}), (
                frozenset()
            )
        if s.state == "erased" and not p.retained_access:
            # D11: consent-bound reads PERMISSION_DENIED, others NOT_FOUND; ambiguous for a
            # record kept by law read under a purpose without retained_access (D10)
            return (absent if p.consent_required else {NOT_FOUND, PERMISSION_DENIED}), frozenset()
        seen = pol.visible(purpose, r.category)
        denied = (
            not in_purpose
            or (asked is not None and not asked <= seen - {"content"})
            or (s.state == "dormant" and not p.reactivation)
            or (s.restricted and s.state != "erased" and not p.restriction_exempt)
            or (p.consent_required and not self.granted(r.subject, purpose, who, r.category))
        )
        return ({PERMISSION_DENIED} if denied else set()), seen

    def _released(self, r: Record, a: Actual) -> None:
        """A read released ``r``: activity; a reactivation; read-once destruction (D3)."""
        s = self.s.subjects[r.subject]
        if s.state == "dormant":
            self.reactivate(r.subject)
        self.touch(r.subject, certain=True, read=True)
        if self.rule(r).rule == "read_once" and r.state == LIVE:
            if self.held_record(r):
                r.state = CONSUMED
                self.ledger[("record", r.label)] = "consumed"
            else:
                self.destroy(r)

    def _denied(self, r: Record, a: Actual) -> None:
        s = self.s.subjects[r.subject]
        if s.state == "active":
            self.touch(r.subject, certain=False)

    def get(
        self,
        who: str,
        label: str,
        purpose: str,
        fields: list[str] | None,
        include_content: bool,
    ) -> Expect:
        """GetRecord: exactly the fields asked for (or every field the purpose, the grants and
        de-identification let the caller see) and the content if asked for and visible."""
        r = self.s.records[label]
        op = (
            f"get {label} ({r.category}) as {who} for {purpose!r} fields={fields} "
            f"content={include_content}"
        )
        asked = frozenset(fields) if fields else None
        errors, seen = self._authorize(who, "record.get", purpose, r, asked)
        read_once = self.rule(r).rule == "read_once"
        named = seen - {"content"}
        has_content = r.content is not None
        narrowing = read_once and (
            (asked is not None and asked != named) or ("content" in seen and not include_content)
        )
        if errors:
            if narrowing and errors == {PERMISSION_DENIED}:
                errors = errors | {FAILED_PRECONDITION}  # ambiguous: which check comes first
            return Expect(op, frozenset(errors), None, {PERMISSION_DENIED: lambda a: self._denied(r, a)})
        if narrowing:
            return expect(op, {FAILED_PRECONDITION}, why="D3: a read-once record is released whole")
        release = set(asked) if asked else set(named)
        want_content = include_content and has_content and "content" in seen
        expected_fields = {f: r.fields[f] for f in release if f in r.fields}
        expected = (expected_fields, r.content if want_content else None, r.version, r.category)
        statuses = {OK}
        if include_content and "content" not in seen:
            # ambiguous: content asked for where it is not visible, or of a category without
            # content (docs/policy.md: content is a pseudo-field; asking for a field outside
            # what the purpose sees is PERMISSION_DENIED)
            statuses.add(PERMISSION_DENIED)
        if not expected_fields and expected[1] is None:
            statuses |= ANY_ERROR  # ambiguous: a read that would release nothing
        if r.state == LIMBO:
            statuses.add(NOT_FOUND)
        deid = self.policy.purposes[purpose].deidentified

        def check(value: Any) -> str | None:
            got_fields, got_content, version, category, pseudonym = value
            if (got_fields, got_content, version, category) != expected:
                return (
                    f"released fields={got_fields} content={_short(got_content)} v{version} "
                    f"{category}, expected fields={expected[0]} content={_short(expected[1])} "
                    f"v{expected[2]} {expected[3]}"
                )
            if deid:
                if not pseudonym:
                    return "a de-identified view without subject_pseudonym"
                known = self.pseudonyms.setdefault(r.subject, pseudonym)
                if known != pseudonym:
                    return f"pseudonym {pseudonym} changed (was {known})"
                if any(p == pseudonym for s, p in self.pseudonyms.items() if s != r.subject):
                    return "two subjects share a pseudonym"
            return None

        return expect(op, statuses, check, OK=lambda a: self._released(r, a))

    def download(self, label: str, purpose: str, offset: int, length: int) -> Expect:
        """DownloadContent: the content, or bytes [offset, offset+length) of it; read-once
        records only whole (D3)."""
        r = self.s.records[label]
        op = f"download {label} ({r.category}) for {purpose!r} range=({offset},{length})"
        errors, seen = self._authorize("app", "record.get", purpose, r, None)
        read_once = self.rule(r).rule == "read_once"
        narrowing = read_once and (offset > 0 or length > 0 or bool(seen - {"content"}))
        if errors:
            if narrowing and errors == {PERMISSION_DENIED}:
                errors = errors | {FAILED_PRECONDITION}
            return Expect(op, frozenset(errors), None, {PERMISSION_DENIED: lambda a: self._denied(r, a)})
        if "content" not in seen:
            return expect(op, {PERMISSION_DENIED}, why="content not visible to the purpose")
        if narrowing:
            return expect(op, {FAILED_PRECONDITION}, why="D3: a read-once record is released whole")
        assert r.content is not None
        want = r.content[offset : offset + length] if length else r.content[offset:]
        statuses = {OK} | ({NOT_FOUND} if r.state == LIMBO else set())

        def check(value: Any) -> str | None:
            if value != want:
                return f"released {len(value)} bytes, not the {len(want)} expected"
            return None

        return expect(op, statuses, check, OK=lambda a: self._released(r, a))

    def find(self, category: str, field: str, value: str, purpose: str) -> Expect:
        """FindRecords as the application (docs/policy.md "Searchable fields"): refused before
        any lookup unless the role, the purpose and the field under it allow it; then exactly
        the live records whose field equals the value after normalisation that a read of that
        field would be allowed (step 1-5 of a read), in any order; a record in limbo may or may
        not be found. Metadata only: no effect on the model."""
        op = f"find {category}.{field}={value!r} for {purpose!r}"
        pol = self.policy
        if not pol.may("app", "record.find"):
            return expect(op, {PERMISSION_DENIED})
        if purpose not in pol.role_purposes[pol.principal_roles["app"]]:
            return expect(op, {PERMISSION_DENIED})
        if field not in pol.visible(purpose, category) - {"content"}:
            return expect(op, {PERMISSION_DENIED})
        how = SEARCHABLE[(category, field)]

        def normal(v: str) -> str:
            nfc = unicodedata.normalize("NFC", v)
            return nfc if how == "exact" else unicodedata.normalize("NFC", nfc.strip().casefold())

        must: set[str] = set()
        may: set[str] = set()
        for r in self.s.records.values():
            if r.category != category or normal(r.fields.get(field, "")) != normal(value):
                continue
            if r.state == LIMBO:
                may.add(r.label)
            elif (
                r.state == LIVE
                and not self._authorize("app", "record.find", purpose, r, frozenset({field}))[0]
            ):
                must.add(r.label)

        def check(found: set[str]) -> str | None:
            if must <= found <= must | may:
                return None
            return f"found {sorted(found)}, expected {sorted(must)} (and maybe {sorted(may)})"

        return expect(op, {OK}, check)

    def list_records(self, sid: str) -> Expect:
        """ListRecords: metadata of the subject's live records (records in limbo or consumed may
        or may not be listed: ambiguous)."""
        s = self.s.subjects[sid]
        op = f"list {sid}"
        must = {r.label: (r.category, r.version) for r in self.records_of(sid) if r.state == LIVE}
        may = {
            r.label: (r.category, r.version)
            for r in self.records_of(sid)
            if r.state in (LIMBO, CONSUMED)
        }
        if s.state == "erased":
            # ambiguous: the listing of an erased subject (records kept by law at most)
            def check_erased(value: dict[str, tuple[str, int]]) -> str | None:
                extra = {k for k in value if k not in must}
                return f"lists {sorted(extra)} of an erased subject" if extra else None

            return expect(op, {OK, NOT_FOUND, FAILED_PRECONDITION}, check_erased)

        def check(value: dict[str, tuple[str, int]]) -> str | None:
            missing = {k: v for k, v in must.items() if value.get(k) != v}
            extra = {k: v for k, v in value.items() if k not in must and may.get(k) != v}
            if missing or extra:
                return f"listing differs: missing/wrong {missing}, unexpected {extra}"
            return None

        return expect(op, {OK}, check, OK=lambda a: self.touch(sid, certain=False))

    def export(self, sid: str) -> Expect:
        """ExportSubject (subject_access): every live record decrypted, also while restricted;
        read-once records released once (D3); after erasure none of the records kept under
        other laws (D10)."""
        s = self.s.subjects[sid]
        op = f"export {sid}"
        if s.state == "erased":

            def none(value: dict[str, Any]) -> str | None:
                return f"released {sorted(value)} of an erased subject (D10)" if value else None

            return expect(op, {OK} | ANY_ERROR, none, why="erased")
        p = self.policy.purposes["subject_access"]
        live = [r for r in self.records_of(sid) if r.state == LIVE and r.category in p.categories]
        expected = {r.label: (dict(r.fields), r.content) for r in live}
        optional = {
            r.label: (dict(r.fields), r.content) for r in self.records_of(sid) if r.state == LIMBO
        }

        def check(value: dict[str, Any]) -> str | None:
            for k, v in value.items():
                if expected.get(k, optional.get(k)) != v:
                    return f"released {k}={_short(v)}, expected {_short(expected.get(k))}"
            missing = sorted(set(expected) - set(value))
            return f"did not release {missing}" if missing else None

        def released(a: Actual) -> None:
            for r in live:
                self._released(r, a)

        return expect(op, {OK}, check, OK=released)

    # -- consent ---------------------------------------------------------------------------------
    def grant(
        self,
        label: str,
        sid: str,
        principal: str,
        role: str,
        categories: frozenset[str],
        valid_from: float,
        valid_until: float,
        evidence: str,
    ) -> Expect:
        """GrantConsent for the consent-bound purpose: D6 times; never for an erased subject."""
        s = self.s.subjects[sid]
        op = f"grant {label} {sid} to {principal or role} {sorted(categories)}"
        errors: set[str] = set()
        if not valid_time(valid_from) or not valid_time(valid_until):
            errors.add(INVALID_ARGUMENT)
        start = valid_from or self.now
        end = valid_until or None
        statuses = {OK}
        if end is not None and end <= start:
            statuses.add(INVALID_ARGUMENT)  # ambiguous: a window that never opens
        if s.state == "erased":
            errors.add(FAILED_PRECONDITION)
        if errors:
            return expect(op, errors | (statuses - {OK}))
        if s.restricted:
            statuses |= {PERMISSION_DENIED, FAILED_PRECONDITION}  # ambiguous: while restricted

        def granted(a: Actual) -> None:
            self.s.grants[label] = Grant(
                label, sid, "proposal", principal, role, categories, start, end, evidence
            )
            self.touch(sid, certain=False)

        def check(value: Any) -> str | None:
            got_evidence, got_until = value
            if got_evidence != evidence:
                return "the grant's evidence reference does not read back (D5)"
            if (got_until or None) != end:
                return f"valid_until {got_until}, expected {end}"
            return None

        return expect(op, statuses, check, OK=granted)

    def revoke_grant(self, label: str) -> Expect:
        g = self.s.grants[label]
        s = self.s.subjects[g.subject]
        op = f"revoke grant {label}"
        if g.lost:
            return expect(op, {NOT_FOUND, FAILED_PRECONDITION})
        if s.state == "erased" or g.revoked:
            # ambiguous: revoking again, or a grant that died with its subject
            return expect(op, {OK, NOT_FOUND, FAILED_PRECONDITION})

        def revoked(a: Actual) -> None:
            # a withdrawn consent is in the destruction ledger: no restore brings it back
            self.ledger[("consent", label)] = "done"
            g.revoked = True
            self.touch(g.subject, certain=False)

        return expect(op, {OK}, OK=revoked)

    def list_consents(self, sid: str) -> Expect:
        """ListConsents: the history (revoked and expired too), evidence decrypted while the
        subject is live, never after its erasure (D5)."""
        s = self.s.subjects[sid]
        op = f"list consents {sid}"
        mine = {g.label: g for g in self.s.grants.values() if g.subject == sid and not g.lost}
        if s.state == "erased":
            evidences = {g.evidence for g in mine.values()}

            def check_erased(value: dict[str, tuple[str, bool]]) -> str | None:
                leaked = [k for k, (ev, _) in value.items() if ev in evidences]
                return f"evidence of {leaked} readable after erasure (D5)" if leaked else None

            return expect(op, {OK, NOT_FOUND, FAILED_PRECONDITION}, check_erased)

        def check(value: dict[str, tuple[str, bool]]) -> str | None:
            want = {k: (g.evidence, g.revoked) for k, g in mine.items()}
            return None if value == want else f"consents {value}, expected {want}"

        return expect(op, {OK}, check)

    def restrict(self, sid: str, restricted: bool) -> Expect:
        """RestrictProcessing. ``changed`` (vault.proto: "False when the subject is unknown or
        erased"): true when the state changes; ambiguous when it already was so."""
        s = self.s.subjects[sid]
        op = f"{'restrict' if restricted else 'lift'} {sid}"
        if s.state == "erased":
            return expect(
                op,
                {OK, FAILED_PRECONDITION, NOT_FOUND},
                lambda v: None if v is False else "changed=true for an erased subject",
            )
        changes = s.restricted != restricted

        def done(a: Actual) -> None:
            s.restricted = restricted
            self.touch(sid, certain=False)

        def check(value: bool) -> str | None:
            return None if value or not changes else "changed=false, but it changed"

        return expect(op, {OK}, check, OK=done)

    # -- events and shares -----------------------------------------------------------------------
    def record_event(self, sid: str, name: str, at: float) -> Expect:
        """RecordEvent: the first occurrence stands (``recorded`` false after it); D6/D7."""
        s = self.s.subjects[sid]
        op = f"event {name!r} of {sid} at {at}"
        errors: set[str] = set()
        if not event_name_ok(name) or not valid_time(at):
            errors.add(INVALID_ARGUMENT)
        if s.state == "erased":
            errors |= {FAILED_PRECONDITION, NOT_FOUND, PERMISSION_DENIED}  # ambiguous which
        if errors:
            return expect(op, errors)
        first = name not in s.events
        statuses = {OK}
        if s.restricted:
            statuses |= {PERMISSION_DENIED, FAILED_PRECONDITION}  # ambiguous: while restricted

        def recorded(a: Actual) -> None:
            s.events.setdefault(name, at or self.now)
            self.touch(sid, certain=False)
            self.settle()

        def check(value: bool) -> str | None:
            return None if value == first else f"recorded={value}, expected {first}"

        return expect(op, statuses, check, OK=recorded)

    def create_share(
        self,
        label: str,
        sid: str,
        records: tuple[str, ...],
        fields: frozenset[str],
        expires_at: float,
        event: str,
        period: float,
    ) -> Expect:
        """CreateShare (docs/shares.md "Rules", D6, D7): every applicable refusal is allowed."""
        s = self.s.subjects[sid]
        op = (
            f"share {label} of {sid}: {list(records)} fields={sorted(fields)} "
            f"until={expires_at} event={event!r}+{period}"
        )
        pol = self.policy
        errors: set[str] = set()
        end_ok = (expires_at > 0 and valid_time(expires_at)) or (
            event != "" and event_name_ok(event) and event in pol.events and period > 0
        )
        if not end_ok or not valid_time(expires_at) or (event and event not in pol.events):
            errors.add(INVALID_ARGUMENT)
        if not math.isfinite(period) or period < 0 or period > 3_155_760_000:
            errors.add(INVALID_ARGUMENT)
        disclosable = set().union(*(pol.visible("proposal", c) for c in pol.categories))
        here = set().union(*(pol.visible("proposal", self.s.records[rl].category) for rl in records))
        if not fields <= disclosable:
            errors |= {INVALID_ARGUMENT, PERMISSION_DENIED}
        refusable = set()
        if not fields <= here:
            # ambiguous: a field the purpose discloses for another category than the shared
            # records' (docs/shares.md's example shares a concern and a photo with text and
            # content: the union)
            refusable = {INVALID_ARGUMENT, PERMISSION_DENIED}
        for rl in records:
            r = self.s.records[rl]
            if r.subject != sid:
                errors |= {INVALID_ARGUMENT, PERMISSION_DENIED, NOT_FOUND}
            elif r.state != LIVE:
                errors |= ANY_ERROR
            elif r.category not in pol.purposes["proposal"].categories:
                errors |= {INVALID_ARGUMENT, PERMISSION_DENIED}
            elif not self.granted(sid, "proposal", "clinic", r.category):
                errors |= {PERMISSION_DENIED, FAILED_PRECONDITION}
        if s.state == "erased":
            errors |= {FAILED_PRECONDITION, PERMISSION_DENIED, NOT_FOUND}
        elif s.restricted:
            errors |= {PERMISSION_DENIED, FAILED_PRECONDITION}
        if errors:
            return expect(op, errors)

        if (
            any(
                self.policy.categories[self.s.records[rl].category].rule == "read_once" for rl in records
            )
            and not {"content"} <= fields
        ):
            # ambiguous: a share that could only ever release part of a read-once record
            refusable = refusable | {INVALID_ARGUMENT, FAILED_PRECONDITION}
        share = Share(
            label, sid, "clinic", "proposal", records, fields, expires_at or None, event, period
        )
        end = self.share_end(share)
        if end is not None and end <= self.now:
            refusable = refusable | {INVALID_ARGUMENT}  # ambiguous: an end already past

        def created(a: Actual) -> None:
            self.s.shares[label] = Share(
                label, sid, "clinic", "proposal", records, fields, expires_at or None, event, period
            )
            self.touch(sid, certain=False)

        return expect(op, {OK} | refusable, OK=created)

    def read_share(self, label: str, who: str) -> Expect:
        """ReadShare: the named recipient only; only the share's fields (intersected with the
        purpose's); refused once revoked, expired, the subject erased (PERMISSION_DENIED, D11)
        or restricted, or the consent gone."""
        x = self.s.shares[label]
        s = self.s.subjects[x.subject]
        op = f"read share {label} as {who}"
        if x.state != LIVE or who != x.recipient:
            return expect(op, {PERMISSION_DENIED, NOT_FOUND})
        end = self.share_end(x)
        if s.state != "active" or s.restricted or (end is not None and self.now >= end):
            return expect(op, {PERMISSION_DENIED}, why=f"subject {s.state}, restricted={s.restricted}")
        shared = [self.s.records[rl] for rl in x.records]
        live = [r for r in shared if r.state == LIVE]
        covered = [r for r in live if self.granted(x.subject, x.purpose, who, r.category)]
        if not live:
            # ambiguous: every shared record is gone: nothing to release, or refused (docs: a
            # record deleted since the share was made is skipped)
            def nothing(value: dict[str, tuple[dict[str, str], bytes | None]]) -> str | None:
                return f"released {sorted(value)} of a share with no record left" if value else None

            return expect(op, {OK, PERMISSION_DENIED}, nothing)
        if not covered:
            return expect(op, {PERMISSION_DENIED}, why="no active consent")
        expected: dict[str, tuple[dict[str, str], bytes | None]] = {}
        for r in covered:
            seen = self.policy.visible(x.purpose, r.category) & x.fields
            expected[r.label] = (
                {f: r.fields[f] for f in seen - {"content"} if f in r.fields},
                r.content if "content" in seen else None,
            )
        statuses = {OK}
        if len(covered) < len(shared):
            statuses |= ANY_ERROR  # ambiguous: a share some of whose records or consent are gone
        if any(self.rule(r).rule == "read_once" and expected[r.label][1] is None for r in covered):
            # ambiguous: a share that would release a read-once record only in part (D3: a
            # read must not narrow it) may be refused
            statuses.add(FAILED_PRECONDITION)

        def check(value: dict[str, tuple[dict[str, str], bytes | None]]) -> str | None:
            for k, v in value.items():
                if k not in expected:
                    return f"released {k}, which it may not"
                if v != expected[k]:
                    return f"released {k}={_short(v)}, expected {_short(expected[k])}"
            if statuses == {OK}:
                missing = [k for k, (f, c) in expected.items() if k not in value and (f or c)]
                if missing:
                    return f"did not release {missing}"
            return None

        def released(a: Actual) -> None:
            for k, (got_fields, got_content) in (a.value or {}).items():
                if got_fields or got_content is not None:
                    self._released(self.s.records[k], a)

        effects: dict[str, Callable[[Actual], None]] = {st: released for st in statuses}
        return Expect(op, frozenset(statuses), check, effects)

    def revoke_share(self, label: str) -> Expect:
        x = self.s.shares[label]
        op = f"revoke share {label}"
        if x.state != LIVE:
            return expect(op, {OK, NOT_FOUND, FAILED_PRECONDITION, PERMISSION_DENIED})  # ambiguous

        def revoked(a: Actual) -> None:
            self.ledger[("share", label)] = "done"
            x.state = DESTROYED
            self.destroyed.add(label)
            self.touch(x.subject, certain=False)

        return expect(op, {OK}, OK=revoked)

    # -- holds and erasure -----------------------------------------------------------------------
    def place_hold(self, label: str, sid: str, record: str | None) -> Expect:
        op = f"hold {label} on {record or sid}"

        def placed(a: Actual) -> None:
            self.s.holds[label] = Hold(label, sid, record, placed=self.ledger.count)
            self.touch(sid, certain=False)

        return expect(op, {OK}, OK=placed)

    def release_hold(self, label: str) -> Expect:
        """ReleaseHold: carries out every deletion asked for meanwhile that no other hold still
        blocks (D1, D3, D13); ``deletions_carried_out`` counts them."""
        h = self.s.holds[label]
        op = f"release hold {label}"
        if h.lost:
            return expect(op, {NOT_FOUND, FAILED_PRECONDITION})
        if not h.active:
            return expect(op, {OK, NOT_FOUND, FAILED_PRECONDITION})  # ambiguous: released again
        pending = self._pending_after_release(h)
        statuses = {OK}
        if self.s.subjects[h.subject].state == "erased":
            statuses |= {FAILED_PRECONDITION, NOT_FOUND}  # ambiguous: a stale hold (D1)

        def released(a: Actual) -> None:
            h.active = False
            self._carry_out(h.subject)
            self.touch(h.subject, certain=False)
            self.settle()

        def check(value: int) -> str | None:
            low = 1 if pending else 0
            # ambiguous: how repeated requests for one deletion are counted; at least one if
            # anything was pending, none if nothing was
            if value < low or (not pending and value):
                return (
                    f"carried out {value} deletions, expected {'some' if pending else 'none'}: {pending}"
                )
            return None

        return expect(op, statuses, check, OK=released)

    def _pending_after_release(self, h: Hold) -> list[str]:
        was, h.active = h.active, False
        try:
            sid = h.subject
            out = []
            s = self.s.subjects[sid]
            if s.erase_pending and not self.held_subject(sid):
                out.append(f"erase {sid}")
            for r in self.records_of(sid):
                if self.held_record(r):
                    continue
                if r.delete_pending or r.state == CONSUMED:
                    out.append(f"delete {r.label}")
                out += [f"version {r.label}@{v}" for v in r.kept]
                if r.state == LIMBO:
                    out.append(f"version {r.label}")
            return out
        finally:
            h.active = was

    def _carry_out(self, sid: str) -> None:
        s = self.s.subjects[sid]
        if s.erase_pending and not self.held_subject(sid):
            self.erase_now(sid)
        for r in self.records_of(sid):
            if self.held_record(r):
                continue
            if r.delete_pending or r.state in (CONSUMED, LIMBO):
                self.destroy(r)
            for v in list(r.kept):
                self.ledger[("version", r.label, str(v))] = "done"
                self.destroyed.add(f"{r.label}@{v}")
            r.kept.clear()

    def list_holds(self, sid: str) -> Expect:
        s = self.s.subjects[sid]
        mine = {h.label: h.active for h in self.s.holds.values() if h.subject == sid and not h.lost}

        def check(value: dict[str, bool]) -> str | None:
            for k, active in mine.items():
                if active and value.get(k) is not True:
                    return f"active hold {k} not listed as active: {value}"
                if not active and value.get(k, False):
                    return f"released hold {k} listed as active"
            extra = set(value) - set(mine)
            return f"unknown holds {extra}" if extra else None

        statuses = {OK} | ({NOT_FOUND, FAILED_PRECONDITION} if s.state == "erased" else set())
        return expect(f"list holds {sid}", statuses, check)

    def erase(self, sid: str) -> Expect:
        """EraseSubject: erased at once (ledger first), or deferred by a hold
        (FAILED_PRECONDITION); a second erasure is OK with erased=false (D11)."""
        s = self.s.subjects[sid]
        op = f"erase {sid}"
        if s.state == "erased":
            return expect(op, {OK}, lambda v: None if v is False else "erased=true again (D11)")
        if self.held_subject(sid):

            def deferred(a: Actual) -> None:
                s.erase_pending = True
                self.ledger[("subject", sid)] = "deferred"

            return expect(op, {FAILED_PRECONDITION}, why="a legal hold", FAILED_PRECONDITION=deferred)
        return expect(
            op,
            {OK},
            lambda v: None if v is True else "erased=false for a live subject",
            OK=lambda a: self.erase_now(sid),
        )

    def verify_records(self, results: dict[str, str]) -> str | None:
        """VerifyDeletion's records (issue 20): every record the ledger destroyed on its own is
        listed, none FAILED; one a hold deferred (or consumed under a hold) is PENDING.
        ``results`` map record labels to result labels. Returns what is wrong, or None."""
        failed = sorted(label for label, result in results.items() if result == "FAILED")
        if failed:
            return f"record destructions FAILED: {failed}"
        for key, state in self.ledger.items():
            if key[0] != "record" or key[1] in self.tainted:
                continue
            result = results.get(key[1])
            if result is None:
                return f"the destruction of record {key[1]} ({state}) is not listed: {results}"
            r = self.s.records.get(key[1])
            waiting = r is not None and r.state in (LIVE, LIMBO, CONSUMED)
            if state != "done" and waiting and result != "PENDING":
                # deferred, and still waiting for its hold (a release that destroyed it with its
                # subject's erasure may have written a done entry the model does not keep)
                return f"the {state} destruction of record {key[1]} is {result}, expected PENDING"
        return None

    def verify(self, results: list[tuple[str, str]], pseudonyms: dict[str, str]) -> str | None:
        """VerifyDeletion: every erasure carried out or deferred (D1) is listed; none FAILED
        (D4); a deferred one PENDING (D1); a withdrawal with records kept by law PENDING_UNTIL
        its date (D11). ``results`` are (pseudonym, result label); ``pseudonyms`` map subject
        ids to their audit pseudonyms. Returns what is wrong, or None."""
        listed: dict[str, list[str]] = {}
        for pseudonym, label in results:
            listed.setdefault(pseudonym, []).append(label)
        failed = [(p, labels) for p, labels in listed.items() if any(lab == "FAILED" for lab in labels)]
        by_pseudonym = {p: sid for sid, p in pseudonyms.items()}
        if failed:
            who = [by_pseudonym.get(p, p) for p, _ in failed]
            return f"FAILED for {who}: {failed}"
        with_entries = {k[1] for k in self.ledger if k[0] == "subject"}
        touched = {
            self.s.records[k[1]].subject if k[1] in self.s.records else k[1]
            for k in self.ledger
            if k[0] in ("record", "version")
        } | {
            self.s.shares[k[1]].subject for k in self.ledger if k[0] == "share" and k[1] in self.s.shares
        }
        for sid in sorted(with_entries):
            p = pseudonyms.get(sid)
            labels = listed.get(p or "")
            state = self.ledger[("subject", sid)]
            if not labels:
                return f"the erasure of {sid} ({state}) is not listed: {results}"
            if state == "deferred" and not any(lab.startswith("PENDING") for lab in labels):
                return f"the deferred erasure of {sid} is {labels}, expected PENDING (D1)"
            kept = [
                r.label
                for r in self.records_of(sid)
                if r.state == LIVE
                and self.retained(r)
                and self.s.subjects[sid].state == "erased"
                and not self.held_record(r)  # under a hold no end date is known
            ]
            if kept and not any(lab.startswith("PENDING_UNTIL") for lab in labels):
                return (
                    f"the withdrawal of {sid} keeps {kept} by law: {labels}, "
                    "expected PENDING_UNTIL (D11)"
                )
        allowed = {pseudonyms.get(sid) for sid in with_entries | touched}
        extra = [by_pseudonym.get(p, p) for p in listed if p not in allowed]
        return f"lists erasures of {extra}, never erased" if extra else None

    # -- backups ---------------------------------------------------------------------------------
    def backup(self, label: str) -> None:
        self.backups[label] = Backup(copy.deepcopy(self.s), self.epoch)

    def restorable(self, label: str) -> bool:
        """A backup from before the last key epoch needs a destroyed root version: operators
        restore no such backup (docs/keys.md), and the test does not either."""
        return self.backups[label].epoch == self.epoch

    def restore(self, label: str) -> None:
        """What a restored backup shows: the snapshot, then the ledger replayed (D1): an object
        whose last entry is done is destroyed again whatever holds the backup has; a deferred
        one is kept pending where a hold in the backup covers it, else carried out."""
        now = self.s
        snap = copy.deepcopy(self.backups[label].state)
        for k, r in now.records.items():
            if k not in snap.records:
                snap.records[k] = Record(k, r.subject, r.category, {}, None, 0, r.created_at, state=LOST)
        for k, g in now.grants.items():
            snap.grants.setdefault(k, dataclasses.replace(g, lost=True))
        for k, x in now.shares.items():
            snap.shares.setdefault(k, dataclasses.replace(x, state=LOST))
        for k, h in now.holds.items():
            snap.holds.setdefault(k, dataclasses.replace(h, lost=True, active=False))
        for sid in now.subjects:
            if sid in snap.subjects:
                continue
            if ("subject", sid) in self.ledger:
                # ambiguous: a subject the backup never knew but the ledger erased: whether its
                # id may be used again (the test never uses it again)
                self.tainted.add(sid)
                snap.subjects[sid] = Subject(sid, state="erased")
            else:
                snap.subjects[sid] = Subject(sid, state="unknown")
        self.s = snap
        self._replay()
        self.settle()

    def _replay(self) -> None:
        """Each object's last entry, in ledger order (docs/lifecycle.md, replay rules): a done
        entry first marks the holds from before it released (stale); then whatever a hold still
        covers stays pending, and the rest is destroyed."""
        st = self.s
        for key, entry in list(self.ledger.items()):
            kind, seq = key[0], self.ledger.seq[key]
            if kind == "subject":
                s = st.subjects.get(key[1])
                if s is None or s.state == "erased" or key[1] in self.tainted:
                    continue
                if entry == "done":
                    self._release_stale(s.sid, None, seq)
                if self.held_subject(s.sid):
                    s.erase_pending = True
                else:
                    self.erase_now(s.sid)
            elif kind == "record":
                r = st.records.get(key[1])
                if r is None or r.state not in (LIVE, LIMBO):
                    continue
                if entry == "done":
                    self._release_stale(r.subject, r.label, seq)
                if not self.held_record(r):
                    self.destroy(r)
                elif entry == "consumed":
                    r.state = CONSUMED
                else:
                    r.delete_pending = True
            elif kind == "version":
                r = st.records.get(key[1])
                v = int(key[2])
                if r is None:
                    continue
                current = r.state in (LIVE, LIMBO) and r.version == v
                if v not in r.kept and not current:
                    continue
                if entry == "done":
                    self._release_stale(r.subject, r.label, seq)
                if v in r.kept:
                    if not self.held_record(r):
                        self.ledger[key] = "done"
                        r.kept.discard(v)
                    continue
                if self.held_record(r):
                    r.state = LIMBO
                else:
                    # the backup's current version was destroyed since: the record is gone,
                    # through the record's shred path (its own ledger entry: a later restore of
                    # a backup holding a newer version must not bring it back either)
                    self.ledger[key] = "done"
                    self.destroy(r)
            elif kind == "share":
                x = st.shares.get(key[1])
                if x is not None and x.state == LIVE:
                    x.state = DESTROYED
            elif kind == "consent":
                g = st.grants.get(key[1])
                if g is not None and not g.lost:
                    g.revoked = True

    def _release_stale(self, sid: str, record: str | None, before: int) -> None:
        """A done destruction found held in a restored backup: the holds placed before it are
        stale (they had been released before it was carried out) and the replay marks them
        released (D1); a hold placed after it is real."""
        for h in self.s.holds.values():
            covers = record is None or h.record in (None, record)
            if h.active and not h.lost and h.subject == sid and covers and h.placed < before:
                h.active = False

    def epoch_done(self) -> None:
        """A key epoch (rotate, rewrap, retire, destroy) completed: backups from before it
        need the destroyed version."""
        self.epoch += 1

    # -- the full check --------------------------------------------------------------------------
    def full_read(self, label: str) -> tuple[str, bool] | None:
        """The purpose and include_content with which the full check reads a record (one that
        sees all of it), or None to leave it alone (read-once records are not read by checks)."""
        r = self.s.records[label]
        if self.rule(r).rule == "read_once" and r.state in (LIVE, LIMBO):
            return None
        if r.state == LIMBO:
            return None
        return ("legal" if r.category == "payment" else "care"), True
