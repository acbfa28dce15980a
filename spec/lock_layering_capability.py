"""Flow: lock-layering, step 9 (capabilities) and step 11 (unlock grants).

A capability is a macaroon-style HMAC chain over a keystore's capability root key:

    mac_0 = HMAC-SHA256(root key, ctx("capability", keystore_id))
    mac_i = HMAC-SHA256(mac_(i-1), ctx("capability-caveat", caveat_i))

and travels as "kfc1." || base64url(JSON {"keystore_id", "caveats", "mac" = mac_n}). A
holder narrows it offline by appending caveats; every caveat must allow a request:

  ops=a,b       only these operations
  key=K         only operations on key K
  exp=T         only while now < T; every capability has one, the root included (LOCK-23)
  holder=P      only requests signed (RFC 9421) with the Ed25519 key P (LOCK-25)
  delegate=P.S  the holder hands the capability to key P; S is the holder's signature
                over ctx("capability-delegation", keystore_id, mac_(i-1), P) (LOCK-27)

Revocation (LOCK-24) names a link: revocation id = SHA-256(ctx("capability-revocation",
keystore_id, mac_i)). A server refuses a capability any of whose links is revoked, so
revoking a capability revokes everything attenuated from it.

Unlock grants (step 11, LOCK-28): in scenario "shares" the controller, who holds the share,
asks the server to seal the keystore's lock key for one capability: the grant opens only
with that capability or one attenuated from it, only until its expiry, and only with the
server's grant key; the delegate never sees the share, the secret or the lock key.

Every capability failure is answered with one uniform 401 (LOCK-29); the failure classes
here tell vectors and logs where a capability was refused.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from keyflows.spec import http_signatures, primitives
from keyflows.spec import lock_layering as ll
from keyflows.spec.drbg import RandomSource
from keyflows.spec.encoding import b64url_decode, b64url_encode, labelled_context, u64be
from keyflows.spec.errors import (
    AuthzError,
    BindingError,
    DecodeError,
    ExpiredError,
    LengthError,
    MacError,
    ParamsError,
    ShareError,
    SignatureError,
    SpecError,
)
from keyflows.spec.key_derivation import check_identifier

CAPABILITY_PREFIX = "kfc1."
CAPABILITY_MAC_LEN = 32
MAX_CAVEATS = 16
MAX_CAVEAT_LEN = 256
MAX_CAPABILITY_LEN = 4096  # the longest bearer credential a server must accept
MAX_EXPIRY = 2**63 - 1
CAVEAT_OPS = "ops"
CAVEAT_KEY = "key"
CAVEAT_EXP = "exp"
CAVEAT_HOLDER = "holder"
CAVEAT_DELEGATE = "delegate"
CAVEAT_NAMES = (CAVEAT_OPS, CAVEAT_KEY, CAVEAT_EXP, CAVEAT_HOLDER, CAVEAT_DELEGATE)
_CAVEAT_SYNTAX = re.compile(r"\A([a-z]+)=([\x21-\x7e]+)\Z")
_DECIMAL = re.compile(r"\A(0|[1-9][0-9]{0,18})\Z")

#: Root capability lifetimes a server may choose (LOCK-23), in seconds.
MIN_ROOT_LIFETIME = 60
MAX_ROOT_LIFETIME = 366 * 86400

# Holder binding (LOCK-25, LOCK-26).
SIGNATURE_LABEL = "kfc"
SIGNATURE_TAG = "keyflows-capability"
SIGNATURE_MAX_AGE = 300  # seconds a signed request stays acceptable after `created`
SIGNATURE_MAX_SKEW = 60  # seconds `created` may lie in the future
REQUIRED_COMPONENTS = ("@method", "@authority", "@path", "@query", "authorization")
BODY_COMPONENT = "content-digest"
SIGNATURE_PARAMS = frozenset({"created", "expires", "nonce", "keyid", "alg", "tag"})
_NONCE = re.compile(r"\A[A-Za-z0-9_-]{22,64}\Z")

# Unlock grants (LOCK-28).
GRANT_PREFIX = "kfg1."
GRANT_HEADER = "Unlock-Grant"
_GRANT_LEN = 1 + 8 + ll.NONCE_LEN + ll.LOCK_KEY_LEN + ll.TAG_LEN


# --- the chain ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Capability:
    """A keystore capability: its caveats, in order, and the last link of its HMAC chain."""

    keystore_id: str
    caveats: tuple[str, ...]
    mac: bytes


def capability_chain(root_key: bytes, keystore_id: str, caveats: Sequence[str]) -> list[bytes]:
    """Step 9 (LOCK-11): every link of the chain, first (mac_0) to last."""
    if len(root_key) != ll.ROOT_KEY_LEN:
        raise LengthError("capability root key must be 32 bytes", requirement="LOCK-13")
    links = [primitives.hmac_sha256(root_key, labelled_context(
        "capability", check_identifier(keystore_id, "keystore_id")))]
    for caveat in caveats:
        links.append(extend_mac(links[-1], caveat))
    return links


def extend_mac(mac: bytes, caveat: str) -> bytes:
    """Step 9 (LOCK-11): one link; needs only the previous link, not the root key."""
    return primitives.hmac_sha256(mac, labelled_context("capability-caveat",
                                                        caveat.encode("ascii")))


def root_not_after(now: int, lifetime: int) -> int:
    """Step 9 (LOCK-23): the expiry of a root capability minted now. The lifetime is a
    server setting in MIN_ROOT_LIFETIME..MAX_ROOT_LIFETIME, checked once at start-up."""
    return now + lifetime


def mint_root_capability(root_key: bytes, keystore_id: str, not_after: int,
                         holder: bytes | None = None) -> Capability:
    """Step 9 (LOCK-13, LOCK-23): the root capability grants every operation on every key
    until `not_after`, to its holder if one is named. The server returns it only to the
    controller (at creation, or when the controller asks for a fresh one)."""
    caveats = [expiry_caveat(not_after)]
    if holder is not None:
        caveats.append(holder_caveat(holder))
    links = capability_chain(root_key, keystore_id, caveats)
    return Capability(keystore_id, tuple(caveats), links[-1])


# --- caveats --------------------------------------------------------------------------------

def ops_caveat(operations: Sequence[str]) -> str:
    """`ops=<op>,<op>...`: only these operations."""
    return f"{CAVEAT_OPS}={','.join(operations)}"


def key_caveat(key_id: str) -> str:
    """`key=<key id>`: only key-scoped operations on this one key."""
    check_identifier(key_id, "key_id", requirement="LOCK-12")
    return f"{CAVEAT_KEY}={key_id}"


def expiry_caveat(not_after: int) -> str:
    """`exp=<unix seconds>`: valid while now < exp."""
    return f"{CAVEAT_EXP}={not_after}"


def holder_caveat(public_key: bytes) -> str:
    """`holder=<base64url Ed25519 public key>`: only requests that key signs."""
    if len(public_key) != 32:
        raise LengthError("a holder key is 32 bytes", requirement="LOCK-25")
    return f"{CAVEAT_HOLDER}={b64url_encode(public_key)}"


def delegation_message(keystore_id: str, link: bytes, delegate_key: bytes) -> bytes:
    """Step 9 (LOCK-27): what the current holder signs to hand the capability whose last
    link is `link` to the key `delegate_key`."""
    return labelled_context("capability-delegation",
                            check_identifier(keystore_id, "keystore_id"), link, delegate_key)


def delegate_caveat(holder_seed: bytes, keystore_id: str, link: bytes, delegate_key: bytes
                    ) -> str:
    """`delegate=<base64url key>.<base64url signature>`, made by the current holder."""
    if len(delegate_key) != 32:
        raise LengthError("a delegate key is 32 bytes", requirement="LOCK-27")
    signature = primitives.ed25519_sign(holder_seed, delegation_message(keystore_id, link,
                                                                        delegate_key))
    return f"{CAVEAT_DELEGATE}={b64url_encode(delegate_key)}.{b64url_encode(signature)}"


def check_caveat_syntax(caveat: object) -> str:
    """Step 9 (LOCK-11): `name=value`, printable ASCII without spaces, at most 256 bytes."""
    if not isinstance(caveat, str) or len(caveat) > MAX_CAVEAT_LEN \
            or not _CAVEAT_SYNTAX.match(caveat):
        raise DecodeError("a caveat is name=value in printable ASCII, at most 256 characters",
                          requirement="LOCK-11")
    return caveat


@dataclass(frozen=True)
class Caveat:
    """The meaning of one caveat: exactly one of the restrictions."""

    name: str
    operations: frozenset[str] = frozenset()
    key_id: str = ""
    not_after: int = 0
    public_key: bytes = b""
    signature: bytes = b""


def parse_caveat(caveat: str) -> Caveat:
    """Step 9 (LOCK-12): the meaning of a caveat that passed `check_caveat_syntax` (every
    caveat of a decoded capability did). Anything not understood is refused (class
    authz): a server that cannot evaluate a restriction must not ignore it."""
    name, _, value = caveat.partition("=")
    if name == CAVEAT_OPS:
        ops = value.split(",")
        if any(op not in ll.OPERATIONS for op in ops) or len(set(ops)) != len(ops):
            raise AuthzError("ops caveat names an unknown or repeated operation",
                             requirement="LOCK-12")
        return Caveat(name, operations=frozenset(ops))
    if name == CAVEAT_KEY:
        try:
            check_identifier(value, "key_id", requirement="LOCK-12")
        except DecodeError as exc:
            raise AuthzError("key caveat is not a key id", requirement="LOCK-12") from exc
        return Caveat(name, key_id=value)
    if name == CAVEAT_EXP:
        if not _DECIMAL.match(value) or int(value) > MAX_EXPIRY:
            raise AuthzError("exp caveat is not a canonical decimal time", requirement="LOCK-12")
        return Caveat(name, not_after=int(value))
    if name == CAVEAT_HOLDER:
        return Caveat(name, public_key=_caveat_key(value, "LOCK-25"))
    if name == CAVEAT_DELEGATE:
        # key.signature; without the dot the signature is empty, which its length refuses.
        key_text, _, signature_text = value.partition(".")
        signature = _caveat_bytes(signature_text, primitives.ED25519_SIG_LEN, "LOCK-27")
        return Caveat(name, public_key=_caveat_key(key_text, "LOCK-27"), signature=signature)
    raise AuthzError(f"unknown caveat {name!r}", requirement="LOCK-12")


def _caveat_bytes(text: str, length: int, requirement: str) -> bytes:
    try:
        data = b64url_decode(text)
    except SpecError as exc:
        raise AuthzError("caveat value is not base64url", requirement=requirement) from exc
    if len(data) != length:
        raise AuthzError(f"caveat value is not {length} bytes", requirement=requirement)
    return data


def _caveat_key(text: str, requirement: str) -> bytes:
    return _caveat_bytes(text, 32, requirement)


def attenuate(capability: Capability, caveat: str) -> Capability:
    """Step 9 (LOCK-11): append one caveat, offline, without the server or the root key.

    Appending can only narrow: every caveat must hold, and no caveat can be removed,
    because that would need an earlier link of the chain, which HMAC does not reveal."""
    check_caveat_syntax(caveat)
    parse_caveat(caveat)  # a holder should not append what no server can honour
    if len(capability.caveats) >= MAX_CAVEATS:
        raise ParamsError(f"at most {MAX_CAVEATS} caveats", requirement="LOCK-11")
    attenuated = Capability(capability.keystore_id, (*capability.caveats, caveat),
                            extend_mac(capability.mac, caveat))
    if len(encode_capability(attenuated)) > MAX_CAPABILITY_LEN:
        raise ParamsError(f"a capability is at most {MAX_CAPABILITY_LEN} characters",
                          requirement="LOCK-11")
    return attenuated


def delegate(capability: Capability, holder_seed: bytes, delegate_key: bytes) -> Capability:
    """Step 9 (LOCK-27): the holder appends a delegate caveat for `delegate_key`."""
    return attenuate(capability, delegate_caveat(holder_seed, capability.keystore_id,
                                                 capability.mac, delegate_key))


# --- encoding -----------------------------------------------------------------------------

def encode_capability(capability: Capability) -> str:
    """Step 9 (LOCK-11): "kfc1." || base64url(JSON {"keystore_id", "caveats", "mac"})."""
    body = json.dumps({"keystore_id": capability.keystore_id,
                       "caveats": list(capability.caveats),
                       "mac": b64url_encode(capability.mac)},
                      separators=(",", ":"), ensure_ascii=True)
    return CAPABILITY_PREFIX + b64url_encode(body.encode("ascii"))


def decode_capability(text: object) -> Capability:
    """Step 9 (LOCK-11): parse a capability strictly (class decode for any defect)."""
    if not isinstance(text, str) or not text.startswith(CAPABILITY_PREFIX):
        raise DecodeError("not a kfc1 capability", requirement="LOCK-11")
    if len(text) > MAX_CAPABILITY_LEN:
        raise LengthError("capability too long", requirement="LOCK-11")
    raw = b64url_decode(text[len(CAPABILITY_PREFIX):], requirement="LOCK-11")
    try:
        obj = json.loads(raw.decode("utf-8"), object_pairs_hook=_unique_members)
    except (UnicodeDecodeError, ValueError) as exc:
        raise DecodeError("capability body is not JSON", requirement="LOCK-11") from exc
    if not isinstance(obj, dict) or sorted(obj) != ["caveats", "keystore_id", "mac"]:
        raise DecodeError("capability has exactly keystore_id, caveats and mac",
                          requirement="LOCK-11")
    keystore_id, caveats, mac_text = obj["keystore_id"], obj["caveats"], obj["mac"]
    check_identifier(keystore_id, "keystore_id", requirement="LOCK-11")
    if not isinstance(caveats, list) or len(caveats) > MAX_CAVEATS:
        raise DecodeError(f"caveats is a list of at most {MAX_CAVEATS}", requirement="LOCK-11")
    mac = b64url_decode(mac_text, requirement="LOCK-11")
    if len(mac) != CAPABILITY_MAC_LEN:
        raise LengthError("capability mac must be 32 bytes", requirement="LOCK-11")
    return Capability(keystore_id, tuple(check_caveat_syntax(c) for c in caveats), mac)


def _unique_members(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object hook that refuses repeated member names."""
    names = [name for name, _ in pairs]
    if len(set(names)) != len(names):
        raise ValueError("repeated member")
    return dict(pairs)


