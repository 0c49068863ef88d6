"""vaultctl as operators use it: real subprocesses, a served port, --json output, SIGTERM."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import TOKENS, write_config
from tests.support.serve import start_serving, stop_serving, vaultctl

VAULTCTL = [sys.executable, "-m", "vault_service.cli.main"]
run = vaultctl


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
    proc, address = start_serving(tmp_path / "vault.toml")
    try:
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
        assert stop_serving(proc) == 0
    log = (tmp_path / "logs" / "vault.log").read_text()
    assert '"status":"UNAUTHENTICATED"' in log and "hello from the cli" not in log


def test_bad_config_is_reported_with_file_and_key(tmp_path: Path) -> None:
    write_config(tmp_path, server__workers='"four"')
    r = run(tmp_path, "serve")
    assert r.returncode == 2
    assert "vault.toml: server.workers: expected a int" in r.stderr


def test_rotation_cli_end_to_end(tmp_path: Path) -> None:
    from vault_service.app import build_service
    from vault_service.config import load_config
    from vault_service.policy import Principal
    from vault_service.service import CallContext

    write_config(tmp_path)
    assembly = build_service(load_config(tmp_path / "vault.toml", {}), {})
    call = CallContext(Principal("app", "application"), "t")
    ids = [
        assembly.service.put_record(call, f"m-{i}", "concern_text", {"text": str(i)})[0]
        for i in range(12)
    ]
    assembly.store.close()

    def j(*args: str) -> tuple[int, dict]:  # type: ignore[type-arg]
        r = run(tmp_path, "--json", "keys", *args)
        stream = r.stdout if r.returncode == 0 else r.stderr
        return r.returncode, json.loads(stream)

    code, rotated = j("rotate")
    assert (code, rotated["previous_primary"], rotated["primary"]) == (0, "1", "2")
    code, status = j("status")
    assert [(v["version"], v["subject_keys"], v["service_keys"]) for v in status["versions"]] == [
        ("1", 12, 2),
        ("2", 0, 0),
    ]
    code, err = j("retire", "1")
    assert code == 1 and err["error"]["status"] == "FAILED_PRECONDITION"
    assert "rewrap first" in err["error"]["message"]
    code, partial = j("rewrap", "--max-keys", "5", "--batch-size", "2")
    assert (code, partial["rewrapped"], partial["remaining"]) == (0, 5, 7)
    assert partial["service_keys_rewrapped"] == 2
    code, rest = j("rewrap")
    assert (code, rest["rewrapped"], rest["remaining"]) == (0, 7, 0)
    assert rest["keys_per_second"] > 0
    code, err = j("destroy", "1")
    assert code == 1 and "not marked" in err["error"]["message"]
    assert j("retire", "1")[0] == 0
    assert j("destroy", "1", "--mark")[0] == 0
    code, destroyed = j("destroy", "1")
    assert (code, destroyed["state"]) == (0, "destroyed")
    code, status = j("status")
    assert [(v["version"], v["lifecycle"]) for v in status["versions"]] == [
        ("1", "destroyed"),
        ("2", "primary"),
    ]
    keyring = json.loads((tmp_path / "keys" / "keyring.json").read_text())
    assert keyring["versions"][0]["material"] == ""
    # the data is still readable under the new epoch
    assembly = build_service(load_config(tmp_path / "vault.toml", {}), {})
    try:
        for i, rid in enumerate(ids):
            assert assembly.service.get_record(call, rid, "matching").fields["text"] == str(i)
    finally:
        assembly.store.close()


def test_rewrap_prints_a_progress_bar_on_a_terminal(tmp_path: Path) -> None:
    import pty

    from vault_service.app import build_service
    from vault_service.config import load_config
    from vault_service.policy import Principal
    from vault_service.service import CallContext

    write_config(tmp_path)
    assembly = build_service(load_config(tmp_path / "vault.toml", {}), {})
    call = CallContext(Principal("app", "application"), "t")
    for i in range(3):
        assembly.service.put_record(call, f"m-{i}", "concern_text", {"text": "x"})
    assembly.store.close()
    assert run(tmp_path, "keys", "rotate").returncode == 0
    main_fd, child_fd = pty.openpty()
    proc = subprocess.run(
        [*VAULTCTL, "--config", str(tmp_path / "vault.toml"), "keys", "rewrap"],
        stdout=subprocess.PIPE,
        stderr=child_fd,
        text=True,
        timeout=60,
    )
    os.close(child_fd)
    bar = os.read(main_fd, 4096).decode()
    os.close(main_fd)
    assert proc.returncode == 0
    assert "rewrapped 3 subject keys (and 2 service keys)" in proc.stdout
    assert f"[{'#' * 40}] 3/3" in bar


def test_consent_restriction_and_export_cli(tmp_path: Path) -> None:
    import base64
    import hashlib

    write_config(tmp_path)
    policy = tmp_path / "policy.toml"
    digest = hashlib.sha256(b"officer-token-0123456789").hexdigest()
    policy.write_text(
        policy.read_text() + '\n[principals.dpo]\nrole = "subject_rights_officer"\n'
        f'token_sha256 = "{digest}"\n'
    )
    proc, address = start_serving(tmp_path / "vault.toml")
    try:
        app = {"VAULT_SERVICE_TOKEN": TOKENS["app"]}
        dpo = {"VAULT_SERVICE_TOKEN": "officer-token-0123456789"}
        (tmp_path / "photo.jpg").write_bytes(b"\xff\xd8 jpeg bytes")
        assert (
            run(
                tmp_path,
                "record",
                "put",
                "--address",
                address,
                "--subject",
                "m-1",
                "--category",
                "concern_text",
                "--field",
                "text=상담 내용",
                env=app,
            ).returncode
            == 0
        )
        assert (
            run(
                tmp_path,
                "record",
                "put",
                "--address",
                address,
                "--subject",
                "m-1",
                "--category",
                "concern_photo",
                "--field",
                "caption=left",
                "--content-file",
                str(tmp_path / "photo.jpg"),
                env=app,
            ).returncode
            == 0
        )
        r = run(
            tmp_path,
            "--json",
            "consent",
            "grant",
            "--address",
            address,
            "--subject",
            "m-1",
            "--purpose",
            "clinic_proposal",
            "--principal",
            "clinic",
            "--scope",
            "concern_text:text,budget",
            "--evidence",
            "match-1",
            env=app,
        )
        assert r.returncode == 0, r.stderr
        grant = json.loads(r.stdout)
        assert grant["scopes"] == {"concern_text": ["budget", "text"]}
        r = run(tmp_path, "--json", "consent", "list", "--address", address, "--subject", "m-1", env=app)
        assert [c["grant_id"] for c in json.loads(r.stdout)["consents"]] == [grant["grant_id"]]
        assert (
            run(
                tmp_path, "consent", "revoke", "--address", address, grant["grant_id"], env=app
            ).returncode
            == 0
        )
        assert (
            run(
                tmp_path, "subject", "restrict", "--address", address, "--subject", "m-1", env=dpo
            ).returncode
            == 0
        )
        out = tmp_path / "export.jsonl"
        r = run(
            tmp_path,
            "--json",
            "subject",
            "export",
            "--address",
            address,
            "--subject",
            "m-1",
            "--out",
            str(out),
            env=dpo,
        )
        assert r.returncode == 0, r.stderr
        assert out.stat().st_mode & 0o777 == 0o600
        lines = [json.loads(x) for x in out.read_text().splitlines()]
        assert sorted(x["category"] for x in lines) == ["concern_photo", "concern_text"]
        photo = next(x for x in lines if x["category"] == "concern_photo")
        assert base64.b64decode(photo["content_base64"]) == b"\xff\xd8 jpeg bytes"
        assert next(x for x in lines if x["category"] == "concern_text")["fields"] == {
            "text": "상담 내용"
        }
        r = run(
            tmp_path,
            "--json",
            "subject",
            "export",
            "--address",
            address,
            "--subject",
            "m-1",
            "--out",
            str(tmp_path / "no.jsonl"),
            env=app,
        )
        assert r.returncode == 1 and json.loads(r.stderr)["error"]["status"] == "PERMISSION_DENIED"
        assert (
            run(
                tmp_path, "subject", "lift", "--address", address, "--subject", "m-1", env=dpo
            ).returncode
            == 0
        )
    finally:
        assert stop_serving(proc) == 0


def test_share_cli(tmp_path: Path) -> None:
    write_config(tmp_path)
    proc, address = start_serving(tmp_path / "vault.toml")
    try:
        app = {"VAULT_SERVICE_TOKEN": TOKENS["app"]}
        clinic = {"VAULT_SERVICE_TOKEN": TOKENS["clinic"]}
        (tmp_path / "p.jpg").write_bytes(b"\xff\xd8" + b"x" * 70000)
        rid = json.loads(
            run(
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
                "text=nose",
                "--field",
                "budget=3000000",
                env=app,
            ).stdout
        )["record_id"]
        photo = json.loads(
            run(
                tmp_path,
                "--json",
                "record",
                "put",
                "--address",
                address,
                "--subject",
                "m-1",
                "--category",
                "concern_photo",
                "--field",
                "caption=c",
                "--content-file",
                str(tmp_path / "p.jpg"),
                env=app,
            ).stdout
        )["record_id"]
        assert (
            run(
                tmp_path,
                "consent",
                "grant",
                "--address",
                address,
                "--subject",
                "m-1",
                "--purpose",
                "clinic_proposal",
                "--principal",
                "clinic",
                "--scope",
                "concern_text",
                "--scope",
                "concern_photo",
                "--evidence",
                "match-1",
                env=app,
            ).returncode
            == 0
        )
        r = run(
            tmp_path,
            "--json",
            "share",
            "create",
            "--address",
            address,
            "--subject",
            "m-1",
            "--recipient",
            "clinic",
            "--purpose",
            "clinic_proposal",
            "--record",
            rid,
            "--record",
            photo,
            "--field",
            "text",
            "--field",
            "content",
            "--event",
            "match_completed",
            "--event-period-days",
            "180",
            env=app,
        )
        assert r.returncode == 0, r.stderr
        share = json.loads(r.stdout)
        assert share["event_period_seconds"] == 180 * 86400
        r = run(tmp_path, "--json", "share", "list", "--address", address, env=clinic)
        assert [s["share_id"] for s in json.loads(r.stdout)["shares"]] == [share["share_id"]]
        r = run(
            tmp_path,
            "--json",
            "share",
            "read",
            "--address",
            address,
            share["share_id"],
            "--content-dir",
            str(tmp_path / "got"),
            env=clinic,
        )
        assert r.returncode == 0, r.stderr
        records = json.loads(r.stdout)["records"]
        assert {x["record_id"]: x["fields"] for x in records}[rid] == {"text": "nose"}
        assert (tmp_path / "got" / photo).read_bytes() == (tmp_path / "p.jpg").read_bytes()
        assert (
            run(
                tmp_path,
                "--json",
                "event",
                "record",
                "--address",
                address,
                "--subject",
                "m-1",
                "--name",
                "match_completed",
                env=app,
            ).returncode
            == 0
        )
        assert (
            run(tmp_path, "share", "revoke", "--address", address, share["share_id"], env=app).returncode
            == 0
        )
        r = run(tmp_path, "--json", "share", "read", "--address", address, share["share_id"], env=clinic)
        assert r.returncode == 1 and json.loads(r.stderr)["error"]["status"] == "PERMISSION_DENIED"
    finally:
        assert stop_serving(proc) == 0
