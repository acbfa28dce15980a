"""vectors/session-challenge.yaml: what the file promises, checked from outside the generator.

The sealed tokens are opened with an independent HPKE implementation (pyca/cryptography),
so a generator bug in keyflows.spec.hpke cannot verify itself; the counts and families are
those the flow's issue asks for.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography.hazmat.primitives import hpke as pyca_hpke
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from keyflows.spec import session_challenge as sc
from keyflows.spec.encoding import b64url_decode

FILE = Path(__file__).resolve().parents[1] / "vectors" / "session-challenge.yaml"
SUITE = pyca_hpke.Suite(pyca_hpke.KEM.X25519, pyca_hpke.KDF.HKDF_SHA256,
                        pyca_hpke.AEAD.AES_256_GCM)


@pytest.fixture(scope="module")
def vectors() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(FILE.read_text(encoding="utf-8"))
    return loaded


def cases(vectors: dict[str, Any], operation: str) -> list[dict[str, Any]]:
    return [c for c in vectors["cases"] if c["operation"] == operation]


def test_every_valid_open_case_opens_with_an_independent_hpke(vectors: dict[str, Any]) -> None:
    opened = 0
    for case in cases(vectors, "open-challenge"):
        if case["result"] != "valid":
            continue
        challenge = case["inputs"]["challenge"]
        private = X25519PrivateKey.from_private_bytes(
            bytes.fromhex(case["inputs"]["x25519_private"]))
        sealed = b64url_decode(challenge["enc"]) + b64url_decode(challenge["ciphertext"])
        token = SUITE.decrypt(sealed, private, info=bytes.fromhex(case["intermediates"]["info"]))
        assert token.hex() == case["outputs"]["token"]
        opened += 1
    assert opened >= 3


def test_issue_cases_record_the_ephemeral_ikm_and_every_intermediate(
        vectors: dict[str, Any]) -> None:
    issue = cases(vectors, "issue-challenge")
    assert issue
    for case in issue:
        assert set(case["inputs"]["random"]) == {"challenge_id", "token", "ikm_e"}
        assert {"enc", "shared_secret", "key_schedule_context", "key", "base_nonce",
                "ciphertext", "info"} <= set(case["intermediates"])
        assert case["outputs"]["stored"]["token"] == case["inputs"]["random"]["token"]


def test_negatives_cover_the_issue_families(vectors: dict[str, Any]) -> None:
    negatives = [c for c in vectors["cases"] if c["result"] == "invalid"]
    assert len(negatives) >= 15
    flags = Counter(flag for c in negatives for flag in c["flags"])
    for family in ("WrongKey", "BitFlip", "InfoMismatch", "Replay", "WrongToken", "Expired",
                   "Truncated", "NonCanonicalBase64", "LowOrderPoint"):
        assert flags[family] > 0, family
    classes = Counter(c["failure"]["class"] for c in negatives)
    assert {"aead", "point", "length", "decode", "binding", "params", "replay", "authz",
            "expired"} <= set(classes)
    # Each byte region of the sealed token is tampered with: enc, ciphertext body, tag.
    ids = {c["id"].split("/", 1)[1] for c in negatives}
    assert {"open/enc-bitflip", "open/ciphertext-first-byte", "open/tag-last-byte"} <= ids


def test_expiry_is_decided_by_the_now_input(vectors: dict[str, Any]) -> None:
    for case in cases(vectors, "answer-challenge"):
        stored = case["inputs"]["stored"]
        first = case["inputs"]["answers"][0]
        if case["id"].endswith("/answer/expired-at-boundary"):
            assert first["now"] == stored["expires_at"]
            assert case["failure"]["class"] == "expired"
        if case["id"].endswith("/answer/last-second"):
            assert first["now"] == stored["expires_at"] - 1
            assert case["result"] == "valid"


def test_the_file_names_the_suite_the_spec_uses(vectors: dict[str, Any]) -> None:
    for case in cases(vectors, "issue-challenge"):
        assert case["outputs"]["challenge"]["suite"] == sc.SUITE
