"""The audit sequencer (issue 18): entries integrated into the Merkle tree per second, on SQLite.

``ENTRIES`` audit entries are appended (500 per transaction, as a busy server's calls would
have written them), then one sequencer run integrates them all: it reads them in pages, checks
that they chain (recomputing every entry hash), and writes their leaves and the completed inner
nodes (``tlog_nodes``); then the tree's checkpoint is signed. The baseline is the append of the
same entries in the same run: the ratio says how much faster the sequencer keeps up than the
trail grows at that (bulk) rate. Goal: at least 10,000 entries/s.

Then the server's steady state: a checkpoint every second or so, each integrating about a
second of calls (``STEP`` entries). Its time on the log of ``ENTRIES`` against the same on a log
of ``STEP``: a ratio near 1 says that a checkpoint does not get dearer as the log grows (its
proofs read O(log n) nodes; a query that scanned the log's nodes once made it 300x dearer at
200,000 nodes).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

from benchmarks.harness import REPEATS, Result
from vault_service.audit.checkpoints import FilesystemCheckpointStore
from vault_service.audit.model import AuditRow
from vault_service.crypto.signing import SigningKey
from vault_service.lifecycle import audit_log
from vault_service.storage import SqliteRecordStore

ENTRIES = 100_000
BATCH = 500
STEP = 1_000  # about a second of a busy server's calls
STEPS = 5


def _row(i: int) -> AuditRow:
    return AuditRow(
        at=1_800_000_000.0 + i,
        principal="app",
        action="record.get",
        decision="allow",
        reason="released",
        purpose="matching",
        subject_pseudonym=f"{i % 5000:064x}",
        record_id=f"rec-{i:08d}",
        correlation_id=f"{i:032x}",
        category="concern_text",
        released_fields=("budget", "text"),
        role="application",
    )


def _append(store: SqliteRecordStore, start: int, count: int) -> None:
    for first in range(start, start + count, BATCH):
        store.append_audits([_row(i) for i in range(first, min(first + BATCH, start + count))])


def _steps(
    store: SqliteRecordStore, checkpoints: FilesystemCheckpointStore, key: SigningKey, start: int
) -> float:
    """The median time of a checkpoint of STEP new entries (rows ``start`` on), STEPS times."""
    times: list[float] = []
    for k in range(STEPS):
        _append(store, start + k * STEP, STEP)
        started = time.perf_counter()
        cp = audit_log.write_checkpoint(store, checkpoints, key, 1_900_000_000.0 + len(times))
        times.append(time.perf_counter() - started)
        assert cp is not None
    return statistics.median(times)


def _one(home: Path) -> tuple[float, float, float, float]:
    """Entries/s integrated and appended in bulk; a steady checkpoint's time on the long log
    and on a short one."""
    home.mkdir(parents=True)
    store = SqliteRecordStore(home / "vault.db")
    store.migrate()
    started = time.perf_counter()
    _append(store, 0, ENTRIES)
    appended = ENTRIES / (time.perf_counter() - started)
    checkpoints = FilesystemCheckpointStore(home / "checkpoints.jsonl")
    key = SigningKey.generate()
    started = time.perf_counter()
    cp = audit_log.write_checkpoint(store, checkpoints, key, 1_900_000_000.0)
    integrated = ENTRIES / (time.perf_counter() - started)
    assert cp is not None and cp.seq == ENTRIES
    long_log = _steps(store, checkpoints, key, ENTRIES)
    store.close()
    short = SqliteRecordStore(home / "short.db")
    short.migrate()
    short_checkpoints = FilesystemCheckpointStore(home / "short-checkpoints.jsonl")
    _append(short, 0, STEP)
    audit_log.write_checkpoint(short, short_checkpoints, key, 1_900_000_000.0)
    short_log = _steps(short, short_checkpoints, key, STEP)
    short.close()
    return integrated, appended, long_log, short_log


def run() -> list[Result]:
    runs = []
    for n in range(REPEATS):
        with tempfile.TemporaryDirectory() as tmp:
            runs.append(_one(Path(tmp) / str(n)))
    integrated = statistics.median(r[0] for r in runs)
    appended = statistics.median(r[1] for r in runs)
    long_log = statistics.median(r[2] for r in runs)
    short_log = statistics.median(r[3] for r in runs)
    return [
        Result(
            f"sequencer: {ENTRIES:,} entries integrated and signed (SQLite)",
            integrated,
            "entries/s",
            f"appending them, {BATCH} per transaction",
            appended,
            "goal >= 10,000 entries/s",
        ),
        Result(
            f"checkpoint of {STEP:,} new entries on a log of {ENTRIES:,} (SQLite)",
            1000 * long_log,
            "ms",
            f"the same on a log of {STEP:,}",
            1000 * short_log,
            "ratio near 1: a checkpoint's cost does not grow with the log",
        ),
    ]
