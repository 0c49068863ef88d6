"""Root-key rotation: rewrap, inventory, retire, and two-step destruction of root versions.

The life of a root version::

    active (primary) --rotate--> active --rewrap moves every key off it--> retire --> mark
        --> destroying --> destroy (local: material removed; Transit: min_decryption_version
                raised and trimmed; KMS: key deletion scheduled, destroyed at the end of the
                pending window)

Other processes (a running server, its replicas) keep working while an operator does this: the
store refuses, in the transaction that would write it, any new key wrapped under a version that
is retired, marked or being destroyed (the writer then refreshes its provider and wraps under the
new primary); and retire, mark and destroy each count the keys still under the version in the
same transaction that records the new state, so "nothing depends on it" is true at that moment,
not at the time of an earlier inventory.

Rewrap never re-encrypts data: only subject keys and service keys are re-wrapped, in batches, each
row replaced by compare-and-set (so an erasure or a concurrent rewrap in between is simply skipped).
It is safe to interrupt and re-run: each run picks up whatever is not yet on the primary version.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from vault_service import security_events
from vault_service.audit.model import OPERATOR_PRINCIPAL
from vault_service.crypto.context import service_key_context, subject_key_context
from vault_service.errors import DataLoss, FailedPrecondition, IntegrityError, shown
from vault_service.faults import fault_point
from vault_service.key_providers.base import DestroyResult, KeyProvider, KeyState, WrappedKey
from vault_service.storage import AuditRow, RecordStore, RootVersionState
from vault_service.storage.rows import DESTROYED, DESTROYING, MARKED, PENDING, RETIRED

log = logging.getLogger("vault_service.rotation")


@dataclass(frozen=True)
class RewrapSummary:
    """What one rewrap run did."""

    primary: str
    rewrapped: int
    service_keys: int
    skipped: int
    failed: int
    remaining: int
    seconds: float

    @property
    def rate(self) -> float:
        """Keys rewrapped per second."""
        return self.rewrapped / self.seconds if self.seconds > 0 else 0.0


@dataclass(frozen=True)
class VersionStatus:
    """One root version: what the provider says, what the operator recorded, what depends on it."""

    version: str
    provider_state: str
    lifecycle: str
    primary: bool
    subject_keys: int
    service_keys: int
    destroy_at: float | None

    @property
    def in_use(self) -> int:
        return self.subject_keys + self.service_keys


def _audit(action: str, reason: str, now: float) -> AuditRow:
    return AuditRow(at=now, principal=OPERATOR_PRINCIPAL, action=action, decision="allow", reason=reason)


def rewrap_keys(
    store: RecordStore,
    provider: KeyProvider,
    *,
    batch_size: int = 200,
    progress: Callable[[int, int], None] | None = None,
    max_keys: int | None = None,
    now: float | None = None,
) -> RewrapSummary:
    """Move every subject and service key onto the primary root version (see module docstring).

    ``progress(done, total)`` is called after each batch; ``max_keys`` stops early (tests use it to
    simulate an interrupted run); ``now`` is the vault's time of the audit entry (default: the
    system clock).
    """
    started = time.monotonic()
    primary = provider.primary_version()
    total = sum(n for v, n in store.subject_keys_by_root_version().items() if v != primary)
    done = skipped = failed = services = 0
    for name, wrapped in store.service_keys():
        if wrapped.root_version != primary:
            fresh_key = provider.rewrap(wrapped, service_key_context(name))
            services += store.replace_service_key(name, wrapped, fresh_key, provider=provider.name)
    after: bytes | None = None
    while max_keys is None or done + skipped + failed < max_keys:
        limit = batch_size if max_keys is None else min(batch_size, max_keys - done - skipped - failed)
        batch = store.subject_keys_not_at(primary, limit, after)
        if not batch:
            break
        after = batch[-1][0]
        items = [(w, subject_key_context(ref, separated=sep)) for ref, w, sep in batch]
        try:
            fresh: list[WrappedKey | None] = list(provider.rewrap_many(items))
        except IntegrityError:
            # isolate the bad key(s): one tampered row must not stop the whole rotation
            fresh = []
            for item in items:
                try:
                    fresh.append(provider.rewrap(*item))
                except IntegrityError:
                    security_events.emit("integrity_failure", what="subject_key_rewrap")
                    fresh.append(None)
        fault_point("rewrap.mid_batch")  # the provider rewrapped this batch; nothing stored yet
        changes = []
        for (ref, old, _), new in zip(batch, fresh, strict=True):
            if new is None:
                failed += 1
            else:
                changes.append((ref, old, new))
        replaced = store.replace_subject_keys(changes, provider=provider.name)
        done += sum(replaced)
        skipped += len(replaced) - sum(replaced)
        if progress is not None:
            progress(done + skipped + failed, total)
    remaining = sum(n for v, n in store.subject_keys_by_root_version().items() if v != primary)
    remaining += sum(n for v, n in store.service_keys_by_root_version().items() if v != primary)
    store.append_audit(
        _audit(
            "keys.rewrap",
            f"to version {primary}: {done} rewrapped, "
            f"{skipped} skipped, {failed} failed, {remaining} remaining",
            time.time() if now is None else now,
        )
    )
    return RewrapSummary(primary, done, services, skipped, failed, remaining, time.monotonic() - started)


def rotate(store: RecordStore, provider: KeyProvider, now: float) -> tuple[str, str]:
    """Make a new root version primary (audited); returns (previous, new)."""
    old = provider.primary_version()
    new = provider.rotate()
    store.append_audit(_audit("keys.rotate", f"primary {old} -> {new}", now))
    return old, new


def inventory(store: RecordStore, provider: KeyProvider) -> list[VersionStatus]:
    """Every root version with its states and how many keys it still protects."""
    subjects = store.subject_keys_by_root_version()
    services = store.service_keys_by_root_version()
    recorded = store.root_version_states(provider.name)
    out = []
    for v in provider.versions():
        rec = recorded.get(v.version)
        lifecycle = rec.state if rec else ("primary" if v.primary else "active")
        if v.state in (KeyState.DESTROYED, KeyState.PENDING_DESTRUCTION):
            lifecycle = DESTROYED if v.state is KeyState.DESTROYED else PENDING
        out.append(
            VersionStatus(
                v.version,
                v.state.value,
                lifecycle,
                v.primary,
                subjects.get(v.version, 0),
                services.get(v.version, 0),
                v.destroy_at or (rec.destroy_at if rec else None),
            )
        )
    return out


def _status(store: RecordStore, provider: KeyProvider, version: str) -> VersionStatus:
    for status in inventory(store, provider):
        if status.version == version:
            return status
    raise FailedPrecondition(f"unknown root version {shown(version)}")


def retire(store: RecordStore, provider: KeyProvider, version: str, now: float) -> VersionStatus:
    """Record that ``version`` is no longer needed; refuses while any key depends on it."""
    status = _status(store, provider, version)
    if status.primary:
        raise FailedPrecondition("the primary root version cannot be retired: rotate first")
    if status.in_use:
        raise FailedPrecondition(
            f"root version {version} still protects {status.subject_keys} subject keys and "
            f"{status.service_keys} service keys: run vaultctl keys rewrap first"
        )
    if status.lifecycle in (DESTROYED, PENDING):
        raise FailedPrecondition(f"root version {version} is already destroyed")
    store.close_root_version(
        provider.name,
        RootVersionState(version, RETIRED, now, None, ""),
        _audit("keys.retire", f"version {version}", now),
    )
    return _status(store, provider, version)


def mark_for_destruction(
    store: RecordStore, provider: KeyProvider, version: str, now: float
) -> VersionStatus:
    """First step of destruction: only a retired, unused version can be marked."""
    status = _status(store, provider, version)
    if status.lifecycle not in (RETIRED, MARKED):
        raise FailedPrecondition(f"root version {version} must be retired before it is marked")
    if status.in_use:
        raise FailedPrecondition(f"root version {version} is in use again: rewrap and retire")
    store.close_root_version(
        provider.name,
        RootVersionState(version, MARKED, now, None, ""),
        _audit("keys.mark", f"version {version}", now),
    )
    return _status(store, provider, version)


def destroy(store: RecordStore, provider: KeyProvider, version: str, now: float) -> DestroyResult:
    """Second step: destroy a marked version at the provider. Refuses without the mark, and (for
    providers that destroy every older version too, i.e. Transit) while an older one is in use."""
    status = _status(store, provider, version)
    if status.lifecycle not in (MARKED, DESTROYING):  # DESTROYING: an interrupted destroy
        raise FailedPrecondition(
            f"root version {version} is not marked for destruction: run keys destroy --mark first"
        )
    if status.in_use:
        raise FailedPrecondition(f"root version {version} is in use again: rewrap and retire")
    if provider.name == "vault-transit":
        older_in_use = [
            s.version for s in inventory(store, provider) if int(s.version) < int(version) and s.in_use
        ]
        if older_in_use:
            raise FailedPrecondition(
                f"Transit destroys every version up to {version}; versions {older_in_use} are "
                "still in use"
            )
    # counted again in the transaction that records it: nothing may be under it at this moment
    store.close_root_version(
        provider.name,
        RootVersionState(version, DESTROYING, now, None, ""),
        _audit("keys.destroying", f"version {version}", now),
    )
    try:
        result = provider.destroy_version(version)
    except IntegrityError:
        raise DataLoss() from None
    state = DESTROYED if result.state is KeyState.DESTROYED else PENDING
    store.set_root_version_state(
        provider.name,
        RootVersionState(version, state, now, result.destroy_at, result.detail),
        _audit("keys.destroy", f"version {version}: {state}", now),
    )
    return result


@dataclass(frozen=True)
class EpochReport:
    """What one run of the epoch job did."""

    rotated_to: str | None
    rewrapped: int
    retired: list[str]
    destroyed: list[str]


def run_epochs(
    store: RecordStore, provider: KeyProvider, now: float, rotate_every: float, backup_window: float
) -> EpochReport:
    """Root-key epochs on a schedule: rotate when the primary is older than ``rotate_every``,
    rewrap everything onto it, retire versions nothing depends on, and destroy versions retired
    longer than ``backup_window`` (so every backup old enough to hold a copy of an erased key has
    expired before the version that could unwrap it is destroyed). Each step is audited.
    ``rotate_every`` 0 disables rotation (the rest still runs)."""
    rotated = None
    primary = next(v for v in provider.versions() if v.primary)
    if rotate_every > 0 and now - primary.created_at >= rotate_every:
        rotated = rotate(store, provider, now)[1]
    summary = rewrap_keys(store, provider, now=now)
    retired, destroyed = [], []
    for status in inventory(store, provider):
        if status.primary or status.in_use or status.lifecycle in (DESTROYED, PENDING):
            continue
        recorded = store.root_version_states(provider.name).get(status.version)
        if status.lifecycle not in (RETIRED, MARKED, DESTROYING):
            retire(store, provider, status.version, now)
            retired.append(status.version)
        elif recorded is not None and (
            status.lifecycle == DESTROYING or now - recorded.updated_at >= backup_window
        ):
            if status.lifecycle == RETIRED:
                mark_for_destruction(store, provider, status.version, now)
            destroy(store, provider, status.version, now)
            destroyed.append(status.version)
    return EpochReport(rotated, summary.rewrapped, retired, destroyed)
