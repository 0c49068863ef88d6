"""Shared fixtures: the in-project test vectors, a private PostgreSQL cluster, configured vault
homes and real gRPC servers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent


#: the external known-answer vectors, kept in the project (tests/vectors/wycheproof/MANIFEST.md)
VECTORS = ROOT / "tests" / "vectors" / "wycheproof"


@pytest.fixture(scope="session")
def wycheproof() -> Any:
    base = VECTORS

    def load(name: str) -> dict[str, Any]:
        result: dict[str, Any] = json.loads((base / name).read_text())
        return result

    return load


# --- a private PostgreSQL cluster (started once per run, on first use) ------------------------------


@pytest.fixture(scope="session")
def pg_cluster() -> Any:
    from tests.support.postgres import PostgresCluster

    cluster = PostgresCluster().start()
    yield cluster
    cluster.stop()


@pytest.fixture
def pg_dsn(pg_cluster: Any) -> Any:
    """A fresh, empty database of the test cluster; dropped afterwards."""
    dsn = pg_cluster.new_database()
    yield dsn
    pg_cluster.drop_database(dsn)


# --- an S3-compatible server (moto, one request at a time: conditional writes atomic) -------------


@pytest.fixture(scope="session")
def s3_server() -> Any:
    from tests.support.moto_server import MotoServer

    server = MotoServer(serial=True).start()
    yield server
    server.stop()


@pytest.fixture
def s3_bucket(s3_server: Any) -> Any:
    """A new, empty bucket on the test S3 server (a :class:`Bucket` with no prefix)."""
    from tests.support.moto_server import new_bucket

    return new_bucket(s3_server)


# --- a configured vault in a temp directory, and a real gRPC server on a free port -----------------

TOKENS = {
    "app": "app-token-0123456789",
    "clinic": "clinic-token-0123456789",
    "operator": "operator-token-0123456789",
}


def test_policy_text() -> str:
    """The example clinic-matching policy plus principals with known tokens."""
    import hashlib

    base = (ROOT / "policies" / "clinic-matching.toml").read_text()
    roles = {"app": "application", "clinic": "clinic", "operator": "operator"}
    extra = "".join(
        f'\n[principals.{name}]\nrole = "{roles[name]}"\n'
        f'token_sha256 = "{hashlib.sha256(tok.encode()).hexdigest()}"\n'
        for name, tok in TOKENS.items()
    )
    return base + extra + TEST_DORMANCY


#: the tests' dormancy rule (the shipped clinic-matching policy has none: its seed promises
#: none): the former statutory periods, with separated storage
TEST_DORMANCY = """
[dormancy]
after_days = 365
notice_days = 30
destroy_after_days = 1460
"""

test_policy_text.__test__ = False  # type: ignore[attr-defined]


def write_config(home: Path, **overrides: str) -> Path:
    """A config whose every path is inside ``home``; returns its path. Creates the keyring."""
    from vault_service.key_providers import create_keyring

    (home / "policy.toml").write_text(test_policy_text())
    sections: dict[str, dict[str, str]] = {
        "server": {
            "listen": '"127.0.0.1:0"',
            "purge_interval_seconds": "3600.0",
            "drain_seconds": "0.0",
            # the suite's servers are one process with the threads they always had (tests
            # count on one process: signals, logs, a crash); the defaults (0: chosen by the
            # server) have their own tests (tests/unit/test_sizing.py, tests/e2e/test_cli.py)
            "workers": "4",
            "processes": "1",
        },
        "storage": {"sqlite_path": '"data/vault.db"', "blob_dir": '"data/blobs"'},
        "keys": {"keyring_path": '"keys/keyring.json"'},
        "logging": {"level": '"DEBUG"', "file": '"logs/vault.log"'},
    }
    for key, value in overrides.items():
        section, _, name = key.partition("__")
        sections.setdefault(section, {})[name] = value
    text = 'policy = "policy.toml"\n'
    for section, values in sections.items():
        text += f"[{section}]\n" + "".join(f"{k} = {v}\n" for k, v in values.items())
    path = home / "vault.toml"
    path.write_text(text)
    if not (home / "keys" / "keyring.json").exists():
        create_keyring(home / "keys" / "keyring.json", None, 1_800_000_000.0)
    return path


@pytest.fixture
def vault_home(tmp_path: Path, request: pytest.FixtureRequest) -> Path:
    """A configured vault home. Modules run it on PostgreSQL too with
    ``pytestmark = pytest.mark.parametrize("vault_home", BACKENDS, indirect=True)``."""
    backend = getattr(request, "param", "sqlite")
    if backend == "postgres":
        dsn = request.getfixturevalue("pg_dsn")
        write_config(tmp_path, storage__backend='"postgres"', storage__postgres_dsn=f'"{dsn}"')
    else:
        write_config(tmp_path)
    return tmp_path


#: the record-store backends a backend-parametrized test runs on
BACKENDS = ["sqlite", "postgres"]


@pytest.fixture(params=BACKENDS)
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    """An empty database of each backend in turn (tests/support/db.py: TestDatabase)."""
    from tests.support.db import TestDatabase

    dsn = request.getfixturevalue("pg_dsn") if request.param == "postgres" else ""
    db = TestDatabase(request.param, tmp_path / "db" / "vault.db", dsn)
    yield db
    db.close()


@pytest.fixture
def running(vault_home: Path) -> Any:
    import logging

    from vault_service import logs
    from vault_service.config import load_config
    from vault_service.rpc.server import start_server

    config = load_config(vault_home / "vault.toml", {})
    handler = logs.handler_for(vault_home / "logs" / "vault.log", "json")
    root = logging.getLogger()
    root.addHandler(handler)
    old_level = root.level
    root.setLevel(logging.DEBUG)
    server = start_server(config, {})
    yield server
    server.stop(0)
    root.removeHandler(handler)
    root.setLevel(old_level)
    handler.close()


def _client(server: Any, who: str) -> Any:
    from vault_service.client import VaultClient

    return VaultClient(f"127.0.0.1:{server.port}", TOKENS[who], timeout=10)


@pytest.fixture
def app(running: Any) -> Any:
    with _client(running, "app") as c:
        yield c


@pytest.fixture
def clinic(running: Any) -> Any:
    with _client(running, "clinic") as c:
        yield c


@pytest.fixture
def operator(running: Any) -> Any:
    with _client(running, "operator") as c:
        yield c
