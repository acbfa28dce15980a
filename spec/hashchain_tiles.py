"""Flow hashchain, step 7: serving the log (c2sp.org/tlog-tiles) and its proofs.

The tree is served as tiles: the hashes at tree level 8L, 256 to a full tile, at
<prefix>/tile/<L>/<N>[.p/<W>], and the entries as bundles of 2-byte-length-prefixed
entries at <prefix>/tile/entries/<N>[.p/<W>]. Full tiles never change, so any HTTP
cache or static host can serve them; partial tiles and the checkpoint change as the log
grows (HC-23, HC-44, HC-45). For clients that do not want tiles, the server also answers
inclusion and consistency proofs as JSON (HC-46), computed from the same stored nodes.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from keyflows.spec import hashchain_merkle as merkle
from keyflows.spec import wire
from keyflows.spec.encoding import b64url_decode_exact, b64url_encode
from keyflows.spec.errors import DecodeError, LengthError, ParamsError

TILE_HEIGHT = 8
TILE_WIDTH = 1 << TILE_HEIGHT  # 256
MAX_TILE_LEVEL = 63
ENTRIES = "entries"
#: HC-45: full tiles and entry bundles never change; partial ones and the checkpoint do.
IMMUTABLE = "public, max-age=31536000, immutable"
SHORT_LIVED = "public, max-age=2"
TILE_MEDIA_TYPE = "application/octet-stream"
CHECKPOINT_MEDIA_TYPE = "text/plain; charset=utf-8"

_ELEMENT = re.compile(r"\A(x?)([0-9]{3})\Z")
_DECIMAL = re.compile(r"\A(0|[1-9][0-9]*)\Z")


@dataclass(frozen=True)
class Tile:
    """A tile (`level` 0..63) or an entry bundle (`level` None); `width` 1..256, below
    256 for a partial tile."""

    level: int | None
    index: int
    width: int = TILE_WIDTH

    @property
    def partial(self) -> bool:
        return self.width < TILE_WIDTH

    def path(self) -> str:
        """HC-44: tile/<L>/<N>[.p/<W>], N as 3-digit elements, all but the last x-prefixed."""
        level = ENTRIES if self.level is None else str(self.level)
        suffix = f".p/{self.width}" if self.partial else ""
        return f"tile/{level}/{encode_index(self.index)}{suffix}"

    @property
    def tree_level(self) -> int:
        """The tree level of the tile's hashes (entry bundles: the leaves)."""
        return 0 if self.level is None else TILE_HEIGHT * self.level

    @property
    def first_node(self) -> int:
        return self.index * TILE_WIDTH

    def cache_control(self) -> str:
        return SHORT_LIVED if self.partial else IMMUTABLE


def encode_index(n: int) -> str:
    """1234067 -> x001/x234/067 (HC-44)."""
    if n < 0:
        raise ParamsError("a tile index is not negative", requirement="HC-44")
    groups = []
    while True:
        groups.append(f"{n % 1000:03d}")
        n //= 1000
        if n == 0:
            break
    groups.reverse()
    return "/".join(["x" + g for g in groups[:-1]] + [groups[-1]])


def parse_tile_path(path: str) -> Tile:
    """The tile a path below tile/ names ("<L>/<N>[.p/<W>]", as a route matched on the
    literal tile/ hands it over), strictly: every other spelling is refused (HC-44)."""
    parts = path.split("/")
    if len(parts) < 2:
        raise DecodeError("a tile path is tile/<L>/<N>[.p/<W>]", requirement="HC-44")
    level: int | None
    if parts[0] == ENTRIES:
        level = None
    elif _DECIMAL.match(parts[0]) and int(parts[0]) <= MAX_TILE_LEVEL:
        level = int(parts[0])
    else:
        raise DecodeError("a tile level is 0..63 without leading zeros", requirement="HC-44")
    rest = parts[1:]
    width = TILE_WIDTH
    if len(rest) >= 2 and rest[-2].endswith(".p"):
        if not _DECIMAL.match(rest[-1]) or not 1 <= int(rest[-1]) < TILE_WIDTH:
            raise DecodeError("a partial tile width is 1..255 without leading zeros",
                              requirement="HC-44")
        width = int(rest[-1])
        rest = [*rest[:-2], rest[-2][:-2]]
    index = 0
    for i, element in enumerate(rest):
        match = _ELEMENT.match(element)
        if not match or bool(match.group(1)) != (i < len(rest) - 1):
            raise DecodeError("tile index elements are 3 digits, all but the last x-prefixed",
                              requirement="HC-44")
        index = index * 1000 + int(match.group(2))
    # (a lone element has no "x", so an "x000" first element has elements after it)
    if rest[0] == "x000":
        raise DecodeError("a tile index has no leading x000 element", requirement="HC-44")
    return Tile(level=level, index=index, width=width)


def nodes_at(tile_level: int, size: int) -> int:
    """How many complete nodes a tree of `size` leaves has at tree level 8 * tile_level."""
    return size >> (TILE_HEIGHT * tile_level)


def available(tile: Tile, size: int) -> bool:
    """HC-44: a tree of `size` leaves has this tile: a full tile once all 256 nodes are
    complete; a partial tile of width W while the tile holds at least W complete nodes
    (every size has a checkpoint, so every such width was a tree size's partial tile)."""
    if tile.index < 0 or not 1 <= tile.width <= TILE_WIDTH:
        return False
    have = nodes_at(0 if tile.level is None else tile.level, size)
    return have >= tile.first_node + tile.width


