"""hashchain checks, the log: the runner follows the target's transparency log as a client
(checkpoint, consistency proof, entry bundles, all verified by keyflows.spec), checks the
tiles and proofs it serves, holds it to the checkpoints it showed earlier and to what it
showed another client, and, as a witness, to what it submitted for cosigning. The UID and
KeyInit checks are in hashchain_uid.

Attacks a malicious log could try, each with its check: a checkpoint inconsistent with an
earlier one or a rewritten history (consistent-with-earlier, tiles-immutable), a bad
inclusion or consistency proof (proofs/*), two views to two clients (no-split-view), a
forged second creation (uid/second-creation-refused), and skipping or cheating its
witnesses (witness/*).
"""

from __future__ import annotations

import re
import time
from concurrent.futures import ThreadPoolExecutor

from keyflows.conformance.checks.hashchain_support import (
    CHECKPOINT,
    CONCURRENT_WRITERS,
    FIRST_STATE,
    NEEDS,
    PREFIX,
    UIDS,
    Client,
    checked_reply,
    create,
    expect_spec,
    get_bytes,
    get_json,
    identity_path,
    make_uid,
    params,
    person,
    post_uid,
    synced,
    synced_with_entries,
    tile_path,
    witness_policy,
)
from keyflows.conformance.http import Exchange
from keyflows.conformance.probe import CheckSkipped, Probe, describe
from keyflows.conformance.registry import check
from keyflows.conformance.witness import (
    KEPT,
    MALFORMED_ANSWERS,
    SABOTAGE,
    Submission,
    runner_witness_verifier,
)
from keyflows.spec import hashchain as hc
from keyflows.spec import hashchain_client as hcc
from keyflows.spec import hashchain_merkle as merkle
from keyflows.spec import hashchain_note as note
from keyflows.spec import hashchain_tiles as tiles
from keyflows.spec import hashchain_uid as hu
from keyflows.spec.encoding import b64url_decode

_MAX_AGE = re.compile(r"max-age=(\d+)")
OTHER_CLIENT = {"User-Agent": "keyflows-conformance client-b"}


# --- capabilities and the log ---------------------------------------------------------------

@check("hashchain/capabilities/advertised", requirements=("HC-8", "HC-14", "HC-50"),
       needs=NEEDS)
def capabilities_advertised(t: Probe) -> None:
    """The capabilities carry the origin, served domains, the log's vkey (named after the
    origin) and the witnesses the log submits to."""
    p = params(t)
    if not p.domains:
        t.fail("capabilities.hashchain has no domain", expected="at least one domain",
               actual=repr(p))
    expect_spec(t, "capabilities.hashchain.origin", None, lambda: hc.check_origin(p.origin))
    for domain in p.domains:
        expect_spec(t, "a served domain is not a lowercase DNS name", None,
                    lambda d=domain: hu.check_identity(f"abc@{d}"))


@check("hashchain/log/entry-0-introduces-key", requirements=("HC-6", "HC-50"), needs=NEEDS)
def entry_zero(t: Probe) -> None:
    """Entry 0 is a log-key entry signed by the key it introduces, and that key is the
    advertised one (what a client pins on first use)."""
    p = params(t)
    client = Client(t, p)
    entry0 = client.fetch_entries(0, 1)[0]
    entry = expect_spec(t, "entry 0 does not decode", None, lambda: hc.decode_entry(entry0))
    if entry.type != hc.TYPE_LOG_KEY:
        t.fail(f"entry 0 has type 0x{entry.type:02x}", expected="a log-key entry (0x03)",
               actual=entry0.hex())
    first_use = hcc.LogFollower(origin=p.origin)
    key = expect_spec(t, "entry 0 is not signed by the key it introduces", None,
                      lambda: first_use.trust_first_entry(entry0))
    if key != p.log_key:
        t.fail("entry 0 introduces another key than the advertised log key",
               expected=p.log_key.hex(), actual=key.hex())


@check("hashchain/log/follows-from-zero",
       requirements=("HC-1", "HC-5", "HC-9", "HC-12", "HC-47", "HC-3"), needs=NEEDS)