# --- verification and authorization -----------------------------------------------------------

def verify_capability(capability: Capability, root_key: bytes, keystore_id: str) -> list[bytes]:
    """Step 9 (LOCK-11): recompute the chain from the root key; compare in constant time;
    the links, first to last, for the revocation and delegation checks.

    A capability for another keystore is a binding failure; a changed, removed, reordered
    or added-without-the-chain caveat is a MAC failure."""
    if capability.keystore_id != keystore_id:
        raise BindingError("capability is for another keystore", requirement="LOCK-11")
    links = capability_chain(root_key, keystore_id, capability.caveats)
    if not primitives.constant_time_equal(links[-1], capability.mac):
        raise MacError("capability MAC does not verify", requirement="LOCK-11")
    return links


def not_after(capability: Capability) -> int | None:
    """The earliest exp caveat of a capability (None if it has none)."""
    times = [parse_caveat(c).not_after for c in capability.caveats
             if c.startswith(CAVEAT_EXP + "=")]
    return min(times) if times else None


def authorize(capability: Capability, operation: str, key_id: str | None, now: int) -> None:
    """Step 9 (LOCK-12, LOCK-23): every caveat must allow the request.

    exp=T    there is at least one (authz otherwise); now < T, a passed expiry reported
             first (ExpiredError), before any other caveat is evaluated;
    ops=...  the operation is listed;
    key=K    the operation is key-scoped and on key K;
    holder, delegate: parsed here, evaluated by `holder_of`;
    anything else denies (AuthzError)."""
    if operation not in ll.OPERATIONS:
        raise ValueError(f"unknown operation {operation!r}")
    if (operation in ll.KEY_OPERATIONS) != (key_id is not None):
        raise ValueError("key-scoped operations name a key; keystore operations do not")
    expiry = not_after(capability)
    if expiry is None:
        raise AuthzError("capability has no expiry", requirement="LOCK-23")
    if not now < expiry:
        raise ExpiredError("capability has expired", requirement="LOCK-12")
    for caveat in capability.caveats:
        parsed = parse_caveat(caveat)
        if parsed.name == CAVEAT_OPS and operation not in parsed.operations:
            raise AuthzError(f"capability does not grant {operation}", requirement="LOCK-12")
        if parsed.name == CAVEAT_KEY and key_id != parsed.key_id:
            raise AuthzError("capability is restricted to another key", requirement="LOCK-12")


