"""Run every benchmark module and write bench-results/results.json and results.md.

Usage: ``make bench`` (or ``python -m benchmarks.run [module ...]``; ``make bench BENCH=module``
runs one: the README's table is replaced by full runs only).
"""

from __future__ import annotations

import datetime
import importlib
import json
import os
import platform
import sys
from pathlib import Path

from benchmarks.harness import Result, figure

MODULES = [
    "benchmarks.bench_rpc",
    "benchmarks.bench_server_modes",
    "benchmarks.bench_batches",
    "benchmarks.bench_envelope",
    "benchmarks.bench_keys",
    "benchmarks.bench_large_objects",
    "benchmarks.bench_lifecycle",
    "benchmarks.bench_search",
    "benchmarks.bench_tracing",
    "benchmarks.bench_breach_scope",
    "benchmarks.bench_sequencer",
    "benchmarks.bench_audit_scaling",
]
OUT = Path(__file__).resolve().parent.parent / "bench-results"


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, {platform.system()}"


def main(argv: list[str]) -> int:
    modules = argv or MODULES
    results: list[Result] = []
    for name in modules:
        print(f"== {name}", flush=True)
        for result in importlib.import_module(name).run():
            print("  " + result.line(), flush=True)
            results.append(result)
    OUT.mkdir(exist_ok=True)
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    (OUT / "results.json").write_text(
        json.dumps(
            {"machine": machine(), "when": when, "results": [r.as_dict() for r in results]}, indent=2
        )
    )
    lines = [
        f"Measured {when} on {machine()}; medians of 3 runs.",
        "",
        "| benchmark | value | baseline (same run) | ratio | note |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {r.name} | {figure(r.value)} {r.unit} | {r.baseline_name}: {figure(r.baseline)} | "
        f"{r.ratio:.3f} | {r.note} |"
        for r in results
    ]
    table = "\n".join(lines) + "\n"
    (OUT / "results.md").write_text(table)
    print(f"wrote {OUT / 'results.json'} and {OUT / 'results.md'}")
    if modules == MODULES:  # a full run: the README shows the latest table
        _update_readme(table)
    return 0


def _update_readme(table: str) -> None:
    readme = Path(__file__).resolve().parent.parent / "README.md"
    text = readme.read_text()
    start, end = "<!-- bench:start -->\n", "<!-- bench:end -->"
    if start in text and end in text:
        head, rest = text.split(start, 1)
        readme.write_text(head + start + table + rest[rest.index(end) :])
        print(f"updated the table in {readme}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
