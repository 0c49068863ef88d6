"""``vaultctl report``: the privacy officer's page, from a populated vault, checked as data and
rendered in a real headless Chromium (Debian's package; .ci/run and `make test` install it),
which must show it without errors and leave a screenshot (test-artifacts/compliance-report.png)."""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
import time
import zlib
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, TOKENS, write_config
from tests.support.serve import start_serving, stop_serving, vaultctl
from vault_service.client import VaultClient

ARTIFACTS = ROOT / "test-artifacts"
EXTRA_CATEGORIES = """
[categories.intake_scan]
description = "Scans analysed and deleted within days."
fields = ["caption"]
retention = { after = "creation", days = 3 }

[categories.scratch_note]
description = "Notes kept for a second (overdue at once)."
fields = ["note"]
retention = { after = "creation", hours = 0.0002 }
"""


@pytest.fixture(scope="module")
def populated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """A vault with records of several categories, an erasure, grants and shares; the server is
    stopped before the report is made (the sweeper must not shred the overdue records first)."""
    home = tmp_path_factory.mktemp("report")
    config = write_config(home, server__purge_interval_seconds="3600.0")
    with (home / "policy.toml").open("a") as f:
        f.write(EXTRA_CATEGORIES)
    proc, addr = start_serving(config)
    subjects: list[str] = []
    try:
        with VaultClient(addr, TOKENS["app"]) as app:
            for i in range(6):
                subject = f"member-report-{i}"
                subjects.append(subject)
                rid = app.put_record(subject, "concern_text", {"text": f"secret text {i}"}).record_id
                app.put_record(subject, "intake_scan", {"caption": f"scan {i}"})
                if i < 2:
                    app.put_record(subject, "scratch_note", {"note": f"note {i}"})
                if i == 0:  # one record deleted: verified like an erasure
                    gone = app.put_record(subject, "scratch_note", {"note": "deleted"}).record_id
                    app.delete_record(gone)
                if i < 3:
                    app.put_record(subject, "payment_record", {"amount": "100", "currency": "KRW"})
                    app.grant_consent(
                        subject,
                        "clinic_proposal",
                        {"concern_text": None},
                        evidence_reference=f"ev-{i}",
                        grantee_principal="clinic",
                    )
                    app.create_share(
                        subject,
                        "clinic",
                        "clinic_proposal",
                        [rid],
                        ["text"],
                        expires_at=time.time() + 86400,
                    )
            assert app.erase_subject(subjects[5])
    finally:
        assert stop_serving(proc) == 0
    time.sleep(1.0)  # the scratch notes are due now
    html_path, json_path = home / "report.html", home / "report.json"
    r = vaultctl(home, "report", "--html", str(html_path), "--json-out", str(json_path))
    assert r.returncode == 0, r.stderr
    assert "audit chain verified" in r.stdout
    return home, {"html": html_path, "data": json.loads(json_path.read_text()), "subjects": subjects}


def test_report_data_counts_what_the_vault_holds(populated: tuple[Path, dict[str, Any]]) -> None:
    _, out = populated
    data = out["data"]
    cats = {c["name"]: c for c in data["categories"]}
    # the erased subject's rows stay until the purge (the server was stopped before it ran)
    assert cats["concern_text"]["records"] == 6 and cats["intake_scan"]["records"] == 6
    assert cats["payment_record"]["records"] == 3 and cats["member_profile"]["records"] == 0
    assert cats["payment_record"]["retention"] == (
        "shredded 1826 days after creation (kept after erasure: legal retention)"
    )
    assert "match_completed" in cats["concern_text"]["retention"]
    due = data["deletions_due"]
    assert due["overdue"] == 2  # the scratch notes
    by_day = {d["date"]: d["count"] for d in due["by_day"]}
    assert len(by_day) == 30 and due["total"] == 2 + 5  # 5 live scans (the erased subject's: not due)
    days_out = sorted(d for d, n in by_day.items() if n)
    assert [by_day[d] for d in days_out] == [2, 5] and days_out[0] == due["by_day"][0]["date"]
    erasures = data["erasures"]
    assert erasures["total"] == 1
    assert erasures["items"][0]["result"].startswith("PENDING")  # rows not yet purged, caches
    assert data["record_deletions"] == {
        "total": 1,
        "by_result": {"PENDING": 1},  # until the backups from before it expire
        "by_cause": [{"cause": "delete", "result": "PENDING", "count": 1}],
    }
    assert data["grants_by_purpose"] == {"clinic_proposal": 3}
    assert data["shares"] == [{"purpose": "clinic_proposal", "recipient": "clinic", "count": 3}]
    assert data["audit_chain"]["ok"] is True and data["audit_chain"]["entries_checked"] > 20
    assert data["keys"]["provider"] == "local"
    assert data["keys"]["versions"][0]["subject_keys"] == 5  # six subjects, one erased


