"""Vectors of the keypair-publication flow: profile v1 and the fxakeys compatibility profile.

Profile v1. Each base case (a user, an application, a key version, a KEK method) yields
four positive cases, one per operation: `seal` (the producer, every intermediate),
`validate-publication` (what a server checks), `validate-public-view` (what a discoverer
checks) and `open` (the owner's recovery). Negatives are mutation families applied to
every base case, each declaring the failure class and the step that must reject:

  validate-publication  bit flips in the public keys and the signature; relabelled
                        user, application or version; a foreign path; low-order and
                        non-canonical X25519 keys (re-signed, so the point check is the one
                        that rejects); swapped public keys; truncated and extended fields;
                        non-canonical base64url; unknown, missing and ill-typed members;
                        Argon2id costs out of range
  open                  bit flips in the nonce, the commitment and the ciphertext; a wrong
                        kB, password or salt; changed Argon2id costs or salt opened with
                        the right KEK (the AAD binds them); a ciphertext crafted to
                        authenticate under two passwords' keys (the commitment refuses the
                        second); another expected user, application or version; a record
                        re-signed for another context over the same ciphertext (the AAD
                        rejects it); a ciphertext of other private keys (KP-11)
  rewrap                after a kB rotation, the record re-sealed under the new kBr with the
                        same keys (KP-22); a wrong old kB
  validate-public-view  private members present; a flipped signature; a foreign user
  check-replacement     equal and older key versions (replay)

Profile fxakeys: encPrivKey = hex(nonce || SecretBox(kBr, nonce, hex(x25519_private)))
(KP-13), with tampered, truncated and badly encoded negatives.
"""

from __future__ import annotations

import base64
import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

from keyflows.spec import key_derivation as kd
from keyflows.spec import keypair_publication as kp
from keyflows.spec import primitives, xeddsa
from keyflows.spec.drbg import Drbg
from keyflows.spec.encoding import b64url_decode, b64url_encode
from keyflows.spec.errors import SpecError
from keyflows.vectors.framework import (
    Case,
    Failure,
    Flag,
    Outcome,
    VectorFile,
    compare,
    dispatch,
    expect_rejection,
    hx,
)
from keyflows.vectors.gcm_collision import colliding_ciphertext
from keyflows.vectors.key_derivation import stretch

FLOW = "keypair-publication"

OP_SEAL = "seal"
OP_VALIDATE = "validate-publication"
OP_PUBLIC_VIEW = "validate-public-view"
OP_OPEN = "open"
OP_REPLACEMENT = "check-replacement"
OP_CHANGE = "check-change"
OP_DELETION = "check-deletion"
OP_HISTORY = "follow-history"
OP_REWRAP = "rewrap"
OP_FXA_SEAL = "fxakeys-enc-priv-key"
OP_FXA_OPEN = "fxakeys-open-enc-priv-key"

APP = kp.METHOD_APPLICATION_KEY
PASSWORD = kp.METHOD_PASSWORD

OTHER_USER = "mallory"
OTHER_CLIENT = "other.example"

# Steps of the keypair-publication chapter where a rejection happens.
STEP_CHECKS = "5"  # every party: decoding, lengths, params, points, binding signature
STEP_SERVER = "6"  # the record is for the addressed user and application; versions increase
STEP_RECOVERY = "9"  # the owner decrypts and checks the private keys
STEP_CONTINUITY = "11"  # changes against the stored state; deletions; following a history

NOTES_V1: dict[str, Flag] = {
    "ApplicationKey": Flag("The private keys are encrypted under kBr (method application-key).",
                           "Derive the KEK with KD-3."),
    "PasswordKey": Flag("The private keys are encrypted under a password key (method password).",
                        "Derive the KEK with KD-6 from the salt and costs the record carries."),
    "Valid": Flag("A well-formed record for the expected user, application and version.",
                  "Accept; recompute every intermediate and output."),
    "MlKem": Flag("The record carries an ML-KEM-768 encapsulation key (public_keys.mlkem768) "
                  "for the hybrid suites and seals its 64-byte seed after the other two keys.",
                  "Check the key (KP-5), cover it in every signed context, the AAD and the "
                  "commitment (last of the public keys), and expect a 144-byte ciphertext."),
    "InvalidMlKemKey": Flag("The ML-KEM-768 encapsulation key has a coefficient >= q (FIPS "
                            "203 section 7.2, modulus check); the signatures cover it.",
                            "Reject (failure class point)."),
    "MismatchedLength": Flag("The ciphertext has the length of a record of the other kind "
                             "(with or without the ML-KEM seed).",
                             "Reject (failure class length)."),
    "BitFlip": Flag("One bit of one field is flipped; the encoding stays canonical.",
                    "Reject at the check protecting that field: the signature for public keys "
                    "and the signature, the AEAD for the nonce and ciphertext."),
    "Relabelled": Flag("user_id, client_id or key_version of the record is changed and the "
                       "verifier expects the changed value.",
                       "Reject: the binding signature covers them (failure class signature)."),
    "ForeignContext": Flag("The record is intact but the verifier expects another user, "
                           "application or version.",
                           "Reject before any cryptography (failure class binding)."),
    "LowOrderPoint": Flag("The X25519 public key is a point of low order (DH with it gives a "
                          "predictable secret). The signature is re-made over it.",
                          "Reject at the point check, not at the signature (failure class "
                          "point)."),
    "NonCanonicalPoint": Flag("The X25519 public key has its top bit set or u >= 2^255 - 19. "
                              "The signature is re-made over it.",
                              "Reject at the point check (failure class point)."),
    "InvalidEd25519Key": Flag("The Ed25519 public key is not the canonical encoding of a "
                              "curve point, or is a point of small order.",
                              "Reject at the key check of the strict Ed25519 rule (HC-35, "
                              "failure class point)."),
    "LaxEd25519Signature": Flag("A signature that a verifier skipping the checks of the "
                                "strict Ed25519 rule accepts: S >= L, or a small-order key "
                                "and R with S = 0, which satisfy the equation for any message.",
                                "Reject (HC-35): failure class point for the key, signature "
                                "for R and S."),
    "SwappedFields": Flag("The X25519 and Ed25519 public keys trade places.",
                          "Reject: at the point check if the Ed25519 key's top bit is set, "
                          "else at the signature."),
    "Truncated": Flag("A base64url field decodes to one byte fewer than required.",
                      "Reject (failure class length)."),
    "TrailingBytes": Flag("A base64url field decodes to one byte more than required.",
                          "Reject (failure class length)."),
    "NonCanonicalBase64": Flag("A base64url field is padded, uses the standard alphabet "
                               "('+', '/') or has non-zero unused trailing bits.",
                               "Reject (failure class decode): every value has exactly one "
                               "accepted text form (API-1)."),
    "UnknownMember": Flag("An object carries a member the wire format does not define.",
                          "Reject (failure class decode)."),
    "MissingMember": Flag("A required member is absent.", "Reject (failure class decode)."),
    "BadValue": Flag("A member has the wrong JSON type, an out-of-range key_version, an "
                     "identifier outside the syntax or an unknown algorithm name.",
                     "Reject (failure class decode)."),
    "ParamsOutOfRange": Flag("Argon2id costs in the record are outside the accepted range.",
                             "Reject before running Argon2id (failure class params)."),
    "WrongKey": Flag("The owner's kB, password or the record's salt differs from the one the "
                     "record was sealed with.",
                     "Reject at the key commitment, before AES-GCM runs (failure class aead, "
                     "KP-21)."),
    "Rebound": Flag("The record is re-signed for another user, application or version over "
                    "the SAME ciphertext (as someone holding the signing key could).",
                    "Reject at the key commitment: it is derived over the AAD, which binds "
                    "the ciphertext to its context (failure class aead)."),
    "CachedKek": Flag("The owner opens the record with a KEK it kept (the right one) instead "
                      "of deriving it again from the salt and costs the record states.",
                      "The AAD still binds the stated salt and costs (KP-3): a changed one is "
                      "refused at the key commitment (failure class aead)."),
    "ParamsChanged": Flag("The record's Argon2id costs or salt were changed to other valid "
                          "values (as a server lowering the cost of the next guess would).",
                          "Reject at the key commitment (failure class aead): with the password "
                          "the KEK changes, with a kept KEK the AAD does."),
    "PartitioningCiphertext": Flag("The ciphertext is crafted so that AES-GCM authenticates it "
                                   "under the AEAD keys of TWO passwords (a partitioning "
                                   "oracle's input); gcm_plaintext shows what a bare AES-GCM "
                                   "open gives.",
                                   "Only the password whose key the commitment names gets "
                                   "past step 9's commitment check (KP-21); every other "
                                   "password is refused there (failure class aead), whatever "
                                   "AES-GCM alone would say."),
    "Rewrap": Flag("A re-wrap after a kB rotation: the next version with the same keys under "
                   "the new kBr, a rotation signed by the record's own key (KP-22).",
                   "Accept; the old record opens with the old kB, the new one with the new."),
    "MismatchedPrivateKeys": Flag("The ciphertext authenticates but holds private keys that do "
                                  "not produce the published public keys.",
                                  "Reject after decryption (failure class binding, KP-11)."),
    "PrivateMember": Flag("A public view carries encrypted_private_keys.",
                          "Reject (failure class decode): public views never carry private "
                          "material."),
    "Replay": Flag("A key_version that is not greater than the stored one (or the last "
                   "deleted one), or a deletion naming a replaced version.",
                   "Reject (failure class replay, KP-8, KP-19)."),
    "Rotation": Flag("A change of type rotation, signed by the key it replaces.",
                     "Verify change.signature under the previous version's Ed25519 key "
                     "(KP-17)."),
    "Reset": Flag("A change of type reset: no earlier key signs it.",
                  "Accept where the stored state allows a reset (KP-18) and surface it to "
                  "the user; a party following a history reports it (KP-20)."),
    "UnsignedChange": Flag("A rotation whose hand-over is not signed by the replaced key: "
                           "signed by the new key, by another user's key or by an older "
                           "(stale) key of the same chain, or altered.",
                           "Reject (failure class signature, KP-17)."),
    "VersionGap": Flag("A version that is not exactly one more than the last accepted one.",
                       "Reject (failure class link, KP-16, KP-20)."),
    "WrongChangeType": Flag("A change type the stored state does not allow: initial over a "
                            "history, rotation or reset with no history, rotation after a "
                            "deletion.", "Reject (failure class link, KP-15, KP-18)."),
    "UnsignedDeletion": Flag("A deletion not signed by the live record's key, or altered.",
                             "Reject (failure class signature, KP-19)."),
}

NOTES_FXAKEYS: dict[str, Flag] = {
    "Compat": Flag("The fxakeys original encPrivKey, byte-exact: hex(nonce || SecretBox(kBr, "
                   "nonce, hex(x25519_private))) (KP-13).",
                   "An implementation of the fxakeys profile produces and opens exactly this."),
    "BitFlip": Flag("One bit of the nonce or the box is flipped.",
                    "Reject at the SecretBox (failure class aead)."),
    "WrongKey": Flag("The box is opened with another kBr.",
                     "Reject at the SecretBox (failure class aead)."),
    "Truncated": Flag("encPrivKey is one byte short.", "Reject (failure class length)."),
    "TrailingBytes": Flag("encPrivKey is one byte long.", "Reject (failure class length)."),
    "NonCanonicalHex": Flag("encPrivKey is not lowercase hex: uppercase, odd length, a non-hex "
                            "character or embedded whitespace.",
                            "Reject (failure class decode)."),
    "BadPlaintext": Flag("The box authenticates but its plaintext is not 64 lowercase hex "
                         "characters.",
                         "Reject (failure class decode)."),
}


# --- base cases -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Base:
    name: str
    user_id: str
    client_id: str
    key_version: int
    method: str
    comment: str
    password: str | None = None
    change: str = kp.CHANGE_INITIAL
    previous: str | None = None  # the base whose keys a rotation is signed with
    rewraps: bool = False  # KP-22: the same private keys as `previous`, under a new kB
    mlkem: bool = False  # the record also holds an ML-KEM-768 key (hybrid suites)


