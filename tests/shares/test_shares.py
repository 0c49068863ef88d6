"""Time-limited clinic shares (seed 000): expiry at its boundary on server time, event-bound expiry,
revocation during a streaming read, the wrong recipient, fields outside the subset, death with the
subject, and no revival by editing the database."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import TOKENS, test_policy_text
from tests.support.db import TestDatabase
from vault_service.clock import FixedClock
from vault_service.errors import InvalidArgument, NotFound, PermissionDenied
from vault_service.key_providers import LocalKeyProvider, create_keyring
from vault_service.lifecycle.ledger import DestructionLedger
from vault_service.policy import Principal, load_policy
from vault_service.service import CallContext, VaultService
from vault_service.storage import FilesystemBlobStore

DAY = 86400.0
APP = CallContext(Principal("app", "application"), "t")
CLINIC = CallContext(Principal("clinic", "clinic"), "t")
OTHER_CLINIC = CallContext(Principal("clinic-b", "clinic"), "t")
CONCERN = {"text": "rhinoplasty", "budget": "3000000", "body_area": "nose"}


@pytest.fixture
def vault(
    tmp_path: Path, database: TestDatabase
) -> Iterator[tuple[VaultService, FixedClock, TestDatabase]]:
    """A service on each backend in turn, and its database for direct edits."""
    create_keyring(tmp_path / "ring.json", None, 0.0)
    store = database.store()
    clock = FixedClock()
    policy = load_policy(
        test_policy_text() + '\n[principals.clinic-b]\nrole = "clinic"\ncert_cn = "clinic-b"\n'
    )
    svc = VaultService(
        store,
        FilesystemBlobStore(tmp_path / "b"),
        LocalKeyProvider(tmp_path / "ring.json"),
        policy,
        clock,
        ledger=DestructionLedger(tmp_path / "ledger.jsonl"),
    )
    yield svc, clock, database


def _setup(
    svc: VaultService, clock: FixedClock, subject: str = "m-1", photo: bytes | None = None
) -> list[str]:
    ids = [svc.put_record(APP, subject, "concern_text", CONCERN)[0]]
    if photo is not None:
        ids.append(svc.put_record(APP, subject, "concern_photo", {"caption": "c"}, content=photo)[0])
    svc.grant_consent(
        APP,
        subject,
        "clinic_proposal",
        {"concern_text": None, "concern_photo": None},
        clock.now(),
        None,
        "match-request-1",
        grantee_principal="clinic",
    )
    return ids


def _read(svc: VaultService, call: CallContext, share_id: str) -> list[Any]:
    return list(svc.shares.read_share(call, share_id))


def test_expiry_at_its_boundary(vault: tuple[VaultService, FixedClock, TestDatabase]) -> None:
    svc, clock, _ = vault
    ids = _setup(svc, clock)
    share = svc.shares.create_share(
        APP, "m-1", "clinic", "clinic_proposal", ids, ["text"], expires_at=clock.now() + 30 * DAY
    )
    clock.advance(30 * DAY - 0.001)
    (item,) = _read(svc, CLINIC, share.share_id)
    assert dict(item.view.fields) == {"text": "rhinoplasty"}
    clock.advance(0.001)
    with pytest.raises(PermissionDenied):
        _read(svc, CLINIC, share.share_id)
    assert svc.shares.sweep() == 1
    assert svc.store.get_share(share.share_id) is None


def test_six_months_after_match_completed(vault: tuple[VaultService, FixedClock, TestDatabase]) -> None:
    svc, clock, _ = vault
    ids = _setup(svc, clock)
    share = svc.shares.create_share(
        APP,
        "m-1",
        "clinic",
        "clinic_proposal",
        ids,
        ["text", "budget"],
        event_name="match_completed",
        event_period=180 * DAY,
    )
    clock.advance(10 * DAY)
    assert _read(svc, CLINIC, share.share_id)  # no end known until the match completes
    assert svc.shares.sweep() == 0
    assert svc.record_event(APP, "m-1", "match_completed") is True
    assert svc.record_event(APP, "m-1", "match_completed") is False  # the first stands
    completed = clock.now()
    clock.set(completed + 180 * DAY - 1)
    assert _read(svc, CLINIC, share.share_id)
    clock.set(completed + 180 * DAY)
    with pytest.raises(PermissionDenied):
        _read(svc, CLINIC, share.share_id)
    assert svc.shares.sweep() == 1


def test_an_edited_event_time_ends_the_share(
    vault: tuple[VaultService, FixedClock, TestDatabase],
) -> None:
    svc, clock, db = vault
    ids = _setup(svc, clock)
    share = svc.shares.create_share(
        APP,
        "m-1",
        "clinic",
        "clinic_proposal",
        ids,
        ["text"],
        event_name="match_completed",
        event_period=180 * DAY,
    )
    svc.record_event(APP, "m-1", "match_completed")
    with db.raw() as conn:  # push the event into the future to extend the share
        conn.execute("UPDATE subject_events SET at = at + 1000 * 86400")
    with pytest.raises(PermissionDenied):
        _read(svc, CLINIC, share.share_id)
    assert svc.shares.sweep() == 1


def test_revocation_stops_a_streaming_read_before_the_next_chunk(
    vault: tuple[VaultService, FixedClock, TestDatabase],
) -> None:
    svc, clock, _ = vault
    photo = bytes(range(256)) * 4096  # 1 MiB: 16 pieces of 64 KiB
    ids = _setup(svc, clock, photo=photo)
    share = svc.shares.create_share(
        APP, "m-1", "clinic", "clinic_proposal", ids, ["text", "content"], expires_at=clock.now() + DAY
    )
    stream = svc.shares.read_share(CLINIC, share.share_id)
    first, second, piece = next(stream), next(stream), next(stream)
    assert first.view is not None and second.view is not None
    assert piece.content == photo[: len(piece.content)] and piece.offset == 0
    svc.shares.revoke_share(APP, share.share_id)
    with pytest.raises(PermissionDenied):
        next(stream)
    rows = [r for r in svc.store.audit_rows() if r.action == "share.read"]
    assert rows[-1].decision == "deny" and rows[-1].reason == "share revoked or destroyed"


def test_streaming_read_over_grpc_stops_after_revocation(app: Any, running: Any) -> None:
    from vault_service.client import VaultClient

    photo = bytes(range(256)) * 4096 * 7  # 7 MiB
    rid = app.put_record("m-9", "concern_photo", {"caption": "c"}, content=photo).record_id
    app.grant_consent(
        "m-9",
        "clinic_proposal",
        {"concern_photo": None},
        evidence_reference="match-9",
        grantee_principal="clinic",
    )
    share = app.create_share(
        "m-9",
        "clinic",
        "clinic_proposal",
        [rid],
        ["content"],
        expires_at=running.service.clock.now() + 3600,
    )
    received = 0
    with VaultClient(f"127.0.0.1:{running.port}", TOKENS["clinic"]) as clinic:
        stream = clinic.read_share(share.share_id)
        assert next(stream).info.record_id == rid
        app.revoke_share(share.share_id)
        with pytest.raises(PermissionDenied):
            for item in stream:
                received += len(item[2])
    assert received < len(photo)


def test_only_the_named_recipient_reads(vault: tuple[VaultService, FixedClock, TestDatabase]) -> None:
    svc, clock, _ = vault
    ids = _setup(svc, clock)
    share = svc.shares.create_share(
        APP, "m-1", "clinic", "clinic_proposal", ids, ["text"], expires_at=clock.now() + DAY
    )
    with pytest.raises(PermissionDenied):
        _read(svc, OTHER_CLINIC, share.share_id)
    with pytest.raises(PermissionDenied):  # not a reader role at all
        _read(svc, APP, share.share_id)
    with pytest.raises(PermissionDenied):  # unknown share id: the same answer
        _read(svc, CLINIC, "01a20152-0000-7000-8000-000000000000")
    assert [s.share_id for s in svc.shares.received_shares(CLINIC)] == [share.share_id]
    assert svc.shares.received_shares(OTHER_CLINIC) == []
    assert [s.recipient for s in svc.shares.list_shares(APP, "m-1")] == ["clinic"]


def test_only_the_fields_in_the_subset(vault: tuple[VaultService, FixedClock, TestDatabase]) -> None:
    svc, clock, _ = vault
    ids = _setup(svc, clock)
    share = svc.shares.create_share(
        APP, "m-1", "clinic", "clinic_proposal", ids, ["budget"], expires_at=clock.now() + DAY
    )
    (item,) = _read(svc, CLINIC, share.share_id)
    assert dict(item.view.fields) == {"budget": "3000000"}
    reasons = [r.reason for r in svc.store.audit_rows() if r.action == "share.read"]
    assert reasons == [f"share {share.share_id}: budget (scrubbed)"]  # clinic_proposal scrubs text
    profile = svc.put_record(APP, "m-1", "member_profile", {"email": "a@b.kr"})[0]
    with pytest.raises(InvalidArgument):  # email is never disclosed under clinic_proposal
        svc.shares.create_share(
            APP, "m-1", "clinic", "clinic_proposal", [profile], ["email"], expires_at=clock.now() + DAY
        )
    with pytest.raises(InvalidArgument):
        svc.shares.create_share(
            APP, "m-1", "clinic", "clinic_proposal", ids, ["nonexistent"], expires_at=clock.now() + DAY
        )


def test_creation_needs_consent_and_the_subjects_records(
    vault: tuple[VaultService, FixedClock, TestDatabase],
) -> None:
    svc, clock, _ = vault
    rid = svc.put_record(APP, "m-2", "concern_text", CONCERN)[0]
    with pytest.raises(PermissionDenied):
        svc.shares.create_share(
            APP, "m-2", "clinic", "clinic_proposal", [rid], ["text"], expires_at=clock.now() + DAY
        )
    other = _setup(svc, clock, subject="m-3")
    with pytest.raises(NotFound):  # a record of another subject cannot be slipped in
        svc.shares.create_share(
            APP, "m-2", "clinic", "clinic_proposal", other, ["text"], expires_at=clock.now() + DAY
        )
    with pytest.raises(InvalidArgument):  # no end at all
        svc.shares.create_share(APP, "m-3", "clinic", "clinic_proposal", other, ["text"])


def test_a_share_dies_with_its_subject(vault: tuple[VaultService, FixedClock, TestDatabase]) -> None:
    svc, clock, _ = vault
    ids = _setup(svc, clock)
    share = svc.shares.create_share(
        APP, "m-1", "clinic", "clinic_proposal", ids, ["text"], expires_at=clock.now() + 365 * DAY
    )
    svc.erase_subject(APP, "m-1")
    with pytest.raises(PermissionDenied):
        _read(svc, CLINIC, share.share_id)
    assert svc.shares.sweep() == 1


def test_an_expired_share_cannot_be_revived_by_editing_the_database(
    vault: tuple[VaultService, FixedClock, TestDatabase],
) -> None:
    svc, clock, db = vault
    ids = _setup(svc, clock)
    share = svc.shares.create_share(
        APP, "m-1", "clinic", "clinic_proposal", ids, ["text"], expires_at=clock.now() + DAY
    )
    saved_key = svc.store.get_share(share.share_id).share_key  # type: ignore[union-attr]
    clock.advance(2 * DAY)
    with db.raw() as conn:  # before the sweeper: extend the expiry column
        conn.execute("UPDATE shares SET expires_at = expires_at + 365 * 86400")
    with pytest.raises(PermissionDenied):
        _read(svc, CLINIC, share.share_id)
    svc.shares.sweep()
    with db.raw() as conn:  # after it: put the row and even the old key back
        conn.execute(
            "INSERT INTO shares (share_id, subject_ref, recipient, purpose, record_count,"
            " fields, expires_at, event_name, event_period, created_by, created_at,"
            " revoked_at, sealed_terms) SELECT ?, subject_ref, 'clinic', 'clinic_proposal', 1,"
            " '[\"text\"]', ?, '', NULL, 'app', 0, NULL, ? FROM subjects",
            (share.share_id, clock.now() + 365 * DAY, b"\x00"),
        )
        conn.execute("INSERT INTO share_keys VALUES (?, ?)", (share.share_id, saved_key))
    with pytest.raises(PermissionDenied):
        _read(svc, CLINIC, share.share_id)
