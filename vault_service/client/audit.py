"""The audit trail: query its events (auditor role)."""

from __future__ import annotations

from typing import Any

from vault_service.api.v1 import vault_pb2 as pb
from vault_service.client.transport import Transport

#: the fields of an audit event, as the keys of the dicts ``query_audit`` returns
AUDIT_EVENT_FIELDS = (
    "seq",
    "at",
    "principal",
    "action",
    "purpose",
    "subject_pseudonym",
    "record_id",
    "decision",
    "reason",
    "correlation_id",
)


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
        """One page of audit events (auditor role); returns (events, next_page_token)."""
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
        events = [{f: getattr(e, f) for f in AUDIT_EVENT_FIELDS} for e in resp.events]
        return events, resp.next_page_token
