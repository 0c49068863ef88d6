"""The audit tail (issue 18, part 7: export to a SIEM) over a real gRPC server: TailAudit, the
SDK's ``tail_audit`` and ``vaultctl audit tail``.

The promises: the trail comes in seq order from a cursor, every entry once (a crash of the
command re-prints at most the one line whose cursor it had not written: at least once, nothing
skipped); a follow sees entries written after it started; entries pruned past the cursor are
reported as a gap before the oldest retained entry; the call is the auditor's and is audited
once, when it starts, however long it follows; bad cursors and limits are refused with a clear
message; the CEF lines escape what the format needs escaped, so a hostile reason cannot forge a
field or a line.
"""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import BACKENDS, ROOT
from tests.regressions import conftest as harness
from tests.regressions.conftest import ALL_TOKENS, DAY, Vault
from tests.support.serve import vaultctl
from vault_service import __version__, metrics
from vault_service.audit.chain import GENESIS, entry_hash
from vault_service.audit.model import AuditRow
from vault_service.cli.audit_tail import (
    CURSOR_FORMAT,
    EVENT_FORMAT,
    GAP_FORMAT,
    cef_event,
    cef_gap,
    json_event,
    json_gap,
    read_cursor,
    write_cursor,
)
from vault_service.client import VaultClient
from vault_service.client.results import AuditEvent, TailGap
from vault_service.config import load_config
from vault_service.errors import (
    FailedPrecondition,
    InvalidArgument,
    PermissionDenied,
    ResourceExhausted,
    Unavailable,
)
from vault_service.jobs import run_once, server_jobs
from vault_service.service import audit_tail

vault = harness.vault
clock = harness.clock
policy_text = harness.policy_text

TEXT = {"text": "t", "budget": "1"}


# helpers ------------------------------------------------------------------------------------------


def _put(v: Vault, n: int, subject: str = "member-1") -> list[str]:
    app = v.client("app")
    return [app.put_record(subject, "concern_text", TEXT).record_id for _ in range(n)]


def _events(items: list[AuditEvent | TailGap]) -> list[AuditEvent]:
    return [i for i in items if isinstance(i, AuditEvent)]


def _tails(v: Vault, decision: str = "allow") -> list[AuditEvent]:
    """The tail calls the trail recorded (read with a page that is itself one of them)."""
    items = list(v.client("auditor").tail_audit())
    return [e for e in _events(items) if e.action == "audit.tail" and e.decision == decision]


def _prune(v: Vault) -> None:
    """One run of the server's audit_prune job (default retention: 730 days), on its clock."""
    config = load_config(v.home / "vault.toml", {})
    (job,) = [j for j in server_jobs(v.running.assembly, config) if j.name == "audit_prune"]
    assert run_once(job)


def _cli(v: Vault, *args: str, who: str = "auditor") -> subprocess.CompletedProcess[str]:
    """``vaultctl audit tail ARGS`` (the token from VAULT_SERVICE_TOKEN) to its end."""
    return vaultctl(
        v.home,
        "audit",
        "tail",
        "--address",
        v.address,
        *args,
        env={"VAULT_SERVICE_TOKEN": ALL_TOKENS[who]},
    )


