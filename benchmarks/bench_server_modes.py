"""How the vault's handlers are run, measured (issue #19: "the sync server against grpc.aio and
against the thread and process counts"): Put and Get of a 1 KiB record on SQLite, one process,
loaded by h2load (closed loop, 64 in flight, every call checked), with

- grpcio's synchronous server with 4, 2 and 1 RPC threads for every call;
- the default on SQLite: 2 threads, and the record calls on a thread of their own
  (vault_service/rpc/sizing.py);
- grpc.aio with the synchronous handlers in its thread pool (2 threads), and called inline on
  the event loop (benchmarks/aio_vault.py).

Each figure is the median of ``REPEATS`` interleaved runs, compared with the synchronous server
with 4 threads for every call (the default before): calls per second, and the server's CPU per
call (the figure that does not depend on how much of the shared cores the server got).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from benchmarks.bench_rpc import h2load_load, start_vault, stop
from benchmarks.harness import REPEATS, Result

#: name -> (threads, record calls' threads, server module and mode or ())
MODES: dict[str, tuple[int, int, tuple[str, ...]]] = {
    "sync, 4 threads": (4, 0, ()),
    "sync, 2 threads": (2, 0, ()),
    "sync, 1 thread": (1, 0, ()),
    "sync, 2 threads + 1 for the record calls (default)": (2, 1, ()),
    "grpc.aio, handlers in a 2-thread pool": (2, 0, ("benchmarks.aio_vault", "pool")),
    "grpc.aio, handlers inline on the loop": (2, 0, ("benchmarks.aio_vault", "inline")),
}
BASELINE = "sync, 4 threads"


def run() -> list[Result]:
    with tempfile.TemporaryDirectory() as tmp:
        targets = {}
        try:
            for i, (name, (threads, record, server)) in enumerate(MODES.items()):
                config = {"server__workers": str(threads), "server__record_threads": str(record)}
                targets[name] = start_vault(name, Path(tmp) / str(i), 1, config=config, server=server)
            for _ in range(REPEATS):
                for t in targets.values():
                    for op in ("put", "get"):
                        t.runs.setdefault(op, []).append(h2load_load(t, op))
        finally:
            for t in targets.values():
                stop(t)
    base = targets[BASELINE]
    results: list[Result] = []
    for op in ("put", "get"):
        for name, t in targets.items():
            if name == BASELINE:
                continue
            results += [
                Result(
                    f"{op.title()} 1 KiB, h2load, SQLite, 1 process: {name}",
                    t.median(op, "ops_per_s"),
                    "ops/s",
                    BASELINE,
                    base.median(op, "ops_per_s"),
                    f"p99 {t.median(op, 'p99_ms'):.0f} ms",
                ),
                Result(
                    f"{op.title()} server CPU per call: {name}",
                    t.median(op, "cpu_ms"),
                    "ms",
                    BASELINE,
                    base.median(op, "cpu_ms"),
                    "ratio < 1 = cheaper",
                ),
            ]
    return results
