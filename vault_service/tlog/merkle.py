"""RFC 6962 Merkle tree hashes and proofs (RFC 9162 §2.1), pure: no I/O, no clock, no state.

The tree over leaves ``D[0:n]`` is the one of RFC 6962 §2.1: ``MTH({}) = SHA-256()``,
``MTH({d}) = SHA-256(0x00 || d)`` and, for ``n > 1`` with ``k`` the largest power of two
smaller than ``n``, ``MTH(D[0:n]) = SHA-256(0x01 || MTH(D[0:k]) || MTH(D[k:n]))``.

Every hash a proof or a root needs is the hash of a *perfect* subtree (a :data:`Node`) or the
right fold of a few of them (:func:`range_nodes`, :func:`fold`). A perfect subtree never changes
once its last leaf is appended, so a storage shell keeps them in a table and this module tells it
which ones to write (:func:`new_nodes`) and which ones to read (:func:`root`,
:func:`inclusion_proof`, :func:`consistency_proof`): each of those reads everything it needs with
ONE call to a :data:`NodeReader`, so a database shell answers with one query.

Leaves here are always leaf HASHES (:func:`leaf_hash` of the entry), never the entries.

Contract for bad input: a function that builds something raises :class:`ValueError` on bad
arguments (a negative size, an index past the size, an old size past the new one); the
verification functions never raise: a malformed proof, a hash of the wrong length or impossible
sizes make them return False.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Iterable, Mapping, Sequence

HASH_SIZE = 32
#: the root of the empty tree, SHA-256 of the empty string (RFC 6962 §2.1)
EMPTY_ROOT: bytes = hashlib.sha256(b"").digest()

# the domain separation of RFC 6962 §2.1: a leaf can never be taken for an inner node
_LEAF_PREFIX = b"\x00"
_NODE_PREFIX = b"\x01"

#: (level, index): the perfect subtree over leaves [index << level, (index + 1) << level)
Node = tuple[int, int]

#: a batch read of stored perfect-subtree hashes. It is given every node it must return (a list,
#: sorted, no duplicates) and returns a mapping holding each of them; a node it cannot return
#: makes the caller raise KeyError. A storage shell implements it with one query.
NodeReader = Callable[[Iterable[Node]], Mapping[Node, bytes]]


def leaf_hash(data: bytes) -> bytes:
    """The RFC 6962 hash of one log entry: SHA-256(0x00 || data)."""
    return hashlib.sha256(_LEAF_PREFIX + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """The RFC 6962 hash of an inner node: SHA-256(0x01 || left || right)."""
    return hashlib.sha256(_NODE_PREFIX + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two strictly smaller than ``n`` (``n >= 2``): RFC 6962's ``k``."""
    return 1 << ((n - 1).bit_length() - 1)