class Tail:
    """``vaultctl audit tail ARGS`` running as a subprocess, its stdout read line by line."""

    def __init__(self, v: Vault, *args: str) -> None:
        command = [
            sys.executable,
            "-m",
            "vault_service.cli.main",
            "--config",
            str(v.home / "vault.toml"),
        ]
        self.proc = subprocess.Popen(
            [*command, "audit", "tail", "--address", v.address, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "VAULT_SERVICE_TOKEN": ALL_TOKENS["auditor"]},
        )
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line.rstrip("\n"))
        self._lines.put(None)

    def until(self, done: object, timeout: float = 60) -> list[dict[str, object]]:
        """Lines (as JSON) until ``done(line)`` is true for one, which is included."""
        out: list[dict[str, object]] = []
        deadline = time.monotonic() + timeout
        while True:
            line = self._lines.get(timeout=max(0.1, deadline - time.monotonic()))
            assert line is not None, f"the tail ended: {self.stderr()}"
            out.append(json.loads(line))
            if done(out[-1]):  # type: ignore[operator]
                return out

    def rest(self) -> list[dict[str, object]]:
        """The lines it printed that were not read yet (after it ended)."""
        self.proc.wait(timeout=60)
        out = []
        while (line := self._lines.get(timeout=60)) is not None:
            out.append(json.loads(line))
        return out

    def stderr(self) -> str:
        if self.proc.poll() is None:
            return "(running)"
        assert self.proc.stderr is not None
        return self.proc.stderr.read()


def _seqs(lines: list[dict[str, object]]) -> list[int]:
    return [int(str(line["seq"])) for line in lines if line["format"] == EVENT_FORMAT]


def parse_cef(line: str) -> tuple[list[str], dict[str, str]]:
    """A CEF line read back by the format's rules alone: the seven header fields (split at
    unescaped ``|``) and the extension's pairs (a key is a word before ``=``; a value runs to the
    space before the next key; ``\\`` escapes the next character, ``\\n`` and ``\\r`` stand for
    line breaks)."""
    assert line.startswith("CEF:") and "\n" not in line and "\r" not in line
    header: list[str] = []
    field, i = "", 4
    while len(header) < 7:
        c = line[i]
        if c == "\\":
            field += line[i + 1]
            i += 2
            continue
        if c == "|":
            header.append(field)
            field = ""
        else:
            field += c
        i += 1
    extension, pairs = line[i:], {}
    key = re.compile(r"(\w+)=")
    m = key.match(extension)
    while m:
        name, i, value = m.group(1), m.end(), ""
        while i < len(extension):
            c = extension[i]
            if c == "\\":
                value += {"n": "\n", "r": "\r"}.get(extension[i + 1], extension[i + 1])
                i += 2
                continue
            assert c != "=", f"an unescaped '=' in the value of {name}: {line}"
            if c == " " and key.match(extension, i + 1):
                break
            value += c
            i += 1
        assert name not in pairs, f"{name} twice: {line}"
        pairs[name] = value
        m = key.match(extension, i + 1) if i < len(extension) else None
    return header, pairs


# the stream ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("vault", BACKENDS, indirect=True)
def test_the_backlog_then_a_follow_sees_an_entry_another_call_writes(vault: Vault) -> None:
    """The entries already written, in seq order from 1 and as QueryAudit gives them, then
    (follow) a record put by the application after the backlog was sent."""
    _put(vault, 4)
    auditor = vault.client("auditor")
    stream = auditor.tail_audit(0, follow=True, timeout=60)
    backlog: list[AuditEvent | TailGap] = []
    for item in stream:
        backlog.append(item)
        if isinstance(item, AuditEvent) and item.action == "audit.tail":
            break  # the tail's own entry: the backlog is over
    events = _events(backlog)
    assert len(events) == len(backlog) == 5  # no gap: the trail was never pruned
    assert [e.seq for e in events] == [1, 2, 3, 4, 5]
    assert events[-1].reason == "audit tailed: after_seq 0, follow on"
    assert events[-1].principal == "auditor" and events[-1].decision == "allow"
    written = _put(vault, 1, "member-2")[0]  # another call, after the tail caught up
    new = next(stream)
    assert isinstance(new, AuditEvent)
    assert (new.seq, new.action, new.record_id) == (6, "record.put", written)
    stream.close()  # cancels the call
    queried, _ = auditor.query_audit(page_size=100)
    # as QueryAudit gives them (their proofs aside: the sequencer may have run in between)
    unproved = {"tree_size": 0, "inclusion_proof": []}
    assert [{**e.as_dict(), **unproved} for e in events] == [{**q, **unproved} for q in queried[:5]]


