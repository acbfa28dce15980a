"""Flow: hashchain, a transparency log of identity keys.

The key server keeps an append-only log of fixed-layout entries. Each entry records one
event (a UID, a keypair publication, a key of the log itself, a key-directory root)
without saying in clear whom it is about: only a client that already knows an identity
can recognise that identity's entries. The log is an RFC 9162 Merkle tree; its heads are
C2SP checkpoints (signed notes) that witnesses cosign after checking a consistency proof
(C2SP tlog-witness); it is served as C2SP tlog-tiles. Clients follow the log from one
checkpoint to the next and accept an identity's UID only if that identity's whole
history in the log is valid.

Steps (see the hashchain chapter), and the modules that implement them:
  1. Entry layout: 129 bytes, type | nonce | payload (HC-1).            this module
  2. Record entries: blinded identity, sealed record hash, record index
     (HC-2, HC-3, HC-4).                                                 this module
  3. The Merkle tree (HC-5), inclusion (HC-36) and consistency (HC-37)
     proofs.                                                  hashchain_merkle
  4. Log keys: entry 0 introduces the key, later key entries rotate it
     (HC-6, HC-7, HC-50); key-directory roots (HC-47).                   this module
  5. Checkpoints as signed notes (HC-8, HC-38) and cosignatures (HC-39). hashchain_note
  6. Witnesses: the add-checkpoint protocol (HC-40, HC-42, HC-43).    hashchain_witness
  7. Tiles (HC-23, HC-44, HC-45) and proof endpoints (HC-46).           hashchain_tiles
  8. Following the log: checkpoints (HC-9, HC-11, HC-41), entries (HC-12),
     forks (HC-10).                                                   hashchain_client
  9. Identity history (HC-13, HC-48) and monitoring (HC-49).          hashchain_client
 10-13. UIDs, replies, the sealed repository, KeyInits, publications
     (HC-14 .. HC-29).                                                  hashchain_uid
Compat profile mute: hashchain_mute (HC-30 .. HC-34), linear and byte-exact.

Everything here is pure: randomness (nonces, seeds) and "now" are parameters.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from keyflows.spec import hashchain_merkle as merkle
from keyflows.spec import hashchain_note as note
from keyflows.spec import primitives
from keyflows.spec.encoding import b64url_decode_exact, labelled_context, u64be
from keyflows.spec.errors import (
    BindingError,
    DecodeError,
    LengthError,
    LinkError,
    ParamsError,
)
from keyflows.spec.key_derivation import labelled_hkdf

# --- constants ----------------------------------------------------------------------------

TYPE_UID = 0x01
TYPE_PUBLICATION = 0x02
TYPE_LOG_KEY = 0x03
TYPE_DIRECTORY = 0x04
RECORD_TYPES = (TYPE_UID, TYPE_PUBLICATION)
ENTRY_TYPES = (TYPE_UID, TYPE_PUBLICATION, TYPE_LOG_KEY, TYPE_DIRECTORY)
TYPE_NAMES = {TYPE_UID: "uid", TYPE_PUBLICATION: "publication", TYPE_LOG_KEY: "log-key",
              TYPE_DIRECTORY: "directory"}

NONCE_LEN = 16
HASH_LEN = 32
SEALED_HASH_LEN = HASH_LEN + primitives.GCM_TAG_LEN
PAYLOAD_LEN = HASH_LEN + SEALED_HASH_LEN + HASH_LEN           # 112
KEY_RESERVED_LEN = PAYLOAD_LEN - 32 - primitives.ED25519_SIG_LEN  # 16
DIRECTORY_RESERVED_LEN = PAYLOAD_LEN - 8 - HASH_LEN            # 72
ENTRY_LEN = 1 + NONCE_LEN + PAYLOAD_LEN                        # 129
ZERO_GCM_NONCE = bytes(primitives.GCM_NONCE_LEN)
MAX_INDEX = 2**63 - 1

ORIGIN = re.compile(r"\A[\x21-\x2a\x2c-\x7e]{1,255}\Z")  # printable ASCII, no space, no '+'


# --- step 1: layout -------------------------------------------------------------------------

@dataclass(frozen=True)
class Entry:
    """One decoded entry. The payload's meaning depends on the type (steps 2 and 4)."""

    type: int
    nonce: bytes
    payload: bytes

    def to_bytes(self) -> bytes:
        return bytes([self.type]) + self.nonce + self.payload

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

    # log-key entries (type 0x03)
    @property
    def log_key(self) -> bytes:
        return self.payload[:32]

    @property
    def key_signature(self) -> bytes:
        return self.payload[32:96]

    # directory entries (type 0x04)
    @property
    def directory_epoch(self) -> int:
        return int.from_bytes(self.payload[:8], "big")

    @property
    def directory_root(self) -> bytes:
        return self.payload[8:40]

    @property
    def reserved(self) -> bytes:
        """The bytes a log-key or directory entry keeps zero (none for records)."""
        if self.type == TYPE_LOG_KEY:
            return self.payload[96:]
        if self.type == TYPE_DIRECTORY:
            return self.payload[40:]
        return b""


