"""What every benchmark shares: a result type, medians over repeats, a scratch vault."""

from __future__ import annotations

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
            f"{self.name}: {self.value:,.1f} {self.unit} vs {self.baseline_name} "
            f"{self.baseline:,.1f} -> ratio {self.ratio:.3f}" + (f"  ({self.note})" if self.note else "")
        )


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
