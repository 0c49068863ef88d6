"""OpenTelemetry tracing over a real server exporting OTLP/gRPC to a real receiver
(tests/support/otlp_sink.py): a SERVER span per RPC (unary and streaming) carrying the
correlation id the client got, continuing an authenticated caller's ``traceparent`` (never
exporting its ``tracestate``; a call that fails authentication neither joins the caller's trace
nor gets sampled by its flag); child spans for the record store, key provider and blob store; no
PHI or identifier in anything exported (the same marker exercise as the logs test); off by
default without importing OpenTelemetry; and a collector that cannot be reached neither fails
nor slows a call."""

from __future__ import annotations

import functools
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from tests.conftest import ROOT, TOKENS, write_config
from tests.observability.test_logs import _exercise, with_auditor
from tests.support.otlp_sink import OtlpSink, Received
from vault_service import tracing
from vault_service.api.v1 import vault_pb2 as pb
from vault_service.api.v1 import vault_pb2_grpc as pb_grpc
from vault_service.client import VaultClient
from vault_service.config import TracingConfig, load_config
from vault_service.errors import ConfigError, VaultError
from vault_service.ids import new_record_id
from vault_service.rpc.server import RunningServer, start_server

SERVER_KIND = 2  # opentelemetry.proto.trace.v1.Span.SPAN_KIND_SERVER
CLIENT_KIND = 3
STATUS_ERROR = 2
#: every attribute key a span of the vault may carry (tracing.py's contract); anything else is
#: a new fact in the spans and must be reviewed for PHI before it is added here
ALLOWED_KEYS = {
    "rpc.system",
    "rpc.service",
    "rpc.method",
    "rpc.grpc.status_code",
    "vault.correlation_id",
    "vault.role",
    "error.type",
    "db.system.name",
    "code.function.name",
    "vault.key_provider",
    "vault.keys",
    "vault.blob_store",
}


def _traced_config(home: Path, endpoint: str, **extra: str) -> Path:
    return write_config(
        home,
        tracing__exporter='"otlp"',
        tracing__otlp_endpoint=f'"{endpoint}"',
        tracing__export_interval_seconds="0.1",
        keys__cache_max_entries="0",  # every read unwraps its subject key: a provider span
        **extra,
    )


@pytest.fixture
def sink() -> Iterator[OtlpSink]:
    s = OtlpSink()
    yield s
    s.stop()


@pytest.fixture
def traced(tmp_path: Path, sink: OtlpSink) -> Iterator[RunningServer]:
    config = _traced_config(tmp_path, sink.endpoint)
    with_auditor(tmp_path)  # the marker exercise's BreachScope calls
    server = start_server(load_config(config, {}), {})
    yield server
    server.stop(0)


def _traceparent() -> tuple[str, str, str]:
    trace_id, span_id = secrets.token_hex(16), secrets.token_hex(8)
    return f"00-{trace_id}-{span_id}-01", trace_id, span_id


def _exported(sink: OtlpSink) -> list[Received]:
    assert tracing.flush()
    return list(sink.spans)


def _server_span(spans: list[Received], correlation_id: str) -> Received:
    mine = [s for s in spans if s.attributes.get("vault.correlation_id") == correlation_id]
    assert len(mine) == 1, f"{len(mine)} spans carry correlation id {correlation_id}"
    assert mine[0].span.kind == SERVER_KIND
    return mine[0]


def _children(spans: list[Received], parent: Received) -> list[Received]:
    return [s for s in spans if s.parent_id == parent.span_id and s.trace_id == parent.trace_id]


def _correlation_id(call: Any) -> str:
    return next(str(v) for k, v in call.trailing_metadata() if k == "x-correlation-id")


