"""The breach scope (issue 21, part 2) over a real gRPC server: which subjects had which
categories and fields released to whom, and when, in a time window.

The promise: the scope of any window, with any filters, is exactly what left the server in it.
The tests keep their own account of what each client received (the fields of each record it
got back, and whether content came) through every release path (GetRecord, DownloadContent,
ExportSubject, share reads; a search's releases: tests/access/test_find_records.py), with
denials in between, and compare it with the scope of many windows and filters, on SQLite and
PostgreSQL. Then: subjects appear by pseudonym only and no field value appears anywhere
(markers); a trail written before the release columns existed still verifies and is reported as
not itemized; tampering with the new columns is detected; the query is the auditor's, audited,
and refuses malformed windows with a clear message. Windows past audit retention:
test_breach_scope_retention.py; the release indexes: test_breach_scope_index.py.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import struct
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import BACKENDS
from tests.regressions import conftest as harness
from tests.regressions.conftest import ALL_TOKENS, DAY, Vault, configure, shipped_policy_text
from tests.support.serve import vaultctl
from vault_service.cli.breach import render_html
from vault_service.client import Record
from vault_service.client.results import BreachScope
from vault_service.clock import FixedClock
from vault_service.errors import InvalidArgument, PermissionDenied
from vault_service.storage.migrations import MIGRATIONS

vault = harness.vault
clock = harness.clock
policy_text = harness.policy_text

ROLES = {"app": "application", "clinic": "clinic", "sro": "subject_rights_officer"}


@dataclass(frozen=True)
class Receipt:
    """One record as a client received it: what the scope must say was released."""

    at: float
    subject: str
    record_id: str
    category: str
    fields: frozenset[str]
    principal: str
    action: str
    purpose: str


def _received(record: Record, content: bool = False) -> frozenset[str]:
    names = set(record.fields)
    if content or record.content is not None:
        names.add("content")
    return frozenset(names)


class Account:
    """The test's own record of every release, kept from the clients' side."""

    def __init__(self, vault: Vault) -> None:
        self.vault = vault
        self.receipts: list[Receipt] = []
        self.subject_of: dict[str, str] = {}
        self.category_of: dict[str, str] = {}

    def put(self, subject: str, category: str, fields: dict[str, str], content: bytes = b"") -> str:
        rid = (
            self.vault.client("app")
            .put_record(subject, category, fields, content=content or None)
            .record_id
        )
        self.subject_of[rid], self.category_of[rid] = subject, category
        return rid

    def got(self, rid: str, names: frozenset[str], who: str, action: str, purpose: str) -> None:
        self.receipts.append(
            Receipt(
                self.vault.clock.now(),
                self.subject_of[rid],
                rid,
                self.category_of[rid],
                names,
                who,
                action,
                purpose,
            )
        )

    def get(
        self, rid: str, purpose: str, fields: list[str] | None = None, content: bool = False
    ) -> None:
        record = self.vault.client("app").get_record(
            rid, purpose, fields=fields, include_content=content
        )
        self.got(rid, _received(record), "app", "record.get", purpose)

    def download(self, rid: str, purpose: str) -> None:
        data = b"".join(self.vault.client("app").download_content(rid, purpose))
        assert data
        self.got(rid, frozenset({"content"}), "app", "record.get", purpose)

    def export(self, subject: str) -> None:
        for record in self.vault.client("sro").export_subject(subject, "subject_access"):
            self.got(
                record.info.record_id,
                _received(record),
                "sro",
                "subject.export",
                "subject_access",
            )

    def read_share(self, share_id: str) -> None:
        items = list(self.vault.client("clinic").read_share(share_id))
        pieces = {i[0] for i in items if isinstance(i, tuple)}
        for r in items:
            if isinstance(r, Record):
                names = _received(r, r.info.record_id in pieces)
                self.got(r.info.record_id, names, "clinic", "share.read", "clinic_proposal")


def _scenario(vault: Vault, values: Iterable[str] = ()) -> Account:
    """Releases by every path over three days, denials between them; ``values`` are put into
    the records' fields (marker tests)."""
    mark = " ".join(values)
    a = Account(vault)
    app, sro, clinic = vault.client("app"), vault.client("sro"), vault.client("clinic")
    text1 = a.put(
        "member-1", "concern_text", {"text": f"nose {mark}", "budget": "300", "body_area": "face"}
    )
    photo1 = a.put("member-1", "concern_photo", {"caption": f"left {mark}"}, b"jpeg" * 100)
    profile1 = a.put("member-1", "member_profile", {"email": f"{mark}@x.kr", "language": "ko"})
    text2 = a.put("member-2", "concern_text", {"text": f"eyes {mark}"})
    a.put("member-2", "payment_record", {"amount": "300", "currency": "KRW"})
    text3 = a.put("member-3", "concern_text", {"text": f"chin {mark}", "stay_schedule": "May"})
    # day 0: reads, a download, content inline; a role without the purpose, a purpose without
    # the category (both refused, audited, and not releases)
    a.get(text1, "matching", fields=["text"])
    vault.clock.advance(60)
    a.get(text1, "matching")
    a.download(photo1, "matching")
    a.get(photo1, "matching", content=True)
    with pytest.raises(PermissionDenied):
        clinic.get_record(text3, "matching")
    with pytest.raises(PermissionDenied):
        app.get_record(profile1, "matching")
    # day 1: a share read by the clinic, a read for support, a de-identified read
    vault.clock.advance(DAY)
    _, share = vault.share_with_clinic(text1, "concern_text", ["text", "budget"])
    a.read_share(share.share_id)
    vault.clock.advance(5)
    a.get(profile1, "customer_support")
    a.get(text2, "llm_analysis")
    # day 2: an export, a read kept by law, a refused read of a restricted record
    vault.clock.advance(DAY)
    a.export("member-2")
    sro.restrict_record(text3)
    with pytest.raises(PermissionDenied):
        app.get_record(text3, "matching")
    vault.clock.advance(DAY)  # day 3: nothing
    return a


