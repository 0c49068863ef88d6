"""Searchable fields (issue 21, part 1): FindRecords through a blind index, over a real server.

The promises (docs/policy.md, "Searchable fields"): a record is found by a searchable field's
value after the field's normalisation, metadata only, audited like a read; only by a caller
whose purpose may read that field; a record the caller may not read (no consent, a restricted
or dormant subject, a restricted record) is left out, so that such a value answers exactly like
a value that matches nothing; the index follows the record: an update replaces its tokens, and a
deletion, a retention or read-once shred and an erasure remove them in the same transaction, also
after a backup is restored (the ledger replays the destruction); no value is stored in clear.
"""

from __future__ import annotations

import sqlite3
import unicodedata

import pytest

from tests.conftest import BACKENDS, ROOT, TEST_DORMANCY
from tests.regressions import conftest as harness
from tests.regressions.conftest import DAY, READ_ONCE_CATEGORIES, Vault, policy_with_all_principals
from vault_service.errors import FailedPrecondition, InvalidArgument, PermissionDenied

vault = harness.vault
clock = harness.clock

EMAIL = "Kim.Minji@Example.KR"
PROFILE = {"email": EMAIL, "contact": "010-1234-5678", "language": "ko"}


def _policy() -> str:
    """The shipped clinic-matching policy (member_profile.email is searchable), plus a purpose
    that needs consent to read the e-mail, and a read-once ticket searchable by its number."""
    base = (ROOT / "policies" / "clinic-matching.toml").read_text()
    old = '"legal_obligation",\n            "reactivation"]'
    assert base.count(old) == 1
    base = base.replace(
        old,
        '"legal_obligation",\n            "reactivation", "outreach", "simulation", "visit",'
        ' "partner_view"]',
    )
    retained = 'retention = { after = "creation", days = 1826, survives_erasure = true }'
    assert base.count(retained) == 1
    base = base.replace(retained, retained + '\nsearchable = { provider_reference = "exact" }')
    return policy_with_all_principals(
        base
        + READ_ONCE_CATEGORIES
        + TEST_DORMANCY
        + """
[purposes.partner_view]
description = "Scrubbed of contact details: may never learn how to reach a member."
categories = ["member_profile"]
scrub_text = true

[purposes.outreach]
description = "Contacting a member who agreed to it."
categories = ["member_profile"]
consent_required = true

[categories.ticket]
description = "A one-time visit ticket, found by its number, destroyed by the read that uses it."
fields = ["number"]
searchable = { number = "exact" }
retention = { read_once = true }

[purposes.visit]
categories = ["ticket"]
"""
    )


@pytest.fixture
def policy_text() -> str:
    return _policy()


def _find(vault: Vault, value: str, purpose: str = "customer_support", **kw: object) -> list[str]:
    page = vault.client("app").find_records("member_profile", "email", value, purpose, **kw)  # type: ignore[arg-type]
    return [r.record_id for r in page.records]


@pytest.mark.parametrize("vault", BACKENDS, indirect=True)
def test_found_by_the_normalised_value_metadata_only_and_audited(vault: Vault) -> None:
    app = vault.client("app")
    rid = app.put_record("member-1", "member_profile", PROFILE).record_id
    app.put_record("member-2", "member_profile", {**PROFILE, "email": "other@example.kr"})
    for asked in (EMAIL, " kim.minji@example.kr", "KIM.MINJI@EXAMPLE.KR\t"):
        assert _find(vault, asked) == [rid]
    assert _find(vault, "kim.minji@example.k") == []  # equality only
    page = app.find_records("member_profile", "email", EMAIL, "customer_support")
    (info,) = page.records
    assert (info.record_id, info.category, page.next_page_token) == (rid, "member_profile", "")
    assert not hasattr(info, "fields")  # metadata only
    rows = [r for r in vault.service.store.audit_rows() if r.action == "record.find"]
    found = [r for r in rows if r.reason == "found by email"]
    assert found and all(r.record_id == rid and r.subject_pseudonym for r in found)
    assert any(r.reason == "no match" and not r.record_id for r in rows)
    assert all(EMAIL.lower() not in (r.reason + r.purpose).lower() for r in rows)


