"""Seal a small secret document (a keyring) under a passphrase: scrypt + AES-256-GCM.

Used by the local key provider for keyring files at rest. scrypt's cost parameters are stored beside
the ciphertext so they can be raised later without breaking old files.
"""

from __future__ import annotations

import base64
from typing import Any

from vault_service.crypto._primitives import NONCE_SIZE, TAG_SIZE, Aes256Gcm, random_bytes, scrypt

SCRYPT_N = 1 << 15
SCRYPT_R = 8
SCRYPT_P = 1


def seal_with_passphrase(passphrase: bytes, plaintext: bytes, aad: bytes) -> dict[str, Any]:
    """A JSON-ready dict holding the scrypt parameters, salt, nonce and ciphertext."""
    salt, nonce = random_bytes(16), random_bytes(NONCE_SIZE)
    key = scrypt(passphrase, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
    sealed = Aes256Gcm(key).seal(nonce, plaintext, aad)
    return {
        "kdf": "scrypt",
        "n": SCRYPT_N,
        "r": SCRYPT_R,
        "p": SCRYPT_P,
        "salt": base64.b64encode(salt).decode(),
        "nonce": base64.b64encode(nonce).decode(),
        "ciphertext": base64.b64encode(sealed).decode(),
    }


def open_with_passphrase(passphrase: bytes, sealed: dict[str, Any], aad: bytes) -> bytes:
    """Inverse of :func:`seal_with_passphrase`; IntegrityError for a wrong passphrase or tampering."""
    if sealed.get("kdf") != "scrypt":
        raise ValueError("unsupported keyring kdf")
    n, r, p = int(sealed["n"]), int(sealed["r"]), int(sealed["p"])
    if not (1 << 14 <= n <= 1 << 20 and 1 <= r <= 32 and 1 <= p <= 16):
        raise ValueError("keyring scrypt parameters out of range")
    key = scrypt(passphrase, base64.b64decode(sealed["salt"]), n, r, p)
    blob = base64.b64decode(sealed["ciphertext"])
    return Aes256Gcm(key).open(
        base64.b64decode(sealed["nonce"]), blob[:-TAG_SIZE], blob[-TAG_SIZE:], aad
    )
