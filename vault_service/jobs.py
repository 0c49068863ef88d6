"""Background jobs: each loop with its own name, interval, metric label and failure event.

The server runs every job of :func:`server_jobs` on a thread of its own, so that one slow or
failing job neither delays nor mislabels another. A run's outcome is counted as
``vault_sweeper_runs_total{job, outcome}``; a failure is logged (type only, never the text) and
raises the job's own security event; the next interval retries.

Jobs that one replica of a deployment at a time should run (checkpoints, prune, key epochs,
dormancy) are *leased*: they run only in the process holding the ``maintenance`` lease, which a
lease loop renews; another replica takes it over when this one stops renewing.
"""

from __future__ import annotations

import logging
import math
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from vault_service import metrics, security_events
from vault_service.app import Assembly, replay
from vault_service.audit.witness import WitnessRefused
from vault_service.config import Config
from vault_service.lifecycle import audit_log, rotation
from vault_service.lifecycle.audit_log import ChainBroken
from vault_service.logs import fields

log = logging.getLogger("vault_service.jobs")

#: the lease under which one replica at a time runs the leased jobs
MAINTENANCE_LEASE = "maintenance"
_DAY = 86400.0


def _emit(event: str) -> Callable[[Exception], None]:
    return lambda exc: security_events.emit(event, job_error=type(exc).__name__)


@dataclass(frozen=True)
class Job:
    """One background job."""

    #: the metric label and thread name
    name: str
    #: seconds between runs (the first run comes one interval after start)
    interval: float
    run: Callable[[], object]
    #: what a failure raises (a security event)
    on_failure: Callable[[Exception], None]
    #: runs only in the replica holding the maintenance lease
    leased: bool = False


def run_once(job: Job) -> bool:
    """Run a job once, counting the outcome; False (logged, no detail) if it failed."""
    try:
        job.run()
    except Exception as exc:
        metrics.SWEEPER_RUNS.labels(job.name, "failed").inc()
        log.warning("job failed; will retry", extra=fields(job=job.name, error_type=type(exc).__name__))
        job.on_failure(exc)
        return False
    metrics.SWEEPER_RUNS.labels(job.name, "ok").inc()
    return True


def _checkpoint_failed(exc: Exception) -> None:
    if isinstance(exc, ChainBroken | WitnessRefused):
        return  # the sequencer raised its own event, and halted
    security_events.emit("audit_checkpoint_failed")


def write_checkpoint(assembly: Assembly) -> None:
    """The sequencer: integrate new audit entries, sign and witness the tree's checkpoint
    (a broken chain or a refusal by the witness halts the release of plaintext)."""
    svc = assembly.service
    if assembly.witnessing is None:
        audit_log.write_checkpoint(svc.store, assembly.checkpoints, svc.signing_key, svc.clock.now())
        return
    assembly.witnessing.checkpoint(svc.clock.now())


def final_checkpoint(assembly: Assembly) -> None:
    """The last checkpoint of a stopping server: signs everything written (failures reported)."""
    run_once(Job("audit_checkpoint", 0.0, lambda: write_checkpoint(assembly), _checkpoint_failed))


