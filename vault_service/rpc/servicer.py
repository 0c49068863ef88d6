"""The Vault gRPC servicer: converts messages to and from the service facade's Python values.

Thin on purpose: no decisions here. The principal comes from the interceptor (``current_call``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import grpc

from vault_service.api.v1 import vault_pb2 as pb
from vault_service.api.v1 import vault_pb2_grpc as pb_grpc
from vault_service.errors import InvalidArgument, VaultError
from vault_service.lifecycle.verification import FAILED, PENDING
from vault_service.policy.model import Grant
from vault_service.rpc.interceptor import current_call
from vault_service.rpc.tail import TailStreams, audit_event
from vault_service.service import ContentStream, GetItem, PutItem, RecordView, VaultService
from vault_service.service.breach_scope import Tally
from vault_service.storage import AuditQuery, RecordMeta
from vault_service.storage.rows import BreachQuery, HoldRow, ShareRow


def _consent(g: Grant) -> pb.Consent:
    return pb.Consent(
        grant_id=g.grant_id,
        purpose=g.purpose,
        grantee_principal=g.grantee_principal,
        grantee_role=g.grantee_role,
        scopes=[
            pb.CategoryScope(category=c, fields=sorted(g.fields.get(c, ())))
            for c in sorted(g.categories)
        ],
        valid_from=g.valid_from,
        valid_until=g.valid_until or 0.0,
        evidence_reference=g.evidence_reference,
        revoked_at=g.revoked_at or 0.0,
        party=g.party,
    )


def _tally(t: Tally) -> pb.BreachTally:
    return pb.BreachTally(
        recorded=t.recorded,
        name=t.name or "",
        role=t.role or "",
        releases=t.releases,
        subjects=t.subjects,
    )


def _view(view: RecordView, into: pb.GetRecordResponse | None = None) -> pb.GetRecordResponse:
    """``view`` as a GetRecordResponse: ``into`` (a batch's result, filled in place rather than
    built and copied: half the cost per item), or a new one."""
    out = pb.GetRecordResponse() if into is None else into
    _meta(view.meta, out.metadata).subject_pseudonym = view.subject_pseudonym
    out.fields.update(view.fields)
    if view.content:
        out.content = view.content
    return out


def _share(row: ShareRow) -> pb.Share:
    return pb.Share(
        share_id=row.share_id,
        recipient=row.recipient,
        purpose=row.purpose,
        record_count=row.record_count,
        fields=list(row.fields),
        expires_at=row.expires_at or 0.0,
        event_name=row.event_name,
        event_period_seconds=row.event_period or 0.0,
        created_at=row.created_at,
        revoked_at=row.revoked_at or 0.0,
    )


def _hold(h: HoldRow) -> pb.Hold:
    return pb.Hold(
        hold_id=h.hold_id,
        record_id=h.record_id,
        reason=h.reason,
        case_reference=h.case_reference,
        created_at=h.created_at,
        released_at=h.released_at or 0.0,
    )


def _meta(m: RecordMeta, into: pb.RecordMetadata | None = None) -> pb.RecordMetadata:
    out = pb.RecordMetadata() if into is None else into
    out.record_id = m.record_id
    out.category = m.category
    out.version = m.version
    out.content_type = m.content_type
    out.content_length = m.content_length or 0
    out.field_names.extend(m.field_names)
    out.created_at = m.created_at
    out.updated_at = m.updated_at
    out.restricted = m.restricted
    return out


_OK = pb.ItemStatus(code=0)


def _item_status(exc: VaultError) -> pb.ItemStatus:
    """One batch item's refusal: its status code and public message, as a single call's."""
    code: int = getattr(grpc.StatusCode, exc.status.value).value[0]
    return pb.ItemStatus(code=code, message=exc.public_message)


#: record destructions in one VerifyDeletion answer (about 800 bytes each with a certificate):
#: FAILED first, then PENDING, then the newest VERIFIED; vaultctl verify-deletion lists all
MAX_RECORD_RESULTS = 1000


class VaultServicer(pb_grpc.VaultServicer):
    """Implements vault.v1.Vault on a :class:`VaultService`."""

    def __init__(
        self, service: VaultService, tail_poll_seconds: float = 0.5, tail_max_follows: int = 2
    ) -> None:
        self._svc = service
        #: TailAudit's streams (``tails.stopping`` ends the followed ones when the server stops)
        self.tails = TailStreams(service, tail_poll_seconds, tail_max_follows)

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
        return _view(view)

    def BatchPutRecords(
        self, request: pb.BatchPutRecordsRequest, context: Any
    ) -> pb.BatchPutRecordsResponse:
        items = [
            PutItem(
                r.subject_id,
                r.category,
                dict(r.fields),
                r.content_type,
                r.content if r.content else None,
                r.idempotency_key,
            )
            for r in request.items
        ]
        results = [
            pb.BatchPutResult(status=_item_status(o))
            if isinstance(o, VaultError)
            else pb.BatchPutResult(status=_OK, record=pb.PutRecordResponse(record_id=o[0], version=o[1]))
            for o in self._svc.put_records(current_call.get(), items)
        ]
        return pb.BatchPutRecordsResponse(results=results)

    def BatchGetRecords(
        self, request: pb.BatchGetRecordsRequest, context: Any
    ) -> pb.BatchGetRecordsResponse:
        items = [
            GetItem(r.record_id, r.purpose, frozenset(r.fields) if r.fields else None, r.include_content)
            for r in request.items
        ]
        response = pb.BatchGetRecordsResponse()
        for outcome in self._svc.get_records(current_call.get(), items):
            result = response.results.add()
            if isinstance(outcome, VaultError):
                result.status.CopyFrom(_item_status(outcome))
            else:
                result.status.code = 0
                _view(outcome, result.record)
        return response

    def ListRecords(self, request: pb.ListRecordsRequest, context: Any) -> pb.ListRecordsResponse:
        rows, token = self._svc.list_records(
            current_call.get(), request.subject_id, request.page_size, request.page_token
        )
        return pb.ListRecordsResponse(records=[_meta(m) for m in rows], next_page_token=token)

    def FindRecords(self, request: pb.FindRecordsRequest, context: Any) -> pb.FindRecordsResponse:
        rows, token = self._svc.find_records(
            current_call.get(),
            request.category,
            request.field,
            request.value,
            request.purpose,
            request.page_size,
            request.page_token,
        )
        return pb.FindRecordsResponse(records=[_meta(m) for m in rows], next_page_token=token)

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
        page = self._svc.query_audit(current_call.get(), query, request.page_size, request.page_token)
        return pb.QueryAuditResponse(
            events=[audit_event(e) for e in page.entries],
            next_page_token=page.next_page_token,
            checkpoint=page.checkpoint,
        )

    def BreachScope(self, request: pb.BreachScopeRequest, context: Any) -> Iterator[pb.BreachScopeItem]:
        query = BreachQuery(
            start=request.from_time,
            end=request.to_time,
            principal=request.principal,
            category=request.category,
            purpose=request.purpose,
        )
        report = self._svc.breach_scope(current_call.get(), query)
        yield pb.BreachScopeItem(
            totals=pb.BreachScopeTotals(
                subjects=len(report.subjects),
                releases=report.releases,
                records=report.records,
                unrecorded=report.unrecorded,
                by_category=[_tally(t) for t in report.by_category],
                by_recipient=[_tally(t) for t in report.by_recipient],
                oldest_retained_at=report.coverage.oldest_at or 0.0,
                trail_pruned=report.coverage.pruned,
                complete=report.coverage.complete,
            )
        )
        for s in report.subjects:
            yield pb.BreachScopeItem(
                subject=pb.BreachSubject(
                    subject_pseudonym=s.subject_pseudonym,
                    releases=s.releases,
                    records=s.records,
                    first_at=s.first_at,
                    last_at=s.last_at,
                    disclosures=[
                        pb.BreachDisclosure(
                            recorded=d.category is not None,
                            category=d.category or "",
                            fields=list(d.fields or ()),
                            principal=d.principal,
                            role=d.role or "",
                            action=d.action,
                            purpose=d.purpose,
                            releases=d.releases,
                            first_at=d.first_at,
                            last_at=d.last_at,
                        )
                        for d in s.disclosures
                    ],
                )
            )

    def GrantConsent(self, request: pb.GrantConsentRequest, context: Any) -> pb.Consent:
        svc = self._svc
        grant = svc.grant_consent(
            current_call.get(),
            request.subject_id,
            request.purpose,
            {s.category: frozenset(s.fields) or None for s in request.scopes},
            request.valid_from or svc.clock.now(),
            request.valid_until or None,
            request.evidence_reference,
            request.grantee_principal,
            request.grantee_role,
            request.party,
        )
        return _consent(grant)

    def RevokeConsent(self, request: pb.RevokeConsentRequest, context: Any) -> pb.Consent:
        return _consent(self._svc.revoke_consent(current_call.get(), request.grant_id))

    def ListConsents(self, request: pb.ListConsentsRequest, context: Any) -> pb.ListConsentsResponse:
        grants = self._svc.list_consents(current_call.get(), request.subject_id)
        return pb.ListConsentsResponse(consents=[_consent(g) for g in grants])

    def RestrictProcessing(
        self, request: pb.RestrictProcessingRequest, context: Any
    ) -> pb.RestrictProcessingResponse:
        changed = self._svc.set_restriction(current_call.get(), request.subject_id, request.restricted)
        return pb.RestrictProcessingResponse(changed=changed)

    def ListNotices(self, request: pb.ListNoticesRequest, context: Any) -> pb.ListNoticesResponse:
        notices, token = self._svc.list_notices(
            current_call.get(), request.kind, request.page_size, request.page_token
        )
        return pb.ListNoticesResponse(
            notices=[
                pb.Notice(
                    subject_id=n.subject_id,
                    kind=n.kind,
                    due_at=n.due_at,
                    effective_at=n.effective_at,
                    subject_pseudonym=n.subject_pseudonym,
                )
                for n in notices
            ],
            next_page_token=token,
        )

    def RestrictRecord(
        self, request: pb.RestrictRecordRequest, context: Any
    ) -> pb.RestrictProcessingResponse:
        changed = self._svc.restrict_record(current_call.get(), request.record_id, request.restricted)
        return pb.RestrictProcessingResponse(changed=changed)

    def ExportSubject(
        self, request: pb.ExportSubjectRequest, context: Any
    ) -> Iterator[pb.GetRecordResponse]:
        for view in self._svc.export_subject(current_call.get(), request.subject_id, request.purpose):
            yield _view(view)

    def RecordEvent(self, request: pb.RecordEventRequest, context: Any) -> pb.RecordEventResponse:
        recorded = self._svc.record_event(
            current_call.get(), request.subject_id, request.name, request.at or None
        )
        return pb.RecordEventResponse(recorded=recorded)

    def CreateShare(self, request: pb.CreateShareRequest, context: Any) -> pb.Share:
        row = self._svc.shares.create_share(
            current_call.get(),
            request.subject_id,
            request.recipient,
            request.purpose,
            list(request.record_ids),
            list(request.fields),
            request.expires_at or None,
            request.event_name,
            request.event_period_seconds or None,
        )
        return _share(row)

    def ReadShare(self, request: pb.ReadShareRequest, context: Any) -> Iterator[pb.ShareItem]:
        for item in self._svc.shares.read_share(current_call.get(), request.share_id):
            if item.view is not None:
                yield pb.ShareItem(record=_view(item.view))
            else:
                yield pb.ShareItem(
                    content=pb.ContentPiece(
                        record_id=item.record_id, offset=item.offset, data=item.content
                    )
                )

    def RevokeShare(self, request: pb.RevokeShareRequest, context: Any) -> pb.Share:
        return _share(self._svc.shares.revoke_share(current_call.get(), request.share_id))

    def ListShares(self, request: pb.ListSharesRequest, context: Any) -> pb.ListSharesResponse:
        rows = self._svc.shares.list_shares(current_call.get(), request.subject_id)
        return pb.ListSharesResponse(shares=[_share(r) for r in rows])

    def ListReceivedShares(
        self, request: pb.ListReceivedSharesRequest, context: Any
    ) -> pb.ListSharesResponse:
        rows = self._svc.shares.received_shares(current_call.get())
        return pb.ListSharesResponse(shares=[_share(r) for r in rows])

    def UploadRecord(
        self, request_iterator: Iterator[pb.UploadChunk], context: Any
    ) -> pb.PutRecordResponse:
        first = next(request_iterator, None)
        if first is None or first.WhichOneof("part") != "header":
            raise InvalidArgument("an upload starts with its header")
        h = first.header

        def pieces() -> Iterator[bytes]:
            for chunk in request_iterator:
                kind = chunk.WhichOneof("part")
                if kind == "data":
                    yield chunk.data
                elif kind == "end":
                    # the end marker ends the upload: anything after it would be dropped
                    if next(request_iterator, None) is not None:
                        raise InvalidArgument("messages after the end marker: nothing was stored")
                    return
                else:
                    raise InvalidArgument("an upload has exactly one header")
            raise InvalidArgument("the upload ended without its end marker: nothing was stored")

        stream = ContentStream(pieces(), h.declared_size or None)
        call = current_call.get()
        if h.record_id:
            record_id, version = self._svc.update_record(
                call, h.record_id, dict(h.fields), h.content_type, stream, h.expected_version
            )
        else:
            record_id, version = self._svc.put_record(
                call, h.subject_id, h.category, dict(h.fields), h.content_type, stream, h.idempotency_key
            )
        return pb.PutRecordResponse(record_id=record_id, version=version)

    def DownloadContent(
        self, request: pb.DownloadContentRequest, context: Any
    ) -> Iterator[pb.ContentPiece]:
        for offset, data in self._svc.download_content(
            current_call.get(), request.record_id, request.purpose, request.offset, request.length
        ):
            yield pb.ContentPiece(record_id=request.record_id, offset=offset, data=data)

    def PlaceHold(self, request: pb.PlaceHoldRequest, context: Any) -> pb.Hold:
        return _hold(
            self._svc.place_hold(
                current_call.get(),
                request.subject_id,
                request.reason,
                request.case_reference,
                request.record_id,
            )
        )

    def ReleaseHold(self, request: pb.ReleaseHoldRequest, context: Any) -> pb.ReleaseHoldResponse:
        hold, done = self._svc.release_hold(current_call.get(), request.hold_id)
        return pb.ReleaseHoldResponse(hold=_hold(hold), deletions_carried_out=done)

    def ListHolds(self, request: pb.ListHoldsRequest, context: Any) -> pb.ListHoldsResponse:
        holds = self._svc.list_holds(current_call.get(), request.subject_id)
        return pb.ListHoldsResponse(holds=[_hold(h) for h in holds])

    def VerifyDeletion(
        self, request: pb.VerifyDeletionRequest, context: Any
    ) -> pb.VerifyDeletionResponse:
        call = current_call.get()
        results = self._svc.verify_deletions(call)
        checked = self._svc.verify_record_deletions(call)
        rank = {FAILED: 0, PENDING: 1}
        records = sorted(checked, key=lambda r: (rank.get(r.status, 2), -r.erased_at))
        records = records[:MAX_RECORD_RESULTS]

        def cert(c: dict[str, Any] | None) -> str:
            return json.dumps(c, sort_keys=True) if c else ""

        return pb.VerifyDeletionResponse(
            records_total=len(checked),
            erasures=[
                pb.ErasureVerification(
                    subject_pseudonym=r.subject_pseudonym,
                    erased_at=r.erased_at,
                    result=r.label,
                    reasons=r.reasons,
                    certificate_json=cert(r.certificate),
                )
                for r in results
            ],
            records=[
                pb.RecordDeletionVerification(
                    subject_pseudonym=r.subject_pseudonym,
                    record_id=r.record_id,
                    cause=r.cause,
                    destroyed_at=r.erased_at,
                    result=r.label,
                    reasons=r.reasons,
                    certificate_json=cert(r.certificate),
                )
                for r in records
            ],
        )

    def TailAudit(self, request: pb.TailAuditRequest, context: Any) -> Iterator[pb.TailAuditItem]:
        return self.tails.items(request, context)
