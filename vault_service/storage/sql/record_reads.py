"""Record reads: the queries that read live records (:class:`SqlRecordReads`).

Contract: reads return only live records (:func:`~.base.live_joins`), with the subject's key,
state and grants and the audit chain's witness of the version read in the same snapshot; any
number of records is read in three statements (their rows, their payloads, their subjects'
grants), so that a GetRecord is a BatchGetRecords of one.
"""

from __future__ import annotations

from collections.abc import Sequence

from vault_service.key_providers.base import WrappedKey
from vault_service.storage.rows import KeyKind, RecordMeta, StoredRecord, SubjectState
from vault_service.storage.sql.base import (
    LIVE_WHERE,
    META_COLUMNS,
    Connection,
    SqlStoreBase,
    as_bytes,
    chunks,
    marks,
    meta_of,
)


class SqlRecordReads(SqlStoreBase):
    """Reads of live records and their metadata."""

    def get_record(self, record_id: str, grants_for: str | None = None) -> StoredRecord | None:
        with self._read() as conn:
            return self._stored(conn, [record_id], grants_for).get(record_id)

    def get_records(self, ids: Sequence[str], grants_for: str | None = None) -> dict[str, StoredRecord]:
        with self._read() as conn:
            return self._stored(conn, list(dict.fromkeys(ids)), grants_for)

    def _stored(
        self, conn: Connection, ids: Sequence[str], grants_for: str | None
    ) -> dict[str, StoredRecord]:
        """The live records of ``ids`` as :meth:`get_record` reads them, in the caller's read
        transaction: three statements for any number of records (rows, payloads, grants)."""
        # the newest witness rides along (one round trip fewer): a pending entry (not yet
        # sequenced) is newer than any of the chain's
        rows = [
            row
            for chunk in chunks(ids)
            for row in conn.execute(
                f"SELECT {META_COLUMNS}, COALESCE(sk.root_version, lk.root_version),"
                " COALESCE(sk.wrapped, lk.wrapped), rk.wrapped, r.blob_ref, s.state, r.key_kind,"
                " COALESCE((SELECT p.witnessed_version FROM audit_pending p"
                " WHERE p.record_id = r.record_id AND p.witnessed_version IS NOT NULL"
                " ORDER BY p.id DESC LIMIT 1), (SELECT a.witnessed_version FROM audit_log a"
                " WHERE a.record_id = r.record_id AND a.witnessed_version IS NOT NULL"
                " ORDER BY a.seq DESC LIMIT 1))"
                f" FROM records r {self._live} WHERE {LIVE_WHERE}"
                f" AND r.record_id IN ({marks(len(chunk))})",
                chunk,
            ).fetchall()
        ]
        payloads: dict[str, dict[str, bytes]] = {row[0]: {} for row in rows}
        for pairs in chunks([(row[0], row[3]) for row in rows], 250):
            for record_id, name, ciphertext in conn.execute(
                "SELECT record_id, field, ciphertext FROM record_payloads WHERE "
                + " OR ".join(["(record_id = ? AND version = ?)"] * len(pairs)),
                [value for pair in pairs for value in pair],
            ).fetchall():
                payloads[record_id][name] = as_bytes(ciphertext)
        grants = (
            self._grants_of(conn, [as_bytes(row[1]) for row in rows], grants_for)
            if grants_for is not None and rows
            else {}
        )
        return {
            row[0]: StoredRecord(
                meta=meta_of(row),
                subject_key=WrappedKey(row[10], as_bytes(row[11])),
                data_key=as_bytes(row[12]) if row[12] is not None else b"",
                payloads=payloads[row[0]],
                blob_ref=row[13],
                subject_state=SubjectState(row[14]),
                grants=tuple(grants.get(as_bytes(row[1]), ())),
                key_kind=KeyKind(row[15]),
                witnessed_version=int(row[16]) if row[16] is not None else None,
            )
            for row in rows
        }

    def get_meta(self, record_id: str) -> RecordMeta | None:
        with self._read() as conn:
            row = conn.execute(
                f"SELECT {META_COLUMNS} FROM records r {self._live}"
                f" WHERE {LIVE_WHERE} AND r.record_id = ?",
                (record_id,),
            ).fetchone()
        return meta_of(row) if row else None

    def list_records(self, subject_ref: bytes, limit: int, after: str | None) -> list[RecordMeta]:
        with self._read() as conn:
            rows = conn.execute(
                f"SELECT {META_COLUMNS} FROM records r {self._live} WHERE {LIVE_WHERE}"
                " AND r.subject_ref = ? AND r.record_id > ? ORDER BY r.record_id LIMIT ?",
                (subject_ref, after or "", limit),
            ).fetchall()
        return [meta_of(r) for r in rows]
