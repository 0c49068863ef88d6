"""Consents: grant, revoke and list a subject's consent grants."""

from __future__ import annotations

from collections.abc import Mapping

from vault_service.api.v1 import vault_pb2 as pb
from vault_service.client.results import Consent
from vault_service.client.transport import Transport


class ConsentMixin(Transport):
    """The consent methods of ``VaultClient``."""

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
        party: str = "",
        timeout: float | None = None,
    ) -> Consent:
        """Record a consent; ``scopes`` maps categories to field lists (None: every field).
        ``party``: which party consents, for a purpose that needs several (consent_parties)."""
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
                party=party,
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
