"""Fail closed when the key provider is down: writes that need it and uncached reads get
UNAVAILABLE with nothing written; health turns NOT_SERVING after the configured period and comes
back by itself. Over a real gRPC server, with a real OpenBao server sealed by its operator API and
with moto's KMS server killed."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.conftest import TOKENS, write_config
from tests.support.moto_server import CREDENTIALS, KmsFaultProxy, MotoServer
from tests.support.openbao import OpenBaoServer
from vault_service.client import VaultClient
from vault_service.config import load_config
from vault_service.errors import Unavailable
from vault_service.rpc.server import RunningServer, start_server


def _health(port: int) -> int:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        return int(stub.Check(health_pb2.HealthCheckRequest(service="vault.v1.Vault"), timeout=5).status)


def _wait_for(predicate: Callable[[], bool], seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def _rows(home: Path, table: str) -> int:
    with sqlite3.connect(home / "data" / "vault.db") as conn:
        return int(conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])


def _exercise_outage(
    home: Path, server: RunningServer, go_down: Callable[[], None], come_back: Callable[[], None]
) -> None:
    serving, not_serving = (
        health_pb2.HealthCheckResponse.SERVING,
        health_pb2.HealthCheckResponse.NOT_SERVING,
    )
    with VaultClient(f"127.0.0.1:{server.port}", TOKENS["app"], timeout=30) as app:
        warm = app.put_record("member-warm", "concern_text", {"text": "cached"}).record_id
        cold = app.put_record("member-cold", "concern_text", {"text": "not cached"}).record_id
        app.get_record(warm, "matching")
        server.service.cache.forget_subject(server.service.subject_ref("member-cold"))
        records, subjects = _rows(home, "records"), _rows(home, "subjects")
        go_down()
        with pytest.raises(Unavailable):
            app.put_record("member-new", "concern_text", {"text": "new subject"})
        with pytest.raises(Unavailable):
            app.get_record(cold, "matching")
        assert (_rows(home, "records"), _rows(home, "subjects")) == (records, subjects)
        # a key already unwrapped and cached still serves its subject (documented)
        assert app.get_record(warm, "matching").fields["text"] == "cached"
        assert _wait_for(lambda: _health(server.port) == not_serving)
        come_back()
        assert _wait_for(lambda: _health(server.port) == serving)
        assert app.get_record(cold, "matching").fields["text"] == "not cached"
        app.put_record("member-new", "concern_text", {"text": "new subject"})


def test_transit_sealed(tmp_path: Path) -> None:
    bao = OpenBaoServer().start()
    try:
        server = bao.serve_vault(
            tmp_path, keys__provider_max_attempts="2", keys__unhealthy_after_seconds="0.3"
        )
        try:
            _exercise_outage(tmp_path, server, bao.seal, bao.unseal)
        finally:
            server.stop(0)
    finally:
        bao.stop()


def test_kms_unreachable(tmp_path: Path) -> None:
    moto = MotoServer().start()
    proxy = {"p": KmsFaultProxy(moto.port)}
    port = proxy["p"].port
    try:
        write_config(
            tmp_path,
            keys__provider='"aws-kms"',
            keys__kms_endpoint_url=f'"{proxy["p"].url}"',
            keys__provider_max_attempts="2",
            keys__provider_timeout_seconds="1.0",
            keys__unhealthy_after_seconds="0.3",
        )
        config = load_config(tmp_path / "vault.toml", CREDENTIALS)
        from vault_service.key_providers.factory import build_provider

        build_provider(config, CREDENTIALS).initialize()  # type: ignore[attr-defined]
        server = start_server(config, CREDENTIALS)

        def down() -> None:  # connection refused from now on
            proxy["p"].stop()

        def up() -> None:
            proxy["p"] = KmsFaultProxy(moto.port, port=port)

        try:
            _exercise_outage(tmp_path, server, down, up)
        finally:
            server.stop(0)
    finally:
        proxy["p"].stop()
        moto.stop()
