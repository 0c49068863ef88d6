"""Named fault points for crash tests: a real process kill at a chosen moment.

``VAULT_FAULTS="retention.after_delete:3"`` makes the process SIGKILL itself the third time it
passes that point. Unset (always, in production) the check is one dictionary lookup.
"""

from __future__ import annotations

import os
import signal
import threading

_hits: dict[str, int] = {}
_lock = threading.Lock()


def _armed() -> dict[str, int]:
    spec = os.environ.get("VAULT_FAULTS", "")
    out: dict[str, int] = {}
    for item in filter(None, spec.split(",")):
        name, _, count = item.partition(":")
        out[name] = int(count or "1")
    return out


_ARMED = _armed()


def fault_point(name: str) -> None:
    """Kill this process (SIGKILL, no cleanup) if ``name`` is armed and its count is reached."""
    target = _ARMED.get(name)
    if target is None:
        return
    with _lock:
        _hits[name] = _hits.get(name, 0) + 1
        if _hits[name] >= target:
            os.kill(os.getpid(), signal.SIGKILL)
