"""The keyed derivations are part of the stored format (a subject whose reference changed is not
found again): each is checked against the construction its docstring table documents, computed
here with the standard library alone, and the domain labels cannot collide."""

from __future__ import annotations

import hashlib
import hmac
import struct

from vault_service.crypto import derive
from vault_service.crypto.keys import IndexKey

KEY = bytes(range(32))
REF = b"\x01" * 32


def _mac(message: bytes) -> hmac.HMAC:
    return hmac.new(KEY, message, hashlib.sha256)


def test_domain_labels_are_distinct_and_none_is_a_prefix_of_another() -> None:
    labels = derive.DOMAINS
    assert len(set(labels)) == len(labels)
    for a in labels:
        for b in labels:
            assert a == b or not (a + b"\x00").startswith(b + b"\x00")
            assert a == b or not b.startswith(a + b"\x00")


def test_each_derivation_is_the_documented_construction() -> None:
    key = IndexKey(KEY)
    assert derive.subject_ref(key, "member-1") == _mac(b"subject-ref/v1\x00member-1").digest()
    assert derive.audit_pseudonym(REF) == REF.hex()[:32]
    assert (
        derive.purpose_pseudonym(key, "statistics", REF)
        == _mac(b"purpose-pseudonym/v1\x00statistics\x00" + REF).hexdigest()[:32]
    )
    assert derive.idempotency_ref(key, "req-1") == _mac(b"idempotency/v1\x00req-1").hexdigest()
    parts = [b"a", b"bc"]
    expected = _mac(b"put-request/v1\x00" + b"".join(struct.pack(">I", len(p)) + p for p in parts))
    assert derive.request_digest(key, parts) == expected.digest()
    at = 1_800_000_000.0
    event = _mac(b"event/v1\x00" + REF + b"\x00match_completed\x00" + repr(at).encode())
    assert derive.event_mac(key, REF, "match_completed", at) == event.digest()


def test_part_boundaries_do_not_collide() -> None:
    key = IndexKey(KEY)
    assert derive.request_digest(key, [b"ab", b"c"]) != derive.request_digest(key, [b"a", b"bc"])
    assert derive.subject_ref(key, "a") != derive.subject_ref(IndexKey(bytes(range(1, 33))), "a")
