"""Issue 17, defects 1, 12 and 13: legal holds, the erasure (destruction) ledger and backups.

Decisions D1, D12, D13 (docs/decisions/issue-17.md): every destruction is in the ledger before the
store changes, erasures deferred by a hold too; replay at start-up destroys again whatever the
ledger says is destroyed, whatever holds a restored backup has; a hold keeps everything that existed
when it was placed (an update keeps the old version until the hold's release).

Run on SQLite and PostgreSQL. Backups are copies of the data directory (and database) taken with
the server stopped; restoring one restarts the server, which replays the ledger.
"""

from __future__ import annotations

import json

import pytest

from tests.conftest import BACKENDS
from tests.regressions.conftest import DAY, Vault, read_once_policy_text
from vault_service.errors import FailedPrecondition, NotFound, PermissionDenied

pytestmark = pytest.mark.parametrize("vault", BACKENDS, indirect=True)

TEXT = {"text": "second rhinoplasty consultation", "budget": "3000000"}
#: a key epoch run by hand (docs/keys.md), with the server stopped
EPOCH = [("rotate",), ("rewrap",), ("retire", "1"), ("destroy", "1", "--mark"), ("destroy", "1")]
#: [keys] cache_max_age_seconds (the default): no process caches an erased key longer
CACHE_MAX_AGE = 300.0


def _verify_deletion_cli(vault: Vault) -> dict[str, dict[str, object]]:
    """``vaultctl --json verify-deletion``: the erasures it lists, by pseudonym."""
    result = vault.vaultctl("--json", "verify-deletion")
    assert result.returncode in (0, 1, 3), result.stderr
    return {e["subject_pseudonym"]: e for e in json.loads(result.stdout)["erasures"]}


# --- defect 1: an erasure deferred by a legal hold ---------------------------------------------------


def test_erasure_carried_out_at_hold_release_is_verified(vault: Vault) -> None:
    """Defect 1: an erasure deferred by a legal hold and carried out at the hold's release goes
    through the one erase path, ledger first: the VerifyDeletion RPC and `vaultctl verify-deletion`
    list it, and once the key epoch has destroyed root version 1 it is VERIFIED and certified."""
    app, legal = vault.client("app"), vault.client("legal")
    rid = app.put_record("member-1", "concern_text", TEXT).record_id
    hold = legal.place_hold("member-1", "litigation", "case-2026-17")
    with pytest.raises(FailedPrecondition):
        app.erase_subject("member-1")  # deferred: recorded for the hold's release
    assert legal.release_hold(hold["hold_id"])[1] == 1
    with pytest.raises(NotFound):
        app.get_record(rid, "matching")
    who = vault.pseudonym("member-1")
    listed = [e["subject_pseudonym"] for e in vault.client("operator").verify_deletion()]
    assert who in listed, "the erasure carried out at the hold's release is not in the ledger"
    assert who in _verify_deletion_cli(vault)
    vault.stop()  # the operator's key epoch, then the purge and the caches' maximum age
    for step in EPOCH:
        result = vault.vaultctl("--json", "keys", *step)
        assert result.returncode == 0, (step, result.stderr)
    vault.start()
    while vault.service.purge_erased():
        pass
    vault.clock.advance(CACHE_MAX_AGE + 1)
    (check,) = [e for e in vault.client("operator").verify_deletion() if e["subject_pseudonym"] == who]
    assert check["result"] == "VERIFIED", check["reasons"]
    assert json.loads(str(check["certificate_json"]))["subject_pseudonym"] == who


def test_erasure_carried_out_at_hold_release_survives_a_restore(vault: Vault) -> None:
    """Defect 1: restoring a backup taken before an erasure that a hold deferred (and its release
    carried out) does not make the subject readable again."""
    app, legal = vault.client("app"), vault.client("legal")
    rid = app.put_record("member-1", "concern_text", TEXT).record_id
    kept = app.put_record("member-2", "concern_text", TEXT).record_id
    backup = vault.backup()
    app, legal = vault.client("app"), vault.client("legal")
    hold = legal.place_hold("member-1", "litigation", "case-2026-17")
    with pytest.raises(FailedPrecondition):
        app.erase_subject("member-1")
    assert legal.release_hold(hold["hold_id"])[1] == 1
    vault.restore(backup)
    app = vault.client("app")
    with pytest.raises(NotFound):
        app.get_record(rid, "matching")
    assert app.get_record(kept, "matching").fields == TEXT


