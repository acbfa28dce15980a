"""HPKE (RFC 9180): the sealed box of the session-challenge flow and the per-recipient key
schedule of the envelope flow.

Suites (RFC 9180 section 7 registry values; KEM 0x647a from draft-ietf-hpke-pq):
  KEM  0x0020  DHKEM(X25519, HKDF-SHA256)    Nsecret = Nenc = Npk = Nsk = 32
  KEM  0x647a  MLKEM768-X25519               Nsecret = 32, Nenc = 1120, Npk = 1216
  KDF  0x0001  HKDF-SHA256                   Nh = 32
  AEAD 0x0002  AES-256-GCM                   Nk = 32, Nn = 12, Nt = 16
  modes 0x00 base, 0x01 psk, 0x02 auth (auth only with DHKEM: RFC 9180 section 5.1.3)

Written from the RFC over keyflows.spec.primitives rather than taken from a library so
that the sender's ephemeral randomness is injectable: DHKEM's Encap derives the ephemeral
key with DeriveKeyPair(ikmE) (RFC 9180 section 7.1.3), and MLKEM768-X25519's encapsulation
takes 64 bytes of randomness (ML-KEM's m, then the X25519 ephemeral scalar), exactly as the
published test vectors do, so every intermediate of a sealed value can be written into a
vector. Pinned by the CFRG known answers (RFC 9180 A.1 base, PSK and Auth modes; the
draft-ietf-hpke-pq vectors for 0x647a; tests/kat/README.md) and cross-checked against an
independent implementation (pyca/cryptography's HPKE, base mode) in tests/test_hpke_kat.py.

MLKEM768-X25519 (draft-ietf-hpke-pq, the X-Wing combiner of draft-connolly-cfrg-xwing-kem):
  enc = ct_PQ (1088) || ct_T (32); pk = ek_PQ (1184) || ek_T (32)
  ss  = SHA3-256(ss_PQ || ss_T || ct_T || ek_T || "\\.//^\\")

The private key is held as its two components (the 64-byte ML-KEM seed d || z and the X25519
scalar), which is what a keypair or device record seals; the draft's 32-byte seed and its
SHAKE256 expansion are implemented for the known answers (expand_hybrid_seed).

Deviation from RFC 9180, stricter only: Decap rejects an X25519 `enc` (or ct_T) that is not
the canonical encoding of a point (top bit set, or u >= 2^255 - 19) or that is of low order,
before the DH (failure class point), as every v1 party does for X25519 keys (KP-5). RFC 9180
only requires rejecting the all-zero DH output, which that refusal implies: X25519 gives the
zero output exactly for the low-order u (primitives.X25519Key says why).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from keyflows.spec import mlkem, primitives
from keyflows.spec.drbg import RandomSource
from keyflows.spec.errors import LengthError, ParamsError

KEM_ID = 0x0020
KDF_ID = 0x0001
AEAD_ID = 0x0002
MODE_BASE = 0x00
MODE_PSK = 0x01
MODE_AUTH = 0x02
MODE_AUTH_PSK = 0x03
MIN_PSK_LEN = 32  # RFC 9180 section 9.5: a PSK MUST have at least 32 bytes of entropy

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
    Expand(prk, I2OSP(L, 2) || "HPKE-v1" || suite_id || label || info, L).

    L is checked once, by Expand: HKDF-SHA256 refuses any L outside 1..255*Nh = 8160
    (ParamsError), a range inside the 1..65535 that I2OSP(L, 2) can encode."""
    return primitives.hkdf_expand(prk, _labeled_info(suite_id, label, info, length), length)


def _labeled_info(suite_id: bytes, label: bytes, info: bytes, length: int) -> bytes:
    """LabeledExpand's info: I2OSP(L, 2) || "HPKE-v1" || suite_id || label || info. The
    mask changes no L that Expand accepts; for any other L it only keeps I2OSP from
    raising before Expand refuses that L."""
    return (length & 0xFFFF).to_bytes(2, "big") + _VERSION_LABEL + suite_id + label + info


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


