"""Audit jobs: integrate new entries into the Merkle tree and sign its checkpoint, prune past the
retention period, verify.

They run in the server (background loops; the sequencer under the maintenance lease) and from
``vaultctl audit``. The sequencer (:func:`integrate`) moves the calls' pending entries into the
chain, then appends the leaves of every entry written since the tree's last leaf (RFC 6962
``SHA-256(0x00 || entry_hash)``, leaf index ``seq - 1``) to the tree in ``tlog_nodes``, once it
has checked that they chain (each links to its predecessor and hashes to what it says: a broken
chain is never signed, :class:`ChainBroken`). The entries it has just moved are not read back:
their hashes are the ones it computed from the MAC-checked pending entries; entries moved
earlier (before a crash, by another run) are read and rehashed.
:func:`write_checkpoint` then signs the tree's checkpoint (a C2SP signed note under the audit
log's origin), gives it to the witness (:class:`~vault_service.audit.publish.Publisher`) and
appends the cosigned note to a :class:`~vault_service.audit.checkpoints.CheckpointStore` outside
the record store. Signed with the service's Ed25519 audit key (wrapped by the key provider like
every service key).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Iterator
from dataclasses import replace

from vault_service import metrics
from vault_service.audit.chain import Checkpoint, entry_hash
from vault_service.audit.checkpoints import CheckpointStore
from vault_service.audit.model import AuditEntry, AuditRow, job_row
from vault_service.audit.publish import LocalTree, Publisher, sign_checkpoint
from vault_service.audit.verify import VerifyReport, verify_chain
from vault_service.crypto.derive import audit_pseudonym
from vault_service.crypto.signing import SigningKey
from vault_service.errors import Unavailable
from vault_service.faults import fault_point
from vault_service.storage import RecordStore
from vault_service.storage.tree_nodes import Link, PendingTampered
from vault_service.tlog import merkle

#: entries per sequencer transaction (VAULT_SEQUENCER_PAGE: crash tests make it small)
PAGE = int(os.environ.get("VAULT_SEQUENCER_PAGE", "5000"))
#: the name of the audit trail's tree in ``tlog_nodes``
AUDIT_TREE = "audit"
#: the leaf standing for each entry pruned before the tree existed (an upgraded, pruned trail):
#: never an entry's leaf, as an entry's leaf data is a 32-byte hash
PRUNED_LEAF = merkle.leaf_hash(b"vault-audit: pruned before the tree")


def default_origin(public_key: bytes, log: str) -> str:
    """The origin of a log when the config names none: stable for the signing key."""
    return f"vault-service/{log}/{hashlib.sha256(public_key).hexdigest()[:16]}"


def audit_tree(store: RecordStore) -> LocalTree:
    """The audit trail's tree as stored (its size, roots and consistency proofs)."""

    def read(nodes: object) -> dict[merkle.Node, bytes]:
        return store.tree_nodes(AUDIT_TREE, nodes)  # type: ignore[arg-type]

    return LocalTree(
        store.tree_size(AUDIT_TREE),
        lambda size: merkle.root(read, size),
        lambda old, new: merkle.consistency_proof(read, old, new),
    )


def _sign(
    signer: SigningKey, kind: str, seq: int, hash_hex: str, now: float, prefix: tuple[str, ...] = ()
) -> Checkpoint:
    unsigned = Checkpoint(kind, seq, hash_hex, now, signer.public_key().hex(), prefix=prefix)
    return replace(unsigned, signature=signer.sign(unsigned.signed_bytes()).hex())


class ChainBroken(Exception):
    """The entries written since the tree's last leaf do not chain onto it, or one of them does
    not hash to what it says, or some are missing: refuse to integrate and sign them (a
    security event and the integrity halt; ``vaultctl audit verify`` finds the first bad
    entry)."""


