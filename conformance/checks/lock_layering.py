"""lock-layering checks: keystores, working keys and their versions, operations whose
results the runner verifies itself, secret shares (missing, malformed, wrong, foreign: one
answer), and no secret material in any response. The capability checks are in
lock_layering_capability, the vault checks in lock_layering_edv; the actors all share are
in lock_layering_support.
"""

from __future__ import annotations

import hashlib
import os
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
    create_keystore,
    decoded,
    expect_answer,
    expect_description,
    expect_share_refused,
    key_op,
    lock_user,
    sign,
)
from keyflows.conformance.checks.support import expect_unauthorized
from keyflows.conformance.clients import LOW_ORDER_X25519, non_canonical_x25519
from keyflows.conformance.http import Exchange
from keyflows.conformance.probe import Probe, describe
from keyflows.conformance.registry import check
from keyflows.spec import lock_layering as spec
from keyflows.spec import lock_layering_capability as cap
from keyflows.spec import primitives
from keyflows.spec.encoding import PROTOCOL_ID, b64url_decode, b64url_encode
from keyflows.spec.errors import SpecError

# --- keystores ------------------------------------------------------------------------------

@check("lock-layering/keystore/create-server-held", requirements=("LOCK-1", "LOCK-13",
                                                                 "LOCK-23", "API-16"),
       needs=NEEDS)
def create_server_held(t: Probe) -> None:
    """The controller creates a server-held keystore: 201, Location, and a root capability
    of that keystore, expiring within the server's root lifetime, that authorizes reading
    it."""
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
    made in it is usable with the same share. Without the share, with one that is not a
    share, or with the account server's own share, no keystore is made (422, class share:
    the server alone must never hold a scenario-shares lock)."""
    user, _, account, _ = lock_user(t, "shares-refused")
    path = f"/v1/users/{user.user_id}/keystores"
    for headers, what in (({}, "no share"), ({"secret-share": "AAAA"}, "a share of 3 bytes"),
                          ({"secret-share": account}, "the account server's share")):
        exchange = t.request("POST", path, token=user.token, headers=headers,
                             json_body={"scenario": SHARES})
        expect_share_refused(t, exchange, what=f"create a shares keystore with {what}")
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
    32-byte public key, aes256gcm and hmac-sha256 keys with none; every description names
    version 1, and export repeats it."""
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
             (spec.KEY_AES256GCM, "unwrap", {"enc": b64url_encode(bytes(32)),
                                             "wrapped_key": b64url_encode(bytes(48))}),
             (spec.KEY_ED25519, "decrypt", {"nonce": b64url_encode(bytes(12)),
                                            "ciphertext": b64url_encode(bytes(16))}),
             (spec.KEY_AES256GCM, "computemac", {"message": ""}),
             (spec.KEY_HMAC_SHA256, "sign", {"message": ""})]
    for kind, operation, body in cases:
        t.expect_rejected(key_op(t, ks, keys[kind], operation, body, share=None), 400,
                          what=f"{operation} with an {kind} key, no share",
                          failure_class="params")


@check("lock-layering/keys/unknown-key-type", requirements=("LOCK-14", "API-6"), needs=NEEDS)
def unknown_key_type(t: Probe) -> None:
    """A key type outside ed25519, x25519, aes256gcm and hmac-sha256 is a 400 (class
    decode)."""
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
        if answer != {"valid": expected, "version": 1}:
            t.fail(f"verify answered {answer!r}",
                   expected=f'{{"valid": {str(expected).lower()}, "version": 1}}',
                   actual=describe(exchange), exchange=exchange)
    exchange = key_op(t, ks, key, "verify", {"message": b64url_encode(b"message"),
                                             "signature": b64url_encode(signature[:63])})
    t.expect_rejected(exchange, 400, what="verify a 63-byte signature", failure_class="length")


def encrypt(t: Probe, ks: Keystore, key: dict[str, Any], plaintext: bytes,
            aad: bytes, *, version: int = 1) -> tuple[bytes, bytes]:
    exchange = key_op(t, ks, key, "encrypt", {"plaintext": b64url_encode(plaintext),
                                              "aad": b64url_encode(aad)})
    answer = expect_answer(t, exchange, {"nonce", "ciphertext", "version"}, version=version,
                           what="encrypt with an aes256gcm key")
    nonce = decoded(t, exchange, answer, "nonce", 12)
    ciphertext = decoded(t, exchange, answer, "ciphertext", len(plaintext) + 16)
    return nonce, ciphertext


