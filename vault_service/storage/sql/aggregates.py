"""Aggregate counts for the metrics and the compliance report.

Contract: counts only, never identities (no subject reference, record id or field leaves these
queries), each read in one snapshot.
"""

from __future__ import annotations

from vault_service.storage.sql.base import SqlStoreBase


class SqlAggregates(SqlStoreBase):
    """Records per category, grants and shares in force per purpose."""

    def records_by_category(self) -> dict[str, int]:
        with self._read() as conn:
            rows = conn.execute("SELECT category, COUNT(*) FROM records GROUP BY category").fetchall()
        return {r[0]: int(r[1]) for r in rows}

    def active_grants_by_purpose(self, now: float) -> dict[str, int]:
        with self._read() as conn:
            rows = conn.execute(
                "SELECT purpose, COUNT(*) FROM consent_grants WHERE revoked_at IS NULL"
                " AND valid_from <= ? AND (valid_until IS NULL OR valid_until > ?) GROUP BY purpose",
                (now, now),
            ).fetchall()
        return {r[0]: int(r[1]) for r in rows}

    def live_shares_by_purpose(self) -> dict[tuple[str, str], int]:
        with self._read() as conn:
            rows = conn.execute(
                "SELECT sh.purpose, sh.recipient, COUNT(*) FROM shares sh"
                " JOIN share_keys k ON k.share_id = sh.share_id WHERE sh.revoked_at IS NULL"
                " GROUP BY sh.purpose, sh.recipient"
            ).fetchall()
        return {(r[0], r[1]): int(r[2]) for r in rows}
