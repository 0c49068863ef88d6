"""Restriction of one record (issue 20, part 2; seed 003: "If the user requests correction or
deletion, the company will not use the personal information requested until the correction or
deletion is completed"), over a real gRPC server with the shipped clinic-matching policy.

The promise, and what could break it: while one record is restricted no non-exempt purpose
reads it by any path (GetRecord, DownloadContent, a share made before, a share made now), the
subject's other records are untouched, the subject's own access still sees it, the correction
(an update) is accepted and does not lift the restriction, a restart keeps it, and the record
can still be deleted. Lifting it restores every read.
"""

from __future__ import annotations

import pytest

from tests.regressions import conftest as harness
from tests.regressions.conftest import Vault
from vault_service.errors import InvalidArgument, NotFound, PermissionDenied

vault = harness.vault
clock = harness.clock
policy_text = harness.policy_text


def _two_concerns(vault: Vault) -> tuple[str, str]:
    app = vault.client("app")
    first = app.put_record("member-1", "concern_text", {"text": "nose, call 010-1234-5678"})
    second = app.put_record("member-1", "concern_text", {"text": "eyes"})
    return first.record_id, second.record_id


def test_a_restricted_record_is_read_by_no_purpose_but_the_exempt(vault: Vault) -> None:
    app, sro = vault.client("app"), vault.client("sro")
    restricted, other = _two_concerns(vault)
    assert app.get_record(restricted, "matching").fields["text"]
    assert sro.restrict_record(restricted) is True
    assert sro.restrict_record(restricted) is False  # already restricted: nothing changes
    for purpose in ("matching", "customer_support", "llm_analysis"):
        with pytest.raises(PermissionDenied):
            app.get_record(restricted, purpose)
    assert app.get_record(other, "matching").fields["text"] == "eyes"  # only that record
    exported = {r.info.record_id for r in sro.export_subject("member-1", "subject_access")}
    assert exported == {restricted, other}  # the subject's own access is exempt
    listed = {r.record_id: r.restricted for r in app.list_records("member-1").records}
    assert listed == {restricted: True, other: False}
    assert sro.restrict_record(restricted, False) is True
    assert app.get_record(restricted, "matching").fields["text"]


def test_the_correction_is_accepted_and_the_restriction_stays_until_lifted(vault: Vault) -> None:
    app, sro = vault.client("app"), vault.client("sro")
    rid, _ = _two_concerns(vault)
    sro.restrict_record(rid)
    assert app.update_record(rid, {"text": "nose (corrected)"}).version == 2
    vault.restart()  # and a restart keeps it
    app, sro = vault.client("app"), vault.client("sro")
    with pytest.raises(PermissionDenied):
        app.get_record(rid, "matching")
    sro.restrict_record(rid, False)
    assert app.get_record(rid, "matching").fields["text"] == "nose (corrected)"


def test_a_restricted_record_is_not_disclosed_by_shares(vault: Vault) -> None:
    app, sro, clinic = vault.client("app"), vault.client("sro"), vault.client("clinic")
    restricted, other = _two_concerns(vault)
    _, share = vault.share_with_clinic(restricted, "concern_text", ["text"])
    both = app.create_share(
        "member-1",
        "clinic",
        "clinic_proposal",
        [restricted, other],
        ["text"],
        expires_at=vault.clock.now() + 86400,
    )
    sro.restrict_record(restricted)
    assert list(clinic.read_share(share.share_id)) == []  # made before: left out
    released = [item.info.record_id for item in clinic.read_share(both.share_id)]
    assert released == [other]  # the rest of the share is released
    with pytest.raises(PermissionDenied):  # a share made now
        app.create_share(
            "member-1",
            "clinic",
            "clinic_proposal",
            [restricted],
            ["text"],
            expires_at=vault.clock.now() + 86400,
        )
    denied = [
        row
        for row in vault.service.store.audit_rows()
        if row.action == "share.read" and row.decision == "deny" and row.record_id == restricted
    ]
    assert denied and denied[-1].reason == "record restricted"  # on the record, no PHI


def test_a_restricted_record_can_still_be_deleted(vault: Vault) -> None:
    app, sro = vault.client("app"), vault.client("sro")
    rid, _ = _two_concerns(vault)
    sro.restrict_record(rid)
    app.delete_record(rid)
    with pytest.raises(NotFound):
        sro.restrict_record(rid, False)
    with pytest.raises(NotFound):
        app.get_record(rid, "matching")


def test_restriction_requests_are_checked(vault: Vault) -> None:
    rid, _ = _two_concerns(vault)
    with pytest.raises(NotFound):
        vault.client("sro").restrict_record("01a2013c-0000-7000-8000-0000000000ff")
    with pytest.raises(InvalidArgument):
        vault.client("sro").restrict_record("not-a-record-id")
    with pytest.raises(PermissionDenied):  # the clinic may not restrict (or learn it exists)
        vault.client("clinic").restrict_record(rid)
    assert not any(r.restricted for r in vault.client("app").list_records("member-1").records)
    said = [r.reason for r in vault.service.store.audit_rows() if r.action == "record.restrict"]
    assert "record restricted" not in said  # nothing was restricted by the refused calls
