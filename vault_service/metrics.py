"""Prometheus metrics of this process: what operators alert on, never what the vault holds.

Counters and histograms live in one module-level registry (:data:`REGISTRY`) and are updated where
things happen (the interceptor, the service, the sweepers, the store's audit append). Gauges
that describe stored state (records by category, key-cache hit ratio, provider calls) are read at
scrape time by a :class:`StateCollector` that the server registers in its own registry.

**Labels are bounded and never identify anyone.** Every label value comes from code or from the
policy file: an RPC method name, a status name, a policy category or purpose, a fixed reason
string. No subject id, record id, share id, principal, correlation id or field value is ever a
label (tests/observability/test_metrics.py scrapes and checks).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

REGISTRY = CollectorRegistry(auto_describe=True)

RPC_REQUESTS = Counter(
    "vault_rpc_requests",
    "Finished RPCs of the Vault service by method and gRPC status.",
    ["method", "status"],
    registry=REGISTRY,
)
RPC_LATENCY = Histogram(
    "vault_rpc_duration_seconds",
    "Wall time of Vault RPCs (streams: until the last message) by method and status.",
    ["method", "status"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
    registry=REGISTRY,
)
DENIED = Counter(
    "vault_denied",
    "Refused requests by action and audited reason (a fixed string, never an identity).",
    ["action", "reason"],
    registry=REGISTRY,
)
SHREDS = Counter(
    "vault_shreds",
    "Crypto-shreds carried out, by what was destroyed and why.",
    ["kind", "reason"],
    registry=REGISTRY,
)
SWEEPER_RUNS = Counter(
    "vault_sweeper_runs",
    "Background job runs by job and outcome (ok or failed).",
    ["job", "outcome"],
    registry=REGISTRY,
)
AUDIT_WRITE_FAILURES = Counter(
    "vault_audit_write_failures",
    "Audit entries that could not be written (the operation they audit failed with them).",
    registry=REGISTRY,
)
SHARE_READS = Counter(
    "vault_share_reads",
    "Share reads by outcome (served, or the audited reason of the refusal).",
    ["outcome"],
    registry=REGISTRY,
)
SECURITY_EVENTS = Counter(
    "vault_security_events",
    "Security events by name (see docs/operations.md for what each means and what to do).",
    ["event"],
    registry=REGISTRY,
)

INTEGRITY_HALTED = Gauge(
    "vault_integrity_halted",
    "1 while this process withholds plaintext because its logs failed an integrity check.",
    registry=REGISTRY,
)
WITNESS_LAG = Gauge(
    "vault_witness_lag_entries",
    "Entries of each log not yet covered by a checkpoint its witness cosigned.",
    ["log"],
    registry=REGISTRY,
)
SEQUENCED = Counter(
    "vault_audit_sequenced",
    "Audit entries integrated into the audit trail's Merkle tree.",
    registry=REGISTRY,
)

_backlog: dict[str, int] = {}
_backlog_lock = threading.Lock()


def set_backlog(job: str, due: int) -> None:
    """Record how many items ``job`` found due and not yet done at its latest run."""
    with _backlog_lock:
        _backlog[job] = due


class _BacklogCollector(Collector):
    def collect(self) -> Iterator[Metric]:
        g = GaugeMetricFamily(
            "vault_sweeper_backlog",
            "Items due but not yet done, as seen after the latest run of each job.",
            labels=["job"],
        )
        with _backlog_lock:
            for job, due in sorted(_backlog.items()):
                g.add_metric([job], due)
        yield g


REGISTRY.register(_BacklogCollector())


class StateCollector(Collector):
    """Gauges read at scrape time from the running service (passed in as callables, so that this
    module depends on nothing of the project). A callable that fails yields no sample for its
    metric rather than failing the scrape."""

    def __init__(
        self,
        records_by_category: Callable[[], Mapping[str, int]],
        provider_calls: Callable[[], Mapping[str, int]],
        cache_stats: Callable[[], tuple[int, int]],
        serving: Callable[[], bool],
    ) -> None:
        self._records = records_by_category
        self._provider = provider_calls
        self._cache = cache_stats
        self._serving = serving

    def collect(self) -> Iterator[Metric]:
        records = GaugeMetricFamily(
            "vault_records", "Stored records by policy category.", labels=["category"]
        )
        try:
            counts = self._records()
        except Exception:  # the database is down: no sample, the scrape still answers
            counts = {}
        for category, n in sorted(counts.items()):
            records.add_metric([category], n)
        yield records
        calls = GaugeMetricFamily(
            "vault_key_provider_calls",
            "Calls to the key provider since start, by operation (and failures).",
            labels=["operation"],
        )
        for op, n in sorted(self._provider().items()):
            calls.add_metric([op], n)
        yield calls
        hits, misses = self._cache()
        yield GaugeMetricFamily(
            "vault_key_cache_hits", "Subject-key cache hits since start.", value=hits
        )
        yield GaugeMetricFamily(
            "vault_key_cache_misses", "Subject-key cache misses since start.", value=misses
        )
        yield GaugeMetricFamily(
            "vault_key_cache_hit_ratio",
            "Hits / (hits + misses) of the subject-key cache since start (0 before any lookup).",
            value=hits / (hits + misses) if hits + misses else 0.0,
        )
        yield GaugeMetricFamily(
            "vault_serving", "1 while health is SERVING, else 0.", value=1 if self._serving() else 0
        )


class _Forward(Collector):
    """Yields what another registry holds (the process-wide counters into a server's registry)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry

    def collect(self) -> Iterator[Metric]:
        yield from self._registry.collect()


def server_registry(state: StateCollector) -> CollectorRegistry:
    """A registry for one server's endpoint: the process-wide metrics plus its state gauges."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Forward(REGISTRY))
    registry.register(state)
    return registry


class MetricsEndpoint:
    """A started ``/metrics`` HTTP endpoint (plain HTTP; it carries no PHI)."""

    def __init__(self, host: str, port: int, registry: CollectorRegistry) -> None:
        server, thread = start_http_server(port, addr=host, registry=registry)
        self._server: Any = server
        self._thread = thread
        self.port: int = server.server_port

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
