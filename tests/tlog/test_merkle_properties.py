"""Properties of the Merkle core: every proof it makes verifies, any change to a proof, index,
size or root makes verification fail, each proof or root reads its nodes in one call, and
``new_nodes`` applied in any batch split keeps a node table that gives the same roots as
MemoryTree. Plus the contract for bad arguments (ValueError) and bad proofs (False)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vault_service.tlog.merkle import (
    EMPTY_ROOT,
    MemoryTree,
    Node,
    NodeReader,
    consistency_proof,
    consistency_ranges,
    fold,
    inclusion_proof,
    inclusion_proofs,
    inclusion_ranges,
    leaf_hash,
    new_nodes,
    range_nodes,
    root,
    verify_consistency,
    verify_inclusion,
)


def leaves_of(size: int, seed: int = 0) -> list[bytes]:
    return [leaf_hash(hashlib.sha256(b"%d/%d" % (seed, i)).digest()) for i in range(size)]


class Counting:
    """A NodeReader that counts its calls and checks what it is asked for."""

    def __init__(self, inner: NodeReader) -> None:
        self.inner = inner
        self.calls: list[list[Node]] = []

    def __call__(self, nodes: Iterable[Node]) -> Mapping[Node, bytes]:
        asked = list(nodes)
        assert asked == sorted(set(asked)), "nodes are asked sorted and once each"
        self.calls.append(asked)
        return self.inner(asked)


def flip(h: bytes, bit: int) -> bytes:
    b = bytearray(h)
    b[bit // 8] ^= 1 << (bit % 8)
    return bytes(b)


sizes = st.integers(min_value=1, max_value=300)


@settings(max_examples=150, deadline=None)
@given(sizes, st.data())
def test_inclusion_proofs_verify_and_any_change_fails(size: int, data: st.DataObject) -> None:
    tree = MemoryTree(leaves_of(size))
    index = data.draw(st.integers(0, size - 1), label="index")
    reader = Counting(tree.reader())
    proof = inclusion_proof(reader, index, size)
    assert len(reader.calls) == (1 if size > 1 else 0)
    r = tree.root()
    leaf = tree.leaf(index)
    assert len(proof) == len(inclusion_ranges(index, size))
    assert verify_inclusion(leaf, index, size, proof, r)
    # a flipped bit anywhere: in a proof hash, the leaf or the root
    if proof:
        at = data.draw(st.integers(0, len(proof) - 1), label="element")
        bit = data.draw(st.integers(0, 255), label="bit")
        bad = [*proof[:at], flip(proof[at], bit), *proof[at + 1 :]]
        assert not verify_inclusion(leaf, index, size, bad, r)
    bit = data.draw(st.integers(0, 255), label="leaf or root bit")
    assert not verify_inclusion(flip(leaf, bit), index, size, proof, r)
    assert not verify_inclusion(leaf, index, size, proof, flip(r, bit))
    # another index of the same tree, another size with that size's own root
    other = data.draw(st.integers(0, size - 1).filter(lambda i: i != index) if size > 1 else st.none())
    if other is not None:
        assert not verify_inclusion(leaf, other, size, proof, r)
    wrong_size = data.draw(st.integers(index + 1, 301).filter(lambda n: n != size), label="size")
    wrong_root = MemoryTree(leaves_of(wrong_size)).root()
    assert not verify_inclusion(leaf, index, wrong_size, proof, wrong_root)
    # a proof one hash too short or too long
    if proof:
        assert not verify_inclusion(leaf, index, size, proof[:-1], r)
    assert not verify_inclusion(leaf, index, size, [*proof, r], r)


@settings(max_examples=100, deadline=None)
@given(sizes, st.data())
def test_many_inclusion_proofs_read_their_nodes_once(size: int, data: st.DataObject) -> None:
    """inclusion_proofs gives each index's inclusion_proof, from one read of the union of
    their nodes (what QueryAudit does for a page of entries); none when no proof needs one."""
    tree = MemoryTree(leaves_of(size))
    indices = data.draw(st.lists(st.integers(0, size - 1), max_size=40), label="indices")
    reader = Counting(tree.reader())
    proofs = inclusion_proofs(reader, indices, size)
    assert proofs == [inclusion_proof(tree.reader(), i, size) for i in indices]
    assert len(reader.calls) == (1 if size > 1 and indices else 0)
    wanted = {n for i in indices for s, e in inclusion_ranges(i, size) for n in range_nodes(s, e)}
    assert set(reader.calls[0] if reader.calls else ()) == wanted
    with pytest.raises(ValueError):
        inclusion_proofs(reader, [*indices, size], size)


@settings(max_examples=150, deadline=None)
@given(sizes, st.data())
def test_consistency_proofs_verify_and_any_change_fails(new: int, data: st.DataObject) -> None:
    tree = MemoryTree(leaves_of(new))
    old = data.draw(st.integers(1, new), label="old size")
    reader = Counting(tree.reader())
    proof = consistency_proof(reader, old, new)
    assert len(reader.calls) == (1 if old < new else 0)
    old_root, new_root = tree.root(old), tree.root(new)
    assert verify_consistency(old, new, old_root, new_root, proof)
    bit = data.draw(st.integers(0, 255), label="bit")
    if proof:
        at = data.draw(st.integers(0, len(proof) - 1), label="element")
        bad = [*proof[:at], flip(proof[at], bit), *proof[at + 1 :]]
        assert not verify_consistency(old, new, old_root, new_root, bad)
        assert not verify_consistency(old, new, old_root, new_root, proof[:-1])
    assert not verify_consistency(old, new, flip(old_root, bit), new_root, proof)
    assert not verify_consistency(old, new, old_root, flip(new_root, bit), proof)
    assert not verify_consistency(old, new, old_root, new_root, [*proof, new_root])
    # other sizes, each with its own root (the roots of a longer tree over the same leaves)
    longer = MemoryTree(leaves_of(301))
    wrong_old = data.draw(st.integers(1, new).filter(lambda m: m != old) if new > 1 else st.none())
    if wrong_old is not None:
        assert not verify_consistency(wrong_old, new, longer.root(wrong_old), new_root, proof)
    wrong_new = data.draw(st.integers(old, 301).filter(lambda n: n != new), label="new size")
    assert not verify_consistency(old, wrong_new, old_root, longer.root(wrong_new), proof)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(0, 40), min_size=1, max_size=12), st.integers(0, 2**32))
def test_new_nodes_in_any_batches_keep_the_table_and_the_roots(batches: list[int], seed: int) -> None:
    total = sum(batches)
    leaves = leaves_of(total, seed)
    reference = MemoryTree(leaves)
    store: dict[Node, bytes] = {}

    def read(nodes: Iterable[Node]) -> Mapping[Node, bytes]:
        return {n: store[n] for n in nodes}  # KeyError: a sibling that was never written

    size = 0
    for count in batches:
        counting = Counting(read)
        made = new_nodes(size, leaves[size : size + count], counting)
        assert len(counting.calls) <= 1
        assert not made.keys() & store.keys(), "a node is written once"
        store.update(made)
        size += count
        assert root(read, size) == reference.root(size)
    # the table holds exactly every complete perfect subtree of the final tree
    complete = {(level, j) for level in range(total.bit_length()) for j in range(total >> level)}
    assert store.keys() == complete
    assert store == dict(reference.reader()(sorted(complete)))


@given(st.integers(1, 2**40))
def test_range_nodes_of_a_whole_tree_are_its_perfect_subtrees(size: int) -> None:
    nodes = range_nodes(0, size)
    assert len(nodes) == size.bit_count()
    assert sum(1 << level for level, _ in nodes) == size
    assert [level for level, _ in nodes] == sorted((level for level, _ in nodes), reverse=True)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 200))
def test_every_proof_range_folds_to_its_subtree_root(size: int) -> None:
    tree = MemoryTree(leaves_of(size))
    reader = tree.reader()
    for start, end in [*inclusion_ranges(size // 2, size), *consistency_ranges(size // 3 or 1, size)]:
        got = fold([reader([n])[n] for n in range_nodes(start, end)])
        assert got == MemoryTree(leaves_of(size)[start:end]).root()


def test_empty_and_single_leaf_trees() -> None:
    assert MemoryTree().root() == EMPTY_ROOT
    assert root(lambda nodes: pytest.fail("no read for an empty tree"), 0) == EMPTY_ROOT
    one = MemoryTree(leaves_of(1))
    assert one.root() == one.leaf(0)
    assert one.inclusion_proof(0) == []
    assert verify_inclusion(one.leaf(0), 0, 1, [], one.root())
    assert new_nodes(0, [], lambda nodes: pytest.fail("nothing to read")) == {}


@pytest.mark.parametrize(
    "call",
    [
        lambda: inclusion_ranges(0, 0),
        lambda: inclusion_ranges(3, 3),
        lambda: inclusion_ranges(-1, 3),
        lambda: consistency_ranges(4, 3),
        lambda: consistency_ranges(-1, 3),
        lambda: range_nodes(1, 3),  # [1, 3) is not a range RFC 6962 splits a tree into
        lambda: range_nodes(2, 2),
        lambda: range_nodes(-2, 2),
        lambda: fold([]),
        lambda: root(MemoryTree().reader(), -1),
        lambda: new_nodes(-1, [], MemoryTree().reader()),
        lambda: new_nodes(0, [b"short"], MemoryTree().reader()),
        lambda: MemoryTree(leaves_of(3)).root(4),
        lambda: MemoryTree(leaves_of(3)).inclusion_proof(3),
        lambda: MemoryTree(leaves_of(3)).consistency_proof(2, 4),
        lambda: MemoryTree().append(b"x" * 31),
        lambda: MemoryTree(leaves_of(2)).leaf(2),
    ],
)
def test_bad_arguments_raise_value_error(call: object) -> None:
    with pytest.raises(ValueError):
        call()  # type: ignore[operator]


def test_a_reader_missing_a_node_is_a_key_error() -> None:
    with pytest.raises(KeyError):
        root(lambda nodes: {}, 5)
    with pytest.raises(KeyError):
        MemoryTree(leaves_of(3)).reader()([(1, 1)])  # leaves 2..3 are not both there


@pytest.mark.parametrize(
    ("leaf", "index", "size", "proof", "r"),
    [
        (b"\x00" * 31, 0, 1, [], b"\x00" * 32),
        (b"\x00" * 32, 0, 1, [], b"\x00" * 33),
        (b"\x00" * 32, 0, 2, [b"\x00" * 31], b"\x00" * 32),
        (b"\x00" * 32, -1, 2, [b"\x00" * 32], b"\x00" * 32),
        (b"\x00" * 32, 2, 2, [b"\x00" * 32], b"\x00" * 32),
        (b"\x00" * 32, 0, 0, [], EMPTY_ROOT),
        (b"\x00" * 32, 0, 2, ["not bytes"], b"\x00" * 32),
    ],
)
def test_malformed_inclusion_is_false_not_an_error(
    leaf: bytes, index: int, size: int, proof: list[bytes], r: bytes
) -> None:
    assert verify_inclusion(leaf, index, size, proof, r) is False


@pytest.mark.parametrize(
    ("old", "new", "old_root", "new_root", "proof"),
    [
        (-1, 2, EMPTY_ROOT, EMPTY_ROOT, []),
        (3, 2, EMPTY_ROOT, EMPTY_ROOT, []),
        (2, 2, EMPTY_ROOT, EMPTY_ROOT, [EMPTY_ROOT]),
        (1, 2, EMPTY_ROOT, EMPTY_ROOT, []),
        (1, 2, b"short", EMPTY_ROOT, [EMPTY_ROOT]),
        (1, 2, EMPTY_ROOT, EMPTY_ROOT, [b"short"]),
    ],
)
def test_malformed_consistency_is_false_not_an_error(
    old: int, new: int, old_root: bytes, new_root: bytes, proof: list[bytes]
) -> None:
    assert verify_consistency(old, new, old_root, new_root, proof) is False
