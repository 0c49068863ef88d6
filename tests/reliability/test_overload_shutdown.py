"""Overload and shutdown of a real server.

- Overload: calls beyond ``server.max_concurrent_rpcs`` are refused at once with
  RESOURCE_EXHAUSTED (no queueing behind slow calls), and served again when slots free up.
- SIGTERM: health turns NOT_SERVING first (for ``drain_seconds`` calls are still served), then
  new calls get UNAVAILABLE while a download in flight finishes whole; the process exits 0.
"""

from __future__ import annotations

import io
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.conftest import TOKENS, write_config
from tests.support.serve import start_serving
from vault_service.api.v1 import vault_pb2 as pb
from vault_service.api.v1 import vault_pb2_grpc
from vault_service.client import VaultClient
from vault_service.config import load_config
from vault_service.ids import new_record_id
from vault_service.rpc.server import start_server

AUTH = (("authorization", f"Bearer {TOKENS['app']}"),)


def _big_record(addr: str, content: bytes) -> str:
    """A record whose content is larger than what HTTP/2 flow control lets the server send
    ahead: a download's handler stays busy until a slow reader has read nearly all of it."""
    with VaultClient(addr, TOKENS["app"]) as app:
        return app.upload_record(
            io.BytesIO(content), subject_id="m-1", category="concern_photo", fields={"caption": "c"}
        ).record_id


def test_excess_concurrency_gets_resource_exhausted_quickly(tmp_path: Path) -> None:
    write_config(
        tmp_path, server__max_concurrent_rpcs="4", server__workers="4", logging__level='"WARNING"'
    )
    server = start_server(load_config(tmp_path / "vault.toml", {}), {})
    addr = f"127.0.0.1:{server.port}"
    try:
        rid = _big_record(addr, os.urandom(48 << 20))
        # four downloads that the client does not read: each holds a slot (flow control)
        channels = [grpc.insecure_channel(addr) for _ in range(4)]
        streams = [
            vault_pb2_grpc.VaultStub(ch).DownloadContent(
                pb.DownloadContentRequest(record_id=rid, purpose="matching"), metadata=AUTH, timeout=60
            )
            for ch in channels
        ]
        for s in streams:
            next(s)  # started and holding its slot
        stub = vault_pb2_grpc.VaultStub(grpc.insecure_channel(addr))
        refused, took = 0, []
        for _ in range(20):
            started = time.perf_counter()
            try:
                stub.GetRecord(
                    pb.GetRecordRequest(record_id=rid, purpose="matching"), metadata=AUTH, timeout=10
                )
            except grpc.RpcError as err:
                assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                refused += 1
            took.append(time.perf_counter() - started)
        assert refused == 20
        assert sorted(took)[10] < 0.05  # median: refused at once, not queued
        for s in streams:
            s.cancel()
        for ch in channels:
            ch.close()
        deadline = time.monotonic() + 5
        while True:  # slots free again
            try:
                stub.GetRecord(
                    pb.GetRecordRequest(record_id=rid, purpose="matching"), metadata=AUTH, timeout=10
                )
                break
            except grpc.RpcError as err:
                assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and time.monotonic() < deadline
                time.sleep(0.05)
    finally:
        server.stop(0)


def test_record_calls_are_served_while_streams_hold_every_thread_of_the_pool(
    tmp_path: Path,
) -> None:
    """The default thread layout on SQLite (vault_service/rpc/sizing.py): two downloads that the
    client does not read hold both threads of the server's pool, and the record calls, on their
    own thread, are still served, while another unary call waits for the pool."""
    write_config(tmp_path, server__workers="0", logging__level='"WARNING"')  # the default: 2
    server = start_server(load_config(tmp_path / "vault.toml", {}), {})
    addr = f"127.0.0.1:{server.port}"
    channels = [grpc.insecure_channel(addr) for _ in range(3)]
    try:
        rid = _big_record(addr, os.urandom(48 << 20))
        streams = [
            vault_pb2_grpc.VaultStub(ch).DownloadContent(
                pb.DownloadContentRequest(record_id=rid, purpose="matching"), metadata=AUTH, timeout=60
            )
            for ch in channels[:2]
        ]
        for s in streams:
            next(s)  # started: its handler holds a pool thread (flow control)
        stub = vault_pb2_grpc.VaultStub(channels[2])
        put = stub.PutRecord(
            pb.PutRecordRequest(subject_id="m-2", category="concern_text", fields={"text": "t"}),
            metadata=AUTH,
            timeout=5,
        )
        got = stub.GetRecord(
            pb.GetRecordRequest(record_id=put.record_id, purpose="matching"), metadata=AUTH, timeout=5
        )
        assert got.fields["text"] == "t"
        batch = stub.BatchGetRecords(
            pb.BatchGetRecordsRequest(
                items=[pb.GetRecordRequest(record_id=put.record_id, purpose="matching")]
            ),
            metadata=AUTH,
            timeout=5,
        )
        assert batch.results[0].status.code == 0
        with pytest.raises(grpc.RpcError) as waited:  # not a record call: queued for the pool
            stub.ListShares(pb.ListSharesRequest(subject_id="m-2"), metadata=AUTH, timeout=1)
        assert waited.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        for s in streams:
            s.cancel()
        listed = stub.ListShares(pb.ListSharesRequest(subject_id="m-2"), metadata=AUTH, timeout=10)
        assert list(listed.shares) == []
    finally:
        for ch in channels:
            ch.close()
        server.stop(0)


