"""Verify the audit chain against its signed checkpoints (pure: entries and checkpoints come in).

A missing checkpoint is a failure, not a pass. The report names the first bad entry:

- an edited entry: its recomputed hash differs from the stored one;
- a deleted entry: a gap in the sequence;
- an inserted, reordered or duplicated entry: its prev_hash is not the previous entry's hash;
- a rewritten chain: an entry's hash differs from a signed checkpoint at that sequence number;
- a truncated tail: the log ends before the latest signed checkpoint.

Entries appended after the latest checkpoint are chained but not yet signed; the report counts them
(checkpoint frequency bounds how much could be rewritten undetected).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from vault_service.audit.chain import GENESIS, Checkpoint, entry_hash
from vault_service.audit.model import AuditEntry
from vault_service.crypto.signing import verify_signature


@dataclass(frozen=True)
class VerifyReport:
    """The outcome. ``first_bad_seq`` is set when ``ok`` is False and an entry is to blame."""

    ok: bool
    reason: str
    first_bad_seq: int | None
    entries_checked: int
    checkpoints_checked: int
    unsigned_tail: int


def _fail(reason: str, seq: int | None, entries: int, checkpoints: int) -> VerifyReport:
    return VerifyReport(False, reason, seq, entries, checkpoints, 0)


def verify_chain(
    entries: Iterable[AuditEntry], checkpoints: Sequence[Checkpoint], public_key: bytes
) -> VerifyReport:
    """Check ``entries`` (in stored order) against ``checkpoints`` signed by ``public_key``."""
    if not checkpoints:
        return _fail("no signed checkpoint: the log cannot be verified", None, 0, 0)
    heads: dict[int, bytes] = {}
    anchor_seq, anchor_prev = 1, GENESIS
    last_head = 0
    for i, cp in enumerate(checkpoints, start=1):
        if cp.public_key != public_key.hex() or not verify_signature(
            public_key, bytes.fromhex(cp.signature), cp.signed_bytes()
        ):
            return _fail(f"checkpoint {i} (seq {cp.seq}) has an invalid signature", None, 0, i)
        if cp.kind == "head":
            if cp.seq < last_head:
                return _fail(f"checkpoint {i} goes back from seq {last_head} to {cp.seq}", None, 0, i)
            last_head = cp.seq
            heads[cp.seq] = bytes.fromhex(cp.entry_hash)
        elif cp.kind == "anchor":
            if cp.seq >= anchor_seq:
                anchor_seq, anchor_prev = cp.seq, bytes.fromhex(cp.entry_hash)
        else:
            return _fail(f"checkpoint {i} has an unknown kind", None, 0, i)

    expected, prev, checked = anchor_seq, anchor_prev, 0
    for entry in entries:
        if entry.seq < anchor_seq:
            continue  # left over by an interrupted prune; outside the verified log
        if entry.seq < expected:
            return _fail(
                f"entry {entry.seq} appears twice or out of order", entry.seq, checked, len(checkpoints)
            )
        if entry.seq > expected:
            return _fail(f"entry {expected} is missing (deleted)", expected, checked, len(checkpoints))
        if entry.prev_hash != prev:
            return _fail(
                f"entry {entry.seq} does not follow entry {entry.seq - 1} "
                "(inserted, reordered or duplicated)",
                entry.seq,
                checked,
                len(checkpoints),
            )
        if entry_hash(prev, entry.seq, entry.row) != entry.entry_hash:
            return _fail(f"entry {entry.seq} was altered", entry.seq, checked, len(checkpoints))
        signed = heads.get(entry.seq)
        if signed is not None and signed != entry.entry_hash:
            return _fail(
                f"entry {entry.seq} differs from its signed checkpoint (chain rewritten)",
                entry.seq,
                checked,
                len(checkpoints),
            )
        prev = entry.entry_hash
        expected += 1
        checked += 1
    last = expected - 1
    if last_head > last:
        return _fail(
            f"log truncated: a signed checkpoint covers entry {last_head} but the log ends at {last}",
            last + 1,
            checked,
            len(checkpoints),
        )
    return VerifyReport(
        True,
        "chain intact and consistent with every signed checkpoint",
        None,
        checked,
        len(checkpoints),
        max(last - max(last_head, anchor_seq - 1), 0),
    )
