"""Lifecycle figures: the time to make a subject with 100,000 records unreadable (erasure destroys
one key row: it should not depend on the record count, so the baseline is the same erasure of a
subject with 10 records), the retention sweeper's throughput (records shredded per second,
against bare single-record deletions of the same store in the same run), and the destruction
ledger's appends per second when each is published to a DirectoryWitness, on a ledger already
holding 20,000 lines, against the same appends without a witness (``after_append`` None) in the
same run: publishing reads only the new line, so this should not depend on the ledger's size."""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

from benchmarks.harness import Result, scratch_policy
from vault_service.audit.publish import Publisher
from vault_service.audit.witness import DirectoryWitness, LogKey
from vault_service.clock import FixedClock
from vault_service.crypto.signing import SigningKey
from vault_service.ids import new_record_id
from vault_service.key_providers import LocalKeyProvider, create_keyring
from vault_service.lifecycle.ledger import Destruction, DestructionLedger, Kind, State
from vault_service.lifecycle.ledger_sync import LedgerSync
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


LEDGER_LINES = 20_000
LEDGER_ORIGIN = "bench.example/ledger"


def _shred(i: int) -> list[Destruction]:
    """One retention shred's ledger line (a record shred is a line of its own)."""
    return [
        Destruction(
            Kind.RECORD, i.to_bytes(32, "big"), State.DONE, 1.0e9 + i, f"r{i:08d}", cause="retention"
        )
    ]


def _filled_ledger(path: Path, signer: SigningKey, lines: int) -> None:
    """A ledger of ``lines`` signed lines (one by one, each fsynced, as the service appends)."""
    ledger = DestructionLedger(path)
    for i in range(lines):
        ledger.append(signer, _shred(i))


def _append_rate(template: Path, signer: SigningKey, n: int, witnessed: bool) -> float:
    """Appends per second on a copy of ``template``; ``witnessed``: each one published to a
    DirectoryWitness that already holds the template's lines (taken before timing: that first
    publish is the start-up's)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "ledger.jsonl"
        shutil.copyfile(template, path)
        ledger = DestructionLedger(path)
        if witnessed:
            witness = DirectoryWitness(Path(tmp) / "witness")
            sync = LedgerSync(
                ledger, Publisher(witness, LogKey(LEDGER_ORIGIN, signer.public_key())), LEDGER_ORIGIN
            )
            assert sync.publish(signer)

            def publish(key: SigningKey) -> None:
                assert sync.publish(key)

            ledger.after_append = publish
        t = time.perf_counter()
        for i in range(n):
            ledger.append(signer, _shred(LEDGER_LINES + i))
        return n / (time.perf_counter() - t)


def _ledger_rates(n: int) -> tuple[float, float]:
    signer = SigningKey.generate()
    with tempfile.TemporaryDirectory() as tmp:
        template = Path(tmp) / "template.jsonl"
        _filled_ledger(template, signer, LEDGER_LINES)
        # interleaved, so that both see the same machine (2 shared cores)
        pairs = [
            (_append_rate(template, signer, n, True), _append_rate(template, signer, n, False))
            for _ in range(3)
        ]
    return sorted(p[0] for p in pairs)[1], sorted(p[1] for p in pairs)[1]


def run() -> list[Result]:
    big = sorted(_erase_ms(100_000) for _ in range(3))[1]
    small = sorted(_erase_ms(10) for _ in range(3))[1]
    rates = sorted(_sweep_rates(3000) for _ in range(3))[1]
    ledger = _ledger_rates(500)
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
        Result(
            f"ledger appends published to a witness, ledger of {LEDGER_LINES:,} lines",
            ledger[0],
            "appends/s",
            "appends without a witness",
            ledger[1],
            "each publish reads the new line only; the witness fsyncs its entries, history and"
            " checkpoint",
        ),
    ]
