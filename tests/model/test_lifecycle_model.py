"""The model-based lifecycle test (issue 17): a hypothesis state machine drives a real vault (the
gRPC server in-process on a FixedClock, ``vaultctl`` subprocesses, backups of the data directory)
through random sequences over every capability, and :mod:`tests.model.reference` predicts every
answer. An answer the model does not allow fails the test naming the operation, the statuses
expected and the status (and value) received; the failing sequence is shrunk and printed with a
line per operation. Every call into the vault goes through :mod:`tests.model.driver`.

Rules: put (PutRecord, or UploadRecord streaming the content), invalid puts (undeclared category
or field, content where there is none, a message after the end marker), update (with and without
expected_version), delete, get (every purpose, all fields or some, with and without content, as
the application or roles without the action), download (whole and byte ranges), export, listings
(records, consents, holds), FindRecords (by the value a record has or had in a searchable field,
as stored or upper-cased, under every purpose), grant and revoke consent (principal or role,
with a start and an end, non-finite times), restrict and lift, record events (now, in the past,
invalid names and times), create shares (every kind of end, invalid ones too) and the usual
consent-then-share flow, read shares (the recipient and another clinic), revoke shares, place
and release holds (subject or record), an erasure under a hold, releasing all of a subject's
holds, erase, advance the clock (then the jobs the background loops run: purge, share sweep,
retention sweep), the dormancy sweep, backup (server stopped, data directory copied, restarted),
restore (a chosen backup or the newest), and a key epoch (rotate, rewrap, retire, destroy
--mark, destroy as separate vaultctl processes while the server runs, then a new subject, then a
restart).

Invariants, beside each answer: after every backup, restore and key epoch, and as a rule,
everything the model says is live reads back exactly and everything destroyed does not,
every listing matches, VerifyDeletion lists every subject erasure carried out or deferred and
every record destroyed on its own, none FAILED (also after every erasure and hold release), and
no field value or consent evidence is in plaintext anywhere in the data directory.

Budget: ``MODEL_EXAMPLES`` examples on SQLite (default 400) and ``MODEL_PG_EXAMPLES`` on
PostgreSQL (default a fifth of it), ``MODEL_STEPS`` steps each (default 40), one example in
``MODEL_EPOCH_ODDS`` (6) allowed a key epoch; derandomized (reproducible in CI) unless
``MODEL_RANDOM=1`` (``make test-model``: 5000 examples, random seeds, statistics).
``MODEL_SHRINK=0`` reports the first failing sequence unshrunk.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, ClassVar

import pytest
from hypothesis import HealthCheck, Phase, event, note, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    multiple,
    precondition,
    rule,
)

from tests.model import reference as ref
from tests.model.driver import Backend, Driver, PostgresBackend, SqliteBackend
from tests.model.reference import DAY, HOUR, MAX_ECHO, Actual, Discrepancy, Expect, Model

EXAMPLES = int(os.environ.get("MODEL_EXAMPLES", "400"))
PG_EXAMPLES = int(os.environ.get("MODEL_PG_EXAMPLES", str(max(1, EXAMPLES // 5))))
STEPS = int(os.environ.get("MODEL_STEPS", "40"))
RANDOM = os.environ.get("MODEL_RANDOM", "") == "1"
#: MODEL_SHRINK=0: report the first failing sequence as found (quicker, longer)
SHRINK = os.environ.get("MODEL_SHRINK", "1") != "0"
#: one example in this many may run a key epoch (five vaultctl processes, ~5 s)
EPOCH_ODDS = int(os.environ.get("MODEL_EPOCH_ODDS", "6"))

START = 1_800_000_000.0
SUBJECTS = ["s0", "s1", "s2"]
CATEGORIES = ["note", "photo", "face", "scan", "concern", "payment"]
#: field values: random words that de-identification leaves alone and the at-rest scan finds
_rng = random.Random(17)
WORDS = ["zq" + "".join(_rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(10)) for _ in range(48)]
#: every value the test sends (WORDS, and the invalid puts' values, which must never be stored):
#: the exact words, not the shape "zq" + 10 letters, which random bytes beside a category's
#: name can spell (a subject reference ending in "zq" before "concern" and "budget")
MARKER = re.compile(b"|".join(re.escape(w.encode()) for w in [*WORDS, "zqabcdefghij", "zqqqqqqqqqqq"]))
CONTENT_SIZES = [1, 300, 17_000, 70_000]
ADVANCES = [700.0, 3 * HOUR + 7, DAY + 13, 3 * DAY + 1, 45 * DAY + 1]
PURPOSES = ["care", "care", "proposal", "proposal", "research", "legal", "reactivate"]


def content_of(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


class LifecycleMachine(RuleBasedStateMachine):
    """The machine; ``backend_factory`` and ``base`` are set per test run."""

    backend_factory: ClassVar[Any]
    base: ClassVar[Path] = Path(tempfile.gettempdir())

    records = Bundle("records")
    grants = Bundle("grants")
    shares = Bundle("shares")
    holds = Bundle("holds")
    backups = Bundle("backups")

    def __init__(self) -> None:
        super().__init__()
        self.home = Path(tempfile.mkdtemp(prefix="model-", dir=self.base))
        backend: Backend = type(self).backend_factory()
        self.vault = Driver(self.home, backend, START)
        self.model = Model(START)
        self.ids: dict[str, str] = {}  # label -> vault id
        self.labels: dict[str, str] = {}  # vault id -> label
        self.pseudo: dict[str, str] = {}  # subject -> audit pseudonym
        self.epochs_left = 0

    def teardown(self) -> None:
        try:
            self.vault.close()
        finally:
            shutil.rmtree(self.home, ignore_errors=True)

    # -- plumbing --------------------------------------------------------------------------------
    def _bind(self, label: str, vault_id: str) -> None:
        self.ids[label] = vault_id
        self.labels[vault_id] = label

    def _check(self, exp: Expect, actual: Actual) -> Actual:
        note(f"{exp.op} -> {actual.status}")
        event(f"{exp.op.split(' ')[0]} -> {actual.status}")
        exp.commit(actual)
        return actual

    def _known(self, sid: str, dormant_ok: bool = False) -> bool:
        s = self.model.subject(sid)
        return (
            s is not None
            and s.state != "unknown"
            and self.model.usable(sid)
            and (dormant_ok or s.state != "dormant")
        )

    def _labelled(self, value: dict[str, Any]) -> dict[str, Any]:
        return {self.labels.get(k, f"?{k}"): v for k, v in value.items()}

    def _settle(self) -> None:
        self.vault.settle()
        self.model.settle()

    # -- set-up ----------------------------------------------------------------------------------
    @initialize(epoch_draw=st.integers(0, max(EPOCH_ODDS - 1, 0)))
    def setup(self, epoch_draw: int) -> None:
        self.epochs_left = 1 if epoch_draw == 0 and EPOCH_ODDS > 0 else 0

    @initialize(
        target=records,
        categories=st.lists(st.sampled_from(CATEGORIES), min_size=3, max_size=3),
        seed=st.integers(0, 1000),
    )
    def seed_records(self, categories: list[str], seed: int) -> Any:
        """Every example starts with a record for each subject (the rules then have data)."""
        labels = []
        for i, (sid, category) in enumerate(zip(SUBJECTS, categories, strict=False)):
            labels.append(self.put(sid, category, WORDS[i : i + 2], CONTENT_SIZES[i], seed, i == 1))
        return multiple(*[lab for lab in labels if isinstance(lab, str)])

    # -- records ---------------------------------------------------------------------------------
    @rule(
        target=records,
        sid=st.sampled_from(SUBJECTS),
        category=st.sampled_from(CATEGORIES),
        words=st.lists(st.sampled_from(WORDS), min_size=2, max_size=2),
        size=st.sampled_from(CONTENT_SIZES),
        seed=st.integers(0, 1000),
        upload=st.booleans(),
    )
    def put(self, sid: str, category: str, words: list[str], size: int, seed: int, upload: bool) -> Any:
        if not self.model.usable(sid):
            return multiple()
        c = self.model.policy.categories[category]
        fields = dict(zip(sorted(c.fields), words, strict=False))
        content = content_of(size, seed) if c.content else None
        upload = upload and c.content
        label = self.model.label("r")
        exp = self.model.put(label, sid, category, fields, content, f"put {label} {sid} {category}")
        actual = self._check(exp, self.vault.put(sid, category, fields, content, upload))
        if actual.status != ref.OK:
            return multiple()
        self._bind(label, actual.value[0])
        self.vault.settle()
        return label

    @rule(
        target=records,
        sid=st.sampled_from(SUBJECTS),
        category=st.sampled_from(["face", "payment", "concern", "photo"]),
        seed=st.integers(0, 1000),
    )
    def put_more(self, sid: str, category: str, seed: int) -> Any:
        """Puts weigh twice: most other rules need records."""
        return self.put(
            sid, category, WORDS[seed % 40 : seed % 40 + 2], CONTENT_SIZES[seed % 4], seed, False
        )

    @rule(
        sid=st.sampled_from(SUBJECTS),
        kind=st.sampled_from(["category", "field", "content", "after-end"]),
    )
    def put_invalid(self, sid: str, kind: str) -> None:
        """Undeclared category or field, content where the category has none: INVALID_ARGUMENT,
        and (D9) no more than 64 characters of the caller's value echoed; or an upload with a
        message after its end marker (D8)."""
        if kind == "after-end":
            self.upload_after_end(sid)
            return
        if not self.model.usable(sid):
            return
        long = "field" + "a" * 195
        category, fields, content = {
            "category": ("c" * 200, {"x": "y"}, None),
            "field": ("note", {long: "zqabcdefghij"}, None),
            "content": ("note", {"title": "zqabcdefghij"}, b"content"),
        }[kind]
        exp = self.model.put("-", sid, category, fields, content, f"put invalid ({kind}) {sid}")
        actual = self._check(exp, self.vault.put(sid, category, fields, content, False))
        for value in (long, category):
            if len(value) > MAX_ECHO and value[: MAX_ECHO + 1] in actual.message:
                raise Discrepancy(f"put invalid ({kind}): the error echoes the caller's value (D9)")
        if "a" * (MAX_ECHO + 1) in actual.message or "c" * (MAX_ECHO + 1) in actual.message:
            raise Discrepancy(f"put invalid ({kind}): the error echoes more than 64 characters (D9)")

    def upload_after_end(self, sid: str) -> None:
        """D8: a message after the end marker is INVALID_ARGUMENT, nothing stored."""
        if not self._known(sid):
            return
        exp = ref.expect(f"upload with data after the end marker for {sid}", {ref.INVALID_ARGUMENT})
        if self.model.s.subjects[sid].state == "erased":
            exp = ref.expect(exp.op, {ref.INVALID_ARGUMENT, ref.FAILED_PRECONDITION})
        self._check(exp, self.vault.upload_after_end(sid, "photo", {"caption": "zqqqqqqqqqqq"}))
        if self.model.s.subjects[sid].state != "erased":
            self._list(sid)

    @rule(
        label=records,
        words=st.lists(st.sampled_from(WORDS), min_size=2, max_size=2),
        size=st.sampled_from(CONTENT_SIZES),
        seed=st.integers(0, 1000),
        version=st.sampled_from(["none", "none", "current", "stale"]),
    )
    def update(self, label: str, words: list[str], size: int, seed: int, version: str) -> None:
        r = self.model.s.records[label]
        if not self._known(r.subject, dormant_ok=True):  # a write brings a dormant subject back
            return
        c = self.model.policy.categories[r.category]
        fields = dict(zip(sorted(c.fields), words, strict=False))
        content = content_of(size, seed) if c.content else None
        expected = {"none": 0, "current": r.version, "stale": r.version + 5}[version]
        exp = self.model.update(label, fields, content, expected)
        self._check(exp, self.vault.update(self.ids[label], fields, content, expected))

    @rule(label=records)
    def delete(self, label: str) -> None:
        r = self.model.s.records[label]
        if not self._known(r.subject):
            return
        self._check(self.model.delete(label), self.vault.delete(self.ids[label]))

    # -- reads -----------------------------------------------------------------------------------
    def _get(self, who: str, label: str, purpose: str, fields: list[str] | None, content: bool) -> None:
        exp = self.model.get(who, label, purpose, fields, content)
        self._check(exp, self.vault.get(who, self.ids[label], purpose, fields, content))

    @rule(
        label=records,
        who=st.sampled_from(["app"] * 8 + ["officer", "clinic"]),
        purpose=st.sampled_from([*PURPOSES, "subject_access", "", "marketing"]),
        mask=st.integers(0, 3),
        content=st.booleans(),
    )
    def get(self, label: str, who: str, purpose: str, mask: int, content: bool) -> None:
        r = self.model.s.records[label]
        if not self.model.usable(r.subject):
            return
        names = sorted(self.model.policy.categories[r.category].fields)
        fields = [f for i, f in enumerate(names) if mask >> i & 1] or None
        self._get(who, label, purpose, fields, content)

    @rule(
        labels=st.lists(records, min_size=1, max_size=4),
        who=st.sampled_from(["app"] * 4 + ["officer", "clinic"]),
        purposes=st.lists(
            st.sampled_from([*PURPOSES, "subject_access", "marketing"]), min_size=4, max_size=4
        ),
        masks=st.lists(st.integers(0, 3), min_size=4, max_size=4),
        content=st.booleans(),
    )
    def batch_get(
        self, labels: list[str], who: str, purposes: list[str], masks: list[int], content: bool
    ) -> None:
        """BatchGetRecords: each item is what its GetRecord, made in the batch's order, would
        answer (the same record twice: a read-once record is gone for the second)."""
        items: list[tuple[str, str, list[str] | None, bool]] = []
        for label, purpose, mask in zip(labels, purposes, masks, strict=False):
            r = self.model.s.records[label]
            if not self.model.usable(r.subject):
                return
            names = sorted(self.model.policy.categories[r.category].fields)
            fields = [f for i, f in enumerate(names) if mask >> i & 1] or None
            items.append((label, purpose, fields, content))
        actuals = self.vault.get_many(who, [(self.ids[lb], p, f, c) for lb, p, f, c in items])
        for (label, purpose, fields, c), actual in zip(items, actuals, strict=True):
            exp = self.model.get(who, label, purpose, fields, c)
            exp.op = f"batch item: {exp.op}"
            self._check(exp, actual)

    @rule(
        target=records,
        sids=st.lists(st.sampled_from(SUBJECTS), min_size=1, max_size=4),
        categories=st.lists(st.sampled_from([*CATEGORIES, "c" * 80]), min_size=4, max_size=4),
        seed=st.integers(0, 1000),
    )
    def batch_put(self, sids: list[str], categories: list[str], seed: int) -> Any:
        """BatchPutRecords: each item is what its PutRecord would answer (an undeclared category
        is that item's INVALID_ARGUMENT), all stored in one commit."""
        items: list[tuple[str, str, str, dict[str, str], bytes | None]] = []
        for n, (sid, category) in enumerate(zip(sids, categories, strict=False)):
            if not self.model.usable(sid):
                return multiple()
            c = self.model.policy.categories.get(category)
            names = sorted(c.fields) if c else ["x"]
            fields = dict(zip(names, WORDS[(seed + n) % 40 : (seed + n) % 40 + 2], strict=False))
            content = content_of(CONTENT_SIZES[(seed + n) % 4], seed + n) if c and c.content else None
            items.append((self.model.label("r"), sid, category, fields, content))
        actuals = self.vault.put_many([(s, c, f, b) for _, s, c, f, b in items])
        stored = []
        for (label, sid, category, fields, content), actual in zip(items, actuals, strict=True):
            exp = self.model.put(label, sid, category, fields, content, f"batch put {label} {sid}")
            self._check(exp, actual)
            if actual.status == ref.OK:
                self._bind(label, actual.value[0])
                stored.append(label)
        self.vault.settle()
        return multiple(*stored)

    @rule(
        label=records,
        purpose=st.sampled_from(["care", "care", "proposal", "research"]),
        span=st.sampled_from(["whole", "whole", "head", "tail", "middle"]),
    )
    def download(self, label: str, purpose: str, span: str) -> None:
        r = self.model.s.records[label]
        if not self.model.usable(r.subject) or not self.model.policy.categories[r.category].content:
            return
        size = len(r.content) if r.content else 1
        offset, length = {
            "whole": (0, 0),
            "head": (0, max(1, size // 2)),
            "tail": (size // 2, 0),
            "middle": (size // 3, max(1, size // 3)),
        }[span]
        if r.content is None or offset >= size:
            offset, length = 0, 0
        exp = self.model.download(label, purpose, offset, length)
        self._check(exp, self.vault.download(self.ids[label], purpose, offset, length))

    def _list(self, sid: str) -> None:
        exp = self.model.list_records(sid)
        actual = self.vault.list_records(sid)
        if actual.value is not None:
            actual.value = self._labelled(actual.value)
        self._check(exp, actual)

    @rule(
        sid=st.sampled_from(SUBJECTS),
        what=st.sampled_from(["records", "records", "consents", "holds"]),
        who=st.sampled_from(["app", "officer"]),
    )
    def listing(self, sid: str, what: str, who: str) -> None:
        """ListRecords, ListConsents (application or officer), ListHolds."""
        if not self._known(sid):
            return
        if what == "records":
            self._list(sid)
            return
        actual = self.vault.list_consents(sid, who) if what == "consents" else self.vault.list_holds(sid)
        if actual.value is not None:
            actual.value = self._labelled(actual.value)
        exp = self.model.list_consents(sid) if what == "consents" else self.model.list_holds(sid)
        self._check(exp, actual)

    @rule(
        label=records,
        purpose=st.sampled_from(["care", "care", "research", "legal", "reactivate", "proposal"]),
        shout=st.booleans(),
    )
    def find(self, label: str, purpose: str, shout: bool) -> None:
        """FindRecords by the value one record has (or had) in a searchable field, as stored or
        upper-cased with spaces (equal under "casefold", not under "exact")."""
        r = self.model.s.records[label]
        fields = [f for (c, f) in ref.SEARCHABLE if c == r.category]
        if not fields or fields[0] not in r.fields:
            return
        value = r.fields[fields[0]]
        if shout:
            value = f"  {value.upper()} "
        actual = self.vault.find(r.category, fields[0], value, purpose)
        if actual.value is not None:
            actual.value = {self.labels.get(k, f"?{k}") for k in actual.value}
        self._check(self.model.find(r.category, fields[0], value, purpose), actual)

    @rule(sid=st.sampled_from(SUBJECTS))
    def export(self, sid: str) -> None:
        if not self._known(sid):
            return
        actual = self.vault.export(sid)
        if actual.value is not None:
            actual.value = self._labelled(actual.value)
        self._check(self.model.export(sid), actual)

    # -- consent and restriction -----------------------------------------------------------------
    @rule(
        target=grants,
        sid=st.sampled_from(SUBJECTS),
        grantee=st.sampled_from(["app", "app", "clinic", "clinic", "role:application", "role:clinic"]),
        categories=st.sets(st.sampled_from(["concern", "photo", "face"]), min_size=1),
        start=st.sampled_from(["now", "now", "now", "later", "nan"]),
        end=st.sampled_from(["none", "none", "soon", "days", "inf"]),
        word=st.sampled_from(WORDS),
    )
    def grant(
        self, sid: str, grantee: str, categories: set[str], start: str, end: str, word: str
    ) -> Any:
        if not self._known(sid):
            return multiple()
        now = self.model.now
        valid_from = {"now": 0.0, "later": now + HOUR, "nan": float("nan")}[start]
        valid_until = {"none": 0.0, "soon": now + 1800, "days": now + 2 * DAY + 5, "inf": float("inf")}[
            end
        ]
        principal, role = ("", grantee[5:]) if grantee.startswith("role:") else (grantee, "")
        label = self.model.label("g")
        evidence = f"ev-{word}-{label}"
        exp = self.model.grant(
            label, sid, principal, role, frozenset(categories), valid_from, valid_until, evidence
        )
        actual = self.vault.grant(
            sid, principal, role, sorted(categories), valid_from, valid_until, evidence
        )
        if actual.status == ref.OK:
            grant_id, ev, until = actual.value
            actual.value = (ev, until)
        self._check(exp, actual)
        if actual.status != ref.OK:
            return multiple()
        self._bind(label, grant_id)
        return label

    @rule(label=grants, who=st.sampled_from(["app", "officer"]))
    def revoke_grant(self, label: str, who: str) -> None:
        if not self._known(self.model.s.grants[label].subject):
            return
        self._check(self.model.revoke_grant(label), self.vault.revoke_grant(self.ids[label], who))

    @rule(sid=st.sampled_from(SUBJECTS), restricted=st.booleans())
    def restrict(self, sid: str, restricted: bool) -> None:
        if self._known(sid):
            self._check(self.model.restrict(sid, restricted), self.vault.restrict(sid, restricted))

    # -- events and shares -----------------------------------------------------------------------
    @rule(
        sid=st.sampled_from(SUBJECTS),
        name=st.sampled_from(["match_completed", "match_completed", "visit_done", "never happens; --"]),
        at=st.sampled_from(["now", "now", "past", "nan"]),
    )
    def record_event(self, sid: str, name: str, at: str) -> None:
        if not self._known(sid):
            return
        when = {"now": 0.0, "past": self.model.now - 3 * DAY, "nan": float("nan")}[at]
        self._check(self.model.record_event(sid, name, when), self.vault.record_event(sid, name, when))
        self.vault.settle()

    @rule(
        target=shares,
        first=records,
        more=st.lists(records, max_size=2, unique=True),
        fields=st.sets(st.sampled_from(["text", "content", "content", "budget"]), min_size=1),
        end=st.sampled_from(
            ["hours", "days", "event", "event", "both", "none", "undeclared", "bad-name", "nan"]
        ),
    )
    def create_share(self, first: str, more: list[str], fields: set[str], end: str) -> Any:
        picked = [first, *(m for m in more if m != first)]
        sid = self.model.s.records[first].subject
        if not self._known(sid):
            return multiple()
        now = self.model.now
        expires_at, event, period = {
            "hours": (now + 2 * HOUR, "", 0.0),
            "days": (now + 3 * DAY, "", 0.0),
            "event": (0.0, "match_completed", DAY),
            "both": (now + 3 * DAY, "visit_done", DAY),
            "none": (0.0, "", 0.0),
            "undeclared": (0.0, "never_declared", DAY),
            "bad-name": (0.0, "never happens; --", DAY),
            "nan": (float("nan"), "", 0.0),
        }[end]
        label = self.model.label("x")
        exp = self.model.create_share(
            label, sid, tuple(picked), frozenset(fields), expires_at, event, period
        )
        actual = self.vault.create_share(
            sid, [self.ids[p] for p in picked], sorted(fields), expires_at, event, period
        )
        self._check(exp, actual)
        if actual.status != ref.OK:
            return multiple()
        self._bind(label, actual.value)
        return label

    @rule(
        target=shares,
        first=records,
        more=st.lists(records, max_size=2, unique=True),
        end=st.sampled_from(["hours", "days", "event", "both", "event", "undeclared", "bad-name"]),
    )
    def consent_and_share(self, first: str, more: list[str], end: str) -> Any:
        """The usual flow (docs/shares.md): the subject consents to the clinic for every category
        of the purpose, then the application shares its records of those categories, with the
        fields the purpose discloses for them."""
        sid = self.model.s.records[first].subject
        if not self._known(sid):
            return multiple()
        proposal = self.model.policy.purposes["proposal"]
        picked = [
            r
            for r in dict.fromkeys([first, *more])
            if self.model.s.records[r].subject == sid
            and self.model.s.records[r].category in proposal.categories
            and self.model.s.records[r].state == ref.LIVE
        ]
        if not picked:  # the member writes a concern first
            made = self.put(sid, "concern", WORDS[3:5], 1, 0, False)
            if not isinstance(made, str):
                return multiple()
            picked = [made]
        self.grant(sid, "clinic", {"concern", "photo", "face"}, "now", "none", WORDS[len(self.ids) % 40])
        fields = set().union(
            *(self.model.policy.visible("proposal", self.model.s.records[r].category) for r in picked)
        )
        return self.create_share(picked[0], picked[1:], fields, end)

    @rule(label=shares, who=st.sampled_from(["clinic", "clinic", "clinic", "clinic2"]))
    def read_share(self, label: str, who: str) -> None:
        if not self.model.usable(self.model.s.shares[label].subject):
            return
        actual = self.vault.read_share(self.ids[label], who)
        if actual.value is not None:
            actual.value = self._labelled(actual.value)
        self._check(self.model.read_share(label, who), actual)

    @rule(label=shares)
    def revoke_share(self, label: str) -> None:
        if self._known(self.model.s.shares[label].subject):
            self._check(self.model.revoke_share(label), self.vault.revoke_share(self.ids[label]))

    # -- holds and erasure -----------------------------------------------------------------------
    @rule(target=holds, sid=st.sampled_from(SUBJECTS), on_record=st.booleans(), pick=st.integers(0, 9))
    def place_hold(self, sid: str, on_record: bool, pick: int) -> Any:
        s = self.model.subject(sid)
        if not self._known(sid) or s is None or s.state != "active":
            return multiple()
        record = None
        if on_record:
            live = [r.label for r in self.model.records_of(sid) if r.state == ref.LIVE]
            if not live:
                return multiple()
            record = live[pick % len(live)]
        label = self.model.label("h")
        exp = self.model.place_hold(label, sid, record)
        actual = self._check(exp, self.vault.place_hold(sid, self.ids[record] if record else ""))
        if actual.status != ref.OK:
            return multiple()
        self._bind(label, actual.value)
        return label

    @rule(label=holds)
    def release_hold(self, label: str) -> None:
        if not self._known(self.model.s.holds[label].subject):
            return
        self._check(self.model.release_hold(label), self.vault.release_hold(self.ids[label]))
        self.vault.settle()
        self.verify()

    @rule(sid=st.sampled_from(SUBJECTS))
    def erase(self, sid: str) -> None:
        s = self.model.subject(sid)
        if not self._known(sid, dormant_ok=True) or s is None:
            return
        if s.state == "dormant" and self.model.held_subject(sid):
            return  # ambiguous: whether a refused erasure counts as activity
        self._check(self.model.erase(sid), self.vault.erase(sid))
        self.verify()

    @rule(target=holds, sid=st.sampled_from(SUBJECTS), on_record=st.booleans(), pick=st.integers(0, 9))
    def erase_under_hold(self, sid: str, on_record: bool, pick: int) -> Any:
        """A legal officer holds the subject (or one of its records), then the subject
        withdraws: the erasure is deferred to the hold's release."""
        label = self.place_hold(sid, on_record, pick)
        if isinstance(label, str):
            self.erase(sid)
            return label
        return multiple()

    @rule(sid=st.sampled_from(SUBJECTS))
    def release_all_holds(self, sid: str) -> None:
        """The case is closed: every active hold of the subject is released, one by one."""
        if not self._known(sid):
            return
        for h in list(self.model.s.holds.values()):
            if h.subject == sid and h.active and not h.lost:
                self.release_hold(h.label)

    # -- time and jobs ---------------------------------------------------------------------------
    @rule(seconds=st.sampled_from(ADVANCES))
    def advance(self, seconds: float) -> None:
        """Time passes; the background loops purge, sweep shares and retention."""
        note(f"advance {seconds:.0f} s")
        event("advance")
        self.vault.advance(seconds)
        self.model.now += seconds
        self._settle()

    @rule()
    def sweep_dormancy(self) -> None:
        why = self.model.dormancy_ambiguous()
        if why:
            note(f"dormancy sweep skipped: {why}")
            event("dormancy sweep skipped")
            return
        note("dormancy sweep")
        event("dormancy sweep")
        self.vault.sweep_dormancy()
        self.model.sweep_dormancy()
        self._settle()

    def _learn_pseudonyms(self) -> None:
        for rid, pseudonym in self.vault.pseudonyms().items():
            label = self.labels.get(rid)
            if label is not None and label in self.model.s.records:
                self.pseudo.setdefault(self.model.s.records[label].subject, pseudonym)

    def verify(self) -> None:
        """VerifyDeletion lists every erasure carried out or deferred, none FAILED."""
        self._learn_pseudonyms()
        actual = self.vault.verify_deletions()
        note(f"verify deletions -> {actual.status} {actual.value}")
        if actual.status != ref.OK:
            raise Discrepancy(f"verify deletions: expected OK, got {actual.status}: {actual.message}")
        problem = self.model.verify(actual.value, self.pseudo)
        if problem:
            raise Discrepancy(f"verify deletions: {problem}")
        records = self.vault.verify_record_deletions()
        note(f"verify record deletions -> {records.status} {self._labelled(records.value or {})}")
        if records.status != ref.OK:
            raise Discrepancy(f"verify record deletions: expected OK, got {records.status}")
        problem = self.model.verify_records(self._labelled(records.value))
        if problem:
            raise Discrepancy(f"verify record deletions: {problem}")

    @rule()
    def check_all(self) -> None:
        """Everything live reads back exactly; everything destroyed stays unreadable; every
        listing matches; VerifyDeletion agrees; nothing in plaintext at rest."""
        note("full check")
        for label in list(self.model.s.records):
            r = self.model.s.records[label]
            how = self.model.full_read(label)
            if how is not None and self.model.usable(r.subject):
                self._get("app", label, how[0], None, how[1])
        for sid in SUBJECTS:
            if self._known(sid):
                self._list(sid)
        self.verify()
        hits = self.vault.plaintext_at_rest(MARKER)
        if hits:
            raise Discrepancy(f"plaintext at rest: {hits[:5]}")

    # -- restarts, backups, key epochs -----------------------------------------------------------
    @rule(target=backups)
    def backup(self) -> Any:
        label = self.model.label("b")
        note(f"backup {label} (the server stops, the data directory is copied, it starts again)")
        event("backup")
        self.vault.backup(label)
        self.model.backup(label)
        self._settle()
        self.check_all()
        return label

    @rule(label=backups)
    def restore(self, label: str) -> None:
        if not self.model.restorable(label):
            return
        note(f"restore {label}")
        event("restore")
        self._learn_pseudonyms()
        self.vault.restore(label)
        self.model.restore(label)
        self.vault.settle()
        self.check_all()

    @precondition(lambda self: any(self.model.restorable(b) for b in self.model.backups))
    @rule()
    def restore_latest(self) -> None:
        """The usual disaster: the newest backup that can still be restored is put back."""
        latest = [b for b in self.model.backups if self.model.restorable(b)][-1]
        self.restore(latest)

    @precondition(lambda self: self.epochs_left > 0)
    @rule(target=records)
    def key_epoch(self) -> Any:
        """rotate, rewrap, retire, destroy --mark, destroy: separate vaultctl processes while
        the server runs (D2); then a subject stored afterwards and everything live read back,
        before and after a restart."""
        self.epochs_left -= 1
        note(f"key epoch: destroy root version {self.model.epoch}")
        event("key epoch")
        for result in self.vault.key_epoch(self.model.epoch):
            note(f"vaultctl {' '.join(result.args)} -> {result.returncode}")
            if result.returncode != 0:
                raise Discrepancy(
                    f"vaultctl {' '.join(result.args)}: expected exit 0, got "
                    f"{result.returncode}: {result.output}"
                )
        self.model.epoch_done()
        label = self.put(f"e{self.model.epoch}", "note", WORDS[:2], 1, 0, False)
        self.check_all()
        self.vault.restart()
        self._settle()
        self.check_all()
        return label


def _settings(examples: int) -> settings:
    return settings(
        max_examples=examples,
        stateful_step_count=STEPS,
        deadline=None,
        derandomize=not RANDOM,
        database=settings().database if RANDOM else None,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.filter_too_much,
            HealthCheck.data_too_large,
        ],
        print_blob=RANDOM,
        phases=list(Phase) if SHRINK else [Phase.explicit, Phase.reuse, Phase.generate],
    )


class SqliteLifecycle(LifecycleMachine):
    """The machine on SQLite."""

    backend_factory = SqliteBackend


class PostgresLifecycle(LifecycleMachine):
    """The machine on PostgreSQL (``cluster`` is the test cluster)."""

    cluster: ClassVar[Any] = None

    @staticmethod
    def backend_factory() -> Backend:
        return PostgresBackend(PostgresLifecycle.cluster)


class TestLifecycleModelSqlite(SqliteLifecycle.TestCase):  # type: ignore[misc,valid-type]
    """Run as a TestCase so that ``--hypothesis-show-statistics`` reports its events."""

    settings = _settings(EXAMPLES)

    @pytest.fixture(autouse=True)
    def _home(self, tmp_path: Path) -> None:
        SqliteLifecycle.base = tmp_path


@pytest.mark.slow
class TestLifecycleModelPostgres(PostgresLifecycle.TestCase):  # type: ignore[misc,valid-type]
    """The same machine on PostgreSQL, with a smaller budget."""

    settings = _settings(PG_EXAMPLES)

    @pytest.fixture(autouse=True)
    def _home(self, tmp_path: Path, pg_cluster: Any) -> None:
        PostgresLifecycle.base = tmp_path
        PostgresLifecycle.cluster = pg_cluster
