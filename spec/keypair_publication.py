"""Flow: keypair-publication.

Steps (see the keypair-publication chapter):
 1. The client generates an X25519 private key and an Ed25519 seed, and optionally an
     ML-KEM-768 seed for the post-quantum hybrid suites (KP-1).
 2. It derives the key-encryption key: kBr or the password key (KP-2).
 3. It encrypts x25519_private || ed25519_seed [|| mlkem_seed] with an AAD binding user,
     application,
     version, the KEK's method with its salt and costs, and the public keys (KP-3), under
     an AEAD key derived from the KEK beside a key commitment the owner checks before
     decrypting, so a record opens under one KEK (one password) only (KP-21).
 4. It signs the public keys and their binding with the Ed25519 key (KP-4).
 5. Every party checks public keys (KP-5) and the binding signature (KP-6).
 6. The server accepts the record from its owner only, for the addressed resource
     (KP-7), with a strictly increasing key_version (KP-8); 404 when absent (KP-12).
 7. The owner fetches the whole record, bytes unchanged (KP-9).
 8. Anyone fetches the public view, never private material (KP-10).
 9. The owner checks the key commitment (KP-21), decrypts and checks the private keys
     against the public ones (KP-11).
 10. Possession of the X25519 private key: an XEdDSA signature over the binding (KP-14).
 11. Continuity: every record names its change (initial, rotation, reset) under the
     binding signature (KP-15); versions grow by exactly one (KP-16); a rotation is signed
     by the key it replaces (KP-17); a reset is a distinct, logged event that needs no old
     key, so no sequence of requests locks an owner out (KP-18); a deletion is signed by
     the key it deletes (KP-19); a party that pinned a version follows rotations only and
     surfaces resets (KP-20).
 12. After a kB rotation the owner re-wraps each application-key record: a rotation to the
     next version with the same keys under the new kBr (KP-22).

Compat profile fxakeys: encPrivKey as the original made it (KP-13).

The functions here are pure: records are plain JSON-shaped dicts, randomness is passed in.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from keyflows.spec import mlkem, primitives, wire, xeddsa
from keyflows.spec.drbg import RandomSource
from keyflows.spec.encoding import (
    b64url_decode,
    b64url_decode_exact,
    b64url_encode,
    labelled_context,
    u32be,
)
from keyflows.spec.errors import (
    AeadError,
    BindingError,
    DecodeError,
    LengthError,
    LinkError,
    ReplayError,
)
from keyflows.spec.key_derivation import (
    SALT_LEN,
    Argon2Params,
    application_key,
    check_argon2_params,
    check_identifier,
    labelled_hkdf,
    password_key,
)

METHOD_APPLICATION_KEY = "application-key"
METHOD_PASSWORD = "password"
METHODS = (METHOD_APPLICATION_KEY, METHOD_PASSWORD)
AEAD_ID = "A256GCM"
MAX_KEY_VERSION = 2**32 - 1
PRIVATE_PLAINTEXT_LEN = 64
CIPHERTEXT_LEN = PRIVATE_PLAINTEXT_LEN + primitives.GCM_TAG_LEN
#: With the optional ML-KEM-768 seed (d || z, 64 bytes) after the two 32-byte keys.
PRIVATE_PLAINTEXT_LEN_MLKEM = PRIVATE_PLAINTEXT_LEN + mlkem.PRIVATE_SEED_LEN
CIPHERTEXT_LEN_MLKEM = PRIVATE_PLAINTEXT_LEN_MLKEM + primitives.GCM_TAG_LEN
COMMITMENT_LEN = 32
KDF_ARGON2ID = "argon2id"

PUBLIC_MEMBERS = ("user_id", "client_id", "key_version", "public_keys", "change",
                  "binding_signature", "x25519_signature")
RECORD_MEMBERS = (*PUBLIC_MEMBERS, "encrypted_private_keys")
PRIVATE_MEMBERS = ("encrypted_private_keys",)
ENCRYPTED_MEMBERS = ("aead", "kek", "nonce", "commitment", "ciphertext")

#: The kinds of change a record states (KP-15).
CHANGE_INITIAL = "initial"
CHANGE_ROTATION = "rotation"
CHANGE_RESET = "reset"
CHANGE_TYPES = (CHANGE_INITIAL, CHANGE_ROTATION, CHANGE_RESET)
DELETION_MEMBERS = ("key_version", "signature")


@dataclass(frozen=True)
class PrivateKeys:
    x25519: bytes
    ed25519_seed: bytes
    #: The ML-KEM-768 private key as its 64-byte seed d || z (FIPS 203 KeyGen_internal),
    #: None for a record without the hybrid suites.
    mlkem_seed: bytes | None = None


@dataclass(frozen=True)
class PublicKeys:
    x25519: bytes
    ed25519: bytes
    #: The 1184-byte ML-KEM-768 encapsulation key, None when the record has none.
    mlkem768: bytes | None = None


@dataclass(frozen=True)
class KekSpec:
    """How the key-encryption key is made; `salt`/`params` only for method password."""

    method: str
    salt: bytes = b""
    params: Argon2Params | None = None


@dataclass(frozen=True)
class Change:
    """What a record says about its predecessor (KP-15): `signature` for a rotation only."""

    type: str
    signature: bytes = b""


@dataclass(frozen=True)
class Record:
    """A parsed record: every field decoded and length-checked."""

    user_id: str
    client_id: str
    key_version: int
    public_keys: PublicKeys
    change: Change
    binding_signature: bytes
    x25519_signature: bytes
    kek: KekSpec | None
    nonce: bytes
    commitment: bytes
    ciphertext: bytes


@dataclass(frozen=True)
class Predecessor:
    """What a rotation is checked against: the replaced version and its public keys."""

    key_version: int
    public_keys: PublicKeys


@dataclass(frozen=True)
class StoredState:
    """What a server holds for one (user_id, client_id): the live record's version and
    public keys (None after a deletion or before any publication) and the version of
    the last deleted record (None if none was ever deleted)."""

    live: Predecessor | None
    deleted_version: int | None

    @property
    def floor(self) -> int:
        """The highest version ever accepted, 0 when none was."""
        versions = [v for v in (self.live.key_version if self.live else None,
                                self.deleted_version) if v is not None]
        return max(versions) if versions else 0


# --- step 1 ---------------------------------------------------------------------------

def generate_private_keys(random: RandomSource, *, with_mlkem: bool = False) -> PrivateKeys:
    """Step 1 (KP-1): 32 random bytes for each private key, then, `with_mlkem`, the 64
    bytes of the ML-KEM-768 seed (drawn last, so a record without it draws as before)."""
    x25519, ed25519_seed = random(32), random(32)
    seed = random(mlkem.PRIVATE_SEED_LEN) if with_mlkem else None
    return PrivateKeys(x25519=x25519, ed25519_seed=ed25519_seed, mlkem_seed=seed)


def public_keys_of(private: PrivateKeys) -> PublicKeys:
    encapsulation_key = (None if private.mlkem_seed is None
                         else mlkem.public_key_from_seed(private.mlkem_seed))
    return PublicKeys(x25519=primitives.x25519_public_key(private.x25519),
                      ed25519=primitives.ed25519_public_key(private.ed25519_seed),
                      mlkem768=encapsulation_key)


def private_plaintext(private: PrivateKeys) -> bytes:
    """Step 3 (KP-3): what the record encrypts: x25519 || ed25519_seed [|| mlkem_seed]."""
    return private.x25519 + private.ed25519_seed + (private.mlkem_seed or b"")


def ciphertext_length(public: PublicKeys) -> int:
    """Step 5 (KP-3): the ciphertext length the public keys imply (80, or 144 with ML-KEM)."""
    return CIPHERTEXT_LEN if public.mlkem768 is None else CIPHERTEXT_LEN_MLKEM


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

def public_key_fields(public: PublicKeys) -> tuple[bytes, ...]:
    """The public keys as they enter every signed context, in this order; the ML-KEM-768
    key last, only when the record has one (so every signature, the AAD and the
    commitment cover it, and records without it sign exactly what they signed before)."""
    if public.mlkem768 is None:
        return (public.x25519, public.ed25519)
    return (public.x25519, public.ed25519, public.mlkem768)


def kek_fields(kek: KekSpec) -> tuple[bytes, ...]:
    """Step 3 (KP-3): how the KEK is made, as it enters the AAD: the method, and for
    method password the KDF name, the salt and the three costs."""
    method = kek.method.encode("ascii")
    if kek.method != METHOD_PASSWORD:
        return (method,)
    assert kek.params is not None
    return (method, KDF_ARGON2ID.encode("ascii"), kek.salt, u32be(kek.params.t),
            u32be(kek.params.m), u32be(kek.params.p))


def record_aad(user_id: str, client_id: str, key_version: int, kek: KekSpec,
               public: PublicKeys) -> bytes:
    """Step 3 (KP-3): the AAD binding the ciphertext to its owner, to how its KEK is
    made (a changed salt or cost is refused even by an owner holding the right KEK) and
    to the public keys."""
    return labelled_context("keypair-record", check_identifier(user_id, "user_id"),
                            check_identifier(client_id, "client_id"), u32be(key_version),
                            *kek_fields(kek), *public_key_fields(public))


@dataclass(frozen=True)
class RecordKeys:
    """Step 3 (KP-21): what the KEK yields for one record."""

    aead_key: bytes
    commitment: bytes


def record_keys(kek: bytes, nonce: bytes, aad: bytes) -> RecordKeys:
    """Step 3 (KP-21): the AEAD key and the key commitment, two HKDF-SHA256 outputs of the
    KEK over the same (nonce, AAD). The commitment is collision resistant in the KEK (a
    second KEK with the same commitment is a SHA-256 collision), so a record's ciphertext
    can only be opened by the KEK it was made with, however it was crafted."""
    return RecordKeys(
        aead_key=labelled_hkdf(kek, "keypair-record-key", nonce, aad),
        commitment=labelled_hkdf(kek, "keypair-record-commitment", nonce, aad,
                                 length=COMMITMENT_LEN))


def check_commitment(keys: RecordKeys, commitment: bytes) -> None:
    """Step 9 (KP-21): the owner's KEK must give the record's commitment, compared in
    constant time, before the AEAD runs (failure class aead, as for any wrong key)."""
    if not primitives.constant_time_equal(keys.commitment, commitment):
        raise AeadError("the key commitment does not match: another KEK (kB or password) "
                        "made this record", requirement="KP-21")


def _keyed_context(label: str, user_id: str, client_id: str, key_version: int,
                   public: PublicKeys, *extra: bytes) -> bytes:
    return labelled_context(label, check_identifier(user_id, "user_id"),
                            check_identifier(client_id, "client_id"), u32be(key_version),
                            *public_key_fields(public), *extra)


def binding_message(user_id: str, client_id: str, key_version: int, public: PublicKeys,
                    change_type: str) -> bytes:
    """Step 4 (KP-4, KP-15): what the binding signature covers."""
    return _keyed_context("public-keys", user_id, client_id, key_version, public,
                          change_type.encode("ascii"))


def possession_message(user_id: str, client_id: str, key_version: int, public: PublicKeys,
                       change_type: str) -> bytes:
    """Step 10 (KP-14): what the XEdDSA signature by the X25519 key covers."""
    return _keyed_context("x25519-possession", user_id, client_id, key_version, public,
                          change_type.encode("ascii"))


def rotation_message(user_id: str, client_id: str, previous: Predecessor,
                     key_version: int, public: PublicKeys) -> bytes:
    """Step 11 (KP-17): what the replaced Ed25519 key signs to hand over to the new keys."""
    return labelled_context("keypair-rotation", check_identifier(user_id, "user_id"),
                            check_identifier(client_id, "client_id"),
                            u32be(previous.key_version), *public_key_fields(previous.public_keys),
                            u32be(key_version), *public_key_fields(public))


def deletion_message(user_id: str, client_id: str, key_version: int,
                     public: PublicKeys) -> bytes:
    """Step 11 (KP-19): what the deleted record's Ed25519 key signs to end its chain."""
    return _keyed_context("keypair-deletion", user_id, client_id, key_version, public)


