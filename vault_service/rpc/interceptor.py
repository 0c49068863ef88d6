"""The server interceptor: authentication, correlation ids and the one error mapping.

Every handler of the Vault service is wrapped so that, in the worker thread that runs it:

1. a correlation id is made and returned in the ``x-correlation-id`` trailing metadata;
2. the bearer token is checked and the principal put in :data:`current_call`;
3. a :class:`~vault_service.errors.VaultError` becomes its status and public message; any other
   exception becomes INTERNAL with a generic message carrying only the correlation id, and its
   stack (frames only, never the exception's text) goes to the server log. No exception text
   ever reaches a client;
4. the call is counted and timed by method and status (vault_service.metrics), and every log
   line written while serving it carries its correlation id (vault_service.logs);
5. with tracing on, the call is one SERVER span (vault_service.tracing), carrying the
   correlation id, the caller's role and the status: the spans the dependencies open while
   serving it are its children. It is opened after authentication, so that only an
   authenticated caller's W3C ``traceparent`` is followed (its trace joined, its sampling
   decision taken); a call that fails authentication is a trace of its own, sampled by the
   vault's ``sample_ratio`` alone, and fails inside it.

Health and reflection services are public (no token), as load balancers expect.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent import futures
from typing import Any

import grpc

from vault_service import logs, metrics, tracing
from vault_service.errors import InvalidArgument, PermissionDenied, Status, VaultError
from vault_service.ids import new_correlation_id
from vault_service.logs import fields
from vault_service.policy import Principal
from vault_service.rpc.actions import action_of
from vault_service.rpc.auth import Authenticator
from vault_service.service import CallContext

log = logging.getLogger("vault_service.rpc")

current_call: contextvars.ContextVar[CallContext] = contextvars.ContextVar("current_call")

_PUBLIC_PREFIXES = ("/grpc.health.v1.", "/grpc.reflection.")


_WARN = frozenset({Status.UNAVAILABLE, Status.DATA_LOSS, Status.RESOURCE_EXHAUSTED})


def _leave(
    span: tracing.Span,
    method: str,
    status: str,
    started: float,
    token: contextvars.Token[CallContext] | None,
) -> None:
    """After every call, however it ended: its span's status, its metrics, and the call's
    context variables reset (a worker thread serves the next call clean)."""
    span.finish_rpc(status)
    _observe(method, status, started)
    logs.correlation_id.set("")
    if token is not None:
        current_call.reset(token)


def _status_of(exc: BaseException) -> str:
    return exc.status.value if isinstance(exc, VaultError) else Status.INTERNAL.value


def _abort(context: grpc.ServicerContext, exc: BaseException, correlation_id: str, method: str) -> None:
    if isinstance(exc, VaultError):
        code = getattr(grpc.StatusCode, exc.status.value)
        # a dependency down or stored data failing its check wants attention; the rest is the
        # caller's business (bad input, no permission, not found)
        level = logging.WARNING if exc.status in _WARN else logging.INFO
        log.log(level, "rpc failed", extra=fields(rpc=method, status=exc.status.value))
        context.abort(code, exc.public_message)
    log.error(
        "rpc failed",
        extra=fields(rpc=method, status="INTERNAL"),
        exc_info=(type(exc), exc, exc.__traceback__),
    )
    context.abort(grpc.StatusCode.INTERNAL, f"internal error (correlation id {correlation_id})")


#: (method, status) -> its request counter and latency histogram (prometheus_client's
#: ``labels`` takes a lock and validates the labels on every lookup)
_series: dict[tuple[str, str], tuple[Any, Any]] = {}


def _observe(method: str, status: str, started: float) -> None:
    series = _series.get((method, status))
    if series is None:
        name = method.rsplit("/", 1)[-1]
        series = _series[(method, status)] = (
            metrics.RPC_REQUESTS.labels(name, status),
            metrics.RPC_LATENCY.labels(name, status),
        )
    series[0].inc()
    series[1].observe(time.perf_counter() - started)


class _Undecodable:
    """Stands for a request message whose bytes did not parse."""


_UNDECODABLE = _Undecodable()


def _lenient(deserialize: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    """The handler's deserializer, returning :data:`_UNDECODABLE` instead of raising, so that
    bytes that are not the request message (invalid UTF-8 in a string, a truncated field) get
    INVALID_ARGUMENT from the handler rather than grpcio's INTERNAL."""
    if deserialize is None:
        return None

    def parse(raw: bytes) -> Any:
        try:
            return deserialize(raw)
        except Exception:
            return _UNDECODABLE

    return parse


def _decoded(request: Any, streaming: bool) -> Any:
    """The request (or, for client streams, an iterator of requests) with undecodable messages
    turned into INVALID_ARGUMENT."""
    if not streaming:
        if request is _UNDECODABLE:
            raise InvalidArgument("the request message could not be decoded")
        return request

    def each() -> Iterator[Any]:
        for message in request:
            if message is _UNDECODABLE:
                raise InvalidArgument("a request message could not be decoded")
            yield message

    return each()