def follows_from_zero(t: Probe) -> None:
    """The whole log (of at least 8 entries: the check adds UIDs to a shorter one), read
    from the entry bundles, decodes entry by entry (each type's layout, reserved bytes
    zero) and hashes into the root of the signed checkpoint; no two entries share a
    nonce."""
    _, client, _ = synced_with_entries(t)
    seen: dict[bytes, int] = {}
    for index, data in enumerate(client.entries):
        nonce = hc.decode_entry(data).nonce
        if nonce in seen:
            t.fail(f"entries {seen[nonce]} and {index} share a nonce (HC-3)",
                   expected="a fresh nonce per entry", actual=nonce.hex())
        seen[nonce] = index


@check("hashchain/log/checkpoint-signed", requirements=("HC-8", "HC-38", "HC-45", "HC-23"),
       needs=NEEDS)
def checkpoint_signed(t: Probe) -> None:
    """GET /v1/hashchain/checkpoint is a note for this origin, signed by the advertised
    key under the origin's name, served as text/plain and cacheable for seconds only."""
    p = params(t)
    exchange = get_bytes(t, CHECKPOINT, what="GET the checkpoint",
                         media_type=tiles.CHECKPOINT_MEDIA_TYPE)
    expect_spec(t, "the checkpoint is not a note signed by the log's key for its origin",
                exchange, lambda: note.verify_checkpoint(exchange.response_body,
                                                         origin=p.origin,
                                                         log_keys=[p.verifier]))
    max_age(t, exchange, at_most=60, what="the checkpoint")


def max_age(t: Probe, exchange: Exchange, *, at_most: int | None = None,
            at_least: int | None = None, immutable: bool = False, what: str) -> None:
    """HC-45: the Cache-Control of a tile or checkpoint."""
    header = exchange.header("cache-control") or ""
    found = _MAX_AGE.search(header)
    age = int(found.group(1)) if found else None
    wrong = (age is None or (at_most is not None and age > at_most)
             or (at_least is not None and age < at_least)
             or (immutable and "immutable" not in header))
    if wrong:
        wanted = (f"max-age <= {at_most}" if at_most is not None
                  else f"max-age >= {at_least}, immutable")
        t.fail(f"{what} is served with Cache-Control {header!r}", expected=wanted,
               actual=header or "(none)", exchange=exchange)


# --- tiles ---------------------------------------------------------------------------------

@check("hashchain/tiles/served", requirements=("HC-44", "HC-45"), needs=NEEDS)
def tiles_served(t: Probe) -> None:
    """Every hash tile of the current tree (full and partial) is served as octets: level 0
    holds the leaf hashes of the entries, higher levels the roots of full tiles below,
    and the tiles rebuild the checkpoint's root; full tiles are immutable, partial ones
    short-lived."""
    _, client, checkpoint = synced_with_entries(t)
    contents: dict[tuple[int, int], bytes] = {}
    for tile in tiles.tiles_for(checkpoint.size):
        exchange = get_bytes(t, tile_path(tile), what=f"GET {tile.path()}",
                             media_type=tiles.TILE_MEDIA_TYPE)
        if tile.partial:
            max_age(t, exchange, at_most=60, what=f"partial tile {tile.path()}")
        else:
            max_age(t, exchange, at_least=86400, immutable=True, what=f"tile {tile.path()}")
        assert tile.level is not None
        contents[(tile.level, tile.index)] = exchange.response_body
        if tile.level == 0:
            first = tile.first_node
            want = b"".join(merkle.leaf_hash(e)
                            for e in client.entries[first:first + tile.width])
            if exchange.response_body != want:
                t.fail(f"{tile.path()} does not hold the leaf hashes of the entries",
                       expected=want.hex()[:128], actual=describe(exchange),
                       exchange=exchange)

    def node(level: int, index: int) -> bytes:
        return tiles.node_from_tiles(level, index, lambda lv, n: contents[(lv, n)])

    root = expect_spec(t, "the tiles do not hold the nodes of the tree", None,
                       lambda: merkle.tree_root(checkpoint.size, node))
    if root != checkpoint.root_hash:
        t.fail("the hash tiles do not rebuild the checkpoint's root",
               expected=checkpoint.root_hash.hex(), actual=root.hex())


