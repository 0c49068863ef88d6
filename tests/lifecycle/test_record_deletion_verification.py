"""Every deletion verifiable, not only erasures (issue 20, part 3): a record deleted, shredded by
its retention rule or released by its read-once read is listed by VerifyDeletion (and `vaultctl
verify-deletion`), PENDING_UNTIL the backups from before it have expired, then VERIFIED with a
signed certificate that names the record and checks offline; a deletion a hold deferred is
PENDING; a record the ledger says is destroyed but the store still has is FAILED; pruning the
audit trail loses none of it. Through a real server on a fixed clock."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.regressions import conftest as harness
from tests.regressions.conftest import DAY, Vault, read_once_policy_text
from vault_service.errors import FailedPrecondition
from vault_service.lifecycle.ledger import Destruction, Kind, State
from vault_service.lifecycle.verification import check_certificate

vault = harness.vault
clock = harness.clock
TEXT = {"text": "second rhinoplasty consultation", "budget": "3000000"}
PHOTO = bytes(range(256)) * 16
WINDOW = 35 * DAY  # [lifecycle] backup_window_days default


@pytest.fixture
def policy_text() -> str:
    return read_once_policy_text()


def _records(vault: Vault) -> dict[str, dict[str, object]]:
    return {r["record_id"]: r for r in vault.client("operator").verify_record_deletion()}


def _until(at: float) -> str:
    return "PENDING_UNTIL " + time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at))


def test_a_deleted_record_is_pending_until_backups_expire_then_certified(vault: Vault) -> None:
    app = vault.client("app")
    rid = app.put_record("member-1", "concern_text", TEXT).record_id
    app.delete_record(rid)
    at = vault.clock.now()
    row = _records(vault)[rid]
    assert (row["cause"], row["result"]) == ("delete", _until(at + WINDOW))
    assert row["subject_pseudonym"] == vault.pseudonym("member-1")
    assert row["certificate_json"] is None
    vault.clock.advance(WINDOW + 1)
    row = _records(vault)[rid]
    assert row["result"] == "VERIFIED"
    cert = json.loads(str(row["certificate_json"]))
    assert (cert["kind"], cert["record_id"], cert["cause"]) == ("record", rid, "delete")
    assert cert["checks"] == {"backups": "expired", "blobs": "gone", "rows": "destroyed"}
    assert check_certificate(cert) == (True, "valid")
    cert["record_id"] = "another"
    assert check_certificate(cert) == (False, "invalid signature")


def test_retention_and_read_once_destructions_are_listed_with_their_cause(vault: Vault) -> None:
    app = vault.client("app")
    once = app.put_record("member-1", "face_photo", {}, content=PHOTO).record_id
    assert app.get_record(once, "simulation", include_content=True).content == PHOTO
    payment = app.put_record("member-1", "payment_record", {"amount": "1"}).record_id
    vault.clock.advance(1827 * DAY)
    assert (payment, "after_creation 1826d") in vault.service.sweep_retention()
    rows = _records(vault)
    assert rows[once]["cause"] == "read-once" and rows[once]["result"] == "VERIFIED"
    assert rows[payment]["cause"] == "retention"
    assert rows[payment]["result"] == _until(vault.clock.now() + WINDOW)


def test_a_deletion_deferred_by_a_hold_is_pending_until_the_release(vault: Vault) -> None:
    app, legal = vault.client("app"), vault.client("legal")
    rid = app.put_record("member-1", "concern_text", TEXT).record_id
    hold = legal.place_hold("member-1", "evidence", "case-31", record_id=rid)
    with pytest.raises(FailedPrecondition):
        app.delete_record(rid)
    row = _records(vault)[rid]
    assert row["result"] == "PENDING" and row["reasons"] == [
        "deferred by a legal hold: carried out at its release"
    ]
    legal.release_hold(hold["hold_id"])
    vault.clock.advance(WINDOW + 1)
    row = _records(vault)[rid]
    assert row["result"] == "VERIFIED"
    assert row["cause"] == "delete"  # what asked for it, not the release that carried it out
    assert json.loads(str(row["certificate_json"]))["cause"] == "delete"


def test_a_record_the_ledger_destroyed_but_the_store_kept_fails(vault: Vault) -> None:
    """The ledger is written first, the store next: within minutes of the entry the rows are a
    shred in flight (PENDING, not a false alarm); long after, the store disagrees (FAILED)."""
    rid = vault.client("app").put_record("member-1", "concern_text", TEXT).record_id
    ref = vault.service.subject_ref("member-1")
    vault.service.shredder.note(
        [Destruction(Kind.RECORD, ref, State.DONE, vault.clock.now(), rid, cause="delete")]
    )
    row = _records(vault)[rid]
    assert row["result"].startswith("PENDING_UNTIL ")
    assert row["reasons"][0] == "being shredded: 1 record row, 1 data key rows, 2 payload rows"
    vault.clock.advance(WINDOW + 1)
    row = _records(vault)[rid]
    assert row["result"] == "FAILED"
    assert row["reasons"] == ["left in the store: 1 record row, 1 data key rows, 2 payload rows"]


def test_pruning_the_audit_trail_loses_no_record_destruction(vault: Vault) -> None:
    app = vault.client("app")
    rid = app.put_record("member-1", "concern_text", TEXT).record_id
    app.delete_record(rid)
    store = vault.service.store
    store.sequence_pending()  # the calls' entries into the chain (the sequencer's job)
    head = store.audit_head()
    assert head is not None and store.delete_audit_before(head.seq) > 0
    vault.clock.advance(WINDOW + 1)
    assert _records(vault)[rid]["result"] == "VERIFIED"


def test_vaultctl_lists_record_destructions_and_writes_their_certificates(
    vault: Vault, tmp_path: Path
) -> None:
    """`vaultctl verify-deletion` runs on the system clock: the harness's fixed clock is ahead
    of it, so the deletion is within the backup window (exit 3, PENDING_UNTIL)."""
    app = vault.client("app")
    rid = app.put_record("member-1", "concern_text", TEXT).record_id
    app.delete_record(rid)
    r = vault.vaultctl("--json", "verify-deletion", "--out-dir", str(tmp_path / "certs"))
    assert r.returncode == 3, r.stderr
    (row,) = json.loads(r.stdout)["records"]
    assert (row["record_id"], row["cause"]) == (rid, "delete")
    assert row["result"].startswith("PENDING_UNTIL ") and row["certificate_file"] is None
    assert row["checks"]["rows"] == "destroyed"


def test_a_read_once_read_that_lost_to_an_update_leaves_the_new_version(vault: Vault) -> None:
    """The read-once release is ledgered before its claim; an update committed in between wins
    (docs/lifecycle.md: the read gets nothing, the new version stays). The ledger says so
    (a cancelled entry), so neither the next start's replay destroys the new version nor does
    verification report the record."""
    from vault_service.audit.model import job_row
    from vault_service.lifecycle.shredding import Requester

    app = vault.client("app")
    rid = app.put_record("member-1", "face_photo", {}, content=PHOTO).record_id
    assert app.update_record(rid, {}, content=PHOTO[::-1]).version == 2
    row = job_row("record.get", "released", vault.clock.now(), record_id=rid)
    claim = vault.service.shredder.consume_read_once(
        rid, vault.service.subject_ref("member-1"), 1, (row, row), Requester("app", "read-once")
    )
    assert claim is None  # version 1 was what the read decrypted: the update won
    assert rid not in _records(vault)
    vault.restart()  # the replay
    got = vault.client("app").get_record(rid, "simulation", include_content=True)
    assert got.content == PHOTO[::-1]


def test_verify_deletion_answers_within_the_message_limit_failed_first(vault: Vault) -> None:
    """A ledger of many record destructions: the RPC carries 1,000 of them (every FAILED first)
    and says how many there are; the erasures are still answered."""
    ref = vault.service.subject_ref("member-1")
    live = vault.client("app").put_record("member-1", "concern_text", TEXT).record_id
    at = vault.clock.now()
    gone = [
        Destruction(
            Kind.RECORD, ref, State.DONE, at, f"01a00000-0000-7000-8000-{i:012d}", cause="delete"
        )
        for i in range(1200)
    ]
    vault.service.shredder.note(
        [*gone, Destruction(Kind.RECORD, ref, State.DONE, at, live, cause="delete")]
    )
    vault.clock.advance(WINDOW + 1)
    rows = vault.client("operator").verify_record_deletion()
    assert len(rows) == 1000
    assert rows[0]["record_id"] == live and rows[0]["result"] == "FAILED"
    assert vault.client("operator").verify_deletion() == []  # erasures: none, still answered


@pytest.mark.parametrize("first", ["delete", "erase"])
def test_a_delete_and_an_erasure_both_deferred_by_one_hold_end_verified(
    vault: Vault, first: str
) -> None:
    """A hold defers a record's delete and its subject's erasure (in either order); its release
    carries both out, and the record's destruction ends VERIFIED under its cause, not PENDING
    for a hold that is gone."""
    app, legal = vault.client("app"), vault.client("legal")
    rid = app.put_record("member-1", "concern_text", TEXT).record_id
    hold = legal.place_hold("member-1", "litigation", "case-41")
    steps = {"delete": lambda: app.delete_record(rid), "erase": lambda: app.erase_subject("member-1")}
    for name in (first, *(n for n in steps if n != first)):
        with pytest.raises(FailedPrecondition):
            steps[name]()
    assert _records(vault)[rid]["result"] == "PENDING"
    legal.release_hold(hold["hold_id"])
    while vault.service.purge_erased():
        pass
    vault.clock.advance(WINDOW + 1)
    row = _records(vault)[rid]
    assert (row["result"], row["cause"]) == ("VERIFIED", "delete")
