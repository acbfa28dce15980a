"""lock-layering capability checks: the HMAC chain (attenuation cannot widen a grant or
outlive its expiry), every capability expiring, revocation of a capability and everything
attenuated from it, holder binding by RFC 9421 signatures (a stolen capability, a
replayed signed request), delegation with unlock grants (a delegate cannot go beyond its
caveats, and never sees the user's share), and one uniform 401 for every refusal.
"""

from __future__ import annotations

import os
import time
from typing import Any

from keyflows.conformance.checks.lock_layering_support import (
    B64URL_VALUE,
    HELD,
    NEEDS,
    SHARES,
    Keystore,
    Signer,
    call,
    create_key,
    create_keystore,
    expect_no_store,
    expect_root_capability,
    forged_capability,
    fresh_capability,
    key_op,
    new_nonce,
    root_expiry,
    sign,
    signature_headers,
    with_unchecked_caveat,
)
from keyflows.conformance.checks.support import expect_unauthorized
from keyflows.conformance.clients import to_json
from keyflows.conformance.http import Exchange
from keyflows.conformance.probe import Probe, describe
from keyflows.conformance.registry import check
from keyflows.spec import lock_layering as spec
from keyflows.spec import lock_layering_capability as cap
from keyflows.spec.encoding import b64url_decode, b64url_encode
from keyflows.spec.errors import SpecError


def reference_401(t: Probe, ks: Keystore) -> Exchange:
    """The 401 for a request without credentials: every refusal must equal it."""
    exchange = t.request("GET", ks.path)
    expect_unauthorized(t, exchange, what="read a keystore without credentials")
    return exchange


def expect_uniform_401(t: Probe, exchange: Exchange, reference: Exchange, *, what: str) -> None:
    """401, WWW-Authenticate: Bearer, and the very body of the reference 401 (LOCK-29)."""
    expect_unauthorized(t, exchange, what=what)
    if exchange.response_body != reference.response_body:
        t.fail(f"the 401 for {what} differs from the one for no credentials (LOCK-29)",
               expected=reference.response_body.decode(errors="replace"),
               actual=describe(exchange), exchange=exchange)


# --- the chain and its caveats ----------------------------------------------------------------

@check("lock-layering/capability/refusals-are-uniform", requirements=("LOCK-11", "LOCK-29",
                                                                      "API-4"), needs=NEEDS)
def capability_uniform(t: Probe) -> None:
    """No capability, a malformed one, the controller's account token, another keystore's
    capability, a capability with a flipped MAC and one for a keystore that does not exist
    all get the same 401, byte for byte."""
    ks = create_keystore(t, HELD, "cap-uniform")
    other = create_keystore(t, HELD, "cap-other")
    root = cap.decode_capability(ks.capability)
    flipped = cap.encode_capability(cap.Capability(
        ks.keystore_id, root.caveats, bytes([root.mac[0] ^ 1]) + root.mac[1:]))
    reference = reference_401(t, ks)
    variants = [("Bearer kfc1.bm90LWpzb24", "a malformed capability"),
                (f"Bearer {ks.owner.token}", "the controller's account token"),
                (f"Bearer {other.capability}", "another keystore's capability"),
                (f"Bearer {flipped}", "a capability with a flipped MAC")]
    for authorization, what in variants:
        exchange = call(t, ks, "GET", raw_authorization=authorization)
        expect_uniform_401(t, exchange, reference, what=f"read a keystore with {what}")
    ghost_id = b64url_encode(os.urandom(16))
    ghost = cap.encode_capability(cap.Capability(ghost_id, root.caveats, os.urandom(32)))
    for method, suffix, body in (("GET", "", None), ("POST", "/keys", {"key_type": "ed25519"})):
        exchange = t.request(method, f"/v1/keystores/{ghost_id}{suffix}",
                             headers={"authorization": f"Bearer {ghost}"}, json_body=body)
        expect_uniform_401(t, exchange, reference,
                           what=f"{method} {suffix or 'the keystore'} of a keystore that does "
                                "not exist")


