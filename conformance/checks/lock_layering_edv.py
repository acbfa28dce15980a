"""lock-layering vault checks (step 12): a keystore bound to an encrypted data vault keeps
every working-key version there as one document. The runner is the vault (served by its
account server, keyflows.conformance.edv), so it reads what the key server stores -- well
formed, encrypted to the keystore's recipient key, blinded indexes, nothing in clear --
sees what it reads back, and makes the vault misbehave: a tampered document, or another
key's document, must be refused (502), never used.

Skipped when the server does not list the runner's vault server in its capabilities
(`lock_layering.edv_servers`): configure it to trust the runner's account-server URL.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from keyflows.conformance.checks.lock_layering_support import (
    B64URL_VALUE,
    CAPABILITIES_MEMBER,
    HELD,
    NEEDS,
    SHARES,
    Keystore,
    call,
    create_key,
    expect_root_capability,
    key_op,
    lock_user,
    sign,
)
from keyflows.conformance.edv import QueryRewrite
from keyflows.conformance.http import Exchange
from keyflows.conformance.probe import CheckSkipped, Probe, describe
from keyflows.conformance.registry import check
from keyflows.spec import edv, jose, primitives
from keyflows.spec import lock_layering as spec
from keyflows.spec.encoding import b64url_decode, b64url_encode
from keyflows.spec.errors import SpecError

VAULT_MEMBERS = {"vault", "recipient_kid", "recipient_public_key", "hmac_kid"}


@dataclass
class VaultKeystore:
    ks: Keystore
    vault_id: str
    token: str
    view: dict[str, Any]


def runner_vault_server(t: Probe) -> str:
    """The runner's vault server (its account server), if the key server trusts it."""
    base = t.session.accounts.url
    member = (t.session.capabilities or {}).get(CAPABILITIES_MEMBER)
    trusted = member.get("edv_servers") if isinstance(member, dict) else None
    if not isinstance(trusted, list) or base.rstrip("/") not in [
            str(u).rstrip("/") for u in trusted]:
        raise CheckSkipped(f"the server does not list the runner's vault server {base} in "
                           "lock_layering.edv_servers (start it with --edv-server " + base + ")")
    return base


def create_vault_keystore(t: Probe, scenario: str = SHARES, label: str = "edv"
                          ) -> VaultKeystore:
    """A vault in the runner, and a keystore of this scenario bound to it (LOCK-35)."""
    base = runner_vault_server(t)
    user, share, account, secret = lock_user(t, label)
    vault_id, token = t.session.accounts.vaults.create(user.user_id)
    wanted = {"vault": f"{base}/edvs/{vault_id}", "token": token}
    body: dict[str, Any] = {"scenario": scenario, "edv": wanted}
    headers = {"secret-share": share} if scenario == SHARES else {}
    exchange = t.request("POST", f"/v1/users/{user.user_id}/keystores", token=user.token,
                         headers=headers, json_body=body)
    answer = t.expect_ok_json(exchange, 201, what="create a keystore bound to a vault")
    keystore_id = answer.get("keystore_id") if isinstance(answer, dict) else None
    if not isinstance(keystore_id, str):
        t.fail("no keystore_id", expected="a keystore", actual=describe(exchange),
               exchange=exchange)
    root = expect_root_capability(t, exchange, answer.get("capability"), keystore_id, None)
    ks = Keystore(user, scenario, keystore_id, root, share, account, secret)
    read = t.request("GET", ks.path, headers={"authorization": f"Bearer {root}"})
    view = t.expect_ok_json(read, 200, what="read a keystore bound to a vault")
    vault = view.get("edv") if isinstance(view, dict) else None
    expected = {"vault": wanted["vault"], "recipient_kid": edv.recipient_kid(keystore_id),
                "hmac_kid": edv.hmac_kid(keystore_id)}
    if not isinstance(vault, dict) or set(vault) != VAULT_MEMBERS or any(
            vault.get(k) != v for k, v in expected.items()):
        t.fail("the keystore does not describe its vault", expected=f"edv: {expected} and "
               "recipient_public_key (LOCK-32)", actual=describe(read), exchange=read)
    try:
        primitives.check_x25519_public_key(b64url_decode(vault["recipient_public_key"]))
    except SpecError:
        t.fail("the vault recipient key is not an X25519 public key",
               expected="32 bytes, canonical, not of low order", actual=describe(read),
               exchange=read)
    return VaultKeystore(ks, vault_id, token, dict(vault))


def stored(t: Probe, vk: VaultKeystore) -> list[edv.EncryptedDocument]:
    return t.session.accounts.vaults.documents(vk.vault_id)


