"""End to end over a real gRPC server on a free port, through the Python client SDK, on each
record-store backend (SQLite and PostgreSQL)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from tests.conftest import BACKENDS
from tests.support.db import RawDb, copy_ciphertext
from vault_service.api.v1 import vault_pb2 as pb
from vault_service.api.v1 import vault_pb2_grpc as pb_grpc
from vault_service.errors import (
    AlreadyExists,
    DataLoss,
    FailedPrecondition,
    Internal,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
)

pytestmark = pytest.mark.parametrize("vault_home", BACKENDS, indirect=True)

CONCERN = {
    "text": "두 번째 수술 상담 marker-7731",
    "body_area": "nose",
    "budget": "3000000",
    "stay_schedule": "2026-12-01..2026-12-09",
}


def db(home: Path) -> RawDb:
    return RawDb(home)


def test_put_get_round_trip_with_content(app: Any) -> None:
    put = app.put_record("member-1", "concern_text", CONCERN)
    assert put.version == 1
    got = app.get_record(put.record_id, "matching")
    assert dict(got.fields) == CONCERN
    assert got.info.category == "concern_text" and got.info.version == 1
    photo = bytes(range(256)) * 300
    put2 = app.put_record(
        "member-1",
        "concern_photo",
        {"caption": "left side"},
        content=photo,
        content_type="image/jpeg",
    )
    got2 = app.get_record(put2.record_id, "matching", include_content=True)
    assert got2.content == photo and got2.info.content_type == "image/jpeg"
    assert got2.info.content_length == len(photo)


def test_field_subset_and_purpose_field_limits(app: Any, clinic: Any, running: Any) -> None:
    rid = app.put_record("member-2", "concern_text", CONCERN).record_id
    assert dict(app.get_record(rid, "matching", fields=["budget"]).fields) == {
        "budget": CONCERN["budget"]
    }
    with pytest.raises(PermissionDenied):
        app.get_record(rid, "matching", fields=["budget", "email"])
    # the clinic reads only through a share, never directly, whatever the consent
    running.service.grant_consent(
        app_call(),
        "member-2",
        "clinic_proposal",
        {"concern_text": None},
        running.service.clock.now(),
        None,
        "form-123",
        grantee_principal="clinic",
    )
    with pytest.raises(PermissionDenied):
        clinic.get_record(rid, "clinic_proposal")
    share = app.create_share(
        "member-2",
        "clinic",
        "clinic_proposal",
        [rid],
        ["text", "budget"],
        expires_at=running.service.clock.now() + 3600,
    )
    (record,) = list(clinic.read_share(share.share_id))
    assert dict(record.fields) == {"text": CONCERN["text"], "budget": CONCERN["budget"]}


def app_call() -> Any:
    from vault_service.policy import Principal
    from vault_service.service import CallContext

    return CallContext(Principal("app", "application"), "test")


def test_unknown_or_missing_token_is_unauthenticated(running: Any) -> None:
    from vault_service.client import VaultClient

    for token in ("not-a-token", ""):
        with VaultClient(f"127.0.0.1:{running.port}", token) as c, pytest.raises(Unauthenticated):
            c.list_records("member-1")
    with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
        stub = pb_grpc.VaultStub(channel)
        with pytest.raises(grpc.RpcError) as err:
            stub.ListRecords(pb.ListRecordsRequest(subject_id="x"), timeout=5)
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_missing_or_unknown_purpose_is_invalid_argument(app: Any) -> None:
    rid = app.put_record("member-3", "concern_text", CONCERN).record_id
    with pytest.raises(InvalidArgument, match="purpose is required"):
        app.get_record(rid, "")
    with pytest.raises(InvalidArgument, match="unknown purpose"):
        app.get_record(rid, "marketing")


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"subject_id": "", "category": "concern_text", "fields": {"text": "x"}}, InvalidArgument),
        ({"subject_id": "s", "category": "nope", "fields": {"text": "x"}}, InvalidArgument),
        (
            {"subject_id": "s", "category": "concern_text", "fields": {"email": "x"}},
            InvalidArgument,
        ),
        ({"subject_id": "s", "category": "concern_text", "fields": {}}, InvalidArgument),
        (
            {
                "subject_id": "s",
                "category": "concern_text",
                "fields": {"text": "x"},
                "content": b"img",
            },
            InvalidArgument,
        ),
        (
            {"subject_id": "s" * 300, "category": "concern_text", "fields": {"text": "x"}},
            InvalidArgument,
        ),
        (
            {
                "subject_id": "s",
                "category": "concern_text",
                "fields": {"text": "x" * ((1 << 20) + 1)},
            },
            ResourceExhausted,
        ),
    ],
)
def test_bad_puts_get_clear_errors(app: Any, kwargs: dict[str, Any], error: type) -> None:
    kwargs = dict(kwargs)  # the parameter is shared by every backend's run
    with pytest.raises(error):
        app.put_record(kwargs.pop("subject_id"), kwargs.pop("category"), kwargs.pop("fields"), **kwargs)


def test_malformed_record_id(app: Any) -> None:
    with pytest.raises(InvalidArgument, match="record_id"):
        app.get_record("../../etc/passwd", "matching")


def test_erased_subject_every_record_not_found_at_once(app: Any, running: Any, vault_home: Path) -> None:
    ids = [app.put_record("member-erase", "concern_text", CONCERN).record_id for _ in range(30)]
    photo = app.put_record(
        "member-erase", "concern_photo", {"caption": "c"}, content=b"p" * 5000
    ).record_id
    other = app.put_record("member-keep", "concern_text", CONCERN).record_id
    assert app.erase_subject("member-erase") is True
    for rid in [*ids, photo]:
        with pytest.raises(NotFound):
            app.get_record(rid, "matching")
    assert app.list_records("member-erase").records == []
    assert app.get_record(other, "matching").fields["text"] == CONCERN["text"]
    # The erasure itself was O(1): record rows are still there until the background purge.
    with db(vault_home) as conn:
        assert conn.execute("SELECT COUNT(*) FROM records").fetchone()[0] == 32
        assert conn.execute("SELECT COUNT(*) FROM subject_keys").fetchone()[0] == 1
    while running.service.purge_erased(7):
        pass
    with db(vault_home) as conn:
        assert conn.execute("SELECT COUNT(*) FROM records").fetchone()[0] == 1
        assert conn.execute("SELECT COUNT(*) FROM record_payloads").fetchone()[0] == 4
    assert list(running.service.blobs.list_refs()) == []
    assert app.erase_subject("member-erase") is False
    with pytest.raises(FailedPrecondition, match="erased"):
        app.put_record("member-erase", "concern_text", CONCERN)


def test_payload_row_copied_onto_another_record_is_data_loss(app: Any, vault_home: Path) -> None:
    a = app.put_record("member-a", "concern_text", {"text": "secret-A-plaintext"}).record_id
    b = app.put_record("member-a", "concern_text", {"text": "secret-B-plaintext"}).record_id
    copy_ciphertext(vault_home, a, b)
    with pytest.raises(DataLoss) as err:
        app.get_record(b, "matching")
    assert "secret" not in str(err.value)
    assert err.value.correlation_id
    assert app.get_record(a, "matching").fields["text"] == "secret-A-plaintext"


def test_wrapped_keys_swapped_across_records_and_subjects_are_data_loss(
    app: Any, vault_home: Path
) -> None:
    a = app.put_record("member-x", "concern_text", {"text": "x1"}).record_id
    b = app.put_record("member-x", "concern_text", {"text": "x2"}).record_id
    c = app.put_record("member-y", "concern_text", {"text": "y1"}).record_id
    with db(vault_home) as conn:
        conn.execute("PRAGMA foreign_keys=OFF")
        key_a = conn.execute("SELECT wrapped FROM record_keys WHERE record_id = ?", (a,)).fetchone()[0]
        conn.execute("UPDATE record_keys SET wrapped = ? WHERE record_id = ?", (key_a, b))
        sk = conn.execute("SELECT subject_ref, wrapped FROM subject_keys").fetchall()
        conn.execute("UPDATE subject_keys SET wrapped = ? WHERE subject_ref = ?", (sk[0][1], sk[1][0]))
    for rid in (b, c):
        with pytest.raises(DataLoss):
            app.get_record(rid, "matching")


def test_update_creates_version_and_shreds_old(app: Any, vault_home: Path) -> None:
    rid = app.put_record("member-u", "concern_photo", {"caption": "v1"}, content=b"first").record_id
    res = app.update_record(rid, {"caption": "v2"}, content=b"second")
    assert res.version == 2
    got = app.get_record(rid, "matching", include_content=True)
    assert got.fields == {"caption": "v2"} and got.content == b"second"
    with db(vault_home) as conn:
        assert conn.execute(
            "SELECT version FROM record_keys WHERE record_id = ?", (rid,)
        ).fetchall() == [(2,)]
        assert {r[0] for r in conn.execute("SELECT version FROM record_payloads")} == {2}
    blobs = list((vault_home / "data" / "blobs").rglob(f"{rid}*"))
    assert [b.name for b in blobs] == [f"{rid}.v2"]
    with pytest.raises(FailedPrecondition):
        app.update_record(rid, {"caption": "v3"}, expected_version=1)
    assert app.update_record(rid, {"caption": "v3"}, expected_version=2).version == 3


def test_delete_shreds_record_and_blob(app: Any, vault_home: Path) -> None:
    rid = app.put_record("member-d", "concern_photo", {"caption": "c"}, content=b"x" * 100).record_id
    app.delete_record(rid)
    with pytest.raises(NotFound):
        app.get_record(rid, "matching")
    with pytest.raises(NotFound):
        app.delete_record(rid)
    with db(vault_home) as conn:
        assert conn.execute("SELECT COUNT(*) FROM record_keys").fetchone()[0] == 0
    assert not list((vault_home / "data" / "blobs").rglob(f"{rid}*"))


def test_list_is_metadata_only_and_paginated(app: Any) -> None:
    ids = [app.put_record("member-l", "concern_text", {"text": f"t{i}"}).record_id for i in range(7)]
    page = app.list_records("member-l", page_size=3)
    assert len(page.records) == 3 and page.next_page_token
    assert [r.record_id for r in app.iter_records("member-l", page_size=3)] == sorted(ids)
    assert page.records[0].field_names == ("text",)
    with pytest.raises(InvalidArgument):
        app.list_records("member-l", page_size=501)
    with pytest.raises(InvalidArgument):
        app.list_records("member-l", page_token="garbage")


def test_idempotency_key(app: Any, vault_home: Path) -> None:
    first = app.put_record("member-i", "concern_text", {"text": "a"}, idempotency_key="k1")
    again = app.put_record("member-i", "concern_text", {"text": "a"}, idempotency_key="k1")
    assert again.record_id == first.record_id
    with pytest.raises(AlreadyExists):
        app.put_record("member-i", "concern_text", {"text": "b"}, idempotency_key="k1")
    assert len(app.list_records("member-i").records) == 1


def test_roles_deny_by_default_without_existence_oracle(app: Any, clinic: Any, operator: Any) -> None:
    rid = app.put_record("member-r", "concern_text", CONCERN).record_id
    absent = "01a20124-9ed1-7178-b4d7-fbb2bf0320ca"
    for reader, purpose in ((operator, "matching"), (clinic, "matching")):
        for target in (rid, absent):
            with pytest.raises(PermissionDenied) as err:
                reader.get_record(target, purpose)
            assert str(err.value) == "permission denied"
    with pytest.raises(PermissionDenied):
        clinic.put_record("member-r", "concern_text", CONCERN)
    with pytest.raises(PermissionDenied):
        operator.erase_subject("member-r")
    with pytest.raises(NotFound):
        app.get_record(absent, "matching")


def test_audit_rows_without_subject_ids(app: Any, clinic: Any, running: Any) -> None:
    rid = app.put_record("member-audit-777", "concern_text", CONCERN).record_id
    app.get_record(rid, "matching")
    with pytest.raises(PermissionDenied):
        clinic.get_record(rid, "matching")
    rows = running.service.store.audit_rows()
    summary = [(r.principal, r.action, r.decision) for r in rows]
    assert ("app", "record.put", "allow") in summary
    assert ("app", "record.get", "allow") in summary
    assert ("clinic", "record.get", "deny") in summary
    for r in rows:
        assert "member-audit-777" not in repr(r)
        assert r.correlation_id
    assert {r.subject_pseudonym for r in rows if r.action == "record.put"} == {
        running.service.pseudonym(running.service.subject_ref("member-audit-777"))
    }


def test_unexpected_error_is_internal_without_exception_text(app: Any, running: Any) -> None:
    rid = app.put_record("member-e", "concern_photo", {"caption": "c"}, content=b"z").record_id

    def explode(ref: str) -> bytes:
        raise RuntimeError("leaky-internal-detail /srv/secret")

    running.service.blobs.get = explode
    with pytest.raises(Internal) as err:
        app.get_record(rid, "matching", include_content=True)
    assert "leaky" not in str(err.value) and "secret" not in str(err.value)
    assert err.value.correlation_id in str(err.value)


def test_database_locked_fails_closed_with_unavailable(vault_home: Path) -> None:
    """A lock held elsewhere (SQLite: an exclusive transaction; PostgreSQL: a table lock) longer
    than the store waits: UNAVAILABLE, nothing written, and writes work again once it is gone."""
    from tests.conftest import TOKENS
    from vault_service.app import build_service
    from vault_service.client import VaultClient
    from vault_service.config import load_config
    from vault_service.errors import Unavailable
    from vault_service.rpc.server import start_server
    from vault_service.storage import SqliteRecordStore

    config = load_config(vault_home / "vault.toml", {"VAULT_STORAGE_POSTGRES_TIMEOUT_SECONDS": "0.3"})
    store = None
    if config.storage.backend == "sqlite":
        store = SqliteRecordStore(config.path(config.storage.sqlite_path), busy_timeout_ms=100)
        store.migrate()
    server = start_server(config, {}, assembly=build_service(config, {}, store=store))
    try:
        with VaultClient(f"127.0.0.1:{server.port}", TOKENS["app"]) as c:
            c.put_record("m", "concern_text", {"text": "before"})
            locker = RawDb(vault_home)
            if locker.backend == "postgres":
                locker.execute("LOCK TABLE records IN ACCESS EXCLUSIVE MODE")
            else:
                locker.conn.isolation_level = None
                locker.execute("BEGIN EXCLUSIVE")
            with pytest.raises(Unavailable):
                c.put_record("m", "concern_text", {"text": "during"})
            if locker.backend == "postgres":
                locker.conn.rollback()
            else:
                locker.execute("ROLLBACK")
            locker.conn.close()
            assert len(c.list_records("m").records) == 1
            c.put_record("m", "concern_text", {"text": "after"})
            assert len(c.list_records("m").records) == 2
    finally:
        server.stop(0)


def test_health_and_reflection(running: Any) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for name in ("", "vault.v1.Vault"):
            resp = health.Check(health_pb2.HealthCheckRequest(service=name), timeout=5)
            assert resp.status == health_pb2.HealthCheckResponse.SERVING
        refl = reflection_pb2_grpc.ServerReflectionStub(channel)
        responses = refl.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5
        )
        names = {s.name for r in responses for s in r.list_services_response.service}
        assert "vault.v1.Vault" in names and "grpc.health.v1.Health" in names


def test_correlation_id_in_trailing_metadata(running: Any) -> None:
    from tests.conftest import TOKENS

    with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
        stub = pb_grpc.VaultStub(channel)
        _, call = stub.ListRecords.with_call(
            pb.ListRecordsRequest(subject_id="x"),
            timeout=5,
            metadata=(("authorization", f"Bearer {TOKENS['app']}"),),
        )
        trailing = dict(call.trailing_metadata())
        assert len(trailing["x-correlation-id"]) == 16


def test_record_calls_run_on_their_own_thread_and_the_rest_on_the_pool(
    app: Any, vault_home: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """On SQLite with the local keyring the record calls are served by their own one-thread pool,
    elsewhere by the server's pool with every other call (vault_service/rpc/sizing.py): each
    failed call's log line is written by the thread that served it."""
    import logging

    from vault_service.config import load_config
    from vault_service.ids import new_record_id
    from vault_service.rpc.sizing import record_threads

    lane = record_threads(load_config(vault_home / "vault.toml", {}))
    caplog.set_level(logging.INFO, logger="vault_service.rpc")
    for _ in range(3):
        with pytest.raises(NotFound):
            app.get_record(new_record_id(), "matching")
    with pytest.raises(InvalidArgument):
        app.put_record("", "concern_text", {"text": "x"})
    with pytest.raises((InvalidArgument, NotFound)):
        app.revoke_share("not-a-share")
    served = [r.threadName for r in caplog.records if r.getMessage() == "rpc failed"]
    assert len(served) == 5
    record = "rpc-record_0" if lane else "rpc_"
    assert all(t.startswith(record) for t in served[:4]), served
    assert served[4].startswith("rpc_"), served
