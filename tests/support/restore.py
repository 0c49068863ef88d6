"""The operator's acknowledgment of a restored database, for test harnesses that restore
backups on purpose: what ``vaultctl witness acknowledge-restore`` does, on the harness's clock
(tests/audit/test_witness_restores.py runs the command itself)."""

from __future__ import annotations

from pathlib import Path

from vault_service.app import build_service
from vault_service.clock import Clock
from vault_service.config import load_config


def acknowledge_restore(home: Path, clock: Clock, reason: str = "restored on purpose") -> None:
    """Acknowledge that the vault at ``home`` (config ``home/vault.toml``) was restored."""
    assembly = build_service(load_config(home / "vault.toml", {}), {}, clock)
    try:
        assert assembly.witnessing is not None
        assembly.witnessing.acknowledge_restore(reason, clock.now())
    finally:
        assembly.close()
