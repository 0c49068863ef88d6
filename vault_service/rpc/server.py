"""Assemble and run the gRPC server from a :class:`~vault_service.config.Config`.

:func:`build_service` wires the store, blobs, key provider and policy into a
:class:`~vault_service.service.VaultService`; :func:`start_server` binds a real gRPC server (port 0
picks a free port, which the tests use) with health checking and reflection; :func:`serve` blocks
until SIGTERM/SIGINT, turning health NOT_SERVING before it stops taking calls.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import secrets
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Mapping
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TextIO

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from vault_service import metrics, security_events
from vault_service.api.v1 import vault_pb2, vault_pb2_grpc
from vault_service.audit.checkpoints import CheckpointStore, FilesystemCheckpointStore
from vault_service.clock import Clock, SystemClock
from vault_service.config import Config
from vault_service.errors import ConfigError
from vault_service.key_providers.cache import CacheLimits, SubjectKeyCache
from vault_service.key_providers.factory import build_provider
from vault_service.lifecycle import audit_log, rotation
from vault_service.lifecycle.audit_log import ChainBroken
from vault_service.lifecycle.ledger import ErasureLedger, LedgerTampered
from vault_service.logs import fields
from vault_service.metrics import MetricsEndpoint
from vault_service.policy import Policy, Principal, PrincipalEntry, load_policy
from vault_service.rpc.auth import Authenticator, token_digest
from vault_service.rpc.interceptor import VaultInterceptor
from vault_service.rpc.servicer import VaultServicer
from vault_service.security_events import DenialWatch
from vault_service.service import Limits, VaultService
from vault_service.storage import BlobStore, FilesystemBlobStore, RecordStore
from vault_service.storage.factory import open_migrated_store

log = logging.getLogger("vault_service.server")

SERVICE_NAME = vault_pb2.DESCRIPTOR.services_by_name["Vault"].full_name
DEV_PRINCIPAL = "developer"
#: the lease under which one replica at a time runs checkpoints, epochs and the dormancy sweep
MAINTENANCE_LEASE = "maintenance"


def _is_loopback(listen: str) -> bool:
    host = listen.rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def dev_token_for(config: Config) -> str | None:
    """The development token, if ``server.dev_token_file`` is set (loopback only): read from the
    file, or created in it. Worker processes share it because their supervisor creates it first."""
    if not config.server.dev_token_file:
        return None
    if not _is_loopback(config.server.listen):
        raise ConfigError("server.dev_token_file is only allowed on a loopback address")
    return _dev_token(config.path(config.server.dev_token_file))


def _dev_token(path: Path) -> str:
    """Read the development token file, or create it (mode 0600) with a fresh random token."""
    if path.exists():
        if path.stat().st_mode & 0o077:
            raise ConfigError(f"{path}: development token file must be mode 0600")
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    token = "dev-" + secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    return token


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


def build_blob_store(config: Config, env: Mapping[str, str]) -> BlobStore:
    """The configured blob store."""
    st = config.storage
    if st.blob_backend == "s3":
        if not st.s3_bucket:
            raise ConfigError('storage.s3_bucket: required with blob_backend = "s3"')
        from vault_service.storage.s3 import S3BlobStore

        return S3BlobStore(
            st.s3_bucket,
            prefix=st.s3_prefix,
            endpoint_url=st.s3_endpoint_url or None,
            region=st.s3_region,
            env=env,
        )
    return FilesystemBlobStore(config.path(st.blob_dir))


def load_policy_file(config: Config) -> Policy:
    """Read and validate the policy file named by the config."""
    try:
        text = config.policy_path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"{config.policy_path}: policy file not found") from None
    return load_policy(text, str(config.policy_path))


@dataclass
class Assembly:
    """Everything :func:`build_service` made, so that callers can close it."""

    service: VaultService
    store: RecordStore
    checkpoints: CheckpointStore
    dev_token: str | None = None


def build_service(config: Config, env: Mapping[str, str], clock: Clock | None = None) -> Assembly:
    """Open storage (migrating it), the key provider and the policy; no network."""
    clock = clock or SystemClock()
    policy = load_policy_file(config)
    dev_token = dev_token_for(config)
    if dev_token is not None:
        if config.server.dev_role not in policy.roles:
            raise ConfigError(f"server.dev_role: unknown role {config.server.dev_role!r}")
        policy = policy.with_principal(
            PrincipalEntry(Principal(DEV_PRINCIPAL, config.server.dev_role), token_digest(dev_token))
        )
    store = open_migrated_store(config)
    blobs = build_blob_store(config, env)
    blobs.remove_partials(config.storage.partial_upload_max_age_seconds)
    provider = build_provider(config, env, clock)
    cache = SubjectKeyCache(
        CacheLimits(
            max_entries=config.keys.cache_max_entries,
            max_age_seconds=config.keys.cache_max_age_seconds,
            max_uses=config.keys.cache_max_uses,
        ),
        clock,
    )
    limits = Limits(
        max_content_bytes=max(config.server.max_message_bytes - 64 * 1024, 0),
        max_object_bytes=config.storage.max_object_bytes,
    )
    ledger = ErasureLedger(config.path(config.lifecycle.ledger_path))
    service = VaultService(store, blobs, provider, policy, clock, limits, cache, ledger)
    service.denials = DenialWatch(
        config.security.repeated_denials_threshold, config.security.repeated_denials_window_seconds
    )
    try:
        replayed = service.replay_erasure_ledger()  # before anything is served
    except LedgerTampered as exc:
        raise ConfigError(f"{ledger.path}: {exc}; refusing to start") from None
    if replayed:
        log.warning("erasure ledger replay erased subjects again", extra=fields(subjects=replayed))
    checkpoints = FilesystemCheckpointStore(config.path(config.audit.checkpoint_path))
    return Assembly(service, store, checkpoints, dev_token)


def _job(name: str, fn: Callable[[], object]) -> bool:
    """Run one background job, counting the run by outcome; False (logged, no detail) if it
    failed: the next round retries."""
    try:
        fn()
    except Exception as exc:
        metrics.SWEEPER_RUNS.labels(name, "failed").inc()
        log.warning("job failed; will retry", extra=fields(job=name, error_type=type(exc).__name__))
        return False
    metrics.SWEEPER_RUNS.labels(name, "ok").inc()
    return True


class RunningServer:
    """A started server: its port, health servicer, the metrics endpoint if configured, and
    three background loops: purges and sweeps, the key-provider health monitor, and maintenance
    under a lease (checkpoints, prune, key epochs, dormancy)."""

    def __init__(
        self,
        server: grpc.Server,
        port: int,
        health_servicer: health.HealthServicer,
        assembly: Assembly,
        config: Config,
    ) -> None:
        self.server = server
        self.port = port
        self.health = health_servicer
        self.assembly = assembly
        self._unhealthy_after = config.keys.unhealthy_after_seconds
        self._stop = threading.Event()
        #: set on SIGTERM: health stays NOT_SERVING whatever the provider monitor finds
        self._draining = threading.Event()
        self._serving = True
        #: the ``/metrics`` endpoint, when ``metrics.listen`` is set
        self.metrics: MetricsEndpoint | None = None
        #: this process among the replicas (for job leases); says nothing about its data
        self.replica_id = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self._threads = [
            threading.Thread(
                target=self._purge_loop,
                args=(
                    config.server.purge_interval_seconds,
                    config.storage.partial_upload_max_age_seconds,
                ),
                name="purge-erased",
                daemon=True,
            ),
            threading.Thread(target=self._health_loop, name="provider-health", daemon=True),
            threading.Thread(
                target=self._audit_loop, args=(config,), name="audit-checkpoints", daemon=True
            ),
        ]
        for t in self._threads:
            t.start()

    @property
    def service(self) -> VaultService:
        return self.assembly.service

    def _purge_loop(self, interval: float, blob_age: float) -> None:
        svc = self.service
        last_blob_sweep = time.monotonic()
        while not self._stop.wait(interval):
            if time.monotonic() - last_blob_sweep >= min(blob_age, 3600.0):
                last_blob_sweep = time.monotonic()
                _job("blob_sweep", lambda: svc.sweep_blobs(blob_age))
            _job("purge_erased", self._purge_all)
            _job("share_sweep", svc.shares.sweep)
            if _job("retention_sweep", svc.sweep_retention):
                metrics.set_backlog("retention", 0)  # it shredded everything due (held: not due)
            else:  # what is due and still there: counted only when the sweep did not finish
                _job(
                    "retention_backlog",
                    lambda: metrics.set_backlog("retention", len(svc.sweep_retention(dry_run=True))),
                )

    def _purge_all(self) -> None:
        while self.service.purge_erased() > 0:
            pass

    def _audit_loop(self, config: Config) -> None:
        """Maintenance that one replica at a time runs, under the ``maintenance`` lease: sign the
        head of the audit chain every checkpoint interval, prune past retention, run the
        root-key epoch job and the dormancy sweep every epoch check interval. Another replica
        takes the lease over when this one stops renewing it."""
        svc = self.service
        interval = config.audit.checkpoint_interval_seconds
        last_prune = 0.0
        last_epoch = time.monotonic()
        while not self._stop.wait(interval):
            try:
                held = svc.store.acquire_lease(
                    MAINTENANCE_LEASE, self.replica_id, svc.clock.now(), 2.5 * interval
                )
            except Exception:
                log.warning("maintenance lease unavailable; will retry", extra=fields(job="lease"))
                continue
            if not held:
                continue
            try:
                now = svc.clock.now()
                audit_log.write_checkpoint(svc.store, self.assembly.checkpoints, svc.signing_key, now)
                if now - last_prune >= config.audit.prune_interval_seconds:
                    audit_log.prune(
                        svc.store,
                        self.assembly.checkpoints,
                        svc.signing_key,
                        config.audit.retention_days * 86400,
                        now,
                    )
                    last_prune = now
            except ChainBroken:
                metrics.SWEEPER_RUNS.labels("audit_checkpoint", "failed").inc()
                security_events.emit("audit_verification_failed", stage="checkpoint")
            except Exception:
                metrics.SWEEPER_RUNS.labels("audit_checkpoint", "failed").inc()
                security_events.emit("audit_checkpoint_failed")
            else:
                metrics.SWEEPER_RUNS.labels("audit_checkpoint", "ok").inc()
            if time.monotonic() - last_epoch >= config.lifecycle.epoch_check_interval_seconds:
                last_epoch = time.monotonic()
                try:
                    lc = config.lifecycle
                    rotation.run_epochs(
                        svc.store,
                        svc.provider,
                        svc.clock.now(),
                        lc.rotate_every_days * 86400,
                        lc.backup_window_days * 86400,
                    )
                    svc.sweep_dormancy(
                        lc.dormant_after_days * 86400,
                        lc.dormancy_notice_days * 86400,
                        lc.dormant_destroy_after_days * 86400,
                    )
                except Exception:
                    metrics.SWEEPER_RUNS.labels("key_epochs", "failed").inc()
                    security_events.emit("key_epoch_job_failed")
                else:
                    metrics.SWEEPER_RUNS.labels("key_epochs", "ok").inc()

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
        self._serving = serving
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if serving
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
            svc.store.records_by_category, provider_calls, cache_stats, lambda: self._serving
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
        self.server.stop(grace).wait()
        for t in self._threads:
            t.join(timeout=5)
        try:
            svc = self.service
            audit_log.write_checkpoint(
                svc.store, self.assembly.checkpoints, svc.signing_key, svc.clock.now()
            )
        except ChainBroken:
            security_events.emit("audit_verification_failed", stage="checkpoint")
        except Exception:
            security_events.emit("audit_checkpoint_failed")
        if self.metrics is not None:
            self.metrics.close()
        self.assembly.store.close()


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
    if not tls.cert_file and not _is_loopback(config.server.listen):
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
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=config.server.workers, thread_name_prefix="rpc"),
        interceptors=[VaultInterceptor(Authenticator(assembly.service.policy))],
        options=options,
        maximum_concurrent_rpcs=config.server.max_concurrent_rpcs,
    )
    vault_pb2_grpc.add_VaultServicer_to_server(VaultServicer(assembly.service), server)
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
    server.start()
    running = RunningServer(server, port, health_servicer, assembly, config)
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
    done = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        done.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
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
