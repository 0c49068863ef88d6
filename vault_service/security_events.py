"""Security events: distinct, counted, alertable, and free of PHI.

Each event is one log line at ERROR with ``"security_event": <name>`` and one increment of
``vault_security_events_total{event=<name>}``. The names are fixed (:data:`EVENTS`); what each
means and what an operator does about it is in docs/operations.md.

Repeated denials are detected here: :class:`DenialWatch` counts each principal's refusals in a
sliding window and raises ``repeated_denials`` once per window when a principal crosses the
threshold. The principal (a service identity from the policy file, not a person) is in the log
line, never in a metric label.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque

from vault_service import metrics
from vault_service.logs import fields

log = logging.getLogger("vault_service.security")

EVENTS = frozenset(
    {
        "integrity_failure",  # stored ciphertext or a wrapped key failed authentication
        "repeated_denials",  # one principal refused many times in a short window
        "expired_share_read",  # a recipient read a share after its end
        "share_tampered",  # a share's row no longer matches its sealed terms
        "event_tampered",  # a sealed business event failed authentication
        "audit_verification_failed",  # the audit chain or its checkpoints do not verify
        "audit_checkpoint_failed",  # the signed checkpoint could not be written
        "audit_write_failed",  # an audit entry could not be written (its operation failed)
        "deletion_verification_failed",  # an erasure was found not complete
        "erasure_replayed",  # a restored database had a ledgered destruction undone; redone
        "key_provider_down",  # the key provider failed long enough to turn NOT_SERVING
        "key_epoch_job_failed",  # the root-key rotation/destruction job failed
        "dormancy_job_failed",  # dormancy notices, separation or destruction did not run
        "retention_job_failed",  # records due under their retention rule were not shredded
        "purge_job_failed",  # erased subjects' rows and blobs were not purged
        "share_sweep_job_failed",  # expired or revoked shares' keys were not destroyed
        "blob_sweep_job_failed",  # partial uploads or orphan blobs were not removed
        "audit_prune_job_failed",  # audit entries past their retention were not pruned
        "ledger_write_failed",  # a committed destruction could not be added to the ledger
        "pending_deletions_job_failed",  # deletions no hold blocks any more were not carried out
        "witness_backfill_job_failed",  # records of an older version are not yet witnessed
        "index_backfill_job_failed",  # records not yet in their searchable fields' blind index
        "log_rollback_detected",  # a log is shorter than its witnessed checkpoint: plaintext withheld
        "log_fork_detected",  # a log has another root than its witnessed checkpoint: withheld
        "ledger_repaired",  # destructions the restored ledger lacked were restored from the witness
        "witness_unreachable",  # a checkpoint could not be given to the witness (retried)
        "witness_check_job_failed",  # the logs were not compared with the witness this time
    }
)


def emit(event: str, **facts: object) -> None:
    """Log and count one security event. ``facts`` must be free of PHI (counts, kinds, ids of
    records or certificates, principal names)."""
    if event not in EVENTS:
        raise ValueError(f"unknown security event {event!r}")
    metrics.SECURITY_EVENTS.labels(event=event).inc()
    log.error("security event", extra=fields(security_event=event, **facts))


class DenialWatch:
    """Raises ``repeated_denials`` when one principal is refused ``threshold`` times within
    ``window`` seconds; then stays quiet for that principal until a window has passed."""

    def __init__(self, threshold: int = 10, window: float = 60.0) -> None:
        self.threshold = threshold
        self.window = window
        self._seen: dict[str, deque[float]] = {}
        self._alerted: dict[str, float] = {}
        self._lock = threading.Lock()

    def denied(self, principal: str, now: float | None = None) -> bool:
        """Note one refusal; True if it raised the event."""
        now = time.monotonic() if now is None else now
        with self._lock:
            times = self._seen.setdefault(principal, deque())
            times.append(now)
            while times and times[0] <= now - self.window:
                times.popleft()
            count = len(times)
            last = self._alerted.get(principal)
            fire = count >= self.threshold and (last is None or now - last >= self.window)
            if fire:
                self._alerted[principal] = now
            if len(self._seen) > 10_000:  # bounded: forget principals with no recent refusal
                for name in [p for p, t in self._seen.items() if not t]:
                    del self._seen[name]
        if fire:
            emit("repeated_denials", principal=principal, denials=count, window_seconds=self.window)
        return fire