def test_a_span_per_rpc_continues_the_callers_trace_with_dependency_children(
    traced: RunningServer, sink: OtlpSink
) -> None:
    auth = ("authorization", f"Bearer {TOKENS['app']}")
    header, trace_id, caller_span = _traceparent()
    vendor_data = "ts" + secrets.token_hex(8)  # the caller's tracestate: never exported
    with grpc.insecure_channel(f"127.0.0.1:{traced.port}") as channel:
        stub = pb_grpc.VaultStub(channel)
        put, put_call = stub.PutRecord.with_call(
            pb.PutRecordRequest(subject_id="member-1", category="concern_text", fields={"text": "x"}),
            metadata=(auth, ("traceparent", header), ("tracestate", f"app={vendor_data}")),
            timeout=10,
        )
        _, get_call = stub.GetRecord.with_call(
            pb.GetRecordRequest(record_id=put.record_id, purpose="matching"),
            metadata=(auth,),  # no trace context: a trace of its own
            timeout=10,
        )
    spans = _exported(sink)

    put_span = _server_span(spans, _correlation_id(put_call))
    assert put_span.span.name == "vault.v1.Vault/PutRecord"
    assert (put_span.trace_id, put_span.parent_id) == (trace_id, caller_span)
    assert put_span.span.trace_state == ""  # the caller's tracestate is dropped
    assert vendor_data.encode() not in b"".join(sink.raw)
    assert put_span.attributes == {
        "rpc.system": "grpc",
        "rpc.service": "vault.v1.Vault",
        "rpc.method": "PutRecord",
        "rpc.grpc.status_code": 0,
        "vault.correlation_id": _correlation_id(put_call),
        "vault.role": "application",
    }
    assert put_span.resource["service.name"] == "vault-service"
    children = _children(spans, put_span)
    names = {c.span.name for c in children}
    assert {"db.write", "key_provider.wrap"} <= names  # a new subject's key is wrapped
    assert all(c.span.kind == CLIENT_KIND for c in children)
    writes = [c for c in children if c.span.name == "db.write"]
    assert all(c.attributes["db.system.name"] == "sqlite" for c in writes)
    # named after the store method that opened the transaction
    assert [c.attributes["code.function.name"] for c in writes] == [
        "create_subject_key",
        "insert_record",
    ]
    # each child lies within its parent
    for c in children:
        assert put_span.span.start_time_unix_nano <= c.span.start_time_unix_nano
        assert c.span.end_time_unix_nano <= put_span.span.end_time_unix_nano

    get_span = _server_span(spans, _correlation_id(get_call))
    assert get_span.trace_id != trace_id and get_span.parent_id == ""
    get_children = {c.span.name for c in _children(spans, get_span)}
    assert {"db.read", "key_provider.unwrap"} <= get_children
    unwrap = next(c for c in _children(spans, get_span) if c.span.name == "key_provider.unwrap")
    assert unwrap.attributes == {"vault.key_provider": "local"}


def test_the_sdk_clients_metadata_hook_carries_trace_context(
    traced: RunningServer, sink: OtlpSink
) -> None:
    header, trace_id, caller_span = _traceparent()
    address = f"127.0.0.1:{traced.port}"
    with VaultClient(address, TOKENS["app"], call_metadata=lambda: [("traceparent", header)]) as app:
        rid = app.put_record("member-1", "concern_text", {"text": "x"}).record_id
        app.get_record(rid, "matching")
    spans = [s for s in _exported(sink) if s.span.kind == SERVER_KIND]
    assert [s.span.name for s in spans] == ["vault.v1.Vault/PutRecord", "vault.v1.Vault/GetRecord"]
    assert all((s.trace_id, s.parent_id) == (trace_id, caller_span) for s in spans)


def test_streaming_rpcs_have_one_span_each_with_blob_store_children(
    traced: RunningServer, sink: OtlpSink, tmp_path: Path
) -> None:
    source = tmp_path / "photo.bin"
    source.write_bytes(secrets.token_bytes(300_000))
    with VaultClient(f"127.0.0.1:{traced.port}", TOKENS["app"]) as app:
        rid = app.upload_record(
            str(source), subject_id="member-1", category="concern_photo", piece_size=65536
        ).record_id
        assert b"".join(app.download_content(rid, "matching")) == source.read_bytes()
    spans = _exported(sink)
    upload = [s for s in spans if s.span.name == "vault.v1.Vault/UploadRecord"]
    download = [s for s in spans if s.span.name == "vault.v1.Vault/DownloadContent"]
    assert len(upload) == len(download) == 1
    assert upload[0].attributes["rpc.grpc.status_code"] == 0
    assert download[0].attributes["rpc.grpc.status_code"] == 0
    put = [c for c in _children(spans, upload[0]) if c.span.name == "blob.put"]
    assert len(put) == 1 and put[0].attributes == {"vault.blob_store": "filesystem"}
    assert "blob.open" in {c.span.name for c in _children(spans, download[0])}


