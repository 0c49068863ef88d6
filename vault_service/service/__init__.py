"""The vault's operations: capability modules behind one thin facade, :class:`VaultService`.

Adapters (the gRPC servicer, the CLI) call the facade with plain Python values and a
:class:`CallContext` (who is calling, the correlation id). Each capability lives in its own module
with its dependencies passed in, and none reaches into another's private names:

=================  ===========================================================================
module             capability
=================  ===========================================================================
access             authorization through ``policy.decide``; audit rows; audited refusals
validate           the shape of every request (ids, names, times, sizes)
records            put, update, delete, list, restriction of one record
reads              THE release step of every read (GetRecord, DownloadContent, export, shares)
consent            grant, revoke, list (evidence sealed under the subject key)
subject_rights     restriction, export, erasure (withdrawal)
events             the RecordEvent call
shares             time-limited, field-limited shares to a recipient
holds              legal holds, and the release that carries out what they deferred
audit_queries      the auditor's audit search
audit_proofs       the inclusion proofs of the entries an auditor reads (query and tail)
breach_scope       the auditor's breach scope: releases per subject in a time window
audit_tail         the auditor's tail of the trail from a cursor (export to a SIEM)
notices            the lifecycle notices due for the application to send (dormancy)
search             FindRecords: records by a searchable field's value (blind index)
=================  ===========================================================================

Destruction (erasure, shredding, retention, dormancy, ledger replay, verification) lives in
:mod:`vault_service.lifecycle`; the keys in :mod:`vault_service.key_hierarchy`. Every method
raises only :class:`~vault_service.errors.VaultError` subclasses.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence

from vault_service.audit.checkpoints import CheckpointStore
from vault_service.audit.model import OPERATOR_PRINCIPAL
from vault_service.clock import Clock
from vault_service.crypto.derive import audit_pseudonym, purpose_pseudonym, subject_ref
from vault_service.crypto.signing import SigningKey
from vault_service.errors import VaultError
from vault_service.key_hierarchy import KeyHierarchy
from vault_service.key_providers.base import KeyProvider
from vault_service.key_providers.cache import CacheLimits, SubjectKeyCache
from vault_service.lifecycle.dormancy import Activity, sweep_dormancy
from vault_service.lifecycle.erasure import Eraser
from vault_service.lifecycle.events import BusinessEvents
from vault_service.lifecycle.integrity import Integrity
from vault_service.lifecycle.ledger import DestructionLedger
from vault_service.lifecycle.replay import Replayer, ReplayReport
from vault_service.lifecycle.retention import retention_forecast, sweep_retention
from vault_service.lifecycle.shredding import Shredder
from vault_service.lifecycle.verification import DeletionVerifier, ErasureCheck, RecordCheck
from vault_service.policy import Action, Policy
from vault_service.policy.model import Grant
from vault_service.security_events import DenialWatch
from vault_service.service.access import Access
from vault_service.service.audit_proofs import AuditPage, AuditProofs, ProvedEntry
from vault_service.service.audit_queries import AuditQueries
from vault_service.service.audit_tail import AuditTail, TailGap
from vault_service.service.batches import GetItem, PutItem
from vault_service.service.breach_scope import BreachScope, BreachScopeReport
from vault_service.service.consent import Consent
from vault_service.service.events import Events
from vault_service.service.holds import Holds
from vault_service.service.notices import Notice, Notices
from vault_service.service.reads import Reads
from vault_service.service.records import Records
from vault_service.service.search import Search
from vault_service.service.shares import Shares, ShareTerms
from vault_service.service.subject_rights import SubjectRights
from vault_service.service.types import CallContext, ContentStream, Limits, RecordView
from vault_service.storage import AuditQuery, BlobStore, RecordMeta, RecordStore
from vault_service.storage.rows import BreachQuery, HoldRow

__all__ = [
    "CallContext",
    "ContentStream",
    "GetItem",
    "Limits",
    "PutItem",
    "RecordView",
    "ShareTerms",
    "VaultService",
]


class VaultService:
    """The vault: builds the capability objects once and delegates to them."""

    def __init__(
        self,
        store: RecordStore,
        blobs: BlobStore,
        provider: KeyProvider,
        policy: Policy,
        clock: Clock,
        limits: Limits | None = None,
        cache: SubjectKeyCache | None = None,
        *,
        ledger: DestructionLedger,
        schedule: tuple[float, float] = (0.0, 0.0),
        checkpoints: CheckpointStore | None = None,
    ) -> None:
        self.store = store
        self.blobs = blobs
        self.provider = provider
        self.policy = policy
        self.clock = clock
        self.limits = limits or Limits()
        self.ledger = ledger
        # Caching is opt-in here (the composition root always passes one); the cache never
        # decides correctness, see key_providers/cache.py.
        self.keys = KeyHierarchy(
            store, provider, cache or SubjectKeyCache(CacheLimits(max_entries=0), clock), clock
        )
        keys = self.keys
        self.access = Access(policy, store, clock)
        self.shredder = Shredder(store, blobs, ledger, lambda: keys.signing_key, clock)
        self.eraser = Eraser(store, keys, self.shredder, clock)
        self.business_events = BusinessEvents(store, lambda: keys.index_key)
        self.activity = Activity(store, keys, clock)
        keys.reactivate = self.activity.reactivate  # a write to a separated subject brings it back
        #: the integrity halt of this process: no release while the logs fail a check
        self.integrity = Integrity()
        self.reads = Reads(
            self.access,
            keys,
            store,
            blobs,
            self.shredder,
            self.activity,
            policy,
            clock,
            self.integrity,
        )
        self.records = Records(
            self.access, keys, store, blobs, self.shredder, policy, clock, self.limits
        )
        self.consent = Consent(self.access, keys, store, self.shredder, policy, clock)
        self.subject_rights = SubjectRights(
            self.access, keys, store, self.reads, self.eraser, policy, clock
        )
        self.events = Events(self.access, keys, self.business_events, clock)
        self.shares = Shares(
            self.access,
            keys,
            store,
            self.reads,
            self.business_events,
            self.shredder,
            policy,
            clock,
        )
        self.holds = Holds(self.access, keys, store, self.eraser, clock)
        #: the signed checkpoints the proofs of QueryAudit and TailAudit are against (given by
        #: the composition root; None: entries come without proofs)
        self.audit_proofs = AuditProofs(store, checkpoints)
        self.audit_queries = AuditQueries(self.access, store, self.audit_proofs)
        self.search = Search(self.access, keys, store, self.reads, policy)
        self.breach = BreachScope(self.access, store)
        self.audit_tail = AuditTail(self.access, store, self.audit_proofs)
        self.notices = Notices(self.access, keys, store, self.business_events, policy.dormancy)
        self.verifier = DeletionVerifier(store, ledger, keys, self.shredder, policy, clock, schedule)
        self.replayer = Replayer(ledger, store, self.shredder, self.eraser, clock)

    # keys and references -------------------------------------------------------------------------
    @property
    def signing_key(self) -> SigningKey:
        """Signs audit checkpoints, ledger entries and deletion certificates."""
        return self.keys.signing_key

    @property
    def denials(self) -> DenialWatch:
        return self.access.denials

    @denials.setter
    def denials(self, watch: DenialWatch) -> None:
        self.access.denials = watch

    @property
    def cache(self) -> SubjectKeyCache:
        """This process's cache of unwrapped subject and legal keys."""
        return self.keys.cache

    @cache.setter
    def cache(self, cache: SubjectKeyCache) -> None:
        self.keys.cache = cache

    @property
    def cache_max_age(self) -> float:
        return self.keys.cache_max_age

    def subject_ref(self, subject_id: str) -> bytes:
        """The stored reference of a subject: a keyed hash of its id (the id is never stored)."""
        return subject_ref(self.keys.index_key, subject_id)

    @staticmethod
    def pseudonym(ref: bytes) -> str:
        """How audit entries and logs name a subject."""
        return audit_pseudonym(ref)

    def purpose_pseudonym(self, purpose: str, ref: bytes) -> str:
        """A subject's stable pseudonym within one purpose (de-identified views)."""
        return purpose_pseudonym(self.keys.index_key, purpose, ref)

    # records and reads ---------------------------------------------------------------------------
    def put_record(
        self,
        call: CallContext,
        subject_id: str,
        category: str,
        fields: Mapping[str, str],
        content_type: str = "",
        content: bytes | ContentStream | None = None,
        idempotency_key: str = "",
    ) -> tuple[str, int]:
        return self.records.put(
            call, subject_id, category, fields, content_type, content, idempotency_key
        )

    def put_records(
        self, call: CallContext, items: Sequence[PutItem]
    ) -> list[tuple[str, int] | VaultError]:
        return self.records.put_many(call, items)

    def get_records(self, call: CallContext, items: Sequence[GetItem]) -> list[RecordView | VaultError]:
        return self.reads.get_many(call, items)

    def update_record(
        self,
        call: CallContext,
        record_id: str,
        fields: Mapping[str, str],
        content_type: str = "",
        content: bytes | ContentStream | None = None,
        expected_version: int = 0,
    ) -> tuple[str, int]:
        return self.records.update(call, record_id, fields, content_type, content, expected_version)

    def delete_record(self, call: CallContext, record_id: str) -> None:
        self.records.delete(call, record_id)

    def list_records(
        self, call: CallContext, subject_id: str, page_size: int = 0, page_token: str = ""
    ) -> tuple[list[RecordMeta], str]:
        return self.records.list(call, subject_id, page_size, page_token)

    def get_record(
        self,
        call: CallContext,
        record_id: str,
        purpose: str,
        fields: frozenset[str] | None = None,
        include_content: bool = False,
    ) -> RecordView:
        return self.reads.get_record(call, record_id, purpose, fields, include_content)

    def download_content(
        self, call: CallContext, record_id: str, purpose: str, offset: int = 0, length: int = 0
    ) -> Iterator[tuple[int, bytes]]:
        return self.reads.download_content(call, record_id, purpose, offset, length)

    # consent and subject rights ------------------------------------------------------------------
    def grant_consent(
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
        return self.consent.grant(
            call,
            subject_id,
            purpose,
            categories,
            valid_from,
            valid_until,
            evidence_reference,
            grantee_principal,
            grantee_role,
            party,
        )

    def revoke_consent(self, call: CallContext, grant_id: str) -> Grant:
        return self.consent.revoke(call, grant_id)

    def list_consents(self, call: CallContext, subject_id: str) -> list[Grant]:
        return self.consent.list(call, subject_id)

    def set_restriction(self, call: CallContext, subject_id: str, restricted: bool) -> bool:
        return self.subject_rights.set_restriction(call, subject_id, restricted)

    def restrict_record(self, call: CallContext, record_id: str, restricted: bool) -> bool:
        return self.records.restrict(call, record_id, restricted)

    def find_records(
        self,
        call: CallContext,
        category: str,
        field: str,
        value: str,
        purpose: str,
        page_size: int = 0,
        page_token: str = "",
    ) -> tuple[list[RecordMeta], str]:
        return self.search.find(call, category, field, value, purpose, page_size, page_token)

    def list_notices(
        self, call: CallContext, kind: str = "", page_size: int = 0, page_token: str = ""
    ) -> tuple[list[Notice], str]:
        return self.notices.list(call, kind, page_size, page_token)

    def export_subject(self, call: CallContext, subject_id: str, purpose: str) -> Iterator[RecordView]:
        return self.subject_rights.export(call, subject_id, purpose)

    def erase_subject(self, call: CallContext, subject_id: str) -> bool:
        return self.subject_rights.erase(call, subject_id)

    def record_event(
        self, call: CallContext, subject_id: str, name: str, at: float | None = None
    ) -> bool:
        return self.events.record(call, subject_id, name, at)

    # holds ---------------------------------------------------------------------------------------
    def place_hold(
        self, call: CallContext, subject_id: str, reason: str, case_reference: str, record_id: str = ""
    ) -> HoldRow:
        return self.holds.place(call, subject_id, reason, case_reference, record_id)

    def list_holds(self, call: CallContext, subject_id: str) -> list[HoldRow]:
        return self.holds.list(call, subject_id)

    def release_hold(self, call: CallContext, hold_id: str) -> tuple[HoldRow, int]:
        return self.holds.release(call, hold_id)

    # audit ---------------------------------------------------------------------------------------
    def query_audit(
        self, call: CallContext, query: AuditQuery, page_size: int = 0, page_token: str = ""
    ) -> AuditPage:
        return self.audit_queries.query(call, query, page_size, page_token)

    def breach_scope(self, call: CallContext, query: BreachQuery) -> BreachScopeReport:
        return self.breach.scope(call, query)

    def tail_audit(
        self, call: CallContext, after_seq: int, follow: bool, limit: int, wait: Callable[[], bool]
    ) -> Iterator[ProvedEntry | TailGap]:
        return self.audit_tail.tail(call, after_seq, follow, limit, wait)

    # jobs (run by the server's loops and by vaultctl) --------------------------------------------
    def verify_deletions(self, call: CallContext | None = None) -> list[ErasureCheck]:
        """Verify every erasure of the ledger (a job run, audited; VERIFIED ones certified)."""
        if call is not None:
            self.access.allow(call, Action.DELETION_VERIFY)
        return self.verifier.run(call.principal.name if call else OPERATOR_PRINCIPAL)

    def verify_record_deletions(self, call: CallContext | None = None) -> list[RecordCheck]:
        """Verify every record destruction of the ledger (delete, retention, read-once): a job
        run, audited; VERIFIED ones certified."""
        if call is not None:
            self.access.allow(call, Action.DELETION_VERIFY)
        return self.verifier.run_records(call.principal.name if call else OPERATOR_PRINCIPAL)

    def replay_ledger(self) -> ReplayReport:
        """Make the store agree with the destruction ledger (at start-up, before serving)."""
        return self.replayer.run(self.keys.signing_key.public_key())

    def sweep_retention(self, batch: int = 200, dry_run: bool = False) -> list[tuple[str, str]]:
        return sweep_retention(
            self.store, self.policy, self.business_events, self.shredder, self.clock, batch, dry_run
        )

    def retention_forecast(self, horizon: float) -> list[tuple[float, str]]:
        return retention_forecast(self.store, self.policy, self.business_events, self.clock, horizon)

    def sweep_dormancy(self, batch: int = 500) -> dict[str, int]:
        """One run of the policy's dormancy rule (off without ``[dormancy]``)."""
        return sweep_dormancy(
            self.store,
            self.keys,
            self.business_events,
            self.eraser,
            self.clock,
            self.policy.dormancy,
            batch,
        )

    def sweep_blobs(self, min_age_seconds: float) -> int:
        return self.shredder.sweep_blobs(min_age_seconds)

    def purge_erased(self, batch: int = 500) -> int:
        return self.shredder.purge_erased(batch)

    def seal_legacy_plaintext(self) -> int:
        """Seal what older versions stored in plaintext (consent evidence, hold terms)."""
        return self.consent.seal_legacy_evidence() + self.holds.seal_legacy_terms()