def _sequence(store: RecordStore) -> list[Link]:
    """The calls' pending entries moved into the chain: the links the sequencer wrote."""
    links: list[Link] = []
    try:
        while moved := store.sequence_pending():
            links.extend(moved)
    except PendingTampered:
        raise ChainBroken() from None
    return links


def _page(store: RecordStore, size: int, fresh: list[Link]) -> list[Link]:
    """The links of the entries after seq ``size``, a page of them. Those this run's sequencer
    has just written (``fresh``, consumed from the front) are taken as it computed them from
    the MAC-checked pending entries: the leaves then bind what it verified, and a later edit of
    the stored entry no longer matches its leaf. Any others (written before a crash, or by
    another run) are read back and their hashes recomputed: ChainBroken on a mismatch."""
    # those at or below size were integrated meanwhile by another run
    del fresh[: next((i for i, link in enumerate(fresh) if link[0] > size), len(fresh))]
    if fresh and fresh[0][0] == size + 1:
        page = fresh[:PAGE]
        del fresh[:PAGE]
        return page
    links: list[Link] = []
    for entry in store.audit_entries(size, PAGE):
        if entry.entry_hash != entry_hash(entry.prev_hash, entry.seq, entry.row):
            raise ChainBroken()
        links.append((entry.seq, entry.prev_hash, entry.entry_hash))
    return links


def integrate(store: RecordStore) -> int:
    """Append the leaves of every entry written since the tree's last leaf (see the module
    docstring), a page of entries per transaction; returns the tree's size. ChainBroken if the
    new entries do not chain onto the tree, or if the trail ends before the tree does."""
    fresh = _sequence(store)  # calls' pending entries into the chain first
    tree = audit_tree(store)
    size = tree.size
    head = store.audit_head()
    if head is None or head.seq <= size:
        if size and (head is None or head.seq < size):
            raise ChainBroken()  # entries the tree holds are gone from the trail's end
        return size

    def read(nodes: object) -> dict[merkle.Node, bytes]:
        return store.tree_nodes(AUDIT_TREE, nodes)  # type: ignore[arg-type]

    prev_leaf = read([(0, size - 1)]).get((0, size - 1)) if size else None
    prev: bytes | None = None
    while size < head.seq:
        page = _page(store, size, fresh)
        if not page:
            raise ChainBroken()
        leaves: list[bytes] = []
        if size == 0 and page[0][0] > 1:
            # a trail pruned before the tree existed: a placeholder leaf for each pruned entry
            # (the legacy anchor checkpoint still fixes the first kept entry's prev_hash)
            leaves = [PRUNED_LEAF] * (page[0][0] - 1)
            prev_leaf = PRUNED_LEAF
        for seq, prev_hash, digest in page[: head.seq - size]:
            if seq != size + len(leaves) + 1:
                raise ChainBroken()  # a gap: an entry was deleted
            if prev is not None and prev_hash != prev:
                raise ChainBroken()
            linked = prev is not None or prev_leaf in (None, PRUNED_LEAF)
            if not linked and merkle.leaf_hash(prev_hash) != prev_leaf:
                raise ChainBroken()  # the first new entry does not follow the tree's last leaf
            leaves.append(merkle.leaf_hash(digest))
            prev = digest
        store.add_tree_nodes(AUDIT_TREE, size, merkle.new_nodes(size, leaves, read))
        metrics.SEQUENCED.inc(len(leaves))
        size += len(leaves)
        fault_point("sequencer.after_page")  # crash tests: a page integrated, the rest not
    return size


