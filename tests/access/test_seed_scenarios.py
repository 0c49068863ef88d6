"""The shipped policies of seeds 000 (clinic matching), 001 (counseling) and 003 (medical imaging),
walked through a real gRPC server on a fixed clock with the client SDK: what each privacy policy
promises is what the service enforces, end to end.

- 000: a member's concern reaches the matched clinic only through a share, only with the member's
  consent, only the proposal's fields and with e-mail addresses typed into the text masked; never
  by a direct read, never to another clinic, never the member's profile; the share ends 180 days
  after the match completes; the LLM sees the text de-identified; withdrawal (erasure) makes the
  records unreadable at once.
- 001: counseling notes need the client's explicit consent; that consent never opens a recording
  to a supervisor (nor to the counselor under "supervision"); a separate supervision consent
  does, for recordings only; quality statistics are de-identified; a client inactive for a year
  is separated (its key under the dormant context) after a notice 30 days before, and a login
  brings them back.
- 003: research sees analysis results de-identified; a correction request (restriction of
  processing) stops analysis until it is lifted, while the correction itself and the subject's
  access (export, content included) go on; an inactive member is stored separately, usable only
  to reactivate, and destroyed four years later.

Each policy is read from policies/ and given principals of the regression harness
(tests/regressions/conftest.py) with the policy's roles.
"""

from __future__ import annotations

import pytest

from tests.conftest import ROOT
from tests.regressions import conftest as harness
from tests.regressions.conftest import DAY, Vault, principals_text
from vault_service.client import Record
from vault_service.errors import InvalidArgument, NotFound, PermissionDenied

vault = harness.vault
clock = harness.clock


def _policy(name: str, roles: dict[str, str]) -> str:
    return (ROOT / "policies" / name).read_text() + principals_text(roles)


class TestClinicMatching000:
    @pytest.fixture
    def policy_text(self) -> str:
        return _policy(
            "clinic-matching.toml", {"app": "application", "clinic": "clinic", "clinic-b": "clinic"}
        )

    def test_clinic_matching_seed_000(self, vault: Vault) -> None:
        app, clinic, other_clinic = vault.client("app"), vault.client("clinic"), vault.client("clinic-b")
        concern = app.put_record(
            "m-1",
            "concern_text",
            {
                "text": "rhinoplasty, contact kim@example.com",
                "budget": "3000000",
                "body_area": "nose",
                "stay_schedule": "Dec 1-9",
            },
        ).record_id
        profile = app.put_record(
            "m-1", "member_profile", {"email": "kim@example.com", "contact": "010-1234-5678"}
        ).record_id
        # disclosed to the matched clinic only, through a share, with consent, never email/contact
        with pytest.raises(PermissionDenied):
            app.create_share(
                "m-1",
                "clinic",
                "clinic_proposal",
                [concern],
                ["text", "budget"],
                expires_at=vault.clock.now() + DAY,
            )
        grant = app.grant_consent(
            "m-1",
            "clinic_proposal",
            {"concern_text": None},
            valid_from=vault.clock.now(),
            evidence_reference="match-req-1",
            grantee_principal="clinic",
        )
        share = app.create_share(
            "m-1",
            "clinic",
            "clinic_proposal",
            [concern],
            ["text", "budget", "body_area", "stay_schedule"],
            event_name="match_completed",
            event_period_seconds=180 * DAY,
        )
        (item,) = list(clinic.read_share(share.share_id))
        assert isinstance(item, Record) and item.fields["budget"] == "3000000"
        # the seed promises the clinic no e-mail or contact information: not even typed into the text
        assert item.fields["text"] == "rhinoplasty, contact [EMAIL]"
        with pytest.raises(PermissionDenied):
            clinic.get_record(concern, "clinic_proposal")  # never directly
        with pytest.raises(PermissionDenied):
            list(other_clinic.read_share(share.share_id))
        with pytest.raises(InvalidArgument):
            app.create_share(
                "m-1",
                "clinic",
                "clinic_proposal",
                [profile],
                ["email"],
                expires_at=vault.clock.now() + DAY,
            )
        # 6 months after the match completes, the clinic's view ends
        app.record_event("m-1", "match_completed")
        vault.clock.advance(180 * DAY - 1)
        assert len(list(clinic.read_share(share.share_id))) == 1  # still open the second before
        vault.clock.advance(1)
        with pytest.raises(PermissionDenied):
            list(clinic.read_share(share.share_id))
        vault.clock.advance(-180 * DAY)
        app.revoke_consent(grant.grant_id)
        # text goes to the LLM only anonymized
        llm = app.get_record(concern, "llm_analysis")
        assert "kim@example.com" not in llm.fields["text"] and llm.info.subject_pseudonym
        # withdrawal: immediate erasure, unreadable at once
        app.erase_subject("m-1")
        with pytest.raises(NotFound):
            app.get_record(concern, "matching")


