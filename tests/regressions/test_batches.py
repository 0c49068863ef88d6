"""Issue 19, part 1: BatchPutRecords and BatchGetRecords, each item exactly as its single call.

The promise (docs/api.md, "Batches"): a batch changes no rule. Every item is validated,
authorized, consented, restricted, read-once-checked, idempotent and audited as its single call
would be, and answers the status that call would have answered; failures that are not the item's
own fail the whole call, with nothing stored and nothing released. These tests compare a batch
with the single calls on the same state, and pair batches with the features that could break
them: erasure, restriction, idempotent retries, read-once, the halt, two concurrent batches.
Over a real gRPC server, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import grpc
import pytest

from tests.conftest import BACKENDS
from tests.regressions.conftest import ALL_TOKENS, Vault, read_once_policy_text
from vault_service.api.v1 import vault_pb2 as pb
from vault_service.api.v1 import vault_pb2_grpc as pb_grpc
from vault_service.client import Record, RecordToGet, RecordToPut, VaultClient
from vault_service.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unavailable,
    VaultError,
)
from vault_service.service.batches import MAX_BATCH_ITEMS

pytestmark = pytest.mark.parametrize("vault", BACKENDS, indirect=True)

PHOTO = bytes(range(256)) * 64


@pytest.fixture
def policy_text() -> str:
    return read_once_policy_text()


def _outcome(fn: Any) -> Any:
    """A single call's result, or its error (to compare with a batch item's)."""
    try:
        return fn()
    except VaultError as exc:
        return exc


def _same(batch: Record | VaultError, single: Record | VaultError) -> bool:
    if isinstance(batch, VaultError) or isinstance(single, VaultError):
        return type(batch) is type(single) and str(batch) == str(single)
    return (
        batch.fields == single.fields
        and batch.content == single.content
        and batch.info.record_id == single.info.record_id
        and batch.info.subject_pseudonym == single.info.subject_pseudonym
    )


def _stored_audits(vault: Vault, record_ids: list[str]) -> dict[str, int]:
    """How many "stored" audit entries each record has (in the chain or still pending)."""
    counts = dict.fromkeys(record_ids, 0)
    for row in vault.service.store.audit_rows(100_000):
        if row.record_id in counts and row.action == "record.put" and row.reason == "stored":
            counts[row.record_id] += 1
    return counts


def test_a_batch_put_answers_each_item_as_its_single_call(vault: Vault) -> None:
    """Valid items are stored (one "stored" audit entry each); every other item gets the status
    its PutRecord would have: a bad category, an undeclared field, a reused idempotency key, an
    erased subject. A refused item leaves nothing behind, not even its blob."""
    app = vault.client("app")
    app.put_record("gone", "concern_text", {"text": "before"})
    app.erase_subject("gone")
    items = [
        RecordToPut("m-1", "concern_text", {"text": "one"}),
        RecordToPut("m-1", "no_such_category", {"text": "x"}),
        RecordToPut("m-2", "concern_text", {"nickname": "x"}),
        RecordToPut("m-2", "concern_photo", {"caption": "c"}, content=PHOTO, idempotency_key="k-1"),
        RecordToPut("m-2", "concern_photo", {"caption": "c"}, content=PHOTO, idempotency_key="k-1"),
        RecordToPut("m-2", "concern_text", {"text": "other"}, idempotency_key="k-1"),
        RecordToPut("gone", "concern_photo", {"caption": "c"}, content=PHOTO),
        RecordToPut("m-3", "payment_record", {"amount": "10", "currency": "KRW"}),
    ]
    blobs_before = len(vault.blob_files())
    out = app.put_records(items)
    assert [type(o).__name__ for o in out] == [
        "PutResult",
        "InvalidArgument",
        "InvalidArgument",
        "PutResult",
        "PutResult",
        "AlreadyExists",
        "FailedPrecondition",
        "PutResult",
    ]
    # the single calls say the same
    assert isinstance(_outcome(lambda: app.put_record("m-1", "no_such_category", {})), InvalidArgument)
    assert isinstance(
        _outcome(lambda: app.put_record("m-2", "concern_text", {"text": "o"}, idempotency_key="k-1")),
        AlreadyExists,
    )
    assert isinstance(
        _outcome(lambda: app.put_record("gone", "concern_text", {"text": "x"})), FailedPrecondition
    )
    first, photo, retry, payment = out[0], out[3], out[4], out[7]
    assert not isinstance(photo, VaultError) and not isinstance(retry, VaultError)
    assert retry.record_id == photo.record_id  # the idempotent retry: the first write stands
    assert len(vault.blob_files()) == blobs_before + 1  # the photo's, once; no refused item's
    got = app.get_record(photo.record_id, "matching", include_content=True)
    assert got.content == PHOTO and got.fields == {"caption": "c"}
    stored = [r.record_id for r in (first, photo, payment) if not isinstance(r, VaultError)]
    assert _stored_audits(vault, stored) == dict.fromkeys(stored, 1)
    assert len(app.list_records("gone").records) == 0


def test_a_retried_batch_with_idempotency_keys_stores_nothing_twice(vault: Vault) -> None:
    app = vault.client("app")
    items = [
        RecordToPut(f"s-{i % 7}", "concern_text", {"text": f"t{i}"}, idempotency_key=f"i-{i}")
        for i in range(40)
    ]
    first = app.put_records(items, batch_size=16)
    again = app.put_records(items, batch_size=16)
    assert all(not isinstance(o, VaultError) for o in first)
    assert [o.record_id for o in again] == [o.record_id for o in first]  # type: ignore[union-attr]
    assert sum(len(app.list_records(f"s-{k}").records) for k in range(7)) == 40


def test_the_sdk_splits_long_lists_and_the_server_refuses_oversized_batches(vault: Vault) -> None:
    app = vault.client("app")
    calls: list[int] = []
    items = [
        RecordToPut(f"bulk-{i % 13}", "concern_text", {"text": "x"}) for i in range(MAX_BATCH_ITEMS + 21)
    ]
    out = app.put_records(items, progress=calls.append)
    assert calls == [MAX_BATCH_ITEMS, MAX_BATCH_ITEMS + 21]
    assert all(not isinstance(o, VaultError) for o in out)
    with grpc.insecure_channel(vault.address) as channel:
        stub = pb_grpc.VaultStub(channel)
        metadata = (("authorization", f"Bearer {ALL_TOKENS['app']}"),)
        for n in (0, MAX_BATCH_ITEMS + 1):
            request = pb.BatchPutRecordsRequest(
                items=[
                    pb.PutRecordRequest(subject_id="x", category="concern_text", fields={"text": "y"})
                ]
                * n
            )
            with pytest.raises(grpc.RpcError) as err:
                stub.BatchPutRecords(request, metadata=metadata)
            assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT
            get = pb.BatchGetRecordsRequest(
                items=[pb.GetRecordRequest(record_id="r", purpose="matching")] * n
            )
            with pytest.raises(grpc.RpcError) as err:
                stub.BatchGetRecords(get, metadata=metadata)
            assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT


def test_a_batch_get_answers_each_item_as_its_single_call(vault: Vault) -> None:
    """Released, narrowed, de-identified, restricted, missing, malformed, a purpose the role
    lacks, a purpose the category is not in: the batch's items equal the single GetRecords."""
    app = vault.client("app")
    text = app.put_record("g-1", "concern_text", {"text": "hello", "budget": "5"}).record_id
    photo = app.put_record("g-1", "concern_photo", {"caption": "c"}, content=PHOTO).record_id
    pay = app.put_record("g-2", "payment_record", {"amount": "9", "currency": "KRW"}).record_id
    held = app.put_record("g-3", "concern_text", {"text": "restricted"}).record_id
    assert vault.client("sro").restrict_processing("g-3", True)
    asks = [
        RecordToGet(text, "matching"),
        RecordToGet(text, "matching", fields=["budget"]),
        RecordToGet(text, "llm_analysis"),
        RecordToGet(photo, "matching", include_content=True),
        RecordToGet(photo, "matching"),
        RecordToGet(pay, "matching"),
        RecordToGet(pay, "legal_obligation"),
        RecordToGet(held, "matching"),
        RecordToGet(held, "subject_access"),
        RecordToGet("01a2013c-0000-7000-8000-000000000000", "matching"),
        RecordToGet("not an id", "matching"),
        RecordToGet(text, "no_such_purpose"),
    ]
    batch = app.get_records(asks)
    singles = [
        _outcome(
            lambda a=a: app.get_record(
                a.record_id, a.purpose, fields=list(a.fields) or None, include_content=a.include_content
            )
        )
        for a in asks
    ]
    assert [type(b).__name__ for b in batch] == [type(s).__name__ for s in singles]
    pairs = list(zip(batch, singles, strict=True))
    assert all(_same(b, s) for b, s in pairs), pairs
    kinds = {type(b) for b in batch}
    assert {Record, PermissionDenied, NotFound, InvalidArgument} <= kinds
    assert isinstance(batch[0], Record) and batch[0].fields == {"text": "hello", "budget": "5"}
    assert isinstance(batch[2], Record) and batch[2].info.subject_pseudonym  # de-identified


