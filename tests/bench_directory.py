"""Key directory benchmark (run by `nox -s bench`): a directory of --identities (default
1,000,000) identities, its proofs beside their floors, a history beside the log scan.

Not a pytest module and not a timed test: it prints figures.

Set-up (untimed, printed): the map (hashchain_directory_map) holds --identities leaves:
--lookups real keypair identities (user0000/mail, ...), placed by their ECVRF proofs, one
with three versions (a history), and random positions for the rest (an ECVRF output is
uniformly random, so the map's shape is the same; proving a million positions in plain
Python would take hours). The log (hashchain.TransparencyLog) holds --identities record
entries (random, plus the history identity's own) and the epoch's directory entry; one
witness cosigns its checkpoint.

Then --rounds (default 5) rounds; in each round every measurement below runs once, one
after the other (interleaved, so a burst of load hits ours and the floor alike), and the
printed figure is the median of the rounds, in CPU time of this process (time.process_time:
on a shared machine the wall clock mostly measures the other processes):

1. Proof generation, VRF and map timed apart: the ECVRF proof of a label's position
   (hashchain_directory.prove_position) and the map proof of a position (map.prove).
2. Proof sizes: the VRF proof, the map proof's siblings (beside log2 n), the whole lookup
   answer as JSON.
3. Directory proof verification (VRF proof, value hash, leaf value, map proof up to the
   root: what the directory adds to a lookup) beside its floor, the bare operations it
   needs: one ecvrf.verify over the same alpha and the same SHA-256 calls in a bare loop
   (the node order precomputed). Printed: microseconds per proof, floor time / our time
   (the target is at least 0.7). Also the whole client verification of a lookup answer
   (verify_lookup: with the checkpoint's signatures and the log inclusion proof), and the
   map proof alone (map.verify_membership over --samples random leaves) beside its bare
   SHA-256 calls.
4. Epoch: one epoch of --batch changes applied to the full map (map.apply, the new node
   hashes; the store's own update is not timed) beside the bare SHA-256 calls it makes.
5. History: the client's check of an identity's three versions through the directory
   (verify_history: one lookup and one hash per version) beside the follow-the-log scan a
   client without the directory makes: every one of the log's entries decoded and tested
   for the identity (hashchain step 9, names_subject) and hashed into the tree whose root
   the checkpoint signs.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import random
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from keyflows.spec import ecvrf, primitives
from keyflows.spec import hashchain as hc
from keyflows.spec import hashchain_directory as hd
from keyflows.spec import hashchain_directory_client as hdc
from keyflows.spec import hashchain_directory_map as dmap
from keyflows.spec import hashchain_merkle as merkle
from keyflows.spec import hashchain_note as note
from keyflows.spec import keypair_publication as kp
from keyflows.spec.drbg import Drbg
from keyflows.spec.encoding import labelled_context

TARGET_RATIO = 0.7
ORIGIN = "directory.example.org/log"
WITNESS = "witness.example.org"
NOW = 1_700_000_000
EPOCH = 3
cpu = time.process_time
_sha256 = hashlib.sha256


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} CPUs"


def timed(work: Callable[[], object]) -> float:
    start = cpu()
    work()
    return cpu() - start


# --- set-up -----------------------------------------------------------------------------------

def keypair_views(rnd: Drbg, user_id: str, count: int) -> list[Any]:
    """`count` versions of a keypair (an initial publication, then rotations)."""
    views: list[Any] = []
    previous: kp.PrivateKeys | None = None
    for version in range(1, count + 1):
        private = kp.generate_private_keys(rnd.fork(f"{user_id}/keys/{version}"))
        sealed = kp.seal_record(
            user_id=user_id, client_id="mail", key_version=version, private=private,
            kek=rnd(32), kek_spec=kp.KekSpec(kp.METHOD_APPLICATION_KEY), nonce=rnd(12),
            z=rnd(64), change_type=kp.CHANGE_INITIAL if previous is None else
            kp.CHANGE_ROTATION, previous=previous)
        views.append(kp.public_view(sealed.record))
        previous = private
    return views


@dataclass
class Identity:
    label: hd.Label
    positioned: hd.Positioned
    versions: list[tuple[hd.LeafVersion, Any]]

    @property
    def leaf(self) -> hd.LeafVersion:
        return self.versions[-1][0]


@dataclass
class Directory:
    tree: dmap.MemoryMap
    log: hc.TransparencyLog
    epoch: hd.Epoch
    entry: bytes
    index: int
    proof_text: bytes
    trust: hdc.Trust
    identities: list[Identity]
    subject: bytes          # the history identity's log subject (its UID entries)


def chain(label: hd.Label, values: list[Any]) -> list[tuple[hd.LeafVersion, Any]]:
    out: list[tuple[hd.LeafVersion, Any]] = []
    current: hd.LeafVersion | None = None
    for epoch, value in enumerate(values, start=EPOCH - len(values) + 1):
        current = hd.next_version(current, hd.value_hash_of(label, value), epoch)
        out.append((current, value))
    return out


def build(identities: int, lookups: int) -> Directory:
    rnd = Drbg("bench/directory")
    fast = random.Random(1)
    vrf_sk = rnd(32)
    vrf_key = ecvrf.expand(vrf_sk)
    real: list[Identity] = []
    for i in range(lookups):
        label = hd.keypair_label(f"user{i:04d}", "mail")
        values = keypair_views(rnd, label.names[0], 3 if i == 0 else 1)
        real.append(Identity(label, hd.prove_position(vrf_key, label), chain(label, values)))
    changes = {fast.randbytes(32): fast.randbytes(32) for _ in range(identities - lookups)}
    changes.update({i.positioned.position: i.leaf.leaf_value for i in real})
    start = cpu()
    update = dmap.apply(changes, dmap.MemoryMap())
    built = cpu() - start
    tree = dmap.MemoryMap(sorted(changes), changes,
                          {(depth, prefix): value for depth, prefix, value in update.nodes})
    log = hc.TransparencyLog(origin=ORIGIN, key_seed=rnd(32), nonce0=rnd(16))
    subject = rnd(32)
    mine = {identities // 3, identities // 2, identities - 10}
    for n in range(1, identities):
        if n in mine:
            log.append_record(entry_type=hc.TYPE_UID, subject=subject,
                              record_hash=fast.randbytes(32), nonce=fast.randbytes(16))
        else:
            log.append_raw(bytes([hc.TYPE_UID]) + fast.randbytes(hc.ENTRY_LEN - 1))
    epoch = hd.Epoch(EPOCH, NOW - 60, ecvrf.public_key(vrf_sk), update.root)
    entry = hd.epoch_entry(epoch, rnd(16))
    index = log.append_raw(entry)
    witness_seed = rnd(32)
    cosignature = note.cosign(log.checkpoint().text(), name=WITNESS, seed=witness_seed,
                              timestamp=NOW - 30)
    signed = note.add_signatures(log.signed_checkpoint(), (cosignature,))
    proof_text = note.TlogProof(index=index, proof=tuple(log.inclusion_proof(index, log.size)),
                                checkpoint=signed.to_bytes()).to_bytes()
    witness = note.witness_verifier(WITNESS, primitives.ed25519_public_key(witness_seed))
    trust = hdc.Trust(vrf_public_key=epoch.vrf_public_key, origin=ORIGIN,
                      log_keys=tuple(log.verifiers()),
                      policy=note.WitnessPolicy(witnesses=(witness,), quorum=1, max_age=3600))
    print(f"set-up: map of {len(tree):,} leaves built in {built:.1f} s of CPU "
          f"({len(update.nodes):,} nodes), log of {log.size:,} entries; {load()}")
    return Directory(tree, log, epoch, entry, index, proof_text, trust, real, subject)


def answer(d: Directory, who: Identity) -> dict[str, Any]:
    leaf = who.leaf
    found = hd.FoundLeaf(leaf.version, leaf.epoch, leaf.previous, who.versions[-1][1])
    wire: dict[str, Any] = hd.answer_to_wire(hd.Answer(
        label=who.label, epoch=d.epoch.epoch, published_at=d.epoch.published_at,
        vrf_proof=who.positioned.proof, leaf=found,
        map_proof=d.tree.prove(who.positioned.position), log_entry=d.entry,
        log_proof=d.proof_text))
    return wire


def history(d: Directory, who: Identity) -> dict[str, Any]:
    return {**answer(d, who), "versions": [{"version": leaf.version, "epoch": leaf.epoch,
                                            "value": value} for leaf, value in who.versions]}


# --- the floors -------------------------------------------------------------------------------

def path_order(position: bytes, proof: dmap.MapProof) -> list[bool]:
    """For each sibling, deepest first: is the running hash the left child?"""
    return [dmap.bit(position, proof.depth - 1 - i) == 0 for i in range(proof.depth)]


LP32 = (32).to_bytes(2, "big")   # a 32-byte field's length prefix in ctx(...)


def floor_directory(public: bytes, alpha: bytes, pi: bytes, value_ctx: bytes,
                    leaf_head: bytes, previous: bytes, position: bytes,
                    siblings: tuple[bytes, ...], left: list[bool]) -> bytes:
    """The bare operations of a directory proof check: one ECVRF verification, the value
    hash, the leaf value, the leaf hash and a node hash per sibling, over the same bytes."""
    ecvrf.verify(public, pi, alpha)
    sha = _sha256
    value_hash = sha(value_ctx).digest()
    leaf_value = sha(leaf_head + LP32 + value_hash + LP32 + previous).digest()
    current = sha(b"\x00" + position + leaf_value).digest()
    for sibling, is_left in zip(siblings, left, strict=True):
        current = sha(b"\x01" + current + sibling if is_left
                      else b"\x01" + sibling + current).digest()
    return current


def ours_directory(public: bytes, who: Identity, value_bytes: bytes, proof: dmap.MapProof,
                   root: bytes) -> bytes:
    """The directory's part of verify_lookup: the position from the VRF proof, the value
    hash of the value's bytes (checking the value itself is keypair-publication step 8,
    not the directory's), the leaf value, the map proof up to the root."""
    position = hd.verify_position(public, who.label, who.positioned.proof)
    leaf = who.leaf
    value_hash = hd.value_hash(who.label.kind, value_bytes)
    leaf_value = hd.leaf_value(leaf.version, leaf.epoch, value_hash, leaf.previous)
    dmap.verify_membership(position, leaf_value, proof, root)
    return position


