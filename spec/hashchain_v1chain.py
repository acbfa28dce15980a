"""Flow: hashchain (the linear chain this flow had before its Merkle log; being retired).

An append-only chain of fixed-layout entries. Each entry records one event (a UID, a
keypair publication, a keyserver key) without saying in clear who it is about: only a
client that already knows an identity can recognise that identity's entries. The
keyserver signs heads (position + hash); clients verify the chain, or an extension of it
from a trusted head, in constant memory, and track the keyserver's key through it.

Steps (see the hashchain chapter):
  1. Entry layout: 161 bytes, type | nonce | payload | prev_hash (HC-1).
  2. Record entries (types 0x01 UID, 0x02 keypair publication): blinded identity hash,
     sealed record hash, record index (HC-2, HC-3, HC-4).
  3. Linking: prev_hash is the previous entry's hash, zero for entry 0;
     entry_hash = SHA-256(entry) (HC-5).
  4. Keyserver key entries (type 0x03): entry 0 introduces the key, later ones rotate it,
     each signed by the key in force (HC-6, HC-7).
  5. Signed heads (HC-8) and their checks: key in force, chain agreement, truncation
     (HC-9), forks (HC-10), rollback and staleness (HC-11).
  6. Client verification of a whole chain or of an extension from a trusted head, streaming
     in constant memory (HC-12).
  7. Identity lookup (HC-13) over identities in mapped form (HC-14).
  8. UID messages: canonical content (HC-15), both SIGKEY and SIGESCROW sign a creation
     (HC-16), an update chains to the previous UID and is authorised by its keys (HC-17),
     validity (HC-18), last entry (HC-19), one UID per identity (HC-20).
  9. The server appends one entry per accepted UID and signs its reply (HC-21); appends
     are serialised and durable (HC-22); chunks are stable (HC-23); sealed UIDs in the
     repository (HC-24).
 10. KeyInits: signed by SIGKEY (HC-25), accepted for the current SIGKEY only (HC-26),
     served at most once (HC-27), flushed by a signed fresh request (HC-28).
 11. Every keypair publication is logged as a type 0x02 entry (HC-29).
Compat profile mute: keyflows.spec.hashchain_mute (HC-30 .. HC-34).

Everything here is pure: randomness (nonces, seeds) and "now" are parameters.
"""

from __future__ import annotations

import hashlib
import json
import re
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from keyflows.spec import primitives, wire
from keyflows.spec.drbg import RandomSource
from keyflows.spec.encoding import (
    b64url_decode_exact,
    b64url_encode,
    labelled_context,
    u32be,
    u64be,
)
from keyflows.spec.errors import (
    AuthzError,
    BindingError,
    DecodeError,
    ExpiredError,
    LengthError,
    LinkError,
    ParamsError,
    ReplayError,
    SignatureError,
    SpecError,
)
from keyflows.spec.hashchain_mute import map_identity
from keyflows.spec.key_derivation import check_identifier, labelled_hkdf

# --- constants ----------------------------------------------------------------------------

TYPE_UID = 0x01
TYPE_PUBLICATION = 0x02
TYPE_SERVER_KEY = 0x03
RECORD_TYPES = (TYPE_UID, TYPE_PUBLICATION)
ENTRY_TYPES = (TYPE_UID, TYPE_PUBLICATION, TYPE_SERVER_KEY)
TYPE_NAMES = {TYPE_UID: "uid", TYPE_PUBLICATION: "publication", TYPE_SERVER_KEY: "server-key"}

NONCE_LEN = 16
HASH_LEN = 32
SEALED_HASH_LEN = HASH_LEN + primitives.GCM_TAG_LEN
PAYLOAD_LEN = HASH_LEN + SEALED_HASH_LEN + HASH_LEN          # 112
RESERVED_LEN = PAYLOAD_LEN - 32 - primitives.ED25519_SIG_LEN   # 16
ENTRY_LEN = 1 + NONCE_LEN + PAYLOAD_LEN + HASH_LEN            # 161
PREV_OFFSET = ENTRY_LEN - HASH_LEN                            # 129
ZERO_HASH = bytes(HASH_LEN)
ZERO_GCM_NONCE = bytes(primitives.GCM_NONCE_LEN)
MAX_POSITION = 2**63 - 1

MAX_UID_VALIDITY = 366 * 86400          # HC-18
MAX_KEYINIT_LIFETIME = 90 * 86400       # HC-25
FLUSH_WINDOW = 300                      # HC-28
MAX_CLOCK_SKEW = 300                    # HC-11: a head may be this far in the future
DEFAULT_MAX_HEAD_AGE = 3600             # HC-11
DEFAULT_MAX_LAST_ENTRY_LAG = 4096       # HC-19
MAX_PUBLIC_KEYS = 1

ORIGIN = re.compile(r"\A[\x21-\x7e]{1,255}\Z")
DOMAIN_LABEL = re.compile(r"\A[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\Z")

UID_SIG_ROLES = ("sigkey", "sigescrow")
PREVIOUS_ROLES = ("sigkey", "sigescrow")


# --- step 1: layout -------------------------------------------------------------------------

@dataclass(frozen=True)
class Entry:
    """One decoded entry. The payload's meaning depends on the type (steps 2 and 4)."""

    type: int
    nonce: bytes
    payload: bytes
    prev_hash: bytes

    def to_bytes(self) -> bytes:
        return bytes([self.type]) + self.nonce + self.payload + self.prev_hash

    # record entries (types 0x01, 0x02)
    @property
    def hash_id(self) -> bytes:
        return self.payload[:32]

    @property
    def sealed_hash(self) -> bytes:
        return self.payload[32:80]

    @property
    def record_index(self) -> bytes:
        return self.payload[80:112]

    # server-key entries (type 0x03)
    @property
    def server_key(self) -> bytes:
        return self.payload[:32]

    @property
    def key_signature(self) -> bytes:
        return self.payload[32:96]

    @property
    def reserved(self) -> bytes:
        return self.payload[96:]


def decode_entry(data: bytes) -> Entry:
    """Step 1 (HC-1): exactly 161 bytes, a known type, reserved bytes zero."""
    if len(data) != ENTRY_LEN:
        raise LengthError(f"entry must be {ENTRY_LEN} bytes, got {len(data)}", requirement="HC-1")
    entry_type = data[0]
    if entry_type not in ENTRY_TYPES:
        raise DecodeError(f"unknown entry type 0x{entry_type:02x}", requirement="HC-1")
    entry = Entry(type=entry_type, nonce=bytes(data[1:17]), payload=bytes(data[17:129]),
                  prev_hash=bytes(data[129:161]))
    if entry_type == TYPE_SERVER_KEY and entry.reserved != bytes(RESERVED_LEN):
        raise DecodeError("reserved bytes of a server-key entry must be zero", requirement="HC-1")
    return entry


