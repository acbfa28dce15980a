"""Flow hashchain, directory step 17: the key directory's map, a compressed sparse Merkle
tree over 256-bit positions (HC-84, HC-85).

Every identity of the directory has one position (step 14: the first 32 bytes of an ECVRF
output); its leaf holds a 32-byte leaf value (step 16). The map is the binary trie of all
positions, bit 0 being the most significant bit of byte 0, hashed as follows:

    EMPTY                = 32 zero bytes                      (a subtree without a leaf)
    leaf hash            = SHA-256(0x00 || position || leaf value)
    node hash            = SHA-256(0x01 || left || right)
    subtree hash         = EMPTY with no leaf, the leaf hash with exactly one leaf,
                           else the node hash of its two children's subtree hashes

so a subtree with one leaf is that leaf, wherever it sits, and a proof has about
log2(n) hashes instead of 256. The root is a function of the set of (position, leaf
value) pairs only: the order of insertion does not matter (HC-84).

A proof for a position lists the sibling subtree hashes along the position's path, from
the deepest up (as RFC 9162 does), down to the first subtree on the path that holds at
most one leaf, and that subtree's content: the position's own leaf (membership), no leaf
(absence), or another leaf whose position shares the path (absence) (HC-85).

Storage is the caller's: `prove` and `apply` read through a `MapReader` that answers, for
a (depth, prefix), whether that subtree is empty, holds one leaf, or holds two or more
(then with its stored hash); `apply` returns the node hashes a batch of leaf changes
writes. `MemoryMap` is such a store in memory (vectors, tests, benchmark); the reference
server keeps the same rows in SQL, per epoch.
"""

from __future__ import annotations

import hashlib
from bisect import bisect_left
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from keyflows.spec.errors import LengthError, ProofError

POSITION_LEN = 32
HASH_LEN = 32
DEPTH = 8 * POSITION_LEN
EMPTY = bytes(HASH_LEN)
LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"
ROOT_PREFIX = bytes(POSITION_LEN)

_sha256 = hashlib.sha256


# --- hashes (HC-84) ---------------------------------------------------------------------------

def leaf_hash(position: bytes, leaf_value: bytes) -> bytes:
    """HC-84: a leaf binds its position, so a leaf cannot be moved to another path."""
    return _sha256(LEAF_PREFIX + position + leaf_value).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """HC-84: an interior node, prefix 0x01 (a leaf hash starts from 0x00)."""
    return _sha256(NODE_PREFIX + left + right).digest()


def bit(position: bytes, depth: int) -> int:
    """Bit `depth` of a position, bit 0 the most significant bit of byte 0."""
    return (position[depth >> 3] >> (7 - (depth & 7))) & 1


def child_prefix(prefix: bytes, depth: int, side: int) -> bytes:
    """The prefix of the child (left 0, right 1) of subtree (depth, prefix)."""
    if not side:
        return prefix
    out = bytearray(prefix)
    out[depth >> 3] |= 0x80 >> (depth & 7)
    return bytes(out)


def shares_path(a: bytes, b: bytes, depth: int) -> bool:
    """Whether two positions agree on their first `depth` bits."""
    return (int.from_bytes(a, "big") ^ int.from_bytes(b, "big")) >> (DEPTH - depth) == 0


# --- what a store answers ---------------------------------------------------------------------

@dataclass(frozen=True)
class Leaf:
    """A subtree that holds exactly one leaf."""

    position: bytes
    value: bytes

    @property
    def hash(self) -> bytes:
        return leaf_hash(self.position, self.value)


@dataclass(frozen=True)
class Inner:
    """A subtree that holds two leaves or more: its stored node hash."""

    hash: bytes


Subtree = Leaf | Inner | None
"""None is an empty subtree."""


class MapReader(Protocol):
    def subtree(self, depth: int, prefix: bytes) -> Subtree:
        """The subtree of all positions starting with the first `depth` bits of
        `prefix` (the other bits of `prefix` are zero)."""


def subtree_hash(node: Subtree) -> bytes:
    return EMPTY if node is None else node.hash


