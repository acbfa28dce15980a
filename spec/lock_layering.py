"""Flow: lock-layering.

Three layers, outermost first:
  server lock  -- a key the server holds outside its database (a master key file, an AWS
                  KMS key, a PKCS#11 token). It seals the secrets the server keeps for a
                  keystore: the capability root key, and in scenario "server-held" the
                  user lock key.
  user lock    -- a per-keystore AES-256-GCM key. Scenario "server-held" (seed scenario 1):
                  drawn at keystore creation and stored sealed under the server lock.
                  Scenario "shares" (seed scenario 2): made on the fly from two Shamir
                  shares of a 32-byte secret, one from the account server and one sent by
                  the user with each request; never stored.
  working keys -- Ed25519, X25519 and AES-256-GCM keys, stored encrypted under the user lock.

Steps (see the lock-layering chapter):
  1. Keystore creation: controller and scenario (LOCK-1); a fresh capability root key
     sealed under the server lock (LOCK-13).
  2. The user secret is split 2-of-2 in the Vault layout (LOCK-2, shamir module); the
     account server keeps one share, the user the other (LOCK-10).
  3. The server combines the two shares after checking them (LOCK-3, LOCK-10).
  4. Lock key = HKDF-SHA256 of the combined secret, bound to the keystore (LOCK-4).
  5. The server lock seals with AAD bound to keystore and purpose (LOCK-5).
  6. Lock check: an HMAC commitment to the lock key, so a wrong, foreign, missing or
     malformed share is refused with one error before any working key is touched (LOCK-6).
  7. Working keys are sealed under the user lock, bound to keystore, key id, type and
     public key (LOCK-7, LOCK-14).
  8. In scenario "shares" the server stores no share, secret or lock key (LOCK-9).
  9. Capabilities: a root capability per keystore, attenuated offline by appending caveats
     to an HMAC chain; the server verifies the chain and every caveat (LOCK-11, LOCK-12).
 10. Operations: sign / verify (LOCK-15), encrypt / decrypt (LOCK-16), wrap / unwrap by
     ECDH-ES to an X25519 recipient (LOCK-17); responses never carry private material
     (LOCK-18).

Compat profile trustbloc: Vault-layout shares, HKDF with empty salt and info, AES-256-GCM
as padded base64url(nonce || ciphertext || tag) (LOCK-8).

Everything here is pure: randomness, nonces and "now" are parameters.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from keyflows.spec import primitives, shamir
from keyflows.spec.drbg import RandomSource
from keyflows.spec.encoding import b64url_decode, b64url_encode, labelled_context
from keyflows.spec.errors import (
    AuthzError,
    BindingError,
    DecodeError,
    ExpiredError,
    LengthError,
    MacError,
    ParamsError,
    ShareError,
    SpecError,
)
from keyflows.spec.key_derivation import check_identifier, labelled_hkdf

SCENARIO_SERVER_HELD = "server-held"
SCENARIO_SHARES = "shares"
SCENARIOS = (SCENARIO_SERVER_HELD, SCENARIO_SHARES)

KEY_ED25519 = "ed25519"
KEY_X25519 = "x25519"
KEY_AES256GCM = "aes256gcm"
KEY_TYPES = (KEY_ED25519, KEY_X25519, KEY_AES256GCM)

PURPOSE_USER_LOCK_KEY = "user-lock-key"
PURPOSE_CAPABILITY_ROOT_KEY = "capability-root-key"
# A secret of the server itself (a log signing key, a witness key); the keystore_id slot
# carries the secret's name.
PURPOSE_SERVER_SECRET = "server-secret"
SERVER_LOCK_PURPOSES = (PURPOSE_USER_LOCK_KEY, PURPOSE_CAPABILITY_ROOT_KEY,
                        PURPOSE_SERVER_SECRET)

LOCK_KEY_LEN = 32
SECRET_LEN = 32
SHARE_LEN = SECRET_LEN + 1
USER_LOCK_PARTS = 2
USER_LOCK_THRESHOLD = 2
MATERIAL_LEN = 32
ROOT_KEY_LEN = 32
LOCK_CHECK_LEN = 32
NONCE_LEN = primitives.GCM_NONCE_LEN
TAG_LEN = primitives.GCM_TAG_LEN
SEALED_MIN_LEN = NONCE_LEN + TAG_LEN
SEALED_WORKING_KEY_LEN = NONCE_LEN + MATERIAL_LEN + TAG_LEN
CEK_MIN_LEN = 16
CEK_MAX_LEN = 64
WRAP_NONCE = bytes(NONCE_LEN)

#: Operations a capability can grant. Keystore-scoped ones act on no particular key.
OP_READ = "read"
OP_CREATE_KEY = "create-key"
OP_DELETE_KEY = "delete-key"
OP_EXPORT = "export"
OP_SIGN = "sign"
OP_VERIFY = "verify"
OP_ENCRYPT = "encrypt"
OP_DECRYPT = "decrypt"
OP_WRAP = "wrap"
OP_UNWRAP = "unwrap"
OPERATIONS = (OP_READ, OP_CREATE_KEY, OP_DELETE_KEY, OP_EXPORT, OP_SIGN, OP_VERIFY,
              OP_ENCRYPT, OP_DECRYPT, OP_WRAP, OP_UNWRAP)
KEYSTORE_OPERATIONS = frozenset({OP_READ, OP_CREATE_KEY, OP_WRAP})
KEY_OPERATIONS = frozenset(OPERATIONS) - KEYSTORE_OPERATIONS
#: Operations that need the user lock open (in scenario "shares": the user's share).
UNLOCKING_OPERATIONS = frozenset({OP_CREATE_KEY, OP_SIGN, OP_ENCRYPT, OP_DECRYPT, OP_UNWRAP})
#: Which key-scoped operations each key type supports (LOCK-14).
SUPPORTED_OPERATIONS: dict[str, frozenset[str]] = {
    KEY_ED25519: frozenset({OP_EXPORT, OP_SIGN, OP_VERIFY, OP_DELETE_KEY}),
    KEY_X25519: frozenset({OP_EXPORT, OP_UNWRAP, OP_DELETE_KEY}),
    KEY_AES256GCM: frozenset({OP_EXPORT, OP_ENCRYPT, OP_DECRYPT, OP_DELETE_KEY}),
}

CAPABILITY_PREFIX = "kfc1."
CAPABILITY_MAC_LEN = 32
MAX_CAVEATS = 16
MAX_CAVEAT_LEN = 256
MAX_CAPABILITY_LEN = 4096  # the longest bearer credential a server must accept
MAX_EXPIRY = 2**63 - 1
CAVEAT_OPS = "ops"
CAVEAT_KEY = "key"
CAVEAT_EXP = "exp"
CAVEAT_NAMES = (CAVEAT_OPS, CAVEAT_KEY, CAVEAT_EXP)
_CAVEAT_SYNTAX = re.compile(r"\A([a-z]+)=([\x21-\x7e]+)\Z")
_DECIMAL = re.compile(r"\A(0|[1-9][0-9]{0,18})\Z")


# --- step 1: keystores ----------------------------------------------------------------------

def check_scenario(scenario: object) -> str:
    """Step 1 (LOCK-1): one of the two scenarios."""
    if scenario not in SCENARIOS:
        raise DecodeError(f"scenario must be one of {', '.join(SCENARIOS)}", requirement="LOCK-1")
    assert isinstance(scenario, str)
    return scenario


def check_key_type(key_type: object) -> str:
    """Step 7 (LOCK-14): one of the three working-key types."""
    if key_type not in KEY_TYPES:
        raise DecodeError(f"key_type must be one of {', '.join(KEY_TYPES)}",
                          requirement="LOCK-14")
    assert isinstance(key_type, str)
    return key_type


def check_purpose(purpose: str) -> bytes:
    """Step 5 (LOCK-5): the server lock seals only the registered purposes."""
    if purpose not in SERVER_LOCK_PURPOSES:
        raise ValueError(f"unregistered server-lock purpose {purpose!r}")
    return purpose.encode("ascii")


def new_identifier(random: RandomSource) -> str:
    """A keystore or key id: 16 random bytes in base64url (22 identifier characters)."""
    return b64url_encode(random(16))


def new_capability_root_key(random: RandomSource) -> bytes:
    """Step 1 (LOCK-13): 32 random bytes per keystore."""
    return random(ROOT_KEY_LEN)


def new_user_lock_key(random: RandomSource) -> bytes:
    """Step 1, scenario "server-held": the user lock key is 32 random bytes."""
    return random(LOCK_KEY_LEN)


# --- steps 2-4: shares and the lock key -------------------------------------------------------

def split_user_secret(secret: bytes, random: RandomSource) -> tuple[bytes, bytes]:
    """Step 2 (LOCK-10), done by the account server or the user's agent, never by the key
    server: 2-of-2 in the Vault layout with x = 1 (account share) and x = 2 (user share)."""
    if len(secret) != SECRET_LEN:
        raise LengthError(f"the user secret must be {SECRET_LEN} bytes", requirement="LOCK-10")
    made = shamir.split(secret, USER_LOCK_PARTS, USER_LOCK_THRESHOLD, random)
    return made.shares[0], made.shares[1]


def decode_share(text: object) -> bytes:
    """Step 3 (LOCK-10): a share on the wire is strict base64url of 33 bytes. Every defect
    is a share failure, so a malformed share is refused like a wrong one (LOCK-6)."""
    if not isinstance(text, str) or not text:
        raise ShareError("no secret share", requirement="LOCK-10")
    try:
        share = b64url_decode(text)
    except SpecError as exc:
        raise ShareError("secret share is not base64url", requirement="LOCK-10") from exc
    if len(share) != SHARE_LEN:
        raise ShareError(f"secret share must be {SHARE_LEN} bytes", requirement="LOCK-10")
    return share


def combine_shares(shares: Sequence[bytes]) -> bytes:
    """Step 3 (LOCK-3, LOCK-10): check the shares, then combine; the shares must be of a
    32-byte secret. The order of the shares does not matter."""
    shamir.check_shares(shares)
    if len(shares[0]) != SHARE_LEN:
        raise ShareError(f"shares must be {SHARE_LEN} bytes", requirement="LOCK-10")
    return shamir.combine(shares)


def lock_key_info(keystore_id: str) -> bytes:
    """The HKDF info of step 4, exposed so vectors can record it."""
    return labelled_context("lock-key", check_identifier(keystore_id, "keystore_id"))


def lock_key_from_secret(secret: bytes, keystore_id: str) -> bytes:
    """Step 4 (LOCK-4): HKDF-SHA256(secret, salt = empty, ctx("lock-key", keystore_id))."""
    if len(secret) != SECRET_LEN:
        raise LengthError(f"combined secret must be {SECRET_LEN} bytes", requirement="LOCK-4")
    return labelled_hkdf(secret, "lock-key", check_identifier(keystore_id, "keystore_id"))


def lock_key_from_shares(shares: Sequence[bytes], keystore_id: str) -> bytes:
    """Steps 3 and 4."""
    return lock_key_from_secret(combine_shares(shares), keystore_id)


# --- step 5: the server lock --------------------------------------------------------------

def server_lock_aad(keystore_id: str, purpose: str) -> bytes:
    """Step 5 (LOCK-5): every server-lock ciphertext is bound to keystore and purpose."""
    return labelled_context("server-lock", check_identifier(keystore_id, "keystore_id"),
                            check_purpose(purpose))


def server_lock_encryption_context(keystore_id: str, purpose: str) -> dict[str, str]:
    """Step 5 (LOCK-5) for AWS KMS: the same binding as an EncryptionContext."""
    check_identifier(keystore_id, "keystore_id")
    check_purpose(purpose)
    return {"keyflows": "v1/server-lock", "keystore_id": keystore_id, "purpose": purpose}


def seal(key: bytes, nonce: bytes, plaintext: bytes, aad: bytes) -> bytes:
    """nonce (12) || AES-256-GCM ciphertext || tag (16): the sealed layout of every layer."""
    return nonce + primitives.aes256gcm_encrypt(key, nonce, plaintext, aad)


def open_sealed(key: bytes, sealed: bytes, aad: bytes, *, requirement: str) -> bytes:
    """Inverse of `seal`; LengthError if shorter than nonce and tag, AeadError if forged."""
    if len(sealed) < SEALED_MIN_LEN:
        raise LengthError("sealed value shorter than nonce and tag", requirement=requirement)
    return primitives.aes256gcm_decrypt(key, sealed[:NONCE_LEN], sealed[NONCE_LEN:], aad,
                                        requirement=requirement)


def server_lock_seal(master_key: bytes, nonce: bytes, plaintext: bytes, keystore_id: str,
                     purpose: str) -> bytes:
    """Step 5 with a local master key (the file and PKCS#11 backends): AES-256-GCM."""
    return seal(master_key, nonce, plaintext, server_lock_aad(keystore_id, purpose))


def server_lock_open(master_key: bytes, sealed: bytes, keystore_id: str, purpose: str) -> bytes:
    """Step 5: a blob moved to another keystore or purpose, tampered, or sealed under
    another server lock fails with class aead."""
    return open_sealed(master_key, sealed, server_lock_aad(keystore_id, purpose),
                       requirement="LOCK-5")


# --- step 6: the lock check --------------------------------------------------------------------

def lock_check_input(keystore_id: str) -> bytes:
    return labelled_context("lock-check", check_identifier(keystore_id, "keystore_id"))


def make_lock_check(lock_key: bytes, keystore_id: str) -> bytes:
    """Step 6 (LOCK-6): HMAC-SHA256(lock key, ctx("lock-check", keystore_id)).

    An HMAC, not an AEAD tag: AES-GCM is not key-committing, while this value commits to
    the one lock key, and it needs no nonce."""
    if len(lock_key) != LOCK_KEY_LEN:
        raise LengthError("lock key must be 32 bytes", requirement="LOCK-6")
    return primitives.hmac_sha256(lock_key, lock_check_input(keystore_id))


def verify_lock_check(lock_key: bytes, keystore_id: str, stored: bytes) -> None:
    """Step 6 (LOCK-6): a lock key that fails the check is refused as a share failure, the
    same whether a share was wrong, foreign, for another threshold, or missing."""
    if not primitives.constant_time_equal(make_lock_check(lock_key, keystore_id), stored):
        raise ShareError("the shares do not open this keystore", requirement="LOCK-6")


def unlock_with_shares(account_share_text: object, user_share_text: object, keystore_id: str,
                       stored_check: bytes) -> bytes:
    """Steps 3, 4 and 6 as a server runs them: every failure is ShareError (LOCK-6)."""
    try:
        shares = [decode_share(account_share_text), decode_share(user_share_text)]
        lock_key = lock_key_from_shares(shares, keystore_id)
    except ShareError:
        raise
    except SpecError as exc:
        raise ShareError("the shares do not open this keystore", requirement="LOCK-6") from exc
    verify_lock_check(lock_key, keystore_id, stored_check)
    return lock_key


# --- step 7: working keys -----------------------------------------------------------------------

def generate_working_key(key_type: str, random: RandomSource) -> bytes:
    """Step 7 (LOCK-14): 32 random bytes for each key type (Ed25519 seed, X25519 private
    key, AES-256 key)."""
    check_key_type(key_type)
    return random(MATERIAL_LEN)


def public_key_of(key_type: str, material: bytes) -> bytes:
    """Step 7 (LOCK-14): the public key of an asymmetric key; empty for AES-256-GCM."""
    check_key_type(key_type)
    if len(material) != MATERIAL_LEN:
        raise LengthError("key material must be 32 bytes", requirement="LOCK-14")
    if key_type == KEY_ED25519:
        return primitives.ed25519_public_key(material)
    if key_type == KEY_X25519:
        return primitives.x25519_public_key(material)
    return b""


def working_key_aad(keystore_id: str, key_id: str, key_type: str, public_key: bytes) -> bytes:
    """Step 7 (LOCK-7): ctx("working-key", keystore_id, key_id, key_type, public_key)."""
    check_key_type(key_type)
    return labelled_context("working-key", check_identifier(keystore_id, "keystore_id"),
                            check_identifier(key_id, "key_id"), key_type.encode("ascii"),
                            public_key)


def seal_working_key(lock_key: bytes, nonce: bytes, material: bytes, keystore_id: str,
                     key_id: str, key_type: str) -> bytes:
    """Step 7 (LOCK-7): nonce || AES-256-GCM(lock key, nonce, material, AAD) || tag."""
    aad = working_key_aad(keystore_id, key_id, key_type, public_key_of(key_type, material))
    return seal(lock_key, nonce, material, aad)


def open_working_key(lock_key: bytes, sealed: bytes, keystore_id: str, key_id: str,
                     key_type: str, public_key: bytes) -> bytes:
    """Step 7 (LOCK-7): open a stored record; the stored public key is authenticated by
    the AAD, so a record moved to another key id, type or public key fails (aead)."""
    if len(sealed) != SEALED_WORKING_KEY_LEN:
        raise LengthError(f"a sealed working key is {SEALED_WORKING_KEY_LEN} bytes",
                          requirement="LOCK-7")
    return open_sealed(lock_key, sealed, working_key_aad(keystore_id, key_id, key_type,
                                                         public_key), requirement="LOCK-7")


def check_operation_supported(key_type: str, operation: str) -> None:
    """Step 10 (LOCK-14): an operation the key's type does not support is refused before
    the key is unlocked."""
    if operation not in SUPPORTED_OPERATIONS[check_key_type(key_type)]:
        raise ParamsError(f"a {key_type} key does not support {operation}",
                          requirement="LOCK-14")


# --- records (what a server stores) --------------------------------------------------------

@dataclass(frozen=True)
class KeystoreRecord:
    """The stored keystore. Blobs are server-lock ciphertexts (opaque for AWS KMS)."""

    keystore_id: str
    controller: str
    scenario: str
    capability_root_key: bytes  # sealed under the server lock
    user_lock_key: bytes = b""  # sealed under the server lock; scenario "server-held" only
    lock_check: bytes = b""  # scenario "shares" only

    def to_json(self) -> dict[str, str]:
        out = {"keystore_id": self.keystore_id, "controller": self.controller,
               "scenario": self.scenario,
               "capability_root_key": b64url_encode(self.capability_root_key)}
        if self.scenario == SCENARIO_SERVER_HELD:
            out["user_lock_key"] = b64url_encode(self.user_lock_key)
        else:
            out["lock_check"] = b64url_encode(self.lock_check)
        return out


def parse_keystore_record(obj: object) -> KeystoreRecord:
    """Step 1 / step 8 (LOCK-1, LOCK-9): exactly the members of the record's scenario; a
    "shares" record has no place for a share, a secret or a lock key."""
    if not isinstance(obj, dict):
        raise DecodeError("keystore record must be an object", requirement="LOCK-1")
    scenario = check_scenario(obj.get("scenario"))
    extra = "user_lock_key" if scenario == SCENARIO_SERVER_HELD else "lock_check"
    fields = _members(obj, ("keystore_id", "controller", "scenario", "capability_root_key",
                            extra), "keystore record", "LOCK-1")
    check_identifier(fields["keystore_id"], "keystore_id")
    check_identifier(fields["controller"], "controller")
    root = b64url_decode(fields["capability_root_key"], requirement="LOCK-13")
    if scenario == SCENARIO_SERVER_HELD:
        return KeystoreRecord(fields["keystore_id"], fields["controller"], scenario, root,
                              user_lock_key=b64url_decode(fields["user_lock_key"],
                                                          requirement="LOCK-5"))
    check = b64url_decode(fields["lock_check"], requirement="LOCK-6")
    if len(check) != LOCK_CHECK_LEN:
        raise LengthError("lock_check must be 32 bytes", requirement="LOCK-6")
    return KeystoreRecord(fields["keystore_id"], fields["controller"], scenario, root,
                          lock_check=check)


@dataclass(frozen=True)
class WorkingKeyRecord:
    keystore_id: str
    key_id: str
    key_type: str
    public_key: bytes  # empty for aes256gcm
    sealed: bytes  # nonce || ciphertext || tag under the user lock

    def to_json(self) -> dict[str, str]:
        out = {"keystore_id": self.keystore_id, "key_id": self.key_id,
               "key_type": self.key_type, "sealed": b64url_encode(self.sealed)}
        if self.key_type != KEY_AES256GCM:
            out["public_key"] = b64url_encode(self.public_key)
        return out


def parse_working_key_record(obj: object) -> WorkingKeyRecord:
    """Step 7 (LOCK-7): the stored working key; public_key only for asymmetric keys."""
    if not isinstance(obj, dict):
        raise DecodeError("working-key record must be an object", requirement="LOCK-7")
    key_type = check_key_type(obj.get("key_type"))
    names: tuple[str, ...] = ("keystore_id", "key_id", "key_type", "sealed")
    if key_type != KEY_AES256GCM:
        names += ("public_key",)
    fields = _members(obj, names, "working-key record", "LOCK-7")
    check_identifier(fields["keystore_id"], "keystore_id")
    check_identifier(fields["key_id"], "key_id")
    public = b""
    if key_type != KEY_AES256GCM:
        public = b64url_decode(fields["public_key"], requirement="LOCK-7")
        if len(public) != 32:
            raise LengthError("public_key must be 32 bytes", requirement="LOCK-7")
    sealed = b64url_decode(fields["sealed"], requirement="LOCK-7")
    if len(sealed) != SEALED_WORKING_KEY_LEN:
        raise LengthError(f"sealed must be {SEALED_WORKING_KEY_LEN} bytes", requirement="LOCK-7")
    return WorkingKeyRecord(fields["keystore_id"], fields["key_id"], key_type, public, sealed)


def make_working_key_record(lock_key: bytes, nonce: bytes, material: bytes, keystore_id: str,
                            key_id: str, key_type: str) -> WorkingKeyRecord:
    """Step 7: the record a server stores for a new working key."""
    return WorkingKeyRecord(keystore_id, key_id, key_type, public_key_of(key_type, material),
                            seal_working_key(lock_key, nonce, material, keystore_id, key_id,
                                             key_type))


def open_working_key_record(lock_key: bytes, record: WorkingKeyRecord) -> bytes:
    """Step 7: the material of a stored record, checked against its public key."""
    material = open_working_key(lock_key, record.sealed, record.keystore_id, record.key_id,
                                record.key_type, record.public_key)
    if public_key_of(record.key_type, material) != record.public_key:
        # Unreachable unless the sealer lied: the AAD already authenticates the public key.
        raise BindingError("working key does not match its public key", requirement="LOCK-7")
    return material


def _members(obj: dict[str, Any], names: tuple[str, ...], where: str,
             requirement: str) -> dict[str, str]:
    missing = [n for n in names if n not in obj]
    if missing:
        raise DecodeError(f"{where} lacks {', '.join(missing)}", requirement=requirement)
    unknown = sorted(set(obj) - set(names))
    if unknown:
        raise DecodeError(f"{where} has unknown member {unknown[0]}", requirement=requirement)
    for name in names:
        if not isinstance(obj[name], str):
            raise DecodeError(f"{where}.{name} must be a string", requirement=requirement)
    return {n: obj[n] for n in names}


# --- step 9: capabilities --------------------------------------------------------------------

@dataclass(frozen=True)
class Capability:
    """A keystore capability: its caveats, in order, and the last link of its HMAC chain."""

    keystore_id: str
    caveats: tuple[str, ...]
    mac: bytes


def capability_chain(root_key: bytes, keystore_id: str, caveats: Sequence[str]) -> list[bytes]:
    """Step 9 (LOCK-11): every link of the chain, first to last.

        mac_0 = HMAC-SHA256(root key, ctx("capability", keystore_id))
        mac_i = HMAC-SHA256(mac_{i-1}, ctx("capability-caveat", caveat_i))
    """
    if len(root_key) != ROOT_KEY_LEN:
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


def mint_root_capability(root_key: bytes, keystore_id: str) -> Capability:
    """Step 9 (LOCK-13): the root capability has no caveats: every operation, every key,
    no expiry. The server returns it once, to the controller, at keystore creation."""
    return Capability(keystore_id, (), capability_chain(root_key, keystore_id, ())[-1])


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


def check_caveat_syntax(caveat: object) -> str:
    """Step 9 (LOCK-11): `name=value`, printable ASCII without spaces, at most 256 bytes."""
    if not isinstance(caveat, str) or len(caveat) > MAX_CAVEAT_LEN \
            or not _CAVEAT_SYNTAX.match(caveat):
        raise DecodeError("a caveat is name=value in printable ASCII, at most 256 characters",
                          requirement="LOCK-11")
    return caveat


@dataclass(frozen=True)
class Caveat:
    """The meaning of one caveat: exactly one of the three restrictions."""

    name: str
    operations: frozenset[str] = frozenset()
    key_id: str = ""
    not_after: int = 0


def parse_caveat(caveat: str) -> Caveat:
    """Step 9 (LOCK-12): the meaning of a caveat. Anything not understood is refused
    (class authz): a server that cannot evaluate a restriction must not ignore it."""
    match = _CAVEAT_SYNTAX.match(caveat)
    if not match:
        raise AuthzError("malformed caveat", requirement="LOCK-12")
    name, value = match.group(1), match.group(2)
    if name == CAVEAT_OPS:
        ops = value.split(",")
        if any(op not in OPERATIONS for op in ops) or len(set(ops)) != len(ops):
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
    raise AuthzError(f"unknown caveat {name!r}", requirement="LOCK-12")


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


def verify_capability(capability: Capability, root_key: bytes, keystore_id: str) -> None:
    """Step 9 (LOCK-11): recompute the chain from the root key; compare in constant time.

    A capability for another keystore is a binding failure; a changed, removed, reordered
    or added-without-the-chain caveat is a MAC failure."""
    if capability.keystore_id != keystore_id:
        raise BindingError("capability is for another keystore", requirement="LOCK-11")
    expected = capability_chain(root_key, keystore_id, capability.caveats)[-1]
    if not primitives.constant_time_equal(expected, capability.mac):
        raise MacError("capability MAC does not verify", requirement="LOCK-11")


def authorize(capability: Capability, operation: str, key_id: str | None, now: int) -> None:
    """Step 9 (LOCK-12): every caveat must allow the request.

    exp=T    now < T; a passed expiry is reported first (ExpiredError), before any other
             caveat is evaluated;
    ops=...  the operation is listed;
    key=K    the operation is key-scoped and on key K;
    anything else denies (AuthzError)."""
    if operation not in OPERATIONS:
        raise ValueError(f"unknown operation {operation!r}")
    if (operation in KEY_OPERATIONS) != (key_id is not None):
        raise ValueError("key-scoped operations name a key; keystore operations do not")
    for caveat in capability.caveats:
        if caveat.startswith(CAVEAT_EXP + "="):
            parsed = parse_caveat(caveat)
            if not now < parsed.not_after:
                raise ExpiredError("capability has expired", requirement="LOCK-12")
    for caveat in capability.caveats:
        parsed = parse_caveat(caveat)
        if parsed.name == CAVEAT_OPS and operation not in parsed.operations:
            raise AuthzError(f"capability does not grant {operation}", requirement="LOCK-12")
        if parsed.name == CAVEAT_KEY and key_id != parsed.key_id:
            raise AuthzError("capability is restricted to another key", requirement="LOCK-12")


def check_capability(text: object, root_key: bytes, keystore_id: str, operation: str,
                     key_id: str | None, now: int) -> Capability:
    """Step 9 as a server runs it: decode, verify the chain, then authorize."""
    capability = decode_capability(text)
    verify_capability(capability, root_key, keystore_id)
    authorize(capability, operation, key_id, now)
    return capability


# --- step 10: operations ----------------------------------------------------------------------

def sign(seed: bytes, message: bytes) -> bytes:
    """Step 10 (LOCK-15): pure Ed25519 over the message bytes."""
    return primitives.ed25519_sign(seed, message)


def verify(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """Step 10 (LOCK-15): true iff the signature verifies; a bad signature is an answer
    (false), not an error. A signature of the wrong length is a length error."""
    try:
        primitives.ed25519_verify(public_key, message, signature, requirement="LOCK-15")
    except LengthError:
        raise
    except SpecError:
        return False
    return True


def encrypt(key: bytes, nonce: bytes, plaintext: bytes, aad: bytes) -> bytes:
    """Step 10 (LOCK-16): AES-256-GCM with a fresh 12-byte nonce; ciphertext || tag."""
    return primitives.aes256gcm_encrypt(key, nonce, plaintext, aad)


def decrypt(key: bytes, nonce: bytes, ciphertext: bytes, aad: bytes) -> bytes:
    """Step 10 (LOCK-16): AeadError for a tampered ciphertext, nonce, tag or AAD."""
    if len(nonce) != NONCE_LEN:
        raise LengthError("nonce must be 12 bytes", requirement="LOCK-16")
    return primitives.aes256gcm_decrypt(key, nonce, ciphertext, aad, requirement="LOCK-16")


@dataclass(frozen=True)
class Wrapped:
    epk: bytes  # the sender's ephemeral X25519 public key
    wrapped_key: bytes  # AES-256-GCM(KEK, zero nonce, cek, empty AAD) = ciphertext || tag


def wrap_kek(shared: bytes, epk: bytes, recipient_public: bytes) -> bytes:
    """Step 10 (LOCK-17): KEK = HKDF-SHA256(Z, salt = empty, ctx("lock-wrap", epk, R))."""
    return labelled_hkdf(shared, "lock-wrap", epk, recipient_public)


def check_cek(cek: bytes) -> None:
    if not CEK_MIN_LEN <= len(cek) <= CEK_MAX_LEN:
        raise LengthError(f"a wrapped key is {CEK_MIN_LEN}..{CEK_MAX_LEN} bytes",
                          requirement="LOCK-17")


def wrap(cek: bytes, recipient_public: bytes, ephemeral_private: bytes) -> Wrapped:
    """Step 10 (LOCK-17): ECDH-ES. Z = X25519(e, R) with R checked (canonical, not of low
    order, non-zero Z); the KEK is single-use, so the nonce is fixed at zero."""
    check_cek(cek)
    epk, shared = primitives.x25519_keypair_exchange(ephemeral_private, recipient_public,
                                                     requirement="LOCK-17")
    kek = wrap_kek(shared, epk, recipient_public)
    return Wrapped(epk, primitives.aes256gcm_encrypt(kek, WRAP_NONCE, cek, b""))


def unwrap(wrapped: Wrapped, recipient_private: bytes) -> bytes:
    """Step 10 (LOCK-17): the recipient side; point errors for a bad epk, aead otherwise."""
    if not CEK_MIN_LEN + TAG_LEN <= len(wrapped.wrapped_key) <= CEK_MAX_LEN + TAG_LEN:
        raise LengthError("wrapped key has an impossible length", requirement="LOCK-17")
    recipient_public = primitives.x25519_public_key(recipient_private)
    shared = primitives.x25519(recipient_private, wrapped.epk, requirement="LOCK-17")
    kek = wrap_kek(shared, wrapped.epk, recipient_public)
    return primitives.aes256gcm_decrypt(kek, WRAP_NONCE, wrapped.wrapped_key, b"",
                                        requirement="LOCK-17")


# --- the HTTP request bodies ------------------------------------------------------------------

#: Request body members per request kind: (required, optional). Every other member is
#: refused (API-6); binary members are strict base64url (API-1).
REQUEST_MEMBERS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "create-keystore": (("scenario",), ()),
    "create-key": (("key_type",), ()),
    "sign": (("message",), ()),
    "verify": (("message", "signature"), ()),
    "encrypt": (("plaintext",), ("aad",)),
    "decrypt": (("nonce", "ciphertext"), ("aad",)),
    "wrap": (("cek", "recipient_public_key"), ()),
    "unwrap": (("epk", "wrapped_key"), ()),
}
_TEXT_MEMBERS = frozenset({"scenario", "key_type"})
_EXACT_LENGTHS = {"signature": (primitives.ED25519_SIG_LEN, "LOCK-15"),
                  "nonce": (NONCE_LEN, "LOCK-16"),
                  "recipient_public_key": (32, "LOCK-17"), "epk": (32, "LOCK-17")}


def parse_request(kind: str, obj: object) -> dict[str, Any]:
    """Step 10: the body of a request of this kind, decoded: text members stay strings
    (and are checked), binary members become bytes of their required length."""
    required, optional = REQUEST_MEMBERS[kind]
    if not isinstance(obj, dict):
        raise DecodeError("the request body must be a JSON object", requirement="API-6")
    missing = [name for name in required if name not in obj]
    if missing:
        raise DecodeError(f"the request body lacks {', '.join(missing)}", requirement="API-6")
    unknown = sorted(set(obj) - set(required) - set(optional))
    if unknown:
        raise DecodeError(f"the request body has unknown member {unknown[0]}",
                          requirement="API-6")
    out: dict[str, Any] = {}
    for name, value in obj.items():
        if not isinstance(value, str):
            raise DecodeError(f"{name} must be a string", requirement="API-6")
        if name in _TEXT_MEMBERS:
            out[name] = value
            continue
        data = b64url_decode(value, requirement="API-1")
        if name in _EXACT_LENGTHS:
            length, requirement = _EXACT_LENGTHS[name]
            if len(data) != length:
                raise LengthError(f"{name} must be {length} bytes", requirement=requirement)
        out[name] = data
    if "scenario" in out:
        check_scenario(out["scenario"])
    if "key_type" in out:
        check_key_type(out["key_type"])
    if "cek" in out:
        check_cek(out["cek"])
    if "wrapped_key" in out and not (CEK_MIN_LEN + TAG_LEN <= len(out["wrapped_key"])
                                     <= CEK_MAX_LEN + TAG_LEN):
        raise LengthError("wrapped_key has an impossible length", requirement="LOCK-17")
    if kind in ("encrypt", "decrypt"):
        out.setdefault("aad", b"")
    return out


# --- compat profile: trustbloc --------------------------------------------------------------

def trustbloc_split(secret: bytes, random: RandomSource, *, parts: int = 2,
                    threshold: int = 2) -> shamir.Split:
    """LOCK-8: a split as trustbloc made it: Vault's Split of the pinned release (2020),
    whose x-coordinates are the first `parts` of a random permutation of 1..255."""
    shamir.check_split_params(parts, threshold, len(secret))
    xs = shamir.vault_2017_x_coordinates(parts, random)
    return shamir.split(secret, parts, threshold, random, xs)


def trustbloc_lock_key(shares: Sequence[bytes]) -> bytes:
    """LOCK-8: HKDF-SHA256(IKM = combined secret, salt = empty, info = empty, L = 32)."""
    return primitives.hkdf_sha256(shamir.combine(shares), b"", b"", LOCK_KEY_LEN)


def trustbloc_b64encode(data: bytes) -> str:
    """LOCK-8: Go's base64.URLEncoding: URL alphabet WITH '=' padding."""
    return base64.urlsafe_b64encode(data).decode("ascii")


def trustbloc_b64decode(text: str) -> bytes:
    """LOCK-8: padded base64url, strictly canonical (Go would also skip CR/LF and accept
    non-zero trailing bits; a v1 consumer does not)."""
    try:
        raw = base64.b64decode(text.encode("ascii"), altchars=b"-_", validate=True)
    except (ValueError, UnicodeEncodeError, binascii.Error) as exc:
        raise DecodeError("not padded base64url", requirement="LOCK-8") from exc
    if trustbloc_b64encode(raw) != text:
        raise DecodeError("not canonical padded base64url", requirement="LOCK-8")
    return raw


def trustbloc_seal(key: bytes, nonce: bytes, plaintext: bytes) -> str:
    """LOCK-8: base64url(nonce || ciphertext || tag), padded, AAD empty: the format of
    aries-framework-go's secret locks (local.Lock and masterlock/hkdf)."""
    if len(nonce) != NONCE_LEN:
        raise LengthError("nonce must be 12 bytes", requirement="LOCK-8")
    return trustbloc_b64encode(seal(key, nonce, plaintext, b""))


def trustbloc_open(key: bytes, text: str) -> bytes:
    """LOCK-8: inverse of trustbloc_seal."""
    return open_sealed(key, trustbloc_b64decode(text), b"", requirement="LOCK-8")


def trustbloc_lock_primary_key(lock_key: bytes, nonce: bytes, primary_key: bytes) -> str:
    """LOCK-8: the HKDF master lock encrypts only a key of the hash size (32 bytes): the
    random primary key, which in turn seals the stored key material (`trustbloc_seal`)."""
    if len(primary_key) != LOCK_KEY_LEN:
        raise LengthError("the trustbloc lock encrypts a 32-byte key", requirement="LOCK-8")
    return trustbloc_seal(lock_key, nonce, primary_key)


def trustbloc_unlock_primary_key(lock_key: bytes, text: str) -> bytes:
    primary_key = trustbloc_open(lock_key, text)
    if len(primary_key) != LOCK_KEY_LEN:
        raise LengthError("the trustbloc lock holds a 32-byte key", requirement="LOCK-8")
    return primary_key


def trustbloc_account_share_decode(text: str) -> bytes:
    """LOCK-8: the original's auth server answered {"secret": standard padded base64}."""
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (ValueError, UnicodeEncodeError, binascii.Error) as exc:
        raise DecodeError("not padded standard base64", requirement="LOCK-8") from exc
    if base64.b64encode(raw).decode("ascii") != text:
        raise DecodeError("not canonical padded standard base64", requirement="LOCK-8")
    return raw