def decrypt_body(nonce: bytes, ciphertext: bytes, aad: bytes, version: int | None = None
                 ) -> dict[str, Any]:
    body: dict[str, Any] = {"nonce": b64url_encode(nonce),
                            "ciphertext": b64url_encode(ciphertext), "aad": b64url_encode(aad)}
    if version is not None:
        body["version"] = version
    return body


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
            answer = expect_answer(t, exchange, {"plaintext", "version"}, version=1,
                                   what="decrypt a fresh ciphertext")
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
    answer = expect_answer(t, exchange, {"enc", "wrapped_key"},
                           what="wrap a key to an X25519 recipient")
    return spec.Wrapped(decoded(t, exchange, answer, "enc", 32),
                        decoded(t, exchange, answer, "wrapped_key", len(cek) + 16))


def unwrap_via_server(t: Probe, ks: Keystore, key: dict[str, Any],
                      wrapped: spec.Wrapped, version: int | None = None) -> Exchange:
    body: dict[str, Any] = {"enc": b64url_encode(wrapped.enc),
                            "wrapped_key": b64url_encode(wrapped.wrapped_key)}
    if version is not None:
        body["version"] = version
    return key_op(t, ks, key, "unwrap", body)


def expect_unwrapped(t: Probe, ks: Keystore, key: dict[str, Any], wrapped: spec.Wrapped,
                     cek: bytes, *, what: str, version: int | None = None) -> None:
    """The server's unwrap of `wrapped` gives back exactly `cek` (LOCK-17)."""
    exchange = unwrap_via_server(t, ks, key, wrapped, version)
    answer = expect_answer(t, exchange, {"cek", "version"}, version=version or 1,
                           what=f"unwrap {what}")
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
    """The server's wrap opens with HPKE (the spec's unwrap) under the runner's own X25519
    key, and the spec's wrap to the keystore's key opens with the server's unwrap."""
    ks = create_keystore(t, HELD, "wrap-spec")
    key = create_key(t, ks, spec.KEY_X25519)
    runner_private = os.urandom(32)
    cek = os.urandom(24)
    wrapped = wrap(t, ks, cek, primitives.x25519_public_key(runner_private))
    try:
        if spec.unwrap(wrapped, runner_private) != cek:
            raise ValueError
    except (SpecError, ValueError):
        t.fail("the server's wrap does not open with HPKE as LOCK-17 defines it",
               expected="HPKE base mode, DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, "
                        "AES-256-GCM, info ctx('lock-wrap'), empty aad",
               actual=describe(ks.exchanges[-1]), exchange=ks.exchanges[-1])
    ours = spec.wrap(cek, b64url_decode(key["public_key"]), os.urandom(32))
    expect_unwrapped(t, ks, key, ours, cek, what="a key the runner wrapped")


@check("lock-layering/wrap/low-order-refused", requirements=("LOCK-17",), needs=NEEDS)
def wrap_low_order(t: Probe) -> None:
    """Wrapping to a low-order X25519 point, or unwrapping with a low-order ephemeral key
    (HPKE enc), is a 422 (class point)."""
    ks = create_keystore(t, HELD, "lowpoint")
    key = create_key(t, ks, spec.KEY_X25519)
    for name in ("zero", "order-8-a"):
        point = LOW_ORDER_X25519[name]
        exchange = call(t, ks, "POST", "/wrap", body={
            "cek": b64url_encode(bytes(32)), "recipient_public_key": b64url_encode(point)})
        t.expect_rejected(exchange, 422, what=f"wrap to the low-order point {name}",
                          failure_class="point")
        exchange = unwrap_via_server(t, ks, key, spec.Wrapped(point, bytes(48)))
        t.expect_rejected(exchange, 422, what=f"unwrap with the low-order enc {name}",
                          failure_class="point")


