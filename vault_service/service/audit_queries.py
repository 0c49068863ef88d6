"""Audit queries: an auditor's paged search of the audit trail (the query is audited too), each
entry with its inclusion proof against the latest signed checkpoint (:mod:`.audit_proofs`)."""

from __future__ import annotations

from vault_service import security_events
from vault_service.errors import InvalidArgument, Unavailable
from vault_service.policy import Action
from vault_service.service import validate
from vault_service.service.access import Access
from vault_service.service.audit_proofs import AuditPage, AuditProofs
from vault_service.service.types import CallContext
from vault_service.storage import AuditQuery, RecordStore
from vault_service.storage.tree_nodes import PendingTampered


def sequenced(store: RecordStore) -> None:
    """Move the calls' pending audit entries into the chain, so that an auditor's query sees
    every entry committed before it (its own included). A gap or a bad MAC among them is
    UNAVAILABLE here (the sequencer job halts the release of plaintext on it)."""
    try:
        while store.sequence_pending():
            pass
    except PendingTampered:
        security_events.emit("audit_verification_failed", stage="query")
        raise Unavailable("the audit trail failed verification") from None


class AuditQueries:
    """Pages of audit entries for the auditor role."""

    def __init__(self, access: Access, store: RecordStore, proofs: AuditProofs) -> None:
        self.access = access
        self.store = store
        self.proofs = proofs

    def query(
        self, call: CallContext, query: AuditQuery, page_size: int = 0, page_token: str = ""
    ) -> AuditPage:
        """A page of entries matching ``query`` with their proofs, and the next page's token."""
        if not 0 <= page_size <= validate.MAX_AUDIT_PAGE:
            raise InvalidArgument(f"page_size must be between 0 and {validate.MAX_AUDIT_PAGE}")
        if page_token and not (page_token.isascii() and page_token.isdigit()):
            raise InvalidArgument("page_token is malformed")
        if query.decision not in ("", "allow", "deny"):
            raise InvalidArgument("decision must be 'allow' or 'deny'")
        for bound, what in ((query.since, "since"), (query.until, "until")):
            if bound is not None:
                validate.time(bound, what)
        self.access.allow(call, Action.AUDIT_QUERY)
        self.store.append_audit(self.access.row(call, Action.AUDIT_QUERY, "audit queried"))
        sequenced(self.store)
        size = page_size or 100
        rows = self.store.query_audit(query, int(page_token or 0), size + 1)
        checkpoint = self.proofs.latest()
        return AuditPage(
            self.proofs.prove(rows[:size], checkpoint),
            checkpoint.note if checkpoint is not None else "",
            str(rows[size - 1].seq) if len(rows) > size else "",
        )
