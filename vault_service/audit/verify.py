"""Verify the audit chain against its signed checkpoints (pure: entries and checkpoints come in).

A missing checkpoint is a failure, not a pass. The report names the first bad entry:

- an edited entry: its recomputed hash differs from the stored one;
- a deleted entry: a gap in the sequence;
- an inserted, reordered or duplicated entry: its prev_hash is not the previous entry's hash;
- a rewritten chain: an entry's hash differs from a signed checkpoint at that sequence number;
- a truncated tail: the log ends before the latest signed checkpoint;
- a tree checkpoint whose root is not the Merkle root of the entries up to its size (a
  rewritten chain, caught with no entry hash stored anywhere else).

A tree checkpoint is a C2SP note: it verifies under its own origin with ``public_key``. After a
prune, the anchor's ``prefix`` (the pruned leaves' perfect subtrees) starts the tree, so every
root is recomputed from the kept entries alone; a tree checkpoint from before the anchor is
checked only for its signature.

Entries appended after the latest checkpoint are chained but not yet signed; the report counts them
(checkpoint frequency bounds how much could be rewritten undetected).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from vault_service.audit.chain import GENESIS, Checkpoint, entry_hash
from vault_service.audit.model import AuditEntry
from vault_service.crypto.signing import verify_signature
from vault_service.tlog import merkle, note


class CompactRange:
    """The perfect subtrees covering leaves [0, size) (the binary digits of ``size``), so that
    the root of every prefix is computed while streaming the leaves, in O(log n) memory."""

    def __init__(self, size: int = 0, hashes: Sequence[bytes] = ()) -> None:
        self.size = size
        # (leaves covered, hash) of each perfect subtree, largest first
        self._stack: list[tuple[int, bytes]] = []
        widths = [1 << b for b in range(size.bit_length() - 1, -1, -1) if size >> b & 1]
        if len(widths) != len(hashes):
            raise ValueError("the prefix does not cover its size")
        self._stack = list(zip(widths, hashes, strict=True))

    def append(self, leaf: bytes) -> None:
        width, digest = 1, leaf
        while self._stack and self._stack[-1][0] == width:
            left = self._stack.pop()[1]
            width, digest = width * 2, merkle.node_hash(left, digest)
        self._stack.append((width, digest))
        self.size += 1

    def root(self) -> bytes:
        return merkle.fold([h for _, h in self._stack]) if self._stack else merkle.EMPTY_ROOT


def _tree_claim(cp: Checkpoint, public_key: bytes) -> tuple[int, bytes] | None:
    """The (size, root) a tree checkpoint's note states, if it verifies and agrees with its
    line; None otherwise."""
    try:
        origin = cp.note.split("\n", 1)[0]
        stated = note.Checkpoint.parse(note.verify_note(cp.note, origin, public_key))
    except ValueError:
        return None
    if stated.size != cp.seq or stated.root.hex() != cp.entry_hash:
        return None
    return stated.size, stated.root


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


@dataclass
class _Signed:
    """What the checkpoints say, read in order."""

    heads: dict[int, bytes] = field(default_factory=dict)
    roots: dict[int, bytes] = field(default_factory=dict)
    anchor_seq: int = 1
    anchor_prev: bytes = GENESIS
    anchor_prefix: tuple[str, ...] = ()
    last_head: int = 0

    def head(self, i: int, cp: Checkpoint) -> VerifyReport | None:
        if cp.seq < self.last_head:
            return _fail(f"checkpoint {i} goes back from seq {self.last_head} to {cp.seq}", None, 0, i)
        self.last_head = cp.seq
        return None


def _read_checkpoints(checkpoints: Sequence[Checkpoint], public_key: bytes) -> _Signed | VerifyReport:
    signed = _Signed()
    for i, cp in enumerate(checkpoints, start=1):
        if cp.kind == "tree":
            claim = _tree_claim(cp, public_key) if cp.public_key == public_key.hex() else None
            if claim is None:
                return _fail(f"checkpoint {i} (seq {cp.seq}) has an invalid signature", None, 0, i)
            if (failed := signed.head(i, cp)) is not None:
                return failed
            signed.roots[cp.seq] = claim[1]
            continue
        if cp.public_key != public_key.hex() or not verify_signature(
            public_key, bytes.fromhex(cp.signature), cp.signed_bytes()
        ):
            return _fail(f"checkpoint {i} (seq {cp.seq}) has an invalid signature", None, 0, i)
        if cp.kind == "head":
            if (failed := signed.head(i, cp)) is not None:
                return failed
            signed.heads[cp.seq] = bytes.fromhex(cp.entry_hash)
        elif cp.kind == "restore":
            # an acknowledged restore: what was signed past the restored size is history
            signed.heads = {seq: h for seq, h in signed.heads.items() if seq <= cp.seq}
            signed.roots = {size: r for size, r in signed.roots.items() if size <= cp.seq}
            signed.last_head = min(signed.last_head, cp.seq)
        elif cp.kind == "anchor":
            if cp.seq >= signed.anchor_seq:
                signed.anchor_seq, signed.anchor_prev = cp.seq, bytes.fromhex(cp.entry_hash)
                signed.anchor_prefix = cp.prefix
        else:
            return _fail(f"checkpoint {i} has an unknown kind", None, 0, i)
    return signed


def verify_chain(
    entries: Iterable[AuditEntry], checkpoints: Sequence[Checkpoint], public_key: bytes
) -> VerifyReport:
    """Check ``entries`` (in stored order) against ``checkpoints`` signed by ``public_key``."""
    if not checkpoints:
        return _fail("no signed checkpoint: the log cannot be verified", None, 0, 0)
    signed = _read_checkpoints(checkpoints, public_key)
    if isinstance(signed, VerifyReport):
        return signed
    heads, roots, last_head = signed.heads, signed.roots, signed.last_head
    anchor_seq, anchor_prev, anchor_prefix = signed.anchor_seq, signed.anchor_prev, signed.anchor_prefix

    expected, prev, checked = anchor_seq, anchor_prev, 0
    tree: CompactRange | None = None
    if anchor_seq == 1:
        tree = CompactRange()
    elif anchor_prefix:
        try:
            tree = CompactRange(anchor_seq - 1, [bytes.fromhex(h) for h in anchor_prefix])
        except ValueError:
            return _fail("the anchor's pruned prefix is malformed", None, 0, len(checkpoints))
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
        head = heads.get(entry.seq)
        if head is not None and head != entry.entry_hash:
            return _fail(
                f"entry {entry.seq} differs from its signed checkpoint (chain rewritten)",
                entry.seq,
                checked,
                len(checkpoints),
            )
        if tree is not None:
            tree.append(merkle.leaf_hash(entry.entry_hash))
            root = roots.get(tree.size)
            if root is not None and root != tree.root():
                return _fail(
                    f"entries up to {entry.seq} differ from the signed checkpoint"
                    f" of tree size {tree.size}"
                    " (chain rewritten)",
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