@check("lock-layering/wrap/non-canonical-refused", requirements=("LOCK-17", "KP-5"),
       needs=NEEDS)
def wrap_non_canonical(t: Probe) -> None:
    """Wrapping to, or unwrapping with an enc that is, a second encoding of an X25519 point
    (top bit set, u >= p) is a 422 (class point): v1 keys have one byte form (KP-5), where
    RFC 7748 alone would mask the bit and reduce u."""
    ks = create_keystore(t, HELD, "noncanonical")
    key = create_key(t, ks, spec.KEY_X25519)
    valid = primitives.x25519_public_key(os.urandom(32))
    for name, point in non_canonical_x25519(valid).items():
        exchange = call(t, ks, "POST", "/wrap", body={
            "cek": b64url_encode(bytes(32)), "recipient_public_key": b64url_encode(point)})
        t.expect_rejected(exchange, 422, what=f"wrap to a non-canonical key ({name})",
                          failure_class="point")
        exchange = unwrap_via_server(t, ks, key, spec.Wrapped(point, bytes(48)))
        t.expect_rejected(exchange, 422, what=f"unwrap with a non-canonical enc ({name})",
                          failure_class="point")


@check("lock-layering/wrap/lengths", requirements=("LOCK-17",), needs=NEEDS)
def wrap_lengths(t: Probe) -> None:
    """A cek is 16..64 bytes: wrapping 16 or 64 works, 15 or 65 is a 400 (class length);
    a wrapped_key is 32..80 bytes (the cek and the AES-GCM tag): 31 or 81 is a 400
    (class length), 32 or 80 reaches HPKE and fails to open (422, class aead)."""
    ks = create_keystore(t, HELD, "wrap-lengths")
    key = create_key(t, ks, spec.KEY_X25519)
    recipient = b64url_encode(primitives.x25519_public_key(os.urandom(32)))
    for length in (spec.CEK_MIN_LEN - 1, spec.CEK_MIN_LEN, spec.CEK_MAX_LEN,
                   spec.CEK_MAX_LEN + 1):
        exchange = call(t, ks, "POST", "/wrap", body={
            "cek": b64url_encode(os.urandom(length)), "recipient_public_key": recipient})
        if spec.CEK_MIN_LEN <= length <= spec.CEK_MAX_LEN:
            t.expect_ok_json(exchange, 200, what=f"wrap a cek of {length} bytes")
        else:
            t.expect_rejected(exchange, 400, what=f"wrap a cek of {length} bytes",
                              failure_class="length")
    enc = primitives.x25519_public_key(os.urandom(32))
    for length in (spec.CEK_MIN_LEN + spec.TAG_LEN - 1, spec.CEK_MIN_LEN + spec.TAG_LEN,
                   spec.CEK_MAX_LEN + spec.TAG_LEN, spec.CEK_MAX_LEN + spec.TAG_LEN + 1):
        exchange = unwrap_via_server(t, ks, key, spec.Wrapped(enc, os.urandom(length)))
        inside = spec.CEK_MIN_LEN + spec.TAG_LEN <= length <= spec.CEK_MAX_LEN + spec.TAG_LEN
        t.expect_rejected(exchange, 422 if inside else 400,
                          what=f"unwrap a wrapped_key of {length} bytes",
                          failure_class="aead" if inside else "length")


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


# --- computemac / verifymac ------------------------------------------------------------------

def computemac(t: Probe, ks: Keystore, key: dict[str, Any], message: bytes, *,
               version: int = 1) -> bytes:
    exchange = key_op(t, ks, key, "computemac", {"message": b64url_encode(message)})
    answer = expect_answer(t, exchange, {"mac", "version"}, version=version,
                           what="computemac with an hmac-sha256 key")
    return decoded(t, exchange, answer, "mac", 32)


def verifymac(t: Probe, ks: Keystore, key: dict[str, Any], message: bytes, mac: bytes, *,
              version: int | None = None) -> Exchange:
    body: dict[str, Any] = {"message": b64url_encode(message), "mac": b64url_encode(mac)}
    if version is not None:
        body["version"] = version
    return key_op(t, ks, key, "verifymac", body)


