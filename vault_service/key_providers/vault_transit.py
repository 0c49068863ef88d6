"""HashiCorp Vault Transit key provider (hvac).

One Transit key (``transit_key``, type aes256-gcm96) holds the root-key versions; a root version is
Transit's key version, ciphertexts are Vault's ``vault:vN:...`` strings.

How the context is bound (``transit_binding``):

- ``"derived"`` (default): the key is created with ``derived=true`` and every call passes the
  canonical context as Transit's key-derivation ``context``. Vault's rewrap endpoint accepts
  ``context``, so rewrap runs inside Vault and the subject key never leaves it.
- ``"associated_data"``: the context is AES-GCM associated data. Vault's rewrap endpoint takes no
  associated data, so rewrap is decrypt + encrypt through this process.

Either way a wrapped key moved to another row fails to decrypt. Bulk work uses ``batch_input``.
Destroying version N raises ``min_decryption_version`` to N+1 and trims the key (Vault can only
drop a prefix of versions, so every older version goes too; the CLI checks they are unused).

Errors are mapped once, in :meth:`VaultTransitKeyProvider._call`: sealed (503), 5xx, rate limits and
connection failures are retried with exponential backoff a bounded number of times, then
Unavailable; 401/403 ProviderAccessDenied; a ciphertext that does not authenticate IntegrityError;
a version below ``min_decryption_version`` or a missing key FailedPrecondition.
"""

from __future__ import annotations

import base64
import random
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from vault_service.crypto import Context
from vault_service.errors import FailedPrecondition, IntegrityError, Internal, Unavailable
from vault_service.key_providers.base import (
    DestroyResult,
    KeyProvider,
    KeyState,
    KeyVersion,
    ProviderAccessDenied,
    WrappedKey,
)

try:
    import hvac
    import hvac.exceptions as hvac_errors
    import requests
except ImportError as exc:  # pragma: no cover - exercised only without the extra installed
    raise ImportError(
        "the vault-transit key provider needs hvac: pip install 'vault-service[vault]'"
    ) from exc

T = TypeVar("T")
_CIPHERTEXT = re.compile(r"^vault:v(\d+):")
_RETRYABLE = (
    hvac_errors.VaultDown,
    hvac_errors.InternalServerError,
    hvac_errors.BadGateway,
    hvac_errors.RateLimitExceeded,
    requests.exceptions.ConnectionError,
    requests.exceptions.Timeout,
)


@dataclass(frozen=True)
class TransitSettings:
    """Connection settings (from the [keys] section of the config)."""

    url: str
    token: str
    key: str = "vault-service"
    mount: str = "transit"
    binding: str = "derived"
    max_attempts: int = 4
    timeout_seconds: float = 5.0
    backoff_seconds: float = 0.05

    def __repr__(self) -> str:
        return f"TransitSettings(url={self.url!r}, key={self.key!r}, token=<redacted>)"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _version_of(ciphertext: str) -> str:
    m = _CIPHERTEXT.match(ciphertext)
    if not m:
        raise IntegrityError()
    return m.group(1)


