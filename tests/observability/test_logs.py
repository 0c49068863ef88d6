"""Structured logs: JSON lines with the caller's correlation id, levels from the config, and no
PHI at any level, on success and on every error path (a unique marker is written everywhere a
caller can put a value, and must never appear in the log)."""

from __future__ import annotations

import hashlib
import io
import json
import secrets
import time
from pathlib import Path
from typing import Any

import grpc
import pytest

from tests.conftest import TOKENS, write_config
from tests.support.db import copy_ciphertext
from tests.support.serve import start_serving, stop_serving
from vault_service.api.v1 import vault_pb2 as pb
from vault_service.client import VaultClient
from vault_service.errors import VaultError
from vault_service.ids import new_record_id

#: an auditor principal the exercise adds to the test policy (BreachScope and TailAudit are the
#: auditor's)
AUDITOR_TOKEN = "auditor-token-0123456789"


def with_auditor(home: Path) -> None:
    """Add the auditor principal to the policy :func:`write_config` wrote in ``home`` (before
    the server starts)."""
    digest = hashlib.sha256(AUDITOR_TOKEN.encode()).hexdigest()
    policy = home / "policy.toml"
    policy.write_text(
        policy.read_text() + f'\n[principals.auditor]\nrole = "auditor"\ntoken_sha256 = "{digest}"\n'
    )


def _lines(home: Path) -> list[dict[str, Any]]:
    text = (home / "logs" / "vault.log").read_text()
    return [json.loads(line) for line in text.splitlines()]  # every line is one JSON object