#: The constant parts of ExtractAndExpand's two labelled inputs, built once: the Extract
#: input "HPKE-v1" || suite_id || "eae_prk" before dh, and the Expand info I2OSP(Nsecret, 2)
#: || "HPKE-v1" || suite_id || "shared_secret" before kem_context.
_EAE_PRK_PREFIX = _VERSION_LABEL + KEM_SUITE_ID + b"eae_prk"
_SHARED_SECRET_PREFIX = (N_SECRET.to_bytes(2, "big") + _VERSION_LABEL + KEM_SUITE_ID
                         + b"shared_secret")


def extract_and_expand(dh: bytes, kem_context: bytes) -> bytes:
    """ExtractAndExpand(dh, kem_context): the KEM shared secret, = LabeledExpand(
    LabeledExtract("", "eae_prk", dh), "shared_secret", kem_context, Nsecret), with the
    labels' constant bytes built once (a sender pays this once per recipient)."""
    eae_prk = primitives.hkdf_extract(b"", _EAE_PRK_PREFIX + dh)
    return primitives.hkdf_expand(eae_prk, _SHARED_SECRET_PREFIX + kem_context, N_SECRET)


@dataclass(frozen=True, slots=True)
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

    pkR is checked (canonical, not low order) like every v1 X25519 key, by the checked DH
    (primitives.x25519), so the DH output is never all zero (RFC 9180 section 7.1.4).
    """
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
    """Decap(enc, skR). The checked DH (primitives.X25519Key) rejects a mis-sized
    (length), non-canonical or low-order (point) enc before it computes, so the output is
    never all zero; pkR is the key object's public half (no second key set-up)."""
    recipient = primitives.X25519Key(recipient_private, requirement=requirement)
    dh = recipient.exchange(enc, requirement=requirement)
    kem_context = enc + recipient.public
    return Decapsulation(dh=dh, kem_context=kem_context,
                         shared_secret=extract_and_expand(dh, kem_context))


# --- key schedule (RFC 9180 section 5.1), mode_base ----------------------------------------

@dataclass(frozen=True, slots=True)
class KeySchedule:
    psk_id_hash: bytes
    info_hash: bytes
    key_schedule_context: bytes
    secret: bytes
    key: bytes
    base_nonce: bytes
    suite_id: bytes = HPKE_SUITE_ID

    @property
    def exporter_secret(self) -> bytes:
        """LabeledExpand(secret, "exp", key_schedule_context, Nh), derived on demand: a
        single-shot seal never exports, and a sender sealing to many recipients saves
        one HMAC per recipient."""
        return labeled_expand(self.suite_id, self.secret, b"exp", self.key_schedule_context,
                              N_H)


def key_schedule_base(shared_secret: bytes, info: bytes, *,
                      suite_id: bytes = HPKE_SUITE_ID) -> KeySchedule:
    """KeySchedule(mode_base, shared_secret, info, psk = "", psk_id = ""). Base mode takes
    no PSK inputs, so VerifyPSKInputs has nothing to verify and psk_id_hash is the hash of
    the empty psk_id."""
    return key_schedule_from_hashes(
        MODE_BASE, shared_secret, b"", psk_id_hash=psk_id_hash(b"", suite_id),
        info_hash=info_hash(info, suite_id), suite_id=suite_id)


def key_schedule(mode: int, shared_secret: bytes, info: bytes, psk: bytes = b"",
                 psk_id: bytes = b"", *, suite_id: bytes = HPKE_SUITE_ID,
                 key_length: int = N_K) -> KeySchedule:
    """KeySchedule(mode, shared_secret, info, psk, psk_id) of RFC 9180 section 5.1, with
    VerifyPSKInputs (section 5.1.1): a PSK in the PSK modes only, at least 32 bytes, with
    a non-empty psk_id. `suite_id` and `key_length` (Nk) select the AEAD; the v1 suites
    use AES-256-GCM (the other values serve the known-answer tests)."""
    verify_psk_inputs(mode, psk, psk_id)
    return key_schedule_from_hashes(
        mode, shared_secret, psk, psk_id_hash=psk_id_hash(psk_id, suite_id),
        info_hash=info_hash(info, suite_id), suite_id=suite_id, key_length=key_length)