def written_for(t: Probe, vk: VaultKeystore, before: list[edv.EncryptedDocument],
                exchange: Exchange, what: str) -> edv.EncryptedDocument:
    """The one document an operation wrote to the vault."""
    known = {d.id for d in before}
    new = [d for d in stored(t, vk) if d.id not in known]
    if len(new) != 1:
        t.fail(f"{what} wrote {len(new)} documents to the vault", expected="exactly one "
               "document per key version (LOCK-32)", actual=describe(exchange),
               exchange=exchange)
    return new[0]


@check("lock-layering/edv/keys-live-in-the-vault", requirements=("LOCK-32", "LOCK-35",
                                                                 "LOCK-22"), needs=NEEDS)
def keys_live_in_the_vault(t: Probe) -> None:
    """A keystore bound to the runner's vault writes one document per key version: one
    when a key is made, one more when it is rotated, and deleting the key deletes them;
    every operation still works, in both scenarios."""
    for scenario in (SHARES, HELD):
        vk = create_vault_keystore(t, scenario, f"edv-{scenario}")
        before = stored(t, vk)
        key = create_key(t, vk.ks, spec.KEY_ED25519)
        written_for(t, vk, before, t.exchanges[-1], "creating a key")
        signature = sign(t, vk.ks, key, b"from the vault")
        expect_verifies(t, key["public_key"], b"from the vault", signature)
        before = stored(t, vk)
        exchange = key_op(t, vk.ks, key, "rotate")
        rotated = t.expect_ok_json(exchange, 200, what="rotate a key kept in a vault")
        written_for(t, vk, before, exchange, "rotating a key")
        expect_verifies(t, rotated["public_key"], b"v2",
                        sign(t, vk.ks, key, b"v2", version=2))
        exchange = key_op(t, vk.ks, key, "delete")
        t.expect_status(exchange, 204, what="delete a key kept in a vault")
        if stored(t, vk):
            t.fail("deleting the key left documents in the vault", expected="its "
                   "documents deleted (LOCK-32)", actual=f"{len(stored(t, vk))} left",
                   exchange=exchange)


def expect_verifies(t: Probe, public_key: str, message: bytes, signature: bytes) -> None:
    try:
        primitives.ed25519_verify(b64url_decode(public_key), message, signature)
    except SpecError:
        t.fail("a signature made with a key kept in a vault does not verify",
               expected="a valid Ed25519 signature (LOCK-15)", actual=signature.hex())


def secret_texts(vk: VaultKeystore) -> dict[str, str]:
    """Values that must never appear in a document in clear (the keystore id may: it names
    the recipient and MAC keys)."""
    ks = vk.ks
    out = {ks.owner.user_id: "the controller"}
    for raw, what in ((b64url_decode(ks.user_share), "the user's share"),
                      (b64url_decode(ks.account_share), "the account share"),
                      (ks.secret, "the user secret")):
        out[b64url_encode(raw)] = what
        out[raw.hex()] = what
    lock_key = ks.lock_key()
    if lock_key is not None:
        out[b64url_encode(lock_key)] = "the user lock key"
    return out


@check("lock-layering/edv/documents-are-opaque", requirements=("LOCK-30", "LOCK-31",
                                                               "LOCK-32", "LOCK-9"),
       needs=NEEDS)
def documents_are_opaque(t: Probe) -> None:
    """Every document the key server writes is a well-formed encrypted document: a JWE
    (ECDH-ES+A256KW, A256GCM) to the keystore's recipient key with a fresh ephemeral key,
    indexed under the keystore's MAC key with blinded attributes only, and nothing in
    clear: no key id, controller, share, secret, lock key or working key."""
    vk = create_vault_keystore(t, SHARES, "edv-opaque")
    keys = {kind: create_key(t, vk.ks, kind) for kind in spec.KEY_TYPES}
    key_op(t, vk.ks, keys[spec.KEY_ED25519], "rotate")
    docs = stored(t, vk)
    if len(docs) != len(spec.KEY_TYPES) + 1:
        t.fail(f"{len(docs)} documents for {len(spec.KEY_TYPES)} keys and one rotation",
               expected=f"{len(spec.KEY_TYPES) + 1} (LOCK-32)", actual=str(len(docs)))
    publics = {b64url_decode(k["public_key"]) for k in keys.values() if "public_key" in k}
    texts = secret_texts(vk)
    for key in keys.values():
        texts[key["key_id"]] = "a key id"
    epks = set()
    for doc in docs:
        text = json.dumps(doc.to_json())
        problems = []
        if doc.jwe.kid != vk.view["recipient_kid"]:
            problems.append(f"encrypted to {doc.jwe.kid!r}")
        if [e.hmac_id for e in doc.indexed] != [vk.view["hmac_kid"]]:
            problems.append("indexed under another MAC key")
        if sum(a.unique for e in doc.indexed for a in e.attributes) != 1:
            problems.append("not exactly one unique attribute (content.key)")
        epks.add(doc.jwe.epk)
        for value, what in texts.items():
            if value in text:
                problems.append(f"{what} in clear")
        for candidate in B64URL_VALUE.findall(text):
            try:
                raw = b64url_decode(candidate)
            except SpecError:
                continue
            if len(raw) == 32 and (primitives.ed25519_public_key(raw) in publics
                                   or primitives.x25519_public_key(raw) in publics):
                problems.append("a private key in clear")
        if problems:
            t.fail("a document in the vault is not opaque: " + "; ".join(problems),
                   expected="only ciphertext and blinded attributes (LOCK-30, LOCK-31)",
                   actual=text[:300])
    if len(epks) != len(docs):
        t.fail("two documents share an ephemeral key", expected="a fresh epk per document "
               "(LOCK-30)", actual=f"{len(epks)} epks for {len(docs)} documents")