def floor_map(position: bytes, leaf_value: bytes, siblings: tuple[bytes, ...],
              left: list[bool]) -> bytes:
    """The bare SHA-256 calls of a map proof check: the leaf hash, a node hash a sibling."""
    sha = _sha256
    current = sha(b"\x00" + position + leaf_value).digest()
    for sibling, is_left in zip(siblings, left, strict=True):
        current = sha(b"\x01" + current + sibling if is_left
                      else b"\x01" + sibling + current).digest()
    return current


def verify_maps(proofs: list[tuple[bytes, bytes, dmap.MapProof]], root: bytes) -> None:
    for position, leaf_value, proof in proofs:
        dmap.verify_membership(position, leaf_value, proof, root)


def bare_hashes(count: int) -> None:
    block = bytes(65)
    for _ in range(count):
        _sha256(block).digest()


def scan_log(entries: list[bytes], subject: bytes, root: bytes) -> list[int]:
    """Following the log without the directory: every entry decoded and tested for the
    subject (hashchain step 9), and hashed into the tree the checkpoint signs."""
    tree = merkle.MerkleTree()
    found: list[int] = []
    for index, data in enumerate(entries):
        if hc.names_subject(hc.decode_entry(data), subject):
            found.append(index)
        tree.append(data)
    if tree.root(len(entries)) != root:
        raise AssertionError("the scan does not reach the checkpoint's root")
    return found


