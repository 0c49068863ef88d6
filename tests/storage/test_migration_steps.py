"""The migrator applies every step a database lacks, not only those above its highest: two
lines of work that each added a step (here 18 and 19) may reach a database in either order."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from vault_service.storage import SqliteRecordStore
from vault_service.storage.migrations import MIGRATIONS, pending_steps


def test_pending_steps_are_every_missing_version_in_order() -> None:
    versions = [v for v, _ in MIGRATIONS]
    assert versions == sorted(versions) and len(set(versions)) == len(versions)
    assert [v for v, _ in pending_steps(set(versions) - {18})] == [18]
    assert [v for v, _ in pending_steps(set())] == versions


def test_a_database_that_has_a_later_step_still_gets_an_earlier_one(tmp_path: Path) -> None:
    db = tmp_path / "v.db"
    with sqlite3.connect(db) as conn:  # as a build that had step 19 but not yet 18 left it
        conn.execute(
            "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at REAL NOT NULL)"
        )
        for version, statements in MIGRATIONS:
            if version == 18:
                continue
            for statement in statements:
                conn.execute(statement)
            conn.execute("INSERT INTO schema_migrations VALUES (?, 0)", (version,))
    store = SqliteRecordStore(db)
    store.migrate()
    store.close()
    with sqlite3.connect(db) as conn:
        columns = {r[1] for r in conn.execute("PRAGMA table_info(audit_log)")}
        applied = {r[0] for r in conn.execute("SELECT version FROM schema_migrations")}
    assert {"category", "released_fields", "role"} <= columns
    assert applied == {v for v, _ in MIGRATIONS}
