"""Evidence references that an older version stored in plaintext are sealed under the subject key
at start-up, and the grants still list them."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from tests.conftest import write_config
from vault_service.app import build_service
from vault_service.config import load_config
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
