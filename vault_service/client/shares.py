"""Shares: give a recipient time-limited access to some of a subject's records, read, list and
revoke them."""

from __future__ import annotations

from collections.abc import Iterator

from vault_service.api.v1 import vault_pb2 as pb
from vault_service.client.results import Record, RecordInfo, ShareInfo
from vault_service.client.transport import Transport


class SharesMixin(Transport):
    """The share methods of ``VaultClient``."""

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
        for item in self._stream(
            self._stub.ReadShare, pb.ReadShareRequest(share_id=share_id), self._deadline(timeout)
        ):
            if item.HasField("record"):
                r = item.record
                yield Record(RecordInfo.from_pb(r.metadata), dict(r.fields), None)
            else:
                yield (item.content.record_id, item.content.offset, item.content.data)

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
