"""Vectors of the hashchain flow: profile v1 (a transparency log) and the mute
compatibility profile (the original's linear chain).

Profile v1 (vectors/hashchain.yaml): the log's entries, its RFC 9162 tree and proofs, C2SP
checkpoints and cosignatures, the witness protocol, a client following the log, fork
proofs and an accumulated vector (hashchain_log); UIDs, replies, the sealed repository,
identity history, KeyInits and flush requests (hashchain_uid). Profile mute
(vectors/hashchain.mute.yaml): hashchain_mute.

Negatives come from mutation families, each with the failure class and step that must
reject; the flags below name the family.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from keyflows.vectors import hashchain_directory, hashchain_log, hashchain_mute, hashchain_uid
from keyflows.vectors.framework import Flag, Outcome, VectorFile, dispatch

FLOW = "hashchain"

NOTES_V1: dict[str, Flag] = {
    "Valid": Flag("A well-formed input the consumer accepts.",
                  "Accept; recompute every intermediate and output."),
    "Producer": Flag("The case also carries what the producer started from (entries, seeds).",
                     "A producer recomputes the outputs byte for byte from it."),
    "KeyRotation": Flag("The log rotates its key (a log-key entry after entry 0).",
                        "Learn the new key from the entry, signed by the key in force "
                        "(HC-7, HC-50)."),
    "Extension": Flag("The client starts from a trusted checkpoint instead of entry 0.",
                      "Check the consistency proof, then only the new entries (HC-9)."),
    "Accumulated": Flag("Many generated entries folded into one digest.",
                        "Regenerate the entries as described and compare the digest, root "
                        "and checkpoint."),
    "BitFlip": Flag("One bit of one value is flipped.",
                    "Reject where the value is protected: a proof, a signature, the AEAD."),
    "Truncated": Flag("A value, list or proof is one element (or byte) short.",
                      "Reject: length for an entry or hash, proof or link for the rest."),
    "TrailingBytes": Flag("A value, list or proof has one element (or byte) more.",
                          "Reject: length for an entry or hash, proof or link for the rest."),
    "WrongType": Flag("The type byte names an unknown type, or entry 0 is not a log key.",
                      "Reject at the decoder (failure class decode)."),
    "Reserved": Flag("Reserved bytes are not zero.", "Reject (failure class decode)."),
    "WrongIndex": Flag("A proof or reply for another index.",
                       "Reject (proof for a proof, binding for a reply)."),
    "WrongSize": Flag("A proof presented for another tree size.", "Reject (failure class "
                                                                   "proof)."),
    "WrongLeaf": Flag("Another leaf hash, or an entry hashed without the 0x00 prefix.",
                      "Reject (failure class proof)."),
    "WrongRoot": Flag("A root of another tree or size.", "Reject (failure class proof)."),
    "SwappedFields": Flag("Two values trade places.", "Reject at the check they feed."),
    "UnknownKey": Flag("A signature by a key the verifier does not trust.",
                       "Ignore it; reject only if no trusted key signed (HC-38)."),
    "WrongSignature": Flag("A signature is flipped, made by another key or over other text.",
                           "Reject (failure class signature)."),
    "WrongOrigin": Flag("A checkpoint or message for another log origin.",
                        "Reject (binding for a checkpoint's origin, signature where the "
                        "origin is only inside the signed message, 404 at a witness)."),
    "Malformed": Flag("Text that breaks the signed-note or checkpoint grammar.",
                      "Reject (failure class decode)."),
    "MissingCosignature": Flag("Fewer valid cosignatures of distinct trusted witnesses than "
                               "the policy's quorum.", "Reject (failure class witness)."),
    "Stale": Flag("A cosignature, request or old size older than allowed, or in the future.",
                  "Reject (expired; 409 at a witness)."),
    "Fork": Flag("A validly signed checkpoint that cannot be consistent with another.",
                 "Reject (failure class fork) and keep the fork proof (HC-10)."),
    "NotAFork": Flag("Two consistent checkpoints presented as a fork proof.",
                     "Reject (failure class link): nothing is proven."),
    "Reordered": Flag("Two entries trade places.", "Reject: the root differs (proof)."),
    "Gap": Flag("An entry is missing.", "Reject (failure class link)."),
    "Rollback": Flag("A checkpoint behind the client's trusted one.",
                     "Reject (failure class replay)."),
    "PinnedKey": Flag("The client trusts another log key than entry 0 introduces.",
                      "Reject (failure class binding)."),
    "SecondCreation": Flag("An identity whose history is not one creation followed by updates "
                           "(a forged re-creation), or an entry its owner did not make.",
                           "Reject (failure class history, HC-48, HC-49)."),
    "LaxEd25519Signature": Flag("A signature a verifier without the strict Ed25519 rule "
                                "accepts: a small-order key with R = identity, S = 0, or S + L.",
                                "Reject (HC-35): point for the key, signature for R and S."),
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


def generate() -> list[VectorFile]:
    return [
        VectorFile(schema_name=FLOW, flow=FLOW, profile="v1",
                   source_labels=("Drbg('hashchain/v1/<purpose>'): reference-log draws the "
                                  "log key seed (32) and nonce0 (16), then per record entry "
                                  "record_hash (32) and nonce (16); rotating-log the same, "
                                  "with the new key seed (32) and its nonce (16) before entry "
                                  "5; witness/<name> draws a witness seed (32); uid/alice "
                                  "draws SIGKEY, SIGESCROW and X25519 seeds (32 each); entries, "
                                  "keyinit, flush, history and the mutation labels draw what "
                                  "their cases record; accumulated: see its case"),
                   notes=NOTES_V1,
                   cases=[*hashchain_log.log_cases(), *hashchain_uid.uid_cases()]),
        VectorFile(schema_name=f"{FLOW}.mute", flow=FLOW, profile="mute",
                   source_labels=("Drbg('hashchain/mute/<purpose>'): chain draws NONCE (8) and "
                                  "IV (16) per entry; ckdf draws two NONCEs; parse draws one "
                                  "trailing byte; accumulated: see its case"),
                   notes=hashchain_mute.NOTES_MUTE, cases=hashchain_mute.mute_cases()),
        hashchain_directory.vector_file(),
    ]


_VERIFIERS: dict[tuple[str, str], Callable[[Mapping[str, Any]], Outcome]] = {
    **hashchain_log.VERIFIERS, **hashchain_uid.VERIFIERS, **hashchain_mute.VERIFIERS,
    **hashchain_directory.VERIFIERS}


def verify_case(header: Mapping[str, Any], case: Mapping[str, Any]) -> Outcome:
    """Replay one case through the spec's consumer side."""
    return dispatch(_VERIFIERS, header, case)
