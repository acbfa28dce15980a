"""Vectors of the hashchain flow: profile v1 and the mute compatibility profile.

Profile v1.
  build-record-entry      a UID and a publication entry with every intermediate (HC-2..HC-5)
  build-server-key-entry  entry 0 and a key rotation (HC-6)
  verify-chain            short chains with every entry hash: the base chain, a chain with a
                          key rotation, an extension from a trusted head; negatives from the
                          mutation families below, each with its failure class
  detect-fork             two signed heads for one position
  lookup                  the entries of one identity, with the hash_id tested per entry
  verify-uid-create, verify-uid-update, verify-uid-reply, open-sealed-uid,
  verify-keyinit, verify-flush
                          the UID and KeyInit messages, positive and mutated
  accumulated-chain       10,000 generated entries folded into one digest

Mutation families of verify-chain (base chain of 6 entries): a bit flipped in each field
of a middle and of the last entry; the type byte turned into an unknown type and into the
server-key type; an entry truncated by one byte and extended by one; two entries swapped;
an entry dropped (gap); the chain cut before its head (truncation) or going past it; a head
over another hash (fork); a head with a flipped signature, signed by a stranger, for
another origin, stale, from the future, behind the trusted head (rollback); entry 0 not a
keyserver-key entry; a pinned key that differs; a rotation signed by a stranger; a head
signed with the rotated-out key; reserved bytes set; a trusted head of another chain.

Profile mute (byte-exact with mutecomm/mute): CKDF (including the original's published
TestCKDF values), 153-byte entries with every intermediate, parsing of the original's
published TestEntry, chain verification with the zero hash for entry 0, lookup, the
identity mapping (including every case of the original's identity_test.go), and an
accumulated vector over 10,000 entries.
"""

from __future__ import annotations

import base64
import copy
import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

from keyflows.spec import hashchain_mute as mute
from keyflows.spec import hashchain_v1chain as hc
from keyflows.spec import primitives
from keyflows.spec.drbg import Drbg
from keyflows.spec.encoding import b64url_decode, b64url_encode
from keyflows.vectors import hashchain_directory
from keyflows.vectors.framework import (
    Case,
    Failure,
    Flag,
    Outcome,
    VectorFile,
    compare,
    dispatch,
    expect_rejection,
    hx,
)

FLOW = "hashchain"
ORIGIN = "keys.example.org"
DOMAINS = ("example.org",)
NOW = 1_700_000_000
HEAD_TIME = NOW - 60
ACCUMULATED_COUNT = 10_000

OP_BUILD = "build-record-entry"
OP_KEY_ENTRY = "build-server-key-entry"
OP_VERIFY = "verify-chain"
OP_FORK = "detect-fork"
OP_LOOKUP = "lookup"
OP_UID_CREATE = "verify-uid-create"
OP_UID_UPDATE = "verify-uid-update"
OP_UID_REPLY = "verify-uid-reply"
OP_SEALED_UID = "open-sealed-uid"
OP_KEYINIT = "verify-keyinit"
OP_FLUSH = "verify-flush"
OP_ACCUMULATED = "accumulated-chain"

OP_M_CKDF = "ckdf"
OP_M_BUILD = "build-entry"
OP_M_PARSE = "parse-entry"
OP_M_VERIFY = "verify-chain"
OP_M_LOOKUP = "lookup"
OP_M_MAP = "map-identity"
OP_M_ACCUMULATED = "accumulated-chain"

NOTES_V1: dict[str, Flag] = {
    "Valid": Flag("A well-formed input the consumer accepts.",
                  "Accept; recompute every intermediate and output."),
    "Producer": Flag("The case also carries what the producer started from (seeds, nonces, "
                     "records).", "A producer recomputes the inputs byte for byte from it."),
    "KeyRotation": Flag("The chain rotates the keyserver key (a type 0x03 entry after entry 0).",
                        "Verify later heads with the new key (HC-7)."),
    "Extension": Flag("The client starts from a trusted head instead of entry 0.",
                      "Link the first entry to the trusted hash (HC-12)."),
    "Accumulated": Flag("Many generated entries folded into one digest.",
                        "Regenerate the entries as described and compare the digest."),
    "BitFlip": Flag("One bit of one field is flipped.",
                    "Reject where the field is protected: the next entry's link, the head, a "
                    "signature, or the decoder for the type byte."),
    "WrongType": Flag("The type byte names an unknown type, or the server-key type over a "
                      "record payload.", "Reject at the decoder (failure class decode)."),
    "Truncated": Flag("A value is one byte (or one entry) short.",
                      "Reject: length for an entry, link for a chain that ends early."),
    "TrailingBytes": Flag("A value is one byte (or one entry) long.",
                          "Reject: length for an entry, link for a chain past its head."),
    "Reordered": Flag("Two entries trade places.", "Reject at the link (failure class link)."),
    "Gap": Flag("An entry is missing from the middle.", "Reject at the link."),
    "Fork": Flag("A validly signed head disagrees with the chain or with another head.",
                 "Reject (failure class link) and keep both as proof (HC-10)."),
    "WrongSignature": Flag("A signature is flipped or made by another key.",
                           "Reject (failure class signature)."),
    "WrongOrigin": Flag("A head or message is for another keyserver origin.",
                        "Reject (binding for a head's origin, signature where the origin is "
                        "only inside the signed message)."),
    "Stale": Flag("A head or request is older than allowed, or dated in the future.",
                  "Reject (failure class expired)."),
    "Rollback": Flag("A head behind the client's trusted head.",
                     "Reject (failure class replay)."),
    "PinnedKey": Flag("The client pinned another keyserver key than entry 0 introduces.",
                      "Reject (failure class binding)."),
    "Reserved": Flag("Reserved bytes are not zero.", "Reject (failure class decode)."),
    "ForeignContext": Flag("An intact value presented for another identity, UID or context.",
                           "Reject (failure class binding)."),
    "MissingSignature": Flag("A required signature is absent.",
                             "Reject (failure class signature)."),
    "SameKeys": Flag("SIGKEY and SIGESCROW are one key.", "Reject (failure class binding)."),
    "Expired": Flag("A UID or KeyInit is outside its validity period at `now`.",
                    "Reject (failure class expired)."),
    "ParamsOutOfRange": Flag("A validity period or lifetime is empty or too long.",
                             "Reject (failure class params)."),
    "BadIdentity": Flag("An identity not in mapped form or outside the served domains.",
                        "Reject (decode for the syntax, binding for the domain)."),
    "UnknownMember": Flag("An object carries a member the wire format does not define.",
                          "Reject (failure class decode)."),
    "MissingMember": Flag("A required member is absent.", "Reject (failure class decode)."),
    "LowOrderPoint": Flag("The X25519 key is of low order; signatures are re-made over it.",
                          "Reject at the point check (failure class point)."),
    "Replay": Flag("A counter that does not advance, or a nonce used before.",
                   "Reject (failure class replay)."),
    "NotACreation": Flag("A creation that carries update fields (msg_count above 0).",
                         "Reject (failure class binding)."),
    "BrokenLink": Flag("An update names another previous UID.", "Reject (failure class link)."),
    "Unauthorised": Flag("A signer that may not authorise the change.",
                         "Reject (failure class authz)."),
    "WrongKey": Flag("A sealed value is opened with another key.",
                     "Reject at the AEAD (failure class aead)."),
}

NOTES_MUTE: dict[str, Flag] = {
    "Compat": Flag("The Mute original's bytes, reproduced exactly (HC-30 .. HC-34).",
                   "An implementation of the mute profile produces and accepts exactly this."),
    "Published": Flag("The value was published by the original (tests/kat/README.md).",
                      "Match it exactly."),
    "Accumulated": Flag("Many generated entries folded into one digest.",
                        "Regenerate the entries as described and compare the digest."),
    "BitFlip": Flag("One bit of one field of an entry is flipped.",
                    "Reject: the entry no longer hashes to its HASH, or to the next prev."),
    "WrongType": Flag("TYPE is not 0x01.", "Reject (failure class decode)."),
    "Truncated": Flag("An entry is one byte short, or the chain does not start at entry 0.",
                      "Reject (length for the entry, link for the chain)."),
    "TrailingBytes": Flag("An entry is one byte long.", "Reject (failure class length)."),
    "NonCanonicalBase64": Flag("The text is not 204 characters of standard base64: another "
                               "alphabet, a line break, a stray character.",
                               "Reject (failure class decode)."),
    "Reordered": Flag("Two entries trade places.", "Reject (failure class link)."),
    "Gap": Flag("An entry is missing.", "Reject (failure class link)."),
    "BadIdentity": Flag("An identity the original's Map refuses.",
                        "Reject (failure class decode)."),
    "GoSemantics": Flag("Exercises a detail of Go's strings.TrimSpace / ToLower that differs "
                        "from naive ports (Unicode spaces, KELVIN SIGN, U+0130).",
                        "Map exactly as Go does."),
}


# --- shared helpers -----------------------------------------------------------------------------

def _flip(data: bytes, index: int, bit: int = 0) -> bytes:
    out = bytearray(data)
    out[index] ^= 1 << bit
    return bytes(out)


def _head_wire(head: hc.SignedHead) -> dict[str, Any]:
    return hc.head_to_wire(head)


@dataclass(frozen=True)
class ChainMaterial:
    """A short chain and what made it; all randomness from Drbg(label)."""

    label: str
    log: hc.ChainLog
    server_seed: bytes
    nonce0: bytes
    records: tuple[dict[str, Any], ...]   # per record entry: type, subject, record_hash, nonce
    rotation: dict[str, Any] | None        # new_seed, nonce, position
    old_seed: bytes

    def head(self, timestamp: int = HEAD_TIME, *, position: int | None = None) -> hc.SignedHead:
        if position is None:
            return self.log.head(timestamp)
        return hc.sign_head(origin=ORIGIN, position=position,
                            head_hash=self.log.hashes[position], timestamp=timestamp,
                            server_seed=self.log.server_seed)


BASE_SUBJECTS: tuple[tuple[int, bytes], ...] = (
    (hc.TYPE_UID, b"alice@example.org"),
    (hc.TYPE_UID, b"bob@example.org"),
    (hc.TYPE_PUBLICATION, b"alice/notes.example"),
    (hc.TYPE_UID, b"carol@example.org"),
    (hc.TYPE_UID, b"dave@example.org"),
)


@cache
def base_chain() -> ChainMaterial:
    return _chain("hashchain/v1/base-chain", BASE_SUBJECTS, rotate_after=None)


@cache
def rotation_chain() -> ChainMaterial:
    return _chain("hashchain/v1/rotation-chain", BASE_SUBJECTS[:2], rotate_after=1)


