"""ECVRF-EDWARDS25519-SHA512-TAI, the verifiable random function of RFC 9381 (suite 0x03).

The key directory maps each label to a position with it: only the directory's key holder
can compute the position of a label (so the map cannot be enumerated), and anyone with the
public key can check that a position belongs to a label (RFC 9381 section 5).

    prove(sk, alpha)              -> pi (80 bytes: Gamma || c || s)          section 5.1
    proof_to_hash(pi)             -> beta (64 bytes)                         section 5.2
    verify(public, pi, alpha)     -> beta, or ProofError / PointError        section 5.3

Suite parameters (section 5.5): edwards25519 and SHA-512, cofactor 8, cLen = 16,
ptLen = qLen = 32, encode_to_curve by try-and-increment with encode_to_curve_salt =
PK_string (section 5.4.1.1), nonce generation of RFC 8032 (section 5.4.2.2), the secret
scalar and public key of RFC 8032 section 5.1.5. Verification validates the public key
(section 5.4.5: not of small order) and decodes Gamma and s strictly.

The point arithmetic is plain Python over extended coordinates, written for clarity
and for byte-exact vectors, not for speed or constant time: prove() is for vectors,
tests and the reference server; a deployment's directory signs with a constant-time
implementation.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from keyflows.spec.errors import LengthError, PointError, ProofError

SUITE_STRING = b"\x03"
SECRET_KEY_LEN = 32
PUBLIC_KEY_LEN = 32
PROOF_LEN = 80
BETA_LEN = 64
C_LEN = 16
Q_LEN = 32
COFACTOR = 8

_P = 2**255 - 19
ORDER = 2**252 + 27742317777372353535851937790883648493
_D = (-121665 * pow(121666, _P - 2, _P)) % _P
_SQRT_M1 = pow(2, (_P - 1) // 4, _P)

Point = tuple[int, int, int, int]
"""A point in extended twisted Edwards coordinates (X, Y, Z, T), x = X/Z, y = Y/Z."""

IDENTITY: Point = (0, 1, 1, 0)


def _recover_x(y: int, sign: int) -> int | None:
    """RFC 8032 section 5.1.3 steps 2-4: x from y and its sign bit, or None."""
    if y >= _P:
        return None
    x2 = (y * y - 1) * pow(_D * y * y + 1, _P - 2, _P) % _P
    if x2 == 0:
        return None if sign else 0
    x = pow(x2, (_P + 3) // 8, _P)
    if (x * x - x2) % _P:
        x = x * _SQRT_M1 % _P
    if (x * x - x2) % _P:
        return None
    return _P - x if (x & 1) != sign else x


def string_to_point(data: bytes) -> Point | None:
    """RFC 8032 section 5.1.3 decoding (y < p, a square root must exist, no x = 0 with
    the sign bit set); None for a string that is not a point."""
    if len(data) != 32:
        return None
    y = int.from_bytes(data, "little")
    sign, y = y >> 255, y & ((1 << 255) - 1)
    x = _recover_x(y, sign)
    return None if x is None else (x, y, 1, x * y % _P)


def point_to_string(point: Point) -> bytes:
    """RFC 8032 section 5.1.2 encoding."""
    x, y, z, _ = point
    inverse = pow(z, _P - 2, _P)
    x, y = x * inverse % _P, y * inverse % _P
    return (y | ((x & 1) << 255)).to_bytes(32, "little")


def point_add(p: Point, q: Point) -> Point:
    """RFC 8032 section 5.1.4, the complete addition formula."""
    x1, y1, z1, t1 = p
    x2, y2, z2, t2 = q
    a = (y1 - x1) * (y2 - x2) % _P
    b = (y1 + x1) * (y2 + x2) % _P
    c = t1 * 2 * _D * t2 % _P
    d = z1 * 2 * z2 % _P
    e, f, g, h = b - a, d - c, d + c, b + a
    return (e * f % _P, g * h % _P, f * g % _P, e * h % _P)


def point_negate(p: Point) -> Point:
    x, y, z, t = p
    return ((-x) % _P, y, z, (-t) % _P)


def scalar_mult(k: int, p: Point) -> Point:
    """k * p by double-and-add (variable time)."""
    result = IDENTITY
    while k:
        if k & 1:
            result = point_add(result, p)
        p = point_add(p, p)
        k >>= 1
    return result


def is_identity(p: Point) -> bool:
    x, y, z, _ = p
    return x % _P == 0 and (y - z) % _P == 0


_BASE_Y = 4 * pow(5, _P - 2, _P) % _P
_BASE_X = _recover_x(_BASE_Y, 0)
assert _BASE_X is not None
BASE: Point = (_BASE_X, _BASE_Y, 1, _BASE_X * _BASE_Y % _P)


@dataclass(frozen=True)
class Proved:
    """prove()'s output with the intermediates the vectors record."""

    pi: bytes
    beta: bytes
    public_key: bytes
    h_string: bytes
    k: int
    c: int
    s: int


def _sha512(data: bytes) -> bytes:
    return hashlib.sha512(data).digest()


