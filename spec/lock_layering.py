"""Flow: lock-layering.

Three layers, outermost first:
  server lock  -- a key the server holds outside its database (a master key file, an AWS
                  KMS key, a PKCS#11 token). It seals the secrets the server keeps for a
                  keystore: the capability root key, the unlock-grant key, the keys of the
                  keystore's encrypted data vault, and in scenario "server-held" the user
                  lock key.
  user lock    -- a per-keystore AES-256-GCM key. Scenario "server-held" (seed scenario 1):
                  drawn at keystore creation and stored sealed under the server lock.
                  Scenario "shares" (seed scenario 2): made on the fly from two Shamir
                  shares of a 32-byte secret, one from the account server and one sent by
                  the user with each request; never stored.
  working keys -- Ed25519, X25519, AES-256-GCM and HMAC-SHA256 keys, each a list of
                  versions, every version stored encrypted under the user lock.

Steps (see the lock-layering chapter):
  1. Keystore creation: controller and scenario (LOCK-1); a fresh capability root key
     sealed under the server lock (LOCK-13).
  2. The user secret is split 2-of-2 in the Vault layout (LOCK-2, shamir module); the
     account server keeps one share, the user the other (LOCK-10).
  3. The server combines the two shares after checking them (LOCK-3, LOCK-10).
  4. Lock key = HKDF-SHA256 of the combined secret, bound to the keystore (LOCK-4).
  5. The server lock seals with AAD bound to keystore and purpose (LOCK-5).
  6. Lock check: a second HKDF output of the combined secret, under its own label, so a
     wrong, foreign, missing or malformed share is refused with one error before any
     working key is touched; the lock key itself only seals (LOCK-6).
  7. Working keys are sealed under the user lock, one record per version, bound to
     keystore, key id, version, type and public key (LOCK-7, LOCK-14, LOCK-22).
  8. In scenario "shares" the server stores no share, secret or lock key (LOCK-9).
  9. Capabilities (keyflows.spec.lock_layering_capability): HMAC chains of caveats that
     expire, revoke, bind to a holder's key and delegate (LOCK-11, LOCK-12, LOCK-23 ..).
 10. Operations: sign / verify (LOCK-15, LOCK-20), encrypt / decrypt (LOCK-16), wrap /
     unwrap with HPKE (LOCK-17), computemac / verifymac (LOCK-21), rotate (LOCK-22);
     answers carry no key of the keystore (LOCK-18).

Compat profile trustbloc: Vault-layout shares, HKDF with empty salt and info, AES-256-GCM
as padded base64url(nonce || ciphertext || tag) (LOCK-8).

Everything here is pure: randomness, nonces and "now" are parameters.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NewType

from keyflows.spec import hpke, primitives, shamir
from keyflows.spec.drbg import RandomSource
from keyflows.spec.encoding import PROTOCOL_ID, b64url_decode, b64url_encode, labelled_context
from keyflows.spec.errors import (
    BindingError,
    DecodeError,
    LengthError,
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
KEY_HMAC_SHA256 = "hmac-sha256"
KEY_TYPES = (KEY_ED25519, KEY_X25519, KEY_AES256GCM, KEY_HMAC_SHA256)
ASYMMETRIC_KEY_TYPES = frozenset({KEY_ED25519, KEY_X25519})

PURPOSE_USER_LOCK_KEY = "user-lock-key"
PURPOSE_CAPABILITY_ROOT_KEY = "capability-root-key"
# A secret of the server itself (a log signing key, a witness key); the keystore_id slot
# carries the secret's name.
PURPOSE_SERVER_SECRET = "server-secret"
PURPOSE_UNLOCK_GRANT_KEY = "unlock-grant-key"
PURPOSE_EDV_RECIPIENT_KEY = "edv-recipient-key"
PURPOSE_EDV_MAC_KEY = "edv-mac-key"
PURPOSE_EDV_TOKEN = "edv-token"
SERVER_LOCK_PURPOSES = (PURPOSE_USER_LOCK_KEY, PURPOSE_CAPABILITY_ROOT_KEY,
                        PURPOSE_SERVER_SECRET, PURPOSE_UNLOCK_GRANT_KEY,
                        PURPOSE_EDV_RECIPIENT_KEY, PURPOSE_EDV_MAC_KEY, PURPOSE_EDV_TOKEN)

LOCK_KEY_LEN = 32
SECRET_LEN = 32
SHARE_LEN = SECRET_LEN + 1
USER_LOCK_PARTS = 2
USER_LOCK_THRESHOLD = 2
MATERIAL_LEN = 32
ROOT_KEY_LEN = 32
LOCK_CHECK_LEN = 32
MAC_LEN = 32
NONCE_LEN = primitives.GCM_NONCE_LEN
TAG_LEN = primitives.GCM_TAG_LEN
SEALED_MIN_LEN = NONCE_LEN + TAG_LEN
SEALED_WORKING_KEY_LEN = NONCE_LEN + MATERIAL_LEN + TAG_LEN
CEK_MIN_LEN = 16
CEK_MAX_LEN = 64
WRAP_ENC_LEN = hpke.N_ENC
MAX_KEY_VERSIONS = 32
#: What every statement keyflows itself signs begins with (labelled_context); `sign`
#: refuses a message with this prefix (LOCK-20).
SIGNED_CONTEXT_PREFIX = PROTOCOL_ID + b"\x00"

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
OP_COMPUTEMAC = "computemac"
OP_VERIFYMAC = "verifymac"
OP_ROTATE = "rotate"
OP_REVOKE = "revoke"
OP_GRANT = "grant"
OPERATIONS = (OP_READ, OP_CREATE_KEY, OP_DELETE_KEY, OP_EXPORT, OP_SIGN, OP_VERIFY,
              OP_ENCRYPT, OP_DECRYPT, OP_WRAP, OP_UNWRAP, OP_COMPUTEMAC, OP_VERIFYMAC,
              OP_ROTATE, OP_REVOKE, OP_GRANT)
KEYSTORE_OPERATIONS = frozenset({OP_READ, OP_CREATE_KEY, OP_WRAP, OP_REVOKE, OP_GRANT})
KEY_OPERATIONS = frozenset(OPERATIONS) - KEYSTORE_OPERATIONS
#: Operations that need the user lock open (in scenario "shares": the user's share or an
#: unlock grant).
UNLOCKING_OPERATIONS = frozenset({OP_CREATE_KEY, OP_SIGN, OP_ENCRYPT, OP_DECRYPT, OP_UNWRAP,
                                  OP_COMPUTEMAC, OP_VERIFYMAC, OP_ROTATE, OP_GRANT})
_EVERY_TYPE = frozenset({OP_EXPORT, OP_DELETE_KEY, OP_ROTATE})
#: Which key-scoped operations each key type supports (LOCK-14).
SUPPORTED_OPERATIONS: dict[str, frozenset[str]] = {
    KEY_ED25519: _EVERY_TYPE | {OP_SIGN, OP_VERIFY},
    KEY_X25519: _EVERY_TYPE | {OP_UNWRAP},
    KEY_AES256GCM: _EVERY_TYPE | {OP_ENCRYPT, OP_DECRYPT},
    KEY_HMAC_SHA256: _EVERY_TYPE | {OP_COMPUTEMAC, OP_VERIFYMAC},
}
#: Operations that may name an older version of the key; the others use the current one.
VERSIONED_OPERATIONS = frozenset({OP_VERIFY, OP_DECRYPT, OP_UNWRAP, OP_VERIFYMAC})


# --- step 1: keystores ----------------------------------------------------------------------

def check_scenario(scenario: object) -> str:
    """Step 1 (LOCK-1): one of the two scenarios."""
    if scenario not in SCENARIOS:
        raise DecodeError(f"scenario must be one of {', '.join(SCENARIOS)}", requirement="LOCK-1")
    assert isinstance(scenario, str)
    return scenario


def check_key_type(key_type: object) -> str:
    """Step 7 (LOCK-14): one of the four working-key types."""
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


#: A share `decode_share` returned: exactly SHARE_LEN bytes.
DecodedShare = NewType("DecodedShare", bytes)


def decode_share(text: object) -> DecodedShare:
    """Step 3 (LOCK-10): a share on the wire is strict base64url of 33 bytes. Every defect
    is a share failure, so a malformed share is refused like a wrong one (LOCK-6); no
    share at all (None) is not a string, and an empty one has no bytes."""
    try:
        share = b64url_decode(text)  # type: ignore[arg-type]  # it refuses a non-string
    except SpecError as exc:
        raise ShareError("secret share is not base64url", requirement="LOCK-10") from exc
    if len(share) != SHARE_LEN:
        raise ShareError(f"secret share must be {SHARE_LEN} bytes", requirement="LOCK-10")
    return DecodedShare(share)


def combine_shares(shares: Sequence[bytes]) -> bytes:
    """Step 3 (LOCK-3): combine shares of a 32-byte secret; the combination checks them
    (two or more, one length, distinct non-zero x). The order of the shares does not
    matter. A server combines the two it decoded with `combine_decoded_shares`."""
    return shamir.combine(shares)


def combine_decoded_shares(account_share: DecodedShare, user_share: DecodedShare) -> bytes:
    """Step 3 (LOCK-3) as a server runs it: the account server's and the user's share,
    each decoded once (`decode_share`: 33 bytes). Two shares of one length of 33 bytes is
    what the count and length checks of the combination ask, so of its checks only the
    x-coordinates are left (none 0, not both the same)."""
    shares = (account_share, user_share)
    shamir.check_share_points(shares)
    return shamir.interpolate(shares)


def lock_key_info(keystore_id: str) -> bytes:
    """The HKDF info of step 4, exposed so vectors can record it."""
    return labelled_context("lock-key", check_identifier(keystore_id, "keystore_id"))


def _check_secret(secret: bytes, requirement: str) -> None:
    if len(secret) != SECRET_LEN:
        raise LengthError(f"combined secret must be {SECRET_LEN} bytes", requirement=requirement)


def lock_key_from_secret(secret: bytes, keystore_id: str) -> bytes:
    """Step 4 (LOCK-4): HKDF-SHA256(secret, salt = empty, ctx("lock-key", keystore_id))."""
    _check_secret(secret, "LOCK-4")
    return _lock_key(secret, keystore_id)


def _lock_key(secret: bytes, keystore_id: str) -> bytes:
    # The server's steps 3-6 reach this with a secret combined from two decoded shares,
    # which is 32 bytes: its length was checked once, where the shares were decoded.
    return labelled_hkdf(secret, "lock-key", check_identifier(keystore_id, "keystore_id"))


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
    """Inverse of `seal`; LengthError if shorter than nonce and tag (AES-GCM refuses a
    nonce of another length and a ciphertext shorter than its tag), AeadError if forged."""
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

def lock_check_info(keystore_id: str) -> bytes:
    """The HKDF info of the lock check, exposed so vectors can record it."""
    return labelled_context("lock-check", check_identifier(keystore_id, "keystore_id"))


def lock_check_from_secret(secret: bytes, keystore_id: str) -> bytes:
    """Step 6 (LOCK-6): HKDF-SHA256(secret, salt = empty, ctx("lock-check", keystore_id)).

    Derived from the combined secret beside the lock key, under its own label, so the lock
    key serves one purpose (sealing) and the stored check reveals nothing about it. As an
    HMAC output it commits to the secret, which AES-GCM under the lock key would not."""
    _check_secret(secret, "LOCK-6")
    return _lock_check(secret, keystore_id)


def _lock_check(secret: bytes, keystore_id: str) -> bytes:
    # As _lock_key: the server's secret is 32 bytes by its decoded shares.
    return labelled_hkdf(secret, "lock-check", check_identifier(keystore_id, "keystore_id"))


def verify_lock_check(secret: bytes, keystore_id: str, stored: bytes) -> None:
    """Step 6 (LOCK-6): a secret that fails the check is refused as a share failure, the
    same whether a share was wrong, foreign, for another threshold, or missing (a secret
    of another length cannot have the stored check)."""
    if not primitives.constant_time_equal(_lock_check(secret, keystore_id), stored):
        raise ShareError("the shares do not open this keystore", requirement="LOCK-6")


def unlock_with_shares(account_share_text: object, user_share_text: object, keystore_id: str,
                       stored_check: bytes) -> bytes:
    """Steps 3, 6 and 4 as a server runs them, in that order: the lock key is derived only
    from a secret that passed the check. Every failure is ShareError (LOCK-6)."""
    secret = combine_decoded_shares(decode_share(account_share_text),
                                    decode_share(user_share_text))
    verify_lock_check(secret, keystore_id, stored_check)
    return _lock_key(secret, keystore_id)


def lock_from_new_shares(account_share_text: object, user_share_text: object,
                         keystore_id: str) -> tuple[bytes, bytes]:
    """Steps 3, 4 and 6 at keystore creation: (lock key, lock check) from fresh shares."""
    secret = combine_decoded_shares(decode_share(account_share_text),
                                    decode_share(user_share_text))
    return _lock_key(secret, keystore_id), _lock_check(secret, keystore_id)


# --- step 7: working keys -----------------------------------------------------------------------

def generate_working_key(key_type: str, random: RandomSource) -> bytes:
    """Step 7 (LOCK-14): 32 random bytes for each key type (Ed25519 seed, X25519 private
    key, AES-256 key, HMAC-SHA256 key). The type is checked where it is read (the request,
    the stored record) and by public_key_of, which the material goes to next."""
    return random(MATERIAL_LEN)


def public_key_of(key_type: str, material: bytes) -> bytes:
    """Step 7 (LOCK-14): the public key of an asymmetric key; empty for symmetric ones."""
    check_key_type(key_type)
    if len(material) != MATERIAL_LEN:
        raise LengthError("key material must be 32 bytes", requirement="LOCK-14")
    if key_type == KEY_ED25519:
        return primitives.ed25519_public_key(material)
    if key_type == KEY_X25519:
        return primitives.x25519_public_key(material)
    return b""


def check_version(version: object, *, requirement: str = "LOCK-22") -> int:
    """Step 7 (LOCK-22): a key version is an integer 1..MAX_KEY_VERSIONS."""
    if isinstance(version, bool) or not isinstance(version, int) \
            or not 1 <= version <= MAX_KEY_VERSIONS:
        raise DecodeError(f"version must be an integer 1..{MAX_KEY_VERSIONS}",
                          requirement=requirement)
    return version


def working_key_aad(keystore_id: str, key_id: str, version: int, key_type: str,
                    public_key: bytes) -> bytes:
    """Step 7 (LOCK-7): ctx("working-key", keystore_id, key_id, u32be(version), key_type,
    public_key). The type comes from a parsed request or record (check_key_type)."""
    return labelled_context("working-key", check_identifier(keystore_id, "keystore_id"),
                            check_identifier(key_id, "key_id"),
                            check_version(version).to_bytes(4, "big"),
                            key_type.encode("ascii"), public_key)


def seal_working_key(lock_key: bytes, nonce: bytes, material: bytes, keystore_id: str,
                     key_id: str, version: int, key_type: str) -> bytes:
    """Step 7 (LOCK-7): nonce || AES-256-GCM(lock key, nonce, material, AAD) || tag."""
    aad = working_key_aad(keystore_id, key_id, version, key_type,
                          public_key_of(key_type, material))
    return seal(lock_key, nonce, material, aad)


def open_working_key(lock_key: bytes, sealed: bytes, keystore_id: str, key_id: str,
                     version: int, key_type: str, public_key: bytes) -> bytes:
    """Step 7 (LOCK-7): open one version; the stored public key is authenticated by the
    AAD, so a record moved to another key id, version, type or public key fails (aead)."""
    if len(sealed) != SEALED_WORKING_KEY_LEN:
        raise LengthError(f"a sealed working key is {SEALED_WORKING_KEY_LEN} bytes",
                          requirement="LOCK-7")
    aad = working_key_aad(keystore_id, key_id, version, key_type, public_key)
    return open_sealed(lock_key, sealed, aad, requirement="LOCK-7")


def check_operation_supported(key_type: str, operation: str) -> None:
    """Step 10 (LOCK-14): an operation the key's type does not support is refused before
    the key is unlocked."""
    if operation not in SUPPORTED_OPERATIONS[check_key_type(key_type)]:
        raise ParamsError(f"a {key_type} key does not support {operation}",
                          requirement="LOCK-14")


# --- records (what a server stores) --------------------------------------------------------

@dataclass(frozen=True)
class VaultBinding:
    """Step 12 (LOCK-32, LOCK-35): the encrypted data vault a keystore keeps its working
    keys in. The three secrets are server-lock blobs (purposes edv-recipient-key,
    edv-mac-key, edv-token); the recipient's public key is public."""

    vault: str
    recipient_public_key: bytes
    recipient_key: bytes
    mac_key: bytes
    token: bytes

    def to_json(self) -> dict[str, str]:
        return {"vault": self.vault,
                "recipient_public_key": b64url_encode(self.recipient_public_key),
                "recipient_key": b64url_encode(self.recipient_key),
                "mac_key": b64url_encode(self.mac_key), "token": b64url_encode(self.token)}