def test_failed_calls_carry_their_status_and_only_server_faults_are_errors(
    traced: RunningServer, sink: OtlpSink
) -> None:
    address = f"127.0.0.1:{traced.port}"
    with VaultClient(address, TOKENS["app"]) as app, pytest.raises(VaultError) as missing:
        app.get_record(new_record_id(), "matching")
    with VaultClient(address, "not-a-token") as stranger, pytest.raises(VaultError) as denied:
        stranger.get_record(new_record_id(), "matching")
    spans = _exported(sink)
    not_found = _server_span(spans, missing.value.correlation_id)
    assert not_found.attributes["rpc.grpc.status_code"] == grpc.StatusCode.NOT_FOUND.value[0]
    assert not_found.attributes["error.type"] == "NOT_FOUND"
    assert not_found.span.status.code != STATUS_ERROR  # the caller's business, not a fault
    unauthenticated = _server_span(spans, denied.value.correlation_id)
    assert unauthenticated.attributes["error.type"] == "UNAUTHENTICATED"
    assert "vault.role" not in unauthenticated.attributes  # nobody was authenticated


def _unauthenticated_calls(address: str, header: str) -> list[str]:
    """Calls, unary and streaming, that fail authentication (an unknown token, none at all, a
    malformed header) while sending a sampled ``traceparent``; their correlation ids."""
    ids = []
    for token, extra in (("not-a-token", []), ("", []), ("", [("authorization", "Basic x")])):
        metadata = functools.partial(list, [("traceparent", header), *extra])
        with VaultClient(address, token, call_metadata=metadata) as c:
            for call in (
                lambda: c.get_record(new_record_id(), "matching"),
                lambda: b"".join(c.download_content(new_record_id(), "matching")),
            ):
                with pytest.raises(VaultError) as err:
                    call()
                assert err.value.status.value == "UNAUTHENTICATED"
                ids.append(err.value.correlation_id)
    return ids


def test_an_unauthenticated_call_does_not_continue_the_callers_trace(
    traced: RunningServer, sink: OtlpSink
) -> None:
    header, trace_id, _ = _traceparent()
    ids = _unauthenticated_calls(f"127.0.0.1:{traced.port}", header)
    spans = _exported(sink)
    assert not [s for s in spans if s.trace_id == trace_id]  # nothing joined the caller's trace
    for cid in ids:  # sampled by the vault's own ratio (1.0 here): each a trace of its own
        mine = _server_span(spans, cid)
        assert mine.parent_id == "" and mine.attributes["error.type"] == "UNAUTHENTICATED"


def test_an_unauthenticated_call_cannot_force_sampling(tmp_path: Path, sink: OtlpSink) -> None:
    config = _traced_config(tmp_path, sink.endpoint, tracing__sample_ratio="0.0")
    server = start_server(load_config(config, {}), {})
    try:
        address = f"127.0.0.1:{server.port}"
        header, trace_id, caller_span = _traceparent()
        ids = _unauthenticated_calls(address, header)
        with VaultClient(address, TOKENS["app"]) as app:
            app.put_record("member-1", "concern_text", {"text": "x"})  # ratio 0: not sampled
        with VaultClient(address, TOKENS["app"], call_metadata=lambda: [("traceparent", header)]) as app:
            app.put_record("member-1", "concern_text", {"text": "x"})  # the caller's decision
        spans = _exported(sink)
    finally:
        server.stop(0)
    assert not [s for s in spans if s.attributes.get("vault.correlation_id") in ids]
    # only the authenticated call's trace context was followed: its span and its children
    servers = [s for s in spans if s.span.kind == SERVER_KIND]
    assert [(s.span.name, s.trace_id, s.parent_id) for s in servers] == [
        ("vault.v1.Vault/PutRecord", trace_id, caller_span)
    ]
    assert all(s.trace_id == trace_id for s in spans)


