"""Client-side protocol actions, built only from keyflows.spec.

The runner plays honest clients (seal a record under kBr or a password key, open what the
server returns) and malicious ones (records with low-order points, forged or misbound
signatures, non-canonical encodings). Every byte the runner publishes comes from here.
"""

from __future__ import annotations

import copy
import json
import os
from dataclasses import dataclass
from typing import Any

from keyflows.conformance.redaction import remember_secret
from keyflows.spec import primitives, xeddsa
from keyflows.spec.encoding import b64url_decode, b64url_encode
from keyflows.spec.key_derivation import Argon2Params, application_key, password_key
from keyflows.spec.keypair_publication import (
    CHANGE_INITIAL,
    CHANGE_RESET,
    CHANGE_ROTATION,
    METHOD_APPLICATION_KEY,
    METHOD_PASSWORD,
    KekSpec,
    PrivateKeys,
    PublicKeys,
    binding_message,
    generate_private_keys,
    possession_message,
    public_keys_of,
    seal_record,
    sign_deletion,
)

# Valid and cheap enough to run once per conformance run (about 50 ms).
RUNNER_ARGON2 = Argon2Params(t=2, m=19456, p=1)
SALT_LEN = 16
_B64URL_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

P25519 = 2**255 - 19

# RFC 7748 section 7 / libsodium's blocklist: canonical u-coordinates of small order.
LOW_ORDER_X25519: dict[str, bytes] = {
    "zero": bytes(32),
    "one": (1).to_bytes(32, "little"),
    "order-8-a": bytes.fromhex(
        "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"),
    "order-8-b": bytes.fromhex(
        "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157"),
    "p-minus-1": (P25519 - 1).to_bytes(32, "little"),
}


def non_canonical_x25519(valid_public: bytes) -> dict[str, bytes]:
    """Encodings of X25519 public keys that are not canonical (KP-5)."""
    top_bit = bytearray(valid_public)
    top_bit[31] |= 0x80
    return {
        "top-bit-set": bytes(top_bit),
        "u-equals-p-plus-9": (P25519 + 9).to_bytes(32, "little"),
        "u-equals-p-plus-1": (P25519 + 1).to_bytes(32, "little"),
    }


@dataclass(frozen=True)
class Sealed:
    """A record the runner made, with what only its owner knows."""

    record: dict[str, Any]
    private: PrivateKeys
    kek: bytes
    kb: bytes | None = None
    password: str | None = None

    @property
    def body(self) -> bytes:
        return to_json(self.record)

    @property
    def key_version(self) -> int:
        return int(self.record["key_version"])

    def deletion(self) -> dict[str, Any]:
        """KP-19: the signed body of DELETE for this record."""
        return sign_deletion(user_id=self.record["user_id"], client_id=self.record["client_id"],
                             key_version=self.key_version, private=self.private)