def _chain(label: str, subjects: Sequence[tuple[int, bytes]],
           rotate_after: int | None) -> ChainMaterial:
    rnd = Drbg(label)
    server_seed, nonce0 = rnd(32), rnd(16)
    log = hc.ChainLog(origin=ORIGIN, server_seed=server_seed, nonce0=nonce0)
    records = []
    rotation = None
    for i, (entry_type, subject) in enumerate(subjects):
        record_hash, nonce = rnd(32), rnd(16)
        record = {"entry_type": entry_type, "subject": subject.decode("ascii"),
                  "record_hash": record_hash, "nonce": nonce}
        log.append_record(entry_type=entry_type, subject=subject, record_hash=record_hash,
                          nonce=nonce)
        records.append(record)
        if rotate_after is not None and i == rotate_after - 1:
            new_seed, nonce = rnd(32), rnd(16)
            position = log.rotate_key(new_seed, nonce=nonce)
            rotation = {"new_seed": new_seed, "nonce": nonce, "position": position}
    return ChainMaterial(label=label, log=log, server_seed=server_seed, nonce0=nonce0,
                         records=tuple(records), rotation=rotation, old_seed=server_seed)


def _relink(entries: list[bytes], start: int) -> list[bytes]:
    """Re-link entries[start + 1:] after entries[start] changed (so only it is wrong)."""
    out = list(entries)
    for i in range(start + 1, len(out)):
        out[i] = out[i][:hc.PREV_OFFSET] + hc.entry_hash(out[i - 1])
    return out


# --- v1: entries ------------------------------------------------------------------------------

def _build_cases() -> list[Case]:
    rnd = Drbg("hashchain/v1/build-record-entry")
    specs = [
        ("uid", hc.TYPE_UID, b"alice@example.org", hc.ZERO_HASH,
         "a UID entry for alice@example.org"),
        ("publication", hc.TYPE_PUBLICATION, hc.publication_subject("alice", "notes.example"),
         None, "a keypair-publication entry for user alice, application notes.example"),
    ]
    cases = []
    for slug, entry_type, subject, prev, comment in specs:
        record_hash, nonce = rnd(32), rnd(16)
        prev_hash = prev if prev is not None else rnd(32)
        built = hc.build_record_entry(entry_type=entry_type, subject=subject,
                                      record_hash=record_hash, nonce=nonce, prev_hash=prev_hash)
        cases.append(Case(
            id=f"hc-v1/build/{slug}", comment=comment, flags=("Valid",),
            requirements=("HC-1", "HC-2", "HC-3", "HC-4", "HC-5"), operation=OP_BUILD,
            inputs={"entry_type": entry_type, "subject": subject.decode("ascii"),
                    "record_hash": record_hash, "nonce": nonce, "prev_hash": prev_hash},
            intermediates=_build_intermediates(built),
            outputs={"entry": built.entry, "entry_hash": built.entry_hash}))
    return cases


def _build_intermediates(built: hc.BuiltEntry) -> dict[str, Any]:
    return {"hash_id": built.hash_id, "id_key": built.id_key,
            "record_index": built.record_index,
            "sealed_hash_aad": hc.sealed_hash_aad(built.entry_type, built.record_index),
            "sealed_hash": built.sealed_hash}


def _key_entry_cases() -> list[Case]:
    rot = rotation_chain()
    assert rot.rotation is not None
    position = rot.rotation["position"]
    specs = [
        ("entry-0", 0, rot.old_seed, rot.old_seed, rot.nonce0, hc.ZERO_HASH,
         "entry 0 introduces the keyserver key and is signed by it"),
        ("rotation", position, rot.rotation["new_seed"], rot.old_seed, rot.rotation["nonce"],
         rot.log.hashes[position - 1], "a rotation, signed by the key in force before it"),
    ]
    cases = []
    for slug, pos, new_seed, signer_seed, nonce, prev, comment in specs:
        new_key = primitives.ed25519_public_key(new_seed)
        message = hc.server_key_message(ORIGIN, pos, new_key, prev)
        entry = hc.build_server_key_entry(origin=ORIGIN, position=pos, new_key=new_key,
                                          signer_seed=signer_seed, nonce=nonce, prev_hash=prev)
        cases.append(Case(
            id=f"hc-v1/server-key/{slug}", comment=comment, flags=("Valid", "KeyRotation")
            if pos else ("Valid",), requirements=("HC-1", "HC-6"), operation=OP_KEY_ENTRY,
            inputs={"origin": ORIGIN, "position": pos, "new_key_seed": new_seed,
                    "signer_seed": signer_seed, "nonce": nonce, "prev_hash": prev},
            intermediates={"new_key": new_key, "message": message,
                           "signature": primitives.ed25519_sign(signer_seed, message)},
            outputs={"entry": entry, "entry_hash": hc.entry_hash(entry)}))
        assert rot.log.entries[pos] == entry
    return cases


# --- v1: verify-chain ----------------------------------------------------------------------------

def _chain_inputs(entries: Sequence[bytes], head: hc.SignedHead | dict[str, Any], *,
                  now: int = NOW, pinned_key: bytes | None = None,
                  trusted: hc.TrustedState | None = None, origin: str = ORIGIN
                  ) -> dict[str, Any]:
    return {
        "origin": origin, "now": now, "max_age": hc.DEFAULT_MAX_HEAD_AGE,
        "pinned_key": pinned_key,
        "trusted": None if trusted is None else {
            "position": trusted.position, "hash": trusted.hash,
            "server_key": trusted.server_key,
            "server_key_position": trusted.server_key_position},
        "entries": list(entries),
        "head": head if isinstance(head, dict) else _head_wire(head),
    }


def _producer(m: ChainMaterial, head: hc.SignedHead) -> dict[str, Any]:
    return {"server_seed": m.server_seed, "nonce0": m.nonce0,
            "records": [dict(r) for r in m.records],
            "rotation": None if m.rotation is None else dict(m.rotation),
            "head_timestamp": head.timestamp}


def _verify_negative(slug: str, comment: str, flags: tuple[str, ...],
                     requirements: tuple[str, ...], failure: Failure,
                     inputs: dict[str, Any]) -> Case:
    return Case(id=f"hc-v1/verify-chain/{slug}", comment=comment, flags=flags,
                requirements=requirements, operation=OP_VERIFY, inputs=inputs, failure=failure)


LINK = Failure("link", "3")
HEAD_LINK = Failure("link", "5")


def _verify_positives() -> list[Case]:
    base, rot = base_chain(), rotation_chain()
    cases = []
    for m, slug, flags, comment in (
        (base, "base", ("Valid", "Producer"), "a chain of 6 entries: the keyserver key, four "
         "UIDs and one publication, with a head over its last entry"),
        (rot, "rotation", ("Valid", "Producer", "KeyRotation"), "a chain that rotates the "
         "keyserver key at position 2; its head is signed by the new key"),
    ):
        head = m.head()
        cases.append(Case(
            id=f"hc-v1/verify-chain/{slug}", comment=comment, flags=flags,
            requirements=("HC-5", "HC-6", "HC-7", "HC-8", "HC-9", "HC-12"), operation=OP_VERIFY,
            inputs={**_chain_inputs(m.log.entries, head,
                                    pinned_key=primitives.ed25519_public_key(m.old_seed)),
                    "producer": _producer(m, head)},
            intermediates={"entry_hashes": list(m.log.hashes)},
            outputs=_state_out(m.log)))
    trusted = _trusted(base, 3)
    head = base.head()
    cases.append(Case(
        id="hc-v1/verify-chain/extension", comment="the client trusts the head at position 3 "
        "and verifies entries 4 and 5 against a new head", flags=("Valid", "Extension"),
        requirements=("HC-5", "HC-9", "HC-11", "HC-12"), operation=OP_VERIFY,
        inputs=_chain_inputs(base.log.entries[4:], head, trusted=trusted),
        intermediates={"entry_hashes": list(base.log.hashes[4:])},
        outputs=_state_out(base.log)))
    return cases


def _trusted(m: ChainMaterial, position: int) -> hc.TrustedState:
    return hc.TrustedState(position=position, hash=m.log.hashes[position],
                           server_key=primitives.ed25519_public_key(m.old_seed),
                           server_key_position=0)


def _state_out(log: hc.ChainLog) -> dict[str, Any]:
    return {"position": log.position, "hash": log.head_hash, "server_key": log.server_key}


# Field offsets of a record entry, for the bit-flip family.
RECORD_FIELDS = (("nonce", 1), ("hash-id", 17), ("sealed-hash", 49), ("record-index", 97),
                 ("prev-hash", 129))


def _verify_bitflips() -> list[Case]:
    base = base_chain()
    entries, head = base.log.entries, base.head()
    cases = []
    for position, where in ((2, "a middle entry"), (5, "the last entry")):
        for name, offset in RECORD_FIELDS:
            mutated = list(entries)
            mutated[position] = _flip(entries[position], offset + 3)
            if name == "prev-hash":
                failure, reqs, why = LINK, ("HC-5",), "its own link breaks"
            elif position == 5:
                failure, reqs, why = HEAD_LINK, ("HC-10",), "the head no longer matches"
            else:
                failure, reqs, why = LINK, ("HC-5",), "the next entry's link breaks"
            cases.append(_verify_negative(
                f"bitflip-{name}-at-{position}", f"one bit of {name} of {where} (position "
                f"{position}) flipped: {why}", ("BitFlip",), reqs, failure,
                _chain_inputs(mutated, head)))
    for slug, value, why in (("unknown", 0x04, "an unknown type 0x04"),
                             ("server-key", hc.TYPE_SERVER_KEY, "the server-key type over a "
                              "record payload: its reserved bytes are not zero")):
        mutated = list(entries)
        mutated[2] = bytes([value]) + entries[2][1:]
        cases.append(_verify_negative(
            f"type-{slug}", f"the type byte of entry 2 is {why}", ("WrongType",), ("HC-1",),
            Failure("decode", "1"), _chain_inputs(mutated, head)))
    return cases


def _verify_structure() -> list[Case]:
    base = base_chain()
    entries, head = list(base.log.entries), base.head()
    extra = Drbg("hashchain/v1/trailing-byte")(1)
    swapped = list(entries)
    swapped[2], swapped[3] = swapped[3], swapped[2]
    length = Failure("length", "1")
    return [
        _verify_negative("entry-truncated", "entry 3 is one byte short (160 bytes)",
                         ("Truncated",), ("HC-1",), length,
                         _chain_inputs([*entries[:3], entries[3][:-1], *entries[4:]], head)),
        _verify_negative("entry-trailing-byte", "entry 3 has one trailing byte (162 bytes)",
                         ("TrailingBytes",), ("HC-1",), length,
                         _chain_inputs([*entries[:3], entries[3] + extra, *entries[4:]], head)),
        _verify_negative("reordered", "entries 2 and 3 trade places", ("Reordered",),
                         ("HC-5",), LINK, _chain_inputs(swapped, head)),
        _verify_negative("gap", "entry 3 is missing", ("Gap",), ("HC-5",), LINK,
                         _chain_inputs(entries[:3] + entries[4:], head)),
        _verify_negative("truncated-chain", "the last entry is missing: the chain ends before "
                         "the head", ("Truncated",), ("HC-9",), HEAD_LINK,
                         _chain_inputs(entries[:-1], head)),
        _verify_negative("past-head", "the chain goes on past an older head at position 3",
                         ("TrailingBytes",), ("HC-9",), HEAD_LINK,
                         _chain_inputs(entries, base.head(position=3))),
        _verify_negative("entry-0-not-server-key", "the chain starts with a UID entry",
                         ("WrongType",), ("HC-6",), Failure("decode", "4"),
                         _chain_inputs(_relink([entries[1][:hc.PREV_OFFSET] + hc.ZERO_HASH,
                                                *entries[2:]], 0), head)),
    ]


