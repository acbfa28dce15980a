"""ML-KEM-768 (spec/mlkem.py) against published known answers and against pyca/cryptography.

External known answers (provenance in tests/kat/README.md):
  mlkem768_acvp.json             NIST ACVP: keyGen, encapsulation, decapsulation, key checks
  mlkem768_cctv.json             C2SP CCTV: the strcmp and unlucky-sampling vectors
  cctv_mlkem768_modulus.txt.gz   C2SP CCTV: 780 encapsulation keys failing the modulus check
Independent implementation: pyca/cryptography's mlkem (AWS-LC / BoringSSL), which offers
only the randomized Encaps, so encapsulation is compared through decapsulation.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import mlkem as pyca_mlkem
from hypothesis import given, settings
from hypothesis import strategies as st

from keyflows.spec import mlkem
from keyflows.spec.drbg import Drbg, unrecorded
from keyflows.spec.errors import LengthError, PointError

KAT_DIR = Path(__file__).parent / "kat"
ACVP = json.loads((KAT_DIR / "mlkem768_acvp.json").read_text(encoding="utf-8"))
CCTV = json.loads((KAT_DIR / "mlkem768_cctv.json").read_text(encoding="utf-8"))


def h(value: str) -> bytes:
    return bytes.fromhex(value)


def test_acvp_groups_are_ml_kem_768() -> None:
    for name in ("keyGen", "encapsulation", "decapsulation", "decapsulationKeyCheck",
                 "encapsulationKeyCheck"):
        assert ACVP[name]["group"]["parameterSet"] == "ML-KEM-768"
        assert ACVP[name]["tests"]


@pytest.mark.parametrize("case", ACVP["keyGen"]["tests"], ids=lambda c: str(c["tcId"]))
def test_keygen_internal_matches_acvp(case: dict[str, Any]) -> None:
    ek, dk = mlkem.keygen_internal(h(case["d"]), h(case["z"]))
    assert ek == h(case["ek"])
    assert dk == h(case["dk"])
    assert mlkem.public_key_from_seed(h(case["d"]) + h(case["z"])) == ek


@pytest.mark.parametrize("case", ACVP["encapsulation"]["tests"], ids=lambda c: str(c["tcId"]))
def test_encaps_internal_matches_acvp(case: dict[str, Any]) -> None:
    shared, ciphertext = mlkem.encaps_internal(h(case["ek"]), h(case["m"]))
    assert ciphertext == h(case["c"])
    assert shared == h(case["k"])


@pytest.mark.parametrize("case", ACVP["decapsulation"]["tests"], ids=lambda c: str(c["tcId"]))
def test_decaps_internal_matches_acvp(case: dict[str, Any]) -> None:
    assert mlkem.decaps_internal(h(case["dk"]), h(case["c"])) == h(case["k"])


@pytest.mark.parametrize("case", ACVP["encapsulationKeyCheck"]["tests"],
                         ids=lambda c: str(c["tcId"]))
def test_encapsulation_key_check_matches_acvp(case: dict[str, Any]) -> None:
    ek = h(case["ek"])
    if case["testPassed"]:
        mlkem.check_encapsulation_key(ek)
    else:
        with pytest.raises((LengthError, PointError)):
            mlkem.check_encapsulation_key(ek)


@pytest.mark.parametrize("case", ACVP["decapsulationKeyCheck"]["tests"],
                         ids=lambda c: str(c["tcId"]))
def test_decapsulation_key_check_matches_acvp(case: dict[str, Any]) -> None:
    dk = h(case["dk"])
    if case["testPassed"]:
        mlkem.check_decapsulation_key(dk)
    else:
        with pytest.raises((LengthError, PointError)):
            mlkem.check_decapsulation_key(dk)


def test_cctv_strcmp_vector() -> None:
    """A ciphertext whose re-encryption differs only after a zero byte is rejected."""
    case = CCTV["strcmp"]
    assert mlkem.decaps_internal(h(case["dk"]), h(case["c"])) == h(case["K"])


def test_cctv_unlucky_sampling_vector() -> None:
    """A seed whose SampleNTT needs more than 575 XOF bytes. The vector predates the final
    FIPS 203, whose K-PKE.KeyGen hashes G(d || k) where the draft hashed G(d): the test
    rebuilds the draft's ek from the module's own SampleNTT, NTT and encoding, which are
    unchanged, and checks the final KeyGen still agrees with pyca on that seed."""
    case = CCTV["unluckysample"]
    d = h(case["d"])
    rho, sigma = hashlib.sha3_512(d).digest()[:32], hashlib.sha3_512(d).digest()[32:]
    a_hat = [[mlkem.sample_ntt(rho + bytes([j, i])) for j in range(3)] for i in range(3)]
    s_hat = [mlkem.ntt(mlkem.sample_poly_cbd(hashlib.shake_256(sigma + bytes([n])).digest(128),
                                             2)) for n in range(3)]
    e_hat = [mlkem.ntt(mlkem.sample_poly_cbd(hashlib.shake_256(sigma + bytes([n])).digest(128),
                                             2)) for n in range(3, 6)]
    t_hat = []
    for i in range(3):
        acc = e_hat[i]
        for j in range(3):
            acc = [(x + y) % mlkem.Q for x, y in zip(acc, mlkem.multiply_ntts(a_hat[i][j],
                                                                               s_hat[j]),
                                                     strict=True)]
        t_hat.append(acc)
    ek = b"".join(mlkem.byte_encode(t, 12) for t in t_hat) + rho
    assert ek == h(case["ek"])
    seed = d + h(case["z"])
    final_ek, _ = mlkem.keygen_internal(d, h(case["z"]))
    assert final_ek == pyca_mlkem.MLKEM768PrivateKey.from_seed_bytes(seed).public_key() \
        .public_bytes_raw()


def test_cctv_modulus_vectors_fail_both_implementations() -> None:
    lines = gzip.decompress((KAT_DIR / "cctv_mlkem768_modulus.txt.gz").read_bytes()).split()
    assert len(lines) == 780
    for line in lines:
        ek = bytes.fromhex(line.decode("ascii"))
        with pytest.raises(PointError):
            mlkem.check_encapsulation_key(ek)
        with pytest.raises(ValueError):
            pyca_mlkem.MLKEM768PublicKey.from_public_bytes(ek)
        with pytest.raises(PointError):
            mlkem.encaps(ek, unrecorded(Drbg("modulus")))


# --- held equal to pyca/cryptography --------------------------------------------------------

SEEDS = st.binary(min_size=64, max_size=64)


@settings(max_examples=6, deadline=None)
@given(seed=SEEDS, m=st.binary(min_size=32, max_size=32))
def test_encaps_internal_decapsulates_under_pyca(seed: bytes, m: bytes) -> None:
    private = pyca_mlkem.MLKEM768PrivateKey.from_seed_bytes(seed)
    ek, dk = mlkem.keygen_internal(seed[:32], seed[32:])
    assert ek == private.public_key().public_bytes_raw()
    shared, ciphertext = mlkem.encaps_internal(ek, m)
    assert private.decapsulate(ciphertext) == shared
    assert mlkem.decaps(seed, ciphertext) == shared
    assert mlkem.decaps_internal(dk, ciphertext) == shared


@settings(max_examples=6, deadline=None)
@given(seed=SEEDS, flip=st.integers(0, mlkem.CIPHERTEXT_LEN * 8 - 1))
def test_decaps_internal_equals_pyca_including_implicit_rejection(seed: bytes, flip: int) -> None:
    private = pyca_mlkem.MLKEM768PrivateKey.from_seed_bytes(seed)
    shared, ciphertext = private.public_key().encapsulate()
    _, dk = mlkem.keygen_internal(seed[:32], seed[32:])
    assert mlkem.decaps_internal(dk, ciphertext) == shared
    tampered = bytearray(ciphertext)
    tampered[flip // 8] ^= 1 << (flip % 8)
    rejected = mlkem.decaps_internal(dk, bytes(tampered))
    assert rejected == private.decapsulate(bytes(tampered))
    assert rejected == hashlib.shake_256(seed[32:] + bytes(tampered)).digest(32)


def test_encaps_draws_m_from_a_recorded_source_only() -> None:
    ek = mlkem.public_key_from_seed(bytes(range(64)))
    shared, ciphertext, m = mlkem.encaps(ek, Drbg("encaps"))
    assert m == Drbg("encaps")(32)
    assert (shared, ciphertext) == mlkem.encaps_internal(ek, m)
    fast_shared, fast_ciphertext, fast_m = mlkem.encaps(ek, unrecorded(Drbg("encaps")))
    assert fast_m is None
    assert mlkem.decaps(bytes(range(64)), fast_ciphertext) == fast_shared


@pytest.mark.parametrize("size", [0, 1183, 1185])
def test_wrong_sizes_are_length_errors(size: int) -> None:
    with pytest.raises(LengthError):
        mlkem.check_encapsulation_key(bytes(size))
    with pytest.raises(LengthError):
        mlkem.decaps(bytes(64), bytes(size))
    with pytest.raises(LengthError):
        mlkem.public_key_from_seed(bytes(size % 64 + 1))