BASES = (
    Base("app-key-0", "alice", "notes.example", 1, APP,
         "a first publication under the application key"),
    Base("app-key-1", "Az09._~-" * 8, "5901bd09376fe0e9", kp.MAX_KEY_VERSION, APP,
         "a 64-character user_id using every allowed symbol, a hex-style client_id and the "
         "largest key_version, published as a reset", change=kp.CHANGE_RESET),
    Base("password-0", "carol", "files.example", 7, PASSWORD,
         "the private keys encrypted under a password key at the producer minimum cost, "
         "published as a reset", password="correct horse battery staple",
         change=kp.CHANGE_RESET),
    Base("rotation-0", "alice", "notes.example", 2, APP,
         "a rotation of app-key-0 to version 2, signed by version 1's Ed25519 key",
         change=kp.CHANGE_ROTATION, previous="app-key-0"),
    Base("rewrap-0", "alice", "notes.example", 3, APP,
         "rotation-0 re-wrapped after a kB rotation: version 3 holds the same private keys "
         "under the kBr of a new kB, a rotation signed by its own Ed25519 key",
         change=kp.CHANGE_ROTATION, previous="rotation-0", rewraps=True),
    Base("mlkem-0", "dave", "chat.example", 1, APP,
         "a first publication with an ML-KEM-768 key for the hybrid suites", mlkem=True),
)
BASES_BY_NAME = {base.name: base for base in BASES}


@dataclass(frozen=True)
class Material:
    """Everything a base case makes, each random byte from Drbg('keypair-publication/v1/<name>')."""

    base: Base
    private: kp.PrivateKeys
    kb: bytes | None
    kek_spec: kp.KekSpec
    kek_info: bytes
    stretched: bytes | None
    kek: bytes
    nonce: bytes
    z: bytes
    previous: kp.PrivateKeys | None
    sealed: kp.Sealed

    @property
    def record(self) -> dict[str, Any]:
        return copy.deepcopy(self.sealed.record)

    @property
    def secret(self) -> dict[str, Any]:
        if self.base.method == APP:
            return {"method": APP, "kb": self.kb}
        return {"method": PASSWORD, "password": self.base.password}

    def drbg(self, purpose: str) -> Drbg:
        return Drbg(f"{FLOW}/v1/{self.base.name}/{purpose}")


@cache
def material(base: Base) -> Material:
    drbg = Drbg(f"{FLOW}/v1/{base.name}")
    previous = material(BASES_BY_NAME[base.previous]).private if base.previous else None
    if base.rewraps:  # KP-22: nothing new is drawn for the keys
        assert previous is not None
        private = previous
    else:
        # x25519_private, then ed25519_seed, then (mlkem bases) the ML-KEM seed
        private = kp.generate_private_keys(drbg, with_mlkem=base.mlkem)
    kb: bytes | None = None
    stretched: bytes | None = None
    if base.method == APP:
        kb = drbg(kd.KB_LEN)
        kek_spec = kp.KekSpec(method=APP)
        kek_info = kd.application_key_info(base.client_id)
        kek = kd.application_key(kb, base.client_id)
    else:
        assert base.password is not None
        salt = drbg(kd.SALT_LEN)
        kek_spec = kp.KekSpec(method=PASSWORD, salt=salt, params=kd.PRODUCER_MINIMUM)
        kek_info = kd.password_key_info(base.user_id, base.client_id)
        stretched = stretch(base.password, salt, kd.PRODUCER_MINIMUM)
        kek = kd.password_key_from_stretched(stretched, base.user_id, base.client_id)
    nonce = drbg(primitives.GCM_NONCE_LEN)
    z = drbg(xeddsa.Z_LEN)
    sealed = kp.seal_record(user_id=base.user_id, client_id=base.client_id,
                            key_version=base.key_version, private=private, kek=kek,
                            kek_spec=kek_spec, nonce=nonce, z=z, change_type=base.change,
                            previous=previous)
    return Material(base=base, private=private, kb=kb, kek_spec=kek_spec, kek_info=kek_info,
                    stretched=stretched, kek=kek, nonce=nonce, z=z, previous=previous,
                    sealed=sealed)


def _method_flag(m: Material) -> str:
    return "ApplicationKey" if m.base.method == APP else "PasswordKey"


# --- record surgery -----------------------------------------------------------------------------

Path = tuple[str, ...]

FIELD_PATHS: dict[str, Path] = {
    "x25519": ("public_keys", "x25519"),
    "ed25519": ("public_keys", "ed25519"),
    "signature": ("binding_signature",),
    "x25519_signature": ("x25519_signature",),
    "nonce": ("encrypted_private_keys", "nonce"),
    "commitment": ("encrypted_private_keys", "commitment"),
    "ciphertext": ("encrypted_private_keys", "ciphertext"),
    "salt": ("encrypted_private_keys", "kek", "salt"),
}
# The requirement each field's length and encoding rule comes from (besides API-1).
FIELD_REQUIREMENTS: dict[str, str] = {
    "x25519": "KP-5", "ed25519": "KP-4", "signature": "KP-4", "x25519_signature": "KP-14",
    "nonce": "KP-3", "commitment": "KP-21",
    "ciphertext": "KP-3", "salt": "KD-4",
}


def _fields(m: Material) -> list[str]:
    names = ["x25519", "ed25519", "signature", "x25519_signature", "nonce", "commitment",
             "ciphertext"]
    return [*names, "salt"] if m.base.method == PASSWORD else names


def _parent(record: dict[str, Any], path: Path) -> dict[str, Any]:
    node = record
    for key in path[:-1]:
        node = node[key]
    return node


def _get(record: dict[str, Any], path: Path) -> Any:
    return _parent(record, path)[path[-1]]


def _set(record: dict[str, Any], path: Path, value: Any) -> dict[str, Any]:
    """A copy of the record with one member replaced (or added)."""
    out = copy.deepcopy(record)
    _parent(out, path)[path[-1]] = value
    return out


def _delete(record: dict[str, Any], path: Path) -> dict[str, Any]:
    out = copy.deepcopy(record)
    del _parent(out, path)[path[-1]]
    return out


def _flip(data: bytes, index: int, bit: int = 0) -> bytes:
    out = bytearray(data)
    out[index] ^= 1 << bit
    return bytes(out)


def _flip_field(record: dict[str, Any], path: Path, index: int, bit: int = 0) -> dict[str, Any]:
    data = b64url_decode(_get(record, path))
    return _set(record, path, b64url_encode(_flip(data, index, bit)))


def _resign(record: dict[str, Any], seed: bytes, x25519_private: bytes | None = None,
            z: bytes = bytes(64)) -> dict[str, Any]:
    """Re-make the binding signature (and with `x25519_private` the XEdDSA signature) over
    the record's (possibly mutated) context, so the check that rejects is the one the
    mutation targets, not the signature."""
    mlkem768 = record["public_keys"].get("mlkem768")
    keys = kp.PublicKeys(x25519=b64url_decode(record["public_keys"]["x25519"]),
                         ed25519=b64url_decode(record["public_keys"]["ed25519"]),
                         mlkem768=None if mlkem768 is None else b64url_decode(mlkem768))
    context = (record["user_id"], record["client_id"], record["key_version"], keys,
               record["change"]["type"])
    out = _set(record, ("binding_signature",),
               b64url_encode(primitives.ed25519_sign(seed, kp.binding_message(*context))))
    if x25519_private is not None:
        out = _set(out, ("x25519_signature",), b64url_encode(
            xeddsa.sign(x25519_private, kp.possession_message(*context), z)))
    return out


def _other_version(version: int) -> int:
    return version + 1 if version < kp.MAX_KEY_VERSION else version - 1


# --- case builders --------------------------------------------------------------------------------

def _validate_case(m: Material, slug: str, comment: str, flags: tuple[str, ...],
                   requirements: tuple[str, ...], failure: Failure, record: Any, *,
                   user_id: str | None = None, client_id: str | None = None) -> Case:
    return Case(
        id=f"kp-v1-{m.base.name}/validate/{slug}", comment=comment,
        flags=(_method_flag(m), *flags), requirements=requirements, operation=OP_VALIDATE,
        inputs={"record": record, "user_id": user_id or m.base.user_id,
                "client_id": client_id or m.base.client_id},
        failure=failure)


#: An owner's secret {"method": "kek", "kek": ...}: a KEK it kept instead of its kB or password.
CACHED_KEK = "kek"


def opening_intermediates(record: Mapping[str, Any], kek: bytes) -> dict[str, Any]:
    """What the owner's KEK gives for a record, wherever the opening stops: the AEAD key and
    the commitment it derives (KP-21), and what a bare AES-GCM open (no commitment check)
    returns, null when the tag does not verify."""
    parsed = kp.parse_record(record)
    assert parsed.kek is not None
    aad = kp.record_aad(parsed.user_id, parsed.client_id, parsed.key_version, parsed.kek,
                        parsed.public_keys)
    keys = kp.record_keys(kek, parsed.nonce, aad)
    try:
        plaintext: bytes | None = primitives.aes256gcm_decrypt(keys.aead_key, parsed.nonce,
                                                               parsed.ciphertext, aad)
    except SpecError:
        plaintext = None
    return {"kek": kek, "aead_key": keys.aead_key, "commitment": keys.commitment,
            "gcm_plaintext": plaintext}


def kek_for(record: Mapping[str, Any], secret: Mapping[str, Any], user_id: str,
            client_id: str) -> bytes:
    """Step 2 as the owner runs it: the KEK from the owner's secret, the record's kek
    member, and the user and application the owner expects."""
    spec = kp.parse_kek(record["encrypted_private_keys"]["kek"])
    if secret["method"] == CACHED_KEK:  # the owner kept the KEK itself
        kek = secret["kek"]
        return kek if isinstance(kek, bytes) else hx(kek, "kek")
    if spec.method != secret["method"]:
        raise ValueError("the secret does not match the record's KEK method")
    if spec.method == APP:
        kb = secret["kb"]
        return kd.application_key(kb if isinstance(kb, bytes) else hx(kb, "kb"), client_id)
    assert spec.params is not None
    stretched = stretch(secret["password"], spec.salt, spec.params)
    return kd.password_key_from_stretched(stretched, user_id, client_id)


def _open_case(m: Material, slug: str, comment: str, flags: tuple[str, ...],
               requirements: tuple[str, ...], failure: Failure | None, record: dict[str, Any],
               *, user_id: str | None = None, client_id: str | None = None,
               key_version: int | None = None, secret: dict[str, Any] | None = None) -> Case:
    user_id = user_id or m.base.user_id
    client_id = client_id or m.base.client_id
    secret = secret or m.secret
    outputs: dict[str, Any] = {}
    if failure is None:
        outputs = {"x25519_private": m.private.x25519, "ed25519_seed": m.private.ed25519_seed,
                   **_mlkem_seed(m.private)}
    return Case(
        id=f"kp-v1-{m.base.name}/open" + (f"/{slug}" if slug else ""), comment=comment,
        flags=(_method_flag(m), *flags), requirements=requirements, operation=OP_OPEN,
        inputs={"record": record, "user_id": user_id, "client_id": client_id,
                "key_version": key_version if key_version is not None else m.base.key_version,
                "secret": secret},
        intermediates=opening_intermediates(record, kek_for(record, secret, user_id,
                                                            client_id)),
        outputs=outputs, failure=failure)


def _public_view_case(m: Material, slug: str, comment: str, flags: tuple[str, ...],
                      requirements: tuple[str, ...], failure: Failure | None,
                      view: dict[str, Any], *, user_id: str | None = None) -> Case:
    intermediates: dict[str, Any] = {}
    outputs: dict[str, Any] = {}
    if failure is None:
        intermediates, outputs = _validated(m)
    return Case(
        id=f"kp-v1-{m.base.name}/public-view" + (f"/{slug}" if slug else ""), comment=comment,
        flags=(_method_flag(m), *flags), requirements=requirements, operation=OP_PUBLIC_VIEW,
        inputs={"public_view": view, "user_id": user_id or m.base.user_id,
                "client_id": m.base.client_id},
        intermediates=intermediates, outputs=outputs, failure=failure)


