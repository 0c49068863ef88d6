"""One contract suite per storage interface, run on every implementation (``--store`` later adds
PostgreSQL; each implementation is one more fixture param)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from vault_service.storage import BlobStore, FilesystemBlobStore, RecordStore, SqliteRecordStore


@pytest.fixture(params=["sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RecordStore]:
    s = SqliteRecordStore(tmp_path / "db" / "vault.db")
    s.migrate()
    yield s
    s.close()


@pytest.fixture(params=["filesystem"])
def blobs(request: pytest.FixtureRequest, tmp_path: Path) -> BlobStore:
    return FilesystemBlobStore(tmp_path / "blobs")
