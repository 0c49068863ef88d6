"""The audit tail (auditor role): the audit trail in sequence order from a cursor, for export to
a SIEM; with ``follow``, each new entry as it is written.

Contract:

- the cursor is the seq of the last entry the client has: entries with ``seq > after_seq`` come
  in seq order, read from the store in pages of :data:`TAIL_PAGE` (never the whole trail);
- seqs are contiguous (the sequencer gives each entry the next one, and pruning deletes
  only a prefix), so an entry whose seq is not the cursor's next one means the entries between
  are gone: a :class:`TailGap` naming them comes first. That is how a cursor older than the
  oldest retained entry (retention pruned past it) learns what it missed;
- the call is audited once, when it starts (its reason names the cursor, ``follow`` and the
  limit); never per poll, or a follow would feed itself an entry per poll;
- a cursor past the newest entry is refused (FAILED_PRECONDITION): it belongs to another trail,
  or this one was restored from an older backup, and following it would skip the entries that
  take those seqs again;
- with ``follow`` the stream waits between polls through ``wait``, given by the transport: it
  waits about one poll interval and answers whether the call is still on (not cancelled, its
  deadline not passed; it raises if the server is stopping). The service reads no clock for it;
- each entry comes with its inclusion proof against the latest signed checkpoint, the proofs of
  a page from one read of the tree (:mod:`.audit_proofs`); entries newer than the checkpoint
  (a follow's new entries, usually) come without one (``tree_size`` 0).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from vault_service.errors import FailedPrecondition, InvalidArgument
from vault_service.policy import Action
from vault_service.service.access import Access
from vault_service.service.audit_proofs import AuditProofs, ProvedEntry
from vault_service.service.audit_queries import sequenced
from vault_service.service.types import CallContext
from vault_service.storage import RecordStore

#: entries read from the store at a time
TAIL_PAGE = 500
#: the largest ``limit`` a call may ask for (0: no limit)
MAX_TAIL_LIMIT = 1_000_000
#: the largest cursor (a seq is a signed 64-bit integer in both stores)
MAX_SEQ = 2**63 - 1


@dataclass(frozen=True)
class TailGap:
    """Entries ``from_seq``..``to_seq`` (both included) are not in the trail."""

    from_seq: int
    to_seq: int


def describe(after_seq: int, follow: bool, limit: int) -> str:
    """The reason of the call's audit entry."""
    text = f"audit tailed: after_seq {after_seq}, follow {'on' if follow else 'off'}"
    return text + (f", limit {limit}" if limit else "")


class AuditTail:
    """The tail of the audit trail for the auditor role (see the module docstring)."""

    def __init__(self, access: Access, store: RecordStore, proofs: AuditProofs) -> None:
        self.access = access
        self.store = store
        self.proofs = proofs

    def tail(
        self,
        call: CallContext,
        after_seq: int,
        follow: bool,
        limit: int,
        wait: Callable[[], bool],
    ) -> Iterator[ProvedEntry | TailGap]:
        """The entries after ``after_seq`` (and gaps), then with ``follow`` the new ones."""
        if not 0 <= after_seq <= MAX_SEQ:
            raise InvalidArgument("after_seq must not be negative")
        if not 0 <= limit <= MAX_TAIL_LIMIT:
            raise InvalidArgument(f"limit must be between 0 (no limit) and {MAX_TAIL_LIMIT}")
        self.access.allow(call, Action.AUDIT_TAIL)
        self.store.append_audit(
            self.access.row(call, Action.AUDIT_TAIL, describe(after_seq, follow, limit))
        )
        sequenced(self.store)
        head = self.store.audit_head()  # this call's own entry, or a later one
        if head is not None and after_seq >= head.seq:
            raise FailedPrecondition(
                "after_seq is past the newest audit entry: a cursor of another trail, or of this "
                "one before it was restored from a backup"
            )
        return self._stream(after_seq, follow, limit, wait)

    def _stream(
        self, cursor: int, follow: bool, limit: int, wait: Callable[[], bool]
    ) -> Iterator[ProvedEntry | TailGap]:
        sent = 0
        while True:
            size = min(TAIL_PAGE, limit - sent) if limit else TAIL_PAGE
            sequenced(self.store)  # what was committed since the last page
            page = self.store.audit_entries(cursor, size)
            for proved in self.proofs.prove(page) if page else ():
                entry = proved.entry
                if entry.seq > cursor + 1:
                    yield TailGap(cursor + 1, entry.seq - 1)
                yield proved
                cursor = entry.seq
            sent += len(page)
            if limit and sent >= limit:
                return
            if len(page) == size:
                continue  # more written already: no wait
            if not follow or not wait():
                return