def _mlkem_seed(private: kp.PrivateKeys) -> dict[str, Any]:
    """{"mlkem_seed": ...} for keys with an ML-KEM seed, {} otherwise (member absent)."""
    return {} if private.mlkem_seed is None else {"mlkem_seed": private.mlkem_seed}


def _mlkem_public(public: kp.PublicKeys) -> dict[str, Any]:
    return {} if public.mlkem768 is None else {"mlkem768_public": public.mlkem768}


def _validated(m: Material) -> tuple[dict[str, Any], dict[str, Any]]:
    return ({"signed_message": m.sealed.signed_message,
             "possession_message": m.sealed.possession_message},
            {"key_version": m.base.key_version, "x25519_public": m.sealed.public.x25519,
             "ed25519_public": m.sealed.public.ed25519, **_mlkem_public(m.sealed.public)})


# --- positives ------------------------------------------------------------------------------------

def _positives(m: Material) -> list[Case]:
    base, sealed = m.base, m.sealed
    kek_input: dict[str, Any]
    if base.method == APP:
        kek_input = {"method": APP, "kb": m.kb}
    else:
        assert m.kek_spec.params is not None
        kek_input = {"method": PASSWORD, "password": base.password, "salt": m.kek_spec.salt,
                     "t": m.kek_spec.params.t, "m": m.kek_spec.params.m,
                     "p": m.kek_spec.params.p}
    seal = Case(
        id=f"kp-v1-{base.name}/seal", comment=f"seal: {base.comment}",
        flags=(_method_flag(m), "Valid", *(("Rewrap",) if base.rewraps else ()),
               *(("MlKem",) if base.mlkem else ())),
        requirements=("KP-1", "KP-2", "KP-3", "KP-4", "KP-14", "KP-15", "KP-21",
                      *(("KP-17",) if base.change == kp.CHANGE_ROTATION else ()),
                      *(("KP-22",) if base.rewraps else ()),
                      "KD-3" if base.method == APP else "KD-6"),
        operation=OP_SEAL,
        inputs={"user_id": base.user_id, "client_id": base.client_id,
                "key_version": base.key_version, "x25519_private": m.private.x25519,
                "ed25519_seed": m.private.ed25519_seed, **_mlkem_seed(m.private),
                "kek": kek_input, "nonce": m.nonce,
                "z": m.z, "change_type": base.change,
                "previous_x25519_private": m.previous.x25519 if m.previous else None,
                "previous_ed25519_seed": m.previous.ed25519_seed if m.previous else None},
        intermediates={"kek_info": m.kek_info, "stretched": m.stretched, "kek": m.kek,
                       "x25519_public": sealed.public.x25519,
                       "ed25519_public": sealed.public.ed25519,
                       **_mlkem_public(sealed.public), "plaintext": sealed.plaintext,
                       "aad": sealed.aad, "aead_key": sealed.aead_key,
                       "commitment": sealed.commitment, "ciphertext": sealed.ciphertext,
                       "signed_message": sealed.signed_message, "signature": sealed.signature,
                       "possession_message": sealed.possession_message,
                       "x25519_signature": sealed.x25519_signature,
                       "rotation_message": sealed.rotation_message,
                       "rotation_signature": sealed.rotation_signature},
        outputs={"record": m.record, "public_view": kp.public_view(m.record)})
    intermediates, outputs = _validated(m)
    validate = Case(
        id=f"kp-v1-{base.name}/validate", comment=f"a server accepts the record of {base.name}",
        flags=(_method_flag(m), "Valid"), requirements=("KP-5", "KP-6", "KP-7", "KP-14"),
        operation=OP_VALIDATE,
        inputs={"record": m.record, "user_id": base.user_id, "client_id": base.client_id},
        intermediates=intermediates, outputs=outputs)
    view = _public_view_case(m, "", f"a discoverer accepts the public view of {base.name}",
                             ("Valid",), ("KP-5", "KP-6", "KP-10"), None,
                             kp.public_view(m.record))
    opened = _open_case(m, "", f"the owner recovers the private keys of {base.name}",
                        ("Valid",), ("KP-2", "KP-3", "KP-6", "KP-21", "KP-11"), None,
                        m.record)
    return [seal, validate, view, opened]


# --- validate-publication families ---------------------------------------------------------------

SIG_REJECT = Failure("signature", STEP_CHECKS)


def _bitflips(m: Material) -> list[Case]:
    rec = m.record
    specs: list[tuple[str, str, str, int, int, tuple[str, ...], Failure]] = [
        ("x25519-first", "x25519", "bit 0 of the first byte of the X25519 public key", 0, 0,
         ("KP-6", "KP-4"), SIG_REJECT),
        ("x25519-top-bit", "x25519", "the top bit (bit 255) of the X25519 public key: the "
         "encoding becomes non-canonical, so the point check rejects before the signature",
         31, 7, ("KP-5",), Failure("point", STEP_CHECKS)),
        ("ed25519-first", "ed25519", "bit 0 of the first byte of the Ed25519 public key", 0, 0,
         ("KP-6", "KP-4"), SIG_REJECT),
        ("ed25519-last", "ed25519", "bit 0 of the last byte of the Ed25519 public key", 31, 0,
         ("KP-6", "KP-4"), SIG_REJECT),
        ("signature-first", "signature", "bit 0 of the first byte of the signature (R)", 0, 0,
         ("KP-6", "KP-4"), SIG_REJECT),
        ("signature-last", "signature", "bit 0 of the last byte of the signature (S)", 63, 0,
         ("KP-6", "KP-4"), SIG_REJECT),
        ("x25519-signature-first", "x25519_signature", "bit 0 of the first byte of the "
         "XEdDSA signature (R)", 0, 0, ("KP-14",), SIG_REJECT),
        ("x25519-signature-last", "x25519_signature", "bit 0 of the last byte of the XEdDSA "
         "signature (S)", 63, 0, ("KP-14",), SIG_REJECT),
    ]
    cases = []
    for slug, name, what, index, bit, reqs, failure in specs:
        flags = ("BitFlip", "NonCanonicalPoint") if failure.failure_class == "point" else (
            "BitFlip",)
        mutated = _flip_field(rec, FIELD_PATHS[name], index, bit)
        if name == "ed25519" and not primitives.ed25519_is_canonical(
                b64url_decode(_get(mutated, FIELD_PATHS[name]))):
            # The strict Ed25519 rule refuses a key that is no curve point before verifying.
            what += ": the result is no curve point, so the key check rejects"
            flags, failure = ("BitFlip", "InvalidEd25519Key"), Failure("point", STEP_CHECKS)
        cases.append(_validate_case(m, f"bitflip-{slug}", f"flips {what}", flags, reqs,
                                    failure, mutated))
    return cases


# The identity point as an Ed25519 key and as R: with S = 0 the cofactorless equation
# [S]B = R + [k]A holds for every message, so a verifier without the strict rule's key
# and R checks accepts this "signature" for any record.
_ED25519_IDENTITY = bytes([1]) + bytes(31)


def _strict_ed25519(m: Material) -> list[Case]:
    rec, reqs = m.record, ("KP-6", "KP-4", "HC-35")
    signature = b64url_decode(rec["binding_signature"])
    s = int.from_bytes(signature[32:], "little") + primitives.ED25519_L
    malleated = signature[:32] + s.to_bytes(32, "little")
    identity_key = _set(_set(rec, FIELD_PATHS["ed25519"], b64url_encode(_ED25519_IDENTITY)),
                        ("binding_signature",), b64url_encode(_ED25519_IDENTITY + bytes(32)))
    return [
        _validate_case(m, "ed25519-non-canonical-s", "the binding signature with S + L in "
                       "place of S: the same equation mod L, refused because S >= L",
                       ("LaxEd25519Signature",), reqs, SIG_REJECT,
                       _set(rec, ("binding_signature",), b64url_encode(malleated))),
        _validate_case(m, "ed25519-identity-key", "the Ed25519 key is the identity point and "
                       "the signature is R = identity, S = 0, which a lax verifier accepts for "
                       "any message", ("LaxEd25519Signature", "InvalidEd25519Key"), reqs,
                       Failure("point", STEP_CHECKS), identity_key),
    ]


def _relabelled(m: Material) -> list[Case]:
    rec, base = m.record, m.base
    other_version = _other_version(base.key_version)
    return [
        _validate_case(m, "relabel-user", f"record user_id changed to {OTHER_USER!r}; the "
                       "server is addressed at that user", ("Relabelled",), ("KP-6", "KP-4"),
                       SIG_REJECT, _set(rec, ("user_id",), OTHER_USER), user_id=OTHER_USER),
        _validate_case(m, "relabel-client", f"record client_id changed to {OTHER_CLIENT!r}; "
                       "the server is addressed at that application", ("Relabelled",),
                       ("KP-6", "KP-4"), SIG_REJECT,
                       _set(rec, ("client_id",), OTHER_CLIENT), client_id=OTHER_CLIENT),
        _validate_case(m, "relabel-version", f"record key_version changed to {other_version}",
                       ("Relabelled",), ("KP-6", "KP-4"), SIG_REJECT,
                       _set(rec, ("key_version",), other_version)),
    ]


def _possession(m: Material) -> list[Case]:
    """KP-14 and KP-15: the X25519 key is proven by its own signature, and the change type
    is signed."""
    rec, seed = m.record, m.private.ed25519_seed
    other = kp.generate_private_keys(m.drbg("other-x25519"))
    lifted = _set(rec, FIELD_PATHS["x25519"], b64url_encode(kp.public_keys_of(other).x25519))
    other_type = kp.CHANGE_INITIAL if m.base.change != kp.CHANGE_INITIAL else kp.CHANGE_RESET
    retyped = _set(rec, ("change",), {"type": other_type})
    return [
        _validate_case(m, "x25519-signature-other-key", "the XEdDSA signature is made by "
                       "another X25519 key over the record's own context", ("WrongKey",),
                       ("KP-14",), SIG_REJECT,
                       _set(rec, FIELD_PATHS["x25519_signature"], b64url_encode(
                           xeddsa.sign(other.x25519, m.sealed.possession_message,
                                       m.drbg("other-z")(64))))),
        _validate_case(m, "x25519-key-lifted", "someone else's X25519 public key under this "
                       "record's name: the binding signature is re-made by the record's "
                       "Ed25519 key, but nobody here can make the XEdDSA signature",
                       ("Relabelled",), ("KP-14",), SIG_REJECT, _resign(lifted, seed)),
        _validate_case(m, "change-type-relabelled", f"change.type rewritten to {other_type} "
                       "(as a server turning a rotation into a reset would)", ("Relabelled",),
                       ("KP-15", "KP-4", "KP-6"), SIG_REJECT, retyped),
        _validate_case(m, "change-type-unknown", "change.type is \"revoke\"", ("BadValue",),
                       ("KP-15",), Failure("decode", STEP_CHECKS),
                       _set(rec, ("change",), {"type": "revoke"})),
    ]


def _foreign_path(m: Material) -> list[Case]:
    rec = m.record
    binding = Failure("binding", STEP_SERVER)
    return [
        _validate_case(m, "foreign-user", f"an intact record PUT under the path of user "
                       f"{OTHER_USER!r}", ("ForeignContext",), ("KP-7",), binding, rec,
                       user_id=OTHER_USER),
        _validate_case(m, "foreign-client", f"an intact record PUT under the path of "
                       f"application {OTHER_CLIENT!r}", ("ForeignContext",), ("KP-7",), binding,
                       rec, client_id=OTHER_CLIENT),
    ]


X25519_P = primitives.X25519_P
ORDER_8_A = 325606250916557431795983626356110631294008115727848805560023387167927233504
ORDER_8_B = 39382357235489614581723060781553021112529911719440698176882885853963445705823


def _u(value: int) -> bytes:
    return value.to_bytes(32, "little")


