"""Issue 17, defect 11: the docs and the behaviour disagree about erased subjects.

Decision D11 (docs/decisions/issue-17.md): the docs follow the behaviour. Consent-bound and share
reads of an erased subject answer PERMISSION_DENIED (no existence oracle), other reads NOT_FOUND;
a second EraseSubject answers OK with erased=false, audited as "already erased: nothing
destroyed"; writes to an erased subject stay FAILED_PRECONDITION. A withdrawal with retained
records reports PENDING_UNTIL <date> once every date is known (the legal retention end, and the
date the epoch schedule destroys each active root version); PENDING without a date only when
rotation is off.
"""

from __future__ import annotations

import json
import time

import pytest

from tests.conftest import ROOT
from tests.regressions.conftest import DAY, Vault
from vault_service.errors import FailedPrecondition, NotFound, PermissionDenied

TEXT = {"text": "second rhinoplasty consultation", "budget": "3000000"}
PAYMENT = {"amount": "150000", "currency": "KRW", "provider_reference": "pg-7781"}


def status_table() -> dict[str, str]:
    """README's "Status codes" table: status -> the situations it lists."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## Status codes", 1)[1].split("\n## ", 1)[0]
    rows: dict[str, str] = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 2 and cells[1].startswith("`"):
            status = cells[1].strip("`")
            rows[status] = f"{rows.get(status, '')} {cells[0]}".strip()
    return rows


def test_reads_of_an_erased_subject_answer_as_the_readme_says(vault: Vault) -> None:
    """Defect 11: consent-bound and share reads of an erased subject are PERMISSION_DENIED and
    other reads NOT_FOUND, and README's status table says so (its PERMISSION_DENIED row covers
    erased subjects; its FAILED_PRECONDITION row names erased subjects only for writes)."""
    app, clinic = vault.client("app"), vault.client("clinic")
    rid = app.put_record("member-1", "concern_text", TEXT).record_id
    _, share = vault.share_with_clinic(rid, "concern_text", ["text"], days=1)
    assert app.erase_subject("member-1") is True
    with pytest.raises(NotFound):
        app.get_record(rid, "matching")
    with pytest.raises(PermissionDenied):
        list(clinic.read_share(share.share_id))
    with pytest.raises(FailedPrecondition):
        app.put_record("member-1", "concern_text", TEXT)
    table = status_table()
    assert "erased" in table["PERMISSION_DENIED"], (
        "README's status table does not say that consent-bound and share reads of an erased "
        f"subject are PERMISSION_DENIED: {table['PERMISSION_DENIED']!r}"
    )
    failed = table["FAILED_PRECONDITION"]
    assert "erased" not in failed or "writ" in failed, (
        "README's status table lists an erased subject under FAILED_PRECONDITION for every call, "
        f"not only for writes: {failed!r}"
    )


def test_a_second_erasure_is_ok_and_audited_as_nothing_destroyed(vault: Vault) -> None:
    """Defect 11: a second EraseSubject answers OK with erased=false, and its audit entry says
    "already erased: nothing destroyed" (not "subject key destroyed" again)."""
    app = vault.client("app")
    app.put_record("member-1", "concern_text", TEXT)
    assert app.erase_subject("member-1") is True
    assert app.erase_subject("member-1") is False
    events, _ = vault.client("auditor").query_audit(
        action="subject.erase", subject_pseudonym=vault.pseudonym("member-1")
    )
    reasons = [e["reason"] for e in events if e["decision"] == "allow"]
    assert len(reasons) == 2, reasons
    assert reasons[1] == "already erased: nothing destroyed", reasons


def test_a_withdrawal_with_retained_records_is_pending_until_a_date(vault: Vault) -> None:
    """Defect 11: with rotation on (the default epoch schedule), an erasure whose subject keeps
    payment records under legal retention is PENDING_UNTIL the latest date known (here the end of
    the 5-year retention), in the VerifyDeletion RPC and `vaultctl verify-deletion`, as
    docs/lifecycle.md promises; not PENDING without a date."""
    app = vault.client("app")
    payment = app.put_record("member-1", "payment_record", PAYMENT).record_id
    app.put_record("member-1", "concern_text", TEXT)
    created = app.get_record(payment, "legal_obligation").info.created_at
    assert app.erase_subject("member-1") is True
    while vault.service.purge_erased():
        pass
    until = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(created + 1826 * DAY))
    who = vault.pseudonym("member-1")
    (rpc,) = [e for e in vault.client("operator").verify_deletion() if e["subject_pseudonym"] == who]
    assert rpc["result"] == f"PENDING_UNTIL {until}", rpc
    cli = vault.vaultctl("--json", "verify-deletion")
    (row,) = [e for e in json.loads(cli.stdout)["erasures"] if e["subject_pseudonym"] == who]
    assert row["result"] == f"PENDING_UNTIL {until}", row
