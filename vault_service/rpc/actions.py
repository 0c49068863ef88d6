"""Every RPC declares the action it performs. The interceptor refuses any method missing here
(deny by default), and the authorization table test is generated from this map."""

from __future__ import annotations

from vault_service.policy import Action

SERVICE = "vault.v1.Vault"

RPC_ACTIONS: dict[str, Action] = {
    "PutRecord": Action.RECORD_PUT,
    "GetRecord": Action.RECORD_GET,
    # a batch is its items' single calls (each item checked as one)
    "BatchPutRecords": Action.RECORD_PUT,
    "BatchGetRecords": Action.RECORD_GET,
    "ListRecords": Action.RECORD_LIST,
    "UpdateRecord": Action.RECORD_UPDATE,
    # an upload is a put, or an update when its header names a record (checked by the service)
    "UploadRecord": Action.RECORD_PUT,
    "DownloadContent": Action.RECORD_GET,
    "DeleteRecord": Action.RECORD_DELETE,
    "EraseSubject": Action.SUBJECT_ERASE,
    "QueryAudit": Action.AUDIT_QUERY,
    "BreachScope": Action.AUDIT_BREACH_SCOPE,
    "GrantConsent": Action.CONSENT_GRANT,
    "RevokeConsent": Action.CONSENT_REVOKE,
    "ListConsents": Action.CONSENT_LIST,
    "RestrictProcessing": Action.SUBJECT_RESTRICT,
    "ExportSubject": Action.SUBJECT_EXPORT,
    "RecordEvent": Action.EVENT_RECORD,
    "CreateShare": Action.SHARE_CREATE,
    "ReadShare": Action.SHARE_READ,
    "RevokeShare": Action.SHARE_REVOKE,
    "ListShares": Action.SHARE_LIST,
    "ListReceivedShares": Action.SHARE_RECEIVED,
    "PlaceHold": Action.HOLD_PLACE,
    "ReleaseHold": Action.HOLD_RELEASE,
    "ListHolds": Action.HOLD_LIST,
    "VerifyDeletion": Action.DELETION_VERIFY,
    "RestrictRecord": Action.RECORD_RESTRICT,
    "ListNotices": Action.NOTICE_LIST,
    "FindRecords": Action.RECORD_FIND,
    "TailAudit": Action.AUDIT_TAIL,
}


def action_of(method: str) -> Action | None:
    """The action of a full method name ("/vault.v1.Vault/GetRecord"), None if undeclared."""
    prefix = f"/{SERVICE}/"
    if not method.startswith(prefix):
        return None
    return RPC_ACTIONS.get(method[len(prefix) :])