def entry_hash(data: bytes) -> bytes:
    """Step 3 (HC-5): the hash of an entry is SHA-256 over its 161 bytes.

    No label is needed: every entry starts with a type byte 0x01..0x03, every labelled
    input of this specification with "keyflows-v1", so the inputs never coincide.
    """
    return hashlib.sha256(data).digest()


def decode_entry_b64(text: str, *, requirement: str = "HC-1") -> bytes:
    """An entry on the wire: base64url without padding of its 161 bytes."""
    return b64url_decode_exact(text, ENTRY_LEN, field="entry", requirement=requirement)


# --- step 2: record entries --------------------------------------------------------------------

def hash_id_of(subject: bytes, nonce: bytes, entry_type: int) -> bytes:
    """Step 2 (HC-2): the blinded identity, HKDF over the subject with the entry nonce."""
    return labelled_hkdf(subject, "hashchain-hash-id", bytes([entry_type]), nonce)


def id_key_of(subject: bytes, nonce: bytes, entry_type: int) -> bytes:
    """Step 2 (HC-3): the key that seals the record hash for those who know the subject."""
    return labelled_hkdf(subject, "hashchain-id-key", bytes([entry_type]), nonce)


def sealed_hash_aad(entry_type: int, record_index: bytes) -> bytes:
    return labelled_context("hashchain-sealed-hash", bytes([entry_type]), record_index)


def seal_record_hash(id_key: bytes, record_hash: bytes, record_index: bytes,
                     entry_type: int) -> bytes:
    """Step 2 (HC-3): AES-256-GCM under a key used once (fresh nonce), so a zero GCM nonce."""
    return primitives.aes256gcm_encrypt(id_key, ZERO_GCM_NONCE, record_hash,
                                        sealed_hash_aad(entry_type, record_index))


def open_record_hash(id_key: bytes, sealed: bytes, record_index: bytes, entry_type: int) -> bytes:
    """Step 7 (HC-13): only the right subject opens the sealed record hash."""
    record_hash = primitives.aes256gcm_decrypt(id_key, ZERO_GCM_NONCE, sealed,
                                               sealed_hash_aad(entry_type, record_index),
                                               requirement="HC-3")
    if record_index_of(record_hash) != record_index:
        raise BindingError("sealed record hash does not match the record index",
                           requirement="HC-4")
    return record_hash


def record_index_of(record_hash: bytes) -> bytes:
    """Step 2 (HC-4): the public index under which the record is fetched."""
    return primitives.sha256(labelled_context("hashchain-record-index", record_hash))


def record_hash_of(entry_type: int, *fields: bytes) -> bytes:
    """Step 2 (HC-4): SHA-256 over a labelled context of the record's canonical fields."""
    return primitives.sha256(labelled_context("hashchain-record-hash", bytes([entry_type]),
                                              *fields))


@dataclass(frozen=True)
class BuiltEntry:
    """An entry and every intermediate value of steps 2-3 (for vectors)."""

    entry_type: int
    subject: bytes
    nonce: bytes
    hash_id: bytes
    id_key: bytes
    record_hash: bytes
    record_index: bytes
    sealed_hash: bytes
    prev_hash: bytes
    entry: bytes
    entry_hash: bytes


def build_record_entry(*, entry_type: int, subject: bytes, record_hash: bytes, nonce: bytes,
                       prev_hash: bytes) -> BuiltEntry:
    """Steps 2 and 3: the keyserver makes a record entry (HC-2, HC-3, HC-4, HC-5)."""
    if entry_type not in RECORD_TYPES:
        raise ParamsError(f"0x{entry_type:02x} is not a record entry type", requirement="HC-1")
    _require(nonce, NONCE_LEN, "nonce", "HC-2")
    _require(record_hash, HASH_LEN, "record hash", "HC-4")
    _require(prev_hash, HASH_LEN, "prev_hash", "HC-5")
    hid = hash_id_of(subject, nonce, entry_type)
    key = id_key_of(subject, nonce, entry_type)
    index = record_index_of(record_hash)
    sealed = seal_record_hash(key, record_hash, index, entry_type)
    raw = bytes([entry_type]) + nonce + hid + sealed + index + prev_hash
    return BuiltEntry(entry_type=entry_type, subject=subject, nonce=nonce, hash_id=hid,
                      id_key=key, record_hash=record_hash, record_index=index,
                      sealed_hash=sealed, prev_hash=prev_hash, entry=raw,
                      entry_hash=entry_hash(raw))


def _require(value: bytes, length: int, what: str, requirement: str) -> None:
    if len(value) != length:
        raise LengthError(f"{what} must be {length} bytes, got {len(value)}",
                          requirement=requirement)


# --- step 4: keyserver key entries ------------------------------------------------------------

def check_origin(origin: str) -> bytes:
    if not isinstance(origin, str) or not ORIGIN.match(origin):
        raise DecodeError("origin must be 1..255 printable ASCII characters without spaces",
                          requirement="HC-8")
    return origin.encode("ascii")


def server_key_message(origin: str, position: int, key: bytes, prev_hash: bytes) -> bytes:
    """Step 4 (HC-6): what the key in force signs to introduce or rotate a key."""
    return labelled_context("hashchain-server-key", check_origin(origin), u64be(position), key,
                            prev_hash)


def build_server_key_entry(*, origin: str, position: int, new_key: bytes, signer_seed: bytes,
                           nonce: bytes, prev_hash: bytes) -> bytes:
    """Step 4 (HC-6): entry 0 is signed by the new key itself, a rotation by the old key."""
    _require(nonce, NONCE_LEN, "nonce", "HC-6")
    _require(new_key, 32, "server key", "HC-6")
    signature = primitives.ed25519_sign(signer_seed,
                                        server_key_message(origin, position, new_key, prev_hash))
    return (bytes([TYPE_SERVER_KEY]) + nonce + new_key + signature + bytes(RESERVED_LEN)
            + prev_hash)


def verify_server_key_entry(entry: Entry, *, origin: str, position: int,
                            key_in_force: bytes | None, pinned_key: bytes | None) -> bytes:
    """Step 4 (HC-6, HC-7): returns the key in force after this entry."""
    if position == 0:
        signer = entry.server_key
        if pinned_key is not None and pinned_key != entry.server_key:
            raise BindingError("entry 0 introduces another key than the pinned one",
                               requirement="HC-7")
    else:
        if key_in_force is None:
            raise LinkError("a server-key rotation before any key was introduced",
                            requirement="HC-6")
        signer = key_in_force
    primitives.ed25519_verify(signer, server_key_message(origin, position, entry.server_key,
                                                         entry.prev_hash),
                              entry.key_signature, requirement="HC-6")
    return entry.server_key


# --- step 5: signed heads ----------------------------------------------------------------------

@dataclass(frozen=True)
class SignedHead:
    origin: str
    position: int
    hash: bytes
    timestamp: int
    signature: bytes


