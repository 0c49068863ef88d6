"""Defects found by the model-based lifecycle test (tests/model) on the redesigned code, each kept
as a plain regression test (each failed before its fix)."""

from __future__ import annotations

import pytest

from tests.regressions.conftest import Vault, read_once_policy_text
from vault_service.errors import FailedPrecondition, NotFound, PermissionDenied

PHOTO = bytes(range(256)) * 64
TEXT = {"text": "second rhinoplasty consultation", "budget": "3000000"}
PAYMENT = {"amount": "150000", "currency": "KRW", "provider_reference": "pg-7781"}


@pytest.fixture
def policy_text() -> str:
    return read_once_policy_text()


def test_a_read_once_record_released_then_deleted_under_a_hold_stays_consumed_after_a_restore(
    vault: Vault,
) -> None:
    """Hold, backup, the read-once record released (consumed, kept for the hold), then its delete
    asked for (deferred to the release), restore: the delete's ledger entry came after the
    release's, and the replay, reading only the last entry, forgot the record was consumed; it
    was released a second time."""
    app, legal = vault.client("app"), vault.client("legal")
    rid = app.put_record("member-1", "face_photo", {}, content=PHOTO).record_id
    hold = legal.place_hold("member-1", "evidence", "case-11")
    backup = vault.backup()
    assert vault.client("app").get_record(rid, "simulation", include_content=True).content == PHOTO
    with pytest.raises(FailedPrecondition):  # deferred to the hold's release
        vault.client("app").delete_record(rid)
    vault.restore(backup)
    with pytest.raises(NotFound):
        vault.client("app").get_record(rid, "simulation", include_content=True)
    # the deletion waits for the hold, and the release carries it out
    assert vault.client("legal").release_hold(hold["hold_id"])[1] >= 1
    with pytest.raises(NotFound):
        vault.client("app").get_record(rid, "simulation", include_content=True)


def test_a_version_kept_under_a_hold_and_current_again_after_a_restore_goes_at_the_release(
    vault: Vault,
) -> None:
    """Hold, backup, update (the old version kept for the hold), restore: the backup's current
    version is the one the update replaced. The hold's release must destroy it, and with it the
    record (the newer version was lost with the restore); it was dropped from the pending
    deletions and the old version stayed readable."""
    app, legal = vault.client("app"), vault.client("legal")
    rid = app.put_record("member-1", "concern_text", TEXT).record_id
    hold = legal.place_hold("member-1", "evidence", "case-12", record_id=rid)
    backup = vault.backup()
    vault.client("app").update_record(rid, {"text": "revised", "budget": "1"})
    vault.restore(backup)
    assert vault.client("app").get_record(rid, "matching").fields == TEXT  # held: kept
    assert vault.client("legal").release_hold(hold["hold_id"])[1] == 1
    with pytest.raises(NotFound):
        vault.client("app").get_record(rid, "matching")


def test_an_update_of_a_record_kept_by_law_after_the_erasure_is_failed_precondition(
    vault: Vault,
) -> None:
    """Writes to an erased subject are FAILED_PRECONDITION (README's table), also an update of a
    payment record kept by law after the withdrawal; it answered NOT_FOUND."""
    app = vault.client("app")
    payment = app.put_record("member-1", "payment_record", PAYMENT).record_id
    assert app.erase_subject("member-1") is True
    with pytest.raises(FailedPrecondition):
        app.update_record(payment, {**PAYMENT, "amount": "1"})
    assert app.get_record(payment, "legal_obligation").fields == PAYMENT  # still kept, unchanged


def test_a_share_read_needs_the_consent_also_when_it_would_release_nothing(vault: Vault) -> None:
    """A share whose records are all gone, read after the recipient's consent was revoked:
    PERMISSION_DENIED like any share read without consent; it answered OK with nothing."""
    app = vault.client("app")
    rid = app.put_record("member-1", "concern_text", TEXT).record_id
    grant, share = vault.share_with_clinic(rid, "concern_text", ["text"])
    app.delete_record(rid)
    app.revoke_consent(grant.grant_id)
    with pytest.raises(PermissionDenied):
        list(vault.client("clinic").read_share(share.share_id))


def test_a_share_read_of_a_restricted_subject_is_refused_also_when_it_would_release_nothing(
    vault: Vault,
) -> None:
    """Restriction suspends every read but the exempt purposes' (README): a share whose records
    are all gone, read after the subject's processing was restricted, answered OK with nothing;
    it is PERMISSION_DENIED like any share read of a restricted subject."""
    app = vault.client("app")
    rid = app.put_record("member-1", "concern_text", TEXT).record_id
    _, share = vault.share_with_clinic(rid, "concern_text", ["text"])
    app.delete_record(rid)
    vault.client("sro").restrict_processing("member-1")
    with pytest.raises(PermissionDenied):
        list(vault.client("clinic").read_share(share.share_id))
    vault.client("sro").restrict_processing("member-1", restricted=False)
    assert list(vault.client("clinic").read_share(share.share_id)) == []
