"""Issue 17, defect 10: records kept by law after a withdrawal leak through the subject-access
export, because one flag (`restriction_exempt`) meant two things.

Decision D10 (docs/decisions/issue-17.md): two purpose flags, `restriction_exempt = true` (reads
allowed while processing is restricted) and `retained_access = true` (may read records kept under
legal retention after the subject's erasure). Shipped policies: legal_obligation gets both,
subject_access only restriction_exempt. After a withdrawal, ExportSubject for subject_access
releases none of the records kept under other laws.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.regressions.conftest import Vault, configure, policy_with_all_principals
from vault_service.clock import FixedClock
from vault_service.errors import NotFound, PermissionDenied

PAYMENT = {"amount": "150000", "currency": "KRW", "provider_reference": "pg-7781"}


def test_subject_access_export_after_withdrawal_leaves_out_records_kept_by_law(
    vault: Vault,
) -> None:
    """Defect 10 (shipped clinic-matching policy): while processing is restricted the
    subject-access export still has every record; after the withdrawal it releases none of the
    payment records kept under the e-commerce act, which legal_obligation still reads."""
    app, sro = vault.client("app"), vault.client("sro")
    payment = app.put_record("member-1", "payment_record", PAYMENT).record_id
    concern = app.put_record("member-1", "concern_text", {"text": "withdrawn"}).record_id
    assert sro.restrict_processing("member-1") is True
    assert {r.info.record_id for r in sro.export_subject("member-1")} == {payment, concern}
    assert sro.restrict_processing("member-1", restricted=False) is True
    assert app.erase_subject("member-1") is True
    exported = [(r.info.record_id, r.info.category) for r in sro.export_subject("member-1")]
    assert exported == [], f"the subject-access export released records kept by law: {exported}"
    assert app.get_record(payment, "legal_obligation").fields["amount"] == "150000"


#: a policy that uses each flag alone (needs D10's new `retained_access` key)
SPLIT_PURPOSES = """
[purposes.dispute_handling]
description = "Payment disputes: also while processing is restricted, never after erasure."
categories = ["payment_record"]
restriction_exempt = true

[purposes.tax_audit]
description = "The tax office's audit of records kept by law: after erasure, not while restricted."
categories = ["payment_record"]
retained_access = true
"""


def _split_policy() -> str:
    base = (ROOT / "policies" / "clinic-matching.toml").read_text()
    old = 'purposes = ["matching", "customer_support"'
    assert base.count(old) == 1
    new = 'purposes = ["dispute_handling", "tax_audit", "matching", "customer_support"'
    base = base.replace(old, new)
    return policy_with_all_principals(base + SPLIT_PURPOSES)


def test_restriction_exempt_and_retained_access_are_separate_flags(tmp_path: Path) -> None:
    """Defect 10: the policy language has two flags. `restriction_exempt` alone reads while
    processing is restricted but not a record kept after erasure; `retained_access` alone reads
    a record kept after erasure but not while restricted. (Uses D10's new `retained_access` key:
    the old loader refuses it as an unknown key.)"""
    vault = configure(tmp_path, _split_policy(), FixedClock())
    vault.start()
    try:
        app, sro = vault.client("app"), vault.client("sro")
        payment = app.put_record("member-1", "payment_record", PAYMENT).record_id
        sro.restrict_processing("member-1")
        assert app.get_record(payment, "dispute_handling").fields["amount"] == "150000"
        with pytest.raises(PermissionDenied):
            app.get_record(payment, "tax_audit")
        sro.restrict_processing("member-1", restricted=False)
        assert app.erase_subject("member-1") is True
        assert app.get_record(payment, "tax_audit").fields["amount"] == "150000"
        with pytest.raises((NotFound, PermissionDenied)):
            app.get_record(payment, "dispute_handling")
    finally:
        vault.close()


def test_both_flags_are_documented() -> None:
    """Defect 10: docs/policy.md documents both flags, and docs/lifecycle.md says which purposes
    read records kept after erasure (`retained_access`)."""
    policy_doc = (ROOT / "docs" / "policy.md").read_text()
    assert "restriction_exempt" in policy_doc
    assert "retained_access" in policy_doc, "docs/policy.md does not document retained_access"
    assert "retained_access" in (ROOT / "docs" / "lifecycle.md").read_text()
