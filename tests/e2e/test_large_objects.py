"""Large objects over gRPC: streaming upload and download, range reads, atomic (interrupted)
uploads, limits, the S3 blob store end to end, and constant server memory."""

from __future__ import annotations

import hashlib
import io
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from tests.conftest import TOKENS, write_config
from tests.support.serve import start_serving
from vault_service.api.v1 import vault_pb2 as pb
from vault_service.api.v1 import vault_pb2_grpc as pb_grpc
from vault_service.client import VaultClient
from vault_service.errors import InvalidArgument, ResourceExhausted

C = 16384


def _blob_files(home: Path) -> list[Path]:
    return [p for p in (home / "data" / "blobs").rglob("*") if p.is_file()]


@pytest.mark.parametrize("size", [0, 1, C - 1, C, C + 1, 3 * 1024 * 1024 + 5])
def test_upload_download_round_trip(app: Any, size: int) -> None:
    data = os.urandom(size)
    progress: list[tuple[int, int | None]] = []
    put = app.upload_record(
        io.BytesIO(data),
        subject_id="m-1",
        category="concern_photo",
        fields={"caption": "scan"},
        content_type="image/png",
        piece_size=700_000,
        progress=lambda d, t: progress.append((d, t)),
    )
    assert b"".join(app.download_content(put.record_id, "matching")) == data
    info = app.get_record(put.record_id, "matching").info
    assert info.content_length == size and info.content_type == "image/png"
    if size:
        assert progress[-1][0] == size


def test_range_reads(app: Any) -> None:
    data = os.urandom(10 * C + 77)
    rid = app.upload_record(
        io.BytesIO(data), subject_id="m-1", category="concern_photo", fields={"caption": "c"}
    ).record_id
    for offset, length in [
        (0, 10),
        (C - 3, 6),
        (5 * C, C),
        (10 * C, 77),
        (10 * C + 70, 100),
        (len(data), 5),
    ]:
        got = b"".join(app.download_content(rid, "matching", offset=offset, length=length))
        assert got == data[offset : offset + length], (offset, length)
    with pytest.raises(InvalidArgument):
        list(app.download_content(rid, "matching", offset=-1))


def test_range_read_opens_only_the_chunks_it_needs(running: Any, app: Any) -> None:
    from vault_service.crypto import chunked

    data = os.urandom(40 * C)
    rid = app.upload_record(
        io.BytesIO(data), subject_id="m-1", category="concern_photo", fields={"caption": "c"}
    ).record_id
    opened: list[int] = []
    original = chunked.RawChunkCipher.open

    def counting(self: Any, index: int, encrypted: Any, final: bool) -> bytes:
        opened.append(index)
        return original(self, index, encrypted, final)

    chunked.RawChunkCipher.open = counting  # type: ignore[method-assign]
    try:
        got = b"".join(app.download_content(rid, "matching", offset=20 * C + 5, length=100))
    finally:
        chunked.RawChunkCipher.open = original  # type: ignore[method-assign]
    assert got == data[20 * C + 5 : 20 * C + 105]
    assert sorted(set(opened)) == [20, 40]  # the chunk itself, and the final chunk (length proof)


def test_an_interrupted_upload_leaves_nothing(app: Any, running: Any, vault_home: Path) -> None:
    channel = grpc.insecure_channel(f"127.0.0.1:{running.port}")
    stub = pb_grpc.VaultStub(channel)

    def without_end() -> Iterator[pb.UploadChunk]:
        yield pb.UploadChunk(
            header=pb.UploadHeader(subject_id="m-2", category="concern_photo", fields={"caption": "c"})
        )
        for _ in range(5):
            yield pb.UploadChunk(data=os.urandom(1024 * 1024))

    with pytest.raises(grpc.RpcError) as err:
        stub.UploadRecord(
            without_end(), timeout=30, metadata=(("authorization", f"Bearer {TOKENS['app']}"),)
        )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT

    def cancelled() -> Iterator[pb.UploadChunk]:
        yield pb.UploadChunk(
            header=pb.UploadHeader(subject_id="m-2", category="concern_photo", fields={"caption": "c"})
        )
        yield pb.UploadChunk(data=os.urandom(1024 * 1024))
        raise RuntimeError("client crashed")

    with pytest.raises(grpc.RpcError):
        stub.UploadRecord(
            cancelled(), timeout=30, metadata=(("authorization", f"Bearer {TOKENS['app']}"),)
        )
    channel.close()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _blob_files(vault_home):
        time.sleep(0.05)
    assert app.list_records("m-2").records == []
    assert _blob_files(vault_home) == []


