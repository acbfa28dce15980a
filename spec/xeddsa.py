"""XEdDSA: Schnorr signatures by an X25519 key (Signal, "The XEdDSA and VXEdDSA Signature
Schemes", revision 1, 2016-10-20, sections 2.3, 3.3 and 3.4).

keyflows uses XEdDSA for one purpose: a keypair record proves possession of its X25519
private key (KP-17), so nobody can publish another user's encryption key under a new name.

- The signer turns its clamped X25519 scalar k into an Edwards key pair (A, a) with the
  sign bit of A forced to 0 (calculate_key_pair), then signs as Ed25519 does except that
  the nonce is r = hash1(a || M || Z) mod q, with Z 64 random bytes.
- A verifier converts the Montgomery u-coordinate to the Edwards point with sign bit 0,
  y = (u - 1) / (u + 1) mod p (convert_mont), and runs Ed25519 verification (RFC 8032
  section 5.1.7) under that public key. So an XEdDSA signature IS an Ed25519 signature
  under convert_mont(u): the verifier is the project's Ed25519 verifier, unchanged.

Sans-I/O: Z is a parameter. Edwards arithmetic goes through libsodium's ed25519 core
(PyNaCl bindings); scalars are reduced here with Python integers.
"""

from __future__ import annotations

import hashlib

import nacl.bindings as sodium

from keyflows.spec import primitives
from keyflows.spec.errors import LengthError, PointError, SignatureError

#: The order q (called L in RFC 8032) of the prime-order subgroup of edwards25519.
GROUP_ORDER = 2**252 + 27742317777372353535851937790883648493
P = primitives.X25519_P
Z_LEN = 64
SIGNATURE_LEN = 64
#: hash_1(X) = SHA-512(2^256 - 1 - 1 as 32 little-endian bytes || X) (XEdDSA section 2.5).
HASH1_PREFIX = b"\xfe" + b"\xff" * 31


def clamp(x25519_private: bytes) -> int:
    """The X25519 scalar of RFC 7748 section 5: clear bits 0-2 and 255, set bit 254."""
    if len(x25519_private) != 32:
        raise LengthError("an X25519 private key is 32 bytes")
    k = bytearray(x25519_private)
    k[0] &= 248
    k[31] &= 127
    k[31] |= 64
    return int.from_bytes(k, "little")


def _base_mult(scalar: int) -> bytes:
    return sodium.crypto_scalarmult_ed25519_base_noclamp(
        (scalar % GROUP_ORDER).to_bytes(32, "little"))


def calculate_key_pair(x25519_private: bytes) -> tuple[bytes, int]:
    """XEdDSA section 2.3: the Edwards public key A (sign bit 0) and scalar a with A = aB."""
    a = clamp(x25519_private) % GROUP_ORDER
    public = _base_mult(a)
    if public[31] & 0x80:
        a = (GROUP_ORDER - a) % GROUP_ORDER
        public = _base_mult(a)
    return public, a


def convert_mont(u: bytes) -> bytes:
    """XEdDSA section 2.2: the Edwards y of a Montgomery u, encoded with sign bit 0.

    u is masked to 255 bits first; u = p - 1 (where u + 1 = 0) has no image and is
    refused, as is every other low-order u, by the caller's point check (KP-5)."""
    if len(u) != 32:
        raise LengthError("an X25519 public key is 32 bytes")
    value = (int.from_bytes(u, "little") & ((1 << 255) - 1)) % P
    if (value + 1) % P == 0:
        raise SignatureError("u = -1 has no Edwards image")
    y = (value - 1) * pow(value + 1, P - 2, P) % P
    return y.to_bytes(32, "little")


def sign(x25519_private: bytes, message: bytes, z: bytes) -> bytes:
    """XEdDSA section 3.3: R || s, with r = hash1(a || M || Z) mod q."""
    if len(z) != Z_LEN:
        raise LengthError(f"XEdDSA Z must be {Z_LEN} bytes")
    public, a = calculate_key_pair(x25519_private)
    a_bytes = a.to_bytes(32, "little")
    r = int.from_bytes(hashlib.sha512(HASH1_PREFIX + a_bytes + message + z).digest(),
                       "little") % GROUP_ORDER
    big_r = _base_mult(r)
    h = int.from_bytes(hashlib.sha512(big_r + public + message).digest(),
                       "little") % GROUP_ORDER
    s = (r + h * a) % GROUP_ORDER
    return big_r + s.to_bytes(32, "little")


def verify(x25519_public: bytes, message: bytes, signature: bytes, *,
           requirement: str | None = None) -> None:
    """XEdDSA section 3.4, as Ed25519 verification under convert_mont(u); raise
    SignatureError unless it verifies (LengthError for a mis-sized signature, from the
    Ed25519 verification's own length check)."""
    try:
        edwards = convert_mont(x25519_public)
    except SignatureError:
        raise SignatureError("XEdDSA signature does not verify",
                             requirement=requirement) from None
    try:
        primitives.ed25519_verify(edwards, message, signature, requirement=requirement)
    except (SignatureError, PointError):  # a u on the twist has no Edwards point
        raise SignatureError("XEdDSA signature does not verify",
                             requirement=requirement) from None
