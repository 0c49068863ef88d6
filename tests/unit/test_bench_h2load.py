"""benchmarks/h2load.py, the h2load driver of the Put/Get benchmark, against real h2load runs: its
gRPC frames are accepted, its summary and log are read, and calls that fail as gRPC calls (HTTP
200 with a grpc-status != 0, which h2load counts as successes) are caught by its check."""

from __future__ import annotations

import shutil
import struct
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from benchmarks.h2load import (
    Call,
    CallsFailed,
    check,
    grpc_call,
    grpc_frame,
    load,
    parse_output,
    run_h2load,
)
from tests.conftest import ROOT, TOKENS
from vault_service.api.v1 import vault_pb2 as pb

PUT = pb.PutRecordRequest(subject_id="h2load-test", category="concern_text", fields={"text": "t" * 1024})


@pytest.fixture(scope="module")
def echo() -> Iterator[str]:
    if shutil.which("h2load") is None:
        pytest.fail("h2load is required: `make test` installs nghttp2-client (tools/system_deps.sh)")
    proc = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.echo_server"], stdout=subprocess.PIPE, text=True, cwd=ROOT
    )
    assert proc.stdout is not None
    yield f"127.0.0.1:{int(proc.stdout.readline())}"
    proc.terminate()
    proc.wait(10)


def test_the_frame_is_a_5_byte_prefix_and_the_message() -> None:
    frame = grpc_frame(PUT)
    assert frame[0] == 0
    assert struct.unpack(">I", frame[1:5])[0] == len(frame) - 5
    assert pb.PutRecordRequest.FromString(frame[5:]) == PUT


def test_every_call_to_the_echo_succeeds_and_is_counted(echo: str) -> None:
    call = grpc_call(echo, "/bench.Echo/Put", PUT)
    assert call.response_size == 5 + len(
        pb.PutRecordResponse(record_id="x" * 36, version=1).SerializeToString()
    )
    result = load(echo, call, 40, clients=2, streams=4)
    assert result.summary.total == result.summary.succeeded == len(result.elapsed_us) == 40
    assert result.summary.data_bytes == 40 * call.response_size
    assert set(result.statuses) == {200}
    assert result.summary.rate > 0 and 0 < result.p50_ms <= result.p99_ms
    assert result.p99_from_schedule_ms(1e9) >= result.p99_ms
    paced = load(echo, call, 40, clients=2, streams=4, rps=100)  # 200 calls/s: about 0.2 s
    assert paced.summary.rate < 260 and paced.summary.seconds > 0.15


def test_an_unknown_method_is_http_200_to_h2load_and_a_failure_to_check(echo: str) -> None:
    good = grpc_call(echo, "/bench.Echo/Put", PUT)
    bad = Call("/bench.Echo/Nope", good.body, good.response_size)
    result = run_h2load(echo, bad, 20, clients=2, streams=4)
    assert result.summary.succeeded == result.summary.status_2xx == 20  # h2load alone sees no error
    with pytest.raises(CallsFailed, match="about 20 calls got no response message"):
        check(result, bad, 20)


def test_calls_the_vault_refuses_are_failures(running: Any, app: Any) -> None:
    addr = f"127.0.0.1:{running.port}"
    record_id = app.put_record("h2load-member", "concern_text", {"text": "t" * 1024}).record_id
    get = pb.GetRecordRequest(record_id=record_id, purpose="matching")
    call = grpc_call(addr, "/vault.v1.Vault/GetRecord", get, TOKENS["app"])
    load(addr, call, 20, token=TOKENS["app"], clients=2, streams=4)
    with pytest.raises(CallsFailed):  # no token: UNAUTHENTICATED
        load(addr, call, 20, clients=2, streams=4)
    with pytest.raises(CallsFailed):  # a token of a principal the purpose does not allow
        load(addr, call, 20, token=TOKENS["operator"], clients=2, streams=4)


def test_output_that_is_not_a_summary_is_refused() -> None:
    with pytest.raises(ValueError, match="not h2load's summary"):
        parse_output("starting benchmark...\n")
