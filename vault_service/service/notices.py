"""Lifecycle notices: what the application must tell a person before the vault acts.

Today one kind: ``dormancy``. ``notice`` seconds before a subject would become dormant the
dormancy job records a ``dormancy_notice`` event; from then until the subject is active again
(any write or read) or dormant, :meth:`Notices.list` answers it, naming the subject by the id the
application used. The vault keeps that id only sealed under the subject key (written with the
subject's first record since this version), so it dies with the subject at erasure; a subject
not written since is answered with an empty id and its audit pseudonym.

Polling is at-least-once by design: a notice is listed on every poll while it is due, and the
application records that it sent it (sending twice is harmless, missing one is not). Every id
released is on the audit record first (one entry per notice, fail closed).
"""

from __future__ import annotations

from dataclasses import dataclass

from vault_service.crypto.context import subject_id_context
from vault_service.crypto.derive import audit_pseudonym
from vault_service.errors import IntegrityError, InvalidArgument
from vault_service.key_hierarchy import KeyHierarchy
from vault_service.lifecycle.events import BusinessEvents
from vault_service.policy import Action
from vault_service.policy.model import Dormancy
from vault_service.service.access import Access
from vault_service.service.types import CallContext
from vault_service.storage import RecordStore

KINDS = ("dormancy",)
MAX_PAGE = 1000


@dataclass(frozen=True)
class Notice:
    """A notice due: whom to tell ("" if the vault has no id for the subject), what, since when,
    and when the change takes effect unless the subject is active again."""

    subject_id: str
    kind: str
    due_at: float
    effective_at: float
    subject_pseudonym: str


class Notices:
    """Lists the lifecycle notices due (see the module docstring)."""

    def __init__(
        self,
        access: Access,
        keys: KeyHierarchy,
        store: RecordStore,
        events: BusinessEvents,
        rule: Dormancy | None,
    ) -> None:
        self.access = access
        self.keys = keys
        self.store = store
        self.events = events
        #: the policy's dormancy rule (None: off, nothing is ever due)
        self.rule = rule

    def list(
        self, call: CallContext, kind: str = "", page_size: int = 0, page_token: str = ""
    ) -> tuple[list[Notice], str]:
        """A page of the notices due (``kind`` "" for every kind); returns (notices,
        next_page_token). With dormancy off nothing is ever due."""
        if kind and kind not in KINDS:
            raise InvalidArgument(f"kind must be one of: {', '.join(KINDS)} (or empty)")
        if not 0 <= page_size <= MAX_PAGE:
            raise InvalidArgument(f"page_size must be between 0 and {MAX_PAGE}")
        try:
            after = bytes.fromhex(page_token)
        except ValueError:
            raise InvalidArgument("page_token is malformed") from None
        self.access.allow(call, Action.NOTICE_LIST)
        rule = self.rule
        if rule is None:
            return [], ""
        size = page_size or 100
        rows = self.store.due_notices(after, size + 1)
        notices = []
        for row in rows[:size]:
            ref = row.subject_ref
            try:
                due_at = self.events.checked(ref, row.event)  # read with the row: no second query
            except IntegrityError:
                due_at = row.event.at  # an edited notice time must not hide the notice
            subject_id = ""
            if row.sealed_id is not None:
                opened = self.keys.open_for_subject(ref, subject_id_context(ref), row.sealed_id)
                subject_id = opened.decode() if opened is not None else ""
            notice = Notice(
                subject_id,
                "dormancy",
                due_at,
                row.last_activity + rule.after,
                audit_pseudonym(ref),
            )
            self.store.append_audit(
                self.access.row(call, Action.NOTICE_LIST, "dormancy notice listed", ref=ref)
            )
            notices.append(notice)
        next_token = rows[size - 1].subject_ref.hex() if len(rows) > size else ""
        return notices, next_token
