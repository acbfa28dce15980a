"""HPKE PSK and Auth modes and the MLKEM768-X25519 KEM (spec/hpke.py).

External known answers: tests/kat/hpke_psk_auth_mlkem768x25519.json (provenance in
tests/kat/README.md): RFC 9180 A.1.2 (PSK) and A.1.3 (Auth), and the draft-ietf-hpke-pq
vector for KEM 0x647a. Those suites use AES-128-GCM or ChaCha20-Poly1305; the key schedule
is checked with their suite_id and Nk, and their ciphertexts are reproduced by running the
vector's AEAD (pyca/cryptography) under the key and nonces the schedule derived.
Independent implementation: pyca/cryptography's HPKE with KEM.MLKEM768_X25519 (base mode).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hpke as pyca_hpke
from cryptography.hazmat.primitives.asymmetric import mlkem as pyca_mlkem
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from hypothesis import given, settings
from hypothesis import strategies as st

from keyflows.spec import hpke, mlkem, primitives
from keyflows.spec.drbg import Drbg, unrecorded
from keyflows.spec.errors import AeadError, LengthError, ParamsError, PointError

KAT = json.loads((Path(__file__).parent / "kat" / "hpke_psk_auth_mlkem768x25519.json")
                 .read_text(encoding="utf-8"))
PSK = KAT["rfc9180_a1"]["psk_mode"]
AUTH = KAT["rfc9180_a1"]["auth_mode"]
PQ = KAT["mlkem768_x25519"][0]


def h(value: Any) -> bytes:
    return bytes.fromhex(str(value))


def suite_id(case: dict[str, Any]) -> bytes:
    ids = (int(case["kem_id"]), int(case["kdf_id"]), int(case["aead_id"]))
    return b"HPKE" + b"".join(i.to_bytes(2, "big") for i in ids)


def aead_for(case: dict[str, Any], key: bytes) -> AESGCM | ChaCha20Poly1305:
    return ChaCha20Poly1305(key) if case["aead_id"] == 3 else AESGCM(key)


def check_schedule(case: dict[str, Any], schedule: hpke.KeySchedule) -> None:
    for name in ("key_schedule_context", "secret", "key", "base_nonce", "exporter_secret"):
        if name in case:
            assert getattr(schedule, name) == h(case[name]), name
    for i, encryption in enumerate(case["encryptions"]):
        nonce = hpke.compute_nonce(schedule.base_nonce, i)
        assert nonce == h(encryption["nonce"])
        sealed = aead_for(case, schedule.key).encrypt(nonce, h(encryption["pt"]),
                                                     h(encryption["aad"]))
        assert sealed == h(encryption["ct"])
    for export in case["exports"]:
        value = hpke.labeled_expand(suite_id(case), schedule.exporter_secret, b"sec",
                                    h(export["exporter_context"]), export["L"])
        assert value == h(export["exported_value"])


def schedule_for(case: dict[str, Any], shared_secret: bytes) -> hpke.KeySchedule:
    return hpke.key_schedule(case["mode"], shared_secret, h(case["info"]),
                             h(case.get("psk", "")), h(case.get("psk_id", "")),
                             suite_id=suite_id(case), key_length=len(h(case["key"])))


def test_psk_mode_matches_rfc9180_a1_2() -> None:
    assert (PSK["mode"], PSK["kem_id"], PSK["kdf_id"]) == (hpke.MODE_PSK, hpke.KEM_ID,
                                                           hpke.KDF_ID)
    encapsulation = hpke.encap(h(PSK["pkRm"]), h(PSK["ikmE"]))
    assert encapsulation.enc == h(PSK["enc"])
    assert encapsulation.shared_secret == h(PSK["shared_secret"])
    assert hpke.decap(h(PSK["enc"]), h(PSK["skRm"])).shared_secret == h(PSK["shared_secret"])
    check_schedule(PSK, schedule_for(PSK, encapsulation.shared_secret))


def test_auth_mode_matches_rfc9180_a1_3() -> None:
    assert (AUTH["mode"], AUTH["kem_id"]) == (hpke.MODE_AUTH, hpke.KEM_ID)
    assert hpke.derive_key_pair(h(AUTH["ikmS"])).private == h(AUTH["skSm"])
    encapsulation = hpke.auth_encap(h(AUTH["pkRm"]), h(AUTH["ikmE"]), h(AUTH["skSm"]))
    assert encapsulation.enc == h(AUTH["enc"])
    assert encapsulation.shared_secret == h(AUTH["shared_secret"])
    decapsulation = hpke.auth_decap(h(AUTH["enc"]), h(AUTH["skRm"]), h(AUTH["pkSm"]))
    assert decapsulation.shared_secret == h(AUTH["shared_secret"])
    check_schedule(AUTH, schedule_for(AUTH, encapsulation.shared_secret))


def test_auth_mode_binds_the_sender_key() -> None:
    other = hpke.derive_key_pair(b"another sender".ljust(32, b"\0"))
    sealed = hpke.seal_auth(h(AUTH["pkRm"]), b"info", b"aad", b"secret", ikm_e=h(AUTH["ikmE"]),
                            sender_private=h(AUTH["skSm"]))
    opened = hpke.open_auth(sealed.enc, h(AUTH["skRm"]), b"info", b"aad", sealed.ciphertext,
                            sender_public=h(AUTH["pkSm"]))
    assert opened.plaintext == b"secret"
    with pytest.raises(AeadError):
        hpke.open_auth(sealed.enc, h(AUTH["skRm"]), b"info", b"aad", sealed.ciphertext,
                       sender_public=other.public)


def test_auth_mode_is_deniable_the_recipient_can_forge_it() -> None:
    """The recipient's key alone reproduces the sender's Auth shared secret: DH(skS, pkR)
    = DH(skR, pkS), so a transcript proves nothing to a third party."""
    sender = hpke.derive_key_pair(h(AUTH["ikmS"]))
    recipient = hpke.derive_key_pair(h(AUTH["ikmR"]))
    ephemeral = hpke.derive_key_pair(h(AUTH["ikmE"]))
    forged_dh = (primitives.x25519(recipient.private, ephemeral.public)
                 + primitives.x25519(recipient.private, sender.public))
    kem_context = ephemeral.public + recipient.public + sender.public
    assert hpke.extract_and_expand(forged_dh, kem_context) == h(AUTH["shared_secret"])


@pytest.mark.parametrize(("mode", "psk", "psk_id"), [
    (hpke.MODE_BASE, b"k" * 32, b"id"), (hpke.MODE_PSK, b"", b""), (hpke.MODE_PSK, b"k" * 31,
                                                                    b"id"),
    (hpke.MODE_PSK, b"k" * 32, b""), (hpke.MODE_AUTH, b"k" * 32, b"id"), (7, b"", b"")])
def test_psk_inputs_are_verified(mode: int, psk: bytes, psk_id: bytes) -> None:
    with pytest.raises(ParamsError):
        hpke.key_schedule(mode, bytes(32), b"", psk, psk_id)



@pytest.mark.parametrize("length", [-1, 0, 255 * 32 + 1, 0xFFFF, 0x10000, 0x10000 + 32])
def test_labeled_expand_and_export_refuse_lengths_expand_cannot_give(length: int) -> None:
    schedule = hpke.key_schedule_base(bytes(32), b"info")
    with pytest.raises(ParamsError):
        hpke.labeled_expand(hpke.HPKE_SUITE_ID, bytes(32), b"sec", b"", length)
    with pytest.raises(ParamsError):
        hpke.context_export(schedule, b"ctx", length)


@pytest.mark.parametrize("length", [1, 32, 255 * 32])
def test_labeled_expand_encodes_the_length_it_expands_to(length: int) -> None:
    prk = bytes(range(32))
    info = (length.to_bytes(2, "big") + b"HPKE-v1" + hpke.HPKE_SUITE_ID + b"sec" + b"ctx")
    assert hpke.labeled_expand(hpke.HPKE_SUITE_ID, prk, b"sec", b"ctx", length) == \
        primitives.hkdf_expand(prk, info, length)

# --- MLKEM768-X25519 ----------------------------------------------------------------------

def pq_private() -> hpke.HybridPrivateKey:
    return hpke.expand_hybrid_seed(h(PQ["skRm"]))


def test_hybrid_derive_and_expand_match_the_draft_vector() -> None:
    assert PQ["kem_id"] == hpke.HYBRID_KEM_ID
    assert hpke.derive_hybrid_seed(h(PQ["ikmR"])) == h(PQ["skRm"])
    assert pq_private().public_key() == h(PQ["pkRm"])


def test_hybrid_encap_and_schedule_match_the_draft_vector() -> None:
    ikm_e = h(PQ["ikmE"])
    assert len(ikm_e) == hpke.HYBRID_N_RANDOM
    stream = iter([ikm_e[:32], ikm_e[32:]])
    encapsulation = hpke.hybrid_encap(h(PQ["pkRm"]), lambda n: next(stream))
    assert encapsulation.enc == h(PQ["enc"])
    assert encapsulation.shared_secret == h(PQ["shared_secret"])
    assert encapsulation.mlkem_m == ikm_e[:32]
    decapsulation = hpke.hybrid_decap(h(PQ["enc"]), pq_private())
    assert decapsulation.shared_secret == h(PQ["shared_secret"])
    check_schedule(PQ, schedule_for(PQ, encapsulation.shared_secret))


PYCA_PQ = pyca_hpke.Suite(pyca_hpke.KEM.MLKEM768_X25519, pyca_hpke.KDF.HKDF_SHA256,
                          pyca_hpke.AEAD.AES_256_GCM)


def pyca_private(private: hpke.HybridPrivateKey) -> pyca_hpke.MLKEM768X25519PrivateKey:
    return pyca_hpke.MLKEM768X25519PrivateKey(
        pyca_mlkem.MLKEM768PrivateKey.from_seed_bytes(private.mlkem_seed),
        X25519PrivateKey.from_private_bytes(private.x25519))


@settings(max_examples=4, deadline=None)
@given(seed=st.binary(min_size=32, max_size=32), info=st.binary(max_size=40),
       plaintext=st.binary(max_size=64))
def test_hybrid_base_mode_interoperates_with_pyca(seed: bytes, info: bytes,
                                                  plaintext: bytes) -> None:
    private = hpke.expand_hybrid_seed(seed)
    public = private.public_key()
    theirs = PYCA_PQ.encrypt(plaintext, pyca_private(private).public_key(), info)
    enc, ciphertext = theirs[:hpke.HYBRID_N_ENC], theirs[hpke.HYBRID_N_ENC:]
    assert hpke.open_hybrid(enc, private, info, b"", ciphertext).plaintext == plaintext
    for random in (Drbg(seed.hex()), unrecorded(Drbg(seed.hex()))):
        ours = hpke.seal_hybrid(public, info, b"", plaintext, random=random)
        assert PYCA_PQ.decrypt(ours.enc + ours.ciphertext, pyca_private(private),
                               info) == plaintext


def test_hybrid_psk_mode_binds_the_psk() -> None:
    private = pq_private()
    sealed = hpke.seal_hybrid_psk(private.public_key(), b"info", b"aad", b"K" * 32,
                              random=Drbg("psk"), psk=b"p" * 32, psk_id=b"sender")
    assert sealed.schedule.key_schedule_context[0] == hpke.MODE_PSK
    opened = hpke.open_hybrid(sealed.enc, private, b"info", b"aad", sealed.ciphertext,
                              psk=b"p" * 32, psk_id=b"sender")
    assert opened.plaintext == b"K" * 32
    for psk, psk_id in ((b"q" * 32, b"sender"), (b"p" * 32, b"other")):
        with pytest.raises(AeadError):
            hpke.open_hybrid(sealed.enc, private, b"info", b"aad", sealed.ciphertext,
                             psk=psk, psk_id=psk_id)


def test_hybrid_rejects_bad_sizes_and_points() -> None:
    private = pq_private()
    public = private.public_key()
    for wrong_length in (public[:-1], public + b"\0", public[:mlkem.ENCAPSULATION_KEY_LEN],
                         public[:100], b""):
        with pytest.raises(LengthError):
            hpke.hybrid_encap(wrong_length, Drbg("x"))
        peer = primitives.X25519Peer(public[-32:])  # a checked ek_T of another pk
        with pytest.raises(LengthError):
            hpke.hybrid_encap(wrong_length, Drbg("x"), peer=peer)
    with pytest.raises(PointError):
        hpke.hybrid_encap(public[:-32] + bytes(32), Drbg("x"))
    bad_ek = bytes([0xFF, 0xFF]) + public[2:]
    with pytest.raises(PointError):
        hpke.hybrid_encap(bad_ek, Drbg("x"))
    enc = h(PQ["enc"])
    with pytest.raises(LengthError):
        hpke.hybrid_decap(enc + b"\0", private)
    with pytest.raises(PointError):
        hpke.hybrid_decap(enc[:-32] + bytes(32), private)
    tampered = bytes([enc[0] ^ 1]) + enc[1:]
    assert hpke.hybrid_decap(tampered, private).shared_secret != h(PQ["shared_secret"])
    assert len(mlkem.public_key_from_seed(private.mlkem_seed)) == mlkem.ENCAPSULATION_KEY_LEN
