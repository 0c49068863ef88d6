"""Legal holds: place, list and release.

While a hold is active on a subject (or one of its records), nothing that existed when it was
placed is destroyed: erasure and deletions are recorded and carried out at the release, an update
keeps the replaced version until then, a read-once record is marked consumed (never released
again) and destroyed then; retention and dormancy leave held data alone. Releasing a hold carries
out, through the one erase and shred paths, every recorded deletion no other hold still blocks.

A hold's reason and case reference can say more about the person than the vault may keep in
plaintext: they are stored sealed under the subject key ("legal-hold" {subject, hold}) and the
audit entries name the hold by its id only.
"""

from __future__ import annotations

import json
from dataclasses import replace

from vault_service.clock import Clock
from vault_service.crypto.context import hold_context
from vault_service.crypto.derive import subject_ref
from vault_service.errors import FailedPrecondition, InvalidArgument, NotFound
from vault_service.ids import new_record_id
from vault_service.key_hierarchy import KeyHierarchy
from vault_service.lifecycle.erasure import Eraser
from vault_service.policy import Action
from vault_service.service import validate
from vault_service.service.access import Access
from vault_service.service.legacy import seal_plaintext
from vault_service.service.types import CallContext
from vault_service.storage import RecordStore
from vault_service.storage.rows import HoldRow

MAX_HOLD_REASON = 200


class Holds:
    """Legal holds (see the module docstring)."""

    def __init__(
        self, access: Access, keys: KeyHierarchy, store: RecordStore, eraser: Eraser, clock: Clock
    ) -> None:
        self.access = access
        self.keys = keys
        self.store = store
        self.eraser = eraser
        self.clock = clock

    def place(
        self, call: CallContext, subject_id: str, reason: str, case_reference: str, record_id: str = ""
    ) -> HoldRow:
        """Block every deletion path for a subject (or one of its records) until released."""
        validate.subject_id(subject_id)
        if not reason or len(reason) > MAX_HOLD_REASON:
            raise InvalidArgument(f"a hold needs a reason (at most {MAX_HOLD_REASON} characters)")
        validate.reference(case_reference, "case_reference")
        if record_id:
            validate.record_id(record_id)
        ref = subject_ref(self.keys.index_key, subject_id)
        self.access.allow(call, Action.HOLD_PLACE, ref=ref)
        if record_id:
            meta = self.store.get_meta(record_id)
            if meta is None or meta.subject_ref != ref:
                raise NotFound()
        now = self.clock.now()
        hold_id = new_record_id(now)
        terms = json.dumps({"reason": reason, "case_reference": case_reference}, sort_keys=True)
        sealed = self.keys.seal_for_subject(ref, hold_context(ref, hold_id), terms.encode())
        if sealed is None:
            raise FailedPrecondition("no such subject (unknown or erased)")
        hold = HoldRow(hold_id, ref, record_id, "", "", call.principal.name, now, sealed=sealed)
        audit = self.access.row(call, Action.HOLD_PLACE, f"hold {hold_id}", ref=ref, record_id=record_id)
        self.store.place_hold(hold, audit)
        return replace(hold, reason=reason, case_reference=case_reference)

    def _opened(self, holds: list[HoldRow]) -> list[HoldRow]:
        """The holds with their reasons and case references (while the subject is live)."""
        out = []
        for hold in holds:
            if hold.sealed:
                ctx = hold_context(hold.subject_ref, hold.hold_id)
                opened = self.keys.open_for_subject(hold.subject_ref, ctx, hold.sealed)
                if opened is not None:
                    terms = json.loads(opened)
                    hold = replace(  # noqa: PLW2901
                        hold, reason=terms["reason"], case_reference=terms["case_reference"]
                    )
            out.append(hold)
        return out

    def seal_legacy_terms(self) -> int:
        """Seal the hold reasons and case references older versions stored in plaintext."""
        return seal_plaintext(
            self.keys, self.store.plaintext_hold_terms, hold_context, self.store.seal_hold_terms
        )

    def list(self, call: CallContext, subject_id: str) -> list[HoldRow]:
        """A subject's holds, released ones included."""
        validate.subject_id(subject_id)
        ref = subject_ref(self.keys.index_key, subject_id)
        self.access.allow(call, Action.HOLD_LIST, ref=ref)
        return self._opened(self.store.list_holds(ref))

    def release(self, call: CallContext, hold_id: str) -> tuple[HoldRow, int]:
        """Release a hold, then carry out the deletions asked for during it that no other
        active hold still blocks. Returns the hold and how many deletions were carried out."""
        validate.record_id(hold_id, "hold_id")
        self.access.allow(call, Action.HOLD_RELEASE)
        audit = self.access.row(call, Action.HOLD_RELEASE, f"hold {hold_id} released")
        hold = self.store.release_hold(hold_id, self.clock.now(), audit)
        if hold is None:
            raise NotFound()
        done = self.eraser.release(hold.subject_ref, hold_id)
        return self._opened([hold])[0], done
