"""Defects found by the model-based lifecycle test (tests/model) on the redesigned code, each kept
as a plain regression test (each failed before its fix)."""

from __future__ import annotations

import pytest

from tests.regressions.conftest import Vault, read_once_policy_text
from vault_service.errors import FailedPrecondition, NotFound

PHOTO = bytes(range(256)) * 64


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
