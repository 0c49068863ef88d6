"""The only module of vault-service that touches ``cryptography.hazmat``.

It offers AES-256-GCM with exactly one profile (256-bit key, 96-bit nonce, 128-bit tag),
HKDF-Expand with SHA-512, scrypt (keyring passphrases) and Ed25519 (audit checkpoints and deletion
certificates). Every parameter outside the profile is refused with
:class:`UnsupportedParameters` before any cryptography runs; every authentication failure is the one
opaque :class:`~vault_service.errors.IntegrityError`.

Nothing here is public API: nonces and raw keys appear in these signatures, so the recipes in
``vault_service.crypto`` are the only callers (tests also use it to run known-answer vectors).
"""

from __future__ import annotations

import secrets

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from vault_service.errors import IntegrityError

KEY_SIZE = 32
NONCE_SIZE = 12
TAG_SIZE = 16


class UnsupportedParameters(ValueError):
    """A key, nonce or tag size outside the AES-256-GCM/96-bit/128-bit profile."""


def check_profile(key_size: int, nonce_size: int, tag_size: int) -> None:
    """Refuse any AEAD parameters outside the one supported profile, with a precise message."""
    if key_size != KEY_SIZE:
        raise UnsupportedParameters(
            f"AES-GCM key of {key_size * 8} bits refused: only AES-256 (256-bit keys) is supported"
        )
    if nonce_size != NONCE_SIZE:
        raise UnsupportedParameters(
            f"AES-GCM nonce of {nonce_size * 8} bits refused: only 96-bit nonces are supported"
        )
    if tag_size != TAG_SIZE:
        raise UnsupportedParameters(
            f"AES-GCM tag of {tag_size * 8} bits refused: only 128-bit tags are supported"
        )


class Aes256Gcm:
    """AES-256-GCM under one key. Holds the cipher object so that repeated calls stay cheap."""

    __slots__ = ("_aead",)

    def __init__(self, key: bytes | bytearray) -> None:
        check_profile(len(key), NONCE_SIZE, TAG_SIZE)
        self._aead = AESGCM(bytes(key))

    def __repr__(self) -> str:
        return "Aes256Gcm(<key redacted>)"

    def seal(self, nonce: bytes, plaintext: bytes | bytearray | memoryview, aad: bytes | None) -> bytes:
        """Return ciphertext || 16-byte tag."""
        check_profile(KEY_SIZE, len(nonce), TAG_SIZE)
        return self._aead.encrypt(nonce, plaintext, aad)

    def open(
        self,
        nonce: bytes,
        ciphertext: bytes | memoryview,
        tag: bytes | memoryview,
        aad: bytes | None,
    ) -> bytes:
        """Authenticate and decrypt; the tag is passed apart so its size can be checked."""
        check_profile(KEY_SIZE, len(nonce), len(tag))
        try:
            return self._aead.decrypt(nonce, bytes(ciphertext) + bytes(tag), aad)
        except InvalidTag:
            raise IntegrityError() from None

    def open_joined(
        self, nonce: bytes, ciphertext_and_tag: bytes | bytearray | memoryview, aad: bytes | None
    ) -> bytes:
        """Like :meth:`open` for ``ciphertext || tag`` in one buffer (the chunked format's layout)."""
        check_profile(KEY_SIZE, len(nonce), TAG_SIZE)
        if len(ciphertext_and_tag) < TAG_SIZE:
            raise IntegrityError()
        try:
            return self._aead.decrypt(nonce, ciphertext_and_tag, aad)
        except InvalidTag:
            raise IntegrityError() from None


def hkdf_expand_sha512(prk: bytes | bytearray, info: bytes, length: int) -> bytes:
    """HKDF-Expand (RFC 5869) with SHA-512; ``prk`` must already be uniformly random."""
    return HKDFExpand(algorithm=hashes.SHA512(), length=length, info=info).derive(bytes(prk))


def random_bytes(n: int) -> bytes:
    """Bytes from the operating system's CSPRNG."""
    return secrets.token_bytes(n)


def scrypt(passphrase: bytes, salt: bytes, n: int, r: int, p: int) -> bytes:
    """A 32-byte key from a passphrase (scrypt, RFC 7914)."""
    return Scrypt(salt=salt, length=KEY_SIZE, n=n, r=r, p=p).derive(passphrase)


def ed25519_public_key(seed: bytes) -> bytes:
    """The 32-byte raw public key of an Ed25519 private key given by its 32-byte seed."""
    private = Ed25519PrivateKey.from_private_bytes(seed)
    return private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def ed25519_sign(seed: bytes, message: bytes) -> bytes:
    """A 64-byte Ed25519 signature."""
    return Ed25519PrivateKey.from_private_bytes(seed).sign(message)


def ed25519_verify(public_key: bytes, signature: bytes, message: bytes) -> bool:
    """Whether ``signature`` is valid for ``message`` under ``public_key`` (never raises)."""
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True