def psk_id_hash(psk_id: bytes, suite_id: bytes = HPKE_SUITE_ID) -> bytes:
    """LabeledExtract("", "psk_id_hash", psk_id): the same for every message that shares
    the psk_id, so a caller sealing to many recipients computes it once."""
    return labeled_extract(suite_id, b"", b"psk_id_hash", psk_id)


def info_hash(info: bytes, suite_id: bytes = HPKE_SUITE_ID) -> bytes:
    """LabeledExtract("", "info_hash", info), likewise shareable."""
    return labeled_extract(suite_id, b"", b"info_hash", info)


def key_schedule_from_hashes(mode: int, shared_secret: bytes, psk: bytes, *,
                             psk_id_hash: bytes, info_hash: bytes,
                             suite_id: bytes = HPKE_SUITE_ID,
                             key_length: int = N_K) -> KeySchedule:
    """The rest of KeySchedule once psk_id_hash and info_hash are known (inputs verified)."""
    return ScheduleContext(mode, psk_id_hash=psk_id_hash, info_hash=info_hash,
                           suite_id=suite_id, key_length=key_length).schedule(shared_secret, psk)


class ScheduleContext:
    """What KeySchedule (RFC 9180 section 5.1) derives from everything but the shared
    secret and the psk: for one mode, psk_id_hash and info_hash, the key_schedule_context
    and the labelled inputs of the three KDF calls that remain --

      secret     = LabeledExtract(shared_secret, "secret", psk)
      key        = LabeledExpand(secret, "key", key_schedule_context, Nk)
      base_nonce = LabeledExpand(secret, "base_nonce", key_schedule_context, Nn)

    -- are built once, so a sender sealing one message to many recipients pays three HMACs
    per recipient for its schedule and no re-assembly of the same bytes."""

    def __init__(self, mode: int, *, psk_id_hash: bytes, info_hash: bytes,
                 suite_id: bytes = HPKE_SUITE_ID, key_length: int = N_K) -> None:
        self.mode = mode
        self.psk_id_hash = psk_id_hash
        self.info_hash = info_hash
        self.suite_id = suite_id
        self.key_length = key_length
        self.context = bytes([mode]) + psk_id_hash + info_hash
        self._secret_prefix = _VERSION_LABEL + suite_id + b"secret"
        self._key_info = _labeled_info(suite_id, b"key", self.context, key_length)
        self._nonce_info = _labeled_info(suite_id, b"base_nonce", self.context, N_N)

    def schedule(self, shared_secret: bytes, psk: bytes) -> KeySchedule:
        """The KeySchedule of one shared secret (and psk, empty outside the PSK modes)."""
        secret = primitives.hkdf_extract(shared_secret, self._secret_prefix + psk)
        return KeySchedule(
            psk_id_hash=self.psk_id_hash,
            info_hash=self.info_hash,
            key_schedule_context=self.context,
            secret=secret,
            key=primitives.hkdf_expand(secret, self._key_info, self.key_length),
            base_nonce=primitives.hkdf_expand(secret, self._nonce_info, N_N),
            suite_id=self.suite_id,
        )


def verify_psk_inputs(mode: int, psk: bytes, psk_id: bytes) -> None:
    if mode not in (MODE_BASE, MODE_PSK, MODE_AUTH, MODE_AUTH_PSK):
        raise ParamsError(f"unknown HPKE mode {mode}")
    with_psk = mode in (MODE_PSK, MODE_AUTH_PSK)
    if bool(psk) != bool(psk_id):
        raise ParamsError("HPKE psk and psk_id must be given together")
    if with_psk != bool(psk):
        raise ParamsError("HPKE psk given in a mode without one, or missing in a PSK mode")
    if psk and len(psk) < MIN_PSK_LEN:
        raise ParamsError(f"an HPKE psk must carry at least {MIN_PSK_LEN} bytes")