def _verify_heads() -> list[Case]:
    base = base_chain()
    entries, head = base.log.entries, base.head()
    wire = _head_wire(head)
    rnd = Drbg("hashchain/v1/heads")
    stranger = rnd(32)
    sig = Failure("signature", "5")
    forked = hc.sign_head(origin=ORIGIN, position=head.position, head_hash=rnd(32),
                          timestamp=HEAD_TIME, server_seed=base.server_seed)
    flipped = {**wire, "signature": b64url_encode(_flip(head.signature, 0))}
    strange = hc.sign_head(origin=ORIGIN, position=head.position, head_hash=head.hash,
                           timestamp=HEAD_TIME, server_seed=stranger)
    other_origin = hc.sign_head(origin="other.example.org", position=head.position,
                                head_hash=head.hash, timestamp=HEAD_TIME,
                                server_seed=base.server_seed)
    stale = base.head(NOW - hc.DEFAULT_MAX_HEAD_AGE - 1)
    future = base.head(NOW + hc.MAX_CLOCK_SKEW + 1)
    return [
        _verify_negative("fork-head", "a validly signed head over another hash at the chain's "
                         "last position", ("Fork",), ("HC-10",), HEAD_LINK,
                         _chain_inputs(entries, forked)),
        _verify_negative("head-signature-bitflip", "the head's signature has one bit flipped",
                         ("WrongSignature",), ("HC-8",), sig, _chain_inputs(entries, flipped)),
        _verify_negative("head-signed-by-stranger", "the head is signed by a key the chain "
                         "never introduced", ("WrongSignature",), ("HC-8",), sig,
                         _chain_inputs(entries, strange)),
        _verify_negative("head-other-origin", "the head is for another origin",
                         ("WrongOrigin",), ("HC-8",), Failure("binding", "5"),
                         _chain_inputs(entries, other_origin)),
        _verify_negative("head-stale", f"the head is {hc.DEFAULT_MAX_HEAD_AGE + 1} s old",
                         ("Stale",), ("HC-11",), Failure("expired", "5"),
                         _chain_inputs(entries, stale)),
        _verify_negative("head-future", f"the head is dated {hc.MAX_CLOCK_SKEW + 1} s in the "
                         "future", ("Stale",), ("HC-11",), Failure("expired", "5"),
                         _chain_inputs(entries, future)),
        _verify_negative("head-rollback", "the client trusts position 5; the server shows a "
                         "head at position 3", ("Rollback",), ("HC-11",),
                         Failure("replay", "5"),
                         _chain_inputs([], base.head(position=3), trusted=_trusted(base, 5))),
        _verify_negative("extension-foreign-trusted-head", "the client's trusted head at "
                         "position 3 has another hash (it saw another chain)", ("Fork",),
                         ("HC-5",), LINK,
                         _chain_inputs(entries[4:], head,
                                       trusted=hc.TrustedState(
                                           position=3, hash=rnd(32),
                                           server_key=base.log.server_key,
                                           server_key_position=0))),
    ]


def _verify_keys() -> list[Case]:
    rot = rotation_chain()
    assert rot.rotation is not None
    rnd = Drbg("hashchain/v1/keys")
    entries = rot.log.entries
    position = rot.rotation["position"]
    stranger = rnd(32)
    forged = hc.build_server_key_entry(origin=ORIGIN, position=position,
                                       new_key=primitives.ed25519_public_key(stranger),
                                       signer_seed=stranger, nonce=rot.rotation["nonce"],
                                       prev_hash=rot.log.hashes[position - 1])
    with_forged = _relink([*entries[:position], forged, *entries[position + 1:]], position)
    forged_head = hc.sign_head(origin=ORIGIN, position=len(entries) - 1,
                               head_hash=hc.entry_hash(with_forged[-1]), timestamp=HEAD_TIME,
                               server_seed=stranger)
    old_key_head = hc.sign_head(origin=ORIGIN, position=rot.log.position,
                                head_hash=rot.log.head_hash, timestamp=HEAD_TIME,
                                server_seed=rot.old_seed)
    reserved = _relink([*entries[:position], entries[position][:-33] + b"\x01"
                        + entries[position][-32:], *entries[position + 1:]], position)
    return [
        _verify_negative("rotation-signed-by-stranger", "the rotation entry is signed by the "
                         "key it introduces instead of the key in force", ("WrongSignature",
                                                                           "KeyRotation"),
                         ("HC-6",), Failure("signature", "4"),
                         _chain_inputs(with_forged, forged_head)),
        _verify_negative("head-signed-by-rotated-out-key", "after the rotation the head is "
                         "signed with the old key", ("WrongSignature", "KeyRotation"),
                         ("HC-7", "HC-8"), Failure("signature", "5"),
                         _chain_inputs(entries, old_key_head)),
        _verify_negative("pinned-key-differs", "the client pinned another keyserver key",
                         ("PinnedKey",), ("HC-7",), Failure("binding", "4"),
                         _chain_inputs(entries, rot.head(),
                                       pinned_key=primitives.ed25519_public_key(rnd(32)))),
        _verify_negative("server-key-reserved", "the last reserved byte of the rotation entry "
                         "is 0x01", ("Reserved", "KeyRotation"), ("HC-1",),
                         Failure("decode", "1"),
                         _chain_inputs(reserved, rot.head())),
    ]


def _fork_cases() -> list[Case]:
    base = base_chain()
    rnd = Drbg("hashchain/v1/fork")
    head = base.head()
    other = hc.sign_head(origin=ORIGIN, position=head.position, head_hash=rnd(32),
                         timestamp=HEAD_TIME + 1, server_seed=base.server_seed)
    key = base.log.server_key

    def inputs(b: hc.SignedHead) -> dict[str, Any]:
        return {"origin": ORIGIN, "head_a": _head_wire(head), "head_b": _head_wire(b),
                "key_a": key, "key_b": key}

    return [
        Case(id="hc-v1/detect-fork/agree", comment="two heads for one position with one hash",
             flags=("Valid",), requirements=("HC-8", "HC-10"), operation=OP_FORK,
             inputs=inputs(base.head(HEAD_TIME + 5))),
        Case(id="hc-v1/detect-fork/disagree", comment="two validly signed heads for position "
             f"{head.position} with different hashes: proof of a fork", flags=("Fork",),
             requirements=("HC-10",), operation=OP_FORK, inputs=inputs(other),
             failure=Failure("link", "5")),
    ]


def _lookup_cases() -> list[Case]:
    base = base_chain()
    cases = []
    for identity, entry_type in (("alice@example.org", hc.TYPE_UID),
                                 ("erin@example.org", hc.TYPE_UID)):
        subject = identity.encode("ascii")
        hash_ids = [hc.hash_id_of(subject, e[1:17], entry_type) if e[0] == entry_type else None
                    for e in base.log.entries]
        matches = hc.lookup(identity, base.log.entries, entry_type=entry_type)
        cases.append(Case(
            id=f"hc-v1/lookup/{identity.split('@')[0]}", comment=f"look up {identity} in the "
            f"base chain ({len(matches)} match)", flags=("Valid",),
            requirements=("HC-2", "HC-3", "HC-13", "HC-14"), operation=OP_LOOKUP,
            inputs={"identity": identity, "entry_type": entry_type,
                    "entries": list(base.log.entries)},
            intermediates={"hash_ids": hash_ids},
            outputs={"matches": [{"position": m.position, "record_index": m.record_index,
                                  "record_hash": m.record_hash} for m in matches]}))
    return cases


# --- v1: UIDs, replies, KeyInits -----------------------------------------------------------------

@dataclass(frozen=True)
class User:
    identity: str
    sigkey_seed: bytes
    escrow_seed: bytes
    x25519_private: bytes
    rnd: Drbg

    @property
    def sigkey(self) -> bytes:
        return primitives.ed25519_public_key(self.sigkey_seed)


@cache
def alice() -> User:
    rnd = Drbg("hashchain/v1/uid/alice")
    return User("alice@example.org", rnd(32), rnd(32), rnd(32), rnd)


def _content(user: User, *, msg_count: int = 0, previous: bytes | None = None,
             sigkey_seed: bytes | None = None, escrow_seed: bytes | None = None,
             not_before: int = NOW - 3600, not_after: int = NOW + 30 * 86400,
             identity: str | None = None, x25519: bytes | None = None) -> hc.UidContent:
    base = base_chain()
    return hc.UidContent(
        identity=identity or user.identity, msg_count=msg_count, not_before=not_before,
        not_after=not_after,
        sigkey=primitives.ed25519_public_key(sigkey_seed or user.sigkey_seed),
        sigescrow=primitives.ed25519_public_key(escrow_seed or user.escrow_seed),
        x25519=x25519 or primitives.x25519_public_key(user.x25519_private),
        last_entry=hc.LastEntry(position=base.log.position, hash=base.log.head_hash),
        previous=previous)


def _create(user: User, **kw: Any) -> hc.Uid:
    escrow = kw.pop("sign_escrow", user.escrow_seed)
    return hc.sign_uid(_content(user, **kw), sigkey_seed=kw.get("sigkey_seed")
                       or user.sigkey_seed, sigescrow_seed=escrow)


@cache
def first_uid() -> hc.Uid:
    return _create(alice())


@cache
def update_material() -> tuple[bytes, bytes]:
    """(new SIGKEY seed, new SIGESCROW seed) of Alice's updates."""
    rnd = Drbg("hashchain/v1/uid/alice-update")
    return rnd(32), rnd(32)


def _update(*, msg_count: int = 1, previous: bytes | None = None, escrow: bytes | None = None,
            role: str = "sigkey", signer: bytes | None = None,
            escrow_signs: bool = False, identity: str | None = None) -> hc.Uid:
    user, first = alice(), first_uid()
    new_sigkey, _ = update_material()
    content = _content(user, msg_count=msg_count,
                       previous=previous if previous is not None else hc.uid_record_hash(first),
                       sigkey_seed=new_sigkey, escrow_seed=escrow, identity=identity)
    return hc.sign_uid(content, sigkey_seed=new_sigkey,
                       sigescrow_seed=(escrow or user.escrow_seed) if escrow_signs else None,
                       previous_seed=signer or (user.sigkey_seed if role == "sigkey"
                                                else user.escrow_seed),
                       previous_role=role)