def expect_valid(t: Probe, exchange: Exchange, valid: bool, version: int, *, what: str) -> None:
    answer = t.expect_ok_json(exchange, 200, what=what)
    if answer != {"valid": valid, "version": version}:
        t.fail(f"{what}: answered {answer!r}",
               expected=f'{{"valid": {str(valid).lower()}, "version": {version}}}',
               actual=describe(exchange), exchange=exchange)


@check("lock-layering/mac/compute-and-verify", requirements=("LOCK-21",), needs=NEEDS)
def mac_compute_and_verify(t: Probe) -> None:
    """computemac is HMAC-SHA256 under the key: the same message gives the same MAC, two
    keys give two MACs, neither is a bare hash; verifymac answers valid true for it, false
    for another message or a flipped MAC, and 400 (class length) for a 31-byte MAC."""
    for scenario in (HELD, SHARES):
        ks = create_keystore(t, scenario, f"mac-{scenario}")
        first, second = (create_key(t, ks, spec.KEY_HMAC_SHA256) for _ in range(2))
        message = b"keyflows computemac " + os.urandom(8)
        mac = computemac(t, ks, first, message)
        problems = []
        if computemac(t, ks, first, message) != mac:
            problems.append("the same message gave two MACs")
        if computemac(t, ks, second, message) == mac:
            problems.append("two keys gave the same MAC")
        if mac in (hashlib.sha256(message).digest(), primitives.hmac_sha256(b"", message)):
            problems.append("the MAC is a hash of the message alone")
        if problems:
            t.fail("; ".join(problems), expected="HMAC-SHA256 under each key (LOCK-21)",
                   actual=describe(ks.exchanges[-1]), exchange=ks.exchanges[-1])
        expect_valid(t, verifymac(t, ks, first, message, mac), True, 1,
                     what="verifymac of the key's own MAC")
        flipped = bytes([mac[0] ^ 1]) + mac[1:]
        for other_message, other_mac, what in ((message + b"!", mac, "another message"),
                                               (message, flipped, "a flipped MAC")):
            expect_valid(t, verifymac(t, ks, first, other_message, other_mac), False, 1,
                         what=f"verifymac with {what}")
    t.expect_rejected(verifymac(t, ks, first, message, mac[:31]), 400,
                      what="verifymac with a 31-byte MAC", failure_class="length")


# --- rotate -----------------------------------------------------------------------------------

def rotate(t: Probe, ks: Keystore, key: dict[str, Any], version: int) -> dict[str, Any]:
    exchange = key_op(t, ks, key, "rotate")
    answer = t.expect_ok_json(exchange, 200, what=f"rotate an {key['key_type']} key")
    expect_description(t, exchange, ks, answer, key["key_type"], version=version)
    return dict(answer)


@check("lock-layering/rotate/keeps-old-versions", requirements=("LOCK-22", "LOCK-15",
                                                                "LOCK-16"), needs=NEEDS)
