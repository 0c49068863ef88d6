"""Where signed checkpoints are kept: outside the record store, append-only.

The filesystem implementation appends one JSON line per checkpoint (``O_APPEND``, fsync) to a
file that should live on other storage than the database, with its own permissions and backup (in
production an object store with object lock, or a WORM volume, serves the same interface). A
database attacker who rewrites the whole audit chain cannot rewrite these.
"""

from __future__ import annotations

import abc
import os
from pathlib import Path

from vault_service.audit.chain import Checkpoint
from vault_service.errors import Unavailable

#: bytes read at a time when looking for the latest checkpoint from the end of the file
_BLOCK = 64 * 1024


class CheckpointStore(abc.ABC):
    """Append-only store of checkpoints."""

    @abc.abstractmethod
    def append(self, checkpoint: Checkpoint) -> None:
        """Durably append one checkpoint."""

    @abc.abstractmethod
    def all(self) -> list[Checkpoint]:
        """Every checkpoint, in the order appended. Raises ValueError on a corrupt line."""

    def latest(self, kind: str) -> Checkpoint | None:
        """The last checkpoint of ``kind`` appended (None: none). Raises ValueError on a
        corrupt line read on the way. Implementations read from the end."""
        found = [c for c in self.all() if c.kind == kind]
        return found[-1] if found else None


class FilesystemCheckpointStore(CheckpointStore):
    """One JSON line per checkpoint in ``path`` (mode 0600)."""

    def __init__(self, path: Path) -> None:
        self._path = path

    def __repr__(self) -> str:
        return f"FilesystemCheckpointStore({str(self._path)!r})"

    def append(self, checkpoint: Checkpoint) -> None:
        line = (checkpoint.to_json() + "\n").encode()
        try:
            self._path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(self._path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            try:
                os.write(fd, line)
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError:
            raise Unavailable("audit checkpoint store unavailable") from None

    def all(self) -> list[Checkpoint]:
        try:
            text = self._path.read_text()
        except FileNotFoundError:
            return []
        return [Checkpoint.from_json(line) for line in text.splitlines() if line.strip()]

    def latest(self, kind: str) -> Checkpoint | None:
        """Reads the file backwards in blocks until a line of ``kind`` (a query asks for the
        latest tree checkpoint every call: never the whole file)."""
        try:
            with self._path.open("rb") as f:
                pos = f.seek(0, os.SEEK_END)
                rest = b""  # the start of a line whose beginning is in an earlier block
                while pos > 0:
                    step = min(_BLOCK, pos)
                    pos -= step
                    f.seek(pos)
                    lines = (f.read(step) + rest).split(b"\n")
                    rest = lines.pop(0) if pos > 0 else b""
                    for line in reversed(lines):
                        if line.strip():
                            checkpoint = Checkpoint.from_json(line.decode())
                            if checkpoint.kind == kind:
                                return checkpoint
        except FileNotFoundError:
            return None
        except OSError:
            raise Unavailable("audit checkpoint store unavailable") from None
        return None
