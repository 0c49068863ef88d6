"""The breach scope over a two-year audit trail of 1,000,000 entries, on SQLite and PostgreSQL.

The entries (releases by every release action, refusals, writes and job runs, across 50,000
subjects and 20 principals, evenly over two years) are inserted straight into a migrated store's
``audit_log`` with ``executemany`` (their hashes are not a chain: the query never reads them).
Each figure is the store's own ``breach_scope`` for a window at the end of the trail (and for
one principal in it); its baseline is the same call in the same run before any index it could use
existed (the release indexes of schema 18, and the older indexes by time and by principal): a
scan of the whole trail. SQLite runs without ANALYZE, as the service runs it; PostgreSQL after
one, as autovacuum does after a bulk load.
"""

from __future__ import annotations

import random
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from benchmarks.harness import Result, median_of
from vault_service.storage.migrations import MIGRATIONS
from vault_service.storage.records import RecordStore
from vault_service.storage.rows import BreachQuery
from vault_service.storage.sqlite import SqliteRecordStore

ENTRIES = 1_000_000
YEARS = 2
START = 1_750_000_000.0
SPAN = YEARS * 365 * 86400.0
#: the indexes the query can use, as the migrations create them
TIME_INDEXES = ("audit_releases", "audit_releases_by_principal", "audit_by_at", "audit_by_principal")
#: (label, window, principal filter)
WINDOWS = (
    ("72 h window", 72 * 3600.0, ""),
    ("30-day window", 30 * 86400.0, ""),
    ("72 h window, one principal", 72 * 3600.0, "clinic-0"),
)
BATCH = 20_000

CATEGORIES = {
    "concern_text": ("text", "body_area", "budget", "stay_schedule"),
    "concern_photo": ("caption", "content"),
    "member_profile": ("email", "contact", "language"),
    "payment_record": ("amount", "currency"),
}
RELEASES = (  # (action, principal prefix, role, purpose)
    ("record.get", "app", "application", "matching"),
    ("record.get", "app", "application", "customer_support"),
    ("share.read", "clinic", "clinic", "clinic_proposal"),
    ("subject.export", "sro", "subject_rights_officer", "subject_access"),
)


def _index_statements() -> list[str]:
    """The CREATE INDEX statements of :data:`TIME_INDEXES`, taken from the migrations."""
    found = [
        s
        for _, statements in MIGRATIONS
        for s in statements
        if any(s.startswith(f"CREATE INDEX {name} ") for name in TIME_INDEXES)
    ]
    assert len(found) == len(TIME_INDEXES), found
    return found


def _rows() -> Iterator[tuple[Any, ...]]:
    """The entries, oldest first: 70% releases, 10% refusals, 20% writes and job runs."""
    rng = random.Random(21)  # noqa: S311 - reproducible test data, not secrets
    step = SPAN / ENTRIES
    digest = bytes(32)
    for i in range(ENTRIES):
        seq = i + 1
        at = START + i * step + rng.random() * step
        subject = f"{rng.randrange(50_000):032x}"
        record = f"01a2013c-0000-7000-8000-{rng.randrange(200_000):012x}"
        roll = rng.random()
        category: str | None = rng.choice(tuple(CATEGORIES))
        fields: str | None = None
        role: str | None = None
        if roll < 0.7:
            action, who, role, purpose = rng.choice(RELEASES)
            principal = f"{who}-{rng.randrange(5)}"
            names = CATEGORIES[str(category)]
            fields = ",".join(sorted(rng.sample(names, rng.randint(1, len(names)))))
            decision, reason = "allow", "released"
        elif roll < 0.8:
            action, principal, purpose = "record.get", f"clinic-{rng.randrange(5)}", "matching"
            decision, reason = "deny", "purpose not permitted for role"
        elif roll < 0.95:
            action, principal, purpose = "record.put", f"app-{rng.randrange(5)}", ""
            decision, reason = "allow", "stored"
        else:
            action, principal, purpose, category = "job.retention", "vault-service", "", None
            decision, reason = "allow", "shredded"
        yield (
            seq,
            at,
            principal,
            action,
            purpose,
            subject,
            record,
            decision,
            reason,
            f"c-{seq}",
            digest,
            digest,
            None,
            category,
            fields,
            role,
        )


