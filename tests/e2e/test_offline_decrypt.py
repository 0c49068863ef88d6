"""`vaultctl offline decrypt` (issue 21, part 3): a subject-access export from a backup with the
keyring alone and no running service, as real subprocesses. The backup is never written; the
destruction ledger is replayed first, so a subject erased after the backup stays erased; a
wrong keyring or a missing ledger decision is refused without leaking anything."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import pytest

from tests.regressions import conftest as harness
from tests.regressions.conftest import Vault, read_once_policy_text
from vault_service.key_providers import create_keyring

vault = harness.vault
clock = harness.clock


@pytest.fixture
def policy_text() -> str:
    return read_once_policy_text()  # with a read-once category: its release happens in the copy


TEXT = {"text": "second rhinoplasty consultation", "budget": "3000000"}
PHOTO = bytes(range(256)) * 300  # 76,800 bytes: several chunks


def _digests(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _decrypt(vault: Vault, backup: Path, subject: str, out: Path, *extra: str) -> tuple[int, str, str]:
    r = vault.vaultctl(
        "--json",
        "offline",
        "decrypt",
        "--keyring",
        str(vault.home / "keys" / "keyring.json"),
        "--db",
        str(backup / "vault.db"),
        "--blobs",
        str(backup / "blobs"),
        "--policy",
        str(vault.home / "policy.toml"),
        "--subject",
        subject,
        "--out",
        str(out),
        *extra,
    )
    return r.returncode, r.stdout, r.stderr


def test_a_subject_decrypted_from_a_backup_and_an_erasure_kept(vault: Vault, tmp_path: Path) -> None:
    app = vault.client("app")
    text = app.put_record("member-1", "concern_text", TEXT).record_id
    photo = app.put_record("member-1", "concern_photo", {"caption": "side"}, content=PHOTO).record_id
    face = app.put_record("member-1", "face_photo", {}, content=PHOTO[:4096]).record_id
    app.put_record("member-2", "concern_text", {"text": "other member"})
    backup = vault.backup().data
    assert vault.client("app").erase_subject("member-2") is True
    before = _digests(backup)
    ledger = vault.home / "var" / "ledger" / "erasures.jsonl"

    out = tmp_path / "member-1.jsonl"
    code, stdout, stderr = _decrypt(vault, backup, "member-1", out, "--ledger", str(ledger))
    assert code == 0, stderr
    assert json.loads(stdout)["records"] == 3
    assert out.stat().st_mode & 0o777 == 0o600
    lines = {row["record_id"]: row for row in map(json.loads, out.read_text().splitlines())}
    assert lines[text]["fields"] == TEXT and lines[text]["category"] == "concern_text"
    assert base64.b64decode(lines[photo]["content_base64"]) == PHOTO
    # a read-once record is released (and destroyed) in the copy only: its blob stays in the backup
    assert base64.b64decode(lines[face]["content_base64"]) == PHOTO[:4096]
    assert _digests(backup) == before  # the backup is never written
    code, stdout, _ = _decrypt(vault, backup, "member-1", out, "--ledger", str(ledger))
    assert code == 0 and json.loads(stdout)["records"] == 3  # so a second recovery gets it too

    # erased after the backup was taken: the ledger's replay destroys it again in the copy
    gone = tmp_path / "member-2.jsonl"
    code, stdout, stderr = _decrypt(vault, backup, "member-2", gone, "--ledger", str(ledger))
    assert code == 0, stderr
    assert gone.read_text() == ""
    # without the ledger the backup shows what it held (the operator said so)
    code, _, stderr = _decrypt(vault, backup, "member-2", gone, "--without-ledger")
    assert code == 0, stderr
    assert [json.loads(x)["fields"] for x in gone.read_text().splitlines()] == [{"text": "other member"}]
    assert _digests(backup) == before


def test_refusals_name_the_problem_and_leak_nothing(vault: Vault, tmp_path: Path) -> None:
    vault.client("app").put_record("member-1", "concern_text", TEXT)
    backup = vault.backup().data
    out = tmp_path / "out.jsonl"
    code, _, stderr = _decrypt(vault, backup, "member-1", out)
    assert code == 2 and "--ledger PATH" in stderr and "--without-ledger" in stderr
    other = tmp_path / "other-keyring.json"
    create_keyring(other, None, 1_800_000_000.0)
    r = vault.vaultctl(
        "offline", "decrypt", "--keyring", str(other), "--db", str(backup / "vault.db"),
        "--policy", str(vault.home / "policy.toml"), "--subject", "member-1",
        "--out", str(out), "--without-ledger",
    )  # fmt: skip
    assert r.returncode != 0
    assert TEXT["text"] not in r.stdout + r.stderr and "Traceback" not in r.stderr
    assert not out.exists() or TEXT["text"] not in out.read_text()
    code, _, stderr = _decrypt(vault, tmp_path / "nowhere", "member-1", out, "--without-ledger")
    assert code == 2 and "no such database file" in stderr