def server_jobs(assembly: Assembly, config: Config) -> list[Job]:
    """Every background job of a server process, with its configured interval."""
    svc = assembly.service
    purge = config.server.purge_interval_seconds
    blob_age = config.storage.partial_upload_max_age_seconds
    lc = config.lifecycle

    def purge_all() -> None:
        while svc.purge_erased() > 0:
            pass

    def retention() -> None:
        try:
            svc.sweep_retention()
        except Exception:
            # what is due and still there: counted only when a sweep did not finish
            try:
                metrics.set_backlog("retention", len(svc.sweep_retention(dry_run=True)))
            except Exception:
                log.warning("retention backlog unknown", extra=fields(job="retention_sweep"))
            raise
        metrics.set_backlog("retention", 0)  # everything due was shredded (held: not due)

    def prune() -> None:
        w = assembly.witnessing
        audit_log.prune(
            svc.store,
            assembly.checkpoints,
            svc.signing_key,
            config.audit.retention_days * _DAY,
            svc.clock.now(),
            origin=w.audit_origin if w else "",
            publisher=w.audit_publisher if w else None,
        )

    def check_logs() -> None:
        if assembly.witnessing is not None:
            assembly.witnessing.check(lambda: replay(svc))

    def epochs() -> None:
        rotation.run_epochs(
            svc.store,
            svc.provider,
            svc.clock.now(),
            lc.rotate_every_days * _DAY,
            lc.backup_window_days * _DAY,
        )

    witnessed = threading.Event()  # set once no record is left to witness: the job stops

    def witnesses() -> None:
        if not witnessed.is_set() and not audit_log.backfill_witnesses(svc.store, svc.clock.now()):
            witnessed.set()

    def dormancy() -> None:
        svc.sweep_dormancy()

    idle_since = [-math.inf]  # when a backfill run last found nothing to re-index

    def index() -> None:
        # every purge interval while there is work, then hourly: it never stops for good, as a
        # separated subject's records wait for its reactivation
        now = time.monotonic()
        if now - idle_since[0] >= epoch_every and svc.search.backfill() == 0:
            idle_since[0] = now

    checkpoint_every = config.audit.checkpoint_interval_seconds
    epoch_every = lc.epoch_check_interval_seconds
    return [
        Job("purge_erased", purge, purge_all, _emit("purge_job_failed")),
        Job("share_sweep", purge, svc.shares.sweep, _emit("share_sweep_job_failed")),
        Job("retention_sweep", purge, retention, _emit("retention_job_failed")),
        Job(
            "pending_deletions",
            purge,
            svc.eraser.carry_out_unheld,
            _emit("pending_deletions_job_failed"),
        ),
        Job(
            "blob_sweep",
            max(purge, min(blob_age, 3600.0)),
            lambda: svc.sweep_blobs(blob_age),
            _emit("blob_sweep_job_failed"),
        ),
        Job(
            "audit_checkpoint",
            checkpoint_every,
            lambda: write_checkpoint(assembly),
            _checkpoint_failed,
            leased=True,
        ),
        Job(
            "witness_check",
            config.witness.check_interval_seconds,
            check_logs,
            _emit("witness_check_job_failed"),
        ),
        Job(
            "audit_prune",
            config.audit.prune_interval_seconds,
            prune,
            _emit("audit_prune_job_failed"),
            leased=True,
        ),
        Job("key_epochs", epoch_every, epochs, _emit("key_epoch_job_failed"), leased=True),
        Job("dormancy", epoch_every, dormancy, _emit("dormancy_job_failed"), leased=True),
        Job("index_backfill", purge, index, _emit("index_backfill_job_failed"), leased=True),
        Job(
            "witness_backfill",
            purge,
            witnesses,
            _emit("witness_backfill_job_failed"),
            leased=True,
        ),
    ]


class JobRunner:
    """Runs jobs on their own threads until stopped (see the module docstring)."""

    def __init__(self, assembly: Assembly, jobs: Sequence[Job], lease_interval: float) -> None:
        self._assembly = assembly
        self._jobs = list(jobs)
        self._lease_interval = lease_interval
        self._stop = threading.Event()
        self._leader = threading.Event()
        #: this process among the replicas (for the lease); says nothing about its data
        self.replica_id = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self._threads = [
            threading.Thread(target=self._loop, args=(job,), name=f"job-{job.name}", daemon=True)
            for job in self._jobs
        ]
        if any(job.leased for job in self._jobs):
            self._threads.append(
                threading.Thread(target=self._lease_loop, name="job-lease", daemon=True)
            )

    def start(self) -> None:
        for t in self._threads:
            t.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop every loop, waiting for a run in progress to finish (up to ``timeout``)."""
        self._stop.set()
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(timeout=max(0.0, deadline - time.monotonic()))
            if t.is_alive():
                log.warning("job still running at shutdown", extra=fields(job=t.name))

    def _loop(self, job: Job) -> None:
        while not self._stop.wait(job.interval):
            if job.leased and not self._leader.is_set():
                continue
            run_once(job)

    def _lease_loop(self) -> None:
        """Take or renew the maintenance lease now and every lease interval."""
        svc = self._assembly.service
        ttl = 2.5 * self._lease_interval
        while True:
            try:
                held = svc.store.acquire_lease(MAINTENANCE_LEASE, self.replica_id, svc.clock.now(), ttl)
            except Exception:
                log.warning("maintenance lease unavailable; will retry", extra=fields(job="lease"))
                held = False
            if held:
                self._leader.set()
            else:
                self._leader.clear()
            if self._stop.wait(self._lease_interval):
                return
