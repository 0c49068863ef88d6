"""Job leases: the queries of the ``job_leases`` table.

Contract: a lease names a job that should run in one replica at a time; a holder takes it if it
is free or expired, and renews its own; two holders never both hold an unexpired lease.
"""

from __future__ import annotations

from vault_service.storage.sql.base import SqlStoreBase


class SqlLeases(SqlStoreBase):
    """Leases that let one replica at a time run a job."""

    def acquire_lease(self, name: str, holder: str, now: float, ttl: float) -> bool:
        with self._write() as conn:
            taken = conn.execute(
                "INSERT INTO job_leases VALUES (?, ?, ?) ON CONFLICT (name) DO UPDATE"
                " SET holder = excluded.holder, expires_at = excluded.expires_at"
                " WHERE job_leases.holder = excluded.holder OR job_leases.expires_at <= ?",
                (name, holder, now + ttl, now),
            ).rowcount
        return bool(taken)