@pytest.mark.parametrize("vault", BACKENDS, indirect=True)
def test_a_follow_sees_every_entry_of_concurrent_writers_once_in_order(vault: Vault) -> None:
    """Four clients writing at once while a tail follows, polling every 10 ms (so, many times
    mid-way through their commits): the follow gets every seq once, in order, with no gap, and
    nothing that is not in the trail."""
    config = vault.home / "vault.toml"
    config.write_text(config.read_text() + "[audit]\ntail_poll_seconds = 0.01\n")
    vault.restart()
    assert load_config(config, {}).audit.tail_poll_seconds == 0.01
    auditor = vault.client("auditor")
    stream = auditor.tail_audit(follow=True, timeout=120)
    assert isinstance(next(stream), AuditEvent)  # its own entry: seq 1
    clients = [VaultClient(vault.address, ALL_TOKENS["app"]) for _ in range(4)]

    def write(c: VaultClient, n: int) -> None:
        for i in range(40):
            c.put_record(f"writer-{n}-{i % 3}", "concern_text", TEXT)

    writers = [threading.Thread(target=write, args=(c, n)) for n, c in enumerate(clients)]
    for w in writers:
        w.start()
    seen: list[AuditEvent | TailGap] = []
    while len(seen) < 160:
        seen.append(next(stream))
    for w in writers:
        w.join()
    stream.close()
    for c in clients:
        c.close()
    assert all(isinstance(i, AuditEvent) for i in seen)
    assert [e.seq for e in _events(seen)] == list(range(2, 162))
    trail = _events(list(auditor.tail_audit(1, limit=160)))
    assert trail == _events(seen)