def test_read_once_in_a_batch_is_released_once_and_whole(vault: Vault) -> None:
    """The same read-once record twice in one batch: the first item gets it, the second is
    NOT_FOUND, and it is gone afterwards; a narrowed read-once item is FAILED_PRECONDITION and
    destroys nothing."""
    app = vault.client("app")
    photo = app.put_record("ro-1", "face_photo", {}, content=PHOTO).record_id
    scan = app.put_record("ro-1", "face_scan", {"note": "n"}, content=PHOTO).record_id
    out = app.get_records(
        [
            RecordToGet(photo, "simulation", include_content=True),
            RecordToGet(photo, "simulation", include_content=True),
            RecordToGet(scan, "simulation", fields=["note"]),  # without its content: narrowed
        ]
    )
    assert isinstance(out[0], Record) and out[0].content == PHOTO
    assert isinstance(out[1], NotFound)
    assert isinstance(out[2], FailedPrecondition)
    with pytest.raises(NotFound):
        app.get_record(photo, "simulation", include_content=True)
    whole = app.get_records([RecordToGet(scan, "simulation", include_content=True)])
    assert isinstance(whole[0], Record) and whole[0].content == PHOTO
    with pytest.raises(NotFound):
        app.get_record(scan, "simulation", include_content=True)


