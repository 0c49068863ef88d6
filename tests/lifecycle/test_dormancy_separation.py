"""Dormancy as a policy choice with separated storage (issue 20, part 2), over a real server.

The promise (seeds 001 and 003, docs/lifecycle.md): a subject inactive for the policy's period
is "separated and stored/managed separately": its subject key is rewrapped under the dormant
context, so no read path but reactivation can open what it protects, and a reactivation (a read
under a reactivation purpose, or any write) moves it back first. What could break it: a write
or a read racing the separation, a key epoch (rotation, rewrap, retire) while separated, a
backup restored, an erasure or the dormancy destruction (verification), a legal hold on a
dormant subject, a share, a restriction request, the offline decrypt of a backup, a restart.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest

from tests.conftest import BACKENDS
from tests.e2e.test_offline_decrypt import _decrypt
from tests.regressions import conftest as harness
from tests.regressions.conftest import DAY, Vault
from vault_service.clock import FixedClock
from vault_service.crypto import SubjectKey
from vault_service.crypto.context import subject_key_context
from vault_service.errors import DataLoss, IntegrityError, NotFound, PermissionDenied
from vault_service.key_providers.base import WrappedKey
from vault_service.storage import SubjectState

vault = harness.vault
clock = harness.clock
policy_text = harness.policy_text

PROFILE = {"email": "kim@example.kr", "contact": "010-1234-5678", "language": "ko"}
TEXT = {"text": "second rhinoplasty consultation", "budget": "3000000"}
#: tests/conftest.py TEST_DORMANCY: after 365 days, notice 30, destroyed 1460 days later
YEAR = 366 * DAY
#: a key epoch run by hand (docs/keys.md), with the server stopped
EPOCH = [("rotate",), ("rewrap",), ("retire", "1"), ("destroy", "1", "--mark"), ("destroy", "1")]


def _key_row(vault: Vault, subject: str) -> tuple[WrappedKey, bool] | None:
    """The subject's key row as stored, and whether it is separated (the store's own queries,
    backend-neutral); None once erased."""
    ref = vault.service.subject_ref(subject)
    live = vault.service.store.get_subject_key(ref)
    if live is not None:
        return live, False
    separated = vault.service.store.get_separated_key(ref)
    return None if separated is None else (separated, True)


def _separated(vault: Vault, subject: str) -> bool:
    row = _key_row(vault, subject)
    assert row is not None, "the subject key is gone"
    return row[1]


def _opens(vault: Vault, subject: str, wrapped: WrappedKey, *, separated: bool) -> bool:
    """Whether the key provider opens ``wrapped`` under the live or the dormant context."""
    ref = vault.service.subject_ref(subject)
    try:
        vault.service.provider.unwrap(wrapped, subject_key_context(ref, separated=separated), SubjectKey)
    except (IntegrityError, DataLoss):
        return False
    return True


def _dormant(vault: Vault) -> dict[str, int]:
    vault.clock.advance(YEAR)
    return vault.service.sweep_dormancy()


def _setup(vault: Vault) -> tuple[str, str]:
    app = vault.client("app")
    profile = app.put_record("member-1", "member_profile", PROFILE).record_id
    concern = app.put_record("member-1", "concern_text", TEXT).record_id
    return profile, concern


@pytest.mark.parametrize("vault", BACKENDS, indirect=True)
def test_a_dormant_subject_is_separated_and_only_reactivation_opens_it(vault: Vault) -> None:
    app = vault.client("app")
    profile, concern = _setup(vault)
    before = _key_row(vault, "member-1")
    assert before is not None and not before[1]
    assert _dormant(vault)["dormant"] == 1
    row = _key_row(vault, "member-1")
    assert row is not None and row[1], "the dormant subject's key is not separated"
    wrapped = row[0]
    assert wrapped.ciphertext != before[0].ciphertext
    # the ordinary context no longer opens it; only the dormant one does
    assert not _opens(vault, "member-1", wrapped, separated=False)
    assert _opens(vault, "member-1", wrapped, separated=True)
    assert vault.service.keys.holds_subject_key(vault.service.subject_ref("member-1")) is False
    for purpose in ("matching", "subject_access"):
        with pytest.raises(PermissionDenied):
            app.get_record(concern, purpose)
    # the restart keeps it separated; reactivation (a login) moves the key back first
    vault.restart()
    app = vault.client("app")
    assert app.get_record(profile, "reactivation").fields["email"] == PROFILE["email"]
    back = _key_row(vault, "member-1")
    assert back is not None and not back[1] and _opens(vault, "member-1", back[0], separated=False)
    assert (
        vault.service.store.subject_state(vault.service.subject_ref("member-1")) is SubjectState.ACTIVE
    )
    assert app.get_record(concern, "matching").fields == TEXT
    reasons = [r.reason for r in vault.service.store.audit_rows()]
    assert "dormant, separated" in reasons and "reactivated" in reasons


@pytest.mark.parametrize("vault", BACKENDS, indirect=True)
def test_any_write_brings_a_separated_subject_back(vault: Vault) -> None:
    app = vault.client("app")
    profile, concern = _setup(vault)
    assert _dormant(vault)["dormant"] == 1
    # a new record, an update and a consent grant are activity: each reactivates first
    new = app.put_record("member-1", "concern_text", {"text": "back again"}).record_id
    assert not _separated(vault, "member-1")
    assert app.get_record(concern, "matching").fields == TEXT
    assert app.get_record(new, "matching").fields == {"text": "back again"}
    assert _dormant(vault)["dormant"] == 1
    assert app.update_record(profile, {**PROFILE, "language": "en"}).version == 2
    assert app.get_record(profile, "reactivation").fields["language"] == "en"
    assert _dormant(vault)["dormant"] == 1
    app.grant_consent(
        "member-1",
        "clinic_proposal",
        {"concern_text": None},
        evidence_reference="match-request-1",
        grantee_principal="clinic",
    )
    assert app.get_record(concern, "matching").fields == TEXT


def test_a_write_racing_the_separation_writes_nothing_and_a_retry_succeeds(vault: Vault) -> None:
    """The store refuses a write whose transaction finds the key separated since the writer got
    it (SubjectSeparated, UNAVAILABLE: nothing was written, retry); the retry reactivates."""
    from vault_service.errors import SubjectSeparated

    app = vault.client("app")
    _setup(vault)
    svc = vault.service
    ref = svc.subject_ref("member-1")
    key, kind = svc.keys.key_for_write(ref, False)  # the writer holds the live key, sealed ...
    sealed = svc.records._seal(ref, key, kind, "r-race", 1, "concern_text", {"text": "x"}, "", b"")
    assert _dormant(vault)["dormant"] == 1  # ... and the sweep separates before it commits
    assert svc.store.get_separated_key(ref) is not None
    with pytest.raises(SubjectSeparated):
        svc.store.insert_record(sealed, vault.clock.now(), None, None)
    assert svc.store.get_record("r-race") is None
    assert not svc.store.touch_subject(ref, vault.clock.now())  # a read does not wake it either
    assert svc.store.get_separated_key(ref) is not None
    assert app.put_record("member-1", "concern_text", {"text": "retried"}).record_id


@pytest.mark.parametrize("vault", BACKENDS, indirect=True)
def test_a_key_epoch_while_separated_keeps_it_separated_and_readable_by_reactivation(
    vault: Vault,
) -> None:
    app = vault.client("app")
    profile, concern = _setup(vault)
    assert _dormant(vault)["dormant"] == 1
    vault.stop()
    for step in EPOCH:
        result = vault.vaultctl("--json", "keys", *step)
        assert result.returncode == 0, (step, result.stderr)
    vault.start()
    row = _key_row(vault, "member-1")
    assert row is not None and row[1] and row[0].root_version == "2"
    with pytest.raises(PermissionDenied):
        vault.client("app").get_record(concern, "matching")
    app = vault.client("app")
    assert app.get_record(profile, "reactivation").fields["email"] == PROFILE["email"]
    assert app.get_record(concern, "matching").fields == TEXT


@pytest.mark.parametrize("vault", BACKENDS, indirect=True)
def test_a_backup_restored_brings_back_the_separation_and_reactivation_still_works(
    vault: Vault,
) -> None:
    app = vault.client("app")
    profile, concern = _setup(vault)
    assert _dormant(vault)["dormant"] == 1
    backup = vault.backup()
    assert vault.client("app").get_record(profile, "reactivation").fields
    vault.restore(backup)
    app = vault.client("app")
    assert _separated(vault, "member-1")
    with pytest.raises(PermissionDenied):
        app.get_record(concern, "matching")
    assert app.get_record(profile, "reactivation").fields["email"] == PROFILE["email"]
    assert app.get_record(concern, "matching").fields == TEXT


def test_erasure_and_the_dormancy_destruction_of_separated_subjects_are_verified(
    vault: Vault,
) -> None:
    app = vault.client("app")
    _setup(vault)
    app.put_record("member-2", "concern_text", TEXT)
    assert _dormant(vault)["dormant"] == 2
    assert app.erase_subject("member-1")  # the subject's own request, while separated
    assert _key_row(vault, "member-1") is None
    vault.clock.advance(1460 * DAY)
    assert vault.service.sweep_dormancy()["destroyed"] == 1  # member-2, still separated
    assert _key_row(vault, "member-2") is None
    # the purge, a key epoch run by hand and the caches' maximum age: both VERIFIED
    assert vault.service.purge_erased() == 3  # two of member-1, one of member-2
    vault.stop()
    for step in EPOCH:
        result = vault.vaultctl("--json", "keys", *step)
        assert result.returncode == 0, (step, result.stderr)
    vault.start()
    vault.clock.advance(300.0)
    listed = {e["subject_pseudonym"]: e for e in vault.client("operator").verify_deletion()}
    for who in ("member-1", "member-2"):
        entry = listed[vault.pseudonym(who)]
        assert entry["result"] == "VERIFIED", entry
        assert entry["certificate_json"]


def test_a_hold_on_a_separated_subject_does_not_reactivate_it_and_defers_the_destruction(
    vault: Vault,
) -> None:
    app, legal = vault.client("app"), vault.client("legal")
    _, concern = _setup(vault)
    assert _dormant(vault)["dormant"] == 1
    hold = legal.place_hold("member-1", "investigation", "case-2026-41")
    assert [h["reason"] for h in legal.list_holds("member-1")] == ["investigation"]
    assert _separated(vault, "member-1")  # still separated
    with pytest.raises(PermissionDenied):
        app.get_record(concern, "matching")
    vault.clock.advance(1460 * DAY)
    assert vault.service.sweep_dormancy()["destroyed"] == 0  # held
    assert legal.release_hold(hold["hold_id"])
    assert vault.service.sweep_dormancy()["destroyed"] == 1
    assert _key_row(vault, "member-1") is None


def test_separation_ends_the_subjects_shares(vault: Vault) -> None:
    app, clinic = vault.client("app"), vault.client("clinic")
    _, concern = _setup(vault)
    _, share = vault.share_with_clinic(concern, "concern_text", ["text"], days=500)
    share_id = share.share_id
    assert list(clinic.read_share(share_id))
    assert _dormant(vault)["dormant"] == 1
    with pytest.raises(PermissionDenied):
        list(clinic.read_share(share_id))
    with pytest.raises(PermissionDenied):  # no new share of separated data either
        app.create_share(
            "member-1", "clinic", "clinic_proposal", [concern], ["text"],
            expires_at=vault.clock.now() + 30 * DAY,
        )  # fmt: skip
    assert vault.service.shares.sweep() == 1
    assert not vault.service.store.share_key_exists(share_id)
    app.put_record("member-1", "concern_text", {"text": "back"})  # reactivated: the share stays gone
    with pytest.raises((PermissionDenied, NotFound)):
        list(clinic.read_share(share_id))


def test_a_restriction_request_of_a_separated_subject_brings_it_back_first(vault: Vault) -> None:
    sro, app = vault.client("sro"), vault.client("app")
    _, concern = _setup(vault)
    assert _dormant(vault)["dormant"] == 1
    assert sro.restrict_processing("member-1", True)
    ref = vault.service.subject_ref("member-1")
    assert vault.service.store.subject_state(ref) is SubjectState.RESTRICTED
    assert not _separated(vault, "member-1")
    assert sro.restrict_processing("member-1", False)
    assert app.get_record(concern, "matching").fields == TEXT


def test_the_offline_decrypt_of_a_backup_opens_a_separated_subject(vault: Vault, tmp_path: Path) -> None:
    """Disaster recovery is a reactivation: the recovery purpose reactivates in the copy only."""
    _setup(vault)
    assert _dormant(vault)["dormant"] == 1
    backup = vault.backup().data
    with sqlite3.connect(backup / "vault.db") as conn:
        before = conn.execute("SELECT separated_at FROM subject_keys").fetchall()
    out = tmp_path / "out.jsonl"
    code, _, stderr = _decrypt(vault, backup, "member-1", out, "--without-ledger")
    assert code == 0, stderr
    fields = [json.loads(x)["fields"] for x in out.read_text().splitlines()]
    assert TEXT in fields and any(f.get("email") == PROFILE["email"] for f in fields)
    with sqlite3.connect(backup / "vault.db") as conn:  # the backup itself is untouched
        assert conn.execute("SELECT separated_at FROM subject_keys").fetchall() == before
    assert all(r[0] is not None for r in before)


def test_an_independent_decoder_follows_the_spec_for_a_separated_key(
    vault: Vault, tmp_path: Path
) -> None:
    """docs/format.md §13 step 4, from the backup's files and the keyring alone."""
    from tests.format.test_format_spec import Vault as SpecDecoder
    from tests.format.test_format_spec import decrypt_subject, root_keys

    profile, concern = _setup(vault)
    assert _dormant(vault)["dormant"] == 1
    backup = vault.backup().data
    shutil.copyfile(backup / "vault.db", tmp_path / "copy.db")
    db = sqlite3.connect(tmp_path / "copy.db")
    roots = root_keys(json.loads((vault.home / "keys" / "keyring.json").read_text()))
    got = decrypt_subject(SpecDecoder(db, roots), "member-1")
    assert {k: v.decode() for k, v in got[concern]["fields"].items()} == TEXT
    assert {k: v.decode() for k, v in got[profile]["fields"].items()} == PROFILE
    db.close()


def test_a_policy_that_only_marks_dormancy_keeps_the_key_where_it_is(
    tmp_path: Path, clock: FixedClock
) -> None:
    """``separate = false`` (seed 002: "marked as dormant"): the same refusals, no rewrap."""
    text = harness.shipped_policy_text().replace(
        "destroy_after_days = 1460\n", "destroy_after_days = 1460\nseparate = false\n"
    )
    v = harness.configure(tmp_path, text, clock)
    v.start()
    try:
        profile, concern = _setup(v)
        before = _key_row(v, "member-1")
        assert _dormant(v)["dormant"] == 1
        assert _key_row(v, "member-1") == before
        with pytest.raises(PermissionDenied):
            v.client("app").get_record(concern, "matching")
        assert v.client("app").get_record(profile, "reactivation").fields == PROFILE
        assert v.client("app").get_record(concern, "matching").fields == TEXT
    finally:
        v.close()
