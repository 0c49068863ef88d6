"""FindRecords against GetRecord on the same server in the same run (issue 21: "a lookup costs at
most 2x a Get"): a `vaultctl serve` subprocess started as bench_rpc starts it (SQLite, the tests'
clinic-matching policy, whose member_profile.email is searchable), 5,000 members with distinct
e-mail addresses, then one client calling, one call at a time, GetRecord of a random member's
profile and FindRecords of a random member's e-mail (one match each), interleaved, each figure the
median of ``REPEATS``.

Both calls do one audited release (one audit append); the search adds the token (an HMAC) and the
index lookup, and reads the record it found as a Get does (without decrypting it).
"""

from __future__ import annotations

import random
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from benchmarks.bench_rpc import start_vault, stop
from benchmarks.harness import REPEATS, Result
from tests.conftest import TOKENS
from vault_service.client import VaultClient

MEMBERS = 5_000
CALLS = 400


def _calls_per_second(fn: Callable[[str], None], args: list[str]) -> float:
    started = time.perf_counter()
    for a in args:
        fn(a)
    return len(args) / (time.perf_counter() - started)


def run() -> list[Result]:
    rng = random.Random(7)  # noqa: S311 (which records a benchmark asks for, not a secret)
    gets: list[float] = []
    finds: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        target = start_vault("sqlite-search", Path(tmp) / "v", 1)
        try:
            with VaultClient(target.addr, TOKENS["app"]) as c:
                ids = [
                    c.put_record(
                        f"member-{i}",
                        "member_profile",
                        {"email": f"Member.{i}@Example.KR", "language": "ko"},
                    ).record_id
                    for i in range(MEMBERS)
                ]

                def get(record_id: str) -> None:
                    c.get_record(record_id, "customer_support")

                def find(email: str) -> None:
                    page = c.find_records("member_profile", "email", email, "customer_support")
                    assert len(page.records) == 1

                for _ in range(REPEATS):
                    picks = [rng.randrange(MEMBERS) for _ in range(CALLS)]
                    gets.append(_calls_per_second(get, [ids[i] for i in picks]))
                    finds.append(_calls_per_second(find, [f"member.{i}@example.kr" for i in picks]))
        finally:
            stop(target)
    get_rate, find_rate = statistics.median(gets), statistics.median(finds)
    return [
        Result(
            f"FindRecords, one match among {MEMBERS:,} (SQLite, 1 client, sequential)",
            find_rate,
            "calls/s",
            "GetRecord, same server and run",
            get_rate,
            f"goal >= 0.5 (a lookup at most 2x a Get); {1000 / find_rate:.2f} ms vs "
            f"{1000 / get_rate:.2f} ms per call",
        )
    ]
