"""The Merkle core against transparency-dev/merkle's published RFC 6962 vectors (tests/tlog/vectors.py):
hashes, the node table of 8 leaves, roots per size, inclusion and consistency proofs, and the
verdicts of the Go verifier's probe files (one deliberate difference, named below)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import pytest

from tests.tlog import vectors as v
from vault_service.tlog import merkle
from vault_service.tlog.merkle import (
    EMPTY_ROOT,
    MemoryTree,
    Node,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    new_nodes,
    node_hash,
    root,
    verify_consistency,
    verify_inclusion,
)


def _h(hex_list: Iterable[str]) -> list[bytes]:
    return [bytes.fromhex(x) for x in hex_list]


LEAVES = [leaf_hash(bytes.fromhex(x)) for x in v.LEAF_INPUTS]
#: the Go node table as a store: what a storage shell's node rows would hold for 8 leaves
TABLE: dict[Node, bytes] = {
    (level, index): bytes.fromhex(h)
    for level, hashes in enumerate(v.NODE_HASHES)
    for index, h in enumerate(hashes)
}


def read_table(nodes: Iterable[Node]) -> Mapping[Node, bytes]:
    return {node: TABLE[node] for node in nodes}


@pytest.mark.parametrize(("what", "inputs", "want"), v.HASHER_VECTORS)
def test_rfc6962_hasher(what: str, inputs: tuple[bytes, ...], want: str) -> None:
    if not inputs:
        got = EMPTY_ROOT
    elif len(inputs) == 1:
        got = leaf_hash(inputs[0])
    else:
        got = node_hash(*inputs)
    assert got.hex() == want
    assert EMPTY_ROOT.hex() == v.EMPTY_ROOT


def test_leaf_hashes_are_level_zero_of_the_node_table() -> None:
    assert [h.hex() for h in LEAVES] == v.NODE_HASHES[0]


@pytest.mark.parametrize("size", range(len(v.ROOTS)))
def test_roots_per_size(size: int) -> None:
    assert root(read_table, size).hex() == v.ROOTS[size]
    assert MemoryTree(LEAVES[:size]).root().hex() == v.ROOTS[size]
    assert MemoryTree(LEAVES).root(size).hex() == v.ROOTS[size]


def test_memory_tree_reader_serves_the_node_table() -> None:
    assert MemoryTree(LEAVES).reader()(TABLE) == TABLE


def test_new_nodes_build_exactly_the_node_table() -> None:
    store: dict[Node, bytes] = {}
    store.update(new_nodes(0, LEAVES, read_table))
    assert store == TABLE
    # the same table built one leaf at a time, reading from what was stored so far
    store = {}
    for size, leaf in enumerate(LEAVES):
        store.update(new_nodes(size, [leaf], lambda nodes: {n: store[n] for n in nodes}))
    assert store == TABLE


# the first entry, (0, 0, nil), is an invalid path the Go test skips too
@pytest.mark.parametrize(("leaf", "size", "proof"), v.INCLUSION_PROOFS[1:])
def test_inclusion_proofs(leaf: int, size: int, proof: list[str]) -> None:
    index = leaf - 1  # the Go vectors count leaves from one
    assert inclusion_proof(read_table, index, size) == _h(proof)
    assert MemoryTree(LEAVES[:size]).inclusion_proof(index) == _h(proof)
    assert verify_inclusion(LEAVES[index], index, size, _h(proof), bytes.fromhex(v.ROOTS[size]))


@pytest.mark.parametrize(("old", "new", "proof"), v.CONSISTENCY_PROOFS)
def test_consistency_proofs(old: int, new: int, proof: list[str]) -> None:
    assert consistency_proof(read_table, old, new) == _h(proof)
    assert MemoryTree(LEAVES).consistency_proof(old, new) == _h(proof)
    old_root, new_root = bytes.fromhex(v.ROOTS[old]), bytes.fromhex(v.ROOTS[new])
    assert verify_consistency(old, new, old_root, new_root, _h(proof))


@pytest.mark.parametrize(
    ("name", "index", "size", "valid", "root_hex", "leaf_hex", "proof"),
    v.INCLUSION_PROBES,
    ids=[p[0] for p in v.INCLUSION_PROBES],
)
def test_inclusion_probes(
    name: str, index: int, size: int, valid: bool, root_hex: str, leaf_hex: str, proof: list[str]
) -> None:
    got = verify_inclusion(bytes.fromhex(leaf_hex), index, size, _h(proof), bytes.fromhex(root_hex))
    assert got is valid


#: where this verifier deliberately answers otherwise than the Go one, and why
DIFFERENT = {
    # Go accepts any two equal byte strings as roots of equal sizes; here a root is 32 bytes
    # ("don't care 2" is 12), since a hash of the wrong length is malformed, never a match
    "additional/sizes-are-equal-one-and-proof-is-empty": False,
}


@pytest.mark.parametrize(
    ("name", "old", "new", "valid", "old_hex", "new_hex", "proof"),
    v.CONSISTENCY_PROBES,
    ids=[p[0] for p in v.CONSISTENCY_PROBES],
)
def test_consistency_probes(
    name: str, old: int, new: int, valid: bool, old_hex: str, new_hex: str, proof: list[str]
) -> None:
    got = verify_consistency(old, new, bytes.fromhex(old_hex), bytes.fromhex(new_hex), _h(proof))
    assert got is DIFFERENT.get(name, valid)


def test_the_listed_difference_is_still_one() -> None:
    """Every name in DIFFERENT is a Go probe whose verdict really differs (no stale entry)."""
    verdicts = {p[0]: p[3] for p in v.CONSISTENCY_PROBES}
    assert all(verdicts[name] is not ours for name, ours in DIFFERENT.items())


def test_an_empty_old_tree_is_consistent_with_any_tree_without_proof() -> None:
    """c2sp.org/tlog-witness: from size 0 the proof is empty (Go's verifier refuses size 0)."""
    new_root = bytes.fromhex(v.ROOTS[5])
    assert verify_consistency(0, 5, EMPTY_ROOT, new_root, [])
    assert verify_consistency(0, 0, EMPTY_ROOT, EMPTY_ROOT, [])
    assert not verify_consistency(0, 5, EMPTY_ROOT, new_root, [EMPTY_ROOT])
    assert not verify_consistency(0, 5, new_root, new_root, [])
    assert not verify_consistency(0, 0, EMPTY_ROOT, new_root, [])
    assert merkle.consistency_ranges(0, 5) == []