def compute_nonce(base_nonce: bytes, seq: int) -> bytes:
    """ComputeNonce(seq) = base_nonce XOR I2OSP(seq, Nn)."""
    if not 0 <= seq <= _MAX_SEQ:
        raise ParamsError("HPKE message limit reached")
    if seq == 0:  # every single-shot seal and open
        return base_nonce
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


def seal_once(schedule: KeySchedule, aad: bytes, plaintext: bytes) -> bytes:
    """ContextS.Seal of a single-shot context's only message (RFC 9180 section 6.1): its
    seq is 0, so its nonce is base_nonce (ComputeNonce(0))."""
    return primitives.aes256gcm_encrypt(schedule.key, schedule.base_nonce, plaintext, aad)


def open_once(schedule: KeySchedule, aad: bytes, ciphertext: bytes, *,
              requirement: str | None = None) -> bytes:
    """ContextR.Open of a single-shot context's only message (seq 0, nonce base_nonce)."""
    return primitives.aes256gcm_decrypt(schedule.key, schedule.base_nonce, ciphertext, aad,
                                        requirement=requirement)


def context_export(schedule: KeySchedule, exporter_context: bytes, length: int) -> bytes:
    """Context.Export(exporter_context, L) (RFC 9180 section 5.3)."""
    return labeled_expand(schedule.suite_id, schedule.exporter_secret, b"sec", exporter_context,
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
                  ciphertext=seal_once(schedule, aad, plaintext))


def open_base(enc: bytes, recipient_private: bytes, info: bytes, aad: bytes,
              ciphertext: bytes, *, requirement: str | None = None) -> Opened:
    """OpenBase(enc, skR, info, aad, ct): point errors for a bad enc, AeadError otherwise."""
    decapsulation = decap(enc, recipient_private, requirement=requirement)
    schedule = key_schedule_base(decapsulation.shared_secret, info)
    plaintext = open_once(schedule, aad, ciphertext, requirement=requirement)
    return Opened(decapsulation=decapsulation, schedule=schedule, plaintext=plaintext)


# --- DHKEM AuthEncap / AuthDecap (RFC 9180 section 4.1), mode_auth -------------------------

def auth_encap(recipient_public: bytes, ikm_e: bytes, sender_private: bytes, *,
               requirement: str | None = None) -> Encapsulation:
    """AuthEncap(pkR, skS) with the ephemeral key pair DeriveKeyPair(ikmE)."""
    ephemeral = derive_key_pair(ikm_e)
    return auth_encap_with(recipient_public, primitives.X25519Key(ephemeral.private),
                           primitives.X25519Key(sender_private), ikm_e=ikm_e,
                           requirement=requirement)


def auth_encap_with(recipient_public: bytes, ephemeral: primitives.X25519Key,
                    sender: primitives.X25519Key, *, ikm_e: bytes = b"",
                    requirement: str | None = None) -> Encapsulation:
    """AuthEncap(pkR, skS): dh = DH(skE, pkR) || DH(skS, pkR), kem_context = enc || pkR ||
    pkS. Only the holder of skS -- or of skR, who can compute the same DH(skR, pkS) --
    can produce this shared secret: the sender is authenticated to the recipient, deniably.
    The key objects are made by the caller (GenerateKeyPair for a fresh ephemeral key,
    DeriveKeyPair for a vector's), so a sender's static key is set up once per message."""
    peer = primitives.X25519Peer(recipient_public, requirement=requirement)
    dh = (ephemeral.exchange(peer, requirement=requirement)
          + sender.exchange(peer, requirement=requirement))
    kem_context = ephemeral.public + recipient_public + sender.public
    return Encapsulation(ikm_e=ikm_e, ephemeral_private=ephemeral.private,
                         enc=ephemeral.public, dh=dh, kem_context=kem_context,
                         shared_secret=extract_and_expand(dh, kem_context))


