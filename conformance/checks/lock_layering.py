"""lock-layering checks: keystores, working keys, operations whose results the runner
verifies itself, secret shares (missing, malformed, wrong, foreign: one answer), the
capability chain (attenuation cannot widen a grant or outlive its expiry), and no
secret material in any response.

The runner plays the user's agent and the account server: for each user it draws a
32-byte secret, splits it 2-of-2 with the spec (keyflows.spec.lock_layering), keeps the
user's share for the `Secret-Share` header and serves the other at
`GET /v1/secret?sub=<user_id>`. It attenuates capabilities offline, as any holder can.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, field
from typing import Any

from keyflows.conformance.checks.support import expect_unauthorized
from keyflows.conformance.clients import LOW_ORDER_X25519
from keyflows.conformance.http import Exchange
from keyflows.conformance.probe import Probe, User, describe
from keyflows.conformance.registry import check
from keyflows.spec import lock_layering as spec
from keyflows.spec import primitives
from keyflows.spec.encoding import b64url_decode, b64url_encode
from keyflows.spec.errors import SpecError

FLOW = "lock-layering"
NEEDS = (FLOW,)
CAPABILITIES_MEMBER = "lock_layering"
SHARES = spec.SCENARIO_SHARES
HELD = spec.SCENARIO_SERVER_HELD
KEYSTORE_MEMBERS = {"keystore_id", "keystore_url", "controller", "scenario", "capability"}
_B64URL_VALUE = re.compile(r'"([A-Za-z0-9_-]{22,})"')


# --- actors and requests -----------------------------------------------------------------

@dataclass
class Keystore:
    owner: User
    scenario: str
    keystore_id: str
    capability: str
    user_share: str
    account_share: str
    secret: bytes
    exchanges: list[Exchange] = field(default_factory=list)

    @property
    def path(self) -> str:
        return f"/v1/keystores/{self.keystore_id}"

    def lock_key(self) -> bytes | None:
        """What the runner knows the user lock key is (scenario "shares" only)."""
        if self.scenario != SHARES:
            return None
        return spec.lock_key_from_secret(self.secret, self.keystore_id)


def lock_user(t: Probe, label: str) -> tuple[User, str, str, bytes]:
    """A user with a fresh secret: (user, user share, account share, secret)."""
    user = t.user(label)
    secret = os.urandom(spec.SECRET_LEN)
    account, mine = spec.split_user_secret(secret, os.urandom)
    t.session.accounts.set_share(user.user_id, b64url_encode(account))
    return user, b64url_encode(mine), b64url_encode(account), secret


def create_keystore(t: Probe, scenario: str = HELD, label: str = "lock") -> Keystore:
    user, share, account, secret = lock_user(t, label)
    headers = {"secret-share": share} if scenario == SHARES else {}
    exchange = t.request("POST", f"/v1/users/{user.user_id}/keystores", token=user.token,
                         headers=headers, json_body={"scenario": scenario})
    body = t.expect_ok_json(exchange, 201, what=f"create a {scenario} keystore as its "
                                                  "controller")
    if not isinstance(body, dict) or set(body) != KEYSTORE_MEMBERS:
        t.fail("the keystore creation answer has the wrong members",
               expected=f"exactly {sorted(KEYSTORE_MEMBERS)}", actual=describe(exchange),
               exchange=exchange)
    keystore_id = body["keystore_id"]
    try:
        capability = spec.decode_capability(body["capability"])
    except SpecError as exc:
        t.fail(f"the root capability does not decode: {exc}",
               expected='"kfc1." || base64url(JSON {"keystore_id", "caveats", "mac"}) (LOCK-11)',
               actual=describe(exchange), exchange=exchange)
    problems = []
    if capability.keystore_id != keystore_id or capability.caveats:
        problems.append("the root capability is not a caveat-free capability of this keystore")
    if body["keystore_url"] != f"/v1/keystores/{keystore_id}":
        problems.append(f"keystore_url is {body['keystore_url']!r}")
    if exchange.header("location") != body["keystore_url"]:
        problems.append("the Location header is not the keystore_url")
    if body["controller"] != user.user_id or body["scenario"] != scenario:
        problems.append("controller or scenario differ from the request")
    if problems:
        t.fail("; ".join(problems), expected="a keystore of this controller and scenario",
               actual=describe(exchange), exchange=exchange)
    return Keystore(user, scenario, keystore_id, body["capability"], share, account, secret)


def call(t: Probe, ks: Keystore, method: str, suffix: str = "", *, body: Any = None,
         capability: str | None = None, share: str | None = "",
         raw_authorization: str | None = None) -> Exchange:
    """A keystore request with the capability (default: the root one) and, for a shares
    keystore, the user's share (share="" means the right one, None means none)."""
    headers: dict[str, str] = {}
    if raw_authorization is not None:
        headers["authorization"] = raw_authorization
    else:
        headers["authorization"] = f"Bearer {capability or ks.capability}"
    if ks.scenario == SHARES and share is not None:
        headers["secret-share"] = share or ks.user_share
    exchange = t.request(method, ks.path + suffix, headers=headers, json_body=body)
    ks.exchanges.append(exchange)
    return exchange


def create_key(t: Probe, ks: Keystore, key_type: str) -> dict[str, Any]:
    exchange = call(t, ks, "POST", "/keys", body={"key_type": key_type})
    description = t.expect_ok_json(exchange, 201, what=f"create an {key_type} key")
    expect_description(t, exchange, ks, description, key_type)
    return dict(description)


