"""Injected time. Retention, expiry and rotation read a :class:`Clock`, never ``time.time()``."""

from __future__ import annotations

import threading
import time
from typing import Protocol


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
