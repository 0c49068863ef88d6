"""Legal holds and retention: the queries of the ``legal_holds`` and ``pending_deletions``
tables, and the retention sweep's selection of due records.

Contract: a hold is placed only on a live subject (or one of its records) and released
idempotently; while an active hold covers a record or subject, a deletion of it is recorded as
pending (with an audit entry saying so) instead of carried out, to be replayed at the release;
the records due under a retention rule never include held ones.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

from vault_service.audit.model import DEFERRED_REASON, AuditRow
from vault_service.storage.rows import HoldRow, PendingDeletion, PendingKind
from vault_service.storage.sql.base import Connection, SqlStoreBase, as_bytes


class SqlHolds(SqlStoreBase):
    """Legal holds, the deletions they defer, and the records retention rules make due."""

    def place_hold(self, hold: HoldRow, audit: AuditRow | None) -> None:
        with self._write() as conn:
            self._require_live_subject(conn, hold.subject_ref)
            # the reason and case reference only sealed (``hold.sealed``), never in plaintext
            conn.execute(
                "INSERT INTO legal_holds (hold_id, subject_ref, record_id, reason,"
                " case_reference, created_by, created_at, released_at, sealed)"
                " VALUES (?, ?, ?, '', '', ?, ?, NULL, ?)",
                (
                    hold.hold_id,
                    hold.subject_ref,
                    hold.record_id,
                    hold.created_by,
                    hold.created_at,
                    hold.sealed,
                ),
            )
            self._audited(conn, audit)

    _HOLD = (
        "SELECT hold_id, subject_ref, record_id, reason, case_reference, created_by, created_at,"
        " released_at, sealed FROM legal_holds"
    )

    @staticmethod
    def _hold(r: Any) -> HoldRow:
        sealed = as_bytes(r[8]) if r[8] is not None else b""
        return HoldRow(r[0], as_bytes(r[1]), r[2] or "", r[3], r[4], r[5], r[6], r[7], sealed)

    def release_hold(self, hold_id: str, now: float, audit: AuditRow | None) -> HoldRow | None:
        with self._write() as conn:
            owner = conn.execute(
                "SELECT subject_ref FROM legal_holds WHERE hold_id = ?", (hold_id,)
            ).fetchone()
            if owner is None:
                return None
            # the subject row, exclusively: a deletion deciding whether this hold defers it
            # (its shared lock, in _covered) finishes first, so its pending row is seen by the
            # release that follows, or it starts after and finds the hold gone
            conn.execute(
                f"SELECT 1 FROM subjects WHERE subject_ref = ?{self._FOR_UPDATE}", (owner[0],)
            ).fetchone()
            conn.execute(
                "UPDATE legal_holds SET released_at = COALESCE(released_at, ?) WHERE hold_id = ?",
                (now, hold_id),
            )
            row = conn.execute(f"{self._HOLD} WHERE hold_id = ?", (hold_id,)).fetchone()
            if row is None:
                return None
            self._audited(conn, audit)
        return self._hold(row)

    def plaintext_hold_terms(self, after: str, limit: int) -> list[tuple[str, bytes, bytes]]:
        with self._read() as conn:
            rows = conn.execute(
                "SELECT hold_id, subject_ref, reason, case_reference FROM legal_holds"
                " WHERE (reason != '' OR case_reference != '') AND hold_id > ?"
                " ORDER BY hold_id LIMIT ?",
                (after, limit),
            ).fetchall()
        return [
            (
                r[0],
                as_bytes(r[1]),
                json.dumps({"reason": r[2], "case_reference": r[3]}, sort_keys=True).encode(),
            )
            for r in rows
        ]

    def seal_hold_terms(self, hold_id: str, sealed: bytes) -> None:
        with self._write() as conn:
            conn.execute(
                "UPDATE legal_holds SET reason = '', case_reference = '', sealed = ? WHERE hold_id = ?",
                (sealed or None, hold_id),
            )

    def list_holds(self, subject_ref: bytes) -> list[HoldRow]:
        with self._read() as conn:
            rows = conn.execute(
                f"{self._HOLD} WHERE subject_ref = ? ORDER BY created_at, hold_id", (subject_ref,)
            ).fetchall()
        return [self._hold(r) for r in rows]

    def _defer_if_held(
        self,
        conn: Connection,
        subject_ref: bytes,
        record_id: str,
        deferred: PendingDeletion | None,
        audit: AuditRow | None,
    ) -> bool:
        """Inside a write transaction: True (after recording ``deferred``) if a hold applies."""
        if not self._covered(conn, subject_ref, record_id):
            return False
        if deferred is not None:
            self._insert_pending(conn, deferred)
            if audit is not None:
                self._audited(conn, replace(audit, decision="deferred", reason=DEFERRED_REASON))
        return True

    def _covered(
        self, conn: Connection, subject_ref: bytes, record_id: str, *, lock: bool = True
    ) -> bool:
        """Whether an active hold applies: to a record, a hold on it or on its whole subject; to
        a whole subject (no ``record_id``), any hold on it or on any of its records. With
        ``lock`` (in a write transaction) the subject row stays locked against a hold's release
        until the transaction ends."""
        if lock:
            conn.execute(
                f"SELECT 1 FROM subjects WHERE subject_ref = ?{self._FOR_SHARE}", (subject_ref,)
            ).fetchone()
        if record_id:
            return conn.execute(self._HELD, (subject_ref, record_id)).fetchone() is not None
        return (
            conn.execute(
                "SELECT 1 FROM legal_holds WHERE released_at IS NULL AND subject_ref = ?",
                (subject_ref,),
            ).fetchone()
            is not None
        )

    @staticmethod
    def _insert_pending(conn: Connection, pending: PendingDeletion) -> None:
        conn.execute(
            "INSERT INTO pending_deletions (pending_id, kind, subject_ref, record_id,"
            " requested_by, requested_at, version) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                pending.pending_id,
                pending.kind.value,
                pending.subject_ref,
                pending.record_id,
                pending.requested_by,
                pending.requested_at,
                pending.version,
            ),
        )

    def holds_cover(self, subject_ref: bytes, record_id: str = "") -> bool:
        with self._read() as conn:
            return self._covered(conn, subject_ref, record_id, lock=False)

    def release_stale_holds(
        self, subject_ref: bytes, record_id: str, before: float, audit: AuditRow | None
    ) -> int:
        now = audit.at if audit else before
        with self._write() as conn:
            if record_id:
                released = conn.execute(
                    "UPDATE legal_holds SET released_at = ? WHERE released_at IS NULL"
                    " AND subject_ref = ? AND created_at <= ?"
                    " AND (record_id IS NULL OR record_id = '' OR record_id = ?)",
                    (now, subject_ref, before, record_id),
                ).rowcount
            else:
                released = conn.execute(
                    "UPDATE legal_holds SET released_at = ? WHERE released_at IS NULL"
                    " AND subject_ref = ? AND created_at <= ?",
                    (now, subject_ref, before),
                ).rowcount
            if released and audit is not None:
                self._audited(
                    conn, replace(audit, reason=f"{released} stale holds of a restored backup released")
                )
        return int(released)

    def unheld_pending(self, limit: int) -> list[PendingDeletion]:
        with self._read() as conn:
            rows = conn.execute(
                "SELECT p.pending_id, p.kind, p.subject_ref, p.record_id, p.requested_by,"
                " p.requested_at, p.version FROM pending_deletions p WHERE NOT EXISTS"
                " (SELECT 1 FROM legal_holds h WHERE h.released_at IS NULL"
                " AND h.subject_ref = p.subject_ref AND (h.record_id IS NULL OR h.record_id = ''"
                " OR h.record_id = p.record_id OR p.kind = 'subject'))"
                " ORDER BY p.requested_at, p.pending_id LIMIT ?",
                (limit,),
            ).fetchall()
        return [self._pending(r) for r in rows]

    @staticmethod
    def _pending(r: Any) -> PendingDeletion:
        return PendingDeletion(r[0], PendingKind(r[1]), as_bytes(r[2]), r[3], r[4], r[5], int(r[6]))

    def ensure_pending(self, pending: PendingDeletion) -> None:
        with self._write() as conn:
            known = conn.execute(
                "SELECT 1 FROM pending_deletions WHERE kind = ? AND subject_ref = ?"
                " AND record_id = ? AND version = ?",
                (pending.kind.value, pending.subject_ref, pending.record_id, pending.version),
            ).fetchone()
            if known is None:
                self._insert_pending(conn, pending)

    def pending_deletions(self, subject_ref: bytes) -> list[PendingDeletion]:
        with self._read() as conn:
            rows = conn.execute(
                "SELECT pending_id, kind, subject_ref, record_id, requested_by, requested_at,"
                " version FROM pending_deletions WHERE subject_ref = ?"
                " ORDER BY requested_at, pending_id",
                (subject_ref,),
            ).fetchall()
        return [self._pending(r) for r in rows]

    def drop_pending(self, pending_id: str) -> None:
        with self._write() as conn:
            conn.execute("DELETE FROM pending_deletions WHERE pending_id = ?", (pending_id,))

    def legal_records(self, subject_ref: bytes) -> list[tuple[str, float]]:
        with self._read() as conn:
            rows = conn.execute(
                "SELECT category, created_at FROM records WHERE subject_ref = ? AND key_kind = 'legal'",
                (subject_ref,),
            ).fetchall()
        return [(r[0], float(r[1])) for r in rows]

    def due_records(
        self,
        category: str,
        created_before: float | None,
        event: str,
        after: str,
        limit: int,
        include_erased: bool = False,
    ) -> list[tuple[str, bytes, float | None]]:
        unheld = (
            " AND NOT EXISTS (SELECT 1 FROM legal_holds h WHERE h.released_at IS NULL"
            " AND h.subject_ref = r.subject_ref"
            " AND (h.record_id IS NULL OR h.record_id = '' OR h.record_id = r.record_id))"
        )
        with self._read() as conn:
            if event:
                rows = conn.execute(
                    "SELECT r.record_id, r.subject_ref, e.at FROM records r"
                    " JOIN subjects s ON s.subject_ref = r.subject_ref AND s.state != 'erased'"
                    " JOIN subject_events e ON e.subject_ref = r.subject_ref AND e.name = ?"
                    f" WHERE r.category = ? AND r.record_id > ?{unheld}"
                    " ORDER BY r.record_id LIMIT ?",
                    (event, category, after, limit),
                ).fetchall()
            else:
                rows = conn.execute(
                    "SELECT r.record_id, r.subject_ref, NULL FROM records r"
                    " JOIN subjects s ON s.subject_ref = r.subject_ref"
                    + ("" if include_erased else " AND s.state != 'erased'")
                    + f" WHERE r.category = ? AND r.created_at <= ? AND r.record_id > ?{unheld}"
                    " ORDER BY r.record_id LIMIT ?",
                    (category, created_before, after, limit),
                ).fetchall()
        return [(r[0], as_bytes(r[1]), r[2]) for r in rows]
