"""Vectors of the lock-layering flow, profile v1, step 12: encrypted data vaults.

  edv-blind           a blinded index attribute (HMAC of the name; HMAC of JCS({name: value}))
  edv-document        a working-key version as an encrypted document: every JWE value
                      (epk, Z, KEK, wrapped content key, protected header, ciphertext, tag)
  edv-document-open   the key server opening what a vault returned, for one key version
  edv-query           which documents a vault's query matches

Negatives: a document tampered (ciphertext, tag, wrapped key), opened with another key, with
a low-order epk, encrypted to another key id, moved to another id, for another key, version,
type or public key, or malformed (aead, point, binding, decode, length).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from keyflows.spec import edv, jose, primitives
from keyflows.spec.drbg import Drbg
from keyflows.spec.encoding import b64url_encode
from keyflows.vectors.framework import Case, Failure, Outcome, compare, expect_rejection, hx

FLOW = "lock-layering"
KS = "ks-3Xq9vB2mWk7LpRt0aYc1Qd"
STEP = "12"
OP_BLIND = "edv-blind"
OP_DOCUMENT = "edv-document"
OP_OPEN = "edv-document-open"
OP_QUERY = "edv-query"


def _drbg(name: str) -> Drbg:
    return Drbg(f"{FLOW}/v1/edv/{name}")


def _case(case_id: str, comment: str, flags: Sequence[str], requirements: Sequence[str],
          operation: str, inputs: Mapping[str, Any], *,
          intermediates: Mapping[str, Any] | None = None,
          outputs: Mapping[str, Any] | None = None, failure: Failure | None = None) -> Case:
    return Case(id=case_id, comment=comment, flags=tuple(flags),
                requirements=tuple(requirements), operation=operation, inputs=dict(inputs),
                intermediates=dict(intermediates or {}), outputs=dict(outputs or {}),
                failure=failure)


def _flip(data: bytes, index: int = 0) -> bytes:
    return data[:index] + bytes([data[index] ^ 1]) + data[index + 1:]


# --- blinding -------------------------------------------------------------------------------

def _blind_cases() -> list[Case]:
    mac_key = _drbg("mac-key")(32)
    cases = []
    for slug, name, value in (("content-key", "content.key", "k1/1"),
                              ("content-key-id", "content.key_id", "k1"),
                              ("escaped", 'content."odd"', "line\nbreak\x01\x7f"),
                              ("unicode", "content.key_id", "cl\u00e9-\u20ac-\U0001f600")):
        cases.append(_case(
            f"lock-v1-edv-blind/{slug}", f"blind {name!r} = {value!r}", ("Valid",),
            ("LOCK-31",), OP_BLIND, {"mac_key": mac_key, "name": name, "value": value},
            intermediates={"jcs": edv.jcs_member(name, value)},
            outputs={"name": edv.blind_name(mac_key, name),
                     "value": edv.blind_value(mac_key, name, value)}))
    return cases


# --- documents ----------------------------------------------------------------------------------

def _material(name: str) -> dict[str, Any]:
    rnd = _drbg(f"document/{name}")
    recipient, mac_key = rnd(32), rnd(32)
    return {"doc_id": edv.new_id(rnd), "recipient_private": recipient, "mac_key": mac_key,
            "ephemeral_private": rnd(32), "cek": rnd(32), "iv": rnd(12),
            "public_key": primitives.ed25519_public_key(rnd(32)), "sealed": rnd(60)}


def _public(m: Mapping[str, Any], key_type: str) -> bytes:
    """A symmetric key's versions have no public key (LOCK-7)."""
    return m["public_key"] if key_type in ("ed25519", "x25519") else b""


def _document(m: Mapping[str, Any], key_id: str = "k1", version: int = 1,
              key_type: str = "ed25519") -> tuple[edv.EncryptedDocument, jose.Sealed,
                                                  dict[str, Any]]:
    content = edv.key_content(KS, key_id, key_type, version, _public(m, key_type), m["sealed"])
    doc, sealed = edv.encrypt_document(
        doc_id=m["doc_id"], sequence=0, content=content, recipient_kid=edv.recipient_kid(KS),
        recipient_public=primitives.x25519_public_key(m["recipient_private"]),
        ephemeral_private=m["ephemeral_private"], cek=m["cek"], iv=m["iv"],
        indexed=[edv.key_index(m["mac_key"], KS, key_id, version)])
    return doc, sealed, content