def holder_of(capability: Capability, links: Sequence[bytes]) -> bytes | None:
    """Step 9 (LOCK-25, LOCK-27): the key that must sign requests made with this
    capability, or None for a bearer capability.

    A holder caveat binds an unbound capability; a second holder caveat denies (authz). A
    delegate caveat needs a holder and the holder's signature over the link before it
    (class signature); it makes the delegate the holder."""
    holder: bytes | None = None
    for index, caveat in enumerate(capability.caveats):
        parsed = parse_caveat(caveat)
        if parsed.name == CAVEAT_HOLDER:
            if holder is not None:
                raise AuthzError("a bound capability changes holder only by delegation",
                                 requirement="LOCK-25")
            holder = parsed.public_key
        elif parsed.name == CAVEAT_DELEGATE:
            if holder is None:
                raise AuthzError("a delegate caveat needs a holder", requirement="LOCK-27")
            message = delegation_message(capability.keystore_id, links[index],
                                         parsed.public_key)
            try:
                primitives.ed25519_verify(holder, message, parsed.signature,
                                          requirement="LOCK-27")
            except SpecError as exc:
                raise SignatureError("the delegation is not signed by the holder",
                                     requirement="LOCK-27") from exc
            holder = parsed.public_key
    return holder


def revocation_id(keystore_id: str, link: bytes) -> bytes:
    """Step 9 (LOCK-24): SHA-256(ctx("capability-revocation", keystore_id, link)). A server
    stores this, never the link, which is a bearer credential."""
    return primitives.sha256(labelled_context(
        "capability-revocation", check_identifier(keystore_id, "keystore_id"), link))


