"""Group commit of the audit trail (storage/sql/audit_pending.py), on SQLite and PostgreSQL.

A call's entry is durable in its own transaction with no lock another writer waits on; the
sequencer moves committed entries into the chain in order, with no gap and no index used twice,
however many writers (threads, and stores standing for replicas) wrote them. A pending entry
removed, edited or moved to another writer before it was sequenced is caught (a gap or a bad
MAC: nothing moves), and a rolled-back call leaves no gap.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest

from vault_service.audit.chain import GENESIS, entry_hash
from vault_service.audit.model import AuditRow
from vault_service.crypto.derive import audit_pending_mac
from vault_service.crypto.keys import IndexKey
from vault_service.lifecycle import audit_log
from vault_service.storage import RecordStore
from vault_service.storage.tree_nodes import PendingTampered

KEY = IndexKey(b"k" * 32)
LAST = "id = (SELECT MAX(id) FROM audit_pending)"


def _macs(store: RecordStore) -> RecordStore:
    store.audit_mac = lambda writer, digest: audit_pending_mac(KEY, writer, digest)
    return store


def _row(i: int, who: str = "app") -> AuditRow:
    return AuditRow(at=1000.0 + i, principal=who, action="record.get", decision="allow", reason=f"e{i}")


def _chain_is_whole(store: RecordStore) -> list[str]:
    entries = store.audit_entries(0, 100_000)
    prev = GENESIS
    for n, e in enumerate(entries, start=1):
        assert e.seq == n and e.prev_hash == prev
        assert e.entry_hash == entry_hash(prev, e.seq, e.row)
        prev = e.entry_hash
    return [e.row.reason for e in entries]


def test_many_writers_in_many_stores_are_sequenced_once_each_in_order(database: Any) -> None:
    stores = [_macs(database.store()) for _ in range(3)]  # three replicas
    per_thread = 40

    def write(store: RecordStore, t: int) -> None:
        for i in range(per_thread):
            store.append_audit(_row(i, f"w{t}"))

    threads = [threading.Thread(target=write, args=(stores[t % 3], t)) for t in range(6)]
    for th in threads:
        th.start()
    mover = threading.Thread(target=lambda: [stores[0].sequence_pending() for _ in range(20)])
    mover.start()
    for th in (*threads, mover):
        th.join()
    while stores[1].sequence_pending():
        pass
    reasons = _chain_is_whole(stores[0])
    assert len(reasons) == 6 * per_thread
    rows = stores[0].audit_entries(0, 100_000)
    for t in range(6):  # each writer's entries in the order it wrote them
        mine = [e.row.reason for e in rows if e.row.principal == f"w{t}"]
        assert mine == [f"e{i}" for i in range(per_thread)]
    assert stores[2].pending_rows(10) == []


def test_a_rolled_back_call_leaves_no_gap(database: Any) -> None:
    store = _macs(database.store())
    store.append_audit(_row(1))
    with pytest.raises(RuntimeError), store._write() as conn:
        store._audited(conn, _row(2))
        raise RuntimeError("the operation failed after its entry")
    store.append_audit(_row(3))
    assert len(store.sequence_pending()) == 2
    assert _chain_is_whole(store) == ["e1", "e3"]


@pytest.mark.parametrize(
    "tamper",
    [
        "DELETE FROM audit_pending WHERE id = (SELECT MIN(id) + 1 FROM audit_pending)",
        f"UPDATE audit_pending SET reason = 'nothing happened' WHERE {LAST}",
        f"UPDATE audit_pending SET writer = 'someone-else' WHERE {LAST}",
        f"UPDATE audit_pending SET mac = ? WHERE {LAST}",
        "INSERT INTO audit_pending (writer, wseq, mac, at, principal, action, purpose,"
        " subject_pseudonym, record_id, decision, reason, correlation_id)"
        " SELECT writer, wseq + 100, mac, at, principal, action, purpose, subject_pseudonym,"
        " record_id, decision, reason, correlation_id FROM audit_pending"
        " WHERE id = (SELECT MAX(id) FROM audit_pending)",
    ],
    ids=["deleted", "edited", "moved-to-another-writer", "mac-replaced", "inserted"],
)
def test_a_pending_entry_tampered_before_sequencing_is_caught(database: Any, tamper: str) -> None:
    store = _macs(database.store())
    for i in range(5):
        store.append_audit(_row(i))
    with database.raw() as db:
        db.execute(tamper, (b"\x00" * 32,) if "?" in tamper else ())
    with pytest.raises(PendingTampered):
        store.sequence_pending()
    assert store.audit_head() is None  # nothing moved
    with pytest.raises(audit_log.ChainBroken):
        audit_log.integrate(store)


def test_entries_without_a_mac_are_refused_by_a_store_that_macs(database: Any) -> None:
    plain = database.store()  # a writer without the service's key (someone with DB access)
    plain.append_audit(_row(1))
    with pytest.raises(PendingTampered):
        _macs(database.store()).sequence_pending()


def test_readers_see_an_entry_the_moment_its_call_committed(database: Any) -> None:
    store = _macs(database.store())
    store.append_audit(_row(1))
    assert [r.reason for r in store.audit_rows()] == ["e1"]  # pending, already visible
    assert store.audit_head() is None
    store.sequence_pending()
    store.append_audit(_row(2))
    assert [r.reason for r in store.audit_rows()] == ["e1", "e2"]


def test_a_rewound_writer_counter_is_a_security_event(database: Any) -> None:
    """Hiding a writer's newest entry takes deleting it and rewinding the writer's counter (else
    the next entry is a gap): the writer notices its counter went back."""
    from vault_service import metrics

    def events() -> float:
        sample = metrics.REGISTRY.get_sample_value(
            "vault_security_events_total", {"event": "audit_verification_failed"}
        )
        return sample or 0.0

    store = _macs(database.store())
    for i in range(3):
        store.append_audit(_row(i))
    before = events()
    with database.raw() as db:
        db.execute(f"DELETE FROM audit_pending WHERE {LAST}")
        db.execute("UPDATE audit_writers SET next_wseq = next_wseq - 1")
    store.append_audit(_row(9))
    assert events() == before + 1


def test_several_entries_in_one_transaction_are_not_a_rewound_counter(database: Any) -> None:
    from vault_service import metrics

    def events() -> float:
        sample = metrics.REGISTRY.get_sample_value(
            "vault_security_events_total", {"event": "audit_verification_failed"}
        )
        return sample or 0.0

    store = _macs(database.store())
    before = events()
    store.append_audits([_row(i) for i in range(5)])  # one transaction, five numbers
    store.append_audit(_row(5))
    assert events() == before
    assert len(store.sequence_pending()) == 6


def test_batches_and_single_entries_share_one_numbering_without_gaps(database: Any) -> None:
    """A batch takes its numbers in one statement: mixed with single entries in one
    transaction, after a rolled-back batch, and followed by a rewound counter, the numbering
    stays whole and a rewind is still caught."""
    store = _macs(database.store())
    store.append_audits([_row(i) for i in range(3)])
    with store._write() as conn:
        store._audited(conn, _row(3))
        store._insert_audits(conn, [_row(4), _row(5)])
        store._audited(conn, _row(6))
    with pytest.raises(RuntimeError), store._write() as conn:
        store._insert_audits(conn, [_row(90), _row(91), _row(92)])
        raise RuntimeError("the call fails after its entries")
    store.append_audits([_row(7), _row(8)])
    with database.raw() as db:
        numbers = [int(n) for (n,) in db.execute("SELECT wseq FROM audit_pending ORDER BY id")]
    assert numbers == list(range(1, 10))
    links = store.sequence_pending()
    assert [seq for seq, _, _ in links] == list(range(1, 10))
    assert _chain_is_whole(store) == [f"e{i}" for i in range(9)]
    assert [digest for _, _, digest in links] == [e.entry_hash for e in store.audit_entries(0, 100)]


def test_an_entry_edited_after_its_move_is_caught_whichever_way_it_is_integrated(
    database: Any, tmp_path: Any
) -> None:
    """The sequencer integrates the entries it has just moved from the links it computed, not
    from a read-back (docs/audit.md): an entry edited between the move and the integration of
    the same run still gets the leaf of what was verified, so `audit verify` catches the edit.
    Entries moved by an earlier run (a sequencer killed between the two steps) are read back,
    and an edit among them stops the integration."""
    from vault_service.audit.checkpoints import FilesystemCheckpointStore
    from vault_service.crypto.signing import SigningKey

    edit = "UPDATE audit_log SET reason = 'edited' WHERE seq = 2"
    store = _macs(database.store())
    for i in range(3):
        store.append_audit(_row(i))
    move = store.sequence_pending

    def move_then_edit(limit: int = 50_000) -> Any:
        links = move(limit)
        if links:
            with database.raw() as db:
                db.execute(edit)
        return links

    store.sequence_pending = move_then_edit  # type: ignore[method-assign]
    signer = SigningKey.generate()
    checkpoints = FilesystemCheckpointStore(tmp_path / "checkpoints.jsonl")
    cp = audit_log.write_checkpoint(store, checkpoints, signer, 2000.0)
    assert cp is not None and cp.seq == 3  # integrated and signed: nothing re-read
    assert not audit_log.verify(store, checkpoints, signer.public_key()).ok
    store.sequence_pending = move  # type: ignore[method-assign]

    later = _macs(database.store())  # the next entries: moved, then the run is killed
    for i in range(3, 6):
        later.append_audit(_row(i))
    assert len(later.sequence_pending()) == 3
    with database.raw() as db:
        db.execute("UPDATE audit_log SET reason = 'edited' WHERE seq = 5")
    with pytest.raises(audit_log.ChainBroken):
        audit_log.integrate(later)
