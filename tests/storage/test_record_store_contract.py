"""The RecordStore contract, run on every implementation."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from vault_service.errors import AlreadyExists, FailedPrecondition
from vault_service.ids import new_record_id
from vault_service.key_providers import WrappedKey
from vault_service.storage import (
    AuditRow,
    Idempotency,
    RecordStore,
    RecordVersion,
    SubjectState,
)
from vault_service.storage.rows import PendingDeletion, PendingKind

REF = b"\x01" * 32
OTHER = b"\x02" * 32
AUDIT = AuditRow(at=1.0, principal="p", action="record.put", decision="allow")


def _version(
    ref: bytes = REF, version: int = 1, record_id: str | None = None, blob: str | None = None
) -> RecordVersion:
    return RecordVersion(
        record_id=record_id or new_record_id(),
        subject_ref=ref,
        category="note",
        version=version,
        content_type="",
        data_key=b"k" * 61,
        payloads={"text": b"ct-text", "mood": b"ct-mood"},
        blob_ref=blob,
    )


def _pending(record_id: str, version: int = 1) -> PendingDeletion:
    """The deletion an update records for a hold's release (used only if a hold applies)."""
    return PendingDeletion(new_record_id(), PendingKind.VERSION, REF, record_id, "p", 1.0, version)


def _subject(store: RecordStore, ref: bytes = REF) -> WrappedKey:
    return store.create_subject_key(ref, WrappedKey("1", b"w" * 61), 1.0, provider="local")


def test_migrate_is_idempotent(store: RecordStore) -> None:
    assert store.migrate() == store.migrate() >= 1


def test_subject_key_create_is_race_safe(store: RecordStore) -> None:
    first = store.create_subject_key(REF, WrappedKey("1", b"a" * 61), 1.0, provider="local")
    second = store.create_subject_key(REF, WrappedKey("1", b"b" * 61), 2.0, provider="local")
    assert first == second == store.get_subject_key(REF)
    assert store.subject_state(REF) is SubjectState.ACTIVE
    assert store.subject_state(OTHER) is None


