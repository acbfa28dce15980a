"""Vectors of the hashchain flow's key directory (vectors/hashchain-directory.yaml).

One world is generated from the DRBG: a transparency log with a witness, a directory VRF
key, and three epochs over a keypair (initial, then a rotation), a device list (two
versions), a UID, a keypair that is deleted, a keypair with an ML-KEM-768 key (the hybrid
suite) that is reset, and filler identities. Operations:

  directory-vrf-prove       D1: alpha, the ECVRF proof, beta and the position of a
                            label (with RFC 9381 Appendix B.3's examples as anchors)
  directory-vrf-verify      D1: the client's check of a position proof
  directory-leaf-chain      D2, D3: value bytes, value hashes, chained leaf values
  directory-map             D4: roots after batches of leaf changes, proofs of probes
  directory-map-proof       D4: membership and absence proofs against a root
  directory-commitment      D5: C and the epoch's log entry
  directory-lookup          D7: a whole lookup answer against the client's trust
  directory-monitor         D8: an owner following its identity epoch by epoch
  directory-history         D9: an identity's history through the directory
  directory-accumulated     D4: thousands of leaves in batches, folded into digests

Negatives are mutation families, each with the failure class and step that must reject:
VRF proofs flipped, under another key or label, malformed; map proofs with a flipped
node, truncated or extended, ending off the path, absence claimed for a present identity
or membership for an absent one; stale, future and rolled-back epochs; a wrong
commitment; an entry of another epoch or type; a tampered inclusion proof; checkpoints
without a trusted signature or the witness quorum; a value or leaf field changed; for
monitoring, versions the owner did not make, a vanished or rolled-back leaf and a change
never published; for histories, dropped, extra or reordered versions and a fork.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

from keyflows.spec import ecvrf, primitives
from keyflows.spec import hashchain as hc
from keyflows.spec import hashchain_directory as hd
from keyflows.spec import hashchain_directory_client as hdc
from keyflows.spec import hashchain_directory_map as dmap
from keyflows.spec import hashchain_directory_model as hm
from keyflows.spec import hashchain_note as note
from keyflows.spec import hashchain_uid as hu
from keyflows.spec import keypair_publication as kp
from keyflows.spec.drbg import Drbg
from keyflows.spec.encoding import b64url_decode, b64url_encode
from keyflows.vectors.framework import (
    Case,
    Failure,
    Flag,
    Outcome,
    VectorFile,
    compare,
    expect_rejection,
    hx,
)

SCHEMA_NAME = "hashchain-directory"
PROFILE = "v1"
ORIGIN = "directory.example.org/log"
WITNESS_NAME = "witness.example.org"
NOW = 1_700_000_000
EPOCH_TIMES = (NOW - 300, NOW - 200, NOW - 100)
COSIGNED_AT = NOW - 90
ATTACK_TIMES = (NOW - 500, NOW - 400, NOW - 300)
NO_WITNESS = {"witnesses": [], "quorum": 0}
#: A keypair with an ML-KEM-768 key (the hybrid suite), reset at epoch 3.
ERIN_KP = hd.keypair_label("erin", "mail")
MAX_DELAY = 3600

OP_VRF_PROVE = "directory-vrf-prove"
OP_VRF_VERIFY = "directory-vrf-verify"
OP_LEAF_CHAIN = "directory-leaf-chain"
OP_MAP = "directory-map"
OP_MAP_PROOF = "directory-map-proof"
OP_COMMITMENT = "directory-commitment"
OP_LOOKUP = "directory-lookup"
OP_MONITOR = "directory-monitor"
OP_HISTORY = "directory-history"
OP_ACCUMULATED = "directory-accumulated"

NOTES: dict[str, Flag] = {
    "Valid": Flag("A well-formed input the consumer accepts.",
                  "Accept; recompute every intermediate and output."),
    "External": Flag("A known-answer example from RFC 9381 Appendix B.3.",
                     "Reproduce it byte for byte."),
    "Absent": Flag("The identity is not in the directory.",
                   "Accept the absence proof; report the identity absent."),
    "Removed": Flag("The identity's latest version removes its value (a deleted keypair).",
                    "Accept; report the value removed (value null, tombstone hash)."),
    "PastEpoch": Flag("The client asks for a past epoch (monitoring).",
                      "Check the answer is for that epoch; no age limit applies."),
    "Accumulated": Flag("Many generated leaves folded into digests.",
                        "Regenerate the leaves as described and compare the digests."),
    "BitFlip": Flag("One bit of one value is flipped.",
                    "Reject where the value is protected."),
    "Truncated": Flag("A value or proof is one element or byte short.",
                      "Reject (length for a value, proof for a proof)."),
    "Extended": Flag("A proof has one element more, or more than 256.",
                     "Reject (proof, or length past 256)."),
    "WrongKey": Flag("The client pins another VRF key than the answer was made with.",
                     "Reject (failure class proof)."),
    "WrongLabel": Flag("An answer or proof for another identity or epoch than asked for.",
                       "Reject (binding for an answer, proof for a bare VRF proof)."),
    "SmallOrder": Flag("A VRF public key of small order.", "Reject (failure class point)."),
    "OffPath": Flag("A map proof ending at a leaf whose position leaves the path.",
                    "Reject (failure class proof)."),
    "AbsenceOfPresent": Flag("An absence claimed for an identity the map holds.",
                             "Reject (failure class proof)."),
    "MembershipOfAbsent": Flag("A leaf claimed for an identity the map does not hold.",
                               "Reject (failure class proof)."),
    "WrongValue": Flag("A value, version, epoch or chain link of the leaf is changed.",
                       "Reject (proof where a hash covers it, binding for a leaf epoch above "
                       "the answer's, the value's own class otherwise)."),
    "WrongCommitment": Flag("The log entry does not commit to the answer's epoch, time, map "
                            "root or VRF key.", "Reject (proof; binding for the epoch)."),
    "WrongEntry": Flag("The log entry is not a key-directory entry.",
                       "Reject (failure class binding)."),
    "WrongInclusion": Flag("The inclusion proof or index of the entry is changed.",
                           "Reject (failure class proof)."),
    "Untrusted": Flag("The checkpoint carries no signature by a trusted log key.",
                      "Reject (failure class signature)."),
    "MissingCosignature": Flag("The checkpoint lacks the witness quorum.",
                               "Reject (failure class witness)."),
    "Stale": Flag("An epoch older than the client's maximum age, or from the future.",
                  "Reject (failure class expired)."),
    "Rollback": Flag("An epoch older than one the client accepted before.",
                     "Reject (failure class replay)."),
    "Malformed": Flag("An answer that does not decode: a member missing, unknown, of the "
                      "wrong type or size.", "Reject (decode or length)."),
    "Ghost": Flag("The owner's identity holds a version its owner did not make.",
                  "Reject (failure class monitor)."),
    "Vanished": Flag("The owner's identity is absent or rolled back after a change.",
                     "Reject (failure class monitor)."),
    "Unpublished": Flag("A change the server accepted is missing after the maximum delay.",
                        "Reject (failure class monitor)."),
    "HistoryGap": Flag("A history that drops, adds or reorders versions.",
                       "Reject (failure class history)."),
    "Fork": Flag("A history that does not pass through a leaf the client accepted before.",
                 "Reject (failure class fork)."),
}

# Steps of the key directory in the hashchain chapter (D1 .. D9 = steps 14 .. 22).
D1, D2, D3, D4, D5, D6, D7, D8, D9 = (str(13 + i) for i in range(1, 10))


def _failure(failure_class: str, step: str) -> Failure:
    return Failure(failure_class, step)


# --- the world --------------------------------------------------------------------------------

def device_list_bytes(user_id: str, client_id: str, body: bytes) -> bytes:
    """Stand-in bytes with the signed device list's leading context (the directory only
    hashes them; the envelope flow's vectors carry real lists)."""
    return hd.device_list_prefix(user_id, client_id) + body


@dataclass
class World:
    rnd: Drbg
    log: hc.TransparencyLog
    directory: hm.DirectoryModel
    witness_seed: bytes
    trust: hdc.Trust
    trust_wire: dict[str, Any]
    alice_kp: hd.Label
    alice_dev: hd.Label
    alice_uid: hd.Label
    dave_kp: hd.Label
    bob_kp: hd.Label
    values: dict[hd.Label, list[Any]]
    cosignature: note.NoteSignature

    def answer(self, label: hd.Label, epoch: int | None = None) -> dict[str, Any]:
        return self.directory.answer(label, epoch=epoch, cosignatures=(self.cosignature,))

    def history(self, label: hd.Label) -> dict[str, Any]:
        return self.directory.history(label, cosignatures=(self.cosignature,))


