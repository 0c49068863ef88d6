"""The audit trail: query its events, tail it from a cursor, and the breach scope of a window
(auditor role)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import grpc

from vault_service.api.v1 import vault_pb2 as pb
from vault_service.client.results import (
    AUDIT_EVENT_FIELDS,
    AuditEvent,
    AuditPage,
    BreachDisclosure,
    BreachScope,
    BreachSubject,
    BreachTally,
    TailGap,
)
from vault_service.client.transport import Transport, status_error
from vault_service.errors import Unavailable

__all__ = ["AUDIT_EVENT_FIELDS", "AuditMixin"]


class AuditMixin(Transport):
    """The audit method of ``VaultClient``."""

    def query_audit(
        self,
        *,
        subject_pseudonym: str = "",
        principal: str = "",
        action: str = "",
        decision: str = "",
        since: float = 0.0,
        until: float = 0.0,
        page_size: int = 0,
        page_token: str = "",
        timeout: float | None = None,
    ) -> tuple[list[dict[str, Any]], str]:
        """One page of audit events (auditor role); returns (events, next_page_token), each
        event a dict of :data:`AUDIT_EVENT_FIELDS` (:meth:`AuditEvent.as_dict`). With the
        checkpoint its proofs are against: :meth:`query_audit_page`."""
        page = self.query_audit_page(
            subject_pseudonym=subject_pseudonym,
            principal=principal,
            action=action,
            decision=decision,
            since=since,
            until=until,
            page_size=page_size,
            page_token=page_token,
            timeout=timeout,
        )
        return [e.as_dict() for e in page.events], page.next_page_token

    def query_audit_page(
        self,
        *,
        subject_pseudonym: str = "",
        principal: str = "",
        action: str = "",
        decision: str = "",
        since: float = 0.0,
        until: float = 0.0,
        page_size: int = 0,
        page_token: str = "",
        timeout: float | None = None,
    ) -> AuditPage:
        """One page of audit events (auditor role) as :class:`AuditEvent` values, with the
        signed checkpoint note their inclusion proofs are against (``vault_service.audit.prove``
        verifies them offline)."""
        resp = self._call(
            self._stub.QueryAudit,
            pb.QueryAuditRequest(
                subject_pseudonym=subject_pseudonym,
                principal=principal,
                action=action,
                decision=decision,
                since=since,
                until=until,
                page_size=page_size,
                page_token=page_token,
            ),
            timeout,
        )
        events = tuple(AuditEvent.from_pb(e, resp.checkpoint) for e in resp.events)
        return AuditPage(events, resp.next_page_token, resp.checkpoint)

    def tail_audit(
        self,
        after_seq: int = 0,
        follow: bool = False,
        limit: int = 0,
        *,
        timeout: float | None = None,
    ) -> Iterator[AuditEvent | TailGap]:
        """The audit trail after the cursor ``after_seq`` in seq order (auditor role), each
        entry as it arrives; a :class:`TailGap` first where entries past the cursor are gone
        (pruned). With ``follow`` the iteration then goes on with each new entry as it is
        written, until you stop iterating (closing the iterator cancels the call) or the server
        stops (``Unavailable``: tail again from the last seq you got). ``limit`` (0: none) ends
        it after that many entries. ``timeout`` is the call's deadline: by default the client's
        for a page, none for a follow. Each event carries the checkpoint note its proof is
        against (``AuditEvent.checkpoint``: the stream sends a note once, the events after it
        share it)."""
        request = pb.TailAuditRequest(after_seq=after_seq, follow=follow, limit=limit)
        deadline = timeout if timeout is not None else None if follow else self._deadline(None)
        responses = self._stub.TailAudit(request, metadata=self._metadata_now(), timeout=deadline)
        checkpoint = ""
        try:
            for item in responses:
                if item.HasField("gap"):
                    yield TailGap(item.gap.from_seq, item.gap.to_seq)
                elif item.HasField("event"):
                    checkpoint = item.checkpoint or checkpoint
                    yield AuditEvent.from_pb(item.event, checkpoint)
        except grpc.RpcError as exc:
            raise status_error(exc) from None
        finally:
            responses.cancel()  # type: ignore[no-untyped-call]  # a follow left early: end it

    def breach_scope(
        self,
        start: float,
        end: float,
        *,
        principal: str = "",
        category: str = "",
        purpose: str = "",
        timeout: float | None = None,
    ) -> BreachScope:
        """The breach scope of the window ``start <= at <= end`` (auditor role): per subject
        pseudonym the categories and fields released, to whom and when, with counts."""
        filters = {"principal": principal, "category": category, "purpose": purpose}
        request = pb.BreachScopeRequest(from_time=start, to_time=end, **filters)
        totals: pb.BreachScopeTotals | None = None
        subjects: list[BreachSubject] = []
        for item in self._stream(self._stub.BreachScope, request, self._deadline(timeout)):
            if item.HasField("totals"):
                totals = item.totals
            else:
                s = item.subject
                subjects.append(
                    BreachSubject(
                        s.subject_pseudonym,
                        s.releases,
                        s.records,
                        s.first_at,
                        s.last_at,
                        tuple(BreachDisclosure.from_pb(d) for d in s.disclosures),
                    )
                )
        if totals is None or totals.subjects != len(subjects):
            raise Unavailable("the breach scope arrived incomplete: ask again")
        return BreachScope(
            start,
            end,
            filters,
            totals.releases,
            totals.records,
            totals.unrecorded,
            tuple(
                BreachTally(t.name if t.recorded else None, None, t.releases, t.subjects)
                for t in totals.by_category
            ),
            tuple(
                BreachTally(t.name, t.role if t.recorded else None, t.releases, t.subjects)
                for t in totals.by_recipient
            ),
            tuple(subjects),
            oldest_retained_at=totals.oldest_retained_at or None,
            trail_pruned=totals.trail_pruned,
            complete=totals.complete,
        )
