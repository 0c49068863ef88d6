"""Two pairs the features were not yet tried in, over a real gRPC server:

- **restriction of one record x read-once** (seed 003's restriction, seed 002's face photo): a
  refused read of a restricted read-once record must not consume it (it would be destroyed
  unreleased), by any path (GetRecord, DownloadContent, a share made before the restriction);
  once lifted, one read releases it and destroys it;
- **two-party consent x shares** (seed 001's "explicit consent of both"): a share under a purpose
  that needs two parties is made only with both grants in force, and every read of it needs both
  still: either party's revocation ends it at the next read.
"""

from __future__ import annotations

import pytest

from tests.conftest import ROOT
from tests.regressions import conftest as harness
from tests.regressions.conftest import DAY, Vault, policy_with_all_principals, read_once_policy_text
from vault_service.errors import NotFound, PermissionDenied

vault = harness.vault
clock = harness.clock

PHOTO = bytes(range(256)) * 100


def _download(vault: Vault, record_id: str) -> bytes:
    return b"".join(vault.client("app").download_content(record_id, "simulation"))


class TestRestrictedReadOnce:
    @pytest.fixture
    def policy_text(self) -> str:
        return read_once_policy_text()

    def test_a_refused_read_of_a_restricted_read_once_record_consumes_nothing(
        self, vault: Vault
    ) -> None:
        app, sro = vault.client("app"), vault.client("sro")
        rid = app.put_record("member-1", "face_photo", {}, content=PHOTO).record_id
        blobs = vault.blob_files()
        assert blobs
        assert sro.restrict_record(rid)
        with pytest.raises(PermissionDenied):
            app.get_record(rid, "simulation", include_content=True)
        with pytest.raises(PermissionDenied):
            _download(vault, rid)
        assert vault.blob_files() == blobs  # nothing destroyed unreleased
        assert [r.record_id for r in app.list_records("member-1").records] == [rid]
        vault.restart()  # the restart keeps the restriction
        with pytest.raises(PermissionDenied):
            _download(vault, rid)
        assert vault.client("sro").restrict_record(rid, False) is True
        assert _download(vault, rid) == PHOTO  # released once, whole ...
        with pytest.raises(NotFound):  # ... and destroyed by that release
            _download(vault, rid)
        assert vault.blob_files() == []

    def test_a_share_made_before_the_restriction_leaves_the_record_out_and_unconsumed(
        self, vault: Vault
    ) -> None:
        app, sro, clinic = vault.client("app"), vault.client("sro"), vault.client("clinic")
        rid = app.put_record("member-1", "face_photo", {}, content=PHOTO).record_id
        _, share = vault.share_with_clinic(rid, "face_photo", ["content"])
        assert sro.restrict_record(rid)
        assert list(clinic.read_share(share.share_id)) == []  # left out, nothing streamed
        denied = [
            r
            for r in vault.service.store.audit_rows()
            if r.record_id == rid and r.reason == "record restricted"
        ]
        assert denied, "the share's refusal of the restricted record is not audited"
        assert sro.restrict_record(rid, False)
        assert _download(vault, rid) == PHOTO  # the share's refusal consumed nothing


def _two_party_policy() -> str:
    """clinic-matching with a purpose that needs the member's and a guardian's consent, readable
    by the clinic through shares."""
    base = (ROOT / "policies" / "clinic-matching.toml").read_text()
    old = 'purposes = ["clinic_proposal"]'
    assert base.count(old) == 1
    base = base.replace(old, 'purposes = ["clinic_proposal", "joint_review"]')
    return policy_with_all_principals(
        base
        + """
[purposes.joint_review]
description = "A minor's concern, reviewed by a clinic only with the member's and a guardian's consent."
categories = ["concern_text"]
fields = { concern_text = ["text"] }
consent_parties = ["member", "guardian"]
"""
    )


class TestTwoPartyShare:
    @pytest.fixture
    def policy_text(self) -> str:
        return _two_party_policy()

    def _grant(self, vault: Vault, party: str) -> str:
        grant = vault.client("app").grant_consent(
            "member-1",
            "joint_review",
            {"concern_text": None},
            evidence_reference=f"form-{party}",
            grantee_principal="clinic",
            party=party,
        )
        return grant.grant_id

    def _share(self, vault: Vault, rid: str) -> str:
        share = vault.client("app").create_share(
            "member-1",
            "clinic",
            "joint_review",
            [rid],
            ["text"],
            expires_at=vault.clock.now() + 30 * DAY,
        )
        return share.share_id

    def test_a_share_needs_both_parties_at_creation_and_at_every_read(self, vault: Vault) -> None:
        app, clinic = vault.client("app"), vault.client("clinic")
        rid = app.put_record(
            "member-1", "concern_text", {"text": "scar revision", "budget": "1"}
        ).record_id
        with pytest.raises(PermissionDenied):  # nobody consented
            self._share(vault, rid)
        member = self._grant(vault, "member")
        with pytest.raises(PermissionDenied):  # one party is not enough
            self._share(vault, rid)
        guardian = self._grant(vault, "guardian")
        share_id = self._share(vault, rid)
        (item,) = clinic.read_share(share_id)
        assert not isinstance(item, tuple) and item.fields == {"text": "scar revision"}
        app.revoke_consent(guardian)  # either party's revocation ends it
        with pytest.raises(PermissionDenied):
            list(clinic.read_share(share_id))
        self._grant(vault, "guardian")  # a new guardian grant: readable again
        assert list(clinic.read_share(share_id))
        app.revoke_consent(member)
        with pytest.raises(PermissionDenied):
            list(clinic.read_share(share_id))
