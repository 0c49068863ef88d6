"""Serve the vault over gRPC: :func:`start_server` binds a real gRPC server (port 0 picks a free
port, which the tests use) with health checking and reflection around what the composition root
(:mod:`vault_service.app`) built, and starts the background jobs; :func:`serve` blocks until
SIGTERM/SIGINT, turning health NOT_SERVING before it stops taking calls.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent import futures
from types import FrameType
from typing import TextIO

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from vault_service import metrics, security_events, tracing
from vault_service.api.v1 import vault_pb2, vault_pb2_grpc
from vault_service.app import DEV_PRINCIPAL, Assembly, build_service, is_loopback
from vault_service.clock import Clock
from vault_service.config import Config
from vault_service.errors import ConfigError
from vault_service.jobs import JobRunner, final_checkpoint, server_jobs
from vault_service.logs import fields
from vault_service.metrics import MetricsEndpoint
from vault_service.rpc.auth import Authenticator
from vault_service.rpc.interceptor import VaultInterceptor
from vault_service.rpc.servicer import VaultServicer
from vault_service.rpc.sizing import RECORD_CALLS, record_threads, threads_per_process
from vault_service.service import VaultService

log = logging.getLogger("vault_service.server")

SERVICE_NAME = vault_pb2.DESCRIPTOR.services_by_name["Vault"].full_name


def _read_pem(config: Config, value: str, what: str) -> bytes:
    path = config.path(value)
    try:
        return path.read_bytes()
    except OSError:
        raise ConfigError(f"tls.{what}: cannot read {path}") from None


def _server_credentials(config: Config) -> grpc.ServerCredentials:
    tls = config.tls
    key_path = config.path(tls.key_file)
    if key_path.exists() and key_path.stat().st_mode & 0o077:
        raise ConfigError(f"tls.key_file: {key_path} is accessible by group or others; chmod 600")
    pair = (_read_pem(config, tls.key_file, "key_file"), _read_pem(config, tls.cert_file, "cert_file"))
    if tls.client_ca_file:
        return grpc.ssl_server_credentials(
            [pair],
            root_certificates=_read_pem(config, tls.client_ca_file, "client_ca_file"),
            require_client_auth=tls.require_client_cert,
        )
    return grpc.ssl_server_credentials([pair])


class RunningServer:
    """A started server: its port, health servicer, the metrics endpoint if configured, the
    background jobs (:mod:`vault_service.jobs`) and the key-provider health monitor."""

    def __init__(
        self,
        server: grpc.Server,
        port: int,
        health_servicer: health.HealthServicer,
        assembly: Assembly,
        config: Config,
        executors: Sequence[futures.ThreadPoolExecutor] = (),
        servicer: VaultServicer | None = None,
    ) -> None:
        self.server = server
        #: the servicer, told when the server stops (its followed audit tails end at their next poll)
        self._servicer = servicer
        #: the threads that run the handlers (stop waits for them before closing the store)
        self._executors = tuple(executors)
        self.port = port
        self.health = health_servicer
        self.assembly = assembly
        self._unhealthy_after = config.keys.unhealthy_after_seconds
        #: whether this server installed tracing (and so shuts it down when it stops)
        self._traced = config.tracing.exporter != "off"
        self._stop = threading.Event()
        #: set on SIGTERM: health stays NOT_SERVING whatever the provider monitor finds
        self._draining = threading.Event()
        self._serving = True
        #: the ``/metrics`` endpoint, when ``metrics.listen`` is set
        self.metrics: MetricsEndpoint | None = None
        self.jobs = JobRunner(
            assembly, server_jobs(assembly, config), config.audit.checkpoint_interval_seconds
        )
        self.jobs.start()
        self._monitor = threading.Thread(target=self._health_loop, name="provider-health", daemon=True)
        self._monitor.start()
        self.service.integrity.on_change(lambda _halted: self._set(self._serving))

    @property
    def service(self) -> VaultService:
        return self.assembly.service

    @property
    def replica_id(self) -> str:
        """This process among the replicas (for job leases)."""
        return self.jobs.replica_id

    def _health_loop(self) -> None:
        """NOT_SERVING once the key provider has failed for ``unhealthy_after_seconds``; while
        unhealthy, probe it every second and turn SERVING again on the first success."""
        stats = self.service.provider.stats
        interval = min(1.0, max(self._unhealthy_after / 4, 0.05))
        while not self._stop.wait(interval):
            since = stats.failing_since
            failing = since is not None and time.monotonic() - since >= self._unhealthy_after
            if failing and self._serving:
                security_events.emit("key_provider_down", health="NOT_SERVING")
                self._set(False)
            if not self._serving:
                try:
                    self.service.provider.probe()
                except Exception:
                    log.info("key provider probe failed; still NOT_SERVING")
                    continue
                if not self._stop.is_set() and not self._draining.is_set():
                    log.warning("key provider recovered", extra=fields(health="SERVING"))
                    self._set(True)

    def _set(self, serving: bool) -> None:
        """Record the provider's (or shutdown's) verdict; health is SERVING only while it is
        and the integrity halt is not set (lifecycle/integrity.py)."""
        self._serving = serving
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if serving and not self.service.integrity.halted
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for name in ("", SERVICE_NAME):
            self.health.set(name, status)

    def start_metrics(self, listen: str) -> MetricsEndpoint:
        """Serve ``/metrics`` on ``listen`` (host:port; port 0 picks one): the process-wide
        counters plus this server's state gauges."""
        svc = self.service
        stats = svc.provider.stats

        def provider_calls() -> dict[str, int]:
            return {
                "encrypt": stats.encrypt_calls,
                "decrypt": stats.decrypt_calls,
                "rewrap": stats.rewrap_calls,
                "failed": stats.failures,
            }

        def cache_stats() -> tuple[int, int]:
            cs = svc.cache.stats()
            return cs.hits, cs.misses

        state = metrics.StateCollector(
            svc.store.records_by_category,
            provider_calls,
            cache_stats,
            lambda: self._serving and not svc.integrity.halted,
        )
        host, _, port = listen.rpartition(":")
        self.metrics = MetricsEndpoint(host.strip("[]"), int(port), metrics.server_registry(state))
        return self.metrics

    def drain(self) -> None:
        """Health NOT_SERVING for good (shutdown has begun); calls are still taken."""
        self._draining.set()
        self._set(False)

    def set_serving(self, serving: bool) -> None:
        """Force the health status (start-up and shutdown)."""
        self._set(serving)

    def stop(self, grace: float = 5.0) -> None:
        """Health NOT_SERVING first, then stop taking calls; in-flight calls get ``grace``; a
        last checkpoint signs everything written."""
        self._stop.set()
        self._set(False)
        if self._servicer is not None:
            self._servicer.tails.stopping.set()  # a followed tail would hold the grace period
        self.server.stop(grace).wait()
        for executor in self._executors:
            # a handler aborted by the stop may still be running: nothing may use the store
            # once it is closed (a restore may be about to replace its files)
            executor.shutdown(wait=True)
        self.jobs.stop()
        self._monitor.join(timeout=5)
        final_checkpoint(self.assembly)
        if self.metrics is not None:
            self.metrics.close()
        if self._traced:
            tracing.shutdown()  # the last spans, bounded by tracing.otlp_timeout_seconds
        self.assembly.close()