def _keypair_views(rnd: Drbg, user_id: str, client_id: str, count: int) -> list[Any]:
    views: list[Any] = []
    previous: kp.PrivateKeys | None = None
    for version in range(1, count + 1):
        private = kp.generate_private_keys(rnd.fork(f"{user_id}/keys/{version}"))
        sealed = kp.seal_record(
            user_id=user_id, client_id=client_id, key_version=version, private=private,
            kek=rnd(32), kek_spec=kp.KekSpec(kp.METHOD_APPLICATION_KEY), nonce=rnd(12),
            z=rnd(64), change_type=kp.CHANGE_INITIAL if previous is None else
            kp.CHANGE_ROTATION, previous=previous)
        views.append(kp.public_view(sealed.record))
        previous = private
    return views


def _hybrid_reset_views(rnd: Drbg, user_id: str, client_id: str) -> list[Any]:
    """Two versions of a keypair with an ML-KEM-768 key: an initial publication, then a
    reset (new keys, no signature by the replaced key)."""
    views: list[Any] = []
    for version, change in ((1, kp.CHANGE_INITIAL), (2, kp.CHANGE_RESET)):
        private = kp.generate_private_keys(rnd.fork(f"{user_id}/keys/{version}"),
                                           with_mlkem=True)
        sealed = kp.seal_record(
            user_id=user_id, client_id=client_id, key_version=version, private=private,
            kek=rnd(32), kek_spec=kp.KekSpec(kp.METHOD_APPLICATION_KEY), nonce=rnd(12),
            z=rnd(64), change_type=change)
        views.append(kp.public_view(sealed.record))
    return views


def _uid(rnd: Drbg, identity: str, log: hc.TransparencyLog) -> Any:
    sigkey, sigescrow, x25519 = rnd(32), rnd(32), rnd(32)
    content = hu.UidContent(
        identity=identity, msg_count=0, not_before=NOW - 1000, not_after=NOW + 30 * 86400,
        sigkey=primitives.ed25519_public_key(sigkey),
        sigescrow=primitives.ed25519_public_key(sigescrow),
        x25519=primitives.x25519_public_key(x25519),
        last_checkpoint=hu.LastCheckpoint(log.size, log.tree.root(log.size)), previous=None)
    return hu.uid_to_wire(hu.sign_uid(content, sigkey_seed=sigkey, sigescrow_seed=sigescrow))


@cache
def world() -> World:
    rnd = Drbg(f"{SCHEMA_NAME}/{PROFILE}/world")
    log = hc.TransparencyLog(origin=ORIGIN, key_seed=rnd(32), nonce0=rnd(16))
    directory = hm.DirectoryModel(vrf_secret_key=rnd(32), log=log)
    witness_seed = rnd(32)
    alice_kp = hd.keypair_label("alice", "mail")
    alice_dev = hd.devices_label("alice", "mail")
    alice_uid = hd.uid_label("alice@example.org")
    dave_kp = hd.keypair_label("dave", "mail")
    bob_kp = hd.keypair_label("bob", "mail")
    views = _keypair_views(rnd, "alice", "mail", 2)
    dave = _keypair_views(rnd, "dave", "mail", 1)
    values: dict[hd.Label, list[Any]] = {
        alice_kp: views,
        alice_dev: [b64url_encode(device_list_bytes("alice", "mail", rnd(48))),
                    b64url_encode(device_list_bytes("alice", "mail", rnd(48)))],
        alice_uid: [_uid(rnd, "alice@example.org", log)],
        dave_kp: [dave[0], None],
    }
    values[bob_kp] = _keypair_views(rnd, "bob", "mail", 1)   # made, never published
    # its own generator: the other identities keep their bytes
    values[ERIN_KP] = _hybrid_reset_views(Drbg(f"{SCHEMA_NAME}/{PROFILE}/hybrid"), "erin",
                                          "mail")
    fillers = {hd.devices_label(f"user{i:02d}", "mail"):
               b64url_encode(device_list_bytes(f"user{i:02d}", "mail", rnd(16)))
               for i in range(12)}
    # epoch 1: first versions and fillers; epoch 2: rotation and deletion; epoch 3: devices
    # and erin's reset
    for label in (alice_kp, alice_dev, alice_uid, dave_kp, ERIN_KP):
        directory.stage(label, values[label][0])
    for label, value in fillers.items():
        directory.stage(label, value)
    directory.publish(published_at=EPOCH_TIMES[0], nonce=rnd(16))
    directory.stage(alice_kp, values[alice_kp][1])
    directory.stage(dave_kp, None)
    directory.publish(published_at=EPOCH_TIMES[1], nonce=rnd(16))
    directory.stage(alice_dev, values[alice_dev][1])
    directory.stage(ERIN_KP, values[ERIN_KP][1])
    directory.publish(published_at=EPOCH_TIMES[2], nonce=rnd(16))
    witness = note.witness_verifier(WITNESS_NAME, primitives.ed25519_public_key(witness_seed))
    checkpoint = log.checkpoint()
    cosignature = note.cosign(checkpoint.text(), name=WITNESS_NAME, seed=witness_seed,
                              timestamp=COSIGNED_AT)
    policy = note.WitnessPolicy(witnesses=(witness,), quorum=1, max_age=3600)
    trust = hdc.Trust(vrf_public_key=directory.vrf_public_key, origin=ORIGIN,
                      log_keys=tuple(log.verifiers()), policy=policy)
    trust_wire = {"vrf_public_key": directory.vrf_public_key, "origin": ORIGIN,
                  "log_keys": [v.vkey for v in log.verifiers()], "witnesses": [witness.vkey],
                  "quorum": 1, "witness_max_age": 3600,
                  "max_epoch_age": hdc.DEFAULT_MAX_EPOCH_AGE}
    return World(rnd=rnd, log=log, directory=directory, witness_seed=witness_seed,
                 trust=trust, trust_wire=trust_wire, alice_kp=alice_kp, alice_dev=alice_dev,
                 alice_uid=alice_uid, dave_kp=dave_kp, bob_kp=bob_kp, values=values,
                 cosignature=cosignature)


def label_wire(label: hd.Label) -> dict[str, Any]:
    return label.to_wire()


def parse_label_wire(obj: Mapping[str, Any]) -> hd.Label:
    kind = obj["kind"]
    return hd.Label(kind, tuple(obj[m] for m in hd.label_members(kind)))


def parse_trust(obj: Mapping[str, Any]) -> hdc.Trust:
    witnesses = tuple(note.parse_vkey(v) for v in obj["witnesses"])
    return hdc.Trust(vrf_public_key=hx(obj["vrf_public_key"], "vrf_public_key"),
                     origin=obj["origin"],
                     log_keys=tuple(note.parse_vkey(v) for v in obj["log_keys"]),
                     policy=note.WitnessPolicy(witnesses=witnesses, quorum=obj["quorum"],
                                               max_age=obj["witness_max_age"]),
                     max_epoch_age=obj["max_epoch_age"])


# --- D1: VRF ----------------------------------------------------------------------------------

# The RFC 9381 Appendix B.3 examples (ECVRF-EDWARDS25519-SHA512-TAI): origin, SK, alpha.
# Kept here, not read from tests/kat, so an installed package generates the same cases;
# tests/test_hashchain_directory.py checks them against tests/kat's copy.
RFC9381_EXAMPLES: tuple[tuple[str, str, str], ...] = (
    ("RFC 9381 Appendix B.3, Example 16 (SK and PK of RFC 8032 section 7.1 test 1)",
     "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60", ""),
    ("RFC 9381 Appendix B.3, Example 17 (RFC 8032 section 7.1 test 2)",
     "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb", "72"),
    ("RFC 9381 Appendix B.3, Example 18 (RFC 8032 section 7.1 test 3)",
     "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7", "af82"),
)


def _vrf_prove_case(case_id: str, comment: str, flags: tuple[str, ...], sk: bytes,
                    label: hd.Label | None, alpha: bytes) -> Case:
    proved = ecvrf.prove(sk, alpha)
    inputs: dict[str, Any] = {"vrf_secret_key": sk, "alpha": alpha}
    if label is not None:
        inputs = {"vrf_secret_key": sk, "label": label_wire(label)}
    outputs: dict[str, Any] = {"vrf_public_key": proved.public_key, "proof": proved.pi,
                               "beta": proved.beta}
    if label is not None:
        outputs["position"] = hd.position_of(proved.beta)
    return Case(id=case_id, comment=comment, flags=flags, requirements=("HC-80",),
                operation=OP_VRF_PROVE, inputs=inputs,
                intermediates={"alpha": alpha, "h": proved.h_string}, outputs=outputs)


def _rfc9381_examples() -> list[tuple[str, bytes, bytes]]:
    """(origin, sk, alpha) of the RFC 9381 Appendix B.3 examples."""
    return [(origin, bytes.fromhex(sk), bytes.fromhex(alpha))
            for origin, sk, alpha in RFC9381_EXAMPLES]


