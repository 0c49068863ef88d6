"""Interoperability: an independent client (Node.js, @grpc/grpc-js with @grpc/proto-loader reading
the .proto at run time) runs the main flows and the error paths against a real server.
`make test` installs its npm packages (tests/interop/node, `npm ci`) before the suite runs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, TOKENS
from tests.support.db import copy_ciphertext

NODE_DIR = ROOT / "tests" / "interop" / "node"
PROTO = ROOT / "protos" / "vault_service" / "api" / "v1" / "vault.proto"


def test_node_grpc_js_client_runs_the_main_flows_and_error_paths(
    running: Any, app: Any, vault_home: Path
) -> None:
    node = shutil.which("node")
    if node is None or not (NODE_DIR / "node_modules" / "@grpc" / "grpc-js").exists():
        pytest.fail("Node.js and the client's npm packages are required: `make test` installs both")
    a = app.put_record("member-py", "concern_text", {"text": "victim"}).record_id
    b = app.put_record("member-py", "concern_text", {"text": "donor"}).record_id
    copy_ciphertext(vault_home, b, a)  # DATA_LOSS for the Node client
    result = subprocess.run(
        [node, str(NODE_DIR / "client.js")],
        capture_output=True,
        text=True,
        timeout=120,
        env={
            **os.environ,
            "VAULT_ADDR": f"127.0.0.1:{running.port}",
            "APP_TOKEN": TOKENS["app"],
            "CLINIC_TOKEN": TOKENS["clinic"],
            "PROTO": str(PROTO),
            "TAMPERED_RECORD": a,
        },
    )
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    failures = [line for line in lines if line.get("ok") is False]
    assert failures == [], failures
    summary = lines[-1]["summary"]
    assert result.returncode == 0, result.stderr[-2000:]
    assert summary == {"passed": 33, "failed": 0}
    # what the Node client wrote and erased is gone for the Python SDK too
    from vault_service.errors import NotFound

    with pytest.raises(NotFound):
        app.get_record(lines[-1]["keep"]["record"], "matching")