def head_message(origin: str, position: int, head_hash: bytes, timestamp: int) -> bytes:
    """Step 5 (HC-8): the signed text of a head."""
    return labelled_context("hashchain-head", check_origin(origin), u64be(position), head_hash,
                            u64be(timestamp))


def sign_head(*, origin: str, position: int, head_hash: bytes, timestamp: int,
              server_seed: bytes) -> SignedHead:
    """Step 5 (HC-8): the keyserver signs (position, hash, time) with the key in force."""
    signature = primitives.ed25519_sign(server_seed,
                                        head_message(origin, position, head_hash, timestamp))
    return SignedHead(origin=origin, position=position, hash=head_hash, timestamp=timestamp,
                      signature=signature)


def head_to_wire(head: SignedHead) -> dict[str, Any]:
    return {"origin": head.origin, "position": head.position, "hash": b64url_encode(head.hash),
            "timestamp": head.timestamp, "signature": b64url_encode(head.signature)}


def parse_head(obj: object) -> SignedHead:
    members = wire.members(obj, ("origin", "position", "hash", "timestamp", "signature"), "head")
    origin = wire.string(members, "origin", "head")
    check_origin(origin)
    return SignedHead(
        origin=origin,
        position=_uint(members, "position", "head", MAX_POSITION),
        hash=b64url_decode_exact(wire.string(members, "hash", "head"), HASH_LEN, field="head.hash",
                                 requirement="API-1"),
        timestamp=_uint(members, "timestamp", "head", MAX_POSITION),
        signature=b64url_decode_exact(wire.string(members, "signature", "head"),
                                      primitives.ED25519_SIG_LEN, field="head.signature",
                                      requirement="API-1"))


def verify_head_signature(head: SignedHead, *, origin: str, key: bytes) -> None:
    """Step 5 (HC-8): the head is for this log and signed by the key in force."""
    if head.origin != origin:
        raise BindingError("head is for another origin", requirement="HC-8")
    primitives.ed25519_verify(key, head_message(head.origin, head.position, head.hash,
                                                head.timestamp),
                              head.signature, requirement="HC-8")


def check_head_freshness(head: SignedHead, *, now: int, max_age: int = DEFAULT_MAX_HEAD_AGE,
                         trusted_position: int | None = None) -> None:
    """Step 5 (HC-11): no rollback behind a trusted head, no stale or future head."""
    if trusted_position is not None and head.position < trusted_position:
        raise ReplayError(f"head at {head.position} is behind the trusted head at "
                          f"{trusted_position}", requirement="HC-11")
    if head.timestamp > now + MAX_CLOCK_SKEW:
        raise ExpiredError("head is dated in the future", requirement="HC-11")
    if now - head.timestamp > max_age:
        raise ExpiredError(f"head is {now - head.timestamp} s old (at most {max_age})",
                           requirement="HC-11")


class ForkError(LinkError):
    """Two validly signed statements about one position disagree: proof of misbehaviour."""

    def __init__(self, message: str, *, position: int, hashes: tuple[bytes, bytes],
                 requirement: str | None = "HC-10") -> None:
        super().__init__(message, requirement=requirement)
        self.position = position
        self.hashes = hashes


def detect_fork(a: SignedHead, b: SignedHead, *, origin: str, key_a: bytes,
                key_b: bytes) -> None:
    """Step 5 (HC-10): two valid heads for one position with different hashes are a fork.

    Heads at different positions cannot be compared without the entries in between: a
    client checks them by verifying the extension (ChainVerifier.expect_head).
    """
    verify_head_signature(a, origin=origin, key=key_a)
    verify_head_signature(b, origin=origin, key=key_b)
    if a.position == b.position and a.hash != b.hash:
        raise ForkError(f"two signed heads disagree at position {a.position}",
                        position=a.position, hashes=(a.hash, b.hash))


# --- step 6: streaming verification -----------------------------------------------------------

@dataclass(frozen=True)
class TrustedState:
    """What a client keeps between syncs: the last verified position, its hash, and the
    keyserver key in force there (with the position that introduced it)."""

    position: int
    hash: bytes
    server_key: bytes
    server_key_position: int


_sha256 = hashlib.sha256


@lru_cache(maxsize=64)
def _split_struct(count: int) -> tuple[struct.Struct, struct.Struct]:
    """Structs that cut `count` concatenated entries into entries and into prev fields."""
    return (struct.Struct(f"{ENTRY_LEN}s" * count),
            struct.Struct(f"{PREV_OFFSET}x{HASH_LEN}s" * count))


_ORDINARY_TYPES = bytes(RECORD_TYPES)