def _bad_points(m: Material) -> list[tuple[str, bytes, str, tuple[str, ...]]]:
    real = m.sealed.public.x25519
    top_bit = real[:31] + bytes([real[31] | 0x80])
    low, noncanon = ("LowOrderPoint",), ("NonCanonicalPoint",)
    return [
        ("low-order-zero", _u(0), "u = 0, a point of order 2", low),
        ("low-order-one", _u(1), "u = 1, a point of order 4", low),
        ("low-order-order8-a", _u(ORDER_8_A), "a point of order 8", low),
        ("low-order-order8-b", _u(ORDER_8_B), "the other point of order 8", low),
        ("low-order-p-minus-1", _u(X25519_P - 1), "u = p - 1, a point of order 4 on the twist",
         low),
        ("non-canonical-p", _u(X25519_P), "u = p, a non-canonical encoding of u = 0",
         (*noncanon, *low)),
        ("non-canonical-p-plus-1", _u(X25519_P + 1), "u = p + 1, a non-canonical encoding of "
         "u = 1", (*noncanon, *low)),
        ("non-canonical-p-plus-9", _u(X25519_P + 9), "u = p + 9, a non-canonical encoding of "
         "the base point (not of low order)", noncanon),
        ("top-bit-set", top_bit, "the published key with its top bit set: the same point "
         "under RFC 7748 masking, but a second encoding", noncanon),
    ]


def _points(m: Material) -> list[Case]:
    cases = []
    for slug, point, what, flags in _bad_points(m):
        record = _resign(_set(m.record, FIELD_PATHS["x25519"], b64url_encode(point)),
                         m.private.ed25519_seed)
        cases.append(_validate_case(m, f"x25519-{slug}", f"X25519 public key is {what}; the "
                                    "binding signature is valid over it", flags, ("KP-5",),
                                    Failure("point", STEP_CHECKS), record))
    return cases


def _swapped(m: Material) -> list[Case]:
    rec = m.record
    keys = rec["public_keys"]
    swapped = _set(rec, ("public_keys",), {"x25519": keys["ed25519"], "ed25519": keys["x25519"]})
    reqs: tuple[str, ...]
    if m.sealed.public.ed25519[31] & 0x80:
        failure, reqs = Failure("point", STEP_CHECKS), ("KP-5",)
        why = "the Ed25519 key has its top bit set, so as an X25519 key it is non-canonical"
    elif not primitives.ed25519_is_canonical(m.sealed.public.x25519):
        failure, reqs = Failure("point", STEP_CHECKS), ("KP-6", "HC-35")
        why = ("the X25519 key is not the encoding of an Edwards point, so the strict Ed25519 "
               "key check rejects it before the signature")
    else:
        failure, reqs = SIG_REJECT, ("KP-6", "KP-5")
        why = ("the Ed25519 key's top bit is clear, so it passes as an X25519 key and the "
               "signature rejects")
    return [_validate_case(m, "swap-public-keys", f"the two public keys swapped; {why}",
                           ("SwappedFields",), reqs, failure, swapped)]


def _lengths(m: Material) -> list[Case]:
    rec = m.record
    extra = m.drbg("extra-byte")(1)
    cases = []
    for name in _fields(m):
        path = FIELD_PATHS[name]
        data = b64url_decode(_get(rec, path))
        reqs = (FIELD_REQUIREMENTS[name], "API-1")
        cases.append(_validate_case(m, f"truncated-{name}", f"{name} is one byte short "
                                    f"({len(data) - 1} bytes)", ("Truncated",), reqs,
                                    Failure("length", STEP_CHECKS),
                                    _set(rec, path, b64url_encode(data[:-1]))))
        cases.append(_validate_case(m, f"extended-{name}", f"{name} has one trailing byte "
                                    f"({len(data) + 1} bytes)", ("TrailingBytes",), reqs,
                                    Failure("length", STEP_CHECKS),
                                    _set(rec, path, b64url_encode(data + extra))))
    return cases


_B64_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def _encodings(m: Material) -> list[Case]:
    rec = m.record
    decode = Failure("decode", STEP_CHECKS)
    cases = []
    padded = [n for n in _fields(m) if len(b64url_decode(_get(rec, FIELD_PATHS[n]))) % 3]
    for name in padded:
        path = FIELD_PATHS[name]
        text = _get(rec, path)
        cases.append(_validate_case(m, f"b64-padded-{name}", f"{name} carries '=' padding",
                                    ("NonCanonicalBase64",), (FIELD_REQUIREMENTS[name], "API-1"),
                                    decode, _set(rec, path, text + "=" * (-len(text) % 4))))
    for name in ("signature", "ciphertext", "x25519", "ed25519", "nonce"):
        path = FIELD_PATHS[name]
        data = b64url_decode(_get(rec, path))
        standard = base64.b64encode(data).decode("ascii").rstrip("=")
        if standard != _get(rec, path):  # the first field whose two alphabets differ
            cases.append(_validate_case(m, f"b64-standard-alphabet-{name}", f"{name} in the "
                                        "standard base64 alphabet ('+' and '/')",
                                        ("NonCanonicalBase64",),
                                        (FIELD_REQUIREMENTS[name], "API-1"), decode,
                                        _set(rec, path, standard)))
            break
    for name in padded:
        path = FIELD_PATHS[name]
        text = _get(rec, path)
        last = _B64_ALPHABET[_B64_ALPHABET.index(text[-1]) | 1]
        cases.append(_validate_case(m, f"b64-trailing-bits-{name}", f"{name} has a non-zero "
                                    "unused trailing bit (decodes to the same bytes)",
                                    ("NonCanonicalBase64",), (FIELD_REQUIREMENTS[name], "API-1"),
                                    decode, _set(rec, path, text[:-1] + last)))
    return cases


def _structure(m: Material) -> list[Case]:
    rec = m.record
    decode = Failure("decode", STEP_CHECKS)
    reqs = ("API-6",)
    unknown: list[tuple[str, Path, Any]] = [
        ("record", ("comment",), "hello"),
        ("public-keys", ("public_keys", "x448"), rec["public_keys"]["x25519"]),
        ("encrypted-private-keys", ("encrypted_private_keys", "tag"), ""),
        ("kek", ("encrypted_private_keys", "kek", "info"), ""),
    ]
    missing: list[Path] = [(name,) for name in kp.RECORD_MEMBERS] + [
        ("public_keys", "ed25519"), ("encrypted_private_keys", "ciphertext"),
        ("encrypted_private_keys", "commitment"),
        ("encrypted_private_keys", "kek"), ("encrypted_private_keys", "kek", "method")]
    if m.base.method == PASSWORD:
        missing.append(("encrypted_private_keys", "kek", "salt"))
    cases = [_validate_case(m, f"unknown-member-{where}", f"an unknown member "
                            f"{'.'.join(path)!r}", ("UnknownMember",), reqs, decode,
                            _set(rec, path, value)) for where, path, value in unknown]
    cases += [_validate_case(m, f"missing-{'-'.join(path).replace('_', '-')}",
                             f"member {'.'.join(path)!r} is absent", ("MissingMember",), reqs,
                             decode, _delete(rec, path)) for path in missing]
    return cases


def _bad_values(m: Material) -> list[Case]:
    rec = m.record
    decode = Failure("decode", STEP_CHECKS)
    specs: list[tuple[str, str, Path, Any, tuple[str, ...]]] = [
        ("key-version-zero", "key_version is 0", ("key_version",), 0, ("KP-8",)),
        ("key-version-too-large", "key_version is 2^32", ("key_version",), 2**32, ("KP-8",)),
        ("key-version-string", "key_version is the string \"1\"", ("key_version",), "1",
         ("KP-8",)),
        ("key-version-boolean", "key_version is true (a boolean is not an integer)",
         ("key_version",), True, ("KP-8",)),
        ("user-id-syntax", "record user_id is an e-mail address", ("user_id",),
         "carol@example.com", ("KD-2",)),
        ("user-id-number", "record user_id is a number", ("user_id",), 42, ("API-6",)),
        ("public-keys-array", "public_keys is an array", ("public_keys",),
         [rec["public_keys"]["x25519"], rec["public_keys"]["ed25519"]], ("API-6",)),
        ("signature-null", "binding_signature is null", ("binding_signature",), None,
         ("API-6",)),
        ("aead-unknown", "aead is A128GCM", ("encrypted_private_keys", "aead"), "A128GCM",
         ("KP-3",)),
        ("kek-method-unknown", "kek.method is \"none\"",
         ("encrypted_private_keys", "kek", "method"), "none", ("KP-2",)),
    ]
    if m.base.method == PASSWORD:
        specs.append(("kek-kdf-unknown", "kek.kdf is scrypt",
                      ("encrypted_private_keys", "kek", "kdf"), "scrypt", ("KP-2",)))
    return [_validate_case(m, slug, what, ("BadValue",), reqs, decode, _set(rec, path, value))
            for slug, what, path, value, reqs in specs]


def _params(m: Material) -> list[Case]:
    if m.base.method != PASSWORD:
        return []
    rec = m.record
    kek = ("encrypted_private_keys", "kek")
    specs: list[tuple[str, str, dict[str, Any]]] = [
        ("t-zero", "t = 0", {"t": 0}),
        ("t-too-large", "t = 17", {"t": 17}),
        ("t-string", "t is the string \"2\"", {"t": "2"}),
        ("p-zero", "p = 0", {"p": 0}),
        ("p-too-large", "p = 17", {"p": 17}),
        ("m-below-8p", "m = 15 KiB with p = 2", {"m": 15, "p": 2}),
        ("m-too-large", "m = 4194305 KiB", {"m": 4194305}),
    ]
    cases = []
    for slug, what, change in specs:
        record = _set(rec, kek, {**_get(rec, kek), **change})
        cases.append(_validate_case(m, f"params-{slug}", f"Argon2id {what} in the record",
                                    ("ParamsOutOfRange",), ("KD-5",),
                                    Failure("params", STEP_CHECKS), record))
    return cases


# --- open families --------------------------------------------------------------------------------

AEAD_REJECT = Failure("aead", STEP_RECOVERY)
COMMITMENT = ("KP-21",)  # the requirement that rejects a KEK other than the record's


def _open_negatives(m: Material) -> list[Case]:
    rec, base = m.record, m.base
    nonce, ct = FIELD_PATHS["nonce"], FIELD_PATHS["ciphertext"]
    seed = m.private.ed25519_seed

    def resigned(record: dict[str, Any]) -> dict[str, Any]:
        return _resign(record, seed, m.private.x25519, m.z)

    other_version = _other_version(base.key_version)
    cases = [
        _open_case(m, "bitflip-nonce-first", "flips bit 0 of the first nonce byte: the "
                   "commitment, derived over the nonce, no longer matches",
                   ("BitFlip",), ("KP-3", *COMMITMENT), AEAD_REJECT,
                   _flip_field(rec, nonce, 0)),
        _open_case(m, "bitflip-commitment-first", "flips bit 0 of the first commitment byte",
                   ("BitFlip",), COMMITMENT, AEAD_REJECT,
                   _flip_field(rec, FIELD_PATHS["commitment"], 0)),
        _open_case(m, "bitflip-ciphertext-first", "flips bit 0 of the first ciphertext byte: "
                   "the commitment matches, AES-GCM rejects",
                   ("BitFlip",), ("KP-3",), AEAD_REJECT, _flip_field(rec, ct, 0)),
        _open_case(m, "bitflip-ciphertext-last", "flips bit 0 of the last byte (the GCM tag)",
                   ("BitFlip",), ("KP-3",), AEAD_REJECT,
                   _flip_field(rec, ct, kp.CIPHERTEXT_LEN - 1)),
    ]
    if base.method == APP:
        cases.append(_open_case(m, "wrong-kb", "the owner derives the KEK from another kB",
                                ("WrongKey",), ("KP-2", *COMMITMENT), AEAD_REJECT, rec,
                                secret={"method": APP, "kb": m.drbg("wrong-kb")(kd.KB_LEN)}))
    else:
        cases += _password_negatives(m)
    cases += [
        _open_case(m, "expected-other-user", f"the owner expects user {OTHER_USER!r}",
                   ("ForeignContext",), ("KP-7",), Failure("binding", STEP_SERVER), rec,
                   user_id=OTHER_USER),
        _open_case(m, "expected-other-client", f"the owner expects application "
                   f"{OTHER_CLIENT!r}", ("ForeignContext",), ("KP-7",),
                   Failure("binding", STEP_SERVER), rec, client_id=OTHER_CLIENT),
        _open_case(m, "expected-other-version", f"the owner expects key_version "
                   f"{other_version}", ("ForeignContext",), ("KP-6",),
                   Failure("binding", STEP_CHECKS), rec, key_version=other_version),
        _open_case(m, "rebound-user", f"re-signed for user {OTHER_USER!r} over the same "
                   "ciphertext", ("Rebound",), ("KP-3", *COMMITMENT), AEAD_REJECT,
                   resigned(_set(rec, ("user_id",), OTHER_USER)), user_id=OTHER_USER),
        _open_case(m, "rebound-client", f"re-signed for application {OTHER_CLIENT!r} over the "
                   "same ciphertext", ("Rebound",), ("KP-3", *COMMITMENT), AEAD_REJECT,
                   resigned(_set(rec, ("client_id",), OTHER_CLIENT)),
                   client_id=OTHER_CLIENT),
        _open_case(m, "rebound-version", f"re-signed for key_version {other_version} over the "
                   "same ciphertext", ("Rebound",), ("KP-3", *COMMITMENT), AEAD_REJECT,
                   resigned(_set(rec, ("key_version",), other_version)),
                   key_version=other_version),
        _open_case(m, "mismatched-private-keys", "the ciphertext is honestly encrypted under "
                   "the record's AEAD key with its AAD, but holds other private keys",
                   ("MismatchedPrivateKeys",), ("KP-11",), Failure("binding", STEP_RECOVERY),
                   _mismatched(m)),
    ]
    return cases


