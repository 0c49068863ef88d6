"""TailAudit over gRPC: the stream of audit entries (and gaps) from a cursor, and how a followed
tail waits between polls of the trail; and :func:`audit_event`, an entry with its proof as both
QueryAudit and TailAudit send it.

An event carries the checkpoint note its proof is against only when it differs from the last one
the stream sent (a note is some 300 bytes: not repeated on every event).

Contract: a followed tail waits on its call, never on the service's clock. Each wait lasts the
poll interval (``[audit] tail_poll_seconds``) and wakes at once when the call ends (cancelled by
the client, or its deadline passed: gRPC has already given the client its status, CANCELLED or
DEADLINE_EXCEEDED, so the stream just stops). When the server is stopping, the stream fails
with UNAVAILABLE at its next wait: the client resumes from the last seq it received. The call
is audited once by the service, whatever the number of polls.

A followed tail holds one of the server's ``workers`` threads for as long as it runs, so at most
``[audit] tail_max_follows`` run at once (and never all the workers: the server keeps one for
the other calls); one more is RESOURCE_EXHAUSTED, after the service has validated, authorized
and audited it (a caller without the right is still refused with PERMISSION_DENIED, audited).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import Any

from vault_service.api.v1 import vault_pb2 as pb
from vault_service.errors import ResourceExhausted, Unavailable
from vault_service.rpc.interceptor import current_call
from vault_service.service import VaultService
from vault_service.service.audit_proofs import ProvedEntry
from vault_service.service.audit_tail import TailGap


def audit_event(proved: ProvedEntry) -> pb.AuditEvent:
    """An audit entry as the API sends it (QueryAudit and TailAudit alike): its fields, with
    what a reader needs to recompute its hash exactly (which optional fields it records), and
    its inclusion proof (docs/audit.md, "Proofs for users")."""
    e, row = proved.entry, proved.entry.row
    event = pb.AuditEvent(
        seq=e.seq,
        at=row.at,
        principal=row.principal,
        action=row.action,
        purpose=row.purpose,
        subject_pseudonym=row.subject_pseudonym,
        record_id=row.record_id,
        decision=row.decision,
        reason=row.reason,
        correlation_id=row.correlation_id,
        released_fields=list(row.released_fields or ()),
        leaf_index=e.seq - 1,
        entry_hash=e.entry_hash,
        prev_hash=e.prev_hash,
        inclusion_proof=list(proved.inclusion_proof),
        tree_size=proved.tree_size,
        released_fields_recorded=row.released_fields is not None,
    )
    # optional fields: set only when the entry records them (their presence is hashed)
    if row.category is not None:
        event.category = row.category
    if row.role is not None:
        event.role = row.role
    if row.witnessed_version is not None:
        event.witnessed_version = row.witnessed_version
    return event


class TailStreams:
    """The TailAudit handler's work: the service's tail as messages, with the call's waits."""

    def __init__(self, service: VaultService, poll_seconds: float, max_follows: int) -> None:
        self._svc = service
        self._poll = poll_seconds
        self._max_follows = max_follows
        self._follows = threading.BoundedSemaphore(max_follows)
        #: set when the server begins to stop: followed tails end with UNAVAILABLE
        self.stopping = threading.Event()

    def items(self, request: pb.TailAuditRequest, context: Any) -> Iterator[pb.TailAuditItem]:
        # validated, authorized and audited here, before anything is sent
        items = self._svc.tail_audit(
            current_call.get(), request.after_seq, request.follow, request.limit, self._waiter(context)
        )
        sent = ""  # the checkpoint note last sent: sent again only when it changes
        with self._slot(request.follow):
            for item in items:
                if isinstance(item, TailGap):
                    gap = pb.TailGap(from_seq=item.from_seq, to_seq=item.to_seq)
                    yield pb.TailAuditItem(gap=gap)
                else:
                    note = item.checkpoint if item.checkpoint != sent else ""
                    sent = item.checkpoint or sent
                    yield pb.TailAuditItem(event=audit_event(item), checkpoint=note)

    @contextlib.contextmanager
    def _slot(self, follow: bool) -> Iterator[None]:
        """One of the ``max_follows`` slots for a followed tail (a page needs none)."""
        if not follow:
            yield
            return
        if not self._follows.acquire(blocking=False):
            raise ResourceExhausted(
                f"{self._max_follows} followed audit tails run already: try again later"
            )
        try:
            yield
        finally:
            self._follows.release()

    def _waiter(self, context: Any) -> Callable[[], bool]:
        """The wait between two polls of a followed tail: True while the call is still on.
        The call's end (cancelled, or its deadline passed: gRPC has then sent the client its
        status) wakes it at once; the stream must never end by itself before that, or the
        client would take a cut-off follow for a finished one."""
        ended = threading.Event()
        if not context.add_callback(ended.set):  # the call has already ended
            ended.set()

        def wait() -> bool:
            if not self.stopping.is_set():
                ended.wait(self._poll)
            if self.stopping.is_set():
                raise Unavailable("the server is stopping: resume after the last seq received")
            return not ended.is_set() and bool(context.is_active())

        return wait
