"""Vectors of the lock-layering flow: profile v1 and the trustbloc compatibility profile.

Profile v1, one operation per layer, every random byte an input:

  split               Shamir split from given polynomials and x-coordinates (thresholds
                      2-of-2 .. 2-of-255, sequential and random x), every share
  combine             any threshold subset, in any order, back to the secret
  unlock              account share + user share -> combined secret -> lock check -> lock key
  server-lock-seal    the server lock's blob of each purpose
  server-lock-open    and its consumer side
  working-key-seal    one version of a working key under the user lock, every key type
  working-key-open    and its consumer side (a record of one or two versions)
  layers              a whole keystore, both scenarios: every record of every layer
  wrap / unwrap       HPKE base mode to an X25519 recipient
  sign                Ed25519 of a message outside keyflows' signed contexts
  computemac / verifymac  HMAC-SHA256 of an hmac-sha256 key
  and, from keyflows.vectors.lock_layering_capability, capabilities, authorization,
  revocation, delegation, RFC 9421 request signatures and unlock grants, and from
  keyflows.vectors.lock_layering_edv the encrypted data vault's documents (step 12)

Negatives are mutation families, each with its failure class and the step that rejects:
split parameters (params); malformed share sets (share); wrong, foreign, duplicated,
missing, malformed and too few shares and a tampered or moved lock check (share); bit flips,
truncation, moves to another keystore, purpose, key id, type or public key, and a wrong
server lock or lock key at each layer (aead, length, decode); forged, foreign, widened,
expired and unknown-caveat capabilities (mac, binding, authz, expired, decode); low-order
and non-canonical points and tampered wraps (point, aead).

Profile trustbloc (LOCK-8): Vault-layout shares with the random x-coordinates of the
pinned Vault release, the lock key HKDF-SHA256(secret, empty salt, empty info), and
AES-256-GCM text as padded base64url(nonce || ciphertext || tag) at both layers.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from keyflows.spec import hpke, primitives, shamir
from keyflows.spec import lock_layering as ll
from keyflows.spec import lock_layering_capability as cap
from keyflows.spec.drbg import Drbg
from keyflows.spec.encoding import b64url_decode, b64url_encode, labelled_context
from keyflows.spec.errors import ParamsError
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

FLOW = "lock-layering"

OP_SPLIT = "split"
OP_COMBINE = "combine"
OP_UNLOCK = "unlock"
OP_SL_SEAL = "server-lock-seal"
OP_SL_OPEN = "server-lock-open"
OP_WK_SEAL = "working-key-seal"
OP_WK_OPEN = "working-key-open"
OP_LAYERS = "layers"
OP_WRAP = "wrap"
OP_UNWRAP = "unwrap"
OP_SIGN = "sign"
OP_COMPUTEMAC = "computemac"
OP_VERIFYMAC = "verifymac"
OP_TB_SPLIT = "trustbloc-split"
OP_TB_LOCK_KEY = "trustbloc-lock-key"
OP_TB_SEAL = "trustbloc-seal"
OP_TB_OPEN = "trustbloc-open"

STEP_SPLIT, STEP_COMBINE, STEP_SERVER_LOCK, STEP_LOCK_CHECK = "2", "3", "5", "6"
STEP_WORKING_KEY, STEP_CAPABILITY, STEP_OPERATIONS = "7", "9", "10"
COMPAT = "compat"

KS = "ks-3Xq9vB2mWk7LpRt0aYc1Qd"
OTHER_KS = "ks-other-keystore"
CONTROLLER = "alice"

NOTES_V1: dict[str, Flag] = {
    "Valid": Flag("Well-formed input that every party accepts.",
                  "Accept; recompute every intermediate and output."),
    "SequentialX": Flag("x-coordinates 1..parts, the v1 layout (current Vault).",
                        "Produce and accept these shares byte for byte."),
    "RandomX": Flag("x-coordinates drawn from a random permutation of 1..255 (Vault 2017-2024).",
                    "Accept: the x-coordinates are inputs, any distinct non-zero ones combine."),
    "Reordered": Flag("The shares arrive in another order than the split made them.",
                      "Accept: combining is independent of the order (LOCK-3)."),
    "ParamsOutOfRange": Flag("A split parameter or polynomial breaks LOCK-2.",
                             "Refuse to split (failure class params)."),
    "DuplicateX": Flag("Two shares carry the same x-coordinate.",
                       "Reject (failure class share, LOCK-3)."),
    "ZeroX": Flag("A share carries x-coordinate 0, which would hold the secret itself.",
                  "Reject (failure class share, LOCK-3)."),
    "MalformedShare": Flag("A share is missing, not strict base64url, too short or too long, "
                           "or the shares differ in length.",
                           "Reject as a share failure, like a wrong share (LOCK-6, LOCK-10)."),
    "WrongShare": Flag("A share with one changed byte.",
                       "Reject at the lock check (failure class share, LOCK-6)."),
    "ForeignShare": Flag("A share of another user's secret.",
                         "Reject at the lock check (failure class share, LOCK-6)."),
    "TooFewShares": Flag("Fewer shares than the split's threshold: they combine to another "
                         "secret.", "Reject at the lock check (failure class share)."),
    "TamperedCheck": Flag("The stored lock check is changed or belongs to another keystore.",
                          "Reject (failure class share): the shares do not open it."),
    "BitFlip": Flag("One bit of a protected value is flipped.",
                    "Reject at the check protecting it (aead for sealed values, mac for "
                    "capabilities)."),
    "Truncated": Flag("A sealed value is shorter than its layout allows.",
                      "Reject (failure class length)."),
    "Moved": Flag("An intact value is used for another keystore, purpose, key id, key type "
                  "or public key.", "Reject: the AAD binds it to its context (aead)."),
    "WrongKey": Flag("The value is opened under another server lock, lock key, root key or "
                     "recipient key.", "Reject (failure class aead or mac)."),
    "UnknownMember": Flag("A record carries a member the format does not define.",
                          "Reject (failure class decode)."),
    "Forged": Flag("A capability whose caveats were dropped, reordered, changed or widened "
                   "without the chain.", "Reject (failure class mac, LOCK-11)."),
    "ForeignKeystore": Flag("A capability of another keystore.",
                            "Reject (failure class binding, LOCK-11)."),
    "NotGranted": Flag("A verified capability whose caveats do not allow the request.",
                       "Deny (failure class authz, LOCK-12)."),
    "Expired": Flag("A verified capability whose exp caveat has passed (now >= exp).",
                    "Deny (failure class expired, LOCK-12)."),
    "UnknownCaveat": Flag("A caveat the server does not understand, with a valid chain.",
                          "Deny (failure class authz, LOCK-12)."),
    "MalformedCapability": Flag("A capability that does not decode.",
                                "Reject (failure class decode or length, LOCK-11)."),
    "NoExpiry": Flag("A capability with a valid chain and no exp caveat.",
                     "Reject (failure class authz, LOCK-23): every capability expires."),
    "Revoked": Flag("A capability one of whose links (its own or an ancestor's) is revoked.",
                    "Reject (failure class authz, LOCK-24)."),
    "Unsigned": Flag("A capability bound to a holder, on a request its holder did not sign "
                     "or with a delegation the capability cannot carry.",
                     "Reject (failure class authz, LOCK-25, LOCK-27)."),
    "External": Flag("A published known-answer example (RFC 9421 appendix B.2.6).",
                     "Reproduce it byte for byte."),
    "KeyflowsContext": Flag("A message that begins with keyflows-v1 || 0x00, the prefix of "
                            "every statement keyflows itself signs.",
                            "Refuse to sign it (failure class params, LOCK-20)."),
    "NoSuchVersion": Flag("An operation names a version the key does not have.",
                          "Reject (failure class params, LOCK-22)."),
    "LowOrderPoint": Flag("An X25519 key of low order.", "Reject (failure class point)."),
    "NonCanonicalPoint": Flag("An X25519 key with u >= 2^255 - 19 or the top bit set.",
                              "Reject (failure class point)."),
}

NOTES_TRUSTBLOC: dict[str, Flag] = {
    "Compat": Flag("The original trustbloc KMS bytes (LOCK-8): Vault-layout shares, "
                   "HKDF-SHA256 with empty salt and info, padded base64url(nonce || ct || tag).",
                   "An implementation of the trustbloc profile produces and opens exactly "
                   "this."),
    "RandomX": Flag("x-coordinates from a random permutation of 1..255, as the Vault release "
                    "trustbloc pinned drew them.", "Accept: the x-coordinates are inputs."),
    "Padded": Flag("The ciphertext length is not a multiple of 3: its text ends in '='.",
                   "Produce and accept the padding (Go base64.URLEncoding)."),
    "Unpadded": Flag("The '=' padding is stripped (raw base64url).",
                     "Reject (failure class decode): the profile is padded."),
    "NonCanonicalBase64": Flag("The standard alphabet ('+', '/') or embedded whitespace.",
                               "Reject (failure class decode)."),
    "BitFlip": Flag("One bit of the nonce, ciphertext or tag is flipped.",
                    "Reject (failure class aead)."),
    "WrongKey": Flag("The text is opened under another key.", "Reject (failure class aead)."),
    "Truncated": Flag("Fewer bytes than nonce and tag.", "Reject (failure class length)."),
    "ZeroLeading": Flag("A share made by the pinned Vault release from a polynomial whose "
                        "leading coefficient is zero: that byte of every 2-of-2 share equals "
                        "the secret byte. v1 never splits so (LOCK-2).",
                        "Accept in the profile: the original produced and combined such "
                        "shares."),
    "NotAKey": Flag("The lock layer holds a plaintext that is not 32 bytes.",
                    "Reject (failure class length): the HKDF lock seals a 32-byte key."),
}


def _drbg(name: str) -> Drbg:
    return Drbg(f"{FLOW}/v1/{name}")


def _flip(data: bytes, index: int, bit: int = 0) -> bytes:
    out = bytearray(data)
    out[index] ^= 1 << bit
    return bytes(out)


def _case(case_id: str, comment: str, flags: Sequence[str], requirements: Sequence[str],
          operation: str, inputs: Mapping[str, Any], *, intermediates: Mapping[str, Any]
          | None = None, outputs: Mapping[str, Any] | None = None,
          failure: Failure | None = None) -> Case:
    return Case(id=case_id, comment=comment, flags=tuple(flags),
                requirements=tuple(requirements), operation=operation, inputs=dict(inputs),
                intermediates=dict(intermediates or {}), outputs=dict(outputs or {}),
                failure=failure)


# --- split and combine -----------------------------------------------------------------------

@dataclass(frozen=True)
class SplitBase:
    name: str
    secret_len: int
    parts: int
    threshold: int
    random_x: bool
    comment: str


SPLITS = (
    SplitBase("2of2", 32, 2, 2, False, "the v1 user lock: a 32-byte secret split 2-of-2"),
    SplitBase("2of3", 32, 3, 2, False, "2-of-3 of a 32-byte secret"),
    SplitBase("3of5", 32, 5, 3, False, "3-of-5 of a 32-byte secret"),
    SplitBase("5of5", 16, 5, 5, False, "5-of-5 of a 16-byte secret (degree-4 polynomials)"),
    SplitBase("4of7-random-x", 32, 7, 4, True, "4-of-7 with x-coordinates from a random "
              "permutation, as Vault 2017-2024 laid them out"),
    SplitBase("2of255", 4, 255, 2, False, "2-of-255 of a 4-byte secret: every x from 1 to 255"),
    SplitBase("2of2-one-byte", 1, 2, 2, True, "2-of-2 of a 1-byte secret, random x"),
)


def _split(base: SplitBase) -> tuple[bytes, shamir.Split]:
    rnd = _drbg(f"split/{base.name}")
    secret = rnd(base.secret_len)
    xs = shamir.vault_2017_x_coordinates(base.parts, rnd) if base.random_x else None
    return secret, shamir.split(secret, base.parts, base.threshold, rnd, xs)


def _split_inputs(secret: bytes, made: shamir.Split, threshold: int) -> dict[str, Any]:
    return {"secret": secret, "threshold": threshold, "x_coordinates": made.x_coordinates,
            "coefficients": [bytes(p[1:]) for p in made.coefficients]}


def _split_cases() -> list[Case]:
    cases = []
    for base in SPLITS:
        secret, made = _split(base)
        flag = "RandomX" if base.random_x else "SequentialX"
        cases.append(_case(f"lock-v1-split/{base.name}", base.comment, ("Valid", flag),
                           ("LOCK-2",), OP_SPLIT, _split_inputs(secret, made, base.threshold),
                           outputs={"shares": made.shares}))
    secret, made = _split(SPLITS[1])
    good = _split_inputs(secret, made, 2)
    bad: list[tuple[str, str, dict[str, Any]]] = [
        ("threshold-1", "threshold 1: one share would be the secret",
         dict(good, threshold=1, coefficients=[b""] * len(secret))),
        ("threshold-above-parts", "threshold 4 with 3 x-coordinates",
         dict(good, threshold=4, coefficients=[b"\x01\x02\x03"] * len(secret))),
        ("parts-256", "256 x-coordinates: more than GF(2^8) has non-zero elements",
         dict(good, x_coordinates=[*list(range(1, 256)), 1])),
        ("empty-secret", "an empty secret", dict(good, secret=b"", coefficients=[])),
        ("duplicate-x", "x-coordinates 1, 2, 1", dict(good, x_coordinates=[1, 2, 1])),
        ("zero-x", "x-coordinate 0 would evaluate to the secret",
         dict(good, x_coordinates=[0, 1, 2])),
        ("x-256", "x-coordinate 256 is not a field element", dict(good, x_coordinates=[1, 2, 256])),
        ("zero-leading-coefficient", "a polynomial of lower degree than threshold - 1",
         dict(good, coefficients=[b"\x00", *good["coefficients"][1:]])),
    ]
    for slug, comment, inputs in bad:
        cases.append(_case(f"lock-v1-split/{slug}", comment, ("ParamsOutOfRange",),
                           ("LOCK-2",), OP_SPLIT, inputs,
                           failure=Failure("params", STEP_SPLIT)))
    return cases


def _combine_cases() -> list[Case]:
    cases = []
    picks = {"2of2": [[0, 1], [1, 0]], "2of3": [[2, 0], [1, 2], [0, 1, 2]],
             "3of5": [[4, 1, 3], [0, 2, 4, 1], [3, 2, 1, 0, 4]], "5of5": [[4, 3, 2, 1, 0]],
             "4of7-random-x": [[6, 0, 3, 5], [1, 2, 3, 4, 5, 6, 0]],
             "2of255": [[254, 0], [127, 128]], "2of2-one-byte": [[1, 0]]}
    for base in SPLITS:
        secret, made = _split(base)
        for order in picks[base.name]:
            natural = order == sorted(order)
            flags = ("Valid",) if natural else ("Valid", "Reordered")
            slug = "-".join(str(i) for i in order)
            cases.append(_case(
                f"lock-v1-combine/{base.name}/{slug}",
                f"{base.comment}: shares {order}" + ("" if natural else ", reordered"),
                flags, ("LOCK-3",), OP_COMBINE, {"shares": [made.shares[i] for i in order]},
                outputs={"secret": secret}))
    _, made = _split(SPLITS[1])
    s = made.shares
    same_x = s[1][:-1] + bytes([s[0][-1]])
    bad: list[tuple[str, str, str, list[bytes]]] = [
        ("same-share-twice", "one share given twice", "DuplicateX", [s[0], s[0]]),
        ("duplicate-x", "two different shares with the same x", "DuplicateX", [s[0], same_x]),
        ("zero-x", "a share with x = 0", "ZeroX", [s[0][:-1] + b"\x00", s[1]]),
        ("one-share", "a single share", "MalformedShare", [s[0]]),
        ("no-shares", "no share at all", "MalformedShare", []),
        ("unequal-lengths", "shares of unequal length", "MalformedShare", [s[0], s[1][1:]]),
        ("one-byte-shares", "shares of one byte (an x and no y)", "MalformedShare",
         [s[0][-1:], s[1][-1:]]),
    ]
    for slug, comment, flag, shares in bad:
        cases.append(_case(f"lock-v1-combine/{slug}", comment, (flag,), ("LOCK-3",),
                           OP_COMBINE, {"shares": shares},
                           failure=Failure("share", STEP_COMBINE)))
    return cases


# --- unlock ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Lock:
    secret: bytes
    account: bytes
    user: bytes
    lock_key: bytes
    check: bytes


def _lock(name: str, keystore_id: str = KS) -> Lock:
    rnd = _drbg(f"unlock/{name}")
    secret = rnd(ll.SECRET_LEN)
    account, user = ll.split_user_secret(secret, rnd)
    lock_key = ll.lock_key_from_secret(secret, keystore_id)
    return Lock(secret, account, user, lock_key, ll.lock_check_from_secret(secret, keystore_id))


def _unlock_inputs(account: str | None, user: str | None, check: bytes,
                   keystore_id: str = KS) -> dict[str, Any]:
    return {"keystore_id": keystore_id, "account_share": account, "user_share": user,
            "lock_check": check}


def _unlocked(lock: Lock, keystore_id: str = KS) -> dict[str, Any]:
    return {"secret": lock.secret, "lock_check_info": ll.lock_check_info(keystore_id),
            "lock_key_info": ll.lock_key_info(keystore_id)}


def _unlock_cases() -> list[Case]:
    main, other = _lock("alice"), _lock("bob")
    a, u = b64url_encode(main.account), b64url_encode(main.user)
    cases = [
        _case("lock-v1-unlock/alice", "the account share and the user share open the user lock",
              ("Valid",), ("LOCK-3", "LOCK-4", "LOCK-6", "LOCK-10"), OP_UNLOCK,
              _unlock_inputs(a, u, main.check), intermediates=_unlocked(main),
              outputs={"lock_key": main.lock_key}),
        _case("lock-v1-unlock/alice-reordered", "the same shares, the user's first",
              ("Valid", "Reordered"), ("LOCK-3", "LOCK-4", "LOCK-6"), OP_UNLOCK,
              _unlock_inputs(u, a, main.check), intermediates=_unlocked(main),
              outputs={"lock_key": main.lock_key}),
    ]
    three = shamir.split(main.secret, 3, 3, _drbg("unlock/alice-3of3"))
    reject = Failure("share", STEP_LOCK_CHECK)
    bad: list[tuple[str, str, str, tuple[str, ...], str | None, str | None, bytes]] = [
        ("missing-user-share", "no Secret-Share header", "MalformedShare", ("LOCK-10", "LOCK-6"),
         a, None, main.check),
        ("empty-user-share", "an empty Secret-Share header", "MalformedShare",
         ("LOCK-10", "LOCK-6"), a, "", main.check),
        ("user-share-not-base64url", "a user share outside the base64url alphabet",
         "MalformedShare", ("LOCK-10", "LOCK-6"), a, u[:-1] + "*", main.check),
        ("user-share-padded", "a user share with a '=' appended", "MalformedShare",
         ("LOCK-10", "LOCK-6"), a, u + "=", main.check),
        ("user-share-standard-alphabet", "a user share in the standard base64 alphabet",
         "MalformedShare", ("LOCK-10", "LOCK-6"), a,
         u.replace("-", "+").replace("_", "/") if ("-" in u or "_" in u) else u + "+",
         main.check),
        ("user-share-short", "a user share one byte short", "MalformedShare",
         ("LOCK-10", "LOCK-6"), a, b64url_encode(main.user[:-1]), main.check),
        ("user-share-long", "a user share one byte long", "MalformedShare",
         ("LOCK-10", "LOCK-6"), a, b64url_encode(main.user + b"\x00"), main.check),
        ("missing-account-share", "the account server holds no share", "MalformedShare",
         ("LOCK-10", "LOCK-6"), None, u, main.check),
        ("wrong-share-y", "the user share with one y byte changed", "WrongShare", ("LOCK-6",),
         a, b64url_encode(_flip(main.user, 0)), main.check),
        ("wrong-share-x", "the user share with its x byte changed to 3", "WrongShare",
         ("LOCK-6",), a, b64url_encode(main.user[:-1] + b"\x03"), main.check),
        ("foreign-user-share", "another user's share with the right account share",
         "ForeignShare", ("LOCK-6",), a, b64url_encode(other.user), main.check),
        ("foreign-account-share", "the right user share with another user's account share",
         "ForeignShare", ("LOCK-6",), b64url_encode(other.account), u, main.check),
        ("duplicate-x", "the account share sent as the user share", "DuplicateX",
         ("LOCK-3", "LOCK-6"), a, a, main.check),
        ("too-few-shares", "two shares of a 3-of-3 split of the same secret", "TooFewShares",
         ("LOCK-6",), b64url_encode(three.shares[0]), b64url_encode(three.shares[1]),
         main.check),
        ("tampered-lock-check", "the stored lock check with one bit flipped", "TamperedCheck",
         ("LOCK-6",), a, u, _flip(main.check, 31, 7)),
        ("moved-lock-check", "the lock check of the same shares for another keystore",
         "TamperedCheck", ("LOCK-6",), a, u, _lock("alice", OTHER_KS).check),
    ]
    for slug, comment, flag, reqs, account, user, check in bad:
        cases.append(_case(f"lock-v1-unlock/{slug}", comment, (flag,), reqs, OP_UNLOCK,
                           _unlock_inputs(account, user, check), failure=reject))
    return cases


# --- the server lock -------------------------------------------------------------------------

def _server_lock_material(name: str, purpose: str) -> tuple[bytes, bytes, bytes, bytes]:
    rnd = _drbg(f"server-lock/{name}")
    master, nonce, plaintext = rnd(32), rnd(12), rnd(32)
    return master, nonce, plaintext, ll.server_lock_seal(master, nonce, plaintext, KS, purpose)


def _server_lock_cases() -> list[Case]:
    cases = []
    for purpose in ll.SERVER_LOCK_PURPOSES:
        master, nonce, plaintext, sealed = _server_lock_material(purpose, purpose)
        inputs = {"master_key": master, "keystore_id": KS, "purpose": purpose}
        cases.append(_case(f"lock-v1-server-lock/{purpose}/seal",
                           f"the file server lock seals a {purpose}", ("Valid",), ("LOCK-5",),
                           OP_SL_SEAL, dict(inputs, nonce=nonce, plaintext=plaintext),
                           intermediates={"aad": ll.server_lock_aad(KS, purpose)},
                           outputs={"sealed": sealed}))
        cases.append(_case(f"lock-v1-server-lock/{purpose}/open",
                           f"the file server lock opens a {purpose}", ("Valid",), ("LOCK-5",),
                           OP_SL_OPEN, dict(inputs, sealed=sealed),
                           outputs={"plaintext": plaintext}))
    master, _, _, sealed = _server_lock_material(ll.PURPOSE_USER_LOCK_KEY,
                                                 ll.PURPOSE_USER_LOCK_KEY)
    base = {"master_key": master, "keystore_id": KS, "purpose": ll.PURPOSE_USER_LOCK_KEY,
            "sealed": sealed}
    aead = Failure("aead", STEP_SERVER_LOCK)
    bad: list[tuple[str, str, str, dict[str, Any], Failure]] = [
        ("bitflip-nonce", "bit 0 of the nonce", "BitFlip", {"sealed": _flip(sealed, 0)}, aead),
        ("bitflip-ciphertext", "bit 0 of the first ciphertext byte", "BitFlip",
         {"sealed": _flip(sealed, 12)}, aead),
        ("bitflip-tag", "bit 7 of the last tag byte", "BitFlip",
         {"sealed": _flip(sealed, len(sealed) - 1, 7)}, aead),
        ("other-keystore", "the blob opened for another keystore", "Moved",
         {"keystore_id": OTHER_KS}, aead),
        ("other-purpose", "the user lock key's blob opened as a capability root key", "Moved",
         {"purpose": ll.PURPOSE_CAPABILITY_ROOT_KEY}, aead),
        ("wrong-server-lock", "the blob opened under another master key", "WrongKey",
         {"master_key": _drbg("server-lock/other-master")(32)}, aead),
        ("truncated", "27 bytes: shorter than nonce and tag", "Truncated",
         {"sealed": sealed[:27]}, Failure("length", STEP_SERVER_LOCK)),
    ]
    for slug, comment, flag, change, failure in bad:
        cases.append(_case(f"lock-v1-server-lock/open/{slug}", comment, (flag,), ("LOCK-5",),
                           OP_SL_OPEN, dict(base, **change), failure=failure))
    return cases


# --- working keys ----------------------------------------------------------------------------

def _working_key(key_type: str) -> tuple[bytes, bytes, bytes, ll.WorkingKeyRecord]:
    rnd = _drbg(f"working-key/{key_type}")
    lock_key, nonce = rnd(32), rnd(12)
    material = ll.generate_working_key(key_type, rnd)
    record = ll.make_working_key_record(lock_key, nonce, material, KS, "k1", key_type)
    return lock_key, nonce, material, record


def _rotated(key_type: str) -> tuple[bytes, bytes, bytes, ll.WorkingKeyRecord]:
    """The key of `_working_key` rotated once: (lock key, nonce, material of v2, record)."""
    lock_key, _, _, record = _working_key(key_type)
    rnd = _drbg(f"working-key/{key_type}/v2")
    nonce, material = rnd(12), ll.generate_working_key(key_type, rnd)
    entry = ll.make_key_version(lock_key, nonce, material, KS, "k1", 2, key_type)
    return lock_key, nonce, material, ll.rotated(record, entry)


def _working_key_cases() -> list[Case]:
    cases = []
    for key_type in ll.KEY_TYPES:
        for version, (lock_key, nonce, material, record) in ((1, _working_key(key_type)),
                                                             (2, _rotated(key_type))):
            entry = record.version(version)
            public = entry.public_key
            suffix = "" if version == 1 else "/v2"
            cases.append(_case(
                f"lock-v1-working-key/{key_type}{suffix}/seal", f"version {version} of an "
                f"{key_type} key sealed under the user lock", ("Valid",),
                ("LOCK-7", "LOCK-14", "LOCK-22"), OP_WK_SEAL,
                {"lock_key": lock_key, "nonce": nonce, "material": material, "keystore_id": KS,
                 "key_id": "k1", "version": version, "key_type": key_type},
                intermediates={"public_key": public,
                               "aad": ll.working_key_aad(KS, "k1", version, key_type, public)},
                outputs={"sealed": entry.sealed,
                         "version_record": entry.to_json(key_type)}))
            cases.append(_case(
                f"lock-v1-working-key/{key_type}{suffix}/open", f"version {version} of the "
                f"{key_type} record opens under the user lock", ("Valid",),
                ("LOCK-7", "LOCK-22"), OP_WK_OPEN,
                {"lock_key": lock_key, "record": record.to_json(), "version": version},
                outputs={"material": material}))
    lock_key, _, _, record = _working_key(ll.KEY_ED25519)
    plain = record.to_json()
    sealed = record.current.sealed
    _, _, _, two = _rotated(ll.KEY_ED25519)
    other_public = b64url_encode(primitives.ed25519_public_key(bytes(32)))
    aead = Failure("aead", STEP_WORKING_KEY)
    def version_changed(**change: Any) -> dict[str, Any]:
        return dict(plain, versions=[dict(plain["versions"][0], **change)])

    two_plain = two.to_json()
    swapped = dict(two_plain, versions=[
        dict(two_plain["versions"][0], sealed=two_plain["versions"][1]["sealed"],
             public_key=two_plain["versions"][1]["public_key"]), two_plain["versions"][1]])
    decode = Failure("decode", STEP_WORKING_KEY)
    bad: list[tuple[str, str, str, dict[str, Any], bytes, Failure]] = [
        ("bitflip-nonce", "bit 0 of the nonce", "BitFlip",
         version_changed(sealed=b64url_encode(_flip(sealed, 0))), lock_key, aead),
        ("bitflip-ciphertext", "bit 3 of the 17th ciphertext byte", "BitFlip",
         version_changed(sealed=b64url_encode(_flip(sealed, 28, 3))), lock_key, aead),
        ("bitflip-tag", "bit 0 of the first tag byte", "BitFlip",
         version_changed(sealed=b64url_encode(_flip(sealed, 44))), lock_key, aead),
        ("other-key-id", "the record moved to key id k2", "Moved", dict(plain, key_id="k2"),
         lock_key, aead),
        ("other-keystore", "the record moved to another keystore", "Moved",
         dict(plain, keystore_id=OTHER_KS), lock_key, aead),
        ("other-key-type", "the ed25519 record relabelled x25519", "Moved",
         dict(plain, key_type=ll.KEY_X25519), lock_key, aead),
        ("other-public-key", "the record's public key replaced", "Moved",
         version_changed(public_key=other_public), lock_key, aead),
        ("other-version", "version 2's sealed key and public key filed as version 1",
         "Moved", swapped, lock_key, aead),
        ("wrong-lock-key", "the record opened under another user lock key", "WrongKey", plain,
         _drbg("working-key/other-lock")(32), aead),
        ("truncated", "the sealed value one byte short", "Truncated",
         version_changed(sealed=b64url_encode(sealed[:-1])), lock_key,
         Failure("length", STEP_WORKING_KEY)),
        ("unknown-member", "the record carries a 'material' member", "UnknownMember",
         dict(plain, material=b64url_encode(bytes(32))), lock_key, decode),
        ("versions-out-of-order", "a record whose only version is numbered 2",
         "UnknownMember", version_changed(version=2), lock_key, decode),
    ]
    for slug, comment, flag, record_plain, key, failure in bad:
        reqs = ("LOCK-7", "LOCK-22") if slug in ("other-version", "versions-out-of-order") \
            else ("LOCK-7",)
        cases.append(_case(f"lock-v1-working-key/open/{slug}", comment, (flag,), reqs,
                           OP_WK_OPEN, {"lock_key": key, "record": record_plain, "version": 1},
                           failure=failure))
    cases.append(_case("lock-v1-working-key/open/no-such-version", "version 3 of a key that "
                       "has two", ("NoSuchVersion",), ("LOCK-22",), OP_WK_OPEN,
                       {"lock_key": lock_key, "record": two_plain, "version": 3},
                       failure=Failure("params", STEP_WORKING_KEY)))
    return cases


# --- layers: a whole keystore ----------------------------------------------------------------

def _layers(scenario: str) -> Case:
    rnd = _drbg(f"layers/{scenario}")
    master, root_key, root_nonce = rnd(32), rnd(32), rnd(12)
    inputs: dict[str, Any] = {"scenario": scenario, "keystore_id": KS, "controller": CONTROLLER,
                              "master_key": master, "capability_root_key": root_key,
                              "root_nonce": root_nonce}
    sealed_root = ll.server_lock_seal(master, root_nonce, root_key, KS,
                                      ll.PURPOSE_CAPABILITY_ROOT_KEY)
    intermediates: dict[str, Any] = {
        "root_aad": ll.server_lock_aad(KS, ll.PURPOSE_CAPABILITY_ROOT_KEY)}
    if scenario == ll.SCENARIO_SERVER_HELD:
        lock_key, lock_nonce = rnd(32), rnd(12)
        inputs.update(user_lock_key=lock_key, lock_nonce=lock_nonce)
        sealed_lock = ll.server_lock_seal(master, lock_nonce, lock_key, KS,
                                          ll.PURPOSE_USER_LOCK_KEY)
        intermediates["user_lock_aad"] = ll.server_lock_aad(KS, ll.PURPOSE_USER_LOCK_KEY)
        record = ll.KeystoreRecord(KS, CONTROLLER, scenario, sealed_root,
                                   user_lock_key=sealed_lock)
    else:
        secret = rnd(32)
        account, user = ll.split_user_secret(secret, rnd)
        grant_key, grant_nonce = rnd(32), rnd(12)
        inputs.update(account_share=b64url_encode(account), user_share=b64url_encode(user),
                      unlock_grant_key=grant_key, grant_nonce=grant_nonce)
        lock_key, check = ll.lock_from_new_shares(b64url_encode(account), b64url_encode(user),
                                                  KS)
        intermediates.update(secret=secret, lock_key=lock_key, lock_check=check,
                             grant_aad=ll.server_lock_aad(KS, ll.PURPOSE_UNLOCK_GRANT_KEY))
        record = ll.KeystoreRecord(KS, CONTROLLER, scenario, sealed_root, lock_check=check,
                                   unlock_grant_key=ll.server_lock_seal(
                                       master, grant_nonce, grant_key, KS,
                                       ll.PURPOSE_UNLOCK_GRANT_KEY))
    key_nonce = rnd(12)
    material = ll.generate_working_key(ll.KEY_X25519, rnd)
    inputs.update(key_id="k1", key_type=ll.KEY_X25519, material=material, key_nonce=key_nonce,
                  root_not_after=ROOT_NOT_AFTER)
    working = ll.make_working_key_record(lock_key, key_nonce, material, KS, "k1", ll.KEY_X25519)
    intermediates.update(public_key=working.current.public_key,
                         working_aad=ll.working_key_aad(KS, "k1", 1, ll.KEY_X25519,
                                                        working.current.public_key))
    capability = cap.encode_capability(cap.mint_root_capability(root_key, KS, ROOT_NOT_AFTER))
    reqs: tuple[str, ...] = ("LOCK-1", "LOCK-5", "LOCK-7", "LOCK-9", "LOCK-13", "LOCK-23")
    reqs += ("LOCK-4", "LOCK-6", "LOCK-10", "LOCK-28") if scenario == ll.SCENARIO_SHARES else ()
    return _case(f"lock-v1-layers/{scenario}", f"a keystore of scenario {scenario} with one "
                 "x25519 key: every record of every layer", ("Valid",), reqs, OP_LAYERS, inputs,
                 intermediates=intermediates,
                 outputs={"keystore_record": record.to_json(),
                          "working_key_record": working.to_json(), "capability": capability})


ROOT_NOT_AFTER = 1_900_000_000


# --- capabilities ----------------------------------------------------------------------------

# --- wrap / unwrap ---------------------------------------------------------------------------

def _wrap_material(name: str, cek_len: int) -> tuple[bytes, bytes, bytes, hpke.Sealed]:
    rnd = _drbg(f"wrap/{name}")
    recipient, ikm_e, cek = rnd(32), rnd(32), rnd(cek_len)
    return recipient, ikm_e, cek, ll.wrap_sealed(cek, primitives.x25519_public_key(recipient),
                                                 ikm_e)


def _hpke_intermediates(sealed: hpke.Sealed) -> dict[str, Any]:
    return {"ephemeral_private": sealed.encapsulation.ephemeral_private,
            "enc": sealed.enc, "dh": sealed.encapsulation.dh,
            "shared_secret": sealed.encapsulation.shared_secret,
            "key": sealed.schedule.key, "base_nonce": sealed.schedule.base_nonce}


def _wrap_cases() -> list[Case]:
    cases = []
    for name, cek_len in (("cek-32", 32), ("cek-16", 16), ("cek-64", 64)):
        recipient, ikm_e, cek, sealed = _wrap_material(name, cek_len)
        recipient_public = primitives.x25519_public_key(recipient)
        cases.append(_case(
            f"lock-v1-wrap/{name}", f"HPKE base-mode wrap of a {cek_len}-byte key", ("Valid",),
            ("LOCK-17",), OP_WRAP,
            {"cek": cek, "recipient_public_key": recipient_public, "ikm_e": ikm_e},
            intermediates=dict(_hpke_intermediates(sealed), info=ll.WRAP_INFO),
            outputs={"enc": sealed.enc, "wrapped_key": sealed.ciphertext}))
        cases.append(_case(
            f"lock-v1-unwrap/{name}", f"the recipient unwraps the {cek_len}-byte key",
            ("Valid",), ("LOCK-17",), OP_UNWRAP,
            {"recipient_private": recipient, "enc": sealed.enc,
             "wrapped_key": sealed.ciphertext}, outputs={"cek": cek}))
    recipient, _, _, sealed = _wrap_material("cek-32", 32)
    base = {"recipient_private": recipient, "enc": sealed.enc,
            "wrapped_key": sealed.ciphertext}
    point = Failure("point", STEP_OPERATIONS)
    aead = Failure("aead", STEP_OPERATIONS)
    p = primitives.X25519_P
    bad: list[tuple[str, str, str, dict[str, Any], Failure]] = [
        ("enc-zero", "enc u = 0 (low order)", "LowOrderPoint", {"enc": bytes(32)}, point),
        ("enc-order-8", "enc of order 8", "LowOrderPoint", {"enc": bytes.fromhex(
            "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800")}, point),
        ("enc-non-canonical", "enc u = p + 9 (non-canonical)", "NonCanonicalPoint",
         {"enc": (p + 9).to_bytes(32, "little")}, point),
        ("enc-top-bit", "enc with its top bit set", "NonCanonicalPoint",
         {"enc": sealed.enc[:31] + bytes([sealed.enc[31] | 0x80])}, point),
        ("bitflip-enc", "bit 0 of enc flipped", "BitFlip", {"enc": _flip(sealed.enc, 0)}, aead),
        ("bitflip-wrapped-key", "bit 0 of the wrapped key flipped", "BitFlip",
         {"wrapped_key": _flip(sealed.ciphertext, 0)}, aead),
        ("wrong-recipient", "unwrapped with another X25519 key", "WrongKey",
         {"recipient_private": _drbg("wrap/other-recipient")(32)}, aead),
        ("short-wrapped-key", "a wrapped key of 31 bytes (a 15-byte cek)", "Truncated",
         {"wrapped_key": sealed.ciphertext[:31]}, Failure("length", STEP_OPERATIONS)),
    ]
    for slug, comment, flag, change, failure in bad:
        cases.append(_case(f"lock-v1-unwrap/{slug}", comment, (flag,), ("LOCK-17",), OP_UNWRAP,
                           dict(base, **change), failure=failure))
    return cases


# --- sign, computemac, verifymac -----------------------------------------------------------

def _sign_cases() -> list[Case]:
    rnd = _drbg("sign")
    seed = rnd(32)
    cases = []
    for slug, comment, message in (
            ("empty", "the empty message", b""),
            ("text", "a text that names keyflows-v1 without its context prefix",
             b"keyflows-v1 is a protocol name"),
            ("binary", "64 random bytes", rnd(64))):
        cases.append(_case(f"lock-v1-sign/{slug}", f"Ed25519 of {comment}", ("Valid",),
                           ("LOCK-15", "LOCK-20"), OP_SIGN, {"seed": seed, "message": message},
                           intermediates={"public_key": primitives.ed25519_public_key(seed)},
                           outputs={"signature": ll.sign(seed, message)}))
    params = Failure("params", STEP_OPERATIONS)
    for slug, comment, message in (
            ("keyflows-context", "a keyflows key-binding statement (labelled_context)",
             labelled_context("public-keys", b"alice", b"app")),
            ("bare-prefix", "exactly the prefix keyflows-v1 || 0x00", ll.SIGNED_CONTEXT_PREFIX)):
        cases.append(_case(f"lock-v1-sign/{slug}", f"sign refuses {comment}",
                           ("KeyflowsContext",), ("LOCK-20",), OP_SIGN,
                           {"seed": seed, "message": message}, failure=params))
    return cases


def _mac_cases() -> list[Case]:
    rnd = _drbg("mac")
    key = rnd(32)
    cases = []
    for slug, message in (("empty", b""), ("text", b"keyflows computemac"),
                          ("long", rnd(200))):
        mac = ll.computemac(key, message)
        cases.append(_case(f"lock-v1-computemac/{slug}", f"HMAC-SHA256 of a {len(message)}-"
                           "byte message", ("Valid",), ("LOCK-21",), OP_COMPUTEMAC,
                           {"key": key, "message": message}, outputs={"mac": mac}))
    message = b"keyflows verifymac"
    mac = ll.computemac(key, message)
    for slug, comment, inputs, valid in (
            ("own-mac", "the key's own MAC", {"message": message, "mac": mac}, True),
            ("other-message", "another message", {"message": message + b"!", "mac": mac},
             False),
            ("bitflip-mac", "bit 0 of the MAC flipped", {"message": message,
                                                          "mac": _flip(mac, 0)}, False),
            ("other-key", "the MAC of another key",
             {"message": message, "mac": ll.computemac(rnd(32), message)}, False)):
        cases.append(_case(f"lock-v1-verifymac/{slug}", f"verifymac answers {valid} for "
                           f"{comment}", ("Valid",), ("LOCK-21",), OP_VERIFYMAC,
                           dict(inputs, key=key), outputs={"valid": valid}))
    cases.append(_case("lock-v1-verifymac/short-mac", "a 31-byte MAC is an error, not an "
                       "answer", ("Truncated",), ("LOCK-21",), OP_VERIFYMAC,
                       {"key": key, "message": message, "mac": mac[:31]},
                       failure=Failure("length", STEP_OPERATIONS)))
    return cases


def _v1_cases() -> list[Case]:
    from keyflows.vectors import lock_layering_capability, lock_layering_edv

    return (_split_cases() + _combine_cases() + _unlock_cases() + _server_lock_cases()
            + _working_key_cases() + [_layers(s) for s in ll.SCENARIOS] + _wrap_cases()
            + _sign_cases() + _mac_cases() + lock_layering_capability.cases()
            + lock_layering_edv.cases())


# --- trustbloc -------------------------------------------------------------------------------

def _tb_drbg(name: str) -> Drbg:
    return Drbg(f"{FLOW}/trustbloc/{name}")


def _tb_cases() -> list[Case]:
    cases = []
    for name, length, parts, threshold in (("wallet-2of2", 32, 2, 2), ("3of5", 32, 5, 3)):
        rnd = _tb_drbg(f"split/{name}")
        secret = rnd(length)
        made = ll.trustbloc_split(secret, rnd, parts=parts, threshold=threshold)
        cases.append(_case(
            f"lock-trustbloc-split/{name}", f"a Vault split ({threshold}-of-{parts}) with the "
            "random x-coordinates of the pinned release", ("Compat", "RandomX"), ("LOCK-8",
                                                                                   "LOCK-2"),
            OP_TB_SPLIT, _split_inputs(secret, made, threshold),
            outputs={"shares": made.shares}))
        picked = made.shares[-threshold:][::-1]
        cases.append(_case(
            f"lock-trustbloc-lock-key/{name}", "HKDF-SHA256 of the combined secret, empty salt "
            "and info", ("Compat",), ("LOCK-8",), OP_TB_LOCK_KEY, {"shares": picked},
            intermediates={"secret": secret},
            outputs={"lock_key": primitives.hkdf_sha256(secret, b"", b"", 32)}))
    rnd = _tb_drbg("split/zero-leading")
    secret = rnd(32)
    xs = shamir.vault_2017_x_coordinates(2, rnd)
    polys = [[b, *rnd(1)] for b in secret]
    polys[0] = [secret[0], 0]  # the draw the pinned release kept: a constant polynomial
    made = shamir.Split(shamir.split_with(secret, polys, xs, leading_nonzero=False), polys, xs)
    cases.append(_case(
        "lock-trustbloc-split/zero-leading", "a 2-of-2 split whose first byte's polynomial "
        "has a zero leading coefficient: both shares carry that secret byte",
        ("Compat", "RandomX", "ZeroLeading"), ("LOCK-8", "LOCK-2"), OP_TB_SPLIT,
        _split_inputs(secret, made, 2), outputs={"shares": made.shares}))
    rnd = _tb_drbg("seal")
    lock_key, primary = rnd(32), rnd(32)
    seals = [("lock-primary-key", "lock", lock_key, rnd(12), primary,
              "the lock seals the random primary key (60 bytes: no padding)", ("Compat",)),
             ("primary-32", "primary", primary, rnd(12), rnd(32),
              "the primary key seals 32 bytes of key material", ("Compat",)),
             ("primary-33", "primary", primary, rnd(12), rnd(33),
              "the primary key seals 33 bytes: the text ends in '=='", ("Compat", "Padded")),
             ("primary-34", "primary", primary, rnd(12), rnd(34),
              "the primary key seals 34 bytes: the text ends in '='", ("Compat", "Padded"))]
    texts = {}
    for slug, layer, key, nonce, plaintext, comment, flags in seals:
        text = ll.trustbloc_seal(key, nonce, plaintext)
        texts[slug] = (layer, key, text, plaintext)
        cases.append(_case(f"lock-trustbloc-seal/{slug}", comment, flags, ("LOCK-8",),
                           OP_TB_SEAL, {"layer": layer, "key": key, "nonce": nonce,
                                        "plaintext": plaintext},
                           intermediates={"sealed": ll.trustbloc_b64decode(text)},
                           outputs={"text": text}))
        cases.append(_case(f"lock-trustbloc-open/{slug}", f"opens: {comment}", flags,
                           ("LOCK-8",), OP_TB_OPEN, {"layer": layer, "key": key, "text": text},
                           outputs={"plaintext": plaintext}))
    layer, key, text, _ = texts["primary-33"]
    raw = ll.trustbloc_b64decode(text)
    decode, aead = Failure("decode", COMPAT), Failure("aead", COMPAT)
    not_a_key = ll.trustbloc_seal(lock_key, rnd(12), rnd(31))
    bad: list[tuple[str, str, tuple[str, ...], str, bytes, str, Failure]] = [
        ("unpadded", "the '=' padding stripped", ("Unpadded",), "primary", key,
         text.rstrip("="), decode),
        ("standard-alphabet", "the standard alphabet", ("NonCanonicalBase64",), "primary", key,
         text.replace("-", "+").replace("_", "/") if ("-" in text or "_" in text)
         else "+" + text[1:], decode),
        ("newline", "a newline inside the text (Go would skip it)", ("NonCanonicalBase64",),
         "primary", key, text[:8] + "\n" + text[8:], decode),
        ("bitflip-nonce", "bit 0 of the nonce", ("BitFlip",), "primary", key,
         ll.trustbloc_b64encode(_flip(raw, 0)), aead),
        ("bitflip-tag", "bit 7 of the last tag byte", ("BitFlip",), "primary", key,
         ll.trustbloc_b64encode(_flip(raw, len(raw) - 1, 7)), aead),
        ("wrong-key", "opened under the lock key instead of the primary key", ("WrongKey",),
         "primary", lock_key, text, aead),
        ("truncated", "27 bytes", ("Truncated",), "primary", key,
         ll.trustbloc_b64encode(raw[:27]), Failure("length", COMPAT)),
        ("lock-holds-31-bytes", "the lock layer opens to 31 bytes, not a key", ("NotAKey",),
         "lock", lock_key, not_a_key, Failure("length", COMPAT)),
    ]
    for slug, comment, flags, layer, key, text, failure in bad:
        cases.append(_case(f"lock-trustbloc-open/{slug}", comment, flags, ("LOCK-8",),
                           OP_TB_OPEN, {"layer": layer, "key": key, "text": text},
                           failure=failure))
    return cases


def generate() -> list[VectorFile]:
    return [
        VectorFile(schema_name=FLOW, flow=FLOW, profile="v1",
                   source_labels=(f"Drbg('{FLOW}/v1/<family>/<name>'): split/<name> draws the "
                                  "secret, the random x-coordinates (one byte per Fisher-Yates "
                                  "draw) and the coefficients; unlock/<user> the secret and its "
                                  "2-of-2 split; server-lock/<purpose> master key, nonce, "
                                  "plaintext; working-key/<type> lock key, nonce, material "
                                  "(and /v2 the second version's nonce and material); "
                                  "layers/<scenario> each key and nonce in input order; "
                                  "wrap/<name> recipient, ikm_e, cek; sign the seed, then a "
                                  "message; mac the key, then messages; capability/root the "
                                  "root key; capability/<holder|delegate|thief> Ed25519 seeds; "
                                  "unlock-grant the grant key, nonce and lock key; edv/mac-key "
                                  "the blinding key; edv/document/<name> the document id, "
                                  "recipient key, MAC key, ephemeral key, content key, IV, "
                                  "Ed25519 seed and sealed record; edv/query/<i> a document id"),
                   notes=NOTES_V1, cases=_v1_cases()),
        VectorFile(schema_name=f"{FLOW}.trustbloc", flow=FLOW, profile="trustbloc",
                   source_labels=(f"Drbg('{FLOW}/trustbloc/<name>'): split/<name> draws the "
                                  "secret, the x-coordinate permutation and the coefficients; "
                                  "seal draws the lock key, the primary key, then a nonce and "
                                  "plaintext per case"),
                   notes=NOTES_TRUSTBLOC, cases=_tb_cases()),
    ]


# --- verification: the consumer side ---------------------------------------------------------

def _hexes(values: Sequence[Any], name: str) -> list[bytes]:
    return [hx(v, name) for v in values]


def split_from_inputs(inputs: Mapping[str, Any], *, leading_nonzero: bool = True
                      ) -> list[bytes]:
    """The shares of a split case from its inputs: the secret, the non-intercept
    coefficients of each byte's polynomial, the threshold and the x-coordinates."""
    secret = hx(inputs["secret"], "secret")
    rest = _hexes(inputs["coefficients"], "coefficients")
    if len(rest) != len(secret):
        raise ParamsError("one polynomial per secret byte", requirement="LOCK-2")
    polys = [[b, *r] for b, r in zip(secret, rest, strict=True)]
    shamir.check_split_params(len(inputs["x_coordinates"]), inputs["threshold"], len(secret))
    if any(len(poly) != inputs["threshold"] for poly in polys):
        raise ParamsError("threshold - 1 coefficients per polynomial", requirement="LOCK-2")
    return shamir.split_with(secret, polys, inputs["x_coordinates"],
                             leading_nonzero=leading_nonzero)


