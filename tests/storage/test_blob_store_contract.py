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
    assert blobs.remove_partials() == 0


def test_filesystem_files_are_private(tmp_path) -> None:  # type: ignore[no-untyped-def]
    store = FilesystemBlobStore(tmp_path / "b")
    store.put("priv", [b"x"])
    path = next((tmp_path / "b").rglob("priv"))
    assert path.stat().st_mode & 0o077 == 0


def test_large_blob_in_parts_with_ranges(blobs: BlobStore) -> None:
    data = os.urandom(12 * 1024 * 1024 + 123)  # several multipart parts on S3
    pieces = [data[i : i + 1_000_000] for i in range(0, len(data), 1_000_000)]
    assert blobs.put("big.v1", pieces) == len(data)
    reader = blobs.open("big.v1")
    try:
        assert reader.length == len(data)
        for offset in (0, 5 * 1024 * 1024 - 3, len(data) - 10):
            assert reader.read_at(offset, 4096) == data[offset : offset + 4096]
    finally:
        reader.close()
    with pytest.raises(FileExistsError):
        blobs.put("big.v1", [b"again"])


def test_interrupted_large_write_leaves_nothing(blobs: BlobStore) -> None:
    def pieces():  # type: ignore[no-untyped-def]
        for _ in range(8):
            yield os.urandom(1_000_000)
        raise RuntimeError("client went away")

    with pytest.raises(RuntimeError):
        blobs.put("gone", pieces())
    assert not blobs.exists("gone")
    assert blobs.remove_partials() == 0
