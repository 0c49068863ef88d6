"""The Vault gRPC servicer: converts messages to and from the service facade's Python values.

Thin on purpose: no decisions here. The principal comes from the interceptor (``current_call``).
"""

from __future__ import annotations

from typing import Any

from vault_service.api.v1 import vault_pb2 as pb
from vault_service.api.v1 import vault_pb2_grpc as pb_grpc
from vault_service.rpc.interceptor import current_call
from vault_service.service import VaultService
from vault_service.storage import AuditQuery, RecordMeta


def _meta(m: RecordMeta) -> pb.RecordMetadata:
    return pb.RecordMetadata(
        record_id=m.record_id,
        category=m.category,
        version=m.version,
        content_type=m.content_type,
        content_length=m.content_length or 0,
        field_names=list(m.field_names),
        created_at=m.created_at,
        updated_at=m.updated_at,
    )


class VaultServicer(pb_grpc.VaultServicer):
    """Implements vault.v1.Vault on a :class:`VaultService`."""

    def __init__(self, service: VaultService) -> None:
        self._svc = service

    def PutRecord(self, request: pb.PutRecordRequest, context: Any) -> pb.PutRecordResponse:
        record_id, version = self._svc.put_record(
            current_call.get(),
            request.subject_id,
            request.category,
            dict(request.fields),
            request.content_type,
            request.content if request.content else None,
            request.idempotency_key,
        )
        return pb.PutRecordResponse(record_id=record_id, version=version)

    def GetRecord(self, request: pb.GetRecordRequest, context: Any) -> pb.GetRecordResponse:
        view = self._svc.get_record(
            current_call.get(),
            request.record_id,
            request.purpose,
            frozenset(request.fields) if request.fields else None,
            request.include_content,
        )
        return pb.GetRecordResponse(
            metadata=_meta(view.meta), fields=dict(view.fields), content=view.content or b""
        )

    def ListRecords(self, request: pb.ListRecordsRequest, context: Any) -> pb.ListRecordsResponse:
        rows, token = self._svc.list_records(
            current_call.get(), request.subject_id, request.page_size, request.page_token
        )
        return pb.ListRecordsResponse(records=[_meta(m) for m in rows], next_page_token=token)

    def UpdateRecord(self, request: pb.UpdateRecordRequest, context: Any) -> pb.UpdateRecordResponse:
        record_id, version = self._svc.update_record(
            current_call.get(),
            request.record_id,
            dict(request.fields),
            request.content_type,
            request.content if request.content else None,
            request.expected_version,
        )
        return pb.UpdateRecordResponse(record_id=record_id, version=version)

    def DeleteRecord(self, request: pb.DeleteRecordRequest, context: Any) -> pb.DeleteRecordResponse:
        self._svc.delete_record(current_call.get(), request.record_id)
        return pb.DeleteRecordResponse(deleted=True)

    def EraseSubject(self, request: pb.EraseSubjectRequest, context: Any) -> pb.EraseSubjectResponse:
        erased = self._svc.erase_subject(current_call.get(), request.subject_id)
        return pb.EraseSubjectResponse(erased=erased)

    def QueryAudit(self, request: pb.QueryAuditRequest, context: Any) -> pb.QueryAuditResponse:
        query = AuditQuery(
            subject_pseudonym=request.subject_pseudonym,
            principal=request.principal,
            action=request.action,
            decision=request.decision,
            since=request.since or None,
            until=request.until or None,
        )
        entries, token = self._svc.query_audit(
            current_call.get(), query, request.page_size, request.page_token
        )
        return pb.QueryAuditResponse(
            events=[
                pb.AuditEvent(
                    seq=e.seq,
                    at=e.row.at,
                    principal=e.row.principal,
                    action=e.row.action,
                    purpose=e.row.purpose,
                    subject_pseudonym=e.row.subject_pseudonym,
                    record_id=e.row.record_id,
                    decision=e.row.decision,
                    reason=e.row.reason,
                    correlation_id=e.row.correlation_id,
                )
                for e in entries
            ],
            next_page_token=token,
        )
