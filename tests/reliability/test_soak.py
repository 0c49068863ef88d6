"""A short soak in every test run (`make soak` runs the long one): 64 concurrent clients mixing
put, get, share and erase against a server subprocess. No INTERNAL or UNKNOWN, no unexpected
status, no lost write, memory that does not grow, a clean shutdown."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT


@pytest.mark.slow
def test_short_soak(tmp_path: Path) -> None:
    out = tmp_path / "soak.json"
    r = subprocess.run(
        [
            sys.executable,
            str(ROOT / "tools" / "soak.py"),
            "--clients",
            "64",
            "--seconds",
            "12",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    result = json.loads(out.read_text())
    assert r.returncode == 0, r.stdout[-3000:]
    assert result["internal_or_unknown"] == 0 and result["unexpected"] == {}
    assert result["lost_writes"] == 0 and result["server_exit_code"] == 0
    ops = {k.split()[0] for k in result["statuses"]}
    assert ops >= {"put", "get", "share", "read_share", "erase"}  # the whole mix ran
    assert result["operations"] > 1000
    assert result["rss_mib"]["growth_ratio"] < 1.25  # short runs: a loose bound (make soak: long)