def parse_vault_binding(obj: object) -> VaultBinding:
    if not isinstance(obj, dict):
        raise DecodeError("edv must be an object", requirement="LOCK-32")
    fields = _members(obj, ("vault", "recipient_public_key", "recipient_key", "mac_key",
                            "token"), "keystore record edv", "LOCK-32")
    public = b64url_decode(fields["recipient_public_key"], requirement="LOCK-32")
    if len(public) != 32:
        raise LengthError("recipient_public_key must be 32 bytes", requirement="LOCK-32")
    return VaultBinding(fields["vault"], public,
                        *(b64url_decode(fields[n], requirement="LOCK-32")
                          for n in ("recipient_key", "mac_key", "token")))


@dataclass(frozen=True)
class KeystoreRecord:
    """The stored keystore. Blobs are server-lock ciphertexts (opaque for AWS KMS)."""

    keystore_id: str
    controller: str
    scenario: str
    capability_root_key: bytes  # sealed under the server lock
    user_lock_key: bytes = b""  # sealed under the server lock; scenario "server-held" only
    lock_check: bytes = b""  # scenario "shares" only
    unlock_grant_key: bytes = b""  # sealed under the server lock; scenario "shares" only
    edv: VaultBinding | None = None  # the vault keeping the working keys (step 12)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"keystore_id": self.keystore_id, "controller": self.controller,
                               "scenario": self.scenario,
                               "capability_root_key": b64url_encode(self.capability_root_key)}
        if self.scenario == SCENARIO_SERVER_HELD:
            out["user_lock_key"] = b64url_encode(self.user_lock_key)
        else:
            out["lock_check"] = b64url_encode(self.lock_check)
            out["unlock_grant_key"] = b64url_encode(self.unlock_grant_key)
        if self.edv is not None:
            out["edv"] = self.edv.to_json()
        return out