@check("hashchain/tiles/missing-and-malformed", requirements=("HC-44", "API-2"), needs=NEEDS)
def tiles_missing(t: Probe) -> None:
    """A tile or bundle the tree does not have yet is 404 (up to level 63 and width 255,
    indices of several x-prefixed elements too); any other spelling of a tile path is
    400, also one that would name a tile the tree has (leading zeros, short or long
    elements, a missing or misplaced x, a leading x000, widths out of 1..255, levels
    beyond 63); both as problem+json."""
    _, _, checkpoint = synced_with_entries(t)
    beyond = tiles.Tile(0, checkpoint.size // tiles.TILE_WIDTH + 5)
    far = max(beyond.index, 1_234_067)  # x001/x234/067
    for tile in (beyond, tiles.Tile(None, beyond.index), tiles.Tile(1, 7, 3),
                 tiles.Tile(tiles.MAX_TILE_LEVEL, 0, 1), tiles.Tile(0, beyond.index, 255),
                 tiles.Tile(0, far), tiles.Tile(None, far + 1000, 17),
                 tiles.Tile(2, far * 1000)):
        t.expect_rejected(t.request("GET", tile_path(tile)), 404,
                          what=f"GET {tile.path()} beyond the tree")
    w = min(checkpoint.size, tiles.TILE_WIDTH - 1)  # tile/0/000.p/<w> exists
    for path in ("tile/0/1", "tile/0/000.p/0", "tile/00/000", "tile/0/x000/001",
                 f"tile/0/00.p/{w}", f"tile/0/0000.p/{w}", f"tile/0/x000.p/{w}",
                 f"tile/0/x000/000.p/{w}", f"tile/00/000.p/{w}", f"tile/0/000.p/0{w}",
                 "tile/0/000.p/256", "tile/0/000.p", "tile/entries", "tile/x/000.p/1",
                 f"tile/{tiles.MAX_TILE_LEVEL + 1}/000.p/1", f"tile/entries/00.p/{w}",
                 f"tile/0/000/000.p/{w}", f"tile/entries/x001.p/{w}", "tile/0/x001/x002"):
        exchange = t.request("GET", f"{PREFIX}/{path}")
        t.expect_rejected(exchange, 400, what=f"GET the malformed tile path {path}")


@check("hashchain/tiles/immutable", requirements=("HC-44", "HC-9"), needs=NEEDS)
def tiles_immutable(t: Probe) -> None:
    """Entries and tiles, fetched again after the log grew, are byte for byte what the
    runner verified before: no rewritten history."""
    p, client, before = synced_with_entries(t)
    create(t, "imm")
    again = Client(t, p)
    again.sync()
    for index, data in enumerate(client.entries):
        if again.entries[index] != data:
            t.fail(f"entry {index} changed after the log grew (a rewritten history)",
                   expected=data.hex(), actual=again.entries[index].hex())
    for tile in tiles.tiles_for(before.size):
        if tile.partial:
            continue
        exchange = get_bytes(t, tile_path(tile), what=f"GET {tile.path()} again",
                             media_type=tiles.TILE_MEDIA_TYPE)
        assert tile.level is not None
        want = b"".join(merkle.leaf_hash(e) for e in
                        client.entries[tile.first_node:tile.first_node + tile.width]) \
            if tile.level == 0 else exchange.response_body
        if exchange.response_body != want:
            t.fail(f"the full tile {tile.path()} changed", expected=want.hex()[:128],
                   actual=describe(exchange), exchange=exchange)


# --- consistency over time and between clients ------------------------------------------------

@check("hashchain/log/consistent-with-earlier", requirements=("HC-9", "HC-10", "HC-37"),
       needs=NEEDS)
def consistent_with_earlier(t: Probe) -> None:
    """The checkpoint the runner verified first in this run, and one just before a new
    UID, are each extended by the current checkpoint: the consistency proofs verify and
    the new entries hash into the new root (else a fork proof is printed)."""
    p, client, _ = synced(t)
    held = client.state
    create(t, "cons")
    for state in (t.session.cache.get(FIRST_STATE, held), held):
        Client(t, p, state=state).sync()


@check("hashchain/log/no-split-view", requirements=("HC-10", "HC-9", "HC-23"), needs=NEEDS)
def no_split_view(t: Probe) -> None:
    """A second client (another User-Agent, its own connections) is shown the same log:
    at one size the same root, and each client's checkpoint extends the other's."""
    p, first, _ = synced(t)
    create(t, "split")
    mine = Client(t, p, state=first.state)
    other = Client(t, p, headers=OTHER_CLIENT)
    a, b = mine.sync(), other.sync()
    expect_spec(t, "the two clients were shown checkpoints that cannot both be true", None,
                lambda: compare_views(mine, other, a, b))


def compare_views(mine: Client, other: Client, a: note.Checkpoint,
                  b: note.Checkpoint) -> None:
    """Each view verified on its own; the smaller must be a prefix of the larger."""
    small, large = (mine, other) if a.size <= b.size else (other, mine)
    checker = hcc.LogFollower(origin=small.p.origin, log_keys=[small.p.log_key],
                              state=small.state)
    checker.check_checkpoint(large.note)
    needed = checker.consistency_needed()
    if needed is not None:
        size1, size2 = needed
        tree = merkle.MerkleTree()
        for entry in large.entries[:size2]:
            tree.append(entry)
        checker.check_consistency(size1=size1, size2=size2, root1=tree.root(size1),
                                  proof=tree.consistency_proof(size1, size2))


# --- proofs ----------------------------------------------------------------------------------

def sample_sizes(size: int) -> list[int]:
    return sorted({1, 2, 3, max(1, size // 2), max(1, size - 1), size})


@check("hashchain/proofs/inclusion", requirements=("HC-36", "HC-46"), needs=NEEDS)
def inclusion_proofs(t: Probe) -> None:
    """Inclusion proofs served for first, middle and last entries in trees of several
    sizes verify against the roots the runner computed from the entries."""
    _, client, checkpoint = synced_with_entries(t)
    tree = merkle.MerkleTree()
    for entry in client.entries:
        tree.append(entry)
    for size in sample_sizes(checkpoint.size):
        for index in sorted({0, size // 2, size - 1}):
            exchange, body = get_json(t, f"{PREFIX}/proof/inclusion?index={index}&size={size}",
                                      what=f"GET the inclusion proof of {index} in {size}")
            wire = expect_spec(t, "the inclusion proof does not decode", exchange,
                               lambda b=body: tiles.parse_inclusion(b))
            if (wire.index, wire.size) != (index, size):
                t.fail("the inclusion proof is for another index or size",
                       expected=f"{index} in {size}", actual=describe(exchange),
                       exchange=exchange)
            expect_spec(t, f"the inclusion proof of entry {index} in the tree of {size} does "
                        "not verify", exchange,
                        lambda w=wire, i=index, s=size: merkle.verify_inclusion(
                            index=i, size=s, leaf=tree.node(0, i), proof=w.proof,
                            root=tree.root(s)))


@check("hashchain/proofs/consistency", requirements=("HC-37", "HC-46"), needs=NEEDS)
def consistency_proofs(t: Probe) -> None:
    """Consistency proofs served between sizes far apart verify against the roots the
    runner computed, and name the tree's root at the first size."""
    _, client, checkpoint = synced_with_entries(t)
    tree = merkle.MerkleTree()
    for entry in client.entries:
        tree.append(entry)
    size = checkpoint.size
    for size1, size2 in sorted({(1, size), (2, size), (3, size), (1, size - 1),
                                (max(1, size // 2 - 1), size), (size, size)}):
        exchange, body = get_json(t, f"{PREFIX}/proof/consistency?size1={size1}&size2={size2}",
                                  what=f"GET the consistency proof {size1} -> {size2}")
        wire = expect_spec(t, "the consistency proof does not decode", exchange,
                           lambda b=body: tiles.parse_consistency(b))
        if wire.root1 != tree.root(size1):
            t.fail(f"the consistency answer names another root at {size1}",
                   expected=tree.root(size1).hex(), actual=wire.root1.hex(), exchange=exchange)
        expect_spec(t, f"the consistency proof {size1} -> {size2} does not verify", exchange,
                    lambda w=wire, a=size1, b=size2: merkle.verify_consistency(
                        size1=a, size2=b, root1=tree.root(a), root2=tree.root(b),
                        proof=w.proof))


@check("hashchain/proofs/bad-parameters", requirements=("HC-46", "API-6", "API-19"),
       needs=NEEDS)
def proof_parameters(t: Probe) -> None:
    """An index not below the size, a size 0, a first size above the second, a value that
    is not a decimal in 0..2^63-1 or a parameter given twice is 400; a size beyond the
    tree (up to 2^63-1) is 404; equal sizes are an empty consistency proof."""
    _, _, checkpoint = synced(t)
    n, top = checkpoint.size, merkle.MAX_SIZE
    for query in (f"inclusion?index={n}&size={n}", "inclusion?index=0&size=0",
                  "inclusion?index=-1&size=1", "inclusion?index=01&size=2",
                  f"inclusion?index=0&size={top + 1}", "inclusion?index=0&index=0&size=1",
                  "consistency?size1=0&size2=1", f"consistency?size1={n}&size2=1",
                  "consistency?size1=1", "consistency?size1=1&size2=1e3",
                  f"consistency?size1=1&size2={n}&size2={n}"):
        t.expect_rejected(t.request("GET", f"{PREFIX}/proof/{query}"), 400,
                          what=f"GET proof/{query}")
    for query in (f"inclusion?index=0&size={n + 100}", f"consistency?size1=1&size2={n + 100}",
                  f"inclusion?index=0&size={top}"):
        t.expect_rejected(t.request("GET", f"{PREFIX}/proof/{query}"), 404,
                          what=f"GET proof/{query}")
    exchange, body = get_json(t, f"{PREFIX}/proof/consistency?size1={n}&size2={n}",
                              what="GET a consistency proof between equal sizes")
    wire = expect_spec(t, "the consistency proof does not decode", exchange,
                       lambda: tiles.parse_consistency(body))
    if wire.proof or wire.root1 != checkpoint.root_hash:
        t.fail("the consistency proof between equal sizes is not empty with the root at "
               "that size", expected=f"[] and {checkpoint.root_hash.hex()}",
               actual=f"{len(wire.proof)} hashes and {wire.root1.hex()}", exchange=exchange)


@check("hashchain/limits/oversized-bodies", requirements=("API-5",), needs=NEEDS)
def oversized_bodies(t: Probe) -> None:
    """Every hashchain route, reads included, refuses a body of max_body_bytes + 1 with
    413."""
    limit = t.session.max_body_bytes
    if limit is None:
        raise CheckSkipped("the capabilities advertise no limits.max_body_bytes")
    p = params(t)
    someone = person(t, p, "big").identity
    body = b" " * (limit + 1)
    for method, path in (("GET", CHECKPOINT), ("GET", f"{PREFIX}/tile/0/000.p/1"),
                         ("GET", f"{PREFIX}/proof/inclusion?index=0&size=1"),
                         ("GET", f"{PREFIX}/proof/consistency?size1=1&size2=1"),
                         ("GET", f"{UIDS}/{'A' * 43}"), ("GET", identity_path(someone)),
                         ("POST", identity_path(someone, "/keyinits/fetch"))):
        t.expect_rejected(t.request(method, path, body=body), 413,
                          what=f"{method} {path} with a body of {limit + 1} bytes")


# --- growth -----------------------------------------------------------------------------------

@check("hashchain/growth/one-entry-per-uid", requirements=("HC-21", "HC-22"), needs=NEEDS)
def grows_with_uid(t: Probe) -> None:
    """Creating a UID appends exactly one entry, at the index the reply names, holding
    the reply's bytes."""
    p, client, before = synced(t)
    uid = make_uid(person(t, p, "grow"), before)
    reply = checked_reply(t, p, post_uid(t, uid), uid, 201)
    after = client.sync()
    if after.size != before.size + 1 or reply.index != before.size:
        t.fail("the log did not grow by exactly the reply's entry",
               expected=f"size {before.size + 1}, reply index {before.size}",
               actual=f"size {after.size}, reply index {reply.index}")
    if client.entries[reply.index] != reply.entry:
        t.fail("the entry in the log differs from the reply's entry",
               expected=reply.entry.hex(), actual=client.entries[reply.index].hex())


@check("hashchain/growth/one-entry-per-publication", requirements=("HC-29",),
       needs=(*NEEDS, "keypair-publication"))
def grows_with_publication(t: Probe) -> None:
    """Every keypair publication appends one type 0x02 entry that names the user and
    application and seals the hash of the published public view."""
    _p, client, before = synced(t)
    user = t.user("hc-pub")
    sealed = t.publish(user, "hc-app", 1)
    after = client.sync()
    if after.size != before.size + 1:
        t.fail("a keypair publication did not add exactly one entry",
               expected=f"size {before.size + 1}", actual=f"size {after.size}")
    record = sealed.record
    record_hash = hu.publication_record_hash(
        user.user_id, "hc-app", 1, b64url_decode(record["public_keys"]["x25519"]),
        b64url_decode(record["public_keys"]["ed25519"]),
        b64url_decode(record["binding_signature"]))
    expect_spec(t, "the new entry does not record this publication", None,
                lambda: hu.check_entry_for(client.entries[before.size],
                                           subject=hu.publication_subject(user.user_id,
                                                                          "hc-app"),
                                           record_hash=record_hash,
                                           entry_type=hc.TYPE_PUBLICATION))


@check("hashchain/growth/concurrent-writers", requirements=("HC-22", "HC-5"), needs=NEEDS)
def concurrent_writers(t: Probe) -> None:
    """16 concurrent UID creations get 16 distinct consecutive indexes, each reply
    proves its entry, and the log still verifies: no fork, no gap."""
    p, client, before = synced(t)
    uids = [make_uid(person(t, p, f"par{i}"), before) for i in range(CONCURRENT_WRITERS)]
    with ThreadPoolExecutor(max_workers=CONCURRENT_WRITERS) as pool:
        exchanges = list(pool.map(lambda u: post_uid(t, u), uids))
    indexes = sorted(checked_reply(t, p, e, u, 201).index
                     for e, u in zip(exchanges, uids, strict=True))
    after = client.sync()
    expected = list(range(before.size, before.size + CONCURRENT_WRITERS))
    if indexes != expected or after.size != expected[-1] + 1:
        t.fail("concurrent creations did not get consecutive distinct indexes",
               expected=f"indexes {expected[0]}..{expected[-1]}, size {expected[-1] + 1}",
               actual=f"indexes {indexes}, size {after.size}")


# --- witnesses -----------------------------------------------------------------------------

@check("hashchain/witness/cosigned-by-runner",
       requirements=("HC-43", "HC-40", "HC-41", "HC-39"),
       needs=NEEDS)
def witness_cosigned(t: Probe) -> None:
    """The log submits its checkpoints to the runner's witness (when its capabilities
    list it): after a new UID, the reply's checkpoint and the served one carry the
    runner's cosignature over a size that includes the UID, and every submission the
    runner received was well formed and consistent (never answered 400, 403 or 422)."""
    p = params(t)
    if not p.runner_witnessed:
        raise CheckSkipped("the target does not list the runner's witness "
                           f"({runner_witness_verifier().vkey}) in capabilities.hashchain."
                           "witnesses")
    witness = t.session.accounts.witness
    _, client, _, _, reply = create(t, "wit", policy=witness_policy(p))
    data, exchange = client.fetch_checkpoint()
    served = expect_spec(t, "the served checkpoint lacks a recent cosignature of the "
                         "runner's witness", exchange,
                         lambda: note.verify_checkpoint(data, origin=p.origin,
                                                        log_keys=[p.verifier],
                                                        policy=witness_policy(p),
                                                        now=int(time.time())))
    if served.checkpoint.size <= reply.index:
        t.fail("the served checkpoint does not include the new UID", expected=f"size > "
               f"{reply.index}", actual=f"size {served.checkpoint.size}", exchange=exchange)
    bad = [s for s in witness.submissions() if s.origin in (p.origin, None)
           and s.status not in (200, 409)]
    if bad:
        t.fail(f"the log sent {len(bad)} submission(s) the witness refused",
               expected="200 or 409 answers only",
               actual="; ".join(f"{s.status} ({s.reason})" for s in bad[:3]))
    state = witness.state(p.origin)
    if state is None or state.size < served.checkpoint.size:
        t.fail("the witness's state is behind the served checkpoint",
               expected=f"size {served.checkpoint.size}",
               actual="none" if state is None else f"size {state.size}")
    mine = [s for s in witness.submissions() if s.origin == p.origin]
    first = next((i for i, s in enumerate(mine) if s.status == 200), len(mine))
    late = [s for s in mine[first:] if s.status == 409]
    if late:
        t.fail(f"after its first cosignature the log still submitted {len(late)} time(s) "
               "from a size the witness had not cosigned last (409): it does not keep the "
               "witness's size (HC-43)", expected="old size = the last cosigned size",
               actual=", ".join(f"old {s.old_size}" for s in late[:5]))


@check("hashchain/witness/bad-cosignature-dropped", requirements=("HC-43", "HC-39"),
       needs=NEEDS)
def witness_bad_cosignature(t: Probe) -> None:
    """The runner's witness answers one submission after another with a spoiled
    cosignature line (a bad signature, no final newline, a hyphen for the em dash, an
    extra field, non-canonical base64, a timestamp above 2^63 - 1): the log drops each, so
    neither the reply nor the served checkpoint carries a line of the runner's key that
    fails to parse or verify. A cosignature with timestamp 2^63 - 1 is valid: the log keeps
    it. The next checkpoint is cosigned again."""
    p = params(t)
    if not p.runner_witnessed:
        raise CheckSkipped("the target does not list the runner's witness in "
                           "capabilities.hashchain.witnesses")
    witness = t.session.accounts.witness
    for kind in SABOTAGE:
        witness.sabotage(kind)
        try:
            _, client, _, _, reply = create(t, "badcos")
        finally:
            witness.sabotage(None)
        kept = runner_lines(t, reply.proof.checkpoint, None,
                            f"the reply's checkpoint ({kind})")
        data, exchange = client.fetch_checkpoint()
        runner_lines(t, data, exchange, f"the served checkpoint ({kind})")
        if kind == "timestamp-max" and kept != 1:
            t.fail("the log dropped a valid cosignature whose timestamp is 2^63 - 1 (HC-39)",
                   expected="the runner's cosignature in the reply's checkpoint",
                   actual=f"{kept} line(s) of the runner's key")
    create(t, "badcos2", policy=witness_policy(p))  # cosigned again


def runner_lines(t: Probe, data: bytes, exchange: Exchange | None, what: str) -> int:
    """How many lines of the runner witness's key the checkpoint note `data` carries;
    fails the check if one of them does not verify (HC-43)."""
    runner = runner_witness_verifier()
    parsed = expect_spec(t, f"{what} is not a well-formed note (a spoiled witness line "
                         "was kept?)", exchange, lambda: note.parse_note(data))
    lines = [line for line in parsed.signatures
             if line.name == runner.name and line.key_id == runner.key_id]
    for line in lines:
        expect_spec(t, f"{what} carries a cosignature of the runner's witness that "
                    "does not verify (HC-43: keep only cosignatures that verify)",
                    exchange, lambda ln=line: note.verify_note(
                        note.Note(parsed.text, (ln,)), [runner]))
    return len(lines)


@check("hashchain/witness/malformed-answer-ignored", requirements=("HC-43", "HC-38", "HC-40"),
       needs=NEEDS)
def witness_malformed_answer(t: Probe) -> None:
    """The runner's witness answers one submission after another with a 200 that holds
    its valid cosignature line but is not well-formed signature lines as a whole: with a
    line of another key whose name holds a '+' or a control character, whose base64 is
    not base64 or holds only a 4-byte key ID, a byte that is not UTF-8, a last line
    without its newline, MAX_NOTE_LEN + 1 bytes; then with lines of other keys only, and
    with a 409 whose size is 2^63. The log takes each as no answer (HC-43): the UID is
    still created, and neither the reply's nor the served checkpoint carries the runner's
    cosignature. An answer of exactly MAX_NOTE_LEN bytes is well formed: its cosignature
    is kept. The next checkpoint is cosigned again (no bad size was recorded)."""
    p = params(t)
    if not p.runner_witnessed:
        raise CheckSkipped("the target does not list the runner's witness in "
                           "capabilities.hashchain.witnesses")
    witness = t.session.accounts.witness
    for kind in MALFORMED_ANSWERS:
        witness.sabotage(kind)
        try:
            _, client, _, _, reply = create(t, "malwit")
        finally:
            witness.sabotage(None)
        want = 1 if kind in KEPT else 0
        kept = runner_lines(t, reply.proof.checkpoint, None, f"the reply's checkpoint ({kind})")
        data, exchange = client.fetch_checkpoint()
        served = runner_lines(t, data, exchange, f"the served checkpoint ({kind})")
        if (kept, served) != (want, want):
            t.fail(f"after a witness answer {kind.replace('-', ' ')}, the log "
                   f"{'dropped' if want else 'kept'} the runner's cosignature (HC-43: "
                   + ("the answer is well-formed signature lines)" if want else
                      "an answer that is not well-formed signature lines is no answer)"),
                   expected=f"{want} line(s) of the runner's key in the reply's and the "
                   "served checkpoint", actual=f"{kept} and {served}", exchange=exchange)
    create(t, "malwit2", policy=witness_policy(p))  # cosigned again



@check("hashchain/witness/size-learned-from-409", requirements=("HC-43",), needs=NEEDS)
def witness_size_learned(t: Probe) -> None:
    """A witness may have cosigned a checkpoint although the log never got a usable
    answer (a lost or garbled reply): the runner's witness spoils its answer to one
    submission, then takes that same submission again, so it is ahead of the size the log
    knows. The log's next round starts from its old size and gets a 409 naming the
    witness's size; the witness spoils its answer to the retry from that size too. The log
    must keep the size the 409 named (HC-43: submit from the size the witness cosigned
    last, learned from a 409): its next round starts from it and is cosigned at once."""
    p = params(t)
    if not p.runner_witnessed:
        raise CheckSkipped("the target does not list the runner's witness in "
                           "capabilities.hashchain.witnesses")
    witness = t.session.accounts.witness

    def round_spoiled(label: str) -> None:
        witness.sabotage("bad-signature")
        try:
            create(t, label)
        finally:
            witness.sabotage(None)

    def mine(start: int) -> list[Submission]:
        return [s for s in witness.submissions()[start:] if s.origin == p.origin]

    create(t, "learn1", policy=witness_policy(p))  # the log and its witness agree
    start = len(witness.submissions())
    round_spoiled("learn2")
    spoiled = [s for s in mine(start) if s.reason.startswith("sabotaged")]
    if not spoiled:
        t.fail("the log did not submit its new checkpoint to the runner's witness (HC-43)",
               expected="a submission after a new UID",
               actual=", ".join(f"{s.status} old {s.old_size}" for s in mine(start)) or "none")
    again = witness.add_checkpoint(spoiled[-1].body)  # as if a retry had reached it
    state = witness.state(p.origin)
    if again.status != 200 or state is None or state.size != spoiled[-1].size:
        raise CheckSkipped("the runner's witness could not take the log's submission again "
                           f"({again.status})")
    ahead = state.size
    start = len(witness.submissions())
    round_spoiled("learn3")
    told = [s for s in mine(start) if s.status == 409]
    if not told:
        t.fail("after its witness cosigned a size it never heard of, the log's next round "
               "did not meet a 409 (it submitted from a size it had no cosignature for?)",
               expected="a 409 naming the witness's size, then a retry from it",
               actual=", ".join(f"{s.status} old {s.old_size}" for s in mine(start)))
    start = len(witness.submissions())
    create(t, "learn4", policy=witness_policy(p))
    last = mine(start)
    if not last or last[0].status != 200 or last[0].old_size != ahead:
        t.fail("the log did not keep the size its witness named in a 409: its next round "
               "started from a stale size again (HC-43)",
               expected=f"the first submission from old size {ahead}, cosigned (200)",
               actual=", ".join(f"{s.status} old {s.old_size}" for s in last) or "none")

# The UID and KeyInit checks run after these.
from keyflows.conformance.checks import hashchain_uid  # noqa: E402, F401
