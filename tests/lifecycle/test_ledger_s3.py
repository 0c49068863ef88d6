"""The destruction ledger in an S3-compatible bucket (moto's server over real HTTP, one request
at a time so that its conditional writes are atomic as S3's are): appends ordered by
``If-None-Match``, no line lost or duplicated by concurrent writers, reads of O(new lines), the
repair that seals a generation, and the witness in a bucket too.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest

from tests.support.moto_server import same_bucket
from vault_service.audit.publish import Publisher, Verdict
from vault_service.audit.witness import LogKey
from vault_service.audit.witness_s3 import S3Witness
from vault_service.crypto.signing import SigningKey
from vault_service.lifecycle.ledger import Destruction, DestructionLedger, Kind, LedgerTampered, State
from vault_service.lifecycle.ledger_s3 import S3LedgerStore
from vault_service.lifecycle.ledger_sync import LedgerSync, ledger_tree

ORIGIN = "example.test/ledger"
REF = b"\x07" * 32


def _entry(i: int, tag: str = "r") -> Destruction:
    return Destruction(Kind.RECORD, REF, State.DONE, 10.0, f"{tag}{i:06d}", cause="retention")


@pytest.fixture
def key() -> SigningKey:
    return SigningKey.generate()


def _ledger(bucket: Any, **kw: Any) -> DestructionLedger:
    """A ledger on ``bucket`` through a client of its own (as another process would have)."""
    return DestructionLedger(S3LedgerStore(same_bucket(bucket, "ledger/"), **kw))


def _witnessed(
    ledger: DestructionLedger, witness: S3Witness, key: SigningKey, must: bool = True
) -> LedgerSync:
    """Publish after each append (``must``: and the witness took it; under contention a
    publish may give up after its retries, and a later one catches up)."""
    sync = LedgerSync(ledger, Publisher(witness, LogKey(ORIGIN, key.public_key())), ORIGIN)

    def after(signer: SigningKey) -> None:
        assert sync.publish(signer) or not must

    ledger.after_append = after
    return sync


def _keys(bucket: Any) -> list[str]:
    return [item.key for item in bucket.listing("ledger/")]


def test_appends_and_reads(s3_bucket: Any, key: SigningKey) -> None:
    a, b = _ledger(s3_bucket), _ledger(s3_bucket)
    a.append(key, [_entry(0)])
    b.append(key, [_entry(1)])  # b learns the end by listing
    a.append(key, [_entry(2)])  # a's next index was taken by b: 412, then the next one
    assert [e.object_id for e in b.entries(key.public_key())] == ["r000000", "r000001", "r000002"]
    assert _keys(s3_bucket) == [f"ledger/g00000000/L{i:012d}" for i in range(3)]
    assert a.lines() == b.lines() and a.where.startswith("s3://")


def test_concurrent_writers_lose_and_duplicate_nothing(
    s3_bucket: Any, tmp_path: Path, key: SigningKey
) -> None:
    """Four ledger objects (four processes' views, each its own client) on one bucket, a
    thread each, every append published to the S3 witness (each its own witness object: the
    held checkpoint's compare-and-swap races too): every line once, no gap, and the witness
    holds the tree of the ledger as it is, and its lines."""
    witnesses = [
        S3Witness(same_bucket(s3_bucket, "witness/"), tmp_path / "w.key", "w") for _ in range(4)
    ]
    ledgers = [_ledger(s3_bucket) for _ in range(4)]
    syncs = [
        _witnessed(ledger, witness, key, must=False)
        for ledger, witness in zip(ledgers, witnesses, strict=True)
    ]
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(5):
                ledgers[n].append(key, [_entry(i, f"t{n}-")])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    lines = ledgers[0].lines()
    ids = sorted(e.object_id for e in ledgers[1].entries(key.public_key()))
    assert ids == sorted(f"t{n}-{i:06d}" for n in range(4) for i in range(5))
    assert [k for k in _keys(s3_bucket) if "/L" in k] == [
        f"ledger/g00000000/L{i:012d}" for i in range(20)
    ]
    for sync in syncs:
        assert sync.publish(key)
    witness = witnesses[0]
    held = witness.latest(LogKey(ORIGIN, key.public_key()))
    tree = ledger_tree(lines)
    assert held is not None and (held.checkpoint.size, held.checkpoint.root) == (20, tree.root(20))
    assert witness.entries(LogKey(ORIGIN, key.public_key()), 0) == lines


def test_publishing_reads_only_the_new_lines(s3_bucket: Any, tmp_path: Path, key: SigningKey) -> None:
    witness = S3Witness(same_bucket(s3_bucket, "witness/"), tmp_path / "w.key", "w")
    ledger = _ledger(s3_bucket)
    sync = _witnessed(ledger, witness, key)
    for i in range(10):
        ledger.append(key, [_entry(i)])
    assert sync.reads.full_reads == 1
    before = sync.reads.bytes_read
    ledger.append(key, [_entry(10)])
    assert sync.reads.bytes_read - before == len(ledger.lines()[-1]) + 1
    assert sync.reads.full_reads == 1
    note = sync.kept_checkpoint()
    assert note is not None and "\n11\n" in note


def test_an_edited_or_removed_line_is_repaired_from_the_witness(
    s3_bucket: Any, tmp_path: Path, key: SigningKey
) -> None:
    """Someone with write access to the ledger's bucket overwrites a line, then deletes every
    line: the whole check sees it (the ETags, the listing), and the ledger is rebuilt from the
    witness in a new generation, with its own lines the witness lacks kept after the witness's
    (as for a file); appends go on there."""
    witness = S3Witness(same_bucket(s3_bucket, "witness/"), tmp_path / "w.key", "w")
    ledger = _ledger(s3_bucket)
    sync = _witnessed(ledger, witness, key)
    for i in range(5):
        ledger.append(key, [_entry(i)])
    witnessed = ledger.lines()
    raw = same_bucket(s3_bucket, "ledger/")
    other = DestructionLedger(tmp_path / "other.jsonl")
    other.append(key, [_entry(99)])
    raw.put("g00000000/L000000000002", other.lines()[0])  # validly signed, but not this line
    assert sync.reconcile(key).verdict is Verdict.FORKED
    # the witness's lines, then the ledger's own that it lacks (each verified)
    assert ledger.lines() == [*witnessed, other.lines()[0]]
    assert [k for k in _keys(s3_bucket) if k.startswith("ledger/heads/")] == ["ledger/heads/00000001"]
    ledger.append(key, [_entry(5)])  # in the new generation
    for item in raw.listing(""):
        if "/L" in item.key or item.key.endswith("base"):
            raw.client.delete_object(Bucket=raw.bucket, Key=raw.prefix + item.key)
    assert ledger.lines() == []  # the ledger is gone: behind the witness
    assert sync.reconcile(key).restored == 7
    assert [e.object_id for e in ledger.entries(key.public_key())] == [
        *(f"r{i:06d}" for i in range(5)),
        "r000099",
        "r000005",
    ]


def test_a_tampered_line_is_refused(s3_bucket: Any, key: SigningKey) -> None:
    ledger = _ledger(s3_bucket)
    ledger.append(key, [_entry(0)])
    raw = same_bucket(s3_bucket, "ledger/")
    line = json.loads(ledger.lines()[0])
    line["entries"][0]["state"] = "deferred"
    raw.put("g00000000/L000000000000", json.dumps(line, sort_keys=True).encode())
    with pytest.raises(LedgerTampered, match="invalid signature"):
        ledger.entries(key.public_key())


def test_an_append_that_meets_an_abandoned_seal_finishes_the_repair(
    s3_bucket: Any, key: SigningKey
) -> None:
    """A repairer sealed the generation and died: an append waits for the new generation, then
    commits the sealed lines unchanged itself and appends there. No line is lost."""
    ledger = _ledger(s3_bucket, seal_wait_seconds=0.5)
    for i in range(3):
        ledger.append(key, [_entry(i)])
    raw = same_bucket(s3_bucket, "ledger/")
    assert raw.put_new("g00000000/L000000000003", b"")  # the seal
    late = _ledger(s3_bucket, seal_wait_seconds=0.5)
    late.append(key, [_entry(3)])
    ledger.append(key, [_entry(4)])  # its cached index is the seal's: 412, then the same way
    assert [e.object_id for e in ledger.entries(key.public_key())] == [f"r{i:06d}" for i in range(5)]
    heads = [k for k in _keys(s3_bucket) if k.startswith("ledger/heads/")]
    assert heads == ["ledger/heads/00000001"]


def test_an_unreachable_bucket_is_unavailable(key: SigningKey) -> None:
    from tests.support.moto_server import CREDENTIALS, free_port
    from vault_service.audit.s3_objects import Bucket, s3_client
    from vault_service.errors import Unavailable

    client = s3_client(
        endpoint_url=f"http://127.0.0.1:{free_port()}",
        env=CREDENTIALS,
        max_attempts=1,
        timeout_seconds=1.0,
    )
    ledger = DestructionLedger(S3LedgerStore(Bucket(client, "nowhere", "ledger/")))
    with pytest.raises(Unavailable):
        ledger.append(key, [_entry(0)])
    with pytest.raises(Unavailable):
        ledger.lines()