def revocation_ids(keystore_id: str, links: Sequence[bytes]) -> list[bytes]:
    """Step 9 (LOCK-24): the revocation ids of every link after mac_0 (mac_0 is no
    capability: every capability has at least the root's exp caveat)."""
    return [revocation_id(keystore_id, link) for link in links[1:]]


def check_not_revoked(ids: Sequence[bytes], revoked: frozenset[bytes] | set[bytes]) -> None:
    """Step 9 (LOCK-24): refuse a capability any of whose links is revoked."""
    if any(i in revoked for i in ids):
        raise AuthzError("the capability, or one it was attenuated from, is revoked",
                         requirement="LOCK-24")


def is_attenuation_of(descendant: Capability, ancestor: Capability) -> bool:
    """Step 9 (LOCK-24, LOCK-28): both verified capabilities of one keystore, the
    descendant's caveats beginning with all of the ancestor's (equal counts as one)."""
    depth = len(ancestor.caveats)
    return (descendant.keystore_id == ancestor.keystore_id
            and descendant.caveats[:depth] == ancestor.caveats)


def check_may_act_on(acting: Capability, target: Capability, *, requirement: str) -> None:
    """LOCK-24, LOCK-28: one may revoke, or ask a grant for, only a capability attenuated
    from one's own (or one's own)."""
    if not is_attenuation_of(target, acting):
        raise AuthzError("the capability is not attenuated from the caller's",
                         requirement=requirement)


