"""The witness (audit/witness.py) and the sequencer, on real files and a real SQLite store.

The witness accepts a checkpoint only as a consistent extension of the one it holds, cosigns it
(the cosignature verifies by tlog-cosignature's rules), keeps a log's entries when given them and
refuses entries that are not the checkpoint's leaves; a reset needs the log's signature and names
what it replaces. A fork (two vaults with one key and origin, different trails) is refused and
halts the one refused. A sequencer killed at its fault points loses nothing and uses no index
twice: the next run finishes and the trail verifies.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import write_config
from tests.support.moto_server import CREDENTIALS, free_port, same_bucket
from vault_service.app import build_service
from vault_service.audit.checkpoints import FilesystemCheckpointStore
from vault_service.audit.model import AuditRow
from vault_service.audit.publish import Publisher, Verdict, compare, sign_checkpoint
from vault_service.audit.witness import (
    DirectoryWitness,
    KeepingWitness,
    LogKey,
    WitnessConflict,
    WitnessRefused,
    WitnessUnavailable,
    reset_statement,
)
from vault_service.audit.witness_s3 import S3Witness
from vault_service.clock import FixedClock
from vault_service.config import load_config
from vault_service.crypto.signing import SigningKey
from vault_service.lifecycle import audit_log
from vault_service.lifecycle.integrity import Integrity
from vault_service.lifecycle.ledger import DestructionLedger
from vault_service.lifecycle.ledger_sync import ledger_tree
from vault_service.lifecycle.witnessing import Witnessing
from vault_service.storage import SqliteRecordStore
from vault_service.tlog import merkle, note

ORIGIN = "example.test/audit"


def _row(i: int) -> AuditRow:
    return AuditRow(
        at=1000.0 + i, principal="app", action="record.get", decision="allow", reason=f"e{i}"
    )


def _leaves(n: int, tag: bytes = b"") -> list[bytes]:
    return [tag + b"entry %d" % i for i in range(n)]


def _signed(signer: SigningKey, entries: list[bytes]) -> tuple[str, object]:
    tree = ledger_tree(entries)
    return sign_checkpoint(ORIGIN, tree.size, tree.root(tree.size), signer), tree


@pytest.fixture
def signer() -> SigningKey:
    return SigningKey.generate()


@pytest.fixture(params=["directory", "s3"])
def witness(tmp_path: Path, request: pytest.FixtureRequest) -> KeepingWitness:
    """Each witness storage in turn: the checks are the same, written once."""
    if request.param == "directory":
        return DirectoryWitness(tmp_path / "witness", "witness.example")
    bucket = request.getfixturevalue("s3_bucket")
    return S3Witness(bucket, tmp_path / "witness.key", "witness.example")


def _history(witness: KeepingWitness) -> str:
    """Everything the witness keeps as its history (for S3: the archived states and the held one)."""
    if isinstance(witness, DirectoryWitness):
        return "".join(p.read_text() for p in (witness.directory / "logs").rglob("history.jsonl"))
    assert isinstance(witness, S3Witness)
    bucket = witness.bucket
    return "".join(bucket.get(item.key)[0].decode() for item in bucket.listing("logs/"))


def test_accepts_consistent_extensions_and_cosigns(witness: KeepingWitness, signer: SigningKey) -> None:
    log = LogKey(ORIGIN, signer.public_key())
    first, _ = _signed(signer, _leaves(3))
    cosigned = witness.add_checkpoint(log, 0, [], first)
    assert note.verify_note(cosigned, ORIGIN, signer.public_key())
    assert note.verify_cosignature(cosigned, "witness.example", witness.public_key()) > 0
    second, tree = _signed(signer, _leaves(7))
    proof = tree.consistency(3, 7)  # type: ignore[attr-defined]
    witness.add_checkpoint(log, 3, proof, second)
    held = witness.latest(log)
    assert held is not None and held.checkpoint.size == 7


def test_refuses_rollback_fork_bad_proof_and_foreign_signer(
    witness: KeepingWitness, signer: SigningKey
) -> None:
    log = LogKey(ORIGIN, signer.public_key())
    big, _ = _signed(signer, _leaves(8))
    witness.add_checkpoint(log, 0, [], big)
    small, _ = _signed(signer, _leaves(4))
    with pytest.raises(WitnessRefused, match="rolled back"):
        witness.add_checkpoint(log, 8, [], small)
    fork, _ = _signed(signer, _leaves(8, b"other "))
    with pytest.raises(WitnessRefused, match="fork"):
        witness.add_checkpoint(log, 8, [], fork)
    other, tree = _signed(signer, _leaves(12, b"other "))
    with pytest.raises(WitnessRefused, match="consistent"):
        witness.add_checkpoint(log, 8, tree.consistency(8, 12), other)  # type: ignore[attr-defined]
    stranger, _ = _signed(SigningKey.generate(), _leaves(9))
    with pytest.raises(WitnessRefused, match="signed"):
        witness.add_checkpoint(log, 8, [], stranger)
    with pytest.raises(WitnessConflict) as conflict:
        witness.add_checkpoint(log, 3, [], big)
    assert conflict.value.held_size == 8


def test_keeps_entries_only_when_they_are_the_leaves(
    witness: KeepingWitness, signer: SigningKey
) -> None:
    log = LogKey(ORIGIN, signer.public_key())
    entries = _leaves(5)
    signed, _ = _signed(signer, entries)
    with pytest.raises(WitnessRefused, match="leaves"):
        witness.add_checkpoint(log, 0, [], signed, entries=_leaves(5, b"x"))
    witness.add_checkpoint(log, 0, [], signed, entries=entries)
    more = _leaves(6)
    signed6, tree = _signed(signer, more)
    witness.add_checkpoint(log, 5, tree.consistency(5, 6), signed6, entries=more[5:])  # type: ignore[attr-defined]
    assert witness.entries(log, 0) == more
    statement = note.sign_note(reset_statement(witness.latest(log), 0, "x"), ORIGIN, signer)  # type: ignore[arg-type]
    with pytest.raises(WitnessRefused, match="repaired, never reset"):
        witness.reset(log, statement)


def test_reset_needs_the_logs_signature_and_names_the_held_checkpoint(
    witness: KeepingWitness, signer: SigningKey
) -> None:
    log = LogKey(ORIGIN, signer.public_key())
    signed, _ = _signed(signer, _leaves(4))
    witness.add_checkpoint(log, 0, [], signed)
    held = witness.latest(log)
    assert held is not None
    forged = note.sign_note(reset_statement(held, 2, "restore"), ORIGIN, SigningKey.generate())
    with pytest.raises(WitnessRefused, match="signed"):
        witness.reset(log, forged)
    stale = reset_statement(held, 2, "restore").replace(f"held {held.checkpoint.size} ", "held 3 ")
    with pytest.raises(WitnessRefused, match="does not name"):
        witness.reset(log, note.sign_note(stale, ORIGIN, signer))
    witness.reset(log, note.sign_note(reset_statement(held, 2, "restore"), ORIGIN, signer))
    assert witness.latest(log) is None
    assert "witness-reset" in _history(witness)


class _Racing(S3Witness):
    """An S3 witness that lets another process add a checkpoint between its read and its write."""

    meanwhile: Callable[[], object] | None = None

    def _store(self, *args: Any) -> bool:
        if self.meanwhile is not None:
            self.meanwhile()
            self.meanwhile = None
        return super()._store(*args)


def test_s3_a_lost_compare_and_swap_is_a_conflict_and_the_publisher_retries(
    s3_bucket: Any, tmp_path: Path, signer: SigningKey
) -> None:
    log = LogKey(ORIGIN, signer.public_key())
    racing = _Racing(s3_bucket, tmp_path / "w.key", "witness.example")
    other = S3Witness(same_bucket(s3_bucket), tmp_path / "w.key", "witness.example")
    entries = _leaves(9)
    three, _ = _signed(signer, entries[:3])
    racing.add_checkpoint(log, 0, [], three, entries[:3])
    five, tree5 = _signed(signer, entries[:5])
    seven, tree7 = _signed(signer, entries[:7])
    racing.meanwhile = lambda: other.add_checkpoint(
        log,
        3,
        tree5.consistency(3, 5),
        five,
        entries[3:5],  # type: ignore[attr-defined]
    )
    with pytest.raises(WitnessConflict) as conflict:  # its If-Match failed: 412
        racing.add_checkpoint(log, 3, tree7.consistency(3, 7), seven, entries[3:7])  # type: ignore[attr-defined]
    assert conflict.value.held_size == 5
    # the publisher learns the size and proves again from it; nothing is lost or doubled
    nine, tree9 = _signed(signer, entries)
    racing.meanwhile = lambda: other.add_checkpoint(
        log,
        5,
        tree7.consistency(5, 7),
        seven,
        entries[5:7],  # type: ignore[attr-defined]
    )
    Publisher(racing, log).publish(nine, tree9)  # type: ignore[arg-type]
    assert racing.entries(log, 0) == other.entries(log, 0) == entries
    held = other.latest(log)
    assert held is not None and held.checkpoint.size == 9


def test_s3_an_unreachable_endpoint_is_unavailable(tmp_path: Path, signer: SigningKey) -> None:
    from vault_service.audit.s3_objects import Bucket, s3_client

    client = s3_client(
        endpoint_url=f"http://127.0.0.1:{free_port()}",
        env=CREDENTIALS,
        max_attempts=1,
        timeout_seconds=1.0,
    )
    witness = S3Witness(Bucket(client, "nowhere", "w/"), tmp_path / "w.key", "witness.example")
    log = LogKey(ORIGIN, signer.public_key())
    with pytest.raises(WitnessUnavailable):
        witness.latest(log)
    signed, _ = _signed(signer, _leaves(2))
    with pytest.raises(WitnessUnavailable):
        witness.add_checkpoint(log, 0, [], signed)


def test_s3_a_tampered_held_checkpoint_is_refused(
    s3_bucket: Any, tmp_path: Path, signer: SigningKey
) -> None:
    witness = S3Witness(s3_bucket, tmp_path / "w.key", "witness.example")
    log = LogKey(ORIGIN, signer.public_key())
    signed, _ = _signed(signer, _leaves(4))
    witness.add_checkpoint(log, 0, [], signed)
    (held,) = [item.key for item in s3_bucket.listing("logs/") if item.key.endswith("/held")]
    doc = json.loads(s3_bucket.get(held)[0])
    doc["note"] = doc["note"].replace("\n4\n", "\n3\n")
    s3_bucket.put(held, json.dumps(doc).encode())
    with pytest.raises(WitnessRefused, match="does not verify"):
        witness.latest(log)


def _vault(home: Path, signer: SigningKey, witness: KeepingWitness) -> Witnessing:
    store = SqliteRecordStore(home / "vault.db")
    store.migrate()
    return Witnessing(
        store,
        DestructionLedger(home / "ledger.jsonl"),
        FilesystemCheckpointStore(home / "checkpoints.jsonl"),
        lambda: signer,
        Integrity(),
        witness,
        ORIGIN,
    )


def test_a_fork_is_refused_and_halts_the_vault_refused(
    tmp_path: Path, witness: KeepingWitness, signer: SigningKey
) -> None:
    a, b = _vault(tmp_path / "a", signer, witness), _vault(tmp_path / "b", signer, witness)
    for i in range(5):
        a.store.append_audit(_row(i))
        b.store.append_audit(_row(100 + i))  # another trail under the same origin and key
    assert a.checkpoint(2000.0) is not None
    with pytest.raises(WitnessRefused):
        b.checkpoint(2000.0)
    assert "audit" in b.integrity.causes() and not a.integrity.halted
    assert b.check_audit() is Verdict.FORKED
    assert b.checkpoint(2001.0) is None  # a halted trail signs nothing more


def _sequencer(home: Path, faults: str) -> int:
    env = {**os.environ, "VAULT_FAULTS": faults, "VAULT_SEQUENCER_PAGE": "7"}
    cmd = [sys.executable, "-m", "vault_service.cli.main", "--config", str(home / "vault.toml")]
    return subprocess.run(
        [*cmd, "audit", "checkpoint"], env=env, capture_output=True, check=False
    ).returncode


@pytest.mark.parametrize(
    "point", ["sequencer.before_move_commit:1", "sequencer.after_page:2", "sequencer.before_sign:1"]
)
def test_sequencer_killed_mid_integration_loses_nothing(tmp_path: Path, point: str) -> None:
    write_config(tmp_path)
    # written as a server writes them: pending, MACed under the service's key
    assembly = build_service(load_config(tmp_path / "vault.toml", {}), {}, FixedClock(1000.0))
    for i in range(40):
        assembly.store.append_audit(_row(i))
    assert len(assembly.store.pending_rows(100)) >= 40
    assembly.close()
    assert _sequencer(tmp_path, point) == -9  # SIGKILL at the fault point
    store = SqliteRecordStore(tmp_path / "data" / "vault.db")
    partial = store.tree_size(audit_log.AUDIT_TREE)
    # killed before the move committed (nothing moved), after two pages of 7, or after
    # integrating everything but before signing
    expected = {"sequencer.before_move_commit:1": 0, "sequencer.after_page:2": 14}
    assert partial == expected[point] if point in expected else partial >= 40
    assert len(store.pending_rows(100)) == (40 if partial == 0 else 0)
    store.close()
    assert _sequencer(tmp_path, "") == 0  # the next run finishes
    store = SqliteRecordStore(tmp_path / "data" / "vault.db")
    head = store.audit_head()
    assert head is not None and store.tree_size(audit_log.AUDIT_TREE) >= 40
    # every leaf is its entry's, once: the stored root is the root of the entries
    entries = store.audit_entries(0, 1000)
    tree = merkle.MemoryTree([merkle.leaf_hash(e.entry_hash) for e in entries])
    size = store.tree_size(audit_log.AUDIT_TREE)
    assert audit_log.audit_tree(store).root(size) == tree.root(size)
    store.close()
    verify = subprocess.run(
        [
            sys.executable,
            "-m",
            "vault_service.cli.main",
            "--config",
            str(tmp_path / "vault.toml"),
            "audit",
            "verify",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert verify.returncode == 0, verify.stdout


def test_the_published_tree_is_the_witnessed_one(
    tmp_path: Path, witness: KeepingWitness, signer: SigningKey
) -> None:
    v = _vault(tmp_path / "a", signer, witness)
    for i in range(9):
        v.store.append_audit(_row(i))
    v.checkpoint(2000.0)
    assert v.audit_publisher is not None
    held = v.audit_publisher.latest()
    assert compare(held, audit_log.audit_tree(v.store)) is Verdict.CONSISTENT
    assert isinstance(v.audit_publisher, Publisher)
