"""Key types whose bytes never appear in ``repr``, ``str``, logs, pickles or copies.

A key is 32 random bytes held in a private bytearray. The only way to the bytes is the deliberately
ugly :meth:`SecretKey.unsafe_bytes`, which the crypto recipes and key providers call and nothing else
should (grep for it in review). :meth:`SecretKey.destroy` overwrites the buffer: best effort in
Python (copies inside the cipher objects and the allocator are out of reach), documented as such.
"""

from __future__ import annotations

import hmac
from typing import Any, NoReturn, Self

from vault_service.crypto._primitives import KEY_SIZE, random_bytes


class SecretKey:
    """A 256-bit symmetric key. Subclasses name what the key is for."""

    __slots__ = ("_material",)
    _label = "SecretKey"

    def __init__(self, material: bytes | bytearray) -> None:
        if not isinstance(material, bytes | bytearray):
            raise TypeError("key material must be bytes")
        if len(material) != KEY_SIZE:
            raise ValueError(f"{self._label} must be {KEY_SIZE} bytes")
        self._material = bytearray(material)

    @classmethod
    def generate(cls) -> Self:
        """A fresh key from the operating system's CSPRNG."""
        return cls(random_bytes(KEY_SIZE))

    def unsafe_bytes(self) -> bytes:
        """The raw key. Only crypto recipes and key providers may call this."""
        if not any(self._material):
            raise ValueError(f"{self._label} was destroyed")
        return bytes(self._material)

    def destroy(self) -> None:
        """Overwrite the key material (best effort; see the module docstring)."""
        for i in range(len(self._material)):
            self._material[i] = 0

    def __repr__(self) -> str:
        return f"{self._label}(<redacted>)"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return repr(self)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SecretKey):
            return NotImplemented
        return hmac.compare_digest(bytes(self._material), bytes(other._material))

    def __hash__(self) -> int:
        raise TypeError(f"{self._label} is not hashable")

    def __reduce__(self) -> NoReturn:
        raise TypeError(f"{self._label} cannot be pickled")

    def __reduce_ex__(self, protocol: Any) -> NoReturn:
        raise TypeError(f"{self._label} cannot be pickled")

    def __copy__(self) -> NoReturn:
        raise TypeError(f"{self._label} cannot be copied")

    def __deepcopy__(self, memo: Any) -> NoReturn:
        raise TypeError(f"{self._label} cannot be copied")


class RootKeyMaterial(SecretKey):
    """One version of a root key (KEK) held by the local key provider."""

    __slots__ = ()
    _label = "RootKeyMaterial"


class SubjectKey(SecretKey):
    """The per-subject key; destroying every copy of it erases the subject."""

    __slots__ = ()
    _label = "SubjectKey"


class DataKey(SecretKey):
    """The per-record-version key; the input key of the record's chunked-encryption payloads."""

    __slots__ = ()
    _label = "DataKey"


class IndexKey(SecretKey):
    """The service's keyed-hash key: turns subject ids into stable pseudonymous references."""

    __slots__ = ()
    _label = "IndexKey"
