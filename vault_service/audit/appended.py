"""Reading a file of lines that only grows, one appended part at a time.

Both files that back a log's entries here (the destruction ledger, and the witness's kept copy
of it) are written by appending whole lines (``O_APPEND``, one line or one batch per write), by
several processes, and are rewritten whole only by a repair (a new file renamed over the old one)
or by hand (an operator, an attacker, a restore from a backup). :class:`AppendedFile` remembers
what it read of such a file and, on each :meth:`AppendedFile.read`, returns only the complete
lines appended since, **unless the file is not an extension of what it read**, in which case it
returns every line from the start and says so (:attr:`Chunk.restarted`).

"An extension of what was read" is checked, at each read, on three things:

- the file's identity (device, inode): a file renamed over it (a repair) is another file;
- its size: not smaller than what was read (else it was truncated);
- the last line read (and any blank lines after it): re-read at its offset, it must still be the
  same bytes (else the tail was edited, or a new file of the same inode was written).

An edit in place that keeps the size, every offset and the last line (one byte of an older line
changed) is not seen by this check: callers that must catch it read the whole file
(:meth:`AppendedFile.forget`), as the destruction ledger's continuous check does.

A last piece without its newline is an append still being written, or one a crash tore: it is
not a line yet, and is read again (whole, once its newline is there) by the next read.

A writer that appends under a lock of its own, right after a read, notes its lines as read
(:meth:`AppendedFile.took`) rather than reading them back.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Chunk:
    """What one :meth:`AppendedFile.read` returned: complete lines starting at ``base``."""

    #: True: the lines are the file's whole content (the first read, or the file was not an
    #: extension of what was read before): the caller drops what it built and starts over
    restarted: bool
    #: the file offset of ``data``
    base: int
    #: complete lines, each ending with its newline (empty when nothing was appended)
    data: bytes

    def lines(self) -> Iterator[tuple[int, bytes]]:
        """Each line's file offset and bytes (without its newline), blank lines included."""
        pos = 0
        while pos < len(self.data):
            cut = self.data.index(b"\n", pos)
            yield self.base + pos, self.data[pos:cut]
            pos = cut + 1


@dataclass
class ReadCounters:
    """How much of the file was read (for tests and figures)."""

    #: reads of the whole file: the first one, and each one after the file was not an extension
    full_reads: int = 0
    #: bytes read as content (appended parts and whole files)
    bytes_read: int = 0
    #: bytes re-read to check that the file is still an extension (the last line read)
    bytes_checked: int = 0


class AppendedFile:
    """What was read of the file at ``path`` (see the module docstring). Not thread-safe: the
    caller serialises its reads. Reads raise OSError as the file system does (a missing file
    is an empty one)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.counters = ReadCounters()
        self.forget()

    def forget(self) -> None:
        """Drop what was read: the next :meth:`read` reads the whole file."""
        self._identity: tuple[int, int] | None = None
        #: bytes consumed: the offset just past the last newline read
        self.end = 0
        # the offset of the last non-blank line read, and the bytes from there to ``end``
        self._tail_at = 0
        self._tail = b""

    def read(self) -> Chunk:
        """The complete lines appended since the last read, or (``restarted``) all of them."""
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            # a file that is gone holds no lines: a restart if it held some we read
            restarted = self._identity is not None or self.end > 0
            self.forget()
            return Chunk(restarted, 0, b"")
        try:
            st = os.fstat(fd)
            identity = (st.st_dev, st.st_ino)
            restarted = not self._extends(fd, identity, st.st_size)
            if restarted:
                self.forget()
                self.counters.full_reads += 1
            base = self.end
            data = _pread_all(fd, st.st_size - base, base)
            self.counters.bytes_read += len(data)
        finally:
            os.close(fd)
        self._identity = identity
        # only complete lines: a last piece without newline is read again, whole, next time
        complete = data[: data.rfind(b"\n") + 1]
        self._advance(base, complete)
        return Chunk(restarted, base, complete)

    def read_range(self, start: int, end: int) -> bytes | None:
        """The bytes [start, end) of the file, None if it is no longer the file that was read
        (another identity, or shorter than what was read). The caller checks the content."""
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return None
        try:
            st = os.fstat(fd)
            if (st.st_dev, st.st_ino) != self._identity or st.st_size < self.end:
                return None
            data = _pread_all(fd, end - start, start)
            self.counters.bytes_read += len(data)
            return data
        finally:
            os.close(fd)

    def took(self, identity: tuple[int, int], offset: int, data: bytes) -> bool:
        """Note that the caller appended ``data`` (complete lines) at ``offset`` of the file of
        ``identity`` (device, inode), so that its own lines are not read back: taken as read
        when that is just where the last read ended. False, nothing noted, otherwise (the
        next read reads them, with whatever came before)."""
        if self._identity is None and self.end == 0 and offset == 0:
            # the last read found no file: the caller created it, and it holds just ``data``
            self._identity = identity
        if identity != self._identity or offset != self.end or not data.endswith(b"\n"):
            return False
        self._advance(offset, data)
        return True

    def _extends(self, fd: int, identity: tuple[int, int], size: int) -> bool:
        if self._identity is None:
            return False
        if identity != self._identity or size < self.end:
            return False
        if not self._tail:
            return True
        again = _pread_all(fd, len(self._tail), self._tail_at)
        self.counters.bytes_checked += len(again)
        return again == self._tail

    def _advance(self, base: int, complete: bytes) -> None:
        if not complete:
            return
        new_end = base + len(complete)
        # the last non-blank line of what was just read starts the new tail; when every new
        # line is blank, the old tail grows by them (it still ends at ``end``)
        stripped = complete.rstrip()
        if stripped:
            self._tail_at = base + stripped.rfind(b"\n") + 1
            self._tail = complete[self._tail_at - base :]
        else:
            self._tail += complete
        self.end = new_end


def _pread_all(fd: int, length: int, offset: int) -> bytes:
    """Up to ``length`` bytes at ``offset`` (fewer at the end of the file)."""
    parts: list[bytes] = []
    while length > 0:
        part = os.pread(fd, min(length, 1 << 24), offset)
        if not part:
            break
        parts.append(part)
        offset += len(part)
        length -= len(part)
    return b"".join(parts)
