"""Defects of the kinds of issue 17 found by reviewing the new code (each failed before its fix):
a ledger replay after a restore must not release a hold that is still in force, must not
destroy what a hold placed after a destruction was ledgered now protects, and must keep a
read-once record that was consumed under a hold consumed."""

from __future__ import annotations

from typing import Any

import pytest

from tests.regressions.conftest import Vault, read_once_policy_text
from vault_service.errors import FailedPrecondition, NotFound
from vault_service.lifecycle.ledger import Destruction, Kind, State

TEXT = {"text": "second rhinoplasty consultation", "budget": "3000000"}
PHOTO = bytes(range(256)) * 64


@pytest.fixture
def policy_text() -> str:
    return read_once_policy_text()


def _active(vault: Vault) -> list[Any]:
    return [h for h in vault.client("legal").list_holds("member-1") if not h["released_at"]]


def test_a_replayed_share_revocation_does_not_release_a_hold_in_force(vault: Vault) -> None:
    """A share revoked during a hold, then a restore of a backup from before the revocation: the
    replay revokes the share again, and the hold (in force) stays, with the erasure it defers."""
    app, legal = vault.client("app"), vault.client("legal")
    rid = app.put_record("member-1", "concern_text", TEXT).record_id
    _, share = vault.share_with_clinic(rid, "concern_text", ["text"])
    legal.place_hold("member-1", "litigation", "case-7")
    with pytest.raises(FailedPrecondition):  # deferred to the hold's release
        app.erase_subject("member-1")
    backup = vault.backup()
    vault.client("app").revoke_share(share.share_id)
    vault.restore(backup)
    assert len(_active(vault)) == 1
    assert vault.client("app").get_record(rid, "matching").fields == TEXT  # still held, not erased


def test_a_hold_placed_after_a_ledgered_destruction_is_respected_by_the_replay(vault: Vault) -> None:
    """The ledger says a record was destroyed, but the store never carried it out (a crash in
    between) and a hold was placed since: the replay records the deletion for the hold's
    release instead of destroying held evidence, and the release carries it out."""
    app, legal = vault.client("app"), vault.client("legal")
    rid = app.put_record("member-1", "concern_text", TEXT).record_id
    ref = vault.service.subject_ref("member-1")
    at = vault.clock.now()
    vault.service.shredder.note([Destruction(Kind.RECORD, ref, State.DONE, at, rid, cause="delete")])
    vault.clock.advance(10)
    hold = legal.place_hold("member-1", "litigation", "case-8")
    vault.restart()  # the replay
    assert vault.client("app").get_record(rid, "matching").fields == TEXT
    assert vault.client("legal").release_hold(hold["hold_id"])[1] == 1
    with pytest.raises(NotFound):
        vault.client("app").get_record(rid, "matching")


def test_a_read_once_record_consumed_under_a_hold_stays_consumed_after_a_restore(
    vault: Vault,
) -> None:
    """A read-once record released under a hold is kept (consumed) until the release; a backup
    from before its release, restored, must not make it readable again."""
    app, legal = vault.client("app"), vault.client("legal")
    rid = app.put_record("member-1", "face_photo", {}, content=PHOTO).record_id
    legal.place_hold("member-1", "evidence", "case-9", record_id=rid)
    backup = vault.backup()
    got = vault.client("app").get_record(rid, "simulation", include_content=True)
    assert got.content == PHOTO
    vault.restore(backup)
    with pytest.raises(NotFound):
        vault.client("app").get_record(rid, "simulation", include_content=True)


def test_the_blob_sweep_spares_the_blob_of_an_update_in_flight(vault: Vault) -> None:
    """An update writes its new blob before it commits; a blob's age is read from its record's
    id, so for a record older than the sweep's age limit the sweep took the new blob for an old
    orphan and deleted it, and the update then committed a record whose content was gone
    (DATA_LOSS). The sweep now spares a blob of a version after its record's current one."""
    app = vault.client("app")
    rid = app.put_record("member-1", "face_photo", {}, content=PHOTO).record_id
    vault.clock.advance(7 * 86400)
    blobs = vault.service.blobs
    blobs.put(f"{rid}.v2", [b"written by an update that has not committed yet"])
    blobs.put(f"{rid}.v9x", [b"not a version: an orphan"])
    assert vault.service.sweep_blobs(0.0) == 1
    assert blobs.exists(f"{rid}.v2") and not blobs.exists(f"{rid}.v9x")
    vault.client("app").delete_record(rid)
    vault.service.sweep_blobs(0.0)
    assert not blobs.exists(f"{rid}.v2")  # it goes with its record