def _is_power_of_two(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


def range_nodes(start: int, end: int) -> list[Node]:
    """The perfect subtrees, left to right, whose right :func:`fold` is ``MTH(D[start:end])``.

    This is RFC 6962's split taken greedily: the whole range when its size is a power of two,
    otherwise the largest power of two smaller than the size first, then the rest the same way.
    ``start`` must be aligned the way the RFC's recursion produces ranges (a multiple of that
    first power of two, or of the size when the size is a power of two); every range of
    :func:`inclusion_ranges` and :func:`consistency_ranges` is. ValueError otherwise, or when
    ``0 <= start < end`` does not hold.
    """
    if start < 0 or end <= start:
        raise ValueError(f"not a non-empty leaf range: [{start}, {end})")
    nodes: list[Node] = []
    while True:
        size = end - start
        # a perfect range ends the walk; otherwise its left part is the largest power of two
        width = size if _is_power_of_two(size) else _split(size)
        if start % width:
            raise ValueError(f"leaf range [{start}, {end}) is not aligned as RFC 6962 splits it")
        level = width.bit_length() - 1
        nodes.append((level, start >> level))
        if width == size:
            return nodes
        start += width


def fold(hashes: Sequence[bytes]) -> bytes:
    """The right fold ``node_hash(h0, node_hash(h1, ... hk))``; one hash is itself.

    This is how the hashes of :func:`range_nodes` combine into the range's MTH. ValueError on
    an empty sequence.
    """
    if not hashes:
        raise ValueError("nothing to fold")
    acc = hashes[-1]
    for h in reversed(hashes[:-1]):
        acc = node_hash(h, acc)
    return acc


def inclusion_ranges(index: int, size: int) -> list[tuple[int, int]]:
    """``PATH(index, D[0:size])`` of RFC 6962 §2.1.1 as leaf ranges, in proof order.

    Proof order is the RFC's: the leaf's sibling first, the root's other child last. Empty for a
    tree of one leaf. ValueError unless ``0 <= index < size``.
    """
    if index < 0 or index >= size:
        raise ValueError(f"leaf index {index} is not in a tree of size {size}")
    lo, hi = 0, size
    top_down: list[tuple[int, int]] = []
    while hi - lo > 1:
        k = _split(hi - lo)
        if index < lo + k:
            top_down.append((lo + k, hi))
            hi = lo + k
        else:
            top_down.append((lo, lo + k))
            lo += k
    # the RFC appends the sibling found at each level after the deeper part of the path
    top_down.reverse()
    return top_down


def consistency_ranges(old_size: int, new_size: int) -> list[tuple[int, int]]:
    """``PROOF(old_size, D[0:new_size])`` of RFC 6962 §2.1.2 as leaf ranges, in proof order.

    Empty when ``old_size == new_size`` or ``old_size == 0`` (the empty tree is consistent with
    every tree, c2sp.org/tlog-witness). ValueError unless ``0 <= old_size <= new_size``.
    """
    if old_size < 0 or new_size < old_size:
        raise ValueError(f"no consistency proof from size {old_size} to size {new_size}")
    if old_size in (0, new_size):
        return []
    lo, hi = 0, new_size
    # b of SUBPROOF(m, D, b): True while the old tree is still the left edge of the range, so its
    # root is the verifier's own old root and is left out of the proof
    is_old_root = True
    top_down: list[tuple[int, int]] = []
    while hi != old_size:
        k = _split(hi - lo)
        if old_size <= lo + k:
            top_down.append((lo + k, hi))
            hi = lo + k
        else:
            top_down.append((lo, lo + k))
            lo += k
            is_old_root = False
    if not is_old_root:
        top_down.append((lo, hi))
    top_down.reverse()
    return top_down


def _fold_ranges(read: NodeReader, ranges: Sequence[tuple[int, int]]) -> list[bytes]:
    """The MTH of each range, from one read of all the nodes they need (none when none)."""
    per_range = [range_nodes(start, end) for start, end in ranges]
    wanted = sorted({node for nodes in per_range for node in nodes})
    # no call at all for nothing: a shell's "WHERE ... IN ()" would not even be valid SQL
    got = read(wanted) if wanted else {}
    return [fold([_stored(got, node) for node in nodes]) for nodes in per_range]


def _stored(got: Mapping[Node, bytes], node: Node) -> bytes:
    try:
        h = got[node]
    except KeyError:
        raise KeyError(f"the node reader did not return node {node}") from None
    if len(h) != HASH_SIZE:
        raise ValueError(f"the node reader returned {len(h)} bytes for node {node}")
    return h


def root(read: NodeReader, size: int) -> bytes:
    """``MTH(D[0:size])``: :data:`EMPTY_ROOT` for 0, else from one call to ``read``."""
    if size < 0:
        raise ValueError(f"negative tree size {size}")
    if size == 0:
        return EMPTY_ROOT
    return _fold_ranges(read, [(0, size)])[0]


def inclusion_proof(read: NodeReader, index: int, size: int) -> list[bytes]:
    """The RFC 6962 inclusion proof of leaf ``index`` in the tree of ``size`` leaves.

    One call to ``read`` (none for a tree of one leaf). ValueError unless ``0 <= index < size``.
    """
    return _fold_ranges(read, inclusion_ranges(index, size))


def inclusion_proofs(read: NodeReader, indices: Sequence[int], size: int) -> list[list[bytes]]:
    """The inclusion proofs of several leaves in the tree of ``size`` leaves, in order.

    ONE call to ``read`` for them all (the union of the nodes of every proof's ranges; none
    when no proof needs a node), then each range folded. ValueError unless every index is in
    ``0 <= index < size``.
    """
    per_proof = [[range_nodes(start, end) for start, end in inclusion_ranges(i, size)] for i in indices]
    wanted = sorted({node for ranges in per_proof for nodes in ranges for node in nodes})
    got = read(wanted) if wanted else {}
    return [[fold([_stored(got, n) for n in nodes]) for nodes in ranges] for ranges in per_proof]


def consistency_proof(read: NodeReader, old_size: int, new_size: int) -> list[bytes]:
    """The RFC 6962 consistency proof from the tree of ``old_size`` leaves to ``new_size``.

    One call to ``read`` (none when the proof is empty: equal sizes or an empty old tree).
    ValueError unless ``0 <= old_size <= new_size``.
    """
    return _fold_ranges(read, consistency_ranges(old_size, new_size))


def new_nodes(size: int, leaves: Sequence[bytes], read: NodeReader) -> dict[Node, bytes]:
    """Every perfect subtree completed by appending ``leaves`` at indices ``size``, ``size+1``...

    ``leaves`` are leaf HASHES. The result holds the level-0 nodes (the leaves themselves) and
    every higher node whose last leaf is one of them; storing it keeps the node table complete
    for the new size. The left siblings that already existed are read with ONE call to ``read``
    (none if no such sibling is needed, e.g. for an empty tree or no leaves). ValueError on a
    negative size or a leaf hash that is not :data:`HASH_SIZE` bytes.
    """
    if size < 0:
        raise ValueError(f"negative tree size {size}")
    for leaf in leaves:
        if len(leaf) != HASH_SIZE:
            raise ValueError(f"a leaf hash is {HASH_SIZE} bytes, not {len(leaf)}")
    new_size = size + len(leaves)
    out: dict[Node, bytes] = {(0, size + i): leaf for i, leaf in enumerate(leaves)}
    # plan first (index arithmetic only) so the old siblings are read in one call: node (l, j)
    # completes now iff its end (j + 1) << l lies in (size, new_size]; its right child always
    # completes with it, its left child is old iff that child's end is <= size
    planned: list[list[int]] = []
    old: list[Node] = []
    level = 1
    while (1 << level) <= new_size:
        completed = list(range(size >> level, new_size >> level))
        planned.append(completed)
        old.extend((level - 1, 2 * j) for j in completed if ((2 * j + 1) << (level - 1)) <= size)
        level += 1
    got = read(sorted(old)) if old else {}
    known: dict[Node, bytes] = {node: _stored(got, node) for node in old}
    known.update(out)
    for level, completed in enumerate(planned, start=1):
        for j in completed:
            h = node_hash(known[(level - 1, 2 * j)], known[(level - 1, 2 * j + 1)])
            known[(level, j)] = out[(level, j)] = h
    return out


def _is_hash(h: object) -> bool:
    return isinstance(h, bytes) and len(h) == HASH_SIZE


def _equal(a: bytes, b: bytes) -> bool:
    return hmac.compare_digest(a, b)


def verify_inclusion(leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes) -> bool:
    """Whether ``proof`` shows leaf hash ``leaf`` at ``index`` in the tree of ``size`` with ``root``.

    RFC 9162 §2.1.3.2. Never raises: a wrong length anywhere, an index out of range or a proof
    of the wrong length is False.
    """
    if not (_is_hash(leaf) and _is_hash(root) and all(_is_hash(p) for p in proof)):
        return False
    if index < 0 or index >= size:
        return False
    fn, sn = index, size - 1
    r = leaf
    for p in proof:
        if sn == 0:
            return False  # a proof longer than the path
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            # on the right edge a node without a right sibling moves up unchanged
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and _equal(r, root)


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> bool:
    """Whether ``proof`` shows the tree ``(new_size, new_root)`` extends ``(old_size, old_root)``.

    RFC 9162 §2.1.4.2 for ``0 < old_size < new_size``. Equal sizes need an empty proof and equal
    roots; an empty old tree needs an empty proof and the old root :data:`EMPTY_ROOT` (the empty
    tree is consistent with every tree, c2sp.org/tlog-witness: transparency-dev/merkle instead
    refuses every proof from size 0). Never raises: anything malformed is False.
    """
    if not (_is_hash(old_root) and _is_hash(new_root) and all(_is_hash(p) for p in proof)):
        return False
    if old_size < 0 or new_size < old_size:
        return False
    if old_size == 0:
        # (for two empty trees the new root must be the empty root as well)
        return (
            not proof and _equal(old_root, EMPTY_ROOT) and (new_size > 0 or _equal(new_root, EMPTY_ROOT))
        )
    if old_size == new_size:
        return not proof and _equal(old_root, new_root)
    if not proof:
        return False
    path = list(proof)
    if _is_power_of_two(old_size):
        # the old tree is a perfect subtree: the proof leaves out its root, the verifier has it
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return sn == 0 and _equal(fr, old_root) and _equal(sr, new_root)


class MemoryTree:
    """A tree whose leaf hashes are held in a list, for logs kept in memory.

    The destruction ledger's tree lives here rather than in a table: its shells keep one per
    process and extend it as lines are appended. :meth:`reader` serves the same
    :data:`NodeReader` contract as a storage shell, so the roots and proofs are computed by the
    same functions as for a stored tree. A perfect subtree's hash is computed once (its leaves
    never change), so extending the tree by ``k`` leaves and asking for the new root costs
    O(k + log n) hashes.
    """

    def __init__(self, leaves: Iterable[bytes] = ()) -> None:
        self._leaves: list[bytes] = []
        # perfect-subtree hashes computed so far: they never change once complete
        self._cache: dict[Node, bytes] = {}
        for leaf in leaves:
            self.append(leaf)

    def append(self, leaf: bytes) -> int:
        """Append one leaf HASH; returns its index. ValueError if not :data:`HASH_SIZE` bytes."""
        if not isinstance(leaf, bytes) or len(leaf) != HASH_SIZE:
            raise ValueError(f"a leaf hash is {HASH_SIZE} bytes")
        self._leaves.append(leaf)
        return len(self._leaves) - 1

    @property
    def size(self) -> int:
        """The number of leaves."""
        return len(self._leaves)

    def leaf(self, index: int) -> bytes:
        """The leaf hash at ``index``. ValueError when out of range."""
        if index < 0 or index >= self.size:
            raise ValueError(f"leaf index {index} is not in a tree of size {self.size}")
        return self._leaves[index]

    def _size(self, size: int | None) -> int:
        if size is None:
            return self.size
        if size < 0 or size > self.size:
            raise ValueError(f"size {size} is not in 0..{self.size}")
        return size

    def root(self, size: int | None = None) -> bytes:
        """The root of the first ``size`` leaves (all by default). ValueError past the end."""
        return root(self.reader(), self._size(size))

    def extended_root(self, leaves: Sequence[bytes]) -> bytes:
        """The root the tree would have with ``leaves`` (HASHES) appended, leaving it as it is.
        ValueError on a leaf hash that is not :data:`HASH_SIZE` bytes."""
        if not leaves:
            return self.root()
        old = self.reader()
        added = new_nodes(self.size, leaves, old)

        def read(nodes: Iterable[Node]) -> Mapping[Node, bytes]:
            # a node the new leaves completed is in ``added``; every other one is old
            wanted = list(nodes)
            got = {node: added[node] for node in wanted if node in added}
            got.update(old([node for node in wanted if node not in added]))
            return got

        return root(read, self.size + len(leaves))

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """The inclusion proof of leaf ``index`` in the tree of ``size`` leaves (all by default)."""
        return inclusion_proof(self.reader(), index, self._size(size))

    def consistency_proof(self, old_size: int, new_size: int | None = None) -> list[bytes]:
        """The consistency proof from ``old_size`` to ``new_size`` leaves (all by default)."""
        return consistency_proof(self.reader(), old_size, self._size(new_size))

    def reader(self) -> NodeReader:
        """A :data:`NodeReader` computing complete perfect subtrees from the leaves.

        A node that is not complete in the current tree raises KeyError, as a missing row would.
        """

        def read(nodes: Iterable[Node]) -> Mapping[Node, bytes]:
            return {node: self._node(node) for node in nodes}

        return read

    def _node(self, node: Node) -> bytes:
        level, index = node
        if level < 0 or index < 0 or (index + 1) << level > len(self._leaves):
            raise KeyError(f"node {node} is not complete in a tree of size {len(self._leaves)}")
        if level == 0:
            return self._leaves[index]
        cached = self._cache.get(node)
        if cached is None:
            cached = node_hash(
                self._node((level - 1, 2 * index)), self._node((level - 1, 2 * index + 1))
            )
            self._cache[node] = cached
        return cached