class ChainVerifier:
    """A sans-I/O verifier of a chain, fed entries in order (step 6, HC-12).

    State is the next position, the last hash, the key in force and the (few) keys that
    were in force before it, so memory does not grow with the chain. Feed single entries
    with `feed`, or the concatenated entries of a fetched chunk with `feed_chunk` (same
    checks, done over the whole chunk at once). Heads registered with `expect_head` are
    compared when the chain passes their position; `check_head` compares the current end.
    """

    def __init__(self, *, origin: str, pinned_key: bytes | None = None,
                 trusted: TrustedState | None = None) -> None:
        check_origin(origin)
        self.origin = origin
        self.pinned_key = pinned_key
        self._expected: dict[int, list[SignedHead]] = {}
        if trusted is None:
            self.next_position = 0
            self.last_hash = ZERO_HASH
            self.server_key: bytes | None = None
            self.key_history: list[tuple[int, bytes]] = []
        else:
            self.next_position = trusted.position + 1
            self.last_hash = trusted.hash
            self.server_key = trusted.server_key
            self.key_history = [(trusted.server_key_position, trusted.server_key)]

    # -- state ------------------------------------------------------------------------------
    @property
    def position(self) -> int:
        """Position of the last verified entry (-1 before any)."""
        return self.next_position - 1

    def state(self) -> TrustedState:
        if self.server_key is None or self.next_position == 0:
            raise LinkError("no entry verified yet", requirement="HC-12")
        return TrustedState(position=self.position, hash=self.last_hash,
                            server_key=self.server_key,
                            server_key_position=self.key_history[-1][0])

    def key_at(self, position: int) -> bytes:
        """The keyserver key in force at `position` (introduced at or before it)."""
        for introduced, key in reversed(self.key_history):
            if introduced <= position:
                return key
        raise LinkError(f"no keyserver key known at position {position}", requirement="HC-7")

    # -- feeding ----------------------------------------------------------------------------
    def feed(self, data: bytes) -> None:
        """Step 6: check length, type and link of the next entry, then advance."""
        if len(data) != ENTRY_LEN:
            raise LengthError(f"entry {self.next_position}: must be {ENTRY_LEN} bytes, got "
                              f"{len(data)}", requirement="HC-1")
        entry_type = data[0]
        if entry_type not in _ORDINARY_TYPES:
            self._feed_special(data)
            return
        if data[PREV_OFFSET:] != self.last_hash:
            raise LinkError(f"entry {self.next_position}: prev_hash does not link to entry "
                            f"{self.next_position - 1}", requirement="HC-5")
        if self.next_position == 0:
            raise DecodeError("entry 0 must be a server-key entry", requirement="HC-6")
        self._advance(hashlib.sha256(data).digest())

    def _feed_special(self, data: bytes) -> None:
        entry = decode_entry(data)  # raises for unknown types and non-zero reserved bytes
        if entry.prev_hash != self.last_hash:
            raise LinkError(f"entry {self.next_position}: prev_hash does not link to entry "
                            f"{self.next_position - 1}", requirement="HC-5")
        key = verify_server_key_entry(entry, origin=self.origin, position=self.next_position,
                                      key_in_force=self.server_key, pinned_key=self.pinned_key)
        self.server_key = key
        self.key_history.append((self.next_position, key))
        self._advance(entry_hash(data))

    def _advance(self, new_hash: bytes) -> None:
        if self._expected:
            self._settle(self.next_position, new_hash)
        self.last_hash = new_hash
        self.next_position += 1

    def feed_chunk(self, data: bytes) -> None:
        """Step 6: the same checks as `feed` for concatenated entries, in bulk.

        Entries of a server-key type (rare) fall back to `feed` one by one.
        """
        count, rest = divmod(len(data), ENTRY_LEN)
        if rest:
            raise LengthError(f"chunk of {len(data)} bytes is not a whole number of entries",
                              requirement="HC-1")
        if count == 0:
            return
        types = data[0::ENTRY_LEN]
        if types.translate(None, _ORDINARY_TYPES) or self.next_position == 0:
            for offset in range(0, len(data), ENTRY_LEN):
                self.feed(data[offset:offset + ENTRY_LEN])
            return
        entries_struct, prevs_struct = _split_struct(count)
        # A comprehension, not map(methodcaller): CPython's method-call fast path is the
        # cheapest way to run many small hashes (measured in tests/bench_hashchain.py).
        sha256 = _sha256
        hashes = [sha256(e).digest() for e in entries_struct.unpack(data)]
        prevs = list(prevs_struct.unpack(data))
        hashes.insert(0, self.last_hash)
        last = hashes.pop()
        if prevs != hashes:
            bad = next(i for i, (p, h) in enumerate(zip(prevs, hashes, strict=True)) if p != h)
            raise LinkError(f"entry {self.next_position + bad}: prev_hash does not link to "
                            f"entry {self.next_position + bad - 1}", requirement="HC-5")
        if self._expected:
            self._check_expected_in_chunk(hashes, last, count)
        self.last_hash = last
        self.next_position += count

    def _check_expected_in_chunk(self, shifted: list[bytes], last: bytes, count: int) -> None:
        # shifted[i] is the hash of entry (next_position + i - 1) for i >= 1. A fast-path
        # chunk has no keyserver-key entry, so the key in force is the current one.
        for position in sorted(p for p in self._expected
                               if self.next_position <= p < self.next_position + count):
            offset = position - self.next_position
            self._settle(position, shifted[offset + 1] if offset + 1 < count else last)

    def _settle(self, position: int, actual: bytes) -> None:
        """Compare the heads registered for `position` once the chain has reached it."""
        for head in self._expected.pop(position, []):
            verify_head_signature(head, origin=self.origin, key=self._current_key())
            if head.hash != actual:
                raise ForkError(f"entry {position} differs from a signed head",
                                position=position, hashes=(head.hash, actual))

    # -- heads ------------------------------------------------------------------------------
    def expect_head(self, head: SignedHead) -> None:
        """Step 5 (HC-8, HC-10): remember a signed head to compare when the chain reaches it.

        Its signature is checked then, with the key in force at its position (HC-7), so a
        head from after a key rotation needs no key now. A head for a position already
        passed can only be compared if it is the current one.
        """
        if head.origin != self.origin:
            raise BindingError("head is for another origin", requirement="HC-8")
        if head.position < self.position:
            raise LinkError("head is for a position this verifier has passed",
                            requirement="HC-12")
        if head.position == self.position:
            self._expected[head.position] = [head]
            self._settle(head.position, self.last_hash)
            return
        self._expected.setdefault(head.position, []).append(head)

    def check_head(self, head: SignedHead, *, now: int, max_age: int = DEFAULT_MAX_HEAD_AGE,
                   trusted_position: int | None = None) -> None:
        """Step 5 (HC-8, HC-9, HC-11): the head signs exactly the verified chain's end."""
        verify_head_signature(head, origin=self.origin, key=self._current_key())
        check_head_freshness(head, now=now, max_age=max_age, trusted_position=trusted_position)
        if head.position > self.position:
            raise LinkError(f"chain ends at {self.position} but the head is at {head.position}: "
                            "truncated", requirement="HC-9")
        if head.position < self.position:
            raise LinkError(f"chain goes on to {self.position} past the head at "
                            f"{head.position}", requirement="HC-9")
        if head.hash != self.last_hash:
            raise ForkError(f"signed head disagrees with the chain at {head.position}",
                            position=head.position, hashes=(head.hash, self.last_hash))
        if self._expected:
            raise LinkError("chain ends before a registered head", requirement="HC-9")

    def _current_key(self) -> bytes:
        if self.server_key is None:
            raise LinkError("no keyserver key known yet", requirement="HC-7")
        return self.server_key


def verify_chain(entries: Iterable[bytes], head: SignedHead, *, origin: str, now: int,
                 pinned_key: bytes | None = None, trusted: TrustedState | None = None,
                 max_age: int = DEFAULT_MAX_HEAD_AGE) -> TrustedState:
    """Step 6 (HC-12): verify a whole chain (or an extension from `trusted`) against a head."""
    verifier = ChainVerifier(origin=origin, pinned_key=pinned_key, trusted=trusted)
    for data in entries:
        verifier.feed(data)
    verifier.check_head(head, now=now, max_age=max_age,
                        trusted_position=None if trusted is None else trusted.position)
    return verifier.state()


# --- step 7: identities and lookup ------------------------------------------------------------

def check_identity(identity: str, *, domains: Sequence[str] | None = None) -> bytes:
    """Step 7 (HC-14): a v1 identity is in mapped form, its domain a lowercase DNS name
    (and, for a server, one it serves). Returns the subject bytes."""
    if not isinstance(identity, str):
        raise DecodeError("identity must be a string", requirement="HC-14")
    try:
        mapped = map_identity(identity)
    except SpecError as exc:
        raise DecodeError(f"identity is not well-formed: {exc}", requirement="HC-14") from exc
    if mapped != identity:
        raise DecodeError("identity is not in mapped form", requirement="HC-14")
    domain = identity.split("@", 1)[1]
    labels = domain.split(".")
    if len(domain) > 253 or len(labels) < 2 or not all(DOMAIN_LABEL.match(x) for x in labels):
        raise DecodeError("identity domain is not a lowercase DNS name", requirement="HC-14")
    if domains is not None and domain not in domains:
        raise BindingError(f"domain {domain} is not served here", requirement="HC-14")
    return identity.encode("ascii")