# --- holder binding: the request signature ---------------------------------------------------

@dataclass(frozen=True)
class NonceClaim:
    """What a server must remember to refuse a replay (LOCK-26): the nonce id, until
    `keep_until` (after which the created window refuses the request anyway)."""

    nonce_id: bytes
    keep_until: int


def nonce_id(holder: bytes, nonce: str) -> bytes:
    """LOCK-26: SHA-256(ctx("request-nonce", holder key, nonce)), per holder key."""
    return primitives.sha256(labelled_context("request-nonce", holder, nonce.encode("ascii")))


def required_components(request: http_signatures.Request) -> tuple[str, ...]:
    """LOCK-25: what the signature must cover; the body through Content-Digest."""
    return REQUIRED_COMPONENTS + ((BODY_COMPONENT,) if request.has_body() else ())


def check_signature_params(entry: http_signatures.SignatureInput, holder: bytes,
                           now: int) -> str:
    """LOCK-25, LOCK-26: the parameters of the holder's signature; returns its nonce.

    created   required; now - 300 <= created <= now + 60 (expired);
    expires   optional; now < expires (expired);
    nonce     required, 22..64 base64url characters (authz);
    keyid     required, the holder key in base64url (binding);
    alg       optional, "ed25519" (authz);
    tag       required, "keyflows-capability" (authz); no other parameter (authz)."""
    names = {k for k, _ in entry.params}
    if not names <= SIGNATURE_PARAMS:
        raise AuthzError("the signature has an unknown parameter", requirement="LOCK-25")
    tag, alg = entry.param("tag"), entry.param("alg")
    if tag != SIGNATURE_TAG or (alg is not None and alg != http_signatures.ALG_ED25519):
        raise AuthzError("the signature's tag or alg is not keyflows-capability / ed25519",
                         requirement="LOCK-25")
    created, expires = entry.param("created"), entry.param("expires")
    # A boolean is an int to Python; ?1 / ?0 read as 1 / 0 lie outside every window.
    if not isinstance(created, int):
        raise AuthzError("the signature has no created time", requirement="LOCK-25")
    if not now - SIGNATURE_MAX_AGE <= created <= now + SIGNATURE_MAX_SKEW:
        raise ExpiredError("the signature's created time is outside the window",
                           requirement="LOCK-26")
    if expires is not None and (not isinstance(expires, int) or not now < expires):
        raise ExpiredError("the signature has expired", requirement="LOCK-26")
    nonce = entry.param("nonce")
    if not isinstance(nonce, str) or not _NONCE.match(nonce):
        raise AuthzError("the signature has no well-formed nonce", requirement="LOCK-26")
    if entry.param("keyid") != b64url_encode(holder):
        raise BindingError("the signature's keyid is not the capability's holder",
                           requirement="LOCK-25")
    return nonce


