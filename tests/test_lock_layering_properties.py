"""Hypothesis properties of the lock-layering spec: Shamir round trips at every threshold,
Vault-layout agreement with an evaluator built from Vault's own tables, and rejection of
any change to any protected byte with the right failure class."""

from __future__ import annotations

import json
from pathlib import Path

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from keyflows.spec import lock_layering as L
from keyflows.spec import lock_layering_capability as C
from keyflows.spec import shamir
from keyflows.spec.drbg import Drbg
from keyflows.spec.encoding import b64url_encode
from keyflows.spec.errors import (
    AeadError,
    AuthzError,
    BindingError,
    DecodeError,
    ExpiredError,
    LengthError,
    MacError,
    ShareError,
    SignatureError,
    SpecError,
)

_DOC = json.loads((Path(__file__).parent / "kat" / "vault_shamir_tables.json").read_text())
LOG = [int(v, 16) for v in _DOC["logTable"].split()]
EXP = [int(v, 16) for v in _DOC["expTable"].split()]


def vault_mult(a: int, b: int) -> int:
    return 0 if a == 0 or b == 0 else EXP[(LOG[a] + LOG[b]) % 255]


def vault_evaluate(coefficients: list[int], x: int) -> int:
    out = coefficients[-1]
    for coeff in reversed(coefficients[:-1]):
        out = vault_mult(out, x) ^ coeff
    return out


FAST = settings(max_examples=150, deadline=None)
secrets = st.binary(min_size=1, max_size=40)
seeds = st.text(min_size=1, max_size=12)


@st.composite
def split_cases(draw: st.DrawFn) -> tuple[bytes, int, int, str, list[int]]:
    secret = draw(secrets)
    parts = draw(st.integers(2, 7))
    threshold = draw(st.integers(2, parts))
    xs = draw(st.lists(st.integers(1, 255), min_size=parts, max_size=parts, unique=True))
    return secret, parts, threshold, draw(seeds), xs


@FAST
@given(split_cases(), st.randoms(use_true_random=False))
def test_any_threshold_subset_in_any_order_combines(case: tuple[bytes, int, int, str, list[int]],
                                                    rnd: object) -> None:
    secret, parts, threshold, seed, xs = case
    made = shamir.split(secret, parts, threshold, Drbg(seed), xs)
    size = rnd.randint(threshold, parts)  # type: ignore[attr-defined]
    subset = rnd.sample(made.shares, size)  # type: ignore[attr-defined]
    assert shamir.combine(subset) == secret


@FAST
@given(split_cases())
def test_vault_layout_matches_table_evaluation(
        case: tuple[bytes, int, int, str, list[int]]) -> None:
    secret, parts, threshold, seed, xs = case
    made = shamir.split(secret, parts, threshold, Drbg(seed), xs)
    for share, x in zip(made.shares, xs, strict=True):
        assert share[-1] == x and len(share) == len(secret) + 1
        assert share[:-1] == bytes(vault_evaluate(p, x) for p in made.coefficients)


@FAST
@given(st.binary(min_size=8, max_size=32), st.integers(3, 6), seeds)
def test_fewer_than_threshold_shares_give_another_secret(secret: bytes, threshold: int,
                                                         seed: str) -> None:
    made = shamir.split(secret, threshold, threshold, Drbg(seed))
    assert shamir.combine(made.shares[: threshold - 1]) != secret


@FAST
@given(st.binary(min_size=32, max_size=32), seeds, st.booleans(), st.integers(0, 32),
       st.integers(1, 255))
def test_any_change_to_either_share_is_a_share_failure(secret: bytes, seed: str, user_side: bool,
                                                       index: int, delta: int) -> None:
    account, user = L.split_user_secret(secret, Drbg(seed))
    check = L.lock_check_from_secret(secret, "ks")
    victim = bytearray(user if user_side else account)
    victim[index] ^= delta
    if user_side:
        user = bytes(victim)
    else:
        account = bytes(victim)
    try:
        L.unlock_with_shares(b64url_encode(account), b64url_encode(user), "ks", check)
    except ShareError:
        return
    raise AssertionError("a changed share opened the keystore")


@FAST
@given(st.binary(min_size=32, max_size=32), seeds)
def test_unlock_is_order_free(secret: bytes, seed: str) -> None:
    account, user = L.split_user_secret(secret, Drbg(seed))
    check = L.lock_check_from_secret(secret, "ks")
    a, u = b64url_encode(account), b64url_encode(user)
    assert L.unlock_with_shares(a, u, "ks", check) == L.unlock_with_shares(u, a, "ks", check)