def test_limits_are_resource_exhausted(vault_home: Path) -> None:
    from vault_service.config import load_config
    from vault_service.rpc.server import start_server

    write_config(vault_home, storage__max_object_bytes="2000000")
    server = start_server(load_config(vault_home / "vault.toml", {}), {})
    try:
        with VaultClient(f"127.0.0.1:{server.port}", TOKENS["app"]) as app:
            with pytest.raises(ResourceExhausted):  # declared up front
                app.upload_record(
                    io.BytesIO(os.urandom(3_000_000)),
                    subject_id="m-3",
                    category="concern_photo",
                    fields={"caption": "c"},
                )

            class Unsized(io.RawIOBase):  # no size to declare: counted as it streams
                def __init__(self) -> None:
                    self.left = 3_000_000

                def readable(self) -> bool:
                    return True

                def readinto(self, b: Any) -> int:
                    n = min(len(b), self.left)
                    b[:n] = b"\x01" * n
                    self.left -= n
                    return n

                def fileno(self) -> int:
                    raise OSError("no file")

            with pytest.raises(ResourceExhausted):
                app.upload_record(
                    io.BufferedReader(Unsized()),
                    subject_id="m-3",  # type: ignore[arg-type]
                    category="concern_photo",
                    fields={"caption": "c"},
                )
            assert app.list_records("m-3").records == []
            ok = app.upload_record(
                io.BytesIO(b"x" * 1_999_000),
                subject_id="m-3",
                category="concern_photo",
                fields={"caption": "c"},
            )
            assert ok.version == 1
            with pytest.raises(InvalidArgument):  # a category without content
                app.upload_record(
                    io.BytesIO(b"x"), subject_id="m-3", category="concern_text", fields={"text": "t"}
                )
    finally:
        server.stop(0)
    assert [p.name for p in _blob_files(vault_home)] == [f"{ok.record_id}.v1"]  # nothing else


def test_new_version_by_upload_shreds_the_old_blob(app: Any, vault_home: Path) -> None:
    rid = app.upload_record(
        io.BytesIO(b"first" * 1000), subject_id="m-4", category="concern_photo", fields={"caption": "v1"}
    ).record_id
    put = app.upload_record(
        io.BytesIO(b"second" * 1000), record_id=rid, fields={"caption": "v2"}, expected_version=1
    )
    assert put.version == 2
    assert b"".join(app.download_content(rid, "matching")) == b"second" * 1000
    assert [p.name for p in _blob_files(vault_home)] == [f"{rid}.v2"]


def test_s3_backend_end_to_end(tmp_path: Path) -> None:
    from tests.support.moto_server import CREDENTIALS, MotoServer
    from vault_service.config import load_config
    from vault_service.rpc.server import start_server

    moto = MotoServer().start()
    try:
        import boto3

        boto3.client(
            "s3",
            endpoint_url=moto.url,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        ).create_bucket(Bucket="vault-images")
        write_config(
            tmp_path,
            storage__blob_backend='"s3"',
            storage__s3_bucket='"vault-images"',
            storage__s3_endpoint_url=f'"{moto.url}"',
        )
        server = start_server(load_config(tmp_path / "vault.toml", CREDENTIALS), CREDENTIALS)
        try:
            data = os.urandom(12 * 1024 * 1024 + 7)  # multipart
            with VaultClient(f"127.0.0.1:{server.port}", TOKENS["app"]) as app:
                rid = app.upload_record(
                    io.BytesIO(data), subject_id="m-5", category="concern_photo", fields={"caption": "c"}
                ).record_id
                got = b"".join(app.download_content(rid, "matching"))
                assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest()
                part = b"".join(app.download_content(rid, "matching", offset=9_000_000, length=1000))
                assert part == data[9_000_000:9_001_000]
                objects = boto3.client(
                    "s3",
                    endpoint_url=moto.url,
                    region_name="us-east-1",
                    aws_access_key_id="testing",
                    aws_secret_access_key="testing",
                ).list_objects_v2(Bucket="vault-images")["Contents"]
                assert [o["Key"] for o in objects] == [f"blobs/{rid}.v1"]
                at_rest = server.service.blobs.open(f"{rid}.v1").read_at(0, 1 << 20)
                assert data[:64] not in at_rest  # ciphertext only in the bucket
                app.delete_record(rid)
                assert not server.service.blobs.exists(f"{rid}.v1")
        finally:
            server.stop(0)
    finally:
        moto.stop()


def _peak_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


