"""No plaintext at rest: write records carrying a unique marker through every path (put, content,
update, get, denied get, delete, erase, errors), then scan every file the service wrote (database,
-wal, -shm, blobs, keyring, logs at DEBUG) for the marker: zero hits."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import pytest

from vault_service.errors import InvalidArgument, NotFound, PermissionDenied


def _hits(home: Path, needles: list[bytes]) -> list[str]:
    found = []
    for path in home.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            found += [f"{path.relative_to(home)}: {n!r}" for n in needles if n in data]
    return found


def test_marker_never_at_rest(app: Any, clinic: Any, running: Any, vault_home: Path) -> None:
    marker = f"PHI-MARKER-{secrets.token_hex(8)}"
    korean = f"상담내용-{marker}"
    subject = f"subject-{marker}"
    rid = app.put_record(subject, "concern_text", {"text": korean, "budget": marker}).record_id
    photo = app.put_record(
        subject,
        "concern_photo",
        {"caption": marker},
        content=(marker.encode() * 2000),
        content_type="image/png",
    ).record_id
    profile = app.put_record(
        subject,
        "member_profile",
        {"email": f"{marker}@example.com"},
        idempotency_key=f"idem-{marker}",
    ).record_id
    assert app.get_record(rid, "matching").fields["text"] == korean
    assert marker.encode() in app.get_record(photo, "matching", include_content=True).content
    app.update_record(rid, {"text": korean + " corrected"})
    with pytest.raises(PermissionDenied):
        clinic.get_record(profile, "clinic_proposal")
    with pytest.raises(InvalidArgument):
        app.put_record(subject, "concern_text", {f"bad{marker[:5].lower()}": marker})
    app.delete_record(profile)
    app.erase_subject(subject)
    with pytest.raises(NotFound):
        app.get_record(rid, "matching")
    while running.service.purge_erased():
        pass
    data_files = [p for p in (vault_home / "data").rglob("*") if p.is_file()]
    assert {"vault.db", "vault.db-wal", "vault.db-shm"} <= {p.name for p in data_files}
    assert [p.name for p in data_files if p.stat().st_mode & 0o077] == []
    running.service.store.close()
    needles = [marker.encode(), korean.encode(), marker.encode("utf-16-le"), subject.encode()]
    assert (vault_home / "logs" / "vault.log").stat().st_size > 0, "logs were written"
    assert (vault_home / "data" / "vault.db").exists()
    assert _hits(vault_home, needles) == []


def test_marker_scan_finds_a_planted_marker(vault_home: Path) -> None:
    """The scanner itself works: it finds a marker where one is."""
    (vault_home / "data").mkdir(exist_ok=True)
    (vault_home / "data" / "x.bin").write_bytes(b"..PHI-MARKER-x..")
    assert _hits(vault_home, [b"PHI-MARKER-x"]) == ["data/x.bin: b'PHI-MARKER-x'"]
