"""Durable file writes, written once: replace a file atomically, or append to it.

``replace_file`` writes a temporary file beside the target (a name unique to this process and
thread), fsyncs it, renames it over the target and fsyncs the directory, so that after a crash
the target is either the old file or the new one, whole, and the rename itself survives.
``append_file`` writes everything (``os.write`` may write less than asked) with ``O_APPEND`` and
fsyncs. Both create files with mode 0600 and raise OSError; callers map it to their own error.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def replace_file(path: Path, data: bytes) -> None:
    """Make ``path`` hold ``data``, atomically and durably (see the module docstring)."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{threading.get_ident()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        _write_all(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def append_file(path: Path, data: bytes) -> os.stat_result:
    """Append ``data`` to ``path`` durably; returns the file's status from before the write
    (its ``st_size`` is the offset the data was written at, with the caller holding the lock
    that orders appends)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        st = os.fstat(fd)
        _write_all(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    return st