def check_request_signature(request: http_signatures.Request, holder: bytes, now: int
                            ) -> NonceClaim:
    """Step 9 (LOCK-25, LOCK-26): the request carries a Signature-Input / Signature pair
    labelled "kfc" by the holder's key, covering @method, @authority, @path, @query,
    Authorization and, with a body, a matching Content-Digest."""
    input_lines, signature_lines = (request.field_values("signature-input"),
                                    request.field_values("signature"))
    if not input_lines or not signature_lines:
        raise AuthzError("the request is not signed", requirement="LOCK-25")
    inputs = http_signatures.parse_signature_input(input_lines)
    signatures = http_signatures.parse_signature(signature_lines)
    entry, signature = inputs.get(SIGNATURE_LABEL), signatures.get(SIGNATURE_LABEL)
    if entry is None or signature is None:
        raise AuthzError('the request has no signature labelled "kfc"', requirement="LOCK-25")
    missing = [c for c in required_components(request) if c not in entry.components]
    if missing:
        raise AuthzError(f"the signature does not cover {', '.join(missing)}",
                         requirement="LOCK-25")
    nonce = check_signature_params(entry, holder, now)
    if BODY_COMPONENT in entry.components and request.body is not None:
        check_body_digest(request)
    http_signatures.verify_ed25519(holder, request, entry, signature, requirement="LOCK-25")
    created = entry.param("created")
    assert isinstance(created, int)
    return NonceClaim(nonce_id(holder, nonce), created + SIGNATURE_MAX_AGE)


