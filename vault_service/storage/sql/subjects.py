"""Subjects: the queries of the ``subjects``, ``subject_keys`` and ``consent_grants`` tables.

Contract: a subject is created with its key (race-safe: the first key stands) and can never come
back once erased; erasure deletes one key row and flips one state row (O(1)), unless a legal hold
defers it, and the purge of the erased subjects' record rows comes later, as a work queue;
state changes (restriction, dormancy, reactivation on activity) never touch an erased subject;
grants are written only for a live subject, and revoking one is idempotent.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from vault_service.audit.model import ALREADY_ERASED, AuditRow
from vault_service.errors import FailedPrecondition, LegalHoldActive, SubjectSeparated
from vault_service.key_providers.base import WrappedKey
from vault_service.policy.model import Grant
from vault_service.storage.rows import (
    EventRow,
    NoticeRow,
    PendingDeletion,
    ShreddedRecord,
    SubjectState,
)
from vault_service.storage.sql.base import (
    Connection,
    SqlStoreBase,
    as_bytes,
    chunks,
    count_shred,
    marks,
)


class _Unchanged(Exception):
    """Rolls a write transaction back that found its compare-and-set stale."""


class SqlSubjects(SqlStoreBase):
    """Subjects, their keys, state, activity and consent grants."""

    def subject_state(self, subject_ref: bytes) -> SubjectState | None:
        with self._read() as conn:
            row = conn.execute(
                "SELECT state FROM subjects WHERE subject_ref = ?", (subject_ref,)
            ).fetchone()
        return SubjectState(row[0]) if row else None

    def get_subject_keys(self, subject_refs: Sequence[bytes]) -> dict[bytes, WrappedKey]:
        found: dict[bytes, WrappedKey] = {}
        with self._read() as conn:
            for chunk in chunks(list(dict.fromkeys(subject_refs))):
                rows = conn.execute(
                    "SELECT sk.subject_ref, sk.root_version, sk.wrapped FROM subject_keys sk"
                    " JOIN subjects s ON s.subject_ref = sk.subject_ref AND s.state != 'erased'"
                    f" WHERE sk.subject_ref IN ({marks(len(chunk))}) AND sk.separated_at IS NULL",
                    chunk,
                ).fetchall()
                found.update((as_bytes(r[0]), WrappedKey(r[1], as_bytes(r[2]))) for r in rows)
        return found

    def get_separated_key(self, subject_ref: bytes) -> WrappedKey | None:
        with self._read() as conn:
            row = conn.execute(
                "SELECT root_version, wrapped FROM subject_keys"
                " WHERE subject_ref = ? AND separated_at IS NOT NULL",
                (subject_ref,),
            ).fetchone()
        return WrappedKey(row[0], as_bytes(row[1])) if row else None

    def make_dormant(
        self,
        subject_ref: bytes,
        before: float,
        now: float,
        audit: AuditRow | None,
        separated: tuple[WrappedKey, WrappedKey] | None,
        *,
        provider: str,
    ) -> bool:
        try:
            with self._write() as conn:
                if separated is not None:
                    self._refuse_closed_version(conn, provider, separated[1].root_version)
                # still active, and still inactive (activity commits last_activity first)
                changed = conn.execute(
                    "UPDATE subjects SET state = 'dormant', updated_at = ? WHERE subject_ref = ?"
                    " AND state = 'active' AND COALESCE(last_activity, created_at) <= ?",
                    (now, subject_ref, before),
                ).rowcount
                if changed and separated is not None:
                    old, new = separated
                    moved = conn.execute(
                        "UPDATE subject_keys SET root_version = ?, wrapped = ?, separated_at = ?"
                        " WHERE subject_ref = ? AND wrapped = ? AND separated_at IS NULL",
                        (new.root_version, new.ciphertext, now, subject_ref, old.ciphertext),
                    ).rowcount
                    if not moved:  # rewrapped meanwhile (rotation): the next run separates it
                        raise _Unchanged()
                if changed:
                    self._audited(conn, audit)
        except _Unchanged:
            return False
        return bool(changed)

    def reactivate_subject(
        self,
        subject_ref: bytes,
        old: WrappedKey,
        new: WrappedKey,
        now: float,
        audit: AuditRow | None,
        *,
        provider: str,
    ) -> bool:
        with self._write() as conn:
            self._refuse_closed_version(conn, provider, new.root_version)
            # the subject row first, as every writer of a subject takes it (no lock-order cycle)
            conn.execute(
                f"SELECT 1 FROM subjects WHERE subject_ref = ?{self._FOR_UPDATE}", (subject_ref,)
            ).fetchone()
            moved = conn.execute(
                "UPDATE subject_keys SET root_version = ?, wrapped = ?, separated_at = NULL"
                " WHERE subject_ref = ? AND wrapped = ? AND separated_at IS NOT NULL",
                (new.root_version, new.ciphertext, subject_ref, old.ciphertext),
            ).rowcount
            if moved:
                conn.execute(
                    "UPDATE subjects SET state = 'active', updated_at = ?, last_activity = ?"
                    " WHERE subject_ref = ? AND state = 'dormant'",
                    (now, now, subject_ref),
                )
                conn.execute(
                    "DELETE FROM subject_events WHERE subject_ref = ? AND name = 'dormancy_notice'",
                    (subject_ref,),
                )
                self._audited(conn, audit)
        return bool(moved)

    def create_subject_key(
        self, subject_ref: bytes, wrapped: WrappedKey, now: float, *, provider: str
    ) -> WrappedKey:
        with self._write() as conn:
            self._refuse_closed_version(conn, provider, wrapped.root_version)
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
                "INSERT INTO subject_keys (subject_ref, root_version, wrapped, created_at)"
                " VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (subject_ref, wrapped.root_version, wrapped.ciphertext, now),
            )
            key = conn.execute(
                "SELECT root_version, wrapped, separated_at FROM subject_keys WHERE subject_ref = ?",
                (subject_ref,),
            ).fetchone()
        if key[2] is not None:  # made dormant and separated since the caller looked
            raise SubjectSeparated()
        return WrappedKey(key[0], as_bytes(key[1]))

    def _require_live_subject(self, conn: Connection, subject_ref: bytes) -> None:
        """Inside a write transaction: FailedPrecondition unless the subject exists and is not
        erased; the subject row stays locked against an erasure until the transaction ends."""
        live = conn.execute(
            f"SELECT 1 FROM subjects WHERE subject_ref = ? AND state != 'erased'{self._FOR_SHARE}",
            (subject_ref,),
        ).fetchone()
        if live is None:
            raise FailedPrecondition("no such subject (unknown or erased)")

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
                # what only the subject key could read goes with it (a handful of rows), and
                # the blind index of its records (those kept by law stay findable)
                for table in ("consent_grants", "subject_events"):
                    conn.execute(f"DELETE FROM {table} WHERE subject_ref = ?", (subject_ref,))
                conn.execute(
                    "DELETE FROM blind_index WHERE subject_ref = ? AND key_kind = 'subject'",
                    (subject_ref,),
                )
                if audit is not None and not (deleted or flipped):  # a concurrent erasure won
                    audit = replace(audit, reason=ALREADY_ERASED)
                self._audited(conn, audit)
        if held:
            raise LegalHoldActive()
        if deleted:
            count_shred("subject_key", audit)
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
            # (the erasure deleted their index rows; an update racing it is refused, but a
            # purge leaves nothing of the record behind in any case)
            conn.executemany("DELETE FROM blind_index WHERE record_id = ?", [(r[0],) for r in rows])
        return [ShreddedRecord(r[0], (r[1],) if r[1] else ()) for r in rows]

    def set_subject_state(
        self, subject_ref: bytes, state: SubjectState, now: float, audit: AuditRow | None
    ) -> bool:
        if state is SubjectState.ERASED:
            raise ValueError("use erase_subject to erase")
        with self._write() as conn:
            # a separated subject changes state only through reactivation (its key moves back)
            changed = conn.execute(
                "UPDATE subjects SET state = ?, updated_at = ?"
                " WHERE subject_ref = ? AND state != 'erased' AND NOT EXISTS (SELECT 1 FROM"
                " subject_keys k WHERE k.subject_ref = ? AND k.separated_at IS NOT NULL)",
                (state.value, now, subject_ref, subject_ref),
            ).rowcount
            if changed:
                self._audited(conn, audit)
        return bool(changed)

    def touch_subject(self, subject_ref: bytes, now: float) -> bool:
        with self._write() as conn:
            # (a separated subject wakes only through reactivate_subject: its key moves back)
            woke = conn.execute(
                "UPDATE subjects SET state = 'active', updated_at = ?"
                " WHERE subject_ref = ? AND state = 'dormant' AND NOT EXISTS (SELECT 1 FROM"
                " subject_keys k WHERE k.subject_ref = ? AND k.separated_at IS NOT NULL)",
                (now, subject_ref, subject_ref),
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
        return [as_bytes(r[0]) for r in rows]

    def due_notices(self, after: bytes, limit: int) -> list[NoticeRow]:
        with self._read() as conn:
            rows = conn.execute(
                "SELECT s.subject_ref, s.sealed_id, e.at, e.mac,"
                " COALESCE(s.last_activity, s.created_at) FROM subjects s JOIN subject_events e"
                " ON e.subject_ref = s.subject_ref AND e.name = 'dormancy_notice'"
                " WHERE s.state = 'active' AND s.subject_ref > ?"
                " AND e.at >= COALESCE(s.last_activity, s.created_at)"
                " ORDER BY s.subject_ref LIMIT ?",
                (after, limit),
            ).fetchall()
        return [
            NoticeRow(
                as_bytes(r[0]),
                as_bytes(r[1]) if r[1] is not None else None,
                EventRow("dormancy_notice", r[2], as_bytes(r[3])),
                r[4],
            )
            for r in rows
        ]

    def subject_residue(self, subject_ref: bytes) -> tuple[bool, int]:
        with self._read() as conn:
            key = conn.execute(
                "SELECT 1 FROM subject_keys WHERE subject_ref = ?", (subject_ref,)
            ).fetchone()
            count = conn.execute(
                "SELECT (SELECT COUNT(*) FROM records WHERE subject_ref = ? AND key_kind = 'subject')"
                " + (SELECT COUNT(*) FROM blind_index WHERE subject_ref = ? AND key_kind = 'subject')",
                (subject_ref, subject_ref),
            ).fetchone()[0]
        return key is not None, int(count)

    def record_residue(self, record_id: str) -> tuple[int, int, int]:
        counts = []
        with self._read() as conn:
            for table in ("records", "record_keys", "record_payloads", "blind_index"):
                query = f"SELECT COUNT(*) FROM {table} WHERE record_id = ?"
                counts.append(int(conn.execute(query, (record_id,)).fetchone()[0]))
        return counts[0] + counts[3], counts[1], counts[2]  # its index rows count as its rows

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
            sealed_evidence=as_bytes(r[9]) if r[9] is not None else b"",
            party=str(scope.get("party", "")),
        )

    #: a grant's columns and table, after ``SELECT subject_ref,``
    _GRANT = (
        "grant_id, purpose, grantee_principal, grantee_role, scope, valid_from,"
        " valid_until, evidence_reference, revoked_at, evidence_sealed FROM consent_grants"
    )

    def _grants_of(
        self, conn: Connection, refs: Sequence[bytes], purpose: str | None
    ) -> dict[bytes, list[Grant]]:
        """The grants of each subject of ``refs`` (for ``purpose``, or all of them), oldest
        first; a subject without any is absent. One query per 500 subjects."""
        found: dict[bytes, list[Grant]] = {}
        for chunk in chunks(list(dict.fromkeys(refs))):
            where = f"subject_ref IN ({marks(len(chunk))})"
            args: list[object] = [*chunk]
            if purpose is not None:
                where += " AND purpose = ?"
                args.append(purpose)
            rows = conn.execute(
                f"SELECT subject_ref, {self._GRANT} WHERE {where} ORDER BY created_at, grant_id",
                args,
            ).fetchall()
            for r in rows:
                found.setdefault(as_bytes(r[0]), []).append(self._grant(r[1:]))
        return found

    def subject_grants(self, subject_ref: bytes, purpose: str | None = None) -> list[Grant]:
        with self._read() as conn:
            return self._grants_of(conn, [subject_ref], purpose).get(subject_ref, [])

    def insert_grant(
        self, subject_ref: bytes, grant: Grant, granted_by: str, now: float, audit: AuditRow | None
    ) -> None:
        scope = json.dumps(
            {
                "categories": sorted(grant.categories),
                "fields": {c: sorted(f) for c, f in grant.fields.items()},
                **({"party": grant.party} if grant.party else {}),
            },
            sort_keys=True,
        )
        with self._write() as conn:
            self._require_live_subject(conn, subject_ref)
            # the evidence reference only sealed under the subject key, never in plaintext
            conn.execute(
                "INSERT INTO consent_grants (grant_id, subject_ref, purpose, grantee_principal,"
                " grantee_role, scope, valid_from, valid_until, evidence_reference, granted_by,"
                " created_at, revoked_at, evidence_sealed) VALUES (?,?,?,?,?,?,?,?,'',?,?,?,?)",
                (
                    grant.grant_id,
                    subject_ref,
                    grant.purpose,
                    grant.grantee_principal,
                    grant.grantee_role,
                    scope,
                    grant.valid_from,
                    grant.valid_until,
                    granted_by,
                    now,
                    None,
                    grant.sealed_evidence,
                ),
            )
            self._audited(conn, audit)

    def grant_state(self, grant_id: str) -> tuple[bytes, bool] | None:
        with self._read() as conn:
            row = conn.execute(
                "SELECT subject_ref, revoked_at FROM consent_grants WHERE grant_id = ?", (grant_id,)
            ).fetchone()
        return (as_bytes(row[0]), row[1] is not None) if row else None

    def plaintext_evidence(self, after: str, limit: int) -> list[tuple[str, bytes, str]]:
        with self._read() as conn:
            rows = conn.execute(
                "SELECT grant_id, subject_ref, evidence_reference FROM consent_grants"
                " WHERE evidence_reference != '' AND grant_id > ? ORDER BY grant_id LIMIT ?",
                (after, limit),
            ).fetchall()
        return [(r[0], as_bytes(r[1]), str(r[2])) for r in rows]

    def seal_evidence(self, grant_id: str, sealed: bytes) -> None:
        with self._write() as conn:
            conn.execute(
                "UPDATE consent_grants SET evidence_reference = '', evidence_sealed = ?"
                " WHERE grant_id = ?",
                (sealed or None, grant_id),
            )

    def revoke_grant(
        self, grant_id: str, now: float, audit: AuditRow | None
    ) -> tuple[bytes, Grant] | None:
        with self._write() as conn:
            conn.execute(
                "UPDATE consent_grants SET revoked_at = ? WHERE grant_id = ? AND revoked_at IS NULL",
                (now, grant_id),
            )
            row = conn.execute(
                f"SELECT subject_ref, {self._GRANT} WHERE grant_id = ?", (grant_id,)
            ).fetchone()
            if row is None:
                return None
            self._audited(conn, audit)
        return as_bytes(row[0]), self._grant(row[1:])
