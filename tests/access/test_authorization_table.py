"""Every RPC x every role x grant present/absent/expired/revoked x subject restricted or not, over a
real gRPC server, against expected statuses derived here from the policy file by rules written
independently of ``policy.decide`` (so the table checks the implementation, not itself)."""

from __future__ import annotations

import hashlib
import io
import itertools
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from tests.conftest import ROOT, write_config
from vault_service.api.v1 import vault_pb2
from vault_service.client import RecordToGet, RecordToPut, VaultClient
from vault_service.config import load_config
from vault_service.errors import VaultError
from vault_service.policy import load_policy
from vault_service.rpc.actions import RPC_ACTIONS
from vault_service.rpc.server import start_server

POLICY = load_policy((ROOT / "policies" / "clinic-matching.toml").read_text())
ROLES = sorted(POLICY.roles)  # every role of the policy file, so no role is left out
GRANTS = ["present", "absent", "expired", "revoked"]
RESTRICTED = [False, True]


def token(role: str) -> str:
    return f"token-of-{role}-0123456789"


# The purpose each role reads under (its own, if it has one; otherwise one it lacks).
READ_PURPOSE = {"application": "matching", "clinic": "clinic_proposal"}
EXPORT_PURPOSE = "subject_access"
FIND_PURPOSE = "customer_support"  # may read member_profile.email, the searchable field


def expected(rpc: str, role: str, grant: str, restricted: bool) -> str:
    """The status the policy file promises, by rules independent of the implementation."""
    spec = POLICY.roles[role]
    if RPC_ACTIONS[rpc].value not in {a.value for a in spec.actions}:
        return "PERMISSION_DENIED"
    if rpc in ("GetRecord", "DownloadContent", "BatchGetRecords"):
        purpose = POLICY.purposes[READ_PURPOSE.get(role, "matching")]
        if purpose.name not in spec.purposes:
            return "PERMISSION_DENIED"
        if restricted and not purpose.restriction_exempt:
            return "PERMISSION_DENIED"
        if purpose.consent_required and grant != "present":
            return "PERMISSION_DENIED"
        return "OK"
    if rpc == "ExportSubject":
        return "OK" if EXPORT_PURPOSE in spec.purposes else "PERMISSION_DENIED"
    if rpc == "FindRecords":  # the static rights only: a record it may not read is left out
        return "OK" if FIND_PURPOSE in spec.purposes else "PERMISSION_DENIED"
    if rpc == "RevokeConsent":
        return "OK" if grant != "absent" else "NOT_FOUND"
    if rpc == "CreateShare":  # a disclosure: needs the consent, and is refused under restriction
        return "OK" if grant == "present" and not restricted else "PERMISSION_DENIED"
    if rpc == "ReadShare":  # the share exists only if it could be created (present, revoked)
        return "OK" if grant == "present" and not restricted else "PERMISSION_DENIED"
    if rpc == "RevokeShare":
        return "OK" if grant in ("present", "revoked") else "NOT_FOUND"
    if rpc == "ReleaseHold":  # no hold exists in these cases
        return "NOT_FOUND"
    return "OK"  # storage, corrections, erasure, consent and restriction requests: role decides


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    home = tmp_path_factory.mktemp("authz")
    write_config(home)
    policy = (ROOT / "policies" / "clinic-matching.toml").read_text()
    for role in ROLES:
        digest = hashlib.sha256(token(role).encode()).hexdigest()
        policy += f'\n[principals.p-{role.replace("_", "-")}]\nrole = "{role}"\n'
        policy += f'token_sha256 = "{digest}"\n'
    (home / "policy.toml").write_text(policy)
    running = start_server(load_config(home / "vault.toml", {}), {})
    yield running
    running.stop(0)


def _status(fn: Callable[[], object]) -> str:
    try:
        result = fn()
        if isinstance(result, Iterator):
            list(result)
    except VaultError as exc:
        return exc.status.value
    return "OK"


def test_every_rpc_declares_an_action() -> None:
    methods = {m.name for m in vault_pb2.DESCRIPTOR.services_by_name["Vault"].methods}
    assert methods == set(RPC_ACTIONS)


