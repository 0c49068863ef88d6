"""Issue 17, defect 4: the VerifyDeletion RPC and `vaultctl verify-deletion` disagree after an
exempt read of a withdrawn subject's retained record.

Decision D4 (docs/decisions/issue-17.md): the cache check concerns subject keys only; an exempt
`legal_obligation` read caches the subject's *legal* key, which is not its subject key. The RPC and
the CLI agree (PENDING / PENDING_UNTIL while legal records remain).
"""

from __future__ import annotations

import json
import time

import pytest

from tests.regressions.conftest import Vault
from vault_service.clock import FixedClock

PAYMENT = {"amount": "150000", "currency": "KRW", "provider_reference": "pg-7781"}


@pytest.fixture
def clock() -> FixedClock:
    """The server's time is the wall clock's, as `vaultctl` (a separate process) sees it."""
    return FixedClock(time.time())


def test_verify_deletion_rpc_and_cli_agree_after_an_exempt_read(vault: Vault) -> None:
    """Defect 4: right after an exempt legal_obligation read of a withdrawn subject's retained
    payment record, the VerifyDeletion RPC does not answer FAILED ("this process still caches the
    subject key"): it says what `vaultctl verify-deletion` says at the same moment (PENDING...)."""
    app = vault.client("app")
    payment = app.put_record("member-1", "payment_record", PAYMENT).record_id
    app.put_record("member-1", "concern_text", {"text": "withdrawn"})
    assert app.erase_subject("member-1") is True  # withdrawal: the payment record is kept by law
    kept = app.get_record(payment, "legal_obligation")
    assert kept.fields["amount"] == "150000"
    who = vault.pseudonym("member-1")
    (rpc,) = [e for e in vault.client("operator").verify_deletion() if e["subject_pseudonym"] == who]
    cli = vault.vaultctl("--json", "verify-deletion")
    (row,) = [e for e in json.loads(cli.stdout)["erasures"] if e["subject_pseudonym"] == who]
    assert "this process still caches the subject key" not in rpc["reasons"]
    assert rpc["result"] != "FAILED", rpc["reasons"]
    assert rpc["result"] == row["result"], (rpc, row)
    assert str(rpc["result"]).startswith("PENDING")
    assert cli.returncode == 3  # some pending, none failed
