"""The load generator of the Put/Get benchmark, run as its own process (so that its CPU is not the
server's): ``python -m benchmarks.load_client ADDR MODE SECONDS [IDS_FILE]``.

MODE is put, get (the vault's PutRecord/GetRecord with a bearer token from VAULT_SERVICE_TOKEN) or
echo-put, echo-get (the baseline server's methods, same messages). Keeps ``CONCURRENCY`` calls in
flight over ``CHANNELS`` connections (several, so that worker processes sharing a port all get
some), warms up for one second, then measures. Prints one JSON line: ops/s, p50 and p99 in ms,
errors."""

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

CONCURRENCY = 64
CHANNELS = 8
WARMUP_SECONDS = 1.0
TEXT = "r" * 1024  # a 1 KiB record


def _method(channel: grpc.aio.Channel, mode: str) -> Any:
    path = {
        "put": "/vault.v1.Vault/PutRecord",
        "get": "/vault.v1.Vault/GetRecord",
        "echo-put": "/bench.Echo/Put",
        "echo-get": "/bench.Echo/Get",
    }[mode]
    if mode.endswith("put"):
        return channel.unary_unary(
            path, pb.PutRecordRequest.SerializeToString, pb.PutRecordResponse.FromString
        )
    return channel.unary_unary(
        path, pb.GetRecordRequest.SerializeToString, pb.GetRecordResponse.FromString
    )


async def _run(addr: str, mode: str, seconds: float, ids: list[str]) -> dict[str, float]:
    token = os.environ.get("VAULT_SERVICE_TOKEN", "")
    metadata = (("authorization", f"Bearer {token}"),) if token else ()
    options = [("grpc.use_local_subchannel_pool", 1)]  # one connection per channel
    channels = [grpc.aio.insecure_channel(addr, options=options) for _ in range(CHANNELS)]
    calls = [_method(c, mode) for c in channels]
    latencies: list[float] = []
    errors = 0
    start = time.perf_counter()
    measure_from = start + WARMUP_SECONDS
    stop_at = measure_from + seconds

    async def worker(k: int) -> None:
        nonlocal errors
        call = calls[k % CHANNELS]
        i = k
        while True:
            if mode.endswith("put"):
                request: Any = pb.PutRecordRequest(
                    subject_id=f"bench-{i % 500}", category="concern_text", fields={"text": TEXT}
                )
            else:
                request = pb.GetRecordRequest(record_id=ids[i % len(ids)], purpose="matching")
            t0 = time.perf_counter()
            if t0 >= stop_at:
                return
            try:
                await call(request, metadata=metadata, timeout=30)
            except grpc.aio.AioRpcError:
                errors += 1
            t1 = time.perf_counter()
            if t0 >= measure_from:
                latencies.append(t1 - t0)
            i += CONCURRENCY

    await asyncio.gather(*(worker(k) for k in range(CONCURRENCY)))
    for c in channels:
        await c.close()
    latencies.sort()
    return {
        "ops_per_s": len(latencies) / seconds,
        "p50_ms": 1000 * statistics.median(latencies),
        "p99_ms": 1000 * latencies[int(0.99 * (len(latencies) - 1))],
        "errors": errors,
    }


def main(argv: list[str]) -> int:
    addr, mode, seconds = argv[0], argv[1], float(argv[2])
    ids = Path(argv[3]).read_text().split() if len(argv) > 3 else [""]
    print(json.dumps(asyncio.run(_run(addr, mode, seconds, ids))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