@dataclass(frozen=True)
class Match:
    position: int
    entry_type: int
    record_index: bytes
    record_hash: bytes


class IdentityScanner:
    """Step 7 (HC-13): find the entries of one subject while the chain streams past."""

    def __init__(self, subject: bytes, *, entry_type: int = TYPE_UID) -> None:
        self.subject = subject
        self.entry_type = entry_type
        self.matches: list[Match] = []

    def feed(self, position: int, data: bytes) -> Match | None:
        if len(data) != ENTRY_LEN or data[0] != self.entry_type:
            return None
        entry = decode_entry(data)
        if hash_id_of(self.subject, entry.nonce, self.entry_type) != entry.hash_id:
            return None
        key = id_key_of(self.subject, entry.nonce, self.entry_type)
        record_hash = open_record_hash(key, entry.sealed_hash, entry.record_index,
                                       self.entry_type)
        match = Match(position=position, entry_type=self.entry_type,
                      record_index=entry.record_index, record_hash=record_hash)
        self.matches.append(match)
        return match

    @property
    def latest(self) -> Match | None:
        """The current record is the one of the last matching entry."""
        return self.matches[-1] if self.matches else None


def lookup(identity: str, entries: Iterable[bytes], *, entry_type: int = TYPE_UID) -> list[Match]:
    scanner = IdentityScanner(check_identity(identity), entry_type=entry_type)
    for position, data in enumerate(entries):
        scanner.feed(position, data)
    return scanner.matches


def check_entry_for(data: bytes, *, subject: bytes, record_hash: bytes,
                    entry_type: int = TYPE_UID) -> Entry:
    """Step 9 (HC-21), client side: this entry records exactly this subject's record."""
    entry = decode_entry(data)
    if entry.type != entry_type:
        raise BindingError("entry has another type", requirement="HC-21")
    if hash_id_of(subject, entry.nonce, entry_type) != entry.hash_id:
        raise BindingError("entry is about another identity", requirement="HC-21")
    opened = open_record_hash(id_key_of(subject, entry.nonce, entry_type), entry.sealed_hash,
                              entry.record_index, entry_type)
    if opened != record_hash:
        raise BindingError("entry records another record", requirement="HC-21")
    return entry


# --- step 8: UID messages ---------------------------------------------------------------------

@dataclass(frozen=True)
class LastEntry:
    position: int
    hash: bytes


@dataclass(frozen=True)
class UidContent:
    identity: str
    msg_count: int
    not_before: int
    not_after: int
    sigkey: bytes
    sigescrow: bytes
    x25519: bytes
    last_entry: LastEntry
    previous: bytes | None  # record hash of the previous UID; None for a creation


@dataclass(frozen=True)
class Uid:
    content: UidContent
    sig_sigkey: bytes
    sig_sigescrow: bytes | None
    previous_role: str | None
    sig_previous: bytes | None


def uid_content_bytes(c: UidContent) -> bytes:
    """Step 8 (HC-15): the canonical encoding every UID signature covers."""
    return labelled_context(
        "hashchain-uid", c.identity.encode("ascii"), u32be(c.msg_count), u64be(c.not_before),
        u64be(c.not_after), c.sigkey, c.sigescrow, c.x25519, u64be(c.last_entry.position),
        c.last_entry.hash, c.previous if c.previous is not None else b"")


def uid_signature_message(role: str, content: bytes) -> bytes:
    """Step 8 (HC-16, HC-17): each signer role signs a distinct message."""
    return labelled_context("hashchain-uid-signature", role.encode("ascii"), content)


def uid_record_hash(uid: Uid) -> bytes:
    """Step 8 (HC-4, HC-15): the UID's record hash covers content and every signature."""
    return record_hash_of(TYPE_UID, uid_content_bytes(uid.content), uid.sig_sigkey,
                          uid.sig_sigescrow or b"", (uid.previous_role or "").encode("ascii"),
                          uid.sig_previous or b"")


def sign_uid(content: UidContent, *, sigkey_seed: bytes, sigescrow_seed: bytes | None,
             previous_seed: bytes | None = None, previous_role: str | None = None) -> Uid:
    """Step 8: the client signs with SIGKEY, SIGESCROW (creation, escrow change) and, for
    an update, with a key of the previous UID."""
    body = uid_content_bytes(content)
    sig_escrow = None
    if sigescrow_seed is not None:
        sig_escrow = primitives.ed25519_sign(sigescrow_seed,
                                             uid_signature_message("sigescrow", body))
    sig_previous = None
    if previous_seed is not None:
        if previous_role not in PREVIOUS_ROLES:
            raise ParamsError("previous_role must be sigkey or sigescrow")
        sig_previous = primitives.ed25519_sign(
            previous_seed, uid_signature_message(f"previous-{previous_role}", body))
    return Uid(content=content,
               sig_sigkey=primitives.ed25519_sign(sigkey_seed,
                                                  uid_signature_message("sigkey", body)),
               sig_sigescrow=sig_escrow, previous_role=previous_role if sig_previous else None,
               sig_previous=sig_previous)


def uid_to_wire(uid: Uid) -> dict[str, Any]:
    c = uid.content
    signatures: dict[str, Any] = {"sigkey": b64url_encode(uid.sig_sigkey)}
    if uid.sig_sigescrow is not None:
        signatures["sigescrow"] = b64url_encode(uid.sig_sigescrow)
    if uid.sig_previous is not None:
        signatures["previous"] = {"key": uid.previous_role,
                                  "signature": b64url_encode(uid.sig_previous)}
    wire: dict[str, Any] = {
        "identity": c.identity, "msg_count": c.msg_count, "not_before": c.not_before,
        "not_after": c.not_after, "sigkey": b64url_encode(c.sigkey),
        "sigescrow": b64url_encode(c.sigescrow),
        "public_keys": {"x25519": b64url_encode(c.x25519)},
        "last_entry": {"position": c.last_entry.position,
                       "hash": b64url_encode(c.last_entry.hash)},
        "signatures": signatures,
    }
    if c.previous is not None:
        wire["previous"] = b64url_encode(c.previous)
    return wire


def uid_json(uid: Uid) -> bytes:
    """The UID as canonical JSON (sorted keys, no whitespace): what the repository seals."""
    return json.dumps(uid_to_wire(uid), sort_keys=True, separators=(",", ":")).encode("utf-8")


_UID_MEMBERS = ("identity", "msg_count", "not_before", "not_after", "sigkey", "sigescrow",
                "public_keys", "last_entry", "signatures")