def _document_cases() -> list[Case]:
    cases = []
    for name, key_id, version, key_type in (("ed25519-v1", "k1", 1, "ed25519"),
                                            ("aes-v2", "k7", 2, "aes256gcm")):
        m = _material(name)
        doc, sealed, content = _document(m, key_id, version, key_type)
        inputs = {"keystore_id": KS, "key_id": key_id, "version": version,
                  "key_type": key_type, "public_key": _public(m, key_type), "sealed": m["sealed"],
                  "doc_id": m["doc_id"], "recipient_public_key": primitives.x25519_public_key(
                      m["recipient_private"]), "mac_key": m["mac_key"],
                  "ephemeral_private": m["ephemeral_private"], "cek": m["cek"], "iv": m["iv"]}
        cases.append(_case(
            f"lock-v1-edv-document/{name}", f"version {version} of the {key_type} key "
            f"{key_id} as an encrypted document", ("Valid",),
            ("LOCK-30", "LOCK-31", "LOCK-32"), OP_DOCUMENT, inputs, intermediates={
                "recipient_kid": edv.recipient_kid(KS), "epk": sealed.epk, "shared": sealed.shared,
                "kek": sealed.kek, "plaintext": edv.structured_document(m["doc_id"], content),
                "protected": edv.PROTECTED},
            outputs={"document": doc.to_json()}))
    return cases


def _open_inputs(m: Mapping[str, Any], doc: Mapping[str, Any], **expected: Any) -> dict[str, Any]:
    inputs = {"recipient_private": m["recipient_private"], "document": doc,
              "keystore_id": KS, "key_id": "k1", "version": 1, "key_type": "ed25519",
              "public_key": m["public_key"]}
    inputs.update(expected)
    return inputs


def _open_cases() -> list[Case]:
    m = _material("ed25519-v1")
    doc, _, _ = _document(m)
    plain = doc.to_json()
    reqs = ("LOCK-33",)
    cases = [_case("lock-v1-edv-document-open/ed25519-v1", "the key server opens the "
                   "document of the version it asked for", ("Valid",), reqs, OP_OPEN,
                   _open_inputs(m, plain), outputs={"sealed": m["sealed"]})]

    def jwe_changed(**change: Any) -> dict[str, Any]:
        jwe = dict(plain["jwe"], **change)
        return dict(plain, jwe=jwe)

    def header_changed(**change: Any) -> dict[str, Any]:
        recipient = dict(plain["jwe"]["recipients"][0])
        recipient["header"] = dict(recipient["header"], **change)
        return jwe_changed(recipients=[recipient])

    other = _material("other")
    other_doc, _, _ = _document(dict(m, doc_id=other["doc_id"]))
    low_x = b64url_encode(bytes(32))
    bad: list[tuple[str, str, str, dict[str, Any], str]] = [
        ("bitflip-ciphertext", "bit 0 of the ciphertext flipped", "BitFlip",
         _open_inputs(m, jwe_changed(ciphertext=b64url_encode(_flip(doc.jwe.ciphertext)))),
         "aead"),
        ("bitflip-tag", "bit 0 of the tag flipped", "BitFlip",
         _open_inputs(m, jwe_changed(tag=b64url_encode(_flip(doc.jwe.tag)))), "aead"),
        ("bitflip-encrypted-key", "bit 0 of the wrapped content key flipped", "BitFlip",
         _open_inputs(m, header_changed() | {"jwe": dict(plain["jwe"], recipients=[dict(
             plain["jwe"]["recipients"][0], encrypted_key=b64url_encode(
                 _flip(doc.jwe.encrypted_key)))])}), "aead"),
        ("wrong-recipient", "opened with another recipient key", "WrongKey",
         _open_inputs(m, plain, recipient_private=other["recipient_private"]), "aead"),
        ("low-order-epk", "an epk of low order (u = 0)", "LowOrderPoint",
         _open_inputs(m, header_changed(epk={"kty": "OKP", "crv": "X25519", "x": low_x},
                                        apu=low_x)), "point"),
        ("other-kid", "encrypted to another key id", "Moved",
         _open_inputs(m, header_changed(kid="urn:other", apv=b64url_encode(b"urn:other"))),
         "binding"),
        ("apu-not-epk", "apu is not the epk", "Forged",
         _open_inputs(m, header_changed(apu=b64url_encode(b"other"))), "binding"),
        ("moved-id", "the document under another id", "Moved",
         _open_inputs(m, dict(plain, id=other_doc.id)), "binding"),
        ("other-key", "asked for key k2, answered with k1's document", "Moved",
         _open_inputs(m, plain, key_id="k2"), "binding"),
        ("other-version", "asked for version 2, answered with version 1's", "Moved",
         _open_inputs(m, plain, version=2), "binding"),
        ("other-type", "asked for an x25519 key", "Moved",
         _open_inputs(m, plain, key_type="x25519"), "binding"),
        ("other-public-key", "asked with another public key", "Moved",
         _open_inputs(m, plain, public_key=bytes(32)), "binding"),
        ("unknown-member", "a document with a member the format does not define",
         "UnknownMember", _open_inputs(m, dict(plain, extra=1)), "decode"),
        ("short-iv", "an 11-byte IV", "Truncated",
         _open_inputs(m, jwe_changed(iv=b64url_encode(doc.jwe.iv[:11]))), "length"),
        ("plain-attribute", "an index attribute in clear", "UnknownMember",
         _open_inputs(m, dict(plain, indexed=[dict(plain["indexed"][0], attributes=[
             {"name": "content.key", "value": "k1/1", "unique": True}])])), "decode"),
    ]
    for slug, comment, flag, inputs, failure_class in bad:
        cases.append(_case(f"lock-v1-edv-document-open/{slug}", comment, (flag,),
                           ("LOCK-33", "LOCK-30"), OP_OPEN, inputs,
                           failure=Failure(failure_class, STEP)))
    return cases