def _uid_intermediates(uid: hc.Uid) -> dict[str, Any]:
    content = hc.uid_content_bytes(uid.content)
    record_hash = hc.uid_record_hash(uid)
    out: dict[str, Any] = {
        "content": content,
        "sigkey_message": hc.uid_signature_message("sigkey", content),
        "sigescrow_message": hc.uid_signature_message("sigescrow", content),
        "record_hash": record_hash, "record_index": hc.record_index_of(record_hash)}
    if uid.previous_role is not None:
        out["previous_message"] = hc.uid_signature_message(f"previous-{uid.previous_role}",
                                                           content)
    return out


def _wire_with(uid: hc.Uid, path: tuple[str, ...], value: Any) -> dict[str, Any]:
    wire = copy.deepcopy(hc.uid_to_wire(uid))
    node = wire
    for key in path[:-1]:
        node = node[key]
    if value is _DELETE:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return wire


_DELETE = object()


def _uid_create_cases() -> list[Case]:
    user, uid = alice(), first_uid()
    rnd = Drbg("hashchain/v1/uid/create-mutations")
    wire = hc.uid_to_wire(uid)
    sig = Failure("signature", "8")

    def case(slug: str, comment: str, flags: tuple[str, ...], reqs: tuple[str, ...],
             failure: Failure | None, uid_wire: dict[str, Any], *, now: int = NOW,
             domains: Sequence[str] = DOMAINS, extra: Mapping[str, Any] | None = None
             ) -> Case:
        valid = failure is None
        return Case(id=f"hc-v1/uid-create/{slug}", comment=comment, flags=flags,
                    requirements=reqs, operation=OP_UID_CREATE,
                    inputs={"uid": uid_wire, "now": now, "domains": list(domains),
                            **(extra or {})},
                    intermediates=_uid_intermediates(uid) if valid else {},
                    outputs={"record_hash": hc.uid_record_hash(uid)} if valid else {},
                    failure=failure)

    return [
        case("valid", "Alice's first UID, signed by SIGKEY and SIGESCROW", ("Valid", "Producer"),
             ("HC-14", "HC-15", "HC-16", "HC-18"), None, wire,
             extra={"producer": {"sigkey_seed": user.sigkey_seed,
                                 "sigescrow_seed": user.escrow_seed,
                                 "x25519_private": user.x25519_private}}),
        case("bitflip-sigkey-signature", "the SIGKEY signature has one bit flipped",
             ("BitFlip", "WrongSignature"), ("HC-16",), sig,
             _wire_with(uid, ("signatures", "sigkey"), b64url_encode(_flip(uid.sig_sigkey, 0)))),
        case("bitflip-sigescrow-signature", "the SIGESCROW signature has one bit flipped: one "
             "bad signature of two", ("BitFlip", "WrongSignature"), ("HC-16",), sig,
             _wire_with(uid, ("signatures", "sigescrow"),
                        b64url_encode(_flip(uid.sig_sigescrow or b"", 63)))),
        case("sigescrow-signature-missing", "a creation signed by SIGKEY only",
             ("MissingSignature",), ("HC-16",), sig,
             _wire_with(uid, ("signatures", "sigescrow"), _DELETE)),
        case("sigkey-signature-as-escrow", "the SIGKEY signature copied into the SIGESCROW "
             "slot (roles are separated)", ("WrongSignature",), ("HC-16",), sig,
             _wire_with(uid, ("signatures", "sigescrow"), b64url_encode(uid.sig_sigkey))),
        case("same-keys", "SIGESCROW is the SIGKEY (both signatures valid)", ("SameKeys",),
             ("HC-16",), Failure("binding", "8"),
             hc.uid_to_wire(_create(user, escrow_seed=user.sigkey_seed,
                                    sign_escrow=user.sigkey_seed))),
        case("expired", "now is after not_after", ("Expired",), ("HC-18",),
             Failure("expired", "8"), wire, now=uid.content.not_after),
        case("not-yet-valid", "now is before not_before", ("Expired",), ("HC-18",),
             Failure("expired", "8"), wire, now=uid.content.not_before - 1),
        case("validity-too-long", "not_after - not_before is 366 days and one second",
             ("ParamsOutOfRange",), ("HC-18",), Failure("params", "8"),
             hc.uid_to_wire(_create(user, not_after=NOW - 3600 + hc.MAX_UID_VALIDITY + 1))),
        case("identity-not-mapped", "identity \"Alice@example.org\" is not in mapped form",
             ("BadIdentity",), ("HC-14",), Failure("decode", "7"),
             hc.uid_to_wire(_create(user, identity="Alice@example.org"))),
        case("identity-with-digit-one", "identity \"al1ce@example.org\" maps to "
             "\"allce@example.org\"", ("BadIdentity",), ("HC-14",), Failure("decode", "7"),
             hc.uid_to_wire(_create(user, identity="al1ce@example.org"))),
        case("domain-not-served", "the server serves example.com only", ("BadIdentity",),
             ("HC-14",), Failure("binding", "7"), wire, domains=("example.com",)),
        case("msg-count-not-zero", "a creation with msg_count 1", ("NotACreation",), ("HC-17",),
             Failure("binding", "8"), hc.uid_to_wire(_create(user, msg_count=1))),
        case("low-order-x25519", "the X25519 key is u = 1 (order 4), signed",
             ("LowOrderPoint",), ("HC-15",), Failure("point", "8"),
             hc.uid_to_wire(_create(user, x25519=(1).to_bytes(32, "little")))),
        case("unknown-member", "the UID carries a member \"comment\"", ("UnknownMember",),
             ("API-6",), Failure("decode", "8"), {**wire, "comment": "hi"}),
        case("missing-member", "the UID has no last_entry", ("MissingMember",), ("API-6",),
             Failure("decode", "8"), _wire_with(uid, ("last_entry",), _DELETE)),
        case("truncated-sigkey", "sigkey decodes to 31 bytes", ("Truncated",), ("API-1",),
             Failure("length", "8"),
             _wire_with(uid, ("sigkey",), b64url_encode(uid.content.sigkey[:-1]))),
        case("relabelled-identity", "identity changed to bob@example.org after signing",
             ("ForeignContext",), ("HC-16",), sig,
             _wire_with(uid, ("identity",), "bob@example.org")),
        case("relabelled-validity", "not_after moved one day later after signing",
             ("BitFlip",), ("HC-16",), sig,
             _wire_with(uid, ("not_after",), uid.content.not_after + 86400)),
        case("stranger-escrow-signature", "the SIGESCROW signature made by another key",
             ("WrongSignature",), ("HC-16",), sig,
             _wire_with(uid, ("signatures", "sigescrow"), b64url_encode(
                 primitives.ed25519_sign(rnd(32), hc.uid_signature_message(
                     "sigescrow", hc.uid_content_bytes(uid.content)))))),
    ]


def _uid_update_cases() -> list[Case]:
    first = first_uid()
    _, new_escrow = update_material()
    first_wire = hc.uid_to_wire(first)

    def case(slug: str, comment: str, flags: tuple[str, ...], reqs: tuple[str, ...],
             failure: Failure | None, uid: hc.Uid | dict[str, Any]) -> Case:
        valid = failure is None
        assert isinstance(uid, hc.Uid) or not valid
        uid_wire = hc.uid_to_wire(uid) if isinstance(uid, hc.Uid) else uid
        return Case(id=f"hc-v1/uid-update/{slug}", comment=comment, flags=flags,
                    requirements=reqs, operation=OP_UID_UPDATE,
                    inputs={"uid": uid_wire, "previous": first_wire, "now": NOW,
                            "domains": list(DOMAINS)},
                    intermediates=_uid_intermediates(uid) if isinstance(uid, hc.Uid) and valid
                    else {},
                    outputs={"record_hash": hc.uid_record_hash(uid)}
                    if isinstance(uid, hc.Uid) and valid else {},
                    failure=failure)

    ok = _update()
    return [
        case("by-previous-sigkey", "a new SIGKEY, authorised by the previous SIGKEY",
             ("Valid",), ("HC-15", "HC-17"), None, ok),
        case("escrow-change", "a new SIGESCROW, authorised by the previous SIGESCROW and "
             "signed by the new one", ("Valid",), ("HC-15", "HC-17"), None,
             _update(escrow=new_escrow, role="sigescrow", escrow_signs=True)),
        case("msg-count-not-advanced", "msg_count stays 0", ("Replay",), ("HC-17",),
             Failure("replay", "8"), _update(msg_count=0)),
        case("msg-count-skips", "msg_count jumps to 2", ("Replay",), ("HC-17",),
             Failure("replay", "8"), _update(msg_count=2)),
        case("previous-wrong", "previous names another UID", ("BrokenLink",), ("HC-17",),
             Failure("link", "8"), _update(previous=Drbg("hashchain/v1/uid/other")(32))),
        case("previous-signature-by-stranger", "the \"previous\" signature is made by the new "
             "SIGKEY instead of the previous one", ("WrongSignature",), ("HC-17",),
             Failure("signature", "8"), _update(signer=update_material()[0])),
        case("escrow-change-by-sigkey", "a new SIGESCROW authorised only by the previous SIGKEY",
             ("Unauthorised",), ("HC-17",), Failure("authz", "8"),
             _update(escrow=new_escrow, escrow_signs=True)),
        case("escrow-change-unsigned-by-new-escrow", "a new SIGESCROW authorised by the "
             "previous one, but the new SIGESCROW does not sign", ("MissingSignature",),
             ("HC-17",), Failure("signature", "8"),
             _update(escrow=new_escrow, role="sigescrow")),
        case("identity-changed", "the update claims bob@example.org", ("ForeignContext",),
             ("HC-17",), Failure("binding", "8"), _update(identity="bob@example.org")),
        case("previous-signature-missing", "an update signed by its own SIGKEY only",
             ("MissingSignature",), ("HC-17",), Failure("signature", "8"),
             _wire_with(ok, ("signatures", "previous"), _DELETE)),
    ]