def start_server(
    config: Config,
    env: Mapping[str, str],
    clock: Clock | None = None,
    assembly: Assembly | None = None,
    reuse_port: bool = False,
) -> RunningServer:
    """Build the service and start a gRPC server on ``config.server.listen``. With
    ``reuse_port``, other processes may listen on the same port (SO_REUSEPORT) and the kernel
    spreads connections among them."""
    tls = config.tls
    if not tls.cert_file and not is_loopback(config.server.listen):
        raise ConfigError(
            "server.listen: plaintext gRPC is served on loopback addresses only; configure [tls] "
            "to listen elsewhere"
        )

    assembly = assembly or build_service(config, env, clock)
    options = [
        ("grpc.max_receive_message_length", config.server.max_message_bytes),
        ("grpc.max_send_message_length", config.server.max_message_bytes),
        ("grpc.so_reuseport", 1 if reuse_port else 0),
    ]
    threads = threads_per_process(config)
    executors = [futures.ThreadPoolExecutor(max_workers=threads, thread_name_prefix="rpc")]
    pools: dict[str, futures.ThreadPoolExecutor] = {}
    if lane := record_threads(config):
        executors.append(futures.ThreadPoolExecutor(max_workers=lane, thread_name_prefix="rpc-record"))
        pools = dict.fromkeys(RECORD_CALLS, executors[-1])
    server = grpc.server(
        executors[0],
        interceptors=[VaultInterceptor(Authenticator(assembly.service.policy), pools)],
        options=options,
        maximum_concurrent_rpcs=config.server.max_concurrent_rpcs,
    )
    # a followed audit tail holds a worker thread: one is always left for the other calls
    follows = min(config.audit.tail_max_follows, threads - 1)
    servicer = VaultServicer(assembly.service, config.audit.tail_poll_seconds, follows)
    vault_pb2_grpc.add_VaultServicer_to_server(servicer, server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    if tls.cert_file:
        port = server.add_secure_port(config.server.listen, _server_credentials(config))
    else:
        port = server.add_insecure_port(config.server.listen)
    if port == 0:
        raise ConfigError(f"server.listen: cannot bind {config.server.listen}")
    if config.tracing.exporter != "off":
        tracing.configure(config.tracing)
    server.start()
    running = RunningServer(server, port, health_servicer, assembly, config, executors, servicer)
    if config.metrics.listen:
        try:
            running.start_metrics(config.metrics.listen)
        except OSError:
            running.stop(0)
            raise ConfigError(f"metrics.listen: cannot bind {config.metrics.listen}") from None
    running.set_serving(True)
    return running


WORKER_READY = "vault-service worker ready"


def listening_lines(host: str, port: int, dev_token: str | None, processes: int = 1) -> list[str]:
    """What ``vaultctl serve`` prints once it serves: the address, and in development the token
    and an example call."""
    workers = f" ({processes} worker processes)" if processes > 1 else ""
    lines = [f"vault-service listening on {host}:{port}{workers}"]
    if dev_token:
        lines += [
            f"development token (principal {DEV_PRINCIPAL!r}): {dev_token}",
            "example:",
            f"  export VAULT_SERVICE_TOKEN={dev_token}",
            f"  .venv/bin/vaultctl record put --address {host}:{port} --subject member-1 "
            "--category concern_text --field text='hello'",
        ]
    return lines


def serve(
    config: Config, env: Mapping[str, str], out: TextIO | None = None, *, worker: bool = False
) -> int:
    """Run until SIGTERM or SIGINT. Prints the address (and the development token, if any); as
    one of several worker processes (``worker``), binds with SO_REUSEPORT and prints one
    readiness line for its supervisor instead."""
    stream = out or sys.stdout
    done = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        done.set()

    # before the readiness line: a supervisor may stop us the moment it reads it
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    running = start_server(config, env, reuse_port=worker)
    host = config.server.listen.rsplit(":", 1)[0]
    if worker:
        lines = [f"{WORKER_READY} pid={os.getpid()}"]
    else:
        lines = listening_lines(host, running.port, running.assembly.dev_token)
        if running.metrics is not None:
            metrics_host = config.metrics.listen.rpartition(":")[0]
            lines.append(f"metrics on http://{metrics_host}:{running.metrics.port}/metrics")
    print("\n".join(lines), file=stream, flush=True)
    done.wait()
    log.info(
        "shutting down",
        extra=fields(
            drain_seconds=config.server.drain_seconds, grace_seconds=config.server.grace_seconds
        ),
    )
    running.drain()  # health first: balancers move away while calls are still taken
    time.sleep(config.server.drain_seconds)
    running.stop(config.server.grace_seconds)
    return 0
