"""The audited request path across processes and across a network (issue 18): Put and Get of a
1 KiB record, 64 calls in flight (benchmarks/load_client.py), on PostgreSQL.

- **Processes**: ``vaultctl serve --workers N`` with N = 1, 2 and 4 on one database: each figure
  against one process in the same run. Every call writes its audit entry in its own transaction
  (group commit: no lock another process waits on; the sequencer orders the entries about every
  second). Goal: 2 processes at least 1.0x of one on this 2-core machine (before group commit:
  0.75 for Put, 0.88 for Get).
- **A database across a network**: one process, 32 handler threads, PostgreSQL behind a proxy
  that delays every byte by 0.5 ms each way (1 ms more per round trip,
  tests/support/latency_proxy.py), against the same proxy with no delay (the proxy's own cost
  in both). Goal: at least 0.8 (only possible when no lock is held across a commit).

Runs are interleaved across targets; each figure is the median of ``REPEATS``.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from benchmarks.bench_rpc import load, start_vault, stop
from benchmarks.harness import REPEATS, Result
from tests.support.latency_proxy import LatencyProxy
from tests.support.postgres import PostgresCluster

THREADS = {"server__workers": "32", "storage__postgres_pool_max": "32"}


def _via(proxy: LatencyProxy, dsn: str, cluster_port: int) -> str:
    return dsn.replace(f"port={cluster_port}", f"port={proxy.port}")


def run() -> list[Result]:
    cluster = PostgresCluster(durable=True).start()
    near = LatencyProxy(cluster.port, 0.0).start()
    far = LatencyProxy(cluster.port, 0.0005).start()
    targets = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            home = Path(tmp)
            targets = [
                start_vault("pg-1", home / "p1", 1, cluster.new_database()),
                start_vault("pg-2", home / "p2", 2, cluster.new_database()),
                start_vault("pg-4", home / "p4", 4, cluster.new_database()),
                start_vault(
                    "near", home / "n", 1, _via(near, cluster.new_database(), cluster.port), THREADS
                ),
                start_vault(
                    "far", home / "f", 1, _via(far, cluster.new_database(), cluster.port), THREADS
                ),
            ]
            for _ in range(REPEATS):
                for t in targets:
                    for op in ("put", "get"):
                        t.runs.setdefault(op, []).append(load(t, op))
            for t in targets:
                stop(t)
    finally:
        for t in targets:
            if t.proc.poll() is None:
                t.proc.kill()
        near.stop()
        far.stop()
        cluster.stop()
    by = {t.name: t for t in targets}
    results: list[Result] = []
    for op in ("put", "get"):
        one = by["pg-1"]
        for n in (2, 4):
            t = by[f"pg-{n}"]
            results.append(
                Result(
                    f"{op.title()} 1 KiB, 64 in flight, PostgreSQL, {n} worker processes",
                    t.median(op, "ops_per_s"),
                    "ops/s",
                    f"{op} with 1 process",
                    one.median(op, "ops_per_s"),
                    f"goal (2 processes) >= 1.0; p50 {t.median(op, 'p50_ms'):.1f} ms",
                )
            )
        far_t, near_t = by["far"], by["near"]
        results.append(
            Result(
                f"{op.title()} 1 KiB, 64 in flight, PostgreSQL +1 ms per round trip",
                far_t.median(op, "ops_per_s"),
                "ops/s",
                f"{op} through the proxy with no delay",
                near_t.median(op, "ops_per_s"),
                f"goal >= 0.8; p50 {far_t.median(op, 'p50_ms'):.1f} vs "
                f"{near_t.median(op, 'p50_ms'):.1f} ms",
            )
        )
    return results