def to_json(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode("utf-8")


def new_private_keys(*, with_mlkem: bool = False) -> PrivateKeys:
    return remember_private(generate_private_keys(os.urandom, with_mlkem=with_mlkem))


def remember_private(private: PrivateKeys) -> PrivateKeys:
    """Register the private keys as secrets: no printed trace shows them."""
    remember_secret(private.x25519)
    remember_secret(private.ed25519_seed)
    if private.mlkem_seed is not None:
        remember_secret(private.mlkem_seed)
    return private


def default_change(key_version: int, previous: Sealed | None) -> str:
    """KP-15: a rotation when the previous record is at hand, else initial for version 1
    and a reset for any later one."""
    if previous is not None:
        return CHANGE_ROTATION
    return CHANGE_INITIAL if key_version == 1 else CHANGE_RESET


def seal_with_application_key(user_id: str, client_id: str, key_version: int, *,
                              kb: bytes | None = None,
                              private: PrivateKeys | None = None,
                              previous: Sealed | None = None,
                              with_mlkem: bool = False) -> Sealed:
    """KP-2/KD-3: encrypt fresh private keys under kBr = HKDF(kB, client_id); with
    `previous`, a rotation signed by its keys (KP-17); `with_mlkem`, fresh keys include an
    ML-KEM-768 seed (the hybrid suites' key)."""
    kb = kb if kb is not None else os.urandom(32)
    private = remember_private(private) if private else new_private_keys(with_mlkem=with_mlkem)
    kek = application_key(kb, client_id)
    remember_secret(kb)
    remember_secret(kek)
    sealed = seal_record(user_id=user_id, client_id=client_id, key_version=key_version,
                         private=private, kek=kek,
                         kek_spec=KekSpec(method=METHOD_APPLICATION_KEY),
                         nonce=os.urandom(primitives.GCM_NONCE_LEN),
                         z=os.urandom(xeddsa.Z_LEN),
                         change_type=default_change(key_version, previous),
                         previous=previous.private if previous else None)
    return Sealed(record=sealed.record, private=private, kek=kek, kb=kb)


def seal_with_password(user_id: str, client_id: str, key_version: int, password: str, *,
                       params: Argon2Params = RUNNER_ARGON2) -> Sealed:
    """KP-2/KD-6: encrypt fresh private keys under the Argon2id password key."""
    salt = os.urandom(SALT_LEN)
    private = new_private_keys()
    kek = password_key(password, salt, params, user_id, client_id)
    remember_secret(password)
    remember_secret(kek)
    spec = KekSpec(method=METHOD_PASSWORD, salt=salt, params=params)
    sealed = seal_record(user_id=user_id, client_id=client_id, key_version=key_version,
                         private=private, kek=kek, kek_spec=spec,
                         nonce=os.urandom(primitives.GCM_NONCE_LEN),
                         z=os.urandom(xeddsa.Z_LEN),
                         change_type=default_change(key_version, None))
    return Sealed(record=sealed.record, private=private, kek=kek, password=password)


def resign(record: dict[str, Any], seed: bytes, *, user_id: str | None = None,
           client_id: str | None = None, key_version: int | None = None,
           x25519_private: bytes | None = None) -> dict[str, Any]:
    """Recompute the binding signature over the record's public keys, for the given
    context (default: the record's own), so only the mutation under test is wrong; with
    `x25519_private`, the XEdDSA possession signature too (KP-14)."""
    mlkem768 = record["public_keys"].get("mlkem768")
    public = PublicKeys(x25519=b64url_decode(record["public_keys"]["x25519"]),
                        ed25519=b64url_decode(record["public_keys"]["ed25519"]),
                        mlkem768=None if mlkem768 is None else b64url_decode(mlkem768))
    context = (user_id or record["user_id"], client_id or record["client_id"],
               key_version or record["key_version"], public, record["change"]["type"])
    out = copy.deepcopy(record)
    out["binding_signature"] = b64url_encode(
        primitives.ed25519_sign(seed, binding_message(*context)))
    if x25519_private is not None:
        out["x25519_signature"] = b64url_encode(xeddsa.sign(
            x25519_private, possession_message(*context), os.urandom(xeddsa.Z_LEN)))
    return out


def with_x25519_public(sealed: Sealed, x25519_public: bytes) -> dict[str, Any]:
    """The record with another X25519 public key, correctly signed by the Ed25519 key
    (a KP-5 probe: the point check must refuse it before any signature)."""
    record = copy.deepcopy(sealed.record)
    record["public_keys"]["x25519"] = b64url_encode(x25519_public)
    return resign(record, sealed.private.ed25519_seed)


def public_of(sealed: Sealed) -> PublicKeys:
    return public_keys_of(sealed.private)


# --- non-canonical base64url (API-1) ---------------------------------------------------

def with_padding(value: str) -> str:
    """Standard '=' padding (or two stray '=' when the length needs none)."""
    return value + "=" * (-len(value) % 4 or 2)


def standard_alphabet(value: str) -> str:
    """The same bytes in the standard alphabet, forcing at least one '+' or '/'."""
    out = value.replace("-", "+").replace("_", "/")
    if out == value:
        out = "+" + value[1:]
    return out


def with_trailing_bits(value: str) -> str | None:
    """Set an unused low bit of the last character: lenient decoders give the same bytes.
    None when the length leaves no unused bits (a multiple of 3 bytes)."""
    remainder = len(value) % 4
    if remainder == 0:
        return None
    last = _B64URL_ALPHABET.index(value[-1])
    return value[:-1] + _B64URL_ALPHABET[last | 1]


def b64_of_length(n: int) -> str:
    return b64url_encode(os.urandom(n))
