"""Several server processes on one port: ``vaultctl serve --workers N``.

Python runs one thread at a time per process, so one process uses about one core; N processes
listening on the same port with SO_REUSEPORT use N, the kernel spreading connections among them.
The supervisor (this module) does what must happen once before the workers start: migrate the
store (so that workers do not race to migrate), create the development token file (so that they
share one token), and reserve the port (binding port 0 once, so that every worker gets the same
port). Then it starts N workers (``vaultctl serve --worker``), waits for each to say it is ready,
prints one listening line, restarts a worker that dies, and on SIGTERM/SIGINT passes SIGTERM on
and waits for every worker to finish its in-flight calls.

Workers are independent replicas of one another: everything they share is in the database (and
the blob store), and jobs coordinate there (row locks, SKIP LOCKED, leases).
"""

from __future__ import annotations

import logging
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from types import FrameType
from typing import TextIO

from vault_service.app import dev_token_for
from vault_service.config import Config
from vault_service.errors import ConfigError
from vault_service.logs import fields
from vault_service.rpc.server import WORKER_READY, listening_lines
from vault_service.storage.factory import open_migrated_store

log = logging.getLogger("vault_service.workers")

#: a worker that dies sooner than this after its start is restarted only after this long
_RESTART_BACKOFF_SECONDS = 1.0


def _worker_env(env: dict[str, str], config: Config, index: int) -> dict[str, str]:
    """Worker ``index``'s environment: its own metrics port (``metrics.listen`` port + index),
    since each process counts only its own calls."""
    if not config.metrics.listen:
        return env
    host, _, port = config.metrics.listen.rpartition(":")
    mine = int(port) + index if int(port) else 0  # port 0: each picks a free one
    return {**env, "VAULT_METRICS_LISTEN": f"{host}:{mine}"}


def _reserve_port(listen: str) -> tuple[socket.socket, str, int]:
    """Bind (but do not listen on) ``host:port`` with SO_REUSEPORT: the port is fixed for every
    worker, and a bound socket that does not listen takes no connections."""
    host, _, port = listen.rpartition(":")
    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host.strip("[]"), int(port)))
    except OSError:
        sock.close()
        raise ConfigError(f"server.listen: cannot bind {listen}") from None
    return sock, host, sock.getsockname()[1]


class _Worker:
    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.started = time.monotonic()
        self.proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, text=True)

    def wait_ready(self, timeout: float) -> bool:
        """True once the worker printed its readiness line (False if it exited first)."""
        stdout = self.proc.stdout
        assert stdout is not None
        result: list[str] = []
        reader = threading.Thread(target=lambda: result.append(stdout.readline()), daemon=True)
        reader.start()
        reader.join(timeout)
        return bool(result) and result[0].startswith(WORKER_READY)


def serve_workers(
    config: Config,
    config_path: Path,
    env: Mapping[str, str],
    processes: int,
    out: TextIO | None = None,
) -> int:
    """Supervise ``processes`` workers until SIGTERM/SIGINT; 0 when all stopped cleanly."""
    stream = out or sys.stdout
    dev_token = dev_token_for(config)
    open_migrated_store(config).close()
    reservation, host, port = _reserve_port(config.server.listen)
    child_env = {**env, "VAULT_SERVER_LISTEN": f"{host}:{port}"}
    argv = [sys.executable, "-m", "vault_service.cli.main", "--config", str(config_path)]
    argv += ["serve", "--worker"]
    stopping = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    workers: list[_Worker] = []
    try:
        for i in range(processes):
            worker = _Worker(argv, _worker_env(child_env, config, i))
            workers.append(worker)
            if not worker.wait_ready(60.0):
                raise ConfigError("a worker process did not start; see the log")
        lines = listening_lines(host, port, dev_token, processes)
        print("\n".join(lines), file=stream, flush=True)
        while not stopping.wait(0.5):
            for i, worker in enumerate(workers):
                if worker.proc.poll() is None:
                    continue
                log.error(
                    "worker exited; restarting",
                    extra=fields(worker_pid=worker.proc.pid, exit_code=worker.proc.returncode),
                )
                if time.monotonic() - worker.started < _RESTART_BACKOFF_SECONDS:
                    time.sleep(_RESTART_BACKOFF_SECONDS)
                workers[i] = _Worker(argv, _worker_env(child_env, config, i))
                workers[i].wait_ready(60.0)
    finally:
        clean = _stop_all(workers, config.server.grace_seconds + 10.0)
        reservation.close()
    return 0 if clean else 1


def _stop_all(workers: list[_Worker], timeout: float) -> bool:
    """SIGTERM every worker, wait up to ``timeout``, then SIGKILL what is left."""
    for worker in workers:
        if worker.proc.poll() is None:
            worker.proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    clean = True
    for worker in workers:
        try:
            code = worker.proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            worker.proc.kill()
            code = worker.proc.wait()
        if code != 0:
            log.error(
                "worker did not stop cleanly", extra=fields(worker_pid=worker.proc.pid, exit_code=code)
            )
            clean = False
    return clean
