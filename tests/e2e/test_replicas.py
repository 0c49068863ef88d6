"""Several processes on one PostgreSQL database: `vaultctl serve --workers N` on one port, sweepers
in several processes at once, replicas migrating together, and the database going away and coming
back. (Erasure and revocation across two replicas: test_two_processes.py, on both backends.)"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, TOKENS, write_config
from tests.support.serve import start_serving, stop_serving
from vault_service.client import VaultClient
from vault_service.errors import NotFound, Unavailable
from vault_service.ids import new_record_id
from vault_service.storage.postgres import PostgresRecordStore

CLI = [sys.executable, "-m", "vault_service.cli.main", "--config"]


def _pg_config(home: Path, dsn: str, **extra: str) -> Path:
    return write_config(home, storage__backend='"postgres"', storage__postgres_dsn=f'"{dsn}"', **extra)


def _children(pid: int) -> set[int]:
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return {int(p) for p in text.split()}


def _wait_for(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def test_workers_share_one_port_restart_and_stop_cleanly(tmp_path: Path, pg_dsn: str) -> None:
    config = _pg_config(tmp_path, pg_dsn)
    proc = subprocess.Popen(
        [*CLI, str(config), "serve", "--workers", "2"], stdout=subprocess.PIPE, text=True, cwd=ROOT
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        m = re.search(r"listening on (127\.0\.0\.1:\d+) \(2 worker processes\)", line)
        assert m, line
        addr = m.group(1)
        workers = _children(proc.pid)
        assert len(workers) == 2
        stored = []
        for i in range(40):  # a fresh connection each time: the kernel spreads them
            with VaultClient(addr, TOKENS["app"]) as c:
                stored.append(c.put_record(f"m-{i % 5}", "concern_text", {"text": f"t{i}"}).record_id)
                with pytest.raises(NotFound):
                    c.get_record(new_record_id(), "matching")
        log = (tmp_path / "logs" / "vault.log").read_text()
        served_by = {
            line["pid"]
            for line in map(json.loads, log.splitlines())
            if line.get("status") == "NOT_FOUND" and line["logger"] == "vault_service.rpc"
        }
        assert served_by == workers  # both workers took calls

        # a worker that dies is replaced; its calls go to the others meanwhile
        victim = min(workers)
        os.kill(victim, signal.SIGKILL)
        _wait_for(lambda: len(_children(proc.pid) - {victim}) == 2, 30, "a replacement worker")
        with VaultClient(addr, TOKENS["app"]) as c:
            for rid in stored:
                assert c.get_record(rid, "matching").fields["text"].startswith("t")
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(60)
    assert code == 0
    assert not any(Path(f"/proc/{w}").exists() for w in workers - {victim})


def _due_records(home: Path, dsn: str, count: int) -> tuple[list[str], str]:
    """``count`` records that are due for deletion (created three days ago under a 24 h rule)
    and one that is not; returns (due ids, kept id)."""
    from tests.lifecycle.test_retention import APP, _policy_text
    from vault_service.app import build_service
    from vault_service.clock import FixedClock
    from vault_service.config import load_config

    config = _pg_config(home, dsn)
    (home / "policy.toml").write_text(_policy_text())
    assembly = build_service(load_config(config, {}), {}, FixedClock(time.time() - 3 * 86400))
    try:
        svc = assembly.service
        due = [
            svc.put_record(APP, f"p-{i % 7}", "scan", {"modality": "CT"}, content=b"scan")[0]
            for i in range(count)
        ]
        kept = svc.put_record(APP, "p-keep", "concern_text", {"text": "stays"})[0]
    finally:
        assembly.store.close()
    return due, kept


def test_sweepers_in_three_processes_shred_each_due_record_once(tmp_path: Path, pg_dsn: str) -> None:
    due, kept = _due_records(tmp_path, pg_dsn, 90)
    cmd = [*CLI, str(tmp_path / "vault.toml"), "retention", "sweep", "--batch-size", "7"]
    procs = [
        subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
        for _ in range(3)
    ]
    for p in procs:
        _, err = p.communicate(timeout=180)
        assert p.returncode == 0, err
    store = PostgresRecordStore(pg_dsn)
    try:
        jobs = [r.record_id for r in store.audit_rows(100_000) if r.action == "job.retention"]
        assert sorted(jobs) == sorted(due)  # every due record, each exactly once
        assert store.get_meta(kept) is not None
        assert all(store.get_meta(rid) is None for rid in due)
    finally:
        store.close()


def test_replicas_starting_together_migrate_once(pg_dsn: str) -> None:
    versions: list[int] = []
    stores = [PostgresRecordStore(pg_dsn) for _ in range(4)]
    barrier = threading.Barrier(4)

    def migrate(s: PostgresRecordStore) -> None:
        barrier.wait()
        versions.append(s.migrate())

    threads = [threading.Thread(target=migrate, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for s in stores:
        s.close()
    assert len(versions) == 4 and len(set(versions)) == 1
    import psycopg

    with psycopg.connect(pg_dsn) as conn:
        rows = conn.execute("SELECT version FROM schema_migrations ORDER BY version").fetchall()
    assert [r[0] for r in rows] == list(range(1, versions[0] + 1))


def test_database_outage_fails_closed_and_recovers(tmp_path: Path) -> None:
    from tests.support.postgres import PostgresCluster

    cluster = PostgresCluster().start()
    try:
        config = _pg_config(tmp_path, cluster.new_database(), storage__postgres_timeout_seconds="2.0")
        server, addr = start_serving(config)
        try:
            with VaultClient(addr, TOKENS["app"], timeout=20) as c:
                rid = c.put_record("m-1", "concern_text", {"text": "before"}).record_id
                cluster.stop_server()
                t0 = time.monotonic()
                with pytest.raises(Unavailable):
                    c.put_record("m-1", "concern_text", {"text": "during"})
                with pytest.raises(Unavailable):
                    c.get_record(rid, "matching")
                assert time.monotonic() - t0 < 15  # fails fast, does not hang
                cluster.restart_server()

                def recovered() -> bool:
                    try:
                        return c.get_record(rid, "matching").fields["text"] == "before"
                    except Unavailable:
                        return False

                _wait_for(recovered, 30, "the server to use the database again")
                after = c.put_record("m-1", "concern_text", {"text": "after"}).record_id
                listed = {r.record_id for r in c.list_records("m-1").records}
                assert listed == {rid, after}  # nothing lost, nothing half-written
        finally:
            assert stop_serving(server) == 0
        log = (tmp_path / "logs" / "vault.log").read_text()
        assert "during" not in log and "before" not in log
    finally:
        cluster.stop()


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_serve_by_default_picks_its_processes(tmp_path: Path, backend: str, request: Any) -> None:
    """With ``server.processes`` and ``server.workers`` left to the server (0, the defaults), a
    plain ``vaultctl serve`` runs one process per usable CPU, under a lower cap on SQLite
    (vault_service/rpc/sizing.py), and every process serves."""
    from vault_service.rpc.sizing import MAX_PROCESSES, MAX_SQLITE_PROCESSES

    auto = {"server__processes": "0", "server__workers": "0"}
    if backend == "sqlite":
        expected = min(len(os.sched_getaffinity(0)), MAX_SQLITE_PROCESSES)
        config = write_config(tmp_path, **auto)
    else:
        dsn = request.getfixturevalue("pg_dsn")
        expected = min(len(os.sched_getaffinity(0)), MAX_PROCESSES)
        config = _pg_config(tmp_path, dsn, **auto)
    proc = subprocess.Popen([*CLI, str(config), "serve"], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        suffix = f" \\({expected} worker processes\\)" if expected > 1 else ""
        m = re.search(rf"listening on (127\.0\.0\.1:\d+){suffix}$", line.strip())
        assert m, line
        assert len(_children(proc.pid)) == (expected if expected > 1 else 0)
        for i in range(2 * expected):  # a fresh connection each time: the kernel spreads them
            with VaultClient(m.group(1), TOKENS["app"]) as c:
                rid = c.put_record(f"m-{i}", "concern_text", {"text": "kept"}).record_id
                assert c.get_record(rid, "matching").fields["text"] == "kept"
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(60)
    assert code == 0