class VaultInterceptor(grpc.ServerInterceptor):  # type: ignore[type-arg]
    """See the module docstring. ``pools``: the thread pool a method's calls run in, by method
    name (vault_service/rpc/sizing.py); the others run in the server's."""

    def __init__(
        self,
        authenticator: Authenticator,
        pools: Mapping[str, futures.ThreadPoolExecutor] | None = None,
    ) -> None:
        self._auth = authenticator
        self._pools = dict(pools or {})
        #: method -> (the service's handler, its wrapped handler): grpcio asks for the handler
        #: of every call, and the wrapping is the same each time
        self._wrapped: dict[str, tuple[Any, Any]] = {}

    def intercept_service(self, continuation: Callable[[Any], Any], handler_call_details: Any) -> Any:
        handler = continuation(handler_call_details)
        method: str = handler_call_details.method
        if handler is None or method.startswith(_PUBLIC_PREFIXES):
            return handler
        known = self._wrapped.get(method)
        if known is not None and known[0] is handler:
            return known[1]
        wrapped = self._wrap(handler, method)
        self._wrapped[method] = (handler, wrapped)
        return wrapped

    def _wrap(self, handler: Any, method: str) -> Any:
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                self._wrap_unary(handler.unary_unary, method),
                request_deserializer=_lenient(handler.request_deserializer),
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                self._wrap_stream(handler.unary_stream, method),
                request_deserializer=_lenient(handler.request_deserializer),
                response_serializer=handler.response_serializer,
            )
        if handler.stream_unary is not None:
            return grpc.stream_unary_rpc_method_handler(
                self._wrap_unary(handler.stream_unary, method, streaming=True),
                request_deserializer=_lenient(handler.request_deserializer),
                response_serializer=handler.response_serializer,
            )
        return grpc.stream_stream_rpc_method_handler(
            self._wrap_stream(handler.stream_stream, method, streaming=True),
            request_deserializer=_lenient(handler.request_deserializer),
            response_serializer=handler.response_serializer,
        )

    def _authenticate(self, context: grpc.ServicerContext, ids: list[str]) -> Principal | Exception:
        """Per call, before its span: a correlation id (into ``ids`` at once, so that even an
        authentication failure carries it) and authentication. A failure is returned, to be
        raised inside the span (:meth:`_enter`) and mapped like any other."""
        try:
            ids[0] = new_correlation_id()
            logs.correlation_id.set(ids[0])
            context.set_trailing_metadata((("x-correlation-id", ids[0]),))
            return self._auth.authenticate(context.invocation_metadata(), context.auth_context())
        except Exception as exc:
            return exc

    def _span(
        self, context: grpc.ServicerContext, method: str, caller: Principal | Exception
    ) -> contextlib.AbstractContextManager[tracing.Span]:
        """The call's span: continuing the caller's trace context only if it authenticated."""
        trusted = None if isinstance(caller, Exception) else context.invocation_metadata()
        return tracing.rpc_span(method, trusted)

    def _enter(
        self, method: str, ids: list[str], span: tracing.Span, caller: Principal | Exception
    ) -> contextvars.Token[CallContext]:
        """Per call, inside its span, before the handler: the authentication's outcome, the
        declared action, and the call context for the handler."""
        span.set("vault.correlation_id", ids[0])
        if isinstance(caller, Exception):
            raise caller
        span.set("vault.role", caller.role)  # the role only: never who the principal is
        if action_of(method) is None:  # every RPC must declare its action
            raise PermissionDenied()
        return current_call.set(CallContext(caller, ids[0]))

    def _wrap_unary(
        self, fn: Callable[[Any, Any], Any], method: str, streaming: bool = False
    ) -> Callable[[Any, Any], Any]:
        def call(request: Any, context: grpc.ServicerContext) -> Any:
            ids, token, status, started = ["-"], None, "OK", time.perf_counter()
            caller = self._authenticate(context, ids)
            with self._span(context, method, caller) as span:
                try:
                    token = self._enter(method, ids, span, caller)
                    return fn(_decoded(request, streaming), context)
                except Exception as exc:  # mapped, never leaked
                    status = _status_of(exc)
                    _abort(context, exc, ids[0], method)
                finally:
                    _leave(span, method, status, started, token)
            return None

        pool = self._pools.get(method.rsplit("/", 1)[-1])
        if pool is not None and not streaming:
            # grpcio runs a behavior carrying this attribute in that pool
            call.experimental_thread_pool = pool  # type: ignore[attr-defined]
        return call

    def _wrap_stream(
        self, fn: Callable[[Any, Any], Iterator[Any]], method: str, streaming: bool = False
    ) -> Callable[[Any, Any], Iterator[Any]]:
        def call(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            ids, token, status, started = ["-"], None, "OK", time.perf_counter()
            caller = self._authenticate(context, ids)
            with self._span(context, method, caller) as span:
                try:
                    token = self._enter(method, ids, span, caller)
                    yield from fn(_decoded(request, streaming), context)
                    if not context.is_active():  # ended meanwhile: a follow the client left
                        status = "CANCELLED"
                except GeneratorExit:  # the client went away mid-stream
                    status = "CANCELLED"
                    raise
                except Exception as exc:  # mapped, never leaked
                    status = _status_of(exc)
                    _abort(context, exc, ids[0], method)
                finally:
                    _leave(span, method, status, started, token)

        return call