def test_report_names_no_one(populated: tuple[Path, dict[str, Any]]) -> None:
    _, out = populated
    text = out["html"].read_text() + json.dumps(out["data"])
    for subject in out["subjects"]:
        assert subject not in text
    assert "secret text" not in text and "ev-1" not in text


def test_json_on_stdout_and_usage_errors(populated: tuple[Path, dict[str, Any]]) -> None:
    home, _ = populated
    r = vaultctl(home, "report", "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["format"] == "vault-service/compliance-report/v1"
    r = vaultctl(home, "report")
    assert r.returncode == 2 and "--html" in r.stderr


def _chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.fail("Debian's chromium is required: `make test` installs it (tools/system_deps.sh)")
    return path


def _png_size_and_colours(png: bytes) -> tuple[int, int, int]:
    """Width, height and the number of distinct byte values of the decoded image data."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", png[16:24])
    pos, idat = 8, b""
    while pos < len(png):
        (length,) = struct.unpack(">I", png[pos : pos + 4])
        kind = png[pos + 4 : pos + 8]
        if kind == b"IDAT":
            idat += png[pos + 8 : pos + 8 + length]
        pos += 12 + length
    return width, height, len(set(zlib.decompress(idat)))


def test_renders_in_headless_chromium_with_a_screenshot(
    populated: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    _, out = populated
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--enable-logging=stderr",
        "--v=0",
        f"--user-data-dir={tmp_path / 'profile'}",
    ]
    url = out["html"].resolve().as_uri()
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "compliance-report.png"
    shot.unlink(missing_ok=True)
    r = subprocess.run(
        [_chromium(), *flags, "--window-size=1280,2600", f"--screenshot={shot}", url],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert shot.exists(), r.stderr[-2000:]
    width, height, colours = _png_size_and_colours(shot.read_bytes())
    assert (width, height) == (1280, 2600) and colours > 20  # drawn, not blank
    console = [line for line in r.stderr.splitlines() if "CONSOLE" in line]
    assert console == []  # no error, no CSP violation, no failed load
    dom = subprocess.run(
        [_chromium(), *flags, "--dump-dom", url], capture_output=True, text=True, timeout=120
    )
    assert dom.returncode == 0
    page = dom.stdout
    for section in ("records", "deletions", "erasures", "record-deletions", "access", "audit", "keys"):
        assert f'id="{section}"' in page
    assert page.count('class="bar"') == 6 + 30  # one bar per category, one per day
    assert "Deletions due per day" in page and "Records per category" in page


def test_a_running_vault_with_no_checkpoint_yet_reports_a_verified_chain(tmp_path: Path) -> None:
    """The server signs its first checkpoint after an interval; the report signs one itself
    (verifying the chain first) instead of reporting 'no signed checkpoint' as a failure."""
    config = write_config(tmp_path)
    proc, addr = start_serving(config)
    try:
        with VaultClient(addr, TOKENS["app"]) as app:
            app.put_record("member-1", "concern_text", {"text": "t"})
        r = vaultctl(tmp_path, "report", "--json")
    finally:
        assert stop_serving(proc) == 0
    assert r.returncode == 0, r.stdout[-500:]
    assert json.loads(r.stdout)["audit_chain"]["ok"] is True