def decode_entry(data: bytes) -> Entry:
    """Step 1 (HC-1): exactly 129 bytes, a known type, reserved bytes zero."""
    if len(data) != ENTRY_LEN:
        raise LengthError(f"entry must be {ENTRY_LEN} bytes, got {len(data)}", requirement="HC-1")
    entry_type = data[0]
    if entry_type not in ENTRY_TYPES:
        raise DecodeError(f"unknown entry type 0x{entry_type:02x}", requirement="HC-1")
    entry = Entry(type=entry_type, nonce=bytes(data[1:17]), payload=bytes(data[17:]))
    if any(entry.reserved):
        raise DecodeError(f"reserved bytes of a {TYPE_NAMES[entry_type]} entry must be zero",
                          requirement="HC-1")
    return entry


def decode_entry_b64(text: str, *, requirement: str = "HC-1") -> bytes:
    """An entry in JSON: base64url without padding of its 129 bytes."""
    return b64url_decode_exact(text, ENTRY_LEN, field="entry", requirement=requirement)


def entry_leaf_hash(data: bytes) -> bytes:
    """Step 3 (HC-5): an entry's leaf hash, SHA-256(0x00 || entry)."""
    return merkle.leaf_hash(data)


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
    """Step 9 (HC-13): only the right subject opens the sealed record hash."""
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
    entry: bytes
    leaf_hash: bytes


def build_record_entry(*, entry_type: int, subject: bytes, record_hash: bytes,
                       nonce: bytes) -> BuiltEntry:
    """Step 2: the key server makes a record entry (HC-2, HC-3, HC-4)."""
    if entry_type not in RECORD_TYPES:
        raise ParamsError(f"0x{entry_type:02x} is not a record entry type", requirement="HC-1")
    require_len(nonce, NONCE_LEN, "nonce", "HC-2")
    require_len(record_hash, HASH_LEN, "record hash", "HC-4")
    hid = hash_id_of(subject, nonce, entry_type)
    key = id_key_of(subject, nonce, entry_type)
    index = record_index_of(record_hash)
    sealed = seal_record_hash(key, record_hash, index, entry_type)
    raw = bytes([entry_type]) + nonce + hid + sealed + index
    return BuiltEntry(entry_type=entry_type, subject=subject, nonce=nonce, hash_id=hid,
                      id_key=key, record_hash=record_hash, record_index=index,
                      sealed_hash=sealed, entry=raw, leaf_hash=entry_leaf_hash(raw))


def names_subject(entry: Entry, subject: bytes) -> bool:
    """Step 9 (HC-13): a record entry of the subject's type whose hash_id is the subject's."""
    return (entry.type in RECORD_TYPES
            and hash_id_of(subject, entry.nonce, entry.type) == entry.hash_id)


def require_len(value: bytes, length: int, what: str, requirement: str) -> None:
    if len(value) != length:
        raise LengthError(f"{what} must be {length} bytes, got {len(value)}",
                          requirement=requirement)


# --- step 4: log keys and directory roots ------------------------------------------------------

def check_origin(origin: str) -> bytes:
    """HC-8: the origin is 1..255 printable ASCII characters without space or '+', so it
    is also a valid signed-note key name."""
    if not isinstance(origin, str) or not ORIGIN.match(origin):
        raise DecodeError("origin must be 1..255 printable ASCII characters without spaces "
                          "or '+'", requirement="HC-8")
    return origin.encode("ascii")


def log_key_message(origin: str, index: int, key: bytes) -> bytes:
    """Step 4 (HC-6): what the key in force signs to introduce or rotate a log key. The
    origin was checked where it entered (check_origin: the log's configuration,
    TransparencyLog, LogFollower)."""
    return labelled_context("hashchain-server-key", origin.encode("ascii"), u64be(index), key)


def build_log_key_entry(*, origin: str, index: int, new_key: bytes, signer_seed: bytes,
                        nonce: bytes) -> bytes:
    """Step 4 (HC-6): entry 0 is signed by the new key itself, a rotation by the old key."""
    require_len(nonce, NONCE_LEN, "nonce", "HC-6")
    require_len(new_key, 32, "log key", "HC-6")
    signature = primitives.ed25519_sign(signer_seed, log_key_message(origin, index, new_key))
    return bytes([TYPE_LOG_KEY]) + nonce + new_key + signature + bytes(KEY_RESERVED_LEN)


