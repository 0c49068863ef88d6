"""Filesystem blob store: one file per blob under a root directory.

Writes go to a temp file in the same file system (O_EXCL, mode 0600), are fsynced, renamed into
place and the directory is fsynced, so a crash leaves either the whole blob or none of it (the temp
files a crash leaves behind are removed by :meth:`FilesystemBlobStore.remove_partials`).
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from queue import Queue

from vault_service.errors import Unavailable
from vault_service.storage.blobs import BlobReader, BlobStore

_REF = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")
_TMP = ".partial"


def valid_ref(ref: str) -> str:
    """``ref`` if it is a safe blob name (no paths, no dot files); ValueError otherwise."""
    if not _REF.fullmatch(ref):
        raise ValueError("invalid blob ref")
    return ref


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _FileReader(BlobReader):
    def __init__(self, path: Path) -> None:
        self._fd = os.open(path, os.O_RDONLY)
        self.length = os.fstat(self._fd).st_size

    def read_at(self, offset: int, size: int) -> bytes:
        return os.pread(self._fd, size, offset)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class FilesystemBlobStore(BlobStore):
    """Blobs as files: ``root/<first two chars of ref>/<ref>``."""

    def __init__(self, root: Path) -> None:
        self._root = root
        self._tmp = root / _TMP
        self._tmp.mkdir(parents=True, exist_ok=True, mode=0o700)

    def __repr__(self) -> str:
        return f"FilesystemBlobStore({str(self._root)!r})"

    def _path(self, ref: str) -> Path:
        return self._root / valid_ref(ref)[:2] / ref

    def put(self, ref: str, pieces: Iterable[bytes]) -> int:
        final = self._path(ref)
        if final.exists():
            raise FileExistsError(ref)
        tmp = self._tmp / f"{ref}.{secrets.token_hex(8)}"
        total = 0
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                total = self._write_overlapped(fd, pieces)
                os.fsync(fd)
            finally:
                os.close(fd)
            final.parent.mkdir(exist_ok=True, mode=0o700)
            os.link(tmp, final)  # fails if ref appeared meanwhile: never overwrite a blob
            _fsync_dir(final.parent)
        except FileExistsError:
            raise
        except OSError:
            raise Unavailable("blob storage unavailable") from None
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        return total

    @staticmethod
    def _write_overlapped(fd: int, pieces: Iterable[bytes]) -> int:
        """Write ``pieces`` while the next ones are being produced: a writer thread drains a
        small bounded queue (os.write releases the GIL, so disk and the producer - gRPC receive
        and encryption - overlap). Memory stays bounded by the queue. Errors on either side
        stop both and are raised here."""
        queue: Queue[bytes | None] = Queue(maxsize=4)
        failure: list[BaseException] = []

        def writer() -> None:
            try:
                while (piece := queue.get()) is not None:
                    view = memoryview(piece)
                    while view:
                        view = view[os.write(fd, view) :]
            except BaseException as exc:  # handed to the producer side
                failure.append(exc)
                while queue.get() is not None:  # keep draining so the producer never blocks
                    pass

        thread = threading.Thread(target=writer, name="blob-writer", daemon=True)
        thread.start()
        total = 0
        try:
            for piece in pieces:
                if failure:
                    break
                queue.put(piece)
                total += len(piece)
        finally:
            queue.put(None)
            thread.join()
        if failure:
            raise failure[0]
        return total

    def open(self, ref: str) -> BlobReader:
        return _FileReader(self._path(ref))

    def delete(self, ref: str) -> None:
        path = self._path(ref)
        try:
            path.unlink()
        except FileNotFoundError:
            return
        except OSError:
            raise Unavailable("blob storage unavailable") from None
        _fsync_dir(path.parent)

    def exists(self, ref: str) -> bool:
        return self._path(ref).exists()

    def list_refs(self) -> Iterator[str]:
        for sub in sorted(self._root.iterdir()):
            if sub.name == _TMP or not sub.is_dir():
                continue
            for f in sorted(sub.iterdir()):
                yield f.name

    def remove_partials(self, older_than_seconds: float = 0.0) -> int:
        """Delete temp files left by interrupted writes (older than the given age, so uploads in
        progress are spared); returns how many."""
        cutoff = time.time() - older_than_seconds
        count = 0
        for f in self._tmp.iterdir():
            with contextlib.suppress(FileNotFoundError):
                if f.stat().st_mtime <= cutoff:
                    f.unlink()
                    count += 1
        return count
