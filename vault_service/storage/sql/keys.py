"""Service keys and root-key rotation: the queries of the ``service_keys`` and
``root_versions`` tables, and the subject keys' inventory by root version.

Contract: a service key is created race-safely (the first one stands); rotation pages through the
keys not yet under a root version and replaces each by compare-and-set (a key erased or rewrapped
meanwhile is left alone); a root version's lifecycle state is recorded with its audit entry, and
once it is closed (retired, marked, destroying) no key wrapped under it is stored any more.
"""

from __future__ import annotations

from collections.abc import Sequence

from vault_service.audit.model import AuditRow
from vault_service.errors import FailedPrecondition
from vault_service.key_providers.base import WrappedKey
from vault_service.storage.rows import RootVersionState
from vault_service.storage.sql.base import Connection, SqlStoreBase, as_bytes


class SqlKeys(SqlStoreBase):
    """Service keys, the rewrap of wrapped keys onto a new root version, and root-version
    states."""

    def get_service_key(self, name: str) -> WrappedKey | None:
        with self._read() as conn:
            row = conn.execute(
                "SELECT root_version, wrapped FROM service_keys WHERE name = ?", (name,)
            ).fetchone()
        return WrappedKey(row[0], as_bytes(row[1])) if row else None

    def put_service_key_if_absent(
        self, name: str, wrapped: WrappedKey, now: float, *, provider: str
    ) -> WrappedKey:
        with self._write() as conn:
            self._refuse_closed_version(conn, provider, wrapped.root_version)
            conn.execute(
                "INSERT INTO service_keys VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (name, wrapped.root_version, wrapped.ciphertext, now),
            )
            row = conn.execute(
                "SELECT root_version, wrapped FROM service_keys WHERE name = ?", (name,)
            ).fetchone()
        return WrappedKey(row[0], as_bytes(row[1]))

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
    ) -> list[tuple[bytes, WrappedKey, bool]]:
        with self._read() as conn:
            rows = conn.execute(
                "SELECT subject_ref, root_version, wrapped, separated_at FROM subject_keys"
                " WHERE root_version != ? AND subject_ref > ? ORDER BY subject_ref LIMIT ?",
                (version, after or b"", limit),
            ).fetchall()
        return [(as_bytes(r[0]), WrappedKey(r[1], as_bytes(r[2])), r[3] is not None) for r in rows]

    def service_keys(self) -> list[tuple[str, WrappedKey]]:
        with self._read() as conn:
            rows = conn.execute("SELECT name, root_version, wrapped FROM service_keys").fetchall()
        return [(r[0], WrappedKey(r[1], as_bytes(r[2]))) for r in rows]

    def replace_subject_keys(
        self, changes: Sequence[tuple[bytes, WrappedKey, WrappedKey]], *, provider: str
    ) -> list[bool]:
        with self._write() as conn:
            for version in sorted({new.root_version for _, _, new in changes}):
                self._refuse_closed_version(conn, provider, version)
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

    def replace_service_key(self, name: str, old: WrappedKey, new: WrappedKey, *, provider: str) -> bool:
        with self._write() as conn:
            self._refuse_closed_version(conn, provider, new.root_version)
            changed = conn.execute(
                "UPDATE service_keys SET root_version = ?, wrapped = ?"
                " WHERE name = ? AND root_version = ? AND wrapped = ?",
                (new.root_version, new.ciphertext, name, old.root_version, old.ciphertext),
            ).rowcount
        return bool(changed)

    def root_version_states(self, provider: str) -> dict[str, RootVersionState]:
        with self._read() as conn:
            rows = conn.execute(
                "SELECT version, state, updated_at, destroy_at, detail FROM root_versions"
                " WHERE provider = ?",
                (provider,),
            ).fetchall()
        return {r[0]: RootVersionState(*r) for r in rows}

    def close_root_version(self, provider: str, state: RootVersionState, audit: AuditRow | None) -> None:
        with self._write() as conn:
            # exclusive against every writer of a key under this version (their shared lock)
            self._serialize(conn, f"root-version:{provider}:{state.version}")
            self._upsert_root_version(conn, provider, state)
            subjects = conn.execute(
                "SELECT COUNT(*) FROM subject_keys WHERE root_version = ?", (state.version,)
            ).fetchone()[0]
            services = conn.execute(
                "SELECT COUNT(*) FROM service_keys WHERE root_version = ?", (state.version,)
            ).fetchone()[0]
            if subjects or services:
                raise FailedPrecondition(
                    f"root version {state.version} still protects {subjects} subject keys and "
                    f"{services} service keys: run vaultctl keys rewrap first"
                )
            self._audited(conn, audit)

    @staticmethod
    def _upsert_root_version(conn: Connection, provider: str, state: RootVersionState) -> None:
        conn.execute(
            "INSERT INTO root_versions VALUES (?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (provider, version) DO UPDATE SET state = excluded.state,"
            " updated_at = excluded.updated_at, destroy_at = excluded.destroy_at,"
            " detail = excluded.detail",
            (provider, state.version, state.state, state.updated_at, state.destroy_at, state.detail),
        )

    def set_root_version_state(
        self, provider: str, state: RootVersionState, audit: AuditRow | None
    ) -> None:
        with self._write() as conn:
            self._upsert_root_version(conn, provider, state)
            self._audited(conn, audit)
