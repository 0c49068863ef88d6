"""The Prometheus endpoint of a real server: it counts what happened, by method, status, reason
and category, and no label ever carries an identity or a value."""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import TOKENS, write_config
from tests.support.db import copy_ciphertext
from vault_service.client import VaultClient
from vault_service.config import load_config
from vault_service.errors import ConfigError, DataLoss, NotFound, PermissionDenied
from vault_service.ids import new_record_id
from vault_service.rpc.server import RunningServer, start_server


def scrape(port: int) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of the endpoint: {(name, labels): value}."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        assert resp.status == 200
        text = resp.read().decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


@pytest.fixture
def metered(tmp_path: Path) -> Iterator[RunningServer]:
    write_config(
        tmp_path,
        metrics__listen='"127.0.0.1:0"',
        server__purge_interval_seconds="0.2",
        security__repeated_denials_threshold="1000",
    )
    server = start_server(load_config(tmp_path / "vault.toml", {}), {})
    yield server
    server.stop(0)


def _client(server: RunningServer, who: str) -> VaultClient:
    return VaultClient(f"127.0.0.1:{server.port}", TOKENS[who], timeout=10)


def test_rpcs_records_denials_shreds_and_sweeps_are_counted(
    metered: RunningServer, tmp_path: Path
) -> None:
    assert metered.metrics is not None
    port = metered.metrics.port
    before = scrape(port)
    subject, marker = "member-metrics-7731", "value-metrics-7731"
    with _client(metered, "app") as app:
        ids = [app.put_record(subject, "concern_text", {"text": marker}).record_id for _ in range(3)]
        pay = app.put_record(subject, "payment_record", {"amount": "10", "currency": "KRW"}).record_id
        for rid in ids:
            app.get_record(rid, "matching")
        with pytest.raises(NotFound):
            app.get_record(new_record_id(), "matching")
        with pytest.raises(PermissionDenied):  # the application may not read for this purpose
            app.get_record(ids[0], "subject_access")
        app.delete_record(ids[2])
        app.grant_consent(
            subject,
            "clinic_proposal",
            {"concern_text": None},
            evidence_reference="ev-1",
            grantee_principal="clinic",
        )
        share = app.create_share(
            subject,
            "clinic",
            "clinic_proposal",
            [ids[0]],
            ["text"],
            expires_at=metered.service.clock.now() + 3600,
        )
        with _client(metered, "clinic") as clinic:
            assert list(clinic.read_share(share.share_id))
        copy_ciphertext(tmp_path, ids[0], ids[1])  # tampering: DATA_LOSS, a security event
        with pytest.raises(DataLoss):
            app.get_record(ids[1], "matching")
        app.erase_subject("member-other")  # unknown subject: nothing to shred
        app.put_record("member-gone", "concern_text", {"text": "t"})
        assert app.erase_subject("member-gone")
    time.sleep(1.0)  # a few purge-loop rounds
    after = scrape(port)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("vault_rpc_requests_total", method="PutRecord", status="OK") == 5
    assert delta("vault_rpc_requests_total", method="GetRecord", status="OK") == 3
    assert delta("vault_rpc_requests_total", method="GetRecord", status="NOT_FOUND") == 1
    assert delta("vault_rpc_requests_total", method="GetRecord", status="PERMISSION_DENIED") == 1
    assert delta("vault_rpc_requests_total", method="GetRecord", status="DATA_LOSS") == 1
    assert delta("vault_rpc_duration_seconds_count", method="PutRecord", status="OK") == 5
    assert delta("vault_rpc_requests_total", method="ReadShare", status="OK") == 1
    assert delta("vault_denied_total", action="record.get", reason="purpose not permitted for role") == 1
    assert delta("vault_denied_total", action="record.get", reason="not found") == 1
    assert delta("vault_share_reads_total", outcome="served") == 1
    assert delta("vault_shreds_total", kind="record", reason="record.delete") == 1
    assert delta("vault_shreds_total", kind="subject_key", reason="subject.erase") == 1
    assert delta("vault_security_events_total", event="integrity_failure") == 1
    assert delta("vault_sweeper_runs_total", job="retention_sweep", outcome="ok") >= 1
    assert delta("vault_sweeper_runs_total", job="purge_erased", outcome="ok") >= 1
    assert value(after, "vault_sweeper_backlog", job="retention") == 0
    # state gauges, read at scrape time
    assert value(after, "vault_records", category="concern_text") == 2  # 3 - 1 deleted; erased purged
    assert value(after, "vault_records", category="payment_record") == 1
    assert value(after, "vault_serving") == 1
    assert value(after, "vault_key_provider_calls", operation="encrypt") >= 1
    hits, misses = value(after, "vault_key_cache_hits"), value(after, "vault_key_cache_misses")
    assert hits > 0 and misses > 0
    assert value(after, "vault_key_cache_hit_ratio") == pytest.approx(hits / (hits + misses))
    # no label value is an id, a subject, a principal or a field value
    secrets = {subject, marker, "member-gone", pay, share.share_id, *ids, *TOKENS, "ev-1"}
    labels = {v for (_, ls) in after for (_, v) in ls}
    assert not {s for s in secrets for v in labels if s in v}
    assert all(len(v) < 64 for v in labels)


