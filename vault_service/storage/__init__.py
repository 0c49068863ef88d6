"""Record and blob storage behind two interfaces (:class:`RecordStore`, :class:`BlobStore`)."""

from vault_service.audit.model import AuditRow
from vault_service.storage.blobs import BlobReader, BlobStore, TracedBlobStore
from vault_service.storage.filesystem import FilesystemBlobStore
from vault_service.storage.records import (
    AuditQuery,
    Idempotency,
    NewRecord,
    RecordMeta,
    RecordStore,
    RecordVersion,
    RootVersionState,
    ShreddedRecord,
    StoredRecord,
    SubjectState,
)
from vault_service.storage.sqlite import SqliteRecordStore

__all__ = [
    "AuditQuery",
    "AuditRow",
    "BlobReader",
    "BlobStore",
    "FilesystemBlobStore",
    "Idempotency",
    "NewRecord",
    "RecordMeta",
    "RecordStore",
    "RecordVersion",
    "RootVersionState",
    "ShreddedRecord",
    "SqliteRecordStore",
    "StoredRecord",
    "SubjectState",
    "TracedBlobStore",
]