def test_unicode_forms_and_the_exact_normalisation(vault: Vault) -> None:
    app = vault.client("app")
    composed = "josé@example.kr"
    decomposed = unicodedata.normalize("NFD", composed)
    assert composed != decomposed
    rid = app.put_record("member-1", "member_profile", {**PROFILE, "email": decomposed}).record_id
    assert _find(vault, composed) == [rid]  # NFC on both sides
    ticket = app.put_record("member-1", "ticket", {"number": "AB-12"}).record_id
    assert [r.record_id for r in app.find_records("ticket", "number", "AB-12", "visit").records] == [
        ticket
    ]
    assert app.find_records("ticket", "number", "ab-12", "visit").records == []  # "exact": case kept


def test_paging_counts_released_records(vault: Vault) -> None:
    app, sro = vault.client("app"), vault.client("sro")
    rids = sorted(  # pages go in record-id order
        app.put_record(f"member-{i}", "member_profile", PROFILE).record_id for i in range(7)
    )
    assert sro.restrict_record(rids[1]) and sro.restrict_record(rids[2])
    first = app.find_records("member_profile", "email", EMAIL, "customer_support", page_size=2)
    assert [r.record_id for r in first.records] == [rids[0], rids[3]]
    assert first.next_page_token == rids[3]
    got = [
        r.record_id
        for r in app.iter_find_records("member_profile", "email", EMAIL, "customer_support", 2)
    ]
    assert got == [rids[0], *rids[3:]]
    last = app.find_records(
        "member_profile", "email", EMAIL, "customer_support", page_size=2, page_token=rids[5]
    )
    assert [r.record_id for r in last.records] == [rids[6]] and last.next_page_token == ""


def test_a_caller_that_may_not_read_a_match_learns_nothing(vault: Vault) -> None:
    """Consent, a restricted subject or record, a dormant subject: the match is left out, and the
    answer (records and page token) is the one a value matching nothing gets."""
    app, sro = vault.client("app"), vault.client("sro")
    nothing = app.find_records("member_profile", "email", "nobody@example.kr", "outreach")
    assert (nothing.records, nothing.next_page_token) == ([], "")
    app.put_record("member-1", "member_profile", PROFILE)
    refused = app.find_records("member_profile", "email", EMAIL, "outreach")  # no consent yet
    assert (refused.records, refused.next_page_token) == ([], "")
    grant = app.grant_consent(
        "member-1",
        "outreach",
        {"member_profile": None},
        evidence_reference="form-1",
        grantee_role="application",
    )
    assert len(app.find_records("member_profile", "email", EMAIL, "outreach").records) == 1
    app.revoke_consent(grant.grant_id)
    assert app.find_records("member_profile", "email", EMAIL, "outreach").records == []
    assert sro.restrict_processing("member-1", True)
    assert _find(vault, EMAIL) == []
    assert sro.restrict_processing("member-1", False) and _find(vault, EMAIL)
    vault.clock.advance(366 * DAY)
    assert vault.service.sweep_dormancy()["dormant"] == 1
    assert _find(vault, EMAIL) == []  # separated: only reactivation may look
    assert len(_find(vault, EMAIL, "reactivation")) == 1  # a login finds the member
    denials = [
        r.reason
        for r in vault.service.store.audit_rows()
        if r.action == "record.find" and r.decision == "deny"
    ]
    assert {"no consent", "subject restricted", "subject dormant"} <= set(denials)


