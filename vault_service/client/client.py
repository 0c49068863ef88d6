"""The client (see the package docstring): ``VaultClient``, the capability mixins over one
transport.

    transport.py  the channel, credentials, token metadata, deadlines; gRPC statuses as
                  ``vault_service.errors`` classes with the correlation id
    results.py    the typed values the methods return
    records.py    put, get, list, update, delete records
    content.py    large objects: streamed upload and download of a record's content
    consent.py    consent grants
    subjects.py   erasure and its verification, restriction, export, events
    holds.py      legal holds
    shares.py     shares
    audit.py      audit queries, the audit tail, the breach scope
"""

from __future__ import annotations

from vault_service.client.audit import AuditMixin
from vault_service.client.batches import BatchesMixin, RecordToGet, RecordToPut
from vault_service.client.consent import ConsentMixin
from vault_service.client.content import ContentMixin
from vault_service.client.holds import HoldsMixin
from vault_service.client.records import RecordsMixin
from vault_service.client.results import Consent, Page, PutResult, Record, RecordInfo, ShareInfo
from vault_service.client.shares import SharesMixin
from vault_service.client.subjects import SubjectsMixin
from vault_service.client.transport import tls_credentials

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


class VaultClient(
    RecordsMixin,
    BatchesMixin,
    ContentMixin,
    ConsentMixin,
    SubjectsMixin,
    HoldsMixin,
    SharesMixin,
    AuditMixin,
):
    """A connection to vault-service.

    ``address`` is ``host:port``; ``token`` the bearer token. ``timeout`` is the default deadline
    of every call in seconds. Pass ``channel_credentials`` for TLS, and ``call_metadata`` (a
    function returning extra metadata pairs, called per call) to send the caller's trace
    context (docs/operations.md, "Tracing", has the OpenTelemetry one-liner).
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
        credentials = tls_credentials(ca_file=ca_file, cert_file=cert_file, key_file=key_file)
        return cls(address, token, timeout=timeout, channel_credentials=credentials)

    def __enter__(self) -> VaultClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
