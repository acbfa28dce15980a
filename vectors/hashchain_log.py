"""Vectors of the hashchain flow, profile v1: the log (steps 1-9 of the chapter).

  build-record-entry, build-log-key-entry, build-directory-entry, decode-entry
                          entries with every intermediate, and decoder negatives (HC-1..HC-6,
                          HC-47)
  merkle-tree             a reference log of 17 entries: leaf hashes, every perfect subtree,
                          the root at every size, every inclusion and consistency proof of
                          the first 8 sizes (HC-5, HC-36, HC-37)
  verify-inclusion, verify-consistency
                          proofs with the verifier's running hashes; negatives in the style
                          of transparency-dev/merkle's test data (a bit flipped in each proof
                          node, truncated, extended, preceded by garbage, wrong index, size,
                          leaf or root, swapped roots, empty)
  sign-checkpoint, verify-checkpoint, cosign
                          C2SP checkpoints and cosignatures; unknown keys ignored, missing or
                          stale cosignatures under a k-of-n policy (HC-8, HC-38, HC-39, HC-41)
  witness-add-checkpoint  the witness's answer to each kind of submission (HC-40)
  follow-log              a client from entry 0, from a trusted checkpoint, through a key
                          rotation, and against rewritten or reordered logs (HC-9..HC-12,
                          HC-50)
  verify-fork-proof       two checkpoints that cannot both be true (HC-10)
  accumulated-log         10,000 generated entries folded into one digest, their root and
                          checkpoint
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

from keyflows.spec import hashchain as hc
from keyflows.spec import hashchain_client as hcc
from keyflows.spec import hashchain_merkle as merkle
from keyflows.spec import hashchain_note as note
from keyflows.spec import hashchain_witness as witness
from keyflows.spec import primitives
from keyflows.spec.drbg import Drbg
from keyflows.spec.errors import SpecError
from keyflows.vectors.framework import (
    Case,
    Failure,
    Outcome,
    compare,
    expect_rejection,
    hx,
)

ORIGIN = "keys.example.org/log"
NOW = 1_700_000_000
REFERENCE_SIZE = 17
PROOF_SIZES = 8
ACCUMULATED_COUNT = 10_000
WITNESS_NAMES = ("witness-a.example", "witness-b.example", "witness-c.example")

OP_BUILD = "build-record-entry"
OP_KEY_ENTRY = "build-log-key-entry"
OP_DIRECTORY = "build-directory-entry"
OP_DECODE = "decode-entry"
OP_TREE = "merkle-tree"
OP_INCLUSION = "verify-inclusion"
OP_CONSISTENCY = "verify-consistency"
OP_SIGN_CHECKPOINT = "sign-checkpoint"
OP_VERIFY_CHECKPOINT = "verify-checkpoint"
OP_COSIGN = "cosign"
OP_WITNESS = "witness-add-checkpoint"
OP_FOLLOW = "follow-log"
OP_FORK = "verify-fork-proof"
OP_ACCUMULATED = "accumulated-log"

STEP_ENTRY, STEP_TREE, STEP_KEYS, STEP_CHECKPOINT = "1", "3", "4", "5"
STEP_WITNESS, STEP_FOLLOW = "6", "8"
PROOF = Failure("proof", STEP_TREE)


def flip(data: bytes, index: int, bit: int = 0) -> bytes:
    out = bytearray(data)
    out[index] ^= 1 << bit
    return bytes(out)


# --- material --------------------------------------------------------------------------------

@dataclass(frozen=True)
class LogMaterial:
    """A log and what made it: every random byte from Drbg(label)."""

    label: str
    log: hc.TransparencyLog
    key_seed: bytes
    nonce0: bytes
    records: tuple[dict[str, Any], ...]


SUBJECTS = ("alice@example.org", "bob@example.org", "alice/notes.example", "carol@example.org")


def make_log(label: str, count: int) -> LogMaterial:
    """Entry 0 and count-1 record entries: types and subjects cycle through SUBJECTS."""
    rnd = Drbg(label)
    key_seed, nonce0 = rnd(32), rnd(16)
    log = hc.TransparencyLog(origin=ORIGIN, key_seed=key_seed, nonce0=nonce0)
    records = []
    for i in range(1, count):
        subject = SUBJECTS[i % len(SUBJECTS)]
        entry_type = hc.TYPE_PUBLICATION if "/" in subject else hc.TYPE_UID
        record_hash, nonce = rnd(32), rnd(16)
        record = {"entry_type": entry_type, "subject": subject, "record_hash": record_hash,
                  "nonce": nonce}
        log.append_record(entry_type=entry_type, subject=subject.encode("ascii"),
                          record_hash=record_hash, nonce=nonce)
        records.append(record)
    return LogMaterial(label=label, log=log, key_seed=key_seed, nonce0=nonce0,
                       records=tuple(records))


@cache
def reference() -> LogMaterial:
    return make_log("hashchain/v1/reference-log", REFERENCE_SIZE)


def vkeys(log: hc.TransparencyLog) -> list[str]:
    return [v.vkey for v in log.verifiers()]


def witness_seed(name: str) -> bytes:
    return Drbg(f"hashchain/v1/witness/{name}")(32)


def witness_vkey(name: str) -> str:
    return note.witness_verifier(name, primitives.ed25519_public_key(witness_seed(name))).vkey


# --- step 1-2, 4: entries --------------------------------------------------------------------

def _entry_cases() -> list[Case]:
    rnd = Drbg("hashchain/v1/entries")
    cases = []
    for entry_type, subject in ((hc.TYPE_UID, "alice@example.org"),
                                (hc.TYPE_PUBLICATION, "alice/notes.example")):
        built = hc.build_record_entry(entry_type=entry_type, subject=subject.encode("ascii"),
                                      record_hash=rnd(32), nonce=rnd(16))
        cases.append(Case(
            id=f"hc-v1/entry/{hc.TYPE_NAMES[entry_type]}",
            comment=f"a {hc.TYPE_NAMES[entry_type]} entry for {subject!r}", flags=("Valid",),
            requirements=("HC-1", "HC-2", "HC-3", "HC-4", "HC-5"), operation=OP_BUILD,
            inputs={"entry_type": entry_type, "subject": subject,
                    "record_hash": built.record_hash, "nonce": built.nonce},
            intermediates={"hash_id": built.hash_id, "id_key": built.id_key,
                           "record_index": built.record_index, "sealed_hash": built.sealed_hash},
            outputs={"entry": built.entry, "leaf_hash": built.leaf_hash}))
    first, second, nonce0, nonce1 = rnd(32), rnd(32), rnd(16), rnd(16)
    for index, new_seed, signer, nonce, what in (
            (0, first, first, nonce0, "entry 0: the first log key, signed by itself"),
            (9, second, first, nonce1, "a rotation at index 9, signed by the key in force")):
        new_key = primitives.ed25519_public_key(new_seed)
        message = hc.log_key_message(ORIGIN, index, new_key)
        entry = hc.build_log_key_entry(origin=ORIGIN, index=index, new_key=new_key,
                                       signer_seed=signer, nonce=nonce)
        cases.append(Case(
            id=f"hc-v1/entry/log-key-{index}", comment=what,
            flags=("Valid",) if index == 0 else ("Valid", "KeyRotation"),
            requirements=("HC-1", "HC-6"), operation=OP_KEY_ENTRY,
            inputs={"origin": ORIGIN, "index": index, "new_key_seed": new_seed,
                    "signer_seed": signer, "nonce": nonce},
            intermediates={"new_key": new_key, "message": message,
                           "signature": primitives.ed25519_sign(signer, message)},
            outputs={"entry": entry, "leaf_hash": merkle.leaf_hash(entry)}))
    epoch, root, nonce = 42, rnd(32), rnd(16)
    entry = hc.build_directory_entry(epoch=epoch, root=root, nonce=nonce)
    cases.append(Case(
        id="hc-v1/entry/directory", comment="a key-directory root for epoch 42",
        flags=("Valid",), requirements=("HC-1", "HC-47"), operation=OP_DIRECTORY,
        inputs={"epoch": epoch, "root": root, "nonce": nonce},
        outputs={"entry": entry, "leaf_hash": merkle.leaf_hash(entry)}))
    return cases + _decode_cases()


def _decode_cases() -> list[Case]:
    log = reference().log
    uid, key0 = log.entries[1], log.entries[0]
    directory = hc.build_directory_entry(epoch=1, root=bytes(range(32)), nonce=bytes(16))
    decode, length = Failure("decode", STEP_ENTRY), Failure("length", STEP_ENTRY)

    def case(slug: str, comment: str, flags: tuple[str, ...], data: bytes,
             failure: Failure | None) -> Case:
        return Case(id=f"hc-v1/decode-entry/{slug}", comment=comment, flags=flags,
                    requirements=("HC-1",), operation=OP_DECODE, inputs={"entry": data},
                    outputs={"type": data[0]} if failure is None else {}, failure=failure)

    return [
        case("uid", "a UID entry of the reference log", ("Valid",), uid, None),
        case("log-key", "entry 0 of the reference log", ("Valid",), key0, None),
        case("directory", "a directory entry", ("Valid",), directory, None),
        case("truncated", "128 bytes", ("Truncated",), uid[:-1], length),
        case("trailing-byte", "130 bytes", ("TrailingBytes",), uid + b"\x00", length),
        case("type-zero", "type 0x00", ("WrongType",), b"\x00" + uid[1:], decode),
        case("type-five", "type 0x05", ("WrongType",), b"\x05" + uid[1:], decode),
        case("log-key-reserved", "a log-key entry with its last reserved byte set",
             ("Reserved",), key0[:-1] + b"\x01", decode),
        case("directory-reserved", "a directory entry with a reserved byte set",
             ("Reserved",), directory[:-1] + b"\x01", decode),
    ]


# --- step 3: the tree and its proofs ---------------------------------------------------------

def _tree_case() -> Case:
    m = reference()
    tree = m.log.tree
    size = m.log.size
    inclusion = [{"index": i, "size": n, "proof": tree.inclusion_proof(i, n)}
                 for n in range(1, PROOF_SIZES + 1) for i in range(n)]
    consistency = [{"size1": a, "size2": b, "proof": tree.consistency_proof(a, b)}
                   for b in range(1, PROOF_SIZES + 1) for a in range(1, b + 1)]
    return Case(
        id="hc-v1/merkle-tree/reference", comment=f"the reference log of {size} entries "
        "(entry 0, then records drawn from Drbg('hashchain/v1/reference-log')): every "
        "perfect subtree, the root at every size, and every proof of the first 8 sizes",
        flags=("Valid", "Producer"), requirements=("HC-5", "HC-36", "HC-37"), operation=OP_TREE,
        inputs={"entries": m.log.entries},
        intermediates={"leaf_hashes": [tree.node(0, i) for i in range(size)],
                       "levels": [[tree.node(level, i) for i in range(len(h) // 32)]
                                  for level, h in enumerate(tree.levels)]},
        outputs={"roots": [tree.root(n) for n in range(1, size + 1)],
                 "empty_root": merkle.EMPTY_ROOT, "inclusion": inclusion,
                 "consistency": consistency})


def inclusion_path(index: int, size: int, leaf: bytes, proof: Sequence[bytes]) -> list[bytes]:
    """The verifier's running hash after each proof element (RFC 9162 2.1.3.2 step 4)."""
    out, fn, sn, r = [], index, size - 1, leaf
    for p in proof:
        if fn & 1 or fn == sn:
            r = merkle.node_hash(p, r)
            while not fn & 1 and fn:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = merkle.node_hash(r, p)
        fn, sn = fn >> 1, sn >> 1
        out.append(r)
    return out


