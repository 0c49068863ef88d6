"""A subject's rights and lifecycle: erasure and its verification, restriction of processing,
export (subject access and portability), and the business events that end retention periods and
shares."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from vault_service.api.v1 import vault_pb2 as pb
from vault_service.client.results import Record, RecordInfo
from vault_service.client.transport import Transport


class SubjectsMixin(Transport):
    """The subject methods of ``VaultClient``."""

    def erase_subject(self, subject_id: str, timeout: float | None = None) -> bool:
        """Erase a subject (its key is destroyed; every record unreadable at once)."""
        resp = self._call(
            self._stub.EraseSubject, pb.EraseSubjectRequest(subject_id=subject_id), timeout
        )
        return bool(resp.erased)

    def verify_deletion(self, timeout: float | None = None) -> list[dict[str, Any]]:
        """Verify every erasure (deletion-verification jobs); VERIFIED ones carry a certificate."""
        resp = self._call(self._stub.VerifyDeletion, pb.VerifyDeletionRequest(), timeout)
        return [
            {
                "subject_pseudonym": e.subject_pseudonym,
                "erased_at": e.erased_at,
                "result": e.result,
                "reasons": list(e.reasons),
                "certificate_json": e.certificate_json or None,
            }
            for e in resp.erasures
        ]

    def verify_record_deletion(self, timeout: float | None = None) -> list[dict[str, Any]]:
        """Verify every single record's destruction (delete, retention, read-once), the same
        VerifyDeletion call: VERIFIED ones carry a certificate."""
        resp = self._call(self._stub.VerifyDeletion, pb.VerifyDeletionRequest(), timeout)
        return [
            {
                "subject_pseudonym": r.subject_pseudonym,
                "record_id": r.record_id,
                "cause": r.cause,
                "destroyed_at": r.destroyed_at,
                "result": r.result,
                "reasons": list(r.reasons),
                "certificate_json": r.certificate_json or None,
            }
            for r in resp.records
        ]

    def list_notices(
        self, kind: str = "", page_size: int = 0, page_token: str = "", timeout: float | None = None
    ) -> tuple[list[dict[str, Any]], str]:
        """One page of the lifecycle notices due for the application to send (``kind`` "" for
        every kind; today "dormancy"): dicts of subject_id, kind, due_at, effective_at and
        subject_pseudonym, and the next page token ("" at the end). A notice is listed on every
        poll while it is due: record that you sent it."""
        resp = self._call(
            self._stub.ListNotices,
            pb.ListNoticesRequest(kind=kind, page_size=page_size, page_token=page_token),
            timeout,
        )
        notices = [
            {
                "subject_id": n.subject_id,
                "kind": n.kind,
                "due_at": n.due_at,
                "effective_at": n.effective_at,
                "subject_pseudonym": n.subject_pseudonym,
            }
            for n in resp.notices
        ]
        return notices, resp.next_page_token

    def iter_notices(self, kind: str = "", page_size: int = 100) -> Iterator[dict[str, Any]]:
        """Every notice due, page by page."""
        token = ""
        while True:
            notices, token = self.list_notices(kind, page_size, token)
            yield from notices
            if not token:
                return

    def restrict_processing(
        self, subject_id: str, restricted: bool = True, timeout: float | None = None
    ) -> bool:
        """Restrict (or, with ``restricted=False``, lift) a subject's processing."""
        resp = self._call(
            self._stub.RestrictProcessing,
            pb.RestrictProcessingRequest(subject_id=subject_id, restricted=restricted),
            timeout,
        )
        return bool(resp.changed)

    def export_subject(
        self, subject_id: str, purpose: str = "subject_access", timeout: float | None = None
    ) -> Iterator[Record]:
        """Every record of a subject, decrypted (subject access and portability), streamed."""
        for resp in self._stream(
            self._stub.ExportSubject,
            pb.ExportSubjectRequest(subject_id=subject_id, purpose=purpose),
            self._deadline(timeout),
        ):
            yield Record(RecordInfo.from_pb(resp.metadata), dict(resp.fields), resp.content or None)

    def record_event(
        self, subject_id: str, name: str, at: float = 0.0, timeout: float | None = None
    ) -> bool:
        """Record a business event (e.g. "match_completed"); False if already recorded."""
        resp = self._call(
            self._stub.RecordEvent,
            pb.RecordEventRequest(subject_id=subject_id, name=name, at=at),
            timeout,
        )
        return bool(resp.recorded)
