"""Properties of keypair continuity (KP-14 .. KP-19), hypothesis: any change to any byte a
continuity signature covers, or to the signature itself, is refused, with the failure
class of the check that protects it.

A rotation record (version v + 1, signed by the keys of version v) is checked the way a
server checks a PUT: validate_publication (KP-6, KP-14: binding and XEdDSA signatures),
then check_change against the stored version v (KP-15 .. KP-17). A signed deletion is
checked with check_deletion (KP-19).
"""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keyflows.spec import key_derivation as kd
from keyflows.spec import keypair_publication as kp
from keyflows.spec.encoding import b64url_decode, b64url_encode
from keyflows.spec.errors import SpecError

SETTINGS = settings(max_examples=40, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])
IDENT = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789._~-", min_size=1, max_size=20)
KEY32 = st.binary(min_size=32, max_size=32)
VERSION = st.integers(min_value=1, max_value=kp.MAX_KEY_VERSION - 1)


def keys(x: bytes, e: bytes) -> kp.PrivateKeys:
    return kp.PrivateKeys(x25519=x, ed25519_seed=e)


def record_of(user_id: str, client_id: str, version: int, private: kp.PrivateKeys,
              previous: kp.PrivateKeys | None, change_type: str) -> dict[str, Any]:
    return kp.seal_record(user_id=user_id, client_id=client_id, key_version=version,
                          private=private, kek=bytes(32),
                          kek_spec=kp.KekSpec(method=kp.METHOD_APPLICATION_KEY),
                          nonce=bytes(12), z=bytes(range(64)), change_type=change_type,
                          previous=previous).record


def verdict(obj: dict[str, Any], user_id: str, client_id: str, state: kp.StoredState) -> str:
    """The server's decision on a PUT: accepted, or the failure class of the refusal."""
    try:
        record = kp.validate_publication(obj, user_id=user_id, client_id=client_id)
        kp.check_change(state, record)
    except SpecError as exc:
        return exc.failure_class
    return "accepted"


def flip(obj: dict[str, Any], path: tuple[str, ...], byte: int, bit: int) -> dict[str, Any]:
    out = copy.deepcopy(obj)
    parent = out
    for key in path[:-1]:
        parent = parent[key]
    raw = bytearray(b64url_decode(parent[path[-1]]))
    raw[byte % len(raw)] ^= 1 << bit
    parent[path[-1]] = b64url_encode(bytes(raw))
    return out


SIGNATURES = {
    "change.signature": ("change", "signature"),
    "binding_signature": ("binding_signature",),
    "x25519_signature": ("x25519_signature",),
}


@SETTINGS
@given(IDENT, IDENT, VERSION, KEY32, KEY32, KEY32, KEY32, st.sampled_from(sorted(SIGNATURES)),
       st.integers(0, 63), st.integers(0, 7))
def test_any_flip_in_a_rotation_signature_is_refused(
        user_id: str, client_id: str, version: int, x0: bytes, e0: bytes, x1: bytes,
        e1: bytes, field: str, byte: int, bit: int) -> None:
    """KP-14, KP-6, KP-17: each signature of a rotation covers it; a flipped bit anywhere
    in one is refused with class signature (never accepted, never another class)."""
    old, new = keys(x0, e0), keys(x1, e1)
    state = kp.StoredState(live=kp.Predecessor(version, kp.public_keys_of(old)),
                           deleted_version=None)
    rotation = record_of(user_id, client_id, version + 1, new, old, kp.CHANGE_ROTATION)
    assert verdict(rotation, user_id, client_id, state) == "accepted"
    flipped = flip(rotation, SIGNATURES[field], byte, bit)
    assert verdict(flipped, user_id, client_id, state) == "signature"


