"""Crash consistency: a real process SIGKILLed at named fault points, 20 seeded runs each.

Fault points (vault_service/faults.py, armed by VAULT_FAULTS=name:n, the n-th pass kills):

- ``put.after_wrap``: keys wrapped, payloads sealed, the content blob written, nothing committed;
- ``put.after_commit``: committed, the response not yet sent;
- ``rewrap.mid_batch``: the provider rewrapped a batch of subject keys, nothing stored yet
  (``vaultctl keys rewrap``);
- ``retention.after_delete``: in the middle of a retention sweep (``vaultctl retention sweep``).

After each kill, a fresh server on the same files must show: every acknowledged write reads back
as written; every write that was not acknowledged, retried with its idempotency key, gives exactly
one record (nothing lost, nothing twice); nothing half-written (every row complete, every listed
record readable); no orphan blob after the blob sweep; SQLite's integrity and foreign-key checks
pass; the audit chain verifies. Seeds make every run reproducible (the seed is in the test id).
"""

from __future__ import annotations

import os
import random
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import TOKENS, write_config
from tests.support.serve import start_serving, vaultctl
from vault_service.client import RecordToPut, VaultClient
from vault_service.config import load_config
from vault_service.errors import Unavailable, VaultError
from vault_service.lifecycle import audit_log, rotation
from vault_service.rpc.server import RunningServer, start_server

SEEDS = range(20)
EXTRA_CATEGORIES = """
[categories.intake_scan]
description = "Scans deleted seconds after upload (the sweep crash runs on them)."
fields = ["caption"]
content = true
retention = { after = "creation", hours = 0.0001 }
"""


def _home(tmp_path: Path) -> Path:
    write_config(tmp_path, logging__level='"WARNING"')
    with (tmp_path / "policy.toml").open("a") as f:
        f.write(EXTRA_CATEGORIES)
    return tmp_path