def vrf_cases() -> list[Case]:
    w = world()
    sk = w.directory.vrf_secret_key
    cases = [_vrf_prove_case(f"hc-dir/vrf-prove/{label.kind}", f"the position of "
                             f"{label.describe()}", ("Valid",), sk, label, hd.vrf_input(label))
             for label in (w.alice_kp, w.alice_dev, w.alice_uid)]
    for number, (origin, key, alpha) in enumerate(_rfc9381_examples(), start=16):
        cases.append(_vrf_prove_case(f"hc-dir/vrf-prove/rfc9381-example-{number}", origin,
                                     ("Valid", "External"), key, None, alpha))
    cases.extend(_vrf_verify_cases(w))
    return cases


def _vrf_verify_cases(w: World) -> list[Case]:
    label = w.alice_kp
    good = w.directory.positioned(label)
    public = w.directory.vrf_public_key

    def case(slug: str, comment: str, flags: tuple[str, ...], *, key: bytes = public,
             proof: bytes = good.proof, asked: hd.Label = label,
             failure: Failure | None = None) -> Case:
        outputs = {} if failure else {"position": good.position}
        return Case(id=f"hc-dir/vrf-verify/{slug}", comment=comment, flags=flags,
                    requirements=("HC-81",), operation=OP_VRF_VERIFY,
                    inputs={"vrf_public_key": key, "label": label_wire(asked), "proof": proof},
                    outputs=outputs, failure=failure)

    def flip(byte: int, bit: int = 0) -> bytes:
        out = bytearray(good.proof)
        out[byte] ^= 1 << bit
        return bytes(out)

    s_not_reduced = good.proof[:48] + (int.from_bytes(good.proof[48:], "little")
                                       + ecvrf.ORDER).to_bytes(32, "little")
    small_order = bytes([1]) + bytes(31)   # the identity point
    proof_class = _failure("proof", D1)
    cases = [case("valid", "the proof of alice's keypair label", ("Valid",))]
    gamma = flip(0)
    gamma_class = "proof" if ecvrf.string_to_point(gamma[:32]) is not None else "point"
    cases += [
        case("gamma-flipped", "bit 0 of Gamma flipped", ("BitFlip",), proof=gamma,
             failure=_failure(gamma_class, D1)),
        case("c-flipped", "bit 0 of c flipped", ("BitFlip",), proof=flip(32),
             failure=proof_class),
        case("s-flipped", "bit 0 of s flipped", ("BitFlip",), proof=flip(48),
             failure=proof_class),
        case("s-not-reduced", "s + q instead of s (RFC 9381 section 5.4.4 requires s < q)",
             ("BitFlip",), proof=s_not_reduced, failure=proof_class),
        case("truncated", "the proof without its last byte", ("Truncated",),
             proof=good.proof[:-1], failure=_failure("length", D1)),
        case("other-label", "the proof of alice's keypair presented for bob's",
             ("WrongLabel",), asked=w.bob_kp, failure=proof_class),
        case("other-key", "the client pins another VRF key", ("WrongKey",),
             key=ecvrf.public_key(w.rnd.fork("other-vrf-key")(32)), failure=proof_class),
        case("small-order-key", "the VRF public key is the identity point", ("SmallOrder",),
             key=small_order, failure=_failure("point", D1)),
    ]
    return cases


def _verify_vrf_prove(case: Mapping[str, Any]) -> Outcome:
    inputs = case["inputs"]
    sk = hx(inputs["vrf_secret_key"], "vrf_secret_key")
    if "label" in inputs:
        label = parse_label_wire(inputs["label"])
        alpha = hd.vrf_input(label)
    else:
        label, alpha = None, hx(inputs["alpha"], "alpha")
    proved = ecvrf.prove(sk, alpha)
    outputs: dict[str, Any] = {"vrf_public_key": proved.public_key, "proof": proved.pi,
                               "beta": proved.beta}
    if label is not None:
        outputs["position"] = hd.position_of(proved.beta)
    if ecvrf.verify(proved.public_key, proved.pi, alpha) != proved.beta:
        return Outcome(False, "the proof does not verify")
    return compare(case, intermediates={"alpha": alpha, "h": proved.h_string},
                   outputs=outputs)


def _verify_vrf_verify(case: Mapping[str, Any]) -> Outcome:
    inputs = case["inputs"]

    def run() -> bytes:
        return hd.verify_position(hx(inputs["vrf_public_key"], "vrf_public_key"),
                                  parse_label_wire(inputs["label"]),
                                  hx(inputs["proof"], "proof"))

    if case["result"] == "invalid":
        return expect_rejection(case, run)
    return compare(case, outputs={"position": run()})


# --- D2, D3: leaves ---------------------------------------------------------------------------

def _chain_of(label: hd.Label, pairs: list[tuple[int, Any]]) -> dict[str, Any]:
    value_bytes = [hd.value_bytes(label, v) for _, v in pairs]
    hashes = [hd.value_hash(label.kind, b) for b in value_bytes]
    leaves = hd.chain([(e, h) for (e, _), h in zip(pairs, hashes, strict=True)])
    return {"value_bytes": value_bytes, "value_hashes": hashes,
            "leaf_values": [leaf.leaf_value for leaf in leaves]}


def leaf_cases() -> list[Case]:
    w = world()
    epochs = {w.alice_kp: [1, 2], w.alice_dev: [1, 3], w.alice_uid: [1], w.dave_kp: [1, 2],
              ERIN_KP: [1, 3]}
    cases: list[Case] = []
    for label in (w.alice_kp, w.alice_dev, w.alice_uid, w.dave_kp, ERIN_KP):
        pairs = list(zip(epochs[label], w.values[label], strict=True))
        computed = _chain_of(label, pairs)
        flags = ("Valid", "Removed") if w.values[label][-1] is None else ("Valid",)
        comment = f"every version of {label.describe()}"
        if label == ERIN_KP:
            comment += (" (public keys with ML-KEM-768, the hybrid suite; version 2 a reset:"
                        " its value bytes end with change type 'reset' and the possession"
                        " signature, no rotation signature)")
        cases.append(Case(
            id=f"hc-dir/leaf-chain/{label.kind}-{label.names[0].split('@')[0]}",
            comment=comment, flags=flags,
            requirements=("HC-82", "HC-83"), operation=OP_LEAF_CHAIN,
            inputs={"label": label_wire(label),
                    "versions": [{"epoch": e, "value": v} for e, v in pairs]},
            intermediates={k: v for k, v in computed.items() if k != "leaf_values"},
            outputs={"leaf_values": computed["leaf_values"]}))
    negative = [
        ("keypair-other-user", "alice's public view as dave's", w.dave_kp,
         w.values[w.alice_kp][0], "binding"),
        ("devices-other-user", "alice's device list as dave's",
         hd.devices_label("dave", "mail"), w.values[w.alice_dev][0], "binding"),
        ("uid-other-identity", "alice's UID as dave's", hd.uid_label("dave@example.org"),
         w.values[w.alice_uid][0], "binding"),
        ("keypair-bad-signature", "a public view whose binding signature is flipped",
         w.alice_kp, _flip_member(w.values[w.alice_kp][0], "binding_signature"), "signature"),
    ]
    for slug, comment, label, value, failure_class in negative:
        cases.append(Case(
            id=f"hc-dir/leaf-chain/{slug}", comment=comment, flags=("WrongValue",),
            requirements=("HC-82", "KP-6", "KP-7"), operation=OP_LEAF_CHAIN,
            inputs={"label": label_wire(label), "versions": [{"epoch": 1, "value": value}]},
            failure=_failure(failure_class, D2)))
    return cases


def _flip_member(view: Any, member: str) -> Any:
    out = copy.deepcopy(view)
    data = bytearray(b64url_decode(out[member]))
    data[32] ^= 1                    # the low byte of S: still a canonical encoding
    out[member] = b64url_encode(bytes(data))
    return out


def _verify_leaf_chain(case: Mapping[str, Any]) -> Outcome:
    inputs = case["inputs"]
    label = parse_label_wire(inputs["label"])
    pairs = [(v["epoch"], v["value"]) for v in inputs["versions"]]
    if case["result"] == "invalid":
        return expect_rejection(case, lambda: _chain_of(label, pairs))
    computed = _chain_of(label, pairs)
    return compare(case, intermediates={k: v for k, v in computed.items()
                                        if k != "leaf_values"},
                   outputs={"leaf_values": computed["leaf_values"]})


# --- D4: the map ------------------------------------------------------------------------------

def proof_wire(proof: dmap.MapProof) -> dict[str, Any]:
    out: dict[str, Any] = {"siblings": list(proof.siblings)}
    if proof.terminal is not None:
        out["terminal"] = {"position": proof.terminal.position,
                           "leaf_value": proof.terminal.value}
    return out


def parse_proof_wire(obj: Mapping[str, Any]) -> dmap.MapProof:
    terminal = None
    if "terminal" in obj:
        terminal = dmap.Leaf(hx(obj["terminal"]["position"], "position"),
                             hx(obj["terminal"]["leaf_value"], "leaf_value"))
    return dmap.MapProof(tuple(hx(s, "sibling") for s in obj["siblings"]), terminal)


