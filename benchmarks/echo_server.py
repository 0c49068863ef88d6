"""The baseline of the Put/Get benchmark: a plain gRPC server that takes the vault's own
PutRecordRequest/GetRecordRequest messages and answers with PutRecordResponse/GetRecordResponse of
the same size as the vault's (a 1 KiB record), with no authentication, encryption, storage or
policy. The vault's limits, and the thread count that serves the echo fastest: 2 (measured with
h2load on 2 cores, 2026-12-02: 3,300-3,800 calls/s and 0.32-0.34 ms of CPU per call, against
3,050-3,400 with 4 threads and 2,650-2,700 with 1), so that the ratios do not flatter the vault.
Run as a subprocess; prints its port."""

from __future__ import annotations

import signal
import sys
import threading
from concurrent import futures
from typing import Any

import grpc

from vault_service.api.v1 import vault_pb2 as pb

RECORD_ID = "0193a0e2-4b1c-7d3e-8f00-0123456789ab"
PAYLOAD = {"text": "x" * 1024}
THREADS = 2


def put(request: pb.PutRecordRequest, context: Any) -> pb.PutRecordResponse:
    return pb.PutRecordResponse(record_id=RECORD_ID, version=1)


def get(request: pb.GetRecordRequest, context: Any) -> pb.GetRecordResponse:
    return pb.GetRecordResponse(
        metadata=pb.RecordMetadata(record_id=request.record_id, category="concern_text", version=1),
        fields=PAYLOAD,
    )


def main() -> int:
    handler = grpc.method_handlers_generic_handler(
        "bench.Echo",
        {
            "Put": grpc.unary_unary_rpc_method_handler(
                put, pb.PutRecordRequest.FromString, pb.PutRecordResponse.SerializeToString
            ),
            "Get": grpc.unary_unary_rpc_method_handler(
                get, pb.GetRecordRequest.FromString, pb.GetRecordResponse.SerializeToString
            ),
        },
    )
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=THREADS), maximum_concurrent_rpcs=256)
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(port, flush=True)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: done.set())
    done.wait()
    server.stop(0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
