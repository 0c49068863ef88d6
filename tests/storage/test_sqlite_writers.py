"""Writers of several processes on one SQLite database (vault_service/storage/sqlite.py): they
queue on the writers' lock file, every write lands, and a lock held longer than the busy
timeout is an outage (UNAVAILABLE, nothing written), never a hang. Real processes throughout."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from vault_service.errors import Unavailable
from vault_service.storage import AuditRow, SqliteRecordStore

ROOT = Path(__file__).resolve().parents[2]

#: a process writing ``n`` audit entries, one write transaction each, as principal ``name``
WRITER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from vault_service.storage import AuditRow, SqliteRecordStore

    path, name, n = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    store = SqliteRecordStore(path, busy_timeout_ms=20000)
    sys.stdout.write("ready\\n")
    sys.stdout.flush()
    sys.stdin.readline()  # start together
    for i in range(n):
        store.append_audit(AuditRow(at=float(i), principal=name, action="record.get", decision="allow"))
    store.close()
    """
)


def _store(path: Path, timeout_ms: int = 20000) -> SqliteRecordStore:
    store = SqliteRecordStore(path, busy_timeout_ms=timeout_ms)
    store.migrate()
    return store


def _entry(principal: str) -> AuditRow:
    return AuditRow(at=1.0, principal=principal, action="record.get", decision="allow")


def test_writers_of_several_processes_all_land_in_their_order(tmp_path: Path) -> None:
    path = tmp_path / "vault.db"
    store = _store(path)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path), f"w{k}", "150"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        for k in range(3)
    ]
    for p in procs:
        assert p.stdout is not None and p.stdout.readline() == "ready\n"
    for p in procs:
        assert p.stdin is not None
        p.stdin.write("go\n")
        p.stdin.flush()
    assert [p.wait(120) for p in procs] == [0, 0, 0]
    rows = store.audit_rows()
    for k in range(3):
        mine = [r.at for r in rows if r.principal == f"w{k}"]
        assert mine == [float(i) for i in range(150)]  # none lost, none twice, in order
    assert (path.parent / "vault.db-writers").stat().st_mode & 0o777 == 0o600
    store.close()


def _hold(lock_file: Path) -> subprocess.Popen[str]:
    """Another process holding the writers' lock until its stdin closes."""
    script = textwrap.dedent(
        """
        import fcntl, os, sys
        fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        print("held", flush=True)
        sys.stdin.read()
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script, str(lock_file)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline() == "held\n"
    return proc


def _release(proc: subprocess.Popen[str]) -> None:
    assert proc.stdin is not None
    proc.stdin.close()
    assert proc.wait(30) == 0


def test_a_writers_lock_held_past_the_busy_timeout_is_an_outage_and_nothing_is_written(
    tmp_path: Path,
) -> None:
    path = tmp_path / "vault.db"
    store = _store(path, timeout_ms=200)
    store.append_audit(_entry("before"))
    holder = _hold(path.parent / "vault.db-writers")
    try:
        with pytest.raises(Unavailable):
            store.append_audit(_entry("during"))
        # reads take no writers' lock: they go on
        assert [r.principal for r in store.audit_rows()] == ["before"]
    finally:
        _release(holder)
    store.append_audit(_entry("after"))
    assert [r.principal for r in store.audit_rows()] == ["before", "after"]
    store.close()


def test_a_writers_lock_held_briefly_is_waited_out(tmp_path: Path) -> None:
    path = tmp_path / "vault.db"
    store = _store(path, timeout_ms=20000)
    holder = _hold(path.parent / "vault.db-writers")
    timer = threading.Timer(0.3, _release, (holder,))  # released while the write waits
    timer.start()
    try:
        store.append_audit(_entry("waited"))
    finally:
        timer.join()
    assert [r.principal for r in store.audit_rows()] == ["waited"]
    store.close()


def test_a_forked_child_takes_the_lock_on_its_own_descriptor(tmp_path: Path) -> None:
    """A ``flock`` belongs to the open file, which a fork shares: a child writing through its
    parent's store must open the lock file again, or it would not exclude its parent."""
    path = tmp_path / "vault.db"
    store = _store(path)
    store.append_audit(_entry("parent"))  # the parent's descriptor is open
    parent_fd = store._writers_file()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report whether its descriptor is a new open file
        try:
            os.close(read)
            child_fd = store._writers_file()
            fcntl.flock(parent_fd, fcntl.LOCK_EX)  # the shared open file: the parent's lock
            try:
                fcntl.flock(child_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                answer = b"shared"
            except BlockingIOError:
                answer = b"own"
            os.write(write, answer)
        finally:
            os._exit(0)
    os.close(write)
    answer = os.read(read, 16)
    os.waitpid(pid, 0)
    assert answer == b"own"
    store.close()