def _uid_reply_cases() -> list[Case]:
    base, uid = base_chain(), first_uid()
    rnd = Drbg("hashchain/v1/uid/reply")
    record_hash = hc.uid_record_hash(uid)
    position = base.log.position + 1
    built = hc.build_record_entry(entry_type=hc.TYPE_UID, subject=uid.content.identity.encode(),
                                  record_hash=record_hash, nonce=rnd(16),
                                  prev_hash=base.log.head_hash)
    reply = hc.sign_uid_reply(origin=ORIGIN, position=position, entry=built.entry,
                              record_hash=record_hash, server_seed=base.server_seed)
    other = hc.build_record_entry(entry_type=hc.TYPE_UID, subject=b"bob@example.org",
                                  record_hash=record_hash, nonce=rnd(16),
                                  prev_hash=base.log.head_hash)
    other_reply = hc.sign_uid_reply(origin=ORIGIN, position=position, entry=other.entry,
                                    record_hash=record_hash, server_seed=base.server_seed)

    def reply_wire(r: hc.UidReply) -> dict[str, Any]:
        return {"position": r.position, "entry": b64url_encode(r.entry),
                "record_hash": b64url_encode(r.record_hash),
                "signature": b64url_encode(r.signature)}

    def case(slug: str, comment: str, flags: tuple[str, ...], reqs: tuple[str, ...],
             failure: Failure | None, r: dict[str, Any], *, key: bytes | None = None,
             origin: str = ORIGIN) -> Case:
        valid = failure is None
        return Case(id=f"hc-v1/uid-reply/{slug}", comment=comment, flags=flags,
                    requirements=reqs, operation=OP_UID_REPLY,
                    inputs={"origin": origin, "server_key": key or base.log.server_key,
                            "uid": hc.uid_to_wire(uid), "reply": r},
                    intermediates={"message": hc.uid_reply_message(ORIGIN, position,
                                                                   built.entry, record_hash)}
                    if valid else {},
                    outputs={"hash_id": built.hash_id, "record_index": built.record_index}
                    if valid else {}, failure=failure)

    good = reply_wire(reply)
    sig = Failure("signature", "9")
    return [
        case("valid", "the keyserver's signed reply to Alice's creation", ("Valid",),
             ("HC-21",), None, good),
        case("signature-bitflip", "the reply signature has one bit flipped",
             ("BitFlip", "WrongSignature"), ("HC-21",), sig,
             {**good, "signature": b64url_encode(_flip(reply.signature, 5))}),
        case("wrong-server-key", "checked with a key the client never tracked",
             ("WrongSignature",), ("HC-21",), sig, good,
             key=primitives.ed25519_public_key(rnd(32))),
        case("other-origin", "checked for another origin", ("WrongOrigin",), ("HC-21",), sig,
             good, origin="other.example.org"),
        case("position-changed", "the position moved after signing", ("BitFlip",),
             ("HC-21",), sig, {**good, "position": position + 1}),
        case("entry-of-other-identity", "a validly signed reply whose entry is about "
             "bob@example.org", ("ForeignContext",), ("HC-21",), Failure("binding", "9"),
             reply_wire(other_reply)),
        case("other-uid", "a reply for another UID's record hash", ("ForeignContext",),
             ("HC-21",), Failure("binding", "9"),
             {**good, "record_hash": b64url_encode(rnd(32))}),
    ]


def _sealed_uid_cases() -> list[Case]:
    uid = first_uid()
    record_hash = hc.uid_record_hash(uid)
    sealed = hc.seal_uid(uid)
    aead = Failure("aead", "9")
    return [
        Case(id="hc-v1/sealed-uid/valid", comment="Alice's UID as the repository serves it",
             flags=("Valid",), requirements=("HC-24",), operation=OP_SEALED_UID,
             inputs={"sealed_uid": sealed, "record_hash": record_hash},
             intermediates={"key": hc.uid_seal_key(record_hash), "plaintext": hc.uid_json(uid)},
             outputs={"uid": hc.uid_to_wire(uid)}),
        Case(id="hc-v1/sealed-uid/bitflip", comment="one bit of the sealed UID flipped",
             flags=("BitFlip",), requirements=("HC-24",), operation=OP_SEALED_UID,
             inputs={"sealed_uid": _flip(sealed, 10), "record_hash": record_hash},
             failure=aead),
        Case(id="hc-v1/sealed-uid/wrong-record-hash", comment="opened with another record "
             "hash", flags=("WrongKey",), requirements=("HC-24",), operation=OP_SEALED_UID,
             inputs={"sealed_uid": sealed,
                     "record_hash": Drbg("hashchain/v1/sealed-uid")(32)}, failure=aead),
    ]


def _keyinit_cases() -> list[Case]:
    user = alice()
    rnd = Drbg("hashchain/v1/keyinit")
    ki, _private = hc.make_keyinit(identity=user.identity, sigkey_seed=user.sigkey_seed,
                                   not_before=NOW - 60, not_after=NOW + 7 * 86400, random=rnd)
    wire = hc.keyinit_to_wire(ki)
    long_ki, _ = hc.make_keyinit(identity=user.identity, sigkey_seed=user.sigkey_seed,
                                 not_before=NOW - 60,
                                 not_after=NOW - 60 + hc.MAX_KEYINIT_LIFETIME + 1, random=rnd)

    def case(slug: str, comment: str, flags: tuple[str, ...], reqs: tuple[str, ...],
             failure: Failure | None, k: dict[str, Any], *, now: int = NOW,
             identity: str | None = None, sigkey: bytes | None = None) -> Case:
        valid = failure is None
        return Case(id=f"hc-v1/keyinit/{slug}", comment=comment, flags=flags,
                    requirements=reqs, operation=OP_KEYINIT,
                    inputs={"keyinit": k, "identity": identity or user.identity,
                            "current_sigkey": sigkey or user.sigkey, "now": now},
                    intermediates={"message": hc.keyinit_message(
                        ki.identity, ki.sigkey, ki.key_id, ki.not_before, ki.not_after,
                        ki.x25519)} if valid else {},
                    failure=failure)

    return [
        case("valid", "a one-time KeyInit signed by Alice's SIGKEY", ("Valid",),
             ("HC-25", "HC-26"), None, wire),
        case("signature-bitflip", "the signature has one bit flipped",
             ("BitFlip", "WrongSignature"), ("HC-25",), Failure("signature", "10"),
             {**wire, "signature": b64url_encode(_flip(ki.signature, 1))}),
        case("x25519-replaced", "the one-time key replaced after signing", ("BitFlip",),
             ("HC-25",), Failure("signature", "10"),
             {**wire, "x25519": b64url_encode(primitives.x25519_public_key(rnd(32)))}),
        case("not-current-sigkey", "signed by a key that is not the identity's current SIGKEY",
             ("Unauthorised",), ("HC-26",), Failure("authz", "10"), wire,
             sigkey=primitives.ed25519_public_key(user.escrow_seed)),
        case("other-identity", "presented for bob@example.org", ("ForeignContext",),
             ("HC-26",), Failure("binding", "10"), wire, identity="bob@example.org"),
        case("expired", "now is its not_after", ("Expired",), ("HC-25",),
             Failure("expired", "10"), wire, now=ki.not_after),
        case("lifetime-too-long", "a lifetime of 90 days and one second", ("ParamsOutOfRange",),
             ("HC-25",), Failure("params", "10"), hc.keyinit_to_wire(long_ki)),
        case("low-order-x25519", "the one-time key is u = 0", ("LowOrderPoint",), ("HC-25",),
             Failure("point", "10"), {**wire, "x25519": b64url_encode(bytes(32))}),
    ]


def _flush_cases() -> list[Case]:
    user = alice()
    rnd = Drbg("hashchain/v1/flush")
    req = hc.make_flush_request(origin=ORIGIN, identity=user.identity,
                                sigkey_seed=user.sigkey_seed, timestamp=NOW, nonce=rnd(16))
    wire = hc.flush_to_wire(req)

    def case(slug: str, comment: str, flags: tuple[str, ...], reqs: tuple[str, ...],
             failure: Failure | None, *, now: int = NOW, nonce_seen: bool = False,
             origin: str = ORIGIN, w: dict[str, Any] | None = None) -> Case:
        return Case(id=f"hc-v1/flush/{slug}", comment=comment, flags=flags, requirements=reqs,
                    operation=OP_FLUSH,
                    inputs={"request": w or wire, "origin": origin, "identity": user.identity,
                            "current_sigkey": user.sigkey, "now": now, "nonce_seen": nonce_seen},
                    intermediates={"message": hc.flush_message(ORIGIN, user.identity, NOW,
                                                               req.nonce)}
                    if failure is None else {}, failure=failure)

    return [
        case("valid", "a fresh flush request signed by Alice's SIGKEY", ("Valid",), ("HC-28",),
             None, now=NOW + hc.FLUSH_WINDOW),
        case("stale", f"received {hc.FLUSH_WINDOW + 1} s after its timestamp", ("Stale",),
             ("HC-28",), Failure("expired", "10"), now=NOW + hc.FLUSH_WINDOW + 1),
        case("replayed", "its nonce was used before", ("Replay",), ("HC-28",),
             Failure("replay", "10"), nonce_seen=True),
        case("other-origin", "sent to another keyserver", ("WrongOrigin",), ("HC-28",),
             Failure("signature", "10"), origin="other.example.org"),
        case("timestamp-changed", "the timestamp moved after signing", ("BitFlip",),
             ("HC-28",), Failure("signature", "10"), w={**wire, "timestamp": NOW + 1}),
    ]


# --- v1: accumulated --------------------------------------------------------------------------

ACCUMULATED_RULE = (
    "Drbg(label) draws server_seed (32) and nonce0 (16); entry 0 is the keyserver-key entry of "
    "that seed; for i = 1 .. count-1, entry_type is 0x02 if i % 8 == 0 else 0x01, subject is "
    "\"user<i>@example.org\", then record_hash (32) and nonce (16) are drawn and the record "
    "entry is appended. entries_digest = SHA-256(entry_0 || ... || entry_{count-1}).")


def accumulated_v1(label: str, count: int) -> tuple[hc.ChainLog, bytes]:
    rnd = Drbg(label)
    log = hc.ChainLog(origin=ORIGIN, server_seed=rnd(32), nonce0=rnd(16))
    for i in range(1, count):
        entry_type = hc.TYPE_PUBLICATION if i % 8 == 0 else hc.TYPE_UID
        log.append_record(entry_type=entry_type, subject=f"user{i}@example.org".encode(),
                          record_hash=rnd(32), nonce=rnd(16))
    digest = hashlib.sha256(b"".join(log.entries)).digest()
    return log, digest


@cache
def _accumulated_v1_cached(label: str, count: int) -> tuple[hc.ChainLog, bytes]:
    return accumulated_v1(label, count)


def _accumulated_cases() -> list[Case]:
    label = "hashchain/v1/accumulated"
    log, digest = _accumulated_v1_cached(label, ACCUMULATED_COUNT)
    head = log.head(HEAD_TIME)
    return [Case(
        id="hc-v1/accumulated/10000", comment=f"{ACCUMULATED_COUNT} generated entries: "
        + ACCUMULATED_RULE, flags=("Valid", "Accumulated"),
        requirements=("HC-2", "HC-3", "HC-4", "HC-5", "HC-6", "HC-8", "HC-12"),
        operation=OP_ACCUMULATED,
        inputs={"label": label, "count": ACCUMULATED_COUNT, "origin": ORIGIN,
                "head_timestamp": HEAD_TIME},
        outputs={"entries_digest": digest, "head": _head_wire(head),
                 "server_key": log.server_key})]


# --- mute -------------------------------------------------------------------------------------

PUBLISHED_TEST_ENTRY = (
    "PxIx7lxwcKB3vmPLGzqm3alBCBkHbD89qRBWs7+N8yMB6QEQSe7yf4BrMISdYWeF/Ycm7tKzb6q8LZgdjtTHHAFS"
    "kuD/Q3aUITVhT19g5WKwEZ1TlMH0n7ymEEVVhW/PtEDOO/uMoEOKTTvwQp6QA2NE1GYYqhzBtQNHawFtw5NUnupG"
    "nDV+QqpJrSUoe/vkXnWZfDiY9Q1W")


