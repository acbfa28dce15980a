"""Vectors of the hashchain flow, compatibility profile mute (byte-exact with
mutecomm/mute): CKDF (including the original's published TestCKDF values), 153-byte
entries with every intermediate, parsing of the original's published TestEntry, chain
verification with the zero hash for entry 0, lookup, the identity mapping (including
every case of the original's identity_test.go), and an accumulated vector over 10,000
entries. The original chain is linear; the profile keeps it so (HC-30 .. HC-34).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable, Mapping
from functools import cache
from typing import Any

from keyflows.spec import hashchain_mute as mute
from keyflows.spec import primitives
from keyflows.spec.drbg import Drbg
from keyflows.vectors.framework import (
    Case,
    Failure,
    Flag,
    Outcome,
    compare,
    expect_rejection,
    hx,
)

OP_M_CKDF = "ckdf"
OP_M_BUILD = "build-entry"
OP_M_PARSE = "parse-entry"
OP_M_VERIFY = "verify-chain"
OP_M_LOOKUP = "lookup"
OP_M_MAP = "map-identity"
OP_M_ACCUMULATED = "accumulated-chain"
ACCUMULATED_COUNT = 10_000


def _flip(data: bytes, index: int, bit: int = 0) -> bytes:
    out = bytearray(data)
    out[index] ^= 1 << bit
    return bytes(out)


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



def mute_cases() -> list[Case]:
    return (_mute_ckdf_cases() + _mute_build_cases() + _mute_parse_cases()
            + _mute_verify_cases() + _mute_lookup_cases() + _mute_map_cases()
            + _mute_accumulated_cases())


# --- verification: the consumer side ---------------------------------------------------------

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


VERIFIERS: dict[tuple[str, str], Callable[[Mapping[str, Any]], Outcome]] = {
    ("mute", OP_M_CKDF): _verify_m_ckdf,
    ("mute", OP_M_BUILD): _verify_m_build,
    ("mute", OP_M_PARSE): _verify_m_parse,
    ("mute", OP_M_VERIFY): _verify_m_chain,
    ("mute", OP_M_LOOKUP): _verify_m_lookup,
    ("mute", OP_M_MAP): _verify_m_map,
    ("mute", OP_M_ACCUMULATED): _verify_m_accumulated,
}
