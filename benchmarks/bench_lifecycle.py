"""Lifecycle figures: the time to make a subject with 100,000 records unreadable (erasure destroys
one key row: it should not depend on the record count, so the baseline is the same erasure of a
subject with 10 records), and the retention sweeper's throughput (records shredded per second,
against bare single-record deletions of the same store in the same run)."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from benchmarks.harness import Result, scratch_policy
from vault_service.clock import FixedClock
from vault_service.ids import new_record_id
from vault_service.key_providers import LocalKeyProvider, create_keyring
from vault_service.lifecycle.ledger import DestructionLedger
from vault_service.policy import Principal, load_policy
from vault_service.service import CallContext, VaultService
from vault_service.storage import FilesystemBlobStore, RecordVersion, SqliteRecordStore

APP = CallContext(Principal("bench", "application"), "bench")
POLICY = scratch_policy().replace(
    "[categories.concern_photo]",
    '[categories.scan]\nfields = ["m"]\nretention = { after = "creation", hours = 1 }\n\n'
    "[categories.concern_photo]",
)


def _vault(home: Path, clock: FixedClock) -> VaultService:
    create_keyring(home / "ring.json", None, 0.0)
    store = SqliteRecordStore(home / "v.db")
    store.migrate()
    return VaultService(
        store,
        FilesystemBlobStore(home / "b"),
        LocalKeyProvider(home / "ring.json"),
        load_policy(POLICY),
        clock,
        ledger=DestructionLedger(home / "ledger.jsonl"),
    )


def _bulk(svc: VaultService, subject: str, category: str, n: int) -> None:
    """n records of one subject, written straight to the store (the erasure does not read them;
    what matters is that the rows exist)."""
    svc.put_record(
        APP, subject, category, {"text": "seed"} if category == "concern_text" else {"m": "seed"}
    )
    ref = svc.subject_ref(subject)
    for _ in range(n - 1):
        svc.store.insert_record(
            RecordVersion(
                record_id=new_record_id(svc.clock.now()),
                subject_ref=ref,
                category=category,
                version=1,
                content_type="",
                data_key=b"k" * 61,
                payloads={"text": b"c" * 64},
            ),
            svc.clock.now(),
            None,
            None,
        )


def _erase_ms(n: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        svc = _vault(Path(tmp), FixedClock())
        _bulk(svc, "s", "concern_text", n)
        t = time.perf_counter()
        svc.erase_subject(APP, "s")
        elapsed = (time.perf_counter() - t) * 1000
        svc.store.close()
        return elapsed


def _sweep_rates(n: int) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        clock = FixedClock()
        svc = _vault(Path(tmp), clock)
        for i in range(n):
            svc.put_record(APP, f"s{i % 50}", "scan", {"m": "x"})
        clock.advance(7200)
        t = time.perf_counter()
        done = svc.sweep_retention(batch=500)
        sweep = len(done) / (time.perf_counter() - t)
        ids = [svc.put_record(APP, f"s{i % 50}", "scan", {"m": "x"})[0] for i in range(n)]
        t = time.perf_counter()
        for rid in ids:
            svc.store.delete_record(rid, None)
        bare = n / (time.perf_counter() - t)
        svc.store.close()
        return sweep, bare


def run() -> list[Result]:
    big = sorted(_erase_ms(100_000) for _ in range(3))[1]
    small = sorted(_erase_ms(10) for _ in range(3))[1]
    rates = sorted(_sweep_rates(3000) for _ in range(3))[1]
    return [
        Result(
            "time to make a subject with 100,000 records unreadable",
            big,
            "ms",
            "same with 10 records",
            small,
            "O(1): one key row; the rows are purged later",
        ),
        Result(
            "retention sweeper throughput",
            rates[0],
            "records/s",
            "bare single-record deletions",
            rates[1],
            "each shred is its own transaction with its audit entry",
        ),
    ]
