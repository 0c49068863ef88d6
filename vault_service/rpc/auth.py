"""Authentication: bearer tokens and TLS client certificates.

Tokens are known only by their SHA-256; the presented token is hashed and compared in constant
time against every known digest (no early exit). A client certificate (mTLS: the server only
accepts certificates issued by the configured client CA) identifies the principal whose
``cert_cn`` equals the certificate's common name. A bearer token, when present, decides; a
certificate alone is enough when the policy maps its name to a principal.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping, Sequence
from typing import Any

from vault_service.errors import Unauthenticated
from vault_service.policy import Policy, Principal
from vault_service.policy.model import token_digest

_PREFIX = "bearer "


class Authenticator:
    """Maps a call's credentials to a principal of the policy."""

    def __init__(self, policy: Policy) -> None:
        self._tokens = [
            (e.token_sha256, e.principal)
            for e in policy.principals.values()
            if e.token_sha256 is not None
        ]
        self._certs = {e.cert_cn: e.principal for e in policy.principals.values() if e.cert_cn}

    def authenticate(
        self,
        metadata: Sequence[tuple[str, str | bytes]],
        auth_context: Mapping[str, Any] | None = None,
    ) -> Principal:
        """The caller's principal; Unauthenticated for missing, malformed or unknown credentials."""
        header = next((v for k, v in metadata if k == "authorization"), None)
        if header is not None:
            if not isinstance(header, str) or not header.lower().startswith(_PREFIX):
                raise Unauthenticated("malformed authorization header")
            digest = token_digest(header[len(_PREFIX) :].strip())
            found: Principal | None = None
            for known, principal in self._tokens:
                if hmac.compare_digest(known, digest):
                    found = principal
            if found is None:
                raise Unauthenticated("unknown or invalid token")
            return found
        # grpc gives a list of bytes per key (its stubs say bytes): accept both
        raw = (auth_context or {}).get("x509_common_name") or []
        names: list[bytes] = [raw] if isinstance(raw, bytes) else list(raw)
        for name in names:
            by_cert = self._certs.get(name.decode("utf-8", "replace"))
            if by_cert is not None:
                return by_cert
        if names:
            raise Unauthenticated("client certificate not known to the policy")
        raise Unauthenticated("missing credentials: bearer token or client certificate")