def test_a_page_ends_at_the_head_pages_through_the_store_and_keeps_its_limit(
    vault: Vault, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without follow the stream ends after the newest entry (the call's own included); the
    store is read a page at a time (3 entries here), across as many pages as it takes, from
    any cursor; ``limit`` caps the entries, within a page or across pages."""
    monkeypatch.setattr(audit_tail, "TAIL_PAGE", 3)
    _put(vault, 7)  # entries 1-7
    auditor = vault.client("auditor")
    head = 8  # and this call's own entry
    assert [e.seq for e in _events(list(auditor.tail_audit()))] == list(range(1, head + 1))
    for after, limit in ((0, 3), (2, 4), (5, 1), (0, 6), (6, 0), (0, 100), (3, 0)):
        head += 1  # each call's own entry
        got = [e.seq for e in _events(list(auditor.tail_audit(after, limit=limit)))]
        want = list(range(after + 1, head + 1))
        assert got == (want[:limit] if limit else want), (after, limit)


@pytest.mark.parametrize("vault", BACKENDS, indirect=True)
def test_a_prune_past_the_cursor_is_reported_as_a_gap_before_the_oldest_entry(
    vault: Vault, tmp_path: Path
) -> None:
    """Retention deletes entries 1-3: a cursor before them gets a TailGap naming them first,
    then the oldest retained entry; a cursor inside the retained trail gets none. The command
    prints the gap as a line of its own, warns, and moves its cursor past it."""
    _put(vault, 3)  # entries 1-3
    vault.clock.advance(731 * DAY)  # past the two years of retention
    _put(vault, 2)  # entries 4-5, within retention
    _prune(vault)  # entry 6 (the prune's own), then 1-3 deleted
    auditor = vault.client("auditor")
    for after, gap in ((0, TailGap(1, 3)), (1, TailGap(2, 3)), (2, TailGap(3, 3))):
        items = list(auditor.tail_audit(after, limit=2))
        assert items[0] == gap
        assert [e.seq for e in _events(items)] == [4, 5]
        assert items[0].skipped == 3 - after
    for after in (3, 4):
        items = list(auditor.tail_audit(after, limit=1))
        assert [type(i) for i in items] == [AuditEvent] and items[0].seq == after + 1
    cursor = tmp_path / "siem.cursor"
    write_cursor(cursor, 1)
    done = _cli(vault, "--cursor-file", str(cursor))
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert lines[0] == {"format": GAP_FORMAT, "from_seq": 2, "to_seq": 3, "skipped": 2}
    assert _seqs(lines)[:3] == [4, 5, 6]
    assert "audit entries 2-3 are not in the trail (pruned)" in done.stderr
    assert read_cursor(cursor) == _seqs(lines)[-1]
    cef = _cli(vault, "--after-seq", "0", "--limit", "1", "--format", "cef")
    header, pairs = parse_cef(cef.stdout.splitlines()[0])
    assert header[4:] == ["audit.gap", "audit.gap", "7"]
    assert (pairs["cn1"], pairs["cn2"], pairs["cnt"]) == ("1", "3", "3")


@pytest.mark.parametrize("vault", BACKENDS, indirect=True)
def test_a_killed_follow_resumes_from_its_cursor_with_no_entry_missing(
    vault: Vault, tmp_path: Path
) -> None:
    """``vaultctl audit tail --follow --cursor-file`` SIGKILLed while it prints the backlog,
    then started again with the same cursor file: together the two runs print every entry,
    each once except possibly the last line of the first run (printed, its cursor not yet
    written). The second run, stopped with SIGINT, exits 130 with its cursor written."""
    _put(vault, 150)
    cursor = tmp_path / "siem.cursor"
    first = Tail(vault, "--follow", "--cursor-file", str(cursor))
    lines = first.until(lambda line: line["seq"] >= 20)
    first.proc.kill()
    lines += first.rest()
    assert first.proc.returncode == -signal.SIGKILL
    printed = _seqs(lines)
    assert printed == list(range(1, len(printed) + 1))
    resumed_at = read_cursor(cursor)
    assert resumed_at is not None and printed[-1] - 1 <= resumed_at <= printed[-1]
    written = _put(vault, 5, "member-2")
    second = Tail(vault, "--follow", "--cursor-file", str(cursor))
    more = second.until(lambda line: line["record_id"] == written[-1])
    second.proc.send_signal(signal.SIGINT)
    more += second.rest()
    assert second.proc.returncode == 130, second.stderr()
    again = _seqs(more)
    assert again == list(range(resumed_at + 1, resumed_at + 1 + len(again)))
    assert set(printed) & set(again) <= {printed[-1]}  # a duplicate only at the boundary
    assert read_cursor(cursor) == again[-1]
    trail = [e.seq for e in _events(list(vault.client("auditor").tail_audit()))]
    assert sorted(set(printed) | set(again)) == trail[: again[-1]]  # every entry, none skipped
    assert all(line["format"] == EVENT_FORMAT for line in lines + more)
    assert json.loads(cursor.read_text()) == {"format": CURSOR_FORMAT, "seq": again[-1]}


def _finished(status: str) -> float:
    """TailAudit calls the server has finished with ``status`` (its metric)."""
    labels = {"method": "TailAudit", "status": status}
    return metrics.REGISTRY.get_sample_value("vault_rpc_requests_total", labels) or 0.0


def test_a_follow_ends_at_its_deadline_and_when_the_server_stops(vault: Vault) -> None:
    """A follow with a deadline ends there (DEADLINE_EXCEEDED: the SDK raises Unavailable, never
    a clean end that would look like a finished follow), and its handler stops at once; a
    follow without one ends with UNAVAILABLE when the server stops, well inside the stop's
    grace period."""
    _put(vault, 2)
    left = _finished("CANCELLED")
    started = time.monotonic()
    got: list[AuditEvent | TailGap] = []
    with pytest.raises(Unavailable, match=r"(?i)deadline"):
        for item in vault.client("auditor").tail_audit(follow=True, timeout=1.5):
            got.append(item)
    assert 1.4 < time.monotonic() - started < 10 and len(got) == 3
    while _finished("CANCELLED") == left:  # the server's handler ends with the call
        assert time.monotonic() - started < 5, "the followed tail outlived its deadline"
        time.sleep(0.05)
    with VaultClient(vault.address, ALL_TOKENS["auditor"]) as own:
        stream = own.tail_audit(follow=True)
        assert [e.seq for e in _events([next(stream) for _ in range(4)])] == [1, 2, 3, 4]
        stopping = threading.Thread(target=vault.stop, args=(30,))
        begun = time.monotonic()
        stopping.start()
        with pytest.raises(Unavailable, match="server is stopping"):
            next(stream)
        stopping.join(timeout=30)
        assert time.monotonic() - begun < 10


def test_followed_tails_are_limited_so_that_other_calls_keep_their_threads(vault: Vault) -> None:
    """Each follow holds a worker thread: past ``[audit] tail_max_follows`` (2) one more is
    RESOURCE_EXHAUSTED (audited when it started, like any tail; a caller without the right is
    still refused as such), while pages and other calls are served; a follow that ends frees
    its slot."""
    _put(vault, 1)
    clients = [VaultClient(vault.address, ALL_TOKENS["auditor"]) for _ in range(4)]
    try:
        follows = [c.tail_audit(follow=True) for c in clients[:2]]
        for stream in follows:
            next(stream)
        with pytest.raises(ResourceExhausted, match="followed audit tails run already"):
            next(clients[2].tail_audit(follow=True))
        with pytest.raises(PermissionDenied):
            next(vault.client("app").tail_audit(follow=True))
        assert _events(list(clients[3].tail_audit(limit=1)))  # a page needs no slot
        _put(vault, 1)  # other calls are served
        follows[0].close()
        started = time.monotonic()
        while True:  # the slot comes free once the server's handler has seen the cancel
            try:
                assert isinstance(next(clients[2].tail_audit(follow=True)), AuditEvent)
                break
            except ResourceExhausted:
                assert time.monotonic() - started < 5
                time.sleep(0.05)
    finally:
        for c in clients:
            c.close()
    reasons = [e.reason for e in _tails(vault)]
    assert reasons.count("audit tailed: after_seq 0, follow on") >= 4


# access and arguments -----------------------------------------------------------------------------


def test_a_role_without_audit_tail_is_refused_and_the_refusal_audited(vault: Vault) -> None:
    """The application and the clinic get PERMISSION_DENIED (from the SDK and the command);
    each refusal is an audited denial of ``audit.tail``."""
    _put(vault, 1)
    for who in ("app", "clinic"):
        with pytest.raises(PermissionDenied):
            list(vault.client(who).tail_audit())
    refused = _cli(vault, "--follow", who="app")
    assert refused.returncode == 1 and "PERMISSION_DENIED" in refused.stderr
    assert refused.stdout == ""
    denials = _tails(vault, "deny")
    assert sorted(e.principal for e in denials) == ["app", "app", "clinic"]


def test_bad_cursors_and_limits_are_refused_with_their_reason(vault: Vault, tmp_path: Path) -> None:
    """A negative cursor or a limit outside 0..1,000,000: INVALID_ARGUMENT saying which, not
    audited; a cursor past the newest entry: FAILED_PRECONDITION (a cursor of another trail,
    or of this one before a restore), audited. The command refuses a file that is no cursor,
    and a cursor file another tail holds."""
    auditor = vault.client("auditor")
    for kwargs, message in (
        ({"after_seq": -1}, "after_seq must not be negative"),
        ({"limit": -1}, "limit must be between 0 (no limit) and 1000000"),
        ({"limit": 1_000_001}, "limit must be between 0 (no limit) and 1000000"),
    ):
        with pytest.raises(InvalidArgument) as err:
            list(auditor.tail_audit(**kwargs))  # type: ignore[arg-type]
        assert str(err.value) == message
    with pytest.raises(FailedPrecondition, match="past the newest audit entry"):
        list(auditor.tail_audit(10**9))
    assert [e.reason for e in _tails(vault)] == [
        "audit tailed: after_seq 1000000000, follow off",
        "audit tailed: after_seq 0, follow off",  # _tails' own page
    ]
    negative = _cli(vault, "--after-seq", "-1")
    assert negative.returncode == 1 and "after_seq must not be negative" in negative.stderr
    cursor = tmp_path / "siem.cursor"
    cursor.write_text("not a cursor\n")
    broken = _cli(vault, "--cursor-file", str(cursor))
    assert broken.returncode == 2 and "not an audit tail cursor" in broken.stderr
    assert cursor.read_text() == "not a cursor\n"  # left as it was: never a reason to start over
    write_cursor(cursor, 1)
    holder = Tail(vault, "--follow", "--cursor-file", str(cursor))
    holder.until(lambda line: line["action"] == "audit.tail")
    busy = _cli(vault, "--cursor-file", str(cursor))
    holder.proc.send_signal(signal.SIGTERM)
    holder.rest()
    assert holder.proc.returncode == 143
    assert busy.returncode == 2 and "another vaultctl audit tail uses this cursor" in busy.stderr


def test_the_tail_is_audited_once_per_call_however_long_it_follows(vault: Vault) -> None:
    """A follow open for several poll intervals (0.5 s) and a new entry is one ``audit.tail``
    entry, written when it started; each page is one more."""
    auditor = vault.client("auditor")
    stream = auditor.tail_audit(follow=True, timeout=60)
    own = next(stream)
    assert isinstance(own, AuditEvent) and own.action == "audit.tail"
    time.sleep(1.6)
    _put(vault, 1)
    assert isinstance(next(stream), AuditEvent)
    time.sleep(1.1)
    stream.close()
    list(auditor.tail_audit(1))
    tails = _tails(vault)
    assert [(e.seq, e.reason) for e in tails] == [
        (1, "audit tailed: after_seq 0, follow on"),
        (3, "audit tailed: after_seq 1, follow off"),
        (4, "audit tailed: after_seq 0, follow off"),  # _tails' own page
    ]
    assert len({e.correlation_id for e in tails}) == 3


# the formats --------------------------------------------------------------------------------------


def test_cef_and_json_lines_escape_a_hostile_reason(vault: Vault) -> None:
    """An entry whose reason holds ``=``, ``|``, ``\\`` and line breaks, and whose action holds
    ``|`` and ``\\`` (the header's specials), read back from the CEF line by the format's rules
    alone gives every value as written, each in its own key; the JSON line too."""
    reason = "a=b | c\\d\nsuser=forged\r\nend\\"
    row = AuditRow(
        at=vault.clock.now() + 0.25,
        principal="job",
        action="job.odd|act\\ion",
        decision="deny",
        reason=reason,
        purpose="matching",
        subject_pseudonym="ps-1",
        record_id="rec-1",
        correlation_id="cid-1",
        category="concern_text",
        released_fields=("budget", "text"),
        role="application",
    )
    vault.service.store.append_audit(row)
    cef = _cli(vault, "--format", "cef", "--limit", "1")
    assert cef.returncode == 0, cef.stderr
    (line,) = cef.stdout.splitlines()
    header, pairs = parse_cef(line)
    assert header == ["0", "vault-service", "vault-service", __version__, row.action, row.action, "6"]
    assert pairs == {
        "rt": str(round(row.at * 1000)),
        "externalId": "1",
        "suser": "job",
        "spriv": "application",
        "act": row.action,
        "outcome": "deny",
        "reason": reason,
        "cs1Label": "purpose",
        "cs1": "matching",
        "cs2Label": "subjectPseudonym",
        "cs2": "ps-1",
        "cs3Label": "recordId",
        "cs3": "rec-1",
        "cs4Label": "correlationId",
        "cs4": "cid-1",
        "cs5Label": "category",
        "cs5": "concern_text",
        "cs6Label": "releasedFields",
        "cs6": "budget,text",
    }
    assert line == (
        f"CEF:0|vault-service|vault-service|{__version__}|job.odd\\|act\\\\ion|job.odd\\|act\\\\ion|6|"
        f"rt={round(row.at * 1000)} externalId=1 suser=job spriv=application act=job.odd|act\\\\ion"
        " outcome=deny reason=a\\=b | c\\\\d\\nsuser\\=forged\\r\\nend\\\\ cs1Label=purpose cs1=matching"
        " cs2Label=subjectPseudonym cs2=ps-1 cs3Label=recordId cs3=rec-1 cs4Label=correlationId"
        " cs4=cid-1 cs5Label=category cs5=concern_text cs6Label=releasedFields cs6=budget,text"
    )
    as_json = _cli(vault, "--limit", "1")
    (event,) = [json.loads(text) for text in as_json.stdout.splitlines()]
    assert event == {
        "format": EVENT_FORMAT,
        "seq": 1,
        "at": row.at,
        "principal": "job",
        "action": row.action,
        "purpose": "matching",
        "subject_pseudonym": "ps-1",
        "record_id": "rec-1",
        "decision": "deny",
        "reason": reason,
        "correlation_id": "cid-1",
        "category": "concern_text",
        "released_fields": ["budget", "text"],
        "role": "application",
        # what the entry's hash covers, and where it is in the chain (no proof: the line holds
        # no checkpoint note to check one against; `--prove` checks it before printing)
        "leaf_index": 0,
        "entry_hash": entry_hash(GENESIS, 1, row).hex(),
        "prev_hash": GENESIS.hex(),
        "witnessed_version": None,
        "category_recorded": True,
        "released_fields_recorded": True,
        "role_recorded": True,
    }
    # an allowed entry with nothing optional: severity 3, the empty keys left out
    plain = AuditEvent(2, 1.0, "app", "record.put", "", "", "", "allow", "stored", "", "", (), "")
    assert cef_event(plain) == (
        f"CEF:0|vault-service|vault-service|{__version__}|record.put|record.put|3|"
        "rt=1000 externalId=2 suser=app act=record.put outcome=allow reason=stored"
    )


def test_the_worked_examples_of_the_docs_are_what_the_command_prints() -> None:
    """docs/audit.md, "Export to a SIEM": each example line is what the formatter prints for
    the entry (or gap) it shows (the version in the header aside)."""
    text = (ROOT / "docs" / "audit.md").read_text()
    section = text.split("## Export to a SIEM", 1)[1].split("\n## ", 1)[0]
    lines = section.splitlines()
    cef = [line.replace("|0.1.0|", f"|{__version__}|") for line in lines if line.startswith("CEF:0|")]
    objects = [line for line in lines if line.startswith('{"')]
    assert len(cef) == 3 and len(objects) == 2
    data = json.loads(objects[0])
    event = AuditEvent.from_dict(data)
    assert (json_event(event), cef_event(event)) == (objects[0], cef[0])
    gap = json.loads(objects[1])
    gap = TailGap(gap["from_seq"], gap["to_seq"])
    assert (json_gap(gap), cef_gap(gap)) == (objects[1], cef[2])
    _, pairs = parse_cef(cef[1])  # the refusal, rebuilt from its CEF line
    refusal = AuditEvent(
        int(pairs["externalId"]),
        int(pairs["rt"]) / 1000,
        pairs["suser"],
        pairs["act"],
        pairs.get("cs1", ""),
        pairs.get("cs2", ""),
        pairs.get("cs3", ""),
        pairs["outcome"],
        pairs["reason"],
        pairs.get("cs4", ""),
        pairs.get("cs5", ""),
        tuple(pairs["cs6"].split(",")) if "cs6" in pairs else (),
        pairs.get("spriv", ""),
    )
    assert cef_event(refusal) == cef[1]