#: The second password of the partitioning case.
OTHER_PASSWORD = "Tr0ub4dor&3"


def _password_negatives(m: Material) -> list[Case]:
    """KP-3 and KP-21 for method password: the salt and costs are bound, and the record
    opens under one password only."""
    rec, base = m.record, m.base
    assert m.kek_spec.params is not None
    kek_path = ("encrypted_private_keys", "kek")
    cached = {"method": CACHED_KEK, "kek": m.kek}
    more_passes = {**_get(rec, kek_path), "t": m.kek_spec.params.t + 1}
    other_salt = b64url_encode(m.drbg("other-salt")(kd.SALT_LEN))
    cases = [
        _open_case(m, "wrong-password", "the owner types another password",
                   ("WrongKey",), ("KP-2", *COMMITMENT), AEAD_REJECT, rec,
                   secret={"method": PASSWORD, "password": f"{base.password}!"}),
        _open_case(m, "bitflip-salt-first", "flips bit 0 of the first salt byte: another "
                   "Argon2id output, another KEK", ("BitFlip", "WrongKey", "ParamsChanged"),
                   ("KP-2", "KP-3", "KD-4", *COMMITMENT), AEAD_REJECT,
                   _flip_field(rec, FIELD_PATHS["salt"], 0)),
        _open_case(m, "params-changed", f"t raised to {m.kek_spec.params.t + 1} in the "
                   "record, opened with the password: another KEK",
                   ("ParamsChanged",), ("KP-3", *COMMITMENT), AEAD_REJECT,
                   _set(rec, kek_path, more_passes)),
        _open_case(m, "params-changed-cached-kek", f"t raised to {m.kek_spec.params.t + 1} "
                   "in the record, opened with the right KEK the owner kept: the AAD binds "
                   "the costs", ("ParamsChanged", "CachedKek"), ("KP-3", *COMMITMENT),
                   AEAD_REJECT, _set(rec, kek_path, more_passes), secret=cached),
        _open_case(m, "salt-changed-cached-kek", "another salt in the record, opened with the "
                   "right KEK the owner kept: the AAD binds the salt",
                   ("ParamsChanged", "CachedKek"), ("KP-3", "KD-4", *COMMITMENT), AEAD_REJECT,
                   _set(rec, FIELD_PATHS["salt"], other_salt), secret=cached),
        _open_case(m, "cached-kek", "the owner opens the record with the KEK it kept",
                   ("CachedKek", "Valid"), ("KP-3", "KP-21", "KP-11"), None, rec,
                   secret=cached),
    ]
    partitioning = _partitioning_record(m)
    cases += [
        _open_case(m, "partitioning-second-password", "a ciphertext that AES-GCM "
                   f"authenticates under the keys of {base.password!r} AND "
                   f"{OTHER_PASSWORD!r} (see gcm_plaintext), with the commitment of the "
                   f"first; opened with {OTHER_PASSWORD!r}: the commitment refuses it, so "
                   "the opening tests one password, not two",
                   ("PartitioningCiphertext",), COMMITMENT, AEAD_REJECT, partitioning,
                   secret={"method": PASSWORD, "password": OTHER_PASSWORD}),
        _open_case(m, "partitioning-first-password", "the same ciphertext opened with the "
                   "password the commitment names: AES-GCM authenticates, but the plaintext "
                   "is no key pair of the record", ("PartitioningCiphertext",),
                   ("KP-21", "KP-11"), Failure("binding", STEP_RECOVERY), partitioning),
    ]
    return cases


def _partitioning_record(m: Material) -> dict[str, Any]:
    """The record with a ciphertext that authenticates under the AEAD keys of the base's
    password and of OTHER_PASSWORD (vectors.gcm_collision), and the commitment of the base's
    password: the first three ciphertext blocks come from Drbg('<label>/partitioning')."""
    assert m.kek_spec.params is not None
    other_kek = kd.password_key_from_stretched(
        stretch(OTHER_PASSWORD, m.kek_spec.salt, m.kek_spec.params), m.base.user_id,
        m.base.client_id)
    mine = kp.record_keys(m.kek, m.nonce, m.sealed.aad)
    theirs = kp.record_keys(other_kek, m.nonce, m.sealed.aad)
    sealed = colliding_ciphertext(mine.aead_key, theirs.aead_key, m.nonce, m.sealed.aad,
                                  m.drbg("partitioning")(kp.PRIVATE_PLAINTEXT_LEN - 16))
    return _set(m.record, FIELD_PATHS["ciphertext"], b64url_encode(sealed))


def _mismatched(m: Material) -> dict[str, Any]:
    other = kp.generate_private_keys(m.drbg("mismatched-private-keys"))
    ciphertext = primitives.aes256gcm_encrypt(m.sealed.aead_key, m.nonce,
                                              other.x25519 + other.ed25519_seed, m.sealed.aad)
    return _set(m.record, FIELD_PATHS["ciphertext"], b64url_encode(ciphertext))


def _public_view_negatives(m: Material) -> list[Case]:
    view = kp.public_view(m.record)
    return [
        _public_view_case(m, "private-member-present", "the whole record offered as a public "
                          "view", ("PrivateMember",), ("KP-10", "API-6"),
                          Failure("decode", STEP_CHECKS), m.record),
        _public_view_case(m, "bitflip-signature-first", "flips bit 0 of the first signature "
                          "byte", ("BitFlip",), ("KP-6",), SIG_REJECT,
                          _flip_field(view, FIELD_PATHS["signature"], 0)),
        _public_view_case(m, "foreign-user", f"the discoverer looked up user {OTHER_USER!r}",
                          ("ForeignContext",), ("KP-7",), Failure("binding", STEP_SERVER), view,
                          user_id=OTHER_USER),
    ]


def _replacement_cases() -> list[Case]:
    specs: list[tuple[str, str, int | None, int, bool]] = [
        ("first-publication", "no stored record: version 1 is not a replay", None, 1, True),
        ("increase", "version 2 replaces version 1", 1, 2, True),
        ("equal", "the stored version again: a replay", 1, 1, False),
        ("decrease", "an older version: a rollback", 5, 4, False),
        ("reset-after-maximum", "version 1 after the largest version", kp.MAX_KEY_VERSION, 1,
         False),
    ]
    return [
        Case(id=f"kp-v1-replacement/{slug}",
             comment=f"{what} (stored_version is the greater of the stored and the last "
                     "deleted record's version)",
             flags=() if ok else ("Replay",), requirements=("KP-8",),
             operation=OP_REPLACEMENT, inputs={"stored_version": stored, "new_version": new},
             failure=None if ok else Failure("replay", STEP_SERVER))
        for slug, what, stored, new, ok in specs
    ]


# --- step 11: continuity -----------------------------------------------------------------------

CHAIN_USER, CHAIN_CLIENT = "dave", "chat.example"


@dataclass(frozen=True)
class Link:
    """One record of the continuity chain: its keys and its public view."""

    key_version: int
    private: kp.PrivateKeys
    view: dict[str, Any]

    @property
    def public(self) -> kp.PublicKeys:
        return kp.public_keys_of(self.private)

    def state_entry(self) -> dict[str, Any]:
        return {"key_version": self.key_version, "x25519": self.public.x25519,
                "ed25519": self.public.ed25519}


def _link(version: int, private: kp.PrivateKeys, change: str,
          previous: kp.PrivateKeys | None, label: str) -> Link:
    drbg = Drbg(f"{FLOW}/v1/chain/{label}/seal")
    kb = drbg(kd.KB_LEN)
    sealed = kp.seal_record(user_id=CHAIN_USER, client_id=CHAIN_CLIENT, key_version=version,
                            private=private, kek=kd.application_key(kb, CHAIN_CLIENT),
                            kek_spec=kp.KekSpec(method=APP),
                            nonce=drbg(primitives.GCM_NONCE_LEN), z=drbg(xeddsa.Z_LEN),
                            change_type=change, previous=previous)
    return Link(version, private, kp.public_view(sealed.record))


@cache
def chain() -> tuple[Link, ...]:
    """Versions 1 (initial), 2 and 3 (rotations), 4 (a reset): keys from
    Drbg('keypair-publication/v1/chain/v<n>')."""
    keys = [kp.generate_private_keys(Drbg(f"{FLOW}/v1/chain/v{n}")) for n in range(1, 5)]
    changes = (kp.CHANGE_INITIAL, kp.CHANGE_ROTATION, kp.CHANGE_ROTATION, kp.CHANGE_RESET)
    return tuple(_link(n + 1, keys[n], changes[n],
                       keys[n - 1] if changes[n] == kp.CHANGE_ROTATION else None, f"v{n + 1}")
                 for n in range(4))


def _forged_rotation(version: int, private: kp.PrivateKeys, signer: kp.PrivateKeys,
                     named: kp.Predecessor, label: str) -> dict[str, Any]:
    """A well-formed rotation to `version` whose hand-over names `named` as the replaced
    version but is signed by `signer`."""
    view = _link(version, private, kp.CHANGE_ROTATION, signer, label).view
    message = kp.rotation_message(CHAIN_USER, CHAIN_CLIENT, named, version,
                                  kp.public_keys_of(private))
    return _set(view, ("change", "signature"),
                b64url_encode(primitives.ed25519_sign(signer.ed25519_seed, message)))


def _retyped(link: Link, change: str) -> dict[str, Any]:
    """The link's view with another change type, both signatures re-made over it."""
    view = _set(link.view, ("change",), {"type": change})
    return _resign(view, link.private.ed25519_seed, link.private.x25519,
                   Drbg(f"{FLOW}/v1/chain/retyped/{change}")(xeddsa.Z_LEN))


def _change_case(slug: str, comment: str, flags: tuple[str, ...],
                 requirements: tuple[str, ...], live: Link | None, deleted: int | None,
                 view: dict[str, Any], failure: Failure | None) -> Case:
    intermediates: dict[str, Any] = {}
    if failure is None and live is not None and view["change"]["type"] == kp.CHANGE_ROTATION:
        record = kp.parse_record(view, public_only=True)
        intermediates = {"rotation_message": kp.rotation_message(
            CHAIN_USER, CHAIN_CLIENT, kp.Predecessor(live.key_version, live.public),
            record.key_version, record.public_keys)}
    return Case(id=f"kp-v1-change/{slug}", comment=comment, flags=flags,
                requirements=requirements, operation=OP_CHANGE,
                inputs={"user_id": CHAIN_USER, "client_id": CHAIN_CLIENT,
                        "state": {"live": live.state_entry() if live else None,
                                  "deleted_version": deleted},
                        "record": view},
                intermediates=intermediates, failure=failure)


