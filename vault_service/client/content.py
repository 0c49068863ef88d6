"""Large objects: a record's content streamed up from a file and down to one, in constant memory."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Mapping
from typing import BinaryIO

from vault_service.api.v1 import vault_pb2 as pb
from vault_service.client.results import PutResult
from vault_service.client.transport import Transport


class ContentMixin(Transport):
    """The large-object methods of ``VaultClient``."""

    def upload_record(
        self,
        source: str | BinaryIO,
        *,
        subject_id: str = "",
        category: str = "",
        fields: Mapping[str, str] | None = None,
        content_type: str = "",
        idempotency_key: str = "",
        record_id: str = "",
        expected_version: int = 0,
        piece_size: int = 1024 * 1024,
        progress: Callable[[int, int | None], None] | None = None,
        timeout: float | None = None,
    ) -> PutResult:
        """Stream a file (a path or a binary file object) as a record's content: a new record
        (subject_id, category), or a new version of ``record_id``. Constant memory."""
        own = isinstance(source, str)
        f: BinaryIO = open(source, "rb") if isinstance(source, str) else source  # noqa: SIM115
        try:
            size: int | None = None
            try:
                size = os.fstat(f.fileno()).st_size
            except (OSError, AttributeError, ValueError):
                size = None

            def chunks() -> Iterator[pb.UploadChunk]:
                yield pb.UploadChunk(
                    header=pb.UploadHeader(
                        subject_id=subject_id,
                        category=category,
                        fields=dict(fields or {}),
                        content_type=content_type,
                        idempotency_key=idempotency_key,
                        record_id=record_id,
                        expected_version=expected_version,
                        declared_size=size or 0,
                    )
                )
                sent = 0
                while data := f.read(piece_size):
                    sent += len(data)
                    if progress is not None:
                        progress(sent, size)
                    yield pb.UploadChunk(data=data)
                yield pb.UploadChunk(end=True)

            resp = self._call(self._stub.UploadRecord, chunks(), self._large_object_deadline(timeout))
        finally:
            if own:
                f.close()
        return PutResult(resp.record_id, resp.version)

    def download_content(
        self,
        record_id: str,
        purpose: str,
        *,
        offset: int = 0,
        length: int = 0,
        timeout: float | None = None,
    ) -> Iterator[bytes]:
        """Stream a record's content, or a byte range of it (length 0: to the end)."""
        for piece in self._stream(
            self._stub.DownloadContent,
            pb.DownloadContentRequest(
                record_id=record_id, purpose=purpose, offset=offset, length=length
            ),
            self._large_object_deadline(timeout),
        ):
            yield piece.data

    def download_to(
        self,
        path: str,
        record_id: str,
        purpose: str,
        *,
        progress: Callable[[int, int | None], None] | None = None,
        total: int | None = None,
    ) -> int:
        """Write a record's content to ``path`` (created 0600); returns the byte count. The file
        is written to a temporary name and renamed only when complete."""
        tmp = f"{path}.partial"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        written = 0
        try:
            with os.fdopen(fd, "wb") as out:
                for data in self.download_content(record_id, purpose):
                    out.write(data)
                    written += len(data)
                    if progress is not None:
                        progress(written, total)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        return written
