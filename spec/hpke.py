"""HPKE (RFC 9180), base mode, one cipher suite: the sealed box of the session-challenge flow.

Suite (RFC 9180 section 7 registry values):
  KEM  0x0020  DHKEM(X25519, HKDF-SHA256)    Nsecret = Nenc = Npk = Nsk = 32
  KDF  0x0001  HKDF-SHA256                   Nh = 32
  AEAD 0x0002  AES-256-GCM                   Nk = 32, Nn = 12, Nt = 16
  mode 0x00    mode_base (no PSK, no sender authentication)

Written from the RFC over keyflows.spec.primitives rather than taken from a library so
that the sender's ephemeral key is injectable: Encap derives it with DeriveKeyPair(ikmE)
(RFC 9180 section 7.1.3), exactly as the RFC's test vectors do, so every intermediate of a
sealed challenge can be written into a vector. Pinned by the CFRG known-answer entry for
this suite (tests/kat/hpke_x25519_sha256_aes256gcm_base.json) and cross-checked against
an independent implementation (pyca/cryptography's HPKE) in tests/test_hpke_kat.py.

Deviation from RFC 9180, stricter only: Decap rejects an `enc` that is not the canonical
encoding of a point (top bit set, or u >= 2^255 - 19) or that is of low order, before the
DH (failure class point), as every v1 party does for X25519 keys (KP-5). RFC 9180 only
requires rejecting the all-zero DH output, which the checked X25519 also does.
"""

from __future__ import annotations

from dataclasses import dataclass

from keyflows.spec import primitives
from keyflows.spec.errors import LengthError, ParamsError

KEM_ID = 0x0020
KDF_ID = 0x0001
AEAD_ID = 0x0002
MODE_BASE = 0x00

N_SECRET = 32
N_ENC = 32
N_PK = 32
N_SK = 32
N_K = 32
N_N = 12
N_T = 16
N_H = 32

SUITE_NAME = "DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-256-GCM"

_VERSION_LABEL = b"HPKE-v1"
#: suite_id of the KEM (RFC 9180 section 4.1): "KEM" || I2OSP(kem_id, 2).
KEM_SUITE_ID = b"KEM" + KEM_ID.to_bytes(2, "big")
#: suite_id of the key schedule (RFC 9180 section 5.1): "HPKE" || kem || kdf || aead.
HPKE_SUITE_ID = (b"HPKE" + KEM_ID.to_bytes(2, "big") + KDF_ID.to_bytes(2, "big")
                 + AEAD_ID.to_bytes(2, "big"))
_MAX_SEQ = 2 ** (8 * N_N) - 1


# --- labelled KDF (RFC 9180 section 4) -------------------------------------------------

def labeled_extract(suite_id: bytes, salt: bytes, label: bytes, ikm: bytes) -> bytes:
    """LabeledExtract(salt, label, ikm) = Extract(salt, "HPKE-v1" || suite_id || label || ikm)."""
    return primitives.hkdf_extract(salt, _VERSION_LABEL + suite_id + label + ikm)


def labeled_expand(suite_id: bytes, prk: bytes, label: bytes, info: bytes, length: int) -> bytes:
    """LabeledExpand(prk, label, info, L) =
    Expand(prk, I2OSP(L, 2) || "HPKE-v1" || suite_id || label || info, L)."""
    if not 1 <= length <= 0xFFFF:
        raise ParamsError(f"LabeledExpand length must be 1..65535, got {length}")
    labeled_info = length.to_bytes(2, "big") + _VERSION_LABEL + suite_id + label + info
    return primitives.hkdf_expand(prk, labeled_info, length)


# --- DHKEM(X25519, HKDF-SHA256) (RFC 9180 section 4.1, 7.1.3) ------------------------------

@dataclass(frozen=True)
class KeyPair:
    private: bytes
    public: bytes


def derive_key_pair(ikm: bytes) -> KeyPair:
    """DeriveKeyPair(ikm) for X25519: sk = LabeledExpand(LabeledExtract("", "dkp_prk", ikm),
    "sk", "", Nsk); pk = X25519(sk, 9). The ikm must carry Nsk = 32 bytes."""
    if len(ikm) < N_SK:
        raise LengthError(f"DeriveKeyPair ikm must be at least {N_SK} bytes, got {len(ikm)}")
    dkp_prk = labeled_extract(KEM_SUITE_ID, b"", b"dkp_prk", ikm)
    private = labeled_expand(KEM_SUITE_ID, dkp_prk, b"sk", b"", N_SK)
    return KeyPair(private=private, public=primitives.x25519_public_key(private))


def extract_and_expand(dh: bytes, kem_context: bytes) -> bytes:
    """ExtractAndExpand(dh, kem_context): the KEM shared secret."""
    eae_prk = labeled_extract(KEM_SUITE_ID, b"", b"eae_prk", dh)
    return labeled_expand(KEM_SUITE_ID, eae_prk, b"shared_secret", kem_context, N_SECRET)


@dataclass(frozen=True)
class Encapsulation:
    """Every value of Encap(pkR), for vectors: enc is the ephemeral public key pkE."""

    ikm_e: bytes
    ephemeral_private: bytes
    enc: bytes
    dh: bytes
    kem_context: bytes
    shared_secret: bytes


