"""Keyed derivations under the service's index key: every HMAC the vault computes, in one place.

Each derivation has its own domain label, so no two of them can ever produce the same input to the
MAC. The labels are part of the stored format: changing one orphans what was derived with it (a
subject whose reference changed is no longer found).

===================  =================================  =====================================
label                input after the label              used for
===================  =================================  =====================================
subject-ref/v1       subject id (UTF-8)                 the stored reference of a subject
purpose-pseudonym/v1 purpose, 0x00, subject reference   a de-identified view's subject name
idempotency/v1       the caller's idempotency key       the stored idempotency key
put-request/v1       length-prefixed request parts      the digest an idempotent retry matches
event/v1             subject ref, name, time (repr)     the MAC of a business event's time
blind-index/v1       the normalised value (UTF-8)       a searchable field's index token,
                                                        under that field's own key
audit-pending/v1     writer id, 0x00, the entry's       the MAC of an audit entry awaiting the
                     hash as if at seq = writer seq     sequencer (a gap or an edit is caught)
===================  =================================  =====================================

Every label is followed by a 0x00 byte. The audit pseudonym of a subject is not a MAC of its
own: it is a prefix of the (already keyed) subject reference.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
import unicodedata
from collections.abc import Iterable

from vault_service.crypto.keys import IndexKey

SUBJECT_REF = b"subject-ref/v1"
PURPOSE_PSEUDONYM = b"purpose-pseudonym/v1"
IDEMPOTENCY = b"idempotency/v1"
PUT_REQUEST = b"put-request/v1"
EVENT = b"event/v1"
BLIND_INDEX = b"blind-index/v1"
AUDIT_PENDING = b"audit-pending/v1"

#: every label above: the tests check they are distinct and none is a prefix of another
DOMAINS = (SUBJECT_REF, PURPOSE_PSEUDONYM, IDEMPOTENCY, PUT_REQUEST, EVENT, BLIND_INDEX, AUDIT_PENDING)

_U32 = struct.Struct(">I")


def _mac(key: IndexKey, label: bytes, *parts: bytes) -> hmac.HMAC:
    mac = hmac.new(key.unsafe_bytes(), label + b"\x00", hashlib.sha256)
    for part in parts:
        mac.update(part)
    return mac


def subject_ref(key: IndexKey, subject_id: str) -> bytes:
    """The stored reference of a subject (the caller's id is never stored)."""
    return _mac(key, SUBJECT_REF, subject_id.encode()).digest()


def audit_pseudonym(ref: bytes) -> str:
    """How audit entries and logs name a subject: the first 128 bits of its reference, in hex."""
    return ref.hex()[:32]


def purpose_pseudonym(key: IndexKey, purpose: str, ref: bytes) -> str:
    """A subject's stable name within one purpose (de-identified views): values of two purposes
    do not link."""
    return _mac(key, PURPOSE_PSEUDONYM, purpose.encode(), b"\x00", ref).hexdigest()[:32]


def idempotency_ref(key: IndexKey, idempotency_key: str) -> str:
    """The stored form of a caller's idempotency key (callers may put anything in it)."""
    return _mac(key, IDEMPOTENCY, idempotency_key.encode()).hexdigest()


def request_digest(key: IndexKey, parts: Iterable[bytes]) -> bytes:
    """A keyed digest of a request's parts, each length-prefixed (so no two part lists collide)."""
    mac = _mac(key, PUT_REQUEST)
    for part in parts:
        mac.update(_U32.pack(len(part)) + part)
    return mac.digest()


def event_mac(key: IndexKey, ref: bytes, name: str, at: float) -> bytes:
    """The MAC that makes an edited business-event time detectable."""
    return _mac(key, EVENT, ref, b"\x00", name.encode(), b"\x00", repr(at).encode()).digest()


def normalise(value: str, how: str) -> str:
    """A searchable value as its index token sees it: "exact" is Unicode NFC; "casefold" is NFC,
    surrounding white space removed, case folded (full Unicode folding, so "Straße" equals
    "STRASSE"), and NFC again (folding can leave a string unnormalised)."""
    nfc = unicodedata.normalize("NFC", value)
    if how == "exact":
        return nfc
    if how == "casefold":
        return unicodedata.normalize("NFC", nfc.strip().casefold())
    raise ValueError(f"unknown normalisation {how!r}")


def blind_index_token(key: IndexKey, how: str, value: str) -> bytes:
    """The blind index token of a searchable field's value: HMAC-SHA-256 under the field's own
    key (service key ``blind-index:<category>.<field>``) of the normalised value. Equal values
    of one field give equal tokens (the leakage of equality search, docs/policy.md); tokens of
    different fields or deployments never match."""
    return _mac(key, BLIND_INDEX, normalise(value, how).encode()).digest()


def audit_pending_mac(key: IndexKey, writer: str, digest: bytes) -> bytes:
    """The MAC of a pending audit entry: its writer and its hash computed at the writer's own
    sequence number (storage/sql/audit.py), so that the sequencer detects an entry removed,
    edited or moved between writers before it was integrated."""
    return _mac(key, AUDIT_PENDING, writer.encode(), b"\x00", digest).digest()
