"""Small objects in an S3-compatible bucket with conditional writes, written once for the logs
kept on S3: the destruction ledger's lines (:mod:`vault_service.lifecycle.ledger_s3`) and the
S3 witness (:mod:`.witness_s3`).

S3 has no lock. What these logs need of one is a **compare-and-swap**, which S3 offers as
conditional writes (AWS since 2024; R2, MinIO and moto serve them too):

- :meth:`Bucket.put_new` is a PutObject with ``If-None-Match: *``: it creates the key only if
  no object holds it. Of several writers racing for one key exactly one succeeds; the others get
  412 Precondition Failed (or 409 ConditionalRequestConflict while the winner's write is in
  flight), reported here as ``False``: someone else got there first, read again and retry;
- :meth:`Bucket.put_if` is a PutObject with ``If-Match: <etag>``: it replaces the object only if
  it is still the version that was read (``False`` otherwise).

Reads and lists are strongly consistent (S3 since December 2020): a key whose write succeeded is
seen by every later GET and LIST. Errors of the endpoint (connection refused, timeouts,
throttling and 5xx after botocore's bounded retries, access denied) raise OSError: the callers
map it to their own Unavailable, as they do for the file system's.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

try:
    import boto3
    from botocore.config import Config as BotoConfig
    from botocore.exceptions import BotoCoreError, ClientError
except ImportError as exc:  # pragma: no cover - only without the extra
    raise ImportError("S3 storage needs boto3: pip install 'vault-service[s3]'") from exc

_MISSING = {"NoSuchKey", "404", "NotFound"}
#: the condition failed (412), or a conditional write to the key was in flight (409)
_LOST = {"PreconditionFailed", "412", "ConditionalRequestConflict", "409"}


def s3_client(
    *,
    endpoint_url: str | None = None,
    region: str | None = None,
    env: Mapping[str, str] | None = None,
    max_attempts: int = 4,
    timeout_seconds: float | None = None,
) -> Any:
    """A boto3 S3 client: credentials from ``env`` (the AWS_* variables) or, when it has none,
    boto3's usual chain (instance role, shared files), the region too when ``region`` is None
    (AWS_REGION, the shared config; us-east-1 otherwise); bounded retries, and connect and read
    timeouts of ``timeout_seconds`` (None: botocore's)."""
    env = env or {}
    timeouts: dict[str, float] = {}
    if timeout_seconds is not None:
        timeouts = {"connect_timeout": timeout_seconds, "read_timeout": timeout_seconds}
    return boto3.session.Session(
        aws_access_key_id=env.get("AWS_ACCESS_KEY_ID") or None,
        aws_secret_access_key=env.get("AWS_SECRET_ACCESS_KEY") or None,
        aws_session_token=env.get("AWS_SESSION_TOKEN") or None,
        region_name=region,
    ).client(
        "s3",
        endpoint_url=endpoint_url or None,
        config=BotoConfig(retries={"mode": "standard", "total_max_attempts": max_attempts}, **timeouts),
    )


@contextlib.contextmanager
def mapped_errors() -> Iterator[None]:
    """boto3's errors as the file system's, written once for every S3 adapter (these logs and the
    blob store): a missing object is FileNotFoundError, a failed condition (the key exists, or
    was replaced) FileExistsError, anything else of the endpoint OSError; never its text."""
    try:
        yield
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code in _MISSING:
            raise FileNotFoundError(code) from None
        if code in _LOST:
            raise FileExistsError(code) from None
        raise OSError(f"S3 error {code}") from None
    except BotoCoreError as exc:
        raise OSError(f"S3 unreachable ({type(exc).__name__})") from None


@contextlib.contextmanager
def failing_as(error: Callable[[], Exception]) -> Iterator[None]:
    """The endpoint down (the OSError of :func:`mapped_errors`) or a stored object that does not
    parse (ValueError, KeyError, TypeError) raised as the caller's own ``error()``, for the logs
    kept in a bucket (the ledger, the witness); never the cause's text."""
    try:
        yield
    except (OSError, ValueError, KeyError, TypeError):
        raise error() from None


@dataclass(frozen=True)
class Listed:
    """One object of a listing."""

    key: str
    etag: str
    size: int


class Bucket:
    """The objects under ``prefix`` of ``bucket`` (keys passed to the methods are relative to the
    prefix). Thread-safe (boto3 clients are)."""

    def __init__(self, client: Any, bucket: str, prefix: str = "") -> None:
        self.client = client
        self.bucket = bucket
        self.prefix = prefix

    def __repr__(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"

    def get(self, key: str) -> tuple[bytes, str] | None:
        """The object's bytes and ETag, None if there is none."""
        try:
            with mapped_errors():
                resp = self.client.get_object(Bucket=self.bucket, Key=self.prefix + key)
                body = resp["Body"]
                try:
                    data: bytes = body.read()
                finally:
                    body.close()
        except FileNotFoundError:
            return None
        except FileExistsError:
            raise OSError("S3 read refused") from None
        return data, str(resp["ETag"])

    def put(self, key: str, data: bytes) -> None:
        """Write the object whatever is there."""
        try:
            with mapped_errors():
                self.client.put_object(Bucket=self.bucket, Key=self.prefix + key, Body=data)
        except (FileExistsError, FileNotFoundError):
            raise OSError("S3 write refused") from None

    def put_new(self, key: str, data: bytes) -> bool:
        """Create the object if no object holds the key; False if one does."""
        return self._put(key, data, IfNoneMatch="*")

    def put_if(self, key: str, data: bytes, etag: str) -> bool:
        """Replace the object if its ETag is still ``etag``; False if it changed (or is gone)."""
        return self._put(key, data, IfMatch=etag)

    def _put(self, key: str, data: bytes, **condition: str) -> bool:
        try:
            with mapped_errors():
                self.client.put_object(Bucket=self.bucket, Key=self.prefix + key, Body=data, **condition)
        except (FileExistsError, FileNotFoundError):
            return False
        return True

    def listing(self, under: str, start_after: str = "") -> Iterator[Listed]:
        """The objects whose keys start with ``under``, in key order, after ``start_after``
        (a key relative to the prefix; "" for all)."""
        args: dict[str, Any] = {"Bucket": self.bucket, "Prefix": self.prefix + under}
        if start_after:
            args["StartAfter"] = self.prefix + start_after
        try:
            with mapped_errors():
                for page in self.client.get_paginator("list_objects_v2").paginate(**args):
                    for obj in page.get("Contents", []):
                        yield Listed(obj["Key"][len(self.prefix) :], str(obj["ETag"]), int(obj["Size"]))
        except (FileExistsError, FileNotFoundError):
            raise OSError("S3 listing refused") from None
