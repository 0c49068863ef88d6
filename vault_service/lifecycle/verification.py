"""Deletion verification: for each erasure in the ledger, check that it really is gone, and issue
a signed deletion certificate an auditor can verify offline.

Checks per erasure:

- **key**: the subject's key row is gone from the record store;
- **records**: its record rows are gone (purged after the O(1) erasure);
- **blobs**: no blob without a record remains anywhere (a purged record's blob is deleted with it
  or left for the blob sweep), so none of the subject's blobs can remain;
- **cache**: no process can still hold the unwrapped key: this process does not, and every other
  process's cache entry has aged out (``erased_at + cache_max_age``);
- **legal retention**: records kept by law after the erasure (payment records) are still there
  until their time: PENDING_UNTIL that date;
- **root versions**: every root version that could have wrapped the key (recorded in the ledger)
  is destroyed, or scheduled for destruction: by the provider (KMS pending window) or by the
  root-key epoch schedule (an active version is rotated out and destroyed a backup window after
  it was retired; the date is reported);
- **legal hold**: an erasure a hold deferred is PENDING until the hold's release carries it out.

Result: VERIFIED (a certificate is issued), PENDING_UNTIL <date>, PENDING (no date: a hold
applies, or rotation is off and a root version is still active), or FAILED with the reason.
A certificate carries the ledger proof of the destruction (:mod:`.ledger_proof`: its ledger
line, the line's inclusion proof, the witnessed ledger checkpoint), covered by its signature.

Single records are verified and certified the same way: every record the ledger says was
destroyed (a DeleteRecord, a retention shred, a read-once release; not one a ``cancelled``
entry took back), under the cause that asked for it. Checks per record:

- **rows**: its record row, data key rows and payload rows are gone from the record store; rows
  left within ``SHRED_GRACE`` of the entry are a shred in flight (PENDING: the ledger is written
  first), rows left after it are FAILED (the store does not agree with the ledger);
- **blobs**: no orphan blob awaits the blob sweep;
- **backups**: a backup taken before the shred still holds the record's data key, wrapped by the
  subject key that is still alive: it stays recoverable from such a backup, by whoever holds it
  and the keys, until the backup expires. PENDING_UNTIL the shred time plus the backup window
  (``[lifecycle] backup_window_days``: how long backups are kept), then VERIFIED;
- **legal hold**: a destruction a hold deferred (a delete asked for under a hold, a read-once
  record consumed under one) is PENDING until the hold's release carries it out.

The ledger, not the audit trail, is the source of both: pruning the audit trail loses nothing.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from vault_service import security_events
from vault_service.audit.model import AuditRow
from vault_service.clock import Clock
from vault_service.crypto.derive import audit_pseudonym
from vault_service.crypto.signing import SigningKey, verify_signature
from vault_service.key_hierarchy import KeyHierarchy
from vault_service.key_providers.base import KeyState, KeyVersion
from vault_service.lifecycle.ledger import Destruction, DestructionLedger, Kind, State
from vault_service.lifecycle.ledger_proof import LedgerProver, WitnessedLedger
from vault_service.lifecycle.shredding import Shredder
from vault_service.policy import Policy
from vault_service.storage import RecordStore, RootVersionState
from vault_service.storage.rows import DESTROYING, MARKED, RETIRED

CERT_FORMAT = "vault-service/deletion-certificate/v1"
VERIFIED, PENDING, FAILED = "VERIFIED", "PENDING", "FAILED"
#: record rows of an erased subject should be purged within this long (the purge loop runs
#: every few seconds); beyond it their presence is a failure, not a delay
PURGE_DEADLINE = 3600.0
#: the ledger proof of a destruction's latest entry (None: none to give)
LedgerProofOf = Callable[[Destruction], Mapping[str, Any] | None]
#: a record's rows are gone within this long of its ledger entry (the shred is one transaction
#: right after the entry; a crash in between is finished by the next start's replay)
SHRED_GRACE = 300.0


@dataclass
class ErasureCheck:
    """The verification of one erasure."""

    subject_pseudonym: str
    erased_at: float
    status: str = VERIFIED
    reasons: list[str] = field(default_factory=list)
    checks: dict[str, str] = field(default_factory=dict)
    certificate: dict[str, Any] | None = None
    #: when each pending condition clears (None: no date known yet)
    pending_dates: list[float | None] = field(default_factory=list)

    def mark_pending(self, what: str, until: float | None) -> None:
        self.reasons.append(what)
        self.pending_dates.append(until)
        if self.status != FAILED:
            self.status = PENDING

    def mark_failed(self, what: str) -> None:
        self.reasons.append(what)
        self.status = FAILED

    @property
    def pending_until(self) -> float | None:
        """When everything pending clears; None if not pending or a date is not known."""
        if self.status != PENDING or None in self.pending_dates:
            return None
        return max(d for d in self.pending_dates if d is not None)

    @property
    def label(self) -> str:
        """VERIFIED, FAILED, PENDING_UNTIL <date> or PENDING."""
        until = self.pending_until
        if self.status == PENDING and until is not None:
            return "PENDING_UNTIL " + time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(until))
        return self.status


def verify_erasures(
    entries: Sequence[Destruction],
    store: RecordStore,
    versions: list[KeyVersion],
    pseudonym: Callable[[bytes], str],
    cached_here: Callable[[bytes], bool],
    cache_max_age: float,
    signer: SigningKey,
    now: float,
    legal_until: Callable[[bytes], float | None] = lambda ref: None,
    orphan_blobs: int = 0,
    destroyed_by: Callable[[KeyVersion], float | None] = lambda v: None,
    ledger_proof: LedgerProofOf = lambda e: None,
) -> list[ErasureCheck]:
    """Check every subject erasure of the ledger (see the module docstring); VERIFIED ones get a
    certificate (with ``ledger_proof(entry)`` when not None). ``destroyed_by(version)`` is when
    the epoch schedule will have destroyed an active root version (None if it will not:
    rotation is off)."""
    by_version = {v.version: v for v in versions}
    out = []
    for entry in entries:
        ref = entry.subject_ref
        check = ErasureCheck(pseudonym(ref), entry.at)
        if entry.state is State.DEFERRED:
            check.mark_pending("deferred by a legal hold: carried out at its release", None)
            check.checks["legal_hold"] = "deferred"
            out.append(check)
            continue
        erased_at = entry.at
        _check_rows(check, store, ref, erased_at, now, orphan_blobs)
        kept_until = legal_until(ref)
        if kept_until is not None:
            check.checks["legal_retention"] = "kept until its time"
            check.mark_pending("records under legal retention are kept until their time", kept_until)
        if cached_here(ref):
            check.mark_failed("this process still caches the subject key")
        aged_out = erased_at + cache_max_age
        if now < aged_out:
            check.mark_pending("other processes' caches age out", aged_out)
            check.checks["cache"] = "aging out"
        else:
            check.checks["cache"] = "aged out"
        _check_root_versions(check, entry.root_versions, by_version, destroyed_by)
        if check.status == VERIFIED:
            check.certificate = issue_certificate(check, entry, signer, now, ledger_proof(entry))
        out.append(check)
    return out


def _check_rows(
    check: ErasureCheck,
    store: RecordStore,
    ref: bytes,
    erased_at: float,
    now: float,
    orphan_blobs: int,
) -> None:
    """The key row, the record rows and the blobs of an erased subject."""
    key_row, records = store.subject_residue(ref)
    if key_row:
        check.mark_failed("the subject key row still exists")
        check.checks["key"] = "present"
    else:
        check.checks["key"] = "destroyed"
    if records:
        check.checks["records"] = f"{records} rows left"
        if now - erased_at > PURGE_DEADLINE:
            check.mark_failed(f"{records} record rows not purged")
        else:
            check.mark_pending("record rows being purged", erased_at + PURGE_DEADLINE)
    else:
        check.checks["records"] = "purged"
        _check_blobs(check, orphan_blobs)


def _check_blobs(check: ErasureCheck, orphan_blobs: int) -> None:
    """A destroyed record's blob is deleted after the commit, or left as an orphan for the blob
    sweep: with no orphan blob anywhere, none of the destroyed blobs can remain."""
    if orphan_blobs:
        check.checks["blobs"] = f"{orphan_blobs} orphan blobs awaiting the blob sweep"
        check.mark_pending("orphan blobs awaiting the blob sweep", None)
    else:
        check.checks["blobs"] = "gone"


def _check_root_versions(
    check: ErasureCheck,
    root_versions: Sequence[str],
    by_version: Mapping[str, KeyVersion],
    destroyed_by: Callable[[KeyVersion], float | None],
) -> None:
    """Every root version that could have wrapped the subject key: destroyed, or when."""
    for version in root_versions:
        known = by_version.get(version)
        if known is None or known.state is KeyState.DESTROYED:
            check.checks[f"root_version_{version}"] = "destroyed"
        elif known.state is KeyState.PENDING_DESTRUCTION and known.destroy_at:
            check.checks[f"root_version_{version}"] = "scheduled"
            check.mark_pending(f"root version {version} scheduled for destruction", known.destroy_at)
        else:
            check.checks[f"root_version_{version}"] = known.state.value
            check.mark_pending(
                f"root version {version} not yet destroyed (the epoch schedule rotates, "
                "rewraps, retires and destroys it after the backup window)",
                destroyed_by(known),
            )


def _signed_bytes(body: dict[str, Any]) -> bytes:
    unsigned = {k: v for k, v in body.items() if k != "signature"}
    return b"vault-deletion-certificate/v1\x00" + json.dumps(unsigned, sort_keys=True).encode()


def sign_certificate(body: Mapping[str, Any], signer: SigningKey) -> dict[str, Any]:
    """``body`` with its Ed25519 ``signature`` over everything else in it."""
    signed = {k: v for k, v in body.items() if k != "signature"}
    signed["signature"] = signer.sign(_signed_bytes(signed)).hex()
    return signed


def issue_certificate(
    check: ErasureCheck,
    entry: Destruction,
    signer: SigningKey,
    now: float,
    ledger_proof: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A deletion certificate: what was checked, when, signed with Ed25519. A record's (not a
    subject's) also names the record, the cause and ``kind: record``. ``ledger_proof``
    (:mod:`.ledger_proof`), when given, is part of what the signature covers."""
    body: dict[str, Any] = {
        "format": CERT_FORMAT,
        "certificate_id": f"{entry.object_id or check.subject_pseudonym}-{int(now)}",
        "subject_pseudonym": check.subject_pseudonym,
        "erased_at": entry.at,
        "verified_at": now,
        "status": VERIFIED,
        "checks": dict(sorted(check.checks.items())),
        "root_versions": list(entry.root_versions),
        "public_key": signer.public_key().hex(),
    }
    if entry.kind is Kind.RECORD:
        body.update(kind="record", record_id=entry.object_id, cause=entry.origin or entry.cause)
    if ledger_proof is not None:
        body["ledger_proof"] = dict(ledger_proof)
    return sign_certificate(body, signer)


