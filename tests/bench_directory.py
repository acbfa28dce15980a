"""Key directory benchmark (run by `nox -s bench`): the map's cost beside its floor.

Not a pytest module and not a timed test: it prints figures.

The map (keyflows.spec.hashchain_directory_map.MemoryMap) grows to --identities random
positions in epochs of --batch changes. For each size we report:

- apply: changes per second of MemoryMap.apply for one epoch's batch, beside the floor,
  a bare hashlib loop computing the same number of SHA-256 node and leaf hashes over
  65-byte inputs (the least work that yields the new root); the ratio is floor time /
  our time (1.0 = as fast as the bare hashes);
- proof: the mean number of siblings in a membership proof, beside log2(n), and the time
  to verify one (root_from_proof), beside the bare hashes it needs;
- lookup: one whole client verification of a lookup answer from the shipped vectors
  (VRF proof, value, map proof, commitment, Ed25519 checkpoint, inclusion), beside its
  floor, one ECVRF verification alone.

Each figure is the fastest of --repeat runs (a shared machine interrupts some runs).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import time
from pathlib import Path
from typing import Any

from keyflows.spec import ecvrf
from keyflows.spec import hashchain_directory_map as dmap
from keyflows.vectors import hashchain_directory as vectors

ROOT = Path(__file__).resolve().parent.parent


def fastest(repeat: int, work: Any) -> float:
    best = math.inf
    for _ in range(repeat):
        start = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - start)
    return best


def bare_hashes(count: int) -> None:
    block = bytes(65)
    for _ in range(count):
        hashlib.sha256(block).digest()


def bench_map(identities: int, batch: int, repeat: int) -> None:
    rnd = os.urandom
    tree = dmap.MemoryMap()
    print(f"{'leaves':>9} {'apply/s':>10} {'floor/s':>10} {'ratio':>6} "
          f"{'siblings':>8} {'log2 n':>6} {'verify us':>9}")
    checkpoints = {10**k for k in range(3, 8)} | {identities}
    while len(tree) < identities:
        changes = {rnd(32): rnd(32) for _ in range(min(batch, identities - len(tree)))}
        if len(tree) + len(changes) not in checkpoints:
            tree.apply(changes)
            continue
        hashes, ours = 0, math.inf
        for _ in range(repeat):
            trial = tree.copy()  # untimed: each run applies to the same map
            start = time.perf_counter()
            update = trial.apply(changes)
            ours = min(ours, time.perf_counter() - start)
            hashes = len(update.nodes) + len(changes)
        floor = fastest(repeat, lambda n=hashes: bare_hashes(n))
        tree.apply(changes)
        sample = list(changes)[:50]
        proofs = [tree.prove(p) for p in sample]
        mean = sum(p.depth for p in proofs) / len(proofs)
        pairs = list(zip(sample, proofs, strict=True))
        verify = fastest(repeat, lambda pairs=pairs: [dmap.root_from_proof(p, q)
                                                      for p, q in pairs])
        print(f"{len(tree):>9} {len(changes) / max(ours, 1e-9):>10.0f} "
              f"{len(changes) / floor:>10.0f} {floor / max(ours, 1e-9):>6.2f} "
              f"{mean:>8.1f} {math.log2(len(tree)):>6.1f} {verify / len(sample) * 1e6:>9.0f}")


def bench_lookup(repeat: int) -> None:
    data = json.loads((ROOT / "vectors" / "hashchain-directory.json").read_text())
    case = next(c for c in data["cases"] if c["id"] == "hc-dir/verify-lookup/keypair")
    verify = vectors.VERIFIERS[("v1", case["operation"])]
    assert verify(case).agreed
    answer = case["inputs"]["answer"]
    secret = bytes(32)
    proof = ecvrf.prove(secret, b"alpha").pi
    public = ecvrf.public_key(secret)
    ours = fastest(repeat, lambda: verify(case))
    floor = fastest(repeat, lambda: ecvrf.verify(public, proof, b"alpha"))
    size = len(json.dumps(answer, separators=(",", ":")))
    print(f"lookup answer: {size} bytes; client verification {ours * 1000:.1f} ms, "
          f"one ECVRF verification alone {floor * 1000:.1f} ms (ratio {floor / ours:.2f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--identities", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print("key directory: map growth in epochs of", args.batch, "changes")
    bench_map(args.identities, args.batch, args.repeat)
    bench_lookup(args.repeat)


if __name__ == "__main__":
    main()
