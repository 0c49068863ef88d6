"""The queries of the SQL record stores (SQLite and PostgreSQL), written once.

Queries use ``?`` placeholders and SQL both engines accept (``ON CONFLICT DO NOTHING`` rather than
``INSERT OR IGNORE``); the dialect subclasses (:mod:`.sqlite`, :mod:`.postgres`) provide
connections, transactions, vendor-error mapping and the fragments that differ (hex of a blob, row
locks). Values are always bound parameters; queries are composed only from module-level constants
and dialect fragments.
"""

from __future__ import annotations

import abc
import contextlib
import json
from collections.abc import Sequence
from dataclasses import replace
from typing import Any, ClassVar, Protocol

from vault_service import metrics, security_events
from vault_service.audit.chain import GENESIS, entry_hash
from vault_service.audit.model import AuditEntry, AuditRow
from vault_service.errors import AlreadyExists, FailedPrecondition, LegalHoldActive
from vault_service.key_providers.base import WrappedKey
from vault_service.policy.model import Grant
from vault_service.storage.records import (
    AuditQuery,
    Idempotency,
    RecordMeta,
    RecordStore,
    RecordVersion,
    RootVersionState,
    ShreddedRecord,
    StoredRecord,
    SubjectState,
)
from vault_service.storage.shares import EventRow, HoldRow, PendingDeletion, ShareRow

#: the name under which the audit chain's appends are serialized
AUDIT_CHAIN_LOCK = "audit-chain"

_META_COLUMNS = (
    "r.record_id, r.subject_ref, r.category, r.version, r.content_type, r.content_length,"
    " r.field_names, r.created_at, r.updated_at"
)


# A record is live while the key that wraps its data key exists: the subject key (and the
# subject is not erased), or, for records under legal retention, the subject's legal key (which
# survives the erasure until the last such record is shredded).
def _live_joins(hex_ref: str) -> str:
    """The joins of a live-record query; ``hex_ref`` is the dialect's lower-case hex of
    ``r.subject_ref`` (the legal key's name embeds it)."""
    return (
        "JOIN subjects s ON s.subject_ref = r.subject_ref"
        " LEFT JOIN subject_keys sk ON sk.subject_ref = r.subject_ref AND r.key_kind = 'subject'"
        f" LEFT JOIN service_keys lk ON lk.name = 'legal:' || {hex_ref}"
        " AND r.key_kind = 'legal'"
        # LEFT: a record row whose current version lost its key row was tampered with; it is
        # still found, and reading it fails authentication (DATA_LOSS), not NOT_FOUND
        " LEFT JOIN record_keys rk ON rk.record_id = r.record_id AND rk.version = r.version"
    )


_LIVE_WHERE = (
    "((r.key_kind = 'subject' AND s.state != 'erased' AND sk.subject_ref IS NOT NULL)"
    " OR (r.key_kind = 'legal' AND lk.name IS NOT NULL))"
)


def _meta(row: Any) -> RecordMeta:
    return RecordMeta(
        record_id=row[0],
        subject_ref=_blob(row[1]),
        category=row[2],
        version=row[3],
        content_type=row[4],
        content_length=row[5],
        field_names=tuple(row[6].split("\x1f")) if row[6] else (),
        created_at=row[7],
        updated_at=row[8],
    )


def _field_names(new: RecordVersion) -> str:
    return "\x1f".join(sorted(new.payloads))


def _blob(value: Any) -> bytes:
    """A BLOB column's value as bytes. Someone editing the database can store any type in any
    SQLite column: a text value where ciphertext belongs is taken as its bytes, so that it fails
    authentication (DATA_LOSS) like any other tampering instead of failing as a type error."""
    if isinstance(value, str):
        return value.encode("utf-8", "surrogateescape")
    return bytes(value)


def _witnessed_version(entry: Any) -> int | None:
    """The version an audit entry of a put ("stored": 1) or an update ("version N") records."""
    if entry is None:
        return None
    if entry[0] == "record.put":
        return 1
    _, _, number = str(entry[1]).partition("version ")
    return int(number) if number.isdigit() else None


def _shredded(kind: str, audit: AuditRow | None) -> None:
    """Count one crypto-shred by what went and the audited action that did it."""
    metrics.SHREDS.labels(kind, audit.action if audit else "unaudited").inc()


class Connection(Protocol):
    """What the queries need of a DB-API connection: ``?`` placeholders, cursors with ``rowcount``,
    ``fetchone`` and ``fetchall``. sqlite3 connections are one; the PostgreSQL store adapts
    psycopg's."""

    def execute(self, sql: str, params: Any = ..., /) -> Any: ...

    def executemany(self, sql: str, params: Any, /) -> Any: ...


