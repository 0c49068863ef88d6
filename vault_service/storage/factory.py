"""Open the configured record store (the one place that knows every backend)."""

from __future__ import annotations

from vault_service.config import Config
from vault_service.storage.records import RecordStore


def open_record_store(config: Config) -> RecordStore:
    """The record store named by ``storage.backend``, not yet migrated. PostgreSQL's driver is
    imported only when it is configured (it is an optional dependency)."""
    storage = config.storage
    if storage.backend == "postgres":
        from vault_service.storage.postgres import PostgresRecordStore

        return PostgresRecordStore(
            storage.postgres_dsn,
            min_connections=storage.postgres_pool_min,
            max_connections=storage.postgres_pool_max,
            timeout_seconds=storage.postgres_timeout_seconds,
            lock_timeout_ms=int(storage.postgres_timeout_seconds * 1000),
        )
    from vault_service.storage.sqlite import SqliteRecordStore

    return SqliteRecordStore(
        config.path(storage.sqlite_path),
        synchronous=storage.sqlite_synchronous,
        busy_timeout_ms=int(storage.sqlite_busy_timeout_seconds * 1000),
        cache_kib=storage.sqlite_cache_mib * 1024,
    )


def open_migrated_store(config: Config) -> RecordStore:
    """:func:`open_record_store`, migrated; closed again if the migration fails."""
    store = open_record_store(config)
    try:
        store.migrate()
    except Exception:
        store.close()
        raise
    return store
