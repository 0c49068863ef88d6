"""Signing a log's checkpoints, giving them to its witness, and comparing the log with what the
witness holds: one path for both logs (the audit trail and the destruction ledger).

A log's checkpoint is a C2SP signed note (tlog-checkpoint body: origin, tree size, root hash)
signed by the service's Ed25519 key under the log's origin. :class:`Publisher` hands each one to
the witness with a consistency proof from the size the witness holds, and returns the cosigned
note. :func:`compare` is the start-up and continuous check: the log must be a consistent
extension of the witnessed checkpoint (same root at the witnessed size), else it was rolled back
(shorter) or forked or edited (another root).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from vault_service.audit.witness import Held, LogKey, Witness, WitnessConflict
from vault_service.crypto.signing import SigningKey
from vault_service.tlog import note
from vault_service.tlog.note import Checkpoint


@dataclass(frozen=True)
class LocalTree:
    """What publishing and checking need of a log's own tree."""

    size: int
    #: the root at a size up to ``size``
    root: Callable[[int], bytes]
    #: the consistency proof between two sizes up to ``size``
    consistency: Callable[[int, int], list[bytes]]
    #: the leaves' data in [start, end), for a witness that keeps the log's entries
    entries: Callable[[int, int], list[bytes]] | None = None


class Verdict(enum.Enum):
    """How a log stands against the witnessed checkpoint."""

    #: the witness holds nothing for this log yet
    UNWITNESSED = "unwitnessed"
    #: the log is the witnessed tree or a consistent extension of it
    CONSISTENT = "consistent"
    #: the log is shorter than the witnessed tree: rolled back (a restore), or truncated
    BEHIND = "behind"
    #: the log has another root at the witnessed size: edited, or forked
    FORKED = "forked"


def compare(held: Held | None, tree: LocalTree) -> Verdict:
    """Where ``tree`` stands against the witnessed checkpoint ``held``."""
    if held is None:
        return Verdict.UNWITNESSED
    witnessed = held.checkpoint
    if tree.size < witnessed.size:
        return Verdict.BEHIND
    if witnessed.size and tree.root(witnessed.size) != witnessed.root:
        return Verdict.FORKED
    return Verdict.CONSISTENT


def sign_checkpoint(origin: str, size: int, root: bytes, signer: SigningKey) -> str:
    """The log's checkpoint note of ``size`` leaves with ``root``, signed under ``origin``."""
    return note.sign_note(Checkpoint(origin, size, root).body(), origin, signer)


def checkpoint_of(signed_note: str) -> Checkpoint:
    """The checkpoint a note states (unverified: callers verify with :func:`note.verify_note`)."""
    return Checkpoint.parse(note.open_note(signed_note).text)


class Publisher:
    """Gives one log's checkpoints to its witness (see the module docstring). Remembers the size
    the witness holds, and learns it again when another process moved it (WitnessConflict)."""

    def __init__(self, witness: Witness, log: LogKey) -> None:
        self.witness = witness
        self.log = log
        self._held: int | None = None

    def latest(self) -> Held | None:
        """What the witness holds for this log now."""
        held = self.witness.latest(self.log)
        self._held = held.checkpoint.size if held else 0
        return held

    def publish(self, signed_note: str, tree: LocalTree) -> str:
        """The witness's cosigned note of ``signed_note`` (a checkpoint of ``tree``).

        Raises WitnessRefused when the witness holds a tree this one does not extend, and
        WitnessConflict when it holds a larger one (another process published a newer
        checkpoint: this one is stale; re-read the log and sign again)."""
        size = checkpoint_of(signed_note).size
        old = self._held
        if old is None:
            held = self.latest()
            old = held.checkpoint.size if held else 0
        for _ in range(3):
            if old > size:
                raise WitnessConflict(old)
            proof: Sequence[bytes] = tree.consistency(old, size) if 0 < old < size else []
            entries = tree.entries(old, size) if tree.entries is not None else None
            try:
                cosigned = self.witness.add_checkpoint(self.log, old, proof, signed_note, entries)
            except WitnessConflict as conflict:
                old = self._held = conflict.held_size
                continue
            self._held = size
            return cosigned
        raise WitnessConflict(old)