def parse_uid(obj: object) -> Uid:
    """Step 8 (HC-15): decode a UID message; every field decoded and length-checked."""
    m = wire.members(obj, _UID_MEMBERS, "uid", optional=("previous",))
    identity = wire.string(m, "identity", "uid")
    check_identity(identity)
    pk = wire.members(m["public_keys"], ("x25519",), "uid.public_keys")
    last = wire.members(m["last_entry"], ("position", "hash"), "uid.last_entry")
    sigs = wire.members(m["signatures"], ("sigkey",), "uid.signatures",
                    optional=("sigescrow", "previous"))
    previous_role = sig_previous = None
    if "previous" in sigs:
        prev = wire.members(sigs["previous"], ("key", "signature"), "uid.signatures.previous")
        previous_role = wire.string(prev, "key", "uid.signatures.previous")
        if previous_role not in PREVIOUS_ROLES:
            raise DecodeError("signatures.previous.key must be sigkey or sigescrow",
                              requirement="HC-17")
        sig_previous = _sig(prev, "signature", "uid.signatures.previous")
    content = UidContent(
        identity=identity,
        msg_count=_uint(m, "msg_count", "uid", 2**32 - 1),
        not_before=_uint(m, "not_before", "uid", MAX_POSITION),
        not_after=_uint(m, "not_after", "uid", MAX_POSITION),
        sigkey=_key(m, "sigkey", "uid"),
        sigescrow=_key(m, "sigescrow", "uid"),
        x25519=_key(pk, "x25519", "uid.public_keys"),
        last_entry=LastEntry(position=_uint(last, "position", "uid.last_entry", MAX_POSITION),
                             hash=b64url_decode_exact(wire.string(last, "hash", "uid.last_entry"),
                                                      HASH_LEN, field="last_entry.hash",
                                                      requirement="API-1")),
        previous=(b64url_decode_exact(wire.string(m, "previous", "uid"), HASH_LEN,
                                      field="previous", requirement="API-1")
                  if "previous" in m else None))
    primitives.check_x25519_public_key(content.x25519, requirement="HC-15")
    return Uid(content=content, sig_sigkey=_sig(sigs, "sigkey", "uid.signatures"),
               sig_sigescrow=_sig(sigs, "sigescrow", "uid.signatures") if "sigescrow" in sigs
               else None, previous_role=previous_role, sig_previous=sig_previous)


def check_uid_validity(c: UidContent, *, now: int) -> None:
    """Step 8 (HC-18): a bounded validity period that contains now."""
    if not c.not_before < c.not_after or c.not_after - c.not_before > MAX_UID_VALIDITY:
        raise ParamsError("UID validity must be non-empty and at most 366 days",
                          requirement="HC-18")
    if not c.not_before <= now < c.not_after:
        raise ExpiredError("UID is not valid now", requirement="HC-18")


def verify_uid_create(uid: Uid, *, now: int, domains: Sequence[str] | None = None) -> bytes:
    """Step 8 (HC-14, HC-16, HC-18): a creation; returns the UID's record hash."""
    c = uid.content
    check_identity(c.identity, domains=domains)
    if c.msg_count != 0 or c.previous is not None or uid.sig_previous is not None:
        raise BindingError("a creation has msg_count 0 and no previous UID",
                           requirement="HC-17")
    if c.sigkey == c.sigescrow:
        raise BindingError("SIGKEY and SIGESCROW must be different keys", requirement="HC-16")
    body = uid_content_bytes(c)
    if uid.sig_sigescrow is None:
        raise SignatureError("a creation must be signed by SIGESCROW", requirement="HC-16")
    primitives.ed25519_verify(c.sigkey, uid_signature_message("sigkey", body), uid.sig_sigkey,
                              requirement="HC-16")
    primitives.ed25519_verify(c.sigescrow, uid_signature_message("sigescrow", body),
                              uid.sig_sigescrow, requirement="HC-16")
    check_uid_validity(c, now=now)
    return uid_record_hash(uid)


def verify_uid_update(uid: Uid, previous: Uid, *, now: int,
                      domains: Sequence[str] | None = None) -> bytes:
    """Step 8 (HC-17, HC-18): an update chains to and is authorised by the previous UID."""
    c, p = uid.content, previous.content
    check_identity(c.identity, domains=domains)
    if c.identity != p.identity:
        raise BindingError("an update must keep the identity", requirement="HC-17")
    if c.sigkey == c.sigescrow:
        raise BindingError("SIGKEY and SIGESCROW must be different keys", requirement="HC-16")
    if c.msg_count != p.msg_count + 1:
        raise ReplayError("msg_count must be exactly one more than the previous UID's",
                          requirement="HC-17")
    if c.previous != uid_record_hash(previous):
        raise LinkError("previous does not name the current UID", requirement="HC-17")
    body = uid_content_bytes(c)
    primitives.ed25519_verify(c.sigkey, uid_signature_message("sigkey", body), uid.sig_sigkey,
                              requirement="HC-17")
    if uid.sig_previous is None or uid.previous_role is None:
        raise SignatureError("an update must be signed by a key of the previous UID",
                             requirement="HC-17")
    escrow_changed = c.sigescrow != p.sigescrow
    if escrow_changed and uid.previous_role != "sigescrow":
        raise AuthzError("changing SIGESCROW needs the previous SIGESCROW", requirement="HC-17")
    signer = p.sigkey if uid.previous_role == "sigkey" else p.sigescrow
    primitives.ed25519_verify(signer, uid_signature_message(f"previous-{uid.previous_role}",
                                                            body),
                              uid.sig_previous, requirement="HC-17")
    if escrow_changed or uid.sig_sigescrow is not None:
        if uid.sig_sigescrow is None:
            raise SignatureError("a new SIGESCROW must sign the update", requirement="HC-17")
        primitives.ed25519_verify(c.sigescrow, uid_signature_message("sigescrow", body),
                                  uid.sig_sigescrow, requirement="HC-17")
    check_uid_validity(c, now=now)
    return uid_record_hash(uid)


def check_last_entry(last: LastEntry, *, hash_at: bytes | None, head_position: int,
                     max_lag: int = DEFAULT_MAX_LAST_ENTRY_LAG) -> None:
    """Step 8 (HC-19): the client's last entry is in this chain and recent.

    `hash_at` is the hash of the server's entry at last.position (None if beyond the end).
    """
    if hash_at is None or hash_at != last.hash:
        raise LinkError("last_entry is not an entry of this chain", requirement="HC-19")
    if head_position - last.position > max_lag:
        raise ExpiredError(f"last_entry is more than {max_lag} entries old",
                           requirement="HC-19")


# --- step 9: the server's UID reply and the sealed repository copy -------------------------------

@dataclass(frozen=True)
class UidReply:
    position: int
    entry: bytes
    record_hash: bytes
    signature: bytes


