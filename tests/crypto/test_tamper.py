"""Every bit flip and every truncation of a stored payload and of a wrapped key is an integrity error
and releases nothing."""

from __future__ import annotations

import pytest

from vault_service.crypto import (
    Context,
    DataKey,
    SubjectKey,
    open_payload,
    seal_payload,
    unwrap_key,
    wrap_key,
)
from vault_service.errors import IntegrityError

CTX = Context("payload", {"subject": "s1", "record": "r1", "version": "1", "field": "note"})
KCTX = Context("data-key", {"subject": "s1", "record": "r1", "version": "1"})


def _flips(blob: bytes) -> list[bytes]:
    out = []
    for i in range(len(blob) * 8):
        b = bytearray(blob)
        b[i // 8] ^= 1 << (i % 8)
        out.append(bytes(b))
    return out


@pytest.mark.parametrize("size", [0, 40, 16384 + 3])
def test_payload_bit_flips_and_truncations(size: int) -> None:
    key = DataKey.generate()
    msg = bytes((i * 7) % 251 for i in range(size))
    ct = seal_payload(key, CTX, msg)
    if size < 1000:
        candidates = _flips(ct)
    else:
        # every bit of a 16 KiB payload is ~131k decryptions: flip all of the header, the start of
        # the first chunk and the whole final chunk instead
        candidates = [f + ct[200:] for f in _flips(ct[:200])]
        candidates += [ct[:-40] + f for f in _flips(ct[-40:])]
    for bad in candidates:
        with pytest.raises(IntegrityError):
            open_payload(key, CTX, bad)
    step = 1 if size < 1000 else 97
    for n in [*range(0, len(ct), step), len(ct) - 1]:
        with pytest.raises(IntegrityError):
            open_payload(key, CTX, ct[:n])
    with pytest.raises(IntegrityError):
        open_payload(key, CTX, ct + b"\x00")


def test_wrapped_key_bit_flips_and_truncations() -> None:
    kek, dk = SubjectKey.generate(), DataKey.generate()
    wrapped = wrap_key(kek, dk, KCTX)
    assert unwrap_key(kek, wrapped, KCTX, DataKey) == dk
    for bad in _flips(wrapped):
        with pytest.raises(IntegrityError):
            unwrap_key(kek, bad, KCTX, DataKey)
    for n in range(len(wrapped)):
        with pytest.raises(IntegrityError):
            unwrap_key(kek, wrapped[:n], KCTX, DataKey)


def test_wrapped_key_moved_to_another_row_fails() -> None:
    kek, dk = SubjectKey.generate(), DataKey.generate()
    wrapped = wrap_key(kek, dk, KCTX)
    for other in [
        KCTX.with_items(record="r2"),
        KCTX.with_items(version="2"),
        KCTX.with_items(subject="s2"),
        Context("subject-key", dict(KCTX.items)),
    ]:
        with pytest.raises(IntegrityError):
            unwrap_key(kek, wrapped, other, DataKey)
    with pytest.raises(IntegrityError):
        unwrap_key(SubjectKey.generate(), wrapped, KCTX, DataKey)


def test_integrity_error_carries_no_detail() -> None:
    key = DataKey.generate()
    ct = seal_payload(key, CTX, b"secret marker 12345")
    with pytest.raises(IntegrityError) as exc_info:
        open_payload(key, CTX, ct[:-1])
    assert str(exc_info.value) == "stored data failed an integrity check"
    assert exc_info.value.__cause__ is None
