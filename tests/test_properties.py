"""Properties of the two foundation flows, the encoding and the DRBG (hypothesis).

- seal_record / open_record round-trip for any keys, versions and identifiers;
- a single bit flipped anywhere in a protected byte of a record is rejected, and with the
  failure class of the check that protects that byte;
- base64url round-trips and accepts exactly one text per value;
- every derivation is domain-separated (client_id, label);
- the DRBG is deterministic and independent of how the stream is consumed.

Argon2id runs only through the vector generator's memoised `stretch`, once per test run.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from keyflows.spec import key_derivation as kd
from keyflows.spec import keypair_publication as kp
from keyflows.spec.drbg import Drbg
from keyflows.spec.encoding import b64url_decode, b64url_encode, labelled_context
from keyflows.spec.errors import DecodeError, SpecError
from keyflows.vectors.key_derivation import stretch

IDENT_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._~-"
IDENT = st.text(alphabet=IDENT_CHARS, min_size=1, max_size=64)
KEY32 = st.binary(min_size=32, max_size=32)
NONCE = st.binary(min_size=12, max_size=12)
VERSION = st.integers(min_value=1, max_value=kp.MAX_KEY_VERSION)
SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# One password key stretched once; its HKDF step still binds every user and client.
PASSWORD = "correct horse battery staple"
SALT = bytes(range(16))


def password_kek(user_id: str, client_id: str) -> bytes:
    return kd.password_key_from_stretched(stretch(PASSWORD, SALT, kd.PRODUCER_MINIMUM),
                                          user_id, client_id)


def seal(user_id: str, client_id: str, version: int, x: bytes, e: bytes, nonce: bytes,
         kb: bytes | None) -> tuple[dict[str, Any], bytes, kp.PrivateKeys]:
    private = kp.PrivateKeys(x25519=x, ed25519_seed=e)
    if kb is not None:
        kek, spec = kd.application_key(kb, client_id), kp.KekSpec(method=kp.METHOD_APPLICATION_KEY)
    else:
        kek = password_kek(user_id, client_id)
        spec = kp.KekSpec(method=kp.METHOD_PASSWORD, salt=SALT, params=kd.PRODUCER_MINIMUM)
    sealed = kp.seal_record(user_id=user_id, client_id=client_id, key_version=version,
                            private=private, kek=kek, kek_spec=spec, nonce=nonce,
                            z=nonce * 5 + nonce[:4])
    return sealed.record, kek, private


def rejection(call: Any) -> SpecError:
    with pytest.raises(SpecError) as raised:
        call()
    return raised.value


# --- round trip -----------------------------------------------------------------------------

@SETTINGS
@given(IDENT, IDENT, VERSION, KEY32, KEY32, NONCE, st.one_of(st.none(), KEY32))
def test_seal_open_round_trip(user_id: str, client_id: str, version: int, x: bytes, e: bytes,
                              nonce: bytes, kb: bytes | None) -> None:
    record, kek, private = seal(user_id, client_id, version, x, e, nonce, kb)
    assert kp.open_record(record, user_id=user_id, client_id=client_id, kek=kek,
                          key_version=version) == private
    parsed = kp.validate_publication(record, user_id=user_id, client_id=client_id)
    assert parsed.key_version == version
    view = kp.public_view(record)
    assert "encrypted_private_keys" not in view
    kp.validate_public_view(view, user_id=user_id, client_id=client_id)


# --- every protected byte is protected, by the right check ------------------------------------

FIELDS = {
    "x25519": ("public_keys", "x25519"),
    "ed25519": ("public_keys", "ed25519"),
    "binding_signature": ("binding_signature",),
    "nonce": ("encrypted_private_keys", "nonce"),
    "ciphertext": ("encrypted_private_keys", "ciphertext"),
}


def expected_class(field: str, index: int, bit: int) -> str:
    """The check that must reject a flip, decided from the field alone."""
    if field == "x25519":
        # Bit 255 makes the encoding non-canonical; any other flip yields another valid
        # point (a low-order or >= p result has negligible probability) that the
        # signature no longer covers.
        return "point" if (index, bit) == (31, 7) else "signature"
    if field == "binding_signature":
        return "signature"
    return "aead"  # nonce and ciphertext are protected by the AEAD alone


_P = 2**255 - 19
_D = -121665 * pow(121666, _P - 2, _P) % _P


def decodes_to_point(encoding: bytes) -> bool:
    """RFC 8032 section 5.1.3 decoding, with y >= p and a signed x = 0 refused (the
    strict rule of HC-35): an independent check of what the key check must decide."""
    value = int.from_bytes(encoding, "little")
    y, sign = value & ((1 << 255) - 1), value >> 255
    if y >= _P:
        return False
    u, v = (y * y - 1) % _P, (_D * y * y + 1) % _P
    x = u * pow(v, 3, _P) * pow(u * pow(v, 7, _P), (_P - 5) // 8, _P) % _P
    if (v * x * x - u) % _P and (v * x * x + u) % _P:
        return False
    return not (x == 0 and sign)


@SETTINGS
@given(IDENT, IDENT, VERSION, KEY32, KEY32, NONCE, KEY32,
       st.sampled_from(sorted(FIELDS)), st.data())
def test_any_bit_flip_is_rejected_by_the_protecting_check(
        user_id: str, client_id: str, version: int, x: bytes, e: bytes, nonce: bytes,
        kb: bytes, field: str, data: st.DataObject) -> None:
    record, kek, _ = seal(user_id, client_id, version, x, e, nonce, kb)
    path = FIELDS[field]
    parent = record
    for key in path[:-1]:
        parent = parent[key]
    raw = bytearray(b64url_decode(parent[path[-1]]))
    index = data.draw(st.integers(0, len(raw) - 1), label="byte")
    bit = data.draw(st.integers(0, 7), label="bit")
    raw[index] ^= 1 << bit
    parent[path[-1]] = b64url_encode(bytes(raw))
    error = rejection(lambda: kp.open_record(record, user_id=user_id, client_id=client_id,
                                             kek=kek))
    expected = expected_class(field, index, bit)
    if field == "ed25519":  # HC-35: the key check refuses a flip that leaves the curve
        expected = "signature" if decodes_to_point(bytes(raw)) else "point"
    assert error.failure_class == expected, (field, index, bit, error)


@SETTINGS
@given(IDENT, IDENT, VERSION, KEY32, KEY32, NONCE, KEY32, IDENT, IDENT, VERSION)
def test_changed_context_is_rejected(user_id: str, client_id: str, version: int, x: bytes,
                                     e: bytes, nonce: bytes, kb: bytes, other_user: str,
                                     other_client: str, other_version: int) -> None:
    assume(other_user != user_id and other_client != client_id and other_version != version)
    record, kek, _ = seal(user_id, client_id, version, x, e, nonce, kb)
    for member, value in (("user_id", other_user), ("client_id", other_client),
                          ("key_version", other_version)):
        changed = {**copy.deepcopy(record), member: value}
        expect_user = other_user if member == "user_id" else user_id
        expect_client = other_client if member == "client_id" else client_id
        # The verifier expects what the record now says: the signature no longer covers it.
        error = rejection(lambda changed=changed, u=expect_user, c=expect_client:
                          kp.open_record(changed, user_id=u, client_id=c, kek=kek))
        assert error.failure_class == "signature", (member, error)
    # An intact record opened under another expectation is a binding failure.
    for kwargs in ({"user_id": other_user, "client_id": client_id},
                   {"user_id": user_id, "client_id": other_client}):
        error = rejection(lambda kwargs=kwargs: kp.open_record(record, kek=kek, **kwargs))
        assert error.failure_class == "binding" and error.requirement == "KP-7"
    error = rejection(lambda: kp.open_record(record, user_id=user_id, client_id=client_id,
                                             kek=kek, key_version=other_version))
    assert error.failure_class == "binding" and error.requirement == "KP-6"


@SETTINGS
@given(IDENT, IDENT, VERSION, KEY32, KEY32, NONCE, KEY32, KEY32)
def test_wrong_kek_is_an_aead_failure(user_id: str, client_id: str, version: int, x: bytes,
                                      e: bytes, nonce: bytes, kb: bytes, other_kb: bytes) -> None:
    assume(kb != other_kb)
    record, _, _ = seal(user_id, client_id, version, x, e, nonce, kb)
    wrong = kd.application_key(other_kb, client_id)
    error = rejection(lambda: kp.open_record(record, user_id=user_id, client_id=client_id,
                                             kek=wrong))
    assert error.failure_class == "aead"


# --- base64url --------------------------------------------------------------------------------

B64_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=100))
def test_b64url_round_trip_and_single_text_form(data: bytes) -> None:
    text = b64url_encode(data)
    assert "=" not in text and "+" not in text and "/" not in text
    assert b64url_decode(text) == data
    if len(data) % 3:
        with pytest.raises(DecodeError):
            b64url_decode(text + "=" * (-len(text) % 4))  # padded
        # Non-zero unused trailing bits decode to the same bytes elsewhere: refused.
        last = B64_ALPHABET[B64_ALPHABET.index(text[-1]) | 1]
        with pytest.raises(DecodeError):
            b64url_decode(text[:-1] + last)
    standard = text.replace("-", "+").replace("_", "/")
    if standard != text:
        with pytest.raises(DecodeError):
            b64url_decode(standard)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40))
def test_b64url_decode_accepts_only_canonical_text(text: str) -> None:
    try:
        data = b64url_decode(text)
    except DecodeError:
        return
    assert b64url_encode(data) == text


# --- domain separation ---------------------------------------------------------------------------

@SETTINGS
@given(KEY32, IDENT, IDENT)
def test_kbr_differs_per_client_id(kb: bytes, client_a: str, client_b: str) -> None:
    assume(client_a != client_b)
    assert kd.application_key(kb, client_a) != kd.application_key(kb, client_b)
    assert kd.fxakeys_application_key(kb, client_a) != kd.fxakeys_application_key(kb, client_b)
    assert kd.application_key(kb, client_a) != kd.fxakeys_application_key(kb, client_a)


@SETTINGS
@given(KEY32, st.lists(st.binary(max_size=20), max_size=3))
def test_every_label_derives_a_different_key(ikm: bytes, fields: list[bytes]) -> None:
    keys = {label: kd.labelled_hkdf(ikm, label, *fields) for label in kd.LABELS}
    assert len(set(keys.values())) == len(keys)


@SETTINGS
@given(IDENT, IDENT)
def test_password_key_binds_user_and_client(user_id: str, client_id: str) -> None:
    assume(user_id != client_id)
    assert password_kek(user_id, client_id) != password_kek(client_id, user_id)


@SETTINGS
@given(st.binary(max_size=10), st.binary(max_size=10), st.binary(max_size=10),
       st.binary(max_size=10))
def test_labelled_context_is_injective(a: bytes, b: bytes, c: bytes, d: bytes) -> None:
    assume((a, b) != (c, d))
    assert labelled_context("x", a, b) != labelled_context("x", c, d)


# --- DRBG ----------------------------------------------------------------------------------------

@SETTINGS
@given(st.text(max_size=30), st.lists(st.integers(0, 70), max_size=6))
def test_drbg_is_deterministic_and_chunking_free(label: str, sizes: list[int]) -> None:
    chunks = Drbg(label)
    joined = b"".join(chunks(n) for n in sizes)
    assert joined == Drbg(label)(sum(sizes))
    assert Drbg(label)(64) == Drbg(label)(64)


@SETTINGS
@given(st.text(max_size=30), st.text(max_size=30))
def test_drbg_labels_and_forks_are_separate(label: str, other: str) -> None:
    assume(label != other)
    assert Drbg(label)(32) != Drbg(other)(32)
    assert Drbg(label).fork("a")(32) == Drbg(f"{label}/a")(32)
    assert Drbg(label).fork("a")(32) != Drbg(label)(32)
