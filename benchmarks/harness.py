"""What every benchmark shares: a result type, medians over repeats, a scratch vault."""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

REPEATS = 3


@dataclass(frozen=True)
class Result:
    """One figure and the baseline it is compared with (both medians of ``REPEATS`` runs)."""

    name: str
    value: float
    unit: str
    baseline_name: str
    baseline: float
    note: str = ""

    @property
    def ratio(self) -> float:
        return self.value / self.baseline if self.baseline else float("nan")

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ratio": self.ratio}

    def line(self) -> str:
        return (
            f"{self.name}: {figure(self.value)} {self.unit} vs {self.baseline_name} "
            f"{figure(self.baseline)} -> ratio {self.ratio:.3f}"
            + (f"  ({self.note})" if self.note else "")
        )


def figure(value: float) -> str:
    """A value as the results print it: one decimal, or three significant digits below 10 (a
    CPU time per call in ms)."""
    return f"{value:,.1f}" if abs(value) >= 10 else f"{value:.3g}"


def median_of(fn: Callable[[], float], repeats: int = REPEATS) -> float:
    """Median of ``repeats`` calls of ``fn`` (each returns one measurement)."""
    return statistics.median(fn() for _ in range(repeats))


def rate(n: int, fn: Callable[[], object]) -> float:
    """Operations per second of ``fn`` doing ``n`` operations."""
    started = time.perf_counter()
    fn()
    return n / (time.perf_counter() - started)


def scratch_policy() -> str:
    """The shipped clinic-matching policy (benchmarks call the service as an application)."""
    return (Path(__file__).resolve().parent.parent / "policies" / "clinic-matching.toml").read_text()


def _cpu_of(pid: int) -> tuple[int, float]:
    """(parent pid, user + system CPU seconds) of a live process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds used so far by process ``pid`` and its live children (a ``serve`` supervisor
    and its worker processes): the difference across a run is the server's CPU for it."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent, used = _cpu_of(int(entry.name))
        except (OSError, ValueError, IndexError):  # gone meanwhile
            continue
        if int(entry.name) == pid or parent == pid:
            total += used
    return total
