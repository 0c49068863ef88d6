"""The BlobStore contract, run on every implementation."""

from __future__ import annotations

import os

import pytest

from vault_service.storage import BlobStore, FilesystemBlobStore


def test_put_read_ranges_delete(blobs: BlobStore) -> None:
    data = os.urandom(100_000)
    assert blobs.put("abc.v1", [data[:10], data[10:70_000], data[70_000:]]) == len(data)
    assert blobs.exists("abc.v1") and blobs.get("abc.v1") == data
    reader = blobs.open("abc.v1")
    try:
        assert reader.length == len(data)
        assert reader.read_at(12_345, 100) == data[12_345:12_445]
        assert reader.read_at(len(data) - 5, 100) == data[-5:]
    finally:
        reader.close()
    assert list(blobs.list_refs()) == ["abc.v1"]
    blobs.delete("abc.v1")
    blobs.delete("abc.v1")
    assert not blobs.exists("abc.v1")
    with pytest.raises(FileNotFoundError):
        blobs.open("abc.v1")


def test_never_overwrites(blobs: BlobStore) -> None:
    blobs.put("same", [b"one"])
    with pytest.raises(FileExistsError):
        blobs.put("same", [b"two"])
    assert blobs.get("same") == b"one"


@pytest.mark.parametrize("ref", ["../escape", "", "a/b", ".hidden", "x" * 300])
def test_rejects_unsafe_refs(blobs: BlobStore, ref: str) -> None:
    with pytest.raises(ValueError):
        blobs.put(ref, [b"x"])


def test_failed_write_leaves_nothing(blobs: BlobStore) -> None:
    def pieces():  # type: ignore[no-untyped-def]
        yield b"partial"
        raise RuntimeError("producer died")

    with pytest.raises(RuntimeError):
        blobs.put("half", pieces())
    assert not blobs.exists("half")
    assert list(blobs.list_refs()) == []
    if isinstance(blobs, FilesystemBlobStore):
        assert blobs.remove_partials() == 0


def test_filesystem_files_are_private(tmp_path) -> None:  # type: ignore[no-untyped-def]
    store = FilesystemBlobStore(tmp_path / "b")
    store.put("priv", [b"x"])
    path = next((tmp_path / "b").rglob("priv"))
    assert path.stat().st_mode & 0o077 == 0