def auth_decap(enc: bytes, recipient_private: bytes, sender_public: bytes, *,
               requirement: str | None = None) -> Decapsulation:
    """AuthDecap(enc, skR, pkS); enc and pkS are checked points (failure class point).
    One key object gives pkR and both exchanges: three scalar multiplications, not five."""
    ephemeral = primitives.X25519Peer(enc, requirement=requirement)
    sender = primitives.X25519Peer(sender_public, requirement=requirement)
    recipient = primitives.X25519Key(recipient_private, requirement=requirement)
    dh = (recipient.exchange(ephemeral, requirement=requirement)
          + recipient.exchange(sender, requirement=requirement))
    kem_context = enc + recipient.public + sender_public
    return Decapsulation(dh=dh, kem_context=kem_context,
                         shared_secret=extract_and_expand(dh, kem_context))


AUTH_SUITE_ID = (b"HPKE" + KEM_ID.to_bytes(2, "big") + KDF_ID.to_bytes(2, "big")
                 + AEAD_ID.to_bytes(2, "big"))


def seal_auth(recipient_public: bytes, info: bytes, aad: bytes, plaintext: bytes, *,
              ikm_e: bytes, sender_private: bytes, requirement: str | None = None) -> Sealed:
    """SealAuth(pkR, info, aad, pt, skS) with the ephemeral key derived from ikm_e."""
    encapsulation = auth_encap(recipient_public, ikm_e, sender_private, requirement=requirement)
    schedule = key_schedule(MODE_AUTH, encapsulation.shared_secret, info)
    return Sealed(encapsulation=encapsulation, schedule=schedule,
                  ciphertext=seal_once(schedule, aad, plaintext))


def open_auth(enc: bytes, recipient_private: bytes, info: bytes, aad: bytes, ciphertext: bytes,
              *, sender_public: bytes, requirement: str | None = None) -> Opened:
    """OpenAuth(enc, skR, info, aad, ct, pkS): point errors, else AeadError on any change
    of enc, info, aad, ciphertext, or a different sender or recipient key."""
    decapsulation = auth_decap(enc, recipient_private, sender_public, requirement=requirement)
    schedule = key_schedule(MODE_AUTH, decapsulation.shared_secret, info)
    plaintext = open_once(schedule, aad, ciphertext, requirement=requirement)
    return Opened(decapsulation=decapsulation, schedule=schedule, plaintext=plaintext)


# --- MLKEM768-X25519 (draft-ietf-hpke-pq; X-Wing's combiner) -------------------------------

HYBRID_KEM_ID = 0x647A
HYBRID_N_ENC = mlkem.CIPHERTEXT_LEN + primitives.X25519_KEY_LEN  # 1120
HYBRID_N_PK = mlkem.ENCAPSULATION_KEY_LEN + primitives.X25519_KEY_LEN  # 1216
HYBRID_N_SEED = 32
HYBRID_N_RANDOM = mlkem.SEED_LEN + primitives.X25519_KEY_LEN  # 64: m || X25519 scalar
#: The combiner label "\\.//^\\" (X-Wing's), 5c2e2f2f5e5c.
HYBRID_LABEL = bytes.fromhex("5c2e2f2f5e5c")
HYBRID_KEM_SUITE_ID = b"KEM" + HYBRID_KEM_ID.to_bytes(2, "big")
#: suite_id of the key schedule with the hybrid KEM, HKDF-SHA256 and AES-256-GCM.
HYBRID_SUITE_ID = (b"HPKE" + HYBRID_KEM_ID.to_bytes(2, "big") + KDF_ID.to_bytes(2, "big")
                   + AEAD_ID.to_bytes(2, "big"))
HYBRID_SUITE_NAME = "MLKEM768-X25519, HKDF-SHA256, AES-256-GCM"


@dataclass(frozen=True)
class HybridPrivateKey:
    """The recipient's private key as its two components."""

    mlkem_seed: bytes  # d || z, 64 bytes (FIPS 203 section 7.1)
    x25519: bytes

    def public_key(self) -> bytes:
        """pk = ek_PQ || ek_T (Npk = 1216)."""
        return (mlkem.public_key_from_seed(self.mlkem_seed)
                + primitives.x25519_public_key(self.x25519))


