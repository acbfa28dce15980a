"""The compatibility profiles are honest about the originals: every negative case the
original accepts carries StricterThanOriginal (the original's behaviour in its comment),
every one it rejects at another step carries OriginalRejectsElsewhere, valid cases are
what the original computes, and every header lists the original operations no vector
covers. The models of the originals are checked here against the library behaviour they
stand for (Go's encoding/base64, Python's binascii, NaCl)."""

from __future__ import annotations

import base64
import binascii
from dataclasses import replace
from importlib import resources
from typing import Any

import pytest
import yaml

from keyflows.vectors import catalog, originals
from keyflows.vectors.framework import Case, Failure

SHIPPED = resources.files("keyflows.vectors")
COMPAT_FILES = [name for name in catalog.FILE_NAMES if name.count(".") == 2]


def _plain(name: str) -> dict[str, Any]:
    data = yaml.load(SHIPPED.joinpath(name).read_text(encoding="utf-8"), Loader=yaml.CSafeLoader)
    assert isinstance(data, dict)
    return data


def _flagged(flag: str) -> set[str]:
    return {case["id"] for name in COMPAT_FILES for case in _plain(name)["cases"]
            if flag in case["flags"]}


def test_the_inputs_the_originals_accept_are_flagged() -> None:
    # Read from the originals' sources: fxakeys decodes with binascii.unhexlify (upper
    # case passes), keeps the decrypted plaintext unchecked and derives from an empty kB;
    # Go's base64 decoders skip line breaks; the trustbloc lock returns any length.
    expected = {"kd-fxakeys-kbr-0/kb-empty", "hc-mute/parse-entry/line-break",
                "lock-trustbloc-open/newline", "lock-trustbloc-open/lock-holds-31-bytes"}
    for n in range(3):
        expected |= {f"kp-fxakeys-enc-{n}/open/uppercase-hex",
                     f"kp-fxakeys-enc-{n}/open/plaintext-uppercase",
                     f"kp-fxakeys-enc-{n}/open/plaintext-not-hex"}
    assert _flagged(originals.STRICTER) == expected


def test_the_cases_the_originals_reject_elsewhere_are_flagged() -> None:
    expected = {"lock-trustbloc-open/truncated"}  # AES-GCM Open fails, not a length check
    for n in range(3):  # SecretBox's MAC fails before anything checks the length
        expected |= {f"kp-fxakeys-enc-{n}/open/truncated",
                     f"kp-fxakeys-enc-{n}/open/trailing-byte"}
    assert _flagged(originals.ELSEWHERE) == expected


def test_flagged_cases_say_what_the_original_does() -> None:
    for name in COMPAT_FILES:
        plain = _plain(name)
        for case in plain["cases"]:
            if originals.STRICTER in case["flags"]:
                assert case["result"] == "invalid"
                assert "; the original accepts it: " in case["comment"], case["id"]
                assert originals.STRICTER in plain["notes"]
            if originals.ELSEWHERE in case["flags"]:
                assert "; the original rejects it as " in case["comment"], case["id"]
                assert originals.ELSEWHERE in plain["notes"]


def test_every_compat_header_names_its_original_and_what_it_leaves_out() -> None:
    assert len(COMPAT_FILES) >= 4
    for name in COMPAT_FILES:
        original = _plain(name)["original"]
        assert len(original["revision"]) == 40
        assert original["not_covered"], name
        for entry in original["not_covered"]:
            assert entry["operation"] and len(entry["why"]) > 20


def test_a_negative_no_model_accounts_for_stops_generation() -> None:
    file = next(f for f in catalog.generate_all(self_check=False)
                if f.file_name == "keypair-publication.fxakeys.yaml")
    stray = Case(id="stray", comment="a new kind of negative", flags=(), requirements=("KP-13",),
                 operation="fxakeys-something-new", inputs={}, failure=Failure("decode", "x"))
    with pytest.raises(originals.OriginalsError, match="no model of what tarekziade/fxakeys"):
        originals.annotate(replace(file, cases=[*file.cases, stray], original=None))


def test_a_valid_case_the_original_would_compute_differently_stops_generation() -> None:
    file = next(f for f in catalog.generate_all(self_check=False)
                if f.file_name == "key-derivation.fxakeys.yaml")
    first = file.cases[0]
    wrong = replace(first, outputs={"kbr": bytes(32)})
    with pytest.raises(originals.OriginalsError, match="the original computes kbr"):
        originals.annotate(replace(file, cases=[wrong, *file.cases[1:]]))


# --- the models stand for real library behaviour --------------------------------------------

@pytest.mark.parametrize("text", ["aGVsbG8gd29ybGQ=", "aGVs\nbG8g\r\nd29ybGQ=", "AAAA", ""])
def test_go_base64_accepts_what_go_accepts(text: str) -> None:
    # Go's DecodeString skips CR and LF anywhere, then decodes padded standard base64.
    expected = base64.b64decode(text.replace("\n", "").replace("\r", ""))
    assert originals.go_base64_decode(text, originals._STD) == expected


@pytest.mark.parametrize("text", ["aGVsbG8gd29ybGQ", "aGVsbG8g d29ybGQ=", "aGVs!G8=",
                                  "aGVsbG8-d29y", "aG=VsbG8="])
def test_go_base64_refuses_what_go_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        originals.go_base64_decode(text, originals._STD)


def test_go_base64_url_alphabet_refuses_the_standard_one() -> None:
    assert originals.go_base64_decode("-_8=", originals._URL) == base64.urlsafe_b64decode("-_8=")
    with pytest.raises(ValueError):
        originals.go_base64_decode("+/8=", originals._URL)


def test_binascii_reads_upper_case_hex_as_the_original_did() -> None:
    # The reason the upper-case negatives are flagged: the original's decoder takes them.
    assert binascii.unhexlify("ABCDEF") == binascii.unhexlify("abcdef")
    with pytest.raises(binascii.Error):
        binascii.unhexlify("ab cd")