@check("lock-layering/edv/reads-back-what-it-wrote", requirements=("LOCK-33",), needs=NEEDS)
def reads_back(t: Probe) -> None:
    """To use a key, the key server asks the vault for the version's document by the
    blinded attribute it wrote (a query on its index) and signs with what it reads."""
    vk = create_vault_keystore(t, SHARES, "edv-reads")
    before = stored(t, vk)
    key = create_key(t, vk.ks, spec.KEY_ED25519)
    doc = written_for(t, vk, before, t.exchanges[-1], "creating a key")
    unique = next(a for e in doc.indexed for a in e.attributes if a.unique)
    calls_before = len(t.session.accounts.vaults.calls(vk.vault_id))
    signature = sign(t, vk.ks, key, b"read back")
    expect_verifies(t, key["public_key"], b"read back", signature)
    calls = t.session.accounts.vaults.calls(vk.vault_id)[calls_before:]
    asked = [c for c in calls if c.method == "POST" and c.path.endswith("/query")
             and isinstance(c.body, dict)
             and any(isinstance(g, dict) and g.get(unique.name) == unique.value
                     for g in c.body.get("equals") or ())]
    if not asked:
        t.fail("signing did not read the key's document back from the vault",
               expected="a query for the document's unique blinded attribute (LOCK-33)",
               actual=f"vault calls: {[(c.method, c.path) for c in calls]}")


VAULT_SLUGS = {502: "vault-bad-answer", 503: "vault-unavailable"}


def expect_vault_refused(t: Probe, exchange: Exchange, *, what: str) -> None:
    """A document the key server cannot authenticate is a 502 (vault-bad-answer)."""
    t.expect_problem(exchange, 502, what=what, slug="vault-bad-answer")


@check("lock-layering/edv/substituted-document-refused", requirements=("LOCK-33",),
       needs=NEEDS)
def substituted_document(t: Probe) -> None:
    """A vault that answers with another key's document, a tampered document, or two
    documents for one version gets a 502; the key server signs with none of them."""
    vk = create_vault_keystore(t, SHARES, "edv-swap")
    first = create_key(t, vk.ks, spec.KEY_ED25519)
    second = create_key(t, vk.ks, spec.KEY_ED25519)
    docs = stored(t, vk)
    vaults = t.session.accounts.vaults
    other = docs[1]
    try:
        vaults.rewrite_queries(vk.vault_id, lambda v, q, found: [other])
        expect_vault_refused(t, key_op(t, vk.ks, first, "sign", {"message": "aGk"}),
                             what="sign while the vault answers with another key's document")
        vaults.rewrite_queries(vk.vault_id, lambda v, q, found: found + found)
        expect_vault_refused(t, key_op(t, vk.ks, first, "sign", {"message": "aGk"}),
                             what="sign while the vault answers two documents")
    finally:
        vaults.rewrite_queries(vk.vault_id, None)
    # The vault keeps documents in the order they were written: the first is the first key's.
    original = docs[0]
    flipped = bytes([original.jwe.ciphertext[0] ^ 1]) + original.jwe.ciphertext[1:]
    jwe = edv.Jwe(original.jwe.kid, original.jwe.epk, original.jwe.encrypted_key,
                  original.jwe.iv, flipped, original.jwe.tag)
    vaults.replace(vk.vault_id, edv.EncryptedDocument(original.id, original.sequence,
                                                      original.indexed, jwe))
    try:
        expect_vault_refused(t, key_op(t, vk.ks, first, "sign", {"message": "aGk"}),
                             what="sign with a key whose document was tampered")
        sign(t, vk.ks, second, b"the other key is untouched")
    finally:
        vaults.replace(vk.vault_id, original)
    sign(t, vk.ks, first, b"after the vault behaves again")


