"""Put and Get of a 1 KiB record over gRPC with 64 calls in flight from a separate client process
(benchmarks/load_client.py), against a plain gRPC echo server carrying the same messages
(benchmarks/echo_server.py), measured in the same run; then the same load on PostgreSQL against
SQLite, and with 2 worker processes against 1.

The vault runs as `vaultctl serve` subprocesses with the shipped example policy, the local keyring,
filesystem blobs and logging at WARNING. PostgreSQL is a private cluster with its default
durability (fsync and synchronous_commit on); SQLite runs with synchronous=NORMAL (its default
here: durable across process crashes, not power loss). Runs are interleaved across targets and
each figure is the median of ``REPEATS``.
"""

from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.harness import REPEATS, Result
from tests.conftest import TOKENS, write_config
from tests.support.postgres import PostgresCluster
from vault_service.client import VaultClient

SECONDS = 4.0
GET_RECORDS = 256
ROOT = Path(__file__).resolve().parent.parent


@dataclass
class _Target:
    name: str
    addr: str
    proc: subprocess.Popen[str]
    ids_file: Path | None = None
    runs: dict[str, list[dict[str, float]]] = field(default_factory=dict)

    def median(self, mode: str, key: str) -> float:
        return statistics.median(r[key] for r in self.runs[mode])


def _start_echo() -> _Target:
    proc = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.echo_server"], stdout=subprocess.PIPE, text=True, cwd=ROOT
    )
    assert proc.stdout is not None
    return _Target("echo", f"127.0.0.1:{int(proc.stdout.readline())}", proc)


def start_vault(
    name: str, home: Path, workers: int, dsn: str = "", config: dict[str, str] | None = None
) -> _Target:
    """A ``vaultctl serve`` on a new home with GET_RECORDS records; ``config``: more settings
    (write_config's ``section__key`` form)."""
    home.mkdir(parents=True)
    extra = {"logging__level": '"WARNING"', **(config or {})}
    if dsn:
        extra |= {"storage__backend": '"postgres"', "storage__postgres_dsn": f'"{dsn}"'}
        extra |= {"storage__postgres_pool_max": "16"}
    config = write_config(home, **extra)
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "vault_service.cli.main", "--config", str(config)),
            *("serve", "--workers", str(workers)),
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert proc.stdout is not None
    m = re.search(r"listening on (127\.0\.0\.1:\d+)", proc.stdout.readline())
    if m is None:
        proc.kill()
        raise RuntimeError(f"{name}: the vault did not start")
    target = _Target(name, m.group(1), proc, home / "ids.txt")
    with VaultClient(target.addr, TOKENS["app"]) as c:
        ids = [
            c.put_record(f"reader-{i % 64}", "concern_text", {"text": "g" * 1024}).record_id
            for i in range(GET_RECORDS)
        ]
    target.ids_file.write_text("\n".join(ids))  # type: ignore[union-attr]
    return target


def load(target: _Target, mode: str) -> dict[str, float]:
    args = [sys.executable, "-m", "benchmarks.load_client", target.addr, mode, str(SECONDS)]
    if target.ids_file is not None:
        args.append(str(target.ids_file))
    out = subprocess.run(
        args,
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
        env={**os.environ, "VAULT_SERVICE_TOKEN": TOKENS["app"]},
    )
    result: dict[str, float] = json.loads(out.stdout)
    if result["errors"]:
        raise RuntimeError(f"{target.name} {mode}: {result['errors']} calls failed")
    return result


def stop(target: _Target) -> None:
    target.proc.terminate()
    target.proc.wait(60)


def run() -> list[Result]:
    cluster = PostgresCluster(durable=True).start()
    targets: list[_Target] = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            home = Path(tmp)
            targets = [
                _start_echo(),
                start_vault("sqlite-1", home / "s1", 1),
                start_vault("postgres-1", home / "p1", 1, cluster.new_database()),
                start_vault("postgres-2", home / "p2", 2, cluster.new_database()),
                start_vault("sqlite-2", home / "s2", 2),
            ]
            for _ in range(REPEATS):  # interleaved, so that drift hits every target alike
                for t in targets:
                    for op in ("put", "get"):
                        mode = f"echo-{op}" if t.name == "echo" else op
                        t.runs.setdefault(op, []).append(load(t, mode))
            for t in targets:
                stop(t)
    finally:
        for t in targets:
            if t.proc.poll() is None:
                t.proc.kill()
        cluster.stop()
    by = {t.name: t for t in targets}
    echo, s1, p1, p2, s2 = (by[n] for n in ("echo", "sqlite-1", "postgres-1", "postgres-2", "sqlite-2"))
    goals = {"put": "goal >= 0.6", "get": "goal >= 0.7"}
    results: list[Result] = []
    for op in ("put", "get"):
        title = op.title()
        results.append(
            Result(
                f"{title} 1 KiB, 64 in flight (SQLite, 1 process)",
                s1.median(op, "ops_per_s"),
                "ops/s",
                f"echo {op}",
                echo.median(op, "ops_per_s"),
                goals[op],
            )
        )
        results += [
            Result(
                f"{title} {pct} latency (SQLite, 1 process)",
                s1.median(op, f"{pct}_ms"),
                "ms",
                f"echo {op} {pct}",
                echo.median(op, f"{pct}_ms"),
                "ratio > 1 = slower",
            )
            for pct in ("p50", "p99")
        ]
        results += [
            Result(
                f"{title} on {target_name}",
                target.median(op, "ops_per_s"),
                "ops/s",
                f"{op} on {base_name}",
                base.median(op, "ops_per_s"),
                f"p50 {target.median(op, 'p50_ms'):.1f} ms, p99 {target.median(op, 'p99_ms'):.1f} ms",
            )
            for target_name, target, base_name, base in (
                ("PostgreSQL (1 process)", p1, "SQLite, 1 process", s1),
                ("PostgreSQL, 2 worker processes", p2, "PostgreSQL, 1 process", p1),
                ("SQLite, 2 worker processes", s2, "SQLite, 1 process", s1),
            )
        ]
    return results
