"""AES-256-GCM key wrapping with the canonical context as associated data.

Wrapped key layout (61 bytes)::

    0x01 (format) || nonce (12, random) || AES-256-GCM(kek, nonce, key, aad) (32) || tag (16)
    aad = "vault-service/keywrap/v1" || context.encode()

The context names what the key belongs to, so a wrapped key copied onto another row (another
subject, record or version) fails to unwrap. Any malformed or tampered blob raises the one opaque
:class:`~vault_service.errors.IntegrityError`.
"""

from __future__ import annotations

from typing import TypeVar

from vault_service.crypto._primitives import KEY_SIZE, NONCE_SIZE, TAG_SIZE, Aes256Gcm, random_bytes
from vault_service.crypto.context import Context
from vault_service.crypto.keys import SecretKey
from vault_service.errors import IntegrityError

FORMAT = 0x01
WRAPPED_SIZE = 1 + NONCE_SIZE + KEY_SIZE + TAG_SIZE
_AAD_PREFIX = b"vault-service/keywrap/v1"

K = TypeVar("K", bound=SecretKey)


def wrap_key(kek: SecretKey, key: SecretKey, context: Context) -> bytes:
    """Wrap ``key`` under ``kek``, binding ``context``."""
    nonce = random_bytes(NONCE_SIZE)
    sealed = Aes256Gcm(kek.unsafe_bytes()).seal(
        nonce, key.unsafe_bytes(), _AAD_PREFIX + context.encode()
    )
    return bytes([FORMAT]) + nonce + sealed


def unwrap_key(kek: SecretKey, wrapped: bytes, context: Context, key_type: type[K]) -> K:
    """Unwrap a key made by :func:`wrap_key` under the same ``kek`` and ``context``."""
    if len(wrapped) != WRAPPED_SIZE or wrapped[0] != FORMAT:
        raise IntegrityError()
    nonce = wrapped[1 : 1 + NONCE_SIZE]
    body = wrapped[1 + NONCE_SIZE : -TAG_SIZE]
    tag = wrapped[-TAG_SIZE:]
    material = Aes256Gcm(kek.unsafe_bytes()).open(nonce, body, tag, _AAD_PREFIX + context.encode())
    return key_type(material)