def split_hybrid_public_key(public: bytes) -> tuple[bytes, bytes]:
    """(ek_PQ, ek_T): the first 1184 bytes and the rest. Each part is checked where it is
    used, ek_T first: a pk of any length but HYBRID_N_PK (1216) leaves an ek_T of other
    than 32 bytes, which its point check refuses (length)."""
    return public[:mlkem.ENCAPSULATION_KEY_LEN], public[mlkem.ENCAPSULATION_KEY_LEN:]


def hybrid_combine(ss_pq: bytes, ss_t: bytes, ct_t: bytes, ek_t: bytes) -> bytes:
    """ss = SHA3-256(ss_PQ || ss_T || ct_T || ek_T || Label)."""
    return hashlib.sha3_256(ss_pq + ss_t + ct_t + ek_t + HYBRID_LABEL).digest()


@dataclass(frozen=True, slots=True)
class HybridEncapsulation:
    """Every value of the hybrid Encaps, for vectors. `mlkem_m` is None when the ML-KEM
    randomness was drawn inside the library (an unrecorded source)."""

    mlkem_m: bytes | None
    ephemeral_private: bytes
    ss_pq: bytes
    ct_pq: bytes
    ss_t: bytes
    ct_t: bytes
    enc: bytes
    shared_secret: bytes


@dataclass(frozen=True)
class HybridDecapsulation:
    ss_pq: bytes
    ss_t: bytes
    shared_secret: bytes


def hybrid_encap(recipient_public: bytes, random: RandomSource, *,
                 peer: primitives.X25519Peer | None = None,
                 requirement: str | None = None) -> HybridEncapsulation:
    """Encaps(pk), drawing m (32 bytes, ML-KEM.Encaps) and then the X25519 ephemeral scalar
    (32 bytes) from `random` -- EncapsDerand(pk, m || scalar) of the draft for a recorded
    source. ek_T must pass the v1 point checks (its length first, so a pk of the wrong
    length is refused here: `peer`, if given, is ek_T already checked) and ek_PQ ML-KEM's
    modulus check."""
    ek_pq, ek_t = split_hybrid_public_key(recipient_public)
    if peer is None or peer.public != ek_t:
        peer = primitives.X25519Peer(ek_t, requirement=requirement)
    ss_pq, ct_pq, m = mlkem.encaps(ek_pq, random, requirement=requirement)
    ephemeral = primitives.X25519Key(random(primitives.X25519_KEY_LEN))
    ss_t = ephemeral.exchange(peer, requirement=requirement)
    ct_t = ephemeral.public
    return HybridEncapsulation(mlkem_m=m, ephemeral_private=ephemeral.private, ss_pq=ss_pq,
                               ct_pq=ct_pq, ss_t=ss_t, ct_t=ct_t, enc=ct_pq + ct_t,
                               shared_secret=hybrid_combine(ss_pq, ss_t, ct_t, ek_t))


def hybrid_decap(enc: bytes, private: HybridPrivateKey, *,
                 requirement: str | None = None) -> HybridDecapsulation:
    """Decaps(sk, enc): enc must be 1120 bytes (length) with ct_T a valid point (point);
    ML-KEM rejects implicitly, so a tampered ct_PQ shows later, as an AEAD failure."""
    if len(enc) != HYBRID_N_ENC:
        raise LengthError(f"an MLKEM768-X25519 enc is {HYBRID_N_ENC} bytes, got {len(enc)}",
                          requirement=requirement)
    ct_pq, ct_t = enc[:mlkem.CIPHERTEXT_LEN], enc[mlkem.CIPHERTEXT_LEN:]
    peer = primitives.X25519Peer(ct_t, requirement=requirement)
    ss_pq = mlkem.decaps(private.mlkem_seed, ct_pq, requirement=requirement)
    # One key object gives ek_T and the exchange: two scalar multiplications, not three.
    key = primitives.X25519Key(private.x25519, requirement=requirement)
    ss_t = key.exchange(peer, requirement=requirement)
    return HybridDecapsulation(ss_pq=ss_pq, ss_t=ss_t,
                               shared_secret=hybrid_combine(ss_pq, ss_t, ct_t, key.public))