def uid_reply_message(origin: str, position: int, entry: bytes, record_hash: bytes) -> bytes:
    """Step 9 (HC-21): what the keyserver signs when it accepts a UID."""
    return labelled_context("hashchain-uid-reply", check_origin(origin), u64be(position), entry,
                            record_hash)


def sign_uid_reply(*, origin: str, position: int, entry: bytes, record_hash: bytes,
                   server_seed: bytes) -> UidReply:
    signature = primitives.ed25519_sign(server_seed,
                                        uid_reply_message(origin, position, entry, record_hash))
    return UidReply(position=position, entry=entry, record_hash=record_hash, signature=signature)


def verify_uid_reply(reply: UidReply, uid: Uid, *, origin: str, server_key: bytes) -> Entry:
    """Step 9 (HC-21), client side: signed by the tracked key, and the entry records this
    UID for this identity. (The original compared a value with itself here.)"""
    record_hash = uid_record_hash(uid)
    if reply.record_hash != record_hash:
        raise BindingError("reply is for another UID", requirement="HC-21")
    primitives.ed25519_verify(server_key, uid_reply_message(origin, reply.position, reply.entry,
                                                            reply.record_hash),
                              reply.signature, requirement="HC-21")
    return check_entry_for(reply.entry, subject=uid.content.identity.encode("ascii"),
                           record_hash=record_hash)


def uid_seal_key(record_hash: bytes) -> bytes:
    """Step 9 (HC-24): the key of a UID's sealed copy, known only to who knows its hash."""
    return labelled_hkdf(record_hash, "hashchain-uid-seal-key")


def seal_uid(uid: Uid) -> bytes:
    """Step 9 (HC-24): the repository serves UIDs sealed, so record indexes (public) do not
    reveal identities. The key is used for one plaintext only, so the GCM nonce is zero."""
    record_hash = uid_record_hash(uid)
    return primitives.aes256gcm_encrypt(uid_seal_key(record_hash), ZERO_GCM_NONCE, uid_json(uid),
                                        labelled_context("hashchain-uid-seal",
                                                         record_index_of(record_hash)))


def open_sealed_uid(sealed: bytes, record_hash: bytes) -> Uid:
    """Step 9 (HC-24), client side: open, parse, and check the UID hashes as recorded."""
    plaintext = primitives.aes256gcm_decrypt(uid_seal_key(record_hash), ZERO_GCM_NONCE, sealed,
                                             labelled_context("hashchain-uid-seal",
                                                              record_index_of(record_hash)),
                                             requirement="HC-24")
    try:
        obj = json.loads(plaintext)
    except (ValueError, UnicodeDecodeError) as exc:
        raise DecodeError("sealed UID is not JSON", requirement="HC-24") from exc
    uid = parse_uid(obj)
    if uid_record_hash(uid) != record_hash:
        raise BindingError("sealed UID does not hash to its record hash", requirement="HC-24")
    return uid


# --- step 10: KeyInits --------------------------------------------------------------------------

KEYINIT_ID_LEN = 16


@dataclass(frozen=True)
class KeyInit:
    identity: str
    sigkey: bytes
    key_id: bytes
    not_before: int
    not_after: int
    x25519: bytes
    signature: bytes


def keyinit_message(identity: str, sigkey: bytes, key_id: bytes, not_before: int,
                    not_after: int, x25519: bytes) -> bytes:
    """Step 10 (HC-25): what SIGKEY signs for one one-time key."""
    return labelled_context("hashchain-keyinit", identity.encode("ascii"), sigkey, key_id,
                            u64be(not_before), u64be(not_after), x25519)


def make_keyinit(*, identity: str, sigkey_seed: bytes, not_before: int, not_after: int,
                 random: RandomSource) -> tuple[KeyInit, bytes]:
    """Step 10: a fresh one-time X25519 key; returns the KeyInit and its private key."""
    private = random(32)
    key_id = random(KEYINIT_ID_LEN)
    sigkey = primitives.ed25519_public_key(sigkey_seed)
    x25519 = primitives.x25519_public_key(private)
    signature = primitives.ed25519_sign(sigkey_seed, keyinit_message(
        identity, sigkey, key_id, not_before, not_after, x25519))
    return KeyInit(identity=identity, sigkey=sigkey, key_id=key_id, not_before=not_before,
                   not_after=not_after, x25519=x25519, signature=signature), private


def keyinit_to_wire(ki: KeyInit) -> dict[str, Any]:
    return {"identity": ki.identity, "sigkey": b64url_encode(ki.sigkey),
            "key_id": b64url_encode(ki.key_id), "not_before": ki.not_before,
            "not_after": ki.not_after, "x25519": b64url_encode(ki.x25519),
            "signature": b64url_encode(ki.signature)}


def parse_keyinit(obj: object) -> KeyInit:
    m = wire.members(obj, ("identity", "sigkey", "key_id", "not_before", "not_after", "x25519",
                       "signature"), "keyinit")
    identity = wire.string(m, "identity", "keyinit")
    check_identity(identity)
    ki = KeyInit(identity=identity, sigkey=_key(m, "sigkey", "keyinit"),
                 key_id=b64url_decode_exact(wire.string(m, "key_id", "keyinit"), KEYINIT_ID_LEN,
                                            field="key_id", requirement="API-1"),
                 not_before=_uint(m, "not_before", "keyinit", MAX_POSITION),
                 not_after=_uint(m, "not_after", "keyinit", MAX_POSITION),
                 x25519=_key(m, "x25519", "keyinit"), signature=_sig(m, "signature", "keyinit"))
    primitives.check_x25519_public_key(ki.x25519, requirement="HC-25")
    return ki


def verify_keyinit(ki: KeyInit, *, identity: str, current_sigkey: bytes, now: int) -> None:
    """Steps 10 (HC-25, HC-26): for this identity, signed by its current SIGKEY, in date."""
    if ki.identity != identity:
        raise BindingError("KeyInit is for another identity", requirement="HC-26")
    if ki.sigkey != current_sigkey:
        raise AuthzError("KeyInit is not signed by the identity's current SIGKEY",
                         requirement="HC-26")
    primitives.ed25519_verify(ki.sigkey, keyinit_message(ki.identity, ki.sigkey, ki.key_id,
                                                         ki.not_before, ki.not_after, ki.x25519),
                              ki.signature, requirement="HC-25")
    if not ki.not_before < ki.not_after or ki.not_after - ki.not_before > MAX_KEYINIT_LIFETIME:
        raise ParamsError("KeyInit lifetime must be non-empty and at most 90 days",
                          requirement="HC-25")
    if now >= ki.not_after:
        raise ExpiredError("KeyInit has expired", requirement="HC-25")


def keyinit_servable(ki: KeyInit, *, now: int) -> bool:
    """Step 10 (HC-27): only KeyInits inside their validity period are handed out."""
    return ki.not_before <= now < ki.not_after


