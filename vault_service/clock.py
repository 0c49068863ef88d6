"""Injected time. Retention, expiry and rotation read a :class:`Clock`, never ``time.time()``."""

from __future__ import annotations

import math
import os
import threading
import time
from pathlib import Path
from typing import Protocol

from vault_service.errors import ConfigError


class Clock(Protocol):
    """Seconds since the Unix epoch, as a float (server time only)."""

    def now(self) -> float:
        """The current time."""
        ...


class SystemClock:
    """The real clock."""

    def now(self) -> float:
        return time.time()


class FixedClock:
    """A clock tests move by hand."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self._now = start
        self._lock = threading.Lock()

    def now(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> None:
        """Move forward (or back, with a negative value)."""
        with self._lock:
            self._now += seconds

    def set(self, at: float) -> None:
        """Jump to an absolute time."""
        with self._lock:
            self._now = at


class RehearsalClock:
    """The real clock plus an offset kept in a file (development only: ``server.dev_clock_file``,
    allowed on loopback alone). ``vaultctl dev advance`` moves the offset forward; every process
    of the deployment (workers, ``vaultctl`` commands run in-process) reads the same file, so a
    company can rehearse its retention rules, shares and dormancy end to end without waiting.
    The file is re-read when its modification time changes; a missing file is an offset of 0."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: tuple[int, int] | None = None
        self._offset = 0.0
        self._lock = threading.Lock()

    def offset(self) -> float:
        """The offset in seconds (>= 0)."""
        try:
            st = self.path.stat()
            stamp = (st.st_ino, st.st_mtime_ns)  # a rename makes a new inode: never missed
        except FileNotFoundError:
            return 0.0
        with self._lock:
            if stamp != self._stamp:
                self._offset = read_offset(self.path)
                self._stamp = stamp
            return self._offset

    def now(self) -> float:
        return time.time() + self.offset()


def read_offset(path: Path) -> float:
    """The offset a rehearsal clock file holds (0 when it does not exist)."""
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        return 0.0
    try:
        value = float(text or "0")
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise ConfigError(f"{path}: a clock offset is a finite number of seconds >= 0")
    return value


def advance_offset(path: Path, seconds: float) -> float:
    """Move a rehearsal clock forward by ``seconds`` (> 0; time never goes back: what was
    destroyed at a later time must not look undone); returns the new offset. Written beside the
    file, then renamed over it, so a reader never sees half a number."""
    if not math.isfinite(seconds) or seconds <= 0:
        raise ConfigError("the clock only moves forward: seconds must be > 0")
    offset = read_offset(path) + seconds
    path.parent.mkdir(parents=True, exist_ok=True)
    staged = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    staged.write_text(f"{offset!r}\n")
    os.replace(staged, path)
    return offset
