"""Audit jobs: write signed checkpoints, prune past the retention period, verify the chain.

They run in the server (a background loop) and from ``vaultctl audit``. Checkpoints go to a
:class:`~vault_service.audit.checkpoints.CheckpointStore` outside the record store; they are
signed with the service's Ed25519 audit key (wrapped by the key provider like every service key).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

from vault_service.audit.chain import Checkpoint, entry_hash
from vault_service.audit.checkpoints import CheckpointStore
from vault_service.audit.model import AuditEntry, AuditRow, job_row
from vault_service.audit.verify import VerifyReport, verify_chain
from vault_service.crypto.derive import audit_pseudonym
from vault_service.crypto.signing import SigningKey
from vault_service.storage import RecordStore

PAGE = 5000


def _sign(signer: SigningKey, kind: str, seq: int, hash_hex: str, now: float) -> Checkpoint:
    unsigned = Checkpoint(kind, seq, hash_hex, now, signer.public_key().hex())
    return Checkpoint(
        kind, seq, hash_hex, now, unsigned.public_key, signer.sign(unsigned.signed_bytes()).hex()
    )


class ChainBroken(Exception):
    """The entries written since the latest signed head do not chain onto it: refuse to sign
    them (a security event; ``vaultctl audit verify`` finds the first bad entry)."""


def _check_tail(store: RecordStore, last: Checkpoint | None, head_seq: int) -> None:
    """Every entry after ``last`` (the latest signed head) links to its predecessor and hashes
    to what it says, up to ``head_seq``; else :class:`ChainBroken`."""
    prev: bytes | None = None
    after = 0
    if last is not None:
        anchor = store.audit_entry(last.seq)
        if anchor is None or anchor.entry_hash.hex() != last.entry_hash:
            raise ChainBroken()
        prev, after = anchor.entry_hash, last.seq
    while after < head_seq:
        page = store.audit_entries(after, PAGE)
        if not page:
            raise ChainBroken()
        for entry in page:
            if prev is not None and entry.prev_hash != prev:
                raise ChainBroken()
            if entry.entry_hash != entry_hash(entry.prev_hash, entry.seq, entry.row):
                raise ChainBroken()
            prev, after = entry.entry_hash, entry.seq


def write_checkpoint(
    store: RecordStore, checkpoints: CheckpointStore, signer: SigningKey, now: float
) -> Checkpoint | None:
    """Sign the current head of the chain, unless the latest checkpoint already covers it.
    What was written since the latest signed head is verified first: a broken chain is never
    signed (:class:`ChainBroken`)."""
    head = store.audit_head()
    if head is None:
        return None
    heads = [c for c in checkpoints.all() if c.kind == "head"]
    if heads and heads[-1].seq == head.seq:
        return None
    _check_tail(store, heads[-1] if heads else None, head.seq)
    checkpoint = _sign(signer, "head", head.seq, head.entry_hash.hex(), now)
    checkpoints.append(checkpoint)
    return checkpoint


def prune(
    store: RecordStore,
    checkpoints: CheckpointStore,
    signer: SigningKey,
    retention_seconds: float,
    now: float,
) -> int:
    """Delete entries older than the retention period so that the rest still verifies: first a
    signed anchor (where the log now starts and the prev_hash its first entry carries), then the
    deletion. Returns how many entries were deleted."""
    store.append_audit(job_row("audit.prune", f"retention {retention_seconds:.0f}s", now))
    first_kept = store.audit_first_seq_since(now - retention_seconds)
    if first_kept is None:
        return 0
    entry = store.audit_entry(first_kept)
    oldest = store.audit_entries(0, 1)
    if entry is None or not oldest or oldest[0].seq >= first_kept:
        return 0
    write_checkpoint(store, checkpoints, signer, now)  # fix the head before history shrinks
    checkpoints.append(_sign(signer, "anchor", first_kept, entry.prev_hash.hex(), now))
    return store.delete_audit_before(first_kept)


def backfill_witnesses(store: RecordStore, now: float, batch: int = 500) -> int:
    """Witness the current version of records written before the rollback witness was a
    column (an upgrade): one audit entry each, so that a later rollback of their rows is caught.
    Returns how many were witnessed in this run (0 once there are none)."""

    def witness(record_id: str, ref: bytes, version: int) -> AuditRow:
        row = job_row(
            "job.witness",
            f"version {version} witnessed",
            now,
            subject_pseudonym=audit_pseudonym(ref),
            record_id=record_id,
        )
        return replace(row, witnessed_version=version)

    return store.witness_unwitnessed(batch, witness)


def _all_entries(store: RecordStore) -> Iterator[AuditEntry]:
    after = 0
    while True:
        page = store.audit_entries(after, PAGE)
        if not page:
            return
        yield from page
        after = page[-1].seq


def verify(store: RecordStore, checkpoints: CheckpointStore, public_key: bytes) -> VerifyReport:
    """Verify the whole stored chain against every checkpoint (streams the log in pages)."""
    try:
        cps = checkpoints.all()
    except (ValueError, KeyError):
        return VerifyReport(False, "the checkpoint file is corrupt", None, 0, 0, 0)
    return verify_chain(_all_entries(store), cps, public_key)
