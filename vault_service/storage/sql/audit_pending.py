"""Group commit of the audit trail: the queries of ``audit_pending``, ``audit_writers`` and
``audit_integrated`` (migration 21).

Contract:

- **Writers take no lock another process or thread waits on.** A call's entry is inserted into
  ``audit_pending`` inside the call's own transaction, numbered by its *writer* (a thread of a
  process: its transactions are sequential) from a row of ``audit_writers`` only that writer
  updates, and MACed under the service's index key (``audit-pending/v1``). The entry is durable
  when the call commits; plaintext is released only after that (fail closed as before).
- **One sequencer at a time** (:meth:`SqlAuditPending.sequence_pending`, under the
  ``tlog:audit`` lock that only sequencers take) moves the committed pending entries into
  ``audit_log`` in their insertion order, assigning ``seq``, ``prev_hash`` and ``entry_hash``,
  in one transaction. Each writer's numbers must continue from the last one integrated
  (``audit_integrated``) without a gap, and each MAC must verify: else nothing moves and
  :class:`PendingTampered` is raised (the caller halts). A rolled-back call rolls its number
  back with it, so a gap is always a removed entry.
- Readers that must see an entry the moment its call committed (the rollback witness of a
  record, the witness backfill, :meth:`audit_rows`) read both tables; the auditor's queries
  sequence first.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Sequence
from typing import Any

from vault_service import security_events
from vault_service.audit.chain import GENESIS, chained_hash, entry_body
from vault_service.audit.model import AuditRow
from vault_service.faults import fault_point
from vault_service.storage.sql.base import Connection, SqlStoreBase, as_bytes
from vault_service.storage.tree_nodes import Link, PendingTampered

#: the columns of an entry's fields, in the order both tables are written
FIELDS = (
    "at, principal, action, purpose, subject_pseudonym, record_id, decision, reason,"
    " correlation_id, witnessed_version, category, released_fields, role"
)
#: the lock only sequencers take (the tree's, storage/sql/tree.py)
SEQUENCER_LOCK = "tlog:audit"


def _fields_text(names: tuple[str, ...] | None) -> str | None:
    return None if names is None else ",".join(names)


def _fields_of(text: str | None) -> tuple[str, ...] | None:
    return None if text is None else tuple(text.split(",")) if text else ()


def row_values(row: AuditRow) -> tuple[Any, ...]:
    """``row`` as the values of :data:`FIELDS`."""
    return (
        row.at,
        row.principal,
        row.action,
        row.purpose,
        row.subject_pseudonym,
        row.record_id,
        row.decision,
        row.reason,
        row.correlation_id,
        row.witnessed_version,
        row.category,
        _fields_text(row.released_fields),
        row.role,
    )


def row_of(r: Any) -> AuditRow:
    """An AuditRow from the values of :data:`FIELDS`."""
    return AuditRow(
        at=r[0],
        principal=r[1],
        action=r[2],
        purpose=r[3],
        subject_pseudonym=r[4],
        record_id=r[5],
        decision=r[6],
        reason=r[7],
        correlation_id=r[8],
        witnessed_version=int(r[9]) if r[9] is not None else None,
        category=r[10],
        released_fields=_fields_of(r[11]),
        role=r[12],
    )


class SqlAuditPending(SqlStoreBase):
    """The pending half of the audit trail (see the module docstring)."""

    def _writer(self, conn: Connection, count: int = 1) -> tuple[str, int]:
        """This thread's writer id and the first of the ``count`` numbers its next entries take
        (in the caller's transaction)."""
        local = self.__dict__.setdefault("_writers", threading.local())
        writer = getattr(local, "id", None)
        if writer is None:
            writer = local.id = secrets.token_hex(12)
        row = conn.execute(
            "UPDATE audit_writers SET next_wseq = next_wseq + ? WHERE writer = ? RETURNING next_wseq",
            (count, writer),
        ).fetchone()
        # the number of this writer's last committed entry: the counter must give the next one;
        # anything else means someone rewound it, as one would to hide the newest entries
        # (or, within one transaction writing several, the number of its previous entry there)
        pending = getattr(local, "pending", None)
        seen = pending if pending is not None else getattr(local, "seen", 0)
        if row is None:  # this writer's first entry (or its first one rolled back)
            if seen:
                self._rewound()
            conn.execute("INSERT INTO audit_writers (writer, next_wseq) VALUES (?, ?)", (writer, count))
            first = 1
        else:
            first = int(row[0]) - count + 1
            if seen and first != seen + 1:
                self._rewound()
        local.pending = first + count - 1
        return writer, first

    def _audit_committed(self) -> None:
        local = self.__dict__.get("_writers")
        if local is not None and getattr(local, "pending", None) is not None:
            local.seen, local.pending = local.pending, None

    def _audit_rolled_back(self) -> None:
        local = self.__dict__.get("_writers")
        if local is not None:
            local.pending = None

    @staticmethod
    def _rewound() -> None:
        security_events.emit("audit_verification_failed", stage="writer counter rewound")

    def _mac_of(self, writer: str, wseq: int, body: bytes) -> bytes:
        """The MAC of a pending entry whose chain.entry_body is ``body``."""
        if self.audit_mac is None:
            return b""
        return self.audit_mac(writer, chained_hash(GENESIS, wseq, body))

    def _insert_pending_audits(self, conn: Connection, rows: Sequence[AuditRow]) -> None:
        """Write ``rows`` as pending entries inside the caller's transaction (no shared lock):
        one statement numbers them all, one inserts them."""
        if not rows:
            return
        writer, first = self._writer(conn, len(rows))
        conn.executemany(
            f"INSERT INTO audit_pending (writer, wseq, mac, {FIELDS})"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            [
                (writer, wseq, self._mac_of(writer, wseq, entry_body(row)), *row_values(row))
                for wseq, row in enumerate(rows, first)
            ],
        )

    def sequence_pending(self, limit: int = 50_000) -> list[Link]:
        """Move up to ``limit`` committed pending entries into ``audit_log`` (see the module
        docstring); returns the links written, in order. PendingTampered if a writer's numbers
        have a gap or a MAC does not verify (nothing moves)."""
        with self._write() as conn:
            self._serialize(conn, SEQUENCER_LOCK)
            rows = conn.execute(
                f"SELECT id, writer, wseq, mac, {FIELDS} FROM audit_pending ORDER BY id LIMIT ?",
                (limit,),
            ).fetchall()
            if not rows:
                return []
            last = {
                str(w): int(n)
                for w, n in conn.execute("SELECT writer, wseq FROM audit_integrated").fetchall()
            }
            head = conn.execute(
                "SELECT seq, entry_hash FROM audit_log ORDER BY seq DESC LIMIT 1"
            ).fetchone()
            seq, prev = (int(head[0]), as_bytes(head[1])) if head else (0, GENESIS)
            moved: list[tuple[Any, ...]] = []
            links: list[Link] = []
            for r in rows:
                writer, wseq, mac, row = str(r[1]), int(r[2]), as_bytes(r[3]), row_of(r[4:])
                body = entry_body(row)  # hashed twice: at the writer's number, at its seq
                if wseq != last.get(writer, 0) + 1 or mac != self._mac_of(writer, wseq, body):
                    raise PendingTampered()
                last[writer] = wseq
                seq += 1
                digest = chained_hash(prev, seq, body)
                moved.append((seq, *row_values(row), prev, digest))
                links.append((seq, prev, digest))
                prev = digest
            conn.executemany(
                f"INSERT INTO audit_log (seq, {FIELDS}, prev_hash, entry_hash)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                moved,
            )
            fault_point("sequencer.before_move_commit")  # crash tests: moved, not committed
            # by id, never by range: at READ COMMITTED a lower id can commit after the SELECT
            ids = [int(r[0]) for r in rows]
            for i in range(0, len(ids), 500):
                chunk = ids[i : i + 500]
                conn.execute(
                    f"DELETE FROM audit_pending WHERE id IN ({', '.join('?' for _ in chunk)})", chunk
                )
            touched = {str(r[1]) for r in rows}
            conn.executemany(
                "DELETE FROM audit_integrated WHERE writer = ?", [(w,) for w in sorted(touched)]
            )
            conn.executemany(
                "INSERT INTO audit_integrated (writer, wseq) VALUES (?, ?)",
                [(w, last[w]) for w in sorted(touched)],
            )
        return links

    def pending_rows(self, limit: int) -> list[AuditRow]:
        """The pending entries, oldest first (not yet in ``audit_log``)."""
        with self._read() as conn:
            rows = conn.execute(
                f"SELECT {FIELDS} FROM audit_pending ORDER BY id LIMIT ?", (limit,)
            ).fetchall()
        return [row_of(r) for r in rows]
