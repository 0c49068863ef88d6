"""The transparency-log half of the record store's interface: the stored hashes of a log's
perfect subtrees (:mod:`vault_service.tlog.merkle`), and the audit trail's group commit (calls
write pending entries; the sequencer moves them into the chain: storage/sql/audit_pending.py).

:class:`~vault_service.storage.records.RecordStore` extends it; split out so that each
interface module stays one capability. A log is named (``"audit"``); its size is the number of
leaves stored (level 0 holds one per integrated entry, index = seq - 1).
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterable, Mapping

from vault_service.audit.model import AuditRow
from vault_service.tlog.merkle import Node

#: one entry's place in the audit chain, as the sequencer wrote it: (seq, prev_hash, entry_hash)
Link = tuple[int, bytes, bytes]


class TreeNodes(abc.ABC):
    """Reads and appends of a log's subtree hashes (see the module docstring)."""

    #: the MAC of a pending audit entry, (writer, digest) -> MAC, under the service's key: set by
    #: the composition root. None: entries carry an empty MAC, and only empty MACs are accepted
    #: (a store used without a service, as tests and benchmarks use one)
    audit_mac: Callable[[str, bytes], bytes] | None = None

    @abc.abstractmethod
    def sequence_pending(self, limit: int = 50_000) -> list[Link]:
        """Move up to ``limit`` committed pending audit entries into the chain, in one
        transaction, under the lock only sequencers take; returns the links it wrote, in
        sequence order (empty: nothing was pending). PendingTampered if a writer's numbers have
        a gap or a MAC does not verify."""

    @abc.abstractmethod
    def pending_rows(self, limit: int) -> list[AuditRow]:
        """The audit entries not yet in the chain, oldest first."""

    @abc.abstractmethod
    def tree_size(self, log: str) -> int:
        """How many leaves the log's tree holds."""

    @abc.abstractmethod
    def tree_nodes(self, log: str, nodes: Iterable[Node]) -> dict[Node, bytes]:
        """The stored hashes of ``nodes`` (those absent are left out), in one read."""

    @abc.abstractmethod
    def add_tree_nodes(self, log: str, size: int, nodes: Mapping[Node, bytes]) -> None:
        """Store ``nodes`` in one transaction if the log's tree still has ``size`` leaves
        (another writer integrating the same leaves fails, never stores them twice):
        :class:`TreeMoved` otherwise."""


class PendingTampered(Exception):
    """A pending audit entry is missing from its writer's numbering, or its MAC does not verify:
    nothing was moved (the sequencer halts the release of plaintext)."""


class TreeMoved(Exception):
    """The log's tree is no longer of the size an integration started from (another sequencer
    integrated meanwhile): nothing was stored; read the size again."""