def _map_material(label: str, count: int, batches: int) -> tuple[list[dict[bytes, bytes]],
                                                                   list[bytes]]:
    """Batches of leaf changes (later batches also change earlier leaves) and probes."""
    rnd = Drbg(f"{SCHEMA_NAME}/{PROFILE}/map/{label}")
    # Positions share prefixes in pairs and triples, so that deep paths occur.
    positions: list[bytes] = []
    while len(positions) < count:
        head = rnd(32)
        for j in range(min(1 + len(positions) % 3, count - len(positions))):
            tail = bytearray(head)
            tail[31] ^= j
            positions.append(bytes(tail))
    out: list[dict[bytes, bytes]] = [{} for _ in range(batches)]
    for i, position in enumerate(positions):
        out[i % batches][position] = rnd(32)
    for batch in range(1, batches):
        for position in positions[:batch * 2]:
            out[batch][position] = rnd(32)
    probes = positions[:4] + [rnd(32) for _ in range(4)]
    if positions:
        near = bytearray(positions[0])
        near[31] ^= 0x80
        probes.append(bytes(near))
    return out, probes


def _map_outputs(batches: list[dict[bytes, bytes]], probes: list[bytes]
                 ) -> tuple[list[bytes], list[dict[str, Any]]]:
    tree = dmap.MemoryMap()
    roots = [tree.apply(batch).root for batch in batches] if batches else [tree.root]
    proofs = [{"position": p, **proof_wire(tree.prove(p))} for p in probes]
    return roots, proofs


def map_cases() -> list[Case]:
    cases: list[Case] = []
    for slug, count, batches, comment in (
            ("empty", 0, 0, "no leaf: the root is 32 zero bytes, every probe is absent"),
            ("single", 1, 1, "one leaf: the root is its leaf hash"),
            ("small", 24, 3, "24 leaves in 3 batches, later batches change earlier leaves")):
        material, probes = _map_material(slug, count, batches)
        if not probes:
            probes = [Drbg(f"{SCHEMA_NAME}/{PROFILE}/map/empty-probe")(32)]
        roots, proofs = _map_outputs(material, probes)
        cases.append(Case(
            id=f"hc-dir/map/{slug}", comment=comment, flags=("Valid",),
            requirements=("HC-84", "HC-85"), operation=OP_MAP,
            inputs={"batches": [[{"position": p, "leaf_value": v} for p, v in b.items()]
                                for b in material], "probes": probes},
            outputs={"roots": roots, "proofs": proofs}))
    return cases + _map_proof_cases()


def _map_proof_cases() -> list[Case]:
    material, _ = _map_material("small", 24, 3)
    tree = dmap.MemoryMap()
    for batch in material:
        tree.apply(batch)
    leaves = dict(zip(tree.positions, (tree.values[p] for p in tree.positions), strict=True))
    member = tree.positions[5]
    deep = max(tree.positions, key=lambda p: tree.prove(p).depth)
    rnd = Drbg(f"{SCHEMA_NAME}/{PROFILE}/map-proof")
    absent_other = absent_empty = None
    while absent_other is None or absent_empty is None:
        probe = rnd(32)
        terminal = tree.prove(probe).terminal
        if terminal is None and absent_empty is None:
            absent_empty = probe
        elif terminal is not None and absent_other is None:
            absent_other = probe

    def case(slug: str, comment: str, flags: tuple[str, ...], position: bytes,
             proof: dmap.MapProof, leaf_value: bytes | None,
             failure_class: str | None = None) -> Case:
        claim: dict[str, Any] = {"member": leaf_value is not None}
        if leaf_value is not None:
            claim["leaf_value"] = leaf_value
        return Case(id=f"hc-dir/verify-map-proof/{slug}", comment=comment, flags=flags,
                    requirements=("HC-85",), operation=OP_MAP_PROOF,
                    inputs={"root": tree.root, "position": position, "claim": claim,
                            "proof": proof_wire(proof)},
                    outputs={} if failure_class else {"verified": True},
                    failure=_failure(failure_class, D4) if failure_class else None)

    good = tree.prove(deep)
    value = leaves[deep]
    other = tree.prove(absent_other)
    empty = tree.prove(absent_empty)

    def flipped(proof: dmap.MapProof, index: int) -> dmap.MapProof:
        siblings = list(proof.siblings)
        siblings[index] = bytes([siblings[index][0] ^ 1]) + siblings[index][1:]
        return dmap.MapProof(tuple(siblings), proof.terminal)

    assert other.terminal is not None
    off_path = dmap.MapProof(other.siblings, dmap.Leaf(
        bytes([other.terminal.position[0] ^ 0x80]) + other.terminal.position[1:],
        other.terminal.value))
    return [
        case("member", f"membership at depth {good.depth}", ("Valid",), deep, good, value),
        case("member-shallow", "membership of another leaf", ("Valid",), member,
             tree.prove(member), leaves[member]),
        case("absent-other-leaf", "absence: the path ends at another leaf", ("Valid",
                                                                            "Absent"),
             absent_other, other, None),
        case("absent-empty", "absence: the path ends at an empty subtree", ("Valid", "Absent"),
             absent_empty, empty, None),
        case("sibling-flipped-deepest", "the deepest sibling's first bit flipped",
             ("BitFlip",), deep, flipped(good, 0), value, "proof"),
        case("sibling-flipped-top", "the top sibling's first bit flipped", ("BitFlip",), deep,
             flipped(good, good.depth - 1), value, "proof"),
        case("value-flipped", "the claimed leaf value's first bit flipped", ("BitFlip",), deep,
             good, bytes([value[0] ^ 1]) + value[1:], "proof"),
        case("truncated", "the proof without its top sibling", ("Truncated",), deep,
             dmap.MapProof(good.siblings[:-1], None), value, "proof"),
        case("extended", "the proof with one more sibling on top", ("Extended",), member,
             dmap.MapProof((*tree.prove(member).siblings, bytes(32)), None), leaves[member],
             "proof"),
        case("too-long", "257 siblings", ("Extended",), deep,
             dmap.MapProof(tuple(bytes(32) for _ in range(257)), None), value, "length"),
        case("short-sibling", "a sibling of 31 bytes", ("Truncated",), deep,
             dmap.MapProof((good.siblings[0][:31], *good.siblings[1:]), None), value, "length"),
        case("absence-of-present", "the membership proof presented as an absence proof",
             ("AbsenceOfPresent",), deep, dmap.MapProof(good.siblings, dmap.Leaf(deep, value)),
             None, "proof"),
        case("membership-of-absent", "an absent position claimed with a leaf value",
             ("MembershipOfAbsent",), absent_empty, empty, bytes(32), "proof"),
        case("off-path", "an absence proof ending at a leaf that leaves the path",
             ("OffPath",), absent_other, off_path, None, "proof"),
    ]


def _verify_map(case: Mapping[str, Any]) -> Outcome:
    inputs = case["inputs"]
    batches = [{hx(leaf["position"], "position"): hx(leaf["leaf_value"], "leaf_value")
                for leaf in batch} for batch in inputs["batches"]]
    roots, proofs = _map_outputs(batches, [hx(p, "probe") for p in inputs["probes"]])
    return compare(case, outputs={"roots": roots, "proofs": proofs})


def _verify_map_proof(case: Mapping[str, Any]) -> Outcome:
    inputs = case["inputs"]
    position, root = hx(inputs["position"], "position"), hx(inputs["root"], "root")
    proof = parse_proof_wire(inputs["proof"])
    claim = inputs["claim"]

    def run() -> None:
        if claim["member"]:
            leaf_value = hx(claim["leaf_value"], "leaf_value")
            dmap.verify_membership(position, leaf_value,
                                   dmap.MapProof(proof.siblings,
                                                 dmap.Leaf(position, leaf_value)), root)
        else:
            dmap.verify_absence(position, proof, root)

    if case["result"] == "invalid":
        return expect_rejection(case, run)
    run()
    return compare(case, outputs={"verified": True})


# --- D5: commitments --------------------------------------------------------------------------

def commitment_cases() -> list[Case]:
    w = world()
    cases = []
    for snap in w.directory.snapshots:
        epoch = snap.epoch
        cases.append(Case(
            id=f"hc-dir/commitment/epoch-{epoch.epoch}",
            comment=f"epoch {epoch.epoch} and its log entry (index {snap.index})",
            flags=("Valid",), requirements=("HC-86", "HC-47"), operation=OP_COMMITMENT,
            inputs={"epoch": epoch.epoch, "published_at": epoch.published_at,
                    "vrf_public_key": epoch.vrf_public_key, "map_root": epoch.map_root,
                    "nonce": hc.decode_entry(snap.entry).nonce},
            outputs={"commitment": epoch.commitment, "entry": snap.entry,
                     "leaf_hash": hc.entry_leaf_hash(snap.entry)}))
    return cases