def secret_scalar(sk: bytes) -> tuple[int, bytes]:
    """RFC 8032 section 5.1.5: the clamped scalar x and the hash whose second half seeds
    the nonce."""
    if len(sk) != SECRET_KEY_LEN:
        raise LengthError(f"the VRF secret key must be {SECRET_KEY_LEN} bytes")
    digest = _sha512(sk)
    a = bytearray(digest[:32])
    a[0] &= 248
    a[31] &= 127
    a[31] |= 64
    return int.from_bytes(a, "little"), digest


@dataclass(frozen=True)
class SecretKey:
    """A secret key expanded once (RFC 8032 section 5.1.5): the scalar x, the nonce seed
    (the second half of SHA-512(sk)) and the public key Y = x*B with its encoding. A
    prover that keeps it spares a hash and a scalar multiplication per proof."""

    x: int
    nonce_seed: bytes
    y: Point
    public: bytes


def expand(sk: bytes) -> SecretKey:
    x, digest = secret_scalar(sk)
    y = scalar_mult(x, BASE)
    return SecretKey(x=x, nonce_seed=digest[32:], y=y, public=point_to_string(y))


def public_key(sk: bytes) -> bytes:
    return expand(sk).public


def encode_to_curve(public: bytes, alpha: bytes) -> Point:
    """Section 5.4.1.1, try-and-increment: the first ctr in 0..255 whose hash decodes to a
    point, times the cofactor."""
    for ctr in range(256):
        digest = _sha512(SUITE_STRING + b"\x01" + public + alpha + bytes([ctr]) + b"\x00")
        point = string_to_point(digest[:32])
        if point is not None:
            return scalar_mult(COFACTOR, point)
    raise ProofError("encode_to_curve found no point in 256 tries")  # pragma: no cover


def challenge(*points: Point) -> int:
    """Section 5.4.3: the first cLen bytes of SHA-512 over the five points, little-endian."""
    data = SUITE_STRING + b"\x02" + b"".join(point_to_string(p) for p in points) + b"\x00"
    return int.from_bytes(_sha512(data)[:C_LEN], "little")


def gamma_to_hash(gamma: Point) -> bytes:
    """Section 5.2: beta = SHA-512(suite || 0x03 || cofactor * Gamma || 0x00)."""
    return _sha512(SUITE_STRING + b"\x03" + point_to_string(scalar_mult(COFACTOR, gamma))
                   + b"\x00")


def prove(sk: bytes, alpha: bytes) -> Proved:
    """Section 5.1: the proof of beta = VRF_sk(alpha)."""
    return prove_with(expand(sk), alpha)


def prove_with(key: SecretKey, alpha: bytes) -> Proved:
    """Section 5.1, steps 2-8, with the secret key already expanded (step 1)."""
    x, y, public = key.x, key.y, key.public
    h = encode_to_curve(public, alpha)
    h_string = point_to_string(h)
    gamma = scalar_mult(x, h)
    k = int.from_bytes(_sha512(key.nonce_seed + h_string), "little") % ORDER
    c = challenge(y, h, gamma, scalar_mult(k, BASE), scalar_mult(k, h))
    s = (k + c * x) % ORDER
    pi = point_to_string(gamma) + c.to_bytes(C_LEN, "little") + s.to_bytes(Q_LEN, "little")
    return Proved(pi=pi, beta=gamma_to_hash(gamma), public_key=public, h_string=h_string,
                  k=k, c=c, s=s)


def decode_proof(pi: bytes) -> tuple[Point, int, int]:
    """Section 5.4.4: Gamma a point, c, and s < q."""
    if len(pi) != PROOF_LEN:
        raise LengthError(f"a VRF proof is {PROOF_LEN} bytes, got {len(pi)}")
    gamma = string_to_point(pi[:32])
    if gamma is None:
        raise PointError("the proof's Gamma is not a point")
    c = int.from_bytes(pi[32:32 + C_LEN], "little")
    s = int.from_bytes(pi[32 + C_LEN:], "little")
    if s >= ORDER:
        raise ProofError("the proof's s is not reduced modulo the group order")
    return gamma, c, s


def proof_to_hash(pi: bytes) -> bytes:
    """Section 5.2 (no verification: use verify for a proof from elsewhere)."""
    return gamma_to_hash(decode_proof(pi)[0])


def check_public_key(public: bytes) -> Point:
    """Section 5.4.5 (validate_key): a point, not of small order."""
    if len(public) != PUBLIC_KEY_LEN:
        raise LengthError(f"a VRF public key is {PUBLIC_KEY_LEN} bytes, got {len(public)}")
    y = string_to_point(public)
    if y is None:
        raise PointError("the VRF public key is not a point")
    if is_identity(scalar_mult(COFACTOR, y)):
        raise PointError("the VRF public key is of small order")
    return y


def verify(public: bytes, pi: bytes, alpha: bytes) -> bytes:
    """Section 5.3: beta if pi proves VRF_public(alpha), else an error (class proof for a
    proof that does not verify, point or length for malformed inputs)."""
    y = check_public_key(public)
    gamma, c, s = decode_proof(pi)
    h = encode_to_curve(public, alpha)
    u = point_add(scalar_mult(s, BASE), point_negate(scalar_mult(c, y)))
    v = point_add(scalar_mult(s, h), point_negate(scalar_mult(c, gamma)))
    if challenge(y, h, gamma, u, v) != c:
        raise ProofError("the VRF proof does not verify")
    return gamma_to_hash(gamma)