@check("lock-layering/edv/untrusted-vault-refused", requirements=("LOCK-35",), needs=NEEDS)
def untrusted_vault(t: Probe) -> None:
    """A keystore cannot be bound to a vault on a server the key server does not trust
    (400, class params), nor to a vault whose token does not open it (422)."""
    base = runner_vault_server(t)
    user, share, _, _ = lock_user(t, "edv-untrusted")
    vault_id, token = t.session.accounts.vaults.create(user.user_id)
    path = f"/v1/users/{user.user_id}/keystores"
    cases = [({"vault": f"http://untrusted.invalid/edvs/{vault_id}", "token": token}, 400,
              "params", "a vault on an untrusted server"),
             ({"vault": f"{base}/edvs/{vault_id}", "token": token + "x"}, 422, "binding",
              "a token the vault refuses")]
    for wanted, status, failure_class, what in cases:
        exchange = t.request("POST", path, token=user.token, headers={"secret-share": share},
                             json_body={"scenario": SHARES, "edv": wanted})
        t.expect_rejected(exchange, status, what=f"bind a keystore to {what}",
                          failure_class=failure_class)
    if t.session.accounts.vaults.documents(vault_id):
        t.fail("a refused keystore wrote to the vault", expected="nothing written")


# --- what the vault answers: every defect is the vault's, and a 502 --------------------------

def _jwe_of(d: dict[str, Any]) -> dict[str, Any]:
    jwe: dict[str, Any] = d["jwe"]
    return jwe


def _header_of(d: dict[str, Any]) -> dict[str, Any]:
    header: dict[str, Any] = _jwe_of(d)["recipients"][0]["header"]
    return header


def _flip_last(text: str) -> str:
    """The base64url value with the lowest bit of its last byte flipped."""
    raw = bytearray(b64url_decode(text))
    raw[-1] ^= 1
    return b64url_encode(bytes(raw))


def _attribute(d: dict[str, Any], index: int = 0) -> dict[str, Any]:
    attribute: dict[str, Any] = d["indexed"][0]["attributes"][index]
    return attribute


def _both_sequences(value: Any) -> Callable[[dict[str, Any]], None]:
    def change(d: dict[str, Any]) -> None:
        d["sequence"] = value
        d["indexed"][0]["sequence"] = value
    return change


def _blinded(length: int = 32) -> str:
    return b64url_encode(os.urandom(length))


