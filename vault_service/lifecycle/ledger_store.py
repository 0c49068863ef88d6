"""Where the destruction ledger's lines are kept: the one seam between the ledger's logic (signed
lines, their parsing, their Merkle tree, the witness: :mod:`.ledger`, :mod:`.ledger_tail`,
:mod:`.ledger_sync`) and its storage.

A store keeps an ordered list of lines (bytes, no newline, never empty) and offers:

- :meth:`LedgerStore.append`: add one line durably, whole, after every line already there,
  whatever other processes append at the same time;
- :meth:`LedgerStore.lines`: every line, in order;
- :meth:`LedgerStore.rebuild`: replace the lines by a function of the current ones (the repair
  from the witness), with no append lost in between: the caller holds
  :meth:`LedgerStore.locked` exclusively;
- :meth:`LedgerStore.cursor`: a reader that returns only the lines appended since its last read
  (O(new lines)), and says when the store is not an extension of what it read (rebuilt,
  truncated, edited): :class:`LedgerCursor`;
- the ledger's latest cosigned checkpoint note, kept beside the lines (a copy: the witness
  holds the original).

Two implementations: :class:`FileLedgerStore` (JSON lines in a file, ``flock``) here, and the
S3-compatible one with conditional writes (:mod:`.ledger_s3`).
"""

from __future__ import annotations

import abc
import contextlib
import fcntl
import os
from array import array
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

from vault_service.audit.appended import AppendedFile, ReadCounters
from vault_service.durable import replace_file
from vault_service.errors import Unavailable


def unavailable() -> Unavailable:
    return Unavailable("destruction ledger unavailable")


@dataclass(frozen=True)
class LedgerRead:
    """What one read of a cursor returned."""

    #: True: ``lines`` are every line of the store (the first read, or the store is not an
    #: extension of what was read): the caller drops what it built and starts over
    restarted: bool
    lines: list[bytes]


class LedgerCursor(abc.ABC):
    """What one reader read of a store. Not thread-safe: the caller serialises its reads. Every
    method raises Unavailable when the store cannot be read."""

    counters: ReadCounters

    @abc.abstractmethod
    def forget(self) -> None:
        """Drop what was read: the next :meth:`read` reads every line."""

    @abc.abstractmethod
    def read(self) -> LedgerRead:
        """The lines appended since the last read, or (``restarted``) all of them."""

    @abc.abstractmethod
    def read_whole(self) -> LedgerRead:
        """As :meth:`read`, after checking the **whole** store against what was read (an edit
        anywhere, not only at the tail, is a restart): the start-up and continuous check."""

    @abc.abstractmethod
    def read_again(self, start: int, stop: int) -> list[bytes] | None:
        """Lines [start, stop) as read before, fetched again; None if the store is no longer
        the one that was read. The caller checks them against its tree."""


class LedgerStore(abc.ABC):
    """An ordered list of lines (see the module docstring). Raises Unavailable when the storage
    cannot be read or written."""

    #: where the lines are, for messages (a path or an s3:// address)
    where: str

    @abc.abstractmethod
    def locked(self, exclusive: bool) -> AbstractContextManager[None]:
        """Appends share it; a repair (:meth:`rebuild`) holds it alone."""

    @abc.abstractmethod
    def append(self, line: bytes) -> None:
        """Add ``line`` durably after every line there (see the module docstring)."""

    @abc.abstractmethod
    def lines(self) -> list[bytes]:
        """Every line, in order."""

    @abc.abstractmethod
    def rebuild(self, build: Callable[[list[bytes]], Sequence[bytes]]) -> None:
        """Replace the lines by ``build(current lines)``, whole or not at all (a crash leaves
        the old lines). The caller holds :meth:`locked` exclusively."""

    @abc.abstractmethod
    def cursor(self) -> LedgerCursor:
        """A new reader of the lines."""

    @abc.abstractmethod
    def kept_checkpoint(self) -> str | None:
        """The cosigned checkpoint note kept by :meth:`keep_checkpoint`, None if none."""

    @abc.abstractmethod
    def keep_checkpoint(self, note: str) -> None:
        """Keep the ledger's latest cosigned checkpoint note (OSError if it cannot be)."""


