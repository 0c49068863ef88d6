"""All 35 Wycheproof vectors for c2sp.org/chunked-encryption (SHA-512, AES-256-GCM) through our code."""

from __future__ import annotations

import hashlib
import zlib
from typing import Any

import pytest

from vault_service.crypto import chunked
from vault_service.crypto._primitives import UnsupportedParameters
from vault_service.errors import IntegrityError

FILE = "c2sp_chunked_encryption_aes_256_gcm_test.json"


def _cases(load: Any) -> list[dict[str, Any]]:
    data = load(FILE)
    (group,) = data["testGroups"]
    assert group["aead"] == "AEAD_AES_256_GCM" and group["sha"] == "SHA-512"
    return list(group["tests"])


@pytest.fixture(scope="module")
def cases(wycheproof: Any) -> list[dict[str, Any]]:
    return _cases(wycheproof)


def _inputs(t: dict[str, Any]) -> tuple[bytes, bytes, bytes]:
    return bytes.fromhex(t["key"]), bytes.fromhex(t["ctx"]), zlib.decompress(bytes.fromhex(t["ct"]))


def test_vector_file_has_35_cases(cases: list[dict[str, Any]]) -> None:
    assert len(cases) == 35
    assert sum(t["result"] == "valid" for t in cases) == 10


def test_whole_message_decryption(cases: list[dict[str, Any]]) -> None:
    for t in cases:
        key, ctx, ct = _inputs(t)
        if t["result"] == "valid":
            pt = chunked.decrypt(key, ctx, ct)
            assert len(pt) == t["msgLength"], t["tcId"]
            assert hashlib.sha512(pt).hexdigest() == t["msgSha512"], t["tcId"]
        else:
            expected: type[Exception] = (
                UnsupportedParameters if "InvalidKeySize" in t["flags"] else IntegrityError
            )
            with pytest.raises(expected):
                chunked.decrypt(key, ctx, ct)


@pytest.mark.parametrize("piece", [1, 7, 56, 1000, 16400, 16401, 70000])
def test_streaming_decryption_releases_at_most_valid_prefix(
    cases: list[dict[str, Any]], piece: int
) -> None:
    for t in cases:
        key, ctx, ct = _inputs(t)
        if "InvalidKeySize" in t["flags"]:
            with pytest.raises(UnsupportedParameters):
                chunked.ChunkedDecryptor(key, ctx)
            continue
        dec = chunked.ChunkedDecryptor(key, ctx)
        released = bytearray()
        error = None
        try:
            for i in range(0, len(ct), piece):
                released += dec.update(ct[i : i + piece])
            released += dec.finalize()
        except IntegrityError as exc:
            error = exc
        if t["result"] == "valid":
            assert error is None, t["tcId"]
            assert hashlib.sha512(released).hexdigest() == t["msgSha512"]
            continue
        assert error is not None, t["tcId"]
        if "HeaderFailure" in t["flags"]:
            assert released == b"", t["tcId"]
        prefix_len = t.get("msgLength", 0) if "PartialPlaintext" in t["flags"] else 0
        assert len(released) <= max(prefix_len, 0), t["tcId"]
        if "PartialPlaintext" in t["flags"] and released:
            full = hashlib.sha512(released).hexdigest()
            assert len(released) < t["msgLength"] or full == t["msgSha512"], t["tcId"]
        # keeps failing, whatever comes next
        with pytest.raises(IntegrityError):
            dec.update(b"\x00" * 32)
        with pytest.raises(IntegrityError):
            dec.finalize()


def test_raw_mode_vectors(cases: list[dict[str, Any]]) -> None:
    raw = [t for t in cases if "aeadKey" in t]
    assert raw, "expected raw-mode vectors"
    for t in raw:
        _, _, ct = _inputs(t)
        body = ct[chunked.HEADER_SIZE :]
        aead_key, nonce = bytes.fromhex(t["aeadKey"]), bytes.fromhex(t["baseNonce"])
        if t["result"] == "valid":
            pt = chunked.decrypt_raw(aead_key, nonce, body)
            assert hashlib.sha512(pt).hexdigest() == t["msgSha512"], t["tcId"]
        else:
            with pytest.raises(IntegrityError):
                chunked.decrypt_raw(aead_key, nonce, body)


def test_random_access_authenticates_length(cases: list[dict[str, Any]]) -> None:
    """Opening a reader authenticates the final chunk: only ValidFinalChunk invalid vectors pass it,
    and even those fail as soon as a bad chunk is read."""
    for t in cases:
        key, ctx, ct = _inputs(t)
        if "InvalidKeySize" in t["flags"]:
            continue
        source = chunked.BytesSource(ct)
        if t["result"] == "valid":
            reader = chunked.ChunkedReader(key, ctx, source, len(ct))
            assert reader.length == t["msgLength"]
            assert hashlib.sha512(reader.read(0, reader.length)).hexdigest() == t["msgSha512"]
        elif "ValidFinalChunk" in t["flags"]:
            reader = chunked.ChunkedReader(key, ctx, source, len(ct))
            with pytest.raises(IntegrityError):
                reader.read(0, reader.length)
        else:
            with pytest.raises(IntegrityError):
                chunked.ChunkedReader(key, ctx, source, len(ct))
