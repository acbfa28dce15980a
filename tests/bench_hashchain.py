"""Hashchain benchmark: the transparency log in process and the reference server's durable
appends (run by `nox -s bench`).

Not a pytest module (no test_ prefix) and not a timed test: it prints figures.

1. Appends. --entries (default 10,000,000) generated 129-byte entries are appended to the
   spec's MerkleTree (the server's structure: every perfect-subtree hash kept) in --rounds
   (default 5) rounds; in each round, interleaved, the same batch is also fed to a bare
   loop doing only the SHA-256 calls an append needs (one leaf hash, and one node hash for
   each subtree the append completes). Printed: entries/s per round (median), the ratio
   bare/ours, and the inclusion and consistency proof sizes at sizes up to the largest.
2. Proof verification. On the tree of step 1, --proofs inclusion proofs (random indexes,
   the full size) and as many consistency proofs (random first sizes) are verified by
   verify_inclusion / verify_consistency (RFC 9162 2.1.3.2 and 2.1.4.2, with their checks),
   and, interleaved in each round, by a floor: the bare SHA-256 calls the same proofs need
   (the node hashes, their order precomputed). Printed: microseconds per proof (median of
   the rounds) and floor time / our time (the target is at least 0.7).
3. Durable server appends. The reference server runs as a process on loopback with a
   fresh database; --writers threads create UIDs for --seconds (default 60), each append
   durable (WAL, synchronous=FULL) and answered with a tlog-proof. Printed: appends/s and
   latency percentiles; then the log is followed from entry 0 and must verify. Beside it,
   in the same run, a floor: one SQLite connection committing one 129-byte row per
   transaction with the same durability settings, for the same time.

Parts 1 and 2 measure the CPU time of this process (time.process_time), part 3 the wall
clock. The load average is printed before and after each part: on a shared machine the
figures are only comparable within one run.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

from keyflows.spec import hashchain as hc
from keyflows.spec import hashchain_client as hcc
from keyflows.spec import hashchain_merkle as merkle
from keyflows.spec import hashchain_note as note
from keyflows.spec import hashchain_tiles as tiles
from keyflows.spec import hashchain_uid as hu
from keyflows.spec import primitives

TARGET_RATIO = 0.7
_sha256 = hashlib.sha256
#: Parts 1 and 2 time the CPU this process used, not the wall clock: on a shared machine
#: the wall clock mostly measures the other processes' share of the cores.
cpu = time.process_time


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} CPUs"


# --- 1. appends ------------------------------------------------------------------------------

def bare_appends(leaves_in: list[bytes], start: int, stack: list[bytes]) -> None:
    """The SHA-256 calls of appending these entries: a leaf hash each, a node hash per
    completed subtree (kept on a stack of pending left siblings, as the tree does)."""
    sha, leaf_prefix, node_prefix = _sha256, b"\x00", b"\x01"
    index = start
    for entry in leaves_in:
        value = sha(leaf_prefix + entry).digest()
        i = index
        while i & 1:
            value = sha(node_prefix + stack.pop() + value).digest()
            i >>= 1
        stack.append(value)
        index += 1


def run_appends(total: int, rounds: int) -> merkle.MerkleTree:
    print(f"1. appends: {total:,} entries in {rounds} rounds ({load()})")
    rnd = random.Random(20261206)
    tree = merkle.MerkleTree()
    stack: list[bytes] = []
    ours, bare = [], []
    per_round = total // rounds
    for r in range(rounds):
        batch = [rnd.randbytes(hc.ENTRY_LEN) for _ in range(per_round)]
        start = tree.size
        t0 = cpu()
        for entry in batch:
            tree.append(entry)
        t1 = cpu()
        bare_appends(batch, start, stack)
        t2 = cpu()
        ours.append(per_round / (t1 - t0))
        bare.append(per_round / (t2 - t1))
        print(f"   round {r + 1}: size {tree.size:>11,}  ours {ours[-1]:>9,.0f}/s  "
              f"bare SHA-256 {bare[-1]:>9,.0f}/s")
    med_ours, med_bare = statistics.median(ours), statistics.median(bare)
    print(f"   median: ours {med_ours:,.0f} appends/s, bare {med_bare:,.0f}/s, "
          f"ours/bare {med_ours / med_bare:.2f}  ({load()})")
    for size in sorted({10**k for k in range(1, 8) if 10**k <= tree.size} | {tree.size}):
        inclusion = len(merkle.inclusion_ranges(size // 3, size))
        consistency = len(merkle.consistency_ranges(max(1, size // 3), size))
        print(f"   size {size:>11,}: inclusion proof {inclusion:>2} hashes "
              f"({inclusion * 32} bytes), consistency proof from size/3 {consistency:>2} "
              f"hashes")
    return tree


# --- 2. proof verification -------------------------------------------------------------------

def inclusion_order(index: int, size: int) -> list[bool]:
    """For each proof node: does it go on the left? (RFC 9162 2.1.3.2, bookkeeping only)."""
    out, fn, sn = [], index, size - 1
    while sn:
        if fn & 1 or fn == sn:
            out.append(True)
            while not fn & 1 and fn:
                fn, sn = fn >> 1, sn >> 1
        else:
            out.append(False)
        fn, sn = fn >> 1, sn >> 1
    return out


def floor_inclusion(leaf: bytes, proof: list[bytes], left: list[bool]) -> bytes:
    sha, pre, r = _sha256, b"\x01", leaf
    for p, is_left in zip(proof, left, strict=True):
        r = sha(pre + p + r).digest() if is_left else sha(pre + r + p).digest()
    return r


def consistency_order(size1: int, size2: int) -> list[int]:
    """Per proof node after the first: 2 = hash into both roots, 1 = into the new one."""
    out, fn, sn = [], size1 - 1, size2 - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    while sn:
        if fn & 1 or fn == sn:
            out.append(2)
            while not fn & 1 and fn:
                fn, sn = fn >> 1, sn >> 1
        else:
            out.append(1)
        fn, sn = fn >> 1, sn >> 1
    return out


def floor_consistency(path: list[bytes], order: list[int]) -> tuple[bytes, bytes]:
    sha, pre = _sha256, b"\x01"
    fr = sr = path[0]
    for c, kind in zip(path[1:], order, strict=True):
        if kind == 2:
            fr = sha(pre + c + fr).digest()
            sr = sha(pre + c + sr).digest()
        else:
            sr = sha(pre + sr + c).digest()
    return fr, sr


def run_proofs(tree: merkle.MerkleTree, count: int, rounds: int) -> None:
    size = tree.size
    print(f"2. proof verification at size {size:,}: {count} proofs of each kind, {rounds} "
          f"rounds ({load()})")
    rnd = random.Random(7)
    root = tree.root()
    inc = []
    for _ in range(count):
        i = rnd.randrange(size)
        inc.append((i, tree.node(0, i), tree.inclusion_proof(i), inclusion_order(i, size)))
    con = []
    for _ in range(count):
        m = rnd.randrange(1, size)
        proof = tree.consistency_proof(m, size)
        path = [tree.root(m), *proof] if merkle.is_power_of_two(m) else proof
        con.append((m, tree.root(m), proof, path, consistency_order(m, size)))
    times: dict[str, list[float]] = {"inclusion": [], "inclusion floor": [],
                                     "consistency": [], "consistency floor": []}
    def ours_inclusion() -> None:
        for i, leaf, proof, _ in inc:
            merkle.verify_inclusion(index=i, size=size, leaf=leaf, proof=proof, root=root)

    def floor_inclusions() -> None:
        for _, leaf, proof, left in inc:
            if floor_inclusion(leaf, proof, left) != root:
                raise SystemExit("floor inclusion disagrees")

    def ours_consistency() -> None:
        for m, root1, proof, _, _ in con:
            merkle.verify_consistency(size1=m, size2=size, root1=root1, root2=root,
                                      proof=proof)

    def floor_consistencies() -> None:
        for _, root1, _, path, order in con:
            if floor_consistency(path, order) != (root1, root):
                raise SystemExit("floor consistency disagrees")

    runs = {"inclusion": ours_inclusion, "inclusion floor": floor_inclusions,
            "consistency": ours_consistency, "consistency floor": floor_consistencies}
    for n in range(rounds):
        # interleaved, and in alternating order so neither side always runs on warm caches
        for key in (list(runs) if n % 2 == 0 else list(reversed(runs))):
            t0 = cpu()
            runs[key]()
            times[key].append((cpu() - t0) / count * 1e6)
    for kind in ("inclusion", "consistency"):
        ours, floor = statistics.median(times[kind]), statistics.median(times[f"{kind} floor"])
        verdict = "meets" if floor / ours >= TARGET_RATIO else "misses"
        print(f"   {kind:<11}: ours {ours:6.1f} us/proof, floor {floor:6.1f} us/proof, "
              f"floor/ours {floor / ours:.2f} ({verdict} the {TARGET_RATIO} target)")
    print(f"   ({load()})")


# --- 3. durable server appends -----------------------------------------------------------------

def start_server(db: Path, tmp: Path) -> tuple[subprocess.Popen[bytes], str]:
    ready = tmp / "ready"
    env = dict(os.environ, KEYFLOWS_HASHCHAIN_WITNESSES="")
    process = subprocess.Popen(
        [sys.executable, "-m", "keyflows.reference", "--host", "127.0.0.1", "--port", "0",
         "--db", str(db), "--account-server", "http://127.0.0.1:9", "--ready-file",
         str(ready), "--log-level", "warning", "--rates", "uid-create=1000000/1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    deadline = time.monotonic() + 30
    while not ready.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise SystemExit(f"server did not start: {process.communicate()[1][-500:]!r}")
        time.sleep(0.05)
    return process, ready.read_text().strip()


def make_uid(identity: str, checkpoint: note.Checkpoint) -> hu.Uid:
    sigkey, escrow = os.urandom(32), os.urandom(32)
    now = int(time.time())
    content = hu.UidContent(identity=identity, msg_count=0, not_before=now - 60,
                            not_after=now + 86400, sigkey=primitives.ed25519_public_key(sigkey),
                            sigescrow=primitives.ed25519_public_key(escrow),
                            x25519=primitives.x25519_public_key(os.urandom(32)),
                            last_checkpoint=hu.LastCheckpoint(checkpoint.size,
                                                              checkpoint.root_hash),
                            previous=None)
    return hu.sign_uid(content, sigkey_seed=sigkey, sigescrow_seed=escrow)


def letters(n: int) -> str:
    return str(n).translate(str.maketrans("01", "ab"))


def run_server(seconds: float, writers: int) -> None:
    print(f"3. durable server appends: {writers} writers for {seconds:.0f} s ({load()})")
    with tempfile.TemporaryDirectory(prefix="keyflows-bench-") as name:
        tmp = Path(name)
        process, base = start_server(tmp / "log.sqlite3", tmp)
        latencies: list[float] = []
        errors: list[str] = []
        lock = threading.Lock()
        stop = time.monotonic() + seconds

        def writer(number: int) -> None:
            with httpx.Client(base_url=base, timeout=30) as client:
                text = client.get("/v1/hashchain/checkpoint").content
                checkpoint = note.parse_checkpoint_text(note.parse_note(text).text)
                count = 0
                while time.monotonic() < stop:
                    count += 1
                    uid = make_uid(f"w-{letters(number)}-{letters(count)}@keyflows.test",
                                   checkpoint)
                    t0 = time.perf_counter()
                    answer = client.post("/v1/hashchain/uids", json=hu.uid_to_wire(uid))
                    elapsed = time.perf_counter() - t0
                    if answer.status_code != 201:
                        with lock:
                            errors.append(f"append refused: {answer.text[:200]}")
                        return
                    with lock:
                        latencies.append(elapsed)
                    # the next UID names a recent checkpoint (HC-19 bounds how old it may be)
                    reply = hu.parse_uid_reply(answer.json())
                    checkpoint = note.parse_checkpoint_text(
                        note.parse_note(reply.proof.checkpoint).text)

        try:
            started = time.perf_counter()
            threads = [threading.Thread(target=writer, args=(i,)) for i in range(writers)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            elapsed = time.perf_counter() - started
            if errors:
                raise SystemExit(errors[0])
            size = follow(base)
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)
        ms = sorted(x * 1000 for x in latencies)
        print(f"   {len(ms):,} appends in {elapsed:.1f} s: {len(ms) / elapsed:,.0f} appends/s; "
              f"latency p50 {ms[len(ms) // 2]:.1f} ms, p99 {ms[int(len(ms) * 0.99)]:.1f} ms")
        print(f"   the log of {size:,} entries, followed from entry 0, verifies")
        floor = sqlite_floor(tmp / "floor.sqlite3", seconds)
        print(f"   floor, one connection committing one 129-byte row per transaction "
              f"(WAL, synchronous=FULL): {floor:,.0f} commits/s; server/floor "
              f"{len(ms) / elapsed / floor:.2f}  ({load()})")


def follow(base: str) -> int:
    with httpx.Client(base_url=base, timeout=60) as client:
        caps = client.get("/v1/capabilities").json()["hashchain"]
        key = note.parse_vkey(caps["log_keys"][0])
        follower = hcc.LogFollower(origin=caps["origin"], log_keys=[key.public_key])
        size = follower.check_checkpoint(client.get("/v1/hashchain/checkpoint").content).size
        for n in range(0, (size + tiles.TILE_WIDTH - 1) // tiles.TILE_WIDTH):
            width = min(tiles.TILE_WIDTH, size - n * tiles.TILE_WIDTH)
            bundle = client.get(f"/v1/hashchain/{tiles.Tile(None, n, width).path()}").content
            follower.feed(tiles.parse_entry_bundle(bundle, count=width,
                                                   entry_len=hc.ENTRY_LEN))
        return follower.finish().size


def sqlite_floor(path: Path, seconds: float) -> float:
    db = sqlite3.connect(str(path), isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("CREATE TABLE log (idx INTEGER PRIMARY KEY, entry BLOB NOT NULL)")
    entry, count, stop = os.urandom(hc.ENTRY_LEN), 0, time.monotonic() + seconds
    started = time.perf_counter()
    while time.monotonic() < stop:
        db.execute("BEGIN IMMEDIATE")
        db.execute("INSERT INTO log (idx, entry) VALUES (?, ?)", (count, entry))
        db.execute("COMMIT")
        count += 1
    elapsed = time.perf_counter() - started
    db.close()
    return count / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=10_000_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--proofs", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--writers", type=int, default=8)
    args = parser.parse_args()
    if args.rounds < 5:
        parser.error("--rounds must be at least 5 (medians of interleaved rounds)")
    tree = run_appends(args.entries, args.rounds)
    run_proofs(tree, args.proofs, args.rounds)
    del tree
    run_server(args.seconds, args.writers)


if __name__ == "__main__":
    main()
