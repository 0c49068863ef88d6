"""Issue 17, defect 5: consent evidence references in plaintext at rest, surviving the subject.

Decision D5 (docs/decisions/issue-17.md): evidence references are sealed under the subject key;
ListConsents returns them decrypted while the subject is live; after erasure they are unreadable
and the purge deletes the grant rows. Never in plaintext in the database or its WAL.
"""

from __future__ import annotations

import secrets
from pathlib import Path

from tests.regressions.conftest import Vault
from vault_service.client import Consent
from vault_service.errors import NotFound, PermissionDenied


def _hits(root: Path, needle: bytes) -> list[str]:
    """Files under ``root`` holding ``needle`` (in UTF-8 or UTF-16)."""
    forms = (needle, needle.decode().encode("utf-16-le"))
    return [
        str(p.relative_to(root))
        for p in sorted(root.rglob("*"))
        if p.is_file() and any(form in p.read_bytes() for form in forms)
    ]


def _grant(vault: Vault, subject: str, evidence: str) -> Consent:
    vault.client("app").put_record(subject, "concern_text", {"text": "t"})
    return vault.client("app").grant_consent(
        subject,
        "clinic_proposal",
        {"concern_text": ["text", "budget"]},
        evidence_reference=evidence,
        grantee_principal="clinic",
    )


def test_consent_evidence_is_never_in_plaintext_at_rest(vault: Vault) -> None:
    """Defect 5: a consent's evidence reference is returned by ListConsents while the subject is
    live, and is nowhere in plaintext at rest (database, WAL, blobs, or any other file)."""
    evidence = f"EVIDENCE-MARKER-{secrets.token_hex(8)}"
    _grant(vault, "member-1", evidence)
    listed = vault.client("app").list_consents("member-1")
    assert [c.evidence_reference for c in listed] == [evidence]
    assert {"vault.db", "vault.db-wal"} <= {p.name for p in vault.data_files()}
    assert _hits(vault.home, evidence.encode()) == []
    vault.stop()  # and after the WAL is checkpointed into the database at close
    assert _hits(vault.home, evidence.encode()) == []


def test_consent_evidence_dies_with_the_subject(vault: Vault) -> None:
    """Defect 5: after the subject's erasure and purge its consent evidence is unreadable: no
    ListConsents answer carries it, and no file holds it."""
    evidence = f"EVIDENCE-MARKER-{secrets.token_hex(8)}"
    _grant(vault, "member-1", evidence)
    assert vault.client("app").erase_subject("member-1") is True
    while vault.service.purge_erased():
        pass
    try:
        listed = vault.client("app").list_consents("member-1")
    except (NotFound, PermissionDenied):
        listed = []
    assert [c.evidence_reference for c in listed if c.evidence_reference == evidence] == [], (
        "an erased subject's consent evidence is still readable"
    )
    vault.stop()
    assert _hits(vault.home, evidence.encode()) == []
