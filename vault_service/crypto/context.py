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
from types import MappingProxyType

_MAGIC = b"vsctx1"
_U32 = struct.Struct(">I")
_MAX_ITEM = 1 << 16


class Context:
    """A domain (what kind of object: "subject-key", "data-key", "payload") and named values.

    Immutable; equal (and hashed) by its canonical bytes, which are computed once at
    construction: a record's contexts are built and encoded several times per call (wrap, seal,
    unwrap, open). A plain slotted class rather than a frozen dataclass because a frozen
    dataclass's ``__init__`` cost as much as the encoding itself on the request path."""

    __slots__ = ("_encoded", "domain", "items")

    domain: str
    items: Mapping[str, str]
    _encoded: bytes

    def __init__(self, domain: str, items: Mapping[str, str] | None = None) -> None:
        values = dict(items) if items else {}
        _init = object.__setattr__
        _init(self, "domain", domain)
        _init(self, "items", MappingProxyType(values))
        _init(self, "_encoded", _encode(domain, values))

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"Context is immutable: cannot set {name!r}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"Context is immutable: cannot delete {name!r}")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Context):
            return NotImplemented
        return self._encoded == other._encoded  # the encoding is injective

    def __hash__(self) -> int:
        return hash(self._encoded)

    def __repr__(self) -> str:
        return f"Context({self.domain!r}, {dict(self.items)!r})"

    def __reduce__(self) -> tuple[type[Context], tuple[str, dict[str, str]]]:
        # copies and pickles are rebuilt through __init__ (assignment is refused)
        return Context, (self.domain, dict(self.items))

    def with_items(self, **extra: str) -> Context:
        """A copy with more (or replaced) items."""
        return Context(self.domain, {**self.items, **extra})

    def encode(self) -> bytes:
        """The canonical bytes (see the module docstring)."""
        return self._encoded


def _encode(domain: str, items: Mapping[str, str]) -> bytes:
    pack = _U32.pack
    try:
        head = domain.encode()
        parts = [_MAGIC, pack(len(head)), head, pack(len(items))]
        for name in sorted(items):
            key, value = name.encode(), items[name].encode()
            parts += (pack(len(key)), key, pack(len(value)), value)
    except (AttributeError, TypeError):  # not a str: no .encode, or names that do not sort
        raise TypeError("context names and values must be str") from None
    encoded = b"".join(parts)
    # no item is longer than the whole; only a long encoding needs each one looked at
    if len(encoded) > _MAX_ITEM and max([len(parts[2]), *map(len, parts[5::2])]) > _MAX_ITEM:
        raise ValueError("context item too long")
    return encoded


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
    domain: str,
    subject_ref: bytes,
    record_id: str,
    version: int,
    category: str,
    field: str | None = None,
) -> Context:
    """A record version's data key ("data-key") or payload ("payload", plus the ``field``)
    context."""
    items = {
        "subject": subject_ref.hex(),
        "record": record_id,
        "version": str(version),
        "category": category,
    }
    if field is not None:
        items["field"] = field
    return Context(domain, items)


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
