"""OpenTelemetry tracing of this process: a span per RPC and child spans for its dependencies.

Off by default (``[tracing] exporter = "off"``): then nothing of OpenTelemetry is imported (it is
the optional ``tracing`` extra) and :func:`span` / :func:`rpc_span` return one shared no-op
context manager, so the instrumented seams cost a function call and a ``with``.

When on (:func:`configure`, called by the server at start-up):

- :func:`rpc_span` is the SERVER span of one call (the interceptor opens it once the caller is
  authenticated, or has failed to be), a child of the caller's span when an *authenticated*
  call's metadata carries a W3C ``traceparent``: then the sampling decision is the caller's.
  Otherwise (no ``traceparent``, or a call that failed authentication, whose metadata is not
  trusted) the span starts a trace of its own, sampled by ``sample_ratio`` alone: an
  unauthenticated caller can neither join a trace nor force sampling. ``tracestate`` (vendor
  data nobody here vets) is never read, so never exported;
- :func:`span` is a child span of the dependency a call uses (the record store's transactions,
  the key provider, the blob store). It is recorded only inside a recorded RPC span: background
  jobs and start-up work make no traces of their own;
- spans go to the configured exporter through a batching processor with a bounded queue: a slow
  or unreachable collector drops spans, it never blocks or fails a call.

**What a span may carry**: names and attribute values that come from code or configuration (RPC
method, gRPC status, the caller's role, the call's correlation id, a provider or database name,
the store method that opened a transaction, an exception's *class* name). Never a subject id,
record id, field value, token, key, purpose argument, search value or filter, the caller's
``tracestate``, or the text of an exception: spans are not given exceptions
(``record_exception`` is off, and the status carries no description), only their class in
``error.type`` (tests/observability/test_tracing.py puts markers in what a caller sends to the
RPCs of its exercise and searches the exported bytes for them).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import grpc

from vault_service.config import TracingConfig
from vault_service.errors import ConfigError

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.trace import Span as OtelSpan
    from opentelemetry.trace import Tracer

#: an attribute value: only scalars (what code and configuration produce)
Value = str | int | float | bool

#: gRPC statuses that are the server's failure (OpenTelemetry's gRPC conventions); the others
#: are the caller's business and leave the span's status unset
_SERVER_ERRORS = frozenset(
    {"UNKNOWN", "DEADLINE_EXCEEDED", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS"}
)
_GRPC_CODES = {code.name: code.value[0] for code in grpc.StatusCode}


class Span:
    """What instrumented code may do with its span: add attributes. The no-op span of tracing
    off (and of unsampled calls) ignores them."""

    def set(self, key: str, value: Value) -> None:
        """Set one attribute (see the module docstring for what may be one)."""

    def finish_rpc(self, status: str) -> None:
        """An RPC span's outcome: its gRPC status name ("OK", "NOT_FOUND" ...)."""


_NOOP_SPAN = Span()
#: reusable: entering returns the no-op span, leaving does nothing
_NOOP = contextlib.nullcontext(_NOOP_SPAN)


class _Live(Span):
    def __init__(self, span: OtelSpan, error_status: Any) -> None:
        self._span = span
        self._error = error_status
        self.finished = False

    def set(self, key: str, value: Value) -> None:
        self._span.set_attribute(key, value)

    def finish_rpc(self, status: str) -> None:
        self.finished = True
        self._span.set_attribute("rpc.grpc.status_code", _GRPC_CODES.get(status, 2))
        if status != "OK":
            self._span.set_attribute("error.type", status)
        if status in _SERVER_ERRORS:
            self._span.set_status(self._error)  # no description: it could quote a value

    def failed(self, exc: BaseException) -> None:
        if not self.finished:
            self._span.set_attribute("error.type", type(exc).__name__)
            self._span.set_status(self._error)


class _State:
    """The installed provider, or None (tracing off)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.provider: TracerProvider | None = None
        self.tracer: Tracer | None = None
        self.otel: Any = None  # the opentelemetry modules used per span, imported at configure


_state = _State()


def enabled() -> bool:
    """Whether spans are being recorded and exported."""
    return _state.tracer is not None


def recording() -> bool:
    """Whether a :func:`span` opened now would be recorded (tracing on, inside a recorded RPC
    span): lets a caller skip work that only a span's attributes need."""
    otel = _state.otel
    return _state.tracer is not None and bool(otel.trace.get_current_span().is_recording())