# (what, how the vault's answer is changed, whether the key server must still accept it)
DOCUMENT_DEFECTS: tuple[tuple[str, Callable[[dict[str, Any]], None], bool], ...] = (
    ("an unknown top-level member", lambda d: d.update(meta={}), False),
    ("no sequence", lambda d: d.pop("sequence"), False),
    ("sequence -1", _both_sequences(-1), False),
    ("sequence true", _both_sequences(True), False),
    ('sequence "0"', _both_sequences("0"), False),
    ("sequence 2^53", _both_sequences(edv.MAX_SEQUENCE + 1), False),
    ("sequence 2^53 - 1", _both_sequences(edv.MAX_SEQUENCE), True),
    ("the entry's sequence not the document's", lambda d: d["indexed"][0].update(sequence=1),
     False),
    ("indexed not a list", lambda d: d.update(indexed=d["indexed"][0]), False),
    ("no index entry", lambda d: d.update(indexed=[]), False),
    ("two index entries", lambda d: d["indexed"].append(copy.deepcopy(d["indexed"][0])),
     False),
    ("an unknown member in the index entry", lambda d: d["indexed"][0].update(x=1), False),
    ("an index entry without attributes member", lambda d: d["indexed"][0].pop("attributes"),
     False),
    ("an unknown member in hmac", lambda d: d["indexed"][0]["hmac"].update(x=1), False),
    ("another hmac type", lambda d: d["indexed"][0]["hmac"].update(type="Sha512HmacKey"),
     False),
    ("an hmac id with a space", lambda d: d["indexed"][0]["hmac"].update(id="a b"), False),
    ("an hmac id that is not a string", lambda d: d["indexed"][0]["hmac"].update(id=7), False),
    ("no attributes", lambda d: d["indexed"][0].update(attributes=[]), False),
    ("attributes not a list", lambda d: d["indexed"][0].update(attributes={}), False),
    ("attributes a number", lambda d: d["indexed"][0].update(attributes=7), False),
    ("17 attributes", lambda d: d["indexed"][0]["attributes"].extend(
        {"name": _blinded(), "value": _blinded()} for _ in range(15)), False),
    ("one attribute", lambda d: d["indexed"][0].update(
        attributes=d["indexed"][0]["attributes"][:1]), True),
    ("indexed an object of one member", lambda d: d.update(indexed={"0": d["indexed"][0]}),
     False),
    ("an index entry that is a list of its member names", lambda d: d.update(
        indexed=[["hmac", "sequence", "attributes"]]), False),
    ("recipients an object of one member", lambda d: _jwe_of(d).update(
        recipients={"0": _jwe_of(d)["recipients"][0]}), False),
    ("16 attributes", lambda d: d["indexed"][0]["attributes"].extend(
        {"name": _blinded(), "value": _blinded()} for _ in range(14)), True),
    ("an unknown member in an attribute", lambda d: _attribute(d).update(x=1), False),
    ('unique "true"', lambda d: _attribute(d).update(unique="true"), False),
    ("unique 1", lambda d: _attribute(d).update(unique=1), False),
    ("unique false, explicitly", lambda d: _attribute(d, 1).update(unique=False), True),
    ("a 31-byte blinded name", lambda d: _attribute(d).update(name=_blinded(31)), False),
    ("a 33-byte blinded value", lambda d: _attribute(d).update(value=_blinded(33)), False),
    ("an attribute name in clear", lambda d: _attribute(d).update(name="content.key"), False),
    ("an attribute name twice", lambda d: d["indexed"][0]["attributes"].append(
        {"name": _attribute(d)["name"], "value": _blinded()}), False),
    ("an id that is not a string", lambda d: d.update(id=7), False),
    ("an id without the z prefix", lambda d: d.update(id=d["id"][1:]), False),
    ("an id of 15 bytes", lambda d: d.update(id="z" + edv.base58_encode(os.urandom(15))),
     False),
    ("an id longer than 23 characters", lambda d: d.update(id="z" + "2" * 23), False),
    ("an unknown member in the jwe", lambda d: _jwe_of(d).update(aad="AA"), False),
    ("another protected header", lambda d: _jwe_of(d).update(
        protected=b64url_encode(b'{"enc":"A128GCM"}')), False),
    ("no recipients", lambda d: _jwe_of(d).update(recipients=[]), False),
    ("an encrypted_key with one bit flipped", lambda d: _jwe_of(d)["recipients"][0].update(
        encrypted_key=_flip_last(_jwe_of(d)["recipients"][0]["encrypted_key"])), False),
    ("two recipients", lambda d: _jwe_of(d)["recipients"].append(
        copy.deepcopy(_jwe_of(d)["recipients"][0])), False),
    ("recipients not a list", lambda d: _jwe_of(d).update(
        recipients=_jwe_of(d)["recipients"][0]), False),
    ("an unknown member in the recipient", lambda d: _jwe_of(d)["recipients"][0].update(x=1),
     False),
    ("an unknown member in the header", lambda d: _header_of(d).update(enc="A256GCM"), False),
    ("alg ECDH-ES", lambda d: _header_of(d).update(alg="ECDH-ES"), False),
    ("an unknown member in the epk", lambda d: _header_of(d)["epk"].update(d="AA"), False),
    ("an epk of kty EC", lambda d: _header_of(d)["epk"].update(kty="EC"), False),
    ("an epk on crv X448", lambda d: _header_of(d)["epk"].update(crv="X448"), False),
    ("apu not the epk", lambda d: _header_of(d).update(apu=_blinded()), False),
    ("apv not the kid", lambda d: _header_of(d).update(apv=b64url_encode(b"urn:other")),
     False),
    ("a kid that is not a string", lambda d: _header_of(d).update(kid=7), False),
)


def _sealed_jwe(vk: VaultKeystore, plaintext: bytes) -> edv.Jwe:
    """A JWE of any plaintext to the keystore's recipient key: anyone can make one."""
    kid = vk.view["recipient_kid"]
    iv = os.urandom(jose.IV_LEN)
    ephemeral = os.urandom(32)
    epk = primitives.x25519_public_key(ephemeral)
    sealed = jose.seal(b64url_decode(vk.view["recipient_public_key"]), ephemeral,
                       os.urandom(jose.KEY_LEN), iv, epk, kid.encode("ascii"), plaintext,
                       edv.PROTECTED.encode("ascii"))
    return edv.Jwe(kid, sealed.epk, sealed.encrypted_key, iv, sealed.ciphertext, sealed.tag)


def forged_documents(vk: VaultKeystore, doc: edv.EncryptedDocument, key: dict[str, Any]
                     ) -> list[tuple[str, dict[str, Any]]]:
    """Documents encrypted to the keystore's recipient key by someone other than the key
    server: the JWE opens, so only the content's checks and the material's seal under
    the user lock (LOCK-7) can refuse them."""
    content = edv.key_content(vk.ks.keystore_id, key["key_id"], key["key_type"], 1,
                              b64url_decode(key.get("public_key", "")),
                              os.urandom(spec.SEALED_WORKING_KEY_LEN))

    def with_plaintext(plaintext: bytes) -> dict[str, Any]:
        forged = edv.EncryptedDocument(doc.id, doc.sequence, doc.indexed,
                                       _sealed_jwe(vk, plaintext))
        return forged.to_json()

    def with_content(changed: dict[str, Any]) -> dict[str, Any]:
        return with_plaintext(edv.canonical({"id": doc.id, "content": changed}))

    missing = dict(content)
    missing.pop("sealed")
    return [
        ("a plaintext that is not JSON", with_plaintext(b"\xff not json")),
        ("a plaintext that is a JSON list", with_plaintext(b"[]")),
        ("a plaintext with a third member", with_plaintext(edv.canonical(
            {"id": doc.id, "content": content, "x": 1}))),
        ("a plaintext naming another document", with_plaintext(edv.canonical(
            {"id": edv.new_id(os.urandom), "content": content}))),
        ("content that is a list", with_plaintext(edv.canonical(
            {"id": doc.id, "content": []}))),
        ("content without sealed", with_content(missing)),
        ("content with an unknown member", with_content(dict(content, x=1))),
        ("sealed that is not a string", with_content(dict(content, sealed=7))),
        ("sealed that is not base64url", with_content(dict(content, sealed="+/"))),
        ("sealed 59 bytes", with_content(dict(content, sealed=b64url_encode(
            os.urandom(spec.SEALED_WORKING_KEY_LEN - 1))))),
        ("material the user lock does not open", with_content(content)),
    ]