def parse_keystore_record(obj: object) -> KeystoreRecord:
    """Step 1 / step 8 (LOCK-1, LOCK-9): exactly the members of the record's scenario; a
    "shares" record has no place for a share, a secret or a lock key."""
    if not isinstance(obj, dict):
        raise DecodeError("keystore record must be an object", requirement="LOCK-1")
    scenario = check_scenario(obj.get("scenario"))
    edv = parse_vault_binding(obj["edv"]) if "edv" in obj else None
    obj = {k: v for k, v in obj.items() if k != "edv"}
    extra: tuple[str, ...] = (("user_lock_key",) if scenario == SCENARIO_SERVER_HELD
                              else ("lock_check", "unlock_grant_key"))
    fields = _members(obj, ("keystore_id", "controller", "scenario", "capability_root_key",
                            *extra), "keystore record", "LOCK-1")
    check_identifier(fields["keystore_id"], "keystore_id")
    check_identifier(fields["controller"], "controller")
    root = b64url_decode(fields["capability_root_key"], requirement="LOCK-13")
    if scenario == SCENARIO_SERVER_HELD:
        return KeystoreRecord(fields["keystore_id"], fields["controller"], scenario, root,
                              user_lock_key=b64url_decode(fields["user_lock_key"],
                                                          requirement="LOCK-5"), edv=edv)
    check = b64url_decode(fields["lock_check"], requirement="LOCK-6")
    if len(check) != LOCK_CHECK_LEN:
        raise LengthError("lock_check must be 32 bytes", requirement="LOCK-6")
    return KeystoreRecord(fields["keystore_id"], fields["controller"], scenario, root,
                          lock_check=check,
                          unlock_grant_key=b64url_decode(fields["unlock_grant_key"],
                                                         requirement="LOCK-28"), edv=edv)