def _verify_split(case: Mapping[str, Any]) -> Outcome:
    inputs = case["inputs"]
    if case["result"] == "invalid":
        return expect_rejection(case, lambda: split_from_inputs(inputs))
    # The trustbloc profile's pinned Vault kept zero leading coefficients (LOCK-8).
    shares = split_from_inputs(inputs, leading_nonzero=case["operation"] != OP_TB_SPLIT)
    secret, threshold = hx(inputs["secret"], "secret"), inputs["threshold"]
    for subset in (shares[:threshold], shares[-threshold:][::-1]):
        if shamir.combine(subset) != secret:
            return Outcome(False, "threshold shares do not combine back to the secret")
    return compare(case, intermediates={}, outputs={"shares": shares})


def _verify_combine(case: Mapping[str, Any]) -> Outcome:
    shares = _hexes(case["inputs"]["shares"], "shares")
    if case["result"] == "invalid":
        return expect_rejection(case, lambda: shamir.combine(shares))
    return compare(case, intermediates={}, outputs={"secret": shamir.combine(shares)})


def _verify_unlock(case: Mapping[str, Any]) -> Outcome:
    inputs = case["inputs"]
    ks, check = inputs["keystore_id"], hx(inputs["lock_check"], "lock_check")

    def run() -> bytes:
        return ll.unlock_with_shares(inputs["account_share"], inputs["user_share"], ks, check)

    if case["result"] == "invalid":
        return expect_rejection(case, run)
    lock_key = run()
    secret = ll.combine_shares([b64url_decode(inputs["account_share"]),
                                b64url_decode(inputs["user_share"])])
    return compare(case, intermediates={"secret": secret, "lock_check_info": ll.lock_check_info(ks),
                                        "lock_key_info": ll.lock_key_info(ks)},
                   outputs={"lock_key": lock_key})