Shape = dict[str, tuple[int, int, float, float, frozenset[tuple[object, ...]]]]


def _expected(a: Account, pseudonyms: dict[str, str], start: float, end: float, **filters: str) -> Shape:
    """The scope of a window by the test's own account (a reference written independently)."""
    chosen = [
        r
        for r in a.receipts
        if start <= r.at <= end and all(not v or getattr(r, k) == v for k, v in filters.items())
    ]
    per: dict[str, list[Receipt]] = defaultdict(list)
    for r in chosen:
        per[pseudonyms[r.subject]].append(r)
    out: Shape = {}
    for p, rs in per.items():
        alike: dict[tuple[str, str, str, str], list[Receipt]] = defaultdict(list)
        for r in rs:
            alike[(r.category, r.principal, r.action, r.purpose)].append(r)
        disclosures = frozenset(
            (
                cat,
                tuple(sorted(set().union(*(r.fields for r in g)))),
                who,
                ROLES[who],
                action,
                purpose,
                len(g),
                min(r.at for r in g),
                max(r.at for r in g),
            )
            for (cat, who, action, purpose), g in alike.items()
        )
        out[p] = (
            len(rs),
            len({r.record_id for r in rs}),
            min(r.at for r in rs),
            max(r.at for r in rs),
            disclosures,
        )
    return out


def _shape(scope: BreachScope) -> Shape:
    return {
        s.subject_pseudonym: (
            s.releases,
            s.records,
            s.first_at,
            s.last_at,
            frozenset(
                (
                    d.category,
                    d.fields,
                    d.principal,
                    d.role,
                    d.action,
                    d.purpose,
                    d.releases,
                    d.first_at,
                    d.last_at,
                )
                for d in s.disclosures
            ),
        )
        for s in scope.subjects
    }


