"""Each tampering case against the real store and checkpoint file; pruning keeps the log verifiable."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from vault_service.audit.chain import GENESIS, entry_hash
from vault_service.audit.checkpoints import FilesystemCheckpointStore
from vault_service.audit.model import AuditRow
from vault_service.audit.verify import VerifyReport
from vault_service.crypto.signing import SigningKey
from vault_service.lifecycle import audit_log
from vault_service.storage import SqliteRecordStore

#: the chained columns of an entry, in their table order (the rollback witness column is not
#: written by these entries)
COLUMNS = (
    "seq, at, principal, action, purpose, subject_pseudonym, record_id, decision, reason,"
    " correlation_id, prev_hash, entry_hash"
)


class Log:
    """A store with N chained entries, a checkpoint file and a signing key."""

    def __init__(self, home: Path, n: int = 20) -> None:
        self.db = home / "vault.db"
        self.store = SqliteRecordStore(self.db)
        self.store.migrate()
        self.checkpoints = FilesystemCheckpointStore(home / "audit" / "checkpoints.jsonl")
        self.signer = SigningKey.generate()
        self.add(n)

    def add(self, n: int, at: float = 1000.0) -> None:
        for i in range(n):
            self.store.append_audit(
                AuditRow(
                    at=at + i,
                    principal="app",
                    action="record.get",
                    decision="allow",
                    reason=f"entry {i}",
                    subject_pseudonym="ab" * 16,
                    record_id=f"r{i}",
                )
            )

    def checkpoint(self, now: float = 5000.0) -> None:
        audit_log.write_checkpoint(self.store, self.checkpoints, self.signer, now)

    def verify(self) -> VerifyReport:
        return audit_log.verify(self.store, self.checkpoints, self.signer.public_key())

    def sql(self, statement: str, args: tuple[object, ...] = ()) -> None:
        self.store.close()
        with sqlite3.connect(self.db) as conn:
            conn.execute(statement, args)

    def rows(self) -> list[tuple[object, ...]]:
        with sqlite3.connect(self.db) as conn:
            return conn.execute(f"SELECT {COLUMNS} FROM audit_log ORDER BY seq").fetchall()


@pytest.fixture
def log(tmp_path: Path) -> Iterator[Log]:
    lg = Log(tmp_path)
    lg.checkpoint()
    yield lg
    lg.store.close()


def test_intact_log_verifies(log: Log) -> None:
    log.add(3, at=2000.0)  # entries after the checkpoint: chained, not yet signed
    report = log.verify()
    assert report.ok, report.reason
    assert (report.entries_checked, report.unsigned_tail) == (23, 3)


def test_missing_checkpoint_is_a_failure(tmp_path: Path) -> None:
    lg = Log(tmp_path)
    report = lg.verify()
    assert not report.ok and "no signed checkpoint" in report.reason


def test_edited_entry(log: Log) -> None:
    log.sql("UPDATE audit_log SET reason = 'nothing to see' WHERE seq = 7")
    report = log.verify()
    assert (report.ok, report.first_bad_seq) == (False, 7) and "altered" in report.reason


def test_deleted_entry(log: Log) -> None:
    log.sql("DELETE FROM audit_log WHERE seq = 11")
    report = log.verify()
    assert (report.ok, report.first_bad_seq) == (False, 11) and "missing" in report.reason


def test_inserted_entry(log: Log) -> None:
    log.sql("UPDATE audit_log SET seq = -seq WHERE seq >= 5")
    log.sql("UPDATE audit_log SET seq = -seq + 1 WHERE seq < 0")
    prev = bytes.fromhex(log.store.audit_entry(4).entry_hash.hex())  # type: ignore[union-attr]
    forged = AuditRow(at=1004.5, principal="app", action="record.get", decision="allow")
    log.sql(
        f"INSERT INTO audit_log ({COLUMNS}) VALUES (5, ?, ?, ?, '', '', '', ?, '', '', ?, ?)",
        (forged.at, forged.principal, forged.action, forged.decision, prev, entry_hash(prev, 5, forged)),
    )
    report = log.verify()
    assert not report.ok and report.first_bad_seq == 6
    assert "does not follow" in report.reason


def test_reordered_entries(log: Log) -> None:
    rows = {r[0]: r for r in log.rows()}
    a, b = rows[8], rows[9]
    cols = (
        "at=?, principal=?, action=?, purpose=?, subject_pseudonym=?, record_id=?, "
        "decision=?, reason=?, correlation_id=?, prev_hash=?, entry_hash=?"
    )
    log.sql(f"UPDATE audit_log SET {cols} WHERE seq = 8", b[1:])
    log.sql(f"UPDATE audit_log SET {cols} WHERE seq = 9", a[1:])
    report = log.verify()
    assert (report.ok, report.first_bad_seq) == (False, 8)


def test_duplicated_entry(log: Log) -> None:
    row = next(r for r in log.rows() if r[0] == 12)
    log.sql(f"INSERT INTO audit_log ({COLUMNS}) VALUES (21, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", row[1:])
    report = log.verify()
    assert (report.ok, report.first_bad_seq) == (False, 21)


def test_truncated_tail_is_detected_against_the_latest_checkpoint(log: Log) -> None:
    log.sql("DELETE FROM audit_log WHERE seq > 17")
    report = log.verify()
    assert not report.ok and "truncated" in report.reason and report.first_bad_seq == 18


def test_rewritten_chain_is_caught_by_the_signed_checkpoint(log: Log) -> None:
    """An attacker who can write the database recomputes every hash after an edit."""
    rows = log.rows()
    prev = GENESIS
    log.store.close()
    with sqlite3.connect(log.db) as conn:
        for r in rows:
            row = AuditRow(r[1], r[2], r[3], r[7], r[8], r[4], r[5], r[6], r[9])  # type: ignore[arg-type]
            if r[0] == 3:
                row = AuditRow(row.at, row.principal, row.action, row.decision, "rewritten")
            h = entry_hash(prev, int(r[0]), row)  # type: ignore[arg-type]
            conn.execute(
                "UPDATE audit_log SET reason=?, purpose=?, subject_pseudonym=?,"
                " record_id=?, correlation_id=?, prev_hash=?, entry_hash=? WHERE seq=?",
                (
                    row.reason,
                    row.purpose,
                    row.subject_pseudonym,
                    row.record_id,
                    row.correlation_id,
                    prev,
                    h,
                    r[0],
                ),
            )
            prev = h
    report = log.verify()
    assert not report.ok and "signed checkpoint" in report.reason and report.first_bad_seq == 20


def test_forged_or_foreign_checkpoints_fail(log: Log, tmp_path: Path) -> None:
    path = tmp_path / "audit" / "checkpoints.jsonl"
    original = path.read_text()
    data = json.loads(original)
    data["seq"] = 10
    path.write_text(json.dumps(data) + "\n")
    assert "invalid signature" in log.verify().reason
    path.write_text(original)
    other = audit_log.verify(log.store, log.checkpoints, SigningKey.generate().public_key())
    assert not other.ok and "invalid signature" in other.reason
    path.write_text("{not json\n")
    assert log.verify().reason == "the checkpoint file is corrupt"


def test_prune_keeps_the_rest_verifiable(log: Log) -> None:
    log.add(10, at=100_000.0)  # recent entries
    deleted = audit_log.prune(
        log.store, log.checkpoints, log.signer, retention_seconds=50_000, now=120_000.0
    )
    assert deleted == 20
    kinds = [c.kind for c in log.checkpoints.all()]
    assert kinds[-1] == "anchor"
    report = log.verify()
    assert report.ok, report.reason
    assert report.entries_checked == 11  # 10 recent + the prune's own audit entry
    assert audit_log.prune(log.store, log.checkpoints, log.signer, 50_000, 120_001.0) == 0
    log.add(2, at=130_000.0)
    log.checkpoint(130_010.0)
    assert log.verify().ok
    log.sql("DELETE FROM audit_log WHERE seq = (SELECT MIN(seq) FROM audit_log)")
    assert not log.verify().ok  # the anchor pins where the log starts


def test_checkpoint_is_skipped_when_the_head_is_already_signed(log: Log) -> None:
    before = len(log.checkpoints.all())
    log.checkpoint()
    assert len(log.checkpoints.all()) == before
    log.add(1)
    log.checkpoint()
    assert len(log.checkpoints.all()) == before + 1
