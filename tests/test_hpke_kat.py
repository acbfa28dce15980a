"""HPKE (RFC 9180) base mode, DHKEM(X25519, HKDF-SHA256) / HKDF-SHA256 / AES-256-GCM.

External known answers: tests/kat/hpke_rfc9180_x25519_sha256.json (provenance in
tests/kat/README.md). Independent implementation: pyca/cryptography's HPKE, which seals
with a random ephemeral key, so the two can only agree if both follow the RFC.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hpke as pyca_hpke
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from keyflows.spec import hpke, primitives
from keyflows.spec.errors import AeadError, LengthError, ParamsError, PointError

KAT = json.loads((Path(__file__).parent / "kat" / "hpke_rfc9180_x25519_sha256.json")
                 .read_text(encoding="utf-8"))
BASE = KAT["base_mode"][0]
PYCA_SUITE = pyca_hpke.Suite(pyca_hpke.KEM.X25519, pyca_hpke.KDF.HKDF_SHA256,
                             pyca_hpke.AEAD.AES_256_GCM)


def h(value: str) -> bytes:
    return bytes.fromhex(value)


def test_kat_entry_is_the_suite_under_test() -> None:
    assert (BASE["mode"], BASE["kem_id"], BASE["kdf_id"], BASE["aead_id"]) == (
        hpke.MODE_BASE, hpke.KEM_ID, hpke.KDF_ID, hpke.AEAD_ID)


@pytest.mark.parametrize("case", KAT["derive_key_pair"], ids=lambda c: c["ikm"][:8])
def test_derive_key_pair_matches_rfc9180(case: dict[str, Any]) -> None:
    pair = hpke.derive_key_pair(h(case["ikm"]))
    assert pair.private == h(case["sk"])
    assert pair.public == h(case["pk"])


def test_kat_key_pairs_are_consistent() -> None:
    assert primitives.x25519_public_key(h(BASE["skRm"])) == h(BASE["pkRm"])
    assert primitives.x25519_public_key(h(BASE["skEm"])) == h(BASE["pkEm"])
    assert h(BASE["enc"]) == h(BASE["pkEm"])


def test_encap_side_shared_secret_matches_kat() -> None:
    # The KAT gives skEm rather than ikmE, so the sender's half of Encap is run from it.
    dh = primitives.x25519(h(BASE["skEm"]), h(BASE["pkRm"]))
    kem_context = h(BASE["enc"]) + h(BASE["pkRm"])
    assert hpke.extract_and_expand(dh, kem_context) == h(BASE["shared_secret"])


def test_decap_matches_kat() -> None:
    decapsulation = hpke.decap(h(BASE["enc"]), h(BASE["skRm"]))
    assert decapsulation.kem_context == h(BASE["enc"]) + h(BASE["pkRm"])
    assert decapsulation.shared_secret == h(BASE["shared_secret"])


def test_key_schedule_matches_kat() -> None:
    schedule = hpke.key_schedule_base(h(BASE["shared_secret"]), h(BASE["info"]))
    assert schedule.key_schedule_context == h(BASE["key_schedule_context"])
    assert schedule.secret == h(BASE["secret"])
    assert schedule.key == h(BASE["key"])
    assert schedule.base_nonce == h(BASE["base_nonce"])
    assert schedule.exporter_secret == h(BASE["exporter_secret"])


@pytest.mark.parametrize("enc_case", BASE["encryptions"], ids=lambda c: f"seq{c['seq']}")
def test_seal_and_open_match_kat(enc_case: dict[str, Any]) -> None:
    schedule = hpke.key_schedule_base(h(BASE["shared_secret"]), h(BASE["info"]))
    seq, aad, pt = enc_case["seq"], h(enc_case["aad"]), h(enc_case["plaintext"])
    assert hpke.context_seal(schedule, seq, aad, pt) == h(enc_case["ciphertext"])
    assert hpke.context_open(schedule, seq, aad, h(enc_case["ciphertext"])) == pt


def test_open_base_opens_the_kat_ciphertext() -> None:
    first = BASE["encryptions"][0]
    opened = hpke.open_base(h(BASE["enc"]), h(BASE["skRm"]), h(BASE["info"]), h(first["aad"]),
                            h(first["ciphertext"]))
    assert opened.plaintext == h(first["plaintext"])


def test_compute_nonce_xors_the_sequence_number_into_the_low_bytes() -> None:
    base = bytes(range(12))
    assert hpke.compute_nonce(base, 0) == base
    assert hpke.compute_nonce(base, 1) == base[:11] + bytes([base[11] ^ 1])
    assert hpke.compute_nonce(base, 0x0102) == base[:10] + bytes([base[10] ^ 1, base[11] ^ 2])
    with pytest.raises(ParamsError):
        hpke.compute_nonce(base, 2**96)


# --- interoperability with an independent implementation --------------------------------

def test_pyca_seals_and_we_open() -> None:
    private = X25519PrivateKey.generate()
    sk = private.private_bytes_raw()
    blob = PYCA_SUITE.encrypt(b"token bytes", private.public_key(), info=b"the info")
    enc, ciphertext = blob[:hpke.N_ENC], blob[hpke.N_ENC:]
    assert hpke.open_base(enc, sk, b"the info", b"", ciphertext).plaintext == b"token bytes"


def test_we_seal_and_pyca_opens() -> None:
    private = X25519PrivateKey.generate()
    pk = private.public_key().public_bytes_raw()
    sealed = hpke.seal_base(pk, b"the info", b"", b"token bytes", ikm_e=bytes(range(32)))
    assert PYCA_SUITE.decrypt(sealed.enc + sealed.ciphertext, private,
                              info=b"the info") == b"token bytes"


def test_pyca_refuses_our_seal_under_another_info() -> None:
    private = X25519PrivateKey.generate()
    pk = private.public_key().public_bytes_raw()
    sealed = hpke.seal_base(pk, b"the info", b"", b"token bytes", ikm_e=bytes(32))
    with pytest.raises(Exception):  # noqa: B017 - pyca raises its own InvalidTag
        PYCA_SUITE.decrypt(sealed.enc + sealed.ciphertext, private, info=b"other info")


# --- rejections -------------------------------------------------------------------------

@pytest.mark.parametrize("u", sorted(primitives.X25519_LOW_ORDER_U))
def test_decap_rejects_low_order_enc(u: int) -> None:
    with pytest.raises(PointError):
        hpke.decap(u.to_bytes(32, "little"), h(BASE["skRm"]), requirement="SC-6")


def test_decap_rejects_non_canonical_enc() -> None:
    canonical = h(BASE["enc"])
    top_bit = canonical[:31] + bytes([canonical[31] | 0x80])
    with pytest.raises(PointError):
        hpke.decap(top_bit, h(BASE["skRm"]))
    beyond_p = (primitives.X25519_P + 9).to_bytes(32, "little")
    with pytest.raises(PointError):
        hpke.decap(beyond_p, h(BASE["skRm"]))


def test_decap_rejects_mis_sized_enc() -> None:
    with pytest.raises(LengthError):
        hpke.decap(h(BASE["enc"])[:31], h(BASE["skRm"]))


def test_encap_rejects_low_order_recipient_key() -> None:
    with pytest.raises(PointError):
        hpke.encap(bytes(32), bytes(32))


def test_open_base_rejects_tampering() -> None:
    first = BASE["encryptions"][0]
    enc, sk, info = h(BASE["enc"]), h(BASE["skRm"]), h(BASE["info"])
    aad, ct = h(first["aad"]), h(first["ciphertext"])
    for i in range(len(ct)):
        tampered = bytearray(ct)
        tampered[i] ^= 0x01
        with pytest.raises(AeadError):
            hpke.open_base(enc, sk, info, aad, bytes(tampered))
    with pytest.raises(AeadError):
        hpke.open_base(enc, sk, info + b"!", aad, ct)
    with pytest.raises(AeadError):
        hpke.open_base(enc, sk, info, aad + b"!", ct)


def test_derive_key_pair_refuses_short_ikm() -> None:
    with pytest.raises(LengthError):
        hpke.derive_key_pair(bytes(31))