@check("lock-layering/capability/tampered-caveats-refused", requirements=("LOCK-11",),
       needs=NEEDS)
def tampered_caveats(t: Probe) -> None:
    """Dropping, changing, reordering or widening a caveat of an attenuated capability
    breaks its MAC chain: 401."""
    ks = create_keystore(t, HELD, "tampered")
    exp = f"exp={int(time.time()) + 3600}"
    attenuated = fresh_capability(ks, "ops=read", exp)
    root = cap.decode_capability(ks.capability).caveats
    for caveats, what in (((*root, exp), "the ops caveat dropped"),
                          ((*root, "ops=read"), "the second expiry dropped"),
                          ((*root, exp, "ops=read"), "the caveats reordered"),
                          ((*root, "ops=read,create-key", exp), "the ops widened"),
                          (("ops=read", exp), "the root's expiry dropped"),
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
    attenuated = fresh_capability(ks, "ops=sign,verify")
    t.expect_status(key_op(t, ks, ed, "sign", {"message": ""}, capability=attenuated), 200,
                    what="sign under ops=sign,verify")
    for exchange, what in (
            (key_op(t, ks, aes, "encrypt", {"plaintext": ""}, capability=attenuated),
             "encrypt"),
            (call(t, ks, "POST", "/keys", body={"key_type": "ed25519"},
                  capability=attenuated), "create a key"),
            (key_op(t, ks, ed, "delete", capability=attenuated), "delete a key"),
            (key_op(t, ks, ed, "rotate", capability=attenuated), "rotate a key"),
            (call(t, ks, "GET", capability=attenuated), "read the keystore")):
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
    attenuated = fresh_capability(ks, cap.key_caveat(first["key_id"]))
    t.expect_status(key_op(t, ks, first, "sign", {"message": ""}, capability=attenuated), 200,
                    what="sign with the key the capability names")
    for exchange, what in (
            (key_op(t, ks, second, "sign", {"message": ""}, capability=attenuated),
             "sign with another key"),
            (call(t, ks, "GET", capability=attenuated), "read the keystore"),
            (call(t, ks, "POST", "/keys", body={"key_type": "ed25519"},
                  capability=attenuated), "create a key"),
            (call(t, ks, "POST", "/wrap", body={"cek": b64url_encode(bytes(32)),
                                               "recipient_public_key": first["public_key"]},
                  capability=attenuated), "wrap")):
        expect_unauthorized(t, exchange, what=f"{what} under key={first['key_id']}")


@check("lock-layering/capability/expiry", requirements=("LOCK-12",), needs=NEEDS)
def expiry(t: Probe) -> None:
    """A capability whose exp caveat lies an hour ahead works; one whose exp passed a
    minute ago, or is this very second (valid while now < exp), gets the uniform 401."""
    ks = create_keystore(t, HELD, "expiry")
    now = int(time.time())
    t.expect_status(call(t, ks, "GET", capability=fresh_capability(ks, f"exp={now + 3600}")),
                    200, what="read with a capability valid for another hour")
    reference = reference_401(t, ks)
    expect_uniform_401(t, call(t, ks, "GET", capability=fresh_capability(ks, f"exp={now - 60}")),
                       reference, what="read with a capability that expired a minute ago")
    # The server's clock is not behind the runner's: at the server, now >= exp.
    ending = fresh_capability(ks, f"exp={int(time.time())}")
    expect_uniform_401(t, call(t, ks, "GET", capability=ending), reference,
                       what="read with a capability whose exp is now")


@check("lock-layering/capability/cannot-widen", requirements=("LOCK-12", "LOCK-23"),
       needs=NEEDS)
def cannot_widen(t: Probe) -> None:
    """Appending a wider caveat does not widen the grant: after ops=read, a further
    ops=read,create-key still refuses create-key; after a passed exp, a later exp does not
    revive the capability, nor does one beyond the root's expiry outlive the root."""
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
    beyond = fresh_capability(ks, f"exp={root_expiry(ks) + 86400}")
    t.expect_status(call(t, ks, "GET", capability=beyond), 200,
                    what="read with an exp beyond the root's (the root's still holds)")


@check("lock-layering/capability/unknown-caveat-denies", requirements=("LOCK-12",),
       needs=NEEDS)
def unknown_caveat(t: Probe) -> None:
    """A caveat the server does not understand denies, even with a valid MAC chain."""
    ks = create_keystore(t, HELD, "unknown-caveat")
    for caveat in ("aud=someone-else", "ops=read,fly", "exp=soon", "holder=short"):
        expect_unauthorized(t, call(t, ks, "GET", capability=with_unchecked_caveat(ks, caveat)),
                            what=f"read with the caveat {caveat!r}")


# --- every capability expires ------------------------------------------------------------------

@check("lock-layering/capability/root-expires-and-is-renewed",
       requirements=("LOCK-13", "LOCK-23", "API-4", "API-16"), needs=NEEDS)
def root_renewed(t: Probe) -> None:
    """The root capability carries an exp caveat within the server's root lifetime; the
    controller (its account token) gets a fresh root for its keystore, which works, while
    another user's token gets the uniform 401 and no capability."""
    ks = create_keystore(t, HELD, "root-renew")
    path = f"/v1/users/{ks.owner.user_id}/keystores/{ks.keystore_id}/capability"
    exchange = t.request("POST", path, token=ks.owner.token, json_body={})
    answer = t.expect_ok_json(exchange, 201, what="ask for a fresh root capability")
    if not isinstance(answer, dict) or set(answer) != {"capability"}:
        t.fail("the fresh root answer has the wrong members", expected='{"capability"}',
               actual=describe(exchange), exchange=exchange)
    fresh = expect_root_capability(t, exchange, answer["capability"], ks.keystore_id, None)
    if not expect_no_store(exchange):
        t.fail("the fresh root capability is answered without Cache-Control: no-store",
               expected="Cache-Control: no-store (API-16)", actual=describe(exchange),
               exchange=exchange)
    t.expect_status(call(t, ks, "GET", capability=fresh), 200,
                    what="read with the fresh root capability")
    intruder = t.user("root-intruder")
    exchange = t.request("POST", path, token=intruder.token, json_body={})
    expect_unauthorized(t, exchange, what="ask for a root capability of another user's "
                                          "keystore")
    own_path = f"/v1/users/{intruder.user_id}/keystores/{ks.keystore_id}/capability"
    exchange = t.request("POST", own_path, token=intruder.token, json_body={})
    t.expect_problem(exchange, 404, what="ask, under one's own user id, for a root "
                     "capability of another user's keystore", slug="not-found")
    missing = f"/v1/users/{ks.owner.user_id}/keystores/{'A' * 22}/capability"
    exchange = t.request("POST", missing, token=ks.owner.token, json_body={})
    t.expect_problem(exchange, 404, what="ask for a root capability of a keystore that "
                     "does not exist", slug="not-found")


# --- revocation ---------------------------------------------------------------------------------

def revoke(t: Probe, ks: Keystore, target: str, *, capability: str | None = None) -> Exchange:
    return call(t, ks, "POST", "/revocations", body={"capability": target},
                capability=capability)


@check("lock-layering/capability/revoked-refused", requirements=("LOCK-24", "LOCK-29"),
       needs=NEEDS)
def revoked_refused(t: Probe) -> None:
    """Revoking a capability (204) refuses it and everything attenuated from it with the
    uniform 401, while the root and a sibling keep working; a capability cannot revoke one
    it was not attenuated from (422, class authz)."""
    ks = create_keystore(t, HELD, "revoke")
    now = int(time.time())
    parent = fresh_capability(ks, "ops=read,revoke")
    child = fresh_capability(ks, f"exp={now + 600}", base=parent)
    sibling = fresh_capability(ks, "ops=read")
    for text in (parent, child, sibling):
        t.expect_status(call(t, ks, "GET", capability=text), 200,
                        what="read before the revocation")
    t.expect_rejected(revoke(t, ks, sibling, capability=parent), 422,
                      what="revoke a sibling capability", failure_class="authz")
    exchange = revoke(t, ks, parent)
    t.expect_status(exchange, 204, what="revoke an attenuated capability with the root")
    reference = reference_401(t, ks)
    for text, what in ((parent, "the revoked capability"),
                       (child, "a capability attenuated from the revoked one")):
        expect_uniform_401(t, call(t, ks, "GET", capability=text), reference,
                           what=f"read with {what}")
    for text, what in ((sibling, "a sibling"), (ks.capability, "the root")):
        t.expect_status(call(t, ks, "GET", capability=text), 200,
                        what=f"read with {what} of the revoked capability")


# --- holder binding (RFC 9421) -----------------------------------------------------------------

@check("lock-layering/holder/stolen-capability-refused", requirements=("LOCK-25", "LOCK-29"),
       needs=NEEDS)
def stolen_capability(t: Probe) -> None:
    """A capability bound to a holder key works only on requests that key signs (RFC 9421,
    label kfc): without a signature, signed by another key, with the signature of another
    request, or with a body changed after signing, it gets the uniform 401."""
    holder = Signer.fresh()
    ks = create_keystore(t, SHARES, "holder", holder=holder.public)
    t.expect_status(call(t, ks, "GET", signer=holder), 200, what="read, signed by the holder")
    key = create_key(t, ks, spec.KEY_ED25519, signer=holder)
    reference = reference_401(t, ks)
    thief = Signer.fresh()
    expect_uniform_401(t, call(t, ks, "GET"), reference,
                       what="read with the bound capability, unsigned")
    expect_uniform_401(t, call(t, ks, "GET", signer=thief), reference,
                       what="read with the bound capability, signed by another key")
    other_request = call_headers_for(t, ks, holder, "GET", f"/keys/{key['key_id']}")
    expect_uniform_401(t, call(t, ks, "GET", headers=other_request), reference,
                       what="read with the holder's signature of another request")
    signed_for = {"message": b64url_encode(b"signed for this")}
    headers = call_headers_for(t, ks, holder, "POST", f"/keys/{key['key_id']}/sign",
                               body=signed_for)
    exchange = key_op(t, ks, key, "sign", {"message": b64url_encode(b"but sent this")},
                      headers=headers)
    expect_uniform_401(t, exchange, reference, what="sign a body changed after signing")
    sign(t, ks, key, b"the holder signs", signer=holder)


def call_headers_for(t: Probe, ks: Keystore, signer: Signer, method: str, suffix: str,
                     body: Any = None) -> dict[str, str]:
    """The signature fields of another request (to send with this one)."""
    sent = {"authorization": f"Bearer {ks.capability}"}
    if ks.scenario == SHARES:
        sent["secret-share"] = ks.user_share
    raw = b""
    if body is not None:
        raw = to_json(body)
        sent["content-type"] = "application/json"
    return signature_headers(t, signer, method, ks.path + suffix, sent, raw)


@check("lock-layering/holder/replay-refused", requirements=("LOCK-26", "LOCK-29"),
       needs=NEEDS)
def replay_refused(t: Probe) -> None:
    """A signed request is accepted once: the same nonce again, or a signature created
    more than the signature window ago, gets the uniform 401; a fresh nonce works."""
    holder = Signer.fresh()
    ks = create_keystore(t, HELD, "replay", holder=holder.public)
    reference = reference_401(t, ks)
    nonce = new_nonce()
    created = int(time.time())
    t.expect_status(call(t, ks, "GET", signer=holder, nonce=nonce, created=created), 200,
                    what="read, signed, first time")
    expect_uniform_401(t, call(t, ks, "GET", signer=holder, nonce=nonce, created=created),
                       reference, what="the same signed request again")
    stale = int(time.time()) - cap.SIGNATURE_MAX_AGE - 60
    expect_uniform_401(t, call(t, ks, "GET", signer=holder, created=stale), reference,
                       what="a signature created before the window")
    t.expect_status(call(t, ks, "GET", signer=holder), 200, what="read with a fresh nonce")


# --- delegation and unlock grants ----------------------------------------------------------

def ask_grant(t: Probe, ks: Keystore, target: str, **kwargs: Any) -> Exchange:
    return call(t, ks, "POST", "/grants", body={"capability": target}, **kwargs)


def granted(t: Probe, ks: Keystore, target: str, **kwargs: Any) -> str:
    exchange = ask_grant(t, ks, target, **kwargs)
    answer = t.expect_ok_json(exchange, 201, what="ask for an unlock grant")
    if not isinstance(answer, dict) or set(answer) != {"grant", "not_after"} \
            or not str(answer.get("grant", "")).startswith(cap.GRANT_PREFIX):
        t.fail("the grant answer is wrong", expected='{"grant": "kfg1...", "not_after"} '
               "(LOCK-28)", actual=describe(exchange), exchange=exchange)
    expected = cap.not_after(cap.decode_capability(target))
    if answer["not_after"] != expected:
        t.fail("the grant does not last exactly as long as its capability",
               expected=f"not_after {expected} (LOCK-28)", actual=describe(exchange),
               exchange=exchange)
    expect_no_user_secret(t, ks, exchange)
    if not expect_no_store(exchange):
        t.fail("the grant is answered without Cache-Control: no-store",
               expected="Cache-Control: no-store (API-16)", actual=describe(exchange),
               exchange=exchange)
    return str(answer["grant"])


def expect_no_user_secret(t: Probe, ks: Keystore, exchange: Exchange) -> None:
    """A grant answer carries no share, secret or lock key (the delegate learns none)."""
    lock_key = ks.lock_key()
    secrets_ = {b64url_decode(ks.user_share), b64url_decode(ks.account_share), ks.secret,
                *([lock_key] if lock_key else [])}
    text = exchange.response_body.decode("utf-8", errors="replace")
    for candidate in [*B64URL_VALUE.findall(text), text]:
        try:
            value = b64url_decode(candidate.removeprefix(cap.GRANT_PREFIX))
        except SpecError:
            continue
        if any(s in value for s in secrets_):
            t.fail("the grant answer carries the user's share, secret or lock key",
                   expected="an opaque grant (LOCK-28)", actual=exchange.line,
                   exchange=exchange)


@check("lock-layering/delegation/grant-within-caveats",
       requirements=("LOCK-27", "LOCK-28", "LOCK-29"), needs=NEEDS)
def grant_within_caveats(t: Probe) -> None:
    """The controller delegates ops=sign on one key to a delegate's key and asks an unlock
    grant for it: the delegate signs with that key, its own signature on the request, and
    the grant instead of any share. Beyond its caveats -- another key, another operation,
    the grant with another capability or another keystore, a capability whose delegation
    the holder did not sign -- it is refused (401, or 422 class share for the grant)."""
    controller, delegate_key = Signer.fresh(), Signer.fresh()
    ks = create_keystore(t, SHARES, "delegate", holder=controller.public)
    key = create_key(t, ks, spec.KEY_ED25519, signer=controller)
    other_key = create_key(t, ks, spec.KEY_ED25519, signer=controller)
    narrowed = cap.decode_capability(fresh_capability(
        ks, "ops=sign", cap.key_caveat(key["key_id"]), f"exp={int(time.time()) + 600}"))
    delegated = cap.encode_capability(cap.delegate(narrowed, controller.seed,
                                                   delegate_key.public))
    grant = granted(t, ks, delegated, signer=controller)
    as_delegate: dict[str, Any] = {"capability": delegated, "signer": delegate_key,
                                   "grant": grant}
    sign(t, ks, key, b"signed by the delegate", **as_delegate)
    reference = reference_401(t, ks)
    for exchange, what in (
            (key_op(t, ks, other_key, "sign", {"message": ""}, **as_delegate),
             "sign with another key"),
            (key_op(t, ks, key, "rotate", **as_delegate), "rotate the key"),
            (call(t, ks, "GET", **as_delegate), "read the keystore"),
            (key_op(t, ks, key, "sign", {"message": ""}, capability=delegated,
                    signer=controller, grant=grant), "sign, signed by the controller's key")):
        expect_uniform_401(t, exchange, reference, what=f"delegate: {what}")
    forged = cap.encode_capability(cap.delegate(narrowed, Signer.fresh().seed,
                                                delegate_key.public))
    expect_uniform_401(t, key_op(t, ks, key, "sign", {"message": ""}, capability=forged,
                                 signer=delegate_key, grant=grant), reference,
                       what="a delegation the holder did not sign")
    # As deep as the delegated capability, so only the grant's binding to its capability
    # tells them apart.
    sibling = cap.encode_capability(cap.delegate(cap.decode_capability(fresh_capability(
        ks, "ops=sign,verify", cap.key_caveat(key["key_id"]),
        f"exp={int(time.time()) + 600}")), controller.seed, delegate_key.public))
    t.expect_rejected(key_op(t, ks, key, "sign", {"message": ""}, capability=sibling,
                             signer=delegate_key, grant=grant), 422,
                      what="the grant with a capability it was not made for",
                      failure_class="share")
    elsewhere = create_keystore(t, SHARES, "delegate-other")
    elsewhere_key = create_key(t, elsewhere, spec.KEY_ED25519)
    t.expect_rejected(key_op(t, elsewhere, elsewhere_key, "sign", {"message": ""},
                             grant=grant), 422,
                      what="the grant on another keystore", failure_class="share")


@check("lock-layering/delegation/grant-needs-the-share", requirements=("LOCK-28", "LOCK-24"),
       needs=NEEDS)
def grant_needs_share(t: Probe) -> None:
    """Only whoever opens the lock gets a grant: without the share, 422 (class share); a
    server-held keystore takes no grant (400, class params); a grant dies with its
    capability's revocation (401), and no grant is made for a revoked capability or one
    attenuated from it (422, class authz)."""
    ks = create_keystore(t, SHARES, "grant-share")
    key = create_key(t, ks, spec.KEY_ED25519)
    target = fresh_capability(ks, "ops=sign")
    t.expect_rejected(ask_grant(t, ks, target, share=None), 422,
                      what="ask for a grant without the share", failure_class="share")
    grant = granted(t, ks, target)
    sign(t, ks, key, b"with a grant", capability=target, grant=grant)
    t.expect_status(call(t, ks, "POST", "/revocations", body={"capability": target}), 204,
                    what="revoke the granted capability")
    expect_uniform_401(t, key_op(t, ks, key, "sign", {"message": ""}, capability=target,
                                 grant=grant), reference_401(t, ks),
                       what="sign with the grant of a revoked capability")
    for text, what in ((target, "the revoked capability"),
                       (fresh_capability(ks, "key=" + key["key_id"], base=target),
                        "a capability attenuated from the revoked one")):
        t.expect_rejected(ask_grant(t, ks, text), 422, what=f"ask for a grant for {what}",
                          failure_class="authz")
    held = create_keystore(t, HELD, "grant-held")
    t.expect_rejected(ask_grant(t, held, fresh_capability(held, "ops=read")), 400,
                      what="ask for a grant on a server-held keystore", failure_class="params")