def test_replay_ignores_a_stale_hold_of_a_restored_backup(vault: Vault) -> None:
    """Defect 1: hold placed, backup taken, hold released, subject erased, backup restored: the
    hold in the backup is stale (it was released), so the replay erases the subject again."""
    app, legal = vault.client("app"), vault.client("legal")
    rid = app.put_record("member-1", "concern_text", TEXT).record_id
    hold = legal.place_hold("member-1", "litigation", "case-2026-17")
    backup = vault.backup()
    app, legal = vault.client("app"), vault.client("legal")
    assert legal.release_hold(hold["hold_id"])[1] == 0
    assert app.erase_subject("member-1") is True
    vault.restore(backup)
    with pytest.raises(NotFound):
        vault.client("app").get_record(rid, "matching")


def test_deferred_erasure_survives_a_restore_of_a_backup_older_than_the_request(
    vault: Vault,
) -> None:
    """Defect 1: an erasure asked for during a hold (recorded for its release) is not lost when a
    backup from before the request is restored: the hold's release still carries it out."""
    app, legal = vault.client("app"), vault.client("legal")
    rid = app.put_record("member-1", "concern_text", TEXT).record_id
    hold = legal.place_hold("member-1", "litigation", "case-2026-17")
    backup = vault.backup()  # the hold is active; nothing is pending yet
    with pytest.raises(FailedPrecondition):
        vault.client("app").erase_subject("member-1")
    vault.restore(backup)
    app, legal = vault.client("app"), vault.client("legal")
    assert app.get_record(rid, "matching").fields == TEXT  # still held: kept as evidence
    assert legal.release_hold(hold["hold_id"])[1] == 1, "the deferred erasure was lost"
    with pytest.raises(NotFound):
        app.get_record(rid, "matching")


def test_deferred_erasure_is_carried_out_when_the_restored_backup_has_no_hold(
    vault: Vault,
) -> None:
    """Defect 1 (D1): an erasure deferred by a hold that the restored backup does not have (the
    backup is older than the hold) is carried out by the replay at start-up."""
    app = vault.client("app")
    rid = app.put_record("member-1", "concern_text", TEXT).record_id
    backup = vault.backup()  # no hold yet
    vault.client("legal").place_hold("member-1", "litigation", "case-2026-17")
    with pytest.raises(FailedPrecondition):
        vault.client("app").erase_subject("member-1")
    vault.restore(backup)
    with pytest.raises(NotFound):
        vault.client("app").get_record(rid, "matching")


def test_deferred_erasure_is_listed_pending(vault: Vault) -> None:
    """Defect 1 (D1): verify-deletion lists an erasure deferred by a legal hold as PENDING
    ("deferred by a legal hold")."""
    app = vault.client("app")
    app.put_record("member-1", "concern_text", TEXT)
    vault.client("legal").place_hold("member-1", "litigation", "case-2026-17")
    with pytest.raises(FailedPrecondition):
        app.erase_subject("member-1")
    who = vault.pseudonym("member-1")
    listed = {e["subject_pseudonym"]: e for e in vault.client("operator").verify_deletion()}
    assert who in listed, "the deferred erasure is not in the ledger"
    assert listed[who]["result"] == "PENDING"
    reasons: list[str] = listed[who]["reasons"]
    assert any("deferred by a legal hold" in r for r in reasons), reasons


# --- defect 12: destroyed records, versions and shares come back from backups ------------------------


def test_deleted_record_stays_deleted_after_a_restore(vault: Vault) -> None:
    """Defect 12: a record deleted after a backup was taken is not readable again when that
    backup is restored."""
    app = vault.client("app")
    gone = app.put_record("member-1", "concern_text", TEXT).record_id
    kept = app.put_record("member-1", "concern_text", {"text": "kept"}).record_id
    backup = vault.backup()
    vault.client("app").delete_record(gone)
    vault.restore(backup)
    app = vault.client("app")
    with pytest.raises(NotFound):
        app.get_record(gone, "matching")
    assert app.get_record(kept, "matching").fields == {"text": "kept"}


