"""moto's server mode as a subprocess on a free port (KMS and S3 speak real HTTP to it), and a fault
proxy in front of it that answers chosen KMS operations with a chosen error for a number of
requests, so that botocore's real retry logic runs, and (``key_states=True``) refuses the
cryptographic operations on disabled and pending-deletion keys the way KMS does (moto 5 serves
them)."""

from __future__ import annotations

import http.client
import json
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class MotoServer:
    """``python -m moto.server`` on 127.0.0.1; :meth:`reset` clears all state between tests.
    ``serial``: one request at a time, so that conditional writes are atomic as on S3
    (tests/support/moto_serial.py)."""

    def __init__(self, serial: bool = False) -> None:
        self.serial = serial
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> MotoServer:
        command = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)]
        if self.serial:
            command = [sys.executable, str(Path(__file__).with_name("moto_serial.py"))]
            command += ["127.0.0.1", str(self.port)]
        self._proc = subprocess.Popen(
            command,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"{self.url}/moto-api/", timeout=1)
                return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("moto server did not start")

    def reset(self) -> None:
        req = urllib.request.Request(f"{self.url}/moto-api/reset", method="POST")
        urllib.request.urlopen(req, timeout=5)

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
            self._proc = None


def new_bucket(server: MotoServer, prefix: str = "", max_attempts: int = 2) -> Any:
    """A new bucket of a unique name on ``server``: an :class:`~vault_service.audit.s3_objects.
    Bucket` (keys under ``prefix``) with its own client."""
    import uuid

    from vault_service.audit.s3_objects import Bucket, s3_client

    client = s3_client(
        endpoint_url=server.url, env=CREDENTIALS, max_attempts=max_attempts, timeout_seconds=5.0
    )
    name = f"test-{uuid.uuid4().hex[:20]}"
    client.create_bucket(Bucket=name)
    return Bucket(client, name, prefix)


def same_bucket(bucket: Any, prefix: str | None = None) -> Any:
    """The bucket of ``bucket`` through a client of its own (another process's view)."""
    from vault_service.audit.s3_objects import Bucket, s3_client

    url = bucket.client.meta.endpoint_url
    client = s3_client(endpoint_url=url, env=CREDENTIALS, max_attempts=2, timeout_seconds=5.0)
    return Bucket(client, bucket.bucket, bucket.prefix if prefix is None else prefix)


#: KMS's answer to a cryptographic operation on a key in this state
_REFUSED_STATES = {"PendingDeletion": "KMSInvalidStateException", "Disabled": "DisabledException"}
_CRYPTO_OPERATIONS = {"Encrypt", "Decrypt", "ReEncrypt", "GenerateDataKey"}
_KEY_FIELDS = ("KeyId", "SourceKeyId", "DestinationKeyId")


def _moto_kms_client(port: int) -> Any:
    import boto3

    return boto3.client(
        "kms",
        endpoint_url=f"http://127.0.0.1:{port}",
        region_name="us-east-1",
        aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    )


class KmsFaultProxy:
    """Forwards to moto, except that ``fail(operation, code, times)`` makes the next ``times``
    requests for ``operation`` (e.g. "Encrypt") answer with that KMS error code, and that with
    ``key_states=True`` an Encrypt, Decrypt, ReEncrypt or GenerateDataKey naming a disabled or
    pending-deletion key answers DisabledException or KMSInvalidStateException, as KMS does."""

    def __init__(self, upstream_port: int, port: int = 0, key_states: bool = False) -> None:
        self.upstream_port = upstream_port
        self.key_states = key_states
        self._kms: Any = _moto_kms_client(upstream_port) if key_states else None
        self.faults: dict[str, tuple[str, int, int]] = {}
        self.seen: Counter[str] = Counter()
        self.lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                op = (self.headers.get("X-Amz-Target") or "").rsplit(".", 1)[-1]
                with proxy.lock:
                    proxy.seen[op] += 1
                    fault = proxy.faults.get(op)
                    if fault and fault[2] > 0:
                        proxy.faults[op] = (fault[0], fault[1], fault[2] - 1)
                if fault and fault[2] > 0:
                    self._refuse(fault[0], fault[1])
                    return
                refusal = proxy.key_state_refusal(op, body)
                if refusal:
                    self._refuse(refusal, 400)
                    return
                conn = http.client.HTTPConnection("127.0.0.1", proxy.upstream_port, timeout=10)
                headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                conn.request("POST", self.path, body, headers)
                resp = conn.getresponse()
                data = resp.read()
                self.send_response(resp.status)
                for k, v in resp.getheaders():
                    if k.lower() not in {"content-length", "connection", "transfer-encoding"}:
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                conn.close()

            def _refuse(self, code: str, status: int) -> None:
                payload = json.dumps({"__type": code, "message": "injected"}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/x-amz-json-1.1")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def key_state_refusal(self, operation: str, body: bytes) -> str:
        """With ``key_states``: the error code KMS answers ``operation`` with because a key it
        names is disabled or pending deletion (asked of moto with DescribeKey); else ""."""
        if not self.key_states or operation not in _CRYPTO_OPERATIONS:
            return ""
        request = json.loads(body or b"{}")
        for field in _KEY_FIELDS:
            if request.get(field):
                state = self._describe(request[field]).get("KeyState", "")
                if state in _REFUSED_STATES:
                    return _REFUSED_STATES[state]
        return ""

    def _describe(self, key_id: str) -> dict[str, Any]:
        return dict(self._kms.describe_key(KeyId=key_id)["KeyMetadata"])

    def fail(self, operation: str, code: str, times: int, status: int = 400) -> None:
        with self.lock:
            self.faults[operation] = (code, status, times)

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
