"""The key inventory and rotation half of the record store's interface: counts for metrics and
the compliance report (never identities), the compare-and-set rewraps of key rotation, the root
versions' lifecycle, and leases. :class:`~vault_service.storage.records.RecordStore` extends it;
split out so that each interface module stays one capability.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence

from vault_service.audit.model import AuditRow
from vault_service.key_providers.base import WrappedKey
from vault_service.storage.rows import RootVersionState


class KeyInventory(abc.ABC):
    """Counts, rotation, root versions and leases (see the module docstring)."""

    # inventory and rotation --------------------------------------------------------------------
    # aggregates (metrics and the compliance report: counts only, never identities) ------------
    @abc.abstractmethod
    def records_by_category(self) -> dict[str, int]:
        """How many record rows each category holds (erased subjects' rows until purged)."""

    @abc.abstractmethod
    def active_grants_by_purpose(self, now: float) -> dict[str, int]:
        """Consent grants in force at ``now`` (started, not ended, not revoked), per purpose."""

    @abc.abstractmethod
    def live_shares_by_purpose(self) -> dict[tuple[str, str], int]:
        """Shares not revoked whose key still exists, per (purpose, recipient principal). Expiry
        is judged from the sealed terms, not here: an expired share counts until the sweep."""

    @abc.abstractmethod
    def subject_keys_by_root_version(self) -> dict[str, int]:
        """How many subject keys each root-key version protects."""

    @abc.abstractmethod
    def service_keys_by_root_version(self) -> dict[str, int]:
        """How many service keys each root-key version protects."""

    @abc.abstractmethod
    def subject_keys_not_at(
        self, version: str, limit: int, after: bytes | None
    ) -> list[tuple[bytes, WrappedKey, bool]]:
        """Up to ``limit`` (subject_ref, wrapped key, separated) not wrapped by ``version``,
        ordered by ref, starting after ``after``; ``separated``: wrapped under the dormant
        context (a dormant subject's separated key)."""

    @abc.abstractmethod
    def service_keys(self) -> list[tuple[str, WrappedKey]]:
        """Every (name, wrapped key) of the service keys."""

    @abc.abstractmethod
    def replace_subject_keys(
        self, changes: Sequence[tuple[bytes, WrappedKey, WrappedKey]], *, provider: str
    ) -> list[bool]:
        """Compare-and-set each (subject_ref, old, new) in one transaction: a row is replaced
        only if it still holds ``old`` (False for it otherwise, e.g. erased meanwhile).
        RootVersionRetired if the new keys' version was closed meanwhile (a process with a
        stale view of the versions): nothing is replaced."""

    def replace_subject_key(
        self, subject_ref: bytes, old: WrappedKey, new: WrappedKey, *, provider: str
    ) -> bool:
        """:meth:`replace_subject_keys` for one key."""
        return self.replace_subject_keys([(subject_ref, old, new)], provider=provider)[0]

    @abc.abstractmethod
    def replace_service_key(self, name: str, old: WrappedKey, new: WrappedKey, *, provider: str) -> bool:
        """Compare-and-set for a service key (RootVersionRetired under a closed version)."""

    @abc.abstractmethod
    def acquire_lease(self, name: str, holder: str, now: float, ttl: float) -> bool:
        """Take or renew the lease ``name`` for ``holder`` until ``now + ttl``; False while
        another holder's lease has not expired. Replicas use it for jobs that should run in one
        of them at a time."""

    @abc.abstractmethod
    def root_version_states(self, provider: str) -> dict[str, RootVersionState]:
        """Recorded lifecycle states of the provider's root versions."""

    @abc.abstractmethod
    def close_root_version(self, provider: str, state: RootVersionState, audit: AuditRow | None) -> None:
        """Record that no new key may be wrapped under ``state.version`` (retired, marked,
        destroying), in one transaction that counts the keys still under it: FailedPrecondition
        if any is. From then on the store refuses keys wrapped under it."""

    @abc.abstractmethod
    def set_root_version_state(
        self, provider: str, state: RootVersionState, audit: AuditRow | None
    ) -> None:
        """Record a lifecycle state (with its audit row, in one transaction)."""