def _verify_server_lock(case: Mapping[str, Any]) -> Outcome:
    inputs = case["inputs"]
    master = hx(inputs["master_key"], "master_key")
    ks, purpose = inputs["keystore_id"], inputs["purpose"]
    if case["operation"] == OP_SL_SEAL:
        plaintext = hx(inputs["plaintext"], "plaintext")
        sealed = ll.server_lock_seal(master, hx(inputs["nonce"], "nonce"), plaintext, ks,
                                     purpose)
        if ll.server_lock_open(master, sealed, ks, purpose) != plaintext:
            return Outcome(False, "the sealed blob does not open to the plaintext")
        return compare(case, intermediates={"aad": ll.server_lock_aad(ks, purpose)},
                       outputs={"sealed": sealed})
    sealed = hx(inputs["sealed"], "sealed")
    if case["result"] == "invalid":
        return expect_rejection(case, lambda: ll.server_lock_open(master, sealed, ks, purpose))
    return compare(case, intermediates={},
                   outputs={"plaintext": ll.server_lock_open(master, sealed, ks, purpose)})


def _verify_working_key(case: Mapping[str, Any]) -> Outcome:
    inputs = case["inputs"]
    lock_key = hx(inputs["lock_key"], "lock_key")
    if case["operation"] == OP_WK_SEAL:
        material = hx(inputs["material"], "material")
        ks, key_id, version = inputs["keystore_id"], inputs["key_id"], inputs["version"]
        entry = ll.make_key_version(lock_key, hx(inputs["nonce"], "nonce"), material, ks,
                                    key_id, version, inputs["key_type"])
        if ll.open_working_key(lock_key, entry.sealed, ks, key_id, version, inputs["key_type"],
                               entry.public_key) != material:
            return Outcome(False, "the sealed version does not open to the material")
        return compare(case, intermediates={
            "public_key": entry.public_key,
            "aad": ll.working_key_aad(ks, key_id, version, inputs["key_type"],
                                      entry.public_key)},
            outputs={"sealed": entry.sealed, "version_record": entry.to_json(
                inputs["key_type"])})

    def run() -> bytes:
        return ll.open_working_key_record(lock_key, ll.parse_working_key_record(
            inputs["record"]), inputs["version"])

    if case["result"] == "invalid":
        return expect_rejection(case, run)
    return compare(case, intermediates={}, outputs={"material": run()})


