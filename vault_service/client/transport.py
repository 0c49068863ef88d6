"""The connection under every client method: the channel and its credentials, the bearer token
as call metadata, the default deadline, and gRPC statuses turned into ``vault_service.errors``
classes carrying the server's correlation id. An application's own per-call metadata (its
tracer's W3C ``traceparent``, so that the vault's spans join its trace) comes from the optional
``call_metadata`` hook: the client itself depends on no tracing library.

:class:`Transport` is the base of the capability mixins that make up ``VaultClient``; they call
the service through ``self._call`` (unary and client-streaming calls) and ``self._stream``
(server-streaming calls).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import grpc

from vault_service.api.v1 import vault_pb2_grpc as pb_grpc
from vault_service.errors import (
    AlreadyExists,
    DataLoss,
    FailedPrecondition,
    Internal,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
    VaultError,
)

R = TypeVar("R")

#: the default deadline of calls that move a record's content (uploads and downloads), at least
LARGE_OBJECT_TIMEOUT = 600.0

_BY_CODE: dict[grpc.StatusCode, type[VaultError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExists,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPrecondition,
    grpc.StatusCode.UNAVAILABLE: Unavailable,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhausted,
    grpc.StatusCode.DATA_LOSS: DataLoss,
    grpc.StatusCode.DEADLINE_EXCEEDED: Unavailable,
}


_BY_NUMBER = {c.value[0]: c for c in grpc.StatusCode}


def status_error(exc: grpc.RpcError) -> VaultError:
    """The project's error for a failed call: the class its status code maps to (``Internal``
    for any other), the status details as message, the ``x-correlation-id`` trailer as
    ``correlation_id``."""
    code = exc.code() if hasattr(exc, "code") else grpc.StatusCode.UNKNOWN
    details = exc.details() if hasattr(exc, "details") else None
    error = _BY_CODE.get(code, Internal)(details or None)
    trailing = exc.trailing_metadata() if hasattr(exc, "trailing_metadata") else None
    for item in trailing or ():
        value: object = item.value  # str at run time for non-binary keys, whatever the stubs say
        if item.key == "x-correlation-id" and isinstance(value, str):
            error.correlation_id = value
    return error


def error_of_code(code: int, message: str) -> VaultError:
    """The project's error for a status code number and message (a batch item's status)."""
    status = _BY_NUMBER.get(code, grpc.StatusCode.UNKNOWN)
    return _BY_CODE.get(status, Internal)(message or None)


def tls_credentials(*, ca_file: str, cert_file: str = "", key_file: str = "") -> grpc.ChannelCredentials:
    """TLS channel credentials: ``ca_file`` verifies the server; ``cert_file``/``key_file``
    present a client certificate (mTLS)."""
    return grpc.ssl_channel_credentials(
        root_certificates=Path(ca_file).read_bytes(),
        private_key=Path(key_file).read_bytes() if key_file else None,
        certificate_chain=Path(cert_file).read_bytes() if cert_file else None,
    )


class Transport:
    """A channel to vault-service and the calls over it (see the module docstring)."""

    def __init__(
        self,
        address: str,
        token: str,
        *,
        timeout: float = 10.0,
        channel_credentials: grpc.ChannelCredentials | None = None,
        options: list[tuple[str, Any]] | None = None,
        call_metadata: Callable[[], Iterable[tuple[str, str]]] | None = None,
    ) -> None:
        opts = options or [
            ("grpc.max_receive_message_length", 64 * 1024 * 1024),
            ("grpc.max_send_message_length", 64 * 1024 * 1024),
        ]
        if channel_credentials is None:
            self._channel = grpc.insecure_channel(address, options=opts)
        else:
            self._channel = grpc.secure_channel(address, channel_credentials, options=opts)
        self._stub = pb_grpc.VaultStub(self._channel)
        self._metadata = (("authorization", f"Bearer {token}"),) if token else ()
        self._call_metadata = call_metadata
        self._timeout = timeout

    def __repr__(self) -> str:
        return "VaultClient(<token redacted>)"

    def close(self) -> None:
        """Close the channel."""
        self._channel.close()

    def _metadata_now(self) -> tuple[tuple[str, str], ...]:
        """The token, and whatever the ``call_metadata`` hook adds for this call."""
        if self._call_metadata is None:
            return self._metadata
        return self._metadata + tuple(self._call_metadata())

    def _deadline(self, timeout: float | None) -> float:
        """The deadline of a call: ``timeout``, else the client's default."""
        return self._timeout if timeout is None else timeout

    def _large_object_deadline(self, timeout: float | None) -> float:
        """The deadline of a call that moves content: ``timeout``, else the client's default
        but at least :data:`LARGE_OBJECT_TIMEOUT`."""
        return timeout if timeout is not None else max(self._timeout, LARGE_OBJECT_TIMEOUT)

    def _call(self, method: Callable[..., R], request: Any, timeout: float | None) -> R:
        """A unary (or client-streaming) call with the token and a deadline."""
        try:
            return method(request, metadata=self._metadata_now(), timeout=self._deadline(timeout))
        except grpc.RpcError as exc:
            raise status_error(exc) from None

    def _stream(self, method: Callable[..., Iterable[R]], request: Any, deadline: float) -> Iterator[R]:
        """The responses of a server-streaming call, each as it arrives; a failure, at the call
        or mid-stream, raises the project's error."""
        try:
            yield from method(request, metadata=self._metadata_now(), timeout=deadline)
        except grpc.RpcError as exc:
            raise status_error(exc) from None
