"""Rehearsal time (issue 20, part 7): a development vault's clock moved forward by `vaultctl dev
advance` while `vaultctl serve` runs, so that a company rehearses its policy end to end: a
clinic's share ends when its month is over, and a matching concern is shredded six months after
the match (seed 000), with real processes and no waiting. Refused beyond loopback and without
the setting; it never moves back."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import TOKENS, write_config
from tests.support.serve import start_serving, stop_serving, vaultctl
from vault_service.app import build_service
from vault_service.client import VaultClient
from vault_service.config import load_config
from vault_service.errors import ConfigError, NotFound, PermissionDenied

DAY = 86400.0


def _vault_time(home: Path) -> float:
    r = vaultctl(home, "--json", "dev", "clock")
    assert r.returncode == 0, r.stderr
    return float(json.loads(r.stdout)["now"])


def _advance(home: Path, days: float) -> dict[str, float]:
    r = vaultctl(home, "--json", "dev", "advance", "--days", str(days))
    assert r.returncode == 0, r.stderr
    return dict(json.loads(r.stdout))


def test_a_policy_rehearsed_on_a_running_server(tmp_path: Path) -> None:
    write_config(tmp_path, server__dev_clock_file='"var/dev-clock"')
    proc, address = start_serving(tmp_path / "vault.toml")
    try:
        with (
            VaultClient(address, TOKENS["app"], timeout=10) as app,
            VaultClient(address, TOKENS["clinic"], timeout=10) as clinic,
        ):
            rid = app.put_record("m-1", "concern_text", {"text": "rhinoplasty", "budget": "3"}).record_id
            app.grant_consent(
                "m-1",
                "clinic_proposal",
                {"concern_text": None},
                evidence_reference="consent-1",
                grantee_principal="clinic",
            )
            start = _vault_time(tmp_path)
            share = app.create_share(
                "m-1", "clinic", "clinic_proposal", [rid], ["text"], expires_at=start + 30 * DAY
            )
            assert [r.fields for r in clinic.read_share(share.share_id)] == [{"text": "rhinoplasty"}]
            moved = _advance(tmp_path, 31)
            assert moved["offset_seconds"] == 31 * DAY and moved["now"] >= start + 31 * DAY
            with pytest.raises(PermissionDenied):  # the month is over, on the running server
                list(clinic.read_share(share.share_id))
            app.record_event("m-1", "match_completed")
            _advance(tmp_path, 179)
            r = vaultctl(tmp_path, "--json", "retention", "sweep")
            assert r.returncode == 0 and json.loads(r.stdout)["shredded"] == [], r.stdout
            _advance(tmp_path, 1.01)
            r = vaultctl(tmp_path, "--json", "retention", "sweep")
            assert r.returncode == 0, r.stderr
            assert [s["record_id"] for s in json.loads(r.stdout)["shredded"]] == [rid]
            with pytest.raises(NotFound):
                app.get_record(rid, "matching")
    finally:
        assert stop_serving(proc) == 0


def test_time_never_goes_back_and_needs_the_setting(tmp_path: Path) -> None:
    write_config(tmp_path)
    r = vaultctl(tmp_path, "dev", "advance", "--days", "1")
    assert r.returncode == 2 and "server.dev_clock_file is not set" in r.stderr
    write_config(tmp_path, server__dev_clock_file='"var/dev-clock"')
    for bad in (["--days", "-1"], ["--seconds", "0"], ["--hours", "nan"]):
        r = vaultctl(tmp_path, "dev", "advance", *bad)
        assert r.returncode == 2 and "only moves forward" in r.stderr, r.stderr
    assert not (tmp_path / "var" / "dev-clock").exists()
    (tmp_path / "var").mkdir()
    for edited in ("-5\n", "soon\n"):  # edited by hand
        (tmp_path / "var" / "dev-clock").write_text(edited)
        r = vaultctl(tmp_path, "dev", "clock")
        assert r.returncode == 2 and "finite number of seconds >= 0" in r.stderr, r.stderr


def test_refused_beyond_loopback(tmp_path: Path) -> None:
    write_config(tmp_path, server__listen='"0.0.0.0:0"', server__dev_clock_file='"var/dev-clock"')
    r = vaultctl(tmp_path, "dev", "advance", "--days", "1")
    assert r.returncode == 2 and "only allowed on a loopback address" in r.stderr
    # the server builds its vault through the same rule (plaintext gRPC beyond loopback is refused
    # earlier still, so the vault is built here as a TLS deployment would build it)
    config = load_config(tmp_path / "vault.toml", {})
    with pytest.raises(ConfigError, match="dev_clock_file is only allowed on a loopback address"):
        build_service(config, {})
