"""Batches: many records in one call (BatchPutRecords, BatchGetRecords), each item exactly as its
single call.

A batch pays the fixed cost of a call (the RPC, authentication, a transaction's commit) once for
many items; it changes no rule. Every item goes through the single call's own path
(:meth:`Records.put <vault_service.service.records.Records.put>`'s preparation,
:meth:`Reads.get_record <vault_service.service.reads.Reads.get_record>`): validation,
authorization, consent, restriction, read-once, idempotency and an audit entry per item. What a
batch shares is the commit:

- **puts**: every accepted item is inserted in one write transaction; an item refused there (an
  idempotency key reused for another request, an erased subject) undoes its own writes only.
- **gets**: the audit entries of the releases are appended in one transaction *before* the answer
  leaves; a read-once record is released and destroyed in its own transaction only after that
  commit, so that a failed batch never destroys a read-once record it did not hand out.

Per item, the status is the one its single call would have answered. Failures that are not the
item's own (:data:`BATCH_WIDE`: a dependency down, the vault's logs failing a check, a bug) fail
the whole call instead: nothing is stored, nothing released; the caller retries the batch (with
idempotency keys, a retried put never stores twice).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from vault_service.audit.model import AuditRow
from vault_service.errors import InvalidArgument, Status, VaultError
from vault_service.ids import is_record_id
from vault_service.policy import Policy
from vault_service.service.types import ContentStream
from vault_service.storage import RecordStore, StoredRecord
from vault_service.values import fast_init

#: the most items in one batch (and the message size limit: grpc's max receive size)
MAX_BATCH_ITEMS = 500

#: statuses that fail the whole batch rather than one item: none of them is about the item
BATCH_WIDE = frozenset({Status.UNAVAILABLE, Status.INTERNAL, Status.DEADLINE_EXCEEDED})


@fast_init
@dataclass(frozen=True)
class PutItem:
    """One PutRecord of a batch."""

    subject_id: str
    category: str
    fields: Mapping[str, str]
    content_type: str = ""
    content: bytes | ContentStream | None = None
    idempotency_key: str = ""


@fast_init
@dataclass(frozen=True)
class GetItem:
    """One GetRecord of a batch."""

    record_id: str
    purpose: str
    fields: frozenset[str] | None = None
    include_content: bool = False


def batch_size(count: int) -> None:
    """INVALID_ARGUMENT unless 1 <= count <= :data:`MAX_BATCH_ITEMS`."""
    if not 1 <= count <= MAX_BATCH_ITEMS:
        raise InvalidArgument(f"a batch has 1 to {MAX_BATCH_ITEMS} items")


def batch_item_error(exc: VaultError) -> VaultError:
    """``exc`` as one item's outcome; raised again if it must fail the whole batch."""
    if exc.status in BATCH_WIDE:
        raise exc
    return exc


@dataclass
class ReleaseBatch:
    """The releases of one BatchGetRecords, committed together (see the module docstring)."""

    #: the audit entries of the releases made so far, appended in one transaction at the end
    audits: list[AuditRow] = field(default_factory=list)
    #: per item index, a read-once release to carry out after that commit (its destruction)
    deferred: list[tuple[int, Callable[[], None]]] = field(default_factory=list)
    #: the records the batch asks for, read up front in one transaction: (purpose, id) -> record
    fetched: dict[tuple[str, str], StoredRecord] = field(default_factory=dict)
    #: the read-once records released so far (a later item finds them gone)
    claimed: set[str] = field(default_factory=set)
    #: the purposes the caller may read for at all (checked once: the same answer per item)
    allowed: set[str] = field(default_factory=set)
    #: the index of the item being read
    item: int = 0

    @classmethod
    def read(cls, store: RecordStore, policy: Policy, items: Sequence[GetItem]) -> ReleaseBatch:
        """A batch with its records read, one read transaction (one snapshot) per purpose; only
        the items their single call would read (a known purpose, a well-formed id)."""
        batch = cls()
        by_purpose: dict[str, list[str]] = {}
        for item in items:
            if item.purpose in policy.purposes and is_record_id(item.record_id):
                by_purpose.setdefault(item.purpose, []).append(item.record_id)
        for purpose, ids in by_purpose.items():
            found = store.get_records(ids, grants_for=purpose)
            batch.fetched.update(((purpose, r), stored) for r, stored in found.items())
        return batch

    def after_commit(self, consume: Callable[[], None]) -> None:
        """Carry out ``consume`` (the current item's read-once destruction) after the commit."""
        self.deferred.append((self.item, consume))
