"""Search: the blind index query of FindRecords (the tokens are written and deleted with the
records, in :mod:`.records` and :mod:`.subjects`).

Contract: only live records' current versions are found (the same joins as every read), of one
category, in record-id order; a token never finds a record shredded, consumed or erased, because
their index rows go in the transaction that destroys them.
"""

from __future__ import annotations

from vault_service.storage.sql.base import LIVE_WHERE, SqlStoreBase


class SqlSearch(SqlStoreBase):
    """The blind index lookup."""

    def find_records(self, token: bytes, category: str, after: str, limit: int) -> list[str]:
        with self._read() as conn:
            rows = conn.execute(
                "SELECT r.record_id FROM blind_index b JOIN records r ON r.record_id = b.record_id"
                f" {self._live} WHERE b.token = ? AND r.category = ? AND b.record_id > ?"
                f" AND {LIVE_WHERE} ORDER BY b.record_id LIMIT ?",
                (token, category, after, limit),
            ).fetchall()
        return [str(r[0]) for r in rows]

    def stale_index(self, category: str, spec: str, after: str, limit: int) -> list[str]:
        with self._read() as conn:
            rows = conn.execute(
                f"SELECT r.record_id FROM records r {self._live} WHERE {LIVE_WHERE}"
                " AND r.category = ? AND COALESCE(r.index_spec, '') != ? AND r.record_id > ?"
                " AND sk.separated_at IS NULL ORDER BY r.record_id LIMIT ?",
                (category, spec, after, limit),
            ).fetchall()
        return [str(r[0]) for r in rows]
