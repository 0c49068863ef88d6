"""The release actions are written twice: as :data:`RELEASE_ACTIONS` (audit/model.py), from which
the breach-scope query builds its WHERE, and as literals in the partial indexes of schema 18
(a shipped migration is never edited). SQLite uses a partial index only if the query's WHERE
repeats the index's terms, the IN list in the same order: if the two drifted apart, the query
would still answer, but by scanning the whole trail's time index. These tests hold them
together, and check on SQLite that the window query does use the partial indexes."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pytest

from vault_service.audit.model import RELEASE_ACTIONS
from vault_service.policy import Action
from vault_service.storage.migrations import MIGRATIONS
from vault_service.storage.rows import BreachQuery
from vault_service.storage.sql.audit import RELEASES, breach_sql
from vault_service.storage.sqlite import SqliteRecordStore

INDEXES = ("audit_releases", "audit_releases_by_principal")


def _index_predicates() -> dict[str, str]:
    """Each partial index of schema 18: the text of its WHERE."""
    (statements,) = [s for version, s in MIGRATIONS if version == 18]
    out = {}
    for statement in statements:
        m = re.fullmatch(r"CREATE INDEX (\w+) ON audit_log\([\w, ]+\) WHERE (.+)", statement)
        if m:
            out[m.group(1)] = m.group(2)
    return out


def _actions_of(predicate: str) -> list[str]:
    m = re.fullmatch(r"decision = 'allow' AND action IN \(((?:'[a-z._]+'(?:, )?)+)\)", predicate)
    assert m, predicate
    return re.findall(r"'([a-z._]+)'", m.group(1))


def test_the_partial_indexes_name_exactly_the_release_actions_in_their_order() -> None:
    predicates = _index_predicates()
    assert set(predicates) == set(INDEXES)
    for name, predicate in predicates.items():
        assert _actions_of(predicate) == list(RELEASE_ACTIONS), name
        # word for word what the query says (SQLite matches the terms, not their meaning)
        assert predicate == RELEASES, name
    assert _actions_of(RELEASES) == list(RELEASE_ACTIONS)
    # every release action is an action of the policy (a typo would match no entry)
    assert set(RELEASE_ACTIONS) <= {a.value for a in Action}


@pytest.mark.parametrize(
    "filters", [{}, {"category": "concern_text"}, {"purpose": "matching", "category": "c"}]
)
def test_the_query_puts_the_release_predicate_first_with_every_filter(filters: dict[str, str]) -> None:
    for statement in breach_sql(BreachQuery(0.0, 1.0, **filters))[:2]:
        assert f" WHERE {RELEASES} AND at >= ? AND at <= ?" in statement


def _plan(db: Path, sql: str, args: list[object]) -> str:
    with sqlite3.connect(db) as conn:
        return " | ".join(r[3] for r in conn.execute(f"EXPLAIN QUERY PLAN {sql}", args))


@pytest.fixture
def db(tmp_path: Path) -> Path:
    store = SqliteRecordStore(tmp_path / "vault.db")
    store.migrate()
    store.close()
    return tmp_path / "vault.db"


@pytest.mark.parametrize(
    ("filters", "index"),
    [
        ({}, "audit_releases"),
        ({"category": "concern_text", "purpose": "matching"}, "audit_releases"),
        ({"principal": "app"}, "audit_releases_by_principal"),
    ],
)
def test_sqlite_reads_a_window_through_the_partial_index(
    db: Path, filters: dict[str, str], index: str
) -> None:
    grouped, per_subject, args = breach_sql(BreachQuery(0.0, 1.0, **filters))
    for sql in (grouped, per_subject):
        assert f"USING INDEX {index} (" in _plan(db, sql, args), sql


def test_a_drifted_predicate_would_lose_the_index(db: Path) -> None:
    """The control: the same actions in another order (or one fewer) are not matched to the
    partial index, which is why the order is pinned above."""
    grouped, _, args = breach_sql(BreachQuery(0.0, 1.0))
    drifted = [
        RELEASES.replace("'record.get', 'share.read'", "'share.read', 'record.get'"),
        RELEASES.replace(", 'record.find'", ""),
    ]
    for predicate in drifted:
        assert predicate != RELEASES
        plan = _plan(db, grouped.replace(RELEASES, predicate), args)
        assert "audit_releases" not in plan, plan
