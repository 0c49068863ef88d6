"""What an older version left behind is repaired: plaintext consent evidence and hold terms are
sealed under the subject key at start-up, and deletions a hold's interrupted release left pending
are carried out by a job."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from tests.conftest import write_config
from vault_service.app import build_service
from vault_service.config import load_config
from vault_service.errors import LegalHoldActive
from vault_service.policy import Principal
from vault_service.service import CallContext

APP = CallContext(Principal("app", "application"), "t")
OFFICER = CallContext(Principal("officer", "subject_rights_officer"), "t")


def test_plaintext_evidence_of_an_older_version_is_sealed_at_start_up(tmp_path: Path) -> None:
    write_config(tmp_path)
    config = load_config(tmp_path / "vault.toml", {})
    first = build_service(config, {})
    svc = first.service
    kept = svc.grant_consent(
        APP,
        "m-1",
        "clinic_proposal",
        {"concern_text": None},
        1.0,
        None,
        "form-kept",
        grantee_principal="clinic",
    )
    gone = svc.grant_consent(
        APP,
        "m-2",
        "clinic_proposal",
        {"concern_text": None},
        1.0,
        None,
        "form-gone",
        grantee_principal="clinic",
    )
    first.close()
    db = tmp_path / "data" / "vault.db"
    with sqlite3.connect(db) as conn:  # what an older version wrote
        for grant, text in ((kept, "form-kept"), (gone, "form-gone")):
            conn.execute(
                "UPDATE consent_grants SET evidence_reference = ?, evidence_sealed = NULL"
                " WHERE grant_id = ?",
                (text, grant.grant_id),
            )
    second = build_service(config, {})
    try:
        with sqlite3.connect(db) as conn:
            rows = conn.execute(
                "SELECT evidence_reference, evidence_sealed FROM consent_grants"
            ).fetchall()
        assert all(ref == "" and sealed for ref, sealed in rows)
        (listed,) = second.service.list_consents(OFFICER, "m-1")
        assert listed.evidence_reference == "form-kept"
    finally:
        second.close()


LEGAL = CallContext(Principal("legal", "legal_officer"), "t")


def test_plaintext_hold_terms_of_an_older_version_are_sealed_at_start_up(tmp_path: Path) -> None:
    write_config(tmp_path)
    config = load_config(tmp_path / "vault.toml", {})
    first = build_service(config, {})
    first.service.put_record(APP, "m-1", "concern_text", {"text": "t"})
    hold = first.service.place_hold(LEGAL, "m-1", "complaint by Kim", "case-77")
    first.close()
    db = tmp_path / "data" / "vault.db"
    with sqlite3.connect(db) as conn:  # what an older version wrote
        conn.execute(
            "UPDATE legal_holds SET reason = 'complaint by Kim', case_reference = 'case-77',"
            " sealed = NULL WHERE hold_id = ?",
            (hold.hold_id,),
        )
    second = build_service(config, {})
    try:
        with sqlite3.connect(db) as conn:
            ((reason, case, sealed),) = conn.execute(
                "SELECT reason, case_reference, sealed FROM legal_holds"
            ).fetchall()
        assert (reason, case) == ("", "") and sealed
        (listed,) = second.service.list_holds(LEGAL, "m-1")
        assert (listed.reason, listed.case_reference) == ("complaint by Kim", "case-77")
    finally:
        second.close()


def test_deletions_left_pending_by_an_interrupted_release_are_carried_out(tmp_path: Path) -> None:
    """A hold's release that stopped before it carried out what the hold deferred (a crash right
    after the release committed) leaves pending deletions no hold covers: the job does them."""
    write_config(tmp_path)
    assembly = build_service(load_config(tmp_path / "vault.toml", {}), {})
    svc = assembly.service
    try:
        rid = svc.put_record(APP, "m-1", "concern_text", {"text": "t"})[0]
        hold = svc.place_hold(LEGAL, "m-1", "litigation", "case-1")
        with pytest.raises(LegalHoldActive):  # deferred to the release
            svc.delete_record(APP, rid)
        svc.store.release_hold(hold.hold_id, svc.clock.now(), None)  # the release alone
        assert len(svc.store.pending_deletions(svc.subject_ref("m-1"))) == 1
        assert svc.eraser.carry_out_unheld() == 1
        assert svc.store.get_meta(rid) is None
        assert svc.store.pending_deletions(svc.subject_ref("m-1")) == []
    finally:
        assembly.close()