def _consent_of_both(vault: Vault, subject: str, fields: list[str] | None = None) -> dict[str, str]:
    """The client's and the counselor's consent to recording the subject's sessions (grant ids
    by party); ``fields`` narrows the client's."""
    return {
        party: vault.client("app")
        .grant_consent(
            subject,
            "session_review",
            {"session_recording": fields if party == "client" else None},
            valid_from=vault.clock.now(),
            evidence_reference=f"recording-consent-{party}",
            grantee_role="counselor",
            party=party,
        )
        .grant_id
        for party in ("client", "counselor")
    }


class TestCounseling001:
    @pytest.fixture
    def policy_text(self) -> str:
        return _policy(
            "counseling.toml",
            {"app": "platform", "counselor": "counselor", "supervisor": "supervisor"},
        )

    def test_a_client_inactive_for_a_year_is_separated_after_a_notice(self, vault: Vault) -> None:
        """Seed 001: "no service usage activity for one year will be separated and
        stored/managed separately (dormant status), with prior notice provided to the User 30
        days before conversion"; the client's login (purpose reactivation) brings them back."""
        platform, counselor = vault.client("app"), vault.client("counselor")
        profile = platform.put_record("c-1", "client_profile", {"name": "Lee"}).record_id
        platform.grant_consent(
            "c-1",
            "counseling",
            {"client_profile": None, "counseling_note": None},
            evidence_reference="intake-form-3",
            grantee_role="counselor",
        )
        note = counselor.put_record("c-1", "counseling_note", {"note": "sleep", "session_date": "d"})
        vault.clock.advance(335 * DAY + 1)
        assert vault.service.sweep_dormancy() == {"notices": 1, "dormant": 0, "destroyed": 0}
        assert [n["subject_id"] for n in platform.iter_notices()] == ["c-1"]  # 30 days before
        vault.clock.advance(30 * DAY)
        assert vault.service.sweep_dormancy()["dormant"] == 1
        ref = vault.service.subject_ref("c-1")
        assert vault.service.store.get_separated_key(ref) is not None  # stored separately
        with pytest.raises(PermissionDenied):
            counselor.get_record(note.record_id, "counseling")
        assert platform.get_record(profile, "reactivation").fields == {"name": "Lee"}  # a login
        assert vault.service.store.get_separated_key(ref) is None
        assert counselor.get_record(note.record_id, "counseling").fields["note"] == "sleep"
        vault.clock.advance(3000 * DAY)  # the seed names no destruction: separated, never erased
        assert vault.service.sweep_dormancy()["destroyed"] == 0

    def test_counseling_seed_001_separate_supervision_consent(self, vault: Vault) -> None:
        platform = vault.client("app")
        counselor, supervisor = vault.client("counselor"), vault.client("supervisor")
        note = platform.put_record(
            "c-1", "counseling_note", {"note": "session 3 notes", "session_date": "2026-11-20"}
        ).record_id
        _consent_of_both(vault, "c-1")  # a session is recorded only with the consent of both
        recording = platform.put_record(
            "c-1",
            "session_recording",
            {"session_date": "2026-11-20", "duration_seconds": "3000"},
            content=b"\x00audio",
        ).record_id
        with pytest.raises(PermissionDenied):  # sensitive category: explicit consent first
            counselor.get_record(note, "counseling")
        platform.grant_consent(
            "c-1",
            "counseling",
            {"counseling_note": None},
            valid_from=vault.clock.now(),
            evidence_reference="consent-form-77",
            grantee_principal="counselor",
        )
        assert counselor.get_record(note, "counseling").fields["note"] == "session 3 notes"
        # the counseling consent never opens the recording to a supervisor
        with pytest.raises(PermissionDenied):
            supervisor.get_record(recording, "supervision", include_content=True)
        with pytest.raises(PermissionDenied):  # nor to the counselor under "supervision"
            counselor.get_record(recording, "supervision")
        platform.grant_consent(
            "c-1",
            "supervision",
            {"session_recording": None},
            valid_from=vault.clock.now(),
            evidence_reference="supervision-consent-12",
            grantee_role="supervisor",
        )
        view = supervisor.get_record(recording, "supervision", include_content=True)
        assert view.content == b"\x00audio"
        with pytest.raises(PermissionDenied):  # the supervisor sees recordings only
            supervisor.get_record(note, "supervision")
        stats = platform.get_record(note, "quality_statistics")
        assert stats.info.subject_pseudonym

    def test_a_session_is_recorded_only_with_the_consent_of_both(self, vault: Vault) -> None:
        platform, counselor = vault.client("app"), vault.client("counselor")
        meta = {"session_date": "2026-11-21", "duration_seconds": "2400"}
        with pytest.raises(PermissionDenied):  # nobody consented: not even stored
            platform.put_record("c-2", "session_recording", meta, content=b"rec")
        platform.grant_consent(
            "c-2",
            "session_review",
            {"session_recording": None},
            valid_from=vault.clock.now(),
            evidence_reference="client-says-yes",
            grantee_role="counselor",
            party="client",
        )
        with pytest.raises(PermissionDenied):  # one party is not both
            platform.put_record("c-2", "session_recording", meta, content=b"rec")
        grants = _consent_of_both(vault, "c-3")
        rid = platform.put_record("c-3", "session_recording", meta, content=b"rec").record_id
        assert counselor.get_record(rid, "session_review", include_content=True).content == b"rec"
        # either party may withdraw: the counselor's revocation ends the review and new
        # recordings, though the client's consent stands
        platform.revoke_consent(grants["counselor"])
        with pytest.raises(PermissionDenied):
            counselor.get_record(rid, "session_review", include_content=True)
        with pytest.raises(PermissionDenied):
            platform.put_record("c-3", "session_recording", meta, content=b"rec 2")
        with pytest.raises(PermissionDenied):
            platform.update_record(rid, meta, content=b"replaced")

    def test_a_read_sees_only_what_both_parties_consented_to(self, vault: Vault) -> None:
        platform, counselor = vault.client("app"), vault.client("counselor")
        grants = _consent_of_both(vault, "c-4", fields=["session_date"])
        rid = platform.put_record(
            "c-4",
            "session_recording",
            {"session_date": "2026-11-22", "duration_seconds": "1800"},
            content=b"rec",
        ).record_id
        view = counselor.get_record(rid, "session_review", include_content=True)
        assert dict(view.fields) == {"session_date": "2026-11-22"} and view.content is None
        with pytest.raises(PermissionDenied):  # asking for more than both cover
            counselor.get_record(rid, "session_review", fields=["duration_seconds"])
        platform.revoke_consent(grants["client"])  # the client's withdrawal ends it too
        with pytest.raises(PermissionDenied):
            counselor.get_record(rid, "session_review")

    def test_consent_by_party_is_checked_when_given(self, vault: Vault) -> None:
        platform = vault.client("app")

        def grant(purpose: str, party: str) -> object:
            category = "session_recording" if purpose == "session_review" else "counseling_note"
            return platform.grant_consent(
                "c-5",
                purpose,
                {category: None},
                evidence_reference="form-1",
                grantee_role="counselor",
                party=party,
            )

        for purpose, party in (
            ("session_review", ""),  # which party consents must be said
            ("session_review", "supervisor"),  # not a party of the purpose
            ("counseling", "client"),  # a purpose without parties takes none
        ):
            with pytest.raises(InvalidArgument):
                grant(purpose, party)
        listed = {c.party for c in platform.list_consents("c-5")}
        assert listed == set()  # nothing was recorded by the refused grants
        grant("session_review", "client")
        assert {c.party for c in platform.list_consents("c-5")} == {"client"}