def expect_description(t: Probe, exchange: Exchange, ks: Keystore, description: Any,
                       key_type: str) -> None:
    members = {"key_id", "key_type", "key_url"}
    if key_type != spec.KEY_AES256GCM:
        members.add("public_key")
    if not isinstance(description, dict) or set(description) != members:
        t.fail(f"a {key_type} key is described with the wrong members",
               expected=f"exactly {sorted(members)} (LOCK-14, LOCK-18)",
               actual=describe(exchange), exchange=exchange)
    problems = []
    if description["key_type"] != key_type:
        problems.append(f"key_type is {description['key_type']!r}")
    if description["key_url"] != f"{ks.path}/keys/{description['key_id']}":
        problems.append(f"key_url is {description['key_url']!r}")
    if "public_key" in description:
        try:
            if len(b64url_decode(description["public_key"])) != 32:
                problems.append("public_key is not 32 bytes")
        except SpecError:
            problems.append("public_key is not base64url")
    if problems:
        t.fail("; ".join(problems), expected=f"the description of an {key_type} key",
               actual=describe(exchange), exchange=exchange)


def key_op(t: Probe, ks: Keystore, key: dict[str, Any], operation: str, body: Any = None,
           **kwargs: Any) -> Exchange:
    method = "GET" if operation == "export" else "DELETE" if operation == "delete" else "POST"
    suffix = f"/keys/{key['key_id']}" + ("" if operation in ("export", "delete")
                                         else f"/{operation}")
    return call(t, ks, method, suffix, body=body, **kwargs)


def sign(t: Probe, ks: Keystore, key: dict[str, Any], message: bytes) -> bytes:
    exchange = key_op(t, ks, key, "sign", {"message": b64url_encode(message)})
    answer = t.expect_ok_json(exchange, 200, what="sign with an ed25519 key")
    return decoded(t, exchange, answer, "signature", 64)


def decoded(t: Probe, exchange: Exchange, answer: Any, name: str, length: int | None = None
            ) -> bytes:
    value = answer.get(name) if isinstance(answer, dict) else None
    try:
        data = b64url_decode(value if isinstance(value, str) else "*")
    except SpecError:
        t.fail(f"the answer's {name} is not base64url", expected=f"{name}: base64url",
               actual=describe(exchange), exchange=exchange)
    if length is not None and len(data) != length:
        t.fail(f"the answer's {name} is {len(data)} bytes", expected=f"{length} bytes",
               actual=describe(exchange), exchange=exchange)
    return data


def expect_share_refused(t: Probe, exchange: Exchange, *, what: str) -> None:
    t.expect_rejected(exchange, 422, what=what, failure_class="share")


def fresh_capability(ks: Keystore, *caveats: str) -> str:
    cap = spec.decode_capability(ks.capability)
    for caveat in caveats:
        cap = spec.attenuate(cap, caveat)
    return spec.encode_capability(cap)


def forged_capability(ks: Keystore, caveats: tuple[str, ...], mac_from: str) -> str:
    """A capability with these caveats and the MAC of another one (a holder's forgery)."""
    return spec.encode_capability(spec.Capability(ks.keystore_id, caveats,
                                                  spec.decode_capability(mac_from).mac))


def with_unchecked_caveat(ks: Keystore, caveat: str) -> str:
    """Append a caveat no spec function would append, with a valid chain link."""
    cap = spec.decode_capability(ks.capability)
    return spec.encode_capability(spec.Capability(
        ks.keystore_id, (*cap.caveats, caveat), spec.extend_mac(cap.mac, caveat)))


# --- keystores ------------------------------------------------------------------------------

@check("lock-layering/keystore/create-server-held", requirements=("LOCK-1", "LOCK-13"),
       needs=NEEDS)
def create_server_held(t: Probe) -> None:
    """The controller creates a server-held keystore: 201, Location, and a caveat-free root
    capability of that keystore that authorizes reading it."""
    ks = create_keystore(t, HELD, "held")
    answer = t.expect_ok_json(call(t, ks, "GET"), 200, what="read the new keystore")
    if answer != {"keystore_id": ks.keystore_id, "controller": ks.owner.user_id,
                  "scenario": HELD, "keys": []}:
        t.fail("the new keystore reads back wrong", expected="its id, controller, scenario "
               "and no keys", actual=describe(ks.exchanges[-1]), exchange=ks.exchanges[-1])


@check("lock-layering/keystore/create-shares", requirements=("LOCK-1", "LOCK-10", "LOCK-13"),
       needs=NEEDS)
def create_shares(t: Probe) -> None:
    """The controller creates a shares keystore, sending its share in Secret-Share; a key
    made in it is usable with the same share."""
    ks = create_keystore(t, SHARES, "shares")
    key = create_key(t, ks, spec.KEY_ED25519)
    sign(t, ks, key, b"hello")


@check("lock-layering/keystore/create-needs-controller", requirements=("LOCK-1", "API-3",
                                                                       "API-4"), needs=NEEDS)
def create_needs_controller(t: Probe) -> None:
    """Only the controller, with a token the account server validates, creates a keystore
    under its name: no token, or another user's token, is the uniform 401."""
    owner = t.user("controller")
    other = t.user("intruder")
    path = f"/v1/users/{owner.user_id}/keystores"
    for token, what in ((None, "without a token"), (other.token, "with another user's token")):
        exchange = t.request("POST", path, token=token, json_body={"scenario": HELD})
        expect_unauthorized(t, exchange, what=f"create a keystore {what}")