def _verify_commitment(case: Mapping[str, Any]) -> Outcome:
    inputs = case["inputs"]
    epoch = hd.Epoch(inputs["epoch"], inputs["published_at"],
                     hx(inputs["vrf_public_key"], "vrf_public_key"),
                     hx(inputs["map_root"], "map_root"))
    entry = hd.epoch_entry(epoch, hx(inputs["nonce"], "nonce"))
    return compare(case, outputs={"commitment": epoch.commitment, "entry": entry,
                                  "leaf_hash": hc.entry_leaf_hash(entry)})


# --- D7: lookups ------------------------------------------------------------------------------

def lookup_summary(lookup: hdc.Lookup) -> tuple[dict[str, Any], dict[str, Any]]:
    """The intermediates and outputs a lookup case records."""
    leaf = lookup.leaf
    intermediates: dict[str, Any] = {
        "position": lookup.position,
        "value_hash": None if leaf is None else leaf.value_hash,
        "leaf_value": None if leaf is None else leaf.leaf_value,
        "map_root": lookup.map_root, "commitment": lookup.commitment}
    outputs = {"found": leaf is not None, "removed": lookup.removed,
               "version": None if leaf is None else leaf.version, "epoch": lookup.epoch,
               "log_index": lookup.log_index, "checkpoint_size": lookup.checkpoint.size}
    return intermediates, outputs


def run_lookup(inputs: Mapping[str, Any]) -> hdc.Lookup:
    trust = parse_trust(inputs["trust"])
    return hdc.verify_lookup(inputs["answer"], label=parse_label_wire(inputs["label"]),
                             trust=trust, now=inputs["now"], last_epoch=inputs["last_epoch"],
                             at_epoch=inputs["at_epoch"])


def _lookup_case(slug: str, comment: str, flags: tuple[str, ...], requirements: tuple[str, ...],
                 *, label: hd.Label, answer: Any, now: int = NOW, last_epoch: int = 0,
                 at_epoch: int | None = None, trust: Mapping[str, Any] | None = None,
                 failure: Failure | None = None) -> Case:
    w = world()
    inputs = {"trust": dict(trust if trust is not None else w.trust_wire),
              "label": label_wire(label), "now": now, "last_epoch": last_epoch,
              "at_epoch": at_epoch, "answer": answer}
    intermediates: dict[str, Any] = {}
    outputs: dict[str, Any] = {}
    if failure is None:
        intermediates, outputs = lookup_summary(run_lookup(_hexless(inputs)))
    return Case(id=f"hc-dir/verify-lookup/{slug}", comment=comment, flags=flags,
                requirements=("HC-89", *requirements), operation=OP_LOOKUP,
                inputs=inputs, intermediates=intermediates, outputs=outputs, failure=failure)


def _hexless(inputs: Mapping[str, Any]) -> dict[str, Any]:
    """Inputs as a case file holds them (bytes as hex)."""
    out = dict(inputs)
    trust = dict(out["trust"])
    trust["vrf_public_key"] = bytes(trust["vrf_public_key"]).hex() \
        if isinstance(trust["vrf_public_key"], bytes) else trust["vrf_public_key"]
    out["trust"] = trust
    return out


def lookup_cases() -> list[Case]:
    w = world()
    valid = [
        _lookup_case("keypair", "alice's keypair: version 2 (a rotation) at epoch 3",
                     ("Valid",), ("HC-81", "HC-82", "HC-83", "HC-85", "HC-86", "HC-90",
                                  "HC-91"), label=w.alice_kp, answer=w.answer(w.alice_kp)),
        _lookup_case("keypair-hybrid", "erin's keypair with an ML-KEM-768 key: version 2 (a "
                     "reset) at epoch 3", ("Valid",), ("HC-82", "HC-83", "KP-18"),
                     label=ERIN_KP, answer=w.answer(ERIN_KP)),
        _lookup_case("devices", "alice's device list: version 2, added at epoch 3",
                     ("Valid",), ("HC-82", "HC-83"), label=w.alice_dev,
                     answer=w.answer(w.alice_dev)),
        _lookup_case("uid", "alice's UID", ("Valid",), ("HC-82",), label=w.alice_uid,
                     answer=w.answer(w.alice_uid)),
        _lookup_case("absent", "bob has no keypair", ("Valid", "Absent"), ("HC-85",),
                     label=w.bob_kp, answer=w.answer(w.bob_kp)),
        _lookup_case("removed", "dave's keypair was deleted at epoch 2", ("Valid", "Removed"),
                     ("HC-82",), label=w.dave_kp, answer=w.answer(w.dave_kp)),
        _lookup_case("past-epoch", "alice's keypair at epoch 1, asked for by epoch",
                     ("Valid", "PastEpoch"), ("HC-92",), label=w.alice_kp,
                     answer=w.answer(w.alice_kp, epoch=1), at_epoch=1, last_epoch=3),
    ]
    valid += _absence_variants(w)
    return valid + _lookup_negatives(w)


def _absence_variants(w: World) -> list[Case]:
    """Absence proofs of both ends: an empty subtree and another identity's leaf."""
    found: dict[bool, hd.Label] = {}
    for i in range(64):
        label = hd.keypair_label(f"nobody{i:02d}", "mail")
        ends_at_leaf = "other" in w.answer(label)["map_proof"]
        found.setdefault(ends_at_leaf, label)
        if len(found) == 2:
            break
    return [_lookup_case("absent-" + ("other-leaf" if at_leaf else "empty"),
                         f"{label.describe()} is absent: the path ends at "
                         + ("another identity's leaf" if at_leaf else "an empty subtree"),
                         ("Valid", "Absent"), ("HC-85",), label=label, answer=w.answer(label))
            for at_leaf, label in sorted(found.items())]


def _flip(text: str, byte: int = 0, bit: int = 0) -> str:
    data = bytearray(b64url_decode(text))
    data[byte] ^= 1 << bit
    return b64url_encode(bytes(data))


def _set_all(target: dict[str, Any], **members: Any) -> bool:
    """Set members of a dict inside a lambda; True so that edits chain with `and`."""
    target.update(members)
    return True


def _edit(answer: dict[str, Any], change: Callable[[dict[str, Any]], object]) -> dict[str, Any]:
    out = copy.deepcopy(answer)
    change(out)
    return out


def _retlog(answer: dict[str, Any], change: Callable[[note.TlogProof], note.TlogProof]
            ) -> dict[str, Any]:
    tlog = note.parse_tlog_proof(answer["log"]["proof"].encode())
    out = copy.deepcopy(answer)
    out["log"]["proof"] = change(tlog).to_bytes().decode()
    return out


