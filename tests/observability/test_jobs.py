"""Background jobs are independent: each has its own metric label and security event, a failing
job is reported under its own name (a dormancy failure is not a key-epoch failure) and skips
nothing else, and a slow job does not delay the others."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import write_config
from vault_service import metrics, security_events
from vault_service.app import Assembly, build_service
from vault_service.config import load_config
from vault_service.errors import Unavailable
from vault_service.jobs import Job, JobRunner, run_once, server_jobs


def _sample(name: str, **labels: str) -> float:
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.fixture
def assembly(tmp_path: Path) -> Iterator[Assembly]:
    write_config(tmp_path)
    built = build_service(load_config(tmp_path / "vault.toml", {}), {})
    yield built
    built.close()


def test_every_server_job_has_its_own_name_and_event(assembly: Assembly, tmp_path: Path) -> None:
    jobs = server_jobs(assembly, load_config(tmp_path / "vault.toml", {}))
    names = [j.name for j in jobs]
    assert len(set(names)) == len(names)
    assert set(names) >= {"retention_sweep", "purge_erased", "key_epochs", "dormancy", "audit_prune"}
    raised: dict[str, str] = {}
    for job in jobs:
        before = {e: _sample("vault_security_events_total", event=e) for e in security_events.EVENTS}
        job.on_failure(Unavailable())
        (event,) = [
            e
            for e in security_events.EVENTS
            if _sample("vault_security_events_total", event=e) == before[e] + 1
        ]
        raised[job.name] = event
    assert len(set(raised.values())) == len(raised), raised  # one event per job


def test_a_failing_dormancy_run_is_reported_as_dormancy_and_skips_nothing(
    assembly: Assembly, tmp_path: Path, monkeypatch: Any
) -> None:
    jobs = {j.name: j for j in server_jobs(assembly, load_config(tmp_path / "vault.toml", {}))}

    def broken(*args: object, **kw: object) -> dict[str, int]:
        raise Unavailable()

    monkeypatch.setattr(assembly.service, "sweep_dormancy", broken)
    before = {
        "dormancy": _sample("vault_sweeper_runs_total", job="dormancy", outcome="failed"),
        "epochs_failed": _sample("vault_sweeper_runs_total", job="key_epochs", outcome="failed"),
        "epochs_ok": _sample("vault_sweeper_runs_total", job="key_epochs", outcome="ok"),
        "event": _sample("vault_security_events_total", event="dormancy_job_failed"),
        "epoch_event": _sample("vault_security_events_total", event="key_epoch_job_failed"),
    }
    assert run_once(jobs["dormancy"]) is False
    assert run_once(jobs["key_epochs"]) is True
    assert (
        _sample("vault_sweeper_runs_total", job="dormancy", outcome="failed") == before["dormancy"] + 1
    )
    assert _sample("vault_sweeper_runs_total", job="key_epochs", outcome="ok") == before["epochs_ok"] + 1
    assert (
        _sample("vault_sweeper_runs_total", job="key_epochs", outcome="failed")
        == before["epochs_failed"]
    )
    assert _sample("vault_security_events_total", event="dormancy_job_failed") == before["event"] + 1
    assert _sample("vault_security_events_total", event="key_epoch_job_failed") == before["epoch_event"]


def test_a_slow_job_does_not_delay_the_others(assembly: Assembly) -> None:
    release = threading.Event()
    ran: list[float] = []
    slow = Job("slow", 0.01, lambda: release.wait(5), lambda exc: None)
    fast = Job("fast", 0.02, lambda: ran.append(time.monotonic()), lambda exc: None)
    runner = JobRunner(assembly, [slow, fast], lease_interval=60.0)
    runner.start()
    try:
        time.sleep(0.5)
        assert len(ran) >= 5  # the fast job kept its pace while the slow one was stuck
    finally:
        release.set()
        runner.stop()
