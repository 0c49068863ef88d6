"""Ed25519 signatures for audit checkpoints and deletion certificates.

The private key is a 32-byte seed held as a :class:`SigningKey` (never printed, never pickled),
stored wrapped by the key provider like every other service key. Verification needs only the
32-byte public key, so an auditor can check signatures offline.
"""

from __future__ import annotations

from vault_service.crypto._primitives import ed25519_public_key, ed25519_sign, ed25519_verify
from vault_service.crypto.keys import SecretKey


class SigningKey(SecretKey):
    """An Ed25519 private key (its seed)."""

    __slots__ = ()
    _label = "SigningKey"

    def public_key(self) -> bytes:
        """The raw 32-byte public key."""
        return ed25519_public_key(self.unsafe_bytes())

    def sign(self, message: bytes) -> bytes:
        """A 64-byte signature of ``message``."""
        return ed25519_sign(self.unsafe_bytes(), message)


def verify_signature(public_key: bytes, signature: bytes, message: bytes) -> bool:
    """Whether the signature is valid; False for any malformed input (never raises)."""
    return (
        len(public_key) == 32 and len(signature) == 64 and ed25519_verify(public_key, signature, message)
    )