def _lookup_negatives(w: World) -> list[Case]:
    good = w.answer(w.alice_kp)
    absent = w.answer(w.bob_kp)
    devices = w.answer(w.alice_dev)
    hybrid = w.answer(ERIN_KP)

    def neg(slug: str, comment: str, flags: tuple[str, ...], failure_class: str,
            requirements: tuple[str, ...], answer: Any, step: str = D7,
            **kwargs: Any) -> Case:
        if failure_class == "proof" and requirements[:1] != ("HC-81",):
            # a changed leaf or proof gives another map root: the commitment differs
            requirements = (*requirements, "HC-86")
        if step == D6:
            requirements = (*requirements, "API-6")
        return _lookup_case(slug, comment, flags, tuple(dict.fromkeys(requirements)),
                            label=kwargs.pop("label", w.alice_kp), answer=answer,
                            failure=_failure(failure_class, step), **kwargs)

    def set_leaf(member: str, value: Any) -> Callable[[dict[str, Any]], None]:
        return lambda a: a["leaf"].__setitem__(member, value)

    other_entry = w.directory.snapshot(2).entry
    uid_entry = w.log.entries[1]
    unsigned = _retlog(good, lambda t: note.TlogProof(
        t.index, t.proof, note.add_signatures(note.Note(note.parse_note(t.checkpoint).text,
                                                        ()), [note.sign_note_text(
                                                            note.parse_note(t.checkpoint).text,
                                                            name=ORIGIN,
                                                            seed=w.rnd.fork("intruder")(32))]
                                              ).to_bytes()))
    uncosigned = _retlog(good, lambda t: note.TlogProof(
        t.index, t.proof, note.Note(note.parse_note(t.checkpoint).text, tuple(
            s for s in note.parse_note(t.checkpoint).signatures
            if s.name != WITNESS_NAME)).to_bytes()))
    other_key_trust = {**w.trust_wire,
                       "vrf_public_key": ecvrf.public_key(w.rnd.fork("other-vrf")(32))}
    cases = [
        neg("vrf-proof-flipped", "bit 0 of the VRF proof's c flipped", ("BitFlip",), "proof",
            ("HC-81",), _edit(good, lambda a: a.__setitem__("vrf_proof",
                                                             _flip(a["vrf_proof"], 32)))),
        neg("other-vrf-key", "the client pins another VRF key", ("WrongKey",), "proof",
            ("HC-81", "HC-97"), good, trust=other_key_trust),
        neg("sibling-flipped", "bit 0 of the deepest map-proof sibling flipped", ("BitFlip",),
            "proof", ("HC-85",), _edit(good, lambda a: a["map_proof"]["siblings"].__setitem__(
                0, _flip(a["map_proof"]["siblings"][0])))),
        neg("sibling-dropped", "the map proof without its top sibling", ("Truncated",),
            "proof", ("HC-85",), _edit(good, lambda a: a["map_proof"]["siblings"].pop())),
        neg("absence-of-present", "alice's keypair answered as absent, with its own leaf as "
            "the other leaf", ("AbsenceOfPresent",), "proof", ("HC-85",),
            _absence_of_present(w, good)),
        neg("absence-without-leaf", "alice's keypair answered as absent (leaf null)",
            ("AbsenceOfPresent",), "proof", ("HC-85",),
            _edit(good, lambda a: a.__setitem__("leaf", None))),
        neg("membership-of-absent", "bob's absent keypair answered with a leaf holding a "
            "valid public view of bob's", ("MembershipOfAbsent",), "proof", ("HC-85",),
            _edit(absent, lambda a: _set_all(a, leaf={**good["leaf"],
                                                       "value": w.values[w.bob_kp][0]})
                  and a["map_proof"].pop("other", None)), label=w.bob_kp),
        neg("value-replaced", "alice's version-1 public view in the version-2 leaf",
            ("WrongValue",), "proof", ("HC-82",),
            _edit(good, set_leaf("value", w.values[w.alice_kp][0]))),
        neg("value-of-other-user", "dave's public view in alice's leaf", ("WrongValue",),
            "binding", ("HC-82", "KP-7"), _edit(good, set_leaf("value",
                                                               w.values[w.dave_kp][0]))),
        neg("mlkem-dropped", "erin's version-2 public view without its ML-KEM-768 key",
            ("WrongValue",), "signature", ("HC-82", "KP-6"),
            _edit(hybrid, lambda a: a["leaf"]["value"]["public_keys"].pop("mlkem768")),
            label=ERIN_KP),
        neg("reset-relabelled", "erin's reset shown with change type initial",
            ("WrongValue",), "signature", ("HC-82", "KP-6", "KP-18"),
            _edit(hybrid, lambda a: a["leaf"]["value"]["change"].__setitem__("type",
                                                                            "initial")),
            label=ERIN_KP),
        neg("device-list-flipped", "the last byte of alice's device list flipped",
            ("WrongValue",), "proof", ("HC-82",),
            _edit(devices, set_leaf("value", _flip(devices["leaf"]["value"],
                                                   len(b64url_decode(
                                                       devices["leaf"]["value"])) - 1))),
            label=w.alice_dev),
        neg("version-changed", "the leaf says version 3", ("WrongValue",), "proof",
            ("HC-83",), _edit(good, set_leaf("version", 3))),
        neg("previous-flipped", "bit 0 of the previous leaf value flipped", ("WrongValue",),
            "proof", ("HC-83",), _edit(good, set_leaf("previous",
                                                      _flip(good["leaf"]["previous"])))),
        neg("leaf-epoch-later", "the leaf says it was added at epoch 4, after the answer's "
            "epoch 3", ("WrongValue",), "binding", ("HC-83",),
            _edit(good, set_leaf("epoch", 4))),
        neg("published-at-changed", "published_at one second later than committed",
            ("WrongCommitment",), "proof", ("HC-86",),
            _edit(good, lambda a: a.__setitem__("published_at", a["published_at"] + 1))),
        neg("epoch-changed", "the answer says epoch 4; the entry is epoch 3's",
            ("WrongCommitment",), "binding", ("HC-90",),
            _edit(good, lambda a: a.__setitem__("epoch", 4))),
        neg("entry-of-other-epoch", "epoch 2's log entry with epoch 3's answer",
            ("WrongCommitment",), "binding", ("HC-90",),
            _edit(good, lambda a: a["log"].__setitem__("entry", b64url_encode(other_entry)))),
        neg("entry-root-flipped", "bit 0 of the entry's root flipped", ("WrongCommitment",),
            "proof", ("HC-86",), _edit(good, lambda a: a["log"].__setitem__(
                "entry", _flip(a["log"]["entry"], 25)))),
        neg("entry-not-directory", "a UID entry instead of the directory entry",
            ("WrongEntry",), "binding", ("HC-90",),
            _edit(good, lambda a: a["log"].__setitem__("entry", b64url_encode(uid_entry)))),
        neg("inclusion-flipped", "bit 0 of the first inclusion-proof hash flipped",
            ("WrongInclusion",), "proof", ("HC-90", "HC-36"),
            _retlog(good, lambda t: note.TlogProof(
                t.index, (bytes([t.proof[0][0] ^ 1]) + t.proof[0][1:], *t.proof[1:]),
                t.checkpoint))),
        neg("inclusion-other-index", "the tlog-proof names the next index",
            ("WrongInclusion",), "proof", ("HC-90", "HC-36"),
            _retlog(good, lambda t: note.TlogProof(t.index - 1, t.proof, t.checkpoint))),
        neg("checkpoint-untrusted", "the checkpoint is signed by a key the client does not "
            "trust", ("Untrusted",), "signature", ("HC-90", "HC-38"), unsigned),
        neg("checkpoint-uncosigned", "the witness cosignature removed (quorum 1)",
            ("MissingCosignature",), "witness", ("HC-90", "HC-41"), uncosigned),
        neg("stale", "asked one second after the epoch's maximum age", ("Stale",), "expired",
            ("HC-91",), good, now=EPOCH_TIMES[2] + hdc.DEFAULT_MAX_EPOCH_AGE + 1,
            trust={**w.trust_wire, **NO_WITNESS}),
        neg("future", "the epoch is published 301 seconds after the client's now",
            ("Stale",), "expired", ("HC-91",), good, now=EPOCH_TIMES[2] - 301,
            trust={**w.trust_wire, **NO_WITNESS}),
        neg("rollback", "epoch 3 after the client accepted epoch 4", ("Rollback",), "replay",
            ("HC-91",), good, last_epoch=4),
        neg("other-label", "alice's answer when bob's keypair is asked for", ("WrongLabel",),
            "binding", (), good, label=w.bob_kp),
        neg("other-kind", "alice's keypair answer when her device list is asked for",
            ("WrongLabel",), "binding", (), good, label=w.alice_dev),
        neg("other-epoch", "the current answer when epoch 2 is asked for", ("WrongLabel",),
            "binding", ("HC-92",), good, at_epoch=2),
        neg("unknown-member", "an answer with a member named extra", ("Malformed",),
            "decode", ("HC-88",), _edit(good, lambda a: a.__setitem__("extra", 1)), step=D6),
        neg("missing-log", "an answer without its log member", ("Malformed",), "decode",
            ("HC-88",), _edit(good, lambda a: a.pop("log")), step=D6),
        neg("vrf-proof-short", "a VRF proof of 79 bytes", ("Malformed", "Truncated"),
            "length", ("HC-88",), _edit(good, lambda a: a.__setitem__(
                "vrf_proof", b64url_encode(b64url_decode(a["vrf_proof"])[:79]))), step=D6),
        neg("epoch-zero", "epoch 0", ("Malformed",), "decode", ("HC-88",),
            _edit(good, lambda a: a.__setitem__("epoch", 0)), step=D6),
    ]
    return cases


def _absence_of_present(w: World, good: dict[str, Any]) -> dict[str, Any]:
    leaf = w.directory.snapshot().versions[w.alice_kp][-1][0]
    position = w.directory.positioned(w.alice_kp).position

    def change(a: dict[str, Any]) -> None:
        a["leaf"] = None
        a["map_proof"]["other"] = {"position": b64url_encode(position),
                                   "leaf_value": b64url_encode(leaf.leaf_value)}

    return _edit(good, change)


def _verify_lookup(case: Mapping[str, Any]) -> Outcome:
    inputs = case["inputs"]
    if case["result"] == "invalid":
        return expect_rejection(case, lambda: run_lookup(inputs))
    intermediates, outputs = lookup_summary(run_lookup(inputs))
    return compare(case, intermediates=intermediates, outputs=outputs)


# --- D8: monitoring ---------------------------------------------------------------------------

ATTACKS = ("ghost", "in-place", "vanished", "rollback")