# --- proofs (HC-85) ---------------------------------------------------------------------------

@dataclass(frozen=True)
class MapProof:
    """Siblings from the deepest up; `other` is the leaf that ends the path when it is not
    the proven position's own (an absence proof); both None and a terminal leaf equal to
    the position's own are told apart by the caller's claim."""

    siblings: tuple[bytes, ...]
    terminal: Leaf | None

    @property
    def depth(self) -> int:
        return len(self.siblings)


def prove(position: bytes, reader: MapReader) -> MapProof:
    """HC-85, server side: walk the position's path while the subtree on it holds two
    leaves or more, collecting the other child's hash at every level."""
    _check_position(position)
    siblings: list[bytes] = []
    depth, prefix = 0, ROOT_PREFIX
    node = reader.subtree(0, ROOT_PREFIX)
    while isinstance(node, Inner):
        if depth == DEPTH:
            raise ProofError("the map holds two leaves at one position")  # corrupt store
        side = bit(position, depth)
        siblings.append(subtree_hash(reader.subtree(depth + 1,
                                                    child_prefix(prefix, depth, 1 - side))))
        prefix = child_prefix(prefix, depth, side)
        depth += 1
        node = reader.subtree(depth, prefix)
    siblings.reverse()
    return MapProof(siblings=tuple(siblings), terminal=node)


def root_from_proof(position: bytes, proof: MapProof) -> bytes:
    """HC-85, verifier side: the root a proof implies for `position`. The terminal leaf,
    if any, must lie on the position's path: a leaf elsewhere proves nothing (proof)."""
    _check_position(position)
    depth = proof.depth
    if depth > DEPTH:
        raise LengthError(f"a map proof has at most {DEPTH} siblings", requirement="HC-85")
    if any(map(HASH_LEN.__ne__, map(len, proof.siblings))):   # a sibling not 32 bytes
        raise LengthError("map proof hashes are 32 bytes", requirement="HC-85")
    terminal = proof.terminal
    if terminal is not None:
        if len(terminal.position) != POSITION_LEN or len(terminal.value) != HASH_LEN:
            raise LengthError("a map proof's leaf is a 32-byte position and a 32-byte value",
                              requirement="HC-85")
        if not shares_path(terminal.position, position, depth):
            raise ProofError("the map proof ends at a leaf off the position's path",
                             requirement="HC-85")
    current = subtree_hash(terminal)
    path = int.from_bytes(position, "big")
    shift = DEPTH - depth          # bit(position, level) is path >> (DEPTH - 1 - level) & 1
    for sibling in proof.siblings:  # levels depth - 1 up to 0
        if path >> shift & 1:
            current = _sha256(NODE_PREFIX + sibling + current).digest()
        else:
            current = _sha256(NODE_PREFIX + current + sibling).digest()
        shift += 1
    return current


def verify_membership(position: bytes, leaf_value: bytes, proof: MapProof,
                      root: bytes) -> None:
    """HC-85: the path ends at this position's leaf with this value, under `root`."""
    terminal = proof.terminal
    if terminal is None or terminal.position != position:
        raise ProofError("the map proof does not end at the position's leaf",
                         requirement="HC-85")
    if terminal.value != leaf_value:
        raise ProofError("the map proof's leaf holds another value", requirement="HC-85")
    if root_from_proof(position, proof) != root:
        raise ProofError("the map proof does not lead to the map root", requirement="HC-85")


def verify_absence(position: bytes, proof: MapProof, root: bytes) -> None:
    """HC-85: the path ends at an empty subtree or at another position's leaf."""
    if proof.terminal is not None and proof.terminal.position == position:
        raise ProofError("an absence proof that ends at the position's own leaf",
                         requirement="HC-85")
    if root_from_proof(position, proof) != root:
        raise ProofError("the map proof does not lead to the map root", requirement="HC-85")


# --- updates (HC-84) --------------------------------------------------------------------------