INSERT = (
    "INSERT INTO audit_log (seq, at, principal, action, purpose, subject_pseudonym, record_id,"
    " decision, reason, correlation_id, prev_hash, entry_hash, witnessed_version, category,"
    " released_fields, role) VALUES ({})"
)


def _batches() -> Iterator[list[tuple[Any, ...]]]:
    batch: list[tuple[Any, ...]] = []
    for row in _rows():
        batch.append(row)
        if len(batch) == BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def _measure(
    backend: str, store: RecordStore, execute: Callable[[str], None], end: float, analyze: bool
) -> list[Result]:
    """The windows' query times without, then with, the indexes (medians, ms)."""

    def timed(query: BreachQuery) -> Callable[[], float]:
        def once() -> float:
            started = time.perf_counter()
            rows = store.breach_scope(query)
            elapsed = (time.perf_counter() - started) * 1000
            assert rows.groups
            return elapsed

        return once

    queries = [(label, BreachQuery(end - width, end, principal=p)) for label, width, p in WINDOWS]
    without = {label: median_of(timed(q)) for label, q in queries}
    for statement in _index_statements():
        execute(statement)
    if analyze:
        execute("ANALYZE")
    results = []
    for label, q in queries:
        rows = store.breach_scope(q)
        releases = sum(g.releases for g in rows.groups)
        results.append(
            Result(
                f"breach scope, {label}, 1M-entry trail ({backend})",
                median_of(timed(q)),
                "ms",
                "the same query without its indexes",
                without[label],
                f"{releases:,} releases of {len(rows.records):,} subjects in the window",
            )
        )
    return results


def _sqlite(home: Path) -> list[Result]:
    import sqlite3

    store = SqliteRecordStore(home / "bench.db")
    store.migrate()
    store.close()
    conn = sqlite3.connect(home / "bench.db", isolation_level=None)
    for name in TIME_INDEXES:
        conn.execute(f"DROP INDEX {name}")
    started = time.perf_counter()
    conn.execute("BEGIN")
    for batch in _batches():
        conn.executemany(INSERT.format(",".join("?" * 16)), batch)
    conn.execute("COMMIT")
    print(f"  (sqlite: {ENTRIES:,} entries inserted in {time.perf_counter() - started:.1f} s)")
    end = float(conn.execute("SELECT MAX(at) FROM audit_log").fetchone()[0])
    store = SqliteRecordStore(home / "bench.db")
    try:
        return _measure("SQLite", store, conn.execute, end, analyze=False)
    finally:
        store.close()
        conn.close()


def _postgres() -> list[Result]:
    import psycopg

    from tests.support.postgres import PostgresCluster
    from vault_service.storage.postgres import PostgresRecordStore

    cluster = PostgresCluster(durable=True).start()
    try:
        dsn = cluster.new_database()
        store = PostgresRecordStore(dsn)
        store.migrate()
        with psycopg.connect(dsn, autocommit=True) as conn:
            for name in TIME_INDEXES:
                conn.execute(f"DROP INDEX {name}")
            started = time.perf_counter()
            with conn.transaction(), conn.cursor() as cur:
                for batch in _batches():
                    cur.executemany(INSERT.format(",".join(["%s"] * 16)), batch)
            conn.execute("ANALYZE")
            print(f"  (postgres: {ENTRIES:,} entries inserted in {time.perf_counter() - started:.1f} s)")
            head = conn.execute("SELECT MAX(at) FROM audit_log").fetchone()
            assert head is not None
            end = float(head[0])

            def execute(sql: str) -> None:
                conn.execute(sql)

            try:
                return _measure("PostgreSQL", store, execute, end, analyze=True)
            finally:
                store.close()
    finally:
        cluster.stop()


def run() -> list[Result]:
    with tempfile.TemporaryDirectory() as tmp:
        results = _sqlite(Path(tmp))
    return results + _postgres()