def test_no_marker_in_any_exported_span(
    traced: RunningServer, sink: OtlpSink, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    marker = "phi" + secrets.token_hex(8)
    address = f"127.0.0.1:{traced.port}"
    # every place a caller can put a value, on success and error paths (the logs test's calls)
    failed_ids = _exercise(address, tmp_path, marker)

    # and an unexpected exception whose text quotes a value
    def broken(*args: Any, **kw: Any) -> Any:
        raise RuntimeError(f"value {marker} leaked by a bug")

    monkeypatch.setattr(traced.service, "put_record", broken)
    with VaultClient(address, TOKENS["app"]) as app, pytest.raises(VaultError) as internal:
        app.put_record(f"member-{marker}", "concern_text", {"text": marker})

    spans = _exported(sink)
    wire = b"".join(sink.raw)  # everything the vault sent the collector, as sent
    assert marker.encode() not in wire
    assert marker.encode().hex().encode() not in wire
    assert b"leaked by a bug" not in wire
    for s in spans:
        assert set(s.attributes) <= ALLOWED_KEYS, s.attributes
        assert not s.span.events and not s.span.links
        assert s.span.status.message == ""
    # the failures the client saw are there, under the ids it got
    for cid in [*failed_ids, internal.value.correlation_id]:
        if cid:
            _server_span(spans, cid)
    crashed = _server_span(spans, internal.value.correlation_id)
    assert crashed.attributes["error.type"] == "INTERNAL"
    assert crashed.span.status.code == STATUS_ERROR
    # a DATA_LOSS (the tampered record) is a server-side error too
    assert any(s.attributes.get("error.type") == "DATA_LOSS" for s in spans)


def test_unreachable_collector_neither_fails_nor_slows_calls(tmp_path: Path) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = _traced_config(tmp_path, f"http://127.0.0.1:{port}", tracing__otlp_timeout_seconds="1.0")
    server = start_server(load_config(config, {}), {})
    try:
        with VaultClient(f"127.0.0.1:{server.port}", TOKENS["app"]) as app:
            rid = app.put_record("member-1", "concern_text", {"text": "x"}).record_id
            slowest = 0.0
            for _ in range(40):  # many export intervals, each export failing in the background
                started = time.perf_counter()
                assert app.get_record(rid, "matching").fields["text"] == "x"
                slowest = max(slowest, time.perf_counter() - started)
                time.sleep(0.01)
        assert slowest < 0.5  # an export attempt blocks for up to 1 s: calls never wait on one
    finally:
        started = time.perf_counter()
        server.stop(0)
        assert time.perf_counter() - started < 15  # the last flush is bounded by the timeout


def test_off_by_default_imports_no_opentelemetry(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    script = f"""
import sys
from pathlib import Path
from vault_service.client import VaultClient
from vault_service.config import load_config
from vault_service.rpc.server import start_server
from vault_service import tracing
config = load_config(Path({str(config)!r}), {{}})
assert config.tracing.exporter == "off"
server = start_server(config, {{}})
with VaultClient(f"127.0.0.1:{{server.port}}", {TOKENS["app"]!r}) as app:
    rid = app.put_record("member-1", "concern_text", {{"text": "x"}}).record_id
    app.get_record(rid, "matching")
server.stop(0)
assert not tracing.enabled()
print(sorted(m for m in sys.modules if m.split(".")[0] == "opentelemetry"))
"""
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_tracing_without_the_extra_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry", None)  # as if the extra were not installed
    with pytest.raises(ConfigError, match=r"tracing\.exporter: 'otlp' needs OpenTelemetry"):
        tracing.configure(TracingConfig(exporter="otlp"))
    assert not tracing.enabled()


def test_the_exporter_comes_from_the_environment_too(tmp_path: Path, sink: OtlpSink) -> None:
    config = load_config(
        write_config(tmp_path),
        {"VAULT_TRACING_EXPORTER": "otlp", "VAULT_TRACING_OTLP_ENDPOINT": sink.endpoint},
    )
    assert (config.tracing.exporter, config.tracing.otlp_endpoint) == ("otlp", sink.endpoint)
    server = start_server(config, {})
    try:
        with VaultClient(f"127.0.0.1:{server.port}", TOKENS["app"]) as app:
            app.put_record("member-1", "concern_text", {"text": "x"})
    finally:
        server.stop(0)  # flushes
    assert [s.span.name for s in sink.spans if s.span.kind == SERVER_KIND] == [
        "vault.v1.Vault/PutRecord"
    ]
    assert not tracing.enabled()  # the stop uninstalled it
