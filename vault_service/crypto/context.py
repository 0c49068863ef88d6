"""Canonical, length-prefixed encoding of a key or payload context.

A context names what a key or ciphertext belongs to (``{"subject": ..., "record": ..., "version":
..., "category": ...}``) and is bound as associated data (key wrapping) or as the HKDF context
(payloads), so that a ciphertext or wrapped key moved to another row fails to open.

Encoding (injective, so two different contexts never share bytes)::

    "vsctx1" || u32(len(domain)) || domain || u32(n) ||
        n x ( u32(len(name)) || name || u32(len(value)) || value )   names sorted, unique

All strings are UTF-8; integers are big-endian. :func:`decode_context` inverts the encoding, which is
how the tests show it is injective.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

_MAGIC = b"vsctx1"
_U32 = struct.Struct(">I")
_MAX_ITEM = 1 << 16


@dataclass(frozen=True)
class Context:
    """A domain (what kind of object: "subject-key", "data-key", "payload") and named values."""

    domain: str
    items: Mapping[str, str] = field(default_factory=dict)

    #: the canonical bytes, computed once: a record's contexts are encoded several times per
    #: call (wrap, seal, unwrap, open), and encoding was a third of the envelope's cost
    _encoded: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "items", MappingProxyType(dict(self.items)))
        for name, value in (("domain", self.domain), *self.items.items()):
            if not isinstance(name, str) or not isinstance(value, str):
                raise TypeError("context names and values must be str")
        parts = [_MAGIC, _lp(self.domain.encode()), _U32.pack(len(self.items))]
        for name in sorted(self.items):
            parts.append(_lp(name.encode()))
            parts.append(_lp(self.items[name].encode()))
        object.__setattr__(self, "_encoded", b"".join(parts))

    def with_items(self, **extra: str) -> Context:
        """A copy with more (or replaced) items."""
        return Context(self.domain, {**self.items, **extra})

    def encode(self) -> bytes:
        """The canonical bytes (see the module docstring)."""
        return self._encoded

    def __hash__(self) -> int:
        return hash(self.encode())


def _lp(b: bytes) -> bytes:
    if len(b) > _MAX_ITEM:
        raise ValueError("context item too long")
    return _U32.pack(len(b)) + b


def decode_context(data: bytes) -> Context:
    """Parse bytes made by :meth:`Context.encode`; raises ValueError on anything else."""
    if not data.startswith(_MAGIC):
        raise ValueError("not a context encoding")
    pos = len(_MAGIC)

    def take() -> str:
        nonlocal pos
        if pos + 4 > len(data):
            raise ValueError("truncated context")
        (n,) = _U32.unpack_from(data, pos)
        pos += 4
        if pos + n > len(data):
            raise ValueError("truncated context")
        out = data[pos : pos + n].decode()
        pos += n
        return out

    domain = take()
    if pos + 4 > len(data):
        raise ValueError("truncated context")
    (count,) = _U32.unpack_from(data, pos)
    pos += 4
    items: dict[str, str] = {}
    previous: str | None = None
    for _ in range(count):
        name = take()
        if previous is not None and name <= previous:
            raise ValueError("context names not sorted and unique")
        items[name] = take()
        previous = name
    if pos != len(data):
        raise ValueError("trailing bytes after context")
    return Context(domain, items)


# The well-known contexts of the key hierarchy, in one place so every layer binds the same bytes.


def subject_key_context(subject_ref: bytes, *, separated: bool = False) -> Context:
    """What a subject key is wrapped under (by the key provider): "subject-key", or while its
    subject is dormant under a policy that separates dormant data, "dormant-subject-key" (so
    that no read path but reactivation opens it; with AWS KMS the domain is in the
    EncryptionContext, where a key policy can condition on it)."""
    domain = "dormant-subject-key" if separated else "subject-key"
    return Context(domain, {"subject": subject_ref.hex()})


def service_key_context(name: str) -> Context:
    """What a service-level key (the subject index key) is wrapped under."""
    return Context("service-key", {"name": name})


def record_context(
    domain: str, subject_ref: bytes, record_id: str, version: int, category: str
) -> Context:
    """A record version's data key ("data-key") or payload ("payload", plus a field) context."""
    return Context(
        domain,
        {
            "subject": subject_ref.hex(),
            "record": record_id,
            "version": str(version),
            "category": category,
        },
    )


def share_key_context(subject_ref: bytes, share_id: str) -> Context:
    """What a share's own key is wrapped under (by the subject key)."""
    return Context("share-key", {"subject": subject_ref.hex(), "share": share_id})


def share_terms_context(subject_ref: bytes, share_id: str) -> Context:
    """What a share's sealed terms are bound to."""
    return Context("share-terms", {"subject": subject_ref.hex(), "share": share_id})


def consent_evidence_context(subject_ref: bytes, grant_id: str) -> Context:
    """What a consent grant's sealed evidence reference is bound to (under the subject key)."""
    return Context("consent-evidence", {"subject": subject_ref.hex(), "grant": grant_id})


def subject_id_context(subject_ref: bytes) -> Context:
    """What a subject's sealed id is bound to (under the subject key): lifecycle notices name
    the person to the application, and the id dies with the subject key at erasure."""
    return Context("subject-id", {"subject": subject_ref.hex()})


def hold_context(subject_ref: bytes, hold_id: str) -> Context:
    """What a legal hold's sealed reason and case reference are bound to (under the subject key)."""
    return Context("legal-hold", {"subject": subject_ref.hex(), "hold": hold_id})
