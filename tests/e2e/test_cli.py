"""vaultctl as operators use it: real subprocesses, a served port, --json output, SIGTERM."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

from tests.conftest import TOKENS, write_config

VAULTCTL = [sys.executable, "-m", "vault_service.cli.main"]


def run(
    home: Path,
    *args: str,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [*VAULTCTL, "--config", str(home / "vault.toml"), *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=60,
    )


def test_keys_init_mode_and_refusals(tmp_path: Path) -> None:
    write_config(tmp_path)
    keyring = tmp_path / "keys" / "keyring.json"
    keyring.unlink()
    r = run(tmp_path, "--json", "keys", "init")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["created"] is True
    assert keyring.stat().st_mode & 0o777 == 0o600
    r = run(tmp_path, "keys", "init")
    assert r.returncode == 1 and "refusing to overwrite" in r.stderr
    assert run(tmp_path, "keys", "init", "--if-missing").returncode == 0
    os.chmod(keyring, 0o644)
    r = run(tmp_path, "keys", "status")
    assert r.returncode == 2 and "chmod 600" in r.stderr
    os.chmod(keyring, 0o600)
    r = run(tmp_path, "--json", "keys", "status")
    assert r.returncode == 0, r.stderr
    status = json.loads(r.stdout)
    assert status["primary"] == "1" and status["versions"][0]["subject_keys"] == 0


def test_sealed_keyring_needs_its_passphrase(tmp_path: Path) -> None:
    write_config(tmp_path)
    (tmp_path / "keys" / "keyring.json").unlink()
    env = {"VAULT_KEYRING_PASSPHRASE": "correct horse battery staple"}
    assert run(tmp_path, "keys", "init", env=env).returncode == 0
    assert b"material" not in (tmp_path / "keys" / "keyring.json").read_bytes()
    assert run(tmp_path, "keys", "status", env=env).returncode == 0
    r = run(tmp_path, "keys", "status", env={"VAULT_KEYRING_PASSPHRASE": "wrong"})
    assert r.returncode == 2 and "wrong keyring passphrase" in r.stderr
    r = run(tmp_path, "keys", "status", env={"VAULT_KEYRING_PASSPHRASE": ""})
    assert r.returncode == 2 and "sealed" in r.stderr


def test_serve_put_get_and_sigterm(tmp_path: Path) -> None:
    write_config(tmp_path)
    assert not (tmp_path / "logs").exists()  # serve creates its log and data directories
    proc = subprocess.Popen(
        [*VAULTCTL, "--config", str(tmp_path / "vault.toml"), "serve"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        m = re.search(r"listening on 127\.0\.0\.1:(\d+)", line)
        assert m, line
        address = f"127.0.0.1:{m.group(1)}"
        env = {"VAULT_SERVICE_TOKEN": TOKENS["app"]}
        r = run(
            tmp_path,
            "--json",
            "record",
            "put",
            "--address",
            address,
            "--subject",
            "m-1",
            "--category",
            "concern_text",
            "--field",
            "text=hello from the cli",
            env=env,
        )
        assert r.returncode == 0, r.stderr
        rid = json.loads(r.stdout)["record_id"]
        r = run(
            tmp_path,
            "--json",
            "record",
            "get",
            "--address",
            address,
            "--id",
            rid,
            "--purpose",
            "matching",
            env=env,
        )
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["fields"] == {"text": "hello from the cli"}
        r = run(
            tmp_path,
            "--json",
            "record",
            "get",
            "--address",
            address,
            "--id",
            rid,
            "--purpose",
            "matching",
            env={"VAULT_SERVICE_TOKEN": "wrong"},
        )
        assert r.returncode == 1
        assert json.loads(r.stderr)["error"]["status"] == "UNAUTHENTICATED"
        r = run(tmp_path, "--json", "keys", "status")
        assert json.loads(r.stdout)["versions"][0]["subject_keys"] == 1
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    log = (tmp_path / "logs" / "vault.log").read_text()
    assert "status=UNAUTHENTICATED" in log and "hello from the cli" not in log


def test_bad_config_is_reported_with_file_and_key(tmp_path: Path) -> None:
    write_config(tmp_path)
    cfg = tmp_path / "vault.toml"
    cfg.write_text(cfg.read_text().replace("[server]\n", '[server]\nworkers = "four"\n'))
    r = run(tmp_path, "serve")
    assert r.returncode == 2
    assert "vault.toml: server.workers: expected a int" in r.stderr