@dataclass(frozen=True)
class KeyVersion:
    """One version of a working key: its public key (empty for symmetric keys) and its
    material sealed under the user lock (empty where the vault keeps it, step 12)."""

    version: int
    public_key: bytes
    sealed: bytes = b""

    def to_json(self, key_type: str) -> dict[str, Any]:
        out: dict[str, Any] = {"version": self.version}
        if key_type in ASYMMETRIC_KEY_TYPES:
            out["public_key"] = b64url_encode(self.public_key)
        if self.sealed:
            out["sealed"] = b64url_encode(self.sealed)
        return out


@dataclass(frozen=True)
class WorkingKeyRecord:
    """A working key: its versions, oldest first; the last is the current one."""

    keystore_id: str
    key_id: str
    key_type: str
    versions: tuple[KeyVersion, ...]

    @property
    def current(self) -> KeyVersion:
        return self.versions[-1]

    def version(self, number: int | None) -> KeyVersion:
        """The named version (or the current one); ParamsError if the key has no such
        version (LOCK-22)."""
        if number is None:
            return self.current
        for entry in self.versions:
            if entry.version == number:
                return entry
        raise ParamsError(f"the key has no version {number}", requirement="LOCK-22")

    def to_json(self) -> dict[str, Any]:
        return {"keystore_id": self.keystore_id, "key_id": self.key_id,
                "key_type": self.key_type,
                "versions": [v.to_json(self.key_type) for v in self.versions]}


