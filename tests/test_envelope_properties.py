"""Hypothesis properties of the envelope flow.

- Any change to any byte a recipient relies on -- header, entry, payload -- is rejected,
  with the failure class of the check that protects it.
- STREAM does not depend on how the bytes are cut; truncation at every chunk boundary,
  reordering and chunks from another message are rejected.
- The two-key payload: AES-GCM alone accepts one ciphertext under two keys, the
  commitment accepts only the key it names.
- A signed device list rejects any change to a signed byte.
"""

from __future__ import annotations

import itertools
import os
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keyflows.spec import envelope as E
from keyflows.spec import envelope_devices as D
from keyflows.spec import envelope_stream as S
from keyflows.spec.drbg import Drbg, unrecorded
from keyflows.spec.errors import SpecError
from keyflows.vectors.envelope_attacks import two_key_payload, two_key_plaintexts
from keyflows.vectors.envelope_common import device, device_private, user

ALICE = user("alice")
PHONE, TABLET = device("bob", "phone"), device("carol", "tablet")
SETTINGS = settings(max_examples=25, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


def _sealed(suite: str) -> E.Sealed:
    return E.seal(b"a message of some length " * 3, suite=suite, sender=ALICE.sender,
                  recipients=[PHONE, TABLET], random=Drbg(f"properties/{suite}"))


SEALED = {suite: _sealed(suite) for suite in E.SUITES}


def _open(delivery: E.Delivery, payload: bytes) -> E.Opened:
    return E.open_delivery(delivery, payload, user_id="bob", device_id="phone",
                           device=device_private("bob", "phone"), sender=ALICE.published)


def _flip(data: bytes, bit: int) -> bytes:
    out = bytearray(data)
    out[bit // 8 % len(out)] ^= 1 << (bit % 8)
    return bytes(out)


@SETTINGS
@given(suite=st.sampled_from(E.SUITES),
       field=st.sampled_from(["message_id", "commitment", "enc", "wrapped_key", "payload",
                              "payload_length", "sender_key_version"]),
       bit=st.integers(min_value=0, max_value=1 << 16))
def test_any_change_to_an_authenticated_byte_is_rejected(suite: str, field: str,
                                                         bit: int) -> None:
    s = SEALED[suite]
    delivery = E.fan_out(s.envelope)[PHONE.address]
    header, entry, payload = delivery.header, delivery.entry, s.payload
    if field == "payload":
        payload = _flip(payload, bit)
    elif field == "payload_length":
        header = E.Header(**{**header.__dict__, "payload_length":
                             S.ciphertext_length(bit % 1000 + 1)})
    elif field == "sender_key_version":
        header = E.Header(**{**header.__dict__, "sender_key_version": bit % 1000 + 2})
    elif field == "enc":
        entry = replace(entry, enc=_flip(entry.enc, bit))
    elif field == "wrapped_key":
        entry = replace(entry, wrapped_key=_flip(entry.wrapped_key, bit))
    else:
        header = E.Header(**{**header.__dict__, field: _flip(getattr(header, field), bit)})
    tampered = E.Delivery(header=header, entry=entry)
    if tampered == delivery and payload == s.payload:
        return  # the payload_length draw hit the true length
    try:
        _open(tampered, payload)
    except SpecError as exc:
        expected = {"payload": {"aead"}, "sender_key_version": {"binding"},
                    "payload_length": {"aead", "length"}, "enc": {"aead", "point"}}
        assert exc.failure_class in expected.get(field, {"aead"}), (field, exc)
    else:
        raise AssertionError(f"a change to {field} was accepted")


@SETTINGS
@given(length=st.integers(min_value=0, max_value=3 * S.CHUNK_SIZE + 5),
       cuts=st.lists(st.integers(min_value=0, max_value=3 * S.CHUNK_SIZE + 100), max_size=6))
def test_stream_is_independent_of_how_the_bytes_are_cut(length: int, cuts: list[int]) -> None:
    key = Drbg(f"stream/{length}")(32)
    plaintext = Drbg(f"plain/{length}")(length)
    pieces = _cut(plaintext, cuts)
    payload = b"".join(S.seal_stream(key, pieces))
    assert payload == S.encrypt_payload(key, plaintext)
    opener = S.StreamOpener(key, len(payload))
    out = b"".join(chunk for piece in _cut(payload, cuts) for chunk in opener.update(piece))
    opener.finish()
    assert out == plaintext


def _cut(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({0, len(data), *(c for c in cuts if c <= len(data))})
    return [data[a:b] for a, b in itertools.pairwise(points)]


@SETTINGS
@given(chunks=st.integers(min_value=2, max_value=4), tail=st.integers(min_value=1, max_value=40),
       cut=st.integers(min_value=1, max_value=3))
def test_truncation_at_any_chunk_boundary_is_rejected(chunks: int, tail: int, cut: int) -> None:
    key = bytes(32)
    payload = S.encrypt_payload(key, bytes((chunks - 1) * S.CHUNK_SIZE + tail))
    kept = min(cut, chunks - 1) * S.CHUNK_CIPHERTEXT_SIZE
    try:
        S.decrypt_payload(key, payload[:kept])
    except SpecError as exc:
        assert exc.failure_class == "aead"
    else:
        raise AssertionError("a truncated stream was accepted")


@SETTINGS
@given(first=st.integers(min_value=0, max_value=2), second=st.integers(min_value=0, max_value=2))
def test_reordered_or_foreign_chunks_are_rejected(first: int, second: int) -> None:
    key, other = bytes(32), bytes(31) + b"\x01"
    payload = S.encrypt_payload(key, Drbg("reorder")(3 * S.CHUNK_SIZE))
    chunks = [payload[i * S.CHUNK_CIPHERTEXT_SIZE:(i + 1) * S.CHUNK_CIPHERTEXT_SIZE]
              for i in range(3)]
    foreign = S.encrypt_payload(other, Drbg("reorder")(3 * S.CHUNK_SIZE))
    if first == second:
        chunks[first] = foreign[first * S.CHUNK_CIPHERTEXT_SIZE:
                                (first + 1) * S.CHUNK_CIPHERTEXT_SIZE]
    else:
        chunks[first], chunks[second] = chunks[second], chunks[first]
    try:
        S.decrypt_payload(key, b"".join(chunks))
    except SpecError as exc:
        assert exc.failure_class == "aead"
    else:
        raise AssertionError("reordered or foreign chunks were accepted")


@settings(max_examples=10, deadline=None)
@given(k1=st.binary(min_size=32, max_size=32), k2=st.binary(min_size=32, max_size=32),
       block=st.binary(min_size=16, max_size=16))
def test_two_key_payload_is_stopped_by_the_commitment(k1: bytes, k2: bytes,
                                                      block: bytes) -> None:
    """AES-GCM opens the same payload under both payload keys, to different plaintexts;
    the commitment of K1 rejects K2 (and so the second reading) for any pair."""
    if k1 == k2:
        return
    message_id = bytes(16)
    keys1, keys2 = S.content_keys(k1, message_id), S.content_keys(k2, message_id)
    payload = two_key_payload(keys1.payload_key, keys2.payload_key, block)
    plain1, plain2 = two_key_plaintexts(keys1.payload_key, keys2.payload_key, payload)
    assert S.decrypt_payload(keys1.payload_key, payload) == plain1
    assert S.decrypt_payload(keys2.payload_key, payload) == plain2
    assert plain1 != plain2
    S.check_commitment(k1, message_id, keys1.commitment)
    try:
        S.check_commitment(k2, message_id, keys1.commitment)
    except SpecError as exc:
        assert exc.failure_class == "mac"
    else:
        raise AssertionError("a second key matched the commitment")


LIST = D.sign_device_list(owner_seed=user("bob").ed25519_seed, user_id="bob", client_id="chat",
                          key_version=1, version=7, devices=[PHONE, device("bob", "laptop")])


@SETTINGS
@given(field=st.sampled_from(["user_id", "client_id", "key_version", "version", "device_id",
                              "x25519", "signature"]),
       bit=st.integers(min_value=0, max_value=255))
def test_any_change_to_a_signed_list_is_rejected(field: str, bit: int) -> None:
    devices = list(LIST.devices)
    values = LIST.__dict__.copy()
    if field == "key_version":
        values[field] = LIST.key_version + 1 + bit
    elif field == "version":
        values[field] = LIST.version + 1 + bit
    elif field in ("user_id", "client_id"):
        values[field] = values[field] + "x"
    elif field == "device_id":
        devices[0] = D.Device(**{**devices[0].__dict__, "device_id": "a" + devices[0].device_id})
    elif field == "x25519":
        devices[0] = D.Device(**{**devices[0].__dict__, "x25519": device("bob", "ghost").x25519})
    else:
        values["signature"] = _flip(LIST.signature, bit)
    values["devices"] = tuple(devices)
    tampered = D.DeviceList(**values)
    try:
        D.verify_device_list(D.device_list_to_wire(tampered), user("bob").published)
    except SpecError as exc:
        assert exc.failure_class in {"signature", "binding", "point"}, exc
    else:
        raise AssertionError(f"a change to {field} was accepted")


def test_unrecorded_hybrid_sealing_opens() -> None:
    s = E.seal(b"pq", suite=E.SUITE_HYBRID, sender=ALICE.sender, recipients=[PHONE],
               random=unrecorded(os.urandom))
    assert _open(E.fan_out(s.envelope)[PHONE.address], s.payload).plaintext == b"pq"


def test_unrecorded_x25519_sealing_opens() -> None:
    s = E.seal(b"fast", suite=E.SUITE_X25519, sender=ALICE.sender, recipients=[PHONE, TABLET],
               random=unrecorded(os.urandom))
    assert _open(E.fan_out(s.envelope)[PHONE.address], s.payload).plaintext == b"fast"


@SETTINGS
@given(user_id=st.from_regex(r"\A[A-Za-z0-9._~-]{1,64}\Z"),
       device_id=st.from_regex(r"\A[A-Za-z0-9._~-]{1,64}\Z"))
def test_the_senders_aad_is_the_recipients(user_id: str, device_id: str) -> None:
    # seal_header builds each aad from the identifiers it checked once; open_key builds
    # it with entry_aad: both must be ctx("envelope-recipient", user_id, device_id).
    sender_side = E._recipient_aad(user_id.encode(), device_id.encode())
    assert sender_side == E.entry_aad(user_id, device_id)


def test_a_random_source_that_repeats_itself_is_refused() -> None:
    # Two recipients, one ephemeral key, one enc (suite x25519: the enc is the ephemeral
    # public key): the sender refuses before anything is posted (ENV-9).
    with pytest.raises(SpecError) as refused:
        E.seal_header(suite=E.SUITE_X25519, sender=ALICE.sender, recipients=[PHONE, TABLET],
                      plaintext_length=1, random=lambda n: bytes(range(n)))
    assert refused.value.requirement == "ENV-9"


# --- the ML-KEM-768 key of keypair records (the hybrid suites' key) -----------------------------

_KP_MLKEM = None


def _mlkem_record() -> tuple[dict[str, object], bytes]:
    from keyflows.spec import keypair_publication as kp

    global _KP_MLKEM
    if _KP_MLKEM is None:
        random = Drbg("properties/keypair-mlkem")
        private = kp.generate_private_keys(random, with_mlkem=True)
        kek = random(32)
        sealed = kp.seal_record(user_id="dave", client_id="chat", key_version=1,
                                private=private, kek=kek,
                                kek_spec=kp.KekSpec(kp.METHOD_APPLICATION_KEY),
                                nonce=random(12), z=random(64))
        _KP_MLKEM = (sealed.record, kek)
    return _KP_MLKEM


@SETTINGS
@given(index=st.integers(min_value=0, max_value=1183), bit=st.integers(min_value=0, max_value=7))
def test_any_change_to_a_records_mlkem_key_is_rejected(index: int, bit: int) -> None:
    """Both signatures cover the ML-KEM-768 key: any flipped bit is refused, by the
    modulus check (point) or a signature, never accepted."""
    from keyflows.spec import keypair_publication as kp
    from keyflows.spec.encoding import b64url_decode, b64url_encode

    record, kek = _mlkem_record()
    assert kp.open_record(record, user_id="dave", client_id="chat", kek=kek).mlkem_seed
    keys = dict(record["public_keys"])  # type: ignore[call-overload]
    raw = bytearray(b64url_decode(keys["mlkem768"]))
    raw[index] ^= 1 << bit
    keys["mlkem768"] = b64url_encode(bytes(raw))
    try:
        kp.validate_publication({**record, "public_keys": keys}, user_id="dave",
                                client_id="chat")
    except SpecError as exc:
        assert exc.failure_class in ("point", "signature")
    else:
        raise AssertionError("a record with a changed ML-KEM-768 key was accepted")


def test_hybrid_session_challenge_opens_with_its_suite_only() -> None:
    """SC-50/SC-51: a challenge to a record with an ML-KEM key is sealed with the hybrid
    suite (also from the server's unrecorded source); the holder of the seed opens it and
    refuses an X25519-suite challenge; a client without the seed refuses the hybrid one."""
    import pytest

    from keyflows.spec import mlkem, primitives
    from keyflows.spec import session_challenge as sc

    random = Drbg("properties/hybrid-challenge")
    x_private, seed = random(32), random(64)
    x_public, ek = primitives.x25519_public_key(x_private), mlkem.public_key_from_seed(seed)
    common: dict[str, Any] = {"origin": "https://keys.example", "user_id": "dave",
                              "client_id": "chat", "key_version": 1}
    for source in (random, unrecorded(os.urandom)):
        issued = sc.issue_challenge(**common, recipient_public=x_public, now=10, lifetime=60,
                                    random=source, recipient_mlkem768=ek)
        assert issued.wire["suite"] == sc.HYBRID_SUITE
        opened = sc.open_challenge(issued.wire, **common, x25519_private=x_private,
                                   mlkem_seed=seed)
        assert opened.token == issued.challenge.token
        with pytest.raises(SpecError) as refused:
            sc.open_challenge(issued.wire, **common, x25519_private=x_private)
        assert refused.value.failure_class == "params"
    plain = sc.issue_challenge(**common, recipient_public=x_public, now=10, lifetime=60,
                               random=random)
    with pytest.raises(SpecError) as downgraded:
        sc.open_challenge(plain.wire, **common, x25519_private=x_private, mlkem_seed=seed)
    assert downgraded.value.failure_class == "params"
