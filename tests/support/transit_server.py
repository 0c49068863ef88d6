"""A small HTTP server that speaks Vault's Transit API, for testing the vault-transit provider with
the real hvac client (no Vault server can be installed here).

It follows Vault's documented behaviour for what the provider uses: ``vault:vN:`` ciphertexts;
key versions, rotate, ``min_decryption_version``/``min_encryption_version``, trim
(``min_available_version``), ``deletion_allowed`` and delete; ``derived`` keys (per-context
HKDF-derived keys) and AES-GCM ``associated_data``; ``batch_input`` on encrypt, decrypt and rewrap
(a failed item makes the whole call 400, Vault's default ``partial_failure_response_code``);
403 for a bad token and 503 while sealed. Counters record every call for the benchmarks.
"""

from __future__ import annotations

import base64
import json
import os
import re
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

if TYPE_CHECKING:
    from vault_service.rpc.server import RunningServer

_CT = re.compile(r"^vault:v(\d+):(.+)$")


class TransitError(Exception):
    def __init__(self, status: int, message: str, data: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.data = status, message, data


@dataclass
class TransitKey:
    derived: bool
    versions: dict[int, tuple[bytes, int]] = field(default_factory=dict)  # v -> (key, created)
    latest: int = 0
    min_decryption_version: int = 1
    min_encryption_version: int = 0
    min_available_version: int = 0
    deletion_allowed: bool = False

    def rotate(self) -> None:
        self.latest += 1
        self.versions[self.latest] = (os.urandom(32), int(time.time()))

    def aead(self, version: int, context: bytes | None) -> AESGCM:
        material, _ = self.versions[version]
        if self.derived:
            if not context:
                raise TransitError(
                    400, "missing 'context' for key derivation; the key was created using a derived key"
                )
            material = HKDF(hashes.SHA256(), 32, None, context).derive(material)
        return AESGCM(material)


class TransitState:
    """Keys and switches of the fake Vault; tests flip ``sealed`` and read ``calls``."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.keys: dict[str, TransitKey] = {}
        self.sealed = False
        self.calls: Counter[str] = Counter()
        self.lock = threading.Lock()

    def key(self, name: str) -> TransitKey:
        key = self.keys.get(name)
        if key is None:
            raise TransitError(400, "encryption key not found")
        return key

    # operations ---------------------------------------------------------------------------------
    def encrypt(self, key: TransitKey, item: dict[str, Any]) -> dict[str, Any]:
        version = int(item.get("key_version") or key.latest)
        if version < key.min_encryption_version or version not in key.versions:
            raise TransitError(400, "requested version for encryption is not permitted")
        try:
            plaintext = base64.b64decode(item.get("plaintext") or "", validate=True)
        except ValueError:
            raise TransitError(400, "failed to base64-decode plaintext") from None
        nonce = os.urandom(12)
        ct = key.aead(version, _b(item.get("context"))).encrypt(
            nonce, plaintext, _b(item.get("associated_data"))
        )
        return {
            "ciphertext": f"vault:v{version}:" + base64.b64encode(nonce + ct).decode(),
            "key_version": version,
        }

    def decrypt_raw(self, key: TransitKey, item: dict[str, Any]) -> bytes:
        m = _CT.match(item.get("ciphertext") or "")
        if not m:
            raise TransitError(400, "invalid ciphertext: no prefix")
        version = int(m.group(1))
        if version < key.min_decryption_version or version not in key.versions:
            raise TransitError(400, "ciphertext or signature version is disallowed by policy (too old)")
        try:
            blob = base64.b64decode(m.group(2), validate=True)
            return key.aead(version, _b(item.get("context"))).decrypt(
                blob[:12], blob[12:], _b(item.get("associated_data"))
            )
        except (ValueError, InvalidTag):
            raise TransitError(400, "cipher: message authentication failed") from None

    def decrypt(self, key: TransitKey, item: dict[str, Any]) -> dict[str, Any]:
        return {"plaintext": base64.b64encode(self.decrypt_raw(key, item)).decode()}

    def rewrap(self, key: TransitKey, item: dict[str, Any]) -> dict[str, Any]:
        plaintext = self.decrypt_raw(key, item)
        return self.encrypt(key, {**item, "plaintext": base64.b64encode(plaintext).decode()})

    def read(self, name: str) -> dict[str, Any]:
        key = self.key(name)
        return {
            "name": name,
            "type": "aes256-gcm96",
            "derived": key.derived,
            "keys": {str(v): created for v, (_, created) in key.versions.items()},
            "latest_version": key.latest,
            "min_decryption_version": key.min_decryption_version,
            "min_encryption_version": key.min_encryption_version,
            "min_available_version": key.min_available_version,
            "deletion_allowed": key.deletion_allowed,
            "supports_encryption": True,
            "supports_decryption": True,
            "supports_derivation": True,
        }

    def configure(self, name: str, body: dict[str, Any]) -> None:
        key = self.key(name)
        dec = int(body.get("min_decryption_version", key.min_decryption_version))
        enc = int(body.get("min_encryption_version", key.min_encryption_version))
        if dec > key.latest or enc > key.latest:
            raise TransitError(400, "cannot set min version greater than latest version")
        if enc != 0 and enc < dec:
            raise TransitError(
                400, "min decryption version should not be less than min encryption version"
            )
        if dec < key.min_available_version:
            raise TransitError(400, "min decryption version cannot be below trimmed version")
        key.min_decryption_version, key.min_encryption_version = dec, enc
        if "deletion_allowed" in body:
            key.deletion_allowed = bool(body["deletion_allowed"])

    def trim(self, name: str, body: dict[str, Any]) -> None:
        key = self.key(name)
        target = int(body.get("min_available_version", 0))
        if key.min_encryption_version == 0 or key.min_decryption_version == 0:
            raise TransitError(
                400, "trim is not allowed while min_encryption_version or min_decryption_version is zero"
            )
        if target > min(key.min_decryption_version, key.min_encryption_version):
            raise TransitError(400, "cannot trim above min decryption or encryption version")
        for v in [v for v in key.versions if v < target]:
            del key.versions[v]
        key.min_available_version = max(target, key.min_available_version)


def _b(value: str | None) -> bytes | None:
    return base64.b64decode(value) if value else None


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(self, status: int, payload: dict[str, Any] | None) -> None:
        body = json.dumps(payload).encode() if payload is not None else b""
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _handle(self, method: str) -> None:
        state = self.server.state
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}") if length else {}
        path = self.path.split("?")[0]
        try:
            if state.sealed:
                raise TransitError(503, "Vault is sealed")
            if self.headers.get("X-Vault-Token") != state.token:
                raise TransitError(403, "permission denied")
            m = re.match(r"^/v1/([^/]+)/(keys|encrypt|decrypt|rewrap)/([^/]+)(?:/(\w+))?$", path)
            if not m:
                raise TransitError(404, "no handler for route")
            op, name, sub = m.group(2), m.group(3), m.group(4)
            with state.lock:
                state.calls[f"{op}{'/' + sub if sub else ''}"] += 1
                self._send(*self._dispatch(state, method, op, name, sub, body))
        except TransitError as exc:
            payload: dict[str, Any] = {"errors": [exc.message]}
            if exc.data is not None:
                payload["data"] = exc.data
            self._send(exc.status, payload)

    def _dispatch(
        self, state: TransitState, method: str, op: str, name: str, sub: str | None, body: dict[str, Any]
    ) -> tuple[int, dict[str, Any] | None]:
        if op == "keys":
            if method == "GET" and sub is None:
                if name not in state.keys:
                    raise TransitError(404, f"no existing key named {name} could be found")
                return 200, {"data": state.read(name)}
            if method == "POST" and sub is None:
                if name not in state.keys:
                    state.keys[name] = TransitKey(derived=bool(body.get("derived")))
                    state.keys[name].rotate()
                return 200, {"data": state.read(name)}
            if method == "DELETE" and sub is None:
                if not state.key(name).deletion_allowed:
                    raise TransitError(400, "deletion is not allowed for this key")
                del state.keys[name]
                return 204, None
            if method == "POST" and sub == "rotate":
                state.key(name).rotate()
                return 200, {"data": state.read(name)}
            if method == "POST" and sub == "config":
                state.configure(name, body)
                return 200, {"data": state.read(name)}
            if method == "POST" and sub == "trim":
                state.trim(name, body)
                return 200, {"data": state.read(name)}
            raise TransitError(405, "unsupported operation")
        key = state.key(name)
        fn = {"encrypt": state.encrypt, "decrypt": state.decrypt, "rewrap": state.rewrap}[op]
        batch = body.get("batch_input")
        if batch is None:
            return 200, {"data": fn(key, body)}
        results: list[dict[str, Any]] = []
        failed = False
        for item in batch:
            try:
                results.append(fn(key, item))
            except TransitError as exc:
                failed = True
                results.append({"error": exc.message})
        if failed:
            raise TransitError(400, "one or more batch items failed", {"batch_results": results})
        return 200, {"data": {"batch_results": results}}

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PUT(self) -> None:
        self._handle("POST")

    def do_DELETE(self) -> None:
        self._handle("DELETE")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    state: TransitState


class TransitTestServer:
    """Start with :meth:`start`; ``url``, ``token`` and ``state`` are what tests use."""

    def __init__(self, token: str = "test-root-token") -> None:
        self.state = TransitState(token)
        self.token = token
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.state = self.state
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> TransitTestServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def seal(self) -> None:
        """Every request fails from now on, as a sealed Vault answers (503)."""
        self.state.sealed = True

    def unseal(self) -> None:
        self.state.sealed = False

    def key_config(self, name: str) -> dict[str, Any]:
        """The key's settings as ``transit/keys/<name>`` answers them."""
        return self.state.read(name)

    def serve_vault(self, home: Path, **overrides: str) -> RunningServer:
        """A vault server in this process on a config in ``home`` whose key provider is this
        Transit server (its root key created); ``overrides`` as for ``write_config``."""
        return serve_vault_on_transit(home, self.url, self.token, **overrides)


def serve_vault_on_transit(home: Path, url: str, token: str, **overrides: str) -> RunningServer:
    """A vault server in this process on a config in ``home`` whose key provider is the Transit
    API at ``url`` (its root key created first); ``overrides`` as for ``write_config``."""
    from tests.conftest import write_config
    from vault_service.config import load_config
    from vault_service.key_providers.factory import build_provider
    from vault_service.rpc.server import start_server

    write_config(home, keys__provider='"vault-transit"', keys__transit_url=f'"{url}"', **overrides)
    env = {"VAULT_TOKEN": token}
    config = load_config(home / "vault.toml", env)
    build_provider(config, env).initialize()  # type: ignore[attr-defined]
    return start_server(config, env)
