"""JWE (RFC 7516) with one key agreement and one content encryption, sans-I/O: what an
encrypted data vault's documents are encrypted with (keyflows.spec.edv).

  alg  ECDH-ES+A256KW (RFC 7518 section 4.6) with an X25519 ephemeral key (RFC 8037):
       Z = X25519(ephemeral, recipient); KEK = Concat KDF (NIST SP 800-56A, RFC 7518
       section 4.6.2) with SHA-256 over Z, AlgorithmID "ECDH-ES+A256KW", PartyUInfo apu,
       PartyVInfo apv, SuppPubInfo 256; encrypted_key = AES Key Wrap (RFC 3394) of the
       content key under the KEK
  enc  A256GCM: AES-256-GCM with a 96-bit IV, the AAD being the ASCII of the encoded
       protected header (RFC 7516 section 5.1, step 14)

Serialization: the general JSON form with one recipient, as an encrypted data vault keeps
it: {"protected", "recipients": [{"header", "encrypted_key"}], "iv", "ciphertext", "tag"}.

Provenance: the Concat KDF is pinned by RFC 7518 appendix C (its ECDH-ES example: Z,
"A128GCM", "Alice", "Bob" -> VqqN6vgjbSBcIijNcacQGg), AES Key Wrap by RFC 3394 section
4.6, X25519 by RFC 7748; tests/test_jose_kat.py.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.hazmat.primitives.keywrap import (
    InvalidUnwrap,
    aes_key_unwrap,
    aes_key_wrap,
)

from keyflows.spec import primitives
from keyflows.spec.errors import AeadError, LengthError

ALG = "ECDH-ES+A256KW"
ENC = "A256GCM"
KEY_LEN = 32
IV_LEN = 12
TAG_LEN = 16
WRAPPED_KEY_LEN = KEY_LEN + 8


def concat_kdf_sha256(z: bytes, algorithm_id: str, apu: bytes, apv: bytes,
                      key_bits: int) -> bytes:
    """RFC 7518 section 4.6.2: SHA-256 rounds of u32be(counter) || Z || OtherInfo, where
    OtherInfo = u32be-length-prefixed AlgorithmID, PartyUInfo, PartyVInfo, then
    u32be(keydatalen in bits)."""
    other_info = b"".join(len(part).to_bytes(4, "big") + part
                          for part in (algorithm_id.encode("ascii"), apu, apv))
    other_info += key_bits.to_bytes(4, "big")
    out = b""
    counter = 1
    while len(out) * 8 < key_bits:
        out += primitives.sha256(counter.to_bytes(4, "big") + z + other_info)
        counter += 1
    return out[:key_bits // 8]


def key_wrap(kek: bytes, key: bytes) -> bytes:
    """RFC 3394 AES Key Wrap (here: a 256-bit KEK and a 256-bit key, 40 bytes out)."""
    return aes_key_wrap(kek, key)


def key_unwrap(kek: bytes, wrapped: bytes, *, requirement: str | None = None) -> bytes:
    """RFC 3394 unwrap; a wrapped key whose integrity check fails is class aead."""
    if len(wrapped) != WRAPPED_KEY_LEN:
        raise LengthError(f"encrypted_key must be {WRAPPED_KEY_LEN} bytes",
                          requirement=requirement)
    try:
        return aes_key_unwrap(kek, wrapped)
    except InvalidUnwrap as exc:
        raise AeadError("the encrypted key does not unwrap", requirement=requirement) from exc


def ecdh_es_kek(shared: bytes, apu: bytes, apv: bytes) -> bytes:
    """The key-encryption key of ECDH-ES+A256KW from the X25519 output Z."""
    return concat_kdf_sha256(shared, ALG, apu, apv, 256)


@dataclass(frozen=True)
class Sealed:
    """Every value of one JWE encryption, for vectors."""

    epk: bytes
    shared: bytes
    kek: bytes
    encrypted_key: bytes
    ciphertext: bytes
    tag: bytes


def seal(recipient_public: bytes, ephemeral_private: bytes, cek: bytes, iv: bytes,
         apu: bytes, apv: bytes, plaintext: bytes, aad: bytes, *,
         requirement: str | None = None) -> Sealed:
    """ECDH-ES+A256KW then A256GCM: the recipient key is checked (canonical, not of low
    order, so Z is not zero: RFC 8037 section 3.2); the content key must be 32 bytes and
    the IV 12 (LengthError from AES-256-GCM)."""
    epk, shared = primitives.x25519_keypair_exchange(ephemeral_private, recipient_public,
                                                     requirement=requirement)
    kek = ecdh_es_kek(shared, apu, apv)
    sealed = primitives.aes256gcm_encrypt(cek, iv, plaintext, aad)
    return Sealed(epk, shared, kek, key_wrap(kek, cek), sealed[:-TAG_LEN], sealed[-TAG_LEN:])


def open_sealed(recipient_private: bytes, epk: bytes, apu: bytes, apv: bytes,
                encrypted_key: bytes, iv: bytes, ciphertext: bytes, tag: bytes, aad: bytes,
                *, requirement: str | None = None) -> bytes:
    """The recipient's side: point errors for a bad epk, aead for a key that does not
    unwrap or content that does not authenticate, length for a wrong tag or (from
    AES-256-GCM) a wrong IV."""
    if len(tag) != TAG_LEN:
        raise LengthError("the tag is 16 bytes", requirement=requirement)
    shared = primitives.x25519(recipient_private, epk, requirement=requirement)
    cek = key_unwrap(ecdh_es_kek(shared, apu, apv), encrypted_key, requirement=requirement)
    return primitives.aes256gcm_decrypt(cek, iv, ciphertext + tag, aad,
                                        requirement=requirement)
