"""Subject rights: restriction of processing, access and portability (export), erasure.

- Restriction suspends reads except for restriction-exempt purposes (storage and corrections are
  still accepted: restriction is not deletion); lifting it restores them.
- Export releases every record of the subject that a subject-rights purpose may see, through the
  one release step (read-once records are released once and destroyed, as by any read). While
  processing is restricted only restriction-exempt purposes export (the shipped subject-access
  purposes are). Records kept by law after an erasure are not the subject's to export: only
  purposes with ``retained_access`` see them.
- Erasure (withdrawal) goes through the one erase path (:mod:`..lifecycle.erasure`); asking again
  is not an error: the answer says nothing was erased.
"""

from __future__ import annotations

from collections.abc import Iterator

from vault_service.clock import Clock
from vault_service.crypto.derive import subject_ref
from vault_service.errors import NotFound, PermissionDenied
from vault_service.key_hierarchy import KeyHierarchy
from vault_service.lifecycle.erasure import Eraser
from vault_service.lifecycle.shredding import Requester
from vault_service.policy import Action, Policy
from vault_service.service import validate
from vault_service.service.access import Access
from vault_service.service.reads import Reads
from vault_service.service.types import Ask, CallContext, RecordView
from vault_service.storage import RecordStore, SubjectState

_EXPORT_PAGE = 100


class SubjectRights:
    """Restriction, export and erasure (see the module docstring)."""

    def __init__(
        self,
        access: Access,
        keys: KeyHierarchy,
        store: RecordStore,
        reads: Reads,
        eraser: Eraser,
        policy: Policy,
        clock: Clock,
    ) -> None:
        self.access = access
        self.keys = keys
        self.store = store
        self.reads = reads
        self.eraser = eraser
        self.policy = policy
        self.clock = clock

    def set_restriction(self, call: CallContext, subject_id: str, restricted: bool) -> bool:
        """Restrict processing or lift the restriction. False if the subject is unknown. The
        person's request is activity: a separated (dormant) subject is brought back first."""
        validate.subject_id(subject_id)
        ref = subject_ref(self.keys.index_key, subject_id)
        self.access.allow(call, Action.SUBJECT_RESTRICT, ref=ref)
        self.keys.reactivate(ref)
        state = SubjectState.RESTRICTED if restricted else SubjectState.ACTIVE
        reason = "restricted" if restricted else "restriction lifted"
        audit = self.access.row(call, Action.SUBJECT_RESTRICT, reason, ref=ref)
        return self.store.set_subject_state(ref, state, self.clock.now(), audit)

    def export(self, call: CallContext, subject_id: str, purpose: str) -> Iterator[RecordView]:
        """Every record of a subject the purpose may release, decrypted (records of categories
        the purpose does not cover are left out)."""
        validate.subject_id(subject_id)
        validate.purpose(self.policy, purpose)
        ref = subject_ref(self.keys.index_key, subject_id)
        request = self.access.request(call, Action.SUBJECT_EXPORT, purpose=purpose)
        self.access.check(call, request, ref=ref)
        after = ""
        while True:
            page = self.store.list_records(ref, _EXPORT_PAGE, after or None)
            for meta in page:
                stored = self.store.get_record(meta.record_id, grants_for=purpose)
                if stored is None:
                    continue
                ask = Ask(content=True)
                decision = self.reads.decide(
                    call,
                    Action.SUBJECT_EXPORT,
                    purpose,
                    stored,
                    ask.wanted(),
                    quiet=True,
                )
                if not decision.allowed:
                    continue
                try:
                    yield self.reads.release(
                        call, Action.SUBJECT_EXPORT, purpose, stored, decision, ask
                    ).view
                except (NotFound, PermissionDenied):
                    continue  # a read-once record another read released meanwhile
            if len(page) < _EXPORT_PAGE:
                return
            after = page[-1].record_id

    def erase(self, call: CallContext, subject_id: str) -> bool:
        """Destroy the subject key: every record unreadable at once, O(1); rows purge later.
        Under a legal hold the erasure is recorded, carried out at the hold's release, and the
        caller gets FAILED_PRECONDITION. False if there was nothing (left) to erase."""
        validate.subject_id(subject_id)
        ref = subject_ref(self.keys.index_key, subject_id)
        self.access.allow(call, Action.SUBJECT_ERASE, ref=ref)
        audit = self.access.row(call, Action.SUBJECT_ERASE, "subject key destroyed", ref=ref)
        return self.eraser.erase(ref, audit, Requester(call.principal.name, "erasure"))
