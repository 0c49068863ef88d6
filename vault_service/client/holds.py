"""Legal holds: place, release and list the holds that block every deletion path."""

from __future__ import annotations

from typing import Any

from vault_service.api.v1 import vault_pb2 as pb
from vault_service.client.transport import Transport


class HoldsMixin(Transport):
    """The legal-hold methods of ``VaultClient``."""

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


def _hold_dict(h: pb.Hold) -> dict[str, Any]:
    return {
        "hold_id": h.hold_id,
        "record_id": h.record_id,
        "reason": h.reason,
        "case_reference": h.case_reference,
        "created_at": h.created_at,
        "released_at": h.released_at or None,
    }