def test_the_rights_that_depend_on_no_data_are_refused_before_any_lookup(vault: Vault) -> None:
    app, clinic = vault.client("app"), vault.client("clinic")
    app.put_record("member-1", "member_profile", PROFILE)
    for value in (EMAIL, "nobody@example.kr"):  # the same answer, match or not
        with pytest.raises(PermissionDenied):  # no record.find action
            clinic.find_records("member_profile", "email", value, "clinic_proposal")
        with pytest.raises(PermissionDenied):  # the purpose does not show the e-mail
            app.find_records("member_profile", "email", value, "llm_analysis")
        with pytest.raises(PermissionDenied):  # not one of the role's purposes
            app.find_records("member_profile", "email", value, "subject_access")
        with pytest.raises(PermissionDenied):  # scrub_text: an identifier would be confirmed
            app.find_records("member_profile", "email", value, "partner_view")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("member_profile", "language", "ko", "customer_support"), "field is not searchable"),
        (("nothing", "email", "x", "customer_support"), "unknown category"),
        (("member_profile", "email", "", "customer_support"), "value must be 1 to 1024"),
        (("member_profile", "email", "x" * 1025, "customer_support"), "value must be 1 to 1024"),
        (("member_profile", "email", "x", ""), "purpose is required"),
    ],
)
def test_bad_requests_are_invalid_argument(vault: Vault, args: tuple[str, ...], message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        vault.client("app").find_records(*args)


def test_bad_pages_are_invalid_argument(vault: Vault) -> None:
    app = vault.client("app")
    with pytest.raises(InvalidArgument, match="page_size must be between 0 and 100"):
        app.find_records("member_profile", "email", EMAIL, "customer_support", page_size=101)
    with pytest.raises(InvalidArgument, match="page_token is malformed"):
        app.find_records("member_profile", "email", EMAIL, "customer_support", page_token="x")


def _tokens(vault: Vault) -> int:
    with sqlite3.connect(vault.home / "data" / "vault.db") as conn:
        return int(conn.execute("SELECT COUNT(*) FROM blind_index").fetchone()[0])


def test_the_index_follows_updates_deletions_shreds_and_erasure(vault: Vault) -> None:
    app, legal = vault.client("app"), vault.client("legal")
    rid = app.put_record("member-1", "member_profile", PROFILE).record_id
    assert _tokens(vault) == 1
    app.update_record(rid, {**PROFILE, "email": "new@example.kr"})
    assert _find(vault, EMAIL) == [] and _find(vault, "new@example.kr") == [rid]
    assert _tokens(vault) == 1
    app.delete_record(rid)
    assert _find(vault, "new@example.kr") == [] and _tokens(vault) == 0
    # read-once: the read that releases it destroys its tokens; under a hold it is kept unfound
    ticket = app.put_record("member-1", "ticket", {"number": "T-1"}).record_id
    assert app.get_record(ticket, "visit").fields == {"number": "T-1"}
    assert app.find_records("ticket", "number", "T-1", "visit").records == [] and _tokens(vault) == 0
    held = app.put_record("member-2", "ticket", {"number": "T-2"}).record_id
    hold = legal.place_hold("member-2", "litigation", "case-7")
    assert app.get_record(held, "visit").fields == {"number": "T-2"}
    assert app.find_records("ticket", "number", "T-2", "visit").records == [] and _tokens(vault) == 0
    legal.release_hold(hold["hold_id"])
    # erasure: with the key, in the same transaction
    app.put_record("member-3", "member_profile", PROFILE)
    assert _tokens(vault) == 1
    assert app.erase_subject("member-3")
    assert _tokens(vault) == 0 and _find(vault, EMAIL) == []
    with pytest.raises(FailedPrecondition):
        app.put_record("member-3", "member_profile", PROFILE)


def test_a_record_kept_by_law_stays_findable_for_its_legal_purpose_only(vault: Vault) -> None:
    app = vault.client("app")
    pay = {"amount": "120000", "currency": "KRW", "provider_reference": "PG-20261201-77"}
    rid = app.put_record("member-1", "payment_record", pay).record_id
    app.put_record("member-1", "member_profile", PROFILE)
    assert app.erase_subject("member-1")
    ref = "PG-20261201-77"
    legal = app.find_records("payment_record", "provider_reference", ref, "legal_obligation")
    assert [r.record_id for r in legal.records] == [rid]
    assert _find(vault, EMAIL) == []  # the erased subject's own records are gone from the index
    assert _tokens(vault) == 1


def test_a_restored_backup_finds_nothing_the_vault_destroyed_since(vault: Vault) -> None:
    app = vault.client("app")
    rid = app.put_record("member-1", "member_profile", PROFILE).record_id
    app.put_record("member-2", "member_profile", PROFILE)
    backup = vault.backup()
    vault.client("app").delete_record(rid)
    assert vault.client("app").erase_subject("member-2")
    vault.restore(backup)  # start-up replays the ledger: both destroyed again
    assert _find(vault, EMAIL) == [] and _tokens(vault) == 0


def test_no_searchable_value_is_stored_in_clear(vault: Vault) -> None:
    app = vault.client("app")
    marker = "marker-7c1f9e@example.kr"
    app.put_record("member-1", "member_profile", {**PROFILE, "email": marker})
    vault.stop()  # checkpoint the WAL into the file
    for path in vault.data_files():
        data = path.read_bytes()
        assert marker.encode() not in data and marker.casefold().encode() not in data, path
    vault.start()
    assert len(_find(vault, marker.upper())) == 1


def test_a_search_is_in_the_breach_scope_as_a_release_of_the_field(vault: Vault) -> None:
    """A search tells whether a record's field equals the value: the breach scope of its window
    lists each record found as a release of that one field to the searcher (never a refused
    match)."""
    app, sro = vault.client("app"), vault.client("sro")
    start = vault.clock.now()
    app.put_record("member-1", "member_profile", PROFILE)
    app.put_record("member-2", "member_profile", PROFILE)
    assert sro.restrict_processing("member-2", True)
    assert len(_find(vault, EMAIL)) == 1
    scope = vault.client("auditor").breach_scope(start, vault.clock.now() + 1)
    finds = [
        (s.subject_pseudonym, d)
        for s in scope.subjects
        for d in s.disclosures
        if d.action == "record.find"
    ]
    assert [(who, d.category, d.fields, d.principal) for who, d in finds] == [
        (vault.pseudonym("member-1"), "member_profile", ("email",), "app")
    ]


def test_a_search_over_unconsented_matches_is_no_repeated_denials_alarm(vault: Vault) -> None:
    """Matches left out are the search working as documented, not a caller probing: twelve
    refused matches (the alarm's threshold is ten a minute) raise no repeated_denials event."""
    from vault_service.metrics import REGISTRY

    def alarms() -> float:
        sample = REGISTRY.get_sample_value("vault_security_events_total", {"event": "repeated_denials"})
        return sample or 0.0

    app = vault.client("app")
    for i in range(12):
        app.put_record(f"member-{i}", "member_profile", PROFILE)
    before = alarms()
    assert app.find_records("member_profile", "email", EMAIL, "outreach").records == []
    rows = vault.service.store.audit_rows()
    assert len([r for r in rows if r.action == "record.find" and r.decision == "deny"]) == 12
    assert alarms() == before


def _set_policy(vault: Vault, text: str) -> None:
    vault.stop()
    (vault.home / "policy.toml").write_text(text)
    vault.start()


def test_the_backfill_indexes_what_was_written_before_and_follows_the_policy(vault: Vault) -> None:
    """Records written before a field became searchable are found once the backfill (the
    index_backfill job) ran; a changed normalisation re-indexes them; a field no longer
    searchable loses its tokens; a separated subject's records wait for its reactivation."""
    searchable = (
        'searchable = ["email"]   # FindRecords: the member by e-mail (NFC, trimmed, case folded)\n'
    )
    full = _policy()
    assert full.count(searchable) == 1
    _set_policy(vault, full.replace(searchable, ""))
    app = vault.client("app")
    rid = app.put_record("member-1", "member_profile", PROFILE).record_id
    sleeper = app.put_record("member-2", "member_profile", {**PROFILE, "email": "s@example.kr"})
    vault.clock.advance(200 * DAY)
    app.put_record("member-1", "concern_text", {"text": "still here"})  # member-1 stays active
    vault.clock.advance(200 * DAY)
    assert vault.service.sweep_dormancy()["dormant"] == 1  # member-2: separated
    _set_policy(vault, full)
    assert _find(vault, EMAIL) == []  # not indexed yet
    assert vault.service.search.backfill() == 1  # member-2's record waits: its key is separated
    assert _find(vault, EMAIL) == [rid] and _tokens(vault) == 1
    assert vault.service.search.backfill() == 0  # nothing left
    assert vault.client("app").get_record(sleeper.record_id, "reactivation").fields  # a login
    assert vault.service.search.backfill() == 1
    assert _find(vault, "S@example.kr") == [sleeper.record_id]
    _set_policy(vault, full.replace(searchable, 'searchable = { email = "exact" }\n'))
    assert vault.service.search.backfill() == 2
    assert _find(vault, EMAIL) == [rid] and _find(vault, EMAIL.lower()) == []  # exact now
    _set_policy(vault, full.replace(searchable, ""))
    assert vault.service.search.backfill() == 2 and _tokens(vault) == 0