def _mute_ckdf_cases() -> list[Case]:
    rnd = Drbg("hashchain/mute/ckdf")
    nonces: list[tuple[str, bytes, str, tuple[str, ...]]] = [
        ("published-zero", bytes(8), "the original's TestCKDF: CKDF(encode.ToByte8(0)), eight "
         "zero bytes (cipher/ckdf_test.go)", ("Compat", "Published"))]
    nonces += [(f"random-{i}", rnd(8), "a random 8-byte NONCE", ("Compat",)) for i in range(2)]
    cases = []
    for slug, nonce, comment, flags in nonces:
        k1, k2 = mute.ckdf(nonce)
        a = primitives.sha512(nonce)
        cases.append(Case(id=f"hc-mute/ckdf/{slug}", comment=comment, flags=flags,
                          requirements=("HC-30",), operation=OP_M_CKDF, inputs={"nonce": nonce},
                          intermediates={"a": a}, outputs={"k1": k1, "k2": k2}))
    return cases


def _mute_entry_inputs(i: int, rnd: Drbg) -> dict[str, Any]:
    identity = ("alice@mute.berlin", "iohn.doe@mute.berlin", "bob@mute.berlin",
                "alice@mute.berlin")[i % 4]
    message = ('{"ESCROWSIGNATURE":"","LINKAUTHORITY":"","SELFSIGNATURE":"","UIDCONTENT":'
               f'{{"IDENTITY":"{identity}","MSGCOUNT":{i // 4}}}}}')
    return {"mapped_identity": identity, "uid_message": message, "nonce": rnd(8),
            "iv": rnd(16)}


@cache
def mute_chain() -> list[mute.BuiltMuteEntry]:
    rnd = Drbg("hashchain/mute/chain")
    out: list[mute.BuiltMuteEntry] = []
    prev = mute.ZERO_HASH
    for i in range(5):
        inputs = _mute_entry_inputs(i, rnd)
        built = mute.build_entry(mapped_identity=inputs["mapped_identity"],
                                 uid_message_json=inputs["uid_message"].encode("utf-8"),
                                 nonce=inputs["nonce"], iv=inputs["iv"], previous_hash=prev)
        out.append(built)
        prev = built.entry.hash
    return out


def _mute_build_out(built: mute.BuiltMuteEntry) -> tuple[dict[str, Any], dict[str, Any]]:
    return ({"k1": built.k1, "k2": built.k2, "hash_id": built.hash_id, "id_key": built.id_key,
             "uid_hash": built.uid_hash, "uid_index": built.uid_index, "cr_uid": built.cr_uid,
             "body": built.entry.body()},
            {"entry": built.entry.to_bytes(), "text": built.text, "hash": built.entry.hash})


def _mute_build_cases() -> list[Case]:
    rnd = Drbg("hashchain/mute/chain")
    cases = []
    for i, built in enumerate(mute_chain()[:3]):
        inputs = _mute_entry_inputs(i, rnd)
        intermediates, outputs = _mute_build_out(built)
        cases.append(Case(
            id=f"hc-mute/build-entry/{i}", comment=f"entry {i} of a short chain for "
            f"{inputs['mapped_identity']}" + (" (entry 0: previous hash is 32 zero bytes)"
                                              if i == 0 else ""),
            flags=("Compat",), requirements=("HC-30", "HC-31", "HC-32", "HC-33"),
            operation=OP_M_BUILD, inputs={**inputs, "previous_hash": built.previous_hash},
            intermediates=intermediates, outputs=outputs))
    return cases


def _mute_fields(entry: mute.MuteEntry) -> dict[str, Any]:
    return {"hash": entry.hash, "type": entry.type, "nonce": entry.nonce,
            "hash_id": entry.hash_id, "cr_uid": entry.cr_uid, "uid_index": entry.uid_index}


def _mute_parse_cases() -> list[Case]:
    published = mute.decode_entry(PUBLISHED_TEST_ENTRY)
    raw = published.to_bytes()
    rnd = Drbg("hashchain/mute/parse")
    decode = Failure("decode", "compat")

    def negative(slug: str, comment: str, flags: tuple[str, ...], reqs: tuple[str, ...],
                 failure: Failure, text: str) -> Case:
        return Case(id=f"hc-mute/parse-entry/{slug}", comment=comment, flags=flags,
                    requirements=reqs, operation=OP_M_PARSE, inputs={"text": text},
                    failure=failure)

    wrong_type = bytearray(raw)
    wrong_type[32] = 0x02
    return [
        Case(id="hc-mute/parse-entry/published-test-entry", comment="the original's TestEntry "
             "(keyserver/hashchain/hashchain.go), split as SplitEntry does",
             flags=("Compat", "Published"), requirements=("HC-32", "HC-33"),
             operation=OP_M_PARSE, inputs={"text": PUBLISHED_TEST_ENTRY},
             outputs=_mute_fields(published)),
        negative("truncated", "152 bytes (valid base64 of 204 characters with one '=')",
                 ("Truncated",), ("HC-32",), Failure("length", "compat"),
                 base64.b64encode(raw[:-1]).decode()),
        negative("trailing-byte", "154 bytes (208 characters)", ("TrailingBytes",),
                 ("HC-33",), Failure("length", "compat"),
                 base64.b64encode(raw + rnd(1)).decode()),
        negative("wrong-type", "TYPE 0x02 (one old revision of the original used it)",
                 ("WrongType",), ("HC-32",), decode, base64.b64encode(bytes(wrong_type)).decode()),
        negative("url-alphabet", "the base64url alphabet ('-' and '_')",
                 ("NonCanonicalBase64",), ("HC-33",), decode,
                 PUBLISHED_TEST_ENTRY.replace("+", "-").replace("/", "_")),
        negative("line-break", "a line break after 76 characters (Go would skip it)",
                 ("NonCanonicalBase64",), ("HC-33",), decode,
                 PUBLISHED_TEST_ENTRY[:76] + "\n" + PUBLISHED_TEST_ENTRY[76:]),
        negative("stray-character", "a '!' in place of the last character",
                 ("NonCanonicalBase64",), ("HC-33",), decode, PUBLISHED_TEST_ENTRY[:-1] + "!"),
    ]


def _mute_verify_cases() -> list[Case]:
    chain = mute_chain()
    texts = [b.text for b in chain]
    link = Failure("link", "compat")
    cases = [Case(id="hc-mute/verify-chain/valid", comment="a chain of 5 entries from entry 0",
                  flags=("Compat",), requirements=("HC-32", "HC-33"), operation=OP_M_VERIFY,
                  inputs={"texts": texts}, intermediates={"hashes": [b.entry.hash for b in chain]},
                  outputs={"last_hash": chain[-1].entry.hash})]

    def negative(slug: str, comment: str, flags: tuple[str, ...], failure: Failure,
                 mutated: list[str], reqs: tuple[str, ...] = ("HC-32",)) -> Case:
        return Case(id=f"hc-mute/verify-chain/{slug}", comment=comment, flags=flags,
                    requirements=reqs, operation=OP_M_VERIFY, inputs={"texts": mutated},
                    failure=failure)

    for name, offset in (("hash", 0), ("nonce", 33), ("hash-id", 41), ("cr-uid", 73),
                         ("uid-index", 121)):
        raw = chain[2].entry.to_bytes()
        mutated = list(texts)
        mutated[2] = base64.b64encode(_flip(raw, offset + 1)).decode()
        cases.append(negative(f"bitflip-{name}", f"one bit of {name} of entry 2 flipped",
                              ("BitFlip",), link, mutated))
    typed = bytearray(chain[2].entry.to_bytes())
    typed[32] = 0x03
    cases += [
        negative("type", "TYPE of entry 2 is 0x03", ("WrongType",), Failure("decode", "compat"),
                 [*texts[:2], base64.b64encode(bytes(typed)).decode(), *texts[3:]]),
        negative("reordered", "entries 1 and 2 trade places", ("Reordered",), link,
                 [texts[0], texts[2], texts[1], *texts[3:]]),
        negative("gap", "entry 2 is missing", ("Gap",), link, texts[:2] + texts[3:]),
        negative("not-from-zero", "the chain starts at entry 1: HASH(-1) must be zero",
                 ("Truncated",), link, texts[1:]),
        negative("entry-truncated", "entry 3 is one byte short", ("Truncated",),
                 Failure("length", "compat"),
                 [*texts[:3], base64.b64encode(chain[3].entry.to_bytes()[:-1]).decode(),
                  texts[4]]),
    ]
    return cases


def _mute_lookup_cases() -> list[Case]:
    chain = mute_chain()
    texts = [b.text for b in chain]
    cases = []
    for identity in ("alice@mute.berlin", "carol@mute.berlin"):
        matches = mute.lookup(identity, texts)
        cases.append(Case(
            id=f"hc-mute/lookup/{identity.split('@')[0]}", comment=f"search the chain for "
            f"{identity} ({len(matches)} matches)", flags=("Compat",),
            requirements=("HC-30", "HC-31"), operation=OP_M_LOOKUP,
            inputs={"mapped_identity": identity, "texts": texts},
            outputs={"matches": [{"position": m.position, "uid_index": m.uid_index,
                                  "uid_hash": m.uid_hash} for m in matches]}))
    return cases


