"""The ground every query module of the SQL record store stands on.

Contract: what more than one table group (or a dialect) needs, and nothing else:

- :class:`Connection`: what the queries need of a DB-API connection;
- :class:`SqlStoreBase`: the class each table-group mixin extends. It holds the dialect hooks
  (``_write``, ``_read``, ``_serialize``) and the fragments that differ between engines (hex of a
  blob, row locks), which :mod:`vault_service.storage.sqlite` and
  :mod:`vault_service.storage.postgres` fill in. It also declares, once, the helpers one table
  group provides to the others inside their transactions (an audit append, a live-subject check,
  a subject's grants, a legal-hold check): a mixin calls them through ``self``, and the group
  that owns the table implements them; and the one span of a transaction (:meth:`_span`),
  which each dialect's ``_write``/``_read`` opens;
- what a *live* record is, in SQL (:data:`META_COLUMNS`, :func:`live_joins`,
  :data:`LIVE_WHERE`), the row converters (:func:`as_bytes`, :func:`meta_of`) and the shred counter.

Queries use ``?`` placeholders and SQL both engines accept (``ON CONFLICT DO NOTHING`` rather than
``INSERT OR IGNORE``). Values are always bound parameters; queries are composed only from
module-level constants and dialect fragments.
"""

from __future__ import annotations

import abc
import contextlib
import inspect
from collections.abc import Iterator, Sequence
from typing import Any, ClassVar, Protocol, TypeVar

from vault_service import metrics, tracing
from vault_service.audit.model import AuditRow
from vault_service.errors import RootVersionRetired, SubjectSeparated
from vault_service.policy.model import Grant
from vault_service.storage.records import RecordStore
from vault_service.storage.rows import (
    CLOSED_ROOT_STATES,
    LEGAL_KEY_PREFIX,
    PendingDeletion,
    RecordMeta,
)

T = TypeVar("T")


class Connection(Protocol):
    """What the queries need of a DB-API connection: ``?`` placeholders, cursors with ``rowcount``,
    ``fetchone`` and ``fetchall``. sqlite3 connections are one; the PostgreSQL store adapts
    psycopg's."""

    def execute(self, sql: str, params: Any = ..., /) -> Any: ...

    def executemany(self, sql: str, params: Any, /) -> Any: ...


def as_bytes(value: Any) -> bytes:
    """A BLOB column's value as bytes. Someone editing the database can store any type in any
    SQLite column: a text value where ciphertext belongs is taken as its bytes, so that it fails
    authentication (DATA_LOSS) like any other tampering instead of failing as a type error."""
    if isinstance(value, str):
        return value.encode("utf-8", "surrogateescape")
    return bytes(value)


