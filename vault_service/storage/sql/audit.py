"""The audit chain: the queries of the ``audit_log`` table.

Contract: every entry is written inside the transaction of the operation it records (so a
mutation without its entry never commits), as a pending entry (:mod:`.audit_pending`: no lock
another writer waits on); the sequencer gives it its sequence number and the hash linking it to
the previous entry, so that the chain is one unbroken sequence. Reads of ``audit_log`` return
entries in sequence order; pruning deletes only a prefix of the chain.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from vault_service import metrics, security_events
from vault_service.audit.model import RELEASE_ACTIONS, AuditEntry, AuditRow
from vault_service.storage.rows import AuditQuery, BreachQuery, BreachRows, ReleaseGroup
from vault_service.storage.sql.audit_pending import FIELDS, SqlAuditPending, row_of
from vault_service.storage.sql.base import Connection, as_bytes

#: the releases, as the partial indexes of schema 18 state them: a query must repeat these
#: terms word for word, the actions in the same order, for SQLite to use those indexes
#: (tests/audit/test_breach_scope_index.py holds the two together)
RELEASES = (
    "decision = 'allow' AND action IN (" + ", ".join(f"'{action}'" for action in RELEASE_ACTIONS) + ")"
)


def fields_text(names: tuple[str, ...] | None) -> str | None:
    """The ``released_fields`` column: the names comma-joined (policy names hold no comma)."""
    return None if names is None else ",".join(names)


def fields_of(text: str | None) -> tuple[str, ...] | None:
    return None if text is None else tuple(text.split(",")) if text else ()


def breach_sql(query: BreachQuery) -> tuple[str, str, list[object]]:
    """The two statements of a breach window (the release groups; the distinct records per
    subject) and their arguments: both match with :data:`RELEASES` first, so that either engine
    can use the partial indexes of schema 18."""
    where = [RELEASES, "at >= ?", "at <= ?"]
    args: list[object] = [query.start, query.end]
    for column in ("principal", "category", "purpose"):
        value = getattr(query, column)
        if value:
            where.append(f"{column} = ?")
            args.append(value)
    match = " AND ".join(where)
    keys = "subject_pseudonym, category, released_fields, principal, role, action, purpose"
    return (
        f"SELECT {keys}, COUNT(*), MIN(at), MAX(at) FROM audit_log WHERE {match} GROUP BY {keys}",
        "SELECT subject_pseudonym, COUNT(DISTINCT record_id) FROM audit_log"
        f" WHERE {match} GROUP BY subject_pseudonym",
        args,
    )


class SqlAudit(SqlAuditPending):
    """Appends to the audit chain and its reads."""

    def _audited(self, conn: Connection, row: AuditRow | None) -> None:
        """:meth:`_insert_audits` of one entry (or none)."""
        self._insert_audits(conn, () if row is None else (row,))

    def _insert_audits(self, conn: Connection, rows: Sequence[AuditRow]) -> None:
        """Write ``rows`` inside the caller's write transaction as pending entries: durable
        when the caller commits, with no lock another writer waits on; the sequencer gives them
        their places in the chain (storage/sql/audit_pending.py). A failure is counted and
        reported (the caller's transaction, and so the operation being audited, fails with it)."""
        try:
            self._insert_pending_audits(conn, rows)
        except Exception:
            metrics.AUDIT_WRITE_FAILURES.inc()
            security_events.emit("audit_write_failed")
            raise

    def append_audit(self, audit: AuditRow) -> None:
        with self._write() as conn:
            self._audited(conn, audit)

    def append_audits(self, audits: Sequence[AuditRow]) -> None:
        with self._write() as conn:
            self._insert_audits(conn, audits)

    _ENTRY = (
        "SELECT seq, at, principal, action, decision, reason, purpose, subject_pseudonym,"
        " record_id, correlation_id, prev_hash, entry_hash, witnessed_version, category,"
        " released_fields, role FROM audit_log"
    )

    @staticmethod
    def _entry(r: Any) -> AuditEntry:
        witnessed = int(r[12]) if r[12] is not None else None
        row = AuditRow(
            at=r[1],
            principal=r[2],
            action=r[3],
            decision=r[4],
            reason=r[5],
            purpose=r[6],
            subject_pseudonym=r[7],
            record_id=r[8],
            correlation_id=r[9],
            witnessed_version=witnessed,
            category=r[13],
            released_fields=fields_of(r[14]),
            role=r[15],
        )
        return AuditEntry(int(r[0]), row, as_bytes(r[10]), as_bytes(r[11]))

    def audit_rows(self, limit: int = 1000) -> list[AuditRow]:
        """The latest ``limit`` entries, oldest first: the chain's, then the pending ones."""
        with self._read() as conn:
            pending = conn.execute(
                f"SELECT {FIELDS} FROM audit_pending ORDER BY id DESC LIMIT ?", (limit,)
            ).fetchall()
            rows = conn.execute(
                f"{self._ENTRY} ORDER BY seq DESC LIMIT ?", (limit - len(pending),)
            ).fetchall()
        return [self._entry(r).row for r in reversed(rows)] + [row_of(r) for r in reversed(pending)]

    def audit_entries(self, after_seq: int, limit: int) -> list[AuditEntry]:
        with self._read() as conn:
            rows = conn.execute(
                f"{self._ENTRY} WHERE seq > ? ORDER BY seq LIMIT ?", (after_seq, limit)
            ).fetchall()
        return [self._entry(r) for r in rows]

    def witness_unwitnessed(self, limit: int, audit_for: Callable[[str, bytes, int], AuditRow]) -> int:
        with self._write() as conn:
            rows = conn.execute(
                "SELECT r.record_id, r.subject_ref, r.version FROM records r WHERE NOT EXISTS"
                " (SELECT 1 FROM audit_log a WHERE a.record_id = r.record_id"
                " AND a.witnessed_version IS NOT NULL) AND NOT EXISTS"
                " (SELECT 1 FROM audit_pending p WHERE p.record_id = r.record_id"
                f" AND p.witnessed_version IS NOT NULL) ORDER BY r.record_id LIMIT ?{self._FOR_SHARE}",
                (limit,),
            ).fetchall()
            for record_id, ref, version in rows:
                self._audited(conn, audit_for(record_id, as_bytes(ref), int(version)))
        return len(rows)

    def audit_head(self) -> AuditEntry | None:
        with self._read() as conn:
            row = conn.execute(f"{self._ENTRY} ORDER BY seq DESC LIMIT 1").fetchone()
        return self._entry(row) if row else None

    def audit_entry(self, seq: int) -> AuditEntry | None:
        with self._read() as conn:
            row = conn.execute(f"{self._ENTRY} WHERE seq = ?", (seq,)).fetchone()
        return self._entry(row) if row else None

    def audit_first_seq_since(self, at: float) -> int | None:
        with self._read() as conn:
            row = conn.execute("SELECT MIN(seq) FROM audit_log WHERE at >= ?", (at,)).fetchone()
        return int(row[0]) if row and row[0] is not None else None

    def delete_audit_before(self, seq: int) -> int:
        with self._write() as conn:
            return int(conn.execute("DELETE FROM audit_log WHERE seq < ?", (seq,)).rowcount)

    def query_audit(self, query: AuditQuery, after_seq: int, limit: int) -> list[AuditEntry]:
        where: list[str] = ["seq > ?"]
        args: list[object] = [after_seq]
        for column in ("subject_pseudonym", "principal", "action", "decision"):
            value = getattr(query, column)
            if value:
                where.append(f"{column} = ?")
                args.append(value)
        if query.since is not None:
            where.append("at >= ?")
            args.append(query.since)
        if query.until is not None:
            where.append("at < ?")
            args.append(query.until)
        with self._read() as conn:
            rows = conn.execute(
                f"{self._ENTRY} WHERE {' AND '.join(where)} ORDER BY seq LIMIT ?",
                (*args, limit),
            ).fetchall()
        return [self._entry(r) for r in rows]

    def breach_scope(self, query: BreachQuery) -> BreachRows:
        grouped, per_subject, args = breach_sql(query)
        with self._read() as conn:
            rows = conn.execute(grouped, args).fetchall()
            records = conn.execute(per_subject, args).fetchall()
            oldest = conn.execute("SELECT seq, at FROM audit_log ORDER BY seq LIMIT 1").fetchone()
        groups = [
            ReleaseGroup(
                subject_pseudonym=r[0],
                category=r[1],
                released_fields=fields_of(r[2]),
                principal=r[3],
                role=r[4],
                action=r[5],
                purpose=r[6],
                releases=int(r[7]),
                first_at=float(r[8]),
                last_at=float(r[9]),
            )
            for r in rows
        ]
        return BreachRows(
            groups,
            {str(p): int(n) for p, n in records},
            int(oldest[0]) if oldest else None,
            float(oldest[1]) if oldest else None,
        )
