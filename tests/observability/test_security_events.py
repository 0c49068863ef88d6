"""Security events are distinct log lines and counters an operator can alert on: integrity
failures, repeated denials from one principal, reads of expired shares, audit verification
failures (in the server's checkpoint job and in ``vaultctl audit verify``)."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import TOKENS, write_config
from tests.support.db import RawDb, copy_ciphertext
from tests.support.serve import vaultctl
from vault_service import logs, metrics
from vault_service.client import VaultClient
from vault_service.config import load_config
from vault_service.errors import DataLoss, PermissionDenied
from vault_service.lifecycle import audit_log
from vault_service.rpc.server import start_server
from vault_service.security_events import DenialWatch, emit


def _events(home: Path) -> list[dict[str, Any]]:
    lines = [json.loads(x) for x in (home / "logs" / "vault.log").read_text().splitlines()]
    return [x for x in lines if "security_event" in x]


def _count(event: str) -> float:
    return metrics.SECURITY_EVENTS.labels(event=event)._value.get()


def test_denial_watch_fires_once_per_window_per_principal() -> None:
    watch = DenialWatch(threshold=3, window=10.0)
    assert [watch.denied("a", t) for t in (0.0, 1.0)] == [False, False]
    assert watch.denied("b", 1.5) is False  # another principal has its own count
    assert watch.denied("a", 2.0) is True  # third within 10 s
    assert watch.denied("a", 3.0) is False  # already raised in this window
    assert watch.denied("a", 20.0) is False  # the old ones slid out: 1 in the window
    assert [watch.denied("a", t) for t in (21.0, 22.0)] == [False, True]


def test_unknown_event_names_are_refused() -> None:
    with pytest.raises(ValueError):
        emit("something_new")


def test_integrity_failure_and_repeated_denials(tmp_path: Path) -> None:
    write_config(tmp_path, security__repeated_denials_threshold="3")
    server = start_server(load_config(tmp_path / "vault.toml", {}), {})
    handler = logs.handler_for(tmp_path / "logs" / "vault.log", "json")
    logging.getLogger().addHandler(handler)
    before = {e: _count(e) for e in ("integrity_failure", "repeated_denials")}
    try:
        with VaultClient(f"127.0.0.1:{server.port}", TOKENS["app"]) as app:
            a = app.put_record("member-1", "concern_text", {"text": "a"}).record_id
            b = app.put_record("member-2", "concern_text", {"text": "b"}).record_id
            copy_ciphertext(tmp_path, b, a, "record_keys")  # member-2's data key onto member-1's
            with pytest.raises(DataLoss):
                app.get_record(a, "matching")
            for _ in range(4):
                with pytest.raises(PermissionDenied):
                    app.get_record(b, "subject_access")
    finally:
        server.stop(0)
        logging.getLogger().removeHandler(handler)
        handler.close()
    events = _events(tmp_path)
    names = [e["security_event"] for e in events]
    assert names.count("integrity_failure") == 1
    assert names.count("repeated_denials") == 1  # the third denial raised it; the fourth did not
    repeated = next(e for e in events if e["security_event"] == "repeated_denials")
    assert repeated["principal"] == "app" and repeated["denials"] == 3
    assert all(e["level"] == "ERROR" for e in events)
    assert _count("integrity_failure") - before["integrity_failure"] == 1
    assert _count("repeated_denials") - before["repeated_denials"] == 1


def test_expired_share_read_is_an_event(running: Any, vault_home: Path) -> None:
    before = _count("expired_share_read")
    clock = running.service.clock
    with VaultClient(f"127.0.0.1:{running.port}", TOKENS["app"]) as app:
        rid = app.put_record("member-1", "concern_text", {"text": "t"}).record_id
        app.grant_consent(
            "member-1",
            "clinic_proposal",
            {"concern_text": None},
            evidence_reference="e",
            grantee_principal="clinic",
        )
        share = app.create_share(
            "member-1", "clinic", "clinic_proposal", [rid], ["text"], expires_at=clock.now() + 1.0
        )
    time.sleep(1.2)
    with (
        VaultClient(f"127.0.0.1:{running.port}", TOKENS["clinic"]) as clinic,
        pytest.raises(PermissionDenied),
    ):
        list(clinic.read_share(share.share_id))
    assert _count("expired_share_read") - before == 1
    assert [e["security_event"] for e in _events(vault_home)] == ["expired_share_read"]


def test_a_broken_audit_chain_is_never_signed_and_is_an_event(running: Any, vault_home: Path) -> None:
    svc, checkpoints = running.service, running.assembly.checkpoints
    with VaultClient(f"127.0.0.1:{running.port}", TOKENS["app"]) as app:
        app.put_record("member-1", "concern_text", {"text": "t"})
    assert audit_log.write_checkpoint(svc.store, checkpoints, svc.signing_key, svc.clock.now())
    with VaultClient(f"127.0.0.1:{running.port}", TOKENS["app"]) as app:
        app.put_record("member-1", "concern_text", {"text": "u"})
    with RawDb(vault_home) as db:  # someone with database access rewrites what is not yet signed
        db.execute(
            "UPDATE audit_pending SET reason = 'nothing to see'"
            " WHERE id = (SELECT MAX(id) FROM audit_pending)"
        )
    signed = len(checkpoints.all())
    with pytest.raises(audit_log.ChainBroken):
        audit_log.write_checkpoint(svc.store, checkpoints, svc.signing_key, svc.clock.now())
    assert len(checkpoints.all()) == signed  # nothing signed over the forgery
    # the server's checkpoint job reports it as a security event
    before = _count("audit_verification_failed")
    running.stop(0)
    assert _count("audit_verification_failed") - before == 1
    # and so does the operator's verification, in its own log
    r = vaultctl(vault_home, "audit", "verify")
    assert r.returncode == 1 and "FAILED" in r.stdout
    names = [e["security_event"] for e in _events(vault_home)]
    assert names.count("audit_verification_failed") == 2