def parse_working_key_record(obj: object, *, sealed_in_record: bool | None = True
                             ) -> WorkingKeyRecord:
    """Step 7 (LOCK-7, LOCK-22): the stored working key; public_key only for asymmetric
    keys, versions numbered 1, 2, ... in order; `sealed` in each version unless the vault
    keeps the material (step 12: sealed_in_record False), in which case the record has
    none. With sealed_in_record None (a store holding both kinds), the first version
    decides, and every version must agree."""
    if not isinstance(obj, dict):
        raise DecodeError("working-key record must be an object", requirement="LOCK-7")
    key_type = check_key_type(obj.get("key_type"))
    names = ("keystore_id", "key_id", "key_type", "versions")
    _require_exact(obj, names, "working-key record", "LOCK-7")
    for name in names[:3]:
        if not isinstance(obj[name], str):
            raise DecodeError(f"working-key record.{name} must be a string", requirement="LOCK-7")
    check_identifier(obj["keystore_id"], "keystore_id")
    check_identifier(obj["key_id"], "key_id")
    versions = obj["versions"]
    if not isinstance(versions, list) or not 1 <= len(versions) <= MAX_KEY_VERSIONS:
        raise DecodeError(f"versions is a list of 1..{MAX_KEY_VERSIONS}", requirement="LOCK-22")
    if sealed_in_record is None:
        sealed_in_record = isinstance(versions[0], dict) and "sealed" in versions[0]
    parsed = tuple(_parse_version(v, key_type, sealed_in_record) for v in versions)
    if [v.version for v in parsed] != list(range(1, len(parsed) + 1)):
        raise DecodeError("versions are numbered 1, 2, ... in order", requirement="LOCK-22")
    return WorkingKeyRecord(obj["keystore_id"], obj["key_id"], key_type, parsed)