@cache
def attack_world(attack: str) -> World:
    """A dishonest directory over its own log. Epoch 1 shows alice's first device list;
    then, by `attack`: epoch 2 adds a version alice never made (ghost), replaces version 1
    by another version 1 (in-place), drops alice's identity (vanished); or epoch 2 shows
    her second list honestly and epoch 3 shows version 1 again (rollback)."""
    base = world()
    rnd = Drbg(f"{SCHEMA_NAME}/{PROFILE}/attack/{attack}")
    log = hc.TransparencyLog(origin=ORIGIN, key_seed=rnd(32), nonce0=rnd(16))
    directory = hm.DirectoryModel(vrf_secret_key=base.directory.vrf_secret_key, log=log)
    label = base.alice_dev
    first, second = base.values[label]
    ghost = b64url_encode(device_list_bytes("alice", "mail", rnd(48)))
    directory.stage(label, first)
    directory.stage(hd.devices_label("carol", "mail"),
                    b64url_encode(device_list_bytes("carol", "mail", rnd(16))))
    directory.publish(published_at=ATTACK_TIMES[0], nonce=rnd(16))
    v1 = hd.next_version(None, hd.value_hash_of(label, first), 1)
    if attack == "ghost":
        directory.stage(label, ghost)
        directory.publish(published_at=ATTACK_TIMES[1], nonce=rnd(16))
    elif attack == "in-place":
        other = hd.next_version(None, hd.value_hash_of(label, ghost), 1)
        directory.publish(published_at=ATTACK_TIMES[1], nonce=rnd(16),
                          forged={label: [(other, ghost)]})
    elif attack == "vanished":
        directory.publish(published_at=ATTACK_TIMES[1], nonce=rnd(16), forged={label: None})
    else:
        directory.stage(label, second)
        directory.publish(published_at=ATTACK_TIMES[1], nonce=rnd(16))
        directory.publish(published_at=ATTACK_TIMES[2], nonce=rnd(16),
                          forged={label: [(v1, first)]})
    witness_seed = rnd(32)
    witness = note.witness_verifier(WITNESS_NAME, primitives.ed25519_public_key(witness_seed))
    cosignature = note.cosign(log.checkpoint().text(), name=WITNESS_NAME, seed=witness_seed,
                              timestamp=COSIGNED_AT)
    policy = note.WitnessPolicy(witnesses=(witness,), quorum=1, max_age=3600)
    trust = hdc.Trust(vrf_public_key=directory.vrf_public_key, origin=ORIGIN,
                      log_keys=tuple(log.verifiers()), policy=policy)
    trust_wire = {**base.trust_wire, "log_keys": [v.vkey for v in log.verifiers()],
                  "witnesses": [witness.vkey]}
    return World(rnd=rnd, log=log, directory=directory, witness_seed=witness_seed,
                 trust=trust, trust_wire=trust_wire, alice_kp=base.alice_kp, alice_dev=label,
                 alice_uid=base.alice_uid, dave_kp=base.dave_kp, bob_kp=base.bob_kp,
                 values={label: [first, second]}, cosignature=cosignature)


def _made(value: Any, accepted_at: int) -> dict[str, Any]:
    return {"made": {"value": value, "accepted_at": accepted_at}}


def _lookup_event(w: World, label: hd.Label, epoch: int) -> dict[str, Any]:
    return {"lookup": {"epoch": epoch, "answer": w.answer(label, epoch=epoch)}}


def run_monitor(inputs: Mapping[str, Any]) -> tuple[hdc.OwnerMonitor, list[dict[str, Any]]]:
    label = parse_label_wire(inputs["label"])
    trust = parse_trust(inputs["trust"])
    monitor = hdc.OwnerMonitor(label, max_delay=inputs["max_delay"])
    seen: list[dict[str, Any]] = []
    for event in inputs["events"]:
        if "made" in event:
            made = event["made"]
            monitor.made(hd.value_hash_of(label, made["value"]),
                         accepted_at=made["accepted_at"])
            continue
        lookup = hdc.verify_lookup(event["lookup"]["answer"], label=label, trust=trust,
                                   now=inputs["now"], at_epoch=event["lookup"]["epoch"])
        monitor.check(lookup)
        seen.append({"epoch": lookup.epoch,
                     "version": None if monitor.leaf is None else monitor.leaf.version,
                     "pending": len(monitor.pending)})
    return monitor, seen


def monitor_cases() -> list[Case]:
    w = world()
    label = w.alice_dev
    values = w.values[label]

    def case(slug: str, comment: str, flags: tuple[str, ...], source: World,
             events: list[dict[str, Any]], failure_class: str | None = None,
             requirements: tuple[str, ...] = ("HC-92", "HC-93")) -> Case:
        inputs = {"trust": _hexless({"trust": source.trust_wire})["trust"],
                  "label": label_wire(label), "max_delay": MAX_DELAY, "now": NOW,
                  "events": events}
        intermediates: dict[str, Any] = {}
        outputs: dict[str, Any] = {}
        if failure_class is None:
            monitor, seen = run_monitor(inputs)
            intermediates = {"epochs": seen}
            outputs = {"version": None if monitor.leaf is None else monitor.leaf.version,
                       "leaf_value": None if monitor.leaf is None else monitor.leaf.leaf_value,
                       "pending": len(monitor.pending)}
        return Case(id=f"hc-dir/monitor/{slug}", comment=comment, flags=flags,
                    requirements=requirements, operation=OP_MONITOR, inputs=inputs,
                    intermediates=intermediates, outputs=outputs,
                    failure=_failure(failure_class, D8) if failure_class else None)

    honest = [_made(values[0], EPOCH_TIMES[0] - 5), _lookup_event(w, label, 1),
              _lookup_event(w, label, 2), _made(values[1], EPOCH_TIMES[1] + 5),
              _lookup_event(w, label, 3)]
    def attacked(attack: str, *events: dict[str, Any]) -> list[dict[str, Any]]:
        a = attack_world(attack)
        latest = a.directory.latest
        assert latest is not None
        return [_made(values[0], ATTACK_TIMES[0] - 5), _lookup_event(a, label, 1), *events,
                *(_lookup_event(a, label, e) for e in range(2, latest.epoch.epoch + 1))]

    return [
        case("honest", "alice makes two device lists; epochs 1..3 show exactly them",
             ("Valid",), w, honest),
        case("pending", "a change made after epoch 3 is still pending (within the delay)",
             ("Valid",), w, [*honest, _made(values[0], NOW - 20)]),
        case("ghost-version", "epoch 2 holds a version 2 alice never made", ("Ghost",),
             attack_world("ghost"), attacked("ghost"), "monitor"),
        case("changed-in-place", "epoch 2 holds another version 1 in alice's leaf",
             ("Ghost",), attack_world("in-place"), attacked("in-place"), "monitor"),
        case("vanished", "alice's device list is absent at epoch 2", ("Vanished",),
             attack_world("vanished"), attacked("vanished"), "monitor"),
        case("rolled-back", "epoch 2 shows alice's second list, epoch 3 her first again",
             ("Vanished",), attack_world("rollback"),
             attacked("rollback", _made(values[1], ATTACK_TIMES[1] - 5)), "monitor"),
        case("unpublished", "a change accepted 3601 s before epoch 2 is missing from it",
             ("Unpublished",), w, [_made(values[0], EPOCH_TIMES[0] - 5),
                                   _lookup_event(w, label, 1),
                                   _made(values[1], EPOCH_TIMES[1] - MAX_DELAY - 1),
                                   _lookup_event(w, label, 2)], "monitor",
             ("HC-92", "HC-94")),
    ]


def _verify_monitor(case: Mapping[str, Any]) -> Outcome:
    inputs = case["inputs"]
    if case["result"] == "invalid":
        return expect_rejection(case, lambda: run_monitor(inputs))
    monitor, seen = run_monitor(inputs)
    return compare(case, intermediates={"epochs": seen},
                   outputs={"version": None if monitor.leaf is None else monitor.leaf.version,
                            "leaf_value": None if monitor.leaf is None
                            else monitor.leaf.leaf_value,
                            "pending": len(monitor.pending)})


# --- D9: history ------------------------------------------------------------------------------

def run_history(inputs: Mapping[str, Any]) -> hdc.History:
    pinned = None
    if inputs["pinned"] is not None:
        raw = inputs["pinned"]
        pinned = hd.LeafVersion(raw["version"], raw["epoch"], hx(raw["value_hash"], "pinned"),
                                hx(raw["previous"], "pinned"))
    return hdc.verify_history(inputs["answer"], label=parse_label_wire(inputs["label"]),
                              trust=parse_trust(inputs["trust"]), now=inputs["now"],
                              pinned=pinned)


def _history_outputs(history: hdc.History) -> dict[str, Any]:
    return {"leaf_values": [v.leaf.leaf_value for v in history.versions],
            "epoch": history.lookup.epoch}


