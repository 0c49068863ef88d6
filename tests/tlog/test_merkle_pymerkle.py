"""The Merkle core against pymerkle, an RFC 6962 implementation this project did not write
(its default sha256 "security" mode hashes leaves and nodes with the 0x00/0x01 prefixes).

Compared for random trees of 1 to 300 leaves: the roots of every size asked; inclusion proofs
hash for hash (pymerkle's path is the leaf hash followed by the RFC 6962 path); and consistency
proofs through what pymerkle can say about them: each hash of ours is the root pymerkle
computes for that leaf range, and pymerkle's own consistency proof verifies between our roots.
pymerkle lays out consistency paths its own way, so its hashes are not compared one by one.
"""

from __future__ import annotations

from typing import Any

import pymerkle  # type: ignore[import-untyped]  # a dev dependency (pyproject.toml), no stubs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vault_service.tlog.merkle import (
    MemoryTree,
    consistency_ranges,
    leaf_hash,
    verify_consistency,
    verify_inclusion,
)


def entries_of(size: int, seed: int) -> list[bytes]:
    # entries of varied lengths, the empty one included, as the logs' entries are
    return [b"%d:%d:" % (seed, i) * (i % 5) for i in range(size)]


def pm_tree(entries: list[bytes]) -> Any:
    tree = pymerkle.InmemoryTree(algorithm="sha256")
    for entry in entries:
        tree.append_entry(entry)
    return tree


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 300), st.integers(0, 2**32), st.data())
def test_roots_and_proofs_match_pymerkle(size: int, seed: int, data: st.DataObject) -> None:
    entries = entries_of(size, seed)
    theirs = pm_tree(entries)
    ours = MemoryTree(leaf_hash(e) for e in entries)
    # the leaves hash alike, and the root of every prefix size asked for is the same
    assert [theirs.get_leaf(i + 1) for i in range(size)] == [ours.leaf(i) for i in range(size)]
    for n in {size, data.draw(st.integers(0, size), label="prefix size")}:
        assert ours.root(n) == theirs.get_root(n)

    # inclusion: pymerkle counts leaves from one and puts the leaf hash first in its path
    n = data.draw(st.integers(1, size), label="tree size")
    index = data.draw(st.integers(0, n - 1), label="index")
    their_proof = theirs.prove_inclusion(index + 1, n)
    proof = ours.inclusion_proof(index, n)
    assert their_proof.path == [ours.leaf(index), *proof]
    assert verify_inclusion(ours.leaf(index), index, n, proof, theirs.get_root(n))
    pymerkle.verify_inclusion(ours.leaf(index), ours.root(n), their_proof)

    # consistency
    old = data.draw(st.integers(1, n), label="old size")
    proof = ours.consistency_proof(old, n)
    ranges = consistency_ranges(old, n)
    assert len(proof) == len(ranges)
    for (start, end), h in zip(ranges, proof, strict=True):
        assert h == pm_tree(entries[start:end]).get_root()
    assert verify_consistency(old, n, theirs.get_root(old), theirs.get_root(n), proof)
    pymerkle.verify_consistency(ours.root(old), ours.root(n), theirs.prove_consistency(old, n))


def test_pymerkle_refuses_a_wrong_root_too() -> None:
    """The comparison has teeth: pymerkle's verifier does reject, so agreeing with it means something."""
    entries = entries_of(9, 1)
    theirs = pm_tree(entries)
    ours = MemoryTree(leaf_hash(e) for e in entries)
    with pytest.raises(pymerkle.InvalidProof):
        pymerkle.verify_consistency(ours.root(4), ours.root(8), theirs.prove_consistency(4, 9))
    with pytest.raises(pymerkle.InvalidProof):
        pymerkle.verify_inclusion(ours.leaf(2), ours.root(8), theirs.prove_inclusion(3, 9))