@check("lock-layering/keystore/create-refuses-bad-body", requirements=("LOCK-1", "API-6"),
       needs=NEEDS)
def create_bad_body(t: Probe) -> None:
    """An unknown scenario, an unknown member or a missing scenario is a 400."""
    owner = t.user("badbody")
    path = f"/v1/users/{owner.user_id}/keystores"
    for body, what in (({"scenario": "edv"}, "an unknown scenario"),
                       ({"scenario": HELD, "controller": owner.user_id}, "an unknown member"),
                       ({}, "no scenario")):
        exchange = t.request("POST", path, token=owner.token, json_body=body)
        t.expect_rejected(exchange, 400, what=f"create a keystore with {what}",
                          failure_class="decode")


@check("lock-layering/keystore/read-lists-keys", requirements=("LOCK-14",), needs=NEEDS)
def read_lists_keys(t: Probe) -> None:
    """Reading a keystore lists its keys, each as created (id, type, url, public key)."""
    ks = create_keystore(t, HELD, "list")
    made = [create_key(t, ks, kind) for kind in spec.KEY_TYPES]
    exchange = call(t, ks, "GET")
    answer = t.expect_ok_json(exchange, 200, what="read a keystore with three keys")
    keys = answer.get("keys") if isinstance(answer, dict) else None
    expected = sorted(made, key=lambda k: str(k["key_id"]))
    if not isinstance(keys, list) or sorted(keys, key=lambda k: str(k.get("key_id"))) != expected:
        t.fail("the keystore does not list its keys as created",
               expected=f"keys: {expected}", actual=describe(exchange), exchange=exchange)


# --- keys ----------------------------------------------------------------------------------

@check("lock-layering/keys/create-each-type", requirements=("LOCK-14", "LOCK-18"), needs=NEEDS)
def create_each_type(t: Probe) -> None:
    """Each key type is created in both scenarios; ed25519 and x25519 keys come with a
    32-byte public key, aes256gcm keys with none, and export repeats the description."""
    for scenario in (HELD, SHARES):
        ks = create_keystore(t, scenario, f"types-{scenario}")
        ids = set()
        for kind in spec.KEY_TYPES:
            key = create_key(t, ks, kind)
            ids.add(key["key_id"])
            exchange = key_op(t, ks, key, "export", share=None)
            if t.expect_ok_json(exchange, 200, what=f"export an {kind} key") != key:
                t.fail("export differs from the creation answer", expected=str(key),
                       actual=describe(exchange), exchange=exchange)
        if len(ids) != len(spec.KEY_TYPES):
            t.fail("two keys got the same id", expected="distinct key ids",
                   actual=str(sorted(ids)))


@check("lock-layering/keys/delete-then-gone", requirements=("LOCK-14",), needs=NEEDS)
def delete_then_gone(t: Probe) -> None:
    """After DELETE (204, no body) the key is gone: export, sign and delete answer 404."""
    ks = create_keystore(t, HELD, "delete")
    key = create_key(t, ks, spec.KEY_ED25519)
    exchange = key_op(t, ks, key, "delete")
    t.expect_status(exchange, 204, what="delete a key")
    if exchange.response_body:
        t.fail("DELETE answered 204 with a body", expected="an empty body",
               actual=describe(exchange), exchange=exchange)
    for operation, body in (("export", None), ("sign", {"message": ""}), ("delete", None)):
        t.expect_rejected(key_op(t, ks, key, operation, body), 404,
                          what=f"{operation} a deleted key")


@check("lock-layering/keys/unknown-key", requirements=("LOCK-14",), needs=NEEDS)
def unknown_key(t: Probe) -> None:
    """A key id the keystore never had is a 404 for a capability that covers the keystore."""
    ks = create_keystore(t, HELD, "unknown")
    ghost = {"key_id": "never-made-" + os.urandom(4).hex()}
    t.expect_rejected(key_op(t, ks, ghost, "export"), 404, what="export an unknown key")


@check("lock-layering/keys/unsupported-operation", requirements=("LOCK-14",), needs=NEEDS)
def unsupported_operation(t: Probe) -> None:
    """An operation the key type does not support is a 400 (class params), decided before
    the lock is opened: it holds without any share."""
    ks = create_keystore(t, SHARES, "unsupported")
    keys = {kind: create_key(t, ks, kind) for kind in spec.KEY_TYPES}
    cases = [(spec.KEY_X25519, "sign", {"message": ""}),
             (spec.KEY_ED25519, "encrypt", {"plaintext": ""}),
             (spec.KEY_AES256GCM, "unwrap", {"epk": b64url_encode(bytes(32)),
                                             "wrapped_key": b64url_encode(bytes(48))}),
             (spec.KEY_ED25519, "decrypt", {"nonce": b64url_encode(bytes(12)),
                                            "ciphertext": b64url_encode(bytes(16))})]
    for kind, operation, body in cases:
        t.expect_rejected(key_op(t, ks, keys[kind], operation, body, share=None), 400,
                          what=f"{operation} with an {kind} key, no share",
                          failure_class="params")


