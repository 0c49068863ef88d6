"""Policy loader (precise errors) and the decision function."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from vault_service.errors import ConfigError
from vault_service.policy import AccessRequest, Action, Principal, decide, load_policy

ROOT = Path(__file__).resolve().parents[2]
MIN = """version = 1
[categories.note]
fields = ["text", "mood"]
[categories.photo]
fields = []
content = true
[purposes.care]
categories = ["note", "photo"]
fields = { note = ["text"] }
[roles.app]
actions = ["record.get", "record.put"]
purposes = ["care"]
[roles.ops]
actions = ["keys.status"]
"""


def test_shipped_policies_load() -> None:
    for path in (ROOT / "policies").glob("*.toml"):
        policy = load_policy(path.read_text(), str(path))
        assert policy.categories and policy.roles


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (("version = 1", "version = 2"), "p.toml: version: must be 1"),
        (
            ('categories = ["note", "photo"]', 'categories = ["note", "x"]'),
            r"p.toml: purposes.care.categories\[1\]: unknown category 'x'",
        ),
        (
            ('actions = ["keys.status"]', 'actions = ["keys.steal"]'),
            r"roles.ops.actions\[0\]: unknown action 'keys.steal'",
        ),
        (
            ('fields = { note = ["text"] }', 'fields = { note = ["texts"] }'),
            r"purposes.care.fields.note\[0\]: unknown field 'texts'",
        ),
        (
            ('fields = ["text", "mood"]', 'fields = ["text", "text"]'),
            "categories.note.fields: has duplicates",
        ),
        (('fields = ["text", "mood"]', 'fields = ["content"]'), "'content' is reserved"),
        (("content = true", "content = false"), "declares no fields and no content"),
        (('purposes = ["care"]', 'purposes = ["care"]\nlevel = 3'), "roles.app.level: unknown key"),
        (("[roles.ops]", "[roles.Ops]"), "roles.Ops: names are lower-case"),
    ],
)
def test_loader_errors_name_file_and_key(edit: tuple[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_policy(MIN.replace(*edit), "p.toml")


def test_principal_token_validation() -> None:
    text = MIN + '[principals.a]\nrole = "app"\ntoken_sha256 = "' + "a" * 64 + '"\n'
    assert load_policy(text).principals["a"].token_sha256 == bytes.fromhex("a" * 64)
    with pytest.raises(ConfigError, match=r"principals\.b\.role: unknown role 'nobody'"):
        load_policy(MIN + '[principals.b]\nrole = "nobody"\n', "p.toml")
    with pytest.raises(ConfigError, match="token_sha256: must be 64 lower-case hex"):
        load_policy(MIN + '[principals.b]\nrole = "app"\ntoken_sha256 = "xyz"\n')
    dup = text + '[principals.c]\nrole = "app"\ntoken_sha256 = "' + "a" * 64 + '"\n'
    with pytest.raises(ConfigError, match="the same token is given to two principals"):
        load_policy(dup)


def _req(role: str, action: Action, **kw: object) -> AccessRequest:
    return AccessRequest(Principal("p", role), action, 0.0, **kw)  # type: ignore[arg-type]


def test_decide_table() -> None:
    policy = load_policy(MIN)
    get = Action.RECORD_GET
    cases = [
        (_req("app", get, purpose="care", category="note"), True, {"text"}),
        (_req("app", get, purpose="care", category="photo"), True, {"content"}),
        (_req("app", get, purpose="care", category="note", fields=frozenset({"mood"})), False, None),
        (
            _req("app", get, purpose="care", category="note", fields=frozenset({"text"})),
            True,
            {"text"},
        ),
        (_req("app", get, purpose=None), False, None),
        (_req("app", get, purpose="other"), False, None),
        (_req("ops", get, purpose="care"), False, None),
        (_req("nobody", get, purpose="care"), False, None),
        (_req("app", Action.RECORD_PUT, category="note"), True, set()),
        (_req("app", Action.RECORD_PUT, category="nope"), False, None),
        (_req("app", Action.SUBJECT_ERASE), False, None),
        (_req("ops", Action.KEYS_STATUS), True, set()),
    ]
    for request, allowed, fields in cases:
        d = decide(request, policy)
        assert d.allowed is allowed, (request, d)
        if fields is not None:
            assert set(d.fields) == fields
        assert d.reason


PARTIES = MIN.replace(
    'fields = { note = ["text"] }',
    'fields = { note = ["text"] }\nconsent_parties = ["client", "counselor"]',
)


def test_consent_parties_imply_consent_and_a_store_consent_names_such_a_purpose() -> None:
    text = PARTIES.replace("content = true", 'content = true\nstore_consent = "care"')
    policy = load_policy(text, "p.toml")
    assert policy.purposes["care"].consent_parties == ("client", "counselor")
    assert policy.purposes["care"].consent_required
    assert policy.categories["photo"].store_consent == "care"


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            ('["client", "counselor"]', '["client"]'),
            "p.toml: purposes.care.consent_parties: names two or more parties",
        ),
        (
            ('["client", "counselor"]', '["client", "client"]'),
            "purposes.care.consent_parties: has duplicates",
        ),
        (('["client", "counselor"]', '["client", "Counselor"]'), "names are lower-case"),
        (('["client", "counselor"]', '"client"'), "consent_parties: must be a list of strings"),
        (
            (
                'consent_parties = ["client", "counselor"]',
                'consent_parties = ["a", "b"]\nconsent_required = false',
            ),
            "purposes.care.consent_required: consent_parties needs consent",
        ),
        (
            ("content = true", 'content = true\nstore_consent = "nothing"'),
            "p.toml: categories.photo.store_consent: unknown purpose 'nothing'",
        ),
        (
            ("content = true", "content = true\nstore_consent = 3"),
            "categories.photo.store_consent: must be the name of a purpose",
        ),
    ],
)
def test_two_party_consent_errors_name_file_and_key(edit: tuple[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_policy(PARTIES.replace(*edit), "p.toml")


def test_a_store_consent_needs_a_consent_purpose_that_covers_the_category() -> None:
    no_consent = MIN.replace("content = true", 'content = true\nstore_consent = "care"')
    with pytest.raises(ConfigError, match=r"photo\.store_consent: the purpose must need consent"):
        load_policy(no_consent, "p.toml")
    elsewhere = PARTIES.replace('categories = ["note", "photo"]', 'categories = ["note"]')
    elsewhere = elsewhere.replace("content = true", 'content = true\nstore_consent = "care"')
    with pytest.raises(ConfigError, match="the purpose does not cover this category"):
        load_policy(elsewhere, "p.toml")


DORMANCY = MIN + "\n[dormancy]\nafter_days = 365\nnotice_days = 30\ndestroy_after_days = 1460\n"


def test_dormancy_is_the_policys_rule_and_off_without_one() -> None:
    """Dormancy is a company's own promise (PIPA dropped mandatory separation in 2023): the
    policy says it, in days; without a [dormancy] table it is off; separation is the default."""
    assert load_policy(MIN, "p.toml").dormancy is None
    rule = load_policy(DORMANCY, "p.toml").dormancy
    assert rule is not None
    assert (rule.after, rule.notice, rule.destroy_after) == (365 * 86400, 30 * 86400, 1460 * 86400)
    assert rule.separate
    kept = load_policy(MIN + "\n[dormancy]\nafter_days = 90\nseparate = false\n", "p.toml")
    assert kept.dormancy is not None
    assert (kept.dormancy.notice, kept.dormancy.destroy_after, kept.dormancy.separate) == (
        0.0,
        0.0,
        False,
    )


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (("after_days = 365\n", ""), "p.toml: dormancy.after_days: is required"),
        (("after_days = 365", "after_days = 0"), "dormancy.after_days: must be > 0 (leave out"),
        (("after_days = 365", 'after_days = "a year"'), "dormancy.after_days: must be a number"),
        (("notice_days = 30", "notice_days = 365"), "dormancy.notice_days: must be less than"),
        (("notice_days = 30", "notice_days = -1"), "dormancy.notice_days: must be a number"),
        (("destroy_after_days = 1460", "destroy_after_days = true"), "destroy_after_days: must be"),
        (("destroy_after_days = 1460", 'separate = "yes"'), "dormancy.separate: must be true or"),
        (("destroy_after_days = 1460", "destroy_after = 1"), "dormancy.destroy_after: unknown key"),
    ],
)
def test_dormancy_errors_name_file_and_key(edit: tuple[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_policy(DORMANCY.replace(*edit), "p.toml")
    with pytest.raises(ConfigError, match=re.escape("p.toml: dormancy: must be a table")):
        load_policy("dormancy = 3\n" + MIN, "p.toml")


def test_searchable_fields_and_their_normalisations() -> None:
    def note(searchable: str) -> str:
        return MIN.replace(
            'fields = ["text", "mood"]', f'fields = ["text", "mood"]\nsearchable = {searchable}'
        )

    listed = load_policy(note('["text"]'), "p.toml")
    assert dict(listed.categories["note"].searchable) == {"text": "casefold"}
    table = load_policy(note('{ text = "exact", mood = "casefold" }'), "p.toml")
    assert dict(table.categories["note"].searchable) == {"text": "exact", "mood": "casefold"}
    assert dict(load_policy(MIN, "p.toml").categories["note"].searchable) == {}


@pytest.mark.parametrize(
    ("category", "searchable", "message"),
    [
        (
            "note",
            '["nothing"]',
            "p.toml: categories.note.searchable.nothing: not a field of the category",
        ),
        (
            "note",
            '{ text = "soundex" }',
            "categories.note.searchable.text: must be one of: casefold, exact",
        ),
        ("note", "3", "categories.note.searchable: must be a table"),
        ("note", '["text", "text"]', "categories.note.searchable: has duplicates"),
        ("photo", '["content"]', "categories.photo.searchable.content: not a field of the category"),
    ],
)
def test_searchable_errors_name_file_and_key(category: str, searchable: str, message: str) -> None:
    anchor = 'fields = ["text", "mood"]' if category == "note" else "content = true"
    text = MIN.replace(anchor, f"{anchor}\nsearchable = {searchable}", 1)
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_policy(text, "p.toml")