class _Server:
    """A server in this process on the home's files (the checks after a crash)."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.running: RunningServer = start_server(load_config(home / "vault.toml", {}), {})
        self.client = VaultClient(f"127.0.0.1:{self.running.port}", TOKENS["app"], timeout=20)

    def close(self) -> None:
        self.client.close()
        self.running.stop(0)


@pytest.fixture
def recovered(tmp_path: Path) -> Iterator[list[_Server]]:
    servers: list[_Server] = []
    yield servers
    for s in servers:
        s.close()


def check_consistent(server: _Server) -> None:
    """No half-written rows, no orphan blob after the sweep, integrity, the audit chain."""
    svc = server.running.service
    db = server.home / "data" / "vault.db"
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
        incomplete = conn.execute(
            "SELECT r.record_id FROM records r LEFT JOIN record_keys k ON k.record_id = r.record_id"
            " AND k.version = r.version WHERE k.record_id IS NULL"
        ).fetchall()
        assert incomplete == []
        for record_id, names in conn.execute("SELECT record_id, field_names FROM records"):
            stored = {
                f
                for (f,) in conn.execute(
                    "SELECT field FROM record_payloads WHERE record_id = ?", (record_id,)
                )
            }
            assert stored == set(names.split("\x1f")), record_id
        blob_refs = {
            r for (r,) in conn.execute("SELECT blob_ref FROM records WHERE blob_ref IS NOT NULL")
        }
    svc.sweep_blobs(0.0)
    assert set(svc.blobs.list_refs()) == blob_refs  # no orphan, none missing
    checkpoints = server.running.assembly.checkpoints
    # signing the head verifies what was written since the last signed head (ChainBroken if not)
    audit_log.write_checkpoint(svc.store, checkpoints, svc.signing_key, svc.clock.now())
    report = audit_log.verify(svc.store, checkpoints, svc.signing_key.public_key())
    assert report.ok, report.reason


# --- puts killed before and after their commit -------------------------------------------------
def _put_until_killed(
    addr: str, rng: random.Random, threads: int = 3
) -> dict[str, tuple[dict[str, str], bytes | None, str | None]]:
    """Writers with idempotency keys until the server dies: {key: (fields, content, record id or
    None if not acknowledged)}."""
    attempts: dict[str, tuple[dict[str, str], bytes | None, str | None]] = {}
    lock = threading.Lock()
    plans = [
        [(rng.random() < 0.3, rng.randrange(1, 200_000)) for _ in range(40)] for _ in range(threads)
    ]

    def writer(t: int) -> None:
        with VaultClient(addr, TOKENS["app"], timeout=10) as c:
            for i, (with_content, size) in enumerate(plans[t]):
                key = f"k-{t}-{i}"
                fields = {"caption": f"c-{t}-{i}"} if with_content else {"text": f"t-{t}-{i}"}
                content = os.urandom(size) if with_content else None
                with lock:
                    attempts[key] = (fields, content, None)
                try:
                    rid = c.put_record(
                        f"member-{t}",
                        "concern_photo" if with_content else "concern_text",
                        fields,
                        content=content,
                        idempotency_key=key,
                    ).record_id
                except (Unavailable, VaultError):
                    return  # the server is gone
                with lock:
                    attempts[key] = (fields, content, rid)

    workers = [threading.Thread(target=writer, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
    return attempts


@pytest.mark.slow
@pytest.mark.parametrize("point", ["put.after_wrap", "put.after_commit"])
@pytest.mark.parametrize("seed", SEEDS)
def test_put_killed(point: str, seed: int, tmp_path: Path, recovered: list[_Server]) -> None:

    rng = random.Random(f"{point}-{seed}")
    home = _home(tmp_path)
    proc, addr = start_serving(home / "vault.toml", {"VAULT_FAULTS": f"{point}:{rng.randint(4, 20)}"})
    attempts = _put_until_killed(addr, rng)
    assert proc.wait(30) == -9  # killed at the fault point, not stopped
    server = _Server(home)
    recovered.append(server)
    c = server.client
    acked = {k: v for k, v in attempts.items() if v[2] is not None}
    assert len(acked) < len(attempts)  # the kill fell among the writes
    for fields, content, rid in acked.values():
        assert rid is not None
        got = c.get_record(rid, "matching", include_content=content is not None)
        assert got.fields == fields and got.content == content
    for key, (fields, content, rid) in attempts.items():  # the client retries what it did not hear
        retried = c.put_record(
            f"member-{key.split('-')[1]}",
            "concern_photo" if content is not None else "concern_text",
            fields,
            content=content,
            idempotency_key=key,
        ).record_id
        assert rid is None or retried == rid
    for t in range(3):
        listed = c.list_records(f"member-{t}").records
        expected = sum(1 for k in attempts if k.startswith(f"k-{t}-"))
        assert len(listed) == expected  # each write exactly once
        for info in listed:
            c.get_record(info.record_id, "matching", include_content=True)
    check_consistent(server)


# --- a root-key rewrap killed mid-batch -----------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("seed", SEEDS)
def test_rewrap_killed_mid_batch(seed: int, tmp_path: Path, recovered: list[_Server]) -> None:
    rng = random.Random(f"rewrap-{seed}")
    home = _home(tmp_path)
    server = _Server(home)
    texts = {}
    for i in range(rng.randint(12, 30)):
        rid = server.client.put_record(f"member-{i}", "concern_text", {"text": f"t{i}"}).record_id
        texts[rid] = f"t{i}"
    svc = server.running.service
    rotation.rotate(svc.store, svc.provider, svc.clock.now())
    server.close()
    batch = rng.randint(2, 5)
    fault = f"rewrap.mid_batch:{rng.randint(1, 3)}"
    crashed = vaultctl(home, "keys", "rewrap", "--batch-size", str(batch), env={"VAULT_FAULTS": fault})
    assert crashed.returncode == -9, crashed.stderr
    server = _Server(home)
    recovered.append(server)
    svc = server.running.service
    for rid, text in texts.items():  # readable whatever version wraps each subject key now
        assert server.client.get_record(rid, "matching").fields["text"] == text
    summary = rotation.rewrap_keys(svc.store, svc.provider, batch_size=batch)
    assert summary.failed == 0 and summary.remaining == 0
    for rid, text in texts.items():
        assert server.client.get_record(rid, "matching").fields["text"] == text
    check_consistent(server)


# --- a retention sweep killed mid-sweep -----------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("seed", SEEDS)
def test_retention_sweep_killed(seed: int, tmp_path: Path, recovered: list[_Server]) -> None:
    import time

    rng = random.Random(f"sweep-{seed}")
    home = _home(tmp_path)
    server = _Server(home)
    due, kept = [], {}
    for i in range(rng.randint(8, 20)):
        due.append(
            server.client.put_record(
                f"member-{i % 4}",
                "intake_scan",
                {"caption": "c"},
                content=os.urandom(rng.randrange(1, 50_000)),
            ).record_id
        )
        if rng.random() < 0.5:
            rid = server.client.put_record(
                f"member-{i % 4}", "concern_text", {"text": f"k{i}"}
            ).record_id
            kept[rid] = f"k{i}"
    server.close()
    time.sleep(0.5)  # the scans are due
    fault = f"retention.after_delete:{rng.randint(1, len(due) - 1)}"
    crashed = vaultctl(
        home, "retention", "sweep", "--batch-size", str(rng.randint(2, 6)), env={"VAULT_FAULTS": fault}
    )
    assert crashed.returncode == -9, crashed.stderr
    server = _Server(home)
    recovered.append(server)
    svc = server.running.service
    with sqlite3.connect(home / "data" / "vault.db") as conn:
        left = {
            r for (r,) in conn.execute("SELECT record_id FROM records WHERE category = 'intake_scan'")
        }
    assert 0 < len(left) < len(due)  # the kill fell inside the sweep
    for rid in left:  # not yet swept: whole (check_consistent checks every row and blob)
        assert svc.store.get_record(rid) is not None
    swept = svc.sweep_retention()
    assert {r for r, _ in swept} == left  # the rest, each once
    for rid, text in kept.items():
        assert server.client.get_record(rid, "matching").fields["text"] == text
    with sqlite3.connect(home / "data" / "vault.db") as conn:
        audited = [
            r
            for (r,) in conn.execute(  # the chain's entries and those awaiting the sequencer
                "SELECT record_id FROM audit_log WHERE action = 'job.retention' UNION ALL"
                " SELECT record_id FROM audit_pending WHERE action = 'job.retention'"
            )
        ]
    assert sorted(audited) == sorted(due)  # one shred audited per due record, none twice
    check_consistent(server)


def test_fault_points_are_inert_unless_armed(tmp_path: Path) -> None:
    """Without VAULT_FAULTS the same operations run to the end (the matrix above is not an
    artefact of the fault machinery)."""
    home = _home(tmp_path)
    server = _Server(home)
    rid = server.client.put_record("member-1", "concern_text", {"text": "t"}).record_id
    svc = server.running.service
    rotation.rotate(svc.store, svc.provider, svc.clock.now())
    server.close()
    r = vaultctl(home, "keys", "rewrap", "--batch-size", "1")
    assert r.returncode == 0, r.stderr
    server = _Server(home)
    assert server.client.get_record(rid, "matching").fields["text"] == "t"
    server.close()


# --- batches of puts killed before and after their one commit -------------------------------------
def _batch(t: int, b: int, rng: random.Random) -> list[RecordToPut]:
    items = []
    for n in range(5):
        with_content = rng.random() < 0.4
        items.append(
            RecordToPut(
                f"member-{t}",
                "concern_photo" if with_content else "concern_text",
                {"caption": f"c-{t}-{b}-{n}"} if with_content else {"text": f"t-{t}-{b}-{n}"},
                content=os.urandom(rng.randrange(1, 100_000)) if with_content else None,
                idempotency_key=f"b-{t}-{b}-{n}",
            )
        )
    return items


@pytest.mark.slow
@pytest.mark.parametrize("point", ["put.after_wrap", "put.after_commit"])
@pytest.mark.parametrize("seed", range(6))
def test_batch_put_killed(point: str, seed: int, tmp_path: Path, recovered: list[_Server]) -> None:
    """A BatchPutRecords killed part-way: a batch is stored whole or not at all (one commit),
    every acknowledged batch reads back, and the batches retried with their idempotency keys
    give each record exactly once."""
    rng = random.Random(f"batch-{point}-{seed}")
    home = _home(tmp_path)
    proc, addr = start_serving(home / "vault.toml", {"VAULT_FAULTS": f"{point}:{rng.randint(6, 40)}"})
    plans = {(t, b): _batch(t, b, rng) for t in range(2) for b in range(12)}
    acked: dict[tuple[int, int], list[str]] = {}

    def writer(t: int) -> None:
        with VaultClient(addr, TOKENS["app"], timeout=10) as c:
            for b in range(12):
                try:
                    out = c.put_records(plans[(t, b)])
                except VaultError:
                    return  # the server is gone
                acked[(t, b)] = [o.record_id for o in out]  # type: ignore[union-attr]

    workers = [threading.Thread(target=writer, args=(t,)) for t in range(2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
    assert proc.wait(30) == -9
    assert len(acked) < len(plans)
    server = _Server(home)
    recovered.append(server)
    c = server.client
    for key, ids in acked.items():
        for item, rid in zip(plans[key], ids, strict=True):
            got = c.get_record(rid, "matching", include_content=item.content is not None)
            assert got.fields == item.fields and got.content == item.content
    for t in range(2):  # whole batches or nothing: a subject's count is a multiple of 5
        assert len(c.list_records(f"member-{t}").records) % 5 == 0
    for key, items in plans.items():
        retried = c.put_records(items)
        assert all(not isinstance(o, VaultError) for o in retried)
        if key in acked:
            assert [o.record_id for o in retried] == acked[key]  # type: ignore[union-attr]
    for t in range(2):
        assert len(c.list_records(f"member-{t}").records) == 5 * 12
    check_consistent(server)
