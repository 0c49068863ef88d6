"""Defects of the kind issue 17 lists, found while writing its regression tests, and not named by
the issue or by its decisions. Each test reproduces one; the expected behaviour
asserted is the one the README and docs/ promise (quoted in each docstring).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.regressions.conftest import DAY, Vault, configure, policy_with_all_principals
from tests.support.serve import vaultctl
from vault_service.clock import FixedClock
from vault_service.errors import InvalidArgument, PermissionDenied

TEXT = {"text": "second rhinoplasty consultation", "budget": "3000000"}


def test_an_update_is_activity_for_dormancy(vault: Vault) -> None:
    """Found: UpdateRecord is not counted as activity. docs/lifecycle.md: "activity is every write
    and, at most once a day, a read". A subject whose record was corrected 100 days ago (and put
    400 days ago) is made dormant by the dormancy sweep, its records unreadable for every
    non-reactivation purpose, and it would be erased four years later."""
    app = vault.client("app")
    rid = app.put_record("member-1", "concern_text", TEXT).record_id
    vault.clock.advance(300 * DAY)
    assert app.update_record(rid, {"text": "corrected"}).version == 2  # a write: activity
    vault.clock.advance(100 * DAY)
    counts = vault.service.sweep_dormancy()
    assert counts["dormant"] == 0, counts
    assert app.get_record(rid, "matching").fields == {"text": "corrected"}


def test_a_consent_revoked_after_a_backup_stays_revoked_after_a_restore(vault: Vault) -> None:
    """Found: restoring a backup taken before a consent revocation makes the consent active
    again, and the clinic reads the share again. docs/policy.md: "After valid_until or a
    revocation the very next read is denied, in every replica". D1/D12 make destructions survive
    a restore, but a revocation (the subject withdrawing consent to a disclosure) is not one of
    them; it should survive a restore as a revoked share does."""
    app = vault.client("app")
    rid = app.put_record("member-1", "concern_text", TEXT).record_id
    grant, share = vault.share_with_clinic(rid, "concern_text", ["text"])
    assert len(list(vault.client("clinic").read_share(share.share_id))) == 1
    backup = vault.backup()
    vault.client("app").revoke_consent(grant.grant_id)
    with pytest.raises(PermissionDenied):
        list(vault.client("clinic").read_share(share.share_id))
    vault.restore(backup)
    with pytest.raises(PermissionDenied):
        list(vault.client("clinic").read_share(share.share_id))


def test_an_export_under_a_purpose_that_is_not_exempt_respects_restriction(tmp_path: Path) -> None:
    """Found: ExportSubject ignores the subject's restriction (it decides every record as if the
    subject were not restricted). docs/policy.md: "If the subject's processing is restricted,
    the read is denied unless the purpose is restriction_exempt". With a role that may export
    under customer_support (not exempt), a restricted subject's records are exported anyway."""
    base = (ROOT / "policies" / "clinic-matching.toml").read_text()
    old = (
        'actions = ["subject.export", "subject.restrict", "record.restrict", "consent.list",'
        ' "consent.revoke"]\n'
        'purposes = ["subject_access"]'
    )
    assert base.count(old) == 1
    policy = policy_with_all_principals(
        base.replace(old, old.replace('["subject_access"]', '["subject_access", "customer_support"]'))
    )
    vault = configure(tmp_path, policy, FixedClock())
    vault.start()
    try:
        app, sro = vault.client("app"), vault.client("sro")
        app.put_record("member-1", "concern_text", TEXT)
        assert len(list(sro.export_subject("member-1", purpose="customer_support"))) == 1
        assert sro.restrict_processing("member-1") is True
        try:
            released = list(sro.export_subject("member-1", purpose="customer_support"))
        except PermissionDenied:
            released = []
        assert released == [], "a restricted subject's records were exported under customer_support"
        assert len(list(sro.export_subject("member-1"))) == 1  # subject_access is exempt
    finally:
        vault.close()


def test_vaultctl_errors_echo_at_most_64_characters(vault: Vault) -> None:
    """Found (D9 beyond the RPCs): `vaultctl keys retire VERSION` echoes an unknown version
    unbounded in its error ("unknown root version '999…'"); D9: error messages never echo more
    than 64 characters of a caller's value."""
    result = vaultctl(vault.home, "--json", "keys", "retire", "9" * 3000)
    assert result.returncode == 1
    assert "9" * 65 not in result.stderr, f"{len(result.stderr)} characters of error"


def _plaintext_hits(vault: Vault, marker: str) -> list[str]:
    return [
        str(p.relative_to(vault.home)) for p in vault.data_files() if marker.encode() in p.read_bytes()
    ]


def test_a_hold_reason_and_case_reference_are_not_in_plaintext_at_rest(vault: Vault) -> None:
    """Found: PlaceHold stores its free-text reason and case reference in plaintext (and copies
    the case reference into the audit entry's reason). README: "Nothing in plaintext at rest: the
    database, its WAL, blobs ... are scanned for a marker by a test after every kind of call";
    the same kind of defect as consent evidence references (defect 5)."""
    vault.client("app").put_record("member-1", "concern_text", TEXT)
    marker = "HOLD-MARKER-4f1c9a"
    vault.client("legal").place_hold("member-1", f"complaint {marker}", f"case-{marker}")
    assert _plaintext_hits(vault, marker) == []


def test_a_trailing_newline_does_not_make_an_id_or_a_name_valid(vault: Vault) -> None:
    """Found while fixing defect 9: ids, event names and references were checked with ``$``,
    which also matches before a final newline, so ``<record id>\\n`` was a well-formed id and
    ``form-1\\n`` a well-formed evidence reference. Every one is INVALID_ARGUMENT now."""
    app = vault.client("app")
    rid = app.put_record("member-1", "concern_text", TEXT).record_id
    with pytest.raises(InvalidArgument):
        app.get_record(rid + "\n", "matching")
    with pytest.raises(InvalidArgument):
        app.record_event("member-1", "match_completed\n")
    with pytest.raises(InvalidArgument):
        app.grant_consent(
            "member-1",
            "clinic_proposal",
            {"concern_text": None},
            evidence_reference="form-1\n",
            grantee_principal="clinic",
        )
    with pytest.raises(InvalidArgument):
        app.put_record(
            "member-1", "concern_photo", {"caption": "c"}, content=b"x", content_type="image/jpeg\n"
        )
