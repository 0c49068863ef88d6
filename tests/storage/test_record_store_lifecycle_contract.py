"""The RecordStore contract of what destruction, holds and root-key epochs need, on every
implementation: a read-once claim wins once, a hold keeps what it covers, a closed root version
refuses new keys, stale holds and pending deletions for a ledger replay, sealed evidence."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest

from vault_service.errors import FailedPrecondition, LegalHoldActive, RootVersionRetired
from vault_service.ids import new_record_id
from vault_service.key_providers import WrappedKey
from vault_service.policy.model import Grant
from vault_service.storage import AuditRow, RecordStore, RecordVersion, RootVersionState
from vault_service.storage.rows import HoldRow, PendingDeletion, PendingKind

REF = b"\x07" * 32
RELEASE = AuditRow(at=1.0, principal="p", action="record.get", decision="allow", reason="released")
DESTROY = AuditRow(at=1.0, principal="p", action="record.delete", decision="allow", reason="gone")


def _subject(store: RecordStore, version: str = "1") -> None:
    store.create_subject_key(REF, WrappedKey(version, b"w" * 61), 1.0, provider="local")


def _record(store: RecordStore, blob: str | None = "b.v1", version: int = 1, rid: str = "") -> str:
    new = RecordVersion(
        record_id=rid or new_record_id(),
        subject_ref=REF,
        category="note",
        version=version,
        content_type="",
        data_key=b"k" * 61,
        payloads={"text": b"ct"},
        blob_ref=blob,
    )
    if version == 1:
        return store.insert_record(new, 1.0, None, None)
    change = store.replace_version(new, version - 1, 2.0, None, _pending(PendingKind.VERSION, rid, 1))
    assert change is not None
    return rid


def _pending(kind: PendingKind, rid: str = "", version: int = 0) -> PendingDeletion:
    return PendingDeletion(new_record_id(), kind, REF, rid, "p", 1.0, version)


def _hold(store: RecordStore, rid: str = "") -> HoldRow:
    hold = HoldRow(new_record_id(), REF, rid, "", "", "legal", 1.0, sealed=b"sealed")
    store.place_hold(hold, None)
    return hold


def _race(n: int, fn: Callable[[int], Any]) -> list[Any]:
    results: list[Any] = []
    barrier = threading.Barrier(n)

    def run(i: int) -> None:
        barrier.wait()
        try:
            results.append(fn(i))
        except Exception as exc:
            results.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def test_a_read_once_claim_destroys_the_record_once(store: RecordStore) -> None:
    _subject(store)
    rid = _record(store)
    claim = store.consume_read_once(rid, 1, 2.0, (RELEASE, DESTROY), _pending(PendingKind.RECORD, rid))
    assert claim is not None and not claim.held and claim.shredded is not None
    assert claim.shredded.blob_refs == ("b.v1",)
    assert store.get_record(rid) is None and store.record_owner(rid) is None
    assert store.consume_read_once(rid, 1, 3.0, (RELEASE, DESTROY), _pending(PendingKind.RECORD)) is None
    actions = [(r.action, r.reason) for r in store.audit_rows()]
    assert actions[-2:] == [("record.get", "released"), ("record.delete", "gone")]


def test_concurrent_read_once_claims_have_one_winner(store: RecordStore) -> None:
    _subject(store)
    rid = _record(store)
    results = _race(
        6,
        lambda i: store.consume_read_once(
            rid, 1, 2.0, (RELEASE, DESTROY), _pending(PendingKind.RECORD, rid)
        ),
    )
    winners = [r for r in results if r is not None and not isinstance(r, Exception)]
    assert len(winners) == 1, results
    assert all(r is None for r in results if r is not winners[0])


def test_a_held_read_once_record_is_consumed_kept_and_never_found(store: RecordStore) -> None:
    _subject(store)
    rid = _record(store)
    _hold(store, rid)
    claim = store.consume_read_once(rid, 1, 2.0, (RELEASE, DESTROY), _pending(PendingKind.RECORD, rid))
    assert claim is not None and claim.held and claim.shredded is None
    assert store.get_record(rid) is None and store.get_meta(rid) is None
    assert store.list_records(REF, 10, None) == []
    owner = store.record_owner(rid)
    assert owner is not None and owner.held and owner.versions == (1,)  # kept as evidence
    assert store.consume_read_once(rid, 1, 3.0, (RELEASE, DESTROY), _pending(PendingKind.RECORD)) is None
    assert [p.kind for p in store.pending_deletions(REF)] == [PendingKind.RECORD]
    assert store.audit_rows()[-1].decision == "deferred"


def test_an_update_under_a_hold_keeps_the_old_version_and_its_blob(store: RecordStore) -> None:
    _subject(store)
    rid = _record(store, blob="r.v1")
    _hold(store)
    new = RecordVersion(rid, REF, "note", 2, "", b"k" * 61, {"text": b"ct2"}, "r.v2")
    change = store.replace_version(new, 1, 2.0, None, _pending(PendingKind.VERSION, rid, 1))
    assert change.kept and change.shredded is None
    got = store.get_record(rid)
    assert got is not None and got.meta.version == 2
    owner = store.record_owner(rid)
    assert owner is not None and owner.version == 2 and owner.versions == (1, 2)
    assert store.referenced_blobs(["r.v1", "r.v2", "other"]) == {"r.v1", "r.v2"}
    (pending,) = store.pending_deletions(REF)
    assert (pending.kind, pending.version) == (PendingKind.VERSION, 1)
    with pytest.raises(LegalHoldActive):
        store.delete_version(rid, 1, None)


def test_a_kept_version_is_destroyed_after_the_release(store: RecordStore) -> None:
    _subject(store)
    rid = _record(store, blob="r.v1")
    hold = _hold(store)
    new = RecordVersion(rid, REF, "note", 2, "", b"k" * 61, {"text": b"ct2"}, "r.v2")
    store.replace_version(new, 1, 2.0, None, _pending(PendingKind.VERSION, rid, 1))
    store.release_hold(hold.hold_id, 3.0, None)
    assert store.delete_version(rid, 2, None) is None  # the current version is not this path's
    shredded = store.delete_version(rid, 1, DESTROY)
    assert shredded is not None and shredded.blob_refs == ("r.v1",)
    owner = store.record_owner(rid)
    assert owner is not None and owner.versions == (2,)
    assert store.referenced_blobs(["r.v1", "r.v2"]) == {"r.v2"}
    assert store.delete_version(rid, 1, None) is None


def test_deleting_a_record_returns_the_blobs_of_every_version(store: RecordStore) -> None:
    _subject(store)
    rid = _record(store, blob="r.v1")
    hold = _hold(store)
    new = RecordVersion(rid, REF, "note", 2, "", b"k" * 61, {"text": b"ct2"}, "r.v2")
    store.replace_version(new, 1, 2.0, None, _pending(PendingKind.VERSION, rid, 1))
    store.release_hold(hold.hold_id, 3.0, None)
    shredded = store.delete_record(rid, None)
    assert shredded is not None and set(shredded.blob_refs) == {"r.v1", "r.v2"}


def test_holds_cover_and_stale_holds_are_released(store: RecordStore) -> None:
    _subject(store)
    rid, other = _record(store), _record(store)
    _hold(store, rid)
    assert store.holds_cover(REF, rid) and not store.holds_cover(REF, other)
    assert store.holds_cover(REF)  # a record's hold covers its subject's erasure
    assert store.release_stale_holds(REF, other, 5.0, None) == 0
    assert store.release_stale_holds(REF, rid, 0.5, DESTROY) == 0  # placed after that moment
    assert store.release_stale_holds(REF, rid, 5.0, DESTROY) == 1
    assert not store.holds_cover(REF) and store.list_holds(REF)[0].released_at is not None
    assert "stale holds" in store.audit_rows()[-1].reason


def test_ensure_pending_records_a_deletion_once(store: RecordStore) -> None:
    _subject(store)
    rid = _record(store)
    store.ensure_pending(_pending(PendingKind.RECORD, rid))
    store.ensure_pending(_pending(PendingKind.RECORD, rid))
    store.ensure_pending(_pending(PendingKind.VERSION, rid, 1))
    kinds = sorted((p.kind.value, p.version) for p in store.pending_deletions(REF))
    assert kinds == [("record", 0), ("version", 1)]


@pytest.mark.parametrize("state", ["retired", "marked_for_destruction", "destroying"])
def test_a_closed_root_version_refuses_new_keys(store: RecordStore, state: str) -> None:
    store.close_root_version("local", RootVersionState("1", state, 1.0, None, ""), DESTROY)
    with pytest.raises(RootVersionRetired):
        _subject(store, "1")
    with pytest.raises(RootVersionRetired):
        store.put_service_key_if_absent("k", WrappedKey("1", b"s"), 1.0, provider="local")
    _subject(store, "2")  # the next version is fine
    # another provider's version of the same name is not closed
    store.put_service_key_if_absent("k", WrappedKey("1", b"s"), 1.0, provider="aws-kms")


def test_closing_a_version_counts_the_keys_under_it_in_the_same_transaction(
    store: RecordStore,
) -> None:
    _subject(store, "1")
    with pytest.raises(FailedPrecondition, match="1 subject keys"):
        store.close_root_version("local", RootVersionState("1", "retired", 1.0, None, ""), None)
    assert store.root_version_states("local") == {}  # nothing recorded


def test_closing_races_with_key_creation_without_losing_a_key(store: RecordStore) -> None:
    refs = [bytes([i]) * 32 for i in range(1, 9)]

    def act(i: int) -> object:
        if i == 0:
            state = RootVersionState("1", "retired", 1.0, None, "")
            return store.close_root_version("local", state, None)
        return store.create_subject_key(refs[i], WrappedKey("1", b"w" * 61), 1.0, provider="local")

    results = _race(len(refs), act)
    closed = "retired" in {s.state for s in store.root_version_states("local").values()}
    under = store.subject_keys_by_root_version().get("1", 0)
    # either the version closed with nothing under it, or it did not close: never both
    assert not (closed and under), results


def test_consent_evidence_is_stored_only_sealed(store: RecordStore) -> None:
    _subject(store)
    grant = Grant(new_record_id(), "p", frozenset({"note"}), 1.0, sealed_evidence=b"S")
    store.insert_grant(REF, grant, "app", 1.0, None)
    (got,) = store.subject_grants(REF)
    assert got.sealed_evidence == b"S" and got.evidence_reference == ""
    assert store.plaintext_evidence("", 10) == []
    assert store.grant_state(grant.grant_id) == (REF, False)
    store.revoke_grant(grant.grant_id, 2.0, None)
    assert store.grant_state(grant.grant_id) == (REF, True)
    assert store.grant_state(new_record_id()) is None


def test_erasure_deletes_the_subjects_grants(store: RecordStore) -> None:
    _subject(store)
    grant = Grant(new_record_id(), "p", frozenset({"note"}), 1.0, sealed_evidence=b"S")
    store.insert_grant(REF, grant, "app", 1.0, None)
    store.erase_subject(REF, 2.0, None)
    assert store.subject_grants(REF) == [] and store.grant_state(grant.grant_id) is None


def test_a_read_once_claim_of_a_version_updated_meanwhile_fails(store: RecordStore) -> None:
    _subject(store)
    rid = _record(store, blob="r.v1")
    _record(store, blob="r.v2", version=2, rid=rid)
    assert store.consume_read_once(rid, 1, 3.0, (RELEASE, DESTROY), _pending(PendingKind.RECORD)) is None
    assert store.get_record(rid) is not None  # the new version was not destroyed unreleased


def test_a_record_marked_consumed_is_kept_but_never_found(store: RecordStore) -> None:
    _subject(store)
    rid = _record(store)
    store.mark_consumed(rid, 2.0)
    assert store.get_record(rid) is None and store.record_owner(rid) is not None
    assert store.consume_read_once(rid, 1, 3.0, (RELEASE, DESTROY), _pending(PendingKind.RECORD)) is None


def test_a_closed_root_version_refuses_a_rewrap_onto_it(store: RecordStore) -> None:
    _subject(store, "1")
    ((ref, old, separated),) = store.subject_keys_not_at("2", 10, None)
    assert not separated
    store.close_root_version("local", RootVersionState("2", "retired", 1.0, None, ""), None)
    with pytest.raises(RootVersionRetired):
        store.replace_subject_keys([(ref, old, WrappedKey("2", b"n" * 61))], provider="local")
    assert store.get_subject_key(ref) == old


def test_pending_deletions_no_hold_covers_are_listed(store: RecordStore) -> None:
    _subject(store)
    held, free = _record(store), _record(store)
    hold = _hold(store, held)
    store.ensure_pending(_pending(PendingKind.RECORD, held))
    store.ensure_pending(_pending(PendingKind.RECORD, free))
    assert [p.record_id for p in store.unheld_pending(10)] == [free]
    store.release_hold(hold.hold_id, 2.0, None)
    assert sorted(p.record_id for p in store.unheld_pending(10)) == sorted([held, free])


def test_records_of_an_older_version_are_witnessed_once(store: RecordStore) -> None:
    _subject(store)
    rid = _record(store)  # inserted without an audit entry: nothing witnesses it

    def witness(record_id: str, ref: bytes, version: int) -> AuditRow:
        return AuditRow(
            1.0, "job", "job.witness", "allow", record_id=record_id, witnessed_version=version
        )

    assert store.witness_unwitnessed(10, witness) == 1
    got = store.get_record(rid)
    assert got is not None and got.witnessed_version == 1
    assert store.witness_unwitnessed(10, witness) == 0


def test_plaintext_hold_terms_of_an_older_version_are_listed_and_sealed(store: RecordStore) -> None:
    _subject(store)
    hold = _hold(store)
    assert store.plaintext_hold_terms("", 10) == []
    store.seal_hold_terms(hold.hold_id, b"S2")
    assert store.list_holds(REF)[0].sealed == b"S2"


def test_an_update_that_loses_the_race_with_an_erasure_writes_nothing(store: RecordStore) -> None:
    """The service checks the subject before sealing; an erasure can commit before the update's
    transaction. Then the update is refused, and the blind index keeps nothing of the erased
    subject (its rows went with the erasure, and the update may not write new ones)."""
    _subject(store)
    rid = _record(store, blob=None)
    assert store.erase_subject(REF, 3.0, None)
    new = RecordVersion(rid, REF, "note", 2, "", b"k" * 61, {"text": b"ct2"}, index_tokens=(b"t" * 32,))
    with pytest.raises(FailedPrecondition):
        store.replace_version(new, 1, 4.0, None, _pending(PendingKind.VERSION, rid, 1))
    assert store.subject_residue(REF) == (False, 1)  # the record row until the purge, no index row
    store.purge_erased(10)
    assert store.subject_residue(REF) == (False, 0)


def test_the_blind_index_goes_with_the_record_and_follows_its_version(store: RecordStore) -> None:
    _subject(store)
    rid = _record(store, blob=None)
    token = b"t" * 32
    new = RecordVersion(
        rid,
        REF,
        "note",
        2,
        "",
        b"k" * 61,
        {"text": b"ct2"},
        index_tokens=(token,),
        index_spec="text:exact",
    )
    store.replace_version(new, 1, 2.0, None, _pending(PendingKind.VERSION, rid, 1))
    assert store.find_records(token, "note", "", 10) == [rid]
    assert store.find_records(token, "other", "", 10) == []
    assert store.stale_index("note", "text:exact", "", 10) == []
    assert store.stale_index("note", "text:casefold", "", 10) == [rid]
    assert store.replace_tokens(rid, 1, "text:casefold", [b"u" * 32]) is False  # not its version
    assert store.replace_tokens(rid, 2, "text:casefold", [b"u" * 32]) is True
    assert store.find_records(token, "note", "", 10) == []
    assert store.find_records(b"u" * 32, "note", "", 10) == [rid]
    assert store.record_residue(rid)[0] == 2  # the record row and its index row
    store.delete_record(rid, None)
    assert store.record_residue(rid) == (0, 0, 0)