def configure(settings: TracingConfig) -> None:
    """Install tracing for this process as ``settings`` say, replacing (and flushing) what was
    installed before; ``exporter = "off"`` uninstalls it. ConfigError if tracing is asked for
    and the ``tracing`` extra is not installed."""
    shutdown()
    if settings.exporter == "off":
        return
    try:
        from opentelemetry import context, trace
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
    except ImportError:
        raise ConfigError(
            f"tracing.exporter: {settings.exporter!r} needs OpenTelemetry:"
            " pip install 'vault-service[tracing]'"
        ) from None
    provider = TracerProvider(
        # only what the config names: not the SDK's host and process detectors
        resource=Resource({"service.name": settings.service_name}),
        sampler=ParentBased(TraceIdRatioBased(settings.sample_ratio)),
    )
    provider.add_span_processor(
        BatchSpanProcessor(
            _exporter_for(settings),
            max_queue_size=settings.max_queue_size,
            schedule_delay_millis=settings.export_interval_seconds * 1000,
        )
    )
    otel = _Otel(context, trace, TraceContextTextMapPropagator())
    with _state.lock:
        _state.provider, _state.otel = provider, otel
        _state.tracer = provider.get_tracer("vault_service")


def _exporter_for(settings: TracingConfig) -> SpanExporter:
    if settings.exporter == "console":
        import sys

        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        # standard error: standard output carries the server's readiness lines
        return ConsoleSpanExporter(out=sys.stderr)
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter(
        endpoint=settings.otlp_endpoint,
        insecure=settings.otlp_endpoint.startswith("http://"),
        timeout=settings.otlp_timeout_seconds,
    )


class _Otel:
    """The OpenTelemetry API pieces a span needs, imported once by :func:`configure`."""

    def __init__(self, context: Any, trace: Any, propagator: Any) -> None:
        self.context = context
        self.trace = trace
        self.propagator = propagator
        self.error = trace.Status(trace.StatusCode.ERROR)
        self.server = trace.SpanKind.SERVER
        self.client = trace.SpanKind.CLIENT


def flush(timeout_seconds: float = 10.0) -> bool:
    """Export every finished span now (tests; the server's stop does it through shutdown)."""
    provider = _state.provider
    return provider.force_flush(int(timeout_seconds * 1000)) if provider is not None else True


def shutdown() -> None:
    """Export what is queued (bounded by the exporter's timeout) and uninstall tracing."""
    with _state.lock:
        provider, _state.provider, _state.tracer = _state.provider, None, None
    if provider is not None:
        provider.shutdown()


def rpc_span(
    method: str, trusted_metadata: Iterable[tuple[str, Any]] | None
) -> contextlib.AbstractContextManager[Span]:
    """The SERVER span of an RPC ``method`` ("/vault.v1.Vault/GetRecord"), continuing the trace
    of the ``traceparent`` in ``trusted_metadata``: the metadata of an *authenticated* call, or
    None (the call failed authentication, or it does not matter): then the span is the root of
    a trace of its own, sampled by ``sample_ratio``. Only ``traceparent`` is read (never
    ``tracestate``). The caller sets the span's outcome with :meth:`Span.finish_rpc`."""
    tracer = _state.tracer
    if tracer is None:
        return _NOOP
    otel = _state.otel
    carrier = {k: v for k, v in trusted_metadata or () if k == "traceparent"}
    parent = otel.propagator.extract(carrier) if carrier else otel.context.Context()
    service, _, name = method.lstrip("/").partition("/")
    attributes = {"rpc.system": "grpc", "rpc.service": service, "rpc.method": name}
    return _live(tracer, otel, f"{service}/{name}", attributes, otel.server, parent)


def span(name: str, attributes: Mapping[str, Value]) -> contextlib.AbstractContextManager[Span]:
    """A CLIENT span of a dependency call, child of the current RPC span; a no-op outside one
    (and when tracing is off). An exception leaving it marks it failed with its class only."""
    tracer = _state.tracer
    if tracer is None:
        return _NOOP
    otel = _state.otel
    if not otel.trace.get_current_span().is_recording():
        return _NOOP
    return _live(tracer, otel, name, attributes, otel.client, None)


@contextlib.contextmanager
def _live(
    tracer: Tracer, otel: _Otel, name: str, attributes: Mapping[str, Value], kind: Any, parent: Any
) -> Iterator[Span]:
    with tracer.start_as_current_span(
        name,
        context=parent,
        kind=kind,
        attributes=attributes,
        record_exception=False,  # an exception event carries the exception's text
        set_status_on_exception=False,  # and so would the status description
    ) as otel_span:
        live = _Live(otel_span, otel.error)
        try:
            yield live
        except GeneratorExit:  # a stream closed early: the RPC span says CANCELLED itself
            raise
        except BaseException as exc:
            live.failed(exc)
            raise
