"""Issue 18, the witness in an S3-compatible bucket (moto's server, real HTTP): the restores of
tests/regressions/test_witnessed_logs.py caught and repaired as with a witness directory, and an
unreachable endpoint at start-up fails closed.

- the data directory and the (local) ledger restored together from a backup: the ledger is
  repaired from the S3 witness's copy before the replay, so the erased subject stays erased;
- the witness's endpoint down at start-up: plaintext withheld (cause ``witness``), NOT_SERVING;
- the destruction ledger itself in a bucket too (``ledger_path = "s3://..."``): an erasure is
  ledgered there, witnessed, and replayed after a restore of the data directory.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import write_config
from tests.regressions.conftest import Vault
from tests.regressions.test_witnessed_logs import (
    TEXT,
    _health,
    _withheld,
    _witness_state,
    data_and_ledger_restored_together_stay_erased,
)
from tests.support.moto_server import CREDENTIALS, free_port
from vault_service.clock import FixedClock
from vault_service.errors import NotFound


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The credentials the test server takes, in the environment (the AWS chain reads it, and
    vaultctl subprocesses inherit it)."""
    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)


def _start(
    home: Path, policy_text: str, clock: FixedClock, endpoint: str, bucket: str, **more: str
) -> Vault:
    write_config(
        home,
        witness__directory=f'"s3://{bucket}/witness/"',
        witness__s3_endpoint_url=f'"{endpoint}"',
        witness__key_file='"witness-keys/witness.key"',  # not in the bucket, not in data/
        witness__timeout_seconds="2.0",
        **more,
    )
    (home / "policy.toml").write_text(policy_text)
    vault = Vault(home, clock)
    vault.start()
    return vault


@pytest.fixture
def s3_vault(
    aws_env: None, tmp_path: Path, policy_text: str, clock: FixedClock, s3_bucket: Any
) -> Iterator[Vault]:
    vault = _start(tmp_path, policy_text, clock, s3_bucket.client.meta.endpoint_url, s3_bucket.bucket)
    yield vault
    vault.close()


def test_data_directory_and_ledger_restored_together_are_repaired_from_the_s3_witness(
    s3_vault: Vault, s3_bucket: Any
) -> None:
    data_and_ledger_restored_together_stay_erased(s3_vault)
    assert any(item.key.endswith("/held") for item in s3_bucket.listing("witness/logs/"))


def test_an_unreachable_s3_witness_at_start_withholds(
    aws_env: None, tmp_path: Path, policy_text: str, clock: FixedClock
) -> None:
    vault = _start(tmp_path, policy_text, clock, f"http://127.0.0.1:{free_port()}", "nowhere")
    try:
        rid = vault.client("app").put_record("member-1", "concern_text", TEXT).record_id
        _withheld(vault, rid)
        assert vault.running.service.integrity.causes().keys() == {"witness"}
        assert _health(vault) == "NOT_SERVING"
    finally:
        vault.close()


def test_the_ledger_in_a_bucket_is_witnessed_and_replayed(
    aws_env: None, tmp_path: Path, policy_text: str, clock: FixedClock, s3_bucket: Any
) -> None:
    endpoint = s3_bucket.client.meta.endpoint_url
    vault = _start(
        tmp_path,
        policy_text,
        clock,
        endpoint,
        s3_bucket.bucket,
        lifecycle__ledger_path=f'"s3://{s3_bucket.bucket}/ledger/"',
        lifecycle__ledger_s3_endpoint_url=f'"{endpoint}"',
    )
    try:
        erased = vault.client("app").put_record("member-2", "concern_text", TEXT).record_id
        backup = vault.backup()
        vault.client("app").erase_subject("member-2")
        assert any("/L" in item.key for item in s3_bucket.listing("ledger/"))
        vault.restore(backup)  # the ledger is not in the data directory: not rolled back
        with pytest.raises(NotFound):
            vault.client("app").get_record(erased, "matching")
        state = _witness_state(vault)
        assert (state["rc"], state["ledger"]) == (0, "consistent")
    finally:
        vault.close()
