"""Flow: keypair-publication.

Steps (see the keypair-publication chapter):
  1. The client generates an X25519 private key and an Ed25519 seed (KP-1).
  2. It derives the key-encryption key: kBr or the password key (KP-2).
  3. It encrypts x25519_private || ed25519_seed under the KEK with an AAD binding user,
     application, version, method and public keys (KP-3).
  4. It signs the public keys and their binding with the Ed25519 key (KP-4).
  5. Every party checks public keys (KP-5) and the binding signature (KP-6).
  6. The server accepts the record from its owner only, for the addressed resource
     (KP-7), with a strictly increasing key_version (KP-8); 404 when absent (KP-12).
  7. The owner fetches the whole record, bytes unchanged (KP-9).
  8. Anyone fetches the public view, never private material (KP-10).
  9. The owner decrypts and checks the private keys against the public ones (KP-11).

Compat profile fxakeys: encPrivKey as the original made it (KP-13).

The functions here are pure: records are plain JSON-shaped dicts, randomness is passed in.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from keyflows.spec import primitives, wire
from keyflows.spec.drbg import RandomSource
from keyflows.spec.encoding import b64url_decode_exact, b64url_encode, labelled_context, u32be
from keyflows.spec.errors import (
    BindingError,
    DecodeError,
    LengthError,
    ReplayError,
)
from keyflows.spec.key_derivation import (
    SALT_LEN,
    Argon2Params,
    application_key,
    check_argon2_params,
    check_identifier,
    password_key,
)

METHOD_APPLICATION_KEY = "application-key"
METHOD_PASSWORD = "password"
METHODS = (METHOD_APPLICATION_KEY, METHOD_PASSWORD)
AEAD_ID = "A256GCM"
MAX_KEY_VERSION = 2**32 - 1
PRIVATE_PLAINTEXT_LEN = 64
CIPHERTEXT_LEN = PRIVATE_PLAINTEXT_LEN + primitives.GCM_TAG_LEN

RECORD_MEMBERS = ("user_id", "client_id", "key_version", "public_keys", "binding_signature",
                  "encrypted_private_keys")
PUBLIC_MEMBERS = ("user_id", "client_id", "key_version", "public_keys", "binding_signature")
PRIVATE_MEMBERS = ("encrypted_private_keys",)


@dataclass(frozen=True)
class PrivateKeys:
    x25519: bytes
    ed25519_seed: bytes


@dataclass(frozen=True)
class PublicKeys:
    x25519: bytes
    ed25519: bytes


@dataclass(frozen=True)
class KekSpec:
    """How the key-encryption key is made; `salt`/`params` only for method password."""

    method: str
    salt: bytes = b""
    params: Argon2Params | None = None


@dataclass(frozen=True)
class Record:
    """A parsed record: every field decoded and length-checked."""

    user_id: str
    client_id: str
    key_version: int
    public_keys: PublicKeys
    binding_signature: bytes
    kek: KekSpec | None
    nonce: bytes
    ciphertext: bytes


# --- step 1 ---------------------------------------------------------------------------

def generate_private_keys(random: RandomSource) -> PrivateKeys:
    """Step 1 (KP-1): 32 random bytes for each private key."""
    return PrivateKeys(x25519=random(32), ed25519_seed=random(32))


def public_keys_of(private: PrivateKeys) -> PublicKeys:
    return PublicKeys(x25519=primitives.x25519_public_key(private.x25519),
                      ed25519=primitives.ed25519_public_key(private.ed25519_seed))


# --- step 2 ---------------------------------------------------------------------------

def derive_kek(kek: KekSpec, *, user_id: str, client_id: str, kb: bytes | None = None,
               password: str | None = None) -> bytes:
    """Step 2 (KP-2): kBr for application-key, the password key for password."""
    if kek.method == METHOD_APPLICATION_KEY:
        if kb is None:
            raise ValueError("method application-key needs kB")
        return application_key(kb, client_id)
    if kek.method == METHOD_PASSWORD:
        if password is None or kek.params is None:
            raise ValueError("method password needs a password and Argon2id parameters")
        return password_key(password, kek.salt, kek.params, user_id, client_id)
    raise DecodeError(f"unknown KEK method {kek.method!r}", requirement="KP-2")


# --- steps 3 and 4 ----------------------------------------------------------------------

def record_aad(user_id: str, client_id: str, key_version: int, method: str,
               public: PublicKeys) -> bytes:
    """Step 3 (KP-3): the AAD binding the ciphertext to its owner and public keys."""
    return labelled_context("keypair-record", check_identifier(user_id, "user_id"),
                            check_identifier(client_id, "client_id"), u32be(key_version),
                            method.encode("ascii"), public.x25519, public.ed25519)


def binding_message(user_id: str, client_id: str, key_version: int,
                    public: PublicKeys) -> bytes:
    """Step 4 (KP-4): what the binding signature covers."""
    return labelled_context("public-keys", check_identifier(user_id, "user_id"),
                            check_identifier(client_id, "client_id"), u32be(key_version),
                            public.x25519, public.ed25519)


@dataclass(frozen=True)
class Sealed:
    """A sealed record and every intermediate value of steps 1-4 (for vectors)."""

    record: dict[str, Any]
    public: PublicKeys
    aad: bytes
    plaintext: bytes
    ciphertext: bytes
    signed_message: bytes
    signature: bytes


def seal_record(*, user_id: str, client_id: str, key_version: int, private: PrivateKeys,
                kek: bytes, kek_spec: KekSpec, nonce: bytes) -> Sealed:
    """Steps 3 and 4: encrypt the private keys and sign the public ones."""
    check_key_version(key_version)
    public = public_keys_of(private)
    aad = record_aad(user_id, client_id, key_version, kek_spec.method, public)
    plaintext = private.x25519 + private.ed25519_seed
    ciphertext = primitives.aes256gcm_encrypt(kek, nonce, plaintext, aad)
    message = binding_message(user_id, client_id, key_version, public)
    signature = primitives.ed25519_sign(private.ed25519_seed, message)
    record = {
        "user_id": user_id,
        "client_id": client_id,
        "key_version": key_version,
        "public_keys": {"x25519": b64url_encode(public.x25519),
                        "ed25519": b64url_encode(public.ed25519)},
        "binding_signature": b64url_encode(signature),
        "encrypted_private_keys": {
            "aead": AEAD_ID,
            "kek": kek_spec_to_wire(kek_spec),
            "nonce": b64url_encode(nonce),
            "ciphertext": b64url_encode(ciphertext),
        },
    }
    return Sealed(record=record, public=public, aad=aad, plaintext=plaintext,
                  ciphertext=ciphertext, signed_message=message, signature=signature)


def kek_spec_to_wire(kek: KekSpec) -> dict[str, Any]:
    if kek.method == METHOD_APPLICATION_KEY:
        return {"method": METHOD_APPLICATION_KEY}
    assert kek.params is not None
    return {"method": METHOD_PASSWORD, "kdf": "argon2id", "salt": b64url_encode(kek.salt),
            "t": kek.params.t, "m": kek.params.m, "p": kek.params.p}


# --- step 5: parsing and checks every party makes ------------------------------------------

def check_key_version(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_KEY_VERSION:
        raise DecodeError("key_version must be an integer in 1..2^32-1", requirement="KP-8")
    return value


def parse_public_keys(obj: object) -> PublicKeys:
    """Step 5 (KP-5): decode both public keys and reject bad X25519 points."""
    members = wire.members(obj, ("x25519", "ed25519"), "public_keys")
    x = b64url_decode_exact(wire.string(members, "x25519", "public_keys"), 32,
                            field="public_keys.x25519", requirement="API-1")
    e = b64url_decode_exact(wire.string(members, "ed25519", "public_keys"), 32,
                            field="public_keys.ed25519", requirement="API-1")
    primitives.check_x25519_public_key(x, requirement="KP-5")
    return PublicKeys(x25519=x, ed25519=e)


def parse_kek(obj: object) -> KekSpec:
    if not isinstance(obj, dict) or "method" not in obj:
        raise DecodeError("kek must be an object with a method", requirement="API-6")
    method = obj["method"]
    if method == METHOD_APPLICATION_KEY:
        wire.members(obj, ("method",), "kek")
        return KekSpec(method=METHOD_APPLICATION_KEY)
    if method == METHOD_PASSWORD:
        members = wire.members(obj, ("method", "kdf", "salt", "t", "m", "p"), "kek")
        if members["kdf"] != "argon2id":
            raise DecodeError("kek.kdf must be argon2id", requirement="KP-2")
        salt = b64url_decode_exact(wire.string(members, "salt", "kek"), SALT_LEN,
                                   field="kek.salt", requirement="KD-4")
        params = Argon2Params(t=members["t"], m=members["m"], p=members["p"])
        check_argon2_params(params)
        return KekSpec(method=METHOD_PASSWORD, salt=salt, params=params)
    raise DecodeError(f"kek.method must be one of {', '.join(METHODS)}", requirement="KP-2")


def parse_record(obj: object, *, public_only: bool = False) -> Record:
    """Decode a record (or its public view) and check lengths, params and points."""
    if public_only:
        members = wire.members(obj, PUBLIC_MEMBERS, "record")
    else:
        members = wire.members(obj, RECORD_MEMBERS, "record")
    user_id = wire.string(members, "user_id", "record")
    client_id = wire.string(members, "client_id", "record")
    check_identifier(user_id, "user_id")
    check_identifier(client_id, "client_id")
    key_version = check_key_version(members["key_version"])
    signature = b64url_decode_exact(wire.string(members, "binding_signature", "record"),
                                    primitives.ED25519_SIG_LEN, field="binding_signature",
                                    requirement="API-1")
    kek: KekSpec | None = None
    nonce = ciphertext = b""
    if not public_only:
        enc = wire.members(members["encrypted_private_keys"],
                           ("aead", "kek", "nonce", "ciphertext"), "encrypted_private_keys")
        if enc["aead"] != AEAD_ID:
            raise DecodeError("encrypted_private_keys.aead must be A256GCM", requirement="KP-3")
        nonce = b64url_decode_exact(wire.string(enc, "nonce", "encrypted_private_keys"),
                                    primitives.GCM_NONCE_LEN, field="nonce", requirement="API-1")
        ciphertext = b64url_decode_exact(wire.string(enc, "ciphertext", "encrypted_private_keys"),
                                         CIPHERTEXT_LEN, field="ciphertext",
                                         requirement="API-1")
        kek = parse_kek(enc["kek"])
    public = parse_public_keys(members["public_keys"])
    return Record(user_id=user_id, client_id=client_id, key_version=key_version,
                  public_keys=public, binding_signature=signature, kek=kek, nonce=nonce,
                  ciphertext=ciphertext)


def check_binding(record: Record, *, user_id: str, client_id: str,
                  key_version: int | None = None) -> None:
    """Step 5/6 (KP-6, KP-7): the record is for the expected user, app (and version),
    and its binding signature verifies over exactly that context."""
    if record.user_id != user_id or record.client_id != client_id:
        raise BindingError("record is bound to another user or application",
                           requirement="KP-7")
    if key_version is not None and record.key_version != key_version:
        raise BindingError("record has another key_version", requirement="KP-6")
    message = binding_message(user_id, client_id, record.key_version, record.public_keys)
    primitives.ed25519_verify(record.public_keys.ed25519, message, record.binding_signature,
                              requirement="KP-6")


def validate_publication(obj: object, *, user_id: str, client_id: str) -> Record:
    """Step 6, server side: everything a server can check without the KEK."""
    record = parse_record(obj)
    check_binding(record, user_id=user_id, client_id=client_id)
    return record


def validate_public_view(obj: object, *, user_id: str, client_id: str) -> Record:
    """Step 8, discoverer side: parse the public view and verify its binding."""
    record = parse_record(obj, public_only=True)
    check_binding(record, user_id=user_id, client_id=client_id)
    return record


def public_view(record: dict[str, Any]) -> dict[str, Any]:
    """Step 8 (KP-10): the record without any private member."""
    return {k: record[k] for k in PUBLIC_MEMBERS}


def check_replacement(stored_version: int | None, new_version: int) -> None:
    """Step 6 (KP-8): versions strictly increase; an equal or older one is a replay."""
    if stored_version is not None and new_version <= stored_version:
        raise ReplayError(f"key_version {new_version} is not greater than {stored_version}",
                          requirement="KP-8")


# --- step 9: owner recovery -------------------------------------------------------------------

def open_record(obj: object, *, user_id: str, client_id: str, kek: bytes,
                key_version: int | None = None) -> PrivateKeys:
    """Step 9 (KP-11): verify, decrypt and check the private keys match the public ones.

    `key_version`, when given, is the version the owner expects (KP-6): a record of
    another version is refused before the KEK is used.
    """
    record = parse_record(obj)
    check_binding(record, user_id=user_id, client_id=client_id, key_version=key_version)
    assert record.kek is not None
    aad = record_aad(user_id, client_id, record.key_version, record.kek.method,
                     record.public_keys)
    plaintext = primitives.aes256gcm_decrypt(kek, record.nonce, record.ciphertext, aad,
                                             requirement="KP-3")
    private = PrivateKeys(x25519=plaintext[:32], ed25519_seed=plaintext[32:])
    if public_keys_of(private) != record.public_keys:
        raise BindingError("decrypted private keys do not match the published public keys",
                           requirement="KP-11")
    return private


# --- compat profile: fxakeys ----------------------------------------------------------------------

FXAKEYS_NONCE_LEN = 24
_LOWER_HEX_64 = re.compile(rb"\A[0-9a-f]{64}\Z")


def fxakeys_enc_priv_key(kbr: bytes, nonce: bytes, x25519_private: bytes) -> str:
    """KP-13: hex(nonce || SecretBox(kBr, nonce, hex(private key)))."""
    if len(nonce) != FXAKEYS_NONCE_LEN:
        raise LengthError("fxakeys nonce must be 24 bytes", requirement="KP-13")
    box = primitives.xsalsa20poly1305_encrypt(kbr, nonce, x25519_private.hex().encode("ascii"))
    return (nonce + box).hex()


def fxakeys_open_enc_priv_key(kbr: bytes, enc_priv_key: str) -> bytes:
    """KP-13, consumer side: returns the 32-byte private key."""
    try:
        raw = bytes.fromhex(enc_priv_key)
    except ValueError as exc:
        raise DecodeError("encPrivKey is not hex", requirement="KP-13") from exc
    if enc_priv_key != raw.hex():
        raise DecodeError("encPrivKey is not lowercase hex", requirement="KP-13")
    # 24-byte nonce, 16-byte Poly1305 tag, 64 characters of hex text.
    if len(raw) != FXAKEYS_NONCE_LEN + 16 + 64:
        raise LengthError("encPrivKey has the wrong length", requirement="KP-13")
    text = primitives.xsalsa20poly1305_decrypt(kbr, raw[:FXAKEYS_NONCE_LEN],
                                               raw[FXAKEYS_NONCE_LEN:], requirement="KP-13")
    # The box authenticated, so a bad plaintext is a format error, not an AEAD failure;
    # only the original's form (64 lowercase hex characters) is accepted.
    if not _LOWER_HEX_64.match(text):
        raise DecodeError("encPrivKey plaintext is not 64 lowercase hex characters",
                          requirement="KP-13")
    return bytes.fromhex(text.decode("ascii"))