def _change_cases() -> list[Case]:
    v1, v2, v3, v4 = chain()
    mallory = kp.generate_private_keys(Drbg(f"{FLOW}/v1/chain/mallory"))
    link = Failure("link", STEP_CONTINUITY)
    sig = Failure("signature", STEP_CONTINUITY)
    replay = Failure("replay", STEP_SERVER)
    stale = _forged_rotation(3, v3.private, v1.private, kp.Predecessor(2, v2.public), "stale")
    other_user = _forged_rotation(2, v2.private, mallory, kp.Predecessor(1, v1.public),
                                  "mallory")
    self_signed = _forged_rotation(2, v2.private, v2.private, kp.Predecessor(1, v1.public),
                                   "self")
    other_previous = _forged_rotation(2, v2.private, v1.private,
                                      kp.Predecessor(1, kp.public_keys_of(mallory)), "named")
    rotation = ("KP-15", "KP-16", "KP-17")
    return [
        _change_case("initial-first", "the first record of an application, initial", (
            "Valid",), ("KP-15", "KP-16"), None, None, v1.view, None),
        _change_case("rotation-next", "version 2 over live version 1, signed by version 1's "
                     "key", ("Valid", "Rotation"), rotation, v1, None, v2.view, None),
        _change_case("rotation-third", "version 3 over live version 2", ("Valid", "Rotation"),
                     rotation, v2, None, v3.view, None),
        _change_case("reset-over-live", "a reset to version 4 over live version 3 (the owner "
                     "lost version 3's keys)", ("Valid", "Reset"), ("KP-15", "KP-18"), v3, None,
                     v4.view, None),
        _change_case("reset-after-deletion", "a reset to version 4 after version 3 was deleted",
                     ("Valid", "Reset"), ("KP-15", "KP-18"), None, 3, v4.view, None),
        _change_case("replay-equal", "the live version 2 again", ("Replay",), ("KP-8",), v2,
                     None, v2.view, replay),
        _change_case("replay-older", "the signed rotation to version 2 replayed over version 3 "
                     "(a rollback)", ("Replay", "Rotation"), ("KP-8",), v3, None, v2.view, replay),
        _change_case("replay-deleted", "the rotation to version 2 after version 2 was deleted",
                     ("Replay",), ("KP-8",), None, 2, v2.view, replay),
        _change_case("gap", "a rotation to version 3 over live version 1", ("VersionGap",),
                     ("KP-16",), v1, None, v3.view, link),
        _change_case("gap-first", "version 4 as the first record", ("VersionGap",), ("KP-16",),
                     None, None, v4.view, link),
        _change_case("initial-over-live", "version 2 marked initial over live version 1",
                     ("WrongChangeType",), ("KP-15",), v1, None, _retyped(v2, kp.CHANGE_INITIAL),
                     link),
        _change_case("reset-as-first", "version 1 marked reset with no history",
                     ("WrongChangeType",), ("KP-15",), None, None,
                     _retyped(v1, kp.CHANGE_RESET), link),
        _change_case("rotation-after-deletion", "a rotation to version 2 after version 1 was "
                     "deleted: nothing live to rotate from", ("WrongChangeType",),
                     ("KP-18",), None, 1, v2.view, link),
        _change_case("rotation-other-users-key", "a rotation to version 2 signed by another "
                     "user's key", ("UnsignedChange",), ("KP-17",), v1, None, other_user, sig),
        _change_case("rotation-stale-key", "a rotation to version 3 naming version 2 but "
                     "signed by version 1's key", ("UnsignedChange",), ("KP-17",), v2, None,
                     stale, sig),
        _change_case("rotation-self-signed", "a rotation to version 2 signed by its own new "
                     "key", ("UnsignedChange",), ("KP-17",), v1, None, self_signed, sig),
        _change_case("rotation-other-previous-keys", "version 1's key signs a hand-over naming "
                     "other previous keys than the live ones", ("UnsignedChange",), ("KP-17",),
                     v1, None, other_previous, sig),
        _change_case("rotation-signature-bitflip", "bit 0 of the first byte of the rotation "
                     "signature flipped", ("UnsignedChange", "BitFlip"), ("KP-17",), v1, None,
                     _flip_field(v2.view, ("change", "signature"), 0), sig),
    ]


def _deletion_case(slug: str, comment: str, flags: tuple[str, ...],
                   requirements: tuple[str, ...], live: Link, deletion: Any,
                   failure: Failure | None) -> Case:
    intermediates: dict[str, Any] = {}
    if failure is None:
        intermediates = {"deletion_message": kp.deletion_message(
            CHAIN_USER, CHAIN_CLIENT, live.key_version, live.public)}
    return Case(id=f"kp-v1-deletion/{slug}", comment=comment, flags=flags,
                requirements=requirements, operation=OP_DELETION,
                inputs={"user_id": CHAIN_USER, "client_id": CHAIN_CLIENT,
                        "live": live.state_entry(), "deletion": deletion},
                intermediates=intermediates, failure=failure)


def _deletion_cases() -> list[Case]:
    v1, v2, _, _ = chain()
    signed = kp.sign_deletion(user_id=CHAIN_USER, client_id=CHAIN_CLIENT, key_version=2,
                              private=v2.private)
    sig = Failure("signature", STEP_CONTINUITY)
    return [
        _deletion_case("signed", "version 2 deleted with its own key", ("Valid",),
                       ("KP-19",), v2, signed, None),
        _deletion_case("other-key", "signed by version 1's key", ("UnsignedDeletion",),
                       ("KP-19",), v2, kp.sign_deletion(user_id=CHAIN_USER,
                                                        client_id=CHAIN_CLIENT, key_version=2,
                                                        private=v1.private), sig),
        _deletion_case("bitflip-signature", "bit 0 of the first signature byte flipped",
                       ("UnsignedDeletion", "BitFlip"), ("KP-19",), v2,
                       _flip_field(signed, ("signature",), 0), sig),
        _deletion_case("stale-version", "version 1's signed deletion replayed while version 2 "
                       "is live", ("Replay",), ("KP-19",), v2,
                       kp.sign_deletion(user_id=CHAIN_USER, client_id=CHAIN_CLIENT,
                                        key_version=1, private=v1.private),
                       Failure("replay", STEP_CONTINUITY)),
        _deletion_case("missing-signature", "no signature member", ("MissingMember",),
                       ("KP-19", "API-6"), v2, _delete(signed, ("signature",)),
                       Failure("decode", STEP_CONTINUITY)),
    ]


def _history_case(slug: str, comment: str, flags: tuple[str, ...],
                  requirements: tuple[str, ...], pinned: Link, later: list[dict[str, Any]],
                  failure: Failure | None, outputs: dict[str, Any] | None = None) -> Case:
    return Case(id=f"kp-v1-history/{slug}", comment=comment, flags=flags,
                requirements=requirements, operation=OP_HISTORY,
                inputs={"user_id": CHAIN_USER, "client_id": CHAIN_CLIENT,
                        "pinned": pinned.state_entry(), "later": later},
                outputs=outputs or {}, failure=failure)


def _history_cases() -> list[Case]:
    v1, v2, v3, v4 = chain()
    mallory = kp.generate_private_keys(Drbg(f"{FLOW}/v1/chain/mallory"))
    planted = _forged_rotation(2, v2.private, mallory, kp.Predecessor(1, v1.public), "mallory")
    return [
        _history_case("rotations", "pinned version 1 follows two rotations to version 3",
                      ("Valid", "Rotation"), ("KP-20", "KP-17"), v1, [v2.view, v3.view], None,
                      {"latest_version": 3, "resets": []}),
        _history_case("with-reset", "pinned version 2 follows a rotation and a reset: the "
                      "reset is reported", ("Valid", "Reset"), ("KP-20", "KP-18"), v2,
                      [v3.view, v4.view], None, {"latest_version": 4, "resets": [4]}),
        _history_case("gap", "pinned version 1 is shown version 3 only", ("VersionGap",),
                      ("KP-20",), v1, [v3.view], Failure("link", STEP_CONTINUITY)),
        _history_case("substituted", "pinned version 1 is shown a version 2 signed by another "
                      "user's key", ("UnsignedChange",), ("KP-20", "KP-17"), v1, [planted],
                      Failure("signature", STEP_CONTINUITY)),
        _history_case("initial-in-between", "pinned version 1 is shown a version 2 marked "
                      "initial", ("WrongChangeType",), ("KP-20",), v1,
                      [_retyped(v2, kp.CHANGE_INITIAL)], Failure("link", STEP_CONTINUITY)),
    ]


def _v1_cases() -> list[Case]:
    materials = [material(base) for base in BASES]
    cases: list[Case] = []
    for m in materials:
        cases += _positives(m)
    # A re-wrap: positives only; an ML-KEM base: its own family (the others are about the
    # members every record has, and are run on the bases without ML-KEM).
    for m in (m for m in materials if not m.base.rewraps and not m.base.mlkem):
        for family in (_bitflips, _strict_ed25519, _possession, _relabelled, _foreign_path,
                       _points, _swapped, _lengths,
                       _encodings, _structure, _bad_values, _params, _open_negatives,
                       _public_view_negatives):
            cases += family(m)
    for m in (m for m in materials if m.base.mlkem):
        cases += _mlkem_negatives(m)
    return cases + _replacement_cases() + _change_cases() + _deletion_cases() + \
        _history_cases() + _rewrap_cases()


# --- the ML-KEM-768 key of the hybrid suites ---------------------------------------------------

def _mlkem_negatives(m: Material) -> list[Case]:
    """KP-5, KP-3, KP-6, KP-11 for the optional ML-KEM-768 key: a key failing the modulus
    check, wrong lengths, a ciphertext of the other kind, the key dropped or replaced
    under the old signatures, and sealed private keys whose seed is not the published key's."""
    assert m.private.mlkem_seed is not None and m.sealed.public.mlkem768 is not None
    rec, path = m.record, ("public_keys", "mlkem768")
    key = m.sealed.public.mlkem768
    # Coefficient 0 of the first polynomial set to q = 3329 (12 bits, little-endian).
    bad_key = bytes([3329 & 0xFF, (key[1] & 0xF0) | (3329 >> 8)]) + key[2:]
    bad = _resign(_set(rec, path, b64url_encode(bad_key)), m.private.ed25519_seed,
                  m.private.x25519)
    other_seed = m.drbg("other-mlkem-seed")(64)
    other_key = kp.public_keys_of(kp.PrivateKeys(x25519=m.private.x25519,
                                                 ed25519_seed=m.private.ed25519_seed,
                                                 mlkem_seed=other_seed)).mlkem768
    assert other_key is not None
    ciphertext = b64url_decode(rec["encrypted_private_keys"]["ciphertext"])
    signature = Failure("signature", STEP_CHECKS)
    cases = [
        _validate_case(m, "mlkem768-coefficient-q", "the ML-KEM-768 key's first coefficient "
                       "is q = 3329 (not reduced); both signatures are valid over it",
                       ("InvalidMlKemKey",), ("KP-5",), Failure("point", STEP_CHECKS), bad),
        _public_view_case(m, "mlkem768-coefficient-q", "the public view of a record whose "
                          "ML-KEM-768 key fails the modulus check", ("InvalidMlKemKey",),
                          ("KP-5",), Failure("point", STEP_CHECKS), kp.public_view(bad)),
        _validate_case(m, "truncated-mlkem768", "the ML-KEM-768 key is one byte short (1183 "
                       "bytes)", ("Truncated",), ("KP-5", "API-1"),
                       Failure("length", STEP_CHECKS), _set(rec, path, b64url_encode(key[:-1]))),
        _validate_case(m, "extended-mlkem768", "the ML-KEM-768 key has one trailing byte",
                       ("TrailingBytes",), ("KP-5", "API-1"), Failure("length", STEP_CHECKS),
                       _set(rec, path, b64url_encode(key + b"\x00"))),
        _validate_case(m, "ciphertext-without-mlkem-seed", "the ciphertext has the 80 bytes "
                       "of a record without the ML-KEM seed while the record publishes an "
                       "ML-KEM-768 key", ("MismatchedLength",), ("KP-3",),
                       Failure("length", STEP_CHECKS),
                       _set(rec, ("encrypted_private_keys", "ciphertext"),
                            b64url_encode(ciphertext[:kp.CIPHERTEXT_LEN]))),
        _validate_case(m, "mlkem768-dropped", "the ML-KEM-768 key removed from the record: "
                       "its 144-byte ciphertext no longer fits the public keys (the binding "
                       "signature, which covers the key, would refuse it next)",
                       ("MissingMember",), ("KP-3",), Failure("length", STEP_CHECKS),
                       _delete(rec, path)),
        _public_view_case(m, "mlkem768-dropped", "the ML-KEM-768 key removed from the public "
                          "view (a downgrade to the X25519 suites): the binding signature "
                          "covers it", ("MissingMember",), ("KP-6", "KP-4"), signature,
                          _delete(kp.public_view(rec), path)),
        _validate_case(m, "mlkem768-replaced", "another valid ML-KEM-768 key in place of the "
                       "signed one", ("BitFlip",), ("KP-6", "KP-4"), signature,
                       _set(rec, path, b64url_encode(other_key))),
        _public_view_case(m, "mlkem768-replaced", "the public view with another valid "
                          "ML-KEM-768 key in place of the signed one", ("BitFlip",),
                          ("KP-6", "KP-4"), signature,
                          kp.public_view(_set(rec, path, b64url_encode(other_key)))),
        _open_case(m, "mismatched-mlkem-seed", "the record publishes one ML-KEM-768 key and "
                   "seals the seed of another (every signature and the commitment valid): the "
                   "owner refuses the keys", ("MismatchedPrivateKeys",), ("KP-11",),
                   Failure("binding", STEP_RECOVERY), _mismatched_mlkem(m, other_seed)),
    ]
    return cases