def verify_log_key_entry(entry: Entry, *, origin: str, index: int,
                         key_in_force: bytes | None, pinned_key: bytes | None) -> bytes:
    """Step 4 (HC-6, HC-7, HC-50): returns the log key in force after this entry.

    Entry 0 introduces the first key and signs itself; a client that pinned a key (from
    its configuration, or on first use) refuses another. A later key entry is signed by
    the key in force before it.
    """
    if entry.type != TYPE_LOG_KEY:
        raise DecodeError("not a log-key entry", requirement="HC-6")
    if index == 0:
        signer = entry.log_key
        if pinned_key is not None and pinned_key != entry.log_key:
            raise BindingError("entry 0 introduces another key than the pinned one",
                               requirement="HC-7")
    else:
        if key_in_force is None:
            raise LinkError("a log-key rotation before any key was introduced",
                            requirement="HC-6")
        signer = key_in_force
    primitives.ed25519_verify(signer, log_key_message(origin, index, entry.log_key),
                              entry.key_signature, requirement="HC-6")
    return entry.log_key


def build_directory_entry(*, epoch: int, root: bytes, nonce: bytes) -> bytes:
    """Step 4 (HC-47): a key-directory root the log commits to, for one epoch."""
    if not 0 <= epoch <= MAX_INDEX:
        raise ParamsError("a directory epoch is in 0..2^63-1", requirement="HC-47")
    require_len(root, HASH_LEN, "directory root", "HC-47")
    require_len(nonce, NONCE_LEN, "nonce", "HC-47")
    return (bytes([TYPE_DIRECTORY]) + nonce + u64be(epoch) + root
            + bytes(DIRECTORY_RESERVED_LEN))


# --- a model of the log (vectors, tests and the reference server's logic) -------------------------

@dataclass(frozen=True)
class LogKey:
    """A log signing key: its seed (held by the log only) and public key."""

    seed: bytes

    @property
    def public(self) -> bytes:
        return primitives.ed25519_public_key(self.seed)


class TransparencyLog:
    """An in-memory log: entries, their Merkle tree, the log keys, checkpoint signing.

    Entry 0 introduces the first key (step 4). `rotate_key` appends a key entry signed by
    the key in force; until `retire_previous_key` is called, checkpoints are signed by
    both keys, so clients that know only the old key can verify the checkpoint that
    carries the rotation (HC-50).
    """

    def __init__(self, *, origin: str, key_seed: bytes, nonce0: bytes) -> None:
        check_origin(origin)
        self.origin = origin
        self.entries: list[bytes] = []
        self.tree = merkle.MerkleTree()
        self.keys: list[LogKey] = [LogKey(key_seed)]
        self._append(build_log_key_entry(origin=origin, index=0, new_key=self.keys[0].public,
                                         signer_seed=key_seed, nonce=nonce0))

    @property
    def size(self) -> int:
        return len(self.entries)

    @property
    def key(self) -> LogKey:
        """The key in force (introduced by the last key entry)."""
        return self.keys[-1]

    def _append(self, data: bytes) -> int:
        decode_entry(data)
        self.entries.append(data)
        return self.tree.append(data)

    def append_record(self, *, entry_type: int, subject: bytes, record_hash: bytes,
                      nonce: bytes) -> tuple[int, BuiltEntry]:
        built = build_record_entry(entry_type=entry_type, subject=subject,
                                   record_hash=record_hash, nonce=nonce)
        return self._append(built.entry), built

    def append_directory_root(self, *, epoch: int, root: bytes, nonce: bytes) -> int:
        return self._append(build_directory_entry(epoch=epoch, root=root, nonce=nonce))

    def append_raw(self, data: bytes) -> int:
        """Append bytes already laid out as an entry (checked by decode_entry)."""
        return self._append(data)

    def rotate_key(self, new_seed: bytes, *, nonce: bytes) -> int:
        new = LogKey(new_seed)
        index = self._append(build_log_key_entry(origin=self.origin, index=self.size,
                                                 new_key=new.public,
                                                 signer_seed=self.key.seed, nonce=nonce))
        self.keys.append(new)
        return index

    def retire_previous_key(self) -> None:
        del self.keys[:-1]

    def checkpoint(self, size: int | None = None) -> note.Checkpoint:
        size = self.size if size is None else size
        return note.Checkpoint(origin=self.origin, size=size, root_hash=self.tree.root(size))

    def signed_checkpoint(self, size: int | None = None) -> note.Note:
        """Step 5 (HC-8): the checkpoint signed by every key not yet retired."""
        return note.sign_checkpoint(self.checkpoint(size),
                                    seeds=[k.seed for k in reversed(self.keys)])

    def verifiers(self) -> list[note.Verifier]:
        return [note.log_verifier(self.origin, k.public) for k in self.keys]

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        return self.tree.inclusion_proof(index, self.size if size is None else size)

    def consistency_proof(self, size1: int, size2: int | None = None) -> list[bytes]:
        return self.tree.consistency_proof(size1, self.size if size2 is None else size2)