def check_certificate(cert: dict[str, Any], public_key: bytes | None = None) -> tuple[bool, str]:
    """Offline check of a certificate (against a pinned key if given, else the embedded one)."""
    try:
        if cert.get("format") != CERT_FORMAT or cert.get("status") != VERIFIED:
            return False, "not a vault-service deletion certificate"
        embedded = bytes.fromhex(str(cert["public_key"]))
        signature = bytes.fromhex(str(cert["signature"]))
    except (KeyError, ValueError):
        return False, "malformed certificate"
    key = public_key if public_key is not None else embedded
    if public_key is not None and embedded != public_key:
        return False, "signed by another key than the pinned one"
    if not verify_signature(key, signature, _signed_bytes(cert)):
        return False, "invalid signature"
    return True, "valid"


@dataclass
class RecordCheck(ErasureCheck):
    """The verification of one record's destruction (``erased_at`` is when it was shredded)."""

    record_id: str = ""
    cause: str = ""


def verify_records(
    entries: Sequence[Destruction],
    store: RecordStore,
    pseudonym: Callable[[bytes], str],
    signer: SigningKey,
    now: float,
    backup_window: float,
    orphan_blobs: int = 0,
    ledger_proof: LedgerProofOf = lambda e: None,
) -> list[RecordCheck]:
    """Check every record destruction of the ledger (see the module docstring); VERIFIED ones
    get a certificate (with ``ledger_proof(entry)`` when not None)."""
    out = []
    for entry in entries:
        if entry.state is State.CANCELLED:
            continue  # it did not happen: the record stays
        check = RecordCheck(
            pseudonym(entry.subject_ref),
            entry.at,
            record_id=entry.object_id,
            cause=entry.origin or entry.cause,
        )
        out.append(check)
        if entry.state is State.DEFERRED:
            check.mark_pending("deferred by a legal hold: carried out at its release", None)
            check.checks["legal_hold"] = "deferred"
            continue
        rows, keys, payloads = store.record_residue(entry.object_id)
        left = {"record row": rows, "data key rows": keys, "payload rows": payloads}
        if any(left.values()):
            residue = ", ".join(f"{n} {what}" for what, n in left.items() if n)
            check.checks["rows"] = "present"
            if now - entry.at <= SHRED_GRACE:
                # ledgered first, the store next: a shred in flight (or one a crash stopped,
                # which the next start's replay finishes)
                check.mark_pending(f"being shredded: {residue}", entry.at + SHRED_GRACE)
            else:
                check.mark_failed("left in the store: " + residue)
        else:
            check.checks["rows"] = "destroyed"
        _check_blobs(check, orphan_blobs)
        expires = entry.at + backup_window
        if backup_window > 0 and now < expires:
            check.checks["backups"] = "a backup from before the shred may hold its data key"
            check.mark_pending("backups from before the shred expire (the backup window)", expires)
        else:
            check.checks["backups"] = "expired"
        if check.status == VERIFIED:
            check.certificate = issue_certificate(check, entry, signer, now, ledger_proof(entry))
    return out


