"""The Merkle-tree half of the record store's interface: the stored hashes of a transparency
log's perfect subtrees (:mod:`vault_service.tlog.merkle`), for the audit trail.

:class:`~vault_service.storage.records.RecordStore` extends it; split out so that each
interface module stays one capability. A log is named (``"audit"``); its size is the number of
leaves stored (level 0 holds one per integrated entry, index = seq - 1).
"""

from __future__ import annotations

import abc
from collections.abc import Iterable, Mapping

from vault_service.tlog.merkle import Node


class TreeNodes(abc.ABC):
    """Reads and appends of a log's subtree hashes (see the module docstring)."""

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


class TreeMoved(Exception):
    """The log's tree is no longer of the size an integration started from (another sequencer
    integrated meanwhile): nothing was stored; read the size again."""