def tile_hashes(tile: Tile, node: merkle.NodeReader) -> bytes:
    """The content of a hash tile (level not None: the caller serves entry bundles from
    the entries): its `width` node hashes, concatenated (HC-44)."""
    level = tile.tree_level
    return b"".join(node(level, tile.first_node + i) for i in range(tile.width))


def entry_bundle(entries: Sequence[bytes]) -> bytes:
    """HC-44: each entry prefixed by its length as a big-endian uint16."""
    return b"".join(len(e).to_bytes(2, "big") + e for e in entries)


def parse_entry_bundle(data: bytes, *, count: int, entry_len: int | None = None) -> list[bytes]:
    """A bundle of exactly `count` length-prefixed entries, nothing after them."""
    out, offset = [], 0
    for _ in range(count):
        if offset + 2 > len(data):
            raise LengthError("the entry bundle is truncated", requirement="HC-44")
        n = int.from_bytes(data[offset:offset + 2], "big")
        if offset + 2 + n > len(data):
            raise LengthError("the entry bundle is truncated", requirement="HC-44")
        entry = data[offset + 2:offset + 2 + n]
        if entry_len is not None and n != entry_len:
            raise LengthError(f"an entry of the bundle is {n} bytes, not {entry_len}",
                              requirement="HC-44")
        out.append(entry)
        offset += 2 + n
    if offset != len(data):
        raise LengthError("the entry bundle has bytes after its entries", requirement="HC-44")
    return out


def tiles_for(size: int) -> list[Tile]:
    """Every hash tile of a tree of `size` leaves, lowest level first: the full ones and
    the partial tile at the right edge of each level (HC-44)."""
    out: list[Tile] = []
    level = 0
    while True:
        have = nodes_at(level, size)
        if have == 0:
            break
        full, rest = divmod(have, TILE_WIDTH)
        out.extend(Tile(level, n) for n in range(full))
        if rest:
            out.append(Tile(level, full, rest))
        level += 1
    return out


def node_from_tiles(level: int, index: int,
                    tile_content: Callable[[int, int], bytes]) -> bytes:
    """A perfect-subtree hash read from hash tiles: `tile_content(L, N)` gives the bytes
    of tile N at level L (full, or partial wide enough). Levels between the tiles' levels
    are rebuilt by hashing the tile's hashes, as a tile is the whole subtree of height 8
    over them."""
    tile_level, height = divmod(level, TILE_HEIGHT)
    first = index << height  # first node at the tile's level under the wanted node
    count = 1 << height
    content = tile_content(tile_level, first // TILE_WIDTH)
    start = (first % TILE_WIDTH) * merkle.HASH_LEN
    chunk = content[start:start + count * merkle.HASH_LEN]
    if len(chunk) != count * merkle.HASH_LEN:
        raise LengthError("the tile does not hold the needed hashes", requirement="HC-44")
    hashes = [chunk[i:i + merkle.HASH_LEN] for i in range(0, len(chunk), merkle.HASH_LEN)]
    return merkle.root_of(hashes)


# --- JSON proofs (HC-46) --------------------------------------------------------------------------

def inclusion_to_wire(index: int, size: int, proof: Sequence[bytes]) -> dict[str, Any]:
    return {"index": index, "size": size, "proof": [b64url_encode(h) for h in proof]}


def consistency_to_wire(size1: int, size2: int, root1: bytes,
                        proof: Sequence[bytes]) -> dict[str, Any]:
    """The proof from size1 to size2, with the log's root at size1: a client that holds
    another root there gets, from a proof that verifies, a fork proof (HC-10)."""
    return {"size1": size1, "size2": size2, "root1": b64url_encode(root1),
            "proof": [b64url_encode(h) for h in proof]}


def _hashes(obj: dict[str, Any], where: str) -> list[bytes]:
    items = obj["proof"]
    if not isinstance(items, list) or len(items) > merkle.MAX_PROOF_LEN:
        raise DecodeError(f"{where}.proof must be a list of at most 64 hashes",
                          requirement="HC-46")
    return [b64url_decode_exact(x if isinstance(x, str) else "", merkle.HASH_LEN,
                                field=f"{where}.proof", requirement="API-1") for x in items]


def _size(obj: dict[str, Any], key: str, where: str) -> int:
    value = wire.integer(obj, key, where)
    if not 0 <= value <= merkle.MAX_SIZE:
        raise DecodeError(f"{where}.{key} must be in 0..2^63-1", requirement="HC-46")
    return value


@dataclass(frozen=True)
class WireInclusion:
    index: int
    size: int
    proof: list[bytes]


@dataclass(frozen=True)
class WireConsistency:
    size1: int
    size2: int
    root1: bytes
    proof: list[bytes]


def parse_inclusion(obj: object) -> WireInclusion:
    m = wire.members(obj, ("index", "size", "proof"), "inclusion")
    return WireInclusion(index=_size(m, "index", "inclusion"), size=_size(m, "size", "inclusion"),
                         proof=_hashes(m, "inclusion"))


def parse_consistency(obj: object) -> WireConsistency:
    m = wire.members(obj, ("size1", "size2", "root1", "proof"), "consistency")
    return WireConsistency(size1=_size(m, "size1", "consistency"),
                           size2=_size(m, "size2", "consistency"),
                           root1=b64url_decode_exact(wire.string(m, "root1", "consistency"),
                                                     merkle.HASH_LEN, field="consistency.root1",
                                                     requirement="API-1"),
                           proof=_hashes(m, "consistency"))
