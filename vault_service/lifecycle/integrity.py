"""The integrity halt: once the vault's logs fail a check, no plaintext leaves this process.

Set by the start-up check (the audit trail or the destruction ledger is not a consistent
extension of its witnessed checkpoint: a restore rolled it back, or it was edited or forked),
by the sequencer (the entries written since the last checkpoint do not chain: ChainBroken; the
witness refuses the new checkpoint), and by the continuous check of every process (the tree in
the database no longer agrees with the witness). Never a log line while serving goes on: every
release of plaintext (:meth:`Integrity.check_release`, called by the one decrypting path of
:mod:`vault_service.service.reads`) is refused with UNAVAILABLE, health turns NOT_SERVING, the
security event is raised once per cause and ``vault_integrity_halted`` is 1.

It is cleared only by a restart after an operator has acted (docs/audit.md, "When the vault
halts"): the start-up check then runs again. The one exception is a start-up halt caused only by
an unreachable witness: the first check that reaches it (and finds the logs consistent) lifts
it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from vault_service import metrics, security_events
from vault_service.errors import Unavailable

#: what a refused release says (no detail: the operator has the logs and the event)
WITHHELD = "plaintext withheld: the vault's logs failed an integrity check (operator action needed)"


class Integrity:
    """The halt state of this process (see the module docstring). Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._causes: dict[str, str] = {}
        self._listeners: list[Callable[[bool], None]] = []

    @property
    def halted(self) -> bool:
        with self._lock:
            return bool(self._causes)

    def causes(self) -> dict[str, str]:
        """Each cause of the halt (``audit``, ``ledger`` ...) and what was found (no PHI)."""
        with self._lock:
            return dict(self._causes)

    def halt(self, cause: str, event: str, finding: str) -> None:
        """Withhold plaintext from now on; raise ``event`` the first time for ``cause``."""
        with self._lock:
            first = cause not in self._causes
            self._causes.setdefault(cause, finding)
            listeners = list(self._listeners)
        if first:
            metrics.INTEGRITY_HALTED.set(1)
            security_events.emit(event, cause=cause, finding=finding, health="NOT_SERVING")
            for listener in listeners:
                listener(True)

    def clear(self, cause: str) -> None:
        """Lift the halt of ``cause`` (only the witness's absence at start-up is lifted this
        way, by a check that reached it); the others need an operator and a restart."""
        with self._lock:
            if self._causes.pop(cause, None) is None:
                return
            halted = bool(self._causes)
            listeners = list(self._listeners)
        if not halted:
            metrics.INTEGRITY_HALTED.set(0)
            for listener in listeners:
                listener(False)

    def on_change(self, listener: Callable[[bool], None]) -> None:
        """Call ``listener(halted)`` when the state changes (health)."""
        with self._lock:
            self._listeners.append(listener)
            halted = bool(self._causes)
        if halted:
            listener(True)

    def check_release(self) -> None:
        """Raise Unavailable if plaintext is withheld."""
        if self._causes:  # read without the lock: a dict's truth value is atomic
            raise Unavailable(WITHHELD)
