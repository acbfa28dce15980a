"""ML-KEM-768 (FIPS 203), written from the standard, with injectable randomness.

What the envelope and session-challenge flows need from it:

  keygen_internal(d, z)      Algorithm 16, ML-KEM.KeyGen_internal: (ek, dk) from two seeds
  encaps_internal(ek, m)     Algorithm 17, ML-KEM.Encaps_internal: (K, c) from ek and m
  decaps_internal(dk, c)     Algorithm 18, ML-KEM.Decaps_internal: K (implicit rejection)
  encaps(ek, random)         Algorithm 20, ML-KEM.Encaps: m = random(32), then the above
  decaps(seed, c)            ML-KEM.Decaps with the private key held as its 64-byte seed

The deterministic internal functions exist so that vectors are byte-reproducible: FIPS 203
section 6 defines Encaps as Encaps_internal(ek, m) with m drawn fresh, and the randomness
of a vector case is a parameter (keyflows.spec.drbg). pyca/cryptography offers only the
randomized Encaps, so this module carries its own K-PKE.

Speed: pure Python takes milliseconds per operation where pyca/cryptography (AWS-LC or
BoringSSL) takes tens of microseconds. The functions that need no injected randomness --
key generation from a seed and decapsulation -- therefore run on pyca, and `encaps` does
too when its random source is marked `unrecorded` (the operating system's CSPRNG, whose
bytes nobody records): ML-KEM.Encaps is then the same algorithm with the same
distribution, drawing m inside the library. The tests hold the two paths equal on every
function (and this module against NIST's ACVP vectors and C2SP CCTV's), so a vector made
here decapsulates under pyca and the other way round.

Input checks (FIPS 203 section 7): an encapsulation key must be 1184 bytes whose every
12-bit coefficient is below q (the modulus check); a ciphertext must be 1088 bytes; a
decapsulation key 2400 bytes whose embedded H(ek) matches. Failures raise LengthError
(wrong size) or PointError (an encapsulation key that is not a valid encoding).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from cryptography.hazmat.primitives.asymmetric import mlkem as _pyca_mlkem

from keyflows.spec.drbg import RandomSource, is_unrecorded
from keyflows.spec.errors import LengthError, PointError

N = 256
Q = 3329
K = 3
ETA1 = 2
ETA2 = 2
DU = 10
DV = 4

SEED_LEN = 32  # d, z and m are 32 bytes each
SHARED_SECRET_LEN = 32
ENCAPSULATION_KEY_LEN = 384 * K + 32  # 1184
DECAPSULATION_KEY_LEN = 768 * K + 96  # 2400
CIPHERTEXT_LEN = 32 * (DU * K + DV)  # 1088
PRIVATE_SEED_LEN = 64  # d || z, the private key format of FIPS 203 section 7.1 and pyca

Poly = list[int]

# zeta = 17 is a primitive 256th root of unity mod q. ZETAS[i] = 17^BitRev7(i) mod q
# (FIPS 203 Appendix A) for the NTT; GAMMAS[i] = 17^(2 BitRev7(i) + 1) for BaseCaseMultiply.


def _bitrev7(i: int) -> int:
    return int(f"{i:07b}"[::-1], 2)


ZETAS = tuple(pow(17, _bitrev7(i), Q) for i in range(128))
GAMMAS = tuple(pow(17, 2 * _bitrev7(i) + 1, Q) for i in range(128))
_N_INV = 3303  # 128^-1 mod q, the final scaling of NTT^-1 (Algorithm 10)


# --- hash functions (FIPS 203 section 4.1) -------------------------------------------------

def _g(data: bytes) -> tuple[bytes, bytes]:
    digest = hashlib.sha3_512(data).digest()
    return digest[:32], digest[32:]


def _h(data: bytes) -> bytes:
    return hashlib.sha3_256(data).digest()


def _j(data: bytes) -> bytes:
    return hashlib.shake_256(data).digest(32)


def _prf(eta: int, s: bytes, b: int) -> bytes:
    return hashlib.shake_256(s + bytes([b])).digest(64 * eta)


# --- encoding and compression (FIPS 203 section 4.2.1) -------------------------------------

def byte_encode(f: Sequence[int], d: int) -> bytes:
    """Algorithm 5, ByteEncode_d: 256 d-bit integers, little-endian bit order."""
    acc = 0
    for i, coefficient in enumerate(f):
        acc |= coefficient << (d * i)
    return acc.to_bytes(32 * d, "little")


def byte_decode(data: bytes, d: int) -> Poly:
    """Algorithm 6, ByteDecode_d (for d = 12 the values are not reduced: see check_ek)."""
    acc = int.from_bytes(data, "little")
    mask = (1 << d) - 1
    return [(acc >> (d * i)) & mask for i in range(N)]


def compress(f: Sequence[int], d: int) -> Poly:
    """Compress_d(x) = round((2^d / q) x) mod 2^d, in integer arithmetic."""
    return [((x << d) + Q // 2) // Q & ((1 << d) - 1) for x in f]


def decompress(f: Sequence[int], d: int) -> Poly:
    """Decompress_d(y) = round((q / 2^d) y)."""
    return [(y * Q + (1 << (d - 1))) >> d for y in f]


# --- sampling (FIPS 203 section 4.2.2) -----------------------------------------------------

def sample_ntt(seed34: bytes) -> Poly:
    """Algorithm 7, SampleNTT: rejection sampling from SHAKE128(rho || j || i)."""
    out: Poly = []
    length = 168 * 3  # enough for most seeds; extended one SHAKE128 block at a time
    stream = hashlib.shake_128(seed34).digest(length)
    pos = 0
    while len(out) < N:
        if pos + 3 > length:
            length += 168
            stream = hashlib.shake_128(seed34).digest(length)
        b0, b1, b2 = stream[pos], stream[pos + 1], stream[pos + 2]
        pos += 3
        d1 = b0 + 256 * (b1 & 0x0F)
        d2 = (b1 >> 4) + 16 * b2
        if d1 < Q:
            out.append(d1)
        if d2 < Q and len(out) < N:
            out.append(d2)
    return out


def sample_poly_cbd(data: bytes, eta: int) -> Poly:
    """Algorithm 8, SamplePolyCBD_eta: centred binomial from 64 eta bytes."""
    bits = int.from_bytes(data, "little")
    mask = (1 << eta) - 1
    out: Poly = []
    for i in range(N):
        chunk = bits >> (2 * eta * i)
        x = bin(chunk & mask).count("1")
        y = bin((chunk >> eta) & mask).count("1")
        out.append((x - y) % Q)
    return out


# --- NTT (FIPS 203 section 4.3) ------------------------------------------------------------

def ntt(f: Sequence[int]) -> Poly:
    """Algorithm 9, NTT."""
    a = list(f)
    i = 1
    length = 128
    while length >= 2:
        for start in range(0, N, 2 * length):
            zeta = ZETAS[i]
            i += 1
            for j in range(start, start + length):
                t = zeta * a[j + length] % Q
                a[j + length] = (a[j] - t) % Q
                a[j] = (a[j] + t) % Q
        length //= 2
    return a


def ntt_inverse(f: Sequence[int]) -> Poly:
    """Algorithm 10, NTT^-1."""
    a = list(f)
    i = 127
    length = 2
    while length <= 128:
        for start in range(0, N, 2 * length):
            zeta = ZETAS[i]
            i -= 1
            for j in range(start, start + length):
                t = a[j]
                a[j] = (t + a[j + length]) % Q
                a[j + length] = zeta * (a[j + length] - t) % Q
        length *= 2
    return [x * _N_INV % Q for x in a]


def multiply_ntts(f: Sequence[int], g: Sequence[int]) -> Poly:
    """Algorithms 11 and 12, MultiplyNTTs: 128 degree-one products mod X^2 - gamma."""
    out = [0] * N
    for i in range(128):
        a0, a1, b0, b1 = f[2 * i], f[2 * i + 1], g[2 * i], g[2 * i + 1]
        out[2 * i] = (a0 * b0 + a1 * b1 % Q * GAMMAS[i]) % Q
        out[2 * i + 1] = (a0 * b1 + a1 * b0) % Q
    return out


def _add(f: Sequence[int], g: Sequence[int]) -> Poly:
    return [(x + y) % Q for x, y in zip(f, g, strict=True)]


def _sub(f: Sequence[int], g: Sequence[int]) -> Poly:
    return [(x - y) % Q for x, y in zip(f, g, strict=True)]


def _dot(row: Sequence[Poly], vector: Sequence[Poly]) -> Poly:
    acc = [0] * N
    for f, g in zip(row, vector, strict=True):
        acc = _add(acc, multiply_ntts(f, g))
    return acc


def _matrix(rho: bytes, transposed: bool) -> list[list[Poly]]:
    """A-hat[i][j] = SampleNTT(rho || j || i) (Algorithm 13 step 6, Algorithm 14 step 6)."""
    a = [[sample_ntt(rho + bytes([j, i])) for j in range(K)] for i in range(K)]
    if transposed:
        return [[a[j][i] for j in range(K)] for i in range(K)]
    return a


def _sample_vector(sigma: bytes, eta: int, first: int) -> list[Poly]:
    return [sample_poly_cbd(_prf(eta, sigma, first + i), eta) for i in range(K)]


# --- K-PKE (FIPS 203 section 5) ------------------------------------------------------------

def kpke_keygen(d: bytes) -> tuple[bytes, bytes]:
    """Algorithm 13, K-PKE.KeyGen(d): (ek_pke, dk_pke); (rho, sigma) = G(d || k)."""
    rho, sigma = _g(d + bytes([K]))
    a_hat = _matrix(rho, transposed=False)
    s_hat = [ntt(p) for p in _sample_vector(sigma, ETA1, 0)]
    e_hat = [ntt(p) for p in _sample_vector(sigma, ETA1, K)]
    t_hat = [_add(_dot(a_hat[i], s_hat), e_hat[i]) for i in range(K)]
    ek = b"".join(byte_encode(t, 12) for t in t_hat) + rho
    dk = b"".join(byte_encode(s, 12) for s in s_hat)
    return ek, dk


def kpke_encrypt(ek: bytes, m: bytes, r: bytes) -> bytes:
    """Algorithm 14, K-PKE.Encrypt(ek, m, r)."""
    t_hat = [byte_decode(ek[384 * i:384 * (i + 1)], 12) for i in range(K)]
    rho = ek[384 * K:]
    a_hat_t = _matrix(rho, transposed=True)
    y_hat = [ntt(p) for p in _sample_vector(r, ETA1, 0)]
    e1 = _sample_vector(r, ETA2, K)
    e2 = sample_poly_cbd(_prf(ETA2, r, 2 * K), ETA2)
    u = [_add(ntt_inverse(_dot(a_hat_t[i], y_hat)), e1[i]) for i in range(K)]
    mu = decompress(byte_decode(m, 1), 1)
    v = _add(_add(ntt_inverse(_dot(t_hat, y_hat)), e2), mu)
    c1 = b"".join(byte_encode(compress(p, DU), DU) for p in u)
    c2 = byte_encode(compress(v, DV), DV)
    return c1 + c2


def kpke_decrypt(dk_pke: bytes, c: bytes) -> bytes:
    """Algorithm 15, K-PKE.Decrypt(dk, c)."""
    u = [decompress(byte_decode(c[32 * DU * i:32 * DU * (i + 1)], DU), DU) for i in range(K)]
    v = decompress(byte_decode(c[32 * DU * K:], DV), DV)
    s_hat = [byte_decode(dk_pke[384 * i:384 * (i + 1)], 12) for i in range(K)]
    w = _sub(v, ntt_inverse(_dot(s_hat, [ntt(p) for p in u])))
    return byte_encode(compress(w, 1), 1)


# --- input checks (FIPS 203 section 7) -----------------------------------------------------

def check_encapsulation_key(ek: bytes, *, requirement: str | None = None) -> None:
    """Section 7.2: the type check (1184 bytes) and the modulus check (every coefficient of
    t-hat below q, i.e. ByteEncode12(ByteDecode12(ek)) == ek)."""
    if len(ek) != ENCAPSULATION_KEY_LEN:
        raise LengthError(f"an ML-KEM-768 encapsulation key is {ENCAPSULATION_KEY_LEN} bytes, "
                          f"got {len(ek)}", requirement=requirement)
    for i in range(K):
        if any(x >= Q for x in byte_decode(ek[384 * i:384 * (i + 1)], 12)):
            raise PointError("the ML-KEM encapsulation key fails the modulus check",
                             requirement=requirement)


def check_ciphertext(c: bytes, *, requirement: str | None = None) -> None:
    """Section 7.3: the ciphertext type check (1088 bytes)."""
    if len(c) != CIPHERTEXT_LEN:
        raise LengthError(f"an ML-KEM-768 ciphertext is {CIPHERTEXT_LEN} bytes, got {len(c)}",
                          requirement=requirement)


def check_decapsulation_key(dk: bytes) -> None:
    """Section 7.3: the decapsulation key type and hash checks."""
    if len(dk) != DECAPSULATION_KEY_LEN:
        raise LengthError(f"an ML-KEM-768 decapsulation key is {DECAPSULATION_KEY_LEN} bytes")
    if _h(dk[384 * K:768 * K + 32]) != dk[768 * K + 32:768 * K + 64]:
        raise PointError("the ML-KEM decapsulation key's H(ek) does not match its ek")


# --- ML-KEM (FIPS 203 section 6) -----------------------------------------------------------

def _check_seed(value: bytes, what: str) -> None:
    if len(value) != SEED_LEN:
        raise LengthError(f"{what} must be {SEED_LEN} bytes, got {len(value)}")


def keygen_internal(d: bytes, z: bytes) -> tuple[bytes, bytes]:
    """Algorithm 16, ML-KEM.KeyGen_internal(d, z): (ek, dk = dk_pke || ek || H(ek) || z)."""
    _check_seed(d, "d")
    _check_seed(z, "z")
    ek, dk_pke = kpke_keygen(d)
    return ek, dk_pke + ek + _h(ek) + z


def encaps_internal(ek: bytes, m: bytes) -> tuple[bytes, bytes]:
    """Algorithm 17, ML-KEM.Encaps_internal(ek, m): (K, c). The key is checked first."""
    check_encapsulation_key(ek)
    _check_seed(m, "m")
    shared, r = _g(m + _h(ek))
    return shared, kpke_encrypt(ek, m, r)


def decaps_internal(dk: bytes, c: bytes) -> bytes:
    """Algorithm 18, ML-KEM.Decaps_internal(dk, c): K, or J(z || c) for a ciphertext that
    does not re-encrypt to itself (implicit rejection)."""
    check_decapsulation_key(dk)
    check_ciphertext(c)
    dk_pke = dk[:384 * K]
    ek = dk[384 * K:768 * K + 32]
    h = dk[768 * K + 32:768 * K + 64]
    z = dk[768 * K + 64:]
    m_prime = kpke_decrypt(dk_pke, c)
    shared, r_prime = _g(m_prime + h)
    rejected = _j(z + c)
    # Constant-time selection is the library's job on the production path (decaps); this
    # reference path serves vectors and tests only.
    return shared if kpke_encrypt(ek, m_prime, r_prime) == c else rejected


def public_key_from_seed(seed: bytes) -> bytes:
    """The encapsulation key of a 64-byte private seed d || z (pyca's from_seed_bytes)."""
    _check_private_seed(seed)
    key = _pyca_mlkem.MLKEM768PrivateKey.from_seed_bytes(seed)
    return key.public_key().public_bytes_raw()


def _check_private_seed(seed: bytes) -> None:
    if len(seed) != PRIVATE_SEED_LEN:
        raise LengthError(f"an ML-KEM private seed is {PRIVATE_SEED_LEN} bytes (d || z), "
                          f"got {len(seed)}")


def encaps(ek: bytes, random: RandomSource, *,
           requirement: str | None = None) -> tuple[bytes, bytes, bytes | None]:
    """Algorithm 20, ML-KEM.Encaps: (K, c, m) with m = random(32), after the input check.

    From an `unrecorded` source the library draws m itself (m is returned as None): same
    algorithm, same distribution, no pure-Python arithmetic on the hot path.
    """
    if is_unrecorded(random):
        shared, ciphertext = _library_public_key(ek, requirement).encapsulate()
        return shared, ciphertext, None
    check_encapsulation_key(ek, requirement=requirement)
    m = random(SEED_LEN)
    shared, ciphertext = encaps_internal(ek, m)
    return shared, ciphertext, m


def _library_public_key(ek: bytes, requirement: str | None) -> _pyca_mlkem.MLKEM768PublicKey:
    """The library's key object; it runs the same type and modulus checks (the tests hold
    it to the 780 CCTV modulus vectors), which map to the same failure classes."""
    if len(ek) != ENCAPSULATION_KEY_LEN:
        check_encapsulation_key(ek, requirement=requirement)  # raises LengthError
    try:
        return _pyca_mlkem.MLKEM768PublicKey.from_public_bytes(ek)
    except ValueError:
        raise PointError("the ML-KEM encapsulation key fails the modulus check",
                         requirement=requirement) from None


def decaps(seed: bytes, c: bytes, *, requirement: str | None = None) -> bytes:
    """ML-KEM.Decaps with the private key as its 64-byte seed (pyca/cryptography)."""
    _check_private_seed(seed)
    check_ciphertext(c, requirement=requirement)
    return _pyca_mlkem.MLKEM768PrivateKey.from_seed_bytes(seed).decapsulate(c)
