"""Key-provider figures: provider calls per 10,000 reads (cache on vs off), and rewrap throughput
(the rotation job vs the provider's bare rewrap calls) for the local provider and the Transit
test server."""

from __future__ import annotations

import tempfile
from pathlib import Path

from benchmarks.harness import Result, median_of, rate, scratch_policy
from tests.support.transit_server import TransitTestServer
from vault_service.clock import SystemClock
from vault_service.crypto import SubjectKey
from vault_service.crypto.context import subject_key_context
from vault_service.key_providers import LocalKeyProvider, create_keyring
from vault_service.key_providers.base import KeyProvider
from vault_service.key_providers.cache import CacheLimits, SubjectKeyCache
from vault_service.key_providers.vault_transit import TransitSettings, VaultTransitKeyProvider
from vault_service.lifecycle.ledger import DestructionLedger
from vault_service.lifecycle.rotation import rewrap_keys
from vault_service.policy import Principal, load_policy
from vault_service.service import CallContext, VaultService
from vault_service.storage import FilesystemBlobStore, SqliteRecordStore

CALL = CallContext(Principal("bench", "application"), "bench")
READS, SUBJECTS, REWRAP_KEYS = 10_000, 100, 2_000


def _local(home: Path) -> LocalKeyProvider:
    create_keyring(home / "ring.json", None, 0.0)
    return LocalKeyProvider(home / "ring.json")


def _provider_calls(cache_entries: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        provider = _local(home)
        store = SqliteRecordStore(home / "v.db")
        store.migrate()
        svc = VaultService(
            store,
            FilesystemBlobStore(home / "b"),
            provider,
            load_policy(scratch_policy()),
            SystemClock(),
            ledger=DestructionLedger(home / "ledger.jsonl"),
        )
        ids = [svc.put_record(CALL, f"s{i}", "concern_text", {"text": "t"})[0] for i in range(SUBJECTS)]
        # a fresh process: cold cache, then steady-state reads spread over the subjects
        svc.cache = SubjectKeyCache(CacheLimits(max_entries=cache_entries), SystemClock())
        before = provider.stats.decrypt_calls
        for n in range(READS):
            svc.get_record(CALL, ids[n % SUBJECTS], "matching")
        calls = provider.stats.decrypt_calls - before
        store.close()
        return float(calls)


def _rewrap(provider: KeyProvider, home: Path) -> tuple[float, float]:
    """(job keys/s, bare provider rewraps/s) for REWRAP_KEYS subject keys."""
    store = SqliteRecordStore(home / f"rw-{provider.primary_version()}.db")
    store.migrate()
    items = []
    for i in range(REWRAP_KEYS):
        ref = i.to_bytes(32, "big")
        wrapped = provider.wrap(SubjectKey.generate(), subject_key_context(ref))
        store.create_subject_key(ref, wrapped, 0.0, provider=provider.name)
        items.append((wrapped, subject_key_context(ref)))
    provider.rotate()
    bare = rate(
        REWRAP_KEYS,
        lambda: [provider.rewrap_many(items[i : i + 200]) for i in range(0, REWRAP_KEYS, 200)],
    )
    summary = rewrap_keys(store, provider, batch_size=200)
    store.close()
    assert summary.rewrapped == REWRAP_KEYS
    return summary.rate, bare


def run() -> list[Result]:
    results = [
        Result(
            "provider calls per 10k reads over 100 subjects (cache on)",
            median_of(lambda: _provider_calls(10_000)),
            "calls",
            "cache off",
            median_of(lambda: _provider_calls(0)),
            "lower is better; ~100 expected: one unwrap per subject",
        )
    ]
    for label in ("local", "vault-transit (test server, derived, batch_input)"):
        runs: list[tuple[float, float]] = []
        for _ in range(3):
            with tempfile.TemporaryDirectory() as tmp:
                server = None
                provider: KeyProvider
                if label == "local":
                    provider = _local(Path(tmp))
                else:
                    server = TransitTestServer().start()
                    provider = VaultTransitKeyProvider(
                        TransitSettings(url=server.url, token=server.token)
                    )
                    provider.initialize()  # type: ignore[attr-defined]
                try:
                    runs.append(_rewrap(provider, Path(tmp)))
                finally:
                    if server is not None:
                        server.stop()
        job = sorted(r[0] for r in runs)[1]
        bare = sorted(r[1] for r in runs)[1]
        results.append(
            Result(
                f"rewrap throughput, {label}",
                job,
                "subject keys/s",
                "bare provider rewrap",
                bare,
                f"{REWRAP_KEYS} keys, batches of 200, no data re-encrypted",
            )
        )
    return results