@check("lock-layering/keys/unknown-key-type", requirements=("LOCK-14", "API-6"), needs=NEEDS)
def unknown_key_type(t: Probe) -> None:
    """A key type outside ed25519, x25519 and aes256gcm is a 400 (class decode)."""
    ks = create_keystore(t, HELD, "keytype")
    for kind in ("rsa", "ED25519", ""):
        t.expect_rejected(call(t, ks, "POST", "/keys", body={"key_type": kind}), 400,
                          what=f"create a key of type {kind!r}", failure_class="decode")


# --- operations ----------------------------------------------------------------------------

@check("lock-layering/sign/verifies-with-exported-key", requirements=("LOCK-15",),
       needs=NEEDS)
def sign_verifies(t: Probe) -> None:
    """A signature from the server verifies, in the runner, under the key's exported public
    key (pure Ed25519 over the message bytes), in both scenarios."""
    for scenario in (HELD, SHARES):
        ks = create_keystore(t, scenario, f"sign-{scenario}")
        key = create_key(t, ks, spec.KEY_ED25519)
        public = b64url_decode(key["public_key"])
        for message in (b"", b"keyflows lock-layering", os.urandom(1000)):
            signature = sign(t, ks, key, message)
            try:
                primitives.ed25519_verify(public, message, signature)
            except SpecError:
                t.fail("the signature does not verify under the exported public key",
                       expected="a valid Ed25519 signature (LOCK-15)",
                       actual=describe(ks.exchanges[-1]), exchange=ks.exchanges[-1])


@check("lock-layering/sign/server-verify", requirements=("LOCK-15",), needs=NEEDS)
def server_verify(t: Probe) -> None:
    """verify answers valid true for a good signature, valid false for another message or a
    flipped signature, and 400 (class length) for a 63-byte signature."""
    ks = create_keystore(t, HELD, "verify")
    key = create_key(t, ks, spec.KEY_ED25519)
    signature = sign(t, ks, key, b"message")
    flipped = bytes([signature[0] ^ 1]) + signature[1:]
    for message, sig, expected in ((b"message", signature, True),
                                   (b"massage", signature, False),
                                   (b"message", flipped, False)):
        exchange = key_op(t, ks, key, "verify", {"message": b64url_encode(message),
                                                 "signature": b64url_encode(sig)})
        answer = t.expect_ok_json(exchange, 200, what="verify a signature")
        if answer != {"valid": expected}:
            t.fail(f"verify answered {answer!r}", expected=f'{{"valid": {str(expected).lower()}}}',
                   actual=describe(exchange), exchange=exchange)
    exchange = key_op(t, ks, key, "verify", {"message": b64url_encode(b"message"),
                                             "signature": b64url_encode(signature[:63])})
    t.expect_rejected(exchange, 400, what="verify a 63-byte signature", failure_class="length")


def encrypt(t: Probe, ks: Keystore, key: dict[str, Any], plaintext: bytes,
            aad: bytes) -> tuple[bytes, bytes]:
    exchange = key_op(t, ks, key, "encrypt", {"plaintext": b64url_encode(plaintext),
                                              "aad": b64url_encode(aad)})
    answer = t.expect_ok_json(exchange, 200, what="encrypt with an aes256gcm key")
    nonce = decoded(t, exchange, answer, "nonce", 12)
    ciphertext = decoded(t, exchange, answer, "ciphertext", len(plaintext) + 16)
    return nonce, ciphertext


def decrypt_body(nonce: bytes, ciphertext: bytes, aad: bytes) -> dict[str, str]:
    return {"nonce": b64url_encode(nonce), "ciphertext": b64url_encode(ciphertext),
            "aad": b64url_encode(aad)}


@check("lock-layering/encrypt/round-trip-fresh-nonces", requirements=("LOCK-16",),
       needs=NEEDS)
def encrypt_round_trip(t: Probe) -> None:
    """Encrypting the same plaintext twice gives two nonces and two ciphertexts; each
    decrypts back to the plaintext with its AAD, in both scenarios."""
    for scenario in (HELD, SHARES):
        ks = create_keystore(t, scenario, f"enc-{scenario}")
        key = create_key(t, ks, spec.KEY_AES256GCM)
        plaintext, aad = b"attack at dawn", b"header"
        first = encrypt(t, ks, key, plaintext, aad)
        second = encrypt(t, ks, key, plaintext, aad)
        if first[0] == second[0]:
            t.fail("two encryptions used the same nonce", expected="a fresh random nonce per "
                   "encryption (LOCK-16)", actual=b64url_encode(first[0]),
                   exchange=ks.exchanges[-1])
        for nonce, ciphertext in (first, second):
            exchange = key_op(t, ks, key, "decrypt", decrypt_body(nonce, ciphertext, aad))
            answer = t.expect_ok_json(exchange, 200, what="decrypt a fresh ciphertext")
            if decoded(t, exchange, answer, "plaintext") != plaintext:
                t.fail("decrypt does not give back the plaintext", expected=plaintext.hex(),
                       actual=describe(exchange), exchange=exchange)


