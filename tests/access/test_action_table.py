"""The action table of docs/policy.md against the code (every action, every RPC, nothing more)
and the shipped policies (deletion verification for operators and auditors, the audit query, the
breach scope and the audit tail for auditors only, holds for a legal officer), so that the docs
cannot drift from what the interceptor enforces."""

from __future__ import annotations

import re

import pytest

from tests.conftest import ROOT
from vault_service.policy import Action, load_policy
from vault_service.rpc.actions import RPC_ACTIONS

ROW = re.compile(r"^\| `([a-z._]+)` \| (.+) \|$")


def _table() -> dict[str, str]:
    text = (ROOT / "docs" / "policy.md").read_text()
    section = text[text.index("| action | RPCs |") :]
    rows: dict[str, str] = {}
    for line in section.splitlines()[2:]:
        if not line.startswith("|"):
            break
        match = ROW.match(line)
        assert match, f"malformed row of the action table: {line}"
        rows[match.group(1)] = match.group(2)
    return rows


def test_the_table_lists_every_action_once_and_only_actions() -> None:
    assert sorted(_table()) == sorted(a.value for a in Action)


def test_each_rpc_is_in_the_row_of_its_action() -> None:
    table = _table()
    for rpc, action in RPC_ACTIONS.items():
        assert re.search(rf"\b{rpc}\b", table[action.value]), f"{rpc} missing from `{action.value}`"


@pytest.mark.parametrize("name", sorted(p.name for p in (ROOT / "policies").glob("*.toml")))
def test_shipped_policies_grant_verification_and_holds_consistently(name: str) -> None:
    policy = load_policy((ROOT / "policies" / name).read_text(), name)
    for role in ("operator", "auditor"):
        assert Action.DELETION_VERIFY in policy.roles[role].actions, (name, role)
    auditing = {Action.AUDIT_QUERY, Action.AUDIT_BREACH_SCOPE, Action.AUDIT_TAIL}
    assert auditing <= policy.roles["auditor"].actions, name
    for action in (Action.AUDIT_BREACH_SCOPE, Action.AUDIT_TAIL):
        assert not any(  # the auditor's: no other role of a shipped policy has them
            action in r.actions for n, r in policy.roles.items() if n != "auditor"
        ), (name, action)
    holds = {Action.HOLD_PLACE, Action.HOLD_RELEASE, Action.HOLD_LIST}
    assert holds <= policy.roles["legal_officer"].actions, name