class VaultTransitKeyProvider(KeyProvider):
    """Root keys in a Vault Transit key (see the module docstring)."""

    name = "vault-transit"

    def __init__(self, settings: TransitSettings, sleep: Callable[[float], None] = time.sleep) -> None:
        super().__init__()
        if settings.binding not in {"derived", "associated_data"}:
            raise ValueError("transit_binding must be 'derived' or 'associated_data'")
        self._s = settings
        self._sleep = sleep
        self._client = hvac.Client(
            url=settings.url, token=settings.token, timeout=settings.timeout_seconds
        )
        self._transit = self._client.secrets.transit

    def __repr__(self) -> str:
        return f"VaultTransitKeyProvider({self._s!r})"

    # the one error mapping ---------------------------------------------------------------------
    def _call(self, fn: Callable[[], T], *, decrypting: bool = False) -> T:
        for attempt in range(self._s.max_attempts):
            try:
                return fn()
            except _RETRYABLE:
                if attempt + 1 == self._s.max_attempts:
                    raise Unavailable("key provider unavailable") from None
                delay = self._s.backoff_seconds * (2**attempt)
                self._sleep(delay * (0.5 + random.random()))  # noqa: S311 (jitter, not crypto)
            except (hvac_errors.Forbidden, hvac_errors.Unauthorized):
                raise ProviderAccessDenied() from None
            except hvac_errors.InvalidPath:
                raise FailedPrecondition("root key is missing") from None
            except hvac_errors.InvalidRequest as exc:
                text = " ".join(str(e) for e in (exc.errors or [])) or str(exc)
                if "disallowed by policy" in text or "too old" in text:
                    raise FailedPrecondition("root key version was destroyed") from None
                if decrypting:
                    raise IntegrityError() from None
                raise Internal() from None
            except hvac_errors.VaultError:
                raise Internal() from None
        raise Unavailable("key provider unavailable")  # pragma: no cover (loop always returns)

    def _binding(self, context: Context) -> dict[str, str]:
        encoded = _b64(context.encode())
        return {"context": encoded} if self._s.binding == "derived" else {"associated_data": encoded}

    # key management ----------------------------------------------------------------------------
    def _read_key(self) -> dict[str, Any]:
        resp = self._call(lambda: self._transit.read_key(name=self._s.key, mount_point=self._s.mount))
        data: dict[str, Any] = resp["data"]
        return data

    def initialize(self) -> str:
        """Create the Transit key if it does not exist; returns the primary version."""
        try:
            data = self._read_key()
        except FailedPrecondition:
            self._call(
                lambda: self._transit.create_key(
                    name=self._s.key,
                    key_type="aes256-gcm96",
                    derived=self._s.binding == "derived",
                    mount_point=self._s.mount,
                )
            )
            data = self._read_key()
        if bool(data.get("derived")) != (self._s.binding == "derived"):
            raise FailedPrecondition(
                "the Transit key's 'derived' setting does not match transit_binding"
            )
        return str(data["latest_version"])

    def primary_version(self) -> str:
        return str(self._read_key()["latest_version"])

    def versions(self) -> list[KeyVersion]:
        data = self._read_key()
        latest = int(data["latest_version"])
        min_dec = int(data.get("min_decryption_version") or 1)
        out = []
        for version in range(1, latest + 1):
            created = data.get("keys", {}).get(str(version))
            if created is None:  # trimmed
                out.append(KeyVersion(str(version), KeyState.DESTROYED, 0.0, False))
                continue
            state = KeyState.ACTIVE if version >= min_dec else KeyState.DESTROYED
            out.append(
                KeyVersion(
                    str(version),
                    state,
                    float(created) if isinstance(created, int | float) else 0.0,
                    version == latest,
                )
            )
        return out

    def rotate(self) -> str:
        self._call(lambda: self._transit.rotate_key(name=self._s.key, mount_point=self._s.mount))
        return self.primary_version()

    def destroy_version(self, version: str) -> DestroyResult:
        data = self._read_key()
        latest, n = int(data["latest_version"]), int(version)
        if n >= latest:
            raise FailedPrecondition("the primary root version cannot be destroyed")
        # Two calls: hvac refuses min_encryption_version == min_decryption_version in one call,
        # which Vault allows (and trim needs both set).
        self._call(
            lambda: self._transit.update_key_configuration(
                name=self._s.key, min_encryption_version=latest, mount_point=self._s.mount
            )
        )
        self._call(
            lambda: self._transit.update_key_configuration(
                name=self._s.key, min_decryption_version=n + 1, mount_point=self._s.mount
            )
        )
        self._call(
            lambda: self._transit.trim_key(
                name=self._s.key, min_version=n + 1, mount_point=self._s.mount
            )
        )
        return DestroyResult(
            version,
            KeyState.DESTROYED,
            time.time(),
            f"min_decryption_version raised to {n + 1} and versions <= {n} trimmed",
        )

    # vendor calls ------------------------------------------------------------------------------
    def _encrypt(self, plaintext: bytes, context: Context) -> tuple[str, bytes]:
        resp = self._call(
            lambda: self._transit.encrypt_data(
                name=self._s.key,
                plaintext=_b64(plaintext),
                mount_point=self._s.mount,
                **self._binding(context),
            )
        )
        ciphertext: str = resp["data"]["ciphertext"]
        return _version_of(ciphertext), ciphertext.encode()

    def _decrypt(self, wrapped: WrappedKey, context: Context) -> bytes:
        ciphertext = wrapped.ciphertext.decode("ascii", "replace")
        if _version_of(ciphertext) != wrapped.root_version:
            raise IntegrityError()
        resp = self._call(
            lambda: self._transit.decrypt_data(
                name=self._s.key,
                ciphertext=ciphertext,
                mount_point=self._s.mount,
                **self._binding(context),
            ),
            decrypting=True,
        )
        try:
            return base64.b64decode(resp["data"]["plaintext"], validate=True)
        except (ValueError, KeyError, TypeError):
            raise IntegrityError() from None

    def _rewrap(self, items: Sequence[tuple[WrappedKey, Context]]) -> list[WrappedKey]:
        if self._s.binding != "derived":
            return super()._rewrap(items)
        batch = [
            {"ciphertext": w.ciphertext.decode("ascii", "replace"), **self._binding(c)} for w, c in items
        ]
        resp = self._call(
            lambda: self._transit.rewrap_data(
                name=self._s.key, ciphertext=None, batch_input=batch, mount_point=self._s.mount
            ),
            decrypting=True,
        )
        results = resp["data"]["batch_results"]
        if len(results) != len(items) or any("error" in r and r["error"] for r in results):
            raise IntegrityError()
        return [WrappedKey(_version_of(r["ciphertext"]), r["ciphertext"].encode()) for r in results]


def settings_from_env(url: str, token_env: str, env: Mapping[str, str], **kw: Any) -> TransitSettings:
    """Settings with the Vault address and token taken from the environment when not configured."""
    token = env.get(token_env, "")
    address = url or env.get("VAULT_ADDR", "")
    if not address or not token:
        raise FailedPrecondition(
            f"vault-transit needs a Vault address (transit_url or VAULT_ADDR)"
            f" and a token in ${token_env}"
        )
    return TransitSettings(url=address, token=token, **kw)