@check("lock-layering/encrypt/tampered-refused", requirements=("LOCK-16",), needs=NEEDS)
def encrypt_tampered(t: Probe) -> None:
    """A flipped ciphertext byte, a flipped tag byte, another nonce or another AAD is a
    422 (class aead)."""
    ks = create_keystore(t, HELD, "tamper")
    key = create_key(t, ks, spec.KEY_AES256GCM)
    nonce, ciphertext = encrypt(t, ks, key, b"secret text", b"aad")
    flip_first = bytes([ciphertext[0] ^ 1]) + ciphertext[1:]
    flip_tag = ciphertext[:-1] + bytes([ciphertext[-1] ^ 0x80])
    other_nonce = bytes([nonce[0] ^ 1]) + nonce[1:]
    for body, what in ((decrypt_body(nonce, flip_first, b"aad"), "a flipped ciphertext"),
                       (decrypt_body(nonce, flip_tag, b"aad"), "a flipped tag"),
                       (decrypt_body(other_nonce, ciphertext, b"aad"), "another nonce"),
                       (decrypt_body(nonce, ciphertext, b"other"), "another AAD")):
        t.expect_rejected(key_op(t, ks, key, "decrypt", body), 422,
                          what=f"decrypt with {what}", failure_class="aead")


def wrap(t: Probe, ks: Keystore, cek: bytes, recipient: bytes) -> spec.Wrapped:
    exchange = call(t, ks, "POST", "/wrap", body={"cek": b64url_encode(cek),
                                                 "recipient_public_key": b64url_encode(
                                                     recipient)}, share=None)
    answer = t.expect_ok_json(exchange, 200, what="wrap a key to an X25519 recipient")
    return spec.Wrapped(decoded(t, exchange, answer, "epk", 32),
                        decoded(t, exchange, answer, "wrapped_key", len(cek) + 16))


def unwrap_via_server(t: Probe, ks: Keystore, key: dict[str, Any],
                      wrapped: spec.Wrapped) -> Exchange:
    return key_op(t, ks, key, "unwrap", {"epk": b64url_encode(wrapped.epk),
                                         "wrapped_key": b64url_encode(wrapped.wrapped_key)})



def expect_unwrapped(t: Probe, ks: Keystore, key: dict[str, Any], wrapped: spec.Wrapped,
                     cek: bytes, *,
                     what: str) -> None:
    """The server's unwrap of `wrapped` gives back exactly `cek` (LOCK-17)."""
    exchange = unwrap_via_server(t, ks, key, wrapped)
    answer = t.expect_ok_json(exchange, 200, what=f"unwrap {what}")
    if decoded(t, exchange, answer, "cek") != cek:
        t.fail(f"unwrap of {what} does not give back the wrapped key", expected=cek.hex(),
               actual=describe(exchange), exchange=exchange)

@check("lock-layering/wrap/round-trip-via-server", requirements=("LOCK-17",), needs=NEEDS)
def wrap_round_trip(t: Probe) -> None:
    """A key wrapped by the server to the keystore's own X25519 key unwraps through the
    server to the same bytes, in both scenarios."""
    for scenario in (HELD, SHARES):
        ks = create_keystore(t, scenario, f"wrap-{scenario}")
        key = create_key(t, ks, spec.KEY_X25519)
        cek = os.urandom(32)
        wrapped = wrap(t, ks, cek, b64url_decode(key["public_key"]))
        expect_unwrapped(t, ks, key, wrapped, cek, what="a key the server wrapped")


@check("lock-layering/wrap/interoperates-with-spec", requirements=("LOCK-17",), needs=NEEDS)
def wrap_interoperates(t: Probe) -> None:
    """The server's wrap opens with the spec's unwrap under the runner's own X25519 key,
    and the spec's wrap to the keystore's key opens with the server's unwrap."""
    ks = create_keystore(t, HELD, "wrap-spec")
    key = create_key(t, ks, spec.KEY_X25519)
    runner_private = os.urandom(32)
    cek = os.urandom(24)
    wrapped = wrap(t, ks, cek, primitives.x25519_public_key(runner_private))
    try:
        if spec.unwrap(wrapped, runner_private) != cek:
            raise ValueError
    except (SpecError, ValueError):
        t.fail("the server's wrap does not unwrap with ECDH-ES as LOCK-17 defines it",
               expected="KEK = HKDF(Z, ctx('lock-wrap', epk, R)); AES-256-GCM, zero nonce",
               actual=describe(ks.exchanges[-1]), exchange=ks.exchanges[-1])
    ours = spec.wrap(cek, b64url_decode(key["public_key"]), os.urandom(32))
    expect_unwrapped(t, ks, key, ours, cek, what="a key the runner wrapped")


@check("lock-layering/wrap/low-order-refused", requirements=("LOCK-17",), needs=NEEDS)
def wrap_low_order(t: Probe) -> None:
    """Wrapping to a low-order X25519 point, or unwrapping with a low-order ephemeral key,
    is a 422 (class point)."""
    ks = create_keystore(t, HELD, "lowpoint")
    key = create_key(t, ks, spec.KEY_X25519)
    for name in ("zero", "order-8-a"):
        point = LOW_ORDER_X25519[name]
        exchange = call(t, ks, "POST", "/wrap", body={
            "cek": b64url_encode(bytes(32)), "recipient_public_key": b64url_encode(point)})
        t.expect_rejected(exchange, 422, what=f"wrap to the low-order point {name}",
                          failure_class="point")
        exchange = unwrap_via_server(t, ks, key, spec.Wrapped(point, bytes(48)))
        t.expect_rejected(exchange, 422, what=f"unwrap with the low-order epk {name}",
                          failure_class="point")


# --- shares ---------------------------------------------------------------------------------

