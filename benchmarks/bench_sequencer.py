"""The audit sequencer (issue 18): entries integrated into the Merkle tree per second, on SQLite.

``ENTRIES`` audit entries are appended (500 per transaction, as a busy server's calls would
have written them), then one sequencer run integrates them all: it reads them in pages, checks
that they chain (recomputing every entry hash), and writes their leaves and the completed inner
nodes (``tlog_nodes``); then the tree's checkpoint is signed. The baseline is the append of the
same entries in the same run: the ratio says how much faster the sequencer keeps up than the
trail grows at that (bulk) rate. Goal: at least 10,000 entries/s.
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


def _one(home: Path) -> tuple[float, float]:
    store = SqliteRecordStore(home / "vault.db")
    store.migrate()
    started = time.perf_counter()
    for start in range(0, ENTRIES, BATCH):
        store.append_audits([_row(i) for i in range(start, start + BATCH)])
    appended = ENTRIES / (time.perf_counter() - started)
    checkpoints = FilesystemCheckpointStore(home / "checkpoints.jsonl")
    started = time.perf_counter()
    cp = audit_log.write_checkpoint(store, checkpoints, SigningKey.generate(), 1_900_000_000.0)
    integrated = ENTRIES / (time.perf_counter() - started)
    assert cp is not None and cp.seq == ENTRIES
    store.close()
    return integrated, appended


def run() -> list[Result]:
    runs = []
    for n in range(REPEATS):
        with tempfile.TemporaryDirectory() as tmp:
            runs.append(_one(Path(tmp) / str(n)))
    integrated = statistics.median(r[0] for r in runs)
    appended = statistics.median(r[1] for r in runs)
    return [
        Result(
            f"sequencer: {ENTRIES:,} entries integrated and signed (SQLite)",
            integrated,
            "entries/s",
            f"appending them, {BATCH} per transaction",
            appended,
            "goal >= 10,000 entries/s",
        )
    ]
