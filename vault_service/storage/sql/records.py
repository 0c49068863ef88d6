"""Records: the queries of the ``records``, ``record_keys``, ``record_payloads`` and
``idempotency`` tables.

Contract: a record is written with its first version, its data key and payloads and (if given) its
idempotency key in one transaction, only while its subject is live; a new version replaces the
old one and destroys the old data key in the same transaction (compare-and-set on the version);
a batch of inserts takes every lock and reads its subjects' state up front, and writes its
activity and audit entries in one statement each (the reads: :mod:`.record_reads`); a delete
crypto-shreds, unless a legal hold defers it. Under a hold an update keeps the replaced version
(its data key row remembers its blob) and a read-once claim only marks the record consumed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

from vault_service.audit.model import DEFERRED_REASON, AuditRow
from vault_service.errors import (
    AlreadyExists,
    FailedPrecondition,
    LegalHoldActive,
    SubjectSeparated,
    VaultError,
)
from vault_service.storage.rows import (
    Idempotency,
    KeyKind,
    NewRecord,
    PendingDeletion,
    ReadOnceClaim,
    RecordOwner,
    RecordVersion,
    ShreddedRecord,
    VersionChange,
    legal_key_name,
)
from vault_service.storage.sql.base import (
    LIVE_WHERE,
    Connection,
    SqlStoreBase,
    as_bytes,
    chunks,
    count_shred,
    marks,
)


def _field_names(new: RecordVersion) -> str:
    return "\x1f".join(sorted(new.payloads))


def _idempotency_lock(idempotency: Idempotency) -> str:
    """The lock that serializes the requests of one idempotency key."""
    return f"idempotency:{idempotency.principal}:{idempotency.key}"


def write_tokens(
    conn: Connection,
    record_id: str,
    subject_ref: bytes,
    key_kind: str,
    tokens: Sequence[bytes],
    spec: str,
    *,
    fresh: bool = False,
) -> None:
    """Inside a write transaction: the record's blind index is ``tokens`` (made for ``spec``),
    replacing whatever it had: the index follows the current version. ``fresh``: a record
    inserted in this transaction with its ``index_spec``, which has no tokens to replace."""
    if not fresh:
        conn.execute("DELETE FROM blind_index WHERE record_id = ?", (record_id,))
        conn.execute("UPDATE records SET index_spec = ? WHERE record_id = ?", (spec, record_id))
    conn.executemany(
        "INSERT INTO blind_index (token, record_id, subject_ref, key_kind) VALUES (?, ?, ?, ?)"
        " ON CONFLICT DO NOTHING",
        [(t, record_id, subject_ref, key_kind) for t in tokens],
    )


class SqlRecords(SqlStoreBase):
    """Records, their versions and idempotency keys."""

    @staticmethod
    def _write_version(conn: Connection, new: RecordVersion) -> None:
        conn.execute(
            "INSERT INTO record_keys (record_id, version, wrapped, blob_ref) VALUES (?, ?, ?, ?)",
            (new.record_id, new.version, new.data_key, new.blob_ref),
        )
        conn.executemany(
            "INSERT INTO record_payloads VALUES (?, ?, ?, ?)",
            [(new.record_id, new.version, name, ct) for name, ct in new.payloads.items()],
        )
        write_tokens(
            conn,
            new.record_id,
            new.subject_ref,
            new.key_kind,
            new.index_tokens,
            new.index_spec,
            fresh=new.version == 1,  # only an insert writes version 1, spec and all
        )

    def replace_tokens(self, record_id: str, version: int, spec: str, tokens: Sequence[bytes]) -> bool:
        with self._write() as conn:
            row = conn.execute(
                "SELECT subject_ref, key_kind FROM records WHERE record_id = ? AND version = ?"
                f" AND consumed_at IS NULL{self._FOR_UPDATE}",
                (record_id, version),
            ).fetchone()
            if row is None:  # replaced, destroyed or consumed since it was read
                return False
            write_tokens(conn, record_id, as_bytes(row[0]), row[1], tokens, spec)
        return True

    def insert_record(
        self,
        new: RecordVersion,
        now: float,
        idempotency: Idempotency | None,
        audit: AuditRow | None,
    ) -> str:
        with self._write() as conn:
            live = self._locked_live(conn, [(new, idempotency)])
            stored = self._insert_new(conn, new, now, idempotency, live)
            if stored == new.record_id:  # (an idempotent retry stores nothing, audits nothing)
                self._touch(conn, [(new.subject_ref, new.sealed_subject_id)], now)
                self._audited(conn, audit)
            return stored

    def insert_records(self, items: Sequence[NewRecord], now: float) -> list[str | VaultError]:
        with self._write() as conn:
            live = self._locked_live(conn, [(i.version, i.idempotency) for i in items])
            outcomes: list[str | VaultError] = [""] * len(items)
            for n, item in enumerate(items):
                # an item's refusal comes before its first write (_insert_new); the savepoint
                # keeps a refusal to its own item should that ever change
                conn.execute("SAVEPOINT batch_item")
                try:
                    outcomes[n] = self._insert_new(conn, item.version, now, item.idempotency, live)
                except VaultError as exc:
                    conn.execute("ROLLBACK TO SAVEPOINT batch_item")
                    outcomes[n] = exc
                conn.execute("RELEASE SAVEPOINT batch_item")
            # the stored items' activity and audit entries, in one statement each and in the
            # same transaction: if they cannot be written, nothing of the batch is stored
            stored = [
                item
                for item, outcome in zip(items, outcomes, strict=True)
                if outcome == item.version.record_id
            ]
            self._touch(
                conn, [(i.version.subject_ref, i.version.sealed_subject_id) for i in stored], now
            )
            self._insert_audits(conn, [i.audit for i in stored if i.audit is not None])
        return outcomes

    def _locked_live(
        self, conn: Connection, writes: Sequence[tuple[RecordVersion, Idempotency | None]]
    ) -> dict[bytes, bool]:
        """Every lock these inserts take, in one order (their idempotency keys, then their
        subjects' rows, sorted), so that two writers never wait on each other in a cycle
        (PostgreSQL); and which of their subjects are live (not erased), each with whether its
        key is separated (dormant). One statement per 500 subjects."""
        for lock in sorted({_idempotency_lock(i) for _, i in writes if i is not None}):
            self._serialize(conn, lock)
        live: dict[bytes, bool] = {}
        for chunk in chunks(sorted({version.subject_ref for version, _ in writes})):
            rows = conn.execute(
                "SELECT s.subject_ref, sk.separated_at FROM subjects s JOIN subject_keys sk"
                f" ON sk.subject_ref = s.subject_ref WHERE s.subject_ref IN ({marks(len(chunk))})"
                f" AND s.state != 'erased' ORDER BY s.subject_ref{self._FOR_NO_KEY_UPDATE}",
                chunk,
            ).fetchall()
            live.update((as_bytes(r[0]), r[1] is not None) for r in rows)
        return live

    def _insert_new(
        self,
        conn: Connection,
        new: RecordVersion,
        now: float,
        idempotency: Idempotency | None,
        live: Mapping[bytes, bool],
    ) -> str:
        """One new record in the caller's transaction, its locks taken and its subject's state
        read (``live``: :meth:`_locked_live`), without its activity and audit entry (the caller
        writes them, in the same transaction): its id, or for an idempotent retry of an earlier
        request the id that request stored (nothing is written). Every refusal comes before the
        record's first write."""
        if idempotency is not None:
            row = conn.execute(
                "SELECT request_digest, record_id FROM idempotency WHERE principal = ? AND idem_key = ?",
                (idempotency.principal, idempotency.key),
            ).fetchone()
            if row is not None:
                if as_bytes(row[0]) != idempotency.request_digest:
                    raise AlreadyExists("idempotency key already used for another request")
                return str(row[1])
        separated = live.get(new.subject_ref)
        if separated is None:
            raise FailedPrecondition("subject was erased; use a new subject id")
        if separated:  # made dormant since the writer got its key: it reactivates and retries
            raise SubjectSeparated()
        conn.execute(
            "INSERT INTO records (record_id, subject_ref, category, version, content_type,"
            " blob_ref, content_length, field_names, created_at, updated_at, key_kind,"
            " index_spec) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
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
                new.index_spec,
            ),
        )
        self._write_version(conn, new)
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
        return new.record_id

    def set_record_restriction(
        self, record_id: str, restricted: bool, now: float, audit: AuditRow | None
    ) -> bool:
        with self._write() as conn:
            live = conn.execute(
                f"SELECT r.restricted_at FROM records r {self._live}"
                f" WHERE {LIVE_WHERE} AND r.record_id = ?",
                (record_id,),
            ).fetchone()
            if live is None or (live[0] is not None) == restricted:
                return False
            conn.execute(
                "UPDATE records SET restricted_at = ? WHERE record_id = ?",
                (now if restricted else None, record_id),
            )
            self._audited(conn, audit)
        return True

    def replace_version(
        self,
        new: RecordVersion,
        expected_version: int,
        now: float,
        audit: AuditRow | None,
        deferred: PendingDeletion,
    ) -> VersionChange:
        with self._write() as conn:
            old = conn.execute(
                "SELECT blob_ref, subject_ref FROM records WHERE record_id = ? AND version = ?"
                f" AND consumed_at IS NULL{self._FOR_UPDATE}",
                (new.record_id, expected_version),
            ).fetchone()
            if old is None or new.version != expected_version + 1:
                raise FailedPrecondition("record changed concurrently; retry")
            if new.key_kind == KeyKind.SUBJECT:  # an erasure committed since the caller looked
                self._require_live_subject(conn, as_bytes(old[1]))
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
            self._active(conn, new.subject_ref, now)
            # a hold keeps the replaced version (its keys, payloads and blob) until its release
            kept = self._defer_if_held(conn, as_bytes(old[1]), new.record_id, deferred, None)
            if not kept:  # shred it: its data key first (payload rows cascade)
                conn.execute(
                    "DELETE FROM record_keys WHERE record_id = ? AND version = ?",
                    (new.record_id, expected_version),
                )
            self._audited(conn, audit)
        if kept:
            return VersionChange(None, True)
        return VersionChange(ShreddedRecord(new.record_id, (old[0],) if old[0] else ()), False)

    def delete_version(
        self, record_id: str, version: int, audit: AuditRow | None
    ) -> ShreddedRecord | None:
        with self._write() as conn:
            row = conn.execute(
                "SELECT rk.blob_ref, r.subject_ref, r.version FROM record_keys rk JOIN records r"
                f" ON r.record_id = rk.record_id WHERE rk.record_id = ? AND rk.version = ?"
                f"{self._FOR_UPDATE}",
                (record_id, version),
            ).fetchone()
            if row is None or int(row[2]) == version:  # gone, or current: not this path's
                return None
            if self._defer_if_held(conn, as_bytes(row[1]), record_id, None, None):
                raise LegalHoldActive()
            conn.execute(
                "DELETE FROM record_keys WHERE record_id = ? AND version = ?", (record_id, version)
            )
            self._audited(conn, audit)
        count_shred("record_version", audit)
        return ShreddedRecord(record_id, (row[0],) if row[0] else ())

    def record_owner(self, record_id: str) -> RecordOwner | None:
        with self._read() as conn:
            row = conn.execute(
                "SELECT subject_ref, version FROM records WHERE record_id = ?", (record_id,)
            ).fetchone()
            if row is None:
                return None
            ref = as_bytes(row[0])
            versions = conn.execute(
                "SELECT version FROM record_keys WHERE record_id = ? ORDER BY version", (record_id,)
            ).fetchall()
            held = conn.execute(self._HELD, (ref, record_id)).fetchone() is not None
        return RecordOwner(ref, held, int(row[1]), tuple(int(v[0]) for v in versions))

    def referenced_blobs(self, refs: Sequence[str]) -> set[str]:
        found: set[str] = set()
        with self._read() as conn:
            for i in range(0, len(refs), 500):
                part = list(refs[i : i + 500])
                marks = ",".join("?" * len(part))
                found |= {
                    r[0]
                    for r in conn.execute(
                        f"SELECT blob_ref FROM records WHERE blob_ref IN ({marks}) UNION"
                        f" SELECT blob_ref FROM record_keys WHERE blob_ref IN ({marks})",
                        part + part,
                    )
                }
        return found

    def _shred_rows(self, conn: Connection, record_id: str, ref: bytes) -> tuple[str, ...]:
        """Inside a write transaction: delete a record's data keys (payloads cascade) and row;
        the last record under legal retention takes the subject's legal key with it. Returns
        the blobs of every version, for the caller to remove."""
        blobs = conn.execute(
            "SELECT blob_ref FROM record_keys WHERE record_id = ? AND blob_ref IS NOT NULL"
            " UNION SELECT blob_ref FROM records WHERE record_id = ? AND blob_ref IS NOT NULL",
            (record_id, record_id),
        ).fetchall()
        conn.execute("DELETE FROM blind_index WHERE record_id = ?", (record_id,))
        conn.execute("DELETE FROM record_keys WHERE record_id = ?", (record_id,))
        conn.execute("DELETE FROM records WHERE record_id = ?", (record_id,))
        conn.execute(
            "DELETE FROM service_keys WHERE name = ? AND NOT EXISTS (SELECT 1 FROM"
            " records WHERE subject_ref = ? AND key_kind = 'legal')",
            (legal_key_name(ref), ref),
        )
        return tuple(sorted(str(b[0]) for b in blobs))

    def delete_record(
        self, record_id: str, audit: AuditRow | None, deferred: PendingDeletion | None = None
    ) -> ShreddedRecord | None:
        with self._write() as conn:
            row = conn.execute(
                f"SELECT subject_ref FROM records WHERE record_id = ?{self._FOR_UPDATE}",
                (record_id,),
            ).fetchone()
            if row is None:
                return None
            ref = as_bytes(row[0])
            held = self._defer_if_held(conn, ref, record_id, deferred, audit)
            if not held:
                blobs = self._shred_rows(conn, record_id, ref)
                self._audited(conn, audit)
        if held:
            raise LegalHoldActive()
        count_shred("record", audit)
        return ShreddedRecord(record_id, blobs)

    def consume_read_once(
        self,
        record_id: str,
        version: int,
        now: float,
        audits: tuple[AuditRow, AuditRow],
        deferred: PendingDeletion,
    ) -> ReadOnceClaim | None:
        released, destroyed = audits
        with self._write() as conn:
            row = conn.execute(
                "SELECT subject_ref FROM records WHERE record_id = ? AND version = ?"
                f" AND consumed_at IS NULL{self._FOR_UPDATE}",
                (record_id, version),
            ).fetchone()
            if row is None:
                return None
            ref = as_bytes(row[0])
            held = self._defer_if_held(conn, ref, record_id, deferred, None)
            if held:  # kept for the hold, found by no read (nor search) again
                conn.execute("UPDATE records SET consumed_at = ? WHERE record_id = ?", (now, record_id))
                conn.execute("DELETE FROM blind_index WHERE record_id = ?", (record_id,))
            else:
                blobs = self._shred_rows(conn, record_id, ref)
            # the audit chain's lock last, held as briefly as possible
            self._audited(conn, released)
            if held:
                self._audited(conn, replace(destroyed, decision="deferred", reason=DEFERRED_REASON))
            else:
                self._audited(conn, destroyed)
        if held:
            return ReadOnceClaim(True, None)
        count_shred("record", destroyed)
        return ReadOnceClaim(False, ShreddedRecord(record_id, blobs))

    def mark_consumed(self, record_id: str, now: float) -> None:
        with self._write() as conn:
            conn.execute(
                "UPDATE records SET consumed_at = COALESCE(consumed_at, ?) WHERE record_id = ?",
                (now, record_id),
            )
            conn.execute("DELETE FROM blind_index WHERE record_id = ?", (record_id,))
