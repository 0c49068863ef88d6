"""A private PostgreSQL cluster for tests and benchmarks: Debian's postgresql binaries, a temporary
data directory, a free loopback port, started as an unprivileged user (the server refuses to run as
root), stopped and removed at the end.

Each test gets its own database (:meth:`PostgresCluster.new_database`), so tests never see each
other's rows. Durability settings are relaxed (fsync off) unless ``durable=True``: tests check
semantics, not the disk; benchmarks ask for the defaults.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

INSTALL_HINT = "install Debian's postgresql package (.ci/run does: apt-get install -y postgresql)"


def postgres_bindir() -> Path:
    """The directory of initdb/postgres/pg_ctl: $PG_BINDIR, Debian's newest version, or PATH."""
    if os.environ.get("PG_BINDIR"):
        return Path(os.environ["PG_BINDIR"])
    versions = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3])
    )
    if versions:
        return Path(versions[-1]).parent
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    raise RuntimeError(f"PostgreSQL server binaries not found: {INSTALL_HINT}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _unprivileged_user() -> pwd.struct_passwd | None:
    """Who runs the server: None (ourselves) unless we are root; then postgres or nobody."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise RuntimeError("running as root and neither a postgres nor a nobody user exists")


class PostgresCluster:
    """One running cluster; ``dsn(dbname)`` gives a libpq connection string for a database."""

    def __init__(self, *, durable: bool = False) -> None:
        self.durable = durable
        self.port = 0
        self.dir = Path(tempfile.mkdtemp(prefix="vault-pg-"))
        self._proc: subprocess.Popen[bytes] | None = None
        self._user = _unprivileged_user()

    def _run_as(self) -> dict[str, Any]:
        """Popen arguments: the unprivileged user (if we are root) and a minimal environment."""
        env = {"PATH": os.environ.get("PATH", ""), "LC_ALL": "C", "HOME": str(self.dir)}
        if self._user is None:
            return {"env": env}
        return {"env": env, "user": self._user.pw_uid, "group": self._user.pw_gid, "extra_groups": []}

    def start(self) -> PostgresCluster:
        bindir = postgres_bindir()
        if self._user is not None:
            os.chown(self.dir, self._user.pw_uid, self._user.pw_gid)
        data = self.dir / "data"
        subprocess.run(
            [
                str(bindir / "initdb"),
                *("-D", str(data), "-U", "vault", "--auth=trust", "--locale=C", "--encoding=UTF8"),
                *("--no-sync", "--no-instructions"),
            ],
            check=True,
            capture_output=True,
            cwd=self.dir,
            **self._run_as(),
        )
        self.port = _free_port()
        self._launch()
        return self

    def _launch(self) -> None:
        settings = [
            "listen_addresses=127.0.0.1",
            f"port={self.port}",
            f"unix_socket_directories={self.dir}",
            "max_connections=300",
            "shared_buffers=128MB",
        ]
        if not self.durable:
            settings += ["fsync=off", "synchronous_commit=off", "full_page_writes=off"]
        args = [str(postgres_bindir() / "postgres"), "-D", str(self.dir / "data")]
        for setting in settings:
            args += ["-c", setting]
        log = open(self.dir / "server.log", "ab")  # noqa: SIM115 - the server process owns it
        self._proc = subprocess.Popen(
            args,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.dir,
            start_new_session=True,
            **self._run_as(),
        )
        log.close()
        self._wait_ready()

    def _wait_ready(self, timeout: float = 30.0) -> None:
        import psycopg

        deadline = time.monotonic() + timeout
        while True:
            assert self._proc is not None
            if self._proc.poll() is not None:
                raise RuntimeError(f"postgres exited: {(self.dir / 'server.log').read_text()[-2000:]}")
            try:
                with psycopg.connect(self.dsn("postgres"), connect_timeout=2):
                    return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def dsn(self, dbname: str) -> str:
        return f"host=127.0.0.1 port={self.port} user=vault dbname={dbname}"

    def new_database(self) -> str:
        """Create an empty database; returns its connection string."""
        import psycopg

        name = f"t_{uuid.uuid4().hex[:16]}"
        with psycopg.connect(self.dsn("postgres"), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')  # type: ignore[arg-type]
        return self.dsn(name)

    def drop_database(self, dsn: str) -> None:
        import psycopg

        name = dsn.rsplit("dbname=", 1)[1]
        with psycopg.connect(self.dsn("postgres"), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')  # type: ignore[arg-type]

    def stop_server(self) -> None:
        """Fast shutdown (SIGINT: clients are disconnected), keeping the data: an outage that
        :meth:`restart_server` ends."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGINT)
            self._proc.wait(timeout=30)

    def restart_server(self) -> None:
        self.stop_server()
        self._launch()

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGQUIT)  # = immediate shutdown: the data is thrown away
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)