class FileLedgerStore(LedgerStore):
    """The lines of a file at ``path`` (mode 0600), each ending with a newline; blank lines are
    not lines, and a last piece without its newline (an append a crash tore) is not one yet (the
    next append cuts it). Appends share a ``flock`` of ``<path>.lock`` (``O_APPEND`` keeps each
    line whole); a rebuild writes a new file renamed over the old one. The checkpoint note is
    ``<path>.checkpoint``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.where = str(path)

    def __repr__(self) -> str:
        return f"FileLedgerStore({self.where!r})"

    @property
    def checkpoint_path(self) -> Path:
        return self.path.with_name(self.path.name + ".checkpoint")

    @contextlib.contextmanager
    def _locked(self, exclusive: bool) -> Iterator[None]:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(self.path.with_name(self.path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
        except OSError:
            raise unavailable() from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            yield
        finally:
            os.close(fd)

    def locked(self, exclusive: bool) -> AbstractContextManager[None]:
        return self._locked(exclusive)

    def append(self, line: bytes) -> None:
        data = line + b"\n"
        with self.locked(exclusive=False):
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
                try:
                    _cut_torn_tail(fd)
                    view = memoryview(data)
                    while view:
                        view = view[os.write(fd, view) :]
                    os.fsync(fd)
                finally:
                    os.close(fd)
            except OSError:
                raise unavailable() from None

    def lines(self) -> list[bytes]:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return []
        except OSError:
            raise unavailable() from None
        return [line for line in data.split(b"\n")[:-1] if line.strip()]

    def rebuild(self, build: Callable[[list[bytes]], Sequence[bytes]]) -> None:
        lines = build(self.lines())
        try:
            replace_file(self.path, b"".join(line + b"\n" for line in lines))
        except OSError:
            raise unavailable() from None

    def cursor(self) -> LedgerCursor:
        return FileCursor(self.path)

    def kept_checkpoint(self) -> str | None:
        try:
            return self.checkpoint_path.read_text()
        except (OSError, UnicodeDecodeError):
            return None

    def keep_checkpoint(self, note: str) -> None:
        replace_file(self.checkpoint_path, note.encode())


class FileCursor(LedgerCursor):
    """A file's lines as :mod:`vault_service.audit.appended` reads them (what it checks to call
    the file an extension of what was read), with the byte offset of each line, so that older
    lines are read again at their offsets."""

    def __init__(self, path: Path) -> None:
        self._file = AppendedFile(path)
        self.counters = self._file.counters
        self._starts = array("q")

    def forget(self) -> None:
        self._file.forget()
        self._starts = array("q")

    def read(self) -> LedgerRead:
        try:
            chunk = self._file.read()
        except OSError:
            raise unavailable() from None
        if chunk.restarted:
            self._starts = array("q")
        lines: list[bytes] = []
        for offset, line in chunk.lines():
            if line.strip():
                self._starts.append(offset)
                lines.append(line)
        return LedgerRead(chunk.restarted, lines)

    def read_whole(self) -> LedgerRead:
        # only a whole read sees an edit in place that keeps the offsets and the last line
        self.forget()
        return self.read()

    def read_again(self, start: int, stop: int) -> list[bytes] | None:
        first = self._starts[start]
        last = self._starts[stop] if stop < len(self._starts) else self._file.end
        try:
            data = self._file.read_range(first, last)
        except OSError:
            raise unavailable() from None
        if data is None:
            return None
        lines = [line for line in data.split(b"\n")[:-1] if line.strip()]
        return lines if len(lines) == stop - start else None


def _cut_torn_tail(fd: int) -> None:
    """Truncate a last line that lacks its newline (an append a crash tore), so the next line
    starts on a line of its own."""
    size = os.fstat(fd).st_size
    if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
        return
    end = size
    while end > 0:
        start = max(0, end - 4096)
        chunk = os.pread(fd, end - start, start)
        cut = chunk.rfind(b"\n")
        if cut >= 0:
            os.ftruncate(fd, start + cut + 1)
            return
        end = start
    os.ftruncate(fd, 0)
