"""Cryptographic primitives: the one module every flow goes through.

Thin, typed wrappers over `cryptography` (and PyNaCl for the fxakeys compatibility
profile's SecretBox) that turn library exceptions into the specification's failure
classes, so each rejection says *where* it happened. Sans-I/O: nothing here draws
randomness or reads a clock; callers pass every key and nonce. Each function is pinned
by external known-answer vectors in tests/test_primitives_kat.py.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable

import nacl.exceptions
import nacl.secret
from cryptography.exceptions import InvalidSignature, InvalidTag, UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.argon2 import Argon2id

from keyflows.spec.errors import AeadError, LengthError, ParamsError, PointError, SignatureError

__all__ = [
    "AES256_KEY_LEN",
    "AES_BLOCK_LEN",
    "ED25519_L",
    "ED25519_PUBLIC_KEY_LEN",
    "ED25519_SEED_LEN",
    "ED25519_SIG_LEN",
    "ED25519_SMALL_ORDER",
    "GCM_NONCE_LEN",
    "GCM_TAG_LEN",
    "SHA256_LEN",
    "X25519_KEY_LEN",
    "X25519_LOW_ORDER_U",
    "X25519_P",
    "XSALSA20POLY1305_TAG_LEN",
    "XSALSA20_KEY_LEN",
    "XSALSA20_NONCE_LEN",
    "Aes256Gcm",
    "Ed25519Key",
    "X25519Key",
    "X25519Peer",
    "aes256cbc_decrypt_nopad",
    "aes256cbc_encrypt_nopad",
    "aes256gcm_decrypt",
    "aes256gcm_encrypt",
    "argon2id",
    "check_ed25519_public_key",
    "check_x25519_public_key",
    "constant_time_equal",
    "ed25519_is_canonical",
    "ed25519_public_key",
    "ed25519_sign",
    "ed25519_verify",
    "hkdf_expand",
    "hkdf_extract",
    "hkdf_sha256",
    "hmac_sha256",
    "sha256",
    "sha512",
    "x25519",
    "x25519_is_canonical",
    "x25519_is_low_order",
    "x25519_keypair_exchange",
    "x25519_public_key",
    "x25519_raw",
    "xsalsa20poly1305_decrypt",
    "xsalsa20poly1305_encrypt",
]

X25519_KEY_LEN = 32
ED25519_SEED_LEN = 32
ED25519_PUBLIC_KEY_LEN = 32
ED25519_SIG_LEN = 64
AES256_KEY_LEN = 32
AES_BLOCK_LEN = 16
GCM_NONCE_LEN = 12
GCM_TAG_LEN = 16
SHA256_LEN = 32
XSALSA20_KEY_LEN = 32
XSALSA20_NONCE_LEN = 24
XSALSA20POLY1305_TAG_LEN = 16

#: The field prime of Curve25519, 2^255 - 19.
X25519_P = 2**255 - 19

#: u-coordinates (reduced mod p) of the points of order 1, 2, 4 and 8 on Curve25519 and
#: its twist: DH with any of them yields the all-zero secret for every clamped scalar.
X25519_LOW_ORDER_U: frozenset[int] = frozenset({
    0,
    1,
    X25519_P - 1,
    325606250916557431795983626356110631294008115727848805560023387167927233504,
    39382357235489614581723060781553021112529911719440698176882885853963445705823,
})

_HKDF_SHA256_MAX_LEN = 255 * SHA256_LEN
_ZERO_SALT = bytes(SHA256_LEN)
_U_MASK = (1 << 255) - 1
_A24 = 121665


def _require_len(value: bytes, length: int, what: str, requirement: str | None = None) -> None:
    if len(value) != length:
        raise LengthError(f"{what} must be {length} bytes, got {len(value)}",
                          requirement=requirement)


# --- hashes and MACs -------------------------------------------------------------------


def sha256(data: bytes) -> bytes:
    """SHA-256 (FIPS 180-4)."""
    return hashlib.sha256(data).digest()


def sha512(data: bytes) -> bytes:
    """SHA-512 (FIPS 180-4)."""
    return hashlib.sha512(data).digest()


#: The SHA-256 constructor, as the digest argument of the standard library's HMAC: given
#: the constructor rather than the name "sha256", it is not looked up by name per call.
_SHA256 = hashlib.sha256


def _stdlib_hmac_sha256(key: bytes, data: bytes) -> bytes:
    """HMAC-SHA-256 (RFC 2104) through the standard library's one-shot hmac.digest."""
    return hmac.digest(key, data, _SHA256)


