"""Lifecycle notices reach the application (issue 20, part 5), over a real gRPC server.

The promise: the application is told, by the subject id it used, that a person must get the
dormancy notice (seed 001: "prior notice provided to the User 30 days before conversion"), from
the day it is due until the person is active again or dormant; never for an erased or
dormant subject; every id released is on the audit record. What could break it: activity after
the notice (it must be void, and the next inactivity must give a new one), erasure (the sealed
id dies with the subject key), a restart, paging, a role without the right.
"""

from __future__ import annotations

import pytest

from tests.regressions import conftest as harness
from tests.regressions.conftest import DAY, Vault
from vault_service.errors import InvalidArgument, PermissionDenied

vault = harness.vault
clock = harness.clock
policy_text = harness.policy_text

DORMANT, NOTICE, DESTROY = 365 * DAY, 30 * DAY, 1460 * DAY


def _sweep(vault: Vault) -> dict[str, int]:
    rule = vault.service.notices.rule  # the policy's rule (tests/conftest.py TEST_DORMANCY)
    assert rule is not None and (rule.after, rule.notice, rule.destroy_after) == (
        DORMANT,
        NOTICE,
        DESTROY,
    )
    return vault.service.sweep_dormancy()


def _due(vault: Vault, who: str = "app") -> dict[str, dict[str, object]]:
    return {n["subject_id"]: n for n in vault.client(who).iter_notices(page_size=2)}


def test_a_notice_names_the_subject_from_when_it_is_due_until_dormancy(vault: Vault) -> None:
    app = vault.client("app")
    start = vault.clock.now()
    for subject in ("m-1", "m-2", "m-3"):
        app.put_record(subject, "concern_text", {"text": subject})
    vault.clock.advance(DORMANT - NOTICE - DAY)
    _sweep(vault)
    assert _due(vault) == {}  # not due yet
    vault.clock.advance(2 * DAY)
    assert _sweep(vault)["notices"] == 3
    due = _due(vault)  # three notices over two pages
    assert set(due) == {"m-1", "m-2", "m-3"}
    notice = due["m-1"]
    assert notice["kind"] == "dormancy" and notice["due_at"] == vault.clock.now()
    assert notice["effective_at"] == pytest.approx(start + DORMANT)
    assert notice["subject_pseudonym"] == vault.pseudonym("m-1")
    vault.restart()
    assert set(_due(vault)) == {"m-1", "m-2", "m-3"}  # polled again: still due (at least once)
    listed = [r for r in vault.service.store.audit_rows() if r.action == "notice.list"]
    assert len(listed) == 6 and {r.subject_pseudonym for r in listed} >= {vault.pseudonym("m-1")}
    vault.clock.advance(NOTICE)
    assert _sweep(vault)["dormant"] == 3
    assert _due(vault) == {}  # dormant now: the notice is past


def test_activity_voids_a_notice_and_the_next_inactivity_gives_a_new_one(vault: Vault) -> None:
    app = vault.client("app")
    app.put_record("m-1", "concern_text", {"text": "a"})
    vault.clock.advance(DORMANT - NOTICE + DAY)
    _sweep(vault)
    assert set(_due(vault)) == {"m-1"}
    app.put_record("m-1", "concern_text", {"text": "back"})  # the person came back
    assert _due(vault) == {}
    vault.clock.advance(DORMANT - NOTICE + DAY)
    assert _sweep(vault)["notices"] == 1  # a new notice for the new inactivity
    assert set(_due(vault)) == {"m-1"}


def test_an_erased_subject_is_never_named(vault: Vault) -> None:
    app = vault.client("app")
    app.put_record("m-1", "concern_text", {"text": "a"})
    app.put_record("m-2", "concern_text", {"text": "b"})
    vault.clock.advance(DORMANT - NOTICE + DAY)
    _sweep(vault)
    app.erase_subject("m-1")
    assert set(_due(vault)) == {"m-2"}
    sealed = vault.service.store.due_notices(b"", 10)
    assert [row.subject_ref for row in sealed] == [vault.service.subject_ref("m-2")]


def test_notice_requests_are_checked(vault: Vault) -> None:
    app = vault.client("app")
    with pytest.raises(InvalidArgument):
        app.list_notices(kind="birthday")
    with pytest.raises(InvalidArgument):
        app.list_notices(page_token="not hex")
    with pytest.raises(InvalidArgument):
        app.list_notices(page_size=1001)
    with pytest.raises(PermissionDenied):  # a clinic never learns who is going dormant
        vault.client("clinic").list_notices()
    assert app.list_notices(kind="dormancy") == ([], "")


def test_a_restricted_subject_is_not_told_of_dormancy(vault: Vault) -> None:
    """Restriction keeps a subject from going dormant, so no notice is due for it."""
    vault.client("app").put_record("m-1", "concern_text", {"text": "a"})
    vault.client("app").put_record("m-2", "concern_text", {"text": "b"})
    vault.client("sro").restrict_processing("m-1")
    vault.clock.advance(DORMANT - NOTICE + DAY)
    _sweep(vault)
    assert set(_due(vault)) == {"m-2"}