@dataclass(frozen=True)
class MapUpdate:
    """The new root and every node (depth, prefix, hash) of two leaves or more that a
    batch of leaf changes rewrote; a store keeps these and the new leaf values."""

    root: bytes
    nodes: tuple[tuple[int, bytes, bytes], ...]


def apply(changes: Mapping[bytes, bytes], reader: MapReader) -> MapUpdate:
    """HC-84: set each position of `changes` to its leaf value (a new leaf or a new value
    for an existing one) and recompute the subtrees on the changed paths only."""
    for position, value in changes.items():
        _check_position(position)
        if len(value) != HASH_LEN:
            raise LengthError("a leaf value is 32 bytes", requirement="HC-84")
    written: list[tuple[int, bytes, bytes]] = []
    ordered = sorted(changes.items())
    root = _rebuild(0, ROOT_PREFIX, ordered, reader, written)
    return MapUpdate(root=root, nodes=tuple(written))


def _rebuild(depth: int, prefix: bytes, changed: Sequence[tuple[bytes, bytes]],
             reader: MapReader, written: list[tuple[int, bytes, bytes]]) -> bytes:
    current = reader.subtree(depth, prefix)
    if not changed:
        return subtree_hash(current)
    if len(changed) == 1 and (current is None or (isinstance(current, Leaf)
                                                  and current.position == changed[0][0])):
        return leaf_hash(*changed[0])       # still exactly one leaf here
    if depth == DEPTH:
        raise ProofError("two changes at one position")  # impossible: positions are keys
    right = child_prefix(prefix, depth, 1)
    split = bisect_left(changed, (right,))
    left_hash = _rebuild(depth + 1, prefix, changed[:split], reader, written)
    right_hash = _rebuild(depth + 1, right, changed[split:], reader, written)
    value = node_hash(left_hash, right_hash)
    written.append((depth, prefix, value))
    return value


def _check_position(position: bytes) -> None:
    if len(position) != POSITION_LEN:
        raise LengthError(f"a map position is {POSITION_LEN} bytes", requirement="HC-84")


# --- a store in memory ------------------------------------------------------------------------

def upper_bound(prefix: bytes, depth: int) -> bytes | None:
    """The first position after subtree (depth, prefix); None past the last position."""
    if depth == 0:
        return None
    value = int.from_bytes(prefix, "big") + (1 << (DEPTH - depth))
    return None if value >> DEPTH else value.to_bytes(POSITION_LEN, "big")


@dataclass
class MemoryMap:
    """A map held in memory: the leaves (sorted positions and their values) and the node
    hashes of subtrees with two leaves or more, keyed by (depth, prefix)."""

    positions: list[bytes] = field(default_factory=list)
    values: dict[bytes, bytes] = field(default_factory=dict)
    nodes: dict[tuple[int, bytes], bytes] = field(default_factory=dict)

    def subtree(self, depth: int, prefix: bytes) -> Subtree:
        stored = self.nodes.get((depth, prefix))
        if stored is not None:
            return Inner(stored)
        lo = bisect_left(self.positions, prefix)
        upper = upper_bound(prefix, depth)
        hi = len(self.positions) if upper is None else bisect_left(self.positions, upper, lo)
        if hi == lo:
            return None
        if hi - lo > 1:
            raise ProofError("two leaves in a subtree without a stored node")  # corrupt store
        position = self.positions[lo]
        return Leaf(position, self.values[position])

    @property
    def root(self) -> bytes:
        return subtree_hash(self.subtree(0, ROOT_PREFIX))

    def __len__(self) -> int:
        return len(self.positions)

    def apply(self, changes: Mapping[bytes, bytes]) -> MapUpdate:
        update = apply(changes, self)
        fresh = [p for p in changes if p not in self.values]
        self.values.update(changes)
        if fresh:
            self.positions = sorted([*self.positions, *fresh])
        for depth, prefix, value in update.nodes:
            self.nodes[(depth, prefix)] = value
        return update

    def prove(self, position: bytes) -> MapProof:
        return prove(position, self)

    def copy(self) -> MemoryMap:
        return MemoryMap(list(self.positions), dict(self.values), dict(self.nodes))