@dataclass(frozen=True)
class Sealed:
    """A sealed record and every intermediate value of steps 1-4, 10 and 11 (for vectors)."""

    record: dict[str, Any]
    public: PublicKeys
    aad: bytes
    aead_key: bytes
    commitment: bytes
    plaintext: bytes
    ciphertext: bytes
    signed_message: bytes
    signature: bytes
    possession_message: bytes
    x25519_signature: bytes
    rotation_message: bytes | None
    rotation_signature: bytes | None


def change_to_wire(change: Change) -> dict[str, Any]:
    if change.type == CHANGE_ROTATION:
        return {"type": CHANGE_ROTATION, "signature": b64url_encode(change.signature)}
    return {"type": change.type}


def seal_record(*, user_id: str, client_id: str, key_version: int, private: PrivateKeys,
                kek: bytes, kek_spec: KekSpec, nonce: bytes, z: bytes,
                change_type: str = CHANGE_INITIAL,
                previous: PrivateKeys | None = None) -> Sealed:
    """Steps 3, 4, 10 and 11: encrypt the private keys, sign the public ones with both
    keys, and for a rotation sign the hand-over with the replaced Ed25519 key `previous`
    (whose version is key_version - 1). `z` is the 64 random bytes of XEdDSA."""
    check_key_version(key_version)
    if change_type not in CHANGE_TYPES:
        raise ValueError(f"unknown change type {change_type!r}")
    if (change_type == CHANGE_ROTATION) != (previous is not None):
        raise ValueError("a rotation, and only a rotation, is signed by the previous keys")
    public = public_keys_of(private)
    aad = record_aad(user_id, client_id, key_version, kek_spec, public)
    keys = record_keys(kek, nonce, aad)
    plaintext = private_plaintext(private)
    ciphertext = primitives.aes256gcm_encrypt(keys.aead_key, nonce, plaintext, aad)
    message = binding_message(user_id, client_id, key_version, public, change_type)
    signature = primitives.ed25519_sign(private.ed25519_seed, message)
    possession = possession_message(user_id, client_id, key_version, public, change_type)
    x25519_signature = xeddsa.sign(private.x25519, possession, z)
    rotation: bytes | None = None
    rotation_signature: bytes | None = None
    change = Change(type=change_type)
    if previous is not None:
        predecessor = Predecessor(key_version=key_version - 1,
                                  public_keys=public_keys_of(previous))
        rotation = rotation_message(user_id, client_id, predecessor, key_version, public)
        rotation_signature = primitives.ed25519_sign(previous.ed25519_seed, rotation)
        change = Change(type=CHANGE_ROTATION, signature=rotation_signature)
    record = {
        "user_id": user_id,
        "client_id": client_id,
        "key_version": key_version,
        "public_keys": public_keys_to_wire(public),
        "change": change_to_wire(change),
        "binding_signature": b64url_encode(signature),
        "x25519_signature": b64url_encode(x25519_signature),
        "encrypted_private_keys": {
            "aead": AEAD_ID,
            "kek": kek_spec_to_wire(kek_spec),
            "nonce": b64url_encode(nonce),
            "commitment": b64url_encode(keys.commitment),
            "ciphertext": b64url_encode(ciphertext),
        },
    }
    return Sealed(record=record, public=public, aad=aad, aead_key=keys.aead_key,
                  commitment=keys.commitment, plaintext=plaintext,
                  ciphertext=ciphertext, signed_message=message, signature=signature,
                  possession_message=possession, x25519_signature=x25519_signature,
                  rotation_message=rotation, rotation_signature=rotation_signature)