def epoch_schedule(
    states: Mapping[str, RootVersionState], rotate_every: float, backup_window: float, now: float
) -> Callable[[KeyVersion], float | None]:
    """When the root-key epoch job will have destroyed each active version: a retired one a
    backup window after it was retired; the primary one a backup window after its rotation
    is due; another active one a backup window after the next run retires it. None when
    rotation is off (nothing will destroy an active version by itself)."""

    def destroyed_by(version: KeyVersion) -> float | None:
        recorded = states.get(version.version)
        if recorded is not None and recorded.state == DESTROYING:
            return recorded.updated_at  # a destroy in progress (or interrupted, and retried)
        if recorded is not None and recorded.state in (RETIRED, MARKED):
            return recorded.updated_at + backup_window
        if rotate_every <= 0:
            return None
        if version.primary:
            return max(now, version.created_at + rotate_every) + backup_window
        return now + backup_window

    return destroyed_by


class DeletionVerifier:
    """The deletion verification job: gathers what :func:`verify_erasures` checks, runs it,
    audits the run and raises ``deletion_verification_failed`` for every FAILED erasure."""

    def __init__(
        self,
        store: RecordStore,
        ledger: DestructionLedger,
        keys: KeyHierarchy,
        shredder: Shredder,
        policy: Policy,
        clock: Clock,
        schedule: tuple[float, float] = (0.0, 0.0),
    ) -> None:
        self.store = store
        self.ledger = ledger
        self.keys = keys
        self.shredder = shredder
        self.policy = policy
        self.clock = clock
        #: (rotate_every, backup_window) seconds of the epoch job
        self.schedule = schedule
        #: the ledger's witnessed checkpoints, for the certificates' ledger proofs (set by the
        #: composition root when there is a witness; None: proved against the vault's own)
        self.witnessed_ledger: WitnessedLedger | None = None

    def _prover(self, signer: SigningKey) -> LedgerProver:
        return LedgerProver(self.ledger, signer, self.witnessed_ledger)

    def legal_until(self, ref: bytes) -> float | None:
        """When the subject's last record under legal retention is due (None if none)."""
        ends = [
            created + self.policy.categories[cat].retention.period
            for cat, created in self.store.legal_records(ref)
            if cat in self.policy.categories
        ]
        return max(ends) if ends else None

    def run(self, principal: str) -> list[ErasureCheck]:
        signer = self.keys.signing_key
        now = self.clock.now()
        provider = self.keys.provider
        versions = provider.versions()
        rotate_every, backup_window = self.schedule
        results = verify_erasures(
            self.ledger.subject_erasures(signer.public_key()),
            self.store,
            versions,
            audit_pseudonym,
            self.keys.holds_subject_key,
            self.keys.cache_max_age,
            signer,
            now,
            self.legal_until,
            self.shredder.orphan_blobs(),
            epoch_schedule(
                self.store.root_version_states(provider.name), rotate_every, backup_window, now
            ),
            self._prover(signer).proof,
        )
        self._audited(principal, now, "", results)
        return results

    def run_records(self, principal: str) -> list[RecordCheck]:
        """Verify every record destruction of the ledger (see the module docstring)."""
        signer = self.keys.signing_key
        now = self.clock.now()
        results = verify_records(
            self.ledger.record_destructions(signer.public_key()),
            self.store,
            audit_pseudonym,
            signer,
            now,
            self.schedule[1],
            self.shredder.orphan_blobs(),
            self._prover(signer).proof,
        )
        self._audited(principal, now, "records: ", results)
        return results

    def _audited(self, principal: str, now: float, what: str, results: Sequence[ErasureCheck]) -> None:
        """One audited job run with its counts; ``deletion_verification_failed`` per FAILED."""
        counts = {s: sum(r.status == s for r in results) for s in (VERIFIED, PENDING, FAILED)}
        self.store.append_audit(
            AuditRow(
                at=now,
                principal=principal,
                action="job.verify_deletion",
                decision="allow",
                reason=what + ", ".join(f"{k.lower()} {v}" for k, v in counts.items()),
            )
        )
        for r in results:
            if r.status == FAILED:
                security_events.emit("deletion_verification_failed")
