"""Consent: grant, revoke and list a subject's consent grants.

A grant covers a purpose, a grantee (a principal or a role), categories (and optionally only some
fields of each) and a validity window. Reads check grants in the same transaction that fetches the
record; revocation takes effect at the next read in every process.

A revocation is noted in the destruction ledger first, so that restoring a backup taken before
it does not bring the consent back.

The evidence reference (where the consent was collected: a form id, a signed document) can name
the person, so it is stored sealed under the subject key ("consent-evidence" {subject, grant}):
it is readable while the subject is live and dies with the subject key at erasure, which deletes
the grant rows in the same transaction.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from vault_service.clock import Clock
from vault_service.crypto import seal_value
from vault_service.crypto.context import consent_evidence_context
from vault_service.crypto.derive import subject_ref
from vault_service.errors import InvalidArgument, NotFound, shown
from vault_service.ids import new_record_id
from vault_service.key_hierarchy import KeyHierarchy
from vault_service.lifecycle.shredding import Shredder
from vault_service.policy import Action, Policy
from vault_service.policy.model import Grant
from vault_service.service import validate
from vault_service.service.access import Access
from vault_service.service.legacy import seal_plaintext
from vault_service.service.types import CallContext
from vault_service.storage import RecordStore


class Consent:
    """Consent grants (see the module docstring)."""

    def __init__(
        self,
        access: Access,
        keys: KeyHierarchy,
        store: RecordStore,
        shredder: Shredder,
        policy: Policy,
        clock: Clock,
    ) -> None:
        self.access = access
        self.keys = keys
        self.store = store
        self.shredder = shredder
        self.policy = policy
        self.clock = clock

    def _check_scope(
        self, purpose: str, categories: Mapping[str, frozenset[str] | None]
    ) -> dict[str, frozenset[str]]:
        spec = self.policy.purposes.get(purpose)
        if spec is None:
            raise InvalidArgument("unknown purpose")
        if not categories:
            raise InvalidArgument("a grant covers at least one category")
        fields: dict[str, frozenset[str]] = {}
        for name, subset in categories.items():
            if name not in spec.categories:
                raise InvalidArgument(f"category {shown(name)} is not part of the purpose")
            if subset:
                if not subset <= self.policy.categories[name].fields:
                    raise InvalidArgument(f"unknown field in category {shown(name)}")
                fields[name] = subset
        return fields

    def grant(
        self,
        call: CallContext,
        subject_id: str,
        purpose: str,
        categories: Mapping[str, frozenset[str] | None],
        valid_from: float,
        valid_until: float | None,
        evidence_reference: str,
        grantee_principal: str = "",
        grantee_role: str = "",
        party: str = "",
    ) -> Grant:
        """Record a subject's consent (for a principal or a role) over categories (and, per
        category, optionally only some fields), valid in [valid_from, valid_until). For a
        purpose with ``consent_parties``, ``party`` names which party consents (each party's
        grants are kept, and revoked, on their own); for any other purpose it must be empty."""
        validate.subject_id(subject_id)
        fields = self._check_scope(purpose, categories)
        parties = self.policy.purposes[purpose].consent_parties
        if parties and party not in parties:
            raise InvalidArgument(
                f"the purpose needs the party giving consent: one of {', '.join(parties)}"
            )
        if not parties and party:
            raise InvalidArgument("the purpose does not take consent by parties")
        if bool(grantee_principal) == bool(grantee_role):
            raise InvalidArgument("name exactly one grantee: a principal or a role")
        if grantee_principal and grantee_principal not in self.policy.principals:
            raise InvalidArgument("unknown grantee principal")
        if grantee_role and grantee_role not in self.policy.roles:
            raise InvalidArgument("unknown grantee role")
        validate.time(valid_from, "valid_from")
        if valid_until is not None:
            validate.time(valid_until, "valid_until")
            if valid_until <= valid_from:
                raise InvalidArgument("valid_until must be after valid_from")
        validate.reference(evidence_reference, "evidence_reference")
        ref = subject_ref(self.keys.index_key, subject_id)
        self.access.allow(call, Action.CONSENT_GRANT, ref=ref)
        grant_id = new_record_id(self.clock.now())
        subject_key = self.keys.subject_key_for_write(ref)  # a grant may come before any record
        sealed = seal_value(
            subject_key, consent_evidence_context(ref, grant_id), evidence_reference.encode()
        )
        grant = Grant(
            grant_id=grant_id,
            purpose=purpose,
            categories=frozenset(categories),
            fields=fields,
            valid_from=valid_from,
            valid_until=valid_until,
            grantee_principal=grantee_principal,
            grantee_role=grantee_role,
            sealed_evidence=sealed,
            party=party,
        )
        audit = self.access.row(
            call, Action.CONSENT_GRANT, f"grant {grant_id}", purpose=purpose, ref=ref
        )
        self.store.insert_grant(ref, grant, call.principal.name, self.clock.now(), audit)
        return replace(grant, evidence_reference=evidence_reference)

    def _opened(self, ref: bytes, grants: list[Grant]) -> list[Grant]:
        """The grants with their evidence references decrypted (while the subject is live)."""
        out = []
        for grant in grants:
            if grant.sealed_evidence:
                ctx = consent_evidence_context(ref, grant.grant_id)
                evidence = self.keys.open_for_subject(ref, ctx, grant.sealed_evidence)
                if evidence is not None:
                    grant = replace(grant, evidence_reference=evidence.decode())  # noqa: PLW2901
            out.append(grant)
        return out

    def revoke(self, call: CallContext, grant_id: str) -> Grant:
        """Revoke a grant: the next read in every process is denied."""
        validate.record_id(grant_id, "grant_id")
        self.access.allow(call, Action.CONSENT_REVOKE)
        known = self.store.grant_state(grant_id)
        if known is None:
            raise NotFound()
        audit = self.access.row(call, Action.CONSENT_REVOKE, f"grant {grant_id}")
        done = self.shredder.revoke_consent(grant_id, known[0], audit)
        if done is None:
            raise NotFound()
        ref, grant = done
        return self._opened(ref, [grant])[0]

    def list(self, call: CallContext, subject_id: str) -> list[Grant]:
        """Every grant of a subject, revoked and expired ones included."""
        validate.subject_id(subject_id)
        ref = subject_ref(self.keys.index_key, subject_id)
        self.access.allow(call, Action.CONSENT_LIST, ref=ref)
        return self._opened(ref, self.store.subject_grants(ref))

    def seal_legacy_evidence(self) -> int:
        """Seal the evidence references older versions stored in plaintext (at start-up)."""

        def pages(after: str, limit: int) -> list[tuple[str, bytes, bytes]]:
            return [(g, ref, ev.encode()) for g, ref, ev in self.store.plaintext_evidence(after, limit)]

        return seal_plaintext(self.keys, pages, consent_evidence_context, self.store.seal_evidence)