# (input, expected or None for an error, flags, comment)
MUTE_IDENTITIES: tuple[tuple[str, str | None, tuple[str, ...], str], ...] = (
    ("john.doe@mute.berlin", "iohn.doe@mute.berlin", ("Published",), "TestMap"),
    ("john.doe@MUTE.BERLIN", "iohn.doe@mute.berlin", ("Published",), "TestMapPlus"),
    ("John-Doe@mute.berlin", "iohn-doe@mute.berlin", ("Published",), "TestMapLocalpart"),
    ("john012@mute.berlin", "iohnol2@mute.berlin", ("Published",), "TestMapLocalpart"),
    ("max.mustermann@Mute.Berlin", "max.mustermann@mute.berlin", ("Published",),
     "TestMapLocalpart, TestMapDomain"),
    ("\u2003Alice\t@mute.berlin", "alice@mute.berlin", ("GoSemantics",),
     "an EM SPACE and a tab around the local part are trimmed"),
    ("\u212aelvin@mute.berlin", "kelvin@mute.berlin", ("GoSemantics",),
     "KELVIN SIGN lowercases to 'k'"),
    ("\u0130van@mute.berlin", "ivan@mute.berlin", ("GoSemantics",),
     "U+0130 lowercases to 'i' (Go's simple mapping, not Python's 'i' + U+0307)"),
    ("john.doe", None, ("Published", "BadIdentity"), "no '@' (TestMap)"),
    ("john..doe@mute.berlin", None, ("Published", "BadIdentity"), "'..' (TestMap)"),
    ("john.doe@mute@berlin", None, ("Published", "BadIdentity"), "two '@' (TestSplit)"),
    ("dj@mute.berlin", None, ("Published", "BadIdentity"), "shorter than 3 (TestMapLocalpart)"),
    ("-max@mute.berlin", None, ("Published", "BadIdentity"), "starts with '-'"),
    (".max@mute.berlin", None, ("Published", "BadIdentity"), "starts with '.'"),
    ("max-@mute.berlin", None, ("Published", "BadIdentity"), "ends with '-'"),
    ("max.@mute.berlin", None, ("Published", "BadIdentity"), "ends with '.'"),
    ("max--mustermann@mute.berlin", None, ("Published", "BadIdentity"), "'--'"),
    ("max-.mustermann@mute.berlin", None, ("Published", "BadIdentity"), "'-.'"),
    ("max.-mustermann@mute.berlin", None, ("Published", "BadIdentity"), "'.-'"),
    ("abcdefghijklmnopqrstuvwzyz.ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-X@mute.berlin", None,
     ("Published", "BadIdentity"), "a 65-character local part (TestMapLocalpart)"),
    ("." * 255, None, ("Published", "BadIdentity"), "255 bytes, over MaxLen 254 (TestMaxLen)"),
    ("al_ce@mute.berlin", None, ("BadIdentity",), "'_' is not allowed"),
    ("ab\x1c@mute.berlin", None, ("BadIdentity", "GoSemantics"),
     "U+001C is not a Go space, so it is not trimmed and is refused"),
)


def _mute_map_cases() -> list[Case]:
    cases = []
    for i, (identity, expected, flags, comment) in enumerate(MUTE_IDENTITIES):
        valid = expected is not None
        cases.append(Case(
            id=f"hc-mute/map-identity/{i:02d}", comment=comment, flags=("Compat", *flags),
            requirements=("HC-34",), operation=OP_M_MAP, inputs={"identity": identity},
            outputs={"mapped": expected} if valid else {},
            failure=None if valid else Failure("decode", "compat")))
    return cases


MUTE_ACCUMULATED_RULE = (
    "Drbg(label) is read in order; for i = 0 .. count-1: identity is \"user<i>@mute.berlin\", "
    "UIDMessage is the ASCII text {\"n\":<i>}, then NONCE (8) and IV (16) are drawn; the entry "
    "is built with the previous HASH (zero for i = 0). entries_digest = SHA-256 over the "
    "concatenated 153-byte entries.")


def accumulated_mute(label: str, count: int) -> tuple[bytes, bytes]:
    rnd = Drbg(label)
    acc = hashlib.sha256()
    prev = mute.ZERO_HASH
    for i in range(count):
        built = mute.build_entry(mapped_identity=f"user{i}@mute.berlin",
                                 uid_message_json=b'{"n":%d}' % i, nonce=rnd(8), iv=rnd(16),
                                 previous_hash=prev)
        acc.update(built.entry.to_bytes())
        prev = built.entry.hash
    return acc.digest(), prev


@cache
def _accumulated_mute_cached(label: str, count: int) -> tuple[bytes, bytes]:
    return accumulated_mute(label, count)


def _mute_accumulated_cases() -> list[Case]:
    label = "hashchain/mute/accumulated"
    digest, last = _accumulated_mute_cached(label, ACCUMULATED_COUNT)
    return [Case(id="hc-mute/accumulated/10000",
                 comment=f"{ACCUMULATED_COUNT} generated entries: " + MUTE_ACCUMULATED_RULE,
                 flags=("Compat", "Accumulated"), requirements=("HC-30", "HC-31", "HC-32"),
                 operation=OP_M_ACCUMULATED, inputs={"label": label, "count": ACCUMULATED_COUNT},
                 outputs={"entries_digest": digest, "last_hash": last})]


# --- generate ---------------------------------------------------------------------------------

def _v1_cases() -> list[Case]:
    return (_build_cases() + _key_entry_cases() + _verify_positives() + _verify_bitflips()
            + _verify_structure() + _verify_heads() + _verify_keys() + _fork_cases()
            + _lookup_cases() + _uid_create_cases() + _uid_update_cases() + _uid_reply_cases()
            + _sealed_uid_cases() + _keyinit_cases() + _flush_cases() + _accumulated_cases())


def _mute_cases() -> list[Case]:
    return (_mute_ckdf_cases() + _mute_build_cases() + _mute_parse_cases()
            + _mute_verify_cases() + _mute_lookup_cases() + _mute_map_cases()
            + _mute_accumulated_cases())


def generate() -> list[VectorFile]:
    return [
        VectorFile(schema_name=FLOW, flow=FLOW, profile="v1",
                   source_labels=("Drbg('hashchain/v1/<purpose>'): base-chain and rotation-chain "
                                  "draw server_seed (32), nonce0 (16), then per record "
                                  "record_hash (32) and nonce (16) (and, after the first "
                                  "record of rotation-chain, the new seed (32) and its nonce "
                                  "(16)); uid/alice draws sigkey, sigescrow and x25519 seeds "
                                  "(32 each); build-record-entry, keyinit, flush, fork, heads, "
                                  "keys and the uid/* mutation labels draw what their cases "
                                  "record; accumulated: see its case"),
                   notes=NOTES_V1, cases=_v1_cases()),
        VectorFile(schema_name=f"{FLOW}.mute", flow=FLOW, profile="mute",
                   source_labels=("Drbg('hashchain/mute/<purpose>'): chain draws NONCE (8) and "
                                  "IV (16) per entry; ckdf draws two NONCEs; parse draws one "
                                  "trailing byte; accumulated: see its case"),
                   notes=NOTES_MUTE, cases=_mute_cases()),
        hashchain_directory.vector_file(),
    ]


# --- verification: the consumer side ----------------------------------------------------------

def _opt_hex(value: Any, name: str) -> bytes | None:
    return None if value is None else hx(value, name)


def _trusted_in(value: Any) -> hc.TrustedState | None:
    if value is None:
        return None
    return hc.TrustedState(position=value["position"], hash=hx(value["hash"], "trusted.hash"),
                           server_key=hx(value["server_key"], "trusted.server_key"),
                           server_key_position=value["server_key_position"])


def _verify_build(case: Mapping[str, Any]) -> Outcome:
    inputs = case["inputs"]
    built = hc.build_record_entry(entry_type=inputs["entry_type"],
                                  subject=inputs["subject"].encode("ascii"),
                                  record_hash=hx(inputs["record_hash"], "record_hash"),
                                  nonce=hx(inputs["nonce"], "nonce"),
                                  prev_hash=hx(inputs["prev_hash"], "prev_hash"))
    outcome = compare(case, intermediates=_build_intermediates(built),
                      outputs={"entry": built.entry, "entry_hash": built.entry_hash})
    if outcome.agreed:
        hc.check_entry_for(built.entry, subject=inputs["subject"].encode("ascii"),
                           record_hash=built.record_hash, entry_type=inputs["entry_type"])
    return outcome


def _verify_key_entry(case: Mapping[str, Any]) -> Outcome:
    inputs = case["inputs"]
    new_seed, signer = hx(inputs["new_key_seed"], "new_key_seed"), hx(inputs["signer_seed"], "s")
    new_key = primitives.ed25519_public_key(new_seed)
    prev = hx(inputs["prev_hash"], "prev_hash")
    message = hc.server_key_message(inputs["origin"], inputs["position"], new_key, prev)
    entry = hc.build_server_key_entry(origin=inputs["origin"], position=inputs["position"],
                                      new_key=new_key, signer_seed=signer,
                                      nonce=hx(inputs["nonce"], "nonce"), prev_hash=prev)
    outcome = compare(case, intermediates={"new_key": new_key, "message": message,
                                           "signature": primitives.ed25519_sign(signer, message)},
                      outputs={"entry": entry, "entry_hash": hc.entry_hash(entry)})
    if outcome.agreed:
        signer_key = primitives.ed25519_public_key(signer)
        hc.verify_server_key_entry(hc.decode_entry(entry), origin=inputs["origin"],
                                   position=inputs["position"],
                                   key_in_force=None if inputs["position"] == 0 else signer_key,
                                   pinned_key=None)
    return outcome


def _run_chain(inputs: Mapping[str, Any], *, chunked: bool) -> hc.TrustedState:
    head = hc.parse_head(inputs["head"])
    entries = [hx(e, "entry") for e in inputs["entries"]]
    trusted = _trusted_in(inputs["trusted"])
    verifier = hc.ChainVerifier(origin=inputs["origin"],
                                pinned_key=_opt_hex(inputs["pinned_key"], "pinned_key"),
                                trusted=trusted)
    if chunked:
        verifier.feed_chunk(b"".join(entries))
    else:
        for entry in entries:
            verifier.feed(entry)
    verifier.check_head(head, now=inputs["now"], max_age=inputs["max_age"],
                        trusted_position=None if trusted is None else trusted.position)
    return verifier.state()


def _chain_runner(inputs: Mapping[str, Any], chunked: bool) -> Callable[[], hc.TrustedState]:
    return lambda: _run_chain(inputs, chunked=chunked)


def _verify_chain(case: Mapping[str, Any]) -> Outcome:
    inputs = case["inputs"]
    if case["result"] == "invalid":
        for chunked in (False, True):
            outcome = expect_rejection(case, _chain_runner(inputs, chunked))
            if not outcome.agreed:
                return Outcome(False, f"{'feed_chunk' if chunked else 'feed'}: {outcome.detail}")
        return outcome
    states = [_run_chain(inputs, chunked=c) for c in (False, True)]
    if states[0] != states[1]:
        return Outcome(False, "feed and feed_chunk end in different states")
    state = states[0]
    outcome = compare(case, intermediates={"entry_hashes": [hc.entry_hash(hx(e, "entry"))
                                                            for e in inputs["entries"]]},
                      outputs={"position": state.position, "hash": state.hash,
                               "server_key": state.server_key})
    if outcome.agreed and "producer" in inputs:
        return _check_producer(inputs)
    return outcome


def _check_producer(inputs: Mapping[str, Any]) -> Outcome:
    producer = inputs["producer"]
    log = hc.ChainLog(origin=inputs["origin"], server_seed=hx(producer["server_seed"], "seed"),
                      nonce0=hx(producer["nonce0"], "nonce0"))
    rotation = producer["rotation"]
    for record in producer["records"]:
        if rotation is not None and len(log.entries) == rotation["position"]:
            log.rotate_key(hx(rotation["new_seed"], "new_seed"),
                           nonce=hx(rotation["nonce"], "nonce"))
        log.append_record(entry_type=record["entry_type"],
                          subject=record["subject"].encode("ascii"),
                          record_hash=hx(record["record_hash"], "record_hash"),
                          nonce=hx(record["nonce"], "nonce"))
    head = log.head(producer["head_timestamp"])
    if [e.hex() for e in log.entries] != inputs["entries"]:
        return Outcome(False, "the producer material does not rebuild the entries")
    if _head_wire(head) != inputs["head"]:
        return Outcome(False, "the producer material does not rebuild the head")
    return Outcome(True)


