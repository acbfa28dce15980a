"""AES-GCM ciphertexts that authenticate under two keys (a partitioning-oracle input).

AES-GCM is not key-committing: for two keys K1, K2, one nonce and one AAD, a ciphertext
whose tag verifies under both is found by solving one linear equation over GF(2^128)
(Len, Grubbs and Ristenpart, "Partitioning Oracle Attacks", USENIX Security 2021,
section 3; Dodis, Grubbs, Ristenpart and Woodage, "Fast Message Franking", CRYPTO 2018).
The keypair-publication vectors use it to show that a record with such a ciphertext
opens under one password only because of the key commitment (KP-21).

GHASH (NIST SP 800-38D section 6.4) over blocks B_1 .. B_n is the sum of B_i * H^(n-i+1).
With every ciphertext block fixed except the last one, X, whose power of H is 2 (only the
length block follows it), the tags under the two keys agree iff
    X * (H1^2 + H2^2) = G1 + G2 + E_K1(J0) + E_K2(J0)
where Gj is GHASH under Hj with X = 0. H1 != H2 (distinct keys) makes H1^2 + H2^2 = (H1 + H2)^2
non-zero, so X exists and is unique.
"""

from __future__ import annotations

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

BLOCK = 16
_R = 0xE1 << 120  # the GCM reduction constant, in GCM's reflected bit order


def _aes_block(key: bytes, block: bytes) -> bytes:
    encryptor = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    return encryptor.update(block) + encryptor.finalize()


def gf_mul(x: int, y: int) -> int:
    """Multiplication in GF(2^128) as GCM defines it (SP 800-38D, Algorithm 1)."""
    z, v = 0, y
    for i in range(127, -1, -1):
        if (x >> i) & 1:
            z ^= v
        v = (v >> 1) ^ _R if v & 1 else v >> 1
    return z


def gf_inverse(x: int) -> int:
    """x^(2^128 - 2), the inverse of a non-zero element."""
    if x == 0:
        raise ZeroDivisionError("0 has no inverse in GF(2^128)")
    result, power, exponent = 1 << 127, x, (1 << 128) - 2  # 1 << 127 is the unit element
    while exponent:
        if exponent & 1:
            result = gf_mul(result, power)
        power = gf_mul(power, power)
        exponent >>= 1
    return result


def _blocks(data: bytes) -> list[int]:
    padded = data + bytes(-len(data) % BLOCK)
    return [int.from_bytes(padded[i:i + BLOCK], "big") for i in range(0, len(padded), BLOCK)]


def ghash(h: int, aad: bytes, ciphertext: bytes) -> int:
    lengths = (len(aad) * 8).to_bytes(8, "big") + (len(ciphertext) * 8).to_bytes(8, "big")
    y = 0
    for block in [*_blocks(aad), *_blocks(ciphertext), int.from_bytes(lengths, "big")]:
        y = gf_mul(y ^ block, h)
    return y


def _key_terms(key: bytes, nonce: bytes) -> tuple[int, int]:
    """H = E_K(0^128) and E_K(J0), J0 = nonce || 00000001 for a 12-byte nonce."""
    h = int.from_bytes(_aes_block(key, bytes(BLOCK)), "big")
    mask = int.from_bytes(_aes_block(key, nonce + b"\x00\x00\x00\x01"), "big")
    return h, mask


def colliding_ciphertext(key1: bytes, key2: bytes, nonce: bytes, aad: bytes,
                         prefix: bytes) -> bytes:
    """ciphertext || tag, `prefix` followed by one solved 16-byte block, that AES-GCM opens
    under both keys with this nonce and AAD. `prefix` is a whole number of blocks."""
    if len(prefix) % BLOCK or len(nonce) != 12 or key1 == key2:
        raise ValueError("prefix must be whole blocks, the nonce 12 bytes, the keys distinct")
    zero_last = prefix + bytes(BLOCK)
    h1, mask1 = _key_terms(key1, nonce)
    h2, mask2 = _key_terms(key2, nonce)
    rhs = ghash(h1, aad, zero_last) ^ ghash(h2, aad, zero_last) ^ mask1 ^ mask2
    coefficient = gf_mul(h1, h1) ^ gf_mul(h2, h2)
    last = gf_mul(rhs, gf_inverse(coefficient))
    ciphertext = prefix + last.to_bytes(BLOCK, "big")
    tag = ghash(h1, aad, ciphertext) ^ mask1
    return ciphertext + tag.to_bytes(BLOCK, "big")