class TestMedicalImaging003:
    @pytest.fixture
    def policy_text(self) -> str:
        return _policy(
            "medical-imaging.toml", {"app": "analysis_service", "sro": "subject_rights_officer"}
        )

    def test_medical_imaging_seed_003_restriction_and_research(self, vault: Vault) -> None:
        service, officer = vault.client("app"), vault.client("sro")
        image = service.put_record(
            "p-1", "medical_image", {"modality": "CT"}, content=b"DICM" * 10
        ).record_id
        result = service.put_record(
            "p-1",
            "analysis_result",
            {"finding": "nodule, call patient at 010-2222-3333", "confidence": "0.91"},
        ).record_id
        research = service.get_record(result, "research")
        assert (
            "010-2222-3333" not in research.fields["finding"] and "[PHONE]" in research.fields["finding"]
        )
        assert service.get_record(image, "analysis", include_content=True).content == b"DICM" * 10
        # a correction request stops processing until done
        assert officer.restrict_processing("p-1", True)
        with pytest.raises(PermissionDenied):
            service.get_record(image, "analysis")
        service.update_record(result, {"finding": "corrected", "confidence": "0.5"})
        exported = list(officer.export_subject("p-1", "subject_access"))
        assert {v.info.category for v in exported} == {"medical_image", "analysis_result"}
        assert any(v.content == b"DICM" * 10 for v in exported)
        assert officer.restrict_processing("p-1", False)
        assert service.get_record(result, "analysis").fields["finding"] == "corrected"

    def test_an_inactive_member_is_stored_separately_and_destroyed_four_years_later(
        self, vault: Vault
    ) -> None:
        """Seed 003: "not used the service for one year: Separately stored ... not used for any
        other purpose, and after storing for 4 years and destroyed"."""
        service = vault.client("app")
        account = service.put_record("p-1", "patient_account", {"name": "Park"}).record_id
        result = service.put_record("p-1", "analysis_result", {"finding": "clear"}).record_id
        service.put_record("p-2", "patient_account", {"name": "Choi"})
        vault.clock.advance(366 * DAY)
        assert vault.service.sweep_dormancy()["dormant"] == 2
        for purpose in ("analysis", "research"):  # not used for any other purpose
            with pytest.raises(PermissionDenied):
                service.get_record(result, purpose)
        assert service.get_record(account, "reactivation").fields == {"name": "Park"}
        assert service.get_record(result, "analysis").fields == {"finding": "clear"}
        vault.clock.advance(1460 * DAY)
        counts = vault.service.sweep_dormancy()
        assert counts["destroyed"] == 1 and counts["dormant"] == 1  # p-2 erased, p-1 dormant
        assert vault.service.store.get_separated_key(vault.service.subject_ref("p-2")) is None
        assert vault.service.store.subject_state(vault.service.subject_ref("p-2")).value == "erased"