def _parse_version(obj: object, key_type: str, sealed_in_record: bool) -> KeyVersion:
    if not isinstance(obj, dict):
        raise DecodeError("a key version must be an object", requirement="LOCK-7")
    names: tuple[str, ...] = ("version",)
    if key_type in ASYMMETRIC_KEY_TYPES:
        names += ("public_key",)
    if sealed_in_record:
        names += ("sealed",)
    _require_exact(obj, names, "key version", "LOCK-7")
    version = check_version(obj["version"])
    public = b""
    if key_type in ASYMMETRIC_KEY_TYPES:
        public = b64url_decode(obj["public_key"], requirement="LOCK-7")
        if len(public) != 32:
            raise LengthError("public_key must be 32 bytes", requirement="LOCK-7")
    sealed = b""
    if sealed_in_record:
        sealed = b64url_decode(obj["sealed"], requirement="LOCK-7")
        if len(sealed) != SEALED_WORKING_KEY_LEN:
            raise LengthError(f"sealed must be {SEALED_WORKING_KEY_LEN} bytes",
                              requirement="LOCK-7")
    return KeyVersion(version, public, sealed)


def make_key_version(lock_key: bytes, nonce: bytes, material: bytes, keystore_id: str,
                     key_id: str, version: int, key_type: str) -> KeyVersion:
    """Step 7: one sealed version of a working key."""
    return KeyVersion(version, public_key_of(key_type, material),
                      seal_working_key(lock_key, nonce, material, keystore_id, key_id, version,
                                       key_type))


def make_working_key_record(lock_key: bytes, nonce: bytes, material: bytes, keystore_id: str,
                            key_id: str, key_type: str) -> WorkingKeyRecord:
    """Step 7: the record a server stores for a new working key (version 1)."""
    return WorkingKeyRecord(keystore_id, key_id, key_type, (
        make_key_version(lock_key, nonce, material, keystore_id, key_id, 1, key_type),))


def without_sealed(record: WorkingKeyRecord) -> WorkingKeyRecord:
    """Step 12 (LOCK-32): what a server stores of a key whose versions a vault keeps."""
    return WorkingKeyRecord(record.keystore_id, record.key_id, record.key_type, tuple(
        KeyVersion(v.version, v.public_key) for v in record.versions))


def rotated(record: WorkingKeyRecord, new_version: KeyVersion) -> WorkingKeyRecord:
    """Step 10 (LOCK-22): the record with one more version; the older ones are kept."""
    return WorkingKeyRecord(record.keystore_id, record.key_id, record.key_type,
                            (*record.versions, new_version))


def next_version(record: WorkingKeyRecord) -> int:
    """Step 10 (LOCK-22): the number of the version a rotation adds; a key has at most
    MAX_KEY_VERSIONS versions (failure class params)."""
    if len(record.versions) >= MAX_KEY_VERSIONS:
        raise ParamsError(f"a key has at most {MAX_KEY_VERSIONS} versions",
                          requirement="LOCK-22")
    return record.current.version + 1


def open_key_version(lock_key: bytes, record: WorkingKeyRecord, entry: KeyVersion,
                     sealed: bytes | None = None) -> bytes:
    """Step 7: the material of one version, checked against its public key. `sealed`
    comes from the vault when the record does not hold it (step 12)."""
    material = open_working_key(lock_key, entry.sealed if sealed is None else sealed,
                                record.keystore_id, record.key_id, entry.version,
                                record.key_type, entry.public_key)
    if public_key_of(record.key_type, material) != entry.public_key:
        # Unreachable unless the sealer lied: the AAD already authenticates the public key.
        raise BindingError("working key does not match its public key", requirement="LOCK-7")
    return material


def open_working_key_record(lock_key: bytes, record: WorkingKeyRecord,
                            version: int | None = None) -> bytes:
    """Step 7: the material of the named (default: current) version of a stored record."""
    return open_key_version(lock_key, record, record.version(version))


def _require_exact(obj: dict[str, Any], names: tuple[str, ...], where: str,
                   requirement: str) -> None:
    missing = [n for n in names if n not in obj]
    if missing:
        raise DecodeError(f"{where} lacks {', '.join(missing)}", requirement=requirement)
    unknown = sorted(set(obj) - set(names))
    if unknown:
        raise DecodeError(f"{where} has unknown member {unknown[0]}", requirement=requirement)