# --- the rounds -------------------------------------------------------------------------------

def run(d: Directory, rounds: int, batch: int, samples: int) -> None:
    public = d.epoch.vrf_public_key
    root = d.tree.root
    fast = random.Random(2)
    sample = fast.sample(d.tree.positions, samples)
    vrf_key = ecvrf.expand(Drbg("bench/directory")(32))   # as the server keeps it
    ids = d.identities
    answers = [answer(d, who) for who in ids]
    proofs = [d.tree.prove(who.positioned.position) for who in ids]
    values = [who.versions[-1][1] for who in ids]
    value_bytes = [hd.value_bytes(who.label, v) for who, v in zip(ids, values, strict=True)]
    floor_args = []
    for who, proof, vb in zip(ids, proofs, value_bytes, strict=True):
        position, leaf = who.positioned.position, who.leaf
        value_ctx = labelled_context("directory-value", b"keypair", vb)
        leaf_head = labelled_context("directory-leaf", leaf.version.to_bytes(8, "big"),
                                     leaf.epoch.to_bytes(8, "big"))
        floor_args.append((public, hd.vrf_input(who.label), who.positioned.proof, value_ctx,
                           leaf_head, leaf.previous, position, proof.siblings,
                           path_order(position, proof)))
    for args in floor_args:   # the floor does the same work: it reaches the same root
        assert floor_directory(*args) == root
    map_proofs = [d.tree.prove(p) for p in sample]
    map_ours = [(p, d.tree.values[p], q) for p, q in zip(sample, map_proofs, strict=True)]
    map_floor = [(p, v, q.siblings, path_order(p, q)) for p, v, q in map_ours]
    assert all(floor_map(*a) == root for a in map_floor)
    history_who = ids[0]
    history_answer = history(d, history_who)
    entries = d.log.entries
    checkpoint_root = d.log.tree.root(d.log.size)
    figures: dict[str, list[float]] = {}

    def record(name: str, seconds: float) -> None:
        figures.setdefault(name, []).append(seconds)

    for n in range(rounds):
        # 1. proof generation, VRF and map apart
        record("vrf_prove", timed(lambda: [hd.prove_position(vrf_key, w.label)
                                           for w in ids]) / len(ids))
        record("map_prove", timed(lambda: [d.tree.prove(p) for p in sample]) / len(sample))
        # 3. directory proof verification beside its floor; the whole lookup
        record("dir_ours", timed(lambda: [ours_directory(public, w, b, p, root)
                                          for w, b, p
                                          in zip(ids, value_bytes, proofs, strict=True)])
               / len(ids))
        record("dir_floor", timed(lambda: [floor_directory(*a) for a in floor_args]) / len(ids))
        record("lookup", timed(lambda: [hdc.verify_lookup(a, label=w.label, trust=d.trust,
                                                          now=NOW) for a, w
                                        in zip(answers, ids, strict=True)]) / len(ids))
        record("map_ours", timed(lambda: verify_maps(map_ours, root)) / len(sample))
        record("map_floor", timed(lambda: [floor_map(*a) for a in map_floor]) / len(sample))
        # 4. one epoch of changes to the full map
        changes = {fast.randbytes(32): fast.randbytes(32) for _ in range(batch // 2)}
        changes.update({p: fast.randbytes(32) for p in fast.sample(d.tree.positions,
                                                                   batch - len(changes))})
        updates: list[dmap.MapUpdate] = []

        def epoch(c: dict[bytes, bytes] = changes, u: list[dmap.MapUpdate] = updates) -> None:
            u.append(dmap.apply(c, d.tree))
        record("epoch", timed(epoch))
        count = len(updates[0].nodes) + len(changes)
        record("epoch_floor", timed(lambda: bare_hashes(count)))  # noqa: B023 (called now)
        # 5. a history through the directory beside the follow-the-log scan
        record("history", timed(lambda: hdc.verify_history(
            history_answer, label=history_who.label, trust=d.trust, now=NOW)))
        found: list[int] = []

        def scan(f: list[int] = found) -> None:
            f.extend(scan_log(entries, d.subject, checkpoint_root))
        record("scan", timed(scan))
        assert len(found) == 3, found
        print(f"  round {n + 1}/{rounds} done; {load()}", flush=True)

    med = {name: statistics.median(values) for name, values in figures.items()}
    depth = statistics.mean(p.depth for p in (d.tree.prove(s) for s in sample))
    size = len(json.dumps(answers[1], separators=(",", ":")))
    hsize = len(json.dumps(history_answer, separators=(",", ":")))
    ratio = med["dir_floor"] / med["dir_ours"]
    n = len(d.tree)
    print(f"\nkey directory of {n:,} identities, medians of {rounds} interleaved rounds "
          f"(CPU time)")
    print(f"  proof generation: VRF proof {med['vrf_prove'] * 1e3:.2f} ms, map proof "
          f"{med['map_prove'] * 1e6:.0f} us")
    print(f"  proof sizes: VRF proof {ecvrf.PROOF_LEN} B, map proof {depth:.1f} siblings "
          f"(log2 n = {math.log2(n):.1f}) = {depth * dmap.HASH_LEN:.0f} B; a keypair lookup "
          f"answer {size:,} B as JSON (its tlog-proof at {d.log.size:,} entries included)")
    print(f"  directory proof verification (VRF + value + leaf + map): "
          f"{med['dir_ours'] * 1e3:.2f} ms; floor (one ecvrf.verify + the bare SHA-256 "
          f"calls) {med['dir_floor'] * 1e3:.2f} ms; floor/ours = {ratio:.2f} "
          f"(target >= {TARGET_RATIO}: {'met' if ratio >= TARGET_RATIO else 'NOT met'})")
    mratio = med["map_floor"] / med["map_ours"]
    print(f"  of which the map proof alone: {med['map_ours'] * 1e6:.0f} us; bare SHA-256 "
          f"calls {med['map_floor'] * 1e6:.0f} us; floor/ours = {mratio:.2f}")
    print(f"  whole lookup verification (with checkpoint, cosignature, log inclusion): "
          f"{med['lookup'] * 1e3:.2f} ms")
    eratio = med["epoch_floor"] / med["epoch"]
    print(f"  epoch of {batch} changes on the full map: {med['epoch'] * 1e3:.0f} ms; bare "
          f"SHA-256 calls {med['epoch_floor'] * 1e3:.0f} ms; floor/ours = {eratio:.2f}")
    print(f"  history of 3 versions through the directory: {med['history'] * 1e3:.1f} ms, "
          f"answer {hsize:,} B; follow-the-log scan of {len(entries):,} entries: "
          f"{med['scan']:.2f} s, {len(entries) * hc.ENTRY_LEN / 1e6:.0f} MB of entries "
          f"({med['scan'] / med['history']:.0f}x the directory's time)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--identities", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch", type=int, default=1000,
                        help="changes per epoch (half new identities, half new versions)")
    parser.add_argument("--lookups", type=int, default=20,
                        help="real identities (VRF-placed keypairs) looked up per round")
    parser.add_argument("--samples", type=int, default=2000,
                        help="map proofs generated per round")
    args = parser.parse_args()
    started = time.perf_counter()
    print(f"key directory benchmark; {load()}")
    directory = build(args.identities, args.lookups)
    run(directory, args.rounds, args.batch, args.samples)
    print(f"  ({time.perf_counter() - started:.0f} s wall in all; {load()})")


if __name__ == "__main__":
    main()
