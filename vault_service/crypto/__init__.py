"""Pure cryptography of vault-service: no I/O, no clocks, no globals.

Recipe-level calls only; ``_primitives`` is the one module that touches ``cryptography.hazmat``.

- :mod:`.keys`: key types that never reveal their bytes.
- :mod:`.context`: canonical, injective encoding of what a key or payload belongs to.
- :mod:`.keywrap`: AES-256-GCM key wrapping bound to a context.
- :mod:`.chunked`: c2sp.org/chunked-encryption (HKDF-SHA-512, AES-256-GCM), streaming and ranges.
- :mod:`.payload`: seal/open a record payload under a data key and a context.
- :mod:`.derive`: every keyed derivation (subject references, pseudonyms, digests, event MACs).
"""

from vault_service.crypto.context import Context, decode_context
from vault_service.crypto.keys import DataKey, IndexKey, RootKeyMaterial, SecretKey, SubjectKey
from vault_service.crypto.keywrap import unwrap_key, wrap_key
from vault_service.crypto.payload import (
    PayloadDecryptor,
    PayloadReader,
    open_payload,
    open_value,
    seal_payload,
    seal_stream,
    seal_value,
)

__all__ = [
    "Context",
    "DataKey",
    "IndexKey",
    "PayloadDecryptor",
    "PayloadReader",
    "RootKeyMaterial",
    "SecretKey",
    "SubjectKey",
    "decode_context",
    "open_payload",
    "open_value",
    "seal_payload",
    "seal_stream",
    "seal_value",
    "unwrap_key",
    "wrap_key",
]