def _select_hmac_sha256() -> Callable[[bytes, bytes], bytes]:
    """HMAC-SHA-256 on the C object hmac.new itself runs on (CPython's OpenSSL binding),
    without hmac.HMAC's Python layer and without the one-shot hmac.digest, which OpenSSL 3
    serves by fetching the MAC and the digest by name on every call: the per-recipient key
    schedules of the envelope flow make five HMACs per device, and this nearly halves
    their cost. The same function (the tests hold both to RFC 4231); hmac.digest on a
    Python whose binding lacks it."""
    try:
        from _hashlib import hmac_new
    except ImportError:
        return _stdlib_hmac_sha256

    def hmac_sha256(key: bytes, data: bytes) -> bytes:
        """HMAC-SHA-256 (RFC 2104)."""
        return hmac_new(key, data, _SHA256).digest()

    return hmac_sha256


#: HMAC-SHA-256 (RFC 2104): hmac_sha256(key, data) -> 32 bytes.
hmac_sha256 = _select_hmac_sha256()


def constant_time_equal(a: bytes, b: bytes) -> bool:
    """Compare secrets (MACs, tokens) without leaking where they first differ."""
    return hmac.compare_digest(a, b)


# --- HKDF (RFC 5869) -------------------------------------------------------------------


def hkdf_extract(salt: bytes, ikm: bytes) -> bytes:
    """HKDF-Extract with SHA-256; an empty salt means HashLen zero bytes (RFC 5869 2.2)."""
    return hmac_sha256(salt if salt else _ZERO_SALT, ikm)


