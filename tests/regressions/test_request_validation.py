"""Issue 17, defects 6, 7, 8 and 9: requests the vault must refuse, and what its refusals echo.

Decisions (docs/decisions/issue-17.md):

- D6: every time in a request (valid_from, valid_until, expires_at, at) is finite and in
  [0, 253402300799]; every duration (event_period_seconds) finite, > 0 and at most 100 years
  (3,155,760,000 s); 0 means unset. Else INVALID_ARGUMENT, nothing stored.
- D7: a share ends: ``expires_at`` and/or an event the policy declares (RecordEvent's name rule)
  with a positive period. Else INVALID_ARGUMENT.
- D8: UploadRecord with any message after the end marker is INVALID_ARGUMENT; nothing stored.
- D9: error messages echo at most 64 characters of a caller's value, non-printables replaced
  (the old code echoes names through repr(), which already escapes them: only the length is tested).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from typing import Any

import grpc
import pytest

from tests.regressions.conftest import ALL_TOKENS, DAY, Vault
from vault_service.api.v1 import vault_pb2 as pb
from vault_service.api.v1 import vault_pb2_grpc as pb_grpc
from vault_service.client import Consent
from vault_service.errors import InvalidArgument

NAN, INF = math.nan, math.inf
MAX_TIME = 253402300799.0  # 9999-12-31T23:59:59Z
MAX_PERIOD = 3_155_760_000.0  # 100 years


# --- defect 6: non-finite and out-of-range times ------------------------------------------------------


@pytest.mark.parametrize(
    "times",
    [
        {"valid_until": NAN},
        {"valid_until": INF},
        {"valid_from": INF},
        {"valid_from": NAN},
        {"valid_from": -INF},
        {"valid_from": -1.0},
        {"valid_until": MAX_TIME + 1},
        {"valid_from": 1_800_000_000.0, "valid_until": 1e300},
    ],
    ids=repr,
)
def test_grant_consent_refuses_a_time_out_of_range(vault: Vault, times: dict[str, float]) -> None:
    """Defect 6: GrantConsent with a non-finite or out-of-range valid_from/valid_until is
    INVALID_ARGUMENT and stores nothing (NaN must not become a consent without end)."""
    app = vault.client("app")
    app.put_record("member-1", "concern_text", {"text": "t"})
    with pytest.raises(InvalidArgument):
        app.grant_consent(
            "member-1",
            "clinic_proposal",
            {"concern_text": None},
            evidence_reference="match-request-1",
            grantee_principal="clinic",
            valid_from=times.get("valid_from", 0.0),
            valid_until=times.get("valid_until", 0.0),
        )
    assert app.list_consents("member-1") == []


def test_grant_consent_accepts_the_last_time_of_the_range(vault: Vault) -> None:
    """Defect 6: the range ends at 9999-12-31T23:59:59Z: one second later is INVALID_ARGUMENT,
    the last second itself is accepted."""
    app = vault.client("app")
    app.put_record("member-1", "concern_text", {"text": "t"})

    def grant(valid_until: float) -> Consent:
        return app.grant_consent(
            "member-1",
            "clinic_proposal",
            {"concern_text": None},
            evidence_reference="match-request-1",
            grantee_principal="clinic",
            valid_until=valid_until,
        )

    with pytest.raises(InvalidArgument):
        grant(MAX_TIME + 1)
    assert grant(MAX_TIME).valid_until == MAX_TIME


def _share_setup(vault: Vault) -> str:
    app = vault.client("app")
    rid = app.put_record("member-1", "concern_text", {"text": "t", "budget": "1"}).record_id
    app.grant_consent(
        "member-1",
        "clinic_proposal",
        {"concern_text": None},
        evidence_reference="match-request-1",
        grantee_principal="clinic",
    )
    return rid


@pytest.mark.parametrize(
    "end",
    [
        {"expires_at": NAN},
        {"expires_at": INF},
        {"expires_at": MAX_TIME + 1},
        {"event_name": "match_completed", "event_period_seconds": NAN},
        {"event_name": "match_completed", "event_period_seconds": INF},
        {"event_name": "match_completed", "event_period_seconds": MAX_PERIOD + 1},
        {"expires_at": NAN, "event_name": "match_completed", "event_period_seconds": 180 * DAY},
    ],
    ids=repr,
)
def test_create_share_refuses_a_time_out_of_range(vault: Vault, end: dict[str, Any]) -> None:
    """Defect 6: CreateShare with a non-finite or out-of-range expires_at or event period is
    INVALID_ARGUMENT and stores nothing (no share to be refused later as tampered)."""
    rid = _share_setup(vault)
    app = vault.client("app")
    with pytest.raises(InvalidArgument):
        app.create_share("member-1", "clinic", "clinic_proposal", [rid], ["text"], **end)
    assert app.list_shares("member-1") == []
    assert vault.client("clinic").received_shares() == []


@pytest.mark.parametrize("at", [NAN, -INF, -1.0], ids=repr)
def test_record_event_refuses_a_time_out_of_range(vault: Vault, at: float) -> None:
    """Defect 6: RecordEvent with a non-finite or negative time is INVALID_ARGUMENT (not
    INTERNAL) and records nothing: the event recorded next is the first one."""
    app = vault.client("app")
    app.put_record("member-1", "concern_text", {"text": "t"})
    with pytest.raises(InvalidArgument):
        app.record_event("member-1", "match_completed", at=at)
    assert app.record_event("member-1", "match_completed") is True


# --- defect 7: a share that can never end ------------------------------------------------------------


@pytest.mark.parametrize(
    "event_name",
    ["never happens; --", "never_happens", "Match_Completed", "x" * 65],
    ids=["punctuation", "undeclared", "upper-case", "too-long"],
)
def test_create_share_needs_a_reachable_end(vault: Vault, event_name: str) -> None:
    """Defect 7: a share without expires_at whose event name RecordEvent would reject, or that
    the policy does not declare, could never end: INVALID_ARGUMENT, nothing stored. An event the
    policy declares (match_completed, named by a retention rule) with a period is accepted."""
    rid = _share_setup(vault)
    app = vault.client("app")
    with pytest.raises(InvalidArgument):
        app.create_share(
            "member-1",
            "clinic",
            "clinic_proposal",
            [rid],
            ["text"],
            event_name=event_name,
            event_period_seconds=180 * DAY,
        )
    assert app.list_shares("member-1") == []
    made = app.create_share(
        "member-1",
        "clinic",
        "clinic_proposal",
        [rid],
        ["text"],
        event_name="match_completed",
        event_period_seconds=180 * DAY,
    )
    assert [s.share_id for s in app.list_shares("member-1")] == [made.share_id]


# --- defect 8: UploadRecord drops what follows its end marker ------------------------------------------


def _header() -> pb.UploadChunk:
    return pb.UploadChunk(
        header=pb.UploadHeader(subject_id="member-1", category="concern_photo", fields={"caption": "c"})
    )


TRAILERS = {
    "data": [pb.UploadChunk(data=b"dropped bytes")],
    "second end": [pb.UploadChunk(end=True)],
    "header": [_header()],
    "data and end": [pb.UploadChunk(data=b"more"), pb.UploadChunk(end=True)],
}


@pytest.mark.parametrize("after_end", sorted(TRAILERS))
def test_upload_refuses_messages_after_the_end_marker(vault: Vault, after_end: str) -> None:
    """Defect 8: an UploadRecord stream with any message after its end marker is INVALID_ARGUMENT
    and stores nothing: no record, no blob left behind."""

    def stream() -> Iterator[pb.UploadChunk]:
        yield _header()
        yield pb.UploadChunk(data=b"photo bytes")
        yield pb.UploadChunk(end=True)
        yield from TRAILERS[after_end]

    with grpc.insecure_channel(vault.address) as channel:
        stub = pb_grpc.VaultStub(channel)
        with pytest.raises(grpc.RpcError) as err:
            stub.UploadRecord(
                stream(), timeout=10, metadata=(("authorization", f"Bearer {ALL_TOKENS['app']}"),)
            )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert list(vault.client("app").iter_records("member-1")) == []
    deadline = time.monotonic() + 5
    while vault.blob_files() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert vault.blob_files() == []


# --- defect 9: errors echo the caller's input unbounded ------------------------------------------------

LONG = "a" * 5000


def _refusal(vault: Vault, call: str, value: str) -> str:
    """The message of the INVALID_ARGUMENT that ``call`` gets for a bad name ``value``."""
    app = vault.client("app")
    with pytest.raises(InvalidArgument) as err:
        if call == "put field":
            app.put_record("member-1", "concern_text", {value: "v"})
        elif call == "update field":
            rid = app.put_record("member-1", "concern_text", {"text": "t"}).record_id
            app.update_record(rid, {value: "v"})
        else:
            app.grant_consent(
                "member-1",
                "clinic_proposal",
                {value: None},
                evidence_reference="match-request-1",
                grantee_principal="clinic",
            )
    return str(err.value)


CALLS = ["put field", "update field", "grant category"]


@pytest.mark.parametrize("call", CALLS)
def test_errors_echo_at_most_64_characters(vault: Vault, call: str) -> None:
    """Defect 9: an INVALID_ARGUMENT message echoes at most 64 characters of a field or category
    name the caller sent, however long the name."""
    message = _refusal(vault, call, LONG)
    assert "a" * 65 not in message, f"{len(message)} characters echoed"
    assert len(message) <= 200
