"""The destruction ledger's Merkle tree, kept in memory in step with the ledger's store.

Publishing a checkpoint after each append (:mod:`.ledger_sync`) needs the tree of the ledger as
it is. Rebuilding it from every line made each destruction cost O(ledger size), and a retention
sweep of thousands of records quadratic. :class:`LedgerTail` keeps the tree (leaf hashes,
:class:`~vault_service.tlog.merkle.MemoryTree`) and a cursor of the store
(:class:`~.ledger_store.LedgerCursor`), and on each :meth:`LedgerTail.refresh` reads only the
lines appended since, by this process or by any other one sharing the store. When the store is
not an extension of what it read (a repair replaced the lines, here or in another process;
someone truncated or edited them), it reads them all again (the store's cursor says what it
checks; the continuous check checks the whole store: :meth:`LedgerTail.check_whole`).

The leaves are the ledger's lines as :meth:`.ledger.DestructionLedger.lines` gives them.
"""

from __future__ import annotations

from vault_service.audit.appended import ReadCounters
from vault_service.audit.publish import LocalTree
from vault_service.lifecycle.ledger_store import LedgerRead, LedgerStore
from vault_service.tlog import merkle


class LedgerMoved(Exception):
    """An older line, read again for the witness, is not the one the tree holds: the store was
    changed in place. The caller forgets the tree and reads again."""


class LedgerTail:
    """The tree of the ledger in ``store`` (see the module docstring). Not thread-safe: the
    caller serialises its use."""

    def __init__(self, store: LedgerStore) -> None:
        self._cursor = store.cursor()
        self.forget()

    @property
    def counters(self) -> ReadCounters:
        """How much of the store was read so far."""
        return self._cursor.counters

    def forget(self) -> None:
        """Drop the tree: the next :meth:`refresh` reads every line."""
        self._cursor.forget()
        self._drop_tree()

    def _drop_tree(self) -> None:
        self._tree = merkle.MemoryTree()
        # the lines of the last refresh, from leaf index ``_fresh_from``: the ones the witness
        # most likely lacks, so that handing them over reads nothing more
        self._fresh: list[bytes] = []
        self._fresh_from = 0

    def refresh(self) -> LocalTree:
        """The tree of the store as it is now (reading what was appended since the last call,
        or every line when the store is not an extension of what was read). Unavailable when
        the store cannot be read. The tree's ``entries`` raise :class:`LedgerMoved` when an
        older line they must read again was changed meanwhile."""
        return self._take(self._cursor.read())

    def check_whole(self) -> LocalTree:
        """As :meth:`refresh`, the whole store checked against what was read (the start-up and
        continuous check: an edit anywhere restarts the tree)."""
        return self._take(self._cursor.read_whole())

    def _take(self, read: LedgerRead) -> LocalTree:
        if read.restarted:
            self._drop_tree()
        self._fresh, self._fresh_from = [], self._tree.size
        for line in read.lines:
            self._tree.append(merkle.leaf_hash(line))
            self._fresh.append(line)
        return self.local_tree()

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
        from the store and checked against the tree's leaf hashes."""
        older: list[bytes] = []
        if start < self._fresh_from:
            older = self._read_again(start, min(end, self._fresh_from))
        lo = max(start, self._fresh_from) - self._fresh_from
        return older + self._fresh[lo : max(end - self._fresh_from, lo)]

    def _read_again(self, start: int, stop: int) -> list[bytes]:
        lines = self._cursor.read_again(start, stop)
        if lines is None or any(
            merkle.leaf_hash(line) != self._tree.leaf(start + i) for i, line in enumerate(lines)
        ):
            raise LedgerMoved()
        return lines
