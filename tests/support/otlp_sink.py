"""A real OTLP/gRPC trace receiver on a free port: what a collector is to the vault's exporter.

In a test, :class:`OtlpSink` keeps every export request it received (decoded, and the raw bytes as
they came over the wire, so a marker search sees everything the vault sent). As a program
(``python -m tests.support.otlp_sink``, the tracing benchmark) it prints its port and only
counts spans, so that it costs the machine as little as a collector elsewhere would.
"""

from __future__ import annotations

import sys
import threading
import time
from concurrent import futures
from dataclasses import dataclass
from typing import Any

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as pb
from opentelemetry.proto.trace.v1.trace_pb2 import Span

_METHOD = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
_EMPTY_RESPONSE = pb.ExportTraceServiceResponse().SerializeToString()


@dataclass(frozen=True)
class Received:
    """One exported span, with its resource's attributes."""

    span: Span
    resource: dict[str, Any]

    @property
    def attributes(self) -> dict[str, Any]:
        return _values(self.span.attributes)

    @property
    def span_id(self) -> str:
        return self.span.span_id.hex()

    @property
    def parent_id(self) -> str:
        return self.span.parent_span_id.hex()

    @property
    def trace_id(self) -> str:
        return self.span.trace_id.hex()


def _values(attributes: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kv in attributes:
        kind = kv.value.WhichOneof("value")
        out[kv.key] = getattr(kv.value, kind) if kind else None
    return out


class OtlpSink:
    """See the module docstring. ``decode`` False: count spans only (no copies kept)."""

    def __init__(self, decode: bool = True) -> None:
        self.raw: list[bytes] = []
        self.spans: list[Received] = []
        self.count = 0
        self._decode = decode
        self._lock = threading.Lock()
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        handler = grpc.method_handlers_generic_handler(
            "opentelemetry.proto.collector.trace.v1.TraceService",
            {"Export": grpc.unary_unary_rpc_method_handler(self._export)},  # raw bytes in and out
        )
        self._server.add_generic_rpc_handlers((handler,))
        self.port = self._server.add_insecure_port("127.0.0.1:0")
        self._server.start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _export(self, raw: bytes, context: Any) -> bytes:
        request = pb.ExportTraceServiceRequest.FromString(raw)
        with self._lock:
            for rs in request.resource_spans:
                for ss in rs.scope_spans:
                    self.count += len(ss.spans)
                    if self._decode:
                        resource = _values(rs.resource.attributes)
                        self.spans += [Received(s, resource) for s in ss.spans]
            if self._decode:
                self.raw.append(raw)
        return _EMPTY_RESPONSE

    def named(self, name: str) -> list[Received]:
        with self._lock:
            return [s for s in self.spans if s.span.name == name]

    def wait_for(self, n: int, timeout: float = 15.0) -> None:
        """Until at least ``n`` spans arrived (AssertionError after ``timeout``)."""
        deadline = time.monotonic() + timeout
        while self.count < n:
            assert time.monotonic() < deadline, f"{self.count} spans arrived, expected {n}"
            time.sleep(0.05)

    def stop(self) -> None:
        self._server.stop(0).wait()


def main() -> None:
    sink = OtlpSink(decode=False)
    print(sink.port, flush=True)
    sys.stdin.read()  # until the parent closes our standard input
    print(sink.count, flush=True)
    sink.stop()


if __name__ == "__main__":
    main()