@check("lock-layering/shares/refusals-are-uniform", requirements=("LOCK-6", "LOCK-10"),
       needs=NEEDS)
def shares_uniform(t: Probe) -> None:
    """A missing, malformed, short, wrong or foreign share, or the account's own share
    sent again, is refused with one and the same 422 (class share), byte for byte."""
    ks = create_keystore(t, SHARES, "refusals")
    key = create_key(t, ks, spec.KEY_ED25519)
    _, foreign, _, _ = lock_user(t, "foreign")
    mine = b64url_decode(ks.user_share)
    wrong = b64url_encode(bytes([mine[0] ^ 1]) + mine[1:])
    variants: list[tuple[str | None, str]] = [
        (None, "no Secret-Share header"), ("not*base64", "a share that is not base64url"),
        (b64url_encode(mine[:-1]), "a share one byte short"), (wrong, "a wrong share"),
        (foreign, "another user's share"), (ks.account_share, "the account server's share"),
    ]
    bodies = {}
    for share, what in variants:
        exchange = key_op(t, ks, key, "sign", {"message": ""}, share=share)
        expect_share_refused(t, exchange, what=f"sign with {what}")
        bodies[what] = exchange
    first = next(iter(bodies.values()))
    for what, exchange in bodies.items():
        if exchange.response_body != first.response_body:
            t.fail(f"the refusal for {what} differs from the one for no share",
                   expected=first.response_body.decode(errors="replace"),
                   actual=describe(exchange), exchange=exchange)


@check("lock-layering/shares/right-share-after-refusals", requirements=("LOCK-6",),
       needs=NEEDS)
def shares_after_refusals(t: Probe) -> None:
    """Refused shares change nothing: the right share still signs, and the signature
    verifies."""
    ks = create_keystore(t, SHARES, "after")
    key = create_key(t, ks, spec.KEY_ED25519)
    for share in (None, b64url_encode(bytes(33))):
        expect_share_refused(t, key_op(t, ks, key, "sign", {"message": ""}, share=share),
                             what="sign with a bad share")
    signature = sign(t, ks, key, b"still mine")
    try:
        primitives.ed25519_verify(b64url_decode(key["public_key"]), b"still mine", signature)
    except SpecError:
        t.fail("the signature after refusals does not verify", expected="a valid signature",
               actual=describe(ks.exchanges[-1]), exchange=ks.exchanges[-1])


@check("lock-layering/shares/account-share-fetched", requirements=("LOCK-10",), needs=NEEDS)
def account_share_fetched(t: Probe) -> None:
    """For a shares keystore the server asks the account server for the controller's share
    (GET /v1/secret?sub=<controller>) when it creates the keystore and when it unlocks it."""
    before = len(t.session.accounts.share_requests())
    ks = create_keystore(t, SHARES, "fetched")
    after_create = t.session.accounts.share_requests()[before:]
    key = create_key(t, ks, spec.KEY_ED25519)
    sign(t, ks, key, b"x")
    after_ops = t.session.accounts.share_requests()[before:]
    if ks.owner.user_id not in after_create or after_ops.count(ks.owner.user_id) < 3:
        t.fail("the account server was not asked for the controller's share each time",
               expected=f"GET /v1/secret?sub={ks.owner.user_id} at creation, key creation "
                        "and signing", actual=f"asked for {after_ops}")


@check("lock-layering/shares/not-needed-for-public-operations", requirements=("LOCK-14",),
       needs=NEEDS)
def shares_not_needed(t: Probe) -> None:
    """Reading the keystore, exporting a public key, verifying and wrapping use no private
    key: they work on a shares keystore without any share."""
    ks = create_keystore(t, SHARES, "public-ops")
    ed = create_key(t, ks, spec.KEY_ED25519)
    x = create_key(t, ks, spec.KEY_X25519)
    signature = sign(t, ks, ed, b"m")
    t.expect_status(call(t, ks, "GET", share=None), 200, what="read without a share")
    t.expect_status(key_op(t, ks, ed, "export", share=None), 200, what="export, no share")
    t.expect_status(key_op(t, ks, ed, "verify", {"message": b64url_encode(b"m"),
                                                 "signature": b64url_encode(signature)},
                           share=None), 200, what="verify without a share")
    wrap(t, ks, bytes(32), b64url_decode(x["public_key"]))


# --- capabilities ---------------------------------------------------------------------------

@check("lock-layering/capability/refusals-are-uniform", requirements=("LOCK-11", "LOCK-18",
                                                                      "API-4"), needs=NEEDS)
def capability_uniform(t: Probe) -> None:
    """No capability, a malformed one, the controller's account token, another keystore's
    capability and a capability with a flipped MAC all get the same 401, byte for byte."""
    ks = create_keystore(t, HELD, "cap-uniform")
    other = create_keystore(t, HELD, "cap-other")
    cap = spec.decode_capability(ks.capability)
    flipped = spec.encode_capability(spec.Capability(
        ks.keystore_id, (), bytes([cap.mac[0] ^ 1]) + cap.mac[1:]))
    variants = [("", "no Authorization header"), ("Bearer kfc1.bm90LWpzb24", "a malformed "
                "capability"), (f"Bearer {ks.owner.token}", "the controller's account token"),
                (f"Bearer {other.capability}", "another keystore's capability"),
                (f"Bearer {flipped}", "a capability with a flipped MAC")]
    first: Exchange | None = None
    for authorization, what in variants:
        exchange = call(t, ks, "GET", raw_authorization=authorization) if authorization else \
            t.request("GET", ks.path)
        expect_unauthorized(t, exchange, what=f"read a keystore with {what}")
        first = first or exchange
        if exchange.response_body != first.response_body:
            t.fail(f"the 401 for {what} differs from the one for no credentials (API-4)",
                   expected=first.response_body.decode(errors="replace"),
                   actual=describe(exchange), exchange=exchange)


