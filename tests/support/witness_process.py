"""`vaultctl witness serve` as a real subprocess for tests: started on a free loopback port (or
a given one, to come back where it was), its URL and key learnt from its first line, stopped with
SIGTERM or killed. Its log goes to a file (a pipe nobody reads would fill and block it)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from vault_service.tlog import note


def vaultctl_witness(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """``vaultctl --json witness ARGS`` (no config needed)."""
    return subprocess.run(
        [sys.executable, "-m", "vault_service.cli.main", "--json", "witness", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=dict(os.environ),
    )


class WitnessProcess:
    """One witness process on ``directory`` for the logs ``logs`` (origin -> public key)."""

    def __init__(
        self, directory: Path, logs: dict[str, bytes], *extra: str, name: str = "witness.example"
    ) -> None:
        self.directory = directory
        self.logs = dict(logs)
        self.extra = extra
        self.name = name
        self.log_file = directory.with_name(directory.name + ".log")
        self.proc: subprocess.Popen[str] | None = None
        self.address = ""
        self.public_key = b""

    def args(self, listen: str) -> list[str]:
        cmd = [sys.executable, "-m", "vault_service.cli.main", "--json", "witness", "serve"]
        cmd += ["--directory", str(self.directory), "--listen", listen, "--name", self.name]
        for origin, public in self.logs.items():
            cmd += ["--log", f"{origin}={note.verifier_key(origin, public)}"]
        return [*cmd, *self.extra]

    def start(self, port: int = 0) -> WitnessProcess:
        assert self.proc is None, "already running"
        with self.log_file.open("a") as log:
            self.proc = subprocess.Popen(
                self.args(f"127.0.0.1:{port}"), stdout=subprocess.PIPE, stderr=log, text=True
            )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait(30)
            self.proc = None
            raise AssertionError(f"witness did not start: {self.log_file.read_text()[-2000:]}")
        started = json.loads(line)
        self.address = started["listening"]
        self.public_key = bytes.fromhex(started["public_key"])
        return self

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    @property
    def port(self) -> int:
        return int(self.address.rsplit(":", 1)[1])

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM, wait; the exit code (0: a clean stop)."""
        self.terminate()
        return self.wait(timeout)

    def terminate(self) -> None:
        """SIGTERM, without waiting."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)

    def wait(self, timeout: float = 30) -> int:
        """Wait for the process to end; its exit code."""
        assert self.proc is not None
        rc = self.proc.wait(timeout)
        self._closed()
        return rc

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(30)
        self._closed()

    def _closed(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        self.proc.stdout.close()
        self.proc = None

    def log_text(self) -> str:
        return self.log_file.read_text() if self.log_file.exists() else ""
