"""The baseline of the large-object benchmark: a plain gRPC server carrying the same messages as
the vault's UploadRecord/DownloadContent (UploadChunk in, ContentPiece out) but with no encryption,
no storage and no policy. Run as a subprocess; prints its port."""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Iterator
from concurrent import futures
from typing import Any

import grpc

from vault_service.api.v1 import vault_pb2 as pb

PIECE = b"\x5a" * (1024 * 1024)


def upload(requests: Iterator[pb.UploadChunk], context: Any) -> pb.PutRecordResponse:
    total = sum(len(r.data) for r in requests)
    return pb.PutRecordResponse(record_id=str(total), version=1)


def download(request: pb.DownloadContentRequest, context: Any) -> Iterator[pb.ContentPiece]:
    for i in range(request.length // len(PIECE)):
        yield pb.ContentPiece(record_id=request.record_id, offset=i * len(PIECE), data=PIECE)


def main() -> int:
    handler = grpc.method_handlers_generic_handler(
        "bench.Plain",
        {
            "Upload": grpc.stream_unary_rpc_method_handler(
                upload, pb.UploadChunk.FromString, pb.PutRecordResponse.SerializeToString
            ),
            "Download": grpc.unary_stream_rpc_method_handler(
                download, pb.DownloadContentRequest.FromString, pb.ContentPiece.SerializeToString
            ),
        },
    )
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=4),
        options=[
            ("grpc.max_receive_message_length", 8 << 20),
            ("grpc.max_send_message_length", 8 << 20),
        ],
    )
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
