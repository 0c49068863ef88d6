"""Authorization and the audit rows of calls: every decision goes through :class:`Access`.

A refusal is audited (reason only, never PHI), logged, counted by action and reason, and watched
for a principal refused again and again (``repeated_denials``); then the caller gets
PERMISSION_DENIED. Allowed calls get the audit row their mutation writes in its own transaction
(reads write theirs before any plaintext is released).
"""

from __future__ import annotations

import logging
from typing import Any

from vault_service import metrics
from vault_service.audit.model import AuditRow
from vault_service.clock import Clock
from vault_service.crypto.derive import audit_pseudonym
from vault_service.errors import PermissionDenied
from vault_service.logs import fields
from vault_service.policy import AccessRequest, Action, Policy, decide
from vault_service.policy.decide import Decision
from vault_service.security_events import DenialWatch
from vault_service.service.types import CallContext
from vault_service.storage import RecordStore

log = logging.getLogger("vault_service.service")


class Access:
    """Builds access requests and audit rows, and turns denials into audited refusals."""

    def __init__(self, policy: Policy, store: RecordStore, clock: Clock) -> None:
        self.policy = policy
        self.store = store
        self.clock = clock
        #: raises ``repeated_denials``; the composition root sets it from the config
        self.denials = DenialWatch()

    def request(self, call: CallContext, action: Action, **details: Any) -> AccessRequest:
        """The policy question for this call, at server time."""
        return AccessRequest(principal=call.principal, action=action, now=self.clock.now(), **details)

    def row(
        self,
        call: CallContext,
        action: Action,
        reason: str,
        *,
        decision: str = "allow",
        purpose: str = "",
        ref: bytes | None = None,
        record_id: str = "",
        witnessed_version: int | None = None,
        category: str | None = None,
        released: frozenset[str] | None = None,
        watched: bool = True,
    ) -> AuditRow:
        """The audit row of this call (a denial is also logged, counted and, if ``watched``,
        watched for repeated denials). A release names the ``released`` fields (their names
        only) and so the caller's role too."""
        if decision == "deny":
            log.info("denied", extra=fields(action=action.value, reason=reason))
            metrics.DENIED.labels(action.value, reason).inc()
            if watched:
                self.denials.denied(call.principal.name)
        return AuditRow(
            at=self.clock.now(),
            principal=call.principal.name,
            action=action.value,
            decision=decision,
            reason=reason,
            purpose=purpose,
            subject_pseudonym=audit_pseudonym(ref) if ref else "",
            record_id=record_id,
            correlation_id=call.correlation_id,
            witnessed_version=witnessed_version,
            category=category,
            released_fields=None if released is None else tuple(sorted(released)),
            role=None if released is None else call.principal.role,
        )

    def refuse(
        self,
        call: CallContext,
        action: Action,
        reason: str,
        *,
        purpose: str = "",
        ref: bytes | None = None,
        record_id: str = "",
        category: str | None = None,
    ) -> PermissionDenied:
        """Audit a refusal; returns the error for the caller to raise."""
        self.store.append_audit(
            self.row(
                call,
                action,
                reason,
                decision="deny",
                purpose=purpose,
                ref=ref,
                record_id=record_id,
                category=category,
            )
        )
        return PermissionDenied()

    def check(
        self, call: CallContext, request: AccessRequest, *, ref: bytes | None = None, record_id: str = ""
    ) -> Decision:
        """Decide ``request``; a denial is audited (with the request's category, if it names
        one) and raised as PERMISSION_DENIED."""
        decision = decide(request, self.policy)
        if not decision.allowed:
            raise self.refuse(
                call,
                request.action,
                decision.reason,
                purpose=request.purpose or "",
                ref=ref,
                record_id=record_id,
                category=request.category,
            )
        return decision

    def allow(
        self, call: CallContext, action: Action, *, ref: bytes | None = None, record_id: str = ""
    ) -> None:
        """The role check of a call that needs no purpose (writes, lists, admin calls)."""
        self.check(call, self.request(call, action), ref=ref, record_id=record_id)
