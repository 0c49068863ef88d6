"""Verifying the audit entries QueryAudit and TailAudit send, offline, pure: no I/O, no clock.

What a reader checks of each entry (docs/audit.md, "Proofs for users"):

1. the checkpoint note verifies: an Ed25519 note signature under the audit log's origin by the
   vault's audit public key (and, if the reader pins it, the witness's cosignature);
2. the entry's fields hash to its ``entry_hash`` (:func:`~vault_service.audit.chain.entry_hash`,
   the optional fields hashed exactly as the entry records them), and its ``leaf_index`` is
   ``seq - 1``;
3. its inclusion proof shows leaf ``SHA-256(0x00 || entry_hash)`` at ``leaf_index`` in the tree of
   ``tree_size`` leaves whose root the note states (``tree_size`` must be the note's size).

An entry newer than the checkpoint comes with ``tree_size`` 0 and no proof: it passes 1 and 2,
and is reported as not yet provable (the sequencer integrates it within a second: ask again).
An entry the checkpoint covers that comes without a proof fails, so a server cannot avoid a
proof by withholding it. :class:`Prover` checks a stream of entries (a page, a tail): each note
once, and each entry against the one before it when their seqs follow.

``event`` is anything with the attributes of :class:`ProvableEvent` (the SDK's
``client.results.AuditEvent``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from vault_service.audit.chain import GENESIS, entry_hash
from vault_service.audit.model import AuditRow
from vault_service.tlog import merkle, note


class ProvableEvent(Protocol):
    """The fields of an audit event as QueryAudit and TailAudit send them."""

    @property
    def seq(self) -> int: ...
    @property
    def at(self) -> float: ...
    @property
    def principal(self) -> str: ...
    @property
    def action(self) -> str: ...
    @property
    def purpose(self) -> str: ...
    @property
    def subject_pseudonym(self) -> str: ...
    @property
    def record_id(self) -> str: ...
    @property
    def decision(self) -> str: ...
    @property
    def reason(self) -> str: ...
    @property
    def correlation_id(self) -> str: ...
    @property
    def category(self) -> str: ...
    @property
    def released_fields(self) -> Sequence[str]: ...
    @property
    def role(self) -> str: ...
    @property
    def leaf_index(self) -> int: ...
    @property
    def entry_hash(self) -> bytes: ...
    @property
    def prev_hash(self) -> bytes: ...
    @property
    def inclusion_proof(self) -> Sequence[bytes]: ...
    @property
    def tree_size(self) -> int: ...
    @property
    def witnessed_version(self) -> int | None: ...
    @property
    def category_recorded(self) -> bool: ...
    @property
    def released_fields_recorded(self) -> bool: ...
    @property
    def role_recorded(self) -> bool: ...


@dataclass(frozen=True)
class EventCheck:
    """What :func:`verify_event` found: ``ok`` False is a failure (``reason`` says which);
    ``proved`` False with ``ok`` True is an entry newer than the checkpoint."""

    ok: bool
    proved: bool
    reason: str


def row_of(event: ProvableEvent) -> AuditRow:
    """The audit row an event states, optional fields as the entry records them."""
    return AuditRow(
        at=event.at,
        principal=event.principal,
        action=event.action,
        decision=event.decision,
        reason=event.reason,
        purpose=event.purpose,
        subject_pseudonym=event.subject_pseudonym,
        record_id=event.record_id,
        correlation_id=event.correlation_id,
        witnessed_version=event.witnessed_version,
        category=event.category if event.category_recorded else None,
        released_fields=tuple(event.released_fields) if event.released_fields_recorded else None,
        role=event.role if event.role_recorded else None,
    )


def open_checkpoint(
    signed_note: str, origin: str, public_key: bytes, witness: tuple[str, bytes] | None = None
) -> note.Checkpoint:
    """The checkpoint of ``signed_note`` once it verifies under ``origin`` with ``public_key``
    (and carries a valid cosignature by ``witness`` = (name, public key), if given).
    :class:`~vault_service.tlog.note.NoteError` says why it does not."""
    if not signed_note:
        raise note.NoteError("no signed checkpoint: the entries cannot be proved")
    checkpoint = note.open_checkpoint(signed_note, origin, public_key)
    if witness is not None:
        note.verify_cosignature(signed_note, *witness)
    return checkpoint


def verify_event(event: ProvableEvent, checkpoint: note.Checkpoint) -> EventCheck:
    """Checks 2 and 3 of the module docstring against a checkpoint already verified (1)."""
    size = checkpoint.size
    if event.leaf_index != event.seq - 1 or event.seq < 1:
        return EventCheck(False, False, f"its leaf index {event.leaf_index} is not seq - 1")
    if len(event.entry_hash) != merkle.HASH_SIZE or len(event.prev_hash) != merkle.HASH_SIZE:
        return EventCheck(False, False, "its entry hash or previous hash is not 32 bytes")
    if event.seq == 1 and event.prev_hash != GENESIS:
        return EventCheck(False, False, "entry 1 does not follow the genesis hash")
    if entry_hash(event.prev_hash, event.seq, row_of(event)) != event.entry_hash:
        return EventCheck(False, False, "its fields do not hash to its entry hash (altered)")
    if event.tree_size == 0:
        if event.leaf_index < size:
            return EventCheck(
                False, False, f"the checkpoint of size {size} covers it but it came without a proof"
            )
        return EventCheck(True, False, f"newer than the checkpoint of size {size}: not yet provable")
    if event.tree_size != size:
        return EventCheck(
            False, False, f"its proof is against size {event.tree_size}, the checkpoint's is {size}"
        )
    leaf = merkle.leaf_hash(event.entry_hash)
    if not merkle.verify_inclusion(
        leaf, event.leaf_index, size, list(event.inclusion_proof), checkpoint.root
    ):
        return EventCheck(
            False, False, f"its inclusion proof does not verify against the checkpoint of size {size}"
        )
    return EventCheck(True, True, f"included in the checkpoint of size {size}")


class Prover:
    """Checks a stream of events (see the module docstring): each note opened once, each event
    verified against its note, and against the event before it when their seqs follow."""

    def __init__(self, origin: str, public_key: bytes, witness: tuple[str, bytes] | None = None) -> None:
        self.origin = origin
        self.public_key = public_key
        self.witness = witness
        self._opened: dict[str, note.Checkpoint] = {}
        self._last: tuple[int, bytes] | None = None

    def checkpoint(self, signed_note: str) -> note.Checkpoint:
        """The verified checkpoint of a note (NoteError if it does not verify)."""
        found = self._opened.get(signed_note)
        if found is None:
            found = open_checkpoint(signed_note, self.origin, self.public_key, self.witness)
            self._opened = {signed_note: found}  # a stream moves on to newer notes
        return found

    def check(self, event: ProvableEvent, signed_note: str) -> EventCheck:
        """One event against the note its proof is against."""
        try:
            checkpoint = self.checkpoint(signed_note)
        except note.NoteError as e:
            return EventCheck(False, False, f"the checkpoint note does not verify: {e}")
        last, self._last = self._last, (event.seq, event.entry_hash)
        if last is not None and event.seq == last[0] + 1 and event.prev_hash != last[1]:
            return EventCheck(False, False, f"it does not follow entry {last[0]} (another prev_hash)")
        return verify_event(event, checkpoint)