def _exercise(addr: str, home: Path, marker: str) -> list[str]:
    """Calls that put the marker in every place a caller controls, on success and error paths;
    returns the correlation ids the client got for its failed calls. The server's policy must
    have the auditor principal (:func:`with_auditor`)."""
    correlation_ids = []
    subject = f"member-{marker}"
    email = f"{marker}@example.com"

    def expect_error(fn: Any, *args: Any, names_echoed: bool = False, **kw: Any) -> None:
        with pytest.raises(VaultError) as err:
            fn(*args, **kw)
        # a caller's own undeclared category or field *name* may be named back to it; a value never
        assert names_echoed or marker not in str(err.value)
        correlation_ids.append(err.value.correlation_id)

    with VaultClient(addr, TOKENS["app"]) as app:
        rid = app.put_record(
            subject,
            "concern_text",
            {"text": f"text {marker}", "budget": marker},
            idempotency_key=f"idem-{marker}",
        ).record_id
        photo = app.put_record(
            subject, "concern_photo", {"caption": marker}, content=marker.encode() * 100
        ).record_id
        assert marker in app.get_record(rid, "matching").fields["text"]
        app.update_record(rid, {"text": f"new {marker}"})
        app.grant_consent(
            subject,
            "clinic_proposal",
            {"concern_text": None},
            evidence_reference=f"evidence-{marker}",
            grantee_principal="clinic",
        )
        share = app.create_share(
            subject, "clinic", "clinic_proposal", [rid], ["text"], expires_at=2_000_000_000.0
        )
        with VaultClient(addr, TOKENS["clinic"]) as clinic:
            assert list(clinic.read_share(share.share_id))
            assert [r.share_id for r in clinic.received_shares()] == [share.share_id]
        # FindRecords: the marker in the value searched, found (case folded) and not found
        profile = app.put_record(
            subject, "member_profile", {"email": email, "contact": marker, "language": "ko"}
        ).record_id
        found = app.find_records("member_profile", "email", email.upper(), "customer_support")
        assert [r.record_id for r in found.records] == [profile]
        nobody = f"nobody-{marker}@example.com"
        assert not app.find_records("member_profile", "email", nobody, "customer_support").records
        # error paths, each with the marker in what the caller sent
        expect_error(app.put_record, subject, f"category-{marker}", {"text": "x"}, names_echoed=True)
        expect_error(
            app.put_record, subject, "concern_text", {f"field-{marker}": "x"}, names_echoed=True
        )
        expect_error(app.put_record, marker * 100, "concern_text", {"text": marker})  # too long
        expect_error(app.get_record, rid, f"purpose-{marker}", names_echoed=True)
        expect_error(app.get_record, marker, "matching")
        expect_error(app.get_record, new_record_id(), "matching")
        expect_error(app.get_record, rid, "customer_support", fields=[f"f-{marker}"], names_echoed=True)
        expect_error(
            app.put_record, subject, "concern_text", {"text": "other"}, idempotency_key=f"idem-{marker}"
        )
        expect_error(app.create_share, subject, f"clinic-{marker}", "matching", [rid], ["text"])
        find = app.find_records
        expect_error(find, "member_profile", "contact", email, "customer_support")  # not searchable
        expect_error(find, "member_profile", "email", marker * 100, "customer_support")  # too long
        expect_error(find, "member_profile", "email", email, "matching")  # not the purpose's category
        expect_error(find, "member_profile", "email", email, f"purpose-{marker}", names_echoed=True)
        expect_error(find, f"category-{marker}", "email", email, "customer_support", names_echoed=True)
        expect_error(
            find, "member_profile", f"field-{marker}", email, "customer_support", names_echoed=True
        )
        # BreachScope and TailAudit are the auditor's: the application is refused
        expect_error(app.breach_scope, 0.0, time.time() + 60, principal=f"app-{marker}")
        expect_error(lambda: list(app.tail_audit(follow=True)))
        # the other RPCs the application may call, with the marker wherever it can go
        uploaded = app.upload_record(
            io.BytesIO(marker.encode() * 50),
            subject_id=subject,
            category="concern_photo",
            fields={"caption": f"up {marker}"},
        ).record_id
        assert marker.encode() in b"".join(app.download_content(uploaded, "matching"))
        listed = {r.record_id for r in app.iter_records(subject)}
        assert {rid, photo, profile, uploaded} <= listed
        (grant,) = [g for g in app.list_consents(subject) if g.purpose == "clinic_proposal"]
        assert app.record_event(subject, "match_completed")
        assert app.restrict_record(uploaded) and app.restrict_record(uploaded, False)
        assert [s.share_id for s in app.list_shares(subject)] == [share.share_id]
        app.list_notices()
        app.revoke_share(share.share_id)
        app.revoke_consent(grant.grant_id)
        app.delete_record(uploaded)
        expect_error(app.record_event, subject, f"event-{marker}")  # not an event name
        expect_error(lambda: list(app.export_subject(subject, "subject_access")))  # not the app's
        expect_error(app.place_hold, subject, f"reason {marker}", f"case-{marker}")
        expect_error(app.list_holds, subject)
        expect_error(app.release_hold, new_record_id())
        expect_error(app.restrict_processing, subject, True)
        expect_error(app.query_audit, principal=f"app-{marker}")
        copy_ciphertext(home, photo, rid)  # tampering: DATA_LOSS
        expect_error(app.get_record, rid, "matching")
        expect_error(app.erase_subject, marker * 100)
    with VaultClient(addr, AUDITOR_TOKEN) as auditor:
        # BreachScope: the whole trail (the releases above), then marker-shaped names as filters
        end = time.time() + 60
        assert auditor.breach_scope(0.0, end).releases
        for filters in ({"principal": f"app-{marker}"}, {"category": marker}, {"purpose": marker}):
            assert not auditor.breach_scope(0.0, end, **filters).subjects
        both = auditor.breach_scope(0.0, end, principal=marker, category="member_profile")
        assert not both.subjects
        expect_error(auditor.breach_scope, 0.0, end, principal=f"App {marker}")  # not a name
        expect_error(auditor.breach_scope, end, 0.0, purpose=marker)  # from after to
        expect_error(auditor.find_records, "member_profile", "email", email, "customer_support")
        events, _ = auditor.query_audit(principal="app", page_size=50)
        assert events
        assert auditor.query_audit(principal=f"app-{marker}")[0] == []
        auditor.verify_deletion()
        # TailAudit: the whole trail (the calls above: no entry holds the marker, but for the
        # breach scope's, whose reasons record the auditor's own filters by design), a page from
        # a cursor, a follow ended by its deadline, and a bad cursor, limit and cursor past the end
        tailed = list(auditor.tail_audit())
        assert len(tailed) > 30
        assert not [e for e in tailed if marker in repr(e) and e.action != "audit.breach_scope"]
        assert len(list(auditor.tail_audit(len(tailed) - 3, limit=2))) == 2
        with pytest.raises(VaultError):  # DEADLINE_EXCEEDED: the stream never ends by itself
            list(auditor.tail_audit(len(tailed), follow=True, timeout=1.0))
        expect_error(lambda: list(auditor.tail_audit(-1)))
        expect_error(lambda: list(auditor.tail_audit(limit=-5)))
        expect_error(lambda: list(auditor.tail_audit(10**12)))
    with VaultClient(addr, f"token-{marker}") as stranger:
        expect_error(stranger.get_record, rid, "matching")
    # a raw request the SDK would not send: a non-UTF-8 string field's bytes carry the marker
    with grpc.insecure_channel(addr) as channel:
        request = pb.PutRecordRequest(subject_id=subject, category="concern_text")
        content_type = marker.encode() + b"\xff"  # field 4, a string: invalid UTF-8
        raw = request.SerializeToString() + b"\x22" + bytes([len(content_type)]) + content_type
        call = channel.unary_unary(
            "/vault.v1.Vault/PutRecord", request_serializer=None, response_deserializer=None
        )
        with pytest.raises(grpc.RpcError) as rpc_err:
            call(raw, metadata=(("authorization", f"Bearer {TOKENS['app']}"),), timeout=10)
        assert marker not in (rpc_err.value.details() or "")
    return correlation_ids


