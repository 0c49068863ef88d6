"""The client (see the package docstring)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, BinaryIO, TypeVar

import grpc

from vault_service.api.v1 import vault_pb2 as pb
from vault_service.api.v1 import vault_pb2_grpc as pb_grpc
from vault_service.errors import (
    AlreadyExists,
    DataLoss,
    FailedPrecondition,
    Internal,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
    VaultError,
)

R = TypeVar("R")

_BY_CODE: dict[grpc.StatusCode, type[VaultError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExists,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPrecondition,
    grpc.StatusCode.UNAVAILABLE: Unavailable,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhausted,
    grpc.StatusCode.DATA_LOSS: DataLoss,
    grpc.StatusCode.DEADLINE_EXCEEDED: Unavailable,
}


def _error(exc: grpc.RpcError) -> VaultError:
    code = exc.code() if hasattr(exc, "code") else grpc.StatusCode.UNKNOWN
    details = exc.details() if hasattr(exc, "details") else None
    error = _BY_CODE.get(code, Internal)(details or None)
    trailing = exc.trailing_metadata() if hasattr(exc, "trailing_metadata") else None
    for item in trailing or ():
        value: object = item.value  # str at run time for non-binary keys, whatever the stubs say
        if item.key == "x-correlation-id" and isinstance(value, str):
            error.correlation_id = value
    return error


@dataclass(frozen=True)
class PutResult:
    """Where a record was stored."""

    record_id: str
    version: int


@dataclass(frozen=True)
class RecordInfo:
    """Record metadata (no field values)."""

    record_id: str
    category: str
    version: int
    content_type: str
    content_length: int
    field_names: tuple[str, ...]
    created_at: float
    updated_at: float
    #: de-identified views only: the subject's pseudonym for the purpose of the read
    subject_pseudonym: str = ""

    @staticmethod
    def from_pb(m: pb.RecordMetadata) -> RecordInfo:
        return RecordInfo(
            m.record_id,
            m.category,
            m.version,
            m.content_type,
            m.content_length,
            tuple(m.field_names),
            m.created_at,
            m.updated_at,
            m.subject_pseudonym,
        )


@dataclass(frozen=True)
class Consent:
    """A consent grant as the service reports it."""

    grant_id: str
    purpose: str
    grantee_principal: str
    grantee_role: str
    scopes: dict[str, tuple[str, ...]]
    valid_from: float
    valid_until: float | None
    evidence_reference: str
    revoked_at: float | None

    @staticmethod
    def from_pb(c: pb.Consent) -> Consent:
        return Consent(
            c.grant_id,
            c.purpose,
            c.grantee_principal,
            c.grantee_role,
            {s.category: tuple(s.fields) for s in c.scopes},
            c.valid_from,
            c.valid_until or None,
            c.evidence_reference,
            c.revoked_at or None,
        )


@dataclass(frozen=True)
class ShareInfo:
    """A share's metadata."""

    share_id: str
    recipient: str
    purpose: str
    record_count: int
    fields: tuple[str, ...]
    expires_at: float | None
    event_name: str
    event_period_seconds: float | None
    created_at: float
    revoked_at: float | None

    @staticmethod
    def from_pb(s: pb.Share) -> ShareInfo:
        return ShareInfo(
            s.share_id,
            s.recipient,
            s.purpose,
            s.record_count,
            tuple(s.fields),
            s.expires_at or None,
            s.event_name,
            s.event_period_seconds or None,
            s.created_at,
            s.revoked_at or None,
        )


@dataclass(frozen=True)
class Record:
    """A decrypted record as released for a purpose."""

    info: RecordInfo
    fields: Mapping[str, str]
    content: bytes | None


@dataclass(frozen=True)
class Page:
    """One page of a listing."""

    records: list[RecordInfo]
    next_page_token: str