@pytest.mark.parametrize("vault", BACKENDS, indirect=True)
def test_the_scope_of_any_window_and_filter_is_what_left_the_server(vault: Vault) -> None:
    t0 = vault.clock.now()
    a = _scenario(vault)
    assert {r.action for r in a.receipts} == {"record.get", "share.read", "subject.export"}
    pseudonyms = {s: vault.pseudonym(s) for s in ("member-1", "member-2", "member-3")}
    auditor = vault.client("auditor")
    end = vault.clock.now()
    windows = [(t0, end), (t0 - 10 * DAY, t0 - 1), (end - DAY + 1, end)]
    windows += [(t0 + d * DAY, t0 + (d + 1) * DAY - 1) for d in range(3)]
    windows += [(r.at, r.at) for r in a.receipts[::4]]  # both ends are included
    filters: list[dict[str, str]] = [{}, {"principal": "nobody"}, {"category": "nope"}]
    filters += [{"principal": p} for p in ROLES]
    filters += [{"category": c} for c in sorted(set(a.category_of.values()))]
    filters += [{"purpose": p} for p in sorted({r.purpose for r in a.receipts})]
    filters += [{"principal": "app", "category": "concern_text", "purpose": "matching"}]
    nonempty = 0
    for start, stop in windows:
        for f in filters:
            scope = auditor.breach_scope(start, stop, **f)
            want = _expected(a, pseudonyms, start, stop, **f)
            assert _shape(scope) == want, (start - t0, stop - t0, f)
            assert scope.releases == sum(v[0] for v in want.values())
            assert scope.records == sum(v[1] for v in want.values())
            assert scope.unrecorded == 0
            by_category: dict[str | None, int] = defaultdict(int)
            for s in scope.subjects:
                for d in s.disclosures:
                    by_category[d.category] += d.releases
            assert {t.name: t.releases for t in scope.by_category} == by_category
            nonempty += bool(want)
    assert nonempty > 20  # the comparisons are not all of empty scopes
    # member-3 was only refused: never in a scope; the everything-scope has the two others
    whole = auditor.breach_scope(t0, end)
    assert {s.subject_pseudonym for s in whole.subjects} == {
        pseudonyms["member-1"],
        pseudonyms["member-2"],
    }
    recipients = {(t.name, t.role) for t in whole.by_recipient}
    assert recipients == {(p, r) for p, r in ROLES.items()}
    # a refusal that knew the record's category records it (and is no release)
    denied, _ = auditor.query_audit(decision="deny", action="record.get")
    assert "concern_text" in {e["category"] for e in denied}
    assert all(e["released_fields"] == [] and e["role"] == "" for e in denied)


def test_subjects_by_pseudonym_only_and_no_field_value_anywhere(vault: Vault, tmp_path: Path) -> None:
    markers = ["VALUE-MARK-8812", "010-5555-7777"]
    t0 = vault.clock.now()
    _scenario(vault, markers)
    pseudonyms = {vault.pseudonym(s) for s in ("member-1", "member-2")}
    token = tmp_path / "auditor.token"
    token.write_text(ALL_TOKENS["auditor"])
    html = tmp_path / "scope.html"
    common = ["--from", str(t0), "--to", str(vault.clock.now()), "--address", vault.address]
    json_run = vault.vaultctl("breach-scope", *common, "--token-file", str(token), "--json")
    text_run = vault.vaultctl("breach-scope", *common, "--token-file", str(token), "--html", str(html))
    assert json_run.returncode == 0 and text_run.returncode == 0, json_run.stderr + text_run.stderr
    data = json.loads(json_run.stdout)
    assert {s["subject_pseudonym"] for s in data["subjects"]} == pseudonyms
    entries, _ = vault.client("auditor").query_audit(page_size=1000)
    outputs = {
        "json": json_run.stdout,
        "text": text_run.stdout,
        "html": html.read_text(),
        "audit": json.dumps(entries),
    }
    for name, out in outputs.items():
        for secret in [*markers, "member-1", "member-2", "member-3"]:
            assert secret not in out, (name, secret)
    for p in pseudonyms:
        assert p in outputs["text"] and p in outputs["html"]
    # and the fields are there by name
    text_fields = next(
        d["fields"] for s in data["subjects"] for d in s["disclosures"] if d["action"] == "share.read"
    )
    assert text_fields == ["budget", "text"]


def test_the_cli_prints_what_the_sdk_returns_and_refuses_bad_times(vault: Vault, tmp_path: Path) -> None:
    t0 = vault.clock.now()
    _scenario(vault)
    end = vault.clock.now()
    sdk = vault.client("auditor").breach_scope(t0, end, principal="app").as_dict()
    env = {"VAULT_SERVICE_TOKEN": ALL_TOKENS["auditor"]}
    iso = "2027-01-15T08:00:00+00:00"  # FixedClock starts at 1_800_000_000 (2027-01-15 08:00 UTC)
    assert t0 == 1_800_000_000.0
    run = vaultctl(
        vault.home,
        "--json",
        "breach-scope",
        "--from",
        iso,
        "--to",
        str(end),
        "--principal",
        "app",
        "--address",
        vault.address,
        env=env,
    )
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout) == sdk
    bad = vaultctl(vault.home, "breach-scope", "--from", "yesterday", "--to", "1", env=env)
    assert bad.returncode == 2 and "Unix seconds or ISO 8601" in bad.stderr
    backwards = vaultctl(
        vault.home,
        "breach-scope",
        "--from",
        str(end),
        "--to",
        str(t0),
        "--address",
        vault.address,
        env=env,
    )
    assert backwards.returncode == 1
    assert "INVALID_ARGUMENT" in backwards.stderr and "from must not be after to" in backwards.stderr