def test_authorization_table(server: Any) -> None:
    address = f"127.0.0.1:{server.port}"
    svc = server.service
    clients = {role: VaultClient(address, token(role)) for role in ROLES}
    setup = clients["application"]
    cases = list(itertools.product(sorted(RPC_ACTIONS), ROLES, GRANTS, RESTRICTED))
    assert len(cases) == len(RPC_ACTIONS) * len(ROLES) * len(GRANTS) * len(RESTRICTED) == 31 * 6 * 8
    wants = Counter(expected(*case) for case in cases)
    assert wants["OK"] > 50 and wants["PERMISSION_DENIED"] > 200 and wants["NOT_FOUND"] > 0
    assert expected("GetRecord", "application", "absent", True) == "PERMISSION_DENIED"
    assert expected("GetRecord", "application", "absent", False) == "OK"
    assert expected("GetRecord", "clinic", "present", False) == "PERMISSION_DENIED"  # shares only
    assert expected("ReadShare", "clinic", "present", False) == "OK"
    assert {expected("ReadShare", "clinic", g, False) for g in GRANTS[1:]} == {"PERMISSION_DENIED"}
    assert expected("UpdateRecord", "application", "absent", True) == "OK"
    mismatches = []
    for n, (rpc, role, grant, restricted) in enumerate(cases):
        subject = f"subject-{n}"
        rid = setup.put_record(subject, "concern_text", {"text": "t", "budget": "1"}).record_id
        photo_id = setup.put_record(
            subject, "concern_photo", {"caption": "c"}, content=b"image"
        ).record_id
        grant_id = "01a2013c-0000-7000-8000-000000000000"
        share_id = "01a2013c-0000-7000-8000-0000000000aa"
        if grant != "absent":
            now = time.time()
            window = (now - 200, now - 100) if grant == "expired" else (now - 1, now + 3600)
            consent = setup.grant_consent(
                subject,
                "clinic_proposal",
                {"concern_text": None},
                evidence_reference="f-1",
                grantee_role="clinic",
                valid_from=window[0],
                valid_until=window[1],
            )
            grant_id = consent.grant_id
            if rpc in ("ReadShare", "RevokeShare") and grant != "expired":
                share_id = setup.create_share(
                    subject,
                    "p-clinic",
                    "clinic_proposal",
                    [rid],
                    ["text"],
                    expires_at=time.time() + 3600,
                ).share_id
            if grant == "revoked":
                setup.revoke_consent(grant_id)
        if restricted:
            assert svc.set_restriction(_officer_call(), subject, True)
        c = clients[role]
        args = (subject, rid, role, grant_id, share_id, restricted)
        got = _status(lambda: _invoke(photo_id, rpc, c, *args))  # noqa: B023
        want = expected(rpc, role, grant, restricted)
        if got != want:
            mismatches.append((rpc, role, grant, restricted, got, want))
    for c in clients.values():
        c.close()
    assert mismatches == []