@check("lock-layering/capability/tampered-caveats-refused", requirements=("LOCK-11",),
       needs=NEEDS)
def tampered_caveats(t: Probe) -> None:
    """Dropping, changing, reordering or widening a caveat of an attenuated capability
    breaks its MAC chain: 401."""
    ks = create_keystore(t, HELD, "tampered")
    attenuated = fresh_capability(ks, "ops=read", "exp=4102444800")
    for caveats, what in ((("exp=4102444800",), "the ops caveat dropped"),
                          (("ops=read",), "the expiry dropped"),
                          (("exp=4102444800", "ops=read"), "the caveats reordered"),
                          (("ops=read,create-key", "exp=4102444800"), "the ops widened"),
                          ((), "every caveat dropped")):
        exchange = call(t, ks, "GET", capability=forged_capability(ks, caveats, attenuated))
        expect_unauthorized(t, exchange, what=f"read with {what}")
    t.expect_status(call(t, ks, "GET", capability=attenuated), 200,
                    what="read with the untampered attenuated capability")


@check("lock-layering/capability/ops-caveat", requirements=("LOCK-12",), needs=NEEDS)
def ops_caveat(t: Probe) -> None:
    """A capability attenuated to ops=sign,verify signs and verifies, and nothing else."""
    ks = create_keystore(t, SHARES, "ops")
    ed = create_key(t, ks, spec.KEY_ED25519)
    aes = create_key(t, ks, spec.KEY_AES256GCM)
    cap = fresh_capability(ks, "ops=sign,verify")
    t.expect_status(key_op(t, ks, ed, "sign", {"message": ""}, capability=cap), 200,
                    what="sign under ops=sign,verify")
    for exchange, what in (
            (key_op(t, ks, aes, "encrypt", {"plaintext": ""}, capability=cap), "encrypt"),
            (call(t, ks, "POST", "/keys", body={"key_type": "ed25519"}, capability=cap),
             "create a key"),
            (key_op(t, ks, ed, "delete", capability=cap), "delete a key"),
            (call(t, ks, "GET", capability=cap), "read the keystore")):
        expect_unauthorized(t, exchange, what=f"{what} under ops=sign,verify")
    t.expect_status(key_op(t, ks, ed, "export"), 200, what="the key survived the refused "
                                                          "delete")


@check("lock-layering/capability/key-caveat", requirements=("LOCK-12",), needs=NEEDS)
def key_caveat(t: Probe) -> None:
    """A capability attenuated to key=K acts on key K only: not on another key, not on the
    keystore (read, create-key, wrap)."""
    ks = create_keystore(t, HELD, "keycav")
    first = create_key(t, ks, spec.KEY_ED25519)
    second = create_key(t, ks, spec.KEY_ED25519)
    cap = fresh_capability(ks, spec.key_caveat(first["key_id"]))
    t.expect_status(key_op(t, ks, first, "sign", {"message": ""}, capability=cap), 200,
                    what="sign with the key the capability names")
    for exchange, what in (
            (key_op(t, ks, second, "sign", {"message": ""}, capability=cap),
             "sign with another key"),
            (call(t, ks, "GET", capability=cap), "read the keystore"),
            (call(t, ks, "POST", "/keys", body={"key_type": "ed25519"}, capability=cap),
             "create a key"),
            (call(t, ks, "POST", "/wrap", body={"cek": b64url_encode(bytes(32)),
                                               "recipient_public_key": b64url_encode(
                                                   b64url_decode(first["public_key"]))},
                  capability=cap), "wrap")):
        expect_unauthorized(t, exchange, what=f"{what} under key={first['key_id']}")


@check("lock-layering/capability/expiry", requirements=("LOCK-12",), needs=NEEDS)
def expiry(t: Probe) -> None:
    """A capability whose exp caveat lies an hour ahead works; one whose exp passed a
    minute ago gets the uniform 401."""
    ks = create_keystore(t, HELD, "expiry")
    now = int(time.time())
    t.expect_status(call(t, ks, "GET", capability=fresh_capability(ks, f"exp={now + 3600}")),
                    200, what="read with a capability valid for another hour")
    expect_unauthorized(t, call(t, ks, "GET", capability=fresh_capability(ks, f"exp={now - 60}")),
                        what="read with a capability that expired a minute ago")


@check("lock-layering/capability/cannot-widen", requirements=("LOCK-12",), needs=NEEDS)
def cannot_widen(t: Probe) -> None:
    """Appending a wider caveat does not widen the grant: after ops=read, a further
    ops=read,create-key still refuses create-key; after a passed exp, a later exp does not
    revive the capability."""
    ks = create_keystore(t, HELD, "widen")
    now = int(time.time())
    widened = fresh_capability(ks, "ops=read", "ops=read,create-key")
    t.expect_status(call(t, ks, "GET", capability=widened), 200, what="read under ops=read")
    expect_unauthorized(t, call(t, ks, "POST", "/keys", body={"key_type": "ed25519"},
                                capability=widened),
                        what="create a key after ops=read, then ops=read,create-key")
    revived = fresh_capability(ks, f"exp={now - 60}", f"exp={now + 3600}")
    expect_unauthorized(t, call(t, ks, "GET", capability=revived),
                        what="read with a passed exp followed by a future exp")