def test_only_the_auditor_may_ask_and_every_question_is_audited(vault: Vault) -> None:
    now = vault.clock.now()
    for who in ("app", "clinic", "sro", "operator", "legal"):
        with pytest.raises(PermissionDenied):
            vault.client(who).breach_scope(0.0, now)
    auditor = vault.client("auditor")
    bad = [
        ((0.0, 0.0), "to is required"),
        ((now, now - 1), "from must not be after to"),
        ((float("nan"), now), "from must be a time"),
        ((0.0, float("inf")), "to must be a time"),
        ((-5.0, now), "from must be a time"),
        ((0.0, 1e13), "to must be a time"),
    ]
    for (start, end), message in bad:
        with pytest.raises(InvalidArgument, match=message):
            auditor.breach_scope(start, end)
    for f in ({"principal": "App Server"}, {"category": "x" * 65}, {"purpose": "<script>"}):
        with pytest.raises(InvalidArgument, match="must be a name"):
            auditor.breach_scope(0.0, now, **f)
    auditor.breach_scope(0.0, now)
    entries, _ = auditor.query_audit(action="audit.breach_scope")
    got = sorted((e["principal"], e["decision"]) for e in entries)
    denied = sorted((who, "deny") for who in ("app", "clinic", "sro", "operator", "legal"))
    assert got == sorted([("auditor", "allow"), *denied])


def test_the_page_escapes_every_value() -> None:
    hostile = "<script>alert(1)</script>"
    data = {
        "from": 0.0,
        "to": 1.0,
        "filters": {"principal": hostile},
        "totals": {
            "subjects": 1,
            "releases": 1,
            "records": 1,
            "unrecorded_releases": 1,
            "complete": False,
            "trail_pruned": True,
            "oldest_retained_at": 1.0,
            "by_category": [{"category": hostile, "releases": 1, "subjects": 1}],
            "by_recipient": [{"principal": hostile, "role": None, "releases": 1, "subjects": 1}],
        },
        "subjects": [
            {
                "subject_pseudonym": hostile,
                "releases": 1,
                "records": 1,
                "first_at": 0.0,
                "last_at": 1.0,
                "disclosures": [
                    {
                        "category": hostile,
                        "fields": [hostile],
                        "principal": hostile,
                        "role": hostile,
                        "action": hostile,
                        "purpose": hostile,
                        "releases": 1,
                        "first_at": 0.0,
                        "last_at": 1.0,
                    }
                ],
            }
        ],
    }
    page = render_html(data)
    assert "<script" not in page and "&lt;script&gt;" in page
    assert "default-src 'none'" in page


# --- a trail from before the release columns ---------------------------------------------------


def _lp(value: str) -> bytes:
    data = value.encode()
    return struct.pack(">I", len(data)) + data


def _v1_hash(prev: bytes, seq: int, row: dict[str, object]) -> bytes:
    """The entry hash as docs/format.md section 15 gave it before schema 18 (written here from
    the spec, not imported)."""
    h = hashlib.sha256(b"vault-audit/v1" + prev + struct.pack(">Q", seq))
    for key in (
        "at",
        "principal",
        "action",
        "decision",
        "reason",
        "purpose",
        "subject_pseudonym",
        "record_id",
        "correlation_id",
    ):
        value = row[key]
        h.update(_lp(repr(value) if key == "at" else str(value)))
    if row.get("witnessed_version") is not None:
        h.update(b"\x01" + struct.pack(">Q", int(str(row["witnessed_version"]))))
    return h.digest()


OLD_PSEUDONYM = "0f" * 16
OLD_RECORD = "01a2013c-0000-7000-8000-0000000000cc"


