"""Hashchain benchmark: client-side verification of a long chain (run by `nox -s bench`).

Not a pytest module (no test_ prefix) and not a timed test: it prints figures.

A chain of --entries entries (default 1,000,000) is generated chunk by chunk: entry 0 is a
real keyserver-key entry, the rest are record entries (types 0x01 and 0x02) with random
fields and correct links. The chain is never held in memory whole, exactly as a client
streams it from the chunked API. For every chunk, interleaved so all three see the same
machine state, we time:

- ours, chunk: ChainVerifier.feed_chunk(chunk bytes) -- the path a client uses for a
  fetched chunk. It splits the bytes itself, checks every type byte, every prev_hash link
  and hashes every entry;
- ours, per entry: ChainVerifier.feed(entry) for each entry (the same checks, one call per
  entry);
- bare hashlib loop: `for e in entries: h = hashlib.sha256(e).digest()` over the chunk
  already split into entries -- the least work that computes the same chain hashes, with no
  check at all.

The ratio is bare time / our time, so 1.0 means "as fast as the bare loop". Each path is
timed --repeat times per chunk (the verifiers on a fresh copy of their state each time, so
every run does the full work) and the fastest run counts: on a shared machine this filters
out the chunks another process interrupted, for all three paths alike. Both verifiers end
by checking a signed head over the whole chain. Peak memory is the process's maximum
resident set size (ru_maxrss): interpreter, libraries, generator and verifiers together.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import random
import resource
import sys
import time
from collections.abc import Iterator

from keyflows.spec import hashchain_v1chain as hc
from keyflows.spec.drbg import Drbg

ORIGIN = "bench.keyflows.example"
NOW = 1_700_000_000
TARGET_RATIO = 0.7
TARGET_PEAK_MB = 100.0


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def generate_chunks(total: int, chunk: int, seed: int, first: bytes,
                    ) -> Iterator[tuple[bytes, list[bytes], bytes]]:
    """Yield (chunk bytes, entries list, last hash); entry 0 is `first`."""
    rnd = random.Random(seed)
    prev = hashlib.sha256(first).digest()
    produced = 1
    pending: list[bytes] = [first]
    while produced < total or pending:
        while produced < total and len(pending) < chunk:
            body = rnd.randbytes(1 + hc.NONCE_LEN + hc.PAYLOAD_LEN)
            entry_type = b"\x02" if body[0] < 16 else b"\x01"
            raw = entry_type + body[1:] + prev
            prev = hashlib.sha256(raw).digest()
            pending.append(raw)
            produced += 1
        yield b"".join(pending), pending, prev
        pending = []


def bare_loop(entries: list[bytes]) -> bytes:
    sha256 = hashlib.sha256
    h = b""
    for e in entries:
        h = sha256(e).digest()
    return h


def per_entry(verifier: hc.ChainVerifier, entries: list[bytes]) -> None:
    feed = verifier.feed
    for e in entries:
        feed(e)


def lookup_rate(n: int) -> float:
    """Entries per second an IdentityScanner tests (one HKDF per record entry)."""
    rnd = Drbg("bench-lookup")
    log = hc.ChainLog(origin=ORIGIN, server_seed=rnd(32), nonce0=rnd(16))
    for i in range(n):
        log.append_record(entry_type=hc.TYPE_UID, subject=f"user{i}@example.org".encode(),
                          record_hash=rnd(32), nonce=rnd(16))
    scanner = hc.IdentityScanner(b"user7@example.org")
    start = time.perf_counter()
    for position, raw in enumerate(log.entries):
        scanner.feed(position, raw)
    elapsed = time.perf_counter() - start
    assert [m.position for m in scanner.matches] == [8]
    return len(log.entries) / elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--chunk", type=int, default=1000,
                        help="entries per chunk (the server's max_chunk)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=3,
                        help="timed runs per chunk and path; the fastest counts")
    parser.add_argument("--lookup-entries", type=int, default=20_000)
    parser.add_argument("--strict", action="store_true",
                        help="exit 1 if a target (ratio >= 0.7, peak < 100 MB) is missed")
    args = parser.parse_args(argv)

    rss_start = peak_rss_mb()
    rnd = Drbg("bench-server")
    seed = rnd(32)
    log = hc.ChainLog(origin=ORIGIN, server_seed=seed, nonce0=rnd(16))
    chunked = hc.ChainVerifier(origin=ORIGIN, pinned_key=log.server_key)
    single = hc.ChainVerifier(origin=ORIGIN, pinned_key=log.server_key)
    t_chunk = t_single = t_bare = 0.0
    last = b""
    clock = time.perf_counter
    for data, entries, chunk_last in generate_chunks(args.entries, args.chunk, args.seed,
                                                     log.entries[0]):
        last = chunk_last
        best_chunk = best_bare = best_single = float("inf")
        for _ in range(args.repeat):
            trial = copy.deepcopy(chunked)
            start = clock()
            trial.feed_chunk(data)
            best_chunk = min(best_chunk, clock() - start)
            start = clock()
            bare_loop(entries)
            best_bare = min(best_bare, clock() - start)
            trial_single = copy.deepcopy(single)
            start = clock()
            per_entry(trial_single, entries)
            best_single = min(best_single, clock() - start)
        chunked, single = trial, trial_single
        t_chunk += best_chunk
        t_bare += best_bare
        t_single += best_single
    head = hc.sign_head(origin=ORIGIN, position=args.entries - 1, head_hash=last,
                        timestamp=NOW, server_seed=seed)
    chunked.check_head(head, now=NOW)
    single.check_head(head, now=NOW)
    peak = peak_rss_mb()
    n = args.entries
    ratio_chunk = t_bare / t_chunk
    ratio_single = t_bare / t_single
    lookups = lookup_rate(args.lookup_entries) if args.lookup_entries else 0.0

    print(f"hashchain verification: {n:,} entries of {hc.ENTRY_LEN} bytes, "
          f"chunks of {args.chunk}, best of {args.repeat} per chunk, "
          f"Python {sys.version.split()[0]}")
    print(f"  {'path':<34}{'seconds':>10}{'entries/s':>14}{'ratio to bare':>15}")
    print(f"  {'ours, feed_chunk (client path)':<34}{t_chunk:>10.3f}{n / t_chunk:>14,.0f}"
          f"{ratio_chunk:>15.2f}")
    print(f"  {'ours, feed per entry':<34}{t_single:>10.3f}{n / t_single:>14,.0f}"
          f"{ratio_single:>15.2f}")
    print(f"  {'bare hashlib loop (no checks)':<34}{t_bare:>10.3f}{n / t_bare:>14,.0f}"
          f"{1.0:>15.2f}")
    print(f"  peak memory (max RSS of the whole process): {peak:.1f} MB "
          f"(at start {rss_start:.1f} MB)")
    print(f"  verifier state after {n:,} entries: position {chunked.position}, "
          f"{len(chunked.key_history)} keyserver key(s), {len(chunked._expected)} pending heads")
    if lookups:
        print(f"  identity lookup (IdentityScanner, one HKDF per entry): {lookups:,.0f} "
              f"entries/s over {args.lookup_entries:,} entries")
    ok_ratio = ratio_chunk >= TARGET_RATIO
    ok_memory = peak < TARGET_PEAK_MB
    print(f"  target ratio >= {TARGET_RATIO} (feed_chunk): {'met' if ok_ratio else 'MISSED'}; "
          f"target peak < {TARGET_PEAK_MB:.0f} MB: {'met' if ok_memory else 'MISSED'}")
    return 0 if (ok_ratio and ok_memory) or not args.strict else 1


if __name__ == "__main__":
    raise SystemExit(main())
