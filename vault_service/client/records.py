"""Records: store, read, list, update and delete (crypto-shred) them."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from vault_service.api.v1 import vault_pb2 as pb
from vault_service.client.results import Page, PutResult, Record, RecordInfo
from vault_service.client.transport import Transport


class RecordsMixin(Transport):
    """The record methods of ``VaultClient``."""

    def put_record(
        self,
        subject_id: str,
        category: str,
        fields: Mapping[str, str],
        *,
        content: bytes | None = None,
        content_type: str = "",
        idempotency_key: str = "",
        timeout: float | None = None,
    ) -> PutResult:
        """Store a new record."""
        resp = self._call(
            self._stub.PutRecord,
            pb.PutRecordRequest(
                subject_id=subject_id,
                category=category,
                fields=dict(fields),
                content=content or b"",
                content_type=content_type,
                idempotency_key=idempotency_key,
            ),
            timeout,
        )
        return PutResult(resp.record_id, resp.version)

    def get_record(
        self,
        record_id: str,
        purpose: str,
        *,
        fields: list[str] | None = None,
        include_content: bool = False,
        timeout: float | None = None,
    ) -> Record:
        """Read a record for ``purpose``."""
        resp = self._call(
            self._stub.GetRecord,
            pb.GetRecordRequest(
                record_id=record_id,
                purpose=purpose,
                fields=fields or [],
                include_content=include_content,
            ),
            timeout,
        )
        return Record(
            RecordInfo.from_pb(resp.metadata),
            dict(resp.fields),
            resp.content if include_content and resp.content else None,
        )

    def list_records(
        self,
        subject_id: str,
        page_size: int = 0,
        page_token: str = "",
        timeout: float | None = None,
    ) -> Page:
        """One page of a subject's record metadata."""
        resp = self._call(
            self._stub.ListRecords,
            pb.ListRecordsRequest(subject_id=subject_id, page_size=page_size, page_token=page_token),
            timeout,
        )
        return Page([RecordInfo.from_pb(m) for m in resp.records], resp.next_page_token)

    def find_records(
        self,
        category: str,
        field: str,
        value: str,
        purpose: str,
        page_size: int = 0,
        page_token: str = "",
        timeout: float | None = None,
    ) -> Page:
        """One page of the records of ``category`` whose searchable ``field`` equals ``value``
        (after the field's normalisation) that ``purpose`` may read: metadata only."""
        resp = self._call(
            self._stub.FindRecords,
            pb.FindRecordsRequest(
                category=category,
                field=field,
                value=value,
                purpose=purpose,
                page_size=page_size,
                page_token=page_token,
            ),
            timeout,
        )
        return Page([RecordInfo.from_pb(m) for m in resp.records], resp.next_page_token)

    def iter_find_records(
        self, category: str, field: str, value: str, purpose: str, page_size: int = 50
    ) -> Iterator[RecordInfo]:
        """Every record :meth:`find_records` finds, page by page."""
        token = ""
        while True:
            page = self.find_records(category, field, value, purpose, page_size, token)
            yield from page.records
            if not page.next_page_token:
                return
            token = page.next_page_token

    def iter_records(self, subject_id: str, page_size: int = 100) -> Iterator[RecordInfo]:
        """Every record of a subject, page by page."""
        token = ""
        while True:
            page = self.list_records(subject_id, page_size, token)
            yield from page.records
            if not page.next_page_token:
                return
            token = page.next_page_token

    def update_record(
        self,
        record_id: str,
        fields: Mapping[str, str],
        *,
        content: bytes | None = None,
        content_type: str = "",
        expected_version: int = 0,
        timeout: float | None = None,
    ) -> PutResult:
        """Write a new complete version; the previous one is shredded."""
        resp = self._call(
            self._stub.UpdateRecord,
            pb.UpdateRecordRequest(
                record_id=record_id,
                fields=dict(fields),
                content=content or b"",
                content_type=content_type,
                expected_version=expected_version,
            ),
            timeout,
        )
        return PutResult(resp.record_id, resp.version)

    def restrict_record(
        self, record_id: str, restricted: bool = True, timeout: float | None = None
    ) -> bool:
        """Restrict (or, with ``restricted=False``, lift) processing of one record: while a
        correction or deletion request on it is in progress, only restriction-exempt purposes
        read it. False if it already was in that state; NotFound if there is no such record."""
        resp = self._call(
            self._stub.RestrictRecord,
            pb.RestrictRecordRequest(record_id=record_id, restricted=restricted),
            timeout,
        )
        return bool(resp.changed)

    def delete_record(self, record_id: str, timeout: float | None = None) -> None:
        """Crypto-shred a record."""
        self._call(self._stub.DeleteRecord, pb.DeleteRecordRequest(record_id=record_id), timeout)