class SqlRecordStore(RecordStore):
    """The queries of every SQL record store, written once in the SQL that SQLite and PostgreSQL
    share. A dialect supplies connections and transactions, and the few fragments that differ.

    Concurrency: SQLite serializes writers (``BEGIN IMMEDIATE``), so the lock fragments are empty
    there. PostgreSQL runs writers concurrently at READ COMMITTED, so each read-then-write takes
    the row lock that makes it race-free (:attr:`_FOR_UPDATE`, :attr:`_FOR_SHARE`), workers
    skip rows another worker holds (:attr:`_SKIP_LOCKED`), and the audit chain and idempotency
    keys are serialized by :meth:`_serialize`.
    """

    #: lower-case hex of ``r.subject_ref``
    _HEX_REF: ClassVar[str]
    #: suffix locking the selected rows for update / against update (empty where writers are
    #: serialized anyway)
    _FOR_UPDATE: ClassVar[str] = ""
    _FOR_SHARE: ClassVar[str] = ""
    #: the lock of a row this transaction will update but not delete (taken up front: upgrading
    #: a share lock later deadlocks two writers of the same subject)
    _FOR_NO_KEY_UPDATE: ClassVar[str] = ""
    #: suffix of a work-queue select: lock the rows of ``r`` and skip those another worker holds
    _SKIP_LOCKED: ClassVar[str] = ""

    def __init__(self) -> None:
        self._live = _live_joins(self._HEX_REF)

    @abc.abstractmethod
    def _write(self) -> contextlib.AbstractContextManager[Connection]:
        """A write transaction: committed if the block returns, rolled back if it raises; vendor
        errors mapped to Unavailable/Internal."""

    @abc.abstractmethod
    def _read(self) -> contextlib.AbstractContextManager[Connection]:
        """A read-only transaction that sees one snapshot."""

    @abc.abstractmethod
    def _serialize(self, conn: Connection, name: str) -> None:
        """Inside a write transaction: wait until no other transaction holds ``name``, and hold
        it until this one ends."""

    # shares and events -------------------------------------------------------------------------
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
        return EventRow(row[0], row[1], _blob(row[2])) if row else None

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
            subject_ref=_blob(r[1]),
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
            sealed_terms=_blob(r[12]),
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
                " LEFT JOIN subject_keys sk ON sk.subject_ref = sh.subject_ref"
                " WHERE sh.share_id = ?",
                (share_id,),
            ).fetchone()
        if row is None:
            return None
        subject_key = WrappedKey(row[14], _blob(row[15])) if row[15] is not None else None
        return self._share(
            row,
            share_key=_blob(row[13]) if row[13] is not None else None,
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
            _shredded("share_key", audit)
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

    def _require_live_subject(self, conn: Connection, subject_ref: bytes) -> None:
        """Inside a write transaction: FailedPrecondition unless the subject exists and is not
        erased; the subject row stays locked against an erasure until the transaction ends."""
        live = conn.execute(
            f"SELECT 1 FROM subjects WHERE subject_ref = ? AND state != 'erased'{self._FOR_SHARE}",
            (subject_ref,),
        ).fetchone()
        if live is None:
            raise FailedPrecondition("no such subject (unknown or erased)")

    # audit -------------------------------------------------------------------------------------
    def _audited(self, conn: Connection, row: AuditRow | None) -> None:
        """:meth:`_insert_audit`, counting and reporting a failure (the caller's transaction,
        and so the operation being audited, fails with it)."""
        try:
            self._insert_audit(conn, row)
        except Exception:
            metrics.AUDIT_WRITE_FAILURES.inc()
            security_events.emit("audit_write_failed")
            raise

    def _insert_audit(self, conn: Connection, row: AuditRow | None) -> None:
        """Append ``row`` to the hash chain inside the caller's write transaction. The chain
        lock is held from reading the head to the commit, so appends are race-free; callers take
        it last, after any row locks, so that it is held as briefly as possible."""
        if row is None:
            return
        self._serialize(conn, AUDIT_CHAIN_LOCK)
        head = conn.execute("SELECT seq, entry_hash FROM audit_log ORDER BY seq DESC LIMIT 1").fetchone()
        seq, prev = (int(head[0]) + 1, _blob(head[1])) if head else (1, GENESIS)
        conn.execute(
            "INSERT INTO audit_log (seq, at, principal, action, purpose, subject_pseudonym,"
            " record_id, decision, reason, correlation_id, prev_hash, entry_hash)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                seq,
                row.at,
                row.principal,
                row.action,
                row.purpose,
                row.subject_pseudonym,
                row.record_id,
                row.decision,
                row.reason,
                row.correlation_id,
                prev,
                entry_hash(prev, seq, row),
            ),
        )

    def append_audit(self, audit: AuditRow) -> None:
        with self._write() as conn:
            self._audited(conn, audit)

    _ENTRY = (
        "SELECT seq, at, principal, action, decision, reason, purpose, subject_pseudonym,"
        " record_id, correlation_id, prev_hash, entry_hash FROM audit_log"
    )

    @staticmethod
    def _entry(r: Any) -> AuditEntry:
        return AuditEntry(int(r[0]), AuditRow(*r[1:10]), _blob(r[10]), _blob(r[11]))

    def audit_rows(self, limit: int = 1000) -> list[AuditRow]:
        with self._read() as conn:
            rows = conn.execute(f"{self._ENTRY} ORDER BY seq DESC LIMIT ?", (limit,)).fetchall()
        return [self._entry(r).row for r in reversed(rows)]

    def audit_entries(self, after_seq: int, limit: int) -> list[AuditEntry]:
        with self._read() as conn:
            rows = conn.execute(
                f"{self._ENTRY} WHERE seq > ? ORDER BY seq LIMIT ?", (after_seq, limit)
            ).fetchall()
        return [self._entry(r) for r in rows]

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

    # service keys ------------------------------------------------------------------------------
    def get_service_key(self, name: str) -> WrappedKey | None:
        with self._read() as conn:
            row = conn.execute(
                "SELECT root_version, wrapped FROM service_keys WHERE name = ?", (name,)
            ).fetchone()
        return WrappedKey(row[0], _blob(row[1])) if row else None

    def put_service_key_if_absent(self, name: str, wrapped: WrappedKey, now: float) -> WrappedKey:
        with self._write() as conn:
            conn.execute(
                "INSERT INTO service_keys VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (name, wrapped.root_version, wrapped.ciphertext, now),
            )
            row = conn.execute(
                "SELECT root_version, wrapped FROM service_keys WHERE name = ?", (name,)
            ).fetchone()
        return WrappedKey(row[0], _blob(row[1]))

    # subjects ----------------------------------------------------------------------------------
    def subject_state(self, subject_ref: bytes) -> SubjectState | None:
        with self._read() as conn:
            row = conn.execute(
                "SELECT state FROM subjects WHERE subject_ref = ?", (subject_ref,)
            ).fetchone()
        return SubjectState(row[0]) if row else None

    def get_subject_key(self, subject_ref: bytes) -> WrappedKey | None:
        with self._read() as conn:
            row = conn.execute(
                "SELECT sk.root_version, sk.wrapped FROM subject_keys sk JOIN subjects s"
                " ON s.subject_ref = sk.subject_ref AND s.state != 'erased'"
                " WHERE sk.subject_ref = ?",
                (subject_ref,),
            ).fetchone()
        return WrappedKey(row[0], _blob(row[1])) if row else None

    def create_subject_key(self, subject_ref: bytes, wrapped: WrappedKey, now: float) -> WrappedKey:
        with self._write() as conn:
            conn.execute(
                "INSERT INTO subjects (subject_ref, state, created_at, updated_at)"
                " VALUES (?, 'active', ?, ?) ON CONFLICT DO NOTHING",
                (subject_ref, now, now),
            )
            row = conn.execute(
                f"SELECT state FROM subjects WHERE subject_ref = ?{self._FOR_SHARE}", (subject_ref,)
            ).fetchone()
            if row[0] == SubjectState.ERASED.value:
                raise FailedPrecondition("subject was erased; use a new subject id")
            conn.execute(
                "INSERT INTO subject_keys VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (subject_ref, wrapped.root_version, wrapped.ciphertext, now),
            )
            key = conn.execute(
                "SELECT root_version, wrapped FROM subject_keys WHERE subject_ref = ?",
                (subject_ref,),
            ).fetchone()
        return WrappedKey(key[0], _blob(key[1]))

    _HELD = (
        "SELECT 1 FROM legal_holds WHERE released_at IS NULL AND subject_ref = ?"
        " AND (record_id IS NULL OR record_id = '' OR record_id = ?)"
    )

    def _defer_if_held(
        self,
        conn: Connection,
        subject_ref: bytes,
        record_id: str,
        deferred: PendingDeletion | None,
        audit: AuditRow | None,
    ) -> bool:
        """Inside a write transaction: True (after recording ``deferred``) if a hold applies."""
        if record_id:  # a record: a hold on it or on its whole subject applies
            held = conn.execute(self._HELD, (subject_ref, record_id)).fetchone()
        else:  # the whole subject: any hold on it or on any of its records applies
            held = conn.execute(
                "SELECT 1 FROM legal_holds WHERE released_at IS NULL AND subject_ref = ?",
                (subject_ref,),
            ).fetchone()
        if held is None:
            return False
        if deferred is not None:
            conn.execute(
                "INSERT INTO pending_deletions VALUES (?, ?, ?, ?, ?, ?)",
                (
                    deferred.pending_id,
                    deferred.kind,
                    deferred.subject_ref,
                    deferred.record_id,
                    deferred.requested_by,
                    deferred.requested_at,
                ),
            )
            if audit is not None:
                self._audited(
                    conn, replace(audit, decision="deferred", reason="legal hold: deletion recorded")
                )
        return True

    def erase_subject(
        self,
        subject_ref: bytes,
        now: float,
        audit: AuditRow | None,
        deferred: PendingDeletion | None = None,
    ) -> bool:
        held = False
        with self._write() as conn:
            # the subject row first: a concurrent hold, grant, share or write waits for us
            conn.execute(
                f"SELECT 1 FROM subjects WHERE subject_ref = ?{self._FOR_UPDATE}", (subject_ref,)
            ).fetchone()
            if self._defer_if_held(conn, subject_ref, "", deferred, audit):
                held = True
            else:
                deleted = conn.execute(
                    "DELETE FROM subject_keys WHERE subject_ref = ?", (subject_ref,)
                ).rowcount
                flipped = conn.execute(
                    "UPDATE subjects SET state = 'erased', erased_at = ?, updated_at = ?"
                    " WHERE subject_ref = ? AND state != 'erased'",
                    (now, now, subject_ref),
                ).rowcount
                self._audited(conn, audit)
        if held:
            raise LegalHoldActive()
        if deleted:
            _shredded("subject_key", audit)
        return bool(deleted or flipped)

    def purge_erased(self, limit: int) -> list[ShreddedRecord]:
        with self._write() as conn:
            rows = conn.execute(
                "SELECT r.record_id, r.blob_ref FROM records r JOIN subjects s"
                " ON s.subject_ref = r.subject_ref WHERE s.state = 'erased'"
                f" AND r.key_kind = 'subject' LIMIT ?{self._SKIP_LOCKED}",
                (limit,),
            ).fetchall()
            conn.executemany("DELETE FROM records WHERE record_id = ?", [(r[0],) for r in rows])
        return [ShreddedRecord(r[0], (r[1],) if r[1] else ()) for r in rows]

    # records -----------------------------------------------------------------------------------
    @staticmethod
    def _write_version(conn: Connection, new: RecordVersion) -> None:
        conn.execute(
            "INSERT INTO record_keys VALUES (?, ?, ?)", (new.record_id, new.version, new.data_key)
        )
        conn.executemany(
            "INSERT INTO record_payloads VALUES (?, ?, ?, ?)",
            [(new.record_id, new.version, name, ct) for name, ct in new.payloads.items()],
        )

    def insert_record(
        self,
        new: RecordVersion,
        now: float,
        idempotency: Idempotency | None,
        audit: AuditRow | None,
    ) -> str:
        with self._write() as conn:
            if idempotency is not None:
                self._serialize(conn, f"idempotency:{idempotency.principal}:{idempotency.key}")
                row = conn.execute(
                    "SELECT request_digest, record_id FROM idempotency"
                    " WHERE principal = ? AND idem_key = ?",
                    (idempotency.principal, idempotency.key),
                ).fetchone()
                if row is not None:
                    if _blob(row[0]) != idempotency.request_digest:
                        raise AlreadyExists("idempotency key already used for another request")
                    return str(row[1])
            live = conn.execute(
                "SELECT 1 FROM subjects s JOIN subject_keys sk ON sk.subject_ref = s.subject_ref"
                f" WHERE s.subject_ref = ? AND s.state != 'erased'{self._FOR_NO_KEY_UPDATE}",
                (new.subject_ref,),
            ).fetchone()
            if live is None:
                raise FailedPrecondition("subject was erased; use a new subject id")
            conn.execute(
                "INSERT INTO records (record_id, subject_ref, category, version, content_type,"
                " blob_ref, content_length, field_names, created_at, updated_at, key_kind)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (
                    new.record_id,
                    new.subject_ref,
                    new.category,
                    new.version,
                    new.content_type,
                    new.blob_ref,
                    new.content_length,
                    _field_names(new),
                    now,
                    now,
                    new.key_kind,
                ),
            )
            self._write_version(conn, new)
            conn.execute(
                "UPDATE subjects SET last_activity = ?, state = CASE WHEN state = 'dormant'"
                " THEN 'active' ELSE state END WHERE subject_ref = ?",
                (now, new.subject_ref),
            )
            if idempotency is not None:
                conn.execute(
                    "INSERT INTO idempotency VALUES (?, ?, ?, ?, ?)",
                    (
                        idempotency.principal,
                        idempotency.key,
                        idempotency.request_digest,
                        new.record_id,
                        now,
                    ),
                )
            self._audited(conn, audit)
        return new.record_id

    def get_record(self, record_id: str, grants_for: str | None = None) -> StoredRecord | None:
        with self._read() as conn:
            row = conn.execute(
                f"SELECT {_META_COLUMNS}, COALESCE(sk.root_version, lk.root_version),"
                " COALESCE(sk.wrapped, lk.wrapped), rk.wrapped, r.blob_ref, s.state, r.key_kind"
                f" FROM records r {self._live} WHERE {_LIVE_WHERE} AND r.record_id = ?",
                (record_id,),
            ).fetchone()
            if row is None:
                return None
            payloads = conn.execute(
                "SELECT field, ciphertext FROM record_payloads WHERE record_id = ? AND version = ?",
                (record_id, row[3]),
            ).fetchall()
            grants = self._grants(conn, _blob(row[1]), grants_for) if grants_for is not None else []
            witness = conn.execute(
                "SELECT action, reason FROM audit_log WHERE record_id = ? AND decision = 'allow'"
                " AND action IN ('record.put', 'record.update') ORDER BY seq DESC LIMIT 1",
                (record_id,),
            ).fetchone()
        return StoredRecord(
            meta=_meta(row),
            subject_key=WrappedKey(row[9], _blob(row[10])),
            data_key=_blob(row[11]) if row[11] is not None else b"",
            payloads={p[0]: _blob(p[1]) for p in payloads},
            blob_ref=row[12],
            subject_state=SubjectState(row[13]),
            grants=tuple(grants),
            key_kind=row[14],
            witnessed_version=_witnessed_version(witness),
        )

    # subjects: state and grants ------------------------------------------------------------------
    def set_subject_state(
        self, subject_ref: bytes, state: SubjectState, now: float, audit: AuditRow | None
    ) -> bool:
        if state is SubjectState.ERASED:
            raise ValueError("use erase_subject to erase")
        with self._write() as conn:
            changed = conn.execute(
                "UPDATE subjects SET state = ?, updated_at = ?"
                " WHERE subject_ref = ? AND state != 'erased'",
                (state.value, now, subject_ref),
            ).rowcount
            if changed:
                self._audited(conn, audit)
        return bool(changed)

    @staticmethod
    def _grant(r: Any) -> Grant:
        scope = json.loads(r[4])
        return Grant(
            grant_id=r[0],
            purpose=r[1],
            grantee_principal=r[2],
            grantee_role=r[3],
            categories=frozenset(scope["categories"]),
            fields={c: frozenset(f) for c, f in scope.get("fields", {}).items()},
            valid_from=r[5],
            valid_until=r[6],
            evidence_reference=r[7],
            revoked_at=r[8],
        )

    _GRANT = (
        "SELECT grant_id, purpose, grantee_principal, grantee_role, scope, valid_from,"
        " valid_until, evidence_reference, revoked_at FROM consent_grants"
    )

    def _grants(self, conn: Connection, ref: bytes, purpose: str | None) -> list[Grant]:
        if purpose is None:
            rows = conn.execute(
                f"{self._GRANT} WHERE subject_ref = ? ORDER BY created_at, grant_id", (ref,)
            ).fetchall()
        else:
            rows = conn.execute(
                f"{self._GRANT} WHERE subject_ref = ? AND purpose = ? ORDER BY created_at, grant_id",
                (ref, purpose),
            ).fetchall()
        return [self._grant(r) for r in rows]

    def subject_grants(self, subject_ref: bytes, purpose: str | None = None) -> list[Grant]:
        with self._read() as conn:
            return self._grants(conn, subject_ref, purpose)

    def insert_grant(
        self, subject_ref: bytes, grant: Grant, granted_by: str, now: float, audit: AuditRow | None
    ) -> None:
        scope = json.dumps(
            {
                "categories": sorted(grant.categories),
                "fields": {c: sorted(f) for c, f in grant.fields.items()},
            },
            sort_keys=True,
        )
        with self._write() as conn:
            self._require_live_subject(conn, subject_ref)
            conn.execute(
                "INSERT INTO consent_grants VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    grant.grant_id,
                    subject_ref,
                    grant.purpose,
                    grant.grantee_principal,
                    grant.grantee_role,
                    scope,
                    grant.valid_from,
                    grant.valid_until,
                    grant.evidence_reference,
                    granted_by,
                    now,
                    None,
                ),
            )
            self._audited(conn, audit)

    def revoke_grant(
        self, grant_id: str, now: float, audit: AuditRow | None
    ) -> tuple[bytes, Grant] | None:
        with self._write() as conn:
            conn.execute(
                "UPDATE consent_grants SET revoked_at = ? WHERE grant_id = ? AND revoked_at IS NULL",
                (now, grant_id),
            )
            row = conn.execute(
                f"SELECT subject_ref, {self._GRANT[7:]} WHERE grant_id = ?", (grant_id,)
            ).fetchone()
            if row is None:
                return None
            self._audited(conn, audit)
        return _blob(row[0]), self._grant(row[1:])

    def get_meta(self, record_id: str) -> RecordMeta | None:
        with self._read() as conn:
            row = conn.execute(
                f"SELECT {_META_COLUMNS} FROM records r {self._live}"
                f" WHERE {_LIVE_WHERE} AND r.record_id = ?",
                (record_id,),
            ).fetchone()
        return _meta(row) if row else None

    def list_records(self, subject_ref: bytes, limit: int, after: str | None) -> list[RecordMeta]:
        with self._read() as conn:
            rows = conn.execute(
                f"SELECT {_META_COLUMNS} FROM records r {self._live} WHERE {_LIVE_WHERE}"
                " AND r.subject_ref = ? AND r.record_id > ? ORDER BY r.record_id LIMIT ?",
                (subject_ref, after or "", limit),
            ).fetchall()
        return [_meta(r) for r in rows]

    def replace_version(
        self, new: RecordVersion, expected_version: int, now: float, audit: AuditRow | None
    ) -> ShreddedRecord:
        with self._write() as conn:
            old = conn.execute(
                f"SELECT blob_ref FROM records WHERE record_id = ? AND version = ?{self._FOR_UPDATE}",
                (new.record_id, expected_version),
            ).fetchone()
            if old is None or new.version != expected_version + 1:
                raise FailedPrecondition("record changed concurrently; retry")
            self._write_version(conn, new)
            conn.execute(
                "UPDATE records SET version = ?, content_type = ?, blob_ref = ?,"
                " content_length = ?, field_names = ?, updated_at = ? WHERE record_id = ?",
                (
                    new.version,
                    new.content_type,
                    new.blob_ref,
                    new.content_length,
                    _field_names(new),
                    now,
                    new.record_id,
                ),
            )
            # Shred the old version: its data key first (payload rows cascade).
            conn.execute(
                "DELETE FROM record_keys WHERE record_id = ? AND version = ?",
                (new.record_id, expected_version),
            )
            self._audited(conn, audit)
        return ShreddedRecord(new.record_id, (old[0],) if old[0] else ())

    def referenced_blobs(self, refs: Sequence[str]) -> set[str]:
        found: set[str] = set()
        with self._read() as conn:
            for i in range(0, len(refs), 500):
                part = list(refs[i : i + 500])
                marks = ",".join("?" * len(part))
                found |= {
                    r[0]
                    for r in conn.execute(
                        f"SELECT blob_ref FROM records WHERE blob_ref IN ({marks})", part
                    )
                }
        return found

    def delete_record(
        self, record_id: str, audit: AuditRow | None, deferred: PendingDeletion | None = None
    ) -> ShreddedRecord | None:
        held = False
        with self._write() as conn:
            row = conn.execute(
                f"SELECT blob_ref, subject_ref FROM records WHERE record_id = ?{self._FOR_UPDATE}",
                (record_id,),
            ).fetchone()
            if row is None:
                return None
            if self._defer_if_held(conn, _blob(row[1]), record_id, deferred, audit):
                held = True
            else:
                conn.execute("DELETE FROM record_keys WHERE record_id = ?", (record_id,))
                conn.execute("DELETE FROM records WHERE record_id = ?", (record_id,))
                # the last record under legal retention takes the subject's legal key with it
                conn.execute(
                    "DELETE FROM service_keys WHERE name = ? AND NOT EXISTS (SELECT 1 FROM"
                    " records WHERE subject_ref = ? AND key_kind = 'legal')",
                    (f"legal:{_blob(row[1]).hex()}", row[1]),
                )
                self._audited(conn, audit)
        if held:
            raise LegalHoldActive()
        _shredded("record", audit)
        return ShreddedRecord(record_id, (row[0],) if row[0] else ())

    # legal holds and retention -----------------------------------------------------------------
    def place_hold(self, hold: HoldRow, audit: AuditRow | None) -> None:
        with self._write() as conn:
            self._require_live_subject(conn, hold.subject_ref)
            conn.execute(
                "INSERT INTO legal_holds VALUES (?, ?, ?, ?, ?, ?, ?, NULL)",
                (
                    hold.hold_id,
                    hold.subject_ref,
                    hold.record_id,
                    hold.reason,
                    hold.case_reference,
                    hold.created_by,
                    hold.created_at,
                ),
            )
            self._audited(conn, audit)

    _HOLD = (
        "SELECT hold_id, subject_ref, record_id, reason, case_reference, created_by, created_at,"
        " released_at FROM legal_holds"
    )

    @staticmethod
    def _hold(r: Any) -> HoldRow:
        return HoldRow(r[0], _blob(r[1]), r[2] or "", r[3], r[4], r[5], r[6], r[7])

    def release_hold(self, hold_id: str, now: float, audit: AuditRow | None) -> HoldRow | None:
        with self._write() as conn:
            conn.execute(
                "UPDATE legal_holds SET released_at = COALESCE(released_at, ?) WHERE hold_id = ?",
                (now, hold_id),
            )
            row = conn.execute(f"{self._HOLD} WHERE hold_id = ?", (hold_id,)).fetchone()
            if row is None:
                return None
            self._audited(conn, audit)
        return self._hold(row)

    def list_holds(self, subject_ref: bytes) -> list[HoldRow]:
        with self._read() as conn:
            rows = conn.execute(
                f"{self._HOLD} WHERE subject_ref = ? ORDER BY created_at, hold_id", (subject_ref,)
            ).fetchall()
        return [self._hold(r) for r in rows]

    def legal_records(self, subject_ref: bytes) -> list[tuple[str, float]]:
        with self._read() as conn:
            rows = conn.execute(
                "SELECT category, created_at FROM records WHERE subject_ref = ? AND key_kind = 'legal'",
                (subject_ref,),
            ).fetchall()
        return [(r[0], float(r[1])) for r in rows]

    def touch_subject(self, subject_ref: bytes, now: float) -> bool:
        with self._write() as conn:
            woke = conn.execute(
                "UPDATE subjects SET state = 'active', updated_at = ?"
                " WHERE subject_ref = ? AND state = 'dormant'",
                (now, subject_ref),
            ).rowcount
            conn.execute(
                "UPDATE subjects SET last_activity = ? WHERE subject_ref = ? AND state != 'erased'",
                (now, subject_ref),
            )
            conn.execute(
                "DELETE FROM subject_events WHERE subject_ref = ? AND name = 'dormancy_notice'",
                (subject_ref,),
            )
        return bool(woke)

    def inactive_subjects(
        self, state: SubjectState, before: float, limit: int, after: bytes = b""
    ) -> list[bytes]:
        with self._read() as conn:
            rows = conn.execute(
                "SELECT subject_ref FROM subjects WHERE state = ? AND subject_ref > ?"
                " AND COALESCE(last_activity, created_at) <= ? ORDER BY subject_ref LIMIT ?",
                (state.value, after, before, limit),
            ).fetchall()
        return [_blob(r[0]) for r in rows]

    def subject_held(self, subject_ref: bytes) -> bool:
        with self._read() as conn:
            return (
                conn.execute(
                    "SELECT 1 FROM legal_holds WHERE released_at IS NULL AND subject_ref = ?",
                    (subject_ref,),
                ).fetchone()
                is not None
            )

    def subject_residue(self, subject_ref: bytes) -> tuple[bool, int]:
        with self._read() as conn:
            key = conn.execute(
                "SELECT 1 FROM subject_keys WHERE subject_ref = ?", (subject_ref,)
            ).fetchone()
            count = conn.execute(
                "SELECT COUNT(*) FROM records WHERE subject_ref = ? AND key_kind = 'subject'",
                (subject_ref,),
            ).fetchone()[0]
        return key is not None, int(count)

    def pending_deletions(self, subject_ref: bytes) -> list[PendingDeletion]:
        with self._read() as conn:
            rows = conn.execute(
                "SELECT pending_id, kind, subject_ref, record_id, requested_by, requested_at"
                " FROM pending_deletions WHERE subject_ref = ? ORDER BY requested_at, pending_id",
                (subject_ref,),
            ).fetchall()
        return [PendingDeletion(r[0], r[1], _blob(r[2]), r[3], r[4], r[5]) for r in rows]

    def drop_pending(self, pending_id: str) -> None:
        with self._write() as conn:
            conn.execute("DELETE FROM pending_deletions WHERE pending_id = ?", (pending_id,))

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
        return [(r[0], _blob(r[1]), r[2]) for r in rows]

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

    def subject_keys_by_root_version(self) -> dict[str, int]:
        with self._read() as conn:
            rows = conn.execute(
                "SELECT root_version, COUNT(*) FROM subject_keys GROUP BY root_version"
            ).fetchall()
        return {r[0]: int(r[1]) for r in rows}

    def service_keys_by_root_version(self) -> dict[str, int]:
        with self._read() as conn:
            rows = conn.execute(
                "SELECT root_version, COUNT(*) FROM service_keys GROUP BY root_version"
            ).fetchall()
        return {r[0]: int(r[1]) for r in rows}

    def subject_keys_not_at(
        self, version: str, limit: int, after: bytes | None
    ) -> list[tuple[bytes, WrappedKey]]:
        with self._read() as conn:
            rows = conn.execute(
                "SELECT subject_ref, root_version, wrapped FROM subject_keys"
                " WHERE root_version != ? AND subject_ref > ? ORDER BY subject_ref LIMIT ?",
                (version, after or b"", limit),
            ).fetchall()
        return [(_blob(r[0]), WrappedKey(r[1], _blob(r[2]))) for r in rows]

    def service_keys(self) -> list[tuple[str, WrappedKey]]:
        with self._read() as conn:
            rows = conn.execute("SELECT name, root_version, wrapped FROM service_keys").fetchall()
        return [(r[0], WrappedKey(r[1], _blob(r[2]))) for r in rows]

    def replace_subject_keys(
        self, changes: Sequence[tuple[bytes, WrappedKey, WrappedKey]]
    ) -> list[bool]:
        with self._write() as conn:
            return [
                bool(
                    conn.execute(
                        "UPDATE subject_keys SET root_version = ?, wrapped = ?"
                        " WHERE subject_ref = ? AND root_version = ? AND wrapped = ?",
                        (new.root_version, new.ciphertext, ref, old.root_version, old.ciphertext),
                    ).rowcount
                )
                for ref, old, new in changes
            ]

    def replace_service_key(self, name: str, old: WrappedKey, new: WrappedKey) -> bool:
        with self._write() as conn:
            changed = conn.execute(
                "UPDATE service_keys SET root_version = ?, wrapped = ?"
                " WHERE name = ? AND root_version = ? AND wrapped = ?",
                (new.root_version, new.ciphertext, name, old.root_version, old.ciphertext),
            ).rowcount
        return bool(changed)

    def acquire_lease(self, name: str, holder: str, now: float, ttl: float) -> bool:
        with self._write() as conn:
            taken = conn.execute(
                "INSERT INTO job_leases VALUES (?, ?, ?) ON CONFLICT (name) DO UPDATE"
                " SET holder = excluded.holder, expires_at = excluded.expires_at"
                " WHERE job_leases.holder = excluded.holder OR job_leases.expires_at <= ?",
                (name, holder, now + ttl, now),
            ).rowcount
        return bool(taken)

    def root_version_states(self, provider: str) -> dict[str, RootVersionState]:
        with self._read() as conn:
            rows = conn.execute(
                "SELECT version, state, updated_at, destroy_at, detail FROM root_versions"
                " WHERE provider = ?",
                (provider,),
            ).fetchall()
        return {r[0]: RootVersionState(*r) for r in rows}

    def set_root_version_state(
        self, provider: str, state: RootVersionState, audit: AuditRow | None
    ) -> None:
        with self._write() as conn:
            conn.execute(
                "INSERT INTO root_versions VALUES (?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (provider, version) DO UPDATE SET state = excluded.state,"
                " updated_at = excluded.updated_at, destroy_at = excluded.destroy_at,"
                " detail = excluded.detail",
                (provider, state.version, state.state, state.updated_at, state.destroy_at, state.detail),
            )
            self._audited(conn, audit)
