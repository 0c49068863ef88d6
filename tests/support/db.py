"""Direct SQL on a test vault's database, SQLite or PostgreSQL alike: for tests that inspect rows or
tamper with them the way someone with database access could. Queries use ``?`` placeholders."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from vault_service.config import load_config
from vault_service.storage import RecordStore, SqliteRecordStore


class RawDb:
    """``with RawDb(home) as db: db.execute(...)``: committed and closed at the end. ``home`` is a
    test vault's directory (its vault.toml names the database)."""

    def __init__(
        self, home: Path | None = None, *, sqlite_path: Path | None = None, dsn: str = ""
    ) -> None:
        if home is not None:
            config = load_config(home / "vault.toml", {})
            dsn = config.storage.postgres_dsn if config.storage.backend == "postgres" else ""
            sqlite_path = config.path(config.storage.sqlite_path)
        self.backend = "postgres" if dsn else "sqlite"
        self.conn: Any
        if dsn:
            import psycopg

            self.conn = psycopg.connect(dsn)
        else:
            import sqlite3

            self.conn = sqlite3.connect(sqlite_path or ":memory:")

    def execute(self, sql: str, params: tuple[Any, ...] | list[Any] = ()) -> Any:
        if self.backend == "postgres":
            if sql.startswith("PRAGMA"):  # SQLite's switches (foreign_keys ...) mean nothing here
                return self.conn.execute("SELECT 1")
            return self.conn.execute(sql.replace("?", "%s"), tuple(params) or None)
        return self.conn.execute(sql, params)

    def __enter__(self) -> RawDb:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if kind is None:
            self.conn.commit()
        self.conn.close()


def copy_ciphertext(home: Path, source: str, target: str, table: str = "record_payloads") -> None:
    """Tampering as someone with database access could: record ``source``'s stored ciphertext
    (``record_payloads``) or wrapped data key (``record_keys``) written over ``target``'s."""
    column = {"record_payloads": "ciphertext", "record_keys": "wrapped"}[table]
    with RawDb(home) as db:
        db.execute(
            f"UPDATE {table} SET {column} = (SELECT {column} FROM {table} WHERE record_id = ?"
            " LIMIT 1) WHERE record_id = ?",
            (source, target),
        )


@dataclass
class TestDatabase:
    """One empty database of a backend: stores opened on it (several = several replicas) are
    closed at the end of the test; :meth:`raw` gives direct SQL access."""

    backend: str
    sqlite_path: Path
    dsn: str = ""
    opened: list[RecordStore] = field(default_factory=list)

    __test__ = False

    def store(self) -> RecordStore:
        s: RecordStore
        if self.backend == "postgres":
            from vault_service.storage.postgres import PostgresRecordStore

            s = PostgresRecordStore(self.dsn, max_connections=20)
        else:
            s = SqliteRecordStore(self.sqlite_path)
        s.migrate()
        self.opened.append(s)
        return s

    def raw(self) -> RawDb:
        return RawDb(sqlite_path=self.sqlite_path, dsn=self.dsn)

    def close(self) -> None:
        for s in self.opened:
            s.close()
