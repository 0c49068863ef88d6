"""A checkpoint's cost must not grow with the log (the sequencer runs about every second for the
life of a deployment): every statement it runs on SQLite that reads the Merkle tree's nodes
looks them up by key, never by scanning the log's nodes. A query once planned as such a scan
made each checkpoint 300x dearer at 200,000 nodes (``make bench
BENCH=benchmarks.bench_sequencer`` measures the steady checkpoint on a long log)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from vault_service.audit.checkpoints import FilesystemCheckpointStore
from vault_service.audit.model import AuditRow
from vault_service.crypto.signing import SigningKey
from vault_service.lifecycle import audit_log
from vault_service.storage import SqliteRecordStore


def _entries(store: SqliteRecordStore, start: int, count: int) -> None:
    store.append_audits(
        [
            AuditRow(at=float(i), principal="app", action="record.get", decision="allow")
            for i in range(start, start + count)
        ]
    )


def _plans(conn: sqlite3.Connection, statements: list[str]) -> dict[str, list[str]]:
    return {
        q: [row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + q)]
        for q in dict.fromkeys(statements)
        if q.lstrip().upper().startswith(("SELECT", "WITH")) and "tlog_nodes" in q
    }


def test_a_checkpoint_reads_the_tree_nodes_by_key(tmp_path: Path) -> None:
    store = SqliteRecordStore(tmp_path / "vault.db")
    store.migrate()
    checkpoints = FilesystemCheckpointStore(tmp_path / "checkpoints.jsonl")
    key = SigningKey.generate()
    _entries(store, 0, 3000)
    assert audit_log.write_checkpoint(store, checkpoints, key, 1.0) is not None
    _entries(store, 3000, 700)  # not a power of two: the proofs need inner nodes
    conn = store._conn()  # this thread's connection: the one the checkpoint below uses
    statements: list[str] = []
    conn.set_trace_callback(statements.append)
    try:
        assert audit_log.write_checkpoint(store, checkpoints, key, 2.0) is not None
    finally:
        conn.set_trace_callback(None)
    plans = _plans(conn, statements)
    assert any("idx=?" in step for plan in plans.values() for step in plan)  # nodes were read
    for statement, plan in plans.items():
        for step in plan:
            assert not step.startswith("SCAN tlog_nodes"), (statement, plan)
            assert not step.endswith("(log=?)"), (statement, plan)  # every node of the log
    store.close()
