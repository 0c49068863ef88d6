"""The key-provider interface: where root keys (KEKs) live and how subject keys are wrapped.

A provider is "just another AEAD" over 32-byte keys, with versions. The base class does the
invariant checks (the input is a 32-byte key, the unwrapped result is 32 bytes, the result is typed)
and the subclasses only do the vendor call (template method): :meth:`KeyProvider._encrypt` and
:meth:`KeyProvider._decrypt`. The context is bound by every provider (local: AES-GCM associated
data; AWS KMS: EncryptionContext; Vault Transit: associated_data), so a wrapped key moved to another
row does not unwrap.
"""

from __future__ import annotations

import abc
import enum
from dataclasses import dataclass
from typing import TypeVar

from vault_service.crypto import Context, SecretKey
from vault_service.errors import IntegrityError

K = TypeVar("K", bound=SecretKey)


@dataclass(frozen=True)
class WrappedKey:
    """A key wrapped by a provider: the root-key version that wrapped it, and the opaque ciphertext."""

    root_version: str
    ciphertext: bytes

    def __repr__(self) -> str:
        return f"WrappedKey(root_version={self.root_version!r}, {len(self.ciphertext)} bytes)"


class KeyState(enum.Enum):
    """Life of a root-key version."""

    ACTIVE = "active"
    RETIRED = "retired"
    MARKED_FOR_DESTRUCTION = "marked_for_destruction"
    DESTROYED = "destroyed"


@dataclass(frozen=True)
class KeyVersion:
    """One root-key version as the provider reports it."""

    version: str
    state: KeyState
    created_at: float
    primary: bool


class KeyProvider(abc.ABC):
    """Wraps and unwraps 32-byte keys under versioned root keys, binding a context."""

    name: str = "abstract"

    def wrap(self, key: SecretKey, context: Context) -> WrappedKey:
        """Wrap ``key`` under the primary root version."""
        version, ciphertext = self._encrypt(key.unsafe_bytes(), context)
        return WrappedKey(version, ciphertext)

    def unwrap(self, wrapped: WrappedKey, context: Context, key_type: type[K]) -> K:
        """Unwrap into a typed key. IntegrityError if the blob or context do not match."""
        material = self._decrypt(wrapped, context)
        if len(material) != 32:
            raise IntegrityError()
        return key_type(material)

    def rewrap(self, wrapped: WrappedKey, context: Context) -> WrappedKey:
        """Re-wrap under the primary version without the caller seeing the key (no-op if current)."""
        if wrapped.root_version == self.primary_version():
            return wrapped
        material = self._decrypt(wrapped, context)
        if len(material) != 32:
            raise IntegrityError()
        version, ciphertext = self._encrypt(material, context)
        return WrappedKey(version, ciphertext)

    @abc.abstractmethod
    def primary_version(self) -> str:
        """The version new wraps use."""

    @abc.abstractmethod
    def versions(self) -> list[KeyVersion]:
        """Every version the provider knows, oldest first."""

    @abc.abstractmethod
    def rotate(self) -> str:
        """Create a new version and make it primary; returns it."""

    @abc.abstractmethod
    def _encrypt(self, plaintext: bytes, context: Context) -> tuple[str, bytes]:
        """Vendor call: encrypt 32 bytes under the primary version; returns (version, ciphertext)."""

    @abc.abstractmethod
    def _decrypt(self, wrapped: WrappedKey, context: Context) -> bytes:
        """Vendor call: decrypt; raises IntegrityError on authentication failure."""