def _answering(answer: Any) -> QueryRewrite:
    def rewrite(vault_id: str, query: edv.Query, found: list[edv.EncryptedDocument]
                ) -> list[Any]:
        return [answer]
    return rewrite


@check("lock-layering/edv/malformed-documents-refused", requirements=("LOCK-33", "LOCK-30"),
       needs=NEEDS)
def malformed_documents(t: Probe) -> None:
    """A vault that answers a query with a document that breaks the format (LOCK-30), or
    with one forged to the keystore's recipient key (which is public), gets a 502: the key
    server signs with none of them. Sequences up to 2^53 - 1, 16 attributes and an
    explicit "unique": false are the format's own and are accepted."""
    vk = create_vault_keystore(t, HELD, "edv-malformed")
    key = create_key(t, vk.ks, spec.KEY_ED25519)
    doc = stored(t, vk)[0]
    vaults = t.session.accounts.vaults
    message = {"message": b64url_encode(b"never with a bad document")}
    cases: list[tuple[str, Any, bool]] = []
    for what, change, accepted in DOCUMENT_DEFECTS:
        changed = copy.deepcopy(doc.to_json())
        change(changed)
        cases.append((what, changed, accepted))
    cases += [(what, forged, False) for what, forged in forged_documents(vk, doc, key)]
    cases.append(("a document that is a list of its member names",
                  ["id", "sequence", "indexed", "jwe"], False))
    try:
        for what, answer, accepted in cases:
            vaults.rewrite_queries(vk.vault_id, _answering(answer))
            exchange = key_op(t, vk.ks, key, "sign", message)
            if accepted:
                t.expect_ok_json(exchange, 200, what=f"sign while the vault answers a "
                                 f"document with {what}")
            else:
                expect_vault_refused(t, exchange, what=f"sign while the vault answers a "
                                     f"document with {what}")
    finally:
        vaults.rewrite_queries(vk.vault_id, None)
    sign(t, vk.ks, key, b"after the vault behaves again")