def _mismatched_mlkem(m: Material, other_seed: bytes) -> dict[str, Any]:
    """The record of `m` whose ciphertext seals `other_seed` in place of its ML-KEM seed,
    under the record's own AEAD key and AAD (so only KP-11's comparison rejects it)."""
    assert m.private.mlkem_seed is not None
    plaintext = m.private.x25519 + m.private.ed25519_seed + other_seed
    ciphertext = primitives.aes256gcm_encrypt(m.sealed.aead_key, m.nonce, plaintext,
                                              m.sealed.aad)
    return _set(m.record, ("encrypted_private_keys", "ciphertext"), b64url_encode(ciphertext))


# --- step 12: re-wrapping after a kB rotation --------------------------------------------------

def _rewrap_intermediates(sealed: kp.Sealed, old_kek: bytes, new_kek: bytes
                          ) -> dict[str, Any]:
    return {"old_kek": old_kek, "new_kek": new_kek, "aad": sealed.aad,
            "aead_key": sealed.aead_key, "commitment": sealed.commitment,
            "ciphertext": sealed.ciphertext, "rotation_message": sealed.rotation_message,
            "rotation_signature": sealed.rotation_signature}


def _rewrap_case(slug: str, comment: str, flags: tuple[str, ...],
                 requirements: tuple[str, ...], old_kb: bytes,
                 failure: Failure | None) -> Case:
    """rotation-0's record re-wrapped with the kB, nonce and Z of rewrap-0."""
    old, new = material(BASES_BY_NAME["rotation-0"]), material(BASES_BY_NAME["rewrap-0"])
    assert new.kb is not None
    intermediates: dict[str, Any] = {}
    outputs: dict[str, Any] = {}
    if failure is None:
        intermediates = _rewrap_intermediates(new.sealed, old.kek, new.kek)
        outputs = {"record": new.record}
    return Case(id=f"kp-v1-rewrap/{slug}", comment=comment, flags=("ApplicationKey", *flags),
                requirements=requirements, operation=OP_REWRAP,
                inputs={"record": old.record, "user_id": old.base.user_id,
                        "client_id": old.base.client_id, "old_kb": old_kb,
                        "new_kb": new.kb, "nonce": new.nonce, "z": new.z},
                intermediates=intermediates, outputs=outputs, failure=failure)


def _rewrap_cases() -> list[Case]:
    old = material(BASES_BY_NAME["rotation-0"])
    assert old.kb is not None
    return [
        _rewrap_case("after-kb-rotation", "version 2 of alice/notes.example opened with the "
                     "old kB and re-sealed as version 3 under the new kB: the same public "
                     "keys, a rotation signed by them (the output is rewrap-0's record)",
                     ("Rewrap", "Valid"), ("KP-22", "KP-17", "KP-21", "KP-11"), old.kb, None),
        _rewrap_case("wrong-old-kb", "the owner no longer holds the kB the record was sealed "
                     "under: the commitment refuses it, and the record can only be replaced "
                     "by a reset", ("WrongKey",), ("KP-22", *COMMITMENT),
                     Drbg(f"{FLOW}/v1/rewrap/wrong-old-kb")(kd.KB_LEN), AEAD_REJECT),
    ]


# --- fxakeys --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class FxaBase:
    name: str
    comment: str


FXA_BASES = (
    FxaBase("enc-0", "encPrivKey as the original made it"),
    FxaBase("enc-1", "encPrivKey as the original made it (second key)"),
    FxaBase("enc-2", "encPrivKey as the original made it (third key)"),
)


@dataclass(frozen=True)
class FxaMaterial:
    kbr: bytes
    nonce: bytes
    private: bytes
    enc_priv_key: str


@cache
def _fxa_material(base: FxaBase) -> FxaMaterial:
    drbg = Drbg(f"{FLOW}/fxakeys/{base.name}")
    kbr, nonce, private = drbg(32), drbg(kp.FXAKEYS_NONCE_LEN), drbg(32)
    return FxaMaterial(kbr, nonce, private, kp.fxakeys_enc_priv_key(kbr, nonce, private))


def _fxa_open(base: FxaBase, slug: str, comment: str, flags: tuple[str, ...],
              failure: Failure | None, enc_priv_key: str, kbr: bytes | None = None) -> Case:
    mat = _fxa_material(base)
    return Case(id=f"kp-fxakeys-{base.name}/open" + (f"/{slug}" if slug else ""),
                comment=comment, flags=flags, requirements=("KP-13",), operation=OP_FXA_OPEN,
                inputs={"kbr": kbr or mat.kbr, "enc_priv_key": enc_priv_key},
                outputs={} if failure else {"x25519_private": mat.private}, failure=failure)


def _fxa_cases(base: FxaBase) -> list[Case]:
    mat = _fxa_material(base)
    plaintext = mat.private.hex()
    box = primitives.xsalsa20poly1305_encrypt(mat.kbr, mat.nonce, plaintext.encode("ascii"))
    seal = Case(id=f"kp-fxakeys-{base.name}/seal", comment=base.comment, flags=("Compat",),
                requirements=("KP-13",), operation=OP_FXA_SEAL,
                inputs={"kbr": mat.kbr, "nonce": mat.nonce, "x25519_private": mat.private},
                intermediates={"x25519_public": primitives.x25519_public_key(mat.private),
                               "plaintext": plaintext, "box": box},
                outputs={"enc_priv_key": mat.enc_priv_key})
    return [seal, _fxa_open(base, "", f"the owner opens {base.name}", ("Compat",), None,
                            mat.enc_priv_key)]


def _fxa_negatives(base: FxaBase) -> list[Case]:
    mat = _fxa_material(base)
    raw = bytes.fromhex(mat.enc_priv_key)
    n = kp.FXAKEYS_NONCE_LEN
    aead, length = Failure("aead", "compat"), Failure("length", "compat")
    decode = Failure("decode", "compat")
    fork = Drbg(f"{FLOW}/fxakeys/{base.name}/plaintext-not-hex")

    def boxed(plaintext: bytes) -> str:
        return (mat.nonce + primitives.xsalsa20poly1305_encrypt(mat.kbr, mat.nonce,
                                                                plaintext)).hex()

    enc = mat.enc_priv_key
    return [
        _fxa_open(base, "bitflip-box-first", "flips bit 0 of the first box byte (the tag)",
                  ("BitFlip",), aead, _flip(raw, n).hex()),
        _fxa_open(base, "bitflip-box-last", "flips bit 0 of the last box byte", ("BitFlip",),
                  aead, _flip(raw, len(raw) - 1).hex()),
        _fxa_open(base, "bitflip-nonce-first", "flips bit 0 of the first nonce byte",
                  ("BitFlip",), aead, _flip(raw, 0).hex()),
        _fxa_open(base, "wrong-kbr", "opened with another kBr", ("WrongKey",), aead, enc,
                  kbr=Drbg(f"{FLOW}/fxakeys/{base.name}/wrong-kbr")(32)),
        _fxa_open(base, "truncated", "one byte short", ("Truncated",), length, enc[:-2]),
        _fxa_open(base, "trailing-byte", "one trailing zero byte", ("TrailingBytes",), length,
                  enc + "00"),
        _fxa_open(base, "uppercase-hex", "uppercase hex", ("NonCanonicalHex",), decode,
                  enc.upper()),
        _fxa_open(base, "odd-length", "one hex character short", ("NonCanonicalHex",), decode,
                  enc[:-1]),
        _fxa_open(base, "non-hex-character", "the first character is 'g'",
                  ("NonCanonicalHex",), decode, "g" + enc[1:]),
        _fxa_open(base, "embedded-space", "a space after the first byte (Python's fromhex "
                  "would skip it)", ("NonCanonicalHex",), decode, enc[:2] + " " + enc[2:]),
        _fxa_open(base, "plaintext-uppercase", "the box holds the private key as UPPERCASE "
                  "hex", ("BadPlaintext",), decode, boxed(mat.private.hex().upper().encode())),
        _fxa_open(base, "plaintext-not-hex", "the box holds 64 bytes that are not hex text",
                  ("BadPlaintext",), decode, boxed(_non_hex(fork(64)))),
    ]


def _non_hex(data: bytes) -> bytes:
    """64 bytes guaranteed not to be hex text: the first byte is forced outside [0-9a-f]."""
    return b"\xff" + data[1:]


# --- files ----------------------------------------------------------------------------------------

def generate() -> list[VectorFile]:
    fxa_cases: list[Case] = []
    for base in FXA_BASES:
        fxa_cases += _fxa_cases(base)
    for base in FXA_BASES:
        fxa_cases += _fxa_negatives(base)
    return [
        VectorFile(schema_name=FLOW, flow=FLOW, profile="v1",
                   source_labels=(f"Drbg('{FLOW}/v1/<base case>') draws x25519_private (32), "
                                  "ed25519_seed (32), then kB (32) or the salt (16), then the "
                                  "nonce (12), then the XEdDSA Z (64); a mutation needing "
                                  "bytes draws from '<label>/<mutation>' (extra-byte, "
                                  "wrong-kb, mismatched-private-keys, other-x25519, other-z, "
                                  "other-mlkem-seed); an ML-KEM base draws its 64-byte seed "
                                  "after ed25519_seed; "
                                  f"the continuity chain's keys come from "
                                  f"Drbg('{FLOW}/v1/chain/v<n>') and each record's kB, nonce "
                                  f"and Z from Drbg('{FLOW}/v1/chain/<label>/seal')"),
                   notes=NOTES_V1, cases=_v1_cases()),
        VectorFile(schema_name=f"{FLOW}.fxakeys", flow=FLOW, profile="fxakeys",
                   source_labels=(f"Drbg('{FLOW}/fxakeys/<base case>') draws kbr (32), the "
                                  "nonce (24), then x25519_private (32); mutations draw from "
                                  "'<label>/<mutation>' (wrong-kbr, plaintext-not-hex)"),
                   notes=NOTES_FXAKEYS, cases=fxa_cases),
    ]


