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


class CheckpointStore(abc.ABC):
    """Append-only store of checkpoints."""

    @abc.abstractmethod
    def append(self, checkpoint: Checkpoint) -> None:
        """Durably append one checkpoint."""

    @abc.abstractmethod
    def all(self) -> list[Checkpoint]:
        """Every checkpoint, in the order appended. Raises ValueError on a corrupt line."""


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
