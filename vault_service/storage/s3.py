"""S3-compatible blob store (AWS S3, Cloudflare R2, MinIO) via boto3.

Blobs are objects under ``prefix`` in one bucket. Writes are atomic: a small blob is one PutObject,
a large one a multipart upload of ``part_size`` parts, and the object becomes visible only when the
upload completes (an interrupted upload is aborted, and stale ones are aborted by
:meth:`S3BlobStore.remove_partials`). Both carry ``If-None-Match: *``, so a blob is never
overwritten. Memory stays at one part whatever the object size. Reads are ranged GETs, so the
chunked format's random access works.

Errors: missing object -> FileNotFoundError; existing object -> FileExistsError; connection
failures, throttling and 5xx (after botocore's bounded retries) -> Unavailable.
"""

from __future__ import annotations

import contextlib
import datetime
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from vault_service.audit.s3_objects import mapped_errors, s3_client
from vault_service.errors import Unavailable
from vault_service.storage.blobs import BlobReader, BlobStore
from vault_service.storage.filesystem import valid_ref

MIN_PART = 5 * 1024 * 1024


@contextlib.contextmanager
def _mapped() -> Iterator[None]:
    """S3's errors as the adapter's (:func:`mapped_errors`); the endpoint down is Unavailable."""
    try:
        with mapped_errors():
            yield
    except (FileNotFoundError, FileExistsError):
        raise
    except OSError:
        raise Unavailable("blob storage unavailable") from None


class _S3Reader(BlobReader):
    def __init__(self, client: Any, bucket: str, key: str) -> None:
        self._client, self._bucket, self._key = client, bucket, key
        with _mapped():
            self.length = int(client.head_object(Bucket=bucket, Key=key)["ContentLength"])

    def read_at(self, offset: int, size: int) -> bytes:
        if size <= 0 or offset >= self.length:
            return b""
        end = min(offset + size, self.length) - 1
        with _mapped():
            body = self._client.get_object(
                Bucket=self._bucket, Key=self._key, Range=f"bytes={offset}-{end}"
            )["Body"]
            try:
                data: bytes = body.read()
            finally:
                body.close()
        return data

    def close(self) -> None:
        pass


class S3BlobStore(BlobStore):
    """Blobs as objects ``<prefix><ref>`` in ``bucket``."""

    def __init__(
        self,
        bucket: str,
        *,
        prefix: str = "",
        endpoint_url: str | None = None,
        region: str = "us-east-1",
        env: Mapping[str, str] | None = None,
        part_size: int = 8 * 1024 * 1024,
        max_attempts: int = 4,
        client: Any = None,
    ) -> None:
        if part_size < MIN_PART:
            raise ValueError("S3 parts are at least 5 MiB")
        self._bucket, self._prefix, self._part = bucket, prefix, part_size
        self._client = client or s3_client(
            endpoint_url=endpoint_url, region=region, env=env, max_attempts=max_attempts
        )

    def __repr__(self) -> str:
        return f"S3BlobStore(bucket={self._bucket!r}, prefix={self._prefix!r})"

    @property
    def client(self) -> Any:
        return self._client

    def _key(self, ref: str) -> str:
        return self._prefix + valid_ref(ref)

    def put(self, ref: str, pieces: Iterable[bytes]) -> int:
        key = self._key(ref)
        buffer = bytearray()
        total = 0
        upload_id: str | None = None
        parts: list[dict[str, Any]] = []
        try:
            for piece in pieces:
                buffer += piece
                total += len(piece)
                while len(buffer) >= self._part:
                    if upload_id is None:
                        with _mapped():
                            upload_id = self._client.create_multipart_upload(
                                Bucket=self._bucket, Key=key
                            )["UploadId"]
                    self._upload_part(key, upload_id, parts, bytes(buffer[: self._part]))
                    del buffer[: self._part]
            if upload_id is None:
                with _mapped():
                    self._client.put_object(
                        Bucket=self._bucket, Key=key, Body=bytes(buffer), IfNoneMatch="*"
                    )
                return total
            if buffer or not parts:
                self._upload_part(key, upload_id, parts, bytes(buffer))
            with _mapped():
                self._client.complete_multipart_upload(
                    Bucket=self._bucket,
                    Key=key,
                    UploadId=upload_id,
                    MultipartUpload={"Parts": parts},
                    IfNoneMatch="*",
                )
            upload_id = None
            return total
        finally:
            if upload_id is not None:  # interrupted: nothing becomes visible
                with contextlib.suppress(Exception):
                    self._client.abort_multipart_upload(Bucket=self._bucket, Key=key, UploadId=upload_id)

    def _upload_part(self, key: str, upload_id: str, parts: list[dict[str, Any]], data: bytes) -> None:
        number = len(parts) + 1
        with _mapped():
            etag = self._client.upload_part(
                Bucket=self._bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=data
            )["ETag"]
        parts.append({"ETag": etag, "PartNumber": number})

    def open(self, ref: str) -> BlobReader:
        return _S3Reader(self._client, self._bucket, self._key(ref))

    def delete(self, ref: str) -> None:
        with _mapped():
            self._client.delete_object(Bucket=self._bucket, Key=self._key(ref))

    def exists(self, ref: str) -> bool:
        try:
            with _mapped():
                self._client.head_object(Bucket=self._bucket, Key=self._key(ref))
        except FileNotFoundError:
            return False
        return True

    def list_refs(self) -> Iterator[str]:
        with _mapped():
            pages = self._client.get_paginator("list_objects_v2").paginate(
                Bucket=self._bucket, Prefix=self._prefix
            )
            for page in pages:
                for obj in page.get("Contents", []):
                    yield obj["Key"][len(self._prefix) :]

    def remove_partials(self, older_than_seconds: float = 0.0) -> int:
        """Abort multipart uploads left by crashes (older than the given age)."""
        cutoff = datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=older_than_seconds)
        count = 0
        with _mapped():
            resp = self._client.list_multipart_uploads(Bucket=self._bucket, Prefix=self._prefix)
            for upload in resp.get("Uploads", []):
                if upload["Initiated"] <= cutoff:
                    self._client.abort_multipart_upload(
                        Bucket=self._bucket, Key=upload["Key"], UploadId=upload["UploadId"]
                    )
                    count += 1
        return count