def _verify_layers(case: Mapping[str, Any]) -> Outcome:
    i = case["inputs"]
    ks, scenario = i["keystore_id"], i["scenario"]
    master, root_key = hx(i["master_key"], "master_key"), hx(i["capability_root_key"], "root")
    sealed_root = ll.server_lock_seal(master, hx(i["root_nonce"], "root_nonce"), root_key, ks,
                                      ll.PURPOSE_CAPABILITY_ROOT_KEY)
    inter: dict[str, Any] = {"root_aad": ll.server_lock_aad(ks, ll.PURPOSE_CAPABILITY_ROOT_KEY)}
    if scenario == ll.SCENARIO_SERVER_HELD:
        lock_key = hx(i["user_lock_key"], "user_lock_key")
        sealed_lock = ll.server_lock_seal(master, hx(i["lock_nonce"], "lock_nonce"), lock_key,
                                          ks, ll.PURPOSE_USER_LOCK_KEY)
        inter["user_lock_aad"] = ll.server_lock_aad(ks, ll.PURPOSE_USER_LOCK_KEY)
        record = ll.KeystoreRecord(ks, i["controller"], scenario, sealed_root,
                                   user_lock_key=sealed_lock)
    else:
        shares = [b64url_decode(i["account_share"]), b64url_decode(i["user_share"])]
        secret = ll.combine_shares(shares)
        lock_key = ll.lock_key_from_secret(secret, ks)
        check = ll.lock_check_from_secret(secret, ks)
        inter.update(secret=secret, lock_key=lock_key, lock_check=check,
                     grant_aad=ll.server_lock_aad(ks, ll.PURPOSE_UNLOCK_GRANT_KEY))
        sealed_grant = ll.server_lock_seal(master, hx(i["grant_nonce"], "grant_nonce"),
                                           hx(i["unlock_grant_key"], "unlock_grant_key"), ks,
                                           ll.PURPOSE_UNLOCK_GRANT_KEY)
        record = ll.KeystoreRecord(ks, i["controller"], scenario, sealed_root, lock_check=check,
                                   unlock_grant_key=sealed_grant)
    working = ll.make_working_key_record(lock_key, hx(i["key_nonce"], "key_nonce"),
                                         hx(i["material"], "material"), ks, i["key_id"],
                                         i["key_type"])
    inter.update(public_key=working.current.public_key,
                 working_aad=ll.working_key_aad(ks, i["key_id"], 1, i["key_type"],
                                                working.current.public_key))
    outcome = compare(case, intermediates=inter, outputs={
        "keystore_record": record.to_json(), "working_key_record": working.to_json(),
        "capability": cap.encode_capability(cap.mint_root_capability(root_key, ks,
                                                                     i["root_not_after"]))})
    if outcome.agreed:  # the consumer side opens every layer again
        parsed = ll.parse_keystore_record(case["outputs"]["keystore_record"])
        if ll.server_lock_open(master, parsed.capability_root_key, ks,
                               ll.PURPOSE_CAPABILITY_ROOT_KEY) != root_key:
            return Outcome(False, "the root key does not come back")
        ll.open_working_key_record(lock_key, ll.parse_working_key_record(
            case["outputs"]["working_key_record"]))
    return outcome