@dataclass
class KeyInitPool:
    """Step 10 (HC-27), the server's state as a model: each KeyInit leaves the pool when
    handed out, so no KeyInit is served twice. Servers must make take() atomic."""

    pending: dict[str, list[KeyInit]] = field(default_factory=dict)
    seen_ids: set[bytes] = field(default_factory=set)

    def add(self, ki: KeyInit) -> None:
        if ki.key_id in self.seen_ids:
            raise ReplayError("KeyInit key_id was already published", requirement="HC-26")
        self.seen_ids.add(ki.key_id)
        self.pending.setdefault(ki.identity, []).append(ki)

    def take(self, identity: str, *, now: int) -> KeyInit | None:
        queue = self.pending.get(identity, [])
        queue[:] = [k for k in queue if now < k.not_after]
        for i, ki in enumerate(queue):
            if keyinit_servable(ki, now=now):
                return queue.pop(i)
        return None

    def flush(self, identity: str) -> int:
        return len(self.pending.pop(identity, []))


@dataclass(frozen=True)
class FlushRequest:
    identity: str
    timestamp: int
    nonce: bytes
    signature: bytes


def flush_message(origin: str, identity: str, timestamp: int, nonce: bytes) -> bytes:
    """Step 10 (HC-28): bound to the keyserver, the identity, a time and a nonce."""
    return labelled_context("hashchain-keyinit-flush", check_origin(origin),
                            identity.encode("ascii"), u64be(timestamp), nonce)


def make_flush_request(*, origin: str, identity: str, sigkey_seed: bytes, timestamp: int,
                       nonce: bytes) -> FlushRequest:
    _require(nonce, NONCE_LEN, "flush nonce", "HC-28")
    return FlushRequest(identity=identity, timestamp=timestamp, nonce=nonce,
                        signature=primitives.ed25519_sign(
                            sigkey_seed, flush_message(origin, identity, timestamp, nonce)))


def flush_to_wire(req: FlushRequest) -> dict[str, Any]:
    return {"identity": req.identity, "timestamp": req.timestamp,
            "nonce": b64url_encode(req.nonce), "signature": b64url_encode(req.signature)}


def parse_flush(obj: object) -> FlushRequest:
    m = wire.members(obj, ("identity", "timestamp", "nonce", "signature"), "flush")
    identity = wire.string(m, "identity", "flush")
    check_identity(identity)
    return FlushRequest(identity=identity, timestamp=_uint(m, "timestamp", "flush", MAX_POSITION),
                        nonce=b64url_decode_exact(wire.string(m, "nonce", "flush"), NONCE_LEN,
                                                  field="nonce", requirement="API-1"),
                        signature=_sig(m, "signature", "flush"))


def verify_flush(req: FlushRequest, *, origin: str, identity: str, current_sigkey: bytes,
                 now: int, nonce_seen: bool) -> None:
    """Step 10 (HC-28): signed by the current SIGKEY, fresh, never replayed."""
    if req.identity != identity:
        raise BindingError("flush request is for another identity", requirement="HC-28")
    primitives.ed25519_verify(current_sigkey, flush_message(origin, req.identity, req.timestamp,
                                                            req.nonce),
                              req.signature, requirement="HC-28")
    if abs(now - req.timestamp) > FLUSH_WINDOW:
        raise ExpiredError("flush request is not fresh", requirement="HC-28")
    if nonce_seen:
        raise ReplayError("flush request was already used", requirement="HC-28")


# --- step 11: keypair publications in the chain --------------------------------------------------

def publication_subject(user_id: str, client_id: str) -> bytes:
    """Step 11 (HC-29): '/' is outside the identifier syntax, so the pair is unambiguous."""
    return check_identifier(user_id, "user_id") + b"/" + check_identifier(client_id, "client_id")


def publication_record_hash(user_id: str, client_id: str, key_version: int, x25519: bytes,
                            ed25519: bytes, binding_signature: bytes) -> bytes:
    """Step 11 (HC-29): the record hash of a public view (keypair-publication KP-4 fields)."""
    return record_hash_of(TYPE_PUBLICATION, check_identifier(user_id, "user_id"),
                          check_identifier(client_id, "client_id"), u32be(key_version), x25519,
                          ed25519, binding_signature)


# --- a model keyserver log (vectors, tests, the reference server's logic) -------------------------

class ChainLog:
    """An in-memory append-only log with the keyserver's signing logic (steps 2-5, 9)."""

    def __init__(self, *, origin: str, server_seed: bytes, nonce0: bytes) -> None:
        self.origin = origin
        self.server_seed = server_seed
        self.server_key = primitives.ed25519_public_key(server_seed)
        self.entries: list[bytes] = []
        self.hashes: list[bytes] = []
        self._append(build_server_key_entry(origin=origin, position=0, new_key=self.server_key,
                                            signer_seed=server_seed, nonce=nonce0,
                                            prev_hash=ZERO_HASH))

    @property
    def head_hash(self) -> bytes:
        return self.hashes[-1]

    @property
    def position(self) -> int:
        return len(self.entries) - 1

    def _append(self, data: bytes) -> int:
        self.entries.append(data)
        self.hashes.append(entry_hash(data))
        return len(self.entries) - 1

    def append_record(self, *, entry_type: int, subject: bytes, record_hash: bytes,
                      nonce: bytes) -> tuple[int, BuiltEntry]:
        built = build_record_entry(entry_type=entry_type, subject=subject,
                                   record_hash=record_hash, nonce=nonce, prev_hash=self.head_hash)
        return self._append(built.entry), built

    def rotate_key(self, new_seed: bytes, *, nonce: bytes) -> int:
        new_key = primitives.ed25519_public_key(new_seed)
        position = len(self.entries)
        data = build_server_key_entry(origin=self.origin, position=position, new_key=new_key,
                                      signer_seed=self.server_seed, nonce=nonce,
                                      prev_hash=self.head_hash)
        self.server_seed, self.server_key = new_seed, new_key
        return self._append(data)

    def head(self, timestamp: int) -> SignedHead:
        return sign_head(origin=self.origin, position=self.position, head_hash=self.head_hash,
                         timestamp=timestamp, server_seed=self.server_seed)


# --- JSON helpers -----------------------------------------------------------------------------





def _uint(obj: dict[str, Any], key: str, where: str, maximum: int) -> int:
    value = obj[key]
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= maximum:
        raise DecodeError(f"{where}.{key} must be an integer in 0..{maximum}",
                          requirement="API-6")
    return value


def _key(obj: dict[str, Any], key: str, where: str) -> bytes:
    return b64url_decode_exact(wire.string(obj, key, where), 32, field=f"{where}.{key}",
                               requirement="API-1")


def _sig(obj: dict[str, Any], key: str, where: str) -> bytes:
    return b64url_decode_exact(wire.string(obj, key, where), primitives.ED25519_SIG_LEN,
                               field=f"{where}.{key}", requirement="API-1")