@check("lock-layering/capability/unknown-caveat-denies", requirements=("LOCK-12",),
       needs=NEEDS)
def unknown_caveat(t: Probe) -> None:
    """A caveat the server does not understand denies, even with a valid MAC chain."""
    ks = create_keystore(t, HELD, "unknown-caveat")
    for caveat in ("aud=someone-else", "ops=read,fly", "exp=soon"):
        expect_unauthorized(t, call(t, ks, "GET", capability=with_unchecked_caveat(ks, caveat)),
                            what=f"read with the caveat {caveat!r}")


# --- privacy ----------------------------------------------------------------------------------

def secret_values(ks: Keystore) -> dict[bytes, str]:
    secrets_: dict[bytes, str] = {b64url_decode(ks.user_share): "the user's share",
                                  b64url_decode(ks.account_share): "the account server's share",
                                  ks.secret: "the combined secret"}
    lock_key = ks.lock_key()
    if lock_key is not None:
        secrets_[lock_key] = "the user lock key"
    return secrets_


def leaked(value: bytes, ks: Keystore, publics: set[bytes],
           sealed: list[tuple[bytes, bytes, bytes]]) -> str | None:
    """What secret `value` is, or None: a private key of a returned public key, an AES key
    that opens a ciphertext the server made, a share, the secret or the lock key."""
    named = secret_values(ks).get(value)
    if named:
        return named
    if len(value) != 32:
        return None
    if primitives.ed25519_public_key(value) in publics:
        return "an Ed25519 private key"
    if primitives.x25519_public_key(value) in publics:
        return "an X25519 private key"
    for nonce, ciphertext, aad in sealed:
        try:
            primitives.aes256gcm_decrypt(value, nonce, ciphertext, aad)
            return "an AES-256-GCM working key"
        except SpecError:
            continue
    return None


@check("lock-layering/privacy/no-secret-material", requirements=("LOCK-18", "LOCK-9"),
       needs=NEEDS)
def no_secret_material(t: Probe) -> None:
    """No answer of a full session (create, every key type, every operation) carries a
    private key, a working AES key, a share, the user secret or the user lock key."""
    for scenario in (HELD, SHARES):
        ks = create_keystore(t, scenario, f"privacy-{scenario}")
        keys = {kind: create_key(t, ks, kind) for kind in spec.KEY_TYPES}
        sign(t, ks, keys[spec.KEY_ED25519], b"m")
        nonce, ciphertext = encrypt(t, ks, keys[spec.KEY_AES256GCM], b"p", b"a")
        key_op(t, ks, keys[spec.KEY_AES256GCM], "decrypt", decrypt_body(nonce, ciphertext, b"a"))
        wrapped = wrap(t, ks, os.urandom(32), b64url_decode(keys[spec.KEY_X25519]["public_key"]))
        unwrap_via_server(t, ks, keys[spec.KEY_X25519], wrapped)
        call(t, ks, "GET")
        publics = {b64url_decode(k["public_key"]) for k in keys.values() if "public_key" in k}
        sealed = [(nonce, ciphertext, b"a")]
        for exchange in ks.exchanges:
            text = exchange.response_body.decode("utf-8", errors="replace")
            for candidate in _B64URL_VALUE.findall(text):
                try:
                    value = b64url_decode(candidate)
                except SpecError:
                    continue
                what = leaked(value, ks, publics, sealed)
                if what:
                    t.fail(f"a response carries {what}", expected="no secret material in "
                           "any response (LOCK-18)", actual=exchange.line, exchange=exchange)


@check("lock-layering/privacy/capabilities-member", requirements=("LOCK-1", "LOCK-14"),
       needs=NEEDS)
def capabilities_member(t: Probe) -> None:
    """GET /v1/capabilities describes the flow: both scenarios, the three key types, the
    operations, the kfc1 capability format and the share header."""
    exchange = t.request("GET", "/v1/capabilities")
    caps = t.expect_ok_json(exchange, 200, what="GET /v1/capabilities")
    member = caps.get(CAPABILITIES_MEMBER) if isinstance(caps, dict) else None
    problems = []
    if not isinstance(member, dict):
        problems.append(f"no {CAPABILITIES_MEMBER!r} object")
    else:
        if set(member.get("scenarios") or ()) != set(spec.SCENARIOS):
            problems.append("scenarios is not both scenarios")
        if set(member.get("key_types") or ()) != set(spec.KEY_TYPES):
            problems.append("key_types is not the three key types")
        if set(member.get("operations") or ()) != set(spec.OPERATIONS):
            problems.append("operations is not the ten operations")
        capability = member.get("capability")
        if not (isinstance(capability, dict) and capability.get("format") == "kfc1"):
            problems.append("capability.format is not kfc1")
        if member.get("share_header") != "Secret-Share":
            problems.append("share_header is not Secret-Share")
    if problems:
        t.fail("; ".join(problems), expected=f"a {CAPABILITIES_MEMBER} member (LOCK-1)",
               actual=describe(exchange), exchange=exchange)

