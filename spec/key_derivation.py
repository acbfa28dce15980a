"""Flow: key-derivation.

Steps (see the key-derivation chapter):
  1. Validate inputs: kB is 32 bytes (KD-1); identifiers match the identifier syntax (KD-2).
  2. Application key kBr from kB and client_id (KD-3).
  3. Password stretching: the password normalised with the PRECIS OpaqueString profile
     (KD-9), then Argon2id with a stored 16-byte salt and costs between one floor and one
     cap, the same for producer and consumer (KD-4, KD-5).
  4. Password key from the stretched password, bound to user and application (KD-6).
  5. Every derivation uses a label registered for one purpose (KD-7).

Compat profile fxakeys: the original kBr formula (KD-8).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import precis_i18n

from keyflows.spec import primitives
from keyflows.spec.encoding import labelled_context
from keyflows.spec.errors import DecodeError, LengthError, ParamsError

KB_LEN = 32
KEY_LEN = 32
SALT_LEN = 16
IDENTIFIER = re.compile(r"\A[A-Za-z0-9._~-]{1,64}\Z")

# KD-7: every HKDF label of profile v1, each used for exactly one purpose.
LABELS: dict[str, str] = {
    "application-key": "kBr, the per-application key (KD-3)",
    "password-key": "the password key (KD-6)",
    "keypair-record": "AAD of the encrypted private keys (KP-3)",
    "keypair-record-key": "AEAD key of a keypair record, from its KEK (KP-21)",
    "keypair-record-commitment": "key commitment of a keypair record, from its KEK (KP-21)",
    "public-keys": "message of the binding signature (KP-4)",
    "x25519-possession": "message of the XEdDSA signature by the X25519 key (KP-14)",
    "keypair-rotation": "message a replaced key signs to hand over to the next (KP-17)",
    "keypair-deletion": "message the deleted key signs to end its chain (KP-19)",
    "lock-key": "the user lock key from combined shares (LOCK-4)",
    "server-lock": "AAD of what the server lock seals (LOCK-5)",
    "lock-check": "the lock check, a commitment to the combined secret (LOCK-6)",
    "working-key": "AAD of a working-key record (LOCK-7)",
    "capability": "first link of a capability's HMAC chain (LOCK-11)",
    "capability-caveat": "each caveat link of a capability's HMAC chain (LOCK-11)",
    "lock-wrap": "HPKE info of a key wrapped to an X25519 recipient (LOCK-17)",
    "envelope-device-list": "message of a signed device list (ENV-21)",
    "envelope-payload-key": "the payload key derived from the content key (ENV-4)",
    "envelope-commitment": "the commitment to the content key (ENV-4, ENV-8)",
    "envelope-entry": "HPKE info of every recipient entry of a message (ENV-6)",
    "envelope-recipient": "HPKE aad of a recipient entry, its address (ENV-6)",
    "envelope-sender-psk": "PSK of the hybrid suite from the static-static X25519 (ENV-25)",
    "envelope-sender": "psk_id naming the sender's published key (ENV-25)",
    "session-challenge": "HPKE info of the sealed challenge token (SC-4)",
    "session-token": "input of the stored session-token digest (SC-12)",
    "hashchain-hash-id": "blinded identity hash of a chain entry (HC-2)",
    "hashchain-id-key": "key sealing an entry's record hash (HC-3)",
    "hashchain-sealed-hash": "AAD of an entry's sealed record hash (HC-3)",
    "hashchain-record-hash": "input of a chain record's hash (HC-4)",
    "hashchain-record-index": "input of a chain record's public index (HC-4)",
    "hashchain-server-key": "message signed to introduce or rotate the keyserver key (HC-6)",
    "hashchain-uid": "canonical content of a UID message (HC-15)",
    "hashchain-uid-signature": "message of each UID signature, per signer role (HC-16)",
    "hashchain-uid-seal-key": "key of a UID's sealed repository copy (HC-24)",
    "hashchain-uid-seal": "AAD of a UID's sealed repository copy (HC-24)",
    "hashchain-keyinit": "message of a KeyInit signature (HC-25)",
    "hashchain-keyinit-flush": "message of a KeyInit flush request signature (HC-28)",
}


@dataclass(frozen=True)
class Argon2Params:
    """Argon2id cost parameters as stored beside the salt (KD-5)."""

    t: int
    m: int
    p: int


#: KD-5: the one floor producers and consumers apply (OWASP's minimum for Argon2id).
ARGON2_FLOOR = Argon2Params(t=2, m=19456, p=1)
#: KD-5: the caps, so a record cannot make its opener spend unbounded time or memory.
ARGON2_CAP = Argon2Params(t=16, m=4194304, p=16)
PRODUCER_MINIMUM = ARGON2_FLOOR  # the name earlier code used
#: KD-9: the PRECIS profile passwords are enforced with (RFC 8265 section 4.2).
PASSWORD_PROFILE = precis_i18n.get_profile("OpaqueString")


def check_identifier(value: object, field: str, *, requirement: str = "KD-2") -> bytes:
    """Step 1: identifiers are short URL-safe ASCII strings (anything else is refused as
    a decode error); returns their bytes."""
    if not isinstance(value, str) or not IDENTIFIER.match(value):
        raise DecodeError(f"{field} does not match the identifier syntax",
                          requirement=requirement)
    return value.encode("ascii")


def check_kb(kb: bytes) -> None:
    """Step 1: kB length (KD-1)."""
    if len(kb) != KB_LEN:
        raise LengthError(f"kB must be {KB_LEN} bytes, got {len(kb)}", requirement="KD-1")


def labelled_hkdf(ikm: bytes, label: str, *fields: bytes, length: int = KEY_LEN) -> bytes:
    """Step 5: HKDF-SHA256 with an empty salt and a registered label (KD-7)."""
    if label not in LABELS:
        raise ValueError(f"unregistered HKDF label {label!r}")
    return primitives.hkdf_sha256(ikm, b"", labelled_context(label, *fields), length)


def application_key_info(client_id: str) -> bytes:
    """The HKDF info of step 2, exposed so vectors can record it."""
    return labelled_context("application-key", check_identifier(client_id, "client_id"))


def application_key(kb: bytes, client_id: str) -> bytes:
    """Step 2: kBr = HKDF-SHA256(kB, salt = empty, info = ctx("application-key", client_id))."""
    check_kb(kb)
    return labelled_hkdf(kb, "application-key", check_identifier(client_id, "client_id"))


def check_argon2_params(params: Argon2Params) -> None:
    """Step 3, producer and consumer alike (KD-5): refuse costs outside
    2 <= t <= 16, 1 <= p <= 16, max(19456, 8p) <= m <= 4194304 before running Argon2id."""
    t, m, p = params.t, params.m, params.p
    for name, value in (("t", t), ("m", m), ("p", p)):
        if not isinstance(value, int) or isinstance(value, bool):
            raise ParamsError(f"Argon2id {name} must be an integer", requirement="KD-5")
    if not ARGON2_FLOOR.t <= t <= ARGON2_CAP.t:
        raise ParamsError(f"Argon2id t={t} outside {ARGON2_FLOOR.t}..{ARGON2_CAP.t}",
                          requirement="KD-5")
    if not ARGON2_FLOOR.p <= p <= ARGON2_CAP.p:
        raise ParamsError(f"Argon2id p={p} outside {ARGON2_FLOOR.p}..{ARGON2_CAP.p}",
                          requirement="KD-5")
    if not max(ARGON2_FLOOR.m, 8 * p) <= m <= ARGON2_CAP.m:
        raise ParamsError(f"Argon2id m={m} outside max({ARGON2_FLOOR.m}, 8p)..{ARGON2_CAP.m}",
                          requirement="KD-5")


def meets_producer_minimum(params: Argon2Params) -> bool:
    """Step 3 (KD-5): the producer's test is the consumer's, one floor for both."""
    try:
        check_argon2_params(params)
    except ParamsError:
        return False
    return True


def normalize_password(password: str) -> bytes:
    """Step 3 (KD-9): the UTF-8 bytes of the password enforced with the PRECIS
    OpaqueString profile (RFC 8265 section 4.2): non-ASCII spaces mapped to U+0020, NFC;
    empty results and disallowed code points (controls, unassigned, ...) refused."""
    if not isinstance(password, str) or not password:
        raise ParamsError("password must not be empty", requirement="KD-6")
    try:
        enforced = PASSWORD_PROFILE.enforce(password)
    except UnicodeEncodeError as exc:
        raise ParamsError(f"password is not a PRECIS OpaqueString ({exc.reason})",
                          requirement="KD-9") from None
    assert isinstance(enforced, str)
    return enforced.encode("utf-8")


def stretch_password(password: str, salt: bytes, params: Argon2Params) -> bytes:
    """Step 3: Argon2id(normalize_password(password), salt, t, m, p, L = 32); the inputs
    are checked before Argon2id runs (KD-4, KD-5, KD-6, KD-9)."""
    if not password:
        raise ParamsError("password must not be empty", requirement="KD-6")
    if len(salt) != SALT_LEN:
        raise LengthError(f"salt must be {SALT_LEN} bytes, got {len(salt)}", requirement="KD-4")
    check_argon2_params(params)
    return primitives.argon2id(normalize_password(password), salt, iterations=params.t,
                               memory_kib=params.m, lanes=params.p, length=KEY_LEN)


def password_key_info(user_id: str, client_id: str) -> bytes:
    return labelled_context("password-key", check_identifier(user_id, "user_id"),
                            check_identifier(client_id, "client_id"))


def password_key_from_stretched(stretched: bytes, user_id: str, client_id: str) -> bytes:
    """Step 4: pwk = HKDF-SHA256(stretched, salt = empty, ctx("password-key", user, client))."""
    return labelled_hkdf(stretched, "password-key", check_identifier(user_id, "user_id"),
                         check_identifier(client_id, "client_id"))


def password_key(password: str, salt: bytes, params: Argon2Params,
                 user_id: str, client_id: str) -> bytes:
    """Steps 3 and 4 together."""
    check_identifier(user_id, "user_id")
    check_identifier(client_id, "client_id")
    return password_key_from_stretched(stretch_password(password, salt, params),
                                       user_id, client_id)


# --- compat profile: fxakeys ------------------------------------------------------------

def fxakeys_salt(kb: bytes) -> bytes:
    """The original's salt: ASCII '0' (0x30) repeated len(kB) times, not zero bytes."""
    return b"0" * len(kb)


def fxakeys_application_key(kb: bytes, client_id: str) -> bytes:
    """KD-8: HKDF-SHA256(kB, salt = "0" * len(kB), info = client_id, L = 32)."""
    if not kb:
        raise LengthError("kB must not be empty", requirement="KD-8")
    return primitives.hkdf_sha256(kb, fxakeys_salt(kb), client_id.encode("utf-8"), KEY_LEN)


def fxakeys_application_key_hex(kb: bytes, client_id: str) -> str:
    """KD-8: the original hex-encodes kBr in lowercase."""
    return fxakeys_application_key(kb, client_id).hex()