def rotate_keeps_old_versions(t: Probe) -> None:
    """Rotating adds version 2 with a new public key and keeps version 1: a signature of
    version 1 still verifies when version 1 is named and not under version 2; signing uses
    version 2; a ciphertext of version 1 decrypts only when version 1 is named; export
    lists both versions."""
    ks = create_keystore(t, SHARES, "rotate")
    ed = create_key(t, ks, spec.KEY_ED25519)
    old_signature = sign(t, ks, ed, b"before rotation")
    rotated = rotate(t, ks, ed, 2)
    if rotated["versions"][0] != ed["versions"][0] or rotated["public_key"] == ed["public_key"]:
        t.fail("rotation did not keep version 1 and add a new key", expected="version 1 "
               "unchanged, a new public key for version 2 (LOCK-22)",
               actual=describe(ks.exchanges[-1]), exchange=ks.exchanges[-1])
    new_signature = sign(t, ks, ed, b"after rotation", version=2)
    try:
        primitives.ed25519_verify(b64url_decode(rotated["public_key"]), b"after rotation",
                                  new_signature)
    except SpecError:
        t.fail("a signature after rotation does not verify under version 2's public key",
               expected="signing uses the current version (LOCK-22)",
               actual=describe(ks.exchanges[-1]), exchange=ks.exchanges[-1])
    body = {"message": b64url_encode(b"before rotation"),
            "signature": b64url_encode(old_signature)}
    expect_valid(t, key_op(t, ks, ed, "verify", dict(body, version=1)), True, 1,
                 what="verify version 1's signature naming version 1")
    expect_valid(t, key_op(t, ks, ed, "verify", body), False, 2,
                 what="verify version 1's signature under the current version")
    aes = create_key(t, ks, spec.KEY_AES256GCM)
    nonce, ciphertext = encrypt(t, ks, aes, b"old data", b"")
    rotate(t, ks, aes, 2)
    exchange = key_op(t, ks, aes, "decrypt", decrypt_body(nonce, ciphertext, b"", version=1))
    answer = expect_answer(t, exchange, {"plaintext", "version"}, version=1,
                           what="decrypt version 1's ciphertext naming version 1")
    if decoded(t, exchange, answer, "plaintext") != b"old data":
        t.fail("decrypt with version 1 does not give back the plaintext",
               expected=b"old data".hex(), actual=describe(exchange), exchange=exchange)
    t.expect_rejected(key_op(t, ks, aes, "decrypt", decrypt_body(nonce, ciphertext, b"")), 422,
                      what="decrypt version 1's ciphertext with version 2",
                      failure_class="aead")
    encrypt(t, ks, aes, b"new data", b"", version=2)
    t.expect_rejected(key_op(t, ks, aes, "decrypt", decrypt_body(nonce, ciphertext, b"",
                                                                 version=3)), 400,
                      what="decrypt naming a version the key does not have",
                      failure_class="params")
    exported = t.expect_ok_json(key_op(t, ks, ed, "export", share=None), 200,
                                what="export a rotated key")
    if exported != rotated:
        t.fail("export differs from the rotation answer", expected=str(rotated),
               actual=describe(ks.exchanges[-1]), exchange=ks.exchanges[-1])


@check("lock-layering/rotate/other-key-types", requirements=("LOCK-22", "LOCK-17",
                                                             "LOCK-21"), needs=NEEDS)
def rotate_other_key_types(t: Probe) -> None:
    """After rotation an X25519 key still unwraps what was wrapped to version 1 when
    version 1 is named, and an HMAC key still verifies version 1's MAC when named, while
    its current version computes another MAC."""
    ks = create_keystore(t, HELD, "rotate-types")
    x = create_key(t, ks, spec.KEY_X25519)
    cek = os.urandom(32)
    wrapped = wrap(t, ks, cek, b64url_decode(x["public_key"]))
    rotate(t, ks, x, 2)
    expect_unwrapped(t, ks, x, wrapped, cek, what="a key wrapped to version 1", version=1)
    mac_key = create_key(t, ks, spec.KEY_HMAC_SHA256)
    mac = computemac(t, ks, mac_key, b"m")
    rotate(t, ks, mac_key, 2)
    if computemac(t, ks, mac_key, b"m", version=2) == mac:
        t.fail("the rotated HMAC key computes the old MAC", expected="a new key (LOCK-22)",
               actual=describe(ks.exchanges[-1]), exchange=ks.exchanges[-1])
    expect_valid(t, verifymac(t, ks, mac_key, b"m", mac, version=1), True, 1,
                 what="verifymac of version 1's MAC naming version 1")


# --- sign: domain separation ----------------------------------------------------------------

@check("lock-layering/sign/refuses-keyflows-contexts", requirements=("LOCK-20",), needs=NEEDS)
def sign_refuses_keyflows_contexts(t: Probe) -> None:
    """sign refuses a message that begins like a statement keyflows itself signs
    ("keyflows-v1" 0x00 ...) with 400 (class params), before any share is asked for, and
    signs the same bytes without that prefix."""
    ks = create_keystore(t, SHARES, "sign-contexts")
    key = create_key(t, ks, spec.KEY_ED25519)
    for what, message in (("a key-binding statement", spec.SIGNED_CONTEXT_PREFIX
                           + b"public-keys\x00\x00\x05alice"),
                          ("the bare prefix", spec.SIGNED_CONTEXT_PREFIX)):
        for share in ("", None):
            exchange = key_op(t, ks, key, "sign", {"message": b64url_encode(message)},
                              share=share)
            t.expect_rejected(exchange, 400, what=f"sign {what}"
                              + (" without a share" if share is None else ""),
                              failure_class="params")
    sign(t, ks, key, PROTOCOL_ID + b" is a name, not a context")


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
           sealed: list[tuple[bytes, bytes, bytes]],
           macs: list[tuple[bytes, bytes]] | None = None) -> str | None:
    """What secret `value` is, or None: a private key of a returned public key, an AES key
    that opens a ciphertext the server made, an HMAC key that computes a MAC it made, a
    share, the secret or the lock key."""
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
    if any(primitives.hmac_sha256(value, message) == mac for message, mac in macs or ()):
        return "an HMAC-SHA256 working key"
    return None


