"""Shared fixtures. Locates ../shared/vectors and exposes small helpers used across suites."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _vectors_dir() -> Path:
    candidates = [
        Path(os.environ["VAULT_VECTORS_DIR"]) if "VAULT_VECTORS_DIR" in os.environ else None,
        ROOT.parent / "shared" / "vectors" / "wycheproof",
        ROOT / "tests" / "vectors" / "wycheproof",
    ]
    for c in candidates:
        if c is not None and (c / "aes_gcm_test.json").exists():
            return c
    raise RuntimeError("Wycheproof vectors not found: set VAULT_VECTORS_DIR")


@pytest.fixture(scope="session")
def wycheproof() -> Any:
    base = _vectors_dir()

    def load(name: str) -> dict[str, Any]:
        result: dict[str, Any] = json.loads((base / name).read_text())
        return result

    return load
