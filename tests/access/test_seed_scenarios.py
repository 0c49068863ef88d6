"""The example policies of three seed companies, loaded and exercised: what each privacy policy
promises is what the service enforces."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT
from vault_service.clock import FixedClock
from vault_service.errors import InvalidArgument, NotFound, PermissionDenied
from vault_service.key_providers import LocalKeyProvider, create_keyring
from vault_service.lifecycle.ledger import DestructionLedger
from vault_service.policy import Principal, load_policy
from vault_service.service import CallContext, VaultService
from vault_service.storage import FilesystemBlobStore, SqliteRecordStore

DAY = 86400.0


PRINCIPALS = {
    "clinic-matching.toml": {"clinic-a": "clinic", "clinic-b": "clinic"},
    "counseling.toml": {"dr-lee": "counselor", "sup-park": "supervisor"},
    "medical-imaging.toml": {},
}


def _service(tmp_path: Path, policy_file: str) -> Iterator[tuple[VaultService, FixedClock]]:
    create_keyring(tmp_path / "ring.json", None, 0.0)
    store = SqliteRecordStore(tmp_path / "v.db")
    store.migrate()
    clock = FixedClock()
    text = (ROOT / "policies" / policy_file).read_text()
    for name, role in PRINCIPALS[policy_file].items():
        text += f'\n[principals.{name}]\nrole = "{role}"\ncert_cn = "{name}"\n'
    policy = load_policy(text, policy_file)
    svc = VaultService(
        store,
        FilesystemBlobStore(tmp_path / "b"),
        LocalKeyProvider(tmp_path / "ring.json"),
        policy,
        clock,
        ledger=DestructionLedger(tmp_path / "ledger.jsonl"),
    )
    yield svc, clock
    store.close()


def as_(name: str, role: str) -> CallContext:
    return CallContext(Principal(name, role), "scenario")


@pytest.fixture
def matching(tmp_path: Path) -> Iterator[tuple[VaultService, FixedClock]]:
    yield from _service(tmp_path, "clinic-matching.toml")


@pytest.fixture
def counseling(tmp_path: Path) -> Iterator[tuple[VaultService, FixedClock]]:
    yield from _service(tmp_path, "counseling.toml")


@pytest.fixture
def imaging(tmp_path: Path) -> Iterator[tuple[VaultService, FixedClock]]:
    yield from _service(tmp_path, "medical-imaging.toml")


def test_clinic_matching_seed_000(matching: tuple[VaultService, FixedClock]) -> None:
    svc, clock = matching
    app, clinic = as_("web", "application"), as_("clinic-a", "clinic")
    other_clinic = as_("clinic-b", "clinic")
    concern = svc.put_record(
        app,
        "m-1",
        "concern_text",
        {
            "text": "rhinoplasty, contact kim@example.com",
            "budget": "3000000",
            "body_area": "nose",
            "stay_schedule": "Dec 1-9",
        },
    )[0]
    profile = svc.put_record(
        app, "m-1", "member_profile", {"email": "kim@example.com", "contact": "010-1234-5678"}
    )[0]
    # disclosed to the matched clinic only, through a share, with consent, never email/contact
    with pytest.raises(PermissionDenied):
        svc.shares.create_share(
            app,
            "m-1",
            "clinic-a",
            "clinic_proposal",
            [concern],
            ["text", "budget"],
            expires_at=clock.now() + DAY,
        )
    grant = svc.grant_consent(
        app,
        "m-1",
        "clinic_proposal",
        {"concern_text": None},
        clock.now(),
        None,
        "match-req-1",
        grantee_principal="clinic-a",
    )
    share = svc.shares.create_share(
        app,
        "m-1",
        "clinic-a",
        "clinic_proposal",
        [concern],
        ["text", "budget", "body_area", "stay_schedule"],
        event_name="match_completed",
        event_period=180 * DAY,
    )
    (item,) = list(svc.shares.read_share(clinic, share.share_id))
    assert item.view is not None and item.view.fields["budget"] == "3000000"
    # the seed promises the clinic no e-mail or contact information: not even typed into the text
    assert item.view.fields["text"] == "rhinoplasty, contact [EMAIL]"
    with pytest.raises(PermissionDenied):
        svc.get_record(clinic, concern, "clinic_proposal")  # never directly
    with pytest.raises(PermissionDenied):
        list(svc.shares.read_share(other_clinic, share.share_id))
    with pytest.raises(InvalidArgument):
        svc.shares.create_share(
            app, "m-1", "clinic-a", "clinic_proposal", [profile], ["email"], expires_at=clock.now() + DAY
        )
    # 6 months after the match completes, the clinic's view ends
    svc.record_event(app, "m-1", "match_completed")
    clock.advance(180 * DAY)
    with pytest.raises(PermissionDenied):
        list(svc.shares.read_share(clinic, share.share_id))
    clock.advance(-180 * DAY)
    svc.revoke_consent(app, grant.grant_id)
    # text goes to the LLM only anonymized
    llm = svc.get_record(app, concern, "llm_analysis")
    assert "kim@example.com" not in llm.fields["text"] and llm.subject_pseudonym
    # withdrawal: immediate erasure, unreadable at once
    svc.erase_subject(app, "m-1")
    with pytest.raises(NotFound):
        svc.get_record(app, concern, "matching")


def test_counseling_seed_001_separate_supervision_consent(
    counseling: tuple[VaultService, FixedClock],
) -> None:
    svc, clock = counseling
    platform = as_("platform", "platform")
    counselor, supervisor = as_("dr-lee", "counselor"), as_("sup-park", "supervisor")
    note = svc.put_record(
        platform, "c-1", "counseling_note", {"note": "session 3 notes", "session_date": "2026-11-20"}
    )[0]
    recording = svc.put_record(
        platform,
        "c-1",
        "session_recording",
        {"session_date": "2026-11-20", "duration_seconds": "3000"},
        content=b"\x00audio",
    )[0]
    with pytest.raises(PermissionDenied):  # sensitive category: explicit consent first
        svc.get_record(counselor, note, "counseling")
    svc.grant_consent(
        platform,
        "c-1",
        "counseling",
        {"counseling_note": None},
        clock.now(),
        None,
        "consent-form-77",
        grantee_principal="dr-lee",
    )
    assert svc.get_record(counselor, note, "counseling").fields["note"] == "session 3 notes"
    # the counseling consent never opens the recording to a supervisor
    with pytest.raises(PermissionDenied):
        svc.get_record(supervisor, recording, "supervision", include_content=True)
    with pytest.raises(PermissionDenied):  # nor to the counselor under "supervision"
        svc.get_record(counselor, recording, "supervision")
    svc.grant_consent(
        platform,
        "c-1",
        "supervision",
        {"session_recording": None},
        clock.now(),
        None,
        "supervision-consent-12",
        grantee_role="supervisor",
    )
    view = svc.get_record(supervisor, recording, "supervision", include_content=True)
    assert view.content == b"\x00audio"
    with pytest.raises(PermissionDenied):  # the supervisor sees recordings only
        svc.get_record(supervisor, note, "supervision")
    stats = svc.get_record(platform, note, "quality_statistics")
    assert stats.subject_pseudonym


def test_medical_imaging_seed_003_restriction_and_research(
    imaging: tuple[VaultService, FixedClock],
) -> None:
    svc, _ = imaging
    service, officer = as_("analyzer", "analysis_service"), as_("dpo", "subject_rights_officer")
    image = svc.put_record(service, "p-1", "medical_image", {"modality": "CT"}, content=b"DICM" * 10)[0]
    result = svc.put_record(
        service,
        "p-1",
        "analysis_result",
        {"finding": "nodule, call patient at 010-2222-3333", "confidence": "0.91"},
    )[0]
    research = svc.get_record(service, result, "research")
    assert "010-2222-3333" not in research.fields["finding"] and "[PHONE]" in research.fields["finding"]
    # a correction request stops processing until done
    assert svc.set_restriction(officer, "p-1", True)
    with pytest.raises(PermissionDenied):
        svc.get_record(service, image, "analysis")
    svc.update_record(service, result, {"finding": "corrected", "confidence": "0.5"})
    exported = list(svc.export_subject(officer, "p-1", "subject_access"))
    assert {v.meta.category for v in exported} == {"medical_image", "analysis_result"}
    assert any(v.content == b"DICM" * 10 for v in exported)
    assert svc.set_restriction(officer, "p-1", False)
    assert svc.get_record(service, result, "analysis").fields["finding"] == "corrected"
