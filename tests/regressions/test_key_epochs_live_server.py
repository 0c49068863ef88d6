"""Issue 17, defect 2: a key epoch run by hand (separate `vaultctl keys` processes) while
`vaultctl serve` runs; "same on every provider": here on the local provider and on AWS KMS
(moto's server).

Decision D2 (docs/decisions/issue-17.md): the running server sees key-state changes made by another
process, never wraps a key under a retired, marked or destroyed root version, and `keys destroy`
refuses while anything is still wrapped under the version at the moment it destroys. Scenario:
`keys rotate`, `keys rewrap`, `keys retire 1`, `keys destroy 1 --mark`, `keys destroy 1`; a subject
stored afterwards reads back every time, also after a restart, and puts keep working.

On KMS `keys destroy` schedules the deletion of the epoch's KMS key: version 1 ends
PendingDeletion (``pending_destruction``), and every use of it is refused by KMS.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import TOKENS, write_config
from tests.support.moto_server import CREDENTIALS, KmsFaultProxy, MotoServer
from tests.support.serve import start_serving, stop_serving, vaultctl
from vault_service.client import VaultClient

TEXT = {"text": "second rhinoplasty consultation", "budget": "3000000"}
#: the epoch, step by step, each a separate `vaultctl keys` process
EPOCH = {
    "rotate": ("keys", "rotate"),
    "rewrap": ("keys", "rewrap"),
    "retire": ("keys", "retire", "1"),
    "mark": ("keys", "destroy", "1", "--mark"),
    "destroy": ("keys", "destroy", "1"),
}
#: what the provider reports for version 1 once `keys destroy 1` is done
DESTROYED_STATE = {"local": "destroyed", "aws-kms": "pending_destruction"}


@dataclass(frozen=True)
class Home:
    """A vault home: its directory, the provider it is configured with, and the environment every
    process of it runs with."""

    path: Path
    provider: str
    env: dict[str, str]

    @property
    def config(self) -> Path:
        return self.path / "vault.toml"


@pytest.fixture(scope="module")
def moto() -> Iterator[MotoServer]:
    server = MotoServer().start()
    yield server
    server.stop()


@pytest.fixture(params=["local", "aws-kms"])
def home(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Home]:
    """A vault home on the local provider, or on AWS KMS: an alias of its own in moto's server,
    reached through a proxy that refuses the use of a pending-deletion key as KMS does (moto does
    not), epoch 1 created by `vaultctl keys init`."""
    if request.param == "local":
        write_config(tmp_path)
        yield Home(tmp_path, "local", {})
        return
    moto: MotoServer = request.getfixturevalue("moto")
    kms = KmsFaultProxy(moto.port, key_states=True)
    try:
        write_config(
            tmp_path,
            keys__provider='"aws-kms"',
            keys__kms_alias=f'"alias/vs-{secrets.token_hex(4)}"',
            keys__kms_endpoint_url=f'"{kms.url}"',
            keys__provider_max_attempts="2",
            keys__provider_timeout_seconds="2.0",
        )
        on_kms = Home(tmp_path, "aws-kms", dict(CREDENTIALS))
        init = vaultctl(on_kms.path, "--json", "keys", "init", env=on_kms.env)
        assert init.returncode == 0, init.stdout + init.stderr
        yield on_kms
    finally:
        kms.stop()


def _put(address: str, subject: str) -> str:
    with VaultClient(address, TOKENS["app"], timeout=10) as app:
        return app.put_record(subject, "concern_text", TEXT).record_id


def _read_back(address: str, record_ids: list[str], times: int) -> None:
    with VaultClient(address, TOKENS["app"], timeout=10) as app:
        for _ in range(times):
            for rid in record_ids:
                assert app.get_record(rid, "matching").fields == TEXT


@pytest.mark.parametrize("stored_after", ["retire", "mark", "destroy"])
def test_a_key_epoch_run_by_hand_while_the_server_runs(home: Home, stored_after: str) -> None:
    """Defect 2: with `vaultctl serve` running, a key epoch run by hand as separate processes
    succeeds, and a subject stored during it (after `retire 1`, after `destroy 1 --mark`) or after
    it reads back every time, also after a restart, and new subjects can still be stored: the
    server never wraps a key under the retired, marked or destroyed version 1."""
    proc, address = start_serving(home.config, home.env)
    try:
        before = _put(address, "member-1")
        after = ""
        for name, step in EPOCH.items():
            result = vaultctl(home.path, "--json", *step, env=home.env)
            assert result.returncode == 0, (step, result.stdout, result.stderr)
            if name == stored_after:
                after = _put(address, "member-2")
        assert after
        stored = [after, _put(address, "member-3"), before]
        _read_back(address, stored, 3)
    finally:
        assert stop_serving(proc) == 0
    proc, address = start_serving(home.config, home.env)
    try:
        _read_back(address, [*stored, _put(address, "member-4")], 2)
    finally:
        stop_serving(proc)
    status = vaultctl(home.path, "--json", "keys", "status", env=home.env)
    assert status.returncode == 0, status.stdout + status.stderr
    by_version = {v["version"]: v for v in json.loads(status.stdout)["versions"]}
    assert (by_version["1"]["subject_keys"], by_version["1"]["service_keys"]) == (0, 0)
    assert by_version["1"]["provider_state"] == DESTROYED_STATE[home.provider]
