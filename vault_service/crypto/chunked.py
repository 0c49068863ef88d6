"""c2sp.org/chunked-encryption with HKDF-Expand-SHA-512 and AEAD_AES_256_GCM ("Cobblestone-256").

Every payload the vault stores, from a 10-byte field to a 1 GiB image, is one message in this format::

    salt (24) || commitment (32) || chunk_0 || ... || chunk_n
    key || base_nonce || commitment = HKDF-Expand-SHA-512(input_key,
        "c2sp.org/chunked-encryption@v1+" || "AEAD_AES_256_GCM" || 0x00 || salt || context, 76)
    chunk_i = AES-256-GCM(key, base_nonce XOR i, plaintext[16 KiB * i : 16 KiB * (i + 1)], aad="")

Full chunks are 16 KiB; the final chunk is always shorter (possibly empty), which is the end-of-message
signal and the truncation defence. The commitment is checked before any chunk is decrypted.

Three ways in: :class:`ChunkedEncryptor` / :class:`ChunkedDecryptor` stream, :func:`encrypt` /
:func:`decrypt` take whole messages, and :class:`ChunkedReader` decrypts a byte range by opening only
the chunks it covers (plus the final chunk once, which authenticates the message length). A failed
decryptor stays failed. These take raw ``bytes`` keys; the key-typed recipes live in
``vault_service.crypto.payload``.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable, Iterator
from typing import Protocol

from vault_service.crypto._primitives import (
    KEY_SIZE,
    NONCE_SIZE,
    TAG_SIZE,
    Aes256Gcm,
    UnsupportedParameters,
    hkdf_expand_sha512,
    random_bytes,
)
from vault_service.errors import IntegrityError

CHUNK_SIZE = 16 * 1024
SALT_SIZE = 24
COMMITMENT_SIZE = 32
HEADER_SIZE = SALT_SIZE + COMMITMENT_SIZE
ENCRYPTED_CHUNK_SIZE = CHUNK_SIZE + TAG_SIZE
MAX_CHUNKS = 1 << 38

_INFO_PREFIX = b"c2sp.org/chunked-encryption@v1+" + b"AEAD_AES_256_GCM" + b"\x00"


def _derive(input_key: bytes, salt: bytes, context: bytes) -> tuple[bytes, bytes, bytes]:
    """(key, base_nonce, commitment) for one message."""
    if len(input_key) != KEY_SIZE:
        raise UnsupportedParameters(
            f"chunked-encryption input key of {len(input_key)} bytes refused: must be {KEY_SIZE}"
        )
    okm = hkdf_expand_sha512(
        input_key, _INFO_PREFIX + salt + context, KEY_SIZE + NONCE_SIZE + COMMITMENT_SIZE
    )
    return okm[:KEY_SIZE], okm[KEY_SIZE : KEY_SIZE + NONCE_SIZE], okm[KEY_SIZE + NONCE_SIZE :]


class RawChunkCipher:
    """The per-chunk AEAD of the format (the spec's "raw mode"): key, base nonce, chunk counter.

    Raw mode has no salt and no commitment; it is used internally and to run the raw-mode vectors.
    """

    __slots__ = ("_aead", "_base")

    def __init__(self, key: bytes, base_nonce: bytes) -> None:
        if len(base_nonce) != NONCE_SIZE:
            raise UnsupportedParameters("base nonce must be 96 bits")
        self._aead = Aes256Gcm(key)
        self._base = int.from_bytes(base_nonce, "big")

    def _nonce(self, index: int) -> bytes:
        if not 0 <= index < MAX_CHUNKS:
            raise IntegrityError()
        return (self._base ^ index).to_bytes(NONCE_SIZE, "big")

    def seal(self, index: int, chunk: bytes | bytearray | memoryview) -> bytes:
        """Encrypt chunk ``index``; the caller guarantees the size rules."""
        return self._aead.seal(self._nonce(index), chunk, None)

    def open(self, index: int, encrypted: bytes | bytearray | memoryview, final: bool) -> bytes:
        """Authenticate and decrypt chunk ``index``, checking the size its position demands."""
        n = len(encrypted)
        if (final and not TAG_SIZE <= n < ENCRYPTED_CHUNK_SIZE) or (
            not final and n != ENCRYPTED_CHUNK_SIZE
        ):
            raise IntegrityError()
        return self._aead.open_joined(self._nonce(index), encrypted, None)


def decrypt_raw(key: bytes, base_nonce: bytes, body: bytes) -> bytes:
    """Decrypt a raw-mode body (no header). For known-answer tests of the chunk layer."""
    cipher = RawChunkCipher(key, base_nonce)
    n_full, rest = divmod(len(body), ENCRYPTED_CHUNK_SIZE)
    if rest < TAG_SIZE:
        raise IntegrityError()
    view = memoryview(body)
    out = [
        cipher.open(i, view[i * ENCRYPTED_CHUNK_SIZE : (i + 1) * ENCRYPTED_CHUNK_SIZE], False)
        for i in range(n_full)
    ]
    out.append(cipher.open(n_full, view[n_full * ENCRYPTED_CHUNK_SIZE :], True))
    return b"".join(out)


class ChunkedEncryptor:
    """Streaming encryption: call :meth:`update` any number of times, then :meth:`finalize` once.

    Buffers at most one chunk (16 KiB) of plaintext. The header is emitted by the first call.
    """

    def __init__(self, input_key: bytes, context: bytes) -> None:
        salt = random_bytes(SALT_SIZE)
        key, base_nonce, commitment = _derive(input_key, salt, context)
        self._cipher = RawChunkCipher(key, base_nonce)
        self._pending_header: bytes | None = salt + commitment
        self._buffer = bytearray()
        self._index = 0
        self._done = False

    def _take_header(self) -> list[bytes]:
        if self._pending_header is None:
            return []
        header, self._pending_header = self._pending_header, None
        return [header]

    def update(self, data: bytes | bytearray | memoryview) -> bytes:
        """Encrypt what fills whole chunks; returns ciphertext (possibly empty)."""
        if self._done:
            raise ValueError("encryptor already finalized")
        out = self._take_header()
        view = memoryview(data).cast("B")
        if self._buffer:
            need = CHUNK_SIZE - len(self._buffer)
            self._buffer += view[:need]
            view = view[need:]
            if len(self._buffer) < CHUNK_SIZE:
                return b"".join(out)
            out.append(self._cipher.seal(self._index, self._buffer))
            self._index += 1
            self._buffer = bytearray()
        # A full 16 KiB chunk is never final: if the message ends here, finalize() adds an empty one.
        while len(view) >= CHUNK_SIZE:
            out.append(self._cipher.seal(self._index, view[:CHUNK_SIZE]))
            self._index += 1
            view = view[CHUNK_SIZE:]
        self._buffer += view
        return b"".join(out)

    def finalize(self) -> bytes:
        """Encrypt the short final chunk (empty if the message ended on a chunk boundary)."""
        if self._done:
            raise ValueError("encryptor already finalized")
        self._done = True
        out = self._take_header()
        out.append(self._cipher.seal(self._index, self._buffer))
        self._buffer = bytearray()
        return b"".join(out)


class ChunkedDecryptor:
    """Streaming decryption. Releases plaintext only for chunks that authenticated.

    After any failure every later call raises :class:`IntegrityError` again ("keep failing"); a
    message is only complete when :meth:`finalize` returns.
    """

    def __init__(self, input_key: bytes, context: bytes) -> None:
        if len(input_key) != KEY_SIZE:
            raise UnsupportedParameters(
                f"chunked-encryption input key of {len(input_key)} bytes refused: must be {KEY_SIZE}"
            )
        self._input_key = input_key
        self._context = context
        self._cipher: RawChunkCipher | None = None
        self._buffer = bytearray()
        self._index = 0
        self._failed = False
        self._done = False

    def _fail(self) -> IntegrityError:
        self._failed = True
        self._buffer = bytearray()
        return IntegrityError()

    def _check_usable(self) -> None:
        if self._failed:
            raise IntegrityError()
        if self._done:
            raise ValueError("decryptor already finalized")

    def update(self, data: bytes | bytearray | memoryview) -> bytes:
        """Feed ciphertext; returns the plaintext of every whole chunk now authenticated."""
        self._check_usable()
        self._buffer += data
        if self._cipher is None:
            if len(self._buffer) < HEADER_SIZE:
                return b""
            salt = bytes(self._buffer[:SALT_SIZE])
            key, base_nonce, commitment = _derive(self._input_key, salt, self._context)
            if not hmac.compare_digest(commitment, bytes(self._buffer[SALT_SIZE:HEADER_SIZE])):
                raise self._fail()
            self._cipher = RawChunkCipher(key, base_nonce)
            del self._buffer[:HEADER_SIZE]
        # A buffered run of exactly 16 KiB + tag is a full chunk: a final chunk is always shorter.
        n_full = len(self._buffer) // ENCRYPTED_CHUNK_SIZE
        if n_full == 0:
            return b""
        view = memoryview(self._buffer)
        out = []
        try:
            for i in range(n_full):
                start = i * ENCRYPTED_CHUNK_SIZE
                out.append(
                    self._cipher.open(
                        self._index, view[start : start + ENCRYPTED_CHUNK_SIZE], final=False
                    )
                )
                self._index += 1
        except IntegrityError:
            view.release()
            raise self._fail() from None
        view.release()
        del self._buffer[: n_full * ENCRYPTED_CHUNK_SIZE]
        return b"".join(out)

    def finalize(self) -> bytes:
        """Decrypt the final short chunk; raises if the message is truncated or has trailing data."""
        self._check_usable()
        if self._cipher is None:
            raise self._fail()
        try:
            plaintext = self._cipher.open(self._index, self._buffer, final=True)
        except IntegrityError:
            raise self._fail() from None
        self._done = True
        self._buffer = bytearray()
        return plaintext


def encrypt(input_key: bytes, context: bytes, plaintext: bytes | memoryview) -> bytes:
    """Encrypt a whole message."""
    enc = ChunkedEncryptor(input_key, context)
    return enc.update(plaintext) + enc.finalize()


def decrypt(input_key: bytes, context: bytes, ciphertext: bytes | memoryview) -> bytes:
    """Decrypt and authenticate a whole message; nothing is returned unless all of it is valid."""
    dec = ChunkedDecryptor(input_key, context)
    head = dec.update(ciphertext)
    return head + dec.finalize()


def encrypt_stream(
    input_key: bytes, context: bytes, pieces: Iterable[bytes | memoryview]
) -> Iterator[bytes]:
    """Encrypt an iterable of plaintext pieces lazily (constant memory)."""
    enc = ChunkedEncryptor(input_key, context)
    for piece in pieces:
        out = enc.update(piece)
        if out:
            yield out
    yield enc.finalize()


def ciphertext_length(plaintext_length: int) -> int:
    """The exact ciphertext length of a message of ``plaintext_length`` bytes."""
    return HEADER_SIZE + plaintext_length + (plaintext_length // CHUNK_SIZE + 1) * TAG_SIZE


def plaintext_length(ciphertext_len: int) -> int:
    """The plaintext length a well-formed ciphertext of this length carries; IntegrityError if none."""
    body = ciphertext_len - HEADER_SIZE
    if body < TAG_SIZE:
        raise IntegrityError()
    n_full, rest = divmod(body, ENCRYPTED_CHUNK_SIZE)
    if rest < TAG_SIZE:
        raise IntegrityError()
    return n_full * CHUNK_SIZE + rest - TAG_SIZE


class ReadAt(Protocol):
    """Anything that can return ``size`` bytes at ``offset`` (a file, a blob, an S3 range GET)."""

    def read_at(self, offset: int, size: int) -> bytes:
        """Exactly ``size`` bytes unless the end is reached."""
        ...


class BytesSource:
    """:class:`ReadAt` over an in-memory ciphertext."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    def read_at(self, offset: int, size: int) -> bytes:
        return self._data[offset : offset + size]


class ChunkedReader:
    """Random-access decryption of a byte range, opening only the chunks the range covers.

    Construction checks the commitment and authenticates the final chunk, which proves the message
    length (so no range read can be fooled by a truncated or extended ciphertext).
    """

    def __init__(self, input_key: bytes, context: bytes, source: ReadAt, ciphertext_len: int) -> None:
        header = source.read_at(0, HEADER_SIZE)
        if len(header) != HEADER_SIZE:
            raise IntegrityError()
        key, base_nonce, commitment = _derive(input_key, header[:SALT_SIZE], context)
        if not hmac.compare_digest(commitment, header[SALT_SIZE:]):
            raise IntegrityError()
        self.length = plaintext_length(ciphertext_len)
        self._source = source
        self._cipher = RawChunkCipher(key, base_nonce)
        self._final_index = self.length // CHUNK_SIZE
        self._final_plaintext = self._open_chunk(self._final_index)
        self.chunks_opened = 0

    def _open_chunk(self, index: int) -> bytes:
        final = index == self._final_index
        want = ENCRYPTED_CHUNK_SIZE if not final else self.length % CHUNK_SIZE + TAG_SIZE
        encrypted = self._source.read_at(HEADER_SIZE + index * ENCRYPTED_CHUNK_SIZE, want)
        if len(encrypted) != want:
            raise IntegrityError()
        return self._cipher.open(index, encrypted, final)

    #: full chunks fetched from the source per read (about 1 MiB): one read, not one per chunk
    BATCH = 64

    def iter_range(self, offset: int, length: int) -> Iterator[bytes]:
        """Yield the plaintext of ``[offset, offset + length)`` chunk by chunk (clamped to the end).

        Ciphertext is fetched in batches of up to :attr:`BATCH` consecutive chunks with one read
        of the source; only chunks the range covers are fetched and decrypted."""
        if offset < 0 or length < 0:
            raise ValueError("offset and length must be non-negative")
        end = min(offset + length, self.length)
        if offset >= end:
            return
        first, last = offset // CHUNK_SIZE, (end - 1) // CHUNK_SIZE
        index = first
        while index <= last:
            if index == self._final_index:
                chunks = [self._final_plaintext]
            else:
                stop = min(last, self._final_index - 1, index + self.BATCH - 1)
                want = (stop - index + 1) * ENCRYPTED_CHUNK_SIZE
                data = self._source.read_at(HEADER_SIZE + index * ENCRYPTED_CHUNK_SIZE, want)
                if len(data) != want:
                    raise IntegrityError()
                view = memoryview(data)
                chunks = [
                    self._cipher.open(
                        i,
                        view[
                            (i - index) * ENCRYPTED_CHUNK_SIZE : (i - index + 1) * ENCRYPTED_CHUNK_SIZE
                        ],
                        False,
                    )
                    for i in range(index, stop + 1)
                ]
                self.chunks_opened += len(chunks)
            for plaintext in chunks:
                base = index * CHUNK_SIZE
                if offset <= base and base + len(plaintext) <= end:
                    yield plaintext  # a whole chunk: no copy
                else:
                    yield plaintext[max(offset - base, 0) : end - base]
                index += 1

    def read(self, offset: int, length: int) -> bytes:
        """The plaintext of ``[offset, offset + length)`` (clamped to the message end)."""
        return b"".join(self.iter_range(offset, length))
