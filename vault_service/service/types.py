"""The values that cross the service boundary: who calls, size limits, content streams, releases."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

from vault_service.errors import ResourceExhausted
from vault_service.policy import Principal
from vault_service.storage import RecordMeta


@dataclass(frozen=True)
class CallContext:
    """Who is calling, and the correlation id of this request."""

    principal: Principal
    correlation_id: str


@dataclass(frozen=True)
class Limits:
    """Size limits checked before any work (RESOURCE_EXHAUSTED beyond them)."""

    max_fields: int = 64
    max_field_bytes: int = 1024 * 1024
    #: content sent inline in one message (PutRecord, UpdateRecord)
    max_content_bytes: int = 8 * 1024 * 1024
    #: content streamed (UploadRecord)
    max_object_bytes: int = 4 * 1024 * 1024 * 1024


@dataclass
class ContentStream:
    """A content object arriving in pieces (a client-streaming upload), encrypted on the fly.

    ``declared_size`` (if the client sent one) is checked up front; the actual size is counted
    as the pieces pass and the upload fails with RESOURCE_EXHAUSTED past the limit."""

    pieces: Iterable[bytes]
    declared_size: int | None = None
    received: int = 0

    def limited(self, limit: int) -> Iterator[bytes]:
        """The pieces, counted; RESOURCE_EXHAUSTED as soon as ``limit`` is exceeded."""
        for piece in self.pieces:
            self.received += len(piece)
            if self.received > limit:
                raise ResourceExhausted(f"content larger than {limit} bytes")
            yield piece


@dataclass(frozen=True)
class RecordView:
    """A decrypted record as released to a caller: only the fields its purpose allows."""

    meta: RecordMeta
    fields: Mapping[str, str]
    content: bytes | None
    #: set for de-identified views: the subject's pseudonym for this purpose
    subject_pseudonym: str = ""
