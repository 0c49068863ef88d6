"""The auditor's view: vaultctl audit verify/hash/checkpoint/prune, and QueryAudit over gRPC."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import TOKENS, write_config
from tests.e2e.test_cli import run
from vault_service.client import VaultClient
from vault_service.errors import InvalidArgument, PermissionDenied


def _policy_with_auditor(home: Path) -> None:
    import hashlib

    policy = home / "policy.toml"
    digest = hashlib.sha256(b"auditor-token-0123456789").hexdigest()
    policy.write_text(
        policy.read_text() + f'\n[principals.auditor]\nrole = "auditor"\ntoken_sha256 = "{digest}"\n'
    )


def test_every_decision_and_mutation_is_recorded(app: Any, clinic: Any, running: Any) -> None:
    rid = app.put_record("m-1", "concern_text", {"text": "t"}).record_id
    app.get_record(rid, "matching")
    with pytest.raises(PermissionDenied):
        clinic.get_record(rid, "matching")
    app.update_record(rid, {"text": "u"})
    app.delete_record(app.put_record("m-1", "concern_text", {"text": "v"}).record_id)
    app.erase_subject("m-1")
    while running.service.purge_erased():
        pass
    seen = [(r.action, r.decision) for r in running.service.store.audit_rows()]
    for expected in [
        ("record.put", "allow"),
        ("record.get", "allow"),
        ("record.get", "deny"),
        ("record.update", "allow"),
        ("record.delete", "allow"),
        ("subject.erase", "allow"),
        ("job.purge", "allow"),
    ]:
        assert expected in seen
    pseudonym = running.service.pseudonym(running.service.subject_ref("m-1"))
    rows = running.service.store.audit_rows()
    assert all(r.subject_pseudonym in ("", pseudonym) for r in rows)
    assert all(r.correlation_id for r in rows if r.principal in ("app", "clinic"))


def test_verify_cli_passes_then_names_the_first_bad_entry(tmp_path: Path) -> None:
    from vault_service.app import build_service
    from vault_service.config import load_config
    from vault_service.policy import Principal
    from vault_service.service import CallContext

    write_config(tmp_path)
    r = run(tmp_path, "--json", "audit", "verify")
    assert r.returncode == 1 and "no signed checkpoint" in json.loads(r.stdout)["reason"]
    assembly = build_service(load_config(tmp_path / "vault.toml", {}), {})
    call = CallContext(Principal("app", "application"), "c")
    for i in range(5):
        assembly.service.put_record(call, f"m-{i}", "concern_text", {"text": "x"})
    assembly.store.close()
    assert run(tmp_path, "audit", "checkpoint").returncode == 0
    r = run(tmp_path, "--json", "audit", "verify")
    report = json.loads(r.stdout)
    assert r.returncode == 0 and report["ok"] and report["entries_checked"] == 5
    with sqlite3.connect(tmp_path / "data" / "vault.db") as conn:
        conn.execute("UPDATE audit_log SET principal = 'someone-else' WHERE seq = 3")
    r = run(tmp_path, "audit", "verify")
    assert r.returncode == 1
    assert "audit chain FAILED: entry 3 was altered" in r.stdout
    assert "first bad entry: 3" in r.stdout
    r = run(tmp_path, "--json", "audit", "verify", "--public-key", "00" * 32)
    assert r.returncode == 1 and "invalid signature" in json.loads(r.stdout)["reason"]


def test_audit_hash_prints_the_pseudonym_entries_use(tmp_path: Path) -> None:
    from vault_service.app import build_service
    from vault_service.config import load_config

    write_config(tmp_path)
    r = run(tmp_path, "--json", "audit", "hash", "member-42")
    assert r.returncode == 0
    assembly = build_service(load_config(tmp_path / "vault.toml", {}), {})
    try:
        expected = assembly.service.pseudonym(assembly.service.subject_ref("member-42"))
    finally:
        assembly.store.close()
    assert json.loads(r.stdout) == {"subject_pseudonym": expected}
    assert "member-42" not in expected


def test_prune_cli_keeps_the_log_verifiable(tmp_path: Path) -> None:
    write_config(tmp_path)
    assert run(tmp_path, "audit", "hash", "x").returncode == 0
    run(tmp_path, "keys", "rotate")
    run(tmp_path, "audit", "checkpoint")
    r = run(tmp_path, "--json", "audit", "prune", "--retention-days", "0.0000001")
    assert r.returncode == 0 and json.loads(r.stdout)["deleted"] >= 1
    r = run(tmp_path, "--json", "audit", "verify")
    assert json.loads(r.stdout)["ok"] is True


def test_query_audit_for_the_auditor_role_only(vault_home: Path) -> None:
    from vault_service.config import load_config
    from vault_service.rpc.server import start_server

    _policy_with_auditor(vault_home)
    server = start_server(load_config(vault_home / "vault.toml", {}), {})
    address = f"127.0.0.1:{server.port}"
    try:
        with (
            VaultClient(address, TOKENS["app"]) as app,
            VaultClient(address, "auditor-token-0123456789") as auditor,
        ):
            r1 = app.put_record("m-1", "concern_text", {"text": "t"}).record_id
            app.put_record("m-2", "concern_text", {"text": "t"})
            app.get_record(r1, "matching")
            with pytest.raises(PermissionDenied):
                app.query_audit()
            pseudonym = server.service.pseudonym(server.service.subject_ref("m-1"))
            events, token = auditor.query_audit(subject_pseudonym=pseudonym)
            assert [(e["action"], e["record_id"]) for e in events] == [
                ("record.put", r1),
                ("record.get", r1),
            ]
            assert token == ""
            events, _ = auditor.query_audit(principal="app", decision="deny")
            assert [e["action"] for e in events] == ["audit.query"]
            page, token = auditor.query_audit(page_size=2)
            assert len(page) == 2 and token
            rest, _ = auditor.query_audit(page_size=100, page_token=token)
            assert rest[0]["seq"] == page[-1]["seq"] + 1
            with pytest.raises(PermissionDenied):
                VaultClient(address, TOKENS["operator"]).query_audit()
            with pytest.raises(InvalidArgument):
                auditor.query_audit(decision="maybe")
            # the auditor's own queries are on the record
            mine, _ = auditor.query_audit(principal="auditor", action="audit.query")
            assert len(mine) >= 4
    finally:
        server.stop(0)


def test_query_cli(vault_home: Path) -> None:
    from vault_service.config import load_config
    from vault_service.rpc.server import start_server

    _policy_with_auditor(vault_home)
    server = start_server(load_config(vault_home / "vault.toml", {}), {})
    try:
        with VaultClient(f"127.0.0.1:{server.port}", TOKENS["app"]) as app:
            app.put_record("m-1", "concern_text", {"text": "t"})
        r = run(
            vault_home,
            "--json",
            "audit",
            "query",
            "--address",
            f"127.0.0.1:{server.port}",
            "--action",
            "record.put",
            env={"VAULT_SERVICE_TOKEN": "auditor-token-0123456789"},
        )
        assert r.returncode == 0, r.stderr
        events = json.loads(r.stdout)["events"]
        assert [e["action"] for e in events] == ["record.put"]
    finally:
        server.stop(0)
