"""Shares and business events: the queries of the ``shares``, ``share_keys`` and
``subject_events`` tables.

Contract: a share and its key, and an event, are written only for a live subject; a share is
read with its key, its subject's key and state in one snapshot; revoking destroys the share key
in the same transaction (so a revoked share can never be read again), and the sweep deletes keys
and rows; an event is recorded once (the first time stands).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from vault_service import metrics
from vault_service.audit.model import AuditRow
from vault_service.key_providers.base import WrappedKey
from vault_service.storage.rows import EventRow, ShareRow
from vault_service.storage.sql.base import SqlStoreBase, as_bytes, count_shred


class SqlShares(SqlStoreBase):
    """Shares, their keys, and the business events that end them."""

    def record_event(self, subject_ref: bytes, event: EventRow, audit: AuditRow | None) -> bool:
        with self._write() as conn:
            self._require_live_subject(conn, subject_ref)
            added = conn.execute(
                "INSERT INTO subject_events VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (subject_ref, event.name, event.at, event.mac),
            ).rowcount
            if added:
                self._audited(conn, audit)
        return bool(added)

    def get_event(self, subject_ref: bytes, name: str) -> EventRow | None:
        with self._read() as conn:
            row = conn.execute(
                "SELECT name, at, mac FROM subject_events WHERE subject_ref = ? AND name = ?",
                (subject_ref, name),
            ).fetchone()
        return EventRow(row[0], row[1], as_bytes(row[2])) if row else None

    _SHARE_COLUMNS = (
        "sh.share_id, sh.subject_ref, sh.recipient, sh.purpose, sh.record_count, sh.fields,"
        " sh.expires_at, sh.event_name, sh.event_period, sh.created_by, sh.created_at,"
        " sh.revoked_at, sh.sealed_terms"
    )

    _SHARE = f"SELECT {_SHARE_COLUMNS} FROM shares sh"

    @staticmethod
    def _share(r: Any, **extra: Any) -> ShareRow:
        return ShareRow(
            share_id=r[0],
            subject_ref=as_bytes(r[1]),
            recipient=r[2],
            purpose=r[3],
            record_count=int(r[4]),
            fields=tuple(json.loads(r[5])),
            expires_at=r[6],
            event_name=r[7],
            event_period=r[8],
            created_by=r[9],
            created_at=r[10],
            revoked_at=r[11],
            sealed_terms=as_bytes(r[12]),
            **extra,
        )

    def insert_share(self, share: ShareRow, wrapped_key: bytes, audit: AuditRow | None) -> None:
        with self._write() as conn:
            self._require_live_subject(conn, share.subject_ref)
            conn.execute(
                "INSERT INTO shares VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    share.share_id,
                    share.subject_ref,
                    share.recipient,
                    share.purpose,
                    share.record_count,
                    json.dumps(list(share.fields)),
                    share.expires_at,
                    share.event_name,
                    share.event_period,
                    share.created_by,
                    share.created_at,
                    None,
                    share.sealed_terms,
                ),
            )
            conn.execute("INSERT INTO share_keys VALUES (?, ?)", (share.share_id, wrapped_key))
            self._audited(conn, audit)

    def get_share(self, share_id: str) -> ShareRow | None:
        with self._read() as conn:
            row = conn.execute(
                f"SELECT {self._SHARE_COLUMNS}, k.wrapped, sk.root_version, sk.wrapped, s.state"
                " FROM shares sh JOIN subjects s ON s.subject_ref = sh.subject_ref"
                " LEFT JOIN share_keys k ON k.share_id = sh.share_id"
                # a separated (dormant) subject key is not the share's to open
                " LEFT JOIN subject_keys sk ON sk.subject_ref = sh.subject_ref"
                " AND sk.separated_at IS NULL WHERE sh.share_id = ?",
                (share_id,),
            ).fetchone()
        if row is None:
            return None
        subject_key = WrappedKey(row[14], as_bytes(row[15])) if row[15] is not None else None
        return self._share(
            row,
            share_key=as_bytes(row[13]) if row[13] is not None else None,
            subject_key=subject_key,
            subject_state=row[16],
        )

    def share_key_exists(self, share_id: str) -> bool:
        with self._read() as conn:
            return (
                conn.execute("SELECT 1 FROM share_keys WHERE share_id = ?", (share_id,)).fetchone()
                is not None
            )

    def list_shares(
        self, subject_ref: bytes | None = None, recipient: str | None = None
    ) -> list[ShareRow]:
        if (subject_ref is None) == (recipient is None):
            raise ValueError("list by subject or by recipient")
        column, value = (
            ("subject_ref", subject_ref) if subject_ref is not None else ("recipient", recipient)
        )
        with self._read() as conn:
            rows = conn.execute(
                f"{self._SHARE} WHERE sh.{column} = ? ORDER BY sh.share_id", (value,)
            ).fetchall()
        return [self._share(r) for r in rows]

    def revoke_share(self, share_id: str, now: float, audit: AuditRow | None) -> ShareRow | None:
        with self._write() as conn:
            conn.execute(
                "UPDATE shares SET revoked_at = COALESCE(revoked_at, ?) WHERE share_id = ?",
                (now, share_id),
            )
            keys = conn.execute("DELETE FROM share_keys WHERE share_id = ?", (share_id,)).rowcount
            row = conn.execute(f"{self._SHARE} WHERE sh.share_id = ?", (share_id,)).fetchone()
            if row is None:
                return None
            self._audited(conn, audit)
        if keys:
            count_shred("share_key", audit)
        return self._share(row)

    def share_ids(self, after: str, limit: int) -> list[str]:
        with self._read() as conn:
            rows = conn.execute(
                "SELECT share_id FROM shares WHERE share_id > ? ORDER BY share_id LIMIT ?",
                (after, limit),
            ).fetchall()
        return [r[0] for r in rows]

    def purge_shares(self, share_ids: Sequence[str]) -> int:
        with self._write() as conn:
            keys = 0
            gone = 0
            for d in share_ids:
                keys += conn.execute("DELETE FROM share_keys WHERE share_id = ?", (d,)).rowcount
                gone += conn.execute("DELETE FROM shares WHERE share_id = ?", (d,)).rowcount
        if keys:
            metrics.SHREDS.labels("share_key", "job.share_sweep").inc(keys)
        return gone