def _invoke(
    photo_id: str,
    rpc: str,
    c: VaultClient,
    subject: str,
    rid: str,
    role: str,
    grant_id: str,
    share_id: str,
    restricted: bool,
) -> object:
    """Call ``rpc`` as client ``c`` with the case's arguments."""
    if rpc == "PutRecord":
        return c.put_record(subject, "concern_text", {"text": "x"})
    if rpc == "GetRecord":
        return c.get_record(rid, READ_PURPOSE.get(role, "matching"))
    if rpc == "BatchPutRecords":  # a batch of one: its item's status is the single call's
        return _only(c.put_records([RecordToPut(subject, "concern_text", {"text": "x"})]))
    if rpc == "BatchGetRecords":
        return _only(c.get_records([RecordToGet(rid, READ_PURPOSE.get(role, "matching"))]))
    if rpc == "ListRecords":
        return c.list_records(subject)
    if rpc == "UpdateRecord":
        return c.update_record(rid, {"text": "corrected"})
    if rpc == "DeleteRecord":
        return c.delete_record(rid)
    if rpc == "EraseSubject":
        return c.erase_subject(subject)
    if rpc == "QueryAudit":
        return c.query_audit(page_size=1)
    if rpc == "BreachScope":
        return c.breach_scope(0.0, time.time() + 60)
    if rpc == "TailAudit":  # a page of the trail (a follow would never end)
        return c.tail_audit(limit=5)
    if rpc == "GrantConsent":
        return c.grant_consent(
            subject,
            "clinic_proposal",
            {"concern_text": None},
            evidence_reference="f-2",
            grantee_role="clinic",
        )
    if rpc == "RevokeConsent":
        return c.revoke_consent(grant_id)
    if rpc == "ListConsents":
        return c.list_consents(subject)
    if rpc == "RestrictProcessing":
        return c.restrict_processing(subject, not restricted)
    if rpc == "ExportSubject":
        return c.export_subject(subject, EXPORT_PURPOSE)
    if rpc == "RecordEvent":
        return c.record_event(subject, "match_completed")
    if rpc == "CreateShare":
        return c.create_share(
            subject, "p-clinic", "clinic_proposal", [rid], ["text"], expires_at=time.time() + 3600
        )
    if rpc == "ReadShare":
        return c.read_share(share_id)
    if rpc == "RevokeShare":
        return c.revoke_share(share_id)
    if rpc == "ListShares":
        return c.list_shares(subject)
    if rpc == "ListReceivedShares":
        return c.received_shares()
    if rpc == "UploadRecord":
        return c.upload_record(
            io.BytesIO(b"scan"), subject_id=subject, category="concern_photo", fields={"caption": "c"}
        )
    if rpc == "PlaceHold":
        return c.place_hold(subject, "litigation", "case-1")
    if rpc == "ReleaseHold":
        return c.release_hold("01a2013c-0000-7000-8000-0000000000bb")
    if rpc == "ListHolds":
        return c.list_holds(subject)
    if rpc == "VerifyDeletion":
        return c.verify_deletion()
    if rpc == "DownloadContent":
        return c.download_content(photo_id, READ_PURPOSE.get(role, "matching"))
    if rpc == "RestrictRecord":
        return c.restrict_record(rid, True)
    if rpc == "ListNotices":
        return c.list_notices()
    if rpc == "FindRecords":
        return c.find_records("member_profile", "email", "kim@example.kr", FIND_PURPOSE)
    raise AssertionError(f"no call for {rpc}: add it here")


def _only(outcomes: list[Any]) -> object:
    """The one item's result of a batch, its error raised."""
    (outcome,) = outcomes
    if isinstance(outcome, VaultError):
        raise outcome
    return outcome


def _officer_call() -> Any:
    from vault_service.policy import Principal
    from vault_service.service import CallContext

    return CallContext(Principal("p-subject-rights-officer", "subject_rights_officer"), "t")


def test_denials_do_not_reveal_existence(server: Any) -> None:
    address = f"127.0.0.1:{server.port}"
    absent = "01a2013c-0000-7000-8000-0000000000ff"
    with (
        VaultClient(address, token("application")) as app,
        VaultClient(address, token("clinic")) as clinic,
        VaultClient(address, token("operator")) as operator,
    ):
        present = app.put_record("oracle-subject", "concern_text", {"text": "t"}).record_id
        for client, purpose in (
            (clinic, "clinic_proposal"),
            (operator, "matching"),
            (clinic, "matching"),
        ):
            statuses = {
                _status(lambda r=r, c=client, p=purpose: c.get_record(r, p)) for r in (present, absent)
            }
            assert statuses == {"PERMISSION_DENIED"}, (purpose, statuses)
            for rid in (present, absent):
                try:
                    client.get_record(rid, purpose)
                except VaultError as exc:
                    assert str(exc) == "permission denied"


def test_plaintext_listen_off_loopback_is_refused(tmp_path: Path) -> None:
    from vault_service.errors import ConfigError

    write_config(tmp_path, server__listen='"0.0.0.0:0"')
    with pytest.raises(ConfigError, match="loopback addresses only"):
        start_server(load_config(tmp_path / "vault.toml", {}), {})


def test_undeclared_method_is_refused(server: Any) -> None:
    """A handler registered without a declared action would be refused by the interceptor."""
    from vault_service.rpc.actions import action_of

    assert action_of("/vault.v1.Vault/SomethingNew") is None
    assert action_of("/other.Service/GetRecord") is None
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        call = channel.unary_unary("/vault.v1.Vault/SomethingNew")
        with pytest.raises(grpc.RpcError) as err:
            call(b"", timeout=5, metadata=(("authorization", f"Bearer {token('application')}"),))
        assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED
