"""The cost of tracing: Put and Get of a 1 KiB record, 64 in flight (bench_rpc's load), on a vault
with tracing on against the same vault with tracing off (the default), measured in the same run.

Tracing on is the real thing: every call sampled (sample_ratio 1, the most expensive setting)
and one call in ten sampled; each sampled call's server span and its database and key-provider
children are batched and exported over OTLP/gRPC to a receiver on this machine
(tests/support/otlp_sink.py, a separate process that decodes and counts what it gets, as a
collector's receiver would). The vaults run as `vaultctl serve` on SQLite with one process; runs
are interleaved and each figure is the median of ``REPEATS``.

``python -m benchmarks.run benchmarks.bench_tracing`` runs this alone.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.bench_rpc import ROOT, load, start_vault, stop
from benchmarks.harness import REPEATS, Result


def run() -> list[Result]:
    sink = subprocess.Popen(
        [sys.executable, "-m", "tests.support.otlp_sink"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert sink.stdin is not None and sink.stdout is not None
    targets = []
    try:
        endpoint = f"http://127.0.0.1:{int(sink.stdout.readline())}"
        with tempfile.TemporaryDirectory() as tmp:
            home = Path(tmp)
            otlp = {"tracing__exporter": '"otlp"', "tracing__otlp_endpoint": f'"{endpoint}"'}
            targets = [
                start_vault("off", home / "off", 1),
                start_vault("on", home / "on", 1, config=otlp),
                start_vault("tenth", home / "tenth", 1, config={**otlp, "tracing__sample_ratio": "0.1"}),
            ]
            for _ in range(REPEATS):  # interleaved, so that drift hits both alike
                for t in targets:
                    for op in ("put", "get"):
                        t.runs.setdefault(op, []).append(load(t, op))
            for t in targets:
                stop(t)
        sink.stdin.close()
        exported = int(sink.stdout.readline())
        sink.wait(30)
    finally:
        for t in targets:
            if t.proc.poll() is None:
                t.proc.kill()
        if sink.poll() is None:
            sink.kill()
    off, on, tenth = targets
    if exported == 0:
        raise RuntimeError("tracing on exported no spans: the figure would measure nothing")
    return [
        Result(
            f"{op.title()} 1 KiB, 64 in flight, tracing on (OTLP, {label})",
            target.median(op, "ops_per_s"),
            "ops/s",
            f"{op} with tracing off",
            off.median(op, "ops_per_s"),
            f"p50 {target.median(op, 'p50_ms'):.1f} vs {off.median(op, 'p50_ms'):.1f} ms, "
            f"{exported:,} spans exported in all",
        )
        for op in ("put", "get")
        for label, target in (("every call sampled", on), ("1 in 10 sampled", tenth))
    ]