def test_retention_shred_stays_shredded_after_a_restore(vault: Vault) -> None:
    """Defect 12: a record shredded by its retention rule (180 days after match_completed) after
    a backup was taken is not readable again when that backup is restored."""
    app = vault.client("app")
    rid = app.put_record("member-1", "concern_text", TEXT).record_id
    assert app.record_event("member-1", "match_completed") is True
    backup = vault.backup()
    vault.clock.advance(180 * DAY)
    assert [r for r, _ in vault.service.sweep_retention()] == [rid]
    vault.restore(backup)
    with pytest.raises(NotFound):
        vault.client("app").get_record(rid, "matching")


@pytest.mark.parametrize("policy_text", [read_once_policy_text()], ids=["read-once-policy"])
def test_read_once_destruction_stays_after_a_restore(vault: Vault) -> None:
    """Defect 12: a read-once record destroyed by the read that released it, after a backup was
    taken, is not readable again when that backup is restored."""
    app = vault.client("app")
    rid = app.put_record("member-1", "face_scan", {"note": "front"}, content=b"\xff\xd8face").record_id
    backup = vault.backup()
    app = vault.client("app")
    assert app.get_record(rid, "simulation", include_content=True).content == b"\xff\xd8face"
    with pytest.raises(NotFound):
        app.get_record(rid, "simulation", include_content=True)
    vault.restore(backup)
    with pytest.raises(NotFound):
        vault.client("app").get_record(rid, "simulation", include_content=True)


def test_version_replaced_by_an_update_stays_destroyed_after_a_restore(vault: Vault) -> None:
    """Defect 12: the old version an update destroyed, after a backup was taken, is not readable
    again when that backup is restored."""
    app = vault.client("app")
    rid = app.put_record("member-1", "concern_text", TEXT).record_id
    backup = vault.backup()
    assert vault.client("app").update_record(rid, {"text": "corrected"}).version == 2
    vault.restore(backup)
    try:
        released = dict(vault.client("app").get_record(rid, "matching").fields)
    except NotFound:
        released = {}
    assert released != TEXT, "the destroyed version 1 is readable again"


def test_revoked_share_stays_revoked_after_a_restore(vault: Vault) -> None:
    """Defect 12: a share revoked after a backup was taken cannot be read again when that backup
    is restored."""
    app = vault.client("app")
    rid = app.put_record("member-1", "concern_text", TEXT).record_id
    _, share = vault.share_with_clinic(rid, "concern_text", ["text"])
    assert len(list(vault.client("clinic").read_share(share.share_id))) == 1
    backup = vault.backup()
    vault.client("app").revoke_share(share.share_id)
    vault.restore(backup)
    with pytest.raises(PermissionDenied):
        list(vault.client("clinic").read_share(share.share_id))


# --- defect 13: a legal hold preserves evidence --------------------------------------------------


def _stored_blobs(vault: Vault) -> set[bytes]:
    """What the blob store holds (each sealed object is unique: random salt)."""
    return {p.read_bytes() for p in vault.blob_files()}


@pytest.mark.parametrize("scope", ["record", "subject"])
def test_update_under_a_hold_keeps_the_old_version_until_release(vault: Vault, scope: str) -> None:
    """Defect 13: under a legal hold (on the record or its subject) an update is accepted but the
    old version is kept (its sealed content stays in the blob store) and destroyed at the hold's
    release as a pending deletion."""
    app, legal = vault.client("app"), vault.client("legal")
    rid = app.put_record(
        "member-1", "concern_photo", {"caption": "left"}, content=b"original photo"
    ).record_id
    hold = legal.place_hold("member-1", "evidence", "case-9", record_id=rid if scope == "record" else "")
    before = _stored_blobs(vault)
    assert len(before) == 1
    assert app.update_record(rid, {"caption": "right"}, content=b"new photo").version == 2
    current = app.get_record(rid, "matching", include_content=True)
    assert (current.info.version, current.content) == (2, b"new photo")
    lost = len(before - _stored_blobs(vault))
    assert lost == 0, "the update destroyed the old version's content under a legal hold"
    assert legal.release_hold(hold["hold_id"])[1] == 1  # the old version goes now
    assert len(before & _stored_blobs(vault)) == 0
    assert app.get_record(rid, "matching", include_content=True).content == b"new photo"
