"""The destruction ledger and its witness: publish every append, repair a restored ledger.

- **After each append** (:meth:`LedgerSync.publish`): the ledger's tree (leaves: its lines) gets
  a checkpoint signed under the ledger's origin, given to the witness together with the new
  lines; the cosigned note is kept beside the ledger (``<ledger>.checkpoint``, or the
  ``checkpoint`` object of an S3 ledger). A witness that cannot be reached does not stop the
  destruction (the ledger line is durable: the destruction is owed and replayed from it):
  ``witness_unreachable`` is raised, ``vault_witness_lag_entries`` counts what the witness
  lacks, and the next append or the ``ledger_witness`` job catches up.
- **At start-up** (:meth:`LedgerSync.reconcile`, before the replay): the ledger must be the
  witnessed tree or a consistent extension of it. If it is shorter (the ledger was restored with
  the data directory) or has another root (a line removed, edited or reordered), it is rebuilt
  from the witness's copy of the lines, followed by the ledger's own lines the witness lacks
  (each verified against the service's key), and checkpointed again: the replay that follows
  destroys again whatever the restored store brought back. ``ledger_repaired`` is raised.
  A witness whose own copy does not match its checkpoint is refused (the server does not start).

**Cost.** Publishing is O(new lines): the tree is kept in memory (:class:`.ledger_tail.
LedgerTail`), and only the lines appended since the last publish are read (appended here or by
another process), unless the store is not an extension of what was read (a repair, a truncation,
an edit of its tail): then it is read whole. The witness keeps its copy's tree the same way. The
start-up and continuous check (:meth:`LedgerSync.reconcile`) checks the whole store, as it must
to see an edit anywhere in it (a file is read whole; an S3 ledger is listed whole and the ETags
compared), and starts the kept tree again when it changed.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from vault_service import metrics, security_events
from vault_service.audit.appended import ReadCounters
from vault_service.audit.publish import LocalTree, Publisher, Verdict, compare, sign_checkpoint
from vault_service.audit.witness import WitnessConflict
from vault_service.crypto.signing import SigningKey
from vault_service.errors import Unavailable
from vault_service.lifecycle.ledger import DestructionLedger
from vault_service.lifecycle.ledger_tail import LedgerMoved, LedgerTail
from vault_service.logs import fields
from vault_service.tlog import merkle

log = logging.getLogger("vault_service.ledger")

#: the name of the ledger's log (its origin's middle part)
LEDGER_LOG = "ledger"


class WitnessCopyCorrupt(Exception):
    """The witness's copy of the ledger lines does not hash to its own checkpoint."""


def ledger_tree(lines: list[bytes]) -> LocalTree:
    """The tree of ``lines`` (rebuilt in memory: the ledger holds destructions, not reads)."""
    tree = merkle.MemoryTree()
    for line in lines:
        tree.append(merkle.leaf_hash(line))
    return LocalTree(
        tree.size,
        tree.root,
        tree.consistency_proof,
        lambda start, end: lines[start:end],
    )


@dataclass(frozen=True)
class Reconciled:
    """What the start-up check found and did."""

    verdict: Verdict
    #: lines restored from the witness
    restored: int = 0


class LedgerSync:
    """Keeps one ledger and its witness in step (see the module docstring). Thread-safe: the
    publishes of one object take turns (they share the tree kept in memory)."""

    def __init__(self, ledger: DestructionLedger, publisher: Publisher, origin: str) -> None:
        self.ledger = ledger
        self.publisher = publisher
        self.origin = origin
        self._tail = LedgerTail(ledger.store)
        self._lock = threading.Lock()

    def kept_checkpoint(self) -> str | None:
        """The ledger's latest cosigned checkpoint note kept beside it, None if none."""
        return self.ledger.store.kept_checkpoint()

    @property
    def reads(self) -> ReadCounters:
        """How much of the ledger this object has read (full reads, bytes)."""
        return self._tail.counters

    def publish(self, signer: SigningKey) -> bool:
        """Checkpoint the ledger as it is and give it to the witness; False (reported) if the
        witness could not take it. WitnessRefused propagates (the ledger is not an extension
        of what the witness holds: the start-up check repairs it). Unavailable if the ledger
        cannot be read."""
        with self._lock:
            for _ in range(3):
                tree = self._tail.refresh()
                if tree.size == 0:
                    return True
                signed = sign_checkpoint(self.origin, tree.size, tree.root(tree.size), signer)
                try:
                    cosigned = self.publisher.publish(signed, tree)
                except WitnessConflict:
                    continue  # another process appended and published meanwhile: read again
                except LedgerMoved:
                    # an older line the witness lacked was changed in place: read it all again
                    self._tail.forget()
                    continue
                except Unavailable:
                    metrics.WITNESS_LAG.labels(LEDGER_LOG).set(tree.size - (self.publisher_size()))
                    security_events.emit("witness_unreachable", log=LEDGER_LOG)
                    return False
                self._tail.witnessed(tree.size)
                metrics.WITNESS_LAG.labels(LEDGER_LOG).set(0)
                self._keep(cosigned)
                return True
            return False

    def publisher_size(self) -> int:
        try:
            held = self.publisher.witness.latest(self.publisher.log)
        except Unavailable:
            return 0
        return held.checkpoint.size if held else 0

    def _keep(self, cosigned: str) -> None:
        try:
            self.ledger.store.keep_checkpoint(cosigned)
        except (OSError, Unavailable):
            log.warning("ledger checkpoint copy not written", extra=fields(log=LEDGER_LOG))

    def reconcile(self, signer: SigningKey) -> Reconciled:
        """The start-up check and repair (see the module docstring). Unavailable if the witness
        cannot be reached; WitnessCopyCorrupt if its copy is not its checkpoint's tree."""
        with self.ledger.locked(exclusive=True):
            held = self.publisher.latest()
            with self._lock:
                # the whole store, as only a whole check sees an edit anywhere in it; the kept
                # tree starts again when it changed
                verdict = compare(held, self._tail.check_whole())
            counts = {"restored": 0, "kept": 0}
            if held is not None and verdict in (Verdict.BEHIND, Verdict.FORKED):
                witnessed = self.publisher.witness.entries(self.publisher.log, 0)
                copy = ledger_tree(witnessed)
                if copy.size != held.checkpoint.size or copy.root(copy.size) != held.checkpoint.root:
                    raise WitnessCopyCorrupt()

                def repaired(lines: list[bytes]) -> list[bytes]:
                    # the lines as they are when the store is frozen for the rebuild
                    known, have = set(witnessed), set(lines)
                    ours = [line for line in lines if line not in known]
                    counts["restored"] = sum(1 for line in witnessed if line not in have)
                    counts["kept"] = len(ours)
                    return [*witnessed, *ours]

                self.ledger.rewrite(repaired, signer.public_key())
                security_events.emit("ledger_repaired", finding=verdict.value, **counts)
        self.publish(signer)  # WitnessRefused here: the witness moved on while we repaired
        return Reconciled(verdict, counts["restored"])