def encap(recipient_public: bytes, ikm_e: bytes, *, requirement: str | None = None
          ) -> Encapsulation:
    """Encap(pkR) with the ephemeral key pair DeriveKeyPair(ikmE).

    pkR is checked (canonical, not low order) like every v1 X25519 key; the checked DH
    also rejects an all-zero result, as RFC 9180 section 7.1.4 requires.
    """
    primitives.check_x25519_public_key(recipient_public, requirement=requirement)
    ephemeral = derive_key_pair(ikm_e)
    dh = primitives.x25519(ephemeral.private, recipient_public, requirement=requirement)
    kem_context = ephemeral.public + recipient_public
    return Encapsulation(ikm_e=ikm_e, ephemeral_private=ephemeral.private,
                         enc=ephemeral.public, dh=dh, kem_context=kem_context,
                         shared_secret=extract_and_expand(dh, kem_context))


@dataclass(frozen=True)
class Decapsulation:
    dh: bytes
    kem_context: bytes
    shared_secret: bytes


def decap(enc: bytes, recipient_private: bytes, *, requirement: str | None = None
          ) -> Decapsulation:
    """Decap(enc, skR). Rejects a mis-sized (length), non-canonical or low-order (point) enc
    before any DH, and an all-zero DH output (point)."""
    primitives.check_x25519_public_key(enc, requirement=requirement)
    dh = primitives.x25519(recipient_private, enc, requirement=requirement)
    kem_context = enc + primitives.x25519_public_key(recipient_private)
    return Decapsulation(dh=dh, kem_context=kem_context,
                         shared_secret=extract_and_expand(dh, kem_context))


# --- key schedule (RFC 9180 section 5.1), mode_base ----------------------------------------

@dataclass(frozen=True)
class KeySchedule:
    psk_id_hash: bytes
    info_hash: bytes
    key_schedule_context: bytes
    secret: bytes
    key: bytes
    base_nonce: bytes
    exporter_secret: bytes


def key_schedule_base(shared_secret: bytes, info: bytes) -> KeySchedule:
    """KeySchedule(mode_base, shared_secret, info, psk = "", psk_id = "")."""
    psk_id_hash = labeled_extract(HPKE_SUITE_ID, b"", b"psk_id_hash", b"")
    info_hash = labeled_extract(HPKE_SUITE_ID, b"", b"info_hash", info)
    context = bytes([MODE_BASE]) + psk_id_hash + info_hash
    secret = labeled_extract(HPKE_SUITE_ID, shared_secret, b"secret", b"")
    return KeySchedule(
        psk_id_hash=psk_id_hash,
        info_hash=info_hash,
        key_schedule_context=context,
        secret=secret,
        key=labeled_expand(HPKE_SUITE_ID, secret, b"key", context, N_K),
        base_nonce=labeled_expand(HPKE_SUITE_ID, secret, b"base_nonce", context, N_N),
        exporter_secret=labeled_expand(HPKE_SUITE_ID, secret, b"exp", context, N_H),
    )


def compute_nonce(base_nonce: bytes, seq: int) -> bytes:
    """ComputeNonce(seq) = base_nonce XOR I2OSP(seq, Nn)."""
    if not 0 <= seq <= _MAX_SEQ:
        raise ParamsError("HPKE message limit reached")
    seq_bytes = seq.to_bytes(N_N, "big")
    return bytes(a ^ b for a, b in zip(base_nonce, seq_bytes, strict=True))


def context_seal(schedule: KeySchedule, seq: int, aad: bytes, plaintext: bytes) -> bytes:
    """ContextS.Seal for the seq-th message (single-shot use is seq = 0)."""
    return primitives.aes256gcm_encrypt(schedule.key, compute_nonce(schedule.base_nonce, seq),
                                        plaintext, aad)


def context_open(schedule: KeySchedule, seq: int, aad: bytes, ciphertext: bytes, *,
                 requirement: str | None = None) -> bytes:
    """ContextR.Open for the seq-th message; AeadError if it does not authenticate."""
    return primitives.aes256gcm_decrypt(schedule.key, compute_nonce(schedule.base_nonce, seq),
                                        ciphertext, aad, requirement=requirement)


def context_export(schedule: KeySchedule, exporter_context: bytes, length: int) -> bytes:
    """Context.Export(exporter_context, L) (RFC 9180 section 5.3)."""
    return labeled_expand(HPKE_SUITE_ID, schedule.exporter_secret, b"sec", exporter_context,
                          length)


# --- single-shot API (RFC 9180 section 6.1) ------------------------------------------------

@dataclass(frozen=True)
class Sealed:
    """SealBase output (enc, ciphertext) and every intermediate, for vectors."""

    encapsulation: Encapsulation
    schedule: KeySchedule
    ciphertext: bytes

    @property
    def enc(self) -> bytes:
        return self.encapsulation.enc


@dataclass(frozen=True)
class Opened:
    decapsulation: Decapsulation
    schedule: KeySchedule
    plaintext: bytes


def seal_base(recipient_public: bytes, info: bytes, aad: bytes, plaintext: bytes, *,
              ikm_e: bytes, requirement: str | None = None) -> Sealed:
    """SealBase(pkR, info, aad, pt) with the ephemeral key derived from ikm_e."""
    encapsulation = encap(recipient_public, ikm_e, requirement=requirement)
    schedule = key_schedule_base(encapsulation.shared_secret, info)
    return Sealed(encapsulation=encapsulation, schedule=schedule,
                  ciphertext=context_seal(schedule, 0, aad, plaintext))


def open_base(enc: bytes, recipient_private: bytes, info: bytes, aad: bytes,
              ciphertext: bytes, *, requirement: str | None = None) -> Opened:
    """OpenBase(enc, skR, info, aad, ct): point errors for a bad enc, AeadError otherwise."""
    decapsulation = decap(enc, recipient_private, requirement=requirement)
    schedule = key_schedule_base(decapsulation.shared_secret, info)
    plaintext = context_open(schedule, 0, aad, ciphertext, requirement=requirement)
    return Opened(decapsulation=decapsulation, schedule=schedule, plaintext=plaintext)
