"""Large objects: upload and download of a 256 MiB object through the service (a `vaultctl serve`
subprocess: encryption, blob store, policy, audit) as a ratio to a plain gRPC stream of the same
bytes (a subprocess with none of that), and both servers' peak memory."""

from __future__ import annotations

import io
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import grpc

from benchmarks.harness import Result
from tests.conftest import TOKENS, write_config
from vault_service.api.v1 import vault_pb2 as pb
from vault_service.client import VaultClient

SIZE = 256 * 1024 * 1024
PIECE = 1024 * 1024
ROOT = Path(__file__).resolve().parent.parent


def _peak_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Zeros(io.RawIOBase):
    def __init__(self, size: int) -> None:
        self.left = size

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        n = min(len(b), self.left)
        b[:n] = b"\x5a" * n
        self.left -= n
        return n

    def fileno(self) -> int:
        raise OSError("not a file")


def _plain() -> tuple[float, float, float]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.plain_stream_server"],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        with grpc.insecure_channel(
            f"127.0.0.1:{port}", options=[("grpc.max_receive_message_length", 8 << 20)]
        ) as ch:
            up = ch.stream_unary(
                "/bench.Plain/Upload",
                request_serializer=pb.UploadChunk.SerializeToString,
                response_deserializer=pb.PutRecordResponse.FromString,
            )
            down = ch.unary_stream(
                "/bench.Plain/Download",
                request_serializer=pb.DownloadContentRequest.SerializeToString,
                response_deserializer=pb.ContentPiece.FromString,
            )
            piece = b"\x5a" * PIECE
            t = time.perf_counter()
            messages = (pb.UploadChunk(data=piece) for _ in range(SIZE // PIECE))
            assert int(up(messages, timeout=300).record_id) == SIZE
            up_s = time.perf_counter() - t
            t = time.perf_counter()
            got = sum(
                len(x.data)
                for x in down(pb.DownloadContentRequest(record_id="x", length=SIZE), timeout=300)
            )
            down_s = time.perf_counter() - t
            assert got == SIZE
        return SIZE / up_s / 1e6, SIZE / down_s / 1e6, _peak_mib(proc.pid)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


def _service() -> tuple[float, float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        write_config(home, logging__level='"WARNING"')
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "vault_service.cli.main",
                "--config",
                str(home / "vault.toml"),
                "serve",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            cwd=ROOT,
        )
        try:
            assert proc.stdout is not None
            m = re.search(r"listening on (127\.0\.0\.1:\d+)", proc.stdout.readline())
            assert m
            with VaultClient(m.group(1), TOKENS["app"], timeout=600) as app:
                t = time.perf_counter()
                rid = app.upload_record(
                    io.BufferedReader(Zeros(SIZE), PIECE),  # type: ignore[arg-type]
                    subject_id="bench",
                    category="concern_photo",
                    fields={"caption": "bench"},
                ).record_id
                up_s = time.perf_counter() - t
                t = time.perf_counter()
                got = sum(len(x) for x in app.download_content(rid, "matching"))
                down_s = time.perf_counter() - t
                assert got == SIZE
            return SIZE / up_s / 1e6, SIZE / down_s / 1e6, _peak_mib(proc.pid)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)


def run() -> list[Result]:
    plain = [_plain() for _ in range(3)]
    service = [_service() for _ in range(3)]

    def med(rows: list[tuple[float, float, float]], i: int) -> float:
        return sorted(r[i] for r in rows)[1]

    return [
        Result(
            "256 MiB upload through the service",
            med(service, 0),
            "MB/s",
            "plain gRPC stream of the same bytes",
            med(plain, 0),
            "goal >= 0.7",
        ),
        Result(
            "256 MiB download through the service",
            med(service, 1),
            "MB/s",
            "plain gRPC stream of the same bytes",
            med(plain, 1),
            "goal >= 0.7",
        ),
        Result(
            "server peak memory (VmHWM) after 256 MiB up and down",
            med(service, 2),
            "MiB",
            "plain gRPC server",
            med(plain, 2),
            "the object is never held in memory",
        ),
    ]
