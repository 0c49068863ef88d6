"""Issue 17, defect 3: read-once on every read path (GetRecord, DownloadContent, ExportSubject,
ReadShare).

Decision D3 (docs/decisions/issue-17.md): a read_once record is released whole, once; the read that
releases it destroys it. A read that would narrow what the purpose may see (a field subset, no
content, a byte range, a download of a record with fields) is FAILED_PRECONDITION and releases and
destroys nothing. Under a legal hold the record is consumed (never released again) and destroyed at
the hold's release. Two concurrent reads: exactly one gets it.

The policy is clinic-matching plus two read-once categories (tests/regressions/conftest.py):
``face_photo`` (content only) and ``face_scan`` (a note and content). Run on SQLite and PostgreSQL.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from tests.conftest import BACKENDS
from tests.regressions.conftest import ALL_TOKENS, Vault, read_once_policy_text
from vault_service.client import Record, VaultClient
from vault_service.errors import FailedPrecondition, NotFound, PermissionDenied, VaultError

pytestmark = pytest.mark.parametrize("vault", BACKENDS, indirect=True)

PHOTO = bytes(range(256)) * 1024  # 256 KiB: several pieces of a stream


@pytest.fixture
def policy_text() -> str:
    return read_once_policy_text()


def _download(client: VaultClient, record_id: str, **kw: Any) -> bytes:
    return b"".join(client.download_content(record_id, "simulation", **kw))


def _no_blobs_left(vault: Vault, timeout: float = 5.0) -> bool:
    """The blob store is empty (the blob goes after the response: allow it a moment)."""
    deadline = time.monotonic() + timeout
    while vault.blob_files():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_a_download_releases_a_read_once_record_once(vault: Vault) -> None:
    """Defect 3: a whole DownloadContent of a content-only read-once record releases it and
    destroys it: a second download and a later GetRecord are NOT_FOUND, the blob is gone."""
    app = vault.client("app")
    rid = app.put_record("member-1", "face_photo", {}, content=PHOTO).record_id
    assert _download(app, rid) == PHOTO
    with pytest.raises(NotFound):
        _download(app, rid)
    with pytest.raises(NotFound):
        app.get_record(rid, "simulation", include_content=True)
    assert _no_blobs_left(vault)


@pytest.mark.parametrize(
    "byte_range",
    [{"offset": 1}, {"length": 100}, {"offset": 4096, "length": 4096}],
    ids=["offset", "length", "offset-and-length"],
)
def test_a_ranged_download_of_a_read_once_record_is_refused(
    vault: Vault, byte_range: dict[str, int]
) -> None:
    """Defect 3: a range download (offset > 0 or length > 0) of a read-once record is
    FAILED_PRECONDITION and destroys nothing: the whole download afterwards still gets it all."""
    app = vault.client("app")
    rid = app.put_record("member-1", "face_photo", {}, content=PHOTO).record_id
    with pytest.raises(FailedPrecondition):
        _download(app, rid, **byte_range)
    assert _download(app, rid) == PHOTO


def test_a_download_of_a_read_once_record_with_fields_is_refused(vault: Vault) -> None:
    """Defect 3: DownloadContent of a read-once record whose purpose-visible part includes fields
    would release the content without the fields: FAILED_PRECONDITION, nothing destroyed."""
    app = vault.client("app")
    rid = app.put_record("member-1", "face_scan", {"note": "front"}, content=PHOTO).record_id
    with pytest.raises(FailedPrecondition):
        _download(app, rid)
    whole = app.get_record(rid, "simulation", include_content=True)
    assert (dict(whole.fields), whole.content) == ({"note": "front"}, PHOTO)


@pytest.mark.parametrize(
    "narrowed",
    [{}, {"fields": ["note"]}, {"fields": ["content"], "include_content": True}],
    ids=["fields-only", "one-field", "content-only"],
)
def test_a_narrowed_get_of_a_read_once_record_is_refused(vault: Vault, narrowed: dict[str, Any]) -> None:
    """Defect 3: a GetRecord that asks for less than the purpose may see of a read-once record
    (no content, or a field subset) is FAILED_PRECONDITION: it neither releases nor destroys the
    record, which the whole read afterwards gets once."""
    app = vault.client("app")
    rid = app.put_record("member-1", "face_scan", {"note": "front"}, content=PHOTO).record_id
    with pytest.raises(FailedPrecondition):
        app.get_record(rid, "simulation", **narrowed)
    whole = app.get_record(rid, "simulation", include_content=True)
    assert (dict(whole.fields), whole.content) == ({"note": "front"}, PHOTO)
    with pytest.raises(NotFound):
        app.get_record(rid, "simulation", include_content=True)


def test_an_export_releases_a_read_once_record_once(vault: Vault) -> None:
    """Defect 3: ExportSubject releases a read-once record once and destroys it: a second export
    leaves it out and GetRecord is NOT_FOUND."""
    app, sro = vault.client("app"), vault.client("sro")
    rid = app.put_record("member-1", "face_photo", {}, content=PHOTO).record_id
    other = app.put_record("member-1", "concern_text", {"text": "kept"}).record_id
    first = {r.info.record_id: r for r in sro.export_subject("member-1")}
    assert first[rid].content == PHOTO
    second = {r.info.record_id: r for r in sro.export_subject("member-1")}
    assert rid not in second, "the export released the read-once record a second time"
    assert other in second
    with pytest.raises(NotFound):
        app.get_record(rid, "simulation", include_content=True)


def _share_content(clinic: VaultClient, share_id: str) -> bytes:
    """The content a share read releases (nothing, if the read is refused)."""
    try:
        items = list(clinic.read_share(share_id))
    except (NotFound, PermissionDenied):
        return b""
    return b"".join(item[2] for item in items if not isinstance(item, Record))


def test_a_share_read_releases_a_read_once_record_once(vault: Vault) -> None:
    """Defect 3: a share read releases a read-once record once and destroys it: a second read of
    the share releases nothing, and GetRecord is NOT_FOUND."""
    app, clinic = vault.client("app"), vault.client("clinic")
    rid = app.put_record("member-1", "face_photo", {}, content=PHOTO).record_id
    _, share = vault.share_with_clinic(rid, "face_photo", ["content"])
    assert _share_content(clinic, share.share_id) == PHOTO
    again = _share_content(clinic, share.share_id)
    assert not again, f"a second read of the share released {len(again)} bytes of it again"
    with pytest.raises(NotFound):
        app.get_record(rid, "simulation", include_content=True)


def test_a_held_read_once_record_is_consumed_and_destroyed_at_release(vault: Vault) -> None:
    """Defect 3 (D3, D13): under a legal hold a read-once record is released once, then marked
    consumed (NOT_FOUND from then on) and destroyed at the hold's release."""
    app, legal = vault.client("app"), vault.client("legal")
    rid = app.put_record("member-1", "face_photo", {}, content=PHOTO).record_id
    hold = legal.place_hold("member-1", "evidence", "case-9", record_id=rid)
    assert app.get_record(rid, "simulation", include_content=True).content == PHOTO
    with pytest.raises(NotFound):
        app.get_record(rid, "simulation", include_content=True)
    with pytest.raises(NotFound):
        _download(app, rid)
    assert legal.release_hold(hold["hold_id"])[1] == 1
    assert _no_blobs_left(vault)


def test_concurrent_downloads_release_a_read_once_record_once(vault: Vault) -> None:
    """Defect 3: of several concurrent whole downloads of a read-once record exactly one gets it;
    the others get nothing."""
    app = vault.client("app")
    rid = app.put_record("member-1", "face_photo", {}, content=PHOTO).record_id
    n = 6
    barrier = threading.Barrier(n)
    got: list[bytes] = []
    refused: list[VaultError] = []
    lock = threading.Lock()

    def reader() -> None:
        with VaultClient(vault.address, ALL_TOKENS["app"], timeout=30) as c:
            barrier.wait()
            try:
                data = _download(c, rid)
            except (NotFound, FailedPrecondition) as exc:
                with lock:
                    refused.append(exc)
            else:
                with lock:
                    got.append(data)

    threads = [threading.Thread(target=reader) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(got) == 1, f"{len(got)} of {n} concurrent downloads released the record"
    assert got[0] == PHOTO
    assert len(refused) == n - 1