def _verify_wrap(case: Mapping[str, Any]) -> Outcome:
    i = case["inputs"]
    if case["operation"] == OP_WRAP:
        cek, recipient = hx(i["cek"], "cek"), hx(i["recipient_public_key"], "recipient")
        sealed = ll.wrap_sealed(cek, recipient, hx(i["ikm_e"], "ikm_e"))
        return compare(case, intermediates=dict(_hpke_intermediates(sealed), info=ll.WRAP_INFO),
                       outputs={"enc": sealed.enc, "wrapped_key": sealed.ciphertext})
    wrapped = ll.Wrapped(hx(i["enc"], "enc"), hx(i["wrapped_key"], "wrapped_key"))
    private = hx(i["recipient_private"], "recipient_private")
    if case["result"] == "invalid":
        return expect_rejection(case, lambda: ll.unwrap(wrapped, private))
    return compare(case, intermediates={}, outputs={"cek": ll.unwrap(wrapped, private)})


def _verify_sign(case: Mapping[str, Any]) -> Outcome:
    i = case["inputs"]
    seed, message = hx(i["seed"], "seed"), hx(i["message"], "message")
    if case["result"] == "invalid":
        return expect_rejection(case, lambda: ll.sign(seed, message))
    signature = ll.sign(seed, message)
    public = primitives.ed25519_public_key(seed)
    if not ll.verify(public, message, signature):
        return Outcome(False, "the signature does not verify")
    return compare(case, intermediates={"public_key": public},
                   outputs={"signature": signature})