def _members(obj: dict[str, Any], names: tuple[str, ...], where: str,
             requirement: str) -> dict[str, str]:
    _require_exact(obj, names, where, requirement)
    for name in names:
        if not isinstance(obj[name], str):
            raise DecodeError(f"{where}.{name} must be a string", requirement=requirement)
    return {n: obj[n] for n in names}


# --- step 10: operations ----------------------------------------------------------------------

def check_signable(message: bytes) -> None:
    """Step 10 (LOCK-20): `sign` is an oracle for whoever holds a capability, so it refuses
    every message that begins like a statement keyflows itself signs (labelled_context:
    "keyflows-v1" || 0x00): a keystore key can never be made to sign one (class params)."""
    if message.startswith(SIGNED_CONTEXT_PREFIX):
        raise ParamsError("the message begins like a keyflows signed statement",
                          requirement="LOCK-20")


def sign(seed: bytes, message: bytes) -> bytes:
    """Step 10 (LOCK-15, LOCK-20): pure Ed25519 over the message bytes, for any message
    outside keyflows' own signed contexts."""
    check_signable(message)
    return sign_signable(seed, message)


def sign_signable(seed: bytes, message: bytes) -> bytes:
    """Step 10 (LOCK-15) for a message `check_signable` let through: a server checks it
    once, when it reads the request and before it opens the lock (API-18)."""
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
    """Step 10 (LOCK-16): AeadError for a tampered ciphertext, nonce, tag or AAD; a nonce
    that is not 12 bytes is a LengthError (AES-GCM's own check)."""
    return primitives.aes256gcm_decrypt(key, nonce, ciphertext, aad, requirement="LOCK-16")


def computemac(key: bytes, message: bytes) -> bytes:
    """Step 10 (LOCK-21): HMAC-SHA256(key, message)."""
    return primitives.hmac_sha256(key, message)


def verifymac(key: bytes, message: bytes, mac: bytes) -> bool:
    """Step 10 (LOCK-21): true iff mac equals HMAC-SHA256(key, message), compared in
    constant time; a mac that is not 32 bytes is a length error, not an answer."""
    if len(mac) != MAC_LEN:
        raise LengthError(f"mac must be {MAC_LEN} bytes", requirement="LOCK-21")
    return mac_matches(key, message, mac)


def mac_matches(key: bytes, message: bytes, mac: bytes) -> bool:
    """Step 10 (LOCK-21) for a mac whose length is checked: a server's `parse_request`
    decodes it at exactly MAC_LEN bytes, before the lock opens (API-18)."""
    return primitives.constant_time_equal(computemac(key, message), mac)


WRAP_INFO = labelled_context("lock-wrap")


@dataclass(frozen=True)
class Wrapped:
    enc: bytes  # HPKE enc: the sender's ephemeral X25519 public key
    wrapped_key: bytes  # HPKE ciphertext: AES-256-GCM of the cek, with its tag


def check_cek(cek: bytes) -> None:
    if not CEK_MIN_LEN <= len(cek) <= CEK_MAX_LEN:
        raise LengthError(f"a wrapped key is {CEK_MIN_LEN}..{CEK_MAX_LEN} bytes",
                          requirement="LOCK-17")


def check_wrapped_key_length(wrapped_key: bytes) -> None:
    if not CEK_MIN_LEN + TAG_LEN <= len(wrapped_key) <= CEK_MAX_LEN + TAG_LEN:
        raise LengthError("wrapped_key has an impossible length", requirement="LOCK-17")


def wrap_sealed(cek: bytes, recipient_public: bytes, ikm_e: bytes) -> hpke.Sealed:
    """Step 10 (LOCK-17), every intermediate: HPKE base mode (RFC 9180), suite
    DHKEM(X25519, HKDF-SHA256) / HKDF-SHA256 / AES-256-GCM, single shot, info =
    ctx("lock-wrap"), aad = empty; the ephemeral key is DeriveKeyPair(ikm_e)."""
    check_cek(cek)
    return hpke.seal_base(recipient_public, WRAP_INFO, b"", cek, ikm_e=ikm_e,
                          requirement="LOCK-17")


def wrap(cek: bytes, recipient_public: bytes, ikm_e: bytes) -> Wrapped:
    """Step 10 (LOCK-17): HPKE SealBase of the cek to R; R is checked (canonical, not of
    low order), the DH output must not be zero."""
    sealed = wrap_sealed(cek, recipient_public, ikm_e)
    return Wrapped(sealed.enc, sealed.ciphertext)