def history_cases() -> list[Case]:
    w = world()
    good = w.history(w.alice_kp)
    first = w.directory.snapshot().versions[w.alice_kp][0][0]
    pinned = {"version": first.version, "epoch": first.epoch, "value_hash": first.value_hash,
              "previous": first.previous}
    forked = {**pinned, "epoch": 2}

    def case(slug: str, comment: str, flags: tuple[str, ...], answer: Any,
             label: hd.Label = w.alice_kp, pin: Any = None, failure_class: str | None = None,
             requirements: tuple[str, ...] = ("HC-95",)) -> Case:
        inputs = {"trust": _hexless({"trust": w.trust_wire})["trust"],
                  "label": label_wire(label), "now": NOW, "pinned": pin, "answer": answer}
        outputs: dict[str, Any] = {}
        if failure_class is None:
            outputs = _history_outputs(run_history(_hexless_pinned(inputs)))
        return Case(id=f"hc-dir/verify-history/{slug}", comment=comment, flags=flags,
                    requirements=requirements, operation=OP_HISTORY, inputs=inputs,
                    outputs=outputs,
                    failure=_failure(failure_class, D9) if failure_class else None)

    def versions(change: Callable[[list[dict[str, Any]]], object]) -> dict[str, Any]:
        out = copy.deepcopy(good)
        change(out["versions"])
        return out

    return [
        case("keypair", "alice's keypair: versions 1 and 2", ("Valid",), good),
        case("reset", "erin's keypair with an ML-KEM-768 key: version 1, then a reset "
             "(change type 'reset' inside version 2's value)", ("Valid",),
             w.history(ERIN_KP), label=ERIN_KP, requirements=("HC-95", "KP-18")),
        case("removed", "dave's keypair: version 1, then removed", ("Valid", "Removed"),
             w.history(w.dave_kp), label=w.dave_kp),
        case("absent", "bob: no version", ("Valid", "Absent"), w.history(w.bob_kp),
             label=w.bob_kp),
        case("pinned", "alice's history passes through the version-1 leaf the client "
             "accepted before", ("Valid",), good, pin=pinned, requirements=("HC-95", "HC-96")),
        case("fork", "the client accepted another version 1 (epoch 2)", ("Fork",), good,
             pin=forked, failure_class="fork", requirements=("HC-95", "HC-96")),
        case("dropped", "version 1 dropped", ("HistoryGap",), versions(lambda v: v.pop(0)),
             failure_class="history"),
        case("extra", "a version 3 added", ("HistoryGap",),
             versions(lambda v: v.append({**v[-1], "version": 3})), failure_class="history"),
        case("renumbered", "versions numbered 2 and 1", ("HistoryGap",),
             versions(lambda v: _set_all(v[0], version=2) and _set_all(v[1], version=1)),
             failure_class="history"),
        case("epochs-reversed", "version 2's epoch before version 1's", ("HistoryGap",),
             versions(lambda v: _set_all(v[0], epoch=2) and _set_all(v[1], epoch=1)),
             failure_class="history"),
        case("old-value-replaced", "version 1 shows version 2's public view", ("WrongValue",),
             versions(lambda v: v[0].__setitem__("value", v[1]["value"])),
             failure_class="proof"),
    ]


def _hexless_pinned(inputs: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(inputs)
    if out["pinned"] is not None:
        out["pinned"] = {k: (v.hex() if isinstance(v, bytes) else v)
                         for k, v in out["pinned"].items()}
    return out


def _verify_history(case: Mapping[str, Any]) -> Outcome:
    inputs = case["inputs"]
    if case["result"] == "invalid":
        return expect_rejection(case, lambda: run_history(inputs))
    return compare(case, outputs=_history_outputs(run_history(inputs)))


# --- accumulated ------------------------------------------------------------------------------

ACCUMULATED_LEAVES = 4096
ACCUMULATED_BATCHES = 8
ACCUMULATED_PROBES = 256


def accumulated_inputs() -> dict[str, Any]:
    return {"label": f"{SCHEMA_NAME}/{PROFILE}/accumulated", "leaves": ACCUMULATED_LEAVES,
            "batches": ACCUMULATED_BATCHES, "probes": ACCUMULATED_PROBES}


ACCUMULATED_PROCEDURE = (
    "Drbg(label) draws, for batch b = 0 .. batches-1: for each leaf i in b, b + batches, "
    "b + 2 batches, ... below leaves, a position (32) then a leaf value (32); then, for each "
    "leaf j below 2b in the order positions were drawn, a new leaf value (32); the batch is "
    "applied and its root kept. roots_digest = SHA-256(roots concatenated); root = the last "
    "root. Then probes positions (32 each) are drawn: absence_proofs_digest = SHA-256 over "
    "each probe's proof as u16be(depth) || siblings (deepest first) || (0x00 if it ends at "
    "an empty subtree, else 0x01 || position || leaf value of the leaf it ends at); "
    "probe_depths = the sum of their depths; membership_proofs_digest = SHA-256 over "
    "u16be(depth) || siblings of the proof of every 64th leaf (leaves 0, 64, ... in the "
    "order drawn).")


def run_accumulated(inputs: Mapping[str, Any]) -> dict[str, Any]:
    """The accumulated case (ACCUMULATED_PROCEDURE)."""
    rnd = Drbg(inputs["label"])
    tree = dmap.MemoryMap()
    positions: list[bytes] = []
    roots: list[bytes] = []
    count, batches = inputs["leaves"], inputs["batches"]
    for batch in range(batches):
        changes: dict[bytes, bytes] = {}
        for _leaf in range(batch, count, batches):
            position = rnd(32)
            positions.append(position)
            changes[position] = rnd(32)
        for j in range(min(2 * batch, len(positions))):
            changes[positions[j]] = rnd(32)
        roots.append(tree.apply(changes).root)
    digest = hashlib.sha256()
    depths = 0
    for _ in range(inputs["probes"]):
        proof = tree.prove(rnd(32))
        depths += proof.depth
        digest.update(proof.depth.to_bytes(2, "big") + b"".join(proof.siblings))
        terminal = proof.terminal
        digest.update(b"\x00" if terminal is None else
                      b"\x01" + terminal.position + terminal.value)
    members = hashlib.sha256()
    for position in positions[::64]:
        proof = tree.prove(position)
        members.update(proof.depth.to_bytes(2, "big") + b"".join(proof.siblings))
    return {"roots_digest": hashlib.sha256(b"".join(roots)).digest(), "root": tree.root,
            "absence_proofs_digest": digest.digest(),
            "membership_proofs_digest": members.digest(), "probe_depths": depths}


def accumulated_cases() -> list[Case]:
    inputs = accumulated_inputs()
    return [Case(id="hc-dir/accumulated-map", comment=(
        f"{ACCUMULATED_LEAVES} leaves in {ACCUMULATED_BATCHES} batches (each also changing "
        f"earlier leaves), {ACCUMULATED_PROBES} random probes and every 64th leaf proven; "
        "the procedure is in the inputs' description"),
        flags=("Valid", "Accumulated"), requirements=("HC-84", "HC-85"),
        operation=OP_ACCUMULATED,
        inputs={**inputs, "procedure": ACCUMULATED_PROCEDURE},
        outputs=run_accumulated(inputs))]


def _verify_accumulated(case: Mapping[str, Any]) -> Outcome:
    return compare(case, outputs=run_accumulated(case["inputs"]))


# --- the file ---------------------------------------------------------------------------------

def directory_cases() -> list[Case]:
    return [*vrf_cases(), *leaf_cases(), *map_cases(), *commitment_cases(), *lookup_cases(),
            *monitor_cases(), *history_cases(), *accumulated_cases()]


def vector_file() -> VectorFile:
    return VectorFile(
        schema_name=SCHEMA_NAME, flow="hashchain", profile=PROFILE,
        source_labels=(f"Drbg('{SCHEMA_NAME}/{PROFILE}/world') draws the log key seed (32), "
                       "nonce0 (16), the VRF secret key (32), the witness seed (32), then per "
                       "keypair version (alice 1-2, dave 1) Drbg fork '<user>/keys/<n>' for "
                       "the private keys and kek (32), nonce (12), z (64); the device lists "
                       "(48 each), alice's UID seeds (3 x 32), the fillers' lists (16 each) "
                       "and per epoch a nonce (16); '.../hybrid' erin's two versions (fork "
                       "'erin/keys/<n>' for the private keys with the ML-KEM-768 seed, then "
                       "kek, nonce, z); '.../attack' the dishonest directory; "
                       "'.../map/<case>' and '.../map-proof' the map cases; accumulated: see "
                       "its case"),
        notes=NOTES, cases=directory_cases())


VERIFIERS: dict[tuple[str, str], Callable[[Mapping[str, Any]], Outcome]] = {
    (PROFILE, OP_VRF_PROVE): _verify_vrf_prove,
    (PROFILE, OP_VRF_VERIFY): _verify_vrf_verify,
    (PROFILE, OP_LEAF_CHAIN): _verify_leaf_chain,
    (PROFILE, OP_MAP): _verify_map,
    (PROFILE, OP_MAP_PROOF): _verify_map_proof,
    (PROFILE, OP_COMMITMENT): _verify_commitment,
    (PROFILE, OP_LOOKUP): _verify_lookup,
    (PROFILE, OP_MONITOR): _verify_monitor,
    (PROFILE, OP_HISTORY): _verify_history,
    (PROFILE, OP_ACCUMULATED): _verify_accumulated,
}