def check_body_digest(request: http_signatures.Request) -> None:
    """LOCK-25: the body a signed request carries is the one its Content-Digest names."""
    assert request.body is not None
    http_signatures.check_content_digest(request.field_values(BODY_COMPONENT), request.body,
                                         requirement="LOCK-25")


def check_signed_body(authorized: Authorized, request: http_signatures.Request) -> None:
    """Step 9 (LOCK-25), once the body is read: a server checks the holder's signature
    before reading the body (API-50), then that the body matches the signed
    Content-Digest. Nothing to do for a bearer capability."""
    if authorized.holder is not None and request.has_body():
        check_body_digest(request)


def sign_request(seed: bytes, request: http_signatures.Request, *, created: int, nonce: str,
                 with_alg: bool = True) -> dict[str, str]:
    """The holder's side of LOCK-25: the Signature-Input and Signature fields (and the
    Content-Digest the signature covers, for a request with a body)."""
    headers: dict[str, str] = {}
    if request.body:
        headers["content-digest"] = http_signatures.content_digest(request.body)
        request = http_signatures.Request(
            request.method, request.authority, request.path, request.query,
            (*request.headers, ("content-digest", headers["content-digest"])), request.body,
            request.scheme)
    params: list[tuple[str, Any]] = [("created", created), ("nonce", nonce),
                                     ("keyid", b64url_encode(primitives.ed25519_public_key(
                                         seed)))]
    if with_alg:
        params.append(("alg", http_signatures.ALG_ED25519))
    params.append(("tag", SIGNATURE_TAG))
    entry = http_signatures.SignatureInput(required_components(request), tuple(params))
    signature = http_signatures.sign_ed25519(seed, request, entry)
    headers.update(http_signatures.signature_fields(SIGNATURE_LABEL, entry, signature))
    return headers


# --- the whole check, as a server runs it --------------------------------------------------

@dataclass(frozen=True)
class Authorized:
    """A capability that passed steps 9's pure checks. The server still refuses it if a
    revocation id is in its store (LOCK-24) or the nonce was seen (LOCK-26)."""

    capability: Capability
    links: tuple[bytes, ...]
    revocation_ids: tuple[bytes, ...]
    holder: bytes | None
    nonce: NonceClaim | None


def check_capability(text: object, root_key: bytes, keystore_id: str, operation: str,
                     key_id: str | None, now: int,
                     request: http_signatures.Request | None = None) -> Authorized:
    """Step 9 as a server runs it, in this order: decode, the keystore and the chain
    (LOCK-11), the caveats (LOCK-12, LOCK-23), the holder (LOCK-25, LOCK-27) and, for a
    bound capability, the request's signature (LOCK-25, LOCK-26). Without `request`, a
    bound capability is refused (it cannot be checked)."""
    capability = decode_capability(text)
    links = verify_capability(capability, root_key, keystore_id)
    authorize(capability, operation, key_id, now)
    holder = holder_of(capability, links)
    claim = None
    if holder is not None:
        if request is None:
            raise AuthzError("a bound capability needs a signed request", requirement="LOCK-25")
        claim = check_request_signature(request, holder, now)
    return Authorized(capability, tuple(links), tuple(revocation_ids(keystore_id, links)),
                      holder, claim)


def verified_target(text: object, root_key: bytes, keystore_id: str) -> Capability:
    """LOCK-24, LOCK-28: a capability named in a request body (to revoke, or to grant an
    unlock for) must decode and verify for this keystore (class as in step 9)."""
    capability = decode_capability(text)
    verify_capability(capability, root_key, keystore_id)
    return capability


# --- step 11: unlock grants ----------------------------------------------------------------

GRANT_KEY_LEN = 32


