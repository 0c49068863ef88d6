"""Key providers behind one interface (:class:`KeyProvider`): local keyring; AWS KMS and Vault
Transit implement the same interface."""

from vault_service.key_providers.base import KeyProvider, KeyState, KeyVersion, WrappedKey
from vault_service.key_providers.local import LocalKeyProvider, create_keyring, load_keyring

__all__ = [
    "KeyProvider",
    "KeyState",
    "KeyVersion",
    "LocalKeyProvider",
    "WrappedKey",
    "create_keyring",
    "load_keyring",
]
