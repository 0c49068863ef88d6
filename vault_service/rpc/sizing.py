"""How many server processes and RPC threads a ``vaultctl serve`` runs when the config leaves it
to the server (``server.processes = 0``, ``server.workers = 0``: the defaults).

Measured on 2 cores (docs/profile.md, ``make bench BENCH=benchmarks.bench_server_modes``):

- **Threads.** grpcio's synchronous server hands each call between its threads under the GIL,
  and the hand-offs cost more the more threads there are: on SQLite a Get costs about 1.0 ms
  of server CPU with 1 thread, 1.25 ms with 2 and 1.45 ms with 4. A call on SQLite and the local
  keyring never waits on the network, so more threads buy nothing; one thread would leave no
  room for a streamed upload, download or followed audit tail beside the unary calls, so the
  default is 2. On PostgreSQL a call waits on round trips with the GIL released, and threads are
  how those waits overlap: 8 (under ``storage.postgres_pool_max``, 10 by default).
- **The record calls' own thread.** The calls an application makes most (:data:`RECORD_CALLS`)
  are handed to a pool of their own (grpcio's per-method ``experimental_thread_pool``), so that
  they run with the fewest hand-offs while streams, the other calls and health checks keep the
  ``workers`` pool. On SQLite with the local keyring that pool is 1 thread (a Get costs 1.0 ms of
  CPU there, against 1.25 ms with 2 threads), a slow call elsewhere delaying none of them; with
  a network key provider or PostgreSQL the record calls wait on round trips, and share the
  ``workers`` pool instead (``server.record_threads`` sets a pool of that size anywhere, or
  none with 0).
- **Processes.** One Python process runs about one core's worth of calls, so the default is
  one process per CPU this process may run on (its affinity, not the machine's count: a
  container's CPU set is honoured), at most :data:`MAX_PROCESSES`, or :data:`MAX_SQLITE_PROCESSES`
  on SQLite. SQLite has one writer at a time and every call writes (reads write their audit
  entry): its processes queue for it on a lock file (vault_service/storage/sqlite.py), which
  made 2 processes 1.2-1.3x one on 2 cores, where they had been 0.96-1.05x while they waited in
  SQLite's busy handler (docs/profile.md). A write transaction holds the lock for a small part
  of a call, but more processes than a few only lengthen its queue: the SQLite cap is lower.
"""

from __future__ import annotations

import os

from vault_service.config import Config

#: threads per process when ``server.workers`` is 0, by storage backend
AUTO_THREADS = {"sqlite": 2, "postgres": 8}
#: most processes ``server.processes = 0`` starts
MAX_PROCESSES = 8
#: ... on SQLite (one writer at a time: see the module docstring)
MAX_SQLITE_PROCESSES = 4
#: the Vault RPCs served by the record calls' pool (see the module docstring): short, unary, and
#: most of an application's traffic
RECORD_CALLS = frozenset(
    {
        "PutRecord",
        "GetRecord",
        "UpdateRecord",
        "DeleteRecord",
        "ListRecords",
        "FindRecords",
        "BatchPutRecords",
        "BatchGetRecords",
    }
)


def usable_cpus() -> int:
    """The CPUs this process may run on (at least 1)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)


def threads_per_process(config: Config) -> int:
    """``server.workers``, or when 0 the backend's default (see the module docstring)."""
    return config.server.workers or AUTO_THREADS[config.storage.backend]


def record_threads(config: Config) -> int:
    """``server.record_threads`` (0: no pool of their own), or when -1: 1 on SQLite with the
    local keyring (calls that never wait on the network), else 0 (they share ``workers``')."""
    if config.server.record_threads >= 0:
        return config.server.record_threads
    return 1 if (config.storage.backend, config.keys.provider) == ("sqlite", "local") else 0


def process_count(config: Config, requested: int = 0) -> int:
    """``requested`` (``serve --workers N``), else ``server.processes``, else when both are 0:
    one per usable CPU, at most :data:`MAX_PROCESSES` (:data:`MAX_SQLITE_PROCESSES` on SQLite)."""
    if requested or config.server.processes:
        return requested or config.server.processes
    cap = MAX_SQLITE_PROCESSES if config.storage.backend == "sqlite" else MAX_PROCESSES
    return min(usable_cpus(), cap)