@FAST
@given(st.sampled_from(L.KEY_TYPES), seeds, st.integers(0, L.SEALED_WORKING_KEY_LEN * 8 - 1))
def test_any_bit_flip_of_a_working_key_record_fails_aead(key_type: str, seed: str,
                                                         bit: int) -> None:
    rnd = Drbg(seed)
    lock, nonce = rnd(32), rnd(12)
    record = L.make_working_key_record(lock, nonce, L.generate_working_key(key_type, rnd),
                                       "ks", "k1", key_type)
    assert L.open_working_key_record(lock, record)
    sealed = bytearray(record.current.sealed)
    sealed[bit // 8] ^= 1 << (bit % 8)
    try:
        L.open_working_key(lock, bytes(sealed), "ks", "k1", 1, key_type,
                           record.current.public_key)
    except AeadError:
        return
    raise AssertionError("a tampered record opened")


@FAST
@given(st.binary(min_size=1, max_size=64), seeds, st.integers(0, 10_000))
def test_any_change_to_a_server_lock_blob_fails(plaintext: bytes, seed: str, where: int) -> None:
    rnd = Drbg(seed)
    master = rnd(32)
    blob = L.server_lock_seal(master, rnd(12), plaintext, "ks", L.PURPOSE_USER_LOCK_KEY)
    assert L.server_lock_open(master, blob, "ks", L.PURPOSE_USER_LOCK_KEY) == plaintext
    bit = where % (len(blob) * 8)
    changed = bytearray(blob)
    changed[bit // 8] ^= 1 << (bit % 8)
    for candidate in (bytes(changed), blob[: where % len(blob)], blob + b"\x00"):
        try:
            L.server_lock_open(master, candidate, "ks", L.PURPOSE_USER_LOCK_KEY)
        except (AeadError, LengthError):
            continue
        raise AssertionError("a changed blob opened")


OPS = st.lists(st.sampled_from(L.OPERATIONS), min_size=1, max_size=5, unique=True)


@FAST
@given(st.lists(OPS, min_size=1, max_size=4), st.sampled_from(L.OPERATIONS),
       st.integers(0, 2000), st.integers(0, 2000))
def test_attenuation_grants_the_intersection(grants: list[list[str]], op: str, exp: int,
                                             now: int) -> None:
    root = bytes(32)
    cap = C.mint_root_capability(root, "ks", 10**6)
    for ops in grants:
        cap = C.attenuate(cap, C.ops_caveat(ops))
    cap = C.attenuate(cap, C.expiry_caveat(exp))
    cap = C.decode_capability(C.encode_capability(cap))
    C.verify_capability(cap, root, "ks")
    key_id = "k1" if op in L.KEY_OPERATIONS else None
    allowed = all(op in ops for ops in grants)
    try:
        C.authorize(cap, op, key_id, now)
    except ExpiredError:
        assert now >= exp
        return
    except AuthzError:
        assert now < exp and not allowed
        return
    assert now < exp and allowed


@FAST
@given(st.lists(OPS, min_size=1, max_size=3), st.data())
def test_dropping_or_changing_any_caveat_breaks_the_mac(grants: list[list[str]],
                                                        data: st.DataObject) -> None:
    root = bytes(range(32))
    cap = C.mint_root_capability(root, "ks", 10**6)
    for ops in grants:
        cap = C.attenuate(cap, C.ops_caveat(ops))
    index = data.draw(st.integers(0, len(cap.caveats) - 1))
    dropped = cap.caveats[:index] + cap.caveats[index + 1:]
    changed = list(cap.caveats)
    changed[index] = "ops=" + ",".join(L.OPERATIONS)
    for caveats in (dropped, tuple(changed)):
        assume(tuple(caveats) != cap.caveats)
        try:
            C.verify_capability(C.Capability("ks", tuple(caveats), cap.mac), root, "ks")
        except MacError:
            continue
        raise AssertionError("a forged capability verified")


@FAST
@given(st.binary(min_size=16, max_size=64), seeds)
def test_wrap_round_trip(cek: bytes, seed: str) -> None:
    rnd = Drbg(seed)
    recipient = rnd(32)
    wrapped = L.wrap(cek, L.public_key_of("x25519", recipient), rnd(32))
    assert len(wrapped.wrapped_key) == len(cek) + 16
    assert L.unwrap(wrapped, recipient) == cek


@FAST
@given(st.binary(max_size=100), seeds)
def test_trustbloc_seal_round_trip_and_encoding(plaintext: bytes, seed: str) -> None:
    rnd = Drbg(seed)
    key = rnd(32)
    text = L.trustbloc_seal(key, rnd(12), plaintext)
    assert len(text) % 4 == 0  # padded
    assert L.trustbloc_open(key, text) == plaintext
    if "=" in text:
        try:
            L.trustbloc_open(key, text.rstrip("="))
        except SpecError as exc:
            assert exc.failure_class == "decode"
            return
        raise AssertionError("unpadded text accepted")


@FAST
@given(st.binary(min_size=1, max_size=48), seeds, st.integers(2, 6))
def test_trustbloc_shares_combine_back(secret: bytes, seed: str, parts: int) -> None:
    made = L.trustbloc_split(secret, Drbg(seed), parts=parts, threshold=2)
    assert shamir.combine(made.shares[-2:]) == secret
    assert L.trustbloc_lock_key(made.shares) == L.trustbloc_lock_key(made.shares[::-1])


# --- capabilities: revocation, grants, signed requests -------------------------------------------

CAVEATS = st.sampled_from(["ops=sign", "ops=read,sign", "key=k1", "key=k2", "exp=5000",
                           "ops=verify"])


@FAST
@given(st.lists(CAVEATS, min_size=1, max_size=6), st.data())
def test_revoking_a_link_refuses_exactly_its_subtree(caveats: list[str],
                                                      data: st.DataObject) -> None:
    """A capability is refused iff one of its links is revoked: revoking the capability at
    depth d refuses every capability whose first d caveats are the same."""
    root = bytes(range(32))
    chain = C.capability_chain(root, "ks", ["exp=9000", *caveats])
    depth = data.draw(st.integers(1, len(chain) - 1))
    revoked = {C.revocation_id("ks", chain[depth])}
    other = data.draw(st.lists(CAVEATS, min_size=0, max_size=6))
    candidate = ["exp=9000", *other]
    ids = C.revocation_ids("ks", C.capability_chain(root, "ks", candidate))
    descends = candidate[:depth] == ["exp=9000", *caveats][:depth] and len(candidate) >= depth
    try:
        C.check_not_revoked(ids, revoked)
    except AuthzError:
        assert descends
        return
    assert not descends


@FAST
@given(st.lists(CAVEATS, min_size=0, max_size=4), st.lists(CAVEATS, min_size=0, max_size=4),
       st.binary(min_size=12, max_size=12))
def test_a_grant_opens_only_for_its_capability_and_its_attenuations(
        granted: list[str], presented: list[str], nonce: bytes) -> None:
    root, grant_key, lock_key = bytes(32), bytes(range(32)), bytes(range(1, 33))
    base = C.mint_root_capability(root, "ks", 10**6)
    cap = base
    for caveat in granted:
        cap = C.attenuate(cap, caveat)
    grant = C.make_unlock_grant(grant_key, nonce, lock_key, "ks", cap, 0)
    other = base
    for caveat in presented:
        other = C.attenuate(other, caveat)
    links = C.verify_capability(other, root, "ks")
    try:
        opened = C.open_unlock_grant(grant_key, grant, "ks", links, 0)
    except ShareError:
        assert not C.is_attenuation_of(other, cap)
        return
    assert opened == lock_key and C.is_attenuation_of(other, cap)


@FAST
@given(st.sampled_from(["method", "authority", "path", "query", "body", "authorization"]),
       st.binary(min_size=1, max_size=40))
def test_a_signed_request_changed_anywhere_covered_is_refused(where: str, body: bytes) -> None:
    from keyflows.spec import http_signatures as hs
    from keyflows.spec import primitives as P

    seed = bytes(range(32))
    cap = C.mint_root_capability(bytes(32), "ks", 10**6, P.ed25519_public_key(seed))
    text = C.encode_capability(cap)
    headers = (("authorization", f"Bearer {text}"),)
    request = hs.Request("POST", "kms.example", "/v1/keystores/ks/keys", "", headers, body)
    fields = C.sign_request(seed, request, created=1000, nonce="n" * 22)
    signed = (*headers, *fields.items())
    changed = {"method": "PUT", "authority": "evil.example", "path": "/x", "query": "a=1"}
    parts = ["POST", "kms.example", "/v1/keystores/ks/keys", "", signed, body]
    if where == "body":
        parts[5] = body + b"!"
    elif where == "authorization":
        parts[4] = (("authorization", f"Bearer {text}x"), *fields.items())
    else:
        parts[["method", "authority", "path", "query"].index(where)] = changed[where]
    C.check_capability(text, bytes(32), "ks", "create-key", None, 1000,
                       hs.Request("POST", "kms.example", "/v1/keystores/ks/keys", "", signed,
                                  body))
    try:
        C.check_capability(text, bytes(32), "ks", "create-key", None, 1000,
                           hs.Request(*parts))  # type: ignore[arg-type]
    except (SignatureError, BindingError, DecodeError):
        return
    raise AssertionError(f"a request with a changed {where} was accepted")
