"""Outages under a steady load of writers that retry with idempotency keys, as the client guide
says to: the key provider sealed, the database locked by another process, the audit sink failing,
each twice. Every answer during an outage is UNAVAILABLE (fail closed, nothing written); the
server recovers by itself; in the end every write exists exactly once and reads back."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import TOKENS, write_config
from tests.support.openbao import OpenBaoServer
from vault_service.client import VaultClient
from vault_service.config import load_config
from vault_service.errors import Unavailable
from vault_service.rpc.server import RunningServer, start_server

WRITERS, WRITES = 4, 25


def _load(port: int) -> dict[str, Any]:
    """Writers that retry every UNAVAILABLE with the same idempotency key until it succeeds;
    returns what they saw."""
    seen: dict[str, Any] = {"ok": 0, "unavailable": 0, "other": [], "ids": {}}
    lock = threading.Lock()

    def writer(w: int) -> None:
        with VaultClient(f"127.0.0.1:{port}", TOKENS["app"], timeout=10) as c:
            for i in range(WRITES):
                key = f"w{w}-{i}"
                while True:
                    try:
                        rid = c.put_record(
                            f"member-{w}", "concern_text", {"text": key}, idempotency_key=key
                        )
                    except Unavailable:
                        with lock:
                            seen["unavailable"] += 1
                        time.sleep(0.05)
                        continue
                    except Exception as exc:
                        with lock:
                            seen["other"].append(type(exc).__name__)
                        return
                    with lock:
                        seen["ok"] += 1
                        seen["ids"][key] = rid.record_id
                    break
                time.sleep(0.02)  # spread the writes over the outages

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(WRITERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return seen


def _run(server: RunningServer, down: Callable[[], None], up: Callable[[], None]) -> None:
    result: dict[str, Any] = {}
    load = threading.Thread(target=lambda: result.update(_load(server.port)))
    load.start()
    for _ in range(2):  # two outages of 0.8 s with 0.5 s between them
        time.sleep(0.5)
        down()
        time.sleep(0.8)
        up()
    load.join(120)
    assert result["other"] == []  # only UNAVAILABLE during the outages, never another error
    assert result["unavailable"] > 0  # the outages were felt
    assert result["ok"] == WRITERS * WRITES
    with VaultClient(f"127.0.0.1:{server.port}", TOKENS["app"]) as c:
        for w in range(WRITERS):
            listed = c.list_records(f"member-{w}").records
            assert len(listed) == WRITES  # each write exactly once: nothing lost, nothing twice
            texts = sorted(c.get_record(r.record_id, "matching").fields["text"] for r in listed)
            assert texts == sorted(f"w{w}-{i}" for i in range(WRITES))
            acked = {result["ids"][f"w{w}-{i}"] for i in range(WRITES)}
            assert acked == {r.record_id for r in listed}  # the ids the writers were given


@pytest.fixture
def openbao() -> Iterator[OpenBaoServer]:
    server = OpenBaoServer().start()
    yield server
    server.stop()


def test_key_provider_sealed_twice(tmp_path: Path, openbao: OpenBaoServer) -> None:
    server = openbao.serve_vault(
        tmp_path,
        keys__provider_max_attempts="1",
        keys__cache_max_entries="0",  # every write needs the provider
        logging__level='"WARNING"',
    )
    try:
        _run(server, openbao.seal, openbao.unseal)
    finally:
        server.stop(0)


def test_database_locked_by_another_process_twice(tmp_path: Path) -> None:
    # a lock held longer than the busy timeout is an outage; shorter ones are waited out
    write_config(tmp_path, storage__sqlite_busy_timeout_seconds="0.2", logging__level='"WARNING"')
    server = start_server(load_config(tmp_path / "vault.toml", {}), {})
    holder: dict[str, sqlite3.Connection] = {}

    def lock() -> None:  # another process's exclusive transaction (a backup tool, a migration)
        conn = sqlite3.connect(tmp_path / "data" / "vault.db", isolation_level=None, timeout=10)
        conn.execute("BEGIN EXCLUSIVE")
        holder["c"] = conn

    def unlock() -> None:
        holder.pop("c").execute("ROLLBACK")

    try:
        _run(server, lock, unlock)
    finally:
        server.stop(0)


def test_audit_sink_failing_twice(tmp_path: Path) -> None:
    write_config(tmp_path, logging__level='"WARNING"')
    server = start_server(load_config(tmp_path / "vault.toml", {}), {})
    store: Any = server.service.store
    original = store._insert_pending_audits

    def disk_full(conn: Any, rows: Any) -> None:
        raise sqlite3.OperationalError("database or disk is full")

    def fail() -> None:
        store._insert_pending_audits = disk_full

    def heal() -> None:
        store._insert_pending_audits = original

    try:
        _run(server, fail, heal)
    finally:
        server.stop(0)
