"""The key-provider interface: where root keys (KEKs) live and how subject keys are wrapped.

A provider is "just another AEAD" over 32-byte keys, with versions. The base class does the
invariant checks (the input is a 32-byte key, the unwrapped result is 32 bytes, the result is typed),
counts calls, traces them (a ``key_provider.*`` span naming the provider only: never the context,
which names a subject) and tracks availability; subclasses only do the vendor calls (template method):
:meth:`KeyProvider._encrypt`, :meth:`KeyProvider._decrypt`, and optionally the batch and rewrap
variants. The context is bound by every provider (local: AES-GCM associated data; AWS KMS:
EncryptionContext; Vault Transit: a derived key or associated_data), so a wrapped key moved to
another row does not unwrap.

Errors: :class:`~vault_service.errors.IntegrityError` for a ciphertext that does not authenticate,
:class:`~vault_service.errors.Unavailable` when the provider cannot be reached (after the provider's
bounded retries), :class:`~vault_service.errors.FailedPrecondition` for a disabled, destroyed or
missing root key, :class:`ProviderAccessDenied` for a credential or permission problem.
"""

from __future__ import annotations

import abc
import enum
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from vault_service import tracing
from vault_service.crypto import Context, SecretKey
from vault_service.errors import FailedPrecondition, IntegrityError, Unavailable
from vault_service.values import fast_init

K = TypeVar("K", bound=SecretKey)


class ProviderAccessDenied(FailedPrecondition):
    """The provider refused our credentials or permissions: a configuration error to fix."""

    default_message = "the key provider denied access: check the service's credentials and key policy"


@fast_init
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
    PENDING_DESTRUCTION = "pending_destruction"
    DESTROYED = "destroyed"


@dataclass(frozen=True)
class KeyVersion:
    """One root-key version as the provider reports it."""

    version: str
    state: KeyState
    created_at: float
    primary: bool
    #: when a scheduled destruction completes (KMS pending window), if any
    destroy_at: float | None = None


@dataclass(frozen=True)
class DestroyResult:
    """What destroying a root version did: gone now, or gone at ``destroy_at`` (KMS)."""

    version: str
    state: KeyState
    destroy_at: float
    detail: str


@dataclass
class ProviderStats:
    """Counters of vendor calls (for benchmarks and metrics) and of availability."""

    encrypt_calls: int = 0
    decrypt_calls: int = 0
    rewrap_calls: int = 0
    failures: int = 0
    #: monotonic time of the first failure of the current outage, None when healthy
    failing_since: float | None = None
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def calls(self) -> int:
        return self.encrypt_calls + self.decrypt_calls + self.rewrap_calls


class KeyProvider(abc.ABC):
    """Wraps and unwraps 32-byte keys under versioned root keys, binding a context."""

    name: str = "abstract"

    def __init__(self) -> None:
        self.stats = ProviderStats()

    # availability bookkeeping ----------------------------------------------------------------
    def _ok(self) -> None:
        if self.stats.failing_since is not None:
            with self.stats.lock:
                self.stats.failing_since = None

    def _failed(self) -> None:
        with self.stats.lock:
            self.stats.failures += 1
            if self.stats.failing_since is None:
                self.stats.failing_since = time.monotonic()

    def _count(self, kind: str, n: int = 1) -> None:
        with self.stats.lock:
            setattr(self.stats, f"{kind}_calls", getattr(self.stats, f"{kind}_calls") + n)

    # public API --------------------------------------------------------------------------------
    def wrap(self, key: SecretKey, context: Context) -> WrappedKey:
        """Wrap ``key`` under the primary root version."""
        self._count("encrypt")
        try:
            with tracing.span("key_provider.wrap", {"vault.key_provider": self.name}):
                version, ciphertext = self._encrypt(key.unsafe_bytes(), context)
        except Unavailable:
            self._failed()
            raise
        self._ok()
        return WrappedKey(version, ciphertext)

    def unwrap(self, wrapped: WrappedKey, context: Context, key_type: type[K]) -> K:
        """Unwrap into a typed key. IntegrityError if the blob or context do not match."""
        self._count("decrypt")
        try:
            with tracing.span("key_provider.unwrap", {"vault.key_provider": self.name}):
                material = self._decrypt(wrapped, context)
        except Unavailable:
            self._failed()
            raise
        self._ok()
        if len(material) != 32:
            raise IntegrityError()
        return key_type(material)

    def rewrap(self, wrapped: WrappedKey, context: Context) -> WrappedKey:
        """Re-wrap under the primary version (no-op if already there)."""
        return self.rewrap_many([(wrapped, context)])[0]

    def rewrap_many(self, items: Sequence[tuple[WrappedKey, Context]]) -> list[WrappedKey]:
        """Re-wrap many keys under the primary version; server-side where the provider can."""
        primary = self.primary_version()
        todo = [i for i, (w, _) in enumerate(items) if w.root_version != primary]
        out = [w for w, _ in items]
        if not todo:
            return out
        self._count("rewrap", len(todo))
        attributes: dict[str, tracing.Value] = {"vault.key_provider": self.name, "vault.keys": len(todo)}
        try:
            with tracing.span("key_provider.rewrap", attributes):
                fresh = self._rewrap([items[i] for i in todo])
        except Unavailable:
            self._failed()
            raise
        self._ok()
        for i, new in zip(todo, fresh, strict=True):
            out[i] = new
        return out

    def probe(self) -> None:
        """Round-trip a throwaway key: raises if the provider cannot serve (health checks)."""
        probe = SecretKey.generate()
        context = Context("probe", {"provider": self.name})
        if self.unwrap(self.wrap(probe, context), context, SecretKey) != probe:
            raise IntegrityError()

    def refresh(self) -> None:  # noqa: B027 (a hook: providers without a cached view need nothing)
        """Re-read what this process knows of the root versions (the primary, which exist),
        after another process may have changed them (``vaultctl keys rotate``...). Providers
        whose server picks the version itself (Transit) need nothing."""

    # hooks for subclasses ----------------------------------------------------------------------
    def _rewrap(self, items: Sequence[tuple[WrappedKey, Context]]) -> list[WrappedKey]:
        """Default rewrap: decrypt and encrypt here. Providers with server-side rewrap override."""
        out = []
        for wrapped, context in items:
            version, ciphertext = self._encrypt(self._decrypt(wrapped, context), context)
            out.append(WrappedKey(version, ciphertext))
        return out

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
    def destroy_version(self, version: str) -> DestroyResult:
        """Make ``version`` unusable for good (the caller has checked nothing depends on it)."""

    @abc.abstractmethod
    def _encrypt(self, plaintext: bytes, context: Context) -> tuple[str, bytes]:
        """Vendor call: encrypt 32 bytes under the primary version; returns (version, ciphertext)."""

    @abc.abstractmethod
    def _decrypt(self, wrapped: WrappedKey, context: Context) -> bytes:
        """Vendor call: decrypt; raises IntegrityError on authentication failure."""
