"""spec/ecvrf.py against RFC 9381 Appendix B.3 (provenance in tests/kat/README.md)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keyflows.spec import ecvrf
from keyflows.spec.errors import SpecError

KAT = json.loads((Path(__file__).parent / "kat" / "rfc9381_ecvrf_edwards25519_tai.json")
                 .read_text(encoding="utf-8"))
VALID: list[dict[str, Any]] = KAT["valid"]


@pytest.mark.parametrize("case", VALID, ids=[c["origin"][:40] for c in VALID])
def test_prove_reproduces_the_rfc(case: dict[str, Any]) -> None:
    proved = ecvrf.prove(bytes.fromhex(case["sk"]), bytes.fromhex(case["alpha"]))
    assert proved.public_key.hex() == case["pk"]
    if "h" in case:
        assert proved.h_string.hex() == case["h"]
    assert proved.pi.hex() == case["pi"]
    assert proved.beta.hex() == case["beta"]


@pytest.mark.parametrize("case", VALID, ids=[c["origin"][:40] for c in VALID])
def test_verify_accepts_the_rfc_proofs(case: dict[str, Any]) -> None:
    pk, pi, alpha = (bytes.fromhex(case[k]) for k in ("pk", "pi", "alpha"))
    assert ecvrf.verify(pk, pi, alpha).hex() == case["beta"]
    assert ecvrf.proof_to_hash(pi).hex() == case["beta"]


def failure(pk: bytes, pi: bytes, alpha: bytes) -> str:
    try:
        ecvrf.verify(pk, pi, alpha)
    except SpecError as exc:
        return exc.failure_class
    return "accepted"


@pytest.mark.parametrize("case", KAT["draft_proofs"])
def test_a_pre_rfc_proof_is_refused(case: dict[str, Any]) -> None:
    pk, pi, alpha = (bytes.fromhex(case[k]) for k in ("pk", "pi", "alpha"))
    assert failure(pk, pi, alpha) == "proof"


def test_malformed_inputs_are_refused_with_their_class() -> None:
    case = VALID[1]
    pk, pi, alpha = (bytes.fromhex(case[k]) for k in ("pk", "pi", "alpha"))
    assert failure(pk, pi, alpha + b"\x00") == "proof"        # another alpha
    assert failure(bytes.fromhex(VALID[0]["pk"]), pi, alpha) == "proof"  # another key
    assert failure(pk, pi[:-1], alpha) == "length"
    assert failure(pk[:-1], pi, alpha) == "length"
    s_too_large = pi[:48] + (ecvrf.ORDER + int.from_bytes(pi[48:], "little")).to_bytes(
        32, "little")
    assert failure(pk, s_too_large, alpha) == "proof"
    identity = (1).to_bytes(32, "little")
    assert failure(identity, pi, alpha) == "point"            # a small-order key
    not_a_point = (2).to_bytes(32, "little")                   # y = 2 has no x
    assert failure(not_a_point, pi, alpha) == "point"
    assert failure(pk, not_a_point + pi[32:], alpha) == "point"


def test_a_secret_key_is_32_bytes_and_expands_once() -> None:
    """The directory expands its key when it starts (ecvrf.expand): a key of another
    length is refused there; an expanded key proves exactly what prove(sk) proves."""
    for length in (0, 31, 33):
        with pytest.raises(SpecError) as exc:
            ecvrf.expand(bytes(length))
        assert exc.value.failure_class == "length"
    case = VALID[2]
    sk, alpha = bytes.fromhex(case["sk"]), bytes.fromhex(case["alpha"])
    key = ecvrf.expand(sk)
    assert key.public == bytes.fromhex(case["pk"]) == ecvrf.public_key(sk)
    assert ecvrf.prove_with(key, alpha) == ecvrf.prove(sk, alpha)
    assert ecvrf.prove_with(key, alpha).pi == bytes.fromhex(case["pi"])


@settings(max_examples=25, deadline=None)
@given(st.integers(min_value=0, max_value=8 * len(VALID[2]["pi"]) // 2 - 1))
def test_any_bit_flip_in_a_proof_is_refused(bit: int) -> None:
    case = VALID[2]
    pk, alpha = bytes.fromhex(case["pk"]), bytes.fromhex(case["alpha"])
    pi = bytearray(bytes.fromhex(case["pi"]))
    pi[bit // 8] ^= 1 << (bit % 8)
    assert failure(pk, bytes(pi), alpha) in ("proof", "point")


@settings(max_examples=10, deadline=None)
@given(st.binary(min_size=32, max_size=32), st.binary(max_size=40))
def test_prove_then_verify(sk: bytes, alpha: bytes) -> None:
    proved = ecvrf.prove(sk, alpha)
    assert ecvrf.verify(proved.public_key, proved.pi, alpha) == proved.beta
