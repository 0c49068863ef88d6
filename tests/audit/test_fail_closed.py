"""When the audit entry cannot be written, the operation fails (UNAVAILABLE or the caller's
deadline, never OK) and nothing is changed or released. Over a real gRPC server; the audit sink is
the store's chained append, replaced by one that fails like SQLite does when the disk is full, or
one that blocks."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import TOKENS
from tests.regressions.conftest import read_once_policy_text
from vault_service.app import build_service
from vault_service.audit.model import AuditRow
from vault_service.client import RecordToGet, RecordToPut, VaultClient
from vault_service.config import load_config
from vault_service.errors import Unavailable, VaultError
from vault_service.rpc.server import RunningServer, start_server
from vault_service.storage import SqliteRecordStore


class DiskFullAudit(SqliteRecordStore):
    """Fails the audit append exactly as SQLite reports a full disk, when ``failing`` is set."""

    failing = False

    def _insert_pending_audits(self, conn: sqlite3.Connection, rows: Sequence[AuditRow]) -> None:
        if self.failing and rows:
            raise sqlite3.OperationalError("database or disk is full")
        super()._insert_pending_audits(conn, rows)


class BlockingAudit(SqliteRecordStore):
    """Blocks the audit append (inside the open transaction) until released or 3 s pass."""

    blocking = False
    release = threading.Event()

    def _insert_pending_audits(self, conn: sqlite3.Connection, rows: Sequence[AuditRow]) -> None:
        if self.blocking and rows and not self.release.wait(3.0):
            raise sqlite3.OperationalError("audit sink timed out")
        super()._insert_pending_audits(conn, rows)


def _server(home: Path, store_cls: type[SqliteRecordStore]) -> RunningServer:
    config = load_config(home / "vault.toml", {})
    store = store_cls(config.path(config.storage.sqlite_path))
    store.migrate()
    return start_server(config, {}, assembly=build_service(config, {}, store=store))


def _count(home: Path, table: str) -> int:
    with sqlite3.connect(home / "data" / "vault.db") as conn:
        return int(conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])


@pytest.fixture
def disk_full(vault_home: Path) -> Iterator[tuple[RunningServer, Any]]:
    server = _server(vault_home, DiskFullAudit)
    yield server, server.service.store
    server.stop(0)


def test_disk_full_audit_fails_every_kind_of_call_closed(
    disk_full: tuple[RunningServer, Any], vault_home: Path
) -> None:
    server, store = disk_full
    with (
        VaultClient(f"127.0.0.1:{server.port}", TOKENS["app"]) as app,
        VaultClient(f"127.0.0.1:{server.port}", TOKENS["clinic"]) as clinic,
    ):
        rid = app.put_record("m-1", "concern_text", {"text": "secret-before"}).record_id
        counts = {t: _count(vault_home, t) for t in ("records", "record_keys", "audit_log")}
        store.failing = True
        calls: list[Any] = [
            lambda: app.put_record("m-1", "concern_text", {"text": "secret-during"}),
            lambda: app.get_record(rid, "matching"),  # a read must not release plaintext
            lambda: app.update_record(rid, {"text": "secret-corrected"}),
            lambda: app.delete_record(rid),
            lambda: app.erase_subject("m-1"),
            lambda: clinic.get_record(rid, "matching"),  # a denial must be audited too
            # a batch: nothing of it stored or released (the whole call fails)
            lambda: app.put_records([RecordToPut("m-1", "concern_text", {"text": "secret-b"})] * 3),
            lambda: app.get_records([RecordToGet(rid, "matching")] * 3),
        ]
        for call in calls:
            with pytest.raises(Unavailable) as err:
                call()
            assert "secret" not in str(err.value)
        assert {t: _count(vault_home, t) for t in counts} == counts
        store.failing = False
        got = app.get_record(rid, "matching")
        assert got.fields["text"] == "secret-before" and got.info.version == 1


def test_blocking_audit_never_answers_ok(vault_home: Path) -> None:
    server = _server(vault_home, BlockingAudit)
    store: Any = server.service.store
    try:
        with VaultClient(f"127.0.0.1:{server.port}", TOKENS["app"]) as app:
            rid = app.put_record("m-1", "concern_text", {"text": "x"}).record_id
            records = _count(vault_home, "records")
            store.blocking = True
            store.release.clear()
            with pytest.raises(VaultError) as err:  # the client's deadline ends the call
                app.put_record("m-1", "concern_text", {"text": "y"}, timeout=0.5)
            assert isinstance(err.value, Unavailable)
            with pytest.raises(VaultError):  # the server's sink timeout ends it otherwise
                app.get_record(rid, "matching", timeout=10)
            store.blocking = False
            store.release.set()
            assert _count(vault_home, "records") == records
    finally:
        server.stop(1)


def test_a_batch_whose_audit_fails_destroys_no_read_once_record(vault_home: Path) -> None:
    """A read-once record in a batch is destroyed only after the batch's releases are on the
    record: when the audit cannot be written, the batch fails (UNAVAILABLE) or, for a batch of
    read-once records alone, each item does; either way the record is still there after."""
    (vault_home / "policy.toml").write_text(read_once_policy_text())
    server = _server(vault_home, DiskFullAudit)
    store: Any = server.service.store
    try:
        with VaultClient(f"127.0.0.1:{server.port}", TOKENS["app"]) as app:
            rid = app.put_record("m-1", "concern_text", {"text": "secret"}).record_id
            photo = app.put_record("m-1", "face_photo", {}, content=b"face").record_id
            store.failing = True
            whole = RecordToGet(photo, "simulation", include_content=True)
            with pytest.raises(Unavailable):
                app.get_records([RecordToGet(rid, "matching"), whole])
            (alone,) = app.get_records([whole])
            assert isinstance(alone, Unavailable)
            store.failing = False
            assert app.get_record(photo, "simulation", include_content=True).content == b"face"
    finally:
        server.stop(0)
