"""The BlobStore interface: large encrypted objects kept outside the database.

A blob is written whole and atomically (never visible half-written), read by byte ranges (so the
chunked format's random access works), and deleted idempotently. Blobs hold ciphertext only.
:class:`TracedBlobStore` puts any store's calls in spans.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable, Iterator

from vault_service import tracing


def blob_ref(record_id: str, version: int) -> str:
    """The name of a record version's blob (one name per version: an update writes a new one)."""
    return f"{record_id}.v{version}"


def blob_ref_parts(ref: str) -> tuple[str, int | None]:
    """The record id and version a blob name carries (version None if it names none)."""
    record_id, dot, version = ref.rpartition(".v")
    if not dot:
        return ref, None
    return record_id, int(version) if version.isdigit() else None


class BlobReader(abc.ABC):
    """Random access to one stored blob (implements ``crypto.chunked.ReadAt``)."""

    length: int

    @abc.abstractmethod
    def read_at(self, offset: int, size: int) -> bytes:
        """``size`` bytes at ``offset`` (fewer only at the end)."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release the handle."""


class BlobStore(abc.ABC):
    """Where encrypted large objects live."""

    @abc.abstractmethod
    def put(self, ref: str, pieces: Iterable[bytes]) -> int:
        """Write ``pieces`` as blob ``ref`` atomically; returns its length. Overwrites nothing:
        raises FileExistsError if ``ref`` exists."""

    @abc.abstractmethod
    def open(self, ref: str) -> BlobReader:
        """A reader; FileNotFoundError if absent."""

    @abc.abstractmethod
    def delete(self, ref: str) -> None:
        """Remove the blob; no error if it is already gone."""

    @abc.abstractmethod
    def exists(self, ref: str) -> bool:
        """Whether the blob is present."""

    @abc.abstractmethod
    def list_refs(self) -> Iterator[str]:
        """Every stored blob ref (for orphan sweeps)."""

    @abc.abstractmethod
    def remove_partials(self, older_than_seconds: float = 0.0) -> int:
        """Remove what interrupted writes left behind (never visible as blobs); returns how
        many."""

    def get(self, ref: str) -> bytes:
        """The whole blob (small blobs only)."""
        reader = self.open(ref)
        try:
            return reader.read_at(0, reader.length)
        finally:
            reader.close()


class TracedBlobStore(BlobStore):
    """``inner``, with a ``blob.*`` span around each call made while a traced RPC is served.
    The spans name the backend only, never the ref (it carries a record id). A range read of
    an open blob is not a span of its own (a large object makes thousands): ``blob.open``
    covers opening it, the RPC's span the reads."""

    def __init__(self, inner: BlobStore, backend: str) -> None:
        self.inner = inner
        self._attributes: dict[str, tracing.Value] = {"vault.blob_store": backend}

    def __repr__(self) -> str:
        return repr(self.inner)

    def put(self, ref: str, pieces: Iterable[bytes]) -> int:
        with tracing.span("blob.put", self._attributes):
            return self.inner.put(ref, pieces)

    def open(self, ref: str) -> BlobReader:
        with tracing.span("blob.open", self._attributes):
            return self.inner.open(ref)

    def get(self, ref: str) -> bytes:
        with tracing.span("blob.get", self._attributes):
            return self.inner.get(ref)

    def delete(self, ref: str) -> None:
        with tracing.span("blob.delete", self._attributes):
            self.inner.delete(ref)

    def exists(self, ref: str) -> bool:
        with tracing.span("blob.exists", self._attributes):
            return self.inner.exists(ref)

    def list_refs(self) -> Iterator[str]:
        return self.inner.list_refs()

    def remove_partials(self, older_than_seconds: float = 0.0) -> int:
        return self.inner.remove_partials(older_than_seconds)
