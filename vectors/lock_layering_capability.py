"""Vectors of the lock-layering flow, profile v1, steps 9 and 11: capabilities.

  capability          a root capability (exp, maybe holder) and its attenuations: every link
  authorize           a server's decision on a bearer capability for an operation, key, time
  revocation          the revocation ids of a capability's links, refused if one is revoked
  delegate            the holder's signed delegate caveat
  holder              who must sign for a capability (holder and delegate caveats)
  http-signature      an RFC 9421 signature base and Ed25519 signature (RFC 9421 B.2.6 and
                      keyflows' kfc signatures)
  signed-request      a server's check of a request signed for a bound capability
  unlock-grant        a grant sealing the lock key for a capability
  unlock-grant-open   and the server opening it for the capability a request presents

Negatives: forged, foreign, widened, expired, expiry-less and unknown-caveat capabilities
(mac, binding, authz, expired, decode); revoked links (authz); unsigned, moved or
holder-less delegations (signature, authz); requests unsigned, signed by another key, out
of the created window, missing a component, with a body not matching Content-Digest or a
changed covered component (authz, binding, expired, signature); grants for another
capability, keystore or time, or tampered (share).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from keyflows.spec import http_signatures as hs
from keyflows.spec import lock_layering_capability as cap
from keyflows.spec import primitives
from keyflows.spec.drbg import Drbg
from keyflows.spec.encoding import b64url_decode, b64url_encode
from keyflows.vectors.framework import (
    Case,
    Failure,
    Outcome,
    compare,
    expect_rejection,
    hx,
)

FLOW = "lock-layering"
KS = "ks-3Xq9vB2mWk7LpRt0aYc1Qd"
OTHER_KS = "ks-other-keystore"
STEP = "9"
STEP_GRANT = "11"
EXP = 1_900_000_000
NOW = 1_800_000_000

OP_CAPABILITY = "capability"
OP_AUTHORIZE = "authorize"
OP_REVOCATION = "revocation"
OP_DELEGATE = "delegate"
OP_HOLDER = "holder"
OP_HTTP_SIGNATURE = "http-signature"
OP_SIGNED_REQUEST = "signed-request"
OP_GRANT = "unlock-grant"
OP_GRANT_OPEN = "unlock-grant-open"


def _drbg(name: str) -> Drbg:
    return Drbg(f"{FLOW}/v1/{name}")


def _case(case_id: str, comment: str, flags: Sequence[str], requirements: Sequence[str],
          operation: str, inputs: Mapping[str, Any], *,
          intermediates: Mapping[str, Any] | None = None,
          outputs: Mapping[str, Any] | None = None, failure: Failure | None = None) -> Case:
    return Case(id=case_id, comment=comment, flags=tuple(flags),
                requirements=tuple(requirements), operation=operation, inputs=dict(inputs),
                intermediates=dict(intermediates or {}), outputs=dict(outputs or {}),
                failure=failure)


def _flip(data: bytes, index: int, bit: int = 0) -> bytes:
    out = bytearray(data)
    out[index] ^= 1 << bit
    return bytes(out)


def _root_key() -> bytes:
    return _drbg("capability/root")(32)


def _holder_seed(name: str = "holder") -> bytes:
    return _drbg(f"capability/{name}")(32)


def _public(seed: bytes) -> bytes:
    return primitives.ed25519_public_key(seed)


def _chain(caveats: Sequence[str], holder: bytes | None = None) -> cap.Capability:
    capability = cap.mint_root_capability(_root_key(), KS, EXP, holder)
    for caveat in caveats:
        capability = cap.attenuate(capability, caveat)
    return capability


def _text(capability: cap.Capability) -> str:
    return cap.encode_capability(capability)


def _forged(caveats: Sequence[str], mac_from: cap.Capability) -> str:
    return _text(cap.Capability(KS, tuple(caveats), mac_from.mac))


def _with_links(caveats: Sequence[str]) -> cap.Capability:
    """A capability whose chain is valid whatever its caveats (what a holder of the root key
    could mint, and no spec function would)."""
    return cap.Capability(KS, tuple(caveats), cap.capability_chain(_root_key(), KS,
                                                                   caveats)[-1])


# --- capability ---------------------------------------------------------------------------------

CHAINS: tuple[tuple[str, str, tuple[str, ...], bool], ...] = (
    ("root", "the root capability: its exp caveat only", (), False),
    ("root-bound", "a root capability bound to a holder key", (), True),
    ("ops", "attenuated to signing and verifying", ("ops=sign,verify",), False),
    ("key", "attenuated to one key", ("key=k1",), False),
    ("exp", "attenuated to an earlier expiry", (f"exp={EXP - 3600}",), False),
    ("all", "ops, key, an earlier expiry, then ops again (narrower)",
     ("ops=sign,verify,export", "key=k1", f"exp={EXP - 3600}", "ops=sign"), False),
)


def _capability_cases() -> list[Case]:
    cases = []
    for slug, comment, caveats, bound in CHAINS:
        holder = _public(_holder_seed()) if bound else None
        capability = _chain(caveats, holder)
        cases.append(_case(
            f"lock-v1-capability/{slug}", comment, ("Valid",),
            ("LOCK-11", "LOCK-13", "LOCK-23") + (("LOCK-25",) if bound else ()), OP_CAPABILITY,
            {"root_key": _root_key(), "keystore_id": KS, "not_after": EXP, "holder": holder,
             "caveats": list(caveats)},
            intermediates={"root_caveats": list(capability.caveats[:len(capability.caveats)
                                                                   - len(caveats)]),
                           "chain": cap.capability_chain(_root_key(), KS, capability.caveats)},
            outputs={"capability": _text(capability)}))
    return cases


# --- authorize -----------------------------------------------------------------------------------

def _authorize(slug: str, comment: str, flags: Sequence[str], reqs: Sequence[str], text: str,
               operation: str, key_id: str | None, now: int, failure: Failure | None = None,
               *, root_key: bytes | None = None, keystore_id: str = KS) -> Case:
    root = root_key or _root_key()
    inputs = {"root_key": root, "keystore_id": keystore_id, "capability": text,
              "operation": operation, "key_id": key_id, "now": now}
    outputs = None
    if failure is None:
        capability = cap.decode_capability(text)
        links = cap.verify_capability(capability, root, keystore_id)
        outputs = {"revocation_ids": cap.revocation_ids(keystore_id, links)}
    return _case(f"lock-v1-authorize/{slug}", comment, flags, reqs, OP_AUTHORIZE, inputs,
                 outputs=outputs, failure=failure)


def _authorize_cases() -> list[Case]:
    full = _chain(CHAINS[5][2])
    text = _text(full)
    root = _text(_chain(()))
    ok = ("Valid",)
    cases = [
        _authorize("root-any", "the root capability creates a key before its expiry", ok,
                   ("LOCK-11", "LOCK-12", "LOCK-23"), root, "create-key", None, EXP - 1),
        _authorize("chain-sign", "the full chain signs with k1 before its earliest expiry",
                   ok, ("LOCK-11", "LOCK-12"), text, "sign", "k1", EXP - 3601),
        _authorize("beyond-root", "an exp after the root's does not outlive the root: still "
                   "valid a second before the root's", ok, ("LOCK-12", "LOCK-23"),
                   _text(_chain((f"exp={EXP + 86400}",))), "read", None, EXP - 1),
    ]
    mac, authz = Failure("mac", STEP), Failure("authz", STEP)
    expired = Failure("expired", STEP)
    root_caveats = _chain(()).caveats
    bare = _with_links(("ops=read",))
    unknown = _with_links((*root_caveats, "aud=bob"))
    widened = _chain(("ops=read", "ops=read,create-key"))
    bad: list[tuple[str, str, str, tuple[str, ...], str, str, str | None, int, Failure,
                    dict[str, Any]]] = [
        ("bitflip-mac", "bit 0 of the MAC flipped", "BitFlip", ("LOCK-11",),
         _text(cap.Capability(KS, full.caveats, _flip(full.mac, 0))), "sign", "k1", NOW, mac,
         {}),
        ("dropped-caveat", "the last ops caveat dropped", "Forged", ("LOCK-11",),
         _forged(full.caveats[:-1], full), "sign", "k1", NOW, mac, {}),
        ("dropped-root-expiry", "the root's exp caveat dropped", "Forged", ("LOCK-11",),
         _forged(full.caveats[1:], full), "sign", "k1", NOW, mac, {}),
        ("reordered-caveats", "the caveats reordered", "Forged", ("LOCK-11",),
         _forged(tuple(reversed(full.caveats)), full), "sign", "k1", NOW, mac, {}),
        ("widened-caveat", "ops=sign replaced by ops=sign,decrypt", "Forged", ("LOCK-11",),
         _forged((*full.caveats[:-1], "ops=sign,decrypt"), full), "sign", "k1", NOW, mac, {}),
        ("wrong-root-key", "verified under another keystore's root key", "WrongKey",
         ("LOCK-11",), text, "sign", "k1", NOW, mac,
         {"root_key": _drbg("capability/other-root")(32)}),
        ("other-keystore", "presented to another keystore", "ForeignKeystore", ("LOCK-11",),
         text, "sign", "k1", NOW, Failure("binding", STEP), {"keystore_id": OTHER_KS}),
        ("operation-not-granted", "decrypt under ops=sign", "NotGranted", ("LOCK-12",), text,
         "decrypt", "k1", NOW, authz, {}),
        ("other-key", "sign with k2 under key=k1", "NotGranted", ("LOCK-12",), text, "sign",
         "k2", NOW, authz, {}),
        ("keystore-operation", "read the keystore under key=k1", "NotGranted", ("LOCK-12",),
         _text(_chain(("key=k1",))), "read", None, NOW, authz, {}),
        ("widening-appended", "create-key after ops=read, then ops=read,create-key",
         "NotGranted", ("LOCK-12",), _text(widened), "create-key", None, NOW, authz, {}),
        ("expired-at", "now equals the earliest exp", "Expired", ("LOCK-12",), text, "sign",
         "k1", EXP - 3600, expired, {}),
        ("expired-root", "a day after the root's exp", "Expired", ("LOCK-12",), root, "read",
         None, EXP + 86400, expired, {}),
        ("no-expiry", "a valid chain with no exp caveat at all", "NoExpiry", ("LOCK-23",),
         _text(bare), "read", None, NOW, authz, {}),
        ("unknown-caveat", "a caveat aud=bob with a valid chain", "UnknownCaveat", ("LOCK-12",),
         _text(unknown), "read", None, NOW, authz, {}),
        ("bound-without-request", "a capability bound to a holder, checked without a signed "
         "request", "Unsigned", ("LOCK-25",), _text(_chain((), _public(_holder_seed()))),
         "read", None, NOW, authz, {}),
        ("not-kfc1", "a capability without the kfc1 prefix", "MalformedCapability",
         ("LOCK-11",), text[len("kfc1."):], "sign", "k1", NOW, Failure("decode", STEP), {}),
        ("short-mac", "a 31-byte MAC", "MalformedCapability", ("LOCK-11",),
         cap.CAPABILITY_PREFIX + b64url_encode(
             b'{"keystore_id":"' + KS.encode() + b'","caveats":[],"mac":"'
             + b64url_encode(full.mac[:31]).encode() + b'"}'), "read", None, NOW,
         Failure("length", STEP), {}),
    ]
    for slug, comment, flag, reqs, token, op, key_id, now, failure, extra in bad:
        cases.append(_authorize(slug, comment, (flag,), reqs, token, op, key_id, now, failure,
                                **extra))
    return cases


# --- revocation ----------------------------------------------------------------------------

def _revocation_cases() -> list[Case]:
    parent = _chain(("ops=read,revoke",))
    child = cap.attenuate(parent, f"exp={EXP - 60}")
    sibling = _chain(("ops=read",))

    def ids(capability: cap.Capability) -> list[bytes]:
        return cap.revocation_ids(KS, cap.verify_capability(capability, _root_key(), KS))

    revoked = [ids(parent)[-1]]
    cases = []
    for slug, comment, capability in (("sibling", "a sibling of the revoked capability",
                                       sibling),
                                      ("parent-of-revoked", "the root, an ancestor of the "
                                       "revoked capability", _chain(()))):
        cases.append(_case(f"lock-v1-revocation/{slug}", f"{comment} is not revoked",
                           ("Valid",), ("LOCK-24",), OP_REVOCATION,
                           {"root_key": _root_key(), "keystore_id": KS,
                            "capability": _text(capability), "revoked": revoked},
                           outputs={"revocation_ids": ids(capability)}))
    for slug, comment, capability in (("revoked", "the revoked capability itself", parent),
                                      ("descendant", "a capability attenuated from the revoked "
                                       "one", child)):
        cases.append(_case(f"lock-v1-revocation/{slug}", f"{comment} is refused",
                           ("Revoked",), ("LOCK-24",), OP_REVOCATION,
                           {"root_key": _root_key(), "keystore_id": KS,
                            "capability": _text(capability), "revoked": revoked},
                           failure=Failure("authz", STEP)))
    return cases


# --- delegation -----------------------------------------------------------------------------

def _delegate_cases() -> list[Case]:
    holder_seed, delegate_seed = _holder_seed(), _holder_seed("delegate")
    bound = _chain(("ops=sign", "key=k1"), _public(holder_seed))
    delegated = cap.delegate(bound, holder_seed, _public(delegate_seed))
    cases = [_case(
        "lock-v1-delegate/sign-k1", "the holder hands a sign-on-k1 capability to a delegate",
        ("Valid",), ("LOCK-27",), OP_DELEGATE,
        {"root_key": _root_key(), "keystore_id": KS, "capability": _text(bound),
         "holder_seed": holder_seed, "delegate_public_key": _public(delegate_seed)},
        intermediates={"link": bound.mac, "message": cap.delegation_message(
            KS, bound.mac, _public(delegate_seed))},
        outputs={"caveat": delegated.caveats[-1], "capability": _text(delegated)})]
    holder_reqs = ("LOCK-25", "LOCK-27")
    cases.append(_case("lock-v1-holder/delegated", "the delegate is the holder now",
                       ("Valid",), holder_reqs, OP_HOLDER,
                       {"root_key": _root_key(), "keystore_id": KS,
                        "capability": _text(delegated)},
                       outputs={"holder": _public(delegate_seed)}))
    cases.append(_case("lock-v1-holder/bearer", "a capability with no holder caveat is a "
                       "bearer capability", ("Valid",), ("LOCK-25",), OP_HOLDER,
                       {"root_key": _root_key(), "keystore_id": KS,
                        "capability": _text(_chain(("ops=read",)))},
                       outputs={"holder": None}))
    forged = cap.delegate(bound, _holder_seed("thief"), _public(delegate_seed))
    moved = cap.attenuate(_chain(("ops=read",), _public(holder_seed)), delegated.caveats[-1])
    no_holder = cap.attenuate(_chain(("ops=sign",)), cap.delegate_caveat(
        holder_seed, KS, _chain(("ops=sign",)).mac, _public(delegate_seed)))
    second = cap.attenuate(bound, cap.holder_caveat(_public(delegate_seed)))
    for slug, comment, flag, capability, failure_class in (
            ("not-signed-by-holder", "a delegation signed by another key", "Forged", forged,
             "signature"),
            ("moved", "a delegate caveat moved to another capability of the holder", "Moved",
             moved, "signature"),
            ("no-holder", "a delegate caveat on a bearer capability", "Unsigned", no_holder,
             "authz"),
            ("second-holder", "a second holder caveat instead of a delegation", "Forged",
             second, "authz")):
        cases.append(_case(f"lock-v1-holder/{slug}", comment, (flag,), holder_reqs, OP_HOLDER,
                           {"root_key": _root_key(), "keystore_id": KS,
                            "capability": _text(capability)},
                           failure=Failure(failure_class, STEP)))
    return cases


# --- RFC 9421 ---------------------------------------------------------------------------------

RFC9421_B14_SEED = bytes.fromhex(
    "9f8362f87a484a954e6e740c5b4c0e84229139a20aa8ab56ff66586f6a7d29c5")
RFC9421_B26_INPUT = ('("date" "@method" "@path" "@authority" "content-type" "content-length")'
                     ';created=1618884473;keyid="test-key-ed25519"')


def _request_plain(request: hs.Request) -> dict[str, Any]:
    return {"method": request.method, "scheme": request.scheme,
            "authority": request.authority, "path": request.path, "query": request.query,
            "headers": [[k, v] for k, v in request.headers], "body": request.body}


def _request_from(plain: Mapping[str, Any]) -> hs.Request:
    return hs.Request(plain["method"], plain["authority"], plain["path"], plain["query"],
                      tuple((k, v) for k, v in plain["headers"]), hx(plain["body"], "body"),
                      plain["scheme"])


def _b26_request() -> hs.Request:
    return hs.Request("POST", "example.com", "/foo", "param=Value&Pet=dog",
                      (("Host", "example.com"), ("Date", "Tue, 20 Apr 2021 02:07:55 GMT"),
                       ("Content-Type", "application/json"), ("Content-Length", "18")),
                      b'{"hello": "world"}', "https")


def _kfc_request(capability: cap.Capability, seed: bytes, *, created: int = NOW,
                 nonce: str = "MDEyMzQ1Njc4OWFiY2RlZg", body: bytes = b'{"message":"aGk"}',
                 path: str = f"/v1/keystores/{KS}/keys/k1/sign") -> hs.Request:
    headers = (("host", "kms.example"), ("authorization", f"Bearer {_text(capability)}"),
               ("content-type", "application/json"))
    request = hs.Request("POST", "kms.example", path, "", headers, body, "https")
    fields = cap.sign_request(seed, request, created=created, nonce=nonce)
    return hs.Request("POST", "kms.example", path, "", (*headers, *fields.items()), body,
                      "https")


def _fields(label: str, entry: hs.SignatureInput, signature: bytes) -> dict[str, str]:
    """The Signature-Input and Signature field values, as output members."""
    fields = hs.signature_fields(label, entry, signature)
    return {"signature_input": fields["signature-input"], "signature": fields["signature"]}


def _http_signature_cases() -> list[Case]:
    entry = hs.parse_signature_input([f"sig-b26={RFC9421_B26_INPUT}"])["sig-b26"]
    request = _b26_request()
    cases = [_case(
        "lock-v1-http-signature/rfc9421-b26", "RFC 9421 appendix B.2.6: the test-request "
        "signed with test-key-ed25519 (appendix B.1.4), label sig-b26", ("Valid", "External"),
        ("LOCK-25",), OP_HTTP_SIGNATURE,
        {"seed": RFC9421_B14_SEED, "request": _request_plain(request), "label": "sig-b26",
         "signature_params": RFC9421_B26_INPUT},
        intermediates={"signature_base": hs.signature_base(request, entry).decode("ascii")},
        outputs=_fields("sig-b26", entry, hs.sign_ed25519(RFC9421_B14_SEED, request, entry)))]
    seed = _holder_seed()
    signed = _kfc_request(_chain((), _public(seed)), seed)
    kfc = hs.parse_signature_input(signed.field_values("signature-input"))["kfc"]
    unsigned = hs.Request(signed.method, signed.authority, signed.path, signed.query,
                          tuple(h for h in signed.headers
                                if h[0] not in ("signature-input", "signature")),
                          signed.body, signed.scheme)
    cases.append(_case(
        "lock-v1-http-signature/kfc", "a keyflows request signed by a capability's holder: "
        "label kfc, Content-Digest, tag keyflows-capability", ("Valid",), ("LOCK-25",),
        OP_HTTP_SIGNATURE,
        {"seed": seed, "request": _request_plain(unsigned), "label": "kfc",
         "signature_params": hs.serialize_signature_params(kfc)},
        intermediates={"signature_base": hs.signature_base(unsigned, kfc).decode("ascii")},
        outputs={"signature_input": signed.field_values("signature-input")[0],
                 "signature": signed.field_values("signature")[0]}))
    return cases


def _signed_request(slug: str, comment: str, flags: Sequence[str], reqs: Sequence[str],
                    capability: cap.Capability, request: hs.Request, now: int,
                    failure: Failure | None = None, operation: str = "sign",
                    key_id: str | None = "k1") -> Case:
    inputs = {"root_key": _root_key(), "keystore_id": KS, "capability": _text(capability),
              "operation": operation, "key_id": key_id, "now": now,
              "request": _request_plain(request)}
    outputs = None
    if failure is None:
        authorized = cap.check_capability(_text(capability), _root_key(), KS, operation,
                                          key_id, now, request)
        assert authorized.nonce is not None
        outputs = {"holder": authorized.holder, "nonce_id": authorized.nonce.nonce_id,
                   "keep_until": authorized.nonce.keep_until}
    return _case(f"lock-v1-signed-request/{slug}", comment, flags, reqs, OP_SIGNED_REQUEST,
                 inputs, outputs=outputs, failure=failure)


def _replace_header(request: hs.Request, name: str, value: str | None) -> hs.Request:
    headers = tuple(h for h in request.headers if h[0] != name)
    if value is not None:
        headers = (*headers, (name, value))
    return hs.Request(request.method, request.authority, request.path, request.query, headers,
                      request.body, request.scheme)


def _signed_request_cases() -> list[Case]:
    seed, delegate_seed = _holder_seed(), _holder_seed("delegate")
    bound = _chain((), _public(seed))
    good = _kfc_request(bound, seed)
    reqs = ("LOCK-25", "LOCK-26")
    delegated = cap.delegate(cap.attenuate(bound, "ops=sign"), seed, _public(delegate_seed))
    cases = [
        _signed_request("holder", "signed by the holder within the window", ("Valid",), reqs,
                        bound, good, NOW + 10),
        _signed_request("delegate", "signed by the delegate of a delegated capability",
                        ("Valid",), (*reqs, "LOCK-27"), delegated,
                        _kfc_request(delegated, delegate_seed), NOW),
        _signed_request("created-at-edge", "created exactly 300 seconds ago", ("Valid",), reqs,
                        bound, good, NOW + 300),
    ]
    thief = _holder_seed("thief")
    no_body_digest = _replace_header(good, "content-digest", None)
    wrong_label = _replace_header(_replace_header(
        good, "signature-input", good.field_values("signature-input")[0].replace("kfc=", "sig=")),
        "signature", good.field_values("signature")[0].replace("kfc=", "sig="))
    bad: list[tuple[str, str, str, tuple[str, ...], cap.Capability, hs.Request, int, str]] = [
        ("unsigned", "no Signature-Input or Signature", "Unsigned", reqs, bound,
         _replace_header(_replace_header(good, "signature", None), "signature-input", None),
         NOW, "authz"),
        ("other-label", "the signature under another label than kfc", "Unsigned", reqs, bound,
         wrong_label, NOW, "authz"),
        ("other-signer", "signed by another key", "WrongKey", reqs, bound,
         _kfc_request(bound, thief), NOW, "binding"),
        ("old-holder", "the delegated capability signed by the former holder", "WrongKey",
         (*reqs, "LOCK-27"), delegated, _kfc_request(delegated, seed), NOW, "binding"),
        ("too-old", "created 301 seconds ago", "Expired", reqs, bound, good, NOW + 301,
         "expired"),
        ("from-the-future", "created 61 seconds ahead", "Expired", reqs, bound, good, NOW - 61,
         "expired"),
        ("changed-path", "the path changed after signing", "BitFlip", reqs, bound,
         hs.Request(good.method, good.authority, f"/v1/keystores/{KS}/keys/k2/sign",
                    good.query, good.headers, good.body, good.scheme), NOW, "signature"),
        ("changed-body", "the body changed after signing (Content-Digest no longer matches)",
         "BitFlip", reqs, bound, hs.Request(good.method, good.authority, good.path, good.query,
                                            good.headers, b'{"message":"aG8"}', good.scheme),
         NOW, "binding"),
        ("no-content-digest", "a body but no Content-Digest field", "Truncated", reqs, bound,
         no_body_digest, NOW, "decode"),
    ]
    for slug, comment, flag, case_reqs, capability, request, now, failure_class in bad:
        cases.append(_signed_request(slug, comment, (flag,), case_reqs, capability, request,
                                     now, Failure(failure_class, STEP)))
    return cases


# --- unlock grants -------------------------------------------------------------------------------

def _grant_material() -> tuple[bytes, bytes, bytes]:
    rnd = _drbg("unlock-grant")
    return rnd(32), rnd(12), rnd(32)


def _grant_cases() -> list[Case]:
    grant_key, nonce, lock_key = _grant_material()
    granted = _chain(("ops=sign", f"exp={EXP - 3600}"))
    grant = cap.make_unlock_grant(grant_key, nonce, lock_key, KS, granted, NOW)
    until = cap.grant_not_after(granted, NOW)
    reqs = ("LOCK-28",)
    cases = [_case(
        "lock-v1-unlock-grant/ops-sign", "a grant for a sign-only capability", ("Valid",), reqs,
        OP_GRANT, {"grant_key": grant_key, "nonce": nonce, "lock_key": lock_key,
                   "keystore_id": KS, "root_key": _root_key(), "capability": _text(granted),
                   "now": NOW},
        intermediates={"depth": len(granted.caveats), "not_after": until,
                       "aad": cap.grant_aad(KS, len(granted.caveats), granted.mac, until)},
        outputs={"grant": grant})]
    base = {"grant_key": grant_key, "grant": grant, "keystore_id": KS, "root_key": _root_key(),
            "now": NOW}
    for slug, comment, presented in (
            ("same-capability", "the capability it was made for", granted),
            ("attenuated", "a capability attenuated from it", cap.attenuate(granted,
                                                                            "key=k1"))):
        cases.append(_case(f"lock-v1-unlock-grant-open/{slug}", f"the grant opens with "
                           f"{comment}", ("Valid",), reqs, OP_GRANT_OPEN,
                           dict(base, capability=_text(presented)),
                           outputs={"lock_key": lock_key}))
    sibling = _chain(("ops=verify", f"exp={EXP - 3600}"))
    foreign = cap.mint_root_capability(_root_key(), OTHER_KS, EXP)
    for caveat in ("ops=sign", f"exp={EXP - 3600}"):
        foreign = cap.attenuate(foreign, caveat)
    raw = bytearray(b64url_decode(grant[len(cap.GRANT_PREFIX):]))
    raw[-1] ^= 1
    tampered = cap.GRANT_PREFIX + b64url_encode(bytes(raw))
    share = Failure("share", STEP_GRANT)
    for slug, comment, flag, change in (
            ("sibling", "a sibling capability of the same depth", "Moved",
             {"capability": _text(sibling)}),
            ("ancestor", "the root, an ancestor of the capability it was made for", "Moved",
             {"capability": _text(_chain(()))}),
            ("expired", "at its capability's expiry", "Expired",
             {"capability": _text(granted), "now": until}),
            ("other-keystore", "in another keystore with the same grant key and caveats",
             "ForeignKeystore", {"capability": _text(foreign), "keystore_id": OTHER_KS}),
            ("tampered", "with one bit of its tag flipped", "BitFlip",
             {"capability": _text(granted), "grant": tampered}),
            ("not-kfg1", "a share sent as a grant", "MalformedCapability",
             {"capability": _text(granted), "grant": b64url_encode(bytes(33))})):
        inputs = dict(base, **change)
        cases.append(_case(f"lock-v1-unlock-grant-open/{slug}", f"the grant is refused {comment}",
                           (flag,), reqs, OP_GRANT_OPEN, inputs, failure=share))
    return cases


def cases() -> list[Case]:
    return (_capability_cases() + _authorize_cases() + _revocation_cases()
            + _delegate_cases() + _http_signature_cases() + _signed_request_cases()
            + _grant_cases())


# --- verification: the consumer side ---------------------------------------------------------

def _verify_capability(case: Mapping[str, Any]) -> Outcome:
    i = case["inputs"]
    root_key, ks = hx(i["root_key"], "root_key"), i["keystore_id"]
    holder = None if i["holder"] is None else hx(i["holder"], "holder")
    capability = cap.mint_root_capability(root_key, ks, i["not_after"], holder)
    root_caveats = list(capability.caveats)
    for caveat in i["caveats"]:
        capability = cap.attenuate(capability, caveat)  # offline: no root key needed
    cap.verify_capability(cap.decode_capability(cap.encode_capability(capability)), root_key, ks)
    return compare(case, intermediates={"root_caveats": root_caveats,
                                        "chain": cap.capability_chain(root_key, ks,
                                                                      capability.caveats)},
                   outputs={"capability": cap.encode_capability(capability)})


def _verify_authorize(case: Mapping[str, Any]) -> Outcome:
    i = case["inputs"]

    def run() -> cap.Authorized:
        return cap.check_capability(i["capability"], hx(i["root_key"], "root_key"),
                                    i["keystore_id"], i["operation"], i["key_id"], i["now"])

    if case["result"] == "invalid":
        return expect_rejection(case, run)
    return compare(case, intermediates={}, outputs={"revocation_ids": list(run().revocation_ids)})


def _verify_revocation(case: Mapping[str, Any]) -> Outcome:
    i = case["inputs"]
    capability = cap.decode_capability(i["capability"])
    links = cap.verify_capability(capability, hx(i["root_key"], "root_key"), i["keystore_id"])
    ids = cap.revocation_ids(i["keystore_id"], links)
    revoked = {hx(r, "revoked") for r in i["revoked"]}
    if case["result"] == "invalid":
        return expect_rejection(case, lambda: cap.check_not_revoked(ids, revoked))
    cap.check_not_revoked(ids, revoked)
    return compare(case, intermediates={}, outputs={"revocation_ids": ids})


def _verify_delegate(case: Mapping[str, Any]) -> Outcome:
    i = case["inputs"]
    capability = cap.decode_capability(i["capability"])
    cap.verify_capability(capability, hx(i["root_key"], "root_key"), i["keystore_id"])
    delegate_key = hx(i["delegate_public_key"], "delegate_public_key")
    delegated = cap.delegate(capability, hx(i["holder_seed"], "holder_seed"), delegate_key)
    return compare(case, intermediates={"link": capability.mac, "message": cap.delegation_message(
        i["keystore_id"], capability.mac, delegate_key)},
        outputs={"caveat": delegated.caveats[-1], "capability": cap.encode_capability(delegated)})


def _verify_holder(case: Mapping[str, Any]) -> Outcome:
    i = case["inputs"]
    capability = cap.decode_capability(i["capability"])
    links = cap.verify_capability(capability, hx(i["root_key"], "root_key"), i["keystore_id"])
    if case["result"] == "invalid":
        return expect_rejection(case, lambda: cap.holder_of(capability, links))
    return compare(case, intermediates={}, outputs={"holder": cap.holder_of(capability, links)})


def _verify_http_signature(case: Mapping[str, Any]) -> Outcome:
    i = case["inputs"]
    request = _request_from(i["request"])
    entry = hs.parse_signature_input([f"{i['label']}={i['signature_params']}"])[i["label"]]
    seed = hx(i["seed"], "seed")
    signature = hs.sign_ed25519(seed, request, entry)
    hs.verify_ed25519(primitives.ed25519_public_key(seed), request, entry, signature)
    return compare(case, intermediates={"signature_base": hs.signature_base(request, entry)
                                        .decode("ascii")},
                   outputs=_fields(i["label"], entry, signature))


def _verify_signed_request(case: Mapping[str, Any]) -> Outcome:
    i = case["inputs"]

    def run() -> cap.Authorized:
        return cap.check_capability(i["capability"], hx(i["root_key"], "root_key"),
                                    i["keystore_id"], i["operation"], i["key_id"], i["now"],
                                    _request_from(i["request"]))

    if case["result"] == "invalid":
        return expect_rejection(case, run)
    authorized = run()
    assert authorized.nonce is not None
    return compare(case, intermediates={}, outputs={
        "holder": authorized.holder, "nonce_id": authorized.nonce.nonce_id,
        "keep_until": authorized.nonce.keep_until})


def _verify_grant(case: Mapping[str, Any]) -> Outcome:
    i = case["inputs"]
    root_key, ks = hx(i["root_key"], "root_key"), i["keystore_id"]
    capability = cap.decode_capability(i["capability"])
    links = cap.verify_capability(capability, root_key, ks)
    grant_key = hx(i["grant_key"], "grant_key")
    if case["operation"] == OP_GRANT:
        grant = cap.make_unlock_grant(grant_key, hx(i["nonce"], "nonce"),
                                      hx(i["lock_key"], "lock_key"), ks, capability, i["now"])
        until = cap.grant_not_after(capability, i["now"])
        depth = len(capability.caveats)
        return compare(case, intermediates={"depth": depth, "not_after": until,
                                            "aad": cap.grant_aad(ks, depth, capability.mac,
                                                                 until)},
                       outputs={"grant": grant})

    def run() -> bytes:
        return cap.open_unlock_grant(grant_key, i["grant"], ks, links, i["now"])

    if case["result"] == "invalid":
        return expect_rejection(case, run)
    return compare(case, intermediates={}, outputs={"lock_key": run()})


VERIFIERS: dict[str, Callable[[Mapping[str, Any]], Outcome]] = {
    OP_CAPABILITY: _verify_capability, OP_AUTHORIZE: _verify_authorize,
    OP_REVOCATION: _verify_revocation, OP_DELEGATE: _verify_delegate,
    OP_HOLDER: _verify_holder, OP_HTTP_SIGNATURE: _verify_http_signature,
    OP_SIGNED_REQUEST: _verify_signed_request, OP_GRANT: _verify_grant,
    OP_GRANT_OPEN: _verify_grant,
}