@check("lock-layering/edv/vault-errors", requirements=("LOCK-33", "LOCK-35"), needs=NEEDS)
def vault_errors(t: Probe) -> None:
    """What the vault answers besides documents: a query answered with an error (even one
    carrying the right document), with something other than a JSON list, or with no
    document; a document it refuses to store or to delete, is a 502; an answer past any
    sane size is a 502 or a 503, never a 500; a vault that answers its configuration
    with a 5xx when a keystore is bound is a 503 (vault-unavailable), with a 404 the token
    does not open it (422). A document already gone when its key is deleted is fine."""
    vk = create_vault_keystore(t, SHARES, "edv-errors")
    key = create_key(t, vk.ks, spec.KEY_ED25519)
    vaults = t.session.accounts.vaults
    message = {"message": b64url_encode(b"hello")}
    right = json.dumps([d.to_json() for d in stored(t, vk)]).encode()
    for answer, what in (((500, b'{"error":"down"}'), "a 500"),
                         ((500, right), "a 500 carrying the right document"),
                         ((200, b"not json"), "an answer that is not JSON"),
                         ((200, b'{"document":{}}'), "an object instead of a list"),
                         ((200, b"[]"), "no document")):
        vaults.answer_raw(vk.vault_id, "query", answer)
        try:
            expect_vault_refused(t, key_op(t, vk.ks, key, "sign", message),
                                 what=f"sign while the vault answers its query with {what}")
        finally:
            vaults.answer_raw(vk.vault_id, "query", None)
    # Past any sane answer limit: refused as bad (502) or unreachable (503), never a 500.
    vaults.answer_raw(vk.vault_id, "query", (200, b" " * (1 << 17) + b"[]"))
    try:
        exchange = key_op(t, vk.ks, key, "sign", message)
    finally:
        vaults.answer_raw(vk.vault_id, "query", None)
    status = exchange.status if exchange.status in VAULT_SLUGS else 502
    t.expect_problem(exchange, status, what="sign while the vault answers its query with "
                     "128 KiB", slug=VAULT_SLUGS[status])
    vaults.answer_raw(vk.vault_id, "create", (409, b'{"error":"taken"}'))
    try:
        expect_vault_refused(t, call(t, vk.ks, "POST", "/keys",
                                     body={"key_type": spec.KEY_ED25519}),
                             what="create a key while the vault refuses to store")
        expect_vault_refused(t, key_op(t, vk.ks, key, "rotate"),
                             what="rotate a key while the vault refuses to store")
    finally:
        vaults.answer_raw(vk.vault_id, "create", None)
    vaults.answer_raw(vk.vault_id, "delete", (500, b'{"error":"down"}'))
    try:
        expect_vault_refused(t, key_op(t, vk.ks, key, "delete"),
                             what="delete a key while the vault fails to delete")
    finally:
        vaults.answer_raw(vk.vault_id, "delete", None)
    vaults.answer_raw(vk.vault_id, "delete", (404, b'{"error":"gone"}'))
    try:
        t.expect_status(key_op(t, vk.ks, key, "delete"), 204,
                        what="delete a key whose documents the vault no longer has")
    finally:
        vaults.answer_raw(vk.vault_id, "delete", None)
    base = runner_vault_server(t)
    user, share, _, _ = lock_user(t, "edv-config")
    vault_id, token = vaults.create(user.user_id)
    body = {"scenario": SHARES, "edv": {"vault": f"{base}/edvs/{vault_id}", "token": token}}
    for answer, status, slug in (((503, b"{}"), 503, "vault-unavailable"),
                                 ((500, b"{}"), 503, "vault-unavailable"),
                                 ((404, b"{}"), 422, None)):
        vaults.answer_raw(vault_id, "read", answer)
        try:
            exchange = t.request("POST", f"/v1/users/{user.user_id}/keystores",
                                 token=user.token, headers={"secret-share": share},
                                 json_body=body)
        finally:
            vaults.answer_raw(vault_id, "read", None)
        if slug is None:
            t.expect_rejected(exchange, status, what="bind a keystore to a vault that "
                              "answers 404 for its configuration", failure_class="binding")
        else:
            t.expect_problem(exchange, status, what="bind a keystore to a vault that answers "
                             f"{answer[0]}", slug=slug)


# --- documents whose material authenticates, but whose form does not -------------------------

def _forged_jwe(vk: VaultKeystore, plaintext: bytes, *, kid: str | None = None) -> edv.Jwe:
    """A JWE of `plaintext` to the keystore's recipient key, derived for its own key id
    (apv) but naming `kid` in the recipient header."""
    jwe = _sealed_jwe(vk, plaintext)
    return edv.Jwe(kid or jwe.kid, jwe.epk, jwe.encrypted_key, jwe.iv, jwe.ciphertext,
                   jwe.tag)


def _authentic_forgeries(vk: VaultKeystore, doc: edv.EncryptedDocument, key: dict[str, Any],
                         material: bytes) -> list[tuple[str, dict[str, Any] | None]]:
    """Documents the runner makes with `material` sealed under the keystore's user lock
    (which it knows: it holds both shares), each with one defect of form; the first
    (defect None) has none. The server's last check, the seal under the user lock, holds
    for every one, so only the document's own checks (LOCK-30, LOCK-33) can refuse them."""
    lock_key = vk.ks.lock_key()
    assert lock_key is not None
    ks_id, key_id, key_type = vk.ks.keystore_id, key["key_id"], key["key_type"]
    sealed = spec.seal_working_key(lock_key, os.urandom(spec.NONCE_LEN), material, ks_id,
                                   key_id, 1, key_type)
    content = edv.key_content(ks_id, key_id, key_type, 1, b"", sealed)

    def document(plaintext: bytes, *, doc_id: str = doc.id, kid: str | None = None
                 ) -> dict[str, Any]:
        return edv.EncryptedDocument(doc_id, doc.sequence, doc.indexed,
                                     _forged_jwe(vk, plaintext, kid=kid)).to_json()

    def with_content(changed: dict[str, Any]) -> dict[str, Any]:
        return document(edv.canonical({"id": doc.id, "content": changed}))

    short_id = "z" + edv.base58_encode(os.urandom(15))
    unprefixed_id = "Z" + edv.base58_encode(os.urandom(edv.ID_BYTES))
    outside_id = "z" + edv.base58_encode(b"\x01" + os.urandom(edv.ID_BYTES - 1))
    outside_id = outside_id[:8] + "0" + outside_id[9:]  # "0" is not in base58btc
    cases: list[tuple[str, dict[str, Any] | None]] = [
        ("none", with_content(content)),
        ("a recipient header naming another key id", document(
            edv.canonical({"id": doc.id, "content": content}), kid="urn:keyflows:other")),
        ("a plaintext naming another document", document(
            edv.canonical({"id": edv.new_id(os.urandom), "content": content}))),
        ("a plaintext with a third member", document(
            edv.canonical({"id": doc.id, "content": content, "x": 1}))),
        ("a plaintext that is a list of its member names", document(b'["content","id"]')),
        ("a plaintext whose content is a list of its member names", document(
            edv.canonical({"id": doc.id, "content": sorted(edv.CONTENT_MEMBERS)}))),
        ("an id of 15 bytes, named by the plaintext too", document(
            edv.canonical({"id": short_id, "content": content}), doc_id=short_id)),
        ("an id without the z prefix, named by the plaintext too", document(
            edv.canonical({"id": unprefixed_id, "content": content}), doc_id=unprefixed_id)),
        ("an id with a character outside base58btc, named by the plaintext too", document(
            edv.canonical({"id": outside_id, "content": content}), doc_id=outside_id)),
        ("content with an unknown member", with_content(dict(content, x=1))),
        ("content without public_key", with_content(
            {k: v for k, v in content.items() if k != "public_key"})),
    ]
    short = spec.seal(lock_key, os.urandom(spec.NONCE_LEN), material[:31], spec.working_key_aad(
        ks_id, key_id, 1, key_type, b""))
    cases.append(("material of 31 bytes, sealed right", with_content(dict(
        content, sealed=b64url_encode(short)))))
    for name, value in (("keystore_id", edv.new_id(os.urandom)), ("key_id", "A" * 22),
                        ("key_type", spec.KEY_AES256GCM), ("version", 2),
                        ("public_key", b64url_encode(bytes(32)))):
        cases.append((f"content naming another {name}", with_content(dict(content,
                                                                          **{name: value}))))
    return cases