def chunks(items: Sequence[T], size: int = 500) -> Iterator[Sequence[T]]:
    """``items`` in slices of at most ``size``: the values of one ``IN (...)`` list (SQLite
    allows 32,766 parameters per statement, but long lists stop using indexes well)."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def marks(count: int) -> str:
    """``?, ?, ...``: the placeholders of an ``IN (...)`` list of ``count`` values."""
    return ", ".join("?" * count)


def count_shred(kind: str, audit: AuditRow | None) -> None:
    """Count one crypto-shred by what went and the audited action that did it."""
    metrics.SHREDS.labels(kind, audit.action if audit else "unaudited").inc()


# live records -----------------------------------------------------------------------------------
META_COLUMNS = (
    "r.record_id, r.subject_ref, r.category, r.version, r.content_type, r.content_length,"
    " r.field_names, r.created_at, r.updated_at, r.restricted_at"
)


# A record is live while the key that wraps its data key exists: the subject key (and the
# subject is not erased), or, for records under legal retention, the subject's legal key (which
# survives the erasure until the last such record is shredded).
def live_joins(hex_ref: str) -> str:
    """The joins of a live-record query; ``hex_ref`` is the dialect's lower-case hex of
    ``r.subject_ref`` (the legal key's name embeds it)."""
    return (
        "JOIN subjects s ON s.subject_ref = r.subject_ref"
        " LEFT JOIN subject_keys sk ON sk.subject_ref = r.subject_ref AND r.key_kind = 'subject'"
        f" LEFT JOIN service_keys lk ON lk.name = '{LEGAL_KEY_PREFIX}' || {hex_ref}"
        " AND r.key_kind = 'legal'"
        # LEFT: a record row whose current version lost its key row was tampered with; it is
        # still found, and reading it fails authentication (DATA_LOSS), not NOT_FOUND
        " LEFT JOIN record_keys rk ON rk.record_id = r.record_id AND rk.version = r.version"
    )


# A read-once record consumed under a legal hold is kept, but no read finds it again.
LIVE_WHERE = (
    "((r.key_kind = 'subject' AND s.state != 'erased' AND sk.subject_ref IS NOT NULL)"
    " OR (r.key_kind = 'legal' AND lk.name IS NOT NULL)) AND r.consumed_at IS NULL"
)


def meta_of(row: Any) -> RecordMeta:
    """A record's metadata from the first columns of a row (:data:`META_COLUMNS`)."""
    return RecordMeta(
        record_id=row[0],
        subject_ref=as_bytes(row[1]),
        category=row[2],
        version=row[3],
        content_type=row[4],
        content_length=row[5],
        field_names=tuple(row[6].split("\x1f")) if row[6] else (),
        created_at=row[7],
        updated_at=row[8],
        restricted=row[9] is not None,
    )


class SqlStoreBase(RecordStore):
    """What the table-group mixins share: the dialect's hooks and fragments, and the helpers one
    group provides to the others. Abstract: :class:`~vault_service.storage.sql.SqlRecordStore`
    combines the mixins, and a dialect subclasses it."""

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
    #: the engine, as OpenTelemetry's ``db.system.name`` names it
    _DB_SYSTEM: ClassVar[str]

    #: an active hold on the subject (first parameter) or on the record (second)
    _HELD = (
        "SELECT 1 FROM legal_holds WHERE released_at IS NULL AND subject_ref = ?"
        " AND (record_id IS NULL OR record_id = '' OR record_id = ?)"
    )

    def __init__(self) -> None:
        self._live = live_joins(self._HEX_REF)

    def _active(
        self,
        conn: Connection,
        subject_ref: bytes,
        now: float,
        *,
        separated: bool | None = None,
        sealed_id: bytes | None = None,
    ) -> None:
        """Inside a write transaction: a write is activity (dormancy): a dormant subject is
        active again. SubjectSeparated if it was made dormant with its key separated since the
        writer got its key (the writer reactivates it and retries). ``separated``: what the
        caller already read of the key in this transaction (None: read it here); ``sealed_id``:
        the subject's sealed id, kept if it has none yet (in the same statement: one round trip
        fewer per write on PostgreSQL)."""
        if separated is None:
            separated = (
                conn.execute(
                    "SELECT 1 FROM subject_keys WHERE subject_ref = ? AND separated_at IS NOT NULL",
                    (subject_ref,),
                ).fetchone()
                is not None
            )
        if separated:
            raise SubjectSeparated()
        self._touch(conn, [(subject_ref, sealed_id)], now)

    @staticmethod
    def _touch(conn: Connection, subjects: Sequence[tuple[bytes, bytes | None]], now: float) -> None:
        """The activity of writes to ``subjects`` (live, their keys not separated: the caller
        checked), each with the sealed id to keep if it has none yet; in one statement each
        for any number (a batch)."""
        if not subjects:
            return
        conn.executemany(
            "UPDATE subjects SET last_activity = ?, state = CASE WHEN state = 'dormant'"
            " THEN 'active' ELSE state END, sealed_id = COALESCE(sealed_id, ?)"
            " WHERE subject_ref = ?",
            [(now, sealed_id, ref) for ref, sealed_id in subjects],
        )
        # a notice given before this activity is void: the next inactivity gets its own
        conn.executemany(
            "DELETE FROM subject_events WHERE subject_ref = ? AND name = 'dormancy_notice'",
            [(ref,) for ref in dict.fromkeys(ref for ref, _ in subjects)],
        )

    def _span(self, mode: str) -> contextlib.AbstractContextManager[tracing.Span]:
        """The span of one transaction (``mode`` "read" or "write"), from waiting for its
        connection or lock to its commit, named after the store method that opened it (a name
        from code; never a query's values). A no-op unless a traced RPC is being served."""
        attributes: dict[str, tracing.Value] = {"db.system.name": self._DB_SYSTEM}
        if tracing.recording():
            attributes["code.function.name"] = _opener()
        return tracing.span(f"db.{mode}", attributes)

    @abc.abstractmethod
    def _write(self) -> contextlib.AbstractContextManager[Connection]:
        """A write transaction: committed if the block returns, rolled back if it raises; vendor
        errors mapped to Unavailable/Internal."""

    @abc.abstractmethod
    def _read(self) -> contextlib.AbstractContextManager[Connection]:
        """A read-only transaction that sees one snapshot."""

    @abc.abstractmethod
    def _serialize(self, conn: Connection, name: str, *, shared: bool = False) -> None:
        """Inside a write transaction: wait until no other transaction holds ``name``
        exclusively (``shared``: others may hold it shared too), and hold it until this one
        ends."""

    def _audit_committed(self) -> None:
        """Called by the dialect when a write transaction of this thread committed (the
        audit writer learns which of its numbers are durable: storage/sql/audit_pending.py)."""

    def _audit_rolled_back(self) -> None:
        """Called by the dialect when a write transaction of this thread rolled back."""

    def _refuse_closed_version(self, conn: Connection, provider: str, version: str) -> None:
        """Inside a write transaction that stores a key wrapped under ``version``: refuse it if
        the operator retired the version or is destroying it (RootVersionRetired). The shared
        lock makes this and :meth:`close_root_version`'s count see each other."""
        self._serialize(conn, f"root-version:{provider}:{version}", shared=True)
        row = conn.execute(
            "SELECT state FROM root_versions WHERE provider = ? AND version = ?", (provider, version)
        ).fetchone()
        if row is not None and row[0] in CLOSED_ROOT_STATES:
            raise RootVersionRetired()

    # helpers one table group provides to the others, inside the caller's transaction ---------
    @abc.abstractmethod
    def _audited(self, conn: Connection, row: AuditRow | None) -> None:
        """Append ``row`` (if any) to the audit chain in this write transaction; a failure is
        counted and fails the transaction, and so the audited operation (:mod:`.audit`)."""

    @abc.abstractmethod
    def _insert_audits(self, conn: Connection, rows: Sequence[AuditRow]) -> None:
        """:meth:`_audited` of many entries, numbered and inserted in one statement each."""

    @abc.abstractmethod
    def _require_live_subject(self, conn: Connection, subject_ref: bytes) -> None:
        """FailedPrecondition unless the subject is known and not erased, keeping it so until
        this write transaction ends (:mod:`.subjects`)."""

    @abc.abstractmethod
    def _grants_of(
        self, conn: Connection, refs: Sequence[bytes], purpose: str | None
    ) -> dict[bytes, list[Grant]]:
        """Each subject's grants (all, or for one purpose), revoked ones included, oldest first;
        a subject without any is absent (:mod:`.subjects`)."""

    @abc.abstractmethod
    def _defer_if_held(
        self,
        conn: Connection,
        subject_ref: bytes,
        record_id: str,
        deferred: PendingDeletion | None,
        audit: AuditRow | None,
    ) -> bool:
        """Whether a legal hold forbids this deletion, recording ``deferred`` if so, in this
        write transaction (:mod:`.holds`)."""


#: the frames between a store method and :meth:`SqlStoreBase._span` (the dialect's transaction
#: helpers and contextlib's ``__enter__``)
_PLUMBING = frozenset({"_opener", "_span", "_write", "_read", "_transaction", "__enter__"})


def _opener() -> str:
    """The name of the store method whose ``with self._write()``/``_read()`` is being entered."""
    frame = inspect.currentframe()
    while frame is not None and frame.f_code.co_name in _PLUMBING:
        frame = frame.f_back
    return frame.f_code.co_name if frame is not None else "unknown"
