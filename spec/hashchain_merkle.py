"""Flow hashchain, step 3: the log is an RFC 9162 Merkle tree (HC-5, HC-36, HC-37).

Leaves are the log's entries in order. Hashes are RFC 9162 section 2.1.1's:

    leaf hash  = SHA-256(0x00 || entry)
    node hash  = SHA-256(0x01 || left || right)
    MTH({})    = SHA-256("")
    MTH(D[n])  = node hash(MTH(D[0:k]), MTH(D[k:n])), k the largest power of 2 below n

Every proof element is the Merkle Tree Hash of a range of leaves, MTH(D[a:b]); this
module says which ranges a proof needs (`inclusion_ranges`, `consistency_ranges`) and
computes them from the hashes of perfect subtrees (`range_hash` over a `NodeReader`), so
a store that keeps perfect-subtree hashes (as the reference server does) answers any
proof with point lookups. Verification follows RFC 9162 sections 2.1.3.2 and 2.1.4.2
step by step. Sans-I/O: nothing here reads storage; callers pass the node reader.

Sizes are checked once, where they enter: the verifiers (and CompactRange) check the sizes
a proof or a client's state names; the provers (`inclusion_ranges`, `consistency_ranges`,
`tree_root`) take sizes their caller already holds in 0..2^63-1 (a query parameter it
parsed as a C2SP decimal, a checkpoint it parsed, its own tree's size) and check only how
the sizes relate.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from keyflows.spec.errors import LengthError, ParamsError, ProofError

HASH_LEN = 32
LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"
EMPTY_ROOT = hashlib.sha256(b"").digest()
#: Sizes and indexes are unsigned 64-bit values on every wire format of the flow.
MAX_SIZE = 2**63 - 1
#: A proof in a tree of at most 2^63 - 1 leaves never has more than 63 + 1 elements
#: (tlog-witness limits consistency proofs to 63 lines).
MAX_PROOF_LEN = 64

#: (level, index) -> the hash of the perfect subtree over leaves
#: [index * 2^level, (index + 1) * 2^level); level 0 holds leaf hashes.
NodeReader = Callable[[int, int], bytes]

_sha256 = hashlib.sha256


def leaf_hash(entry: bytes) -> bytes:
    """HC-5: the hash of a leaf, domain-separated from interior nodes by 0x00."""
    return _sha256(LEAF_PREFIX + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """HC-5: the hash of an interior node, prefix 0x01."""
    return _sha256(NODE_PREFIX + left + right).digest()


def split_point(n: int) -> int:
    """RFC 9162 2.1.1: the largest power of 2 smaller than n (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def is_power_of_two(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


def _check_size(size: int, what: str = "tree size") -> None:
    if not isinstance(size, int) or isinstance(size, bool) or not 0 <= size <= MAX_SIZE:
        raise ParamsError(f"{what} must be an integer in 0..2^63-1", requirement="HC-5")


# --- which ranges a proof is made of -------------------------------------------------------

def inclusion_ranges(index: int, size: int) -> list[tuple[int, int]]:
    """RFC 9162 2.1.3.1 PATH(m, D[n]) as ranges [a, b), leaf's sibling first (HC-36);
    `size` in 0..2^63-1 (see the module's docstring)."""
    if not 0 <= index < size:
        raise ParamsError(f"leaf index {index} is not below the tree size {size}",
                          requirement="HC-36")
    out: list[tuple[int, int]] = []
    start, end = 0, size
    while end - start > 1:
        k = split_point(end - start)
        if index < start + k:
            out.append((start + k, end))
            end = start + k
        else:
            out.append((start, start + k))
            start += k
    out.reverse()
    return out


def consistency_ranges(size1: int, size2: int) -> list[tuple[int, int]]:
    """RFC 9162 2.1.4.1 PROOF(m, D[n]) = SUBPROOF(m, D[n], true) as ranges (HC-37).

    Defined for 0 < m <= n (both at most 2^63-1); for m = n the proof is empty.
    """
    if not 0 < size1 <= size2:
        raise ParamsError(f"a consistency proof needs 0 < old size <= new size, got "
                          f"{size1} and {size2}", requirement="HC-37")
    out: list[tuple[int, int]] = []
    start, end, m, complete = 0, size2, size1, True
    while True:
        n = end - start
        if m == n:
            if not complete:
                out.append((start, end))
            break
        k = split_point(n)
        if m <= k:
            out.append((start + k, end))
            end = start + k
        else:
            out.append((start, start + k))
            start, m, complete = start + k, m - k, False
    out.reverse()
    return out


def range_hash(start: int, end: int, node: NodeReader) -> bytes:
    """MTH(D[start:end]) for a range of RFC 9162's recursion: its left parts are perfect
    subtrees aligned on their size, read with `node`; the rest is hashed here."""
    if not 0 <= start < end:
        raise ParamsError(f"empty or inverted range [{start}, {end})", requirement="HC-5")
    n = end - start
    if is_power_of_two(n) and start % n == 0:
        return node(n.bit_length() - 1, start // n)
    k = split_point(n)
    if start % k:
        raise ParamsError(f"range [{start}, {end}) is not one of the tree's subtrees",
                          requirement="HC-5")
    return node_hash(node(k.bit_length() - 1, start // k), range_hash(start + k, end, node))


def inclusion_proof(index: int, size: int, node: NodeReader) -> list[bytes]:
    """HC-36: the inclusion proof of leaf `index` in the tree of `size` leaves."""
    return [range_hash(a, b, node) for a, b in inclusion_ranges(index, size)]


def consistency_proof(size1: int, size2: int, node: NodeReader) -> list[bytes]:
    """HC-37: the consistency proof from the tree of size1 leaves to that of size2."""
    return [range_hash(a, b, node) for a, b in consistency_ranges(size1, size2)]


def completed_nodes(index: int, leaf: bytes, node: NodeReader) -> list[tuple[int, int, bytes]]:
    """HC-5: the perfect subtrees that appending the leaf hash at `index` completes, as
    (level, index, hash), the leaf itself first: what a store adds per append."""
    out = [(0, index, leaf)]
    level, i, value = 0, index, leaf
    while i & 1:
        value = node_hash(node(level, i - 1), value)
        level, i = level + 1, i >> 1
        out.append((level, i, value))
    return out


def tree_root(size: int, node: NodeReader) -> bytes:
    """MTH(D[0:size]) from perfect subtrees, `size` in 0..2^63-1; the empty tree's root
    is SHA-256("")."""
    return EMPTY_ROOT if size == 0 else range_hash(0, size, node)


def root_of(leaf_hashes: Sequence[bytes]) -> bytes:
    """MTH over a list of leaf hashes (tests, vectors; a store uses tree_root)."""
    level = list(leaf_hashes)
    if not level:
        return EMPTY_ROOT
    while len(level) > 1:
        pairs = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            pairs.append(level[-1])  # promoted: the right edge of RFC 9162's recursion
        level = pairs
    return level[0]


# --- verification (RFC 9162 2.1.3.2 and 2.1.4.2) ------------------------------------------------

def _check_hashes(values: Iterable[bytes], what: str, requirement: str) -> None:
    for value in values:
        if len(value) != HASH_LEN:
            raise LengthError(f"{what} must be {HASH_LEN}-byte hashes, got {len(value)} bytes",
                              requirement=requirement)


def root_from_inclusion_proof(*, index: int, size: int, leaf: bytes,
                              proof: Sequence[bytes]) -> bytes:
    """RFC 9162 2.1.3.2 steps 1-4: the root the proof leads to from `leaf` (a leaf hash)."""
    _check_size(size)
    _check_hashes([leaf], "the leaf hash", "HC-36")
    _check_hashes(proof, "inclusion proof elements", "HC-36")
    if not 0 <= index < size:
        raise ProofError(f"leaf index {index} is not below the tree size {size}",
                         requirement="HC-36")
    if len(proof) > MAX_PROOF_LEN:
        raise ProofError("inclusion proof is too long", requirement="HC-36")
    sha, prefix = _sha256, NODE_PREFIX  # node_hash, inlined: this loop is the hot path
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            raise ProofError("inclusion proof is longer than the path", requirement="HC-36")
        if fn & 1 or fn == sn:
            r = sha(prefix + p + r).digest()
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = sha(prefix + r + p).digest()
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:
        raise ProofError("inclusion proof is shorter than the path", requirement="HC-36")
    return r


def verify_inclusion(*, index: int, size: int, leaf: bytes, proof: Sequence[bytes],
                     root: bytes) -> None:
    """HC-36: the leaf hash is at `index` of the tree of `size` leaves with this root."""
    if root_from_inclusion_proof(index=index, size=size, leaf=leaf, proof=proof) != root:
        raise ProofError("inclusion proof does not lead to the root", requirement="HC-36")


@dataclass(frozen=True)
class ConsistencyRoots:
    """What a consistency proof commits to: the old and new roots it recomputes."""

    old_root: bytes
    new_root: bytes


def roots_from_consistency_proof(*, size1: int, size2: int, root1: bytes,
                                 proof: Sequence[bytes]) -> ConsistencyRoots:
    """RFC 9162 2.1.4.2 steps 1-6 for 0 < size1 < size2: the two roots the proof leads to.

    When size1 is a power of 2 the old tree is one node the proof leaves out: it is
    `root1` (step 2), so only the new root is recomputed from it.
    """
    _check_hashes(proof, "consistency proof elements", "HC-37")
    if len(proof) > MAX_PROOF_LEN:
        raise ProofError("consistency proof is too long", requirement="HC-37")
    if not proof:
        raise ProofError("an empty consistency proof between different sizes",
                         requirement="HC-37")
    path = list(proof)
    if is_power_of_two(size1):
        path.insert(0, root1)
    fn, sn = size1 - 1, size2 - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    sha, prefix = _sha256, NODE_PREFIX  # node_hash, inlined
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofError("consistency proof is longer than the path", requirement="HC-37")
        if fn & 1 or fn == sn:
            fr = sha(prefix + c + fr).digest()
            sr = sha(prefix + c + sr).digest()
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = sha(prefix + sr + c).digest()
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:
        raise ProofError("consistency proof is shorter than the path", requirement="HC-37")
    return ConsistencyRoots(old_root=fr, new_root=sr)


def verify_consistency(*, size1: int, size2: int, root1: bytes, root2: bytes,
                       proof: Sequence[bytes]) -> None:
    """HC-37: the tree of size2 leaves with root2 extends the tree of size1 with root1.

    size1 = 0 is refused: the empty tree is consistent with every tree, so there is
    nothing to prove (a verifier that holds no tree does not call this). For size1 =
    size2 the proof is empty and the roots are equal.
    """
    _check_size(size1, "old size")
    _check_size(size2, "new size")
    if size2 < size1:
        raise ProofError(f"the new size {size2} is below the old size {size1}",
                         requirement="HC-37")
    if size1 == 0:
        raise ProofError("a consistency proof from the empty tree proves nothing",
                         requirement="HC-37")
    if size1 == size2:
        if proof:
            raise ProofError("sizes are equal but the proof is not empty", requirement="HC-37")
        if root1 != root2:
            raise ProofError("sizes are equal but the roots differ", requirement="HC-37")
        return
    roots = roots_from_consistency_proof(size1=size1, size2=size2, root1=root1, proof=proof)
    if roots.old_root != root1 or roots.new_root != root2:
        raise ProofError("consistency proof does not lead to both roots", requirement="HC-37")


# --- the right edge of a tree: what a client keeps between checkpoints --------------------------

class CompactRange:
    """The roots of the perfect subtrees that make up D[0:size], largest first.

    A client that keeps this (at most 63 hashes) extends it with new leaves and gets the
    new root without the old leaves: how a follower checks that fetched entries are
    exactly the ones a checkpoint commits to (HC-46).
    """

    def __init__(self, size: int = 0, nodes: Sequence[bytes] = ()) -> None:
        _check_size(size)
        if len(nodes) != bin(size).count("1"):
            raise ParamsError(f"a compact range of size {size} has {bin(size).count('1')} "
                              f"nodes, got {len(nodes)}", requirement="HC-46")
        _check_hashes(nodes, "compact range nodes", "HC-46")
        self.size = size
        self.nodes = list(nodes)

    def append(self, leaf: bytes) -> None:
        """Add one leaf hash: merge equal-sized subtrees on the right edge."""
        self.nodes.append(leaf)
        size = self.size
        while size & 1:
            right = self.nodes.pop()
            self.nodes[-1] = node_hash(self.nodes[-1], right)
            size >>= 1
        self.size += 1

    def extend(self, leaves: Iterable[bytes]) -> None:
        for leaf in leaves:
            self.append(leaf)

    def root(self) -> bytes:
        """MTH(D[0:size]): fold the subtree roots from the right (smallest) edge."""
        if not self.nodes:
            return EMPTY_ROOT
        root = self.nodes[-1]
        for left in reversed(self.nodes[:-1]):
            root = node_hash(left, root)
        return root

    def copy(self) -> CompactRange:
        return CompactRange(self.size, self.nodes)


def compact_range_of(size: int, node: NodeReader) -> CompactRange:
    """The compact range of D[0:size] read from a store's perfect subtrees."""
    _check_size(size)
    nodes, start = [], 0
    for level in reversed(range(size.bit_length())):
        if size >> level & 1:
            nodes.append(node(level, start >> level))
            start += 1 << level
    return CompactRange(size, nodes)


# --- an in-memory tree with every perfect subtree (vectors, tests, benchmarks) ---------------

class MerkleTree:
    """Every perfect-subtree hash of an append-only tree, level by level.

    levels[h] holds the hashes of the complete subtrees of 2^h leaves, left to right, as
    one bytearray (32 bytes each) so that millions of leaves stay compact. `node` is a
    NodeReader for the proof and root functions above, at any size up to the current.
    """

    def __init__(self) -> None:
        self.levels: list[bytearray] = [bytearray()]

    @property
    def size(self) -> int:
        return len(self.levels[0]) // HASH_LEN

    def append_leaf(self, leaf: bytes) -> int:
        """Append a leaf hash; returns its index. Completes parents as pairs fill up."""
        index = self.size
        for level, _, value in completed_nodes(index, leaf, self.node):
            if len(self.levels) == level:
                self.levels.append(bytearray())
            self.levels[level] += value
        return index

    def append(self, entry: bytes) -> int:
        return self.append_leaf(leaf_hash(entry))

    def node(self, level: int, index: int) -> bytes:
        if level >= len(self.levels) or (index + 1) * HASH_LEN > len(self.levels[level]):
            raise ParamsError(f"no complete subtree at level {level}, index {index}",
                              requirement="HC-5")
        offset = index * HASH_LEN
        return bytes(self.levels[level][offset:offset + HASH_LEN])

    def root(self, size: int | None = None) -> bytes:
        return tree_root(self.size if size is None else size, self.node)

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        return inclusion_proof(index, self.size if size is None else size, self.node)

    def consistency_proof(self, size1: int, size2: int | None = None) -> list[bytes]:
        return consistency_proof(size1, self.size if size2 is None else size2, self.node)
