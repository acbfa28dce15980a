"""JOSE pieces of the encrypted data vault (keyflows.spec.jose) against published values.

Provenance:
- RFC 7518 appendix C, "Example ECDH-ES Key Agreement Computation": Z (32 bytes, listed in
  decimal there), AlgorithmID "A128GCM", PartyUInfo "Alice", PartyVInfo "Bob", keydatalen
  128 -> the derived key VqqN6vgjbSBcIijNcacQGg.
- RFC 3394 section 4.6, "Wrap 256 bits of Key Data with a 256-bit KEK".
- RFC 7748 section 6.1 (X25519 keys of Alice and Bob) for the key agreement, as RFC 8037
  appendix A.6 uses them for ECDH-ES.
"""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives.keywrap import aes_key_wrap

from keyflows.spec import jose
from keyflows.spec import primitives as P
from keyflows.spec.errors import AeadError, LengthError, PointError

RFC7518_C_Z = bytes([158, 86, 217, 29, 129, 113, 53, 211, 114, 131, 66, 131, 191, 132, 38,
                     156, 251, 49, 110, 163, 218, 128, 106, 72, 246, 218, 167, 121, 140, 254,
                     144, 196])
RFC3394_KEK = bytes.fromhex("000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F")
RFC3394_KEY = bytes.fromhex("00112233445566778899AABBCCDDEEFF000102030405060708090A0B0C0D0E0F")
RFC3394_WRAPPED = bytes.fromhex(
    "28C9F404C4B810F4CBCCB35CFB87F8263F5786E2D80ED326CBC7F0E71A99F43BFB988B9B7A02DD21")
ALICE = bytes.fromhex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
BOB = bytes.fromhex("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb")
SHARED = bytes.fromhex("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742")


def test_concat_kdf_rfc7518_appendix_c() -> None:
    derived = jose.concat_kdf_sha256(RFC7518_C_Z, "A128GCM", b"Alice", b"Bob", 128)
    assert base64.urlsafe_b64encode(derived).rstrip(b"=") == b"VqqN6vgjbSBcIijNcacQGg"


def test_concat_kdf_longer_than_one_round() -> None:
    two_rounds = jose.concat_kdf_sha256(RFC7518_C_Z, "x", b"", b"", 512)
    assert len(two_rounds) == 64 and two_rounds[:32] != two_rounds[32:]


def test_aes_key_wrap_rfc3394_section_4_6() -> None:
    assert jose.key_wrap(RFC3394_KEK, RFC3394_KEY) == RFC3394_WRAPPED
    assert jose.key_unwrap(RFC3394_KEK, RFC3394_WRAPPED) == RFC3394_KEY
    assert aes_key_wrap(RFC3394_KEK, RFC3394_KEY) == RFC3394_WRAPPED  # pyca agrees
    with pytest.raises(AeadError):
        jose.key_unwrap(RFC3394_KEK, RFC3394_WRAPPED[:-1] + b"\x00")
    with pytest.raises(LengthError):
        jose.key_unwrap(RFC3394_KEK, RFC3394_WRAPPED[:-8])


def test_ecdh_es_round_trip_with_rfc7748_keys() -> None:
    bob_public = P.x25519_public_key(BOB)
    sealed = jose.seal(bob_public, ALICE, bytes(range(32)), bytes(12), b"u", b"v", b"hello",
                       b"aad")
    assert sealed.shared == SHARED
    assert sealed.epk == P.x25519_public_key(ALICE)
    assert sealed.kek == jose.concat_kdf_sha256(SHARED, "ECDH-ES+A256KW", b"u", b"v", 256)
    assert jose.open_sealed(BOB, sealed.epk, b"u", b"v", sealed.encrypted_key, bytes(12),
                            sealed.ciphertext, sealed.tag, b"aad") == b"hello"
    for change in ({"apu": b"x"}, {"aad": b"other"}, {"tag": bytes(16)}):
        args = {"apu": b"u", "aad": b"aad", "tag": sealed.tag, **change}
        with pytest.raises(AeadError):
            jose.open_sealed(BOB, sealed.epk, args["apu"], b"v", sealed.encrypted_key,
                             bytes(12), sealed.ciphertext, args["tag"], args["aad"])
    with pytest.raises(PointError):
        jose.open_sealed(BOB, bytes(32), b"u", b"v", sealed.encrypted_key, bytes(12),
                         sealed.ciphertext, sealed.tag, b"aad")
