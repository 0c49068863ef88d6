"""`vaultctl` as real subprocesses for tests: one command, or `serve` started, its address learnt,
and stopped."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path


def vaultctl(
    home: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run ``vaultctl --config home/vault.toml ARGS`` as a subprocess (``env`` added to ours)."""
    return subprocess.run(
        [sys.executable, "-m", "vault_service.cli.main", "--config", str(home / "vault.toml"), *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=timeout,
    )


def start_serving(config: Path, env: dict[str, str] | None = None) -> tuple[subprocess.Popen[str], str]:
    """Start the server on ``config`` (listen port 0) and return it with its host:port."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "vault_service.cli.main", "--config", str(config), "serve"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    m = re.search(r"listening on (127\.0\.0\.1:\d+)", line)
    if m is None:
        proc.kill()
        raise AssertionError(
            f"server did not start: {line!r} {proc.stderr.read() if proc.stderr else ''}"
        )
    return proc, m.group(1)


def stop_serving(proc: subprocess.Popen[str], timeout: float = 60) -> int:
    """SIGTERM, wait, and return the exit code (0 for a clean shutdown)."""
    proc.send_signal(signal.SIGTERM)
    return proc.wait(timeout=timeout)
