"""One contract suite per storage interface, run on every implementation (each implementation is
one more fixture param)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.db import TestDatabase
from vault_service.storage import BlobStore, FilesystemBlobStore, RecordStore


@pytest.fixture
def store(database: TestDatabase) -> RecordStore:
    """A migrated store on each backend in turn (the ``database`` fixture's params)."""
    return database.store()


@pytest.fixture(scope="session")
def moto_s3() -> Iterator[Any]:
    from tests.support.moto_server import MotoServer

    server = MotoServer().start()
    yield server
    server.stop()


@pytest.fixture(params=["filesystem", "s3"])
def blobs(request: pytest.FixtureRequest, tmp_path: Path) -> BlobStore:
    if request.param == "filesystem":
        return FilesystemBlobStore(tmp_path / "blobs")
    from tests.support.moto_server import CREDENTIALS
    from vault_service.storage.s3 import S3BlobStore

    server = request.getfixturevalue("moto_s3")
    server.reset()
    store = S3BlobStore(
        "vault-blobs",
        prefix="blobs/",
        endpoint_url=server.url,
        env=CREDENTIALS,
        part_size=5 * 1024 * 1024,
    )
    store.client.create_bucket(Bucket="vault-blobs")
    return store