def test_concurrent_subject_creation_yields_one_key(store: RecordStore) -> None:
    results: list[WrappedKey] = []

    def create(i: int) -> None:
        results.append(
            store.create_subject_key(OTHER, WrappedKey("1", bytes([i]) * 61), 1.0, provider="local")
        )

    threads = [threading.Thread(target=create, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({r.ciphertext for r in results}) == 1


def test_insert_get_list_and_audit_in_same_transaction(store: RecordStore) -> None:
    _subject(store)
    new = _version()
    assert store.insert_record(new, 5.0, None, AUDIT) == new.record_id
    got = store.get_record(new.record_id)
    assert got is not None
    assert dict(got.payloads) == {"text": b"ct-text", "mood": b"ct-mood"}
    assert got.data_key == b"k" * 61 and got.subject_key.ciphertext == b"w" * 61
    assert got.meta.field_names == ("mood", "text") and got.meta.created_at == 5.0
    assert [m.record_id for m in store.list_records(REF, 10, None)] == [new.record_id]
    assert store.audit_rows()[-1] == AUDIT


def test_insert_for_unknown_or_erased_subject_fails(store: RecordStore) -> None:
    with pytest.raises(FailedPrecondition):
        store.insert_record(_version(), 1.0, None, None)
    _subject(store)
    store.erase_subject(REF, 2.0, None)
    with pytest.raises(FailedPrecondition):
        store.insert_record(_version(), 3.0, None, AUDIT)
    with pytest.raises(FailedPrecondition):
        _subject(store)
    assert AUDIT not in store.audit_rows()


def test_idempotency(store: RecordStore) -> None:
    _subject(store)
    a = _version()
    idem = Idempotency("p", "k", b"digest-1")
    assert store.insert_record(a, 1.0, idem, None) == a.record_id
    assert store.insert_record(_version(), 1.0, idem, None) == a.record_id
    with pytest.raises(AlreadyExists):
        store.insert_record(_version(), 1.0, Idempotency("p", "k", b"digest-2"), None)
    assert len(store.list_records(REF, 10, None)) == 1
    other_principal = _version()
    assert (
        store.insert_record(other_principal, 1.0, Idempotency("q", "k", b"digest-2"), None)
        == other_principal.record_id
    )


def test_erase_is_o1_then_purge(store: RecordStore) -> None:
    _subject(store)
    _subject(store, OTHER)
    ids = [store.insert_record(_version(blob=f"b{i}"), 1.0, None, None) for i in range(25)]
    keep = store.insert_record(_version(OTHER), 1.0, None, None)
    assert store.erase_subject(REF, 9.0, AUDIT) is True
    assert store.subject_state(REF) is SubjectState.ERASED
    assert store.get_subject_key(REF) is None
    assert all(store.get_record(i) is None for i in ids)
    assert store.list_records(REF, 100, None) == []
    assert store.erase_subject(REF, 10.0, None) is False
    purged = []
    while batch := store.purge_erased(10):
        purged += batch
    assert sorted(p.record_id for p in purged) == sorted(ids)
    assert sorted(b for p in purged for b in p.blob_refs) == sorted(f"b{i}" for i in range(25))
    assert store.get_record(keep) is not None


def test_replace_version_shreds_old(store: RecordStore) -> None:
    _subject(store)
    v1 = _version(blob="old")
    store.insert_record(v1, 1.0, None, None)
    v2 = _version(version=2, record_id=v1.record_id, blob="new")
    change = store.replace_version(v2, 1, 2.0, AUDIT, _pending(v1.record_id))
    assert change.shredded is not None and change.shredded.blob_refs == ("old",)
    got = store.get_record(v1.record_id)
    assert got is not None and got.meta.version == 2 and got.blob_ref == "new"
    with pytest.raises(FailedPrecondition):
        store.replace_version(
            _version(version=2, record_id=v1.record_id), 1, 3.0, None, _pending(v1.record_id)
        )


def test_delete_record(store: RecordStore) -> None:
    _subject(store)
    v = _version(blob="x")
    store.insert_record(v, 1.0, None, None)
    shredded = store.delete_record(v.record_id, AUDIT)
    assert shredded is not None and shredded.blob_refs == ("x",)
    assert store.get_record(v.record_id) is None and store.get_meta(v.record_id) is None
    assert store.delete_record(v.record_id, None) is None


def test_pagination_and_inventory(store: RecordStore) -> None:
    _subject(store)
    ids = sorted(store.insert_record(_version(), 1.0, None, None) for _ in range(5))
    assert [m.record_id for m in store.list_records(REF, 2, ids[1])] == ids[2:4]
    assert store.subject_keys_by_root_version() == {"1": 1}


def test_service_keys_first_writer_wins(store: RecordStore) -> None:
    assert store.get_service_key("idx") is None
    a = store.put_service_key_if_absent("idx", WrappedKey("1", b"a"), 1.0, provider="local")
    b = store.put_service_key_if_absent("idx", WrappedKey("1", b"b"), 1.0, provider="local")
    assert a == b == store.get_service_key("idx") == WrappedKey("1", b"a")


def test_rewrap_queries_and_batched_compare_and_set(store: RecordStore) -> None:
    refs = [bytes([i]) * 32 for i in range(1, 6)]
    for ref in refs:
        store.create_subject_key(ref, WrappedKey("1", ref[:1] * 61), 1.0, provider="local")
    page = store.subject_keys_not_at("2", 3, None)
    assert [r for r, _, _ in page] == refs[:3]
    assert [r for r, _, _ in store.subject_keys_not_at("2", 10, refs[2])] == refs[3:]
    store.erase_subject(refs[1], 2.0, None)
    changes = [(ref, w, WrappedKey("2", b"n" * 61)) for ref, w, _ in page]
    assert store.replace_subject_keys(changes, provider="local") == [True, False, True]
    assert store.subject_keys_by_root_version() == {"1": 2, "2": 2}
    assert (
        store.replace_subject_key(refs[0], page[0][1], WrappedKey("3", b"x"), provider="local") is False
    )
    assert store.subject_keys_not_at("2", 10, None) == [
        (r, WrappedKey("1", r[:1] * 61), False) for r in refs[3:]
    ]


def test_root_version_states(store: RecordStore) -> None:
    from vault_service.storage import RootVersionState

    assert store.root_version_states("local") == {}
    store.set_root_version_state("local", RootVersionState("1", "retired", 5.0, None, ""), AUDIT)
    store.set_root_version_state("local", RootVersionState("1", "destroyed", 6.0, 6.0, "gone"), None)
    assert store.root_version_states("local") == {
        "1": RootVersionState("1", "destroyed", 6.0, 6.0, "gone")
    }
    assert store.root_version_states("aws-kms") == {}
    assert store.audit_rows()[-1] == AUDIT


def test_job_lease_one_holder_until_expiry(store: RecordStore) -> None:
    assert store.acquire_lease("epochs", "a", 100.0, 30.0) is True
    assert store.acquire_lease("epochs", "b", 110.0, 30.0) is False
    assert store.acquire_lease("epochs", "a", 125.0, 30.0) is True  # renewed to 155
    assert store.acquire_lease("epochs", "b", 154.9, 30.0) is False
    assert store.acquire_lease("checkpoints", "b", 154.9, 30.0) is True  # another lease
    assert store.acquire_lease("epochs", "b", 155.0, 30.0) is True  # expired: taken over
    assert store.acquire_lease("epochs", "a", 160.0, 30.0) is False


# --- concurrency: what SQLite gets from serialized writers, PostgreSQL gets from row locks ---------


def _race(n: int, fn: Callable[[int], object]) -> list[object]:
    """Run fn(0..n-1) in n threads released together; returns results or raised exceptions."""
    barrier = threading.Barrier(n)
    results: list[object] = [None] * n

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = fn(i)
        except Exception as exc:
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def test_concurrent_audited_writes_form_one_unbroken_chain(store: RecordStore) -> None:
    from vault_service.audit.chain import GENESIS, entry_hash

    _subject(store)

    def write(i: int) -> None:
        for j in range(10):
            if j % 2:
                store.append_audit(AUDIT)
            else:
                store.insert_record(_version(), float(i), None, AUDIT)

    assert not [r for r in _race(8, write) if isinstance(r, Exception)]
    assert len(store.pending_rows(1000)) == 80  # durable, awaiting the sequencer
    assert len(store.sequence_pending()) == 80
    entries = store.audit_entries(0, 1000)
    assert [e.seq for e in entries] == list(range(1, 81))
    prev = GENESIS
    for e in entries:
        assert e.prev_hash == prev and e.entry_hash == entry_hash(prev, e.seq, e.row)
        prev = e.entry_hash


def test_concurrent_updates_of_one_version_have_one_winner(store: RecordStore) -> None:
    _subject(store)
    v1 = _version()
    store.insert_record(v1, 1.0, None, None)
    results = _race(
        6,
        lambda i: store.replace_version(
            _version(version=2, record_id=v1.record_id), 1, 2.0, AUDIT, _pending(v1.record_id)
        ),
    )
    assert sum(not isinstance(r, Exception) for r in results) == 1
    assert all(isinstance(r, FailedPrecondition) for r in results if isinstance(r, Exception))
    got = store.get_record(v1.record_id)
    assert got is not None and got.meta.version == 2 and set(got.payloads) == {"text", "mood"}


def test_concurrent_deletes_shred_once(store: RecordStore) -> None:
    _subject(store)
    v = _version(blob="x")
    store.insert_record(v, 1.0, None, None)
    before = len(store.audit_rows())
    results = _race(6, lambda i: store.delete_record(v.record_id, AUDIT))
    assert sum(r is not None for r in results) == 1
    assert not [r for r in results if isinstance(r, Exception)]
    assert len(store.audit_rows()) == before + 1


def test_concurrent_uses_of_one_idempotency_key_store_one_record(store: RecordStore) -> None:
    _subject(store)
    idem = Idempotency("p", "same-key", b"digest")
    results = _race(6, lambda i: store.insert_record(_version(), 1.0, idem, AUDIT))
    assert len(set(results)) == 1 and isinstance(results[0], str)
    assert len(store.list_records(REF, 10, None)) == 1


def test_concurrent_purges_take_each_record_once(store: RecordStore) -> None:
    _subject(store)
    ids = [store.insert_record(_version(blob=f"b{i}"), 1.0, None, None) for i in range(50)]
    store.erase_subject(REF, 2.0, None)

    def purge(i: int) -> list[str]:
        taken: list[str] = []
        while batch := store.purge_erased(5):
            taken += [p.record_id for p in batch]
        return taken

    results = _race(4, purge)
    taken = [rid for r in results for rid in r]  # type: ignore[attr-defined]
    assert sorted(taken) == sorted(ids)


def test_writes_racing_an_erasure_leave_nothing_readable(store: RecordStore) -> None:
    _subject(store)

    def act(i: int) -> object:
        if i == 0:
            return store.erase_subject(REF, 5.0, AUDIT)
        return [store.insert_record(_version(), 1.0, None, AUDIT) for _ in range(5)]

    results = _race(5, act)
    assert results[0] is True
    for r in results[1:]:
        assert isinstance(r, (list, FailedPrecondition))
        for rid in r if isinstance(r, list) else []:
            assert store.get_record(rid) is None
    assert store.list_records(REF, 100, None) == []
    with pytest.raises(FailedPrecondition):
        store.insert_record(_version(), 6.0, None, None)