@check("lock-layering/privacy/no-secret-material", requirements=("LOCK-18", "LOCK-9"),
       needs=NEEDS)
def no_secret_material(t: Probe) -> None:
    """No answer of a full session (create, every key type, every operation, a rotation)
    carries a private key, a working AES or HMAC key, a share, the user secret or the user
    lock key."""
    for scenario in (HELD, SHARES):
        ks = create_keystore(t, scenario, f"privacy-{scenario}")
        keys = {kind: create_key(t, ks, kind) for kind in spec.KEY_TYPES}
        sign(t, ks, keys[spec.KEY_ED25519], b"m")
        nonce, ciphertext = encrypt(t, ks, keys[spec.KEY_AES256GCM], b"p", b"a")
        key_op(t, ks, keys[spec.KEY_AES256GCM], "decrypt", decrypt_body(nonce, ciphertext, b"a"))
        wrapped = wrap(t, ks, os.urandom(32), b64url_decode(keys[spec.KEY_X25519]["public_key"]))
        unwrap_via_server(t, ks, keys[spec.KEY_X25519], wrapped)
        mac = computemac(t, ks, keys[spec.KEY_HMAC_SHA256], b"m")
        verifymac(t, ks, keys[spec.KEY_HMAC_SHA256], b"m", mac)
        rotated = rotate(t, ks, keys[spec.KEY_ED25519], 2)
        call(t, ks, "GET")
        publics = {b64url_decode(k["public_key"]) for k in (*keys.values(), rotated)
                   if "public_key" in k}
        sealed = [(nonce, ciphertext, b"a")]
        for exchange in ks.exchanges:
            text = exchange.response_body.decode("utf-8", errors="replace")
            for candidate in B64URL_VALUE.findall(text):
                try:
                    value = b64url_decode(candidate)
                except SpecError:
                    continue
                what = leaked(value, ks, publics, sealed, [(b"m", mac)])
                if what:
                    t.fail(f"a response carries {what}", expected="no secret material in "
                           "any response (LOCK-18)", actual=exchange.line, exchange=exchange)


@check("lock-layering/privacy/capabilities-member", requirements=("LOCK-1", "LOCK-14"),
       needs=NEEDS)
def capabilities_member(t: Probe) -> None:
    """GET /v1/capabilities describes the flow: both scenarios, the four key types, the
    operations, the kfc1 capability format, the share and grant headers."""
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
            problems.append("key_types is not the four key types")
        if set(member.get("operations") or ()) != set(spec.OPERATIONS):
            problems.append(f"operations is not the {len(spec.OPERATIONS)} operations")
        capability = member.get("capability")
        if not (isinstance(capability, dict) and capability.get("format") == "kfc1"):
            problems.append("capability.format is not kfc1")
        if member.get("share_header") != "Secret-Share":
            problems.append("share_header is not Secret-Share")
        if member.get("grant_header") != cap.GRANT_HEADER:
            problems.append(f"grant_header is not {cap.GRANT_HEADER}")
    if problems:
        t.fail("; ".join(problems), expected=f"a {CAPABILITIES_MEMBER} member (LOCK-1)",
               actual=describe(exchange), exchange=exchange)


# The capability and vault checks register themselves on import, after these (run order is
# definition order).
from keyflows.conformance.checks import (  # noqa: E402, F401
    lock_layering_attacks,
    lock_layering_capability,
    lock_layering_edv,
    lock_layering_strict,
)
