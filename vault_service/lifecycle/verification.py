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
  is destroyed, or scheduled for destruction (KMS pending window: the date is reported).

Result: VERIFIED (a certificate is issued), PENDING_UNTIL <date> (or PENDING with no date while a
root version is still active), or FAILED with the reason.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from vault_service.crypto.signing import SigningKey, verify_signature
from vault_service.key_providers.base import KeyState, KeyVersion
from vault_service.lifecycle.ledger import ErasureEntry
from vault_service.storage import RecordStore

CERT_FORMAT = "vault-service/deletion-certificate/v1"
VERIFIED, PENDING, FAILED = "VERIFIED", "PENDING", "FAILED"
#: record rows of an erased subject should be purged within this long (the purge loop runs
#: every few seconds); beyond it their presence is a failure, not a delay
PURGE_DEADLINE = 3600.0


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

    def _pending(self, what: str, until: float | None) -> None:
        self.reasons.append(what)
        self.pending_dates.append(until)
        if self.status != FAILED:
            self.status = PENDING

    def _fail(self, what: str) -> None:
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
    entries: Sequence[ErasureEntry],
    store: RecordStore,
    versions: list[KeyVersion],
    pseudonym: Callable[[bytes], str],
    cached_here: Callable[[bytes], bool],
    cache_max_age: float,
    signer: SigningKey,
    now: float,
    legal_until: Callable[[bytes], float | None] = lambda ref: None,
    orphan_blobs: int = 0,
) -> list[ErasureCheck]:
    """Check every erasure (see the module docstring); VERIFIED ones get a certificate."""
    by_version = {v.version: v for v in versions}
    out = []
    for entry in entries:
        ref = bytes.fromhex(entry.subject_ref)
        check = ErasureCheck(pseudonym(ref), entry.erased_at)
        key_row, records = store.subject_residue(ref)
        if key_row:
            check._fail("the subject key row still exists")
            check.checks["key"] = "present"
        else:
            check.checks["key"] = "destroyed"
        if records:
            check.checks["records"] = f"{records} rows left"
            if now - entry.erased_at > PURGE_DEADLINE:
                check._fail(f"{records} record rows not purged")
            else:
                check._pending("record rows being purged", entry.erased_at + PURGE_DEADLINE)
        else:
            check.checks["records"] = "purged"
            # a purged record's blob is deleted with it, or left as an orphan for the blob sweep:
            # with no orphan blob anywhere, none of this subject's blobs can remain
            if orphan_blobs:
                check.checks["blobs"] = f"{orphan_blobs} orphan blobs awaiting the blob sweep"
                check._pending("orphan blobs awaiting the blob sweep", None)
            else:
                check.checks["blobs"] = "gone"
        kept_until = legal_until(ref)
        if kept_until is not None:
            check.checks["legal_retention"] = "kept until its time"
            check._pending("records under legal retention are kept until their time", kept_until)
        if cached_here(ref):
            check._fail("this process still caches the subject key")
        aged_out = entry.erased_at + cache_max_age
        if now < aged_out:
            check._pending("other processes' caches age out", aged_out)
            check.checks["cache"] = "aging out"
        else:
            check.checks["cache"] = "aged out"
        for version in entry.root_versions:
            known = by_version.get(version)
            if known is None or known.state is KeyState.DESTROYED:
                check.checks[f"root_version_{version}"] = "destroyed"
            elif known.state is KeyState.PENDING_DESTRUCTION and known.destroy_at:
                check.checks[f"root_version_{version}"] = "scheduled"
                check._pending(f"root version {version} scheduled for destruction", known.destroy_at)
            else:
                check.checks[f"root_version_{version}"] = known.state.value
                check._pending(
                    f"root version {version} not yet destroyed (rotate, rewrap, "
                    "retire and destroy it after the backup window)",
                    None,
                )
        if check.status == VERIFIED:
            check.certificate = issue_certificate(check, entry, signer, now)
        out.append(check)
    return out


def _signed_bytes(body: dict[str, Any]) -> bytes:
    unsigned = {k: v for k, v in body.items() if k != "signature"}
    return b"vault-deletion-certificate/v1\x00" + json.dumps(unsigned, sort_keys=True).encode()


def issue_certificate(
    check: ErasureCheck, entry: ErasureEntry, signer: SigningKey, now: float
) -> dict[str, Any]:
    """A deletion certificate: what was checked, when, signed with Ed25519."""
    body: dict[str, Any] = {
        "format": CERT_FORMAT,
        "certificate_id": f"{check.subject_pseudonym}-{int(now)}",
        "subject_pseudonym": check.subject_pseudonym,
        "erased_at": entry.erased_at,
        "verified_at": now,
        "status": VERIFIED,
        "checks": dict(sorted(check.checks.items())),
        "root_versions": list(entry.root_versions),
        "public_key": signer.public_key().hex(),
    }
    body["signature"] = signer.sign(_signed_bytes(body)).hex()
    return body


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
