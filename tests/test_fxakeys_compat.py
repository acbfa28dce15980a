"""The fxakeys vectors equal what the ORIGINAL formulas give, computed here independently
of keyflows.spec: HKDF written out per RFC 5869 with hmac/hashlib, and PyNaCl's SecretBox
called directly. A bug in the spec's primitives cannot verify itself through this file.

Original (tarekziade/fxakeys, fxakeys/crypto.py, as recorded in research/originals.md):
  kBr = HKDF-SHA256(IKM = kB, salt = "0" * len(kB), info = client_id, L = 32), hex-encoded
  encPrivKey = hex(nonce (24) || SecretBox(kBr).encrypt(hex(private key), nonce))
"""

from __future__ import annotations

import hashlib
import hmac
from importlib import resources
from typing import Any

import nacl.exceptions
import nacl.public
import nacl.secret
import pytest
import yaml


def rfc5869_hkdf_sha256(ikm: bytes, salt: bytes, info: bytes, length: int) -> bytes:
    prk = hmac.new(salt or b"\x00" * 32, ikm, hashlib.sha256).digest()  # Extract
    okm, block, counter = b"", b"", 1
    while len(okm) < length:  # Expand: T(i) = HMAC(PRK, T(i-1) || info || i)
        block = hmac.new(prk, block + info + bytes([counter]), hashlib.sha256).digest()
        okm += block
        counter += 1
    return okm[:length]


def original_kbr(kb: bytes, client_id: str) -> str:
    return rfc5869_hkdf_sha256(kb, b"0" * len(kb), client_id.encode("utf-8"), 32).hex()


def original_enc_priv_key(kbr: bytes, nonce: bytes, private: bytes) -> str:
    box = nacl.secret.SecretBox(kbr).encrypt(private.hex().encode("ascii"), nonce)
    return bytes(box).hex()  # PyNaCl's EncryptedMessage is nonce || tag || ciphertext


def load(name: str) -> dict[str, Any]:
    text = resources.files("keyflows.vectors").joinpath(name).read_text(encoding="utf-8")
    data = yaml.safe_load(text)
    assert isinstance(data, dict)
    return data


KD = load("key-derivation.fxakeys.yaml")
KP = load("keypair-publication.fxakeys.yaml")


def test_own_hkdf_matches_rfc5869_test_case_1() -> None:
    # RFC 5869 A.1, so the independent HKDF is itself pinned.
    okm = rfc5869_hkdf_sha256(bytes([0x0B] * 22), bytes(range(13)), bytes(range(0xF0, 0xFA)),
                              42)
    assert okm.hex() == ("3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf"
                         "34007208d5b887185865")


def test_salt_is_ascii_zero_characters_not_zero_bytes() -> None:
    kb = bytes(32)
    assert original_kbr(kb, "x") != rfc5869_hkdf_sha256(kb, bytes(32), b"x", 32).hex()


@pytest.mark.parametrize("case", [c for c in KD["cases"] if c["result"] == "valid"],
                         ids=lambda c: c["id"])
def test_kbr_vectors_equal_the_original_formula(case: dict[str, Any]) -> None:
    kb = bytes.fromhex(case["inputs"]["kb"])
    client_id = case["inputs"]["client_id"]
    assert case["outputs"]["kbr"] == original_kbr(kb, client_id)
    assert case["intermediates"]["salt"] == (b"0" * len(kb)).hex()
    assert case["intermediates"]["info"] == client_id.encode("utf-8").hex()
    prk = hmac.new(b"0" * len(kb), kb, hashlib.sha256).hexdigest()
    assert case["intermediates"]["prk"] == prk


def test_kbr_vectors_cover_the_realistic_shapes() -> None:
    valid = [c for c in KD["cases"] if c["result"] == "valid"]
    pairs = {(len(bytes.fromhex(c["inputs"]["kb"])), c["inputs"]["client_id"]) for c in valid}
    assert (32, "5901bd09376fe0e9") in pairs
    assert len(valid) >= 4


@pytest.mark.parametrize("case", [c for c in KP["cases"] if c["operation"] ==
                                  "fxakeys-enc-priv-key"], ids=lambda c: c["id"])
def test_enc_priv_key_vectors_equal_the_original_formula(case: dict[str, Any]) -> None:
    inputs = case["inputs"]
    kbr, nonce = bytes.fromhex(inputs["kbr"]), bytes.fromhex(inputs["nonce"])
    private = bytes.fromhex(inputs["x25519_private"])
    assert len(nonce) == 24
    enc = original_enc_priv_key(kbr, nonce, private)
    assert case["outputs"]["enc_priv_key"] == enc
    assert case["intermediates"]["plaintext"] == private.hex()
    assert case["intermediates"]["box"] == enc[48:]
    public = nacl.public.PrivateKey(private).public_key
    assert case["intermediates"]["x25519_public"] == bytes(public).hex()


@pytest.mark.parametrize("case", [c for c in KP["cases"] if c["operation"] ==
                                  "fxakeys-open-enc-priv-key"], ids=lambda c: c["id"])
def test_open_vectors_agree_with_secretbox(case: dict[str, Any]) -> None:
    """What the original's consumer (SecretBox.decrypt) makes of each open case."""
    kbr = bytes.fromhex(case["inputs"]["kbr"])
    enc: str = case["inputs"]["enc_priv_key"]
    if case["result"] == "valid":
        raw = bytes.fromhex(enc)
        text = nacl.secret.SecretBox(kbr).decrypt(raw[24:], raw[:24])
        assert bytes.fromhex(text.decode("ascii")).hex() == case["outputs"]["x25519_private"]
        return
    failure = case["failure"]["class"]
    if failure == "aead":
        raw = bytes.fromhex(enc)
        with pytest.raises(nacl.exceptions.CryptoError):
            nacl.secret.SecretBox(kbr).decrypt(raw[24:], raw[:24])
    elif failure == "length":
        assert len(bytes.fromhex(enc)) != 24 + 16 + 64
    else:
        assert failure == "decode"
        # Either not lowercase hex text, or a box whose plaintext is not 64 lowercase hex.
        try:
            raw = bytes.fromhex(enc)
        except ValueError:
            return
        if raw.hex() != enc:
            return
        plaintext = nacl.secret.SecretBox(kbr).decrypt(raw[24:], raw[:24])
        assert not (len(plaintext) == 64 and plaintext == plaintext.lower() and
                    all(ch in b"0123456789abcdef" for ch in plaintext))
