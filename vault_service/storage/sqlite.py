"""SQLite record store: the embedded default.

WAL journal, ``secure_delete`` (freed pages are zeroed, so shredded ciphertext does not linger in the
main file), foreign keys, a checkpoint at start-up, one connection per thread, short ``BEGIN
IMMEDIATE`` write transactions (which serialize writers, so no row locks are needed). ``sqlite3``
errors are mapped once, here: busy/locked/unopenable -> Unavailable, anything else -> Internal,
never with the vendor's text.

Writers of several processes (``serve --workers N``, a ``vaultctl`` command beside a server)
queue on a lock file beside the database (``<db>-writers``, an exclusive ``flock``) before
``BEGIN IMMEDIATE``, polled at 50 µs to 1 ms; SQLite's own busy handler, which they would
otherwise wait in, sleeps 1 to 100 ms between retries, far longer than a write transaction
here (docs/profile.md). Waiting for either lock is bounded by the busy timeout: then
Unavailable.

SQLite's locks are POSIX locks, held per process: closing *any* descriptor of the database file
in this process drops them all, and another process (a ``vaultctl`` command) writing then can
corrupt the database. Nothing in the serving process may open the files by other means; copy
them from another process, or with SQLite's backup API.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from vault_service.errors import Internal, Unavailable
from vault_service.storage.migrations import pending_steps
from vault_service.storage.sql import Connection, SqlRecordStore


def _text(raw: bytes) -> str | bytes:
    """TEXT values as str; one that is not UTF-8 (only an edit of the database makes one) as its
    bytes, rather than sqlite3's decoding error, which would read as an outage (UNAVAILABLE)."""
    try:
        return raw.decode()
    except UnicodeDecodeError:
        return raw


@contextlib.contextmanager
def _mapped_errors() -> Iterator[None]:
    try:
        yield
    except (sqlite3.OperationalError, OSError):
        raise Unavailable("database unavailable") from None
    except sqlite3.DatabaseError:
        raise Internal() from None


class SqliteRecordStore(SqlRecordStore):
    """Record store in one SQLite file (see the module docstring)."""

    _HEX_REF = "lower(hex(r.subject_ref))"
    _DB_SYSTEM = "sqlite"

    def __init__(
        self,
        path: Path,
        *,
        synchronous: str = "NORMAL",
        busy_timeout_ms: int = 5000,
        cache_kib: int = 65536,
    ) -> None:
        if synchronous not in {"NORMAL", "FULL", "EXTRA"}:
            raise ValueError("synchronous must be NORMAL, FULL or EXTRA")
        super().__init__()
        self._path = path
        self._synchronous = synchronous
        self._busy_timeout_ms = busy_timeout_ms
        self._cache_kib = cache_kib
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._all_lock = threading.Lock()
        # Writers of this process queue here, not in SQLite's busy handler, which sleeps in
        # steps of up to 100 ms between retries: with several RPC threads writing (every read
        # writes its audit entry) those sleeps dominated latency (docs/profile.md).
        self._write_lock = threading.Lock()
        self._lock_file: tuple[int, int] | None = None  # (pid, descriptor) of the lock file

    def __repr__(self) -> str:
        return f"SqliteRecordStore({str(self._path)!r})"

    # connections -------------------------------------------------------------------------------
    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            with _mapped_errors():
                self._path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
                # SQLite gives -wal and -shm the database file's mode: make it private first.
                if not self._path.exists():
                    os.close(os.open(self._path, os.O_WRONLY | os.O_CREAT, 0o600))
                conn = sqlite3.connect(
                    self._path,
                    isolation_level=None,
                    timeout=self._busy_timeout_ms / 1000,
                    check_same_thread=False,
                )
                conn.text_factory = _text
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute(f"PRAGMA synchronous={self._synchronous}")
                conn.execute("PRAGMA secure_delete=ON")
                conn.execute("PRAGMA foreign_keys=ON")
                conn.execute(f"PRAGMA cache_size=-{self._cache_kib}")
                conn.execute(f"PRAGMA busy_timeout={self._busy_timeout_ms}")
            self._local.conn = conn
            with self._all_lock:
                self._all.append(conn)
        return conn

    def _writers_file(self) -> int:
        """This process's descriptor of the writers' lock file (opened again in a forked child:
        a ``flock`` belongs to the open file, which a fork shares)."""
        pid = os.getpid()
        if self._lock_file is None or self._lock_file[0] != pid:
            with _mapped_errors():
                fd = os.open(
                    self._path.with_name(self._path.name + "-writers"),
                    os.O_RDWR | os.O_CREAT | os.O_CLOEXEC,
                    0o600,
                )
            self._lock_file = (pid, fd)
        return self._lock_file[1]

    def _lock_writers(self, fd: int) -> None:
        """Take the writers' lock of every process, or Unavailable after the busy timeout.
        Polled rather than blocking: a blocked ``flock`` has no timeout, and a stopped process
        holding the lock must make this an outage, not a hang."""
        deadline = time.monotonic() + self._busy_timeout_ms / 1000
        pause = 50e-6
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise Unavailable("database unavailable") from None
            time.sleep(pause)
            pause = min(2 * pause, 1e-3)

    @contextlib.contextmanager
    def _write(self) -> Iterator[Connection]:
        with self._span("write"):
            conn = self._conn()
            if not self._write_lock.acquire(timeout=self._busy_timeout_ms / 1000):
                raise Unavailable("database unavailable")
            try:
                fd = self._writers_file()  # under the thread lock: one descriptor per process
                self._lock_writers(fd)
                try:
                    with _mapped_errors():
                        conn.execute("BEGIN IMMEDIATE")
                        try:
                            yield conn
                        except BaseException:
                            conn.execute("ROLLBACK")
                            self._audit_rolled_back()
                            raise
                        conn.execute("COMMIT")
                        self._audit_committed()
                finally:
                    fcntl.flock(fd, fcntl.LOCK_UN)
            finally:
                self._write_lock.release()

    @contextlib.contextmanager
    def _read(self) -> Iterator[Connection]:
        with self._span("read"):
            conn = self._conn()
            with _mapped_errors():
                conn.execute("BEGIN")
                try:
                    yield conn
                finally:
                    conn.execute("COMMIT")

    def _serialize(self, conn: Connection, name: str, *, shared: bool = False) -> None:
        """Nothing to do: ``BEGIN IMMEDIATE`` already serializes every writer."""

    def close(self) -> None:
        with self._all_lock:
            for conn in self._all:
                with contextlib.suppress(sqlite3.Error):
                    conn.close()
            self._all.clear()
        self._local = threading.local()
        if self._lock_file is not None and self._lock_file[0] == os.getpid():
            with contextlib.suppress(OSError):
                os.close(self._lock_file[1])
        self._lock_file = None

    def ping(self) -> None:
        with _mapped_errors():
            self._conn().execute("SELECT 1").fetchone()

    def migrate(self) -> int:
        conn = self._conn()
        with _mapped_errors():
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version INTEGER PRIMARY KEY, applied_at REAL NOT NULL)"
            )
            applied = {int(r[0]) for r in conn.execute("SELECT version FROM schema_migrations")}
            current = max(applied, default=0)
            for version, statements in pending_steps(applied):
                conn.execute("BEGIN IMMEDIATE")
                try:
                    for statement in statements:
                        conn.execute(statement)
                    conn.execute("INSERT INTO schema_migrations VALUES (?, ?)", (version, time.time()))
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
                current = max(current, version)
            # A checkpoint at start-up keeps the WAL short (without it p99 latencies spike).
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return int(current)
