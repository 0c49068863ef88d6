"""Round trips at every size around the chunk edges, streaming splits, and range reads."""

from __future__ import annotations

import itertools
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vault_service.crypto import chunked
from vault_service.errors import IntegrityError

KEY = bytes(range(32))
C = chunked.CHUNK_SIZE
SIZES = [0, 1, 15, 16, 17, C - 1, C, C + 1, 2 * C - 1, 2 * C, 2 * C + 1, 5 * C + 123]


@pytest.mark.parametrize("size", SIZES)
def test_round_trip_at_chunk_edges(size: int) -> None:
    msg = os.urandom(size)
    ct = chunked.encrypt(KEY, b"ctx", msg)
    assert len(ct) == chunked.ciphertext_length(size)
    assert chunked.plaintext_length(len(ct)) == size
    assert chunked.decrypt(KEY, b"ctx", ct) == msg
    # the final chunk is always short: a chunk-aligned message ends with an empty (tag-only) chunk
    assert (len(ct) - chunked.HEADER_SIZE) % chunked.ENCRYPTED_CHUNK_SIZE >= chunked.TAG_SIZE


@pytest.mark.parametrize("size", SIZES)
def test_wrong_context_or_key_fails_before_any_chunk(size: int) -> None:
    ct = chunked.encrypt(KEY, b"record-1", os.urandom(size))
    with pytest.raises(IntegrityError):
        chunked.decrypt(KEY, b"record-2", ct)
    with pytest.raises(IntegrityError):
        chunked.decrypt(bytes(32), b"record-1", ct)
    dec = chunked.ChunkedDecryptor(KEY, b"record-2")
    with pytest.raises(IntegrityError):
        dec.update(ct)


@settings(max_examples=60, deadline=None)
@given(size=st.integers(0, 4 * C + 7), cuts=st.lists(st.integers(0, 4 * C + 7), max_size=8))
def test_streaming_with_arbitrary_splits(size: int, cuts: list[int]) -> None:
    msg = os.urandom(size)
    points = sorted({0, size, *(c for c in cuts if c <= size)})
    enc = chunked.ChunkedEncryptor(KEY, b"")
    ct = b"".join(enc.update(msg[a:b]) for a, b in itertools.pairwise(points))
    ct += enc.finalize()
    cpoints = sorted({0, len(ct), *(c for c in cuts if c <= len(ct))})
    dec = chunked.ChunkedDecryptor(KEY, b"")
    out = b"".join(dec.update(ct[a:b]) for a, b in itertools.pairwise(cpoints))
    assert out + dec.finalize() == msg


@settings(max_examples=80, deadline=None)
@given(
    size=st.integers(0, 3 * C + 5),
    offset=st.integers(0, 3 * C + 10),
    length=st.integers(0, 3 * C + 10),
)
def test_range_reads_match_slices(size: int, offset: int, length: int) -> None:
    msg = os.urandom(size)
    ct = chunked.encrypt(KEY, b"r", msg)
    reader = chunked.ChunkedReader(KEY, b"r", chunked.BytesSource(ct), len(ct))
    assert reader.read(offset, length) == msg[offset : offset + length]


def test_range_read_opens_only_covered_chunks() -> None:
    msg = os.urandom(10 * C + 5)
    ct = chunked.encrypt(KEY, b"r", msg)
    reader = chunked.ChunkedReader(KEY, b"r", chunked.BytesSource(ct), len(ct))
    assert reader.read(3 * C + 10, 100) == msg[3 * C + 10 : 3 * C + 110]
    assert reader.chunks_opened == 1
    assert reader.read(4 * C - 1, 2) == msg[4 * C - 1 : 4 * C + 1]
    assert reader.chunks_opened == 3


def test_encryptor_refuses_use_after_finalize() -> None:
    enc = chunked.ChunkedEncryptor(KEY, b"")
    enc.finalize()
    with pytest.raises(ValueError, match="finalized"):
        enc.update(b"x")


def test_salt_is_fresh_per_message() -> None:
    a = chunked.encrypt(KEY, b"", b"same")
    b = chunked.encrypt(KEY, b"", b"same")
    assert a[: chunked.SALT_SIZE] != b[: chunked.SALT_SIZE]
    assert a != b
