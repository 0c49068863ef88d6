"""The values that cross the service boundary: who calls, size limits, content streams, what a
read asks for, releases."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

from vault_service.errors import ResourceExhausted
from vault_service.policy import Principal
from vault_service.policy.model import CONTENT_FIELD
from vault_service.storage import RecordMeta
from vault_service.values import fast_init


@fast_init
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


@fast_init
@dataclass(frozen=True)
class RecordView:
    """A decrypted record as released to a caller: only the fields its purpose allows."""

    meta: RecordMeta
    fields: Mapping[str, str]
    content: bytes | None
    #: set for de-identified views: the subject's pseudonym for this purpose
    subject_pseudonym: str = ""


#: decrypted pieces of streamed content
STREAM_PIECE = 1024 * 1024


@fast_init
@dataclass(frozen=True)
class Ask:
    """What a read asks of one record."""

    #: the fields asked for; None: every field the purpose allows
    fields: frozenset[str] | None = None
    #: the content, inline in the view
    content: bool = False
    #: the content, as a stream of pieces (of [offset, offset + length); length None: to the
    #: end), after the view with the fields asked for
    stream: bool = False
    offset: int = 0
    length: int | None = None
    piece: int = STREAM_PIECE
    #: whether the caller chose the narrowing (GetRecord, DownloadContent), rather than the
    #: policy or a share's terms: only a caller's narrowing of a read-once record is refused
    narrowable: bool = False

    def wanted(self) -> frozenset[str] | None:
        """The fields to decide for (the content counts as the field "content")."""
        if (self.content or self.stream) and self.fields is not None:
            return self.fields | {CONTENT_FIELD}
        return self.fields

    @property
    def ranged(self) -> bool:
        return self.stream and (self.offset > 0 or self.length is not None)