def _verify_mac(case: Mapping[str, Any]) -> Outcome:
    i = case["inputs"]
    key, message = hx(i["key"], "key"), hx(i["message"], "message")
    if case["operation"] == OP_COMPUTEMAC:
        return compare(case, intermediates={}, outputs={"mac": ll.computemac(key, message)})
    mac = hx(i["mac"], "mac")
    if case["result"] == "invalid":
        return expect_rejection(case, lambda: ll.verifymac(key, message, mac))
    return compare(case, intermediates={}, outputs={"valid": ll.verifymac(key, message, mac)})


def _verify_tb(case: Mapping[str, Any]) -> Outcome:
    i, op = case["inputs"], case["operation"]
    if op == OP_TB_SPLIT:
        return _verify_split(case)
    if op == OP_TB_LOCK_KEY:
        shares = _hexes(i["shares"], "shares")
        return compare(case, intermediates={"secret": shamir.combine(shares)},
                       outputs={"lock_key": ll.trustbloc_lock_key(shares)})
    key = hx(i["key"], "key")
    if op == OP_TB_SEAL:
        nonce, plaintext = hx(i["nonce"], "nonce"), hx(i["plaintext"], "plaintext")
        text = (ll.trustbloc_lock_primary_key(key, nonce, plaintext) if i["layer"] == "lock"
                else ll.trustbloc_seal(key, nonce, plaintext))
        return compare(case, intermediates={"sealed": ll.trustbloc_b64decode(text)},
                       outputs={"text": text})

    def run() -> bytes:
        if i["layer"] == "lock":
            return ll.trustbloc_unlock_primary_key(key, i["text"])
        return ll.trustbloc_open(key, i["text"])

    if case["result"] == "invalid":
        return expect_rejection(case, run)
    return compare(case, intermediates={}, outputs={"plaintext": run()})