def expand_hybrid_seed(seed: bytes) -> HybridPrivateKey:
    """expandKey(seed): SHAKE256(seed, 96) = ML-KEM seed (64) || X25519 scalar (32)."""
    if len(seed) != HYBRID_N_SEED:
        raise LengthError(f"an MLKEM768-X25519 seed is {HYBRID_N_SEED} bytes, got {len(seed)}")
    full = hashlib.shake_256(seed).digest(mlkem.PRIVATE_SEED_LEN + primitives.X25519_KEY_LEN)
    return HybridPrivateKey(mlkem_seed=full[:mlkem.PRIVATE_SEED_LEN],
                            x25519=full[mlkem.PRIVATE_SEED_LEN:])


def derive_hybrid_seed(ikm: bytes) -> bytes:
    """DeriveKeyPair(ikm) of MLKEM768-X25519: SHAKE256.LabeledDerive(ikm, "DeriveKeyPair",
    "", 32) with suite_id = "KEM" || 0x647a."""
    label = b"DeriveKeyPair"
    labeled_ikm = (ikm + _VERSION_LABEL + HYBRID_KEM_SUITE_ID + len(label).to_bytes(2, "big")
                   + label + HYBRID_N_SEED.to_bytes(2, "big"))
    return hashlib.shake_256(labeled_ikm).digest(HYBRID_N_SEED)


@dataclass(frozen=True)
class HybridSealed:
    """Seal output with the hybrid KEM and every intermediate, for vectors."""

    encapsulation: HybridEncapsulation
    schedule: KeySchedule
    ciphertext: bytes

    @property
    def enc(self) -> bytes:
        return self.encapsulation.enc


@dataclass(frozen=True)
class HybridOpened:
    decapsulation: HybridDecapsulation
    schedule: KeySchedule
    plaintext: bytes


def seal_hybrid(recipient_public: bytes, info: bytes, aad: bytes, plaintext: bytes, *,
                random: RandomSource, requirement: str | None = None) -> HybridSealed:
    """SealBase with the hybrid KEM."""
    encapsulation = hybrid_encap(recipient_public, random, requirement=requirement)
    schedule = key_schedule_base(encapsulation.shared_secret, info, suite_id=HYBRID_SUITE_ID)
    return HybridSealed(encapsulation=encapsulation, schedule=schedule,
                        ciphertext=seal_once(schedule, aad, plaintext))


def seal_hybrid_psk(recipient_public: bytes, info: bytes, aad: bytes, plaintext: bytes, *,
                    random: RandomSource, psk: bytes, psk_id: bytes,
                    requirement: str | None = None) -> HybridSealed:
    """SealPSK with the hybrid KEM (HPKE defines no Auth mode for KEMs without AuthEncap:
    draft-ietf-hpke-pq); the PSK inputs are verified (RFC 9180 section 5.1.1)."""
    encapsulation = hybrid_encap(recipient_public, random, requirement=requirement)
    schedule = key_schedule(MODE_PSK, encapsulation.shared_secret, info, psk, psk_id,
                            suite_id=HYBRID_SUITE_ID)
    return HybridSealed(encapsulation=encapsulation, schedule=schedule,
                        ciphertext=seal_once(schedule, aad, plaintext))


def open_hybrid(enc: bytes, private: HybridPrivateKey, info: bytes, aad: bytes,
                ciphertext: bytes, *, psk: bytes = b"", psk_id: bytes = b"",
                requirement: str | None = None) -> HybridOpened:
    """OpenBase / OpenPSK with the hybrid KEM: length and point errors for a bad enc,
    AeadError for anything else that differs (implicit rejection included)."""
    decapsulation = hybrid_decap(enc, private, requirement=requirement)
    mode = MODE_PSK if psk else MODE_BASE
    schedule = key_schedule(mode, decapsulation.shared_secret, info, psk, psk_id,
                            suite_id=HYBRID_SUITE_ID)
    plaintext = open_once(schedule, aad, ciphertext, requirement=requirement)
    return HybridOpened(decapsulation=decapsulation, schedule=schedule, plaintext=plaintext)