def write_checkpoint(
    store: RecordStore,
    checkpoints: CheckpointStore,
    signer: SigningKey,
    now: float,
    *,
    origin: str = "",
    publisher: Publisher | None = None,
) -> Checkpoint | None:
    """Integrate what was written since the last leaf, then sign the tree's checkpoint, unless
    the latest checkpoint already covers it; give it to the witness if there is one (its
    cosigned note is what is stored). A broken chain is never signed (:class:`ChainBroken`);
    a checkpoint the witness refuses (WitnessRefused: a rollback or a fork) is not stored; one
    it could not be given (Unavailable) is stored signed by the vault alone, then raised."""
    size = integrate(store)
    if size == 0:
        return None
    origin = origin or default_origin(signer.public_key(), AUDIT_TREE)
    trees = [c for c in checkpoints.all() if c.kind == "tree"]
    if trees and trees[-1].seq == size and (publisher is None or trees[-1].witnessed):
        return None
    tree = audit_tree(store)
    root = tree.root(size)
    fault_point("sequencer.before_sign")  # crash tests: integrated, not yet signed
    signed = sign_checkpoint(origin, size, root, signer)
    failure: Exception | None = None
    if publisher is not None:
        try:
            signed = publisher.publish(signed, tree)
        except Unavailable as exc:  # stored signed by us alone; the caller reports the witness
            failure = exc
    checkpoint = Checkpoint(
        "tree",
        size,
        root.hex(),
        now,
        signer.public_key().hex(),
        note=signed,
        witnessed=publisher is not None and failure is None,
    )
    checkpoints.append(checkpoint)
    if failure is not None:
        raise failure
    return checkpoint


def prune(
    store: RecordStore,
    checkpoints: CheckpointStore,
    signer: SigningKey,
    retention_seconds: float,
    now: float,
    *,
    origin: str = "",
    publisher: Publisher | None = None,
) -> int:
    """Delete entries older than the retention period so that the rest still verifies: first
    the tree's checkpoint, then a signed anchor (where the log now starts, the prev_hash its
    first entry carries, and the hashes of the perfect subtrees covering the pruned leaves:
    with them a verifier recomputes every root from the kept entries alone), then the deletion.
    The tree keeps the pruned leaves, so every kept entry stays provable. Returns how many
    entries were deleted."""
    store.append_audit(job_row("audit.prune", f"retention {retention_seconds:.0f}s", now))
    integrate(store)  # the prune's own entry (and every pending one) into the chain first
    first_kept = store.audit_first_seq_since(now - retention_seconds)
    if first_kept is None:
        return 0
    entry = store.audit_entry(first_kept)
    oldest = store.audit_entries(0, 1)
    if entry is None or not oldest or oldest[0].seq >= first_kept:
        return 0
    # fix the head before history shrinks; an unreachable witness is the checkpoint job's to
    # report (the checkpoint is stored signed by the vault alone), anything else stops the prune
    with contextlib.suppress(Unavailable):
        write_checkpoint(store, checkpoints, signer, now, origin=origin, publisher=publisher)
    wanted = merkle.range_nodes(0, first_kept - 1) if first_kept > 1 else []
    found = store.tree_nodes(AUDIT_TREE, wanted)
    prefix = tuple(found[n].hex() for n in wanted) if len(found) == len(wanted) else ()
    checkpoints.append(_sign(signer, "anchor", first_kept, entry.prev_hash.hex(), now, prefix=prefix))
    return store.delete_audit_before(first_kept)


def mark_restore(
    checkpoints: CheckpointStore, signer: SigningKey, restored_size: int, now: float
) -> None:
    """Append a signed ``restore`` marker: the trail was restored to ``restored_size`` entries,
    and the checkpoints before the marker hold for entries up to that size only."""
    checkpoints.append(_sign(signer, "restore", restored_size, "", now))


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
    """Verify the whole stored chain against every checkpoint (streams the log in pages), after
    sequencing the pending entries (a gap or a bad MAC among them fails the verification)."""
    try:
        while store.sequence_pending():
            pass
    except PendingTampered:
        return VerifyReport(
            False,
            "pending entries do not verify (removed or edited before they were sequenced)",
            None,
            0,
            0,
            0,
        )
    try:
        cps = checkpoints.all()
    except (ValueError, KeyError):
        return VerifyReport(False, "the checkpoint file is corrupt", None, 0, 0, 0)
    return verify_chain(_all_entries(store), cps, public_key)