VERIFIERS: dict[str, Callable[[Mapping[str, Any]], Outcome]] = {
    OP_SPLIT: _verify_split, OP_COMBINE: _verify_combine, OP_UNLOCK: _verify_unlock,
    OP_SL_SEAL: _verify_server_lock, OP_SL_OPEN: _verify_server_lock,
    OP_WK_SEAL: _verify_working_key, OP_WK_OPEN: _verify_working_key,
    OP_LAYERS: _verify_layers, OP_WRAP: _verify_wrap, OP_UNWRAP: _verify_wrap,
    OP_SIGN: _verify_sign, OP_COMPUTEMAC: _verify_mac, OP_VERIFYMAC: _verify_mac,
    OP_TB_SPLIT: _verify_tb, OP_TB_LOCK_KEY: _verify_tb, OP_TB_SEAL: _verify_tb,
    OP_TB_OPEN: _verify_tb,
}


def verify_case(header: Mapping[str, Any], case: Mapping[str, Any]) -> Outcome:
    from keyflows.vectors import lock_layering_capability, lock_layering_edv

    verifier = {**VERIFIERS, **lock_layering_capability.VERIFIERS,
                **lock_layering_edv.VERIFIERS}.get(
        str(case.get("operation")))
    if verifier is None:
        return Outcome(False, f"unknown operation {case.get('operation')!r}")
    return verifier(case)
