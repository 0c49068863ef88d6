"""Python client SDK for application servers: typed methods over the vault.v1 gRPC API.

Statuses come back as the project's error classes (``vault_service.errors``), every call has a
deadline by default, and the bearer token is sent as call credentials metadata.
"""

from vault_service.client.client import (
    Consent,
    Page,
    PutResult,
    Record,
    RecordInfo,
    RecordToGet,
    RecordToPut,
    ShareInfo,
    VaultClient,
)

__all__ = [
    "Consent",
    "Page",
    "PutResult",
    "Record",
    "RecordInfo",
    "RecordToGet",
    "RecordToPut",
    "ShareInfo",
    "VaultClient",
]
