"""Attack constructions the envelope vectors and property tests are built from.

`two_key_payload` is the "invisible salamanders" construction (Dodis, Grubbs, Ristenpart,
Woodage, CRYPTO 2018; Len, Grubbs, Ristenpart, USENIX Security 2021) for one STREAM chunk:
one AES-256-GCM ciphertext, with one tag, that authenticates under two different keys and
decrypts to two different plaintexts. AES-GCM does not commit to its key; the envelope's
commitment (ENV-8) is what makes such a payload useless: only one content key matches it.

GCM's tag over an empty AAD and a two-block ciphertext C1 || C2 is
  T = E_K(J0) xor (C1 H^3 xor C2 H^2 xor L H),  H = E_K(0^128), L = lengths block,
so for two keys the tags agree iff C2 (H1^2 + H2^2) = C1 (H1^3 + H2^3) + L (H1 + H2) +
E_K1(J0) + E_K2(J0) in GF(2^128): C1 is chosen freely and C2 solved for.
"""

from __future__ import annotations

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from keyflows.spec.envelope_stream import chunk_nonce

_R = 0xE1 << 120  # GCM's reduction constant in its reflected bit order


def _gf_mul(x: int, y: int) -> int:
    """Multiplication in GF(2^128) with GCM's bit order (NIST SP 800-38D, Algorithm 1)."""
    z = 0
    v = y
    for i in range(127, -1, -1):
        if (x >> i) & 1:
            z ^= v
        v = (v >> 1) ^ _R if v & 1 else v >> 1
    return z


def _gf_pow(x: int, n: int) -> int:
    result = 1 << 127  # the field's one in GCM's bit order
    while n:
        if n & 1:
            result = _gf_mul(result, x)
        x = _gf_mul(x, x)
        n >>= 1
    return result


def _gf_inv(x: int) -> int:
    return _gf_pow(x, 2**128 - 2)


def _block(key: bytes, data: bytes) -> int:
    encryptor = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    return int.from_bytes(encryptor.update(data) + encryptor.finalize(), "big")


def _ctr(key: bytes, nonce: bytes, data: bytes) -> bytes:
    """GCM's encryption: CTR mode from inc32(J0) = nonce || 0x00000002."""
    encryptor = Cipher(algorithms.AES(key), modes.CTR(nonce + b"\x00\x00\x00\x02")).encryptor()
    return encryptor.update(data) + encryptor.finalize()


def two_key_payload(key1: bytes, key2: bytes, first_block: bytes) -> bytes:
    """A one-chunk STREAM payload (32 ciphertext bytes + tag, nonce of the final chunk 0)
    that AES-256-GCM opens under both keys, to two different 32-byte plaintexts."""
    if key1 == key2 or len(first_block) != 16:
        raise ValueError("two distinct keys and one 16-byte block are needed")
    nonce = chunk_nonce(0, True)
    j0 = nonce + b"\x00\x00\x00\x01"
    h1, h2 = _block(key1, bytes(16)), _block(key2, bytes(16))
    e1, e2 = _block(key1, j0), _block(key2, j0)
    lengths = (0).to_bytes(8, "big") + (256).to_bytes(8, "big")  # AAD 0 bits, C 256 bits
    big_l = int.from_bytes(lengths, "big")
    c1 = int.from_bytes(first_block, "big")
    rhs = (_gf_mul(c1, _gf_pow(h1, 3) ^ _gf_pow(h2, 3)) ^ _gf_mul(big_l, h1 ^ h2) ^ e1 ^ e2)
    c2 = _gf_mul(rhs, _gf_inv(_gf_pow(h1, 2) ^ _gf_pow(h2, 2)))
    s1 = _gf_mul(c1, _gf_pow(h1, 3)) ^ _gf_mul(c2, _gf_pow(h1, 2)) ^ _gf_mul(big_l, h1)
    tag = (s1 ^ e1).to_bytes(16, "big")
    return first_block + c2.to_bytes(16, "big") + tag


def two_key_plaintexts(key1: bytes, key2: bytes, payload: bytes) -> tuple[bytes, bytes]:
    """What each key's CTR stream makes of the payload's ciphertext (tag not checked)."""
    nonce = chunk_nonce(0, True)
    ciphertext = payload[:-16]
    return _ctr(key1, nonce, ciphertext), _ctr(key2, nonce, ciphertext)
