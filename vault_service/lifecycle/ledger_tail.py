"""The destruction ledger's Merkle tree, kept in memory in step with the file.

Publishing a checkpoint after each append (:mod:`.ledger_sync`) needs the tree of the ledger as
it is. Rebuilding it from the whole file made each destruction cost O(ledger size), and a
retention sweep of thousands of records quadratic. :class:`LedgerTail` keeps the tree (leaf
hashes, :class:`~vault_service.tlog.merkle.MemoryTree`) and the byte offset it has read, and on
each :meth:`LedgerTail.refresh` reads only the lines appended since, by this process or by any
other one sharing the file. When the file is not an extension of what it read (a repair renamed
a new file over it, here or in another process; someone truncated it or edited its tail), it
reads it whole again (:mod:`vault_service.audit.appended` says what is checked, and what is not:
an edit in place that keeps every offset and the last line is left to the continuous check,
which reads the whole file and calls :meth:`LedgerTail.forget`).

The leaves are the ledger's lines as :meth:`.ledger.DestructionLedger.lines` gives them: every
complete line that is not blank, without its newline; a torn last line (no newline) is not a
leaf.
"""

from __future__ import annotations

from array import array
from pathlib import Path

from vault_service.audit.appended import AppendedFile, ReadCounters
from vault_service.audit.publish import LocalTree
from vault_service.errors import Unavailable
from vault_service.tlog import merkle


class LedgerMoved(Exception):
    """An older line, read again for the witness, is not the one the tree holds: the file was
    changed in place. The caller forgets the tree and reads again."""


class LedgerTail:
    """The tree of the ledger at ``path`` (see the module docstring). Not thread-safe: the
    caller serialises its use."""

    def __init__(self, path: Path) -> None:
        self._file = AppendedFile(path)
        self.forget()

    @property
    def counters(self) -> ReadCounters:
        """How much of the file was read so far."""
        return self._file.counters

    def forget(self) -> None:
        """Drop the tree: the next :meth:`refresh` reads the whole file."""
        self._file.forget()
        self._drop_tree()

    def _drop_tree(self) -> None:
        self._tree = merkle.MemoryTree()
        # the byte offset of each leaf's line (8 bytes a line, not the line itself)
        self._starts = array("q")
        # the lines of the last refresh, from leaf index ``_fresh_from``: the ones the witness
        # most likely lacks, so that handing them over reads nothing more
        self._fresh: list[bytes] = []
        self._fresh_from = 0

    def refresh(self) -> LocalTree:
        """The tree of the file as it is now (reading what was appended since the last call, or
        the whole file when it is not an extension of what was read). Unavailable when the file
        cannot be read. The tree's ``entries`` raise :class:`LedgerMoved` when an older line
        they must read again was changed meanwhile."""
        try:
            chunk = self._file.read()
        except OSError:
            raise Unavailable("destruction ledger unavailable") from None
        if chunk.restarted:
            self._drop_tree()
        self._fresh, self._fresh_from = [], self._tree.size
        for offset, line in chunk.lines():
            if line.strip():
                self._tree.append(merkle.leaf_hash(line))
                self._starts.append(offset)
                self._fresh.append(line)
        return self.local_tree()

    def read_all(self) -> list[bytes]:
        """Every line, read from the whole file (the start-up check); the tree is rebuilt
        from them. Unavailable when the file cannot be read."""
        self.forget()
        self.refresh()
        return list(self._fresh)

    def witnessed(self, size: int) -> None:
        """The witness holds the first ``size`` lines: the fresh ones below are not kept."""
        drop = min(max(size - self._fresh_from, 0), len(self._fresh))
        if drop:
            del self._fresh[:drop]
            self._fresh_from += drop

    def local_tree(self) -> LocalTree:
        """The tree as last refreshed. Its roots and proofs stay valid after later refreshes
        (a refresh that restarts builds a new tree); its ``entries`` are read from this object,
        so use it before the next refresh."""
        tree = self._tree
        return LocalTree(tree.size, tree.root, tree.consistency_proof, self._entries)

    def _entries(self, start: int, end: int) -> list[bytes]:
        """The lines of leaves [start, end): the fresh ones from memory, older ones read again
        from the file at their offsets and checked against the tree's leaf hashes."""
        older: list[bytes] = []
        if start < self._fresh_from:
            older = self._read_again(start, min(end, self._fresh_from))
        lo = max(start, self._fresh_from) - self._fresh_from
        return older + self._fresh[lo : max(end - self._fresh_from, lo)]

    def _read_again(self, start: int, stop: int) -> list[bytes]:
        first = self._starts[start]
        last = self._starts[stop] if stop < len(self._starts) else self._file.end
        try:
            data = self._file.read_range(first, last)
        except OSError:
            raise Unavailable("destruction ledger unavailable") from None
        if data is None:
            raise LedgerMoved()
        lines = [line for line in data.split(b"\n")[:-1] if line.strip()]
        if len(lines) != stop - start or any(
            merkle.leaf_hash(line) != self._tree.leaf(start + i) for i, line in enumerate(lines)
        ):
            raise LedgerMoved()
        return lines