def test_sigterm_drains_then_refuses_while_in_flight_calls_finish(tmp_path: Path) -> None:
    config = write_config(tmp_path, server__drain_seconds="2.0", server__grace_seconds="20.0")
    proc, addr = start_serving(config)
    content = os.urandom(48 << 20)
    rid = _big_record(addr, content)
    events: list[tuple[float, str]] = []
    lock = threading.Lock()

    def note(what: str) -> None:
        with lock:
            events.append((time.monotonic(), what))

    download: dict[str, Any] = {}

    def slow_download() -> None:  # a call in flight across the whole shutdown
        got = bytearray()
        with VaultClient(addr, TOKENS["app"]) as app:
            for piece in app.download_content(rid, "matching"):
                got += piece
                time.sleep(0.005 * len(piece) / 65536)  # about 12 MiB/s
        download["bytes"] = bytes(got)
        note("download complete")

    health_channel = grpc.insecure_channel(addr)
    watch = health_pb2_grpc.HealthStub(health_channel).Watch(health_pb2.HealthCheckRequest(service=""))

    def watch_health() -> None:
        try:
            for status in watch:
                name = health_pb2.HealthCheckResponse.ServingStatus.Name(status.status)
                note(f"health {name}")
                if name == "NOT_SERVING":  # an open Watch is a call in flight: it would hold
                    watch.cancel()  # the shutdown for the whole grace period
                    return
        except grpc.RpcError:
            note("health stream ended")

    threads = [threading.Thread(target=slow_download), threading.Thread(target=watch_health)]
    for t in threads:
        t.start()
    time.sleep(0.5)  # the download is under way
    proc.send_signal(signal.SIGTERM)
    note("SIGTERM")
    while proc.poll() is None:  # new calls, one every 50 ms, on a fresh connection each
        with grpc.insecure_channel(addr) as ch:
            try:
                vault_pb2_grpc.VaultStub(ch).GetRecord(
                    pb.GetRecordRequest(record_id=new_record_id(), purpose="matching"),
                    metadata=AUTH,
                    timeout=2,
                )
            except grpc.RpcError as err:
                note(f"new call {err.code().name}")
            try:  # and what a load balancer's probe sees meanwhile
                status = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=2)
                note(f"check {health_pb2.HealthCheckResponse.ServingStatus.Name(status.status)}")
            except grpc.RpcError:
                note("check refused")
        time.sleep(0.05)
    for t in threads:
        t.join(30)
    watch.cancel()
    health_channel.close()
    assert proc.wait(30) == 0
    assert download.get("bytes") == content  # the call in flight finished whole
    sigterm = next(t for t, e in events if e == "SIGTERM")
    not_serving = next(t for t, e in events if e == "health NOT_SERVING")
    refused = [t for t, e in events if e == "new call UNAVAILABLE"]
    answered = [t for t, e in events if e == "new call NOT_FOUND"]  # served: the record is absent
    assert not_serving >= sigterm - 0.01
    assert refused, events
    assert not_serving < min(refused)  # health first
    assert any(not_serving < t < min(refused) for t in answered)  # calls were taken while draining
    assert all(t < min(refused) for t in answered)  # and none after the refusals began
    assert {e for _, e in events if e.startswith("new call")} <= {
        "new call NOT_FOUND",
        "new call UNAVAILABLE",
    }
    checks = [e for t, e in events if e.startswith("check") and t > sigterm + 0.05]
    assert "check NOT_SERVING" in checks and "check SERVING" not in checks  # never back to SERVING
    complete = next(t for t, e in events if e == "download complete")
    assert complete > min(refused)  # it was still in flight when new calls were refused