# --- verification: the consumer side -------------------------------------------------------------

def _verify_seal(case: Mapping[str, Any]) -> Outcome:
    inputs = case["inputs"]
    user_id, client_id, version = inputs["user_id"], inputs["client_id"], inputs["key_version"]
    seed = inputs.get("mlkem_seed")
    private = kp.PrivateKeys(x25519=hx(inputs["x25519_private"], "x25519_private"),
                             ed25519_seed=hx(inputs["ed25519_seed"], "ed25519_seed"),
                             mlkem_seed=None if seed is None else hx(seed, "mlkem_seed"))
    kek_in = inputs["kek"]
    stretched: bytes | None = None
    if kek_in["method"] == APP:
        kek_spec = kp.KekSpec(method=APP)
        kek_info = kd.application_key_info(client_id)
        kek = kd.application_key(hx(kek_in["kb"], "kb"), client_id)
    else:
        params = kd.Argon2Params(t=kek_in["t"], m=kek_in["m"], p=kek_in["p"])
        kek_spec = kp.KekSpec(method=PASSWORD, salt=hx(kek_in["salt"], "salt"), params=params)
        kek_info = kd.password_key_info(user_id, client_id)
        stretched = stretch(kek_in["password"], kek_spec.salt, params)
        kek = kd.password_key_from_stretched(stretched, user_id, client_id)
    previous = None
    if inputs["previous_ed25519_seed"] is not None:
        previous = kp.PrivateKeys(
            x25519=hx(inputs["previous_x25519_private"], "previous_x25519_private"),
            ed25519_seed=hx(inputs["previous_ed25519_seed"], "previous_ed25519_seed"))
    sealed = kp.seal_record(user_id=user_id, client_id=client_id, key_version=version,
                            private=private, kek=kek, kek_spec=kek_spec,
                            nonce=hx(inputs["nonce"], "nonce"), z=hx(inputs["z"], "z"),
                            change_type=inputs["change_type"], previous=previous)
    outcome = compare(
        case,
        intermediates={"kek_info": kek_info, "stretched": stretched, "kek": kek,
                       "x25519_public": sealed.public.x25519,
                       "ed25519_public": sealed.public.ed25519,
                       **_mlkem_public(sealed.public), "plaintext": sealed.plaintext,
                       "aad": sealed.aad, "aead_key": sealed.aead_key,
                       "commitment": sealed.commitment, "ciphertext": sealed.ciphertext,
                       "signed_message": sealed.signed_message, "signature": sealed.signature,
                       "possession_message": sealed.possession_message,
                       "x25519_signature": sealed.x25519_signature,
                       "rotation_message": sealed.rotation_message,
                       "rotation_signature": sealed.rotation_signature},
        outputs={"record": sealed.record, "public_view": kp.public_view(sealed.record)})
    if not outcome.agreed:
        return outcome
    # The consumers accept what the producer made, and the owner gets the keys back.
    record = case["outputs"]["record"]
    kp.validate_publication(record, user_id=user_id, client_id=client_id)
    kp.validate_public_view(case["outputs"]["public_view"], user_id=user_id,
                            client_id=client_id)
    opened = kp.open_record(record, user_id=user_id, client_id=client_id, kek=kek,
                            key_version=version)
    if opened != private:
        return Outcome(False, "open_record does not give back the sealed private keys")
    return outcome


def _validated_view(record: kp.Record, user_id: str, client_id: str
                    ) -> tuple[dict[str, Any], dict[str, Any]]:
    context = (user_id, client_id, record.key_version, record.public_keys, record.change.type)
    return ({"signed_message": kp.binding_message(*context),
             "possession_message": kp.possession_message(*context)},
            {"key_version": record.key_version, "x25519_public": record.public_keys.x25519,
             "ed25519_public": record.public_keys.ed25519, **_mlkem_public(record.public_keys)})


def _verify_validate(case: Mapping[str, Any]) -> Outcome:
    inputs = case["inputs"]
    user_id, client_id = inputs["user_id"], inputs["client_id"]
    if case["result"] == "invalid":
        return expect_rejection(case, lambda: kp.validate_publication(
            inputs["record"], user_id=user_id, client_id=client_id))
    record = kp.validate_publication(inputs["record"], user_id=user_id, client_id=client_id)
    intermediates, outputs = _validated_view(record, user_id, client_id)
    return compare(case, intermediates=intermediates, outputs=outputs)


def _verify_public_view(case: Mapping[str, Any]) -> Outcome:
    inputs = case["inputs"]
    user_id, client_id = inputs["user_id"], inputs["client_id"]
    if case["result"] == "invalid":
        return expect_rejection(case, lambda: kp.validate_public_view(
            inputs["public_view"], user_id=user_id, client_id=client_id))
    record = kp.validate_public_view(inputs["public_view"], user_id=user_id,
                                     client_id=client_id)
    intermediates, outputs = _validated_view(record, user_id, client_id)
    return compare(case, intermediates=intermediates, outputs=outputs)


def _verify_open(case: Mapping[str, Any]) -> Outcome:
    inputs = case["inputs"]
    record, user_id, client_id = inputs["record"], inputs["user_id"], inputs["client_id"]
    kek = kek_for(record, inputs["secret"], user_id, client_id)
    outcome = compare(case, intermediates=opening_intermediates(record, kek))
    if not outcome.agreed:
        return outcome

    def open_it() -> kp.PrivateKeys:
        return kp.open_record(record, user_id=user_id, client_id=client_id, kek=kek,
                              key_version=inputs["key_version"])

    if case["result"] == "invalid":
        return expect_rejection(case, open_it)
    private = open_it()
    return compare(case, outputs={"x25519_private": private.x25519,
                                  "ed25519_seed": private.ed25519_seed,
                                  **_mlkem_seed(private)})


def _verify_replacement(case: Mapping[str, Any]) -> Outcome:
    inputs = case["inputs"]

    def check() -> None:
        kp.check_replacement(inputs["stored_version"], inputs["new_version"])

    if case["result"] == "invalid":
        return expect_rejection(case, check)
    check()
    return compare(case, intermediates={}, outputs={})


def _predecessor(entry: Mapping[str, Any]) -> kp.Predecessor:
    return kp.Predecessor(key_version=entry["key_version"], public_keys=kp.PublicKeys(
        x25519=hx(entry["x25519"], "x25519"), ed25519=hx(entry["ed25519"], "ed25519")))


def _verify_change(case: Mapping[str, Any]) -> Outcome:
    inputs = case["inputs"]
    state_in = inputs["state"]
    live = None if state_in["live"] is None else _predecessor(state_in["live"])
    state = kp.StoredState(live=live, deleted_version=state_in["deleted_version"])
    record = kp.validate_public_view(inputs["record"], user_id=inputs["user_id"],
                                     client_id=inputs["client_id"])
    if case["result"] == "invalid":
        return expect_rejection(case, lambda: kp.check_change(state, record))
    kp.check_change(state, record)
    intermediates: dict[str, Any] = {}
    if live is not None and record.change.type == kp.CHANGE_ROTATION:
        intermediates = {"rotation_message": kp.rotation_message(
            record.user_id, record.client_id, live, record.key_version, record.public_keys)}
    return compare(case, intermediates=intermediates, outputs={})


def _verify_deletion(case: Mapping[str, Any]) -> Outcome:
    inputs = case["inputs"]
    live = _predecessor(inputs["live"])

    def check() -> None:
        kp.check_deletion(live, kp.parse_deletion(inputs["deletion"]),
                          user_id=inputs["user_id"], client_id=inputs["client_id"])

    if case["result"] == "invalid":
        return expect_rejection(case, check)
    check()
    return compare(case, intermediates={"deletion_message": kp.deletion_message(
        inputs["user_id"], inputs["client_id"], live.key_version, live.public_keys)})


def _verify_history(case: Mapping[str, Any]) -> Outcome:
    inputs = case["inputs"]

    def follow() -> kp.History:
        views = [kp.validate_public_view(view, user_id=inputs["user_id"],
                                         client_id=inputs["client_id"])
                 for view in inputs["later"]]
        return kp.follow_history(_predecessor(inputs["pinned"]), views)

    if case["result"] == "invalid":
        return expect_rejection(case, follow)
    history = follow()
    return compare(case, outputs={"latest_version": history.latest.key_version,
                                  "resets": list(history.resets)})


def _verify_fxa_seal(case: Mapping[str, Any]) -> Outcome:
    inputs = case["inputs"]
    kbr, nonce = hx(inputs["kbr"], "kbr"), hx(inputs["nonce"], "nonce")
    private = hx(inputs["x25519_private"], "x25519_private")
    plaintext = private.hex()
    enc = kp.fxakeys_enc_priv_key(kbr, nonce, private)
    outcome = compare(
        case,
        intermediates={"x25519_public": primitives.x25519_public_key(private),
                       "plaintext": plaintext,
                       "box": primitives.xsalsa20poly1305_encrypt(kbr, nonce,
                                                                  plaintext.encode("ascii"))},
        outputs={"enc_priv_key": enc})
    if outcome.agreed and kp.fxakeys_open_enc_priv_key(kbr, enc) != private:
        return Outcome(False, "fxakeys_open_enc_priv_key does not give back the private key")
    return outcome


def _verify_fxa_open(case: Mapping[str, Any]) -> Outcome:
    inputs = case["inputs"]
    kbr, enc = hx(inputs["kbr"], "kbr"), inputs["enc_priv_key"]
    if case["result"] == "invalid":
        return expect_rejection(case, lambda: kp.fxakeys_open_enc_priv_key(kbr, enc))
    return compare(case, outputs={"x25519_private": kp.fxakeys_open_enc_priv_key(kbr, enc)})


def _verify_rewrap(case: Mapping[str, Any]) -> Outcome:
    inputs = case["inputs"]
    user_id, client_id = inputs["user_id"], inputs["client_id"]
    old_kb, new_kb = hx(inputs["old_kb"], "old_kb"), hx(inputs["new_kb"], "new_kb")

    def rewrap() -> kp.Sealed:
        return kp.rewrap_record(inputs["record"], user_id=user_id, client_id=client_id,
                                old_kb=old_kb, new_kb=new_kb, nonce=hx(inputs["nonce"], "nonce"),
                                z=hx(inputs["z"], "z"))

    if case["result"] == "invalid":
        return expect_rejection(case, rewrap)
    sealed = rewrap()
    outcome = compare(case, intermediates=_rewrap_intermediates(
        sealed, kd.application_key(old_kb, client_id), kd.application_key(new_kb, client_id)),
        outputs={"record": sealed.record})
    if not outcome.agreed:
        return outcome
    # KP-22: the new record is an ordinary rotation of the old one with the same keys.
    old = kp.parse_record(inputs["record"])
    new = kp.validate_publication(sealed.record, user_id=user_id, client_id=client_id)
    kp.check_change(kp.StoredState(live=kp.predecessor_of(old), deleted_version=None), new)
    if new.public_keys != old.public_keys:
        return Outcome(False, "the re-wrapped record has other public keys")
    return outcome


_VERIFIERS: dict[tuple[str, str], Callable[[Mapping[str, Any]], Outcome]] = {
    ("v1", OP_SEAL): _verify_seal,
    ("v1", OP_VALIDATE): _verify_validate,
    ("v1", OP_PUBLIC_VIEW): _verify_public_view,
    ("v1", OP_OPEN): _verify_open,
    ("v1", OP_REPLACEMENT): _verify_replacement,
    ("v1", OP_CHANGE): _verify_change,
    ("v1", OP_DELETION): _verify_deletion,
    ("v1", OP_HISTORY): _verify_history,
    ("v1", OP_REWRAP): _verify_rewrap,
    ("fxakeys", OP_FXA_SEAL): _verify_fxa_seal,
    ("fxakeys", OP_FXA_OPEN): _verify_fxa_open,
}


def verify_case(header: Mapping[str, Any], case: Mapping[str, Any]) -> Outcome:
    """Replay one case through the spec's consumer side."""
    return dispatch(_VERIFIERS, header, case)