def _inclusion_cases() -> list[Case]:
    tree = reference().log.tree
    cases = []

    def case(slug: str, comment: str, flags: tuple[str, ...], *, index: int, size: int,
             leaf: bytes, proof: Sequence[bytes], root: bytes,
             failure: Failure | None = None) -> Case:
        valid = failure is None
        return Case(id=f"hc-v1/inclusion/{slug}", comment=comment, flags=flags,
                    requirements=("HC-36",), operation=OP_INCLUSION,
                    inputs={"index": index, "size": size, "leaf_hash": leaf,
                            "proof": list(proof), "root": root},
                    intermediates={"path": inclusion_path(index, size, leaf, proof)}
                    if valid else {}, failure=failure)

    for size in (1, 2, 3, 4, 5, 7, 8, 16, 17):
        for index in sorted({0, size // 2, size - 1}):
            cases.append(case(f"{index}-in-{size}", f"entry {index} in the tree of {size}",
                              ("Valid",), index=index, size=size, leaf=tree.node(0, index),
                              proof=tree.inclusion_proof(index, size), root=tree.root(size)))
    index, size = 5, 13
    proof, root, leaf = tree.inclusion_proof(index, size), tree.root(size), tree.node(0, index)
    base: dict[str, Any] = {"index": index, "size": size, "leaf": leaf, "proof": proof,
                            "root": root}

    def bad(slug: str, comment: str, flags: tuple[str, ...], failure: Failure = PROOF,
            **changes: Any) -> Case:
        return case(slug, f"entry {index} in {size}: {comment}", flags, failure=failure,
                    **{**base, **changes})

    for i in range(len(proof)):
        cases.append(bad(f"bitflip-proof-{i}", f"bit 0 of byte 7 of proof node {i} flipped",
                         ("BitFlip",), proof=[*proof[:i], flip(proof[i], 7), *proof[i + 1:]]))
    other = tree.node(0, 0)
    cases += [
        bad("truncated", "the last proof node removed", ("Truncated",), proof=proof[:-1]),
        bad("extended", "a node appended", ("TrailingBytes",), proof=[*proof, other]),
        bad("preceding-garbage", "a node prepended", ("TrailingBytes",),
            proof=[other, *proof]),
        bad("empty-proof", "no proof at all", ("Truncated",), proof=[]),
        bad("index-plus-1", "index 6", ("WrongIndex",), index=index + 1),
        bad("index-minus-1", "index 4", ("WrongIndex",), index=index - 1),
        bad("index-xor-2", "index 7", ("WrongIndex",), index=index ^ 2),
        bad("index-is-size", "index 13 (not below the size)", ("WrongIndex",), index=size),
        bad("size-times-2", "size 26", ("WrongSize",), size=size * 2),
        bad("size-div-2", "size 6", ("WrongSize",), size=size // 2),
        bad("wrong-leaf", "the leaf hash of entry 4", ("WrongLeaf",), leaf=tree.node(0, 4)),
        bad("entry-not-leaf-hash", "the entry's hash without the 0x00 prefix",
            ("WrongLeaf",), leaf=primitives.sha256(reference().log.entries[index])),
        bad("wrong-root", "the root of size 12", ("WrongRoot",), root=tree.root(size - 1)),
        bad("swapped-leaf-and-root", "leaf and root exchanged", ("SwappedFields",),
            leaf=root, root=leaf),
        bad("short-leaf", "a 31-byte leaf hash", ("Truncated",), leaf=leaf[:31],
            failure=Failure("length", STEP_TREE)),
        bad("long-node", "a 33-byte proof node", ("TrailingBytes",),
            proof=[proof[0] + b"\x00", *proof[1:]], failure=Failure("length", STEP_TREE)),
    ]
    return cases


def consistency_path(size1: int, size2: int, root1: bytes,
                     proof: Sequence[bytes]) -> list[list[bytes]]:
    """The running (old, new) hashes of RFC 9162 2.1.4.2 after each proof element."""
    path = list(proof)
    if merkle.is_power_of_two(size1):
        path.insert(0, root1)
    fn, sn = size1 - 1, size2 - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    out = [[fr, sr]]
    for c in path[1:]:
        if fn & 1 or fn == sn:
            fr, sr = merkle.node_hash(c, fr), merkle.node_hash(c, sr)
            while not fn & 1 and fn:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = merkle.node_hash(sr, c)
        fn, sn = fn >> 1, sn >> 1
        out.append([fr, sr])
    return out


def _consistency_cases() -> list[Case]:
    tree = reference().log.tree
    cases = []

    def case(slug: str, comment: str, flags: tuple[str, ...], *, size1: int, size2: int,
             root1: bytes, root2: bytes, proof: Sequence[bytes],
             failure: Failure | None = None) -> Case:
        valid = failure is None and 0 < size1 < size2
        return Case(id=f"hc-v1/consistency/{slug}", comment=comment, flags=flags,
                    requirements=("HC-37",), operation=OP_CONSISTENCY,
                    inputs={"size1": size1, "size2": size2, "root1": root1, "root2": root2,
                            "proof": list(proof)},
                    intermediates={"path": consistency_path(size1, size2, root1, proof)}
                    if valid else {}, failure=failure)

    for size1, size2 in ((1, 2), (1, 8), (2, 5), (3, 7), (4, 8), (5, 17), (6, 8), (7, 16),
                         (8, 16), (16, 17), (7, 7)):
        cases.append(case(f"{size1}-to-{size2}", f"from the tree of {size1} to that of "
                          f"{size2}", ("Valid",), size1=size1, size2=size2,
                          root1=tree.root(size1), root2=tree.root(size2),
                          proof=tree.consistency_proof(size1, size2)))
    size1, size2 = 6, 13
    proof = tree.consistency_proof(size1, size2)
    base: dict[str, Any] = {"size1": size1, "size2": size2, "root1": tree.root(size1),
                            "root2": tree.root(size2), "proof": proof}

    def bad(slug: str, comment: str, flags: tuple[str, ...], **changes: Any) -> Case:
        return case(slug, f"{size1} to {size2}: {comment}", flags, failure=PROOF,
                    **{**base, **changes})

    for i in range(len(proof)):
        cases.append(bad(f"bitflip-proof-{i}", f"bit 0 of byte 3 of proof node {i} flipped",
                         ("BitFlip",), proof=[*proof[:i], flip(proof[i], 3), *proof[i + 1:]]))
    cases += [
        bad("truncated", "the last proof node removed", ("Truncated",), proof=proof[:-1]),
        bad("extended", "a node appended", ("TrailingBytes",), proof=[*proof, proof[0]]),
        bad("preceding-garbage", "a node prepended", ("TrailingBytes",),
            proof=[tree.node(0, 0), *proof]),
        bad("empty-proof", "no proof between different sizes", ("Truncated",), proof=[]),
        bad("swapped-roots", "root1 and root2 exchanged", ("SwappedFields",),
            root1=base["root2"], root2=base["root1"]),
        bad("wrong-root1", "root1 of size 5", ("WrongRoot",), root1=tree.root(5)),
        bad("wrong-root2", "root2 of size 14", ("WrongRoot",), root2=tree.root(14)),
        bad("size1-plus-1", "size1 7", ("WrongSize",), size1=7),
        bad("size2-times-2", "size2 26", ("WrongSize",), size2=26),
        bad("sizes-swapped", "size1 13, size2 6", ("SwappedFields",), size1=13, size2=6),
        bad("size1-zero", "from size 0 (nothing to prove)", ("WrongSize",), size1=0,
            root1=merkle.EMPTY_ROOT),
        bad("equal-sizes-with-proof", "sizes 13 and 13 with a non-empty proof",
            ("TrailingBytes",), size1=13, root1=base["root2"]),
        bad("equal-sizes-other-roots", "sizes 6 and 6 with different roots", ("WrongRoot",),
            size2=6, proof=[]),
    ]
    return cases


# --- step 5: checkpoints and cosignatures ----------------------------------------------------

def _checkpoint_cases() -> list[Case]:
    m = reference()
    log = m.log
    signed = log.signed_checkpoint()
    text = signed.text
    sig = note.sign_note_text(text, name=ORIGIN, seed=m.key_seed)
    cases = [Case(
        id="hc-v1/sign-checkpoint/reference", comment="the log signs its checkpoint at size "
        f"{log.size}", flags=("Valid",), requirements=("HC-8", "HC-38"),
        operation=OP_SIGN_CHECKPOINT,
        inputs={"origin": ORIGIN, "size": log.size, "root": log.tree.root(),
                "key_seed": m.key_seed},
        intermediates={"text": text, "key_id": sig.key_id, "signature": sig.signature},
        outputs={"note": signed.to_bytes().decode("utf-8")})]
    timestamp = NOW - 30
    for name in WITNESS_NAMES[:1]:
        line = note.cosign(text, name=name, seed=witness_seed(name), timestamp=timestamp)
        cases.append(Case(
            id=f"hc-v1/cosign/{name}", comment=f"{name} cosigns the reference checkpoint",
            flags=("Valid",), requirements=("HC-39",), operation=OP_COSIGN,
            inputs={"checkpoint": text, "name": name, "seed": witness_seed(name),
                    "timestamp": timestamp},
            intermediates={"message": note.cosignature_message(timestamp, text).decode("utf-8"),
                           "key_id": line.key_id},
            outputs={"line": line.line()}))
    return cases + _verify_checkpoint_cases()


def _verify_checkpoint_cases() -> list[Case]:
    m = reference()
    log = m.log
    signed = log.signed_checkpoint()
    text, body = signed.text, signed.to_bytes().decode("utf-8")
    cosigs = {n: note.cosign(text, name=n, seed=witness_seed(n), timestamp=NOW - 30)
              for n in WITNESS_NAMES}
    all_witnesses = [witness_vkey(n) for n in WITNESS_NAMES]
    stranger = Drbg("hashchain/v1/checkpoint/stranger")(32)

    def with_lines(*lines: note.NoteSignature) -> str:
        return note.add_signatures(signed, lines).to_bytes().decode("utf-8")

    def case(slug: str, comment: str, flags: tuple[str, ...], reqs: tuple[str, ...],
             text_in: str, failure: Failure | None = None, *, quorum: int = 0,
             max_age: int | None = None, now: int = NOW,
             keys: Sequence[str] | None = None, origin: str = ORIGIN,
             cosigned: Sequence[str] = ()) -> Case:
        return Case(
            id=f"hc-v1/verify-checkpoint/{slug}", comment=comment, flags=flags,
            requirements=reqs, operation=OP_VERIFY_CHECKPOINT,
            inputs={"note": text_in, "origin": origin,
                    "log_keys": list(keys if keys is not None else vkeys(log)),
                    "witnesses": all_witnesses if quorum else [], "quorum": quorum,
                    "max_age": max_age, "now": now},
            outputs={"origin": ORIGIN, "size": log.size, "root": log.tree.root(),
                     "cosigned_by": list(cosigned)} if failure is None else {},
            failure=failure)

    sig_fail, witness_fail = Failure("signature", STEP_CHECKPOINT), Failure("witness",
                                                                            STEP_FOLLOW)
    decode = Failure("decode", STEP_CHECKPOINT)
    unknown = note.sign_note_text(text, name=ORIGIN, seed=stranger)
    other_name = note.sign_note_text(text, name="other.example/log", seed=m.key_seed)
    bad_text = body.replace(f"\n{log.size}\n", f"\n{log.size + 1}\n", 1)
    lines = body.split("\n")
    return [
        case("log-only", "signed by the log, no witness asked", ("Valid",), ("HC-38",), body),
        case("two-of-three", "cosigned by 2 of 3 witnesses, quorum 2", ("Valid",),
             ("HC-38", "HC-39", "HC-41"),
             with_lines(cosigs[WITNESS_NAMES[0]], cosigs[WITNESS_NAMES[2]]), quorum=2,
             max_age=3600, cosigned=[WITNESS_NAMES[0], WITNESS_NAMES[2]]),
        case("unknown-signature-ignored", "an extra signature line by an unknown key",
             ("Valid", "UnknownKey"), ("HC-38",), with_lines(unknown)),
        case("same-key-other-name-ignored", "the log's key signing under another name is "
             "another key (name and key ID must both match)", ("Valid", "UnknownKey"),
             ("HC-38",), with_lines(other_name)),
        case("only-unknown-key", "signed only by a key the client does not know",
             ("UnknownKey",), ("HC-38",),
             note.Note(text, (unknown,)).to_bytes().decode("utf-8"), sig_fail),
        case("signature-bitflip", "the log's signature with a bit flipped",
             ("BitFlip", "WrongSignature"), ("HC-38",),
             note.Note(text, (note.NoteSignature(ORIGIN, signed.signatures[0].key_id,
                                                 flip(signed.signatures[0].signature, 4)),))
             .to_bytes().decode("utf-8"), sig_fail),
        case("size-changed", "the size line changed after signing", ("BitFlip",), ("HC-38",),
             bad_text, sig_fail),
        case("other-origin", "verified for another origin", ("WrongOrigin",), ("HC-38",),
             body, Failure("binding", STEP_CHECKPOINT), origin="other.example/log"),
        case("no-blank-line", "the empty line before the signatures removed",
             ("Malformed",), ("HC-38",), body.replace("\n\n", "\n", 1), decode),
        case("size-leading-zero", "the size written with a leading zero", ("Malformed",),
             ("HC-38",), body.replace(f"\n{log.size}\n", f"\n0{log.size}\n", 1), decode),
        case("root-unpadded", "the root hash without its base64 padding", ("Malformed",),
             ("HC-38",), "\n".join([lines[0], lines[1], lines[2].rstrip("="), *lines[3:]]),
             decode),
        case("control-character", "a tab in the origin line", ("Malformed",), ("HC-38",),
             body.replace(ORIGIN, ORIGIN + "\t", 1), decode),
        case("quorum-not-met", "one cosignature, quorum 2", ("MissingCosignature",),
             ("HC-41",), with_lines(cosigs[WITNESS_NAMES[1]]), witness_fail, quorum=2),
        case("no-cosignature", "no cosignature, quorum 1", ("MissingCosignature",),
             ("HC-41",), body, witness_fail, quorum=1),
        case("one-witness-twice", "two lines of one witness count once (quorum 2)",
             ("MissingCosignature",), ("HC-41",),
             with_lines(cosigs[WITNESS_NAMES[0]], note.cosign(
                 text, name=WITNESS_NAMES[0], seed=witness_seed(WITNESS_NAMES[0]),
                 timestamp=NOW - 20)), witness_fail, quorum=2),
        case("stale-cosignature", "the only cosignature is 2 hours old, max age 1 hour",
             ("Stale",), ("HC-41",), with_lines(cosigs[WITNESS_NAMES[0]]),
             Failure("expired", STEP_FOLLOW), quorum=1, max_age=3600, now=NOW + 7200),
        case("future-cosignature", "a cosignature dated an hour ahead", ("Stale",),
             ("HC-41",), with_lines(cosigs[WITNESS_NAMES[0]]),
             Failure("expired", STEP_FOLLOW), quorum=1, now=NOW - 3630),
        case("forged-cosignature", "a witness's line over another checkpoint",
             ("WrongSignature",), ("HC-39",), with_lines(note.cosign(
                 bad_text.split("\n\n")[0] + "\n", name=WITNESS_NAMES[0],
                 seed=witness_seed(WITNESS_NAMES[0]), timestamp=NOW)), sig_fail, quorum=1),
    ]


# --- step 6: the witness ---------------------------------------------------------------------

def _witness_cases() -> list[Case]:
    m = reference()
    log, name = m.log, WITNESS_NAMES[0]
    small = 9
    first = log.signed_checkpoint(small).to_bytes()
    latest = log.signed_checkpoint().to_bytes()
    state = {"size": small, "root": log.tree.root(small)}
    proof = log.consistency_proof(small)
    impostor = hc.TransparencyLog(origin=ORIGIN, key_seed=Drbg("hashchain/v1/witness/x")(32),
                                  nonce0=bytes(16)).signed_checkpoint().to_bytes()
    empty = note.sign_checkpoint(note.Checkpoint(ORIGIN, 0, merkle.EMPTY_ROOT),
                                 seeds=[m.key_seed]).to_bytes()
    bad_empty = note.sign_checkpoint(note.Checkpoint(ORIGIN, 0, bytes(32)),
                                     seeds=[m.key_seed]).to_bytes()

    def case(slug: str, comment: str, flags: tuple[str, ...], body: bytes,
             stored: dict[str, Any] | None, failure: Failure | None = None) -> Case:
        request = witness.parse_add_checkpoint(body) if failure is None else None
        outputs: dict[str, Any] = {}
        if request is not None:
            cosigned = witness.add_checkpoint(
                request, logs={ORIGIN: log.verifiers()},
                state=None if stored is None else witness.LogState(stored["size"],
                                                                   stored["root"], b""),
                name=name, seed=witness_seed(name), now=NOW)
            outputs = {"status": 200, "body": cosigned.body().decode("utf-8"),
                       "state": {"size": cosigned.state.size, "root": cosigned.state.root}}
        return Case(id=f"hc-v1/witness/{slug}", comment=comment, flags=flags,
                    requirements=("HC-40", "HC-37", "HC-38"), operation=OP_WITNESS,
                    inputs={"body": body.decode("utf-8"), "log_keys": vkeys(log),
                            "state": stored, "name": name, "seed": witness_seed(name),
                            "now": NOW},
                    outputs=outputs, failure=failure)

    sub = witness.submission
    fail = {cls: Failure(cls, STEP_WITNESS) for cls in
            ("decode", "binding", "signature", "params", "link", "proof")}
    return [
        case("first", f"a new log's first checkpoint (size {small}), old size 0",
             ("Valid",), sub(old_size=0, checkpoint=first, proof=[]), None),
        case("extension", f"from {small} to {log.size} with a consistency proof",
             ("Valid",), sub(old_size=small, checkpoint=latest, proof=proof), state),
        case("same-size", f"the checkpoint of size {small} again", ("Valid",),
             sub(old_size=small, checkpoint=first, proof=[]), state),
        case("empty-tree", "a size-0 checkpoint with the empty root", ("Valid",),
             sub(old_size=0, checkpoint=empty, proof=[]), None),
        case("malformed", "no empty line before the checkpoint", ("Malformed",),
             sub(old_size=small, checkpoint=latest, proof=proof).replace(b"\n\n", b"\n", 1),
             state, fail["decode"]),
        case("unknown-origin", "a log the witness does not witness", ("WrongOrigin",),
             sub(old_size=0, checkpoint=note.sign_checkpoint(
                 note.Checkpoint("other.example/log", 1, merkle.leaf_hash(b"")),
                 seeds=[m.key_seed]).to_bytes(), proof=[]), None, fail["binding"]),
        case("untrusted-key", "signed by another key for the same origin", ("UnknownKey",),
             sub(old_size=0, checkpoint=impostor, proof=[]), None, fail["signature"]),
        case("old-above-size", f"old size {log.size + 1} above the checkpoint's",
             ("WrongSize",), sub(old_size=log.size + 1, checkpoint=latest, proof=[]), state,
             fail["params"]),
        case("old-size-mismatch", f"old size 0, the witness holds {small}: 409 with its size",
             ("Stale",), sub(old_size=0, checkpoint=latest, proof=[]), state, fail["link"]),
        case("bad-proof", "the consistency proof with a bit flipped", ("BitFlip",),
             sub(old_size=small, checkpoint=latest, proof=[flip(proof[0], 0), *proof[1:]]),
             state, fail["proof"]),
        case("proof-from-zero", "old size 0 with a non-empty proof", ("TrailingBytes",),
             sub(old_size=0, checkpoint=latest, proof=proof), None, fail["proof"]),
        case("empty-tree-wrong-root", "a size-0 checkpoint whose root is not the empty root",
             ("WrongRoot",), sub(old_size=0, checkpoint=bad_empty, proof=[]), None,
             fail["proof"]),
        case("rewritten-same-size", f"a checkpoint of size {small} with another root",
             ("Fork",), sub(old_size=small, checkpoint=note.sign_checkpoint(
                 note.Checkpoint(ORIGIN, small, log.tree.root(small - 1)),
                 seeds=[m.key_seed]).to_bytes(), proof=[]), state, fail["proof"]),
    ]


#: HC-40: the status a witness answers for each failure class of its checks.
WITNESS_STATUS = {"decode": 400, "length": 400, "params": 400, "binding": 404,
                  "signature": 403, "link": 409, "proof": 422}


# --- step 8: following the log, forks --------------------------------------------------------

@cache
def rotating() -> tuple[hc.TransparencyLog, bytes, int]:
    """A log that rotates its key at index 5: (log, new seed, rotation index)."""
    rnd = Drbg("hashchain/v1/rotating-log")
    log = hc.TransparencyLog(origin=ORIGIN, key_seed=rnd(32), nonce0=rnd(16))
    new_seed, at = b"", 0
    for i in range(1, 8):
        if i == 5:
            new_seed = rnd(32)
            at = log.rotate_key(new_seed, nonce=rnd(16))
        log.append_record(entry_type=hc.TYPE_UID, subject=f"u{i}@example.org".encode(),
                          record_hash=rnd(32), nonce=rnd(16))
    return log, new_seed, at


def state_wire(state: hcc.FollowerState) -> dict[str, Any]:
    return {"size": state.size, "root": state.root, "compact": list(state.compact),
            "log_keys": list(state.log_keys), "checkpoint": state.checkpoint.decode("utf-8")}


def trusted_state(log: hc.TransparencyLog, size: int) -> hcc.FollowerState:
    return hcc.FollowerState(checkpoint=log.signed_checkpoint(size).to_bytes(), size=size,
                             root=log.tree.root(size),
                             compact=tuple(merkle.compact_range_of(size, log.tree.node).nodes),
                             log_keys=(log.keys[0].public,))


def _follow_cases() -> list[Case]:
    m = reference()
    log = m.log
    size, early = log.size, 6
    key = m.log.keys[0].public
    trusted = trusted_state(log, early)
    forked = hc.TransparencyLog(origin=ORIGIN, key_seed=m.key_seed, nonce0=m.nonce0)
    for i, data in enumerate(log.entries[1:], start=1):
        forked.append_raw(flip(data, 2) if i == 3 else data)
    rot, _, _ = rotating()

    def case(slug: str, comment: str, flags: tuple[str, ...], reqs: tuple[str, ...], *,
             checkpoint: bytes, entries: Sequence[bytes],
             trusted_in: hcc.FollowerState | None = None, keys: Sequence[bytes] = (key,),
             consistency: dict[str, Any] | None = None, failure: Failure | None = None,
             follower_log: hc.TransparencyLog = log) -> Case:
        outputs: dict[str, Any] = {}
        if failure is None:
            outputs = state_wire(run_follow(origin=ORIGIN, keys=keys, trusted=trusted_in,
                                            checkpoint=checkpoint, consistency=consistency,
                                            entries=entries))
        return Case(id=f"hc-v1/follow/{slug}", comment=comment, flags=flags,
                    requirements=reqs, operation=OP_FOLLOW,
                    inputs={"origin": ORIGIN, "log_keys": list(keys),
                            "trusted": None if trusted_in is None else state_wire(trusted_in),
                            "checkpoint": checkpoint.decode("utf-8"),
                            "consistency": consistency, "entries": list(entries), "now": NOW},
                    outputs=outputs, failure=failure)

    def proof_from(tree_log: hc.TransparencyLog, m1: int, m2: int) -> dict[str, Any]:
        return {"size1": m1, "size2": m2, "root1": tree_log.tree.root(m1),
                "proof": tree_log.consistency_proof(m1, m2)}

    latest = log.signed_checkpoint().to_bytes()
    entries = log.entries
    tail = entries[early:]
    fail = {c: Failure(c, STEP_FOLLOW) for c in ("proof", "link", "replay", "fork",
                                                 "signature", "length", "decode", "binding")}
    return [
        case("from-zero", "a new client: entry 0 to the checkpoint", ("Valid",),
             ("HC-9", "HC-12"), checkpoint=latest, entries=entries),
        case("extension", f"from a trusted checkpoint at {early}: consistency proof, then "
             "only the new entries", ("Valid", "Extension"), ("HC-9", "HC-12", "HC-37"),
             checkpoint=latest, entries=tail, trusted_in=trusted,
             consistency=proof_from(log, early, size)),
        case("key-rotation", "a log whose key rotates at index 5; its checkpoint carries "
             "both keys' signatures", ("Valid", "KeyRotation"), ("HC-7", "HC-50"),
             checkpoint=rot.signed_checkpoint().to_bytes(), entries=rot.entries,
             keys=(rot.keys[0].public,)),
        case("entries-swapped", "entries 3 and 4 trade places", ("Reordered",), ("HC-12",),
             checkpoint=latest, entries=[*entries[:3], entries[4], entries[3], *entries[5:]],
             failure=fail["proof"]),
        case("entry-missing", "entry 8 left out", ("Gap",), ("HC-12",), checkpoint=latest,
             entries=entries[:8] + entries[9:], failure=fail["link"]),
        case("entry-extra", "one entry more than the checkpoint holds", ("TrailingBytes",),
             ("HC-12",), checkpoint=latest, entries=[*entries, entries[1]],
             failure=fail["link"]),
        case("entry-truncated", "entry 2 one byte short", ("Truncated",), ("HC-1",),
             checkpoint=latest, entries=[*entries[:2], entries[2][:-1], *entries[3:]],
             failure=fail["length"]),
        case("entry-0-not-a-key", "entry 0 is a record entry", ("WrongType",), ("HC-6",),
             checkpoint=log.signed_checkpoint(1).to_bytes(), entries=[entries[1]],
             failure=fail["decode"]),
        case("pinned-key-differs", "the client was configured with another key than entry 0 "
             "introduces", ("PinnedKey",), ("HC-7", "HC-50"),
             checkpoint=rot.signed_checkpoint().to_bytes(), entries=rot.entries,
             keys=(rot.keys[-1].public,), failure=fail["binding"]),
        case("unknown-key", "the checkpoint is signed by a key the client does not trust",
             ("UnknownKey",), ("HC-38",), checkpoint=rot.signed_checkpoint().to_bytes(),
             entries=rot.entries, keys=(key,), failure=fail["signature"]),
        case("rollback", f"a checkpoint of size {early - 1} after trusting {early}",
             ("Rollback",), ("HC-11",), checkpoint=log.signed_checkpoint(early - 1).to_bytes(),
             entries=[], trusted_in=trusted, failure=fail["replay"]),
        case("same-size-other-root", f"a checkpoint of size {early} over a rewritten entry 3",
             ("Fork",), ("HC-10",), checkpoint=forked.signed_checkpoint(early).to_bytes(),
             entries=[], trusted_in=trusted, failure=fail["fork"]),
        case("rewritten-history", "a larger checkpoint whose tree rewrote entry 3: its "
             "consistency proof verifies from another root at the trusted size",
             ("Fork",), ("HC-10", "HC-37"), checkpoint=forked.signed_checkpoint().to_bytes(),
             entries=forked.entries[early:], trusted_in=trusted,
             consistency=proof_from(forked, early, size), failure=fail["fork"]),
        case("bad-consistency-proof", "the consistency proof with a bit flipped",
             ("BitFlip",), ("HC-37",), checkpoint=latest, entries=tail, trusted_in=trusted,
             consistency={**proof_from(log, early, size), "proof": [
                 flip(p, 0) if i == 0 else p
                 for i, p in enumerate(log.consistency_proof(early))]},
             failure=fail["proof"]),
        case("rewritten-entries", "the right checkpoint, but the new entries of the forked "
             "log", ("BitFlip",), ("HC-12",), checkpoint=latest, entries=forked.entries,
             failure=fail["proof"]),
    ]


def run_follow(*, origin: str, keys: Sequence[bytes], trusted: hcc.FollowerState | None,
               checkpoint: bytes, consistency: Mapping[str, Any] | None,
               entries: Sequence[bytes]) -> hcc.FollowerState:
    """Step 8: what a client does with one sync's material."""
    follower = hcc.LogFollower(origin=origin, log_keys=keys, state=trusted)
    follower.check_checkpoint(checkpoint, now=NOW)
    if consistency is not None:
        follower.check_consistency(size1=consistency["size1"], size2=consistency["size2"],
                                   root1=consistency["root1"], proof=consistency["proof"])
    follower.feed(entries)
    return follower.finish()


def _fork_cases() -> list[Case]:
    m = reference()
    log = m.log
    forked = hc.TransparencyLog(origin=ORIGIN, key_seed=m.key_seed, nonce0=m.nonce0)
    for i, data in enumerate(log.entries[1:], start=1):
        forked.append_raw(flip(data, 2) if i == 3 else data)
    early, size = 6, log.size

    def proof_wire(first: bytes, second: bytes, old_root: bytes,
                   proof: Sequence[bytes]) -> dict[str, Any]:
        return hcc.ForkProof(first, second, old_root, tuple(proof)).to_wire()

    a = log.signed_checkpoint(early).to_bytes()
    b = forked.signed_checkpoint(early).to_bytes()
    big = forked.signed_checkpoint().to_bytes()
    proof = forked.consistency_proof(early)

    def case(slug: str, comment: str, flags: tuple[str, ...], fork: dict[str, Any],
             failure: Failure | None = None) -> Case:
        return Case(id=f"hc-v1/fork-proof/{slug}", comment=comment, flags=flags,
                    requirements=("HC-10", "HC-37", "HC-38"), operation=OP_FORK,
                    inputs={"origin": ORIGIN, "log_keys": vkeys(log), "fork_proof": fork},
                    outputs={"size": early, "roots": [log.tree.root(early),
                                                      forked.tree.root(early)]}
                    if failure is None else {}, failure=failure)

    return [
        case("same-size", f"two checkpoints of size {early} with different roots",
             ("Valid", "Fork"), proof_wire(a, b, forked.tree.root(early), [])),
        case("extension-of-another-tree", f"the checkpoint at {early} and one at {size} whose "
             f"tree has another root at {early}", ("Valid", "Fork"),
             proof_wire(a, big, forked.tree.root(early), proof)),
        case("consistent", "two checkpoints of one history: no fork", ("NotAFork",),
             proof_wire(a, log.signed_checkpoint().to_bytes(), log.tree.root(early),
                        log.consistency_proof(early)), Failure("link", STEP_FOLLOW)),
        case("proof-misleads", "old_root not bound to the second root by the proof",
             ("BitFlip",), proof_wire(a, big, forked.tree.root(early),
                                      [flip(proof[0], 1), *proof[1:]]),
             Failure("proof", STEP_TREE)),
        case("unsigned-second", "the second checkpoint signed by a stranger",
             ("WrongSignature",),
             proof_wire(a, note.sign_checkpoint(forked.checkpoint(early),
                                                seeds=[Drbg("hashchain/v1/fork/x")(32)])
                        .to_bytes(), forked.tree.root(early), []),
             Failure("signature", STEP_CHECKPOINT)),
        case("larger-first", "the larger checkpoint first", ("SwappedFields",),
             proof_wire(big, a, forked.tree.root(early), proof),
             Failure("params", STEP_FOLLOW)),
    ]


# --- accumulated -----------------------------------------------------------------------------

ACCUMULATED_RULE = (
    "make_log(label, count): Drbg(label) draws the log key seed (32) and nonce0 (16); entry 0 "
    "is the log-key entry of that seed; for i = 1 .. count-1 the subject is SUBJECTS[i % 4] "
    "(alice@example.org, bob@example.org, alice/notes.example, carol@example.org; type 0x02 "
    "for the one with '/', else 0x01), then record_hash (32) and nonce (16) are drawn and the "
    "record entry is appended. entries_digest = SHA-256(entry_0 || ... || entry_{count-1}).")


@cache
def accumulated(label: str, count: int) -> tuple[LogMaterial, bytes]:
    m = make_log(label, count)
    return m, hashlib.sha256(b"".join(m.log.entries)).digest()


def _accumulated_cases() -> list[Case]:
    label = "hashchain/v1/accumulated"
    m, digest = accumulated(label, ACCUMULATED_COUNT)
    return [Case(
        id="hc-v1/accumulated/10000", comment=f"{ACCUMULATED_COUNT} generated entries: "
        + ACCUMULATED_RULE, flags=("Valid", "Accumulated"),
        requirements=("HC-2", "HC-3", "HC-4", "HC-5", "HC-6", "HC-8", "HC-38"),
        operation=OP_ACCUMULATED, inputs={"label": label, "count": ACCUMULATED_COUNT,
                                          "origin": ORIGIN},
        outputs={"entries_digest": digest, "root": m.log.tree.root(),
                 "compact": merkle.compact_range_of(m.log.size, m.log.tree.node).nodes,
                 "checkpoint": m.log.signed_checkpoint().to_bytes().decode("utf-8")})]


def log_cases() -> list[Case]:
    return [*_entry_cases(), _tree_case(), *_inclusion_cases(), *_consistency_cases(),
            *_checkpoint_cases(), *_witness_cases(), *_follow_cases(), *_fork_cases(),
            *_accumulated_cases()]


# --- verification: the consumer side ---------------------------------------------------------

def _verify_build(case: Mapping[str, Any]) -> Outcome:
    inputs = case["inputs"]
    built = hc.build_record_entry(entry_type=inputs["entry_type"],
                                  subject=inputs["subject"].encode("ascii"),
                                  record_hash=hx(inputs["record_hash"], "record_hash"),
                                  nonce=hx(inputs["nonce"], "nonce"))
    return compare(case, intermediates={"hash_id": built.hash_id, "id_key": built.id_key,
                                        "record_index": built.record_index,
                                        "sealed_hash": built.sealed_hash},
                   outputs={"entry": built.entry, "leaf_hash": built.leaf_hash})


def _verify_key_entry(case: Mapping[str, Any]) -> Outcome:
    inputs = case["inputs"]
    new_seed, signer = hx(inputs["new_key_seed"], "new_key_seed"), hx(inputs["signer_seed"], "s")
    new_key = primitives.ed25519_public_key(new_seed)
    message = hc.log_key_message(inputs["origin"], inputs["index"], new_key)
    entry = hc.build_log_key_entry(origin=inputs["origin"], index=inputs["index"],
                                   new_key=new_key, signer_seed=signer,
                                   nonce=hx(inputs["nonce"], "nonce"))
    hc.verify_log_key_entry(hc.decode_entry(entry), origin=inputs["origin"],
                            index=inputs["index"],
                            key_in_force=primitives.ed25519_public_key(signer),
                            pinned_key=None)
    return compare(case, intermediates={"new_key": new_key, "message": message,
                                        "signature": primitives.ed25519_sign(signer, message)},
                   outputs={"entry": entry, "leaf_hash": merkle.leaf_hash(entry)})


def _verify_directory(case: Mapping[str, Any]) -> Outcome:
    inputs = case["inputs"]
    entry = hc.build_directory_entry(epoch=inputs["epoch"], root=hx(inputs["root"], "root"),
                                     nonce=hx(inputs["nonce"], "nonce"))
    decoded = hc.decode_entry(entry)
    if decoded.directory_epoch != inputs["epoch"]:
        return Outcome(False, "the epoch does not decode back")
    return compare(case, outputs={"entry": entry, "leaf_hash": merkle.leaf_hash(entry)})


def _verify_decode(case: Mapping[str, Any]) -> Outcome:
    data = hx(case["inputs"]["entry"], "entry")
    if case["result"] == "invalid":
        return expect_rejection(case, lambda: hc.decode_entry(data))
    return compare(case, outputs={"type": hc.decode_entry(data).type})


def _verify_tree(case: Mapping[str, Any]) -> Outcome:
    tree = merkle.MerkleTree()
    for entry in case["inputs"]["entries"]:
        tree.append(hx(entry, "entry"))
    n = tree.size
    return compare(case, intermediates={
        "leaf_hashes": [tree.node(0, i) for i in range(n)],
        "levels": [[tree.node(level, i) for i in range(len(h) // 32)]
                   for level, h in enumerate(tree.levels)]},
        outputs={"roots": [tree.root(s) for s in range(1, n + 1)], "empty_root": merkle.EMPTY_ROOT,
                 "inclusion": [{"index": i, "size": s, "proof": tree.inclusion_proof(i, s)}
                               for s in range(1, PROOF_SIZES + 1) for i in range(s)],
                 "consistency": [{"size1": a, "size2": b, "proof": tree.consistency_proof(a, b)}
                                 for b in range(1, PROOF_SIZES + 1) for a in range(1, b + 1)]})


def _verify_inclusion(case: Mapping[str, Any]) -> Outcome:
    i = case["inputs"]
    leaf, root = hx(i["leaf_hash"], "leaf_hash"), hx(i["root"], "root")
    proof = [hx(p, "proof") for p in i["proof"]]

    def run() -> None:
        merkle.verify_inclusion(index=i["index"], size=i["size"], leaf=leaf, proof=proof,
                                root=root)

    if case["result"] == "invalid":
        return expect_rejection(case, run)
    run()
    return compare(case, intermediates={"path": inclusion_path(i["index"], i["size"], leaf,
                                                               proof)})


def _verify_consistency(case: Mapping[str, Any]) -> Outcome:
    i = case["inputs"]
    root1, root2 = hx(i["root1"], "root1"), hx(i["root2"], "root2")
    proof = [hx(p, "proof") for p in i["proof"]]

    def run() -> None:
        merkle.verify_consistency(size1=i["size1"], size2=i["size2"], root1=root1,
                                  root2=root2, proof=proof)

    if case["result"] == "invalid":
        return expect_rejection(case, run)
    run()
    if i["size1"] == i["size2"]:
        return compare(case, intermediates={})
    return compare(case, intermediates={"path": consistency_path(i["size1"], i["size2"],
                                                                 root1, proof)})


def _verify_sign_checkpoint(case: Mapping[str, Any]) -> Outcome:
    i = case["inputs"]
    seed = hx(i["key_seed"], "key_seed")
    checkpoint = note.Checkpoint(i["origin"], i["size"], hx(i["root"], "root"))
    sig = note.sign_note_text(checkpoint.text(), name=i["origin"], seed=seed)
    signed = note.sign_checkpoint(checkpoint, seeds=[seed])
    note.verify_checkpoint(signed.to_bytes(), origin=i["origin"], log_keys=[
        note.log_verifier(i["origin"], primitives.ed25519_public_key(seed))])
    return compare(case, intermediates={"text": checkpoint.text(), "key_id": sig.key_id,
                                        "signature": sig.signature},
                   outputs={"note": signed.to_bytes().decode("utf-8")})


def _verify_cosign(case: Mapping[str, Any]) -> Outcome:
    i = case["inputs"]
    seed = hx(i["seed"], "seed")
    line = note.cosign(i["checkpoint"], name=i["name"], seed=seed, timestamp=i["timestamp"])
    return compare(case, intermediates={
        "message": note.cosignature_message(i["timestamp"], i["checkpoint"]).decode("utf-8"),
        "key_id": line.key_id}, outputs={"line": line.line()})


def policy_of(i: Mapping[str, Any]) -> note.WitnessPolicy:
    return note.WitnessPolicy(tuple(note.parse_vkey(v) for v in i["witnesses"]),
                              quorum=i["quorum"], max_age=i["max_age"])


def _verify_checkpoint(case: Mapping[str, Any]) -> Outcome:
    i = case["inputs"]

    def run() -> note.VerifiedCheckpoint:
        return note.verify_checkpoint(i["note"].encode("utf-8"), origin=i["origin"],
                                      log_keys=[note.parse_vkey(v) for v in i["log_keys"]],
                                      policy=policy_of(i), now=i["now"])

    if case["result"] == "invalid":
        return expect_rejection(case, run)
    got = run()
    return compare(case, outputs={"origin": got.checkpoint.origin, "size": got.checkpoint.size,
                                  "root": got.checkpoint.root_hash,
                                  "cosigned_by": list(got.cosigned_by)})


def _verify_witness(case: Mapping[str, Any]) -> Outcome:
    i = case["inputs"]
    stored = i["state"]
    keys = [note.parse_vkey(v) for v in i["log_keys"]]

    def run() -> witness.Cosigned:
        request = witness.parse_add_checkpoint(i["body"].encode("utf-8"))
        return witness.add_checkpoint(
            request, logs={keys[0].name: keys},
            state=None if stored is None else witness.LogState(
                stored["size"], hx(stored["root"], "root"), b""),
            name=i["name"], seed=hx(i["seed"], "seed"), now=i["now"])

    if case["result"] == "invalid":
        outcome = expect_rejection(case, run)
        if not outcome.agreed:
            return outcome
        try:
            run()
        except SpecError as exc:
            status = witness.answer_for(exc).status
            if status != WITNESS_STATUS[exc.failure_class]:
                return Outcome(False, f"answered {status} for failure class {exc.failure_class}")
        return outcome
    got = run()
    return compare(case, outputs={"status": 200, "body": got.body().decode("utf-8"),
                                  "state": {"size": got.state.size, "root": got.state.root}})


def _state_in(value: Any) -> hcc.FollowerState | None:
    if value is None:
        return None
    return hcc.FollowerState(checkpoint=value["checkpoint"].encode("utf-8"),
                             size=value["size"], root=hx(value["root"], "root"),
                             compact=tuple(hx(h, "compact") for h in value["compact"]),
                             log_keys=tuple(hx(k, "log_keys") for k in value["log_keys"]))


def _verify_follow(case: Mapping[str, Any]) -> Outcome:
    i = case["inputs"]
    consistency = i["consistency"]
    if consistency is not None:
        consistency = {"size1": consistency["size1"], "size2": consistency["size2"],
                       "root1": hx(consistency["root1"], "root1"),
                       "proof": [hx(p, "proof") for p in consistency["proof"]]}

    def run() -> hcc.FollowerState:
        return run_follow(origin=i["origin"], keys=[hx(k, "key") for k in i["log_keys"]],
                          trusted=_state_in(i["trusted"]),
                          checkpoint=i["checkpoint"].encode("utf-8"), consistency=consistency,
                          entries=[hx(e, "entry") for e in i["entries"]])

    if case["result"] == "invalid":
        return expect_rejection(case, run)
    return compare(case, outputs=state_wire(run()))


def _verify_fork(case: Mapping[str, Any]) -> Outcome:
    i = case["inputs"]

    def run() -> hcc.ForkEvidence:
        return hcc.verify_fork_proof(hcc.parse_fork_proof(i["fork_proof"]), origin=i["origin"],
                                     log_keys=[note.parse_vkey(v) for v in i["log_keys"]])

    if case["result"] == "invalid":
        return expect_rejection(case, run)
    evidence = run()
    return compare(case, outputs={"size": evidence.size, "roots": list(evidence.roots)})


def _verify_accumulated(case: Mapping[str, Any]) -> Outcome:
    i = case["inputs"]
    m, digest = accumulated(i["label"], i["count"])
    return compare(case, outputs={
        "entries_digest": digest, "root": m.log.tree.root(),
        "compact": merkle.compact_range_of(m.log.size, m.log.tree.node).nodes,
        "checkpoint": m.log.signed_checkpoint().to_bytes().decode("utf-8")})


VERIFIERS: dict[tuple[str, str], Callable[[Mapping[str, Any]], Outcome]] = {
    ("v1", OP_BUILD): _verify_build,
    ("v1", OP_KEY_ENTRY): _verify_key_entry,
    ("v1", OP_DIRECTORY): _verify_directory,
    ("v1", OP_DECODE): _verify_decode,
    ("v1", OP_TREE): _verify_tree,
    ("v1", OP_INCLUSION): _verify_inclusion,
    ("v1", OP_CONSISTENCY): _verify_consistency,
    ("v1", OP_SIGN_CHECKPOINT): _verify_sign_checkpoint,
    ("v1", OP_COSIGN): _verify_cosign,
    ("v1", OP_VERIFY_CHECKPOINT): _verify_checkpoint,
    ("v1", OP_WITNESS): _verify_witness,
    ("v1", OP_FOLLOW): _verify_follow,
    ("v1", OP_FORK): _verify_fork,
    ("v1", OP_ACCUMULATED): _verify_accumulated,
}
