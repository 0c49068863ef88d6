"""BatchPutRecords and BatchGetRecords of 100 1 KiB records (SQLite, one ``vaultctl serve``
process, 4 batches in flight from a separate client process, benchmarks/batch_load.py), against
the single calls (PutRecord, GetRecord, 64 in flight, benchmarks/load_client.py) in the same
run on the same server: records/s of each, the ratio is the batch's gain. Runs are interleaved
and each figure is the median of ``REPEATS``."""

from __future__ import annotations

import statistics
import tempfile
from pathlib import Path

from benchmarks.bench_rpc import load, run_load, start_vault, stop
from benchmarks.harness import REPEATS, Result

SECONDS = 4.0
ITEMS = 100
GOALS = {"put": "goal >= 5,000 records/s", "get": "goal >= 10,000 records/s"}


def _batch_load(addr: str, mode: str, ids_file: Path) -> dict[str, float]:
    args = [addr, mode, str(SECONDS), str(ids_file), str(ITEMS)]
    return run_load("benchmarks.batch_load", args, mode)


def run() -> list[Result]:
    runs: dict[str, list[dict[str, float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        target = start_vault("sqlite-1", Path(tmp) / "s1", 1)
        try:
            assert target.ids_file is not None
            for _ in range(REPEATS):
                for op in ("put", "get"):
                    runs.setdefault(f"batch-{op}", []).append(
                        _batch_load(target.addr, f"batch-{op}", target.ids_file)
                    )
                    runs.setdefault(op, []).append(load(target, op))
        finally:
            stop(target)

    def median(mode: str, key: str) -> float:
        return statistics.median(r[key] for r in runs[mode])

    return [
        Result(
            f"Batch{op.title()}Records of {ITEMS} 1 KiB records (SQLite, 1 process)",
            median(f"batch-{op}", "records_per_s"),
            "records/s",
            f"single {op.title()}Record calls, 64 in flight",
            median(op, "ops_per_s"),
            f"{GOALS[op]}; batch p50 {median(f'batch-{op}', 'p50_ms'):.0f} ms",
        )
        for op in ("put", "get")
    ]


if __name__ == "__main__":
    for r in run():
        print(r.line())
