"""The load generator of the batch benchmark, its own process (its CPU is not the server's):
``python -m benchmarks.batch_load ADDR MODE SECONDS IDS_FILE [ITEMS]``.

MODE is batch-put (BatchPutRecords of ITEMS 1 KiB records, default 100) or batch-get
(BatchGetRecords of ITEMS of the ids in IDS_FILE). Keeps ``IN_FLIGHT`` batches in flight over as
many connections, warms up for one second, then measures. Prints one JSON line: records/s,
batches/s, p50 and p99 batch latency in ms, and errors (failed calls or items)."""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import grpc

from vault_service.api.v1 import vault_pb2 as pb

IN_FLIGHT = 4
WARMUP_SECONDS = 1.0
TEXT = "r" * 1024


def _request(mode: str, k: int, items: int, ids: list[str]) -> Any:
    if mode == "batch-put":
        return pb.BatchPutRecordsRequest(
            items=[
                pb.PutRecordRequest(
                    subject_id=f"batch-{(k * items + n) % 500}",
                    category="concern_text",
                    fields={"text": TEXT},
                )
                for n in range(items)
            ]
        )
    return pb.BatchGetRecordsRequest(
        items=[
            pb.GetRecordRequest(record_id=ids[(k * items + n) % len(ids)], purpose="matching")
            for n in range(items)
        ]
    )


async def _run(addr: str, mode: str, seconds: float, ids: list[str], items: int) -> dict[str, float]:
    token = os.environ.get("VAULT_SERVICE_TOKEN", "")
    metadata = (("authorization", f"Bearer {token}"),)
    options = [("grpc.use_local_subchannel_pool", 1), ("grpc.max_receive_message_length", 64 << 20)]
    channels = [grpc.aio.insecure_channel(addr, options=options) for _ in range(IN_FLIGHT)]
    answer = pb.BatchPutRecordsResponse if mode == "batch-put" else pb.BatchGetRecordsResponse
    method = "BatchPutRecords" if mode == "batch-put" else "BatchGetRecords"
    calls = [
        c.unary_unary(f"/vault.v1.Vault/{method}", lambda m: m.SerializeToString(), answer.FromString)
        for c in channels
    ]
    latencies: list[float] = []
    errors = 0
    start = time.perf_counter()
    measure_from, stop_at = start + WARMUP_SECONDS, start + WARMUP_SECONDS + seconds

    async def worker(w: int) -> None:
        nonlocal errors
        k = w
        while True:
            request = _request(mode, k, items, ids)
            t0 = time.perf_counter()
            if t0 >= stop_at:
                return
            try:
                resp = await calls[w](request, metadata=metadata, timeout=60)
                errors += sum(1 for r in resp.results if r.status.code)
            except grpc.aio.AioRpcError:
                errors += 1
            t1 = time.perf_counter()
            if t0 >= measure_from:
                latencies.append(t1 - t0)
            k += IN_FLIGHT

    await asyncio.gather(*(worker(w) for w in range(IN_FLIGHT)))
    for c in channels:
        await c.close()
    latencies.sort()
    return {
        "records_per_s": len(latencies) * items / seconds,
        "batches_per_s": len(latencies) / seconds,
        "p50_ms": 1000 * statistics.median(latencies),
        "p99_ms": 1000 * latencies[int(0.99 * (len(latencies) - 1))],
        "errors": errors,
    }


def main(argv: list[str]) -> int:
    addr, mode, seconds, ids_file = argv[0], argv[1], float(argv[2]), argv[3]
    items = int(argv[4]) if len(argv) > 4 else 100
    ids = Path(ids_file).read_text().split()
    print(json.dumps(asyncio.run(_run(addr, mode, seconds, ids, items))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
