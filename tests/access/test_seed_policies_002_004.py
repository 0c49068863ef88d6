"""The shipped policies of seeds 002 (face simulation) and 004 (SaaS), walked through a real
gRPC server on a fixed clock as the companies' flows would use them (issue 20, part 1): what
each privacy policy promises, tried end to end. The principals of the regression harness are
given these policies' roles (the harness's "clinic" token is the compliance role here)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import ROOT
from tests.regressions import conftest as harness
from tests.regressions.conftest import DAY, Vault, principals_text
from vault_service.errors import NotFound, PermissionDenied

HOUR = 3600.0
ROLES = {
    "app": "application",
    "clinic": "compliance",
    "legal": "legal_officer",
    "sro": "subject_rights_officer",
    "operator": "operator",
    "auditor": "auditor",
}
FACE = bytes(range(256)) * 32

vault = harness.vault
clock = harness.clock


def _policy(name: str) -> str:
    return (ROOT / "policies" / name).read_text() + principals_text(ROLES)


def _gone(vault: Vault, rid: str, purpose: str, who: str = "app") -> bool:
    try:
        vault.client(who).get_record(rid, purpose, include_content=True)
    except NotFound:
        return True
    return False


def _consent_to_marketing(app: Any, subject: str, category: str, evidence: str) -> None:
    app.grant_consent(
        subject,
        "marketing",
        {category: None},
        evidence_reference=evidence,
        grantee_role="application",
    )


def _expire_in_turn(vault: Vault, ids: dict[str, str], kept: dict[str, tuple[str, int]]) -> None:
    """Advance to each retention end in turn and sweep: each record kept by law (``kept`` maps
    its category to (its legal purpose, days)) is readable for its law until its own end."""
    elapsed = 0.0
    for days in sorted({d for _, d in kept.values()}):
        vault.clock.advance((days - elapsed) * DAY + 1)
        elapsed = days + 1 / DAY
        vault.service.sweep_retention()
        for category, (purpose, period) in kept.items():
            assert _gone(vault, ids[category], purpose, "clinic") == (period <= days), category


class TestFaceSimulation002:
    @pytest.fixture
    def policy_text(self) -> str:
        return _policy("face-simulation.toml")

    def test_the_face_photo_is_used_once_for_the_simulation_only(self, vault: Vault) -> None:
        app = vault.client("app")
        rid = app.put_record("u-1", "face_photo", {}, content=FACE).record_id
        with pytest.raises(PermissionDenied):  # no other purpose may see it
            app.get_record(rid, "membership", include_content=True)
        assert app.get_record(rid, "simulation", include_content=True).content == FACE
        assert _gone(vault, rid, "simulation")  # deleted immediately after the simulation
        assert vault.blob_files() == []

    def test_a_photo_never_simulated_is_shredded_within_the_hour(self, vault: Vault) -> None:
        rid = vault.client("app").put_record("u-1", "face_photo", {}, content=FACE).record_id
        vault.clock.advance(HOUR + 1)
        assert vault.service.sweep_retention() == [(rid, "read_once 1h")]
        assert _gone(vault, rid, "simulation")

    def test_withdrawal_keeps_each_legal_record_for_its_own_law_and_period(self, vault: Vault) -> None:
        app, compliance = vault.client("app"), vault.client("clinic")
        account = app.put_record("u-1", "member_account", {"name": "Kim", "email": "k@x.kr"}).record_id
        kept = {
            "fraud_record": ({"reason": "chargeback"}, "fraud_prevention", 183),
            "ad_transaction_record": ({"campaign": "spring"}, "ecommerce_act", 183),
            "payment_record": ({"amount": "9900", "currency": "KRW"}, "ecommerce_act", 1826),
            "complaint_record": ({"summary": "late refund"}, "ecommerce_act", 1096),
            "access_log": ({"ip_address": "203.0.113.7"}, "communications_act", 92),
        }
        ids = {c: app.put_record("u-1", c, f).record_id for c, (f, _, _) in kept.items()}
        assert app.erase_subject("u-1") is True
        assert _gone(vault, account, "membership")
        for category, (fields, purpose, _) in kept.items():
            assert compliance.get_record(ids[category], purpose).fields == fields
            others = {p for _, p, _ in kept.values()} - {purpose}
            for other in others:  # readable only for its own legal basis
                with pytest.raises(PermissionDenied):
                    compliance.get_record(ids[category], other)
        with pytest.raises(PermissionDenied):  # not its legal basis (README's status table)
            app.get_record(ids["payment_record"], "membership")
        _expire_in_turn(vault, ids, {c: (p, d) for c, (_, p, d) in kept.items()})

    def test_marketing_needs_consent_and_statistics_are_de_identified(self, vault: Vault) -> None:
        app = vault.client("app")
        account = app.put_record("u-1", "member_account", {"name": "Kim", "email": "k@x.kr"}).record_id
        with pytest.raises(PermissionDenied):
            app.get_record(account, "marketing")
        _consent_to_marketing(app, "u-1", "member_account", "opt-in-1")
        assert app.get_record(account, "marketing").fields == {"email": "k@x.kr"}
        pay = app.put_record(
            "u-1", "payment_record", {"amount": "9900", "provider_reference": "pg-1"}
        ).record_id
        stats = app.get_record(pay, "statistics")
        assert stats.fields == {"amount": "9900"} and stats.info.subject_pseudonym

    def test_a_legal_investigation_hold_defers_the_withdrawal(self, vault: Vault) -> None:
        app, legal = vault.client("app"), vault.client("legal")
        account = app.put_record("u-1", "member_account", {"name": "Kim"}).record_id
        hold = legal.place_hold("u-1", "investigation", "case-002")
        with pytest.raises(Exception, match="legal hold"):
            app.erase_subject("u-1")
        assert app.get_record(account, "membership").fields == {"name": "Kim"}
        assert legal.release_hold(hold["hold_id"])[1] == 1
        assert _gone(vault, account, "membership")

    def test_dormant_after_a_year_with_a_notice_thirty_days_before(self, vault: Vault) -> None:
        app = vault.client("app")
        account = app.put_record("u-1", "member_account", {"name": "Kim"}).record_id
        vault.clock.advance(336 * DAY)
        assert vault.service.sweep_dormancy()["notices"] == 1
        vault.clock.advance(30 * DAY)
        assert vault.service.sweep_dormancy()["dormant"] == 1
        with pytest.raises(PermissionDenied):
            app.get_record(account, "membership")
        assert app.get_record(account, "reactivation").fields == {"name": "Kim"}  # a login
        assert app.get_record(account, "membership").fields == {"name": "Kim"}


class TestSaas004:
    @pytest.fixture
    def policy_text(self) -> str:
        return _policy("saas.toml")

    def test_withdrawal_destroys_everything_at_once_but_what_each_law_keeps(self, vault: Vault) -> None:
        app, compliance = vault.client("app"), vault.client("clinic")
        gone_now = [
            app.put_record("c-1", "customer_account", {"company_name": "ACME", "email": "a@b.c"}),
            app.put_record("c-1", "usage_record", {"device": "laptop", "activity": "label"}),
        ]
        kept = {
            "contract_record": ("ecommerce_act", 1826),
            "payment_record": ("ecommerce_act", 1826),
            "complaint_record": ("ecommerce_act", 1096),
            "access_log": ("communications_act", 92),
            "illegal_use_record": ("abuse_prevention", 183),
            "illegal_payment_record": ("abuse_prevention", 1096),
        }
        first = {
            "contract_record": "plan",
            "payment_record": "amount",
            "complaint_record": "summary",
            "access_log": "device",
            "illegal_use_record": "reason",
            "illegal_payment_record": "reason",
        }
        ids = {c: app.put_record("c-1", c, {first[c]: "x"}).record_id for c in kept}
        assert app.erase_subject("c-1") is True
        for r in gone_now:
            assert _gone(vault, r.record_id, "service")
        for category, (purpose, _) in kept.items():
            assert compliance.get_record(ids[category], purpose).fields == {first[category]: "x"}
            with pytest.raises(PermissionDenied):  # "not used for any other purpose"
                app.get_record(ids[category], "service")
        export = list(vault.client("sro").export_subject("c-1"))
        assert export == []  # the customer's own access: nothing kept under other laws
        _expire_in_turn(vault, ids, kept)

    def test_analytics_are_de_identified_and_marketing_needs_consent(self, vault: Vault) -> None:
        app = vault.client("app")
        account = app.put_record(
            "c-1",
            "customer_account",
            {"company_name": "ACME", "person_in_charge": "Lee", "email": "l@a.co"},
        ).record_id
        with pytest.raises(PermissionDenied):
            app.get_record(account, "marketing")
        _consent_to_marketing(app, "c-1", "customer_account", "newsletter-1")
        assert app.get_record(account, "marketing").fields == {"company_name": "ACME", "email": "l@a.co"}
        usage = app.put_record("c-1", "usage_record", {"device": "call 010-1234-5678"}).record_id
        got = app.get_record(usage, "analytics")
        assert "010-1234-5678" not in got.fields["device"] and got.info.subject_pseudonym

    def test_no_dormancy_promised_so_dormancy_is_off(self, vault: Vault) -> None:
        app = vault.client("app")
        account = app.put_record("c-1", "customer_account", {"company_name": "ACME"}).record_id
        vault.clock.advance(3 * 365 * DAY)
        off = vault.service.sweep_dormancy()
        assert off == {"notices": 0, "dormant": 0, "destroyed": 0}
        assert app.get_record(account, "service").fields == {"company_name": "ACME"}
