"""Inclusion proofs of audit entries for their readers (QueryAudit, TailAudit): each entry with
its RFC 6962 inclusion proof in the audit trail's tree, against the latest signed checkpoint.

Contract:

- the checkpoint is the latest tree checkpoint of the :class:`CheckpointStore` the composition
  root gives (its cosigned note); without one (none given, none signed yet, a corrupt file)
  every entry comes with ``tree_size`` 0 and the note is empty;
- an entry the checkpoint covers (``seq <= checkpoint size``) comes with its proof against
  that size; a newer one (written since: the sequencer integrates within a second) with
  ``tree_size`` 0 and no proof;
- all the proofs of a page come from ONE read of the tree's nodes (the union of the nodes of
  every proof), then a fold per range (:func:`merkle.inclusion_proofs`). Nodes the store lacks
  (a trail restored behind its checkpoint) leave the whole page without proofs: a verifier
  then finds entries the checkpoint covers without a proof, which is what happened.

The proofs add nothing to trust: a reader verifies them offline against the note and the
vault's public key (:mod:`vault_service.audit.prove`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from vault_service.audit.chain import Checkpoint
from vault_service.audit.checkpoints import CheckpointStore
from vault_service.audit.model import AuditEntry
from vault_service.errors import Unavailable
from vault_service.lifecycle.audit_log import AUDIT_TREE
from vault_service.storage import RecordStore
from vault_service.tlog import merkle


@dataclass(frozen=True)
class ProvedEntry:
    """An audit entry with its inclusion proof against the note ``checkpoint``."""

    entry: AuditEntry
    #: the size of the tree the proof is against; 0: newer than the checkpoint, no proof
    tree_size: int = 0
    inclusion_proof: tuple[bytes, ...] = ()
    #: the cosigned checkpoint note the proof is against ("" when there is none)
    checkpoint: str = ""


@dataclass(frozen=True)
class AuditPage:
    """A page of QueryAudit: the entries with their proofs, the note they are against."""

    entries: list[ProvedEntry]
    #: the cosigned checkpoint note the proofs are against ("" when there is none)
    checkpoint: str
    next_page_token: str


class AuditProofs:
    """Proves pages of audit entries (see the module docstring)."""

    def __init__(self, store: RecordStore, checkpoints: CheckpointStore | None = None) -> None:
        self.store = store
        self.checkpoints = checkpoints

    def latest(self) -> Checkpoint | None:
        """The latest signed tree checkpoint with a note (None: none to prove against)."""
        if self.checkpoints is None:
            return None
        try:
            checkpoint = self.checkpoints.latest("tree")
        except (ValueError, KeyError, Unavailable):
            # a corrupt or unreadable checkpoint file: no proofs (`audit verify` reports it)
            return None
        return checkpoint if checkpoint is not None and checkpoint.note else None

    def prove(
        self, entries: Sequence[AuditEntry], checkpoint: Checkpoint | None = None
    ) -> list[ProvedEntry]:
        """Each entry with its proof against ``checkpoint`` (by default :meth:`latest`)."""
        if checkpoint is None:
            checkpoint = self.latest()
        if checkpoint is None:
            return [ProvedEntry(e) for e in entries]
        size, note = checkpoint.seq, checkpoint.note
        covered = [e for e in entries if 0 < e.seq <= size]

        def read(nodes: Iterable[merkle.Node]) -> dict[merkle.Node, bytes]:
            return self.store.tree_nodes(AUDIT_TREE, nodes)

        try:
            proofs = merkle.inclusion_proofs(read, [e.seq - 1 for e in covered], size)
        except KeyError:  # the stored tree is smaller than its checkpoint: nothing to prove with
            return [ProvedEntry(e, checkpoint=note) for e in entries]
        by_seq = {e.seq: tuple(p) for e, p in zip(covered, proofs, strict=True)}
        return [
            ProvedEntry(e, size, by_seq[e.seq], note)
            if e.seq in by_seq
            else ProvedEntry(e, checkpoint=note)
            for e in entries
        ]
