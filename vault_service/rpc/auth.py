"""Bearer-token authentication. Tokens are known only by their SHA-256; the presented token is
hashed and compared in constant time against every known digest (no early exit on a match)."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence

from vault_service.errors import Unauthenticated
from vault_service.policy import Policy, Principal

_PREFIX = "bearer "


def token_digest(token: str) -> bytes:
    """The digest stored in the policy for ``token``."""
    return hashlib.sha256(token.encode()).digest()


class TokenAuthenticator:
    """Maps an ``authorization: Bearer <token>`` header to a principal of the policy."""

    def __init__(self, policy: Policy) -> None:
        self._entries = [
            (e.token_sha256, e.principal)
            for e in policy.principals.values()
            if e.token_sha256 is not None
        ]

    def authenticate(self, metadata: Sequence[tuple[str, str | bytes]]) -> Principal:
        """The caller's principal; Unauthenticated for a missing, malformed or unknown token."""
        header = next((v for k, v in metadata if k == "authorization"), None)
        if not isinstance(header, str) or not header.lower().startswith(_PREFIX):
            raise Unauthenticated("missing bearer token")
        digest = token_digest(header[len(_PREFIX) :].strip())
        found: Principal | None = None
        for known, principal in self._entries:
            if hmac.compare_digest(known, digest):
                found = principal
        if found is None:
            raise Unauthenticated("unknown or invalid token")
        return found
