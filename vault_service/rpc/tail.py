"""TailAudit over gRPC: the stream of audit entries (and gaps) from a cursor, and how a followed
tail waits between polls of the trail.

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
from vault_service.audit.model import AuditEntry
from vault_service.errors import ResourceExhausted, Unavailable
from vault_service.rpc.interceptor import current_call
from vault_service.service import VaultService
from vault_service.service.audit_tail import TailGap


def audit_event(e: AuditEntry) -> pb.AuditEvent:
    """An audit entry as the API sends it."""
    return pb.AuditEvent(
        seq=e.seq,
        at=e.row.at,
        principal=e.row.principal,
        action=e.row.action,
        purpose=e.row.purpose,
        subject_pseudonym=e.row.subject_pseudonym,
        record_id=e.row.record_id,
        decision=e.row.decision,
        reason=e.row.reason,
        correlation_id=e.row.correlation_id,
        category=e.row.category or "",
        released_fields=list(e.row.released_fields or ()),
        role=e.row.role or "",
    )


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
        with self._slot(request.follow):
            for item in items:
                if isinstance(item, TailGap):
                    gap = pb.TailGap(from_seq=item.from_seq, to_seq=item.to_seq)
                    yield pb.TailAuditItem(gap=gap)
                else:
                    yield pb.TailAuditItem(event=audit_event(item))

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
