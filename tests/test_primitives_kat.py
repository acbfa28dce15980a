"""External known-answer tests for keyflows.spec.primitives (and base64url).

Every expected value here comes from a published source: a file under tests/kat/
(provenance in tests/kat/README.md) or an inline constant whose source is cited next to
it. Nothing is computed by this project's code and pasted back.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from keyflows.spec import primitives as P
from keyflows.spec.encoding import b64url_decode, b64url_encode
from keyflows.spec.errors import (
    AeadError,
    DecodeError,
    LengthError,
    ParamsError,
    PointError,
    SignatureError,
    SpecError,
)

KAT = Path(__file__).parent / "kat"


def _h(text: str) -> bytes:
    return bytes.fromhex(text)


def _nist_blocks(name: str, start: str = "count") -> Iterator[dict[str, str]]:
    """Records of a NIST/pyca `KEY = value` file; each begins at a `start` key line.

    Blank lines and `#` comments are ignored (the pyca loaders do the same: RFC 5869
    cases have a blank line inside them). Bracketed section headers (`[IVlen = 96]`) are
    merged into the records that follow; a bare word line (`FAIL`) becomes a key with an
    empty value.
    """
    section: dict[str, str] = {}
    record: dict[str, str] = {}
    for raw in (KAT / name).read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            if record:
                yield {**section, **record}
                record = {}
            key, _, value = line.strip("[]").partition("=")
            section[key.strip().lower()] = value.strip()
            continue
        key, sep, value = line.partition("=")
        key = key.strip().lower()
        if key == start and record:
            yield {**section, **record}
            record = {}
        record[key] = value.strip() if sep else ""
    if record:
        yield {**section, **record}


def _json(name: str) -> Any:
    return json.loads((KAT / name).read_text())


# === SHA-2: FIPS 180-2 examples (as carried by CPython Lib/test/test_hashlib.py) =========

# FIPS 180-2 Appendix B (SHA-256) and Appendix C (SHA-512): one-block, multi-block and
# the one-million-'a' messages.
SHA256_FIPS180_2 = [
    (b"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
    (b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
     "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"),
    (b"a" * 1_000_000, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"),
]
SHA512_FIPS180_2 = [
    (b"abc",
     "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a"
     "2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f"),
    (b"abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmn"
     b"hijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu",
     "8e959b75dae313da8cf4f72814fc143f8f7779c6eb9f7fa17299aeadb6889018"
     "501d289e4900f7e4331b99dec4b5433ac7d329eeb6dd26545e96e55b874be909"),
    (b"a" * 1_000_000,
     "e718483d0ce769644e2e42c7bc15b4638e1f98b13b2044285632a803afa973eb"
     "de0ff244877ea60a4cb0432ce577c31beb009c5c2c49aa2e4eadb217ad8cc09b"),
]


@pytest.mark.parametrize(("message", "digest"), SHA256_FIPS180_2, ids=["abc", "2block", "1M"])
def test_sha256_fips180_2(message: bytes, digest: str) -> None:
    assert P.sha256(message) == _h(digest)


@pytest.mark.parametrize(("message", "digest"), SHA512_FIPS180_2, ids=["abc", "2block", "1M"])
def test_sha512_fips180_2(message: bytes, digest: str) -> None:
    assert P.sha512(message) == _h(digest)


# === HMAC-SHA256: RFC 4231 section 4 =======================================================

HMAC_CASES = list(_nist_blocks("rfc4231_hmac_sha256.txt", start="len"))


def test_hmac_rfc4231_case_count() -> None:
    assert len(HMAC_CASES) == 6  # test cases 1-4, 6, 7 (5 is the truncation case)


@pytest.mark.parametrize("case", HMAC_CASES, ids=lambda c: f"len{c['len']}")
def test_hmac_sha256_rfc4231(case: dict[str, str]) -> None:
    assert P.hmac_sha256(_h(case["key"]), _h(case["msg"])) == _h(case["md"])
    # Both implementations the module can run on (the binding's HMAC object, hmac.digest).
    assert P._stdlib_hmac_sha256(_h(case["key"]), _h(case["msg"])) == _h(case["md"])


# === HKDF-SHA256: RFC 5869 Appendix A.1-A.3 ================================================

HKDF_CASES = list(_nist_blocks("rfc5869_hkdf_sha256.txt"))


def test_hkdf_rfc5869_case_count() -> None:
    assert [c["count"] for c in HKDF_CASES] == ["1", "2", "3"]


@pytest.mark.parametrize("case", HKDF_CASES, ids=lambda c: f"A.{c['count']}")
def test_hkdf_rfc5869(case: dict[str, str]) -> None:
    ikm, salt, info = _h(case["ikm"]), _h(case["salt"]), _h(case["info"])
    length = int(case["l"])
    prk = P.hkdf_extract(salt, ikm)
    assert prk == _h(case["prk"])
    assert P.hkdf_expand(prk, info, length) == _h(case["okm"])
    assert P.hkdf_sha256(ikm, salt, info, length) == _h(case["okm"])


def test_hkdf_empty_salt_is_hashlen_zeros() -> None:
    # RFC 5869 A.3 uses a zero-length salt; section 2.2 says it stands for HashLen zeros.
    case = HKDF_CASES[2]
    assert case["salt"] == ""
    assert P.hkdf_extract(bytes(32), _h(case["ikm"])) == _h(case["prk"])


@pytest.mark.parametrize("length", [0, -1, 255 * 32 + 1])
def test_hkdf_expand_length_out_of_range(length: int) -> None:
    with pytest.raises(ParamsError):
        P.hkdf_expand(bytes(32), b"", length)


def test_hkdf_expand_max_length() -> None:
    assert len(P.hkdf_expand(bytes(32), b"", 255 * 32)) == 255 * 32


# === X25519: RFC 7748 ======================================================================

X25519_RFC7748_52 = list(_nist_blocks("rfc7748_x25519.txt"))
# RFC 7748 section 5.2, iterated test: k = u = 9, after 1 and after 1,000 iterations.
# The 1-iteration value is COUNT = 3 of rfc7748_x25519.txt; the 1,000-iteration value is
# the RFC's published one (section 5.2, "After 1,000 iterations").
X25519_ITER_1 = "422c8e7a6227d7bca1350b3e2bb7279f7897b87bb6854b783c60e80311ae3079"
X25519_ITER_1000 = "684cf59ba83309552800ef566f2f4d3c1c3887c49360e3875f2eb94d99532c51"
SODIUM = _json("libsodium_secretbox_scalarmult.json")
DH = SODIUM["scalarmult"]  # RFC 7748 section 6.1 via libsodium test/default/scalarmult


@pytest.mark.parametrize("case", X25519_RFC7748_52, ids=lambda c: f"count{c['count']}")
def test_x25519_rfc7748_5_2(case: dict[str, str]) -> None:
    scalar, u, out = _h(case["input_scalar"]), _h(case["input_u"]), _h(case["output_u"])
    assert P.x25519_raw(scalar, u) == out
    if P.x25519_is_canonical(u):
        assert P.x25519(scalar, u) == out
    else:
        # The second 5.2 vector's u has its top bit set: the RFC function masks it, the
        # checked v1 DH refuses the non-canonical encoding.
        with pytest.raises(PointError):
            P.x25519(scalar, u)


def test_x25519_rfc7748_5_2_top_bit_vector_is_the_masked_one() -> None:
    second = X25519_RFC7748_52[1]
    u = bytearray(_h(second["input_u"]))
    assert u[31] & 0x80
    u[31] &= 0x7F
    assert P.x25519(_h(second["input_scalar"]), bytes(u)) == _h(second["output_u"])


@pytest.mark.parametrize("dh", [P.x25519_raw, P.x25519], ids=["raw", "checked"])
def test_x25519_rfc7748_5_2_iterated(dh: Any) -> None:
    k = u = _h("09" + "00" * 31)
    for i in range(1000):
        k, u = dh(k, u), k
        if i == 0:
            assert k == _h(X25519_ITER_1)
    assert k == _h(X25519_ITER_1000)


def test_x25519_rfc7748_6_1_public_keys() -> None:
    assert P.x25519_public_key(_h(DH["alice_private"])) == _h(DH["alice_public"])
    assert P.x25519_public_key(_h(DH["bob_private"])) == _h(DH["bob_public"])
    base = _h("09" + "00" * 31)
    assert P.x25519_raw(_h(DH["alice_private"]), base) == _h(DH["alice_public"])


def test_x25519_rfc7748_6_1_shared_secret() -> None:
    a, b = _h(DH["alice_private"]), _h(DH["bob_private"])
    a_pub, b_pub = _h(DH["alice_public"]), _h(DH["bob_public"])
    assert P.x25519(a, b_pub) == _h(DH["shared"])
    assert P.x25519(b, a_pub) == _h(DH["shared_bob_side"])
    assert P.x25519_raw(a, b_pub) == _h(DH["shared"])
    assert P.x25519_raw(b, a_pub) == _h(DH["shared"])


def test_x25519_keypair_exchange_rfc7748_6_1() -> None:
    a, b = _h(DH["alice_private"]), _h(DH["bob_private"])
    a_pub, b_pub = _h(DH["alice_public"]), _h(DH["bob_public"])
    assert P.x25519_keypair_exchange(a, b_pub) == (a_pub, _h(DH["shared"]))
    assert P.x25519_keypair_exchange(b, a_pub) == (b_pub, _h(DH["shared"]))


def test_x25519_keypair_exchange_rejects_what_x25519_rejects() -> None:
    a = _h(DH["alice_private"])
    for u in sorted(P.X25519_LOW_ORDER_U):
        with pytest.raises(PointError) as info:
            P.x25519_keypair_exchange(a, u.to_bytes(32, "little"), requirement="ENV-5")
        assert info.value.requirement == "ENV-5"
    with pytest.raises(PointError):
        P.x25519_keypair_exchange(a, (P.X25519_P + 9).to_bytes(32, "little"))
    with pytest.raises(LengthError):
        P.x25519_keypair_exchange(a[:31], _h(DH["bob_public"]))
    with pytest.raises(LengthError):
        P.x25519_keypair_exchange(a, _h(DH["bob_public"])[:31])


def test_x25519_top_bit_flipped_libsodium() -> None:
    # libsodium scalarmult.exp line 5: the RFC function ignores the top bit ...
    a_pub = bytearray(_h(DH["alice_public"]))
    a_pub[31] ^= 0x80
    b = _h(DH["bob_private"])
    assert P.x25519_raw(b, bytes(a_pub)) == _h(DH["shared_alice_public_top_bit_flipped"])
    # ... the checked v1 DH refuses the non-canonical encoding.
    assert not P.x25519_is_canonical(bytes(a_pub))
    with pytest.raises(PointError):
        P.x25519(b, bytes(a_pub))


# Low-order u-coordinates: the encodings in libsodium's has_small_order() blacklist
# (src/libsodium/crypto_scalarmult/curve25519/ref10/x25519_ref10.c, vendored in PyNaCl
# 1.6.2): 0, 1, the two order-8 points, p-1, and the non-canonical p (=0) and p+1 (=1).
LOW_ORDER_ENCODINGS = {
    "0": "0000000000000000000000000000000000000000000000000000000000000000",
    "1": "0100000000000000000000000000000000000000000000000000000000000000",
    "order8a": "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
    "order8b": "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
    "p-1": "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "p": "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "p+1": "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
}
CANONICAL_LOW_ORDER = {"0", "1", "order8a", "order8b", "p-1"}


def _with_top_bit(encoded: str) -> bytes:
    raw = bytearray(_h(encoded))
    raw[31] |= 0x80
    return bytes(raw)


LOW_ORDER_CASES = [(name, _h(enc), name in CANONICAL_LOW_ORDER)
                   for name, enc in LOW_ORDER_ENCODINGS.items()]
LOW_ORDER_CASES += [(name + "|top", _with_top_bit(enc), False)
                    for name, enc in LOW_ORDER_ENCODINGS.items()]
# Scalars: the RFC 7748 5.2 scalars and the 6.1 private keys (arbitrary, published).
SCALARS = [_h(c["input_scalar"]) for c in X25519_RFC7748_52[:2]]
SCALARS += [_h(DH["alice_private"]), _h(DH["bob_private"])]


def test_x25519_low_order_u_values_match_the_libsodium_encodings() -> None:
    decoded = {(int.from_bytes(_h(e), "little") & ((1 << 255) - 1)) % P.X25519_P
               for e in LOW_ORDER_ENCODINGS.values()}
    assert decoded == set(P.X25519_LOW_ORDER_U)


@pytest.mark.parametrize(("name", "public", "canonical"), LOW_ORDER_CASES,
                         ids=[c[0] for c in LOW_ORDER_CASES])
def test_x25519_low_order_points(name: str, public: bytes, canonical: bool) -> None:
    assert P.x25519_is_low_order(public)
    assert P.x25519_is_canonical(public) is canonical
    for scalar in SCALARS:
        assert P.x25519_raw(scalar, public) == bytes(32)
        with pytest.raises(PointError):
            P.x25519(scalar, public)
    with pytest.raises(PointError):
        P.check_x25519_public_key(public, requirement="KP-5")


@pytest.mark.parametrize(("name", "public", "canonical"), LOW_ORDER_CASES,
                         ids=[c[0] for c in LOW_ORDER_CASES])
def test_the_backend_refuses_an_all_zero_x25519_secret(name: str, public: bytes,
                                                      canonical: bool) -> None:
    # The zero-secret check (RFC 7748 section 6.1, RFC 9180 section 7.1.4) is the point
    # check: the checked X25519 functions refuse these keys (PointError) before any DH,
    # and no other key gives a zero secret (test_wycheproof_x25519). Pin that the backend
    # would refuse the zero secret too, were a low-order key ever to reach it.
    for scalar in SCALARS:
        key = X25519PrivateKey.from_private_bytes(scalar)
        with pytest.raises(ValueError):
            key.exchange(X25519PublicKey.from_public_bytes(public))


def test_x25519_point_error_carries_requirement() -> None:
    with pytest.raises(PointError) as info:
        P.check_x25519_public_key(bytes(32), requirement="KP-5")
    assert info.value.requirement == "KP-5"
    assert info.value.failure_class == "point"


@pytest.mark.parametrize("length", [0, 31, 33, 64])
def test_x25519_lengths(length: int) -> None:
    good = _h(DH["bob_public"])
    with pytest.raises(LengthError):
        P.check_x25519_public_key(bytes(length))
    with pytest.raises(LengthError):
        P.x25519(_h(DH["alice_private"]), bytes(length))
    with pytest.raises(LengthError):
        P.x25519(bytes(length), good)
    with pytest.raises(LengthError):
        P.x25519_public_key(bytes(length))
    with pytest.raises(LengthError):
        P.x25519_raw(bytes(length), good)
    assert not P.x25519_is_canonical(bytes(length))
    assert not P.x25519_is_low_order(bytes(length))


def test_x25519_canonical_boundary() -> None:
    # p-1 is the largest canonical u; p and 2^255-1 (all ones but the top bit) are not.
    assert P.x25519_is_canonical(_h(LOW_ORDER_ENCODINGS["p-1"]))
    assert not P.x25519_is_canonical(_h(LOW_ORDER_ENCODINGS["p"]))
    assert not P.x25519_is_canonical(_h("ff" * 31 + "7f"))


# --- Wycheproof x25519_test.json (filtered subset) -----------------------------------------

WYCHEPROOF_X25519 = _json("wycheproof_x25519_edge.json")
X25519_TESTS = [t for g in WYCHEPROOF_X25519["testGroups"] for t in g["tests"]]
_REJECT_FLAGS = {"LowOrderPublic", "ZeroSharedSecret", "NonCanonicalPublic"}


def test_wycheproof_x25519_subset_header() -> None:
    assert WYCHEPROOF_X25519["algorithm"] == "XDH"
    assert WYCHEPROOF_X25519["numberOfTests"] == len(X25519_TESTS)
    assert {g["curve"] for g in WYCHEPROOF_X25519["testGroups"]} == {"curve25519"}
    assert sum("ZeroSharedSecret" in t["flags"] for t in X25519_TESTS) >= 20


@pytest.mark.parametrize("case", X25519_TESTS, ids=lambda t: f"tc{t['tcId']}")
def test_wycheproof_x25519(case: dict[str, Any]) -> None:
    private, public, shared = _h(case["private"]), _h(case["public"]), _h(case["shared"])
    flags = set(case["flags"])
    assert case["result"] in {"valid", "acceptable"}
    # The bare RFC 7748 function reproduces every published result, zero ones included.
    assert P.x25519_raw(private, public) == shared
    assert P.x25519_is_low_order(public) == ("ZeroSharedSecret" in flags)
    if flags & _REJECT_FLAGS:
        assert not P.x25519_is_canonical(public) or P.x25519_is_low_order(public)
        with pytest.raises(PointError):
            P.x25519(private, public)
    else:
        assert P.x25519(private, public) == shared


# === Ed25519: RFC 8032 section 7.1 =========================================================

def _rfc8032_from_sign_input() -> list[tuple[str, bytes, bytes, bytes, bytes]]:
    # djb's sign.input format: sk||pk : pk : msg : sig||msg
    out = []
    for name, line in zip(("TEST 1", "TEST 2", "TEST 3", "TEST 1024"),
                          (KAT / "ed25519_sign_input_rfc8032.txt").read_text().splitlines(),
                          strict=True):
        sk_pk, pk, msg, sig_msg = line.split(":")[:4]
        out.append((name, _h(sk_pk[:64]), _h(pk), _h(msg), _h(sig_msg[:128])))
    return out


# RFC 8032 section 7.1, TEST SHA(abc): the message is SHA-512("abc") (FIPS 180-2).
ED25519_SHA_ABC = (
    "TEST SHA(abc)",
    _h("833fe62409237b9d62ec77587520911e9a759cec1d19755b7da901b96dca3d42"),
    _h("ec172b93ad5e563bf4932c70e1245034c35467ef2efd4d64ebf819683467e2bf"),
    _h("ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a"
       "2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f"),
    _h("dc2a4459e7369633a52b1bf277839a00201009a3efbf3ecb69bea2186c26b589"
       "09351fc9ac90b3ecfdfbc7c66431e0303dca179c138ac17ad9bef1177331a704"),
)
ED25519_RFC8032 = [*_rfc8032_from_sign_input(), ED25519_SHA_ABC]


def test_ed25519_rfc8032_vector_shapes() -> None:
    lengths = {name: len(msg) for name, _, _, msg, _ in ED25519_RFC8032}
    assert lengths == {"TEST 1": 0, "TEST 2": 1, "TEST 3": 2, "TEST 1024": 1023,
                       "TEST SHA(abc)": 64}
    # RFC 8032 TEST 1 public key, as printed in the RFC.
    assert ED25519_RFC8032[0][2] == _h(
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
    assert ED25519_SHA_ABC[3] == _h(SHA512_FIPS180_2[0][1])


@pytest.mark.parametrize(("name", "seed", "public", "message", "signature"), ED25519_RFC8032,
                         ids=[v[0] for v in ED25519_RFC8032])
def test_ed25519_rfc8032(name: str, seed: bytes, public: bytes, message: bytes,
                         signature: bytes) -> None:
    assert P.ed25519_public_key(seed) == public
    assert P.ed25519_sign(seed, message) == signature
    P.ed25519_verify(public, message, signature)


@pytest.mark.parametrize(("name", "seed", "public", "message", "signature"), ED25519_RFC8032,
                         ids=[v[0] for v in ED25519_RFC8032])
def test_ed25519_rfc8032_tampering(name: str, seed: bytes, public: bytes, message: bytes,
                                   signature: bytes) -> None:
    for i in (0, 31, 32, 63):  # R and S halves, first and last byte
        bad = bytearray(signature)
        bad[i] ^= 0x01
        with pytest.raises(SignatureError):
            P.ed25519_verify(public, message, bytes(bad), requirement="KP-7")
    if message:
        bad_msg = bytearray(message)
        bad_msg[-1] ^= 0x80
        with pytest.raises(SignatureError):
            P.ed25519_verify(public, bytes(bad_msg), signature)
    with pytest.raises(SignatureError):
        P.ed25519_verify(public, message + b"\x00", signature)
    other = ED25519_RFC8032[(ED25519_RFC8032.index(
        (name, seed, public, message, signature)) + 1) % len(ED25519_RFC8032)][2]
    with pytest.raises(SignatureError):
        P.ed25519_verify(other, message, signature)


def test_ed25519_signature_error_carries_requirement() -> None:
    _, _, public, message, signature = ED25519_RFC8032[0]
    with pytest.raises(SignatureError) as info:
        P.ed25519_verify(public, message + b"x", signature, requirement="KP-7")
    assert info.value.requirement == "KP-7"
    assert info.value.failure_class == "signature"


@pytest.mark.parametrize("length", [0, 31, 33, 63, 65])
def test_ed25519_lengths(length: int) -> None:
    _, _, public, message, signature = ED25519_RFC8032[0]
    if length != 32:
        with pytest.raises(LengthError):
            P.ed25519_verify(bytes(length), message, signature)
        with pytest.raises(LengthError):
            P.ed25519_public_key(bytes(length))
        with pytest.raises(LengthError):
            P.ed25519_sign(bytes(length), message)
    with pytest.raises(LengthError):
        P.ed25519_verify(public, message, signature[:length] + bytes(max(0, length - 64)))


# --- Wycheproof ed25519_test.json ----------------------------------------------------------

WYCHEPROOF_ED25519 = _json("wycheproof_ed25519.json")
ED25519_TESTS = [(g["publicKey"]["pk"], t) for g in WYCHEPROOF_ED25519["testGroups"]
                 for t in g["tests"]]


def test_wycheproof_ed25519_header() -> None:
    assert WYCHEPROOF_ED25519["algorithm"] == "EDDSA"
    assert WYCHEPROOF_ED25519["numberOfTests"] == len(ED25519_TESTS)


def _libsodium_verifies(public: bytes, message: bytes, signature: bytes) -> bool:
    """libsodium's crypto_sign_verify_detached (through PyNaCl): the strict rule's peer."""
    import nacl.exceptions
    import nacl.signing

    try:
        nacl.signing.VerifyKey(public).verify(message, signature)
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError, ValueError):
        return False
    return True


def _strict_verdict(public: bytes, message: bytes, signature: bytes) -> str:
    try:
        P.ed25519_verify(public, message, signature)
    except SpecError as exc:
        return exc.failure_class
    return "valid"


@pytest.mark.parametrize(("pk", "case"), ED25519_TESTS, ids=[f"tc{t['tcId']}"
                                                             for _, t in ED25519_TESTS])
def test_wycheproof_ed25519(pk: str, case: dict[str, Any]) -> None:
    public, message, signature = _h(pk), _h(case["msg"]), _h(case["sig"])
    if case["result"] == "valid":
        P.ed25519_verify(public, message, signature)
    elif case["result"] == "invalid":
        # Truncated or padded signatures stop at the length check, the rest at
        # verification; either way the input is refused.
        with pytest.raises((SignatureError, LengthError, PointError)):
            P.ed25519_verify(public, message, signature)
    elif "SmallOrderPublicKey" in case["flags"]:
        # "acceptable" to Wycheproof; the strict rule (HC-35) refuses small-order keys.
        with pytest.raises(PointError):
            P.ed25519_verify(public, message, signature)
    else:  # MixedOrderPublicKey: the strict rule accepts mixed order, as libsodium does
        assert "MixedOrderPublicKey" in case["flags"]
        P.ed25519_verify(public, message, signature)


@pytest.mark.parametrize(("pk", "case"), ED25519_TESTS, ids=[f"tc{t['tcId']}"
                                                             for _, t in ED25519_TESTS])
def test_wycheproof_ed25519_agrees_with_libsodium(pk: str, case: dict[str, Any]) -> None:
    public, message, signature = _h(pk), _h(case["msg"]), _h(case["sig"])
    if len(public) != 32 or len(signature) != 64:
        return  # libsodium's API takes fixed sizes; the length checks are tested above
    ours = _strict_verdict(public, message, signature) == "valid"
    assert ours == _libsodium_verifies(public, message, signature)


# --- "Taming the many EdDSAs" (ed25519-speccheck) under the strict rule ---------------------

SPECCHECK = _json("ed25519_speccheck.json")


def test_speccheck_file_shape() -> None:
    assert SPECCHECK["source"]["commit"] == "65519336fda78a3d016e947df6d82848aca0c9da"
    assert [c["index"] for c in SPECCHECK["cases"]] == list(range(12))
    assert [c["keyflows"]["result"] for c in SPECCHECK["cases"]].count("valid") == 1


@pytest.mark.parametrize("case", SPECCHECK["cases"], ids=lambda c: f"case{c['index']}")
def test_speccheck_strict_verdict(case: dict[str, Any]) -> None:
    """Each case gets the committed verdict and failure class, and libsodium agrees."""
    public, message, signature = _h(case["pub_key"]), _h(case["message"]), _h(case["signature"])
    expected = case["keyflows"]
    verdict = _strict_verdict(public, message, signature)
    assert verdict == ("valid" if expected["result"] == "valid" else expected["failure_class"])
    assert _libsodium_verifies(public, message, signature) == (verdict == "valid")


# Curve arithmetic for the tests only (affine twisted Edwards, RFC 8032 section 5.1), so
# the small-order list is checked by an implementation independent of the one under test.
_EP = 2**255 - 19
_ED = -121665 * pow(121666, _EP - 2, _EP) % _EP


def _decode_point(encoding: bytes) -> tuple[int, int]:
    value = int.from_bytes(encoding, "little")
    y, sign = value & ((1 << 255) - 1), value >> 255
    assert y < _EP
    x2 = (y * y - 1) * pow(_ED * y * y + 1, _EP - 2, _EP) % _EP
    x = pow(x2, (_EP + 3) // 8, _EP)
    if x * x % _EP != x2:
        x = x * pow(2, (_EP - 1) // 4, _EP) % _EP
    assert x * x % _EP == x2, "not on the curve"
    if x & 1 != sign:
        x = (_EP - x) % _EP
    return x, y


def _add(a: tuple[int, int], b: tuple[int, int]) -> tuple[int, int]:
    (x1, y1), (x2, y2) = a, b
    t = _ED * x1 * x2 * y1 * y2 % _EP
    return ((x1 * y2 + x2 * y1) * pow(1 + t, _EP - 2, _EP) % _EP,
            (y1 * y2 + x1 * x2) * pow(1 - t, _EP - 2, _EP) % _EP)


def _times8(point: tuple[int, int]) -> tuple[int, int]:
    for _ in range(3):
        point = _add(point, point)
    return point


def test_small_order_list_is_the_eight_torsion_points() -> None:
    points = {_decode_point(e) for e in P.ED25519_SMALL_ORDER}
    assert len(points) == 8  # the torsion subgroup of Curve25519 has exactly 8 points
    assert all(_times8(p) == (0, 1) for p in points)
    base = _decode_point(_h("5866666666666666666666666666666666666666666666666666666666666666"))
    assert _times8(base) != (0, 1)  # the base point is of order L, not in the list


@pytest.mark.parametrize("encoding", sorted(P.ED25519_SMALL_ORDER))
def test_small_order_keys_and_r_are_refused(encoding: bytes) -> None:
    """With A of small order, R = A and S = 0 satisfy the cofactorless equation for many
    messages: a lax verifier accepts these "signatures", the strict rule does not."""
    message = b"any message"
    signature = encoding + bytes(32)
    with pytest.raises(PointError):
        P.ed25519_verify(encoding, message, signature)
    with pytest.raises(PointError):
        P.check_ed25519_public_key(encoding)
    _, _, public, _, valid = ED25519_RFC8032[0]
    with pytest.raises(SignatureError):
        P.ed25519_verify(public, message, encoding + valid[32:])


def test_non_canonical_s_is_refused() -> None:
    """S + L satisfies the same equation mod L; the strict rule refuses S >= L."""
    _, _, public, message, signature = ED25519_RFC8032[0]
    s = int.from_bytes(signature[32:], "little")
    malleated = signature[:32] + (s + P.ED25519_L).to_bytes(32, "little")
    with pytest.raises(SignatureError):
        P.ed25519_verify(public, message, malleated)
    assert not _libsodium_verifies(public, message, malleated)



def test_non_canonical_encodings_are_refused() -> None:
    """y >= p, and x = 0 with the sign bit set, are second encodings of points."""
    one_plus_p = (1 + _EP).to_bytes(32, "little")  # the identity again, y = p + 1
    signed_identity = bytes([1]) + bytes(30) + bytes([0x80])  # y = 1, sign bit set
    for encoding in (one_plus_p, signed_identity):
        assert not P.ed25519_is_canonical(encoding)
        with pytest.raises(PointError):
            P.check_ed25519_public_key(encoding)
    _, _, public, _, _ = ED25519_RFC8032[0]
    assert P.ed25519_is_canonical(public)
    off_curve = next(bytes([i]) + bytes(31) for i in range(2, 50)
                     if not _on_curve(bytes([i]) + bytes(31)))
    assert not P.ed25519_is_canonical(off_curve)


def _on_curve(encoding: bytes) -> bool:
    try:
        _decode_point(encoding)
    except AssertionError:
        return False
    return True


# === Argon2id: RFC 9106 section 5.3 and the reference implementation =======================

# RFC 9106 section 5.3 (Argon2id, version 0x13), exact values.
RFC9106_ARGON2ID_TAG = "0d640df58d78766c08c037a34a8b53c9d01ef0452d75b65eb52520e96b01e659"


def test_argon2id_rfc9106_5_3() -> None:
    tag = P.argon2id(b"\x01" * 32, b"\x02" * 16, iterations=3, memory_kib=32, lanes=4,
                     length=32, secret=b"\x03" * 8, ad=b"\x04" * 12)
    assert tag == _h(RFC9106_ARGON2ID_TAG)


ARGON2ID_PYCA = list(_nist_blocks("argon2id.txt"))


def test_argon2id_pyca_file_contains_rfc9106() -> None:
    first = ARGON2ID_PYCA[0]
    assert first["output"] == RFC9106_ARGON2ID_TAG
    assert first["secret"] == "03" * 8 and first["ad"] == "04" * 12


@pytest.mark.parametrize("case", ARGON2ID_PYCA, ids=lambda c: f"count{c['count']}")
def test_argon2id_pyca_vectors(case: dict[str, str]) -> None:
    tag = P.argon2id(_h(case.get("pass", "")), _h(case["salt"]),
                     iterations=int(case["iter"]), memory_kib=int(case["memcost"]),
                     lanes=int(case["lanes"]), length=int(case["length"]),
                     secret=_h(case.get("secret", "")), ad=_h(case.get("ad", "")))
    assert tag == _h(case["output"])


PHC = _json("phc_argon2id_test_c.json")["cases"]


@pytest.mark.parametrize(
    "case",
    [pytest.param(c, marks=pytest.mark.slow) if c["m_kib"] > 65536 else c for c in PHC],
    ids=lambda c: f"t{c['t']}-m{c['m_kib']}-p{c['p']}-{c['password']}-{c['salt']}")
def test_argon2id_phc_reference_test_c(case: dict[str, Any]) -> None:
    tag = P.argon2id(case["password"].encode(), case["salt"].encode(),
                     iterations=case["t"], memory_kib=case["m_kib"], lanes=case["p"],
                     length=32)
    assert tag == _h(case["tag"])
    # The hex reference and the PHC string agree (the string's hash is unpadded base64).
    encoded_hash = case["encoded"].rsplit("$", 1)[1]
    assert b64url_encode(tag).replace("-", "+").replace("_", "/") == encoded_hash


@pytest.mark.parametrize(
    "overrides",
    [{"salt": b"1234567"}, {"lanes": 0}, {"lanes": 2**24}, {"memory_kib": 31},
     {"iterations": 0}, {"length": 3}],
    ids=["short-salt", "lanes-0", "lanes-2^24", "memory<8p", "iterations-0", "length-3"])
def test_argon2id_params_rejected(overrides: dict[str, Any]) -> None:
    args: dict[str, Any] = {"salt": b"\x02" * 16, "iterations": 1, "memory_kib": 32,
                            "lanes": 4, "length": 32}
    args.update(overrides)
    salt = args.pop("salt")
    with pytest.raises(ParamsError):
        P.argon2id(b"password", salt, **args)


# === AES-256-GCM ===========================================================================

# --- Wycheproof aes_gcm_test.json, keySize 256 / ivSize 96 / tagSize 128 -----------------

WYCHEPROOF_GCM = _json("wycheproof_aes_gcm_256_96_128.json")
GCM_TESTS = [t for g in WYCHEPROOF_GCM["testGroups"] for t in g["tests"]]


def test_wycheproof_gcm_subset_header() -> None:
    assert WYCHEPROOF_GCM["algorithm"] == "AES-GCM"
    groups = WYCHEPROOF_GCM["testGroups"]
    assert [(g["keySize"], g["ivSize"], g["tagSize"]) for g in groups] == [(256, 96, 128)]
    assert WYCHEPROOF_GCM["numberOfTests"] == len(GCM_TESTS) == 66
    assert {t["result"] for t in GCM_TESTS} == {"valid", "invalid"}


@pytest.mark.parametrize("case", GCM_TESTS, ids=lambda t: f"tc{t['tcId']}-{t['result']}")
def test_wycheproof_aes256gcm(case: dict[str, Any]) -> None:
    key, iv, aad = _h(case["key"]), _h(case["iv"]), _h(case["aad"])
    msg, sealed = _h(case["msg"]), _h(case["ct"]) + _h(case["tag"])
    if case["result"] == "valid":
        assert P.aes256gcm_encrypt(key, iv, msg, aad) == sealed
        assert P.aes256gcm_decrypt(key, iv, sealed, aad) == msg
    else:
        with pytest.raises(AeadError):
            P.aes256gcm_decrypt(key, iv, sealed, aad, requirement="ENV-4")


# --- McGrew-Viega GCM specification test cases 13-16 --------------------------------------

GCM_SPEC = _json("gcm_spec_aes256_tc13_16.json")["cases"]


@pytest.mark.parametrize("case", GCM_SPEC, ids=lambda c: f"tc{c['testCase']}")
def test_gcm_spec_aes256(case: dict[str, Any]) -> None:
    key, iv, aad, pt = _h(case["key"]), _h(case["iv"]), _h(case["aad"]), _h(case["pt"])
    sealed = _h(case["ct"]) + _h(case["tag"])
    assert P.aes256gcm_encrypt(key, iv, pt, aad) == sealed
    assert P.aes256gcm_decrypt(key, iv, sealed, aad) == pt
    tampered = bytearray(sealed)
    tampered[-1] ^= 0x01
    with pytest.raises(AeadError):
        P.aes256gcm_decrypt(key, iv, bytes(tampered), aad)
    with pytest.raises(AeadError):
        P.aes256gcm_decrypt(key, iv, sealed, aad + b"\x00")


# --- NIST CAVP gcmDecrypt256.rsp subset -----------------------------------------------------

CAVP_GCM = list(_nist_blocks("nist_cavp_gcmDecrypt256_iv96_tag128.rsp"))


def test_cavp_gcm_subset_shape() -> None:
    assert len(CAVP_GCM) == 125
    assert {(c["keylen"], c["ivlen"], c["taglen"]) for c in CAVP_GCM} == {("256", "96", "128")}
    assert any("fail" in c for c in CAVP_GCM) and any("pt" in c for c in CAVP_GCM)


@pytest.mark.parametrize(
    "case", CAVP_GCM,
    ids=lambda c: f"pt{c['ptlen']}-aad{c['aadlen']}-{c['count']}{'-FAIL' if 'fail' in c else ''}")
def test_cavp_aes256gcm_decrypt(case: dict[str, str]) -> None:
    key, iv, aad = _h(case["key"]), _h(case["iv"]), _h(case["aad"])
    sealed = _h(case["ct"]) + _h(case["tag"])
    if "fail" in case:
        with pytest.raises(AeadError):
            P.aes256gcm_decrypt(key, iv, sealed, aad)
    else:
        assert P.aes256gcm_decrypt(key, iv, sealed, aad) == _h(case["pt"])
        assert P.aes256gcm_encrypt(key, iv, _h(case["pt"]), aad) == sealed


def test_aes256gcm_lengths() -> None:
    case = GCM_SPEC[3]
    key, iv, aad = _h(case["key"]), _h(case["iv"]), _h(case["aad"])
    sealed = _h(case["ct"]) + _h(case["tag"])
    for bad_key in (key[:16], key[:24], key + b"\x00"):
        with pytest.raises(LengthError):
            P.aes256gcm_encrypt(bad_key, iv, b"", aad)
        with pytest.raises(LengthError):
            P.aes256gcm_decrypt(bad_key, iv, sealed, aad)
    for bad_iv in (iv[:8], iv + bytes(4), b""):
        with pytest.raises(LengthError):
            P.aes256gcm_encrypt(key, bad_iv, b"", aad)
        with pytest.raises(LengthError):
            P.aes256gcm_decrypt(key, bad_iv, sealed, aad)
    for short in (b"", sealed[-15:]):
        with pytest.raises(LengthError):
            P.aes256gcm_decrypt(key, iv, short, aad)
    with pytest.raises(AeadError) as info:
        P.aes256gcm_decrypt(key, iv, sealed[-16:], aad, requirement="ENV-4")
    assert info.value.requirement == "ENV-4" and info.value.failure_class == "aead"


# === XSalsa20-Poly1305 (NaCl secretbox): libsodium test/default/secretbox ==================

BOX = SODIUM["secretbox"]


def test_xsalsa20poly1305_libsodium_secretbox() -> None:
    key, nonce, pt, box = _h(BOX["key"]), _h(BOX["nonce"]), _h(BOX["plaintext"]), _h(BOX["box"])
    assert len(pt) == 131 and len(box) == 16 + 131
    assert P.xsalsa20poly1305_encrypt(key, nonce, pt) == box
    assert P.xsalsa20poly1305_decrypt(key, nonce, box) == pt


@pytest.mark.parametrize("index", [0, 15, 16, 146])
def test_xsalsa20poly1305_tamper(index: int) -> None:
    key, nonce, box = _h(BOX["key"]), _h(BOX["nonce"]), bytearray(_h(BOX["box"]))
    box[index] ^= 0x01
    with pytest.raises(AeadError):
        P.xsalsa20poly1305_decrypt(key, nonce, bytes(box), requirement="FX-1")


def test_xsalsa20poly1305_wrong_key_nonce_and_lengths() -> None:
    key, nonce, box = _h(BOX["key"]), _h(BOX["nonce"]), _h(BOX["box"])
    with pytest.raises(AeadError):
        P.xsalsa20poly1305_decrypt(bytes(32), nonce, box)
    with pytest.raises(AeadError):
        P.xsalsa20poly1305_decrypt(key, bytes(24), box)
    with pytest.raises(LengthError):
        P.xsalsa20poly1305_decrypt(key, nonce, box[:15])
    with pytest.raises(LengthError):
        P.xsalsa20poly1305_encrypt(key[:16], nonce, b"")
    with pytest.raises(LengthError):
        P.xsalsa20poly1305_encrypt(key, nonce[:12], b"")


# === AES-256-CBC without padding: NIST CAVP AESAVS CBCMMT256 ===============================

CBC_CASES = list(_nist_blocks("nist_cavp_CBCMMT256.rsp"))


def test_cbc_mmt_case_count() -> None:
    assert len(CBC_CASES) == 20


def _cbc_section_cases() -> Iterator[tuple[str, dict[str, str]]]:
    text = (KAT / "nist_cavp_CBCMMT256.rsp").read_text()
    encrypt_part, _, decrypt_part = text.partition("[DECRYPT]")
    n_encrypt = len(re.findall(r"^COUNT", encrypt_part, flags=re.M))
    for i, case in enumerate(CBC_CASES):
        yield ("encrypt" if i < n_encrypt else "decrypt"), case
    assert n_encrypt + len(re.findall(r"^COUNT", decrypt_part, flags=re.M)) == len(CBC_CASES)


@pytest.mark.parametrize(("direction", "case"), list(_cbc_section_cases()),
                         ids=lambda v: v if isinstance(v, str) else f"count{v['count']}")
def test_aes256cbc_nopad_cavp(direction: str, case: dict[str, str]) -> None:
    key, iv = _h(case["key"]), _h(case["iv"])
    pt, ct = _h(case["plaintext"]), _h(case["ciphertext"])
    assert P.aes256cbc_encrypt_nopad(key, iv, pt) == ct
    assert P.aes256cbc_decrypt_nopad(key, iv, ct) == pt


def test_aes256cbc_nopad_lengths() -> None:
    case = CBC_CASES[0]
    key, iv = _h(case["key"]), _h(case["iv"])
    with pytest.raises(LengthError):
        P.aes256cbc_encrypt_nopad(key, iv, b"\x00" * 15)
    with pytest.raises(LengthError):
        P.aes256cbc_decrypt_nopad(key, iv, b"\x00" * 17)
    with pytest.raises(LengthError):
        P.aes256cbc_encrypt_nopad(key[:16], iv, b"\x00" * 16)
    with pytest.raises(LengthError):
        P.aes256cbc_encrypt_nopad(key, iv[:12], b"\x00" * 16)


# === constant_time_equal ===================================================================

def test_constant_time_equal() -> None:
    assert P.constant_time_equal(b"", b"")
    assert P.constant_time_equal(b"abc", b"abc")
    assert not P.constant_time_equal(b"abc", b"abd")
    assert not P.constant_time_equal(b"abc", b"ab")


def test_every_rejection_is_a_spec_error() -> None:
    for cls in (AeadError, LengthError, ParamsError, PointError, SignatureError, DecodeError):
        assert issubclass(cls, SpecError)


# === base64url: RFC 4648 section 10 (as carried by CPython Lib/test/test_base64.py) ========

# RFC 4648 section 10 BASE64 vectors, with the '=' padding removed (keyflows' form; the
# alphabet of section 5 differs from section 4 only in '+/' -> '-_', absent here).
RFC4648_10 = [(b"", ""), (b"f", "Zg"), (b"fo", "Zm8"), (b"foo", "Zm9v"), (b"foob", "Zm9vYg"),
              (b"fooba", "Zm9vYmE"), (b"foobar", "Zm9vYmFy")]


@pytest.mark.parametrize(("data", "text"), RFC4648_10, ids=[t or "empty" for _, t in RFC4648_10])
def test_b64url_rfc4648_10(data: bytes, text: str) -> None:
    assert b64url_encode(data) == text
    assert b64url_decode(text) == data


def test_b64url_uses_url_safe_alphabet() -> None:
    # RFC 4648 section 5 table: 62 -> '-', 63 -> '_'.
    assert b64url_encode(b"\xfb\xff") == "-_8"
    assert b64url_decode("-_8") == b"\xfb\xff"
    assert b64url_decode("AA") == b"\x00"


@pytest.mark.parametrize("text", [
    "Zg==", "Zm8=", "Zm9vYg=", "=", "Zm9v====",      # padding
    "+_8", "-/8", "ab+c", "ab/c",                      # standard-alphabet characters
    " Zm9v", "Zm9v ", "Zm 9v", "Zm9v\n", "\tZg", "Zm9\rv",  # whitespace
    "Z", "Zm9vY", "AAAAA",                             # length % 4 == 1
    "AB", "Zh", "Zm9", "Zm9vYh", "Zm9vYmF",            # non-zero trailing bits
    "Zm9v!", "Zm9v.", "\u00e9A",                         # outside the alphabet
])
def test_b64url_strict_rejections(text: str) -> None:
    with pytest.raises(DecodeError):
        b64url_decode(text)
