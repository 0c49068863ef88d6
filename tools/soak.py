"""Soak: 64 concurrent clients for a bounded time against a `vaultctl serve` subprocess, mixing
put, get, share (create and read) and erase. Prints and writes (bench-results/soak.json) the
figures: operations and statuses, INTERNAL/UNKNOWN (must be 0), lost writes (must be 0), and the
server's resident memory over time (must stay flat).

    make soak                                   # 64 clients, 300 s
    .venv/bin/python tools/soak.py --clients 64 --seconds 600

Each client owns its subjects (``soak-<client>-<generation>``): it writes records, reads them
back, shares one with the clinic, reads the share as the clinic, and now and then erases its
subject and moves on to the next generation. So every answer but OK is a finding, except the
two a client expects: NOT_FOUND for a record it deleted itself (never done here) and
RESOURCE_EXHAUSTED when the server refuses load (counted, retried).

Exit status 0 only if there was no INTERNAL or UNKNOWN, no lost write and no unexpected status.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.conftest import TOKENS, write_config  # noqa: E402
from vault_service.client import VaultClient  # noqa: E402
from vault_service.errors import VaultError  # noqa: E402


def _rss_kib(pid: int) -> int:
    text = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"VmRSS:\s+(\d+) kB", text)
    return int(match.group(1)) if match else 0


class Client(threading.Thread):
    def __init__(self, index: int, addr: str, until: float, seed: int) -> None:
        super().__init__(daemon=True)
        self.index, self.addr, self.until = index, addr, until
        self.rng = random.Random(seed * 1000 + index)
        self.statuses: Counter[tuple[str, str]] = Counter()
        self.generation = 0
        self.live: dict[str, str] = {}  # record id -> text, of the current subject
        self.erased = 0

    @property
    def subject(self) -> str:
        return f"soak-{self.index}-{self.generation}"

    def _do(self, op: str, fn: Any) -> Any:
        """Call ``fn`` now (the lambdas passed here never outlive the loop iteration) and count
        its status under ``op``; None if it failed."""
        try:
            result = fn()
        except VaultError as err:
            self.statuses[(op, err.status.value)] += 1
            return None
        self.statuses[(op, "OK")] += 1
        return result

    def run(self) -> None:
        with (
            VaultClient(self.addr, TOKENS["app"], timeout=30) as app,
            VaultClient(self.addr, TOKENS["clinic"], timeout=30) as clinic,
        ):
            consented = False
            while time.monotonic() < self.until:
                roll = self.rng.random()
                if roll < 0.45 or not self.live:
                    text = f"note {self.index}-{self.rng.getrandbits(32)}"
                    put = self._do(
                        "put", lambda: app.put_record(self.subject, "concern_text", {"text": text})
                    )
                    if put is not None:
                        self.live[put.record_id] = text
                elif roll < 0.85:
                    rid = self.rng.choice(list(self.live))
                    got = self._do("get", lambda: app.get_record(rid, "matching"))
                    if got is not None and got.fields.get("text") != self.live[rid]:
                        self.statuses[("get", "WRONG_CONTENT")] += 1
                elif roll < 0.97:
                    rid = self.rng.choice(list(self.live))
                    if not consented:
                        consented = (
                            self._do(
                                "grant",
                                lambda: app.grant_consent(
                                    self.subject,
                                    "clinic_proposal",
                                    {"concern_text": None},
                                    evidence_reference="soak",
                                    grantee_principal="clinic",
                                ),
                            )
                            is not None
                        )
                    share = self._do(
                        "share",
                        lambda: app.create_share(
                            self.subject,
                            "clinic",
                            "clinic_proposal",
                            [rid],
                            ["text"],
                            expires_at=time.time() + 600,
                        ),
                    )
                    if share is not None:
                        items = self._do("read_share", lambda: list(clinic.read_share(share.share_id)))
                        if items is not None and items[0].fields.get("text") != self.live[rid]:
                            self.statuses[("read_share", "WRONG_CONTENT")] += 1
                else:
                    if self._do("erase", lambda: app.erase_subject(self.subject)) is not None:
                        self.generation += 1
                        self.erased += len(self.live)
                        self.live, consented = {}, False

    def lost_writes(self) -> int:
        """Records of the current subject the server acknowledged and no longer returns."""
        with VaultClient(self.addr, TOKENS["app"], timeout=60) as app:
            listed = set()
            token = ""
            while True:
                page = app.list_records(self.subject, page_token=token)
                listed |= {r.record_id for r in page.records}
                token = page.next_page_token
                if not token:
                    break
            lost = len(set(self.live) - listed)
            for rid in list(self.live)[:20]:  # and a sample reads back as written
                if app.get_record(rid, "matching").fields.get("text") != self.live[rid]:
                    lost += 1
        return lost


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=300.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--sqlite-cache-mib",
        type=int,
        default=64,
        help="SQLite page cache per connection (the server's default: 64)",
    )
    parser.add_argument("--out", default=str(ROOT / "bench-results" / "soak.json"))
    args = parser.parse_args(argv)

    home = Path(tempfile.mkdtemp(prefix="vault-soak-"))
    config = write_config(
        home,
        logging__level='"WARNING"',
        server__purge_interval_seconds="2.0",
        storage__sqlite_cache_mib=str(args.sqlite_cache_mib),
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "vault_service.cli.main", "--config", str(config), "serve"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    match = re.search(r"listening on (\S+)", proc.stdout.readline())
    if match is None:
        proc.kill()
        print("soak: the server did not start", file=sys.stderr)
        return 2
    addr = match.group(1)
    started = time.monotonic()
    until = started + args.seconds
    clients = [Client(i, addr, until, args.seed) for i in range(args.clients)]
    for c in clients:
        c.start()
    rss: list[tuple[float, int]] = []
    while any(c.is_alive() for c in clients):
        rss.append((time.monotonic() - started, _rss_kib(proc.pid)))
        time.sleep(1.0)
    for c in clients:
        c.join()
    elapsed = time.monotonic() - started
    lost = sum(c.lost_writes() for c in clients)
    proc.send_signal(signal.SIGTERM)
    exit_code = proc.wait(60)

    statuses: Counter[tuple[str, str]] = Counter()
    for c in clients:
        statuses.update(c.statuses)
    ops = sum(statuses.values())
    bad = sum(n for (_, status), n in statuses.items() if status in ("INTERNAL", "UNKNOWN"))
    unexpected = {
        f"{op} {status}": n
        for (op, status), n in statuses.items()
        if status not in ("OK", "RESOURCE_EXHAUSTED")
    }
    # memory: the first third is warm-up (caches fill; the first audit checkpoint verifies the
    # whole chain written so far); flat means the last third's median is the middle third's
    samples = [kib for t, kib in rss if kib]
    third = max(len(samples) // 3, 1)
    early = statistics.median(samples[third : 2 * third] or samples)
    late = statistics.median(samples[-third:])
    result = {
        "clients": args.clients,
        "sqlite_cache_mib_per_connection": args.sqlite_cache_mib,
        "seconds": round(elapsed, 1),
        "operations": ops,
        "ops_per_second": round(ops / elapsed, 1),
        "statuses": {f"{op} {status}": n for (op, status), n in sorted(statuses.items())},
        "internal_or_unknown": bad,
        "unexpected": unexpected,
        "lost_writes": lost,
        "records_written_and_kept": sum(len(c.live) for c in clients),
        "records_erased": sum(c.erased for c in clients),
        "rss_mib": {
            "middle_third_median": round(early / 1024, 1),
            "last_third_median": round(late / 1024, 1),
            "max": round(max(samples) / 1024, 1),
            "growth_ratio": round(late / early, 3),
            # every 10 s: where it grows and where it levels off
            "timeline": [round(kib / 1024, 1) for t, kib in rss if kib and int(t) % 10 == 0],
        },
        "server_exit_code": exit_code,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    ok = bad == 0 and lost == 0 and not unexpected and exit_code == 0
    print(f"soak: {'PASS' if ok else 'FAIL'}  ({args.out})")
    return 0 if ok else 1


if __name__ == "__main__":
    os.umask(0o077)
    sys.exit(main())