def test_audit_write_failures_are_counted(metered: RunningServer) -> None:
    import sqlite3

    assert metered.metrics is not None
    store: Any = metered.service.store
    original = store._insert_pending_audits

    def disk_full(conn: Any, rows: Any) -> None:
        raise sqlite3.OperationalError("database or disk is full")

    before = scrape(metered.metrics.port)
    store._insert_pending_audits = disk_full
    try:
        with _client(metered, "app") as app, pytest.raises(Exception) as err:
            app.put_record("member-1", "concern_text", {"text": "t"})
        assert err.value.status.value == "UNAVAILABLE"  # type: ignore[attr-defined]
    finally:
        store._insert_pending_audits = original
    after = scrape(metered.metrics.port)
    assert (
        value(after, "vault_audit_write_failures_total")
        - value(before, "vault_audit_write_failures_total")
        == 1
    )
    assert (
        value(after, "vault_security_events_total", event="audit_write_failed")
        - value(before, "vault_security_events_total", event="audit_write_failed")
        == 1
    )


def test_a_taken_metrics_port_is_a_config_error(metered: RunningServer, tmp_path: Path) -> None:
    assert metered.metrics is not None
    home = tmp_path / "second"
    home.mkdir()
    write_config(home, metrics__listen=f'"127.0.0.1:{metered.metrics.port}"')
    with pytest.raises(ConfigError, match=r"metrics\.listen"):
        start_server(load_config(home / "vault.toml", {}), {})


def test_metrics_listen_is_validated(tmp_path: Path) -> None:
    write_config(tmp_path, metrics__listen='"9464"')
    with pytest.raises(ConfigError, match=r"metrics\.listen"):
        load_config(tmp_path / "vault.toml", {})


def _two_free_ports() -> int:
    """A port p such that p and p + 1 are free right now."""
    import socket

    for _ in range(50):
        with socket.socket() as a:
            a.bind(("127.0.0.1", 0))
            port = a.getsockname()[1]
            with socket.socket() as b:
                try:
                    b.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
        return int(port)
    raise AssertionError("no two consecutive free ports")


def test_each_worker_process_serves_its_own_metrics_port(tmp_path: Path) -> None:
    import re
    import signal
    import subprocess
    import sys

    port = _two_free_ports()
    config = write_config(tmp_path, metrics__listen=f'"127.0.0.1:{port}"')
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "vault_service.cli.main",
            "--config",
            str(config),
            "serve",
            "--workers",
            "2",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        m = re.search(r"listening on (127\.0\.0\.1:\d+)", proc.stdout.readline())
        assert m
        for i in range(20):  # fresh connections: the kernel spreads them over the workers
            with VaultClient(m.group(1), TOKENS["app"]) as c:
                c.put_record(f"m-{i}", "concern_text", {"text": "t"})
        puts = [
            value(scrape(p), "vault_rpc_requests_total", method="PutRecord", status="OK")
            for p in (port, port + 1)
        ]
        assert sum(puts) == 20  # each worker counts its own calls; together, all of them
        assert all(value(scrape(p), "vault_serving") == 1 for p in (port, port + 1))
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0


def test_retention_backlog_counts_what_a_failing_sweep_left(tmp_path: Path) -> None:
    from vault_service.errors import Unavailable

    write_config(tmp_path, metrics__listen='"127.0.0.1:0"', server__purge_interval_seconds="0.2")
    with (tmp_path / "policy.toml").open("a") as f:
        f.write(
            '\n[categories.intake_scan]\nfields = ["caption"]\n'
            'retention = { after = "creation", hours = 0.0001 }\n'
        )
    server = start_server(load_config(tmp_path / "vault.toml", {}), {})
    store: Any = server.service.store
    working = store.delete_record

    def broken(*args: Any, **kw: Any) -> Any:
        raise Unavailable()

    try:
        assert server.metrics is not None
        store.delete_record = broken
        with _client(server, "app") as app:
            for i in range(3):
                app.put_record(f"m-{i}", "intake_scan", {"caption": "c"})
        time.sleep(1.5)  # due after 0.36 s; several failing sweeps
        during = scrape(server.metrics.port)
        assert value(during, "vault_sweeper_backlog", job="retention") == 3
        assert value(during, "vault_sweeper_runs_total", job="retention_sweep", outcome="failed") >= 1
        store.delete_record = working
        time.sleep(1.0)
        after = scrape(server.metrics.port)
        assert value(after, "vault_sweeper_backlog", job="retention") == 0
        assert value(after, "vault_records", category="intake_scan") == 0
    finally:
        store.delete_record = working
        server.stop(0)
