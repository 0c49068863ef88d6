"""Retention rules at and around their boundaries (injected clock), read-once, legal holds on every
deletion path, concurrent sweepers, and a sweeper killed with SIGKILL mid-batch."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT, test_policy_text, write_config
from tests.support.db import TestDatabase
from vault_service.clock import FixedClock
from vault_service.errors import LegalHoldActive, NotFound
from vault_service.key_providers import LocalKeyProvider, create_keyring
from vault_service.lifecycle.ledger import DestructionLedger
from vault_service.policy import Principal, load_policy
from vault_service.service import CallContext, VaultService
from vault_service.storage import FilesystemBlobStore, RecordStore

HOUR, DAY = 3600.0, 86400.0
APP = CallContext(Principal("app", "application"), "t")
LEGAL = CallContext(Principal("legal", "legal_officer"), "t")
EXTRA = """
[categories.face_photo]
fields = ["note"]
content = true
retention = { read_once = true }

[categories.scan]
fields = ["modality"]
content = true
retention = { after = "creation", hours = 24 }

[purposes.simulation]
categories = ["face_photo", "scan"]
"""


def _policy_text() -> str:
    text = test_policy_text().replace(
        'purposes = ["matching", "customer_support"',
        'purposes = ["simulation", "matching", "customer_support"',
    )
    return text + EXTRA


def _service(home: Path, clock: FixedClock, store: RecordStore) -> VaultService:
    if not (home / "ring.json").exists():
        create_keyring(home / "ring.json", None, 0.0)
    return VaultService(
        store,
        FilesystemBlobStore(home / "b"),
        LocalKeyProvider(home / "ring.json"),
        load_policy(_policy_text()),
        clock,
        ledger=DestructionLedger(home / "ledger.jsonl"),
    )


@pytest.fixture
def vault(tmp_path: Path, database: TestDatabase) -> Iterator[tuple[VaultService, FixedClock]]:
    """A service on each backend in turn."""
    clock = FixedClock()
    yield _service(tmp_path, clock, database.store()), clock


def test_after_creation_at_its_boundary(vault: tuple[VaultService, FixedClock]) -> None:
    svc, clock = vault
    rid = svc.put_record(APP, "p-1", "scan", {"modality": "CT"}, content=b"DICM")[0]
    clock.advance(24 * HOUR - 1)
    assert svc.sweep_retention() == []
    assert svc.get_record(APP, rid, "simulation").fields["modality"] == "CT"
    clock.advance(1)
    assert svc.sweep_retention(dry_run=True) == [(rid, "after_creation 1d")]
    assert svc.get_record(APP, rid, "simulation")  # a dry run changes nothing
    assert svc.sweep_retention() == [(rid, "after_creation 1d")]
    with pytest.raises(NotFound):
        svc.get_record(APP, rid, "simulation")
    assert list(svc.blobs.list_refs()) == []
    assert svc.sweep_retention() == []  # idempotent
    rows = [r for r in svc.store.audit_rows() if r.action == "job.retention"]
    assert [r.record_id for r in rows] == [rid]


def test_six_months_after_match_completed(vault: tuple[VaultService, FixedClock]) -> None:
    svc, clock = vault
    rid = svc.put_record(APP, "m-1", "concern_text", {"text": "t"})[0]
    other = svc.put_record(APP, "m-2", "concern_text", {"text": "t"})[0]
    clock.advance(400 * DAY)
    assert svc.sweep_retention() == []  # no match completed yet: kept
    svc.record_event(APP, "m-1", "match_completed")
    clock.advance(180 * DAY - 1)
    assert svc.sweep_retention() == []
    clock.advance(1)
    assert [r for r, _ in svc.sweep_retention()] == [rid]
    assert svc.get_record(APP, other, "matching")


def test_payment_records_kept_five_years(vault: tuple[VaultService, FixedClock]) -> None:
    svc, clock = vault
    rid = svc.put_record(APP, "m-1", "payment_record", {"amount": "10", "currency": "KRW"})[0]
    clock.advance(1826 * DAY - 1)
    assert svc.sweep_retention() == []
    clock.advance(1)
    assert [r for r, _ in svc.sweep_retention()] == [rid]


def test_read_once_is_destroyed_by_the_read_that_releases_it(
    vault: tuple[VaultService, FixedClock],
) -> None:
    svc, _ = vault
    rid = svc.put_record(APP, "f-1", "face_photo", {"note": "front"}, content=b"\xff\xd8face")[0]
    view = svc.get_record(APP, rid, "simulation", include_content=True)
    assert view.content == b"\xff\xd8face"
    with pytest.raises(NotFound):
        svc.get_record(APP, rid, "simulation", include_content=True)
    assert list(svc.blobs.list_refs()) == []
    assert ("record.delete", "read-once: destroyed") in [
        (r.action, r.reason) for r in svc.store.audit_rows()
    ]


def test_a_hold_blocks_every_deletion_path_and_release_carries_them_out(
    vault: tuple[VaultService, FixedClock],
) -> None:
    svc, clock = vault
    scan = svc.put_record(APP, "p-1", "scan", {"modality": "CT"}, content=b"DICM")[0]
    face = svc.put_record(APP, "p-1", "face_photo", {"note": "n"}, content=b"face")[0]
    note = svc.put_record(APP, "p-1", "concern_text", {"text": "t"})[0]
    hold = svc.place_hold(LEGAL, "p-1", "litigation", "case-2026-17")
    with pytest.raises(LegalHoldActive):  # delete: refused, recorded
        svc.delete_record(APP, note)
    with pytest.raises(LegalHoldActive):  # erase: refused, recorded
        svc.erase_subject(APP, "p-1")
    clock.advance(2 * DAY)
    assert svc.sweep_retention() == []  # retention: skipped
    # read-once: released once, then kept (consumed, never released again) until the release
    assert svc.get_record(APP, face, "simulation", include_content=True).content == b"face"
    with pytest.raises(NotFound):
        svc.get_record(APP, face, "simulation", include_content=True)
    assert svc.get_record(APP, note, "matching") and svc.get_record(APP, scan, "simulation")
    pending = svc.store.pending_deletions(svc.subject_ref("p-1"))
    assert sorted(p.kind for p in pending) == ["record", "record", "subject"]
    deferred = [r for r in svc.store.audit_rows() if r.decision == "deferred"]
    assert len(deferred) == 3
    _, carried = svc.release_hold(LEGAL, hold.hold_id)
    assert carried == 3
    for rid, purpose in ((note, "matching"), (face, "simulation"), (scan, "simulation")):
        with pytest.raises(NotFound):
            svc.get_record(APP, rid, purpose)
    assert svc.store.subject_keys_by_root_version() == {}
    assert svc.store.pending_deletions(svc.subject_ref("p-1")) == []


def test_a_record_hold_blocks_only_that_record(vault: tuple[VaultService, FixedClock]) -> None:
    svc, _ = vault
    kept = svc.put_record(APP, "m-1", "concern_text", {"text": "evidence"})[0]
    free = svc.put_record(APP, "m-1", "concern_text", {"text": "other"})[0]
    svc.place_hold(LEGAL, "m-1", "investigation", "case-9", record_id=kept)
    svc.delete_record(APP, free)
    with pytest.raises(LegalHoldActive):
        svc.delete_record(APP, kept)
    with pytest.raises(LegalHoldActive):  # erasing the subject would destroy the held record
        svc.erase_subject(APP, "m-1")


def test_concurrent_sweepers_shred_each_record_once(tmp_path: Path, database: TestDatabase) -> None:
    clock = FixedClock()
    writer = _service(tmp_path, clock, database.store())
    ids = [
        writer.put_record(APP, f"p-{i}", "scan", {"modality": "MR"}, content=b"x")[0] for i in range(60)
    ]
    clock.advance(2 * DAY)
    results: list[list[tuple[str, str]]] = []
    sweepers = [_service(tmp_path, clock, database.store()) for _ in range(3)]
    threads = [
        threading.Thread(target=lambda s=s: results.append(s.sweep_retention(batch=7))) for s in sweepers
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    shredded = [r for batch in results for r, _ in batch]
    assert sorted(shredded) == sorted(ids)  # every one, exactly once
    jobs = [r for r in writer.store.audit_rows(10000) if r.action == "job.retention"]
    assert len(jobs) == 60


def test_sweeper_killed_mid_batch_then_rerun(tmp_path: Path) -> None:
    write_config(tmp_path)
    (tmp_path / "policy.toml").write_text(_policy_text())
    from vault_service.app import build_service
    from vault_service.config import load_config

    past = FixedClock(time.time() - 3 * DAY)
    assembly = build_service(load_config(tmp_path / "vault.toml", {}), {}, past)
    ids = [
        assembly.service.put_record(APP, f"p-{i}", "scan", {"modality": "US"}, content=os.urandom(3000))[
            0
        ]
        for i in range(40)
    ]
    keep = assembly.service.put_record(APP, "p-keep", "concern_text", {"text": "stays"})[0]
    assembly.store.close()
    cmd = [
        sys.executable,
        "-m",
        "vault_service.cli.main",
        "--config",
        str(tmp_path / "vault.toml"),
        "retention",
        "sweep",
        "--batch-size",
        "8",
    ]
    crashed = subprocess.run(
        cmd,
        env={**os.environ, "VAULT_FAULTS": "retention.after_delete:13"},
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert crashed.returncode == -9  # SIGKILL at the 13th deletion
    db = tmp_path / "data" / "vault.db"
    with sqlite3.connect(db) as conn:
        remaining = {r[0] for r in conn.execute("SELECT record_id FROM records")}
        assert len(remaining) == 41 - 13
        for rid in remaining:  # nothing half-shredded: a row has its key and its payloads
            assert (
                conn.execute("SELECT COUNT(*) FROM record_keys WHERE record_id = ?", (rid,)).fetchone()[
                    0
                ]
                == 1
            )
            assert (
                conn.execute(
                    "SELECT COUNT(*) FROM record_payloads WHERE record_id = ?", (rid,)
                ).fetchone()[0]
                >= 1
            )
    rerun = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert rerun.returncode == 0, rerun.stderr
    with sqlite3.connect(db) as conn:
        assert {r[0] for r in conn.execute("SELECT record_id FROM records")} == {keep}
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    # the crash may leave the blob of the record deleted last before the kill (its key is gone,
    # so it is unreadable); the orphan sweep removes it
    blobs = [p for p in (tmp_path / "data" / "blobs").rglob("*") if p.is_file()]
    assert len([p for p in blobs if p.name.split(".v")[0] in ids]) <= 1


def test_payment_records_survive_withdrawal_for_five_years(
    vault: tuple[VaultService, FixedClock],
) -> None:
    """Seed 000/002: member data is destroyed at once on withdrawal, payment records are kept
    five years under the e-commerce act (for that legal purpose only), then shredded."""
    from vault_service.errors import PermissionDenied

    svc, clock = vault
    pay = svc.put_record(APP, "m-1", "payment_record", {"amount": "10", "currency": "KRW"})[0]
    note = svc.put_record(APP, "m-1", "concern_text", {"text": "private"})[0]
    svc.erase_subject(APP, "m-1")  # withdrawal
    with pytest.raises(NotFound):
        svc.get_record(APP, note, "matching")
    while svc.purge_erased():
        pass
    kept = svc.get_record(APP, pay, "legal_obligation")  # the law's purpose still reads it
    assert kept.fields == {"amount": "10", "currency": "KRW"}
    with pytest.raises(PermissionDenied):  # nothing else does
        svc.get_record(APP, pay, "statistics")
    legal_key = f"legal:{svc.subject_ref('m-1').hex()}"
    assert svc.store.get_service_key(legal_key) is not None
    clock.advance(1826 * DAY)
    assert [r for r, _ in svc.sweep_retention()] == [pay]
    with pytest.raises(NotFound):
        svc.get_record(APP, pay, "legal_obligation")
    assert svc.store.get_service_key(legal_key) is None  # the legal key went with the last one


def test_legal_keys_are_rotated_and_counted(vault: tuple[VaultService, FixedClock]) -> None:
    from vault_service.errors import FailedPrecondition
    from vault_service.lifecycle import rotation

    svc, clock = vault
    pay = svc.put_record(APP, "m-1", "payment_record", {"amount": "1", "currency": "KRW"})[0]
    svc.erase_subject(APP, "m-1")
    rotation.rotate(svc.store, svc.provider, clock.now())
    with pytest.raises(FailedPrecondition, match="service keys"):
        rotation.retire(svc.store, svc.provider, "1", clock.now())
    assert rotation.rewrap_keys(svc.store, svc.provider).remaining == 0
    svc.cache.clear()
    assert svc.get_record(APP, pay, "legal_obligation").fields["amount"] == "1"


def test_dormancy_notice_dormant_reactivation_and_destruction(
    vault: tuple[VaultService, FixedClock],
) -> None:
    """Seed 001/003: accounts inactive for a year are separated (dormant), with notice 30 days
    before; dormant data is readable only to reactivate; destroyed after 4 more years."""
    from vault_service.errors import PermissionDenied
    from vault_service.storage import SubjectState

    svc, clock = vault
    year, notice, four = 365 * DAY, 30 * DAY, 1460 * DAY

    def sweep() -> dict[str, int]:
        return svc.sweep_dormancy()

    profile = svc.put_record(APP, "m-1", "member_profile", {"email": "a@b.kr"})[0]
    concern = svc.put_record(APP, "m-1", "concern_text", {"text": "t"})[0]
    svc.put_record(APP, "m-2", "concern_text", {"text": "other"})
    clock.advance(year - notice - 1)
    assert sweep() == {"notices": 0, "dormant": 0, "destroyed": 0}
    svc.put_record(APP, "m-2", "concern_text", {"text": "m-2 stays active"})
    clock.advance(1)
    assert sweep()["notices"] == 1
    ref = svc.subject_ref("m-1")
    assert svc.store.get_event(ref, "dormancy_notice") is not None
    clock.advance(notice)
    assert sweep() == {"notices": 0, "dormant": 1, "destroyed": 0}
    assert svc.store.subject_state(ref) is SubjectState.DORMANT
    with pytest.raises(PermissionDenied):
        svc.get_record(APP, concern, "matching")
    assert svc.get_record(APP, profile, "reactivation").fields == {"email": "a@b.kr"}
    assert svc.store.subject_state(ref) is SubjectState.ACTIVE  # the member came back
    assert svc.store.get_event(ref, "dormancy_notice") is None
    assert svc.get_record(APP, concern, "matching").fields == {"text": "t"}
    clock.advance(year)
    sweep()
    assert svc.store.subject_state(ref) is SubjectState.DORMANT
    clock.advance(four - 1)
    sweep()  # (m-2, dormant since earlier, reaches its end first)
    assert svc.store.subject_state(ref) is SubjectState.DORMANT
    clock.advance(1)
    sweep()
    assert svc.store.subject_state(ref) is SubjectState.ERASED
    with pytest.raises(NotFound):
        svc.get_record(APP, profile, "reactivation")
    assert "dormant too long: erased" in [r.reason for r in svc.store.audit_rows()]