def _verify_fork(case: Mapping[str, Any]) -> Outcome:
    inputs = case["inputs"]

    def detect() -> None:
        hc.detect_fork(hc.parse_head(inputs["head_a"]), hc.parse_head(inputs["head_b"]),
                       origin=inputs["origin"], key_a=hx(inputs["key_a"], "key_a"),
                       key_b=hx(inputs["key_b"], "key_b"))

    if case["result"] == "invalid":
        return expect_rejection(case, detect)
    detect()
    return compare(case, intermediates={}, outputs={})


def _verify_lookup(case: Mapping[str, Any]) -> Outcome:
    inputs = case["inputs"]
    entries = [hx(e, "entry") for e in inputs["entries"]]
    entry_type = inputs["entry_type"]
    subject = hc.check_identity(inputs["identity"])
    hash_ids = [hc.hash_id_of(subject, e[1:17], entry_type) if e[0] == entry_type else None
                for e in entries]
    matches = hc.lookup(inputs["identity"], entries, entry_type=entry_type)
    return compare(case, intermediates={"hash_ids": hash_ids},
                   outputs={"matches": [{"position": m.position, "record_index": m.record_index,
                                         "record_hash": m.record_hash} for m in matches]})


def _verify_uid_create(case: Mapping[str, Any]) -> Outcome:
    inputs = case["inputs"]

    def check() -> bytes:
        uid = hc.parse_uid(inputs["uid"])
        return hc.verify_uid_create(uid, now=inputs["now"], domains=inputs["domains"])

    if case["result"] == "invalid":
        return expect_rejection(case, check)
    record_hash = check()
    uid = hc.parse_uid(inputs["uid"])
    outcome = compare(case, intermediates=_uid_intermediates(uid),
                      outputs={"record_hash": record_hash})
    producer = inputs.get("producer")
    if outcome.agreed and producer is not None:
        made = hc.sign_uid(hc.UidContent(
            **{**vars(uid.content),
               "sigkey": primitives.ed25519_public_key(hx(producer["sigkey_seed"], "s")),
               "sigescrow": primitives.ed25519_public_key(hx(producer["sigescrow_seed"], "e")),
               "x25519": primitives.x25519_public_key(hx(producer["x25519_private"], "x"))}),
            sigkey_seed=hx(producer["sigkey_seed"], "s"),
            sigescrow_seed=hx(producer["sigescrow_seed"], "e"))
        if hc.uid_to_wire(made) != inputs["uid"]:
            return Outcome(False, "the producer seeds do not rebuild the UID")
    return outcome


def _verify_uid_update(case: Mapping[str, Any]) -> Outcome:
    inputs = case["inputs"]

    def check() -> bytes:
        previous = hc.parse_uid(inputs["previous"])
        uid = hc.parse_uid(inputs["uid"])
        return hc.verify_uid_update(uid, previous, now=inputs["now"], domains=inputs["domains"])

    if case["result"] == "invalid":
        return expect_rejection(case, check)
    record_hash = check()
    return compare(case, intermediates=_uid_intermediates(hc.parse_uid(inputs["uid"])),
                   outputs={"record_hash": record_hash})


def _verify_uid_reply(case: Mapping[str, Any]) -> Outcome:
    inputs = case["inputs"]
    r = inputs["reply"]

    def check() -> hc.Entry:
        reply = hc.UidReply(position=r["position"], entry=hc.decode_entry_b64(r["entry"]),
                            record_hash=b64url_decode(r["record_hash"]),
                            signature=b64url_decode(r["signature"]))
        return hc.verify_uid_reply(reply, hc.parse_uid(inputs["uid"]), origin=inputs["origin"],
                                   server_key=hx(inputs["server_key"], "server_key"))

    if case["result"] == "invalid":
        return expect_rejection(case, check)
    entry = check()
    message = hc.uid_reply_message(inputs["origin"], r["position"],
                                   hc.decode_entry_b64(r["entry"]),
                                   b64url_decode(r["record_hash"]))
    return compare(case, intermediates={"message": message},
                   outputs={"hash_id": entry.hash_id, "record_index": entry.record_index})


def _verify_sealed_uid(case: Mapping[str, Any]) -> Outcome:
    inputs = case["inputs"]
    sealed, record_hash = hx(inputs["sealed_uid"], "sealed_uid"), hx(inputs["record_hash"], "h")
    if case["result"] == "invalid":
        return expect_rejection(case, lambda: hc.open_sealed_uid(sealed, record_hash))
    uid = hc.open_sealed_uid(sealed, record_hash)
    return compare(case, intermediates={"key": hc.uid_seal_key(record_hash),
                                        "plaintext": hc.uid_json(uid)},
                   outputs={"uid": hc.uid_to_wire(uid)})


def _verify_keyinit(case: Mapping[str, Any]) -> Outcome:
    inputs = case["inputs"]

    def check() -> hc.KeyInit:
        ki = hc.parse_keyinit(inputs["keyinit"])
        hc.verify_keyinit(ki, identity=inputs["identity"],
                          current_sigkey=hx(inputs["current_sigkey"], "current_sigkey"),
                          now=inputs["now"])
        return ki

    if case["result"] == "invalid":
        return expect_rejection(case, check)
    ki = check()
    return compare(case, intermediates={"message": hc.keyinit_message(
        ki.identity, ki.sigkey, ki.key_id, ki.not_before, ki.not_after, ki.x25519)},
        outputs={})


def _verify_flush(case: Mapping[str, Any]) -> Outcome:
    inputs = case["inputs"]

    def check() -> hc.FlushRequest:
        req = hc.parse_flush(inputs["request"])
        hc.verify_flush(req, origin=inputs["origin"], identity=inputs["identity"],
                        current_sigkey=hx(inputs["current_sigkey"], "current_sigkey"),
                        now=inputs["now"], nonce_seen=inputs["nonce_seen"])
        return req

    if case["result"] == "invalid":
        return expect_rejection(case, check)
    req = check()
    return compare(case, intermediates={"message": hc.flush_message(
        inputs["origin"], req.identity, req.timestamp, req.nonce)}, outputs={})


def _verify_accumulated(case: Mapping[str, Any]) -> Outcome:
    inputs = case["inputs"]
    log, digest = _accumulated_v1_cached(inputs["label"], inputs["count"])
    head = log.head(inputs["head_timestamp"])
    verifier = hc.ChainVerifier(origin=inputs["origin"])
    verifier.feed_chunk(b"".join(log.entries))
    verifier.check_head(head, now=inputs["head_timestamp"])
    return compare(case, outputs={"entries_digest": digest, "head": _head_wire(head),
                                  "server_key": verifier.state().server_key})


def _verify_m_ckdf(case: Mapping[str, Any]) -> Outcome:
    nonce = hx(case["inputs"]["nonce"], "nonce")
    k1, k2 = mute.ckdf(nonce)
    return compare(case, intermediates={"a": primitives.sha512(nonce)},
                   outputs={"k1": k1, "k2": k2})


def _verify_m_build(case: Mapping[str, Any]) -> Outcome:
    inputs = case["inputs"]
    built = mute.build_entry(mapped_identity=inputs["mapped_identity"],
                             uid_message_json=inputs["uid_message"].encode("utf-8"),
                             nonce=hx(inputs["nonce"], "nonce"), iv=hx(inputs["iv"], "iv"),
                             previous_hash=hx(inputs["previous_hash"], "previous_hash"))
    intermediates, outputs = _mute_build_out(built)
    outcome = compare(case, intermediates=intermediates, outputs=outputs)
    if outcome.agreed and mute.decode_entry(built.text) != built.entry:
        return Outcome(False, "the entry does not parse back")
    return outcome


def _verify_m_parse(case: Mapping[str, Any]) -> Outcome:
    text = case["inputs"]["text"]
    if case["result"] == "invalid":
        return expect_rejection(case, lambda: mute.decode_entry(text))
    return compare(case, outputs=_mute_fields(mute.decode_entry(text)))


def _verify_m_chain(case: Mapping[str, Any]) -> Outcome:
    texts = case["inputs"]["texts"]
    if case["result"] == "invalid":
        return expect_rejection(case, lambda: mute.verify_chain(texts))
    last = mute.verify_chain(texts)
    return compare(case, intermediates={"hashes": [mute.decode_entry(t).hash for t in texts]},
                   outputs={"last_hash": last})


def _verify_m_lookup(case: Mapping[str, Any]) -> Outcome:
    inputs = case["inputs"]
    matches = mute.lookup(inputs["mapped_identity"], inputs["texts"])
    return compare(case, outputs={"matches": [{"position": m.position, "uid_index": m.uid_index,
                                               "uid_hash": m.uid_hash} for m in matches]})


def _verify_m_map(case: Mapping[str, Any]) -> Outcome:
    identity = case["inputs"]["identity"]
    if case["result"] == "invalid":
        return expect_rejection(case, lambda: mute.map_identity(identity))
    return compare(case, outputs={"mapped": mute.map_identity(identity)})


def _verify_m_accumulated(case: Mapping[str, Any]) -> Outcome:
    inputs = case["inputs"]
    digest, last = _accumulated_mute_cached(inputs["label"], inputs["count"])
    return compare(case, outputs={"entries_digest": digest, "last_hash": last})


_VERIFIERS: dict[tuple[str, str], Callable[[Mapping[str, Any]], Outcome]] = {
    **hashchain_directory.VERIFIERS,
    ("v1", OP_BUILD): _verify_build,
    ("v1", OP_KEY_ENTRY): _verify_key_entry,
    ("v1", OP_VERIFY): _verify_chain,
    ("v1", OP_FORK): _verify_fork,
    ("v1", OP_LOOKUP): _verify_lookup,
    ("v1", OP_UID_CREATE): _verify_uid_create,
    ("v1", OP_UID_UPDATE): _verify_uid_update,
    ("v1", OP_UID_REPLY): _verify_uid_reply,
    ("v1", OP_SEALED_UID): _verify_sealed_uid,
    ("v1", OP_KEYINIT): _verify_keyinit,
    ("v1", OP_FLUSH): _verify_flush,
    ("v1", OP_ACCUMULATED): _verify_accumulated,
    ("mute", OP_M_CKDF): _verify_m_ckdf,
    ("mute", OP_M_BUILD): _verify_m_build,
    ("mute", OP_M_PARSE): _verify_m_parse,
    ("mute", OP_M_VERIFY): _verify_m_chain,
    ("mute", OP_M_LOOKUP): _verify_m_lookup,
    ("mute", OP_M_MAP): _verify_m_map,
    ("mute", OP_M_ACCUMULATED): _verify_m_accumulated,
}


def verify_case(header: Mapping[str, Any], case: Mapping[str, Any]) -> Outcome:
    """Replay one case through the spec's consumer side."""
    return dispatch(_VERIFIERS, header, case)
