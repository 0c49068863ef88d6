"""Both logs and their witness, for one process: the start-up check, the sequencer's checkpoint,
the continuous check. What each finding does is written here once:

- the ledger is behind or forked (start-up, continuous check): repaired from the witness, then
  replayed (``ledger_repaired``);
- the audit tree is behind the witnessed checkpoint (start-up, continuous check): halt,
  ``log_rollback_detected``;
- the audit tree has another root at the witnessed size (start-up, continuous check): halt,
  ``log_fork_detected``;
- the witness refuses the sequencer's checkpoint: halt, ``log_fork_detected``;
- new entries do not chain (ChainBroken, sequencer): halt, ``audit_verification_failed``;
- the witness cannot be reached at start-up: halt until a check reaches it (cause ``witness``);
- the witness cannot be reached while serving: serving goes on; ``witness_unreachable``, the
  lag metric grows, and every run retries.

A halt withholds every release of plaintext (:mod:`.integrity`); an operator acts by the
procedure of docs/audit.md ("When the vault halts"), then restarts.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from vault_service import metrics, security_events
from vault_service.audit.chain import Checkpoint
from vault_service.audit.checkpoints import CheckpointStore
from vault_service.audit.model import job_row
from vault_service.audit.publish import Publisher, Verdict, compare
from vault_service.audit.witness import LogKey, Witness, WitnessRefused, reset_statement
from vault_service.crypto.signing import SigningKey
from vault_service.errors import Unavailable
from vault_service.lifecycle import audit_log
from vault_service.lifecycle.integrity import Integrity
from vault_service.lifecycle.ledger import DestructionLedger
from vault_service.lifecycle.ledger_sync import LEDGER_LOG, LedgerSync, WitnessCopyCorrupt
from vault_service.logs import fields
from vault_service.storage import RecordStore
from vault_service.tlog.note import sign_note

log = logging.getLogger("vault_service.witnessing")

_HALT_EVENT = {Verdict.BEHIND: "log_rollback_detected", Verdict.FORKED: "log_fork_detected"}


class Witnessing:
    """The logs of one process and their witness (see the module docstring). ``witness`` None:
    checkpoints are signed and kept locally only, and nothing is checked against a witness."""

    def __init__(
        self,
        store: RecordStore,
        ledger: DestructionLedger,
        checkpoints: CheckpointStore,
        signer: Callable[[], SigningKey],
        integrity: Integrity,
        witness: Witness | None,
        audit_origin: str = "",
    ) -> None:
        self.store = store
        self.ledger = ledger
        self.checkpoints = checkpoints
        self._signer = signer
        self.integrity = integrity
        self.witness = witness
        public = signer().public_key()
        self.audit_origin = audit_origin or audit_log.default_origin(public, audit_log.AUDIT_TREE)
        self.ledger_origin = audit_log.default_origin(public, LEDGER_LOG)
        self.audit_publisher: Publisher | None = None
        self.ledger_sync: LedgerSync | None = None
        if witness is not None:
            self.audit_publisher = Publisher(witness, LogKey(self.audit_origin, public))
            ledger_pub = Publisher(witness, LogKey(self.ledger_origin, public))
            self.ledger_sync = LedgerSync(ledger, ledger_pub, self.ledger_origin)
            ledger.after_append = self._ledger_appended

    # the ledger ------------------------------------------------------------------------------
    def _ledger_appended(self, signer: SigningKey) -> None:
        """After each ledger append: publish; never raises (the destruction is durable)."""
        assert self.ledger_sync is not None
        try:
            self.ledger_sync.publish(signer)
        except WitnessRefused:
            # the ledger changed under a running server: the next check repairs it
            log.warning("ledger checkpoint refused by the witness", extra=fields(log=LEDGER_LOG))
        except Exception as exc:
            security_events.emit("witness_unreachable", log=LEDGER_LOG, error_type=type(exc).__name__)

    def reconcile_ledger(self) -> int:
        """Repair the ledger from the witness if it is behind or forked; returns how many lines
        were restored (the caller replays). Unavailable when the witness cannot be reached."""
        if self.ledger_sync is None:
            return 0
        try:
            return self.ledger_sync.reconcile(self._signer()).restored
        except WitnessCopyCorrupt:
            self.integrity.halt("ledger", "log_fork_detected", "the witness's ledger copy is corrupt")
            return 0

    # the audit trail -------------------------------------------------------------------------
    def check_audit(self) -> Verdict:
        """Compare the stored audit tree with the witnessed checkpoint; halt on a rollback or a
        fork. Unavailable when the witness cannot be reached."""
        if self.audit_publisher is None:
            return Verdict.UNWITNESSED
        held = self.audit_publisher.latest()
        verdict = compare(held, audit_log.audit_tree(self.store))
        if verdict in _HALT_EVENT:
            assert held is not None
            self.integrity.halt(
                "audit",
                _HALT_EVENT[verdict],
                f"audit tree {verdict.value} the witnessed checkpoint of size {held.checkpoint.size}",
            )
        return verdict

    def startup(self) -> int:
        """The check before serving: the ledger repaired if it must be (returns the lines
        restored: the caller then replays), the audit trail compared. An unreachable witness
        halts until :meth:`check` reaches it."""
        try:
            restored = self.reconcile_ledger()
            self.check_audit()
        except Unavailable:
            self.integrity.halt("witness", "witness_unreachable", "witness unreachable at start-up")
            return 0
        return restored

    def check(self, replay: Callable[[], object]) -> None:
        """The continuous check of every process: the ledger (repaired and replayed if it must
        be), then the audit trail; lifts a start-up halt that was only the witness's absence."""
        try:
            if self.reconcile_ledger():
                replay()
            self.check_audit()
        except Unavailable:
            security_events.emit("witness_unreachable", stage="check")
            return
        self.integrity.clear("witness")

    def checkpoint(self, now: float) -> Checkpoint | None:
        """The sequencer's run: integrate, sign, witness (see the module docstring). Nothing
        is signed while the audit trail is halted (a rolled-back or forked trail)."""
        if "audit" in self.integrity.causes():
            return None
        try:
            cp = audit_log.write_checkpoint(
                self.store,
                self.checkpoints,
                self._signer(),
                now,
                origin=self.audit_origin,
                publisher=self.audit_publisher,
            )
        except audit_log.ChainBroken:
            self.integrity.halt("audit", "audit_verification_failed", "new entries do not chain")
            raise
        except WitnessRefused as refused:
            self.integrity.halt("audit", "log_fork_detected", str(refused))
            raise
        except Unavailable:
            metrics.WITNESS_LAG.labels(audit_log.AUDIT_TREE).set(
                self.store.tree_size(audit_log.AUDIT_TREE) - self._witnessed_size()
            )
            security_events.emit("witness_unreachable", log=audit_log.AUDIT_TREE)
            raise
        metrics.WITNESS_LAG.labels(audit_log.AUDIT_TREE).set(0)
        return cp

    def acknowledge_restore(self, reason: str, now: float) -> tuple[int, int] | None:
        """An operator's acknowledgment that the audit trail was restored from a backup (docs/
        audit.md, "When the vault halts"): the entries after the backup are lost, and the vault
        says so rather than serve as if they never were. In order: an audit entry naming the
        witnessed size and the restored one and the reason; a signed ``restore`` marker in the
        checkpoint store (``audit verify`` then checks the older checkpoints only up to the
        restored size); the witness's reset (it keeps the statement and the lost checkpoint in
        its history); a fresh checkpoint. Returns (witnessed size, restored size), or None
        when the trail is consistent with the witness (nothing to acknowledge)."""
        if self.audit_publisher is None:
            return None
        held = self.audit_publisher.latest()
        tree = audit_log.audit_tree(self.store)
        if held is None or compare(held, tree) is Verdict.CONSISTENT:
            return None
        signer = self._signer()
        lost, restored = held.checkpoint.size, tree.size
        self.store.append_audit(
            job_row(
                "audit.restore_acknowledged",
                f"restore acknowledged: witnessed size {lost}, restored trail size {restored}"
                f" ({lost - restored} entries lost); reason: {reason}",
                now,
            )
        )
        audit_log.mark_restore(self.checkpoints, signer, restored, now)
        statement = sign_note(reset_statement(held, restored, reason), self.audit_origin, signer)
        self.audit_publisher.witness.reset(self.audit_publisher.log, statement)
        self.audit_publisher.latest()
        self.checkpoint(now)
        return lost, restored

    def _witnessed_size(self) -> int:
        try:
            held = self.audit_publisher.latest() if self.audit_publisher else None
        except Unavailable:
            return 0
        return held.checkpoint.size if held else 0
