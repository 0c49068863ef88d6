"""Payload recipes: seal and open record payloads under a :class:`DataKey` and a :class:`Context`.

These are the calls the service uses; they hide the raw key bytes and nonces of the chunked format
(:mod:`vault_service.crypto.chunked`). Every integrity failure is the one opaque ``IntegrityError``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from vault_service.crypto import chunked
from vault_service.crypto.context import Context
from vault_service.crypto.keys import DataKey, SubjectKey


def seal_payload(key: DataKey, context: Context, plaintext: bytes) -> bytes:
    """Encrypt a whole payload."""
    return chunked.encrypt(key.unsafe_bytes(), context.encode(), plaintext)


def open_payload(key: DataKey, context: Context, ciphertext: bytes) -> bytes:
    """Authenticate and decrypt a whole payload; releases nothing unless all of it is valid."""
    return chunked.decrypt(key.unsafe_bytes(), context.encode(), ciphertext)


def seal_value(key: SubjectKey, context: Context, plaintext: bytes) -> bytes:
    """Encrypt a small value that belongs to a subject but to no record (a consent's evidence
    reference) directly under the subject key: it dies with the subject key."""
    return chunked.encrypt(key.unsafe_bytes(), context.encode(), plaintext)


def open_value(key: SubjectKey, context: Context, ciphertext: bytes) -> bytes:
    """Authenticate and decrypt a value sealed by :func:`seal_value`."""
    return chunked.decrypt(key.unsafe_bytes(), context.encode(), ciphertext)


def seal_stream(key: DataKey, context: Context, pieces: Iterable[bytes | memoryview]) -> Iterator[bytes]:
    """Encrypt a stream of plaintext pieces in constant memory."""
    return chunked.encrypt_stream(key.unsafe_bytes(), context.encode(), pieces)


class PayloadDecryptor(chunked.ChunkedDecryptor):
    """Streaming decryption of one payload."""

    def __init__(self, key: DataKey, context: Context) -> None:
        super().__init__(key.unsafe_bytes(), context.encode())


class PayloadReader(chunked.ChunkedReader):
    """Random-access reads of one stored payload (only the chunks a range covers are decrypted)."""

    def __init__(
        self, key: DataKey, context: Context, source: chunked.ReadAt, ciphertext_len: int
    ) -> None:
        super().__init__(key.unsafe_bytes(), context.encode(), source, ciphertext_len)