def public_keys_to_wire(public: PublicKeys) -> dict[str, Any]:
    out = {"x25519": b64url_encode(public.x25519), "ed25519": b64url_encode(public.ed25519)}
    if public.mlkem768 is not None:
        out["mlkem768"] = b64url_encode(public.mlkem768)
    return out


def kek_spec_to_wire(kek: KekSpec) -> dict[str, Any]:
    if kek.method == METHOD_APPLICATION_KEY:
        return {"method": METHOD_APPLICATION_KEY}
    assert kek.params is not None
    return {"method": METHOD_PASSWORD, "kdf": KDF_ARGON2ID, "salt": b64url_encode(kek.salt),
            "t": kek.params.t, "m": kek.params.m, "p": kek.params.p}


# --- step 5: parsing and checks every party makes ------------------------------------------

def check_key_version(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_KEY_VERSION:
        raise DecodeError("key_version must be an integer in 1..2^32-1", requirement="KP-8")
    return value


def parse_public_keys(obj: object) -> PublicKeys:
    """Step 5 (KP-5): decode the public keys and reject bad X25519 points and ML-KEM-768
    keys failing FIPS 203's encapsulation-key check (a coefficient >= q)."""
    members = wire.members(obj, ("x25519", "ed25519"), "public_keys", optional=("mlkem768",))
    # The X25519 key's length is the point check's first step (LengthError, KP-5).
    x = b64url_decode(wire.string(members, "x25519", "public_keys"), requirement="API-1")
    e = b64url_decode_exact(wire.string(members, "ed25519", "public_keys"), 32,
                            field="public_keys.ed25519", requirement="API-1")
    primitives.check_x25519_public_key(x, requirement="KP-5")
    encapsulation_key: bytes | None = None
    if "mlkem768" in members:
        encapsulation_key = b64url_decode_exact(
            wire.string(members, "mlkem768", "public_keys"), mlkem.ENCAPSULATION_KEY_LEN,
            field="public_keys.mlkem768", requirement="API-1")
        mlkem.check_encapsulation_key(encapsulation_key, requirement="KP-5")
    return PublicKeys(x25519=x, ed25519=e, mlkem768=encapsulation_key)


def parse_kek(obj: object) -> KekSpec:
    if not isinstance(obj, dict) or "method" not in obj:
        raise DecodeError("kek must be an object with a method", requirement="API-6")
    method = obj["method"]
    if method == METHOD_APPLICATION_KEY:
        wire.members(obj, ("method",), "kek")
        return KekSpec(method=METHOD_APPLICATION_KEY)
    if method == METHOD_PASSWORD:
        members = wire.members(obj, ("method", "kdf", "salt", "t", "m", "p"), "kek")
        if members["kdf"] != KDF_ARGON2ID:
            raise DecodeError("kek.kdf must be argon2id", requirement="KP-2")
        salt = b64url_decode_exact(wire.string(members, "salt", "kek"), SALT_LEN,
                                   field="kek.salt", requirement="KD-4")
        params = Argon2Params(t=members["t"], m=members["m"], p=members["p"])
        check_argon2_params(params)
        return KekSpec(method=METHOD_PASSWORD, salt=salt, params=params)
    raise DecodeError(f"kek.method must be one of {', '.join(METHODS)}", requirement="KP-2")


def parse_change(obj: object) -> Change:
    """KP-15: {"type": "initial" | "reset"} or {"type": "rotation", "signature": b64url(64)}."""
    if not isinstance(obj, dict) or "type" not in obj:
        raise DecodeError("change must be an object with a type", requirement="API-6")
    kind = obj["type"]
    if kind == CHANGE_ROTATION:
        members = wire.members(obj, ("type", "signature"), "change")
        signature = b64url_decode_exact(wire.string(members, "signature", "change"),
                                        primitives.ED25519_SIG_LEN, field="change.signature",
                                        requirement="API-1")
        return Change(type=CHANGE_ROTATION, signature=signature)
    if kind in (CHANGE_INITIAL, CHANGE_RESET):
        wire.members(obj, ("type",), "change")
        return Change(type=kind)
    raise DecodeError(f"change.type must be one of {', '.join(CHANGE_TYPES)}",
                      requirement="KP-15")


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
    change = parse_change(members["change"])
    signature = b64url_decode_exact(wire.string(members, "binding_signature", "record"),
                                    primitives.ED25519_SIG_LEN, field="binding_signature",
                                    requirement="API-1")
    x25519_signature = b64url_decode_exact(wire.string(members, "x25519_signature", "record"),
                                           xeddsa.SIGNATURE_LEN, field="x25519_signature",
                                           requirement="API-1")
    kek: KekSpec | None = None
    nonce = commitment = ciphertext = b""
    if not public_only:
        enc = wire.members(members["encrypted_private_keys"], ENCRYPTED_MEMBERS,
                           "encrypted_private_keys")
        if enc["aead"] != AEAD_ID:
            raise DecodeError("encrypted_private_keys.aead must be A256GCM", requirement="KP-3")
        nonce = b64url_decode_exact(wire.string(enc, "nonce", "encrypted_private_keys"),
                                    primitives.GCM_NONCE_LEN, field="nonce", requirement="API-1")
        commitment = b64url_decode_exact(wire.string(enc, "commitment", "encrypted_private_keys"),
                                         COMMITMENT_LEN, field="commitment",
                                         requirement="API-1")
        ciphertext = b64url_decode(wire.string(enc, "ciphertext", "encrypted_private_keys"),
                                   requirement="API-1")
        if len(ciphertext) not in (CIPHERTEXT_LEN, CIPHERTEXT_LEN_MLKEM):
            raise LengthError(f"ciphertext must be {CIPHERTEXT_LEN} or {CIPHERTEXT_LEN_MLKEM} "
                              f"bytes, got {len(ciphertext)}", requirement="API-1")
        kek = parse_kek(enc["kek"])
    public = parse_public_keys(members["public_keys"])
    if ciphertext and len(ciphertext) != ciphertext_length(public):
        raise LengthError(f"a ciphertext of {len(ciphertext)} bytes does not fit the public "
                          f"keys: {ciphertext_length(public)} bytes "
                          f"({'with' if public.mlkem768 else 'without'} the ML-KEM-768 seed)",
                          requirement="KP-3")
    return Record(user_id=user_id, client_id=client_id, key_version=key_version,
                  public_keys=public, change=change, binding_signature=signature,
                  x25519_signature=x25519_signature, kek=kek, nonce=nonce,
                  commitment=commitment, ciphertext=ciphertext)


def check_binding(record: Record, *, user_id: str, client_id: str,
                  key_version: int | None = None) -> None:
    """Step 5/6 (KP-6, KP-7, KP-14): the record is for the expected user, app (and
    version), its binding signature verifies over exactly that context, and so does the
    XEdDSA signature by its X25519 key (possession of both private keys)."""
    if record.user_id != user_id or record.client_id != client_id:
        raise BindingError("record is bound to another user or application",
                           requirement="KP-7")
    if key_version is not None and record.key_version != key_version:
        raise BindingError("record has another key_version", requirement="KP-6")
    message = binding_message(user_id, client_id, record.key_version, record.public_keys,
                              record.change.type)
    primitives.ed25519_verify(record.public_keys.ed25519, message, record.binding_signature,
                              requirement="KP-6")
    possession = possession_message(user_id, client_id, record.key_version,
                                    record.public_keys, record.change.type)
    xeddsa.verify(record.public_keys.x25519, possession, record.x25519_signature,
                  requirement="KP-14")


def validate_publication(obj: object, *, user_id: str, client_id: str) -> Record:
    """Step 6, server side: everything a server can check without the KEK or the stored
    state (the state is step 11's check_change)."""
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


# --- step 11: continuity -----------------------------------------------------------------------

def predecessor_of(record: Record) -> Predecessor:
    return Predecessor(key_version=record.key_version, public_keys=record.public_keys)


def check_rotation(record: Record, previous: Predecessor) -> None:
    """KP-17: a rotation of version v is signed by the Ed25519 key of version v - 1 over
    both key sets. Its callers (check_change, follow_history) call it for a rotation only,
    after they have refused a version that does not follow `previous` (KP-16, KP-20)."""
    message = rotation_message(record.user_id, record.client_id, previous, record.key_version,
                               record.public_keys)
    primitives.ed25519_verify(previous.public_keys.ed25519, message, record.change.signature,
                              requirement="KP-17")


def stored_predecessor(live_record: object) -> Predecessor:
    """The version and public keys of a stored record (a dict as it was accepted)."""
    return predecessor_of(parse_record(live_record))


def state_of(live_record: object | None, deleted_version: int | None) -> StoredState:
    """The StoredState of a stored record (or None) and the last deleted version."""
    live = None if live_record is None else stored_predecessor(live_record)
    return StoredState(live=live, deleted_version=deleted_version)


def check_change(state: StoredState, record: Record) -> None:
    """Step 11, server side, after step 6's checks of the record alone, in this order:

    1. key_version <= every version accepted before: replay (KP-8);
    2. key_version != that version + 1: link (KP-16);
    3. the change type the state allows: initial with no history, rotation or reset over
       a live record, reset after a deletion; anything else: link (KP-15, KP-18);
    4. a rotation's signature by the replaced key: signature (KP-17).
    """
    floor = state.floor
    check_replacement(floor or None, record.key_version)
    if record.key_version != floor + 1:
        raise LinkError(f"key_version {record.key_version} skips versions: the next is "
                        f"{floor + 1}", requirement="KP-16")
    kind = record.change.type
    if floor == 0:
        if kind != CHANGE_INITIAL:
            raise LinkError(f"the first record of an application is initial, not {kind}",
                            requirement="KP-15")
        return
    if kind == CHANGE_INITIAL:
        raise LinkError("a record with a history is a rotation or a reset, not initial",
                        requirement="KP-15")
    if state.live is None:
        if kind != CHANGE_RESET:
            raise LinkError("after a deletion there is no key to rotate from: a reset",
                            requirement="KP-18")
        return
    if kind == CHANGE_ROTATION:
        check_rotation(record, state.live)


@dataclass(frozen=True)
class Deletion:
    key_version: int
    signature: bytes


def deletion_to_wire(key_version: int, signature: bytes) -> dict[str, Any]:
    return {"key_version": key_version, "signature": b64url_encode(signature)}


def sign_deletion(*, user_id: str, client_id: str, key_version: int,
                  private: PrivateKeys) -> dict[str, Any]:
    """Step 11 (KP-19): the body of DELETE .../keypair."""
    message = deletion_message(user_id, client_id, key_version, public_keys_of(private))
    return deletion_to_wire(key_version, primitives.ed25519_sign(private.ed25519_seed, message))


def parse_deletion(obj: object) -> Deletion:
    members = wire.members(obj, DELETION_MEMBERS, "deletion")
    signature = b64url_decode_exact(wire.string(members, "signature", "deletion"),
                                    primitives.ED25519_SIG_LEN, field="deletion.signature",
                                    requirement="API-1")
    return Deletion(key_version=check_key_version(members["key_version"]), signature=signature)


def check_deletion(live: Predecessor, deletion: Deletion, *, user_id: str,
                   client_id: str) -> None:
    """Step 11 (KP-19): a deletion names the live version (else replay: an old deletion
    replayed, or a race) and is signed by that version's Ed25519 key."""
    if deletion.key_version != live.key_version:
        raise ReplayError(f"the deletion names key_version {deletion.key_version}, the live "
                          f"record is {live.key_version}", requirement="KP-19")
    message = deletion_message(user_id, client_id, live.key_version, live.public_keys)
    primitives.ed25519_verify(live.public_keys.ed25519, message, deletion.signature,
                              requirement="KP-19")


@dataclass(frozen=True)
class History:
    """What a party that pinned a version learns from the records after it (KP-20)."""

    latest: Record
    resets: tuple[int, ...]


def follow_history(pinned: Predecessor, later: list[Record]) -> History:
    """Step 11 (KP-20), discoverer side: `later` holds the verified public views of
    versions pinned + 1, pinned + 2, ... in order. Each must be the next version; a
    rotation must verify under the keys before it; a reset is accepted only as an event
    the caller surfaces (its versions are returned), never silently."""
    previous = pinned
    current: Record | None = None
    resets: list[int] = []
    for record in later:
        if record.key_version != previous.key_version + 1:
            raise LinkError(f"version {record.key_version} does not follow "
                            f"{previous.key_version}", requirement="KP-20")
        if record.change.type == CHANGE_ROTATION:
            check_rotation(record, previous)
        elif record.change.type == CHANGE_RESET:
            resets.append(record.key_version)
        else:
            raise LinkError("an initial record cannot follow another version",
                            requirement="KP-20")
        previous, current = predecessor_of(record), record
    if current is None:
        raise LinkError("no record follows the pinned version", requirement="KP-20")
    return History(latest=current, resets=tuple(resets))


# --- step 9: owner recovery -------------------------------------------------------------------

def open_record(obj: object, *, user_id: str, client_id: str, kek: bytes,
                key_version: int | None = None) -> PrivateKeys:
    """Step 9 (KP-21, KP-11): verify, check the key commitment, decrypt and check the
    private keys match the public ones.

    `key_version`, when given, is the version the owner expects (KP-6): a record of
    another version is refused before the KEK is used.
    """
    record = parse_record(obj)
    check_binding(record, user_id=user_id, client_id=client_id, key_version=key_version)
    assert record.kek is not None
    aad = record_aad(user_id, client_id, record.key_version, record.kek, record.public_keys)
    keys = record_keys(kek, record.nonce, aad)
    check_commitment(keys, record.commitment)
    plaintext = primitives.aes256gcm_decrypt(keys.aead_key, record.nonce, record.ciphertext,
                                             aad, requirement="KP-3")
    private = PrivateKeys(x25519=plaintext[:32], ed25519_seed=plaintext[32:64],
                          mlkem_seed=plaintext[64:] or None)
    if public_keys_of(private) != record.public_keys:
        raise BindingError("decrypted private keys do not match the published public keys",
                           requirement="KP-11")
    return private


# --- step 12: re-wrapping after a kB rotation ---------------------------------------------------

def rewrap_record(obj: object, *, user_id: str, client_id: str, old_kb: bytes,
                  new_kb: bytes, nonce: bytes, z: bytes) -> Sealed:
    """Step 12 (KP-22): open a record of method application-key with the kBr of the old kB
    (every check of step 9) and seal the same private keys as the next version under the
    kBr of the new kB: a rotation signed by the record's own Ed25519 key, so that every
    party following the chain (KP-20) sees an ordinary rotation whose keys did not change.
    A record of method password does not depend on kB and is not re-wrapped."""
    record = parse_record(obj)
    if record.kek is None or record.kek.method != METHOD_APPLICATION_KEY:
        raise ValueError("only records of method application-key depend on kB")
    private = open_record(obj, user_id=user_id, client_id=client_id,
                          kek=application_key(old_kb, client_id))
    return seal_record(user_id=user_id, client_id=client_id,
                       key_version=record.key_version + 1, private=private,
                       kek=application_key(new_kb, client_id),
                       kek_spec=KekSpec(method=METHOD_APPLICATION_KEY), nonce=nonce, z=z,
                       change_type=CHANGE_ROTATION, previous=private)


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
