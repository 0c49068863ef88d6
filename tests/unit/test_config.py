"""Config: defaults, environment overrides through an explicit mapping, precise errors."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from vault_service.config import load_config
from vault_service.errors import ConfigError


def _write(tmp_path: Path, body: str) -> Path:
    p = tmp_path / "c.toml"
    p.write_text('policy = "p.toml"\n' + body)
    return p


def test_defaults_and_relative_paths(tmp_path: Path) -> None:
    cfg = load_config(_write(tmp_path, ""), {})
    assert cfg.server.listen == "127.0.0.1:50051"
    assert cfg.server.workers == 0 and cfg.server.processes == 0  # chosen by the server
    assert cfg.policy_path == (tmp_path / "p.toml").resolve()
    assert cfg.path(cfg.storage.sqlite_path) == (tmp_path / "var" / "vault.db").resolve()
    assert cfg.path("/abs/x") == Path("/abs/x")
    assert cfg.tracing.exporter == "off"  # tracing is asked for, never on by default


def test_environment_overrides(tmp_path: Path) -> None:
    env = {
        "VAULT_SERVER_LISTEN": "127.0.0.1:7000",
        "VAULT_SERVER_WORKERS": "8",
        "VAULT_STORAGE_SQLITE_SYNCHRONOUS": "FULL",
        "VAULT_POLICY": "/etc/policy.toml",
    }
    cfg = load_config(_write(tmp_path, "[server]\nworkers = 2\n"), env)
    assert cfg.server.listen == "127.0.0.1:7000" and cfg.server.workers == 8
    assert cfg.storage.sqlite_synchronous == "FULL"
    assert cfg.policy_path == Path("/etc/policy.toml")


@pytest.mark.parametrize(
    ("body", "env", "message"),
    [
        ("[server]\nworkers = 'x'\n", {}, "c.toml: server.workers: expected a int, got str"),
        ("[server]\nlisten = 5\n", {}, "server.listen: expected a str"),
        ("[server]\nbogus = 1\n", {}, "c.toml: server.bogus: unknown key"),
        ("[nope]\n", {}, "c.toml: nope: unknown section or key"),
        (
            "[storage]\nbackend = 'mysql'\n",
            {},
            "storage.backend: 'mysql' is not one of postgres, sqlite",
        ),
        ("", {"VAULT_SERVER_WORKERS": "many"}, "VAULT_SERVER_WORKERS: expected a int"),
        ("[server]\nworkers = -1\n", {}, "must be >= 0"),
        ("[server]\nprocesses = -2\n", {}, "server.workers and processes"),
        ("[server]\nrecord_threads = -2\n", {}, "record_threads >= -1"),
        ("[server]\nmax_concurrent_rpcs = 0\n", {}, "max_concurrent_rpcs >= 1"),
        ("[storage]\nbackend = 'postgres'\n", {}, "storage.postgres_dsn is required"),
        (
            "[storage]\npostgres_pool_min = 5\npostgres_pool_max = 2\n",
            {},
            "storage.postgres_pool_max must be >= max(1, postgres_pool_min)",
        ),
        ("[server]\nlisten = 'nohost'\n", {}, "server.listen: expected host:port"),
        (
            "[keys]\nprovider = 'hsm'\n",
            {},
            "keys.provider: 'hsm' is not one of aws-kms, local, vault-transit",
        ),
        ("x = = 1", {}, "not valid TOML"),
        ("[audit]\ntail_poll_seconds = 0\n", {}, "audit.tail_poll_seconds must be > 0"),
        ("[audit]\ntail_poll_seconds = 61\n", {}, "and at most 60"),
        ("[audit]\ntail_max_follows = -1\n", {}, "audit.tail_max_follows must be >= 0"),
        # dormancy moved to the policy: the old keys are refused with where they went
        (
            "[lifecycle]\ndormant_after_days = 0\n",
            {},
            "lifecycle.dormant_after_days: dormancy is set in the policy now: [dormancy] after_days",
        ),
        (
            "[lifecycle]\ndormancy_notice_days = 30\n",
            {},
            "lifecycle.dormancy_notice_days: dormancy is set in the policy now: [dormancy] notice_days",
        ),
        (
            "[lifecycle]\ndormant_destroy_after_days = 9\n",
            {},
            "[dormancy] destroy_after_days",
        ),
        # [tracing]
        (
            "[tracing]\nexporter = 'jaeger'\n",
            {},
            "tracing.exporter: 'jaeger' is not one of console, off, otlp",
        ),
        ("[tracing]\nendpoint = 'x'\n", {}, "tracing.endpoint: unknown key"),
        (
            "",
            {"VAULT_TRACING_EXPORTER": "zipkin"},
            "VAULT_TRACING_EXPORTER: 'zipkin' is not one of console, off, otlp",
        ),
        ("[tracing]\nsample_ratio = 1.5\n", {}, "tracing.sample_ratio: must be between 0 and 1"),
        ("[tracing]\nsample_ratio = 'all'\n", {}, "tracing.sample_ratio: expected a float, got str"),
        (
            "[tracing]\notlp_endpoint = 'collector:4317'\n",
            {},
            "tracing.otlp_endpoint: expected http://host:port or https://host:port",
        ),
        (
            "[tracing]\notlp_timeout_seconds = 0\n",
            {},
            "tracing.otlp_timeout_seconds and tracing.export_interval_seconds must be > 0",
        ),
        ("[tracing]\nmax_queue_size = 0\n", {}, "tracing.max_queue_size: must be >= 1"),
        ("[tracing]\nservice_name = ''\n", {}, "tracing.service_name: must not be empty"),
    ],
)
def test_precise_errors(tmp_path: Path, body: str, env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(_write(tmp_path, body), env)


def test_missing_file_and_missing_policy(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "none.toml", {})
    p = tmp_path / "c.toml"
    p.write_text("[server]\n")
    with pytest.raises(ConfigError, match="policy: path of the policy file is required"):
        load_config(p, {})


def test_shipped_dev_config_loads() -> None:
    root = Path(__file__).resolve().parents[2]
    cfg = load_config(root / "config" / "dev.toml", {})
    assert cfg.policy_path.exists()
    assert cfg.server.dev_token_file


def test_tls_settings(tmp_path: Path) -> None:
    cfg = load_config(
        _write(tmp_path, "[tls]\ncert_file = 'c.pem'\nkey_file = 'k.pem'\n"),
        {"VAULT_TLS_REQUIRE_CLIENT_CERT": "false"},
    )
    assert cfg.tls.cert_file == "c.pem" and cfg.tls.require_client_cert is False
    with pytest.raises(ConfigError, match=r"tls\.cert_file and tls\.key_file go together"):
        load_config(_write(tmp_path, "[tls]\ncert_file = 'c.pem'\n"), {})
    with pytest.raises(ConfigError, match="client_ca_file needs"):
        load_config(_write(tmp_path, "[tls]\nclient_ca_file = 'ca.pem'\n"), {})
    with pytest.raises(ConfigError, match="require_client_cert: expected true or false"):
        load_config(_write(tmp_path, "[tls]\nrequire_client_cert = 'maybe'\n"), {})
