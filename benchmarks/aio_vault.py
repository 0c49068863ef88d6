"""The vault's own servicer and interceptor on grpcio's asyncio server (``grpc.aio``), for the
comparison in benchmarks/bench_server_modes.py only: not a supported way to serve the vault.

``python -m benchmarks.aio_vault MODE CONFIG`` builds the vault as ``vaultctl serve`` does (the
same composition root and background jobs), binds ``server.listen`` and prints the same
listening line. ``MODE`` chooses how the synchronous handlers run:

- ``pool``: in grpc.aio's thread pool (``migration_thread_pool``, ``server.workers`` threads),
  the way grpc.aio runs any non-coroutine handler;
- ``inline``: called straight from the event loop, one call at a time. Nothing overlaps, so a
  call waiting on the network (a key provider, PostgreSQL) stalls every other call; measured
  to see what the thread hand-offs cost, not to serve.

Only unary calls are wrapped inline (streams keep the pool). In ``inline`` mode a failing call's
``context.abort`` is grpc.aio's coroutine, which the synchronous handler cannot await: the
benchmark's calls succeed (h2load checks every one), and a failure would show as a failed call.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Awaitable, Callable
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc

from vault_service.api.v1 import vault_pb2_grpc
from vault_service.app import build_service
from vault_service.config import load_config
from vault_service.jobs import JobRunner, server_jobs
from vault_service.rpc.auth import Authenticator
from vault_service.rpc.interceptor import VaultInterceptor
from vault_service.rpc.servicer import VaultServicer
from vault_service.rpc.sizing import threads_per_process


class _Adapter(grpc.aio.ServerInterceptor):
    """The vault's synchronous interceptor under grpc.aio (see the module docstring)."""

    def __init__(self, inner: VaultInterceptor, inline: bool) -> None:
        self._inner = inner
        self._inline = inline

    async def intercept_service(
        self, continuation: Callable[[Any], Awaitable[Any]], details: Any
    ) -> Any:
        handler = await continuation(details)
        wrapped = self._inner.intercept_service(lambda _: handler, details)
        if not self._inline or wrapped is None or wrapped.unary_unary is None:
            return wrapped
        call = wrapped.unary_unary

        async def inline(request: Any, context: Any) -> Any:
            return call(request, context)

        return grpc.unary_unary_rpc_method_handler(
            inline, wrapped.request_deserializer, wrapped.response_serializer
        )


async def _serve(config_path: Path, inline: bool) -> None:
    config = load_config(config_path, os.environ)
    assembly = build_service(config, os.environ)
    pool = futures.ThreadPoolExecutor(max_workers=threads_per_process(config))
    server = grpc.aio.server(
        migration_thread_pool=pool,
        interceptors=[_Adapter(VaultInterceptor(Authenticator(assembly.service.policy)), inline)],
        maximum_concurrent_rpcs=config.server.max_concurrent_rpcs,
    )
    vault_pb2_grpc.add_VaultServicer_to_server(
        VaultServicer(assembly.service, config.audit.tail_poll_seconds, 1), server
    )
    port = server.add_insecure_port(config.server.listen)
    await server.start()
    jobs = JobRunner(assembly, server_jobs(assembly, config), config.audit.checkpoint_interval_seconds)
    jobs.start()
    host = config.server.listen.rsplit(":", 1)[0]
    print(f"vault-service listening on {host}:{port} (grpc.aio)", flush=True)
    try:
        await server.wait_for_termination()
    finally:
        jobs.stop()
        assembly.close()


def main(argv: list[str]) -> int:
    mode, config = argv
    if mode not in ("pool", "inline"):
        raise SystemExit(f"mode: pool or inline, not {mode!r}")
    asyncio.run(_serve(Path(config), mode == "inline"))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