def new_grant_key(random: RandomSource) -> bytes:
    """Step 1 (LOCK-28): a "shares" keystore's unlock-grant key, 32 random bytes, kept
    only sealed under the server lock."""
    return random(GRANT_KEY_LEN)


UNLOCK_BY_SHARE = "share"
UNLOCK_BY_GRANT = "grant"


def unlock_method(share_values: Sequence[str], grant_values: Sequence[str]) -> str:
    """Step 11 (LOCK-28): a request opens a "shares" lock with the user's share or with an
    unlock grant, one field line of one of them; anything else is a share failure."""
    if not grant_values:
        return UNLOCK_BY_SHARE
    if share_values:
        raise ShareError("a share and an unlock grant together", requirement="LOCK-28")
    if len(grant_values) != 1:
        raise ShareError("one Unlock-Grant field line", requirement="LOCK-28")
    return UNLOCK_BY_GRANT


def check_grantable(scenario: str) -> None:
    """Step 11 (LOCK-28): only a "shares" keystore has a lock to grant (class params)."""
    if scenario != ll.SCENARIO_SHARES:
        raise ParamsError("only a shares keystore takes unlock grants", requirement="LOCK-28")


def grant_aad(keystore_id: str, depth: int, link: bytes, not_after_time: int) -> bytes:
    """Step 11 (LOCK-28): ctx("unlock-grant", keystore_id, u8(depth), link, u64be(T))."""
    return labelled_context("unlock-grant", check_identifier(keystore_id, "keystore_id"),
                            bytes([depth]), link, u64be(not_after_time))


def grant_not_after(capability: Capability, now: int) -> int:
    """Step 11 (LOCK-28): a grant lasts as long as its capability (its earliest exp)."""
    expiry = not_after(capability)
    if expiry is None or not now < expiry:
        raise ExpiredError("the capability has expired", requirement="LOCK-28")
    return expiry


def make_unlock_grant(grant_key: bytes, nonce: bytes, lock_key: bytes, keystore_id: str,
                      capability: Capability, now: int) -> str:
    """Step 11 (LOCK-28): "kfg1." || base64url(u8 depth || u64be not_after || nonce (12)
    || AES-256-GCM(grant key, nonce, lock key, AAD) || tag (16)), depth being the
    capability's number of caveats and the AAD naming its last link."""
    if len(lock_key) != ll.LOCK_KEY_LEN:
        raise LengthError("a lock key is 32 bytes", requirement="LOCK-28")
    depth = len(capability.caveats)
    until = grant_not_after(capability, now)
    sealed = ll.seal(grant_key, nonce, lock_key, grant_aad(keystore_id, depth, capability.mac,
                                                           until))
    return GRANT_PREFIX + b64url_encode(bytes([depth]) + u64be(until) + sealed)


def open_unlock_grant(grant_key: bytes, text: object, keystore_id: str,
                      links: Sequence[bytes], now: int) -> bytes:
    """Step 11 (LOCK-28): the lock key in a grant, for a request whose capability has
    these links. Every failure (malformed, expired, for a capability this one was not
    attenuated from, tampered, another keystore) is the share failure of LOCK-6."""
    try:
        if not isinstance(text, str) or not text.startswith(GRANT_PREFIX):
            raise DecodeError("not a kfg1 unlock grant", requirement="LOCK-28")
        raw = b64url_decode(text[len(GRANT_PREFIX):], requirement="LOCK-28")
        if len(raw) != _GRANT_LEN:
            raise LengthError("an unlock grant is 69 bytes", requirement="LOCK-28")
        depth, until = raw[0], int.from_bytes(raw[1:9], "big")
        if not now < until:
            raise ExpiredError("the unlock grant has expired", requirement="LOCK-28")
        if not 1 <= depth < len(links):
            raise BindingError("the grant is for another capability", requirement="LOCK-28")
        return ll.open_sealed(grant_key, raw[9:], grant_aad(keystore_id, depth, links[depth],
                                                            until), requirement="LOCK-28")
    except SpecError as exc:
        raise ShareError("the unlock grant does not open this keystore",
                         requirement="LOCK-28") from exc
