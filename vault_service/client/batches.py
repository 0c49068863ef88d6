"""Batches: many records per call (BatchPutRecords, BatchGetRecords), split into calls the server
accepts. Each item has its own outcome: its result, or the error its single call would have
raised (``vault_service.errors``), in the order given."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from vault_service.api.v1 import vault_pb2 as pb
from vault_service.client.results import PutResult, Record, RecordInfo
from vault_service.client.transport import Transport, error_of_code
from vault_service.errors import VaultError

#: the server's limit of items per batch call
MAX_BATCH_ITEMS = 500
#: the most request bytes the SDK puts in one call (the server takes 8 MiB by default)
MAX_BATCH_BYTES = 4 * 1024 * 1024

M = TypeVar("M", pb.PutRecordRequest, pb.GetRecordRequest)


@dataclass(frozen=True)
class RecordToPut:
    """One record to store (as :meth:`VaultClient.put_record`'s arguments)."""

    subject_id: str
    category: str
    fields: Mapping[str, str]
    content: bytes | None = None
    content_type: str = ""
    #: set it, so that a retried batch stores nothing twice
    idempotency_key: str = ""


@dataclass(frozen=True)
class RecordToGet:
    """One record to read (as :meth:`VaultClient.get_record`'s arguments)."""

    record_id: str
    purpose: str
    fields: Sequence[str] = ()
    include_content: bool = False


def split(messages: Iterable[M], items: int, size: int = MAX_BATCH_BYTES) -> Iterator[list[M]]:
    """``messages`` in consecutive groups of at most ``items`` and (but for a single larger
    message) ``size`` serialized bytes."""
    group: list[M] = []
    total = 0
    for m in messages:
        n = m.ByteSize() + 8  # the item's tag and length in the batch message
        if group and (len(group) >= items or total + n > size):
            yield group
            group, total = [], 0
        group.append(m)
        total += n
    if group:
        yield group


class BatchesMixin(Transport):
    """The batch methods of ``VaultClient``."""

    def put_records(
        self,
        records: Iterable[RecordToPut],
        *,
        batch_size: int = MAX_BATCH_ITEMS,
        timeout: float | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> list[PutResult | VaultError]:
        """Store ``records``, ``batch_size`` per call: per record its PutResult or its error.
        A call that fails as a whole (UNAVAILABLE: nothing of it was stored) raises; with
        idempotency keys, calling again with the same records is safe. ``progress`` is called
        with the number of records done after each call."""
        requests = (
            pb.PutRecordRequest(
                subject_id=r.subject_id,
                category=r.category,
                fields=dict(r.fields),
                content=r.content or b"",
                content_type=r.content_type,
                idempotency_key=r.idempotency_key,
            )
            for r in records
        )
        out: list[PutResult | VaultError] = []
        for group in split(requests, min(batch_size, MAX_BATCH_ITEMS)):
            resp = self._call(
                self._stub.BatchPutRecords, pb.BatchPutRecordsRequest(items=group), timeout
            )
            for res in resp.results:
                if res.status.code:
                    out.append(error_of_code(res.status.code, res.status.message))
                else:
                    out.append(PutResult(res.record.record_id, res.record.version))
            if progress is not None:
                progress(len(out))
        return out

    def get_records(
        self,
        records: Iterable[RecordToGet],
        *,
        batch_size: int = 100,
        timeout: float | None = None,
    ) -> list[Record | VaultError]:
        """Read ``records``, ``batch_size`` per call: per record its Record or its error. A
        call that fails as a whole (UNAVAILABLE: nothing of it was released) raises. Keep
        ``batch_size`` small enough for the answers (with content inline) to fit a message."""
        wanted = list(records)
        requests = (
            pb.GetRecordRequest(
                record_id=r.record_id,
                purpose=r.purpose,
                fields=list(r.fields),
                include_content=r.include_content,
            )
            for r in wanted
        )
        out: list[Record | VaultError] = []
        for group in split(requests, min(batch_size, MAX_BATCH_ITEMS)):
            resp = self._call(
                self._stub.BatchGetRecords, pb.BatchGetRecordsRequest(items=group), timeout
            )
            for req, res in zip(group, resp.results, strict=True):
                if res.status.code:
                    out.append(error_of_code(res.status.code, res.status.message))
                    continue
                rec = res.record
                content = rec.content if req.include_content and rec.content else None
                out.append(Record(RecordInfo.from_pb(rec.metadata), dict(rec.fields), content))
        return out