@SETTINGS
@given(IDENT, IDENT, VERSION, KEY32, KEY32, KEY32, KEY32, KEY32, KEY32)
def test_a_rotation_signed_by_any_other_key_is_refused(
        user_id: str, client_id: str, version: int, x0: bytes, e0: bytes, x1: bytes,
        e1: bytes, xm: bytes, em: bytes) -> None:
    """KP-17: a rotation signed by a key other than the replaced one (another user's, a
    stale one) is refused with class signature."""
    old, new, other = keys(x0, e0), keys(x1, e1), keys(xm, em)
    if kp.public_keys_of(other).ed25519 == kp.public_keys_of(old).ed25519:
        return
    state = kp.StoredState(live=kp.Predecessor(version, kp.public_keys_of(old)),
                           deleted_version=None)
    forged = record_of(user_id, client_id, version + 1, new, other, kp.CHANGE_ROTATION)
    assert verdict(forged, user_id, client_id, state) == "signature"


@SETTINGS
@given(IDENT, IDENT, VERSION, KEY32, KEY32, KEY32, KEY32,
       st.sampled_from(["initial", "rotation-with-reset-type", "reset-as-rotation"]))
def test_the_change_type_is_covered_by_both_signatures(
        user_id: str, client_id: str, version: int, x0: bytes, e0: bytes, x1: bytes,
        e1: bytes, relabel: str) -> None:
    """KP-15: the change type is signed; relabelling a reset as initial or as a rotation,
    or a rotation as a reset, without re-signing is refused (class signature: the
    binding signature no longer verifies)."""
    old, new = keys(x0, e0), keys(x1, e1)
    state = kp.StoredState(live=kp.Predecessor(version, kp.public_keys_of(old)),
                           deleted_version=None)
    reset = record_of(user_id, client_id, version + 1, new, None, kp.CHANGE_RESET)
    assert verdict(reset, user_id, client_id, state) == "accepted"
    if relabel == "rotation-with-reset-type":
        rotation = record_of(user_id, client_id, version + 1, new, old, kp.CHANGE_ROTATION)
        changed = dict(rotation, change={"type": "reset"})
    elif relabel == "reset-as-rotation":
        signature = b64url_encode(bytes(64))
        changed = dict(reset, change={"type": "rotation", "signature": signature})
    else:
        changed = dict(reset, change={"type": relabel})
    assert verdict(changed, user_id, client_id, state) == "signature"


@SETTINGS
@given(IDENT, IDENT, VERSION, KEY32, KEY32, st.integers(0, 63), st.integers(0, 7),
       st.integers(1, 5))
def test_a_deletion_is_bound_to_its_key_and_version(
        user_id: str, client_id: str, version: int, x: bytes, e: bytes, byte: int, bit: int,
        offset: int) -> None:
    """KP-19: a deletion verifies for its own record only: a flipped signature bit or
    another version is refused."""
    private = keys(x, e)
    live = kp.Predecessor(version, kp.public_keys_of(private))
    deletion = kp.sign_deletion(user_id=user_id, client_id=client_id, key_version=version,
                                private=private)
    kp.check_deletion(live, kp.parse_deletion(deletion), user_id=user_id, client_id=client_id)
    raw = bytearray(b64url_decode(deletion["signature"]))
    raw[byte] ^= 1 << bit
    for bad in (dict(deletion, signature=b64url_encode(bytes(raw))),
                dict(deletion, key_version=min(version + offset, kp.MAX_KEY_VERSION))):
        if bad == deletion:
            continue
        try:
            kp.check_deletion(live, kp.parse_deletion(bad), user_id=user_id,
                              client_id=client_id)
        except SpecError as exc:
            assert exc.failure_class in ("signature", "replay", "link", "binding")
        else:  # pragma: no cover
            raise AssertionError("a changed deletion was accepted")


def test_the_floor_is_the_producer_minimum() -> None:
    """KD-5: the record producers make at the floor is one consumers accept."""
    assert kd.meets_producer_minimum(kd.ARGON2_FLOOR)
    assert not kd.meets_producer_minimum(kd.Argon2Params(t=1, m=19456, p=1))