def hkdf_expand(prk: bytes, info: bytes, length: int) -> bytes:
    """HKDF-Expand with SHA-256; `length` must be 1..255*32 (RFC 5869 2.3)."""
    if not 1 <= length <= _HKDF_SHA256_MAX_LEN:
        raise ParamsError(f"HKDF-SHA256 output length must be 1..{_HKDF_SHA256_MAX_LEN}, "
                          f"got {length}")
    # T(i) = HMAC(PRK, T(i-1) || info || i), on the standard library's one-shot HMAC: the
    # per-recipient key schedules of the envelope flow call this many times per message.
    if length <= SHA256_LEN:
        return hmac_sha256(prk, info + b"\x01")[:length]
    blocks: list[bytes] = []
    previous = b""
    for counter in range(1, -(-length // SHA256_LEN) + 1):
        previous = hmac_sha256(prk, previous + info + bytes([counter]))
        blocks.append(previous)
    return b"".join(blocks)[:length]


def hkdf_sha256(ikm: bytes, salt: bytes, info: bytes, length: int) -> bytes:
    """HKDF-SHA256 = Expand(Extract(salt, ikm), info, length)."""
    return hkdf_expand(hkdf_extract(salt, ikm), info, length)


# --- X25519 (RFC 7748) -----------------------------------------------------------------


def x25519_is_canonical(public_key: bytes) -> bool:
    """True iff the 32-byte encoding is the unique one: top bit clear and u < p.

    RFC 7748 tells receivers to mask the top bit and accept u >= p, so one point has
    several encodings; v1 accepts only the canonical one so every key has one byte form.
    """
    if len(public_key) != X25519_KEY_LEN:
        return False
    u = int.from_bytes(public_key, "little")
    return u >> 255 == 0 and u < X25519_P


def x25519_is_low_order(public_key: bytes) -> bool:
    """True iff the point decodes (top bit masked, reduced mod p) to a low-order u.

    DH with a low-order point gives a secret the peer can predict (all zero), so such
    keys are rejected before use. A value of the wrong length is no u-coordinate at all
    and answers False; check_x25519_public_key reports it as a LengthError.
    """
    if len(public_key) != X25519_KEY_LEN:
        return False
    u = (int.from_bytes(public_key, "little") & _U_MASK) % X25519_P
    return u in X25519_LOW_ORDER_U


def check_x25519_public_key(public_key: bytes, *, requirement: str | None = None) -> None:
    """Reject a peer's X25519 public key that is mis-sized, non-canonical or low order."""
    _require_len(public_key, X25519_KEY_LEN, "X25519 public key", requirement)
    if not x25519_is_canonical(public_key):
        raise PointError("X25519 public key is not canonically encoded",
                         requirement=requirement)
    if x25519_is_low_order(public_key):
        raise PointError("X25519 public key is of low order", requirement=requirement)


def x25519_public_key(private_key: bytes) -> bytes:
    """X25519(k, 9): the public key of a 32-byte private key (clamped as RFC 7748 says)."""
    return X25519Key(private_key).public


def x25519_raw(private_key: bytes, public_key: bytes) -> bytes:
    """The bare RFC 7748 X25519 function: no checks, may return 32 zero bytes.

    Pure Python (Montgomery ladder, RFC 7748 section 5) because `cryptography` refuses
    all-zero results and so cannot reproduce the low-order vectors. Not constant time:
    for known-answer and low-order tests only; protocol code calls x25519().
    """
    _require_len(private_key, X25519_KEY_LEN, "X25519 private key")
    _require_len(public_key, X25519_KEY_LEN, "X25519 public key")
    scalar = bytearray(private_key)
    scalar[0] &= 248
    scalar[31] &= 127
    scalar[31] |= 64
    k = int.from_bytes(scalar, "little")
    p = X25519_P
    x1 = int.from_bytes(public_key, "little") & _U_MASK
    x2, z2, x3, z3 = 1, 0, x1, 1
    swap = 0
    for t in reversed(range(255)):
        bit = (k >> t) & 1
        if swap ^ bit:
            x2, x3 = x3, x2
            z2, z3 = z3, z2
        swap = bit
        a = (x2 + z2) % p
        aa = a * a % p
        b = (x2 - z2) % p
        bb = b * b % p
        e = (aa - bb) % p
        c = (x3 + z3) % p
        d = (x3 - z3) % p
        da = d * a % p
        cb = c * b % p
        x3 = (da + cb) * (da + cb) % p
        z3 = x1 * (da - cb) * (da - cb) % p
        x2 = aa * bb % p
        z2 = e * (aa + _A24 * e) % p
    if swap:
        x2, z2 = x3, z3
    return (x2 * pow(z2, p - 2, p) % p).to_bytes(X25519_KEY_LEN, "little")


def x25519(private_key: bytes, public_key: bytes, *, requirement: str | None = None) -> bytes:
    """Checked X25519 DH: rejects a mis-sized private key, and a peer key that is
    mis-sized, non-canonical or of low order (X25519Key and X25519Peer make the checks)."""
    return X25519Key(private_key, requirement=requirement).exchange(public_key,
                                                                    requirement=requirement)


class X25519Peer:
    """A peer's X25519 public key, checked (canonical, not of low order) once for the
    several exchanges a sender makes with it (an ephemeral DH and a static one)."""

    __slots__ = ("key", "public")

    def __init__(self, public_key: bytes, *, requirement: str | None = None) -> None:
        check_x25519_public_key(public_key, requirement=requirement)
        self.public = public_key
        self.key = X25519PublicKey.from_public_bytes(public_key)


class X25519Key:
    """An X25519 private key, its length checked once, for one or many exchanges (a
    sender's static key and each ephemeral key of a multi-recipient envelope): the
    backend computes the public key when the object is made, so each exchange costs one
    scalar multiplication.

    No exchange here can give the all-zero secret that RFC 7748 section 6.1 and RFC 9180
    section 7.1.4 tell a receiver to refuse: the clamped scalar is 8 times a number below
    the order of either prime-order subgroup (of the curve and of its twist), so X25519
    is zero exactly for the u of a point of order dividing 8 -- the X25519_LOW_ORDER_U
    that every peer key is refused for first. tests/test_primitives_kat.py checks it on
    every listed u and on Wycheproof's cases (a zero secret exactly for the listed u), and
    pins that the backend would refuse a zero secret anyway (a ValueError)."""

    __slots__ = ("_key", "private", "public")

    def __init__(self, private_key: bytes, *, requirement: str | None = None) -> None:
        _require_len(private_key, X25519_KEY_LEN, "X25519 private key", requirement)
        self._key = X25519PrivateKey.from_private_bytes(private_key)
        self.private = private_key
        self.public = self._key.public_key().public_bytes_raw()

    def exchange(self, peer_public_key: bytes | X25519Peer, *,
                 requirement: str | None = None) -> bytes:
        """Checked X25519(k, peer), as x25519() does; an X25519Peer was checked once."""
        if not isinstance(peer_public_key, X25519Peer):
            peer_public_key = X25519Peer(peer_public_key, requirement=requirement)
        return self._key.exchange(peer_public_key.key)


def x25519_keypair_exchange(private_key: bytes, peer_public_key: bytes, *,
                            requirement: str | None = None) -> tuple[bytes, bytes]:
    """(X25519(k, 9), checked X25519(k, peer)): an ephemeral key's public half and its DH.

    Same checks and results as x25519_public_key and x25519 together, but one private-key
    object serves both: the backend computes the public key when the object is made, so a
    sender encrypting to many devices pays two scalar multiplications per recipient, not
    three.
    """
    key = X25519Key(private_key, requirement=requirement)
    return key.public, key.exchange(peer_public_key, requirement=requirement)


# --- Ed25519 (RFC 8032), verified strictly -------------------------------------------

#: The order of the Ed25519 base point, L = 2^252 + 27742317777372353535851937790883648493.
ED25519_L = 2**252 + 27742317777372353535851937790883648493

#: The canonical encodings of the eight points whose order divides 8 (the identity, the
#: point of order 2, two of order 4, four of order 8). A public key or an R among them
#: makes a signature that "verifies" for many messages, so the strict rule refuses them.
#: tests/test_primitives_kat.py checks that each decodes to a point P with [8]P = O and
#: that they are eight distinct points; libsodium's blocklist (ed25519_ref10.c) lists
#: the same points.
ED25519_SMALL_ORDER: frozenset[bytes] = frozenset(bytes.fromhex(h) for h in (
    "0100000000000000000000000000000000000000000000000000000000000000",  # order 1
    "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",  # order 2
    "0000000000000000000000000000000000000000000000000000000000000000",  # order 4
    "0000000000000000000000000000000000000000000000000000000000000080",  # order 4
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",  # order 8
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa",  # order 8
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",  # order 8
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85",  # order 8
))

_ED25519_P = 2**255 - 19
_ED25519_D = (-121665 * pow(121666, _ED25519_P - 2, _ED25519_P)) % _ED25519_P
_Y_MASK = (1 << 255) - 1


def ed25519_is_canonical(encoding: bytes) -> bool:
    """True iff 32 bytes are the one encoding of a point of the curve (RFC 8032 5.1.3).

    RFC 8032 decoding accepts y >= p and a set sign bit with x = 0, so some points have
    two encodings; the strict rule accepts only y < p, a clear sign bit when x = 0, and a
    y for which x exists.
    """
    if len(encoding) != ED25519_PUBLIC_KEY_LEN:
        return False
    value = int.from_bytes(encoding, "little")
    y, sign = value & _Y_MASK, value >> 255
    p = _ED25519_P
    if y >= p:
        return False
    # The curve gives x^2 = (y^2 - 1) / (d y^2 + 1); an x exists iff that is zero or a
    # square mod p (Euler's criterion), and x = 0 has only the encoding with sign 0.
    x2 = (y * y - 1) * pow(_ED25519_D * y * y + 1, p - 2, p) % p
    if x2 == 0:
        return sign == 0
    return pow(x2, (p - 1) // 2, p) == 1


def check_ed25519_public_key(public_key: bytes, *, requirement: str | None = None) -> None:
    """The key checks of the strict rule: 32 bytes, canonical, on the curve, not small order."""
    _require_len(public_key, ED25519_PUBLIC_KEY_LEN, "Ed25519 public key", requirement)
    if not ed25519_is_canonical(public_key):
        raise PointError("Ed25519 public key is not the canonical encoding of a curve point",
                         requirement=requirement)
    if public_key in ED25519_SMALL_ORDER:
        raise PointError("Ed25519 public key is of small order", requirement=requirement)


class Ed25519Key:
    """An Ed25519 private key (its 32-byte seed), its length checked once, for one or many
    signatures: the backend computes the public key A when the object is made."""

    __slots__ = ("_key", "public")

    def __init__(self, seed: bytes) -> None:
        _require_len(seed, ED25519_SEED_LEN, "Ed25519 seed")
        self._key = Ed25519PrivateKey.from_private_bytes(seed)
        self.public = self._key.public_key().public_bytes_raw()

    def sign(self, message: bytes) -> bytes:
        """Pure Ed25519 signature (deterministic, 64 bytes)."""
        return self._key.sign(message)


def ed25519_public_key(seed: bytes) -> bytes:
    """The public key A of a 32-byte Ed25519 private key (seed)."""
    return Ed25519Key(seed).public


def ed25519_sign(seed: bytes, message: bytes) -> bytes:
    """Pure Ed25519 signature (deterministic, 64 bytes)."""
    return Ed25519Key(seed).sign(message)


def ed25519_verify(public_key: bytes, message: bytes, signature: bytes, *,
                   requirement: str | None = None) -> None:
    """Verify a pure Ed25519 signature by the strict rule; raise unless it is valid.

    In order: lengths (LengthError); the public key A canonical, on the curve and not of
    small order (PointError); R not of small order (SignatureError); then S < L, R
    canonical and the cofactorless equation [S]B = R + [k]A, k = SHA-512(R || A || M)
    mod L (SignatureError). Those three are OpenSSL's through `cryptography`: it refuses
    S >= L, and it compares the encoding of [S]B - [k]A with R byte for byte, so a
    non-canonical R never verifies and a canonical one verifies iff the points are equal.
    libsodium (and so PyNaCl) gives the same verdict on every input;
    tests/test_primitives_kat.py checks that on Wycheproof and the speccheck cases (cases
    6 to 9 are S >= L and non-canonical R, each satisfying the equation mod L).
    """
    _require_len(signature, ED25519_SIG_LEN, "Ed25519 signature", requirement)
    check_ed25519_public_key(public_key, requirement=requirement)  # its length first
    if signature[:32] in ED25519_SMALL_ORDER:
        raise SignatureError("Ed25519 signature has a small-order R", requirement=requirement)
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
    except (InvalidSignature, ValueError) as exc:
        raise SignatureError("Ed25519 signature does not verify",
                             requirement=requirement) from exc


# --- AES-256-GCM (NIST SP 800-38D) -----------------------------------------------------


def aes256gcm_encrypt(key: bytes, nonce: bytes, plaintext: bytes, aad: bytes) -> bytes:
    """AES-256-GCM with a 96-bit nonce; returns ciphertext || 16-byte tag."""
    return Aes256Gcm(key).encrypt(nonce, plaintext, aad)


def aes256gcm_decrypt(key: bytes, nonce: bytes, ciphertext: bytes, aad: bytes, *,
                      requirement: str | None = None) -> bytes:
    """Open ciphertext || tag; AeadError if the tag does not authenticate."""
    aead = Aes256Gcm(key, requirement=requirement)
    if len(ciphertext) < GCM_TAG_LEN:
        raise LengthError(f"AES-GCM ciphertext is shorter than its {GCM_TAG_LEN}-byte tag",
                          requirement=requirement)
    return aead.decrypt(nonce, ciphertext, aad, requirement=requirement)


class Aes256Gcm:
    """AES-256-GCM under one key, its length checked once, for one message
    (aes256gcm_encrypt, aes256gcm_decrypt) or many (the envelope payload's STREAM
    chunks): the key schedule is set up once, each call is one seal or open."""

    __slots__ = ("_aead",)

    def __init__(self, key: bytes, *, requirement: str | None = None) -> None:
        _require_len(key, AES256_KEY_LEN, "AES-256 key", requirement)
        self._aead = AESGCM(key)

    def encrypt(self, nonce: bytes, plaintext: bytes | bytearray | memoryview,
                aad: bytes) -> bytes:
        _require_len(nonce, GCM_NONCE_LEN, "GCM nonce")
        return self._aead.encrypt(nonce, plaintext, aad)

    def decrypt(self, nonce: bytes, ciphertext: bytes | bytearray | memoryview, aad: bytes, *,
                requirement: str | None = None) -> bytes:
        _require_len(nonce, GCM_NONCE_LEN, "GCM nonce", requirement)
        try:
            return self._aead.decrypt(nonce, ciphertext, aad)
        except InvalidTag as exc:
            raise AeadError("AES-GCM authentication failed", requirement=requirement) from exc


# --- Argon2id (RFC 9106) ---------------------------------------------------------------


def argon2id(password: bytes, salt: bytes, *, iterations: int, memory_kib: int, lanes: int,
             length: int, secret: bytes = b"", ad: bytes = b"") -> bytes:
    """Argon2id version 0x13; parameters outside RFC 9106 section 3.1 raise ParamsError."""
    if len(salt) < 8:
        raise ParamsError(f"Argon2id salt must be at least 8 bytes, got {len(salt)}")
    if not 1 <= lanes <= 2**24 - 1:
        raise ParamsError(f"Argon2id lanes must be 1..2^24-1, got {lanes}")
    if not 8 * lanes <= memory_kib <= 2**32 - 1:
        raise ParamsError(f"Argon2id memory must be 8*lanes..2^32-1 KiB, got {memory_kib}")
    if not 1 <= iterations <= 2**32 - 1:
        raise ParamsError(f"Argon2id iterations must be 1..2^32-1, got {iterations}")
    if not 4 <= length <= 2**32 - 1:
        raise ParamsError(f"Argon2id output length must be 4..2^32-1, got {length}")
    try:
        kdf = Argon2id(salt=salt, length=length, iterations=iterations, lanes=lanes,
                       memory_cost=memory_kib, ad=ad or None, secret=secret or None)
        return kdf.derive(password)
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise ParamsError(f"Argon2id rejected its parameters: {exc}") from exc


# --- XSalsa20-Poly1305 (NaCl secretbox; fxakeys compatibility profile only) --------------


def xsalsa20poly1305_encrypt(key: bytes, nonce24: bytes, plaintext: bytes) -> bytes:
    """NaCl crypto_secretbox: returns the 16-byte Poly1305 tag || ciphertext (no nonce)."""
    _require_len(key, XSALSA20_KEY_LEN, "SecretBox key")
    _require_len(nonce24, XSALSA20_NONCE_LEN, "SecretBox nonce")
    return bytes(nacl.secret.SecretBox(key).encrypt(plaintext, nonce24).ciphertext)


def xsalsa20poly1305_decrypt(key: bytes, nonce24: bytes, box: bytes, *,
                             requirement: str | None = None) -> bytes:
    """Open a NaCl secretbox (tag || ciphertext); AeadError if it does not authenticate."""
    _require_len(key, XSALSA20_KEY_LEN, "SecretBox key", requirement)
    _require_len(nonce24, XSALSA20_NONCE_LEN, "SecretBox nonce", requirement)
    if len(box) < XSALSA20POLY1305_TAG_LEN:
        raise LengthError("SecretBox is shorter than its 16-byte tag", requirement=requirement)
    try:
        return bytes(nacl.secret.SecretBox(key).decrypt(box, nonce24))
    except nacl.exceptions.CryptoError as exc:
        raise AeadError("SecretBox authentication failed", requirement=requirement) from exc


# --- AES-256-CBC without padding (mute compatibility profile only) ---------------------


def _check_cbc(key: bytes, iv: bytes, data: bytes) -> None:
    _require_len(key, AES256_KEY_LEN, "AES-256 key")
    _require_len(iv, AES_BLOCK_LEN, "CBC IV")
    if len(data) % AES_BLOCK_LEN:
        raise LengthError(f"AES-CBC input must be a multiple of {AES_BLOCK_LEN} bytes, "
                          f"got {len(data)}")


def aes256cbc_encrypt_nopad(key: bytes, iv: bytes, plaintext: bytes) -> bytes:
    """Raw AES-256-CBC over whole blocks (no padding, no integrity: compat only)."""
    _check_cbc(key, iv, plaintext)
    encryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    return encryptor.update(plaintext) + encryptor.finalize()


def aes256cbc_decrypt_nopad(key: bytes, iv: bytes, ciphertext: bytes) -> bytes:
    """Inverse of aes256cbc_encrypt_nopad."""
    _check_cbc(key, iv, ciphertext)
    decryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).decryptor()
    return decryptor.update(ciphertext) + decryptor.finalize()