def unwrap(wrapped: Wrapped, recipient_private: bytes) -> bytes:
    """Step 10 (LOCK-17): HPKE OpenBase; point errors for a bad enc, aead otherwise."""
    check_wrapped_key_length(wrapped.wrapped_key)
    return open_wrapped(wrapped, recipient_private)


def open_wrapped(wrapped: Wrapped, recipient_private: bytes) -> bytes:
    """Step 10 (LOCK-17) for a wrapped key whose length is checked: a server's
    `parse_request` checks it (`check_wrapped_key_length`) before the lock opens (API-18)."""
    return hpke.open_base(wrapped.enc, recipient_private, WRAP_INFO, b"", wrapped.wrapped_key,
                          requirement="LOCK-17").plaintext


# --- the HTTP request bodies ------------------------------------------------------------------

#: Request body members per request kind: (required, optional). Every other member is
#: refused (API-6); binary members are strict base64url (API-1); "version" is an integer.
REQUEST_MEMBERS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "create-keystore": (("scenario",), ("holder", "edv")),
    "root-capability": ((), ("holder",)),
    "revoke": (("capability",), ()),
    "grant": (("capability",), ()),
    "create-key": (("key_type",), ()),
    "sign": (("message",), ()),
    "verify": (("message", "signature"), ("version",)),
    "encrypt": (("plaintext",), ("aad",)),
    "decrypt": (("nonce", "ciphertext"), ("aad", "version")),
    "wrap": (("cek", "recipient_public_key"), ()),
    "unwrap": (("enc", "wrapped_key"), ("version",)),
    "computemac": (("message",), ()),
    "verifymac": (("message", "mac"), ("version",)),
}
_TEXT_MEMBERS = frozenset({"scenario", "key_type", "capability"})
_INTEGER_MEMBERS = frozenset({"version"})
_EXACT_LENGTHS = {"signature": (primitives.ED25519_SIG_LEN, "LOCK-15"),
                  "nonce": (NONCE_LEN, "LOCK-16"), "mac": (MAC_LEN, "LOCK-21"),
                  "recipient_public_key": (32, "LOCK-17"), "enc": (WRAP_ENC_LEN, "LOCK-17"),
                  "holder": (32, "LOCK-25")}


def parse_request(kind: str, obj: object) -> dict[str, Any]:
    """Step 10: the body of a request of this kind, decoded: text members stay strings
    (and are checked), "version" an integer, binary members become bytes of their
    required length."""
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
        if name == "edv":
            out[name] = parse_vault_request(value)
            continue
        if name in _INTEGER_MEMBERS:
            out[name] = check_version(value)
            continue
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
    _check_members(out)
    if kind in ("encrypt", "decrypt"):
        out.setdefault("aad", b"")
    if "version" in optional:
        out.setdefault("version", None)
    return out


def parse_vault_request(value: object) -> dict[str, str]:
    """Step 12 (LOCK-35): {"vault": "<vault URL>", "token": "<the vault's bearer token>"}."""
    if not isinstance(value, dict) or sorted(value) != ["token", "vault"] \
            or not all(isinstance(v, str) and v for v in value.values()):
        raise DecodeError('edv is {"vault": URL, "token": bearer token}', requirement="LOCK-35")
    return dict(value)


def _check_members(out: dict[str, Any]) -> None:
    if "scenario" in out:
        check_scenario(out["scenario"])
    if "key_type" in out:
        check_key_type(out["key_type"])
    if "wrapped_key" in out:
        check_wrapped_key_length(out["wrapped_key"])


def key_description(record: WorkingKeyRecord, key_url: str) -> dict[str, Any]:
    """Step 10 (LOCK-18, LOCK-22): what an answer may say about a key: its id, type, URL,
    current version and every version's public key; never material."""
    out: dict[str, Any] = {"key_id": record.key_id, "key_type": record.key_type,
                           "key_url": key_url, "version": record.current.version,
                           "versions": [KeyVersion(v.version, v.public_key).to_json(
                               record.key_type) for v in record.versions]}
    if record.key_type in ASYMMETRIC_KEY_TYPES:
        out["public_key"] = b64url_encode(record.current.public_key)
    return out


# --- compat profile: trustbloc --------------------------------------------------------------

def trustbloc_split(secret: bytes, random: RandomSource, *, parts: int = 2,
                    threshold: int = 2) -> shamir.Split:
    """LOCK-8: a split as trustbloc made it: Vault's Split of the pinned release (2020),
    whose x-coordinates are the first `parts` of a random permutation of 1..255 and whose
    makePolynomial draws the coefficients once, without looking at the leading one."""
    shamir.check_split_params(parts, threshold, len(secret))
    xs = shamir.vault_2017_x_coordinates(parts, random)
    return shamir.split(secret, parts, threshold, random, xs,
                        draw=shamir.draw_polynomial_once)


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