def _old_trail(db: Path, at: float) -> int:
    """A database at schema 17 whose audit log holds a put, a release and a refusal."""
    db.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(db)
    conn.execute(
        "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at REAL NOT NULL)"
    )
    for version, statements in MIGRATIONS:
        if version > 17:
            break
        for statement in statements:
            conn.execute(statement)
        conn.execute("INSERT INTO schema_migrations VALUES (?, ?)", (version, at))
    base = {
        "principal": "app",
        "purpose": "matching",
        "subject_pseudonym": OLD_PSEUDONYM,
        "record_id": OLD_RECORD,
        "correlation_id": "c-old",
        "witnessed_version": None,
    }
    rows = [
        {**base, "at": at, "action": "record.put", "decision": "allow", "reason": "stored",
         "purpose": "", "witnessed_version": 1},
        {**base, "at": at + 1, "action": "record.get", "decision": "allow", "reason": "released"},
        {**base, "at": at + 2, "action": "record.get", "decision": "deny", "reason": "no consent"},
    ]  # fmt: skip
    prev = bytes(32)
    for seq, row in enumerate(rows, start=1):
        digest = _v1_hash(prev, seq, row)
        conn.execute(
            "INSERT INTO audit_log (seq, at, principal, action, purpose, subject_pseudonym,"
            " record_id, decision, reason, correlation_id, prev_hash, entry_hash,"
            " witnessed_version) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (seq, row["at"], row["principal"], row["action"], row["purpose"],
             row["subject_pseudonym"], row["record_id"], row["decision"], row["reason"],
             row["correlation_id"], prev, digest, row["witnessed_version"]),
        )  # fmt: skip
        prev = digest
    conn.commit()
    conn.close()
    return len(rows)


def _verify(v: Vault) -> dict[str, object]:
    run = v.vaultctl("--json", "audit", "verify")
    report: dict[str, object] = json.loads(run.stdout)
    assert (run.returncode == 0) == report["ok"]
    return report


def test_an_old_trail_still_verifies_and_its_releases_are_reported(tmp_path: Path) -> None:
    clock = FixedClock()
    v = configure(tmp_path, shipped_policy_text(), clock)
    old = _old_trail(tmp_path / "data" / "vault.db", clock.now() - 3600)
    v.start()
    try:
        rid = v.client("app").put_record("member-1", "concern_text", {"text": "t"}).record_id
        v.client("app").get_record(rid, "matching")
        assert v.vaultctl("audit", "checkpoint").returncode == 0
        report = _verify(v)
        assert report["ok"], report
        assert int(str(report["entries_checked"])) >= old + 2
        scope = v.client("auditor").breach_scope(clock.now() - 7200, clock.now())
        by_subject = {s.subject_pseudonym: s for s in scope.subjects}
        legacy = by_subject[OLD_PSEUDONYM]
        assert (legacy.releases, legacy.records) == (1, 1)
        (d,) = legacy.disclosures
        assert (d.category, d.fields, d.role, d.principal) == (None, None, None, "app")
        assert scope.unrecorded == 1 and scope.releases == 2
        assert {t.name for t in scope.by_category} == {None, "concern_text"}
        new = by_subject[v.pseudonym("member-1")]
        assert new.disclosures[0].fields == ("text",)
        # a category filter cannot match what was not recorded; a principal filter can
        assert OLD_PSEUDONYM not in {
            s.subject_pseudonym
            for s in v.client("auditor").breach_scope(0.0, clock.now(), category="concern_text").subjects
        }
        assert OLD_PSEUDONYM in {
            s.subject_pseudonym
            for s in v.client("auditor").breach_scope(0.0, clock.now(), principal="app").subjects
        }
        entries, _ = v.client("auditor").query_audit(action="record.get", decision="allow")
        (release,) = [e for e in entries if e["record_id"] == rid]
        seq = release["seq"]
    finally:
        v.stop()
    # the new columns are covered by the entry hash, and an old entry cannot gain them unseen
    db = tmp_path / "data" / "vault.db"
    for sql, target in (
        ("UPDATE audit_log SET released_fields = 'text,budget' WHERE seq = ?", seq),
        ("UPDATE audit_log SET role = 'clinic' WHERE seq = ?", seq),
        ("UPDATE audit_log SET category = 'concern_photo' WHERE seq = ?", seq),
        ("UPDATE audit_log SET category = 'concern_text' WHERE seq = ?", 2),
    ):
        with sqlite3.connect(db) as conn:
            before = conn.execute(
                "SELECT category, released_fields, role FROM audit_log WHERE seq = ?", (target,)
            ).fetchone()
            conn.execute(sql, (target,))
        report = _verify(v)
        assert not report["ok"] and report["reason"] == f"entry {target} was altered", (sql, report)
        with sqlite3.connect(db) as conn:
            conn.execute(
                "UPDATE audit_log SET category = ?, released_fields = ?, role = ? WHERE seq = ?",
                (*before, target),
            )
        assert _verify(v)["ok"]