def _query_cases() -> list[Case]:
    m = _material("query")
    docs = [_document(dict(m, doc_id=edv.new_id(_drbg(f"query/{i}"))), "k1", i + 1)[0]
            for i in range(2)]
    docs.append(_document(dict(m, doc_id=edv.new_id(_drbg("query/2"))), "k2", 1)[0])
    cases = []
    for slug, comment, query in (
            ("one-version", "content.key = k1/2", edv.key_query(m["mac_key"], KS, "k1", 2)),
            ("every-version", "content.key_id = k1", edv.key_query(m["mac_key"], KS, "k1")),
            ("has-name", "every document with a content.key attribute",
             edv.Query(edv.hmac_kid(KS), has=(edv.blind_name(m["mac_key"], "content.key"),))),
            ("other-index", "the same pair in another index",
             edv.Query("urn:other", edv.key_query(m["mac_key"], KS, "k1").equals))):
        cases.append(_case(f"lock-v1-edv-query/{slug}", comment, ("Valid",), ("LOCK-34",),
                           OP_QUERY, {"documents": [d.to_json() for d in docs],
                                      "query": query.to_json()},
                           outputs={"matches": [d.id for d in docs if edv.matches(d, query)]}))
    return cases


def cases() -> list[Case]:
    return _blind_cases() + _document_cases() + _open_cases() + _query_cases()


# --- verification ---------------------------------------------------------------------------

def _verify_blind(case: Mapping[str, Any]) -> Outcome:
    i = case["inputs"]
    key = hx(i["mac_key"], "mac_key")
    return compare(case, intermediates={"jcs": edv.jcs_member(i["name"], i["value"])},
                   outputs={"name": edv.blind_name(key, i["name"]),
                            "value": edv.blind_value(key, i["name"], i["value"])})


def _verify_document(case: Mapping[str, Any]) -> Outcome:
    i = case["inputs"]
    content = edv.key_content(i["keystore_id"], i["key_id"], i["key_type"], i["version"],
                              hx(i["public_key"], "public_key"), hx(i["sealed"], "sealed"))
    doc, sealed = edv.encrypt_document(
        doc_id=i["doc_id"], sequence=0, content=content,
        recipient_kid=edv.recipient_kid(i["keystore_id"]),
        recipient_public=hx(i["recipient_public_key"], "recipient_public_key"),
        ephemeral_private=hx(i["ephemeral_private"], "ephemeral_private"),
        cek=hx(i["cek"], "cek"), iv=hx(i["iv"], "iv"),
        indexed=[edv.key_index(hx(i["mac_key"], "mac_key"), i["keystore_id"], i["key_id"],
                               i["version"])])
    if edv.parse_document(doc.to_json()) != doc:
        return Outcome(False, "the document does not parse back")
    return compare(case, intermediates={
        "recipient_kid": doc.jwe.kid, "epk": sealed.epk, "shared": sealed.shared,
        "kek": sealed.kek, "plaintext": edv.structured_document(i["doc_id"], content),
        "protected": edv.PROTECTED}, outputs={"document": doc.to_json()})


def _verify_open(case: Mapping[str, Any]) -> Outcome:
    i = case["inputs"]

    def run() -> bytes:
        doc = edv.parse_document(i["document"])
        return edv.open_key_document(doc, hx(i["recipient_private"], "recipient_private"),
                                     i["keystore_id"], i["key_id"], i["version"],
                                     i["key_type"], hx(i["public_key"], "public_key"))

    if case["result"] == "invalid":
        return expect_rejection(case, run)
    return compare(case, intermediates={}, outputs={"sealed": run()})


def _verify_query(case: Mapping[str, Any]) -> Outcome:
    i = case["inputs"]
    query = edv.parse_query(i["query"])
    docs = [edv.parse_document(d) for d in i["documents"]]
    return compare(case, intermediates={},
                   outputs={"matches": [d.id for d in docs if edv.matches(d, query)]})


VERIFIERS: dict[str, Callable[[Mapping[str, Any]], Outcome]] = {
    OP_BLIND: _verify_blind, OP_DOCUMENT: _verify_document, OP_OPEN: _verify_open,
    OP_QUERY: _verify_query,
}
