"""Backup-proof erasure: the ledger outside the record store, replayed at start-up; deletion
verification with signed certificates checked offline."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, write_config
from vault_service.app import build_service
from vault_service.clock import FixedClock
from vault_service.config import load_config
from vault_service.errors import ConfigError, NotFound, Unavailable
from vault_service.lifecycle import rotation
from vault_service.policy import Principal
from vault_service.service import CallContext

APP = CallContext(Principal("app", "application"), "t")


def _build(home: Path, clock: FixedClock | None = None):  # type: ignore[no-untyped-def]
    return build_service(load_config(home / "vault.toml", {}), {}, clock)


def test_restoring_a_backup_does_not_resurrect_an_erased_subject(tmp_path: Path) -> None:
    write_config(tmp_path)
    first = _build(tmp_path)
    gone = first.service.put_record(
        APP, "member-1", "concern_photo", {"caption": "c"}, content=b"photo"
    )[0]
    kept = first.service.put_record(APP, "member-2", "concern_text", {"text": "t"})[0]
    first.store.close()
    shutil.copytree(tmp_path / "data", tmp_path / "backup")  # the nightly backup
    second = _build(tmp_path)
    second.service.erase_subject(APP, "member-1")
    second.store.close()
    shutil.rmtree(tmp_path / "data")
    shutil.copytree(tmp_path / "backup", tmp_path / "data")  # disaster: restore the backup
    with sqlite3.connect(tmp_path / "data" / "vault.db") as conn:  # it still holds the key
        assert conn.execute("SELECT COUNT(*) FROM subject_keys").fetchone()[0] == 2
    third = _build(tmp_path)  # start-up replays the ledger before serving
    try:
        with pytest.raises(NotFound):
            third.service.get_record(APP, gone, "matching")
        assert third.service.get_record(APP, kept, "matching").fields == {"text": "t"}
        assert ("subject.erase", "destruction ledger replay (restored backup?)") in [
            (r.action, r.reason) for r in third.store.audit_rows()
        ]
    finally:
        third.store.close()


def test_ledger_unavailable_means_nothing_is_erased(tmp_path: Path) -> None:
    write_config(tmp_path)
    a = _build(tmp_path)
    rid = a.service.put_record(APP, "member-1", "concern_text", {"text": "t"})[0]
    ledger = a.service.ledger
    assert ledger is not None
    ledger.path.parent.mkdir(parents=True, exist_ok=True)
    ledger.path.mkdir()  # the ledger path cannot be written
    with pytest.raises(Unavailable):
        a.service.erase_subject(APP, "member-1")
    assert a.service.get_record(APP, rid, "matching").fields == {"text": "t"}
    a.store.close()


def test_a_tampered_ledger_stops_start_up(tmp_path: Path) -> None:
    write_config(tmp_path)
    a = _build(tmp_path)
    a.service.put_record(APP, "member-1", "concern_text", {"text": "t"})
    a.service.erase_subject(APP, "member-1")
    path = a.service.ledger.path  # type: ignore[union-attr]
    a.store.close()
    line = json.loads(path.read_text().splitlines()[-1])
    line["entries"][0]["subject_ref"] = "00" * 32
    path.write_text(json.dumps(line) + "\n")
    with pytest.raises(ConfigError, match="invalid signature"):
        _build(tmp_path)


def test_verification_pending_then_verified_with_an_offline_certificate(tmp_path: Path) -> None:
    write_config(tmp_path)
    clock = FixedClock()
    a = _build(tmp_path, clock)
    svc = a.service
    svc.put_record(APP, "member-1", "concern_text", {"text": "t"})
    svc.put_record(APP, "member-2", "concern_text", {"text": "t"})
    svc.erase_subject(APP, "member-1")
    (check,) = svc.verify_deletions()
    # root version 1 is live: the epoch schedule (rotation every 30 days, backup window 35 days)
    # destroys it 65 days after it was created
    assert check.status == "PENDING" and check.pending_until == 1_800_000_000.0 + 65 * 86400
    assert check.checks["key"] == "destroyed"
    assert any("root version 1 not yet destroyed" in r for r in check.reasons)
    while svc.purge_erased():
        pass
    # the operator's epoch: rotate, rewrap, retire and destroy the version that wrapped the key
    rotation.rotate(svc.store, svc.provider, clock.now())
    rotation.rewrap_keys(svc.store, svc.provider)
    rotation.retire(svc.store, svc.provider, "1", clock.now())
    rotation.mark_for_destruction(svc.store, svc.provider, "1", clock.now())
    rotation.destroy(svc.store, svc.provider, "1", clock.now())
    (check,) = svc.verify_deletions()
    assert check.label.startswith("PENDING_UNTIL ")  # other processes' caches still aging out
    clock.advance(svc.cache_max_age + 1)
    (check,) = svc.verify_deletions()
    assert check.status == "VERIFIED" and check.certificate is not None
    a.store.close()
    cert = tmp_path / "cert.json"
    cert.write_text(json.dumps(check.certificate))
    cmd = [sys.executable, "-m", "vault_service.cli.main", "--json", "verify-certificate", str(cert)]
    ok = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert ok.returncode == 0 and json.loads(ok.stdout)["valid"] is True
    forged = dict(check.certificate)
    forged["erased_at"] = forged["erased_at"] + 86400
    cert.write_text(json.dumps(forged))
    bad = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert bad.returncode == 1 and json.loads(bad.stdout)["reason"] == "invalid signature"


def test_verification_fails_when_the_key_comes_back(tmp_path: Path) -> None:
    write_config(tmp_path)
    a = _build(tmp_path)
    a.service.put_record(APP, "member-1", "concern_text", {"text": "t"})
    ref = a.service.subject_ref("member-1")
    with sqlite3.connect(tmp_path / "data" / "vault.db") as conn:
        row = conn.execute("SELECT * FROM subject_keys").fetchone()
    a.service.erase_subject(APP, "member-1")
    a.store.close()
    with sqlite3.connect(tmp_path / "data" / "vault.db") as conn:  # someone puts the key back
        conn.execute(f"INSERT INTO subject_keys VALUES ({', '.join('?' * len(row))})", row)
    cmd = [
        sys.executable,
        "-m",
        "vault_service.cli.main",
        "--config",
        str(tmp_path / "vault.toml"),
        "--json",
        "verify-deletion",
    ]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert r.returncode == 1, r.stderr
    (row_out,) = json.loads(r.stdout)["erasures"]
    assert row_out["result"] == "FAILED" and "the subject key row still exists" in row_out["reasons"]
    assert ref.hex()[:32] == row_out["subject_pseudonym"]


def test_scheduled_epochs_make_an_erasure_backup_proof(tmp_path: Path) -> None:
    """Rotate every 30 days, destroy retired versions after a 35-day backup window: an erasure
    becomes VERIFIED without an operator doing anything but running the job."""
    write_config(tmp_path)
    clock = FixedClock(1_800_000_000.0)
    a = _build(tmp_path, clock)
    svc = a.service
    svc.put_record(APP, "member-1", "concern_text", {"text": "t"})
    keep = svc.put_record(APP, "member-2", "concern_text", {"text": "t"})[0]
    svc.erase_subject(APP, "member-1")
    while svc.purge_erased():
        pass
    month, window = 30 * 86400.0, 35 * 86400.0
    report = rotation.run_epochs(svc.store, svc.provider, clock.now(), month, window)
    assert report.rotated_to is None  # version 1 is not due yet
    clock.advance(month)
    report = rotation.run_epochs(svc.store, svc.provider, clock.now(), month, window)
    assert (report.rotated_to, report.retired, report.destroyed) == ("2", ["1"], [])
    assert svc.verify_deletions()[0].status == "PENDING"  # version 1 waits out the window
    clock.advance(window - 1)
    report = rotation.run_epochs(svc.store, svc.provider, clock.now(), month, window)
    assert (report.rotated_to, report.retired, report.destroyed) == ("3", ["2"], [])
    clock.advance(1)
    report = rotation.run_epochs(svc.store, svc.provider, clock.now(), month, window)
    assert (report.rotated_to, report.destroyed) == (None, ["1"])
    (check,) = svc.verify_deletions()
    assert check.status == "VERIFIED", check.reasons
    svc.cache.clear()
    assert svc.get_record(APP, keep, "matching").fields == {"text": "t"}  # live data unharmed
    a.store.close()


def test_verification_waits_for_orphan_blobs(tmp_path: Path) -> None:
    from vault_service.ids import new_record_id

    write_config(tmp_path)
    clock = FixedClock(1_800_000_000.0)
    a = _build(tmp_path, clock)
    svc = a.service
    svc.put_record(APP, "member-1", "concern_photo", {"caption": "c"}, content=b"photo")
    svc.erase_subject(APP, "member-1")
    while svc.purge_erased():
        pass
    (check,) = svc.verify_deletions()
    assert check.checks["blobs"] == "gone"
    orphan = f"{new_record_id(clock.now() - 7200)}.v1"  # e.g. a blob delete that failed
    svc.blobs.put(orphan, [b"ciphertext"])
    (check,) = svc.verify_deletions()
    assert check.checks["blobs"].startswith("1 orphan") and check.status == "PENDING"
    svc.sweep_blobs(3600)
    (check,) = svc.verify_deletions()
    assert check.checks["blobs"] == "gone"
    a.store.close()