def test_a_halted_vault_releases_nothing_through_a_batch(vault: Vault) -> None:
    app = vault.client("app")
    rid = app.put_record("h-1", "concern_text", {"text": "secret"}).record_id
    photo = app.put_record("h-1", "face_photo", {}, content=PHOTO).record_id
    integrity = vault.service.reads.integrity
    integrity.halt("test", "log_rollback_detected", "a test halts the vault")
    try:
        with pytest.raises(Unavailable) as err:
            app.get_records(
                [RecordToGet(rid, "matching"), RecordToGet(photo, "simulation", include_content=True)]
            )
        assert "secret" not in str(err.value)
    finally:
        integrity.clear("test")
    assert app.get_record(photo, "simulation", include_content=True).content == PHOTO


def test_two_concurrent_batches_over_the_same_subjects_both_commit(vault: Vault) -> None:
    """Two batches writing the same subjects in opposite orders (with idempotency keys) never
    wait on each other in a cycle: both commit, every record is stored once."""
    subjects = [f"c-{k}" for k in range(12)]
    errors: list[BaseException] = []

    def writer(order: list[str], tag: str) -> None:
        try:
            with VaultClient(vault.address, ALL_TOKENS["app"]) as c:
                for round_ in range(4):
                    items = [
                        RecordToPut(
                            s, "concern_text", {"text": tag}, idempotency_key=f"{tag}-{round_}-{s}"
                        )
                        for s in order
                    ]
                    out = c.put_records(items)
                    assert all(not isinstance(o, VaultError) for o in out), out
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [
        threading.Thread(target=writer, args=(subjects, "a")),
        threading.Thread(target=writer, args=(subjects[::-1], "b")),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []
    app = vault.client("app")
    assert sum(len(app.list_records(s).records) for s in subjects) == 2 * 4 * len(subjects)


DORMANCY = """
[dormancy]
description = "Separated after a year without use."
after_days = 365
notice_days = 30
separate = true
"""


@pytest.mark.parametrize("policy_text", [read_once_policy_text() + DORMANCY], indirect=False)
def test_a_batch_that_wakes_a_dormant_subject_reads_it_as_single_calls_would(vault: Vault) -> None:
    """Dormancy and batches: a reactivation read of a dormant subject wakes it, so a later item
    of the same batch reads its other record under an ordinary purpose, as the second of two
    single calls would; before the wake, that read is refused."""
    app = vault.client("app")
    profile = app.put_record("d-1", "member_profile", {"email": "d1@example.kr"}).record_id
    text = app.put_record("d-1", "concern_text", {"text": "asleep"}).record_id
    vault.clock.advance(400 * 86400)
    assert vault.service.sweep_dormancy()["dormant"] == 1
    (before,) = app.get_records([RecordToGet(text, "matching")])
    assert isinstance(before, PermissionDenied)
    out = app.get_records([RecordToGet(profile, "reactivation"), RecordToGet(text, "matching")])
    assert isinstance(out[0], Record) and out[0].fields == {"email": "d1@example.kr"}
    assert isinstance(out[1], Record) and out[1].fields == {"text": "asleep"}


def test_a_held_read_once_record_in_a_batch_is_consumed_once_and_destroyed_at_release(
    vault: Vault,
) -> None:
    """Holds, read-once and batches: under a legal hold a read-once record read in a batch is
    released once (a second item and later reads are NOT_FOUND), kept until the hold's release,
    and destroyed then."""
    app, legal = vault.client("app"), vault.client("legal")
    rid = app.put_record("held-1", "face_photo", {}, content=PHOTO).record_id
    hold = legal.place_hold("held-1", "evidence", "case-9", record_id=rid)
    whole = RecordToGet(rid, "simulation", include_content=True)
    out = app.get_records([whole, whole])
    assert isinstance(out[0], Record) and out[0].content == PHOTO
    assert isinstance(out[1], NotFound)
    (again,) = app.get_records([whole])
    assert isinstance(again, NotFound)
    assert vault.blob_files()  # kept under the hold
    assert legal.release_hold(hold["hold_id"])[1] == 1
    deadline = time.monotonic() + 5
    while vault.blob_files() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not vault.blob_files()


@pytest.mark.parametrize("policy_text", [read_once_policy_text() + DORMANCY], indirect=False)
def test_a_batch_put_reads_every_subject_key_at_once_and_still_follows_each_subject(
    vault: Vault,
) -> None:
    """A batch put reads its items' subject keys in one read; a key it did not find there
    (a subject new in this batch, one whose key is separated while it is dormant) is the single
    call's: created once, or brought back (a write is activity). An erased subject's item is
    refused. Every stored record reads back."""
    from vault_service.crypto.derive import subject_ref

    app = vault.client("app")
    app.put_record("awake", "concern_text", {"text": "before"})
    app.put_record("sleeper", "concern_text", {"text": "before"})
    app.put_record("gone", "concern_text", {"text": "before"})
    app.erase_subject("gone")
    vault.clock.advance(400 * 86400)
    app.put_record("awake", "concern_text", {"text": "still here"})  # activity: not dormant
    assert vault.service.sweep_dormancy()["dormant"] == 1
    store = vault.service.store
    sleeper = subject_ref(vault.service.keys.index_key, "sleeper")
    assert store.get_subject_key(sleeper) is None and store.get_separated_key(sleeper) is not None
    items = [
        RecordToPut("awake", "concern_text", {"text": "a"}),
        RecordToPut("new", "concern_text", {"text": "n1"}),
        RecordToPut("sleeper", "concern_text", {"text": "s"}),
        RecordToPut("new", "concern_text", {"text": "n2"}),
        RecordToPut("gone", "concern_text", {"text": "g"}),
    ]
    out = app.put_records(items)
    assert [type(o).__name__ for o in out] == ["PutResult"] * 4 + ["FailedPrecondition"]
    assert store.get_subject_key(sleeper) is not None  # woken by the write
    assert store.subject_state(sleeper).value == "active"  # type: ignore[union-attr]
    for item, result in zip(items[:4], out[:4], strict=True):
        assert not isinstance(result, VaultError)
        assert app.get_record(result.record_id, "matching").fields == item.fields
    assert len(app.list_records("new").records) == 2