def test_server_memory_stays_flat_for_a_large_object(tmp_path: Path) -> None:
    """A 256 MiB object goes up and down through a server subprocess whose peak memory grows by
    far less than the object (it is never held in memory)."""
    write_config(tmp_path, logging__level='"WARNING"')
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "vault_service.cli.main",
            "--config",
            str(tmp_path / "vault.toml"),
            "serve",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        m = re.search(r"listening on (127\.0\.0\.1:\d+)", proc.stdout.readline())
        assert m
        size = 256 * 1024 * 1024

        class Pattern(io.RawIOBase):
            def __init__(self) -> None:
                self.pos = 0

            def readable(self) -> bool:
                return True

            def readinto(self, b: Any) -> int:
                n = min(len(b), size - self.pos)
                b[:n] = bytes([self.pos // 1048576 % 251]) * n
                self.pos += n
                return n

        with VaultClient(m.group(1), TOKENS["app"], timeout=300) as app:
            app.put_record("warm-up", "concern_text", {"text": "t"})
            before = _peak_rss_kib(proc.pid)
            rid = app.upload_record(
                io.BufferedReader(Pattern(), 1 << 20),
                subject_id="m-6",  # type: ignore[arg-type]
                category="concern_photo",
                fields={"caption": "big"},
            ).record_id
            total = 0
            digest = hashlib.sha256()
            for data in app.download_content(rid, "matching"):
                total += len(data)
                digest.update(data[:16])
            after = _peak_rss_kib(proc.pid)
        assert total == size
        assert (after - before) < 96 * 1024, f"server peak grew by {(after - before) // 1024} MiB"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)


def test_orphan_and_partial_blobs_are_swept(running: Any, app: Any, vault_home: Path) -> None:
    from vault_service.ids import new_record_id

    svc = running.service
    kept = app.upload_record(
        io.BytesIO(b"k" * 100), subject_id="m-7", category="concern_photo", fields={"caption": "c"}
    ).record_id
    old_orphan = f"{new_record_id(svc.clock.now() - 7200)}.v1"  # crash after the blob write
    fresh_orphan = f"{new_record_id(svc.clock.now())}.v1"  # an upload still in progress
    svc.blobs.put(old_orphan, [b"ciphertext"])
    svc.blobs.put(fresh_orphan, [b"ciphertext"])
    partial = vault_home / "data" / "blobs" / ".partial" / "x.tmp"
    partial.write_bytes(b"half")
    os.utime(partial, (time.time() - 7200, time.time() - 7200))
    assert svc.sweep_blobs(3600) == 2
    assert not svc.blobs.exists(old_orphan) and svc.blobs.exists(fresh_orphan)
    assert svc.blobs.exists(f"{kept}.v1") and not partial.exists()
    assert [r.action for r in svc.store.audit_rows()][-1] == "job.blob_sweep"


def test_upload_download_cli_with_progress_bars(tmp_path: Path) -> None:
    import json
    import pty

    from tests.e2e.test_cli import VAULTCTL, run

    write_config(tmp_path)
    proc, address = start_serving(tmp_path / "vault.toml")
    try:
        src = tmp_path / "scan.dcm"
        src.write_bytes(os.urandom(3 * 1024 * 1024 + 11))
        env = {**os.environ, "VAULT_SERVICE_TOKEN": TOKENS["app"]}
        main_fd, child_fd = pty.openpty()
        up = subprocess.run(
            [
                *VAULTCTL,
                "--config",
                str(tmp_path / "vault.toml"),
                "record",
                "upload",
                "--address",
                address,
                "--file",
                str(src),
                "--subject",
                "m-8",
                "--category",
                "concern_photo",
                "--field",
                "caption=ct",
            ],
            stdout=subprocess.PIPE,
            stderr=child_fd,
            text=True,
            env=env,
            timeout=120,
        )
        bar = os.read(main_fd, 65536).decode()
        assert up.returncode == 0, up.stdout
        assert "3.0/3.0 MiB" in bar and "[" + "#" * 40 + "]" in bar
        rid = re.search(r"as record (\S+)", up.stdout).group(1)  # type: ignore[union-attr]
        down = subprocess.run(
            [
                *VAULTCTL,
                "--config",
                str(tmp_path / "vault.toml"),
                "record",
                "download",
                "--address",
                address,
                "--id",
                rid,
                "--purpose",
                "matching",
                "--out",
                str(tmp_path / "back.dcm"),
            ],
            stdout=subprocess.PIPE,
            stderr=child_fd,
            text=True,
            env=env,
            timeout=120,
        )
        bar = os.read(main_fd, 65536).decode()
        os.close(child_fd)
        os.close(main_fd)
        assert down.returncode == 0 and "3.0/3.0 MiB" in bar
        assert (tmp_path / "back.dcm").read_bytes() == src.read_bytes()
        assert (tmp_path / "back.dcm").stat().st_mode & 0o777 == 0o600
        r = run(
            tmp_path,
            "--json",
            "record",
            "download",
            "--address",
            address,
            "--id",
            rid,
            "--purpose",
            "matching",
            "--out",
            str(tmp_path / "again.dcm"),
            env={"VAULT_SERVICE_TOKEN": TOKENS["app"]},
        )
        assert json.loads(r.stdout)["bytes"] == src.stat().st_size
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