@check("lock-layering/edv/form-checked-even-when-sealed-right",
       requirements=("LOCK-33", "LOCK-30", "LOCK-7"), needs=NEEDS)
def form_checked_when_sealed_right(t: Probe) -> None:
    """A document whose material does open under the user lock (made by a party that
    holds both shares: here the runner) is used only if the document itself is right:
    one that names another recipient key, another document, another keystore, key, type,
    version or public key, or breaks the plaintext's or the id's form, or whose material
    has the wrong length or is not the key of the public key it is sealed under, is a 502.
    The same forgery without a defect is used (the MAC proves it), so each refusal is the
    form's."""
    vk = create_vault_keystore(t, SHARES, "edv-form")
    key = create_key(t, vk.ks, spec.KEY_HMAC_SHA256)
    doc = stored(t, vk)[0]
    material = os.urandom(32)
    vaults = t.session.accounts.vaults
    message = b"authentic material"
    body = {"message": b64url_encode(message)}
    try:
        for defect, answer in _authentic_forgeries(vk, doc, key, material):
            vaults.rewrite_queries(vk.vault_id, _answering(answer))
            exchange = key_op(t, vk.ks, key, "computemac", body)
            if defect != "none":
                expect_vault_refused(t, exchange, what=f"computemac while the vault answers "
                                     f"a document sealed right but with {defect}")
                continue
            got = t.expect_ok_json(exchange, 200, what="computemac while the vault answers "
                                   "a well-formed document sealed under the user lock")
            expected = b64url_encode(spec.computemac(material, message))
            if not isinstance(got, dict) or got.get("mac") != expected:
                t.fail("the server did not use the material of the document it was given",
                       expected=f"mac {expected} (LOCK-33)", actual=describe(exchange),
                       exchange=exchange)
        # An Ed25519 version whose sealed seed is not the seed of the key's public key,
        # though the seal names that public key (LOCK-7): the forger's own seed.
        ed = create_key(t, vk.ks, spec.KEY_ED25519)
        ed_doc = next(d for d in stored(t, vk) if d.id != doc.id)
        lock_key = vk.ks.lock_key()
        assert lock_key is not None
        public = b64url_decode(ed["public_key"])
        sealed = spec.seal(lock_key, os.urandom(spec.NONCE_LEN), os.urandom(32),
                           spec.working_key_aad(vk.ks.keystore_id, ed["key_id"], 1,
                                                spec.KEY_ED25519, public))
        plaintext = edv.canonical({"id": ed_doc.id, "content": edv.key_content(
            vk.ks.keystore_id, ed["key_id"], spec.KEY_ED25519, 1, public, sealed)})
        vaults.rewrite_queries(vk.vault_id, _answering(edv.EncryptedDocument(
            ed_doc.id, ed_doc.sequence, ed_doc.indexed, _forged_jwe(vk, plaintext)).to_json()))
        expect_vault_refused(t, key_op(t, vk.ks, ed, "sign", body),
                             what="sign while the vault answers a seed sealed right under "
                                  "the key's public key, but not that key's seed")
    finally:
        vaults.rewrite_queries(vk.vault_id, None)