class VaultClient:
    """A connection to vault-service.

    ``address`` is ``host:port``; ``token`` the bearer token. ``timeout`` is the default deadline
    of every call in seconds. Pass ``channel_credentials`` for TLS.
    """

    @classmethod
    def with_tls(
        cls,
        address: str,
        *,
        ca_file: str,
        token: str = "",
        cert_file: str = "",
        key_file: str = "",
        timeout: float = 10.0,
    ) -> VaultClient:
        """A client over TLS: ``ca_file`` verifies the server; ``cert_file``/``key_file`` present
        a client certificate (mTLS), which alone can identify the principal."""
        from pathlib import Path

        credentials = grpc.ssl_channel_credentials(
            root_certificates=Path(ca_file).read_bytes(),
            private_key=Path(key_file).read_bytes() if key_file else None,
            certificate_chain=Path(cert_file).read_bytes() if cert_file else None,
        )
        return cls(address, token, timeout=timeout, channel_credentials=credentials)

    def __init__(
        self,
        address: str,
        token: str,
        *,
        timeout: float = 10.0,
        channel_credentials: grpc.ChannelCredentials | None = None,
        options: list[tuple[str, Any]] | None = None,
    ) -> None:
        opts = options or [
            ("grpc.max_receive_message_length", 64 * 1024 * 1024),
            ("grpc.max_send_message_length", 64 * 1024 * 1024),
        ]
        if channel_credentials is None:
            self._channel = grpc.insecure_channel(address, options=opts)
        else:
            self._channel = grpc.secure_channel(address, channel_credentials, options=opts)
        self._stub = pb_grpc.VaultStub(self._channel)
        self._metadata = (("authorization", f"Bearer {token}"),) if token else ()
        self._timeout = timeout

    def __repr__(self) -> str:
        return "VaultClient(<token redacted>)"

    def close(self) -> None:
        """Close the channel."""
        self._channel.close()

    def __enter__(self) -> VaultClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, method: Callable[..., R], request: Any, timeout: float | None) -> R:
        try:
            return method(
                request,
                metadata=self._metadata,
                timeout=self._timeout if timeout is None else timeout,
            )
        except grpc.RpcError as exc:
            raise _error(exc) from None

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

    def delete_record(self, record_id: str, timeout: float | None = None) -> None:
        """Crypto-shred a record."""
        self._call(self._stub.DeleteRecord, pb.DeleteRecordRequest(record_id=record_id), timeout)

    def erase_subject(self, subject_id: str, timeout: float | None = None) -> bool:
        """Erase a subject (its key is destroyed; every record unreadable at once)."""
        resp = self._call(
            self._stub.EraseSubject, pb.EraseSubjectRequest(subject_id=subject_id), timeout
        )
        return bool(resp.erased)

    def query_audit(
        self,
        *,
        subject_pseudonym: str = "",
        principal: str = "",
        action: str = "",
        decision: str = "",
        since: float = 0.0,
        until: float = 0.0,
        page_size: int = 0,
        page_token: str = "",
        timeout: float | None = None,
    ) -> tuple[list[dict[str, Any]], str]:
        """One page of audit events (auditor role); returns (events, next_page_token)."""
        resp = self._call(
            self._stub.QueryAudit,
            pb.QueryAuditRequest(
                subject_pseudonym=subject_pseudonym,
                principal=principal,
                action=action,
                decision=decision,
                since=since,
                until=until,
                page_size=page_size,
                page_token=page_token,
            ),
            timeout,
        )
        events = [
            {
                f: getattr(e, f)
                for f in (
                    "seq",
                    "at",
                    "principal",
                    "action",
                    "purpose",
                    "subject_pseudonym",
                    "record_id",
                    "decision",
                    "reason",
                    "correlation_id",
                )
            }
            for e in resp.events
        ]
        return events, resp.next_page_token

    # consent, restriction, export ------------------------------------------------------------
    def grant_consent(
        self,
        subject_id: str,
        purpose: str,
        scopes: Mapping[str, list[str] | None],
        *,
        evidence_reference: str,
        grantee_principal: str = "",
        grantee_role: str = "",
        valid_from: float = 0.0,
        valid_until: float = 0.0,
        timeout: float | None = None,
    ) -> Consent:
        """Record a consent; ``scopes`` maps categories to field lists (None: every field)."""
        resp = self._call(
            self._stub.GrantConsent,
            pb.GrantConsentRequest(
                subject_id=subject_id,
                purpose=purpose,
                grantee_principal=grantee_principal,
                grantee_role=grantee_role,
                scopes=[pb.CategoryScope(category=c, fields=f or []) for c, f in scopes.items()],
                valid_from=valid_from,
                valid_until=valid_until,
                evidence_reference=evidence_reference,
            ),
            timeout,
        )
        return Consent.from_pb(resp)

    def revoke_consent(self, grant_id: str, timeout: float | None = None) -> Consent:
        """Revoke a consent (effective at the next read everywhere)."""
        return Consent.from_pb(
            self._call(self._stub.RevokeConsent, pb.RevokeConsentRequest(grant_id=grant_id), timeout)
        )

    def list_consents(self, subject_id: str, timeout: float | None = None) -> list[Consent]:
        """Every consent of a subject."""
        resp = self._call(
            self._stub.ListConsents, pb.ListConsentsRequest(subject_id=subject_id), timeout
        )
        return [Consent.from_pb(c) for c in resp.consents]

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
        try:
            stream = self._stub.ExportSubject(
                pb.ExportSubjectRequest(subject_id=subject_id, purpose=purpose),
                metadata=self._metadata,
                timeout=self._timeout if timeout is None else timeout,
            )
            for resp in stream:
                yield Record(RecordInfo.from_pb(resp.metadata), dict(resp.fields), resp.content or None)
        except grpc.RpcError as exc:
            raise _error(exc) from None

    # shares and events -------------------------------------------------------------------------
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

    def create_share(
        self,
        subject_id: str,
        recipient: str,
        purpose: str,
        record_ids: list[str],
        fields: list[str],
        *,
        expires_at: float = 0.0,
        event_name: str = "",
        event_period_seconds: float = 0.0,
        timeout: float | None = None,
    ) -> ShareInfo:
        """Share records with ``recipient`` until ``expires_at`` and/or an event + period."""
        resp = self._call(
            self._stub.CreateShare,
            pb.CreateShareRequest(
                subject_id=subject_id,
                recipient=recipient,
                purpose=purpose,
                record_ids=record_ids,
                fields=fields,
                expires_at=expires_at,
                event_name=event_name,
                event_period_seconds=event_period_seconds,
            ),
            timeout,
        )
        return ShareInfo.from_pb(resp)

    def read_share(
        self, share_id: str, timeout: float | None = None
    ) -> Iterator[Record | tuple[str, int, bytes]]:
        """Stream a share: a :class:`Record` per record, then (record_id, offset, data) pieces
        of its content."""
        try:
            stream = self._stub.ReadShare(
                pb.ReadShareRequest(share_id=share_id),
                metadata=self._metadata,
                timeout=self._timeout if timeout is None else timeout,
            )
            for item in stream:
                if item.HasField("record"):
                    r = item.record
                    yield Record(RecordInfo.from_pb(r.metadata), dict(r.fields), None)
                else:
                    yield (item.content.record_id, item.content.offset, item.content.data)
        except grpc.RpcError as exc:
            raise _error(exc) from None

    def revoke_share(self, share_id: str, timeout: float | None = None) -> ShareInfo:
        """End a share now."""
        return ShareInfo.from_pb(
            self._call(self._stub.RevokeShare, pb.RevokeShareRequest(share_id=share_id), timeout)
        )

    def list_shares(self, subject_id: str, timeout: float | None = None) -> list[ShareInfo]:
        """A subject's shares."""
        resp = self._call(self._stub.ListShares, pb.ListSharesRequest(subject_id=subject_id), timeout)
        return [ShareInfo.from_pb(s) for s in resp.shares]

    def received_shares(self, timeout: float | None = None) -> list[ShareInfo]:
        """The shares this principal has received."""
        resp = self._call(self._stub.ListReceivedShares, pb.ListReceivedSharesRequest(), timeout)
        return [ShareInfo.from_pb(s) for s in resp.shares]

    # large objects -----------------------------------------------------------------------------
    def upload_record(
        self,
        source: str | BinaryIO,
        *,
        subject_id: str = "",
        category: str = "",
        fields: Mapping[str, str] | None = None,
        content_type: str = "",
        idempotency_key: str = "",
        record_id: str = "",
        expected_version: int = 0,
        piece_size: int = 1024 * 1024,
        progress: Callable[[int, int | None], None] | None = None,
        timeout: float | None = None,
    ) -> PutResult:
        """Stream a file (a path or a binary file object) as a record's content: a new record
        (subject_id, category), or a new version of ``record_id``. Constant memory."""
        own = isinstance(source, str)
        f: BinaryIO = open(source, "rb") if isinstance(source, str) else source  # noqa: SIM115
        try:
            size: int | None = None
            try:
                size = os.fstat(f.fileno()).st_size
            except (OSError, AttributeError, ValueError):
                size = None

            def chunks() -> Iterator[pb.UploadChunk]:
                yield pb.UploadChunk(
                    header=pb.UploadHeader(
                        subject_id=subject_id,
                        category=category,
                        fields=dict(fields or {}),
                        content_type=content_type,
                        idempotency_key=idempotency_key,
                        record_id=record_id,
                        expected_version=expected_version,
                        declared_size=size or 0,
                    )
                )
                sent = 0
                while data := f.read(piece_size):
                    sent += len(data)
                    if progress is not None:
                        progress(sent, size)
                    yield pb.UploadChunk(data=data)
                yield pb.UploadChunk(end=True)

            resp = self._call(
                self._stub.UploadRecord,
                chunks(),
                timeout if timeout is not None else max(self._timeout, 600.0),
            )
        finally:
            if own:
                f.close()
        return PutResult(resp.record_id, resp.version)

    def download_content(
        self,
        record_id: str,
        purpose: str,
        *,
        offset: int = 0,
        length: int = 0,
        timeout: float | None = None,
    ) -> Iterator[bytes]:
        """Stream a record's content, or a byte range of it (length 0: to the end)."""
        try:
            stream = self._stub.DownloadContent(
                pb.DownloadContentRequest(
                    record_id=record_id, purpose=purpose, offset=offset, length=length
                ),
                metadata=self._metadata,
                timeout=timeout if timeout is not None else max(self._timeout, 600.0),
            )
            for piece in stream:
                yield piece.data
        except grpc.RpcError as exc:
            raise _error(exc) from None

    def download_to(
        self,
        path: str,
        record_id: str,
        purpose: str,
        *,
        progress: Callable[[int, int | None], None] | None = None,
        total: int | None = None,
    ) -> int:
        """Write a record's content to ``path`` (created 0600); returns the byte count. The file
        is written to a temporary name and renamed only when complete."""
        tmp = f"{path}.partial"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        written = 0
        try:
            with os.fdopen(fd, "wb") as out:
                for data in self.download_content(record_id, purpose):
                    out.write(data)
                    written += len(data)
                    if progress is not None:
                        progress(written, total)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        return written

    # legal holds -------------------------------------------------------------------------------
    def place_hold(
        self,
        subject_id: str,
        reason: str,
        case_reference: str,
        record_id: str = "",
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """Block every deletion path for a subject (or one record) until released."""
        h = self._call(
            self._stub.PlaceHold,
            pb.PlaceHoldRequest(
                subject_id=subject_id, reason=reason, case_reference=case_reference, record_id=record_id
            ),
            timeout,
        )
        return _hold_dict(h)

    def release_hold(self, hold_id: str, timeout: float | None = None) -> tuple[dict[str, Any], int]:
        """Release a hold; returns it and how many deferred deletions were carried out."""
        resp = self._call(self._stub.ReleaseHold, pb.ReleaseHoldRequest(hold_id=hold_id), timeout)
        return _hold_dict(resp.hold), resp.deletions_carried_out

    def list_holds(self, subject_id: str, timeout: float | None = None) -> list[dict[str, Any]]:
        """A subject's holds."""
        resp = self._call(self._stub.ListHolds, pb.ListHoldsRequest(subject_id=subject_id), timeout)
        return [_hold_dict(h) for h in resp.holds]

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


def _hold_dict(h: pb.Hold) -> dict[str, Any]:
    return {
        "hold_id": h.hold_id,
        "record_id": h.record_id,
        "reason": h.reason,
        "case_reference": h.case_reference,
        "created_at": h.created_at,
        "released_at": h.released_at or None,
    }
