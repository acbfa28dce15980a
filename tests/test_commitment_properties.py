"""Properties of the key commitment and the bound KEK description (KP-3, KP-21), hypothesis:
a record opens with the KEK it was sealed under and with no other; any change to the
commitment, the nonce or a byte of the KEK description the AAD carries (salt, costs,
method) is refused at the commitment, before AES-GCM runs; a re-wrap keeps the keys
(KP-22).

Argon2id is not run here: the KEK is drawn directly (as an owner holding a kept KEK
would use it), which is exactly the case where only the AAD can notice a changed salt or
cost."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keyflows.spec import key_derivation as kd
from keyflows.spec import keypair_publication as kp
from keyflows.spec.encoding import b64url_decode, b64url_encode
from keyflows.spec.errors import SpecError

SETTINGS = settings(max_examples=40, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])
KEY32 = st.binary(min_size=32, max_size=32)
PRIVATE = kp.PrivateKeys(x25519=bytes(range(32)), ed25519_seed=bytes(range(32, 64)))
PARAMS = kd.Argon2Params(t=3, m=65536, p=2)


def sealed(kek: bytes, method: str = kp.METHOD_PASSWORD, salt: bytes = bytes(16)
           ) -> dict[str, Any]:
    spec = (kp.KekSpec(method=kp.METHOD_PASSWORD, salt=salt, params=PARAMS)
            if method == kp.METHOD_PASSWORD else kp.KekSpec(method=method))
    return kp.seal_record(user_id="alice", client_id="notes", key_version=1, private=PRIVATE,
                          kek=kek, kek_spec=spec, nonce=bytes(12), z=bytes(64)).record


def refusal(record: dict[str, Any], kek: bytes) -> tuple[str, str | None] | None:
    """None when the record opens to PRIVATE, else (failure class, requirement)."""
    try:
        opened = kp.open_record(record, user_id="alice", client_id="notes", kek=kek)
    except SpecError as exc:
        return exc.failure_class, exc.requirement
    assert opened == PRIVATE
    return None


COMMITMENT_REFUSAL = ("aead", "KP-21")


@SETTINGS
@given(kek=KEY32, other=KEY32, method=st.sampled_from(kp.METHODS))
def test_a_record_opens_under_its_kek_only(kek: bytes, other: bytes, method: str) -> None:
    record = sealed(kek, method)
    assert refusal(record, kek) is None
    if other != kek:
        assert refusal(record, other) == COMMITMENT_REFUSAL


@SETTINGS
@given(kek=KEY32, byte=st.integers(0, 31), bit=st.integers(0, 7),
       field=st.sampled_from(["commitment", "nonce", "salt"]))
def test_any_flipped_bit_of_commitment_nonce_or_salt_is_refused_at_the_commitment(
        kek: bytes, byte: int, bit: int, field: str) -> None:
    record = copy.deepcopy(sealed(kek))
    parent = record["encrypted_private_keys"]
    if field == "salt":
        parent = parent["kek"]
    raw = bytearray(b64url_decode(parent[field]))
    raw[byte % len(raw)] ^= 1 << bit
    parent[field] = b64url_encode(bytes(raw))
    assert refusal(record, kek) == COMMITMENT_REFUSAL


@SETTINGS
@given(kek=KEY32, member=st.sampled_from(["t", "m", "p"]), delta=st.integers(1, 8))
def test_any_changed_cost_is_refused_even_with_the_right_kek(kek: bytes, member: str,
                                                              delta: int) -> None:
    record = copy.deepcopy(sealed(kek))
    costs = record["encrypted_private_keys"]["kek"]
    costs[member] = costs[member] + delta  # still inside the KD-5 range
    kd.check_argon2_params(kd.Argon2Params(t=costs["t"], m=costs["m"], p=costs["p"]))
    assert refusal(record, kek) == COMMITMENT_REFUSAL


def test_the_method_is_bound() -> None:
    """A password record relabelled as application-key (dropping salt and costs) does not
    open with its KEK: the AAD names the method."""
    kek = bytes(range(32))
    record = copy.deepcopy(sealed(kek))
    record["encrypted_private_keys"]["kek"] = {"method": kp.METHOD_APPLICATION_KEY}
    assert refusal(record, kek) == COMMITMENT_REFUSAL


@SETTINGS
@given(old_kb=KEY32, new_kb=KEY32)
def test_a_rewrap_keeps_the_keys_and_moves_them_to_the_new_kb(old_kb: bytes,
                                                               new_kb: bytes) -> None:
    old = sealed(kd.application_key(old_kb, "notes"), kp.METHOD_APPLICATION_KEY)
    new = kp.rewrap_record(old, user_id="alice", client_id="notes", old_kb=old_kb,
                           new_kb=new_kb, nonce=bytes(range(12)), z=bytes(64)).record
    record = kp.validate_publication(new, user_id="alice", client_id="notes")
    kp.check_change(kp.StoredState(live=kp.stored_predecessor(old), deleted_version=None),
                    record)
    assert refusal(new, kd.application_key(new_kb, "notes")) is None
    if new_kb != old_kb:
        assert refusal(new, kd.application_key(old_kb, "notes")) == COMMITMENT_REFUSAL


def test_a_password_record_is_not_rewrapped() -> None:
    with pytest.raises(ValueError, match="application-key"):
        kp.rewrap_record(sealed(bytes(32)), user_id="alice", client_id="notes",
                         old_kb=bytes(32), new_kb=bytes(32), nonce=bytes(12), z=bytes(64))
