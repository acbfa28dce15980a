"""Deliberately broken hashchain servers: the conformance runner must catch every one.

Each variant is the real reference server with one fault monkeypatched into the
hashchain store or routes, where a real bug would sit. Each names the checks that must
fail because of it (others may fail too).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

Patch = Callable[[pytest.MonkeyPatch], None]


@dataclass(frozen=True)
class HashchainVariant:
    name: str
    fault: str
    must_fail: tuple[str, ...]
    patch: Patch


def _flip(data: bytes, index: int) -> bytes:
    out = bytearray(data)
    out[index] ^= 0x01
    return bytes(out)


def forks_chain(monkeypatch: pytest.MonkeyPatch) -> None:
    """Shows small chunks a different history: entry 1 altered, every later entry re-linked
    and the head re-signed over the forked chain (a validly signed second history)."""
    from keyflows.reference.hashchain_store import HashchainStore
    from keyflows.spec import hashchain_v1chain as hc

    original = HashchainStore.entries

    def entries(self: HashchainStore, start: int, end: int, now: int) -> Any:
        found = original(self, start, end, now)
        if found is None or end - start >= 3 or end >= found[1].position:
            return found  # big chunks, and chunks up to the head, show the real history
        _, head = found
        everything = original(self, 0, head.position, now)
        assert everything is not None
        chain = list(everything[0])
        if len(chain) < 2:
            return found
        chain[1] = _flip(chain[1], 5)
        for i in range(2, len(chain)):
            chain[i] = chain[i][:hc.PREV_OFFSET] + hc.entry_hash(chain[i - 1])
        forked_head = self._sign_head(head.position, hc.entry_hash(chain[head.position]), now)
        return chain[start:end + 1], forked_head

    monkeypatch.setattr(HashchainStore, "entries", entries)


def drops_an_entry(monkeypatch: pytest.MonkeyPatch) -> None:
    """Leaves entry 2 out of every chunk that should hold it (a gap)."""
    from keyflows.reference.hashchain_store import HashchainStore

    original = HashchainStore.entries

    def entries(self: HashchainStore, start: int, end: int, now: int) -> Any:
        found = original(self, start, end, now)
        if found is None or not start <= 2 <= end:
            return found
        rows, head = found
        return [row for i, row in enumerate(rows) if start + i != 2], head

    monkeypatch.setattr(HashchainStore, "entries", entries)


def reserves_keyinits(monkeypatch: pytest.MonkeyPatch) -> None:
    """Hands out a KeyInit without marking it served: the next fetch gets it again."""
    import keyflows.reference.hashchain_store as store

    monkeypatch.setattr(store, "SERVED", store.PENDING)


def signs_mismatched_head(monkeypatch: pytest.MonkeyPatch) -> None:
    """Signs heads over a hash that is not the chain's (validly signed, wrong content)."""
    from keyflows.reference.hashchain_store import HashchainStore
    from keyflows.spec import primitives

    original = HashchainStore._sign_head

    def sign(self: HashchainStore, position: int, digest: bytes, now: int) -> Any:
        return original(self, position, primitives.sha256(digest), now)

    monkeypatch.setattr(HashchainStore, "_sign_head", sign)


def accepts_one_bad_signature(monkeypatch: pytest.MonkeyPatch) -> None:
    """Checks a creation's SIGKEY signature but never the SIGESCROW one."""
    import keyflows.reference.hashchain as routes
    from keyflows.spec import hashchain_v1chain as hc
    from keyflows.spec import primitives

    def verify(uid: hc.Uid, *, now: int, domains: Any = None) -> bytes:
        c = uid.content
        hc.check_identity(c.identity, domains=domains)
        body = hc.uid_content_bytes(c)
        primitives.ed25519_verify(c.sigkey, hc.uid_signature_message("sigkey", body),
                                  uid.sig_sigkey, requirement="HC-16")
        hc.check_uid_validity(c, now=now)
        return hc.uid_record_hash(uid)

    monkeypatch.setattr(routes.hc, "verify_uid_create", verify)  # type: ignore[attr-defined]


def forgets_publications(monkeypatch: pytest.MonkeyPatch) -> None:
    """Stores keypair publications without logging them in the chain."""
    from keyflows.reference.hashchain_store import HashchainStore

    monkeypatch.setattr(HashchainStore, "_log_publication", lambda self, *args: None)


def skips_positions(monkeypatch: pytest.MonkeyPatch) -> None:
    """Numbers each new entry two past the head (the chain links, positions skip)."""
    from keyflows.reference.hashchain_store import HashchainStore

    original = HashchainStore._append

    def append(self: HashchainStore, db: Any, entry_type: int, subject: bytes,
               record_hash: bytes) -> tuple[int, bytes]:
        position, entry = original(self, db, entry_type, subject, record_hash)
        db.execute("UPDATE hashchain_entries SET position = ? WHERE position = ?",
                   (position + 1, position))
        return position + 1, entry

    monkeypatch.setattr(HashchainStore, "_append", append)


VARIANTS = (
    HashchainVariant("forks-chain", "serves small chunks from a re-linked, re-signed fork",
                     ("hashchain/chain/chunks-agree",), forks_chain),
    HashchainVariant("drops-an-entry", "leaves entry 2 out of the chunks",
                     ("hashchain/chain/verifies-from-zero", "hashchain/chain/chunks-agree",
                      "hashchain/growth/one-entry-per-uid"), drops_an_entry),
    HashchainVariant("re-serves-keyinit", "hands out KeyInits without consuming them",
                     ("hashchain/keyinit/served-once", "hashchain/keyinit/concurrent-fetch-once",
                      "hashchain/keyinit/signer-and-replay-checked"), reserves_keyinits),
    HashchainVariant("signs-mismatched-head", "signs heads over a hash that is not the chain's",
                     ("hashchain/chain/verifies-from-zero", "hashchain/chain/head-signed",
                      "hashchain/chain/chunks-agree"), signs_mismatched_head),
    HashchainVariant("accepts-one-bad-signature", "never checks the SIGESCROW signature",
                     ("hashchain/uid/bad-escrow-signature-refused",
                      "hashchain/uid/escrow-signature-required"), accepts_one_bad_signature),
    HashchainVariant("forgets-publications", "does not log keypair publications",
                     ("hashchain/growth/one-entry-per-publication",), forgets_publications),
    HashchainVariant("skips-positions", "numbers new entries with a gap",
                     ("hashchain/growth/one-entry-per-uid",
                      "hashchain/growth/concurrent-writers-no-fork"), skips_positions),
)
