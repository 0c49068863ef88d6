"""The server's own choice of processes and threads (vault_service/rpc/sizing.py) when the config
leaves it open, and that an explicit setting always wins."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from vault_service.config import Config, load_config
from vault_service.rpc import sizing

PG = "[storage]\nbackend = 'postgres'\npostgres_dsn = 'dbname=x'\n"


def _config(tmp_path: Path, body: str = "", env: dict[str, str] | None = None) -> Config:
    p = tmp_path / "c.toml"
    p.write_text('policy = "p.toml"\n' + body)
    return load_config(p, env or {})


def test_threads_follow_the_backend_unless_set(tmp_path: Path) -> None:
    assert sizing.threads_per_process(_config(tmp_path)) == 2  # SQLite: no network waits
    assert sizing.threads_per_process(_config(tmp_path, PG)) == 8  # round trips overlap on threads
    assert sizing.threads_per_process(_config(tmp_path, "[server]\nworkers = 5\n")) == 5


def test_processes_are_the_usable_cpus_under_each_backends_cap(tmp_path: Path) -> None:
    cpus = len(os.sched_getaffinity(0))
    assert sizing.usable_cpus() == cpus
    assert sizing.process_count(_config(tmp_path)) == min(cpus, sizing.MAX_SQLITE_PROCESSES)
    assert sizing.process_count(_config(tmp_path, PG)) == min(cpus, sizing.MAX_PROCESSES)
    assert sizing.process_count(_config(tmp_path, "[server]\nprocesses = 3\n")) == 3
    # serve --workers N wins over the config
    assert sizing.process_count(_config(tmp_path, "[server]\nprocesses = 3\n"), 1) == 1
    assert sizing.process_count(_config(tmp_path), 2) == 2


def test_processes_honour_the_cpu_set_and_the_cap(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    cfg, sqlite = _config(tmp_path, PG), _config(tmp_path)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0})  # a container pinned to one CPU
    assert sizing.process_count(cfg) == sizing.process_count(sqlite) == 1
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(64)))
    assert sizing.process_count(cfg) == sizing.MAX_PROCESSES
    assert sizing.process_count(sqlite) == sizing.MAX_SQLITE_PROCESSES < sizing.MAX_PROCESSES


def test_record_calls_get_their_own_thread_only_where_no_call_waits_on_the_network(
    tmp_path: Path,
) -> None:
    assert sizing.record_threads(_config(tmp_path)) == 1  # SQLite + the local keyring
    kms = _config(tmp_path, "[keys]\nprovider = 'aws-kms'\nkms_key_id = 'alias/x'\n")
    assert sizing.record_threads(kms) == 0  # a data key unwrap may wait on KMS
    assert sizing.record_threads(_config(tmp_path, PG)) == 0
    assert sizing.record_threads(_config(tmp_path, "[server]\nrecord_threads = 3\n")) == 3
    assert sizing.record_threads(_config(tmp_path, "[server]\nrecord_threads = 0\n")) == 0


def test_the_record_calls_are_unary_vault_rpcs() -> None:
    from vault_service.api.v1 import vault_pb2

    methods = vault_pb2.DESCRIPTOR.services_by_name["Vault"].methods_by_name
    for name in sizing.RECORD_CALLS:
        m = methods[name]
        assert not m.client_streaming and not m.server_streaming, name