def test_no_marker_in_logs_at_debug_and_every_error_path_has_its_correlation_id(tmp_path: Path) -> None:
    config = write_config(tmp_path)  # logging.level DEBUG, JSON, to logs/vault.log
    with_auditor(tmp_path)
    marker = "phi" + secrets.token_hex(8)
    proc, addr = start_serving(config)
    try:
        correlation_ids = _exercise(addr, tmp_path, marker)
    finally:
        assert stop_serving(proc) == 0
    text = (tmp_path / "logs" / "vault.log").read_text()
    assert marker not in text
    assert marker.encode().hex() not in text
    lines = _lines(tmp_path)
    assert {"ts", "level", "logger", "pid", "msg"} <= set(lines[0])
    logged = {line.get("correlation_id") for line in lines if line["msg"] == "rpc failed"}
    assert set(correlation_ids) - {""} <= logged  # every failure the client saw is in the log
    assert any(line.get("security_event") == "integrity_failure" for line in lines)
    # the lines written while serving a call carry its id (the denial, then the failure)
    denial = [line for line in lines if line["msg"] == "denied"]
    assert denial and all(line.get("correlation_id") for line in denial)


def test_unexpected_exception_is_logged_by_type_and_frames_never_its_text(
    running: Any, vault_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    marker = "phi" + secrets.token_hex(8)

    def broken(*args: Any, **kw: Any) -> Any:
        raise RuntimeError(f"value {marker} leaked by a bug")

    monkeypatch.setattr(running.service, "put_record", broken)
    with (
        VaultClient(f"127.0.0.1:{running.port}", TOKENS["app"]) as app,
        pytest.raises(VaultError) as err,
    ):
        app.put_record("member-1", "concern_text", {"text": marker})
    assert err.value.status.value == "INTERNAL" and marker not in str(err.value)
    text = (vault_home / "logs" / "vault.log").read_text()
    assert marker not in text
    internal = [line for line in _lines(vault_home) if line.get("status") == "INTERNAL"]
    assert len(internal) == 1
    assert internal[0]["level"] == "ERROR"
    assert internal[0]["error_type"] == "RuntimeError"
    assert internal[0]["correlation_id"] == err.value.correlation_id
    assert any("broken" in frame for frame in internal[0]["stack"])


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_level_and_format_come_from_the_config(tmp_path: Path, fmt: str) -> None:
    config = write_config(tmp_path, logging__level='"WARNING"', logging__format=f'"{fmt}"')
    proc, addr = start_serving(config)
    try:
        with VaultClient(addr, TOKENS["app"]) as app, pytest.raises(VaultError):
            app.get_record(new_record_id(), "matching")  # NOT_FOUND: logged at INFO
    finally:
        assert stop_serving(proc) == 0
    text = (tmp_path / "logs" / "vault.log").read_text()
    assert "rpc failed" not in text  # INFO is below WARNING
    write_config(tmp_path, logging__level='"INFO"', logging__format=f'"{fmt}"')
    proc, addr = start_serving(config)
    try:
        with VaultClient(addr, TOKENS["app"]) as app, pytest.raises(VaultError) as err:
            app.get_record(new_record_id(), "matching")
    finally:
        assert stop_serving(proc) == 0
    failed = [
        line
        for line in (tmp_path / "logs" / "vault.log").read_text().splitlines()
        if "rpc failed" in line
    ]
    assert len(failed) == 1
    if fmt == "json":
        line = json.loads(failed[0])
        assert line["status"] == "NOT_FOUND" and line["correlation_id"] == err.value.correlation_id
    else:
        assert (
            "status=NOT_FOUND" in failed[0] and f"correlation_id={err.value.correlation_id}" in failed[0]
        )
