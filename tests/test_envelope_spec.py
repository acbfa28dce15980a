"""The envelope flow's executable specification (keyflows.spec.envelope)."""

from __future__ import annotations

import copy
import functools
import hashlib
import hmac
import json
from collections.abc import Callable
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from keyflows.spec import envelope as E
from keyflows.spec import key_derivation, primitives
from keyflows.spec.drbg import Drbg
from keyflows.spec.encoding import b64url_decode, b64url_encode
from keyflows.spec.errors import SpecError
from keyflows.spec.requirements import registry

SENDER = "alice"
MESSAGE = b"The seed's flow, made sound: encrypt once, wrap per device."


Address = tuple[str, str]


def make_devices(label: str,
                 addresses: list[Address]) -> tuple[list[E.Device], dict[Address, bytes]]:
    """Recipient devices with keys drawn from a labelled stream; returns devices, privates."""
    random = Drbg(label)
    devices, privates = [], {}
    for user_id, device_id in addresses:
        private = random(32)
        privates[(user_id, device_id)] = private
        devices.append(E.Device(user_id=user_id, device_id=device_id,
                                public_key=primitives.x25519_public_key(private)))
    return devices, privates


TWO = [("bob", "phone"), ("carol", "laptop")]
TEN = [(f"user{i % 4}", f"dev-{i}") for i in range(10)]


@pytest.fixture
def sealed_two() -> tuple[E.Sealed, dict[tuple[str, str], bytes]]:
    devices, privates = make_devices("devices/two", TWO)
    return E.seal(MESSAGE, sender=SENDER, recipients=devices, random=Drbg("seal/two"),
                  keep_trace=True), privates


def delivery_for(sealed: E.Sealed, address: tuple[str, str]) -> E.Delivery:
    return E.fan_out(sealed.envelope)[address]


def open_as(delivery: E.Delivery, address: tuple[str, str], private: bytes) -> E.Opened:
    return E.open_delivery(delivery, user_id=address[0], device_id=address[1],
                           device_private=private)


def rejects(failure_class: str, requirement: str | None, fn: Callable[[], object]) -> SpecError:
    with pytest.raises(SpecError) as info:
        fn()
    assert info.value.failure_class == failure_class, str(info.value)
    if requirement is not None:
        assert info.value.requirement == requirement, str(info.value)
    return info.value


# --- round trips ---------------------------------------------------------------------------

@pytest.mark.parametrize("addresses", [[("bob", "phone")], TWO, TEN], ids=["1", "2", "10"])
def test_every_recipient_reads_the_message(addresses: list[tuple[str, str]]) -> None:
    devices, privates = make_devices(f"devices/{len(addresses)}", addresses)
    sealed = E.seal(MESSAGE, sender=SENDER, recipients=devices, random=Drbg("seal"))
    deliveries = E.fan_out(sealed.envelope)
    assert set(deliveries) == set(addresses)
    for address, private in privates.items():
        opened = open_as(deliveries[address], address, private)
        assert opened.plaintext == MESSAGE
        assert opened.content_key == sealed.content_key
        E.verify_disclosure(deliveries[address], E.disclosure_for(opened))


def test_seal_is_deterministic_in_its_random_source() -> None:
    devices, _ = make_devices("devices/two", TWO)
    a = E.seal(MESSAGE, sender=SENDER, recipients=devices, random=Drbg("x"))
    b = E.seal(MESSAGE, sender=SENDER, recipients=devices, random=Drbg("x"))
    c = E.seal(MESSAGE, sender=SENDER, recipients=devices, random=Drbg("y"))
    assert E.envelope_to_wire(a.envelope) == E.envelope_to_wire(b.envelope)
    assert a.envelope.message_id != c.envelope.message_id


def test_random_draw_order_is_as_documented(sealed_two: Any) -> None:
    sealed, _ = sealed_two
    random = Drbg("seal/two")
    assert sealed.envelope.message_id == random(16)
    assert sealed.content_key == random(32)
    assert sealed.envelope.payload.nonce == random(12)
    for trace in sealed.recipients:
        assert trace.ephemeral_private == random(32)


def test_empty_message_round_trips() -> None:
    devices, privates = make_devices("devices/two", TWO)
    sealed = E.seal(b"", sender=SENDER, recipients=devices, random=Drbg("empty"))
    assert len(sealed.envelope.payload.ciphertext) == 16
    address = TWO[0]
    assert open_as(delivery_for(sealed, address), address, privates[address]).plaintext == b""


def test_without_trace_no_secret_outlives_seal() -> None:
    devices, _ = make_devices("devices/two", TWO)
    sealed = E.seal(MESSAGE, sender=SENDER, recipients=devices, random=Drbg("x"))
    assert sealed.recipients == ()


def test_wire_round_trip(sealed_two: Any) -> None:
    sealed, privates = sealed_two
    wire = E.envelope_to_wire(sealed.envelope)
    assert list(wire) == ["message_id", "sender", "payload", "recipients"]
    assert list(wire["recipients"][0]) == list(E.ENTRY_MEMBERS)
    assert E.parse_envelope(copy.deepcopy(wire)) == sealed.envelope
    delivery = delivery_for(sealed, TWO[1])
    record = E.delivery_to_wire(delivery) | {"received_at": 1700000000,
                                             "expires_at": 1700604800}
    parsed = E.parse_delivery(record)
    assert parsed == delivery
    assert open_as(parsed, TWO[1], privates[TWO[1]]).plaintext == MESSAGE


@pytest.mark.parametrize("addresses", [[("bob", "phone")], TEN], ids=["1", "10"])
def test_envelope_json_is_the_compact_json_of_the_wire_form(
        addresses: list[tuple[str, str]]) -> None:
    devices, _ = make_devices("devices/json", addresses)
    for message in (b"", MESSAGE, bytes(range(256)) * 40):
        sealed = E.seal(message, sender="Az09._~-" * 8, recipients=devices, random=Drbg("j"))
        expected = json.dumps(E.envelope_to_wire(sealed.envelope),
                              separators=(",", ":")).encode()
        assert E.envelope_json(sealed.envelope) == expected


def test_envelope_json_refuses_identifiers_it_could_not_write_verbatim() -> None:
    devices, _ = make_devices("devices/json", [("bob", "phone")])
    sealed = E.seal(MESSAGE, sender=SENDER, recipients=devices, random=Drbg("j"))
    bad = E.Envelope(message_id=sealed.envelope.message_id, sender='a"b',
                     payload=sealed.envelope.payload, entries=sealed.envelope.entries)
    rejects("decode", "KD-2", lambda: E.envelope_json(bad))


# --- the construction, recomputed independently --------------------------------------------

def ctx(label: str, *fields: bytes) -> bytes:
    out = b"keyflows-v1\x00" + label.encode() + b"\x00"
    return out + b"".join(len(f).to_bytes(2, "big") + f for f in fields)


def test_construction_matches_an_independent_recomputation(sealed_two: Any) -> None:
    """Recompute every per-recipient value with the libraries directly (not via spec)."""
    sealed, privates = sealed_two
    env = sealed.envelope
    aad = ctx("envelope-payload", env.message_id, SENDER.encode())
    plaintext = AESGCM(sealed.content_key).decrypt(env.payload.nonce, env.payload.ciphertext,
                                                   aad)
    assert plaintext == MESSAGE
    digest = hashlib.sha256(env.payload.ciphertext).digest()
    for entry, trace in zip(env.entries, sealed.recipients, strict=True):
        private = privates[entry.address]
        device_public = X25519PrivateKey.from_private_bytes(private).public_key() \
            .public_bytes_raw()
        shared = X25519PrivateKey.from_private_bytes(private).exchange(
            X25519PublicKey.from_public_bytes(entry.ephemeral_key))
        fields = (env.message_id, entry.ephemeral_key, device_public)
        k_enc = HKDF(hashes.SHA256(), 32, None, ctx("envelope-encryption-key", *fields)) \
            .derive(shared)
        k_mac = HKDF(hashes.SHA256(), 32, None, ctx("envelope-mac-key", *fields)).derive(shared)
        header = (env.message_id, SENDER.encode(), entry.user_id.encode(),
                  entry.device_id.encode(), entry.ephemeral_key)
        assert AESGCM(k_enc).decrypt(bytes(12), entry.wrapped_key,
                                     ctx("envelope-wrap", *header)) == sealed.content_key
        mac = hmac.new(k_mac, ctx("envelope-mac", *header, entry.wrapped_key,
                                  env.payload.nonce, digest), "sha256").digest()
        assert mac == entry.mac
        assert (trace.keys.shared_secret, trace.keys.encryption_key, trace.keys.mac_key) == \
            (shared, k_enc, k_mac)


def test_fast_path_equals_the_step_functions(sealed_two: Any) -> None:
    sealed, _ = sealed_two
    env = sealed.envelope
    for entry, trace in zip(env.entries, sealed.recipients, strict=True):
        keys = E.derive_recipient_keys(trace.keys.shared_secret, message_id=env.message_id,
                                       ephemeral_public=entry.ephemeral_key,
                                       device_public=trace.device.public_key)
        assert keys == trace.keys
        for label, key in (("envelope-encryption-key", keys.encryption_key),
                           ("envelope-mac-key", keys.mac_key)):
            assert key_derivation.labelled_hkdf(trace.keys.shared_secret, label, env.message_id,
                                                entry.ephemeral_key,
                                                trace.device.public_key) == key
        assert trace.wrap_aad == E.wrap_aad(message_id=env.message_id, sender=SENDER,
                                            user_id=entry.user_id, device_id=entry.device_id,
                                            ephemeral_public=entry.ephemeral_key)
        assert trace.mac_input == E.mac_input(
            message_id=env.message_id, sender=SENDER, user_id=entry.user_id,
            device_id=entry.device_id, ephemeral_public=entry.ephemeral_key,
            wrapped_key=entry.wrapped_key, payload_nonce=env.payload.nonce,
            digest=sealed.ciphertext_digest)
        assert trace.mac == E.compute_mac(keys.mac_key, trace.mac_input) == entry.mac


def test_labels_are_registered_for_one_purpose_each() -> None:
    labels = [E.LABEL_PAYLOAD, E.LABEL_ENCRYPTION_KEY, E.LABEL_MAC_KEY, E.LABEL_WRAP,
              E.LABEL_MAC]
    assert len(set(labels)) == 5
    for label in labels:
        assert label in key_derivation.LABELS


def test_mac_key_is_independent_of_encryption_key(sealed_two: Any) -> None:
    sealed, _ = sealed_two
    for trace in sealed.recipients:
        assert trace.keys.mac_key != trace.keys.encryption_key
        assert trace.keys.mac_key != trace.keys.shared_secret


def test_payload_is_encrypted_once_and_hashed_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Per-recipient work is O(1) in the payload size: one AEAD and one hash of it."""
    big = bytes(range(256)) * 64
    calls = {"gcm": 0, "sha": 0}
    real_gcm, real_sha = primitives.aes256gcm_encrypt, primitives.sha256

    def gcm(key: bytes, nonce: bytes, pt: bytes, aad: bytes) -> bytes:
        calls["gcm"] += len(pt) == len(big)
        return real_gcm(key, nonce, pt, aad)

    def sha(data: bytes) -> bytes:
        calls["sha"] += len(data) >= len(big)
        return real_sha(data)

    monkeypatch.setattr(primitives, "aes256gcm_encrypt", gcm)
    monkeypatch.setattr(primitives, "sha256", sha)
    devices, _ = make_devices("devices/ten", TEN)
    E.seal(big, sender=SENDER, recipients=devices, random=Drbg("once"))
    assert calls == {"gcm": 1, "sha": 1}


# --- step 1: device registry ---------------------------------------------------------------

def test_server_assigned_device_id_is_an_identifier() -> None:
    device_id = E.new_device_id(Drbg("device-id"))
    assert len(device_id) == 22
    assert E.check_device_id(device_id) == device_id
    assert b64url_decode(device_id) == Drbg("device-id")(16)


@pytest.mark.parametrize("device_id", ["", "a" * 65, "a/b", "é", "a b", 7])
def test_device_id_syntax(device_id: object) -> None:
    rejects("decode", "ENV-1", lambda: E.check_device_id(device_id))


def test_device_registration_accepts_a_good_key() -> None:
    key = primitives.x25519_public_key(Drbg("k")(32))
    assert E.parse_device_registration({"x25519": b64url_encode(key)}) == key


LOW_ORDER = [u.to_bytes(32, "little") for u in sorted(primitives.X25519_LOW_ORDER_U)]
NON_CANONICAL = [(primitives.X25519_P + 9).to_bytes(32, "little"),
                 (9 | 1 << 255).to_bytes(32, "little")]


@pytest.mark.parametrize("key", LOW_ORDER + NON_CANONICAL)
def test_device_registration_rejects_bad_points(key: bytes) -> None:
    rejects("point", "ENV-2", lambda: E.parse_device_registration({"x25519": b64url_encode(key)}))


@pytest.mark.parametrize("body,failure_class", [
    ({"x25519": b64url_encode(b"\x09" + bytes(30))}, "length"),
    ({"x25519": b64url_encode(b"\x09" + bytes(32))}, "length"),
    ({"x25519": "AAAA="}, "decode"),
    ({}, "decode"),
    ({"x25519": b64url_encode(b"\x09" + bytes(31)), "extra": 1}, "decode"),
    ([], "decode"),
    ({"x25519": 9}, "decode"),
])
def test_device_registration_shape(body: object, failure_class: str) -> None:
    rejects(failure_class, None, lambda: E.parse_device_registration(body))


def test_device_list_is_sorted_public_and_parses_back() -> None:
    devices, _ = make_devices("devices/list", [("bob", "z"), ("bob", "a"), ("bob", "m")])
    wire = E.device_list_to_wire("bob", devices)
    assert [d["device_id"] for d in wire["devices"]] == ["a", "m", "z"]
    assert all(set(d) == {"device_id", "x25519"} for d in wire["devices"])
    parsed = E.parse_device_list(wire, user_id="bob")
    assert sorted(parsed, key=lambda d: d.device_id) == sorted(devices,
                                                                key=lambda d: d.device_id)


def test_device_list_rejections() -> None:
    devices, _ = make_devices("devices/list", [("bob", "a")])
    wire = E.device_list_to_wire("bob", devices)
    rejects("binding", "ENV-3", lambda: E.parse_device_list(wire, user_id="carol"))
    twice = {"user_id": "bob", "devices": wire["devices"] * 2}
    rejects("decode", "ENV-3", lambda: E.parse_device_list(twice, user_id="bob"))
    bad = {"user_id": "bob", "devices": [{"device_id": "a", "x25519": b64url_encode(LOW_ORDER[0])}]}
    rejects("point", "ENV-2", lambda: E.parse_device_list(bad, user_id="bob"))


def test_sender_refuses_bad_recipient_lists() -> None:
    devices, _ = make_devices("devices/two", TWO)
    rejects("params", "ENV-9", lambda: E.seal(MESSAGE, sender=SENDER, recipients=[],
                                              random=Drbg("x")))
    rejects("decode", "ENV-9", lambda: E.seal(MESSAGE, sender=SENDER,
                                              recipients=[devices[0], devices[0]],
                                              random=Drbg("x")))
    low = E.Device(user_id="bob", device_id="evil", public_key=LOW_ORDER[2])
    rejects("point", "ENV-2", lambda: E.seal(MESSAGE, sender=SENDER, recipients=[low],
                                             random=Drbg("x")))
    rejects("decode", "KD-2", lambda: E.seal(MESSAGE, sender="a/b", recipients=devices,
                                             random=Drbg("x")))


def test_repeated_ephemeral_key_is_refused() -> None:
    """A random source that repeats itself must not produce an envelope."""
    devices, _ = make_devices("devices/two", TWO)
    stuck = Drbg("stuck")
    head = stuck(60)
    stream = iter([head[:16], head[16:48], head[48:60], b"\x07" * 32, b"\x07" * 32])
    rejects("decode", "ENV-9", lambda: E.seal(MESSAGE, sender=SENDER, recipients=devices,
                                              random=lambda n: next(stream)))


# --- step 10: the recipient's rejections ---------------------------------------------------

def flip(data: bytes, index: int = 0, bit: int = 0) -> bytes:
    out = bytearray(data)
    out[index] ^= 1 << bit
    return bytes(out)


def with_entry(delivery: E.Delivery, **changes: Any) -> E.Delivery:
    entry = E.Entry(**{**delivery.entry.__dict__, **changes})
    return E.Delivery(message_id=delivery.message_id, sender=delivery.sender,
                      payload=delivery.payload, entry=entry)


def with_header(delivery: E.Delivery, **changes: Any) -> E.Delivery:
    fields = {**delivery.__dict__, **changes}
    return E.Delivery(**fields)


RECIPIENT_TAMPERING = [
    ("ciphertext", lambda d: with_header(d, payload=E.Payload(
        d.payload.nonce, flip(d.payload.ciphertext, 3))), "mac", "ENV-8"),
    ("ciphertext-tag", lambda d: with_header(d, payload=E.Payload(
        d.payload.nonce, flip(d.payload.ciphertext, -1))), "mac", "ENV-8"),
    ("payload-nonce", lambda d: with_header(d, payload=E.Payload(
        flip(d.payload.nonce), d.payload.ciphertext)), "mac", "ENV-8"),
    ("wrapped-key", lambda d: with_entry(d, wrapped_key=flip(d.entry.wrapped_key, 5)),
     "aead", "ENV-7"),
    ("mac", lambda d: with_entry(d, mac=flip(d.entry.mac, 31, 7)), "mac", "ENV-8"),
    ("ephemeral-key", lambda d: with_entry(d, ephemeral_key=flip(d.entry.ephemeral_key, 1)),
     "aead", "ENV-7"),
    ("ephemeral-low-order", lambda d: with_entry(d, ephemeral_key=LOW_ORDER[3]),
     "point", "ENV-5"),
    ("ephemeral-non-canonical", lambda d: with_entry(d, ephemeral_key=NON_CANONICAL[0]),
     "point", "ENV-5"),
    ("message-id", lambda d: with_header(d, message_id=flip(d.message_id)), "aead", "ENV-7"),
    ("sender", lambda d: with_header(d, sender="mallory"), "aead", "ENV-7"),
    ("addressed-elsewhere", lambda d: with_entry(d, device_id="laptop"), "binding", "ENV-13"),
]


@pytest.mark.parametrize("name,mutate,failure_class,requirement", RECIPIENT_TAMPERING,
                         ids=[t[0] for t in RECIPIENT_TAMPERING])
def test_recipient_rejects_tampering(sealed_two: Any, name: str,
                                     mutate: Callable[[E.Delivery], E.Delivery],
                                     failure_class: str, requirement: str) -> None:
    sealed, privates = sealed_two
    address = TWO[0]
    tampered = mutate(delivery_for(sealed, address))
    rejects(failure_class, requirement, lambda: open_as(tampered, address, privates[address]))


def test_wrong_recipient_key_fails_at_unwrap(sealed_two: Any) -> None:
    sealed, privates = sealed_two
    address = TWO[0]
    rejects("aead", "ENV-7", lambda: open_as(delivery_for(sealed, address), address,
                                             privates[TWO[1]]))


def test_swapped_entries_are_rejected(sealed_two: Any) -> None:
    sealed, privates = sealed_two
    bob, carol = (delivery_for(sealed, a) for a in TWO)
    # Carol's entry delivered to Bob: it names Carol's device.
    rejects("binding", "ENV-13", lambda: open_as(carol, TWO[0], privates[TWO[0]]))
    # Carol's crypto under Bob's address: the wrap AAD and the keys do not match.
    moved = with_entry(bob, ephemeral_key=carol.entry.ephemeral_key,
                       wrapped_key=carol.entry.wrapped_key, mac=carol.entry.mac)
    rejects("aead", "ENV-7", lambda: open_as(moved, TWO[0], privates[TWO[0]]))


def test_entry_from_another_message_is_rejected() -> None:
    devices, privates = make_devices("devices/two", TWO)
    first = E.seal(MESSAGE, sender=SENDER, recipients=devices, random=Drbg("m1"))
    second = E.seal(MESSAGE, sender=SENDER, recipients=devices, random=Drbg("m2"))
    spliced = E.Delivery(message_id=second.envelope.message_id, sender=SENDER,
                         payload=second.envelope.payload, entry=first.envelope.entries[0])
    rejects("aead", "ENV-7", lambda: open_as(spliced, TWO[0], privates[TWO[0]]))
    # Same header, the other message's payload: the MAC binds the ciphertext digest.
    mixed = E.Delivery(message_id=first.envelope.message_id, sender=SENDER,
                       payload=second.envelope.payload, entry=first.envelope.entries[0])
    rejects("mac", "ENV-8", lambda: open_as(mixed, TWO[0], privates[TWO[0]]))


def test_open_envelope_finds_the_device_entry(sealed_two: Any) -> None:
    sealed, privates = sealed_two
    opened = E.open_envelope(sealed.envelope, user_id="carol", device_id="laptop",
                             device_private=privates[TWO[1]])
    assert opened.plaintext == MESSAGE
    rejects("binding", "ENV-13", lambda: E.open_envelope(
        sealed.envelope, user_id="dave", device_id="phone", device_private=privates[TWO[0]]))


def test_acknowledged_message_is_a_replay() -> None:
    E.check_not_acknowledged(b"a" * 16, {b"b" * 16})
    rejects("replay", "ENV-18", lambda: E.check_not_acknowledged(b"a" * 16, {b"a" * 16}))


# --- step 8: parsing and server checks -----------------------------------------------------

def wire_two(sealed: E.Sealed) -> dict[str, Any]:
    return E.envelope_to_wire(sealed.envelope)


def truncate(text: str) -> str:
    return b64url_encode(b64url_decode(text)[:-1])


def extend(text: str) -> str:
    return b64url_encode(b64url_decode(text) + b"\x00")


WIRE_MUTATIONS: list[tuple[str, Callable[[dict[str, Any]], None], str, str]] = [
    ("message-id-short", lambda w: w.update(message_id=truncate(w["message_id"])),
     "length", "ENV-9"),
    ("message-id-long", lambda w: w.update(message_id=extend(w["message_id"])), "length", "ENV-9"),
    ("nonce-short", lambda w: w["payload"].update(nonce=truncate(w["payload"]["nonce"])),
     "length", "ENV-9"),
    ("ciphertext-below-tag", lambda w: w["payload"].update(ciphertext=b64url_encode(bytes(15))),
     "length", "ENV-9"),
    ("ephemeral-short", lambda w: w["recipients"][0].update(
        ephemeral_key=truncate(w["recipients"][0]["ephemeral_key"])), "length", "ENV-9"),
    ("wrapped-short", lambda w: w["recipients"][0].update(
        wrapped_key=truncate(w["recipients"][0]["wrapped_key"])), "length", "ENV-9"),
    ("wrapped-long", lambda w: w["recipients"][1].update(
        wrapped_key=extend(w["recipients"][1]["wrapped_key"])), "length", "ENV-9"),
    ("mac-short", lambda w: w["recipients"][1].update(
        mac=truncate(w["recipients"][1]["mac"])), "length", "ENV-9"),
    ("ephemeral-low-order", lambda w: w["recipients"][0].update(
        ephemeral_key=b64url_encode(LOW_ORDER[1])), "point", "ENV-5"),
    ("duplicate-recipient", lambda w: w["recipients"].append(copy.deepcopy(w["recipients"][0])),
     "decode", "ENV-9"),
    ("duplicate-ephemeral", lambda w: w["recipients"][1].update(
        ephemeral_key=w["recipients"][0]["ephemeral_key"]), "decode", "ENV-9"),
    ("no-recipients", lambda w: w.update(recipients=[]), "params", "ENV-9"),
    ("recipients-not-list", lambda w: w.update(recipients={}), "decode", "API-6"),
    ("unknown-member", lambda w: w.update(extra=1), "decode", "API-6"),
    ("unknown-entry-member", lambda w: w["recipients"][0].update(extra=1), "decode", "API-6"),
    ("missing-mac", lambda w: w["recipients"][0].pop("mac"), "decode", "API-6"),
    ("padded-base64", lambda w: w["recipients"][0].update(
        mac=w["recipients"][0]["mac"] + "="), "decode", "API-1"),
    ("bad-device-id", lambda w: w["recipients"][0].update(device_id="a/b"), "decode", "ENV-1"),
    ("bad-sender", lambda w: w.update(sender=""), "decode", "KD-2"),
    ("sender-not-string", lambda w: w.update(sender=5), "decode", "API-6"),
]


@pytest.mark.parametrize("name,mutate,failure_class,requirement", WIRE_MUTATIONS,
                         ids=[m[0] for m in WIRE_MUTATIONS])
def test_parse_envelope_rejections(sealed_two: Any, name: str,
                                   mutate: Callable[[dict[str, Any]], None],
                                   failure_class: str, requirement: str) -> None:
    sealed, _ = sealed_two
    wire = wire_two(sealed)
    mutate(wire)
    rejects(failure_class, requirement, lambda: E.parse_envelope(wire))


def test_validate_submission(sealed_two: Any) -> None:
    sealed, _ = sealed_two
    wire = wire_two(sealed)
    limits = E.Limits(max_recipients=2, max_ciphertext_bytes=len(MESSAGE) + 16)
    assert E.validate_submission(wire, sender=SENDER, limits=limits) == sealed.envelope
    rejects("binding", "ENV-10", lambda: E.validate_submission(wire, sender="mallory",
                                                               limits=limits))
    rejects("params", "ENV-17", lambda: E.validate_submission(
        wire, sender=SENDER, limits=E.Limits(max_recipients=1, max_ciphertext_bytes=10**6)))
    rejects("params", "ENV-17", lambda: E.validate_submission(
        wire, sender=SENDER, limits=E.Limits(max_recipients=9, max_ciphertext_bytes=len(MESSAGE))))


def test_server_side_registration_and_replay_checks(sealed_two: Any) -> None:
    sealed, _ = sealed_two
    registered = {TWO[0]: b"k"}
    rejects("binding", "ENV-10", lambda: E.check_recipients_registered(
        sealed.envelope, lambda u, d: registered.get((u, d))))
    registered[TWO[1]] = b"k"
    E.check_recipients_registered(sealed.envelope, lambda u, d: registered.get((u, d)))
    E.check_message_id_unused(sealed.envelope.message_id, set())
    rejects("replay", "ENV-10", lambda: E.check_message_id_unused(
        sealed.envelope.message_id, {sealed.envelope.message_id}))


def test_fan_out_gives_each_device_its_own_entry_only() -> None:
    devices, _ = make_devices("devices/ten", TEN)
    sealed = E.seal(MESSAGE, sender=SENDER, recipients=devices, random=Drbg("fan"))
    deliveries = E.fan_out(sealed.envelope)
    assert len(deliveries) == 10
    for address, delivery in deliveries.items():
        assert delivery.entry.address == address
        wire = E.delivery_to_wire(delivery)
        assert set(wire) == {"message_id", "sender", "payload", "recipient"}
        others = [e for e in sealed.envelope.entries if e.address != address]
        text = repr(wire)
        assert not any(b64url_encode(e.mac) in text for e in others)


def test_parse_delivery_rejections(sealed_two: Any) -> None:
    sealed, _ = sealed_two
    record = E.delivery_to_wire(delivery_for(sealed, TWO[0]))
    rejects("decode", "API-6", lambda: E.parse_delivery(record | {"recipients": []}))
    rejects("decode", "API-6", lambda: E.parse_delivery({k: v for k, v in record.items()
                                                         if k != "recipient"}))
    rejects("length", "ENV-14", lambda: E.parse_delivery(
        record | {"mac_key": b64url_encode(bytes(31))}))
    with_key = E.parse_delivery(record | {"mac_key": b64url_encode(bytes(32))})
    assert with_key.mac_key == bytes(32)


# --- step 11: acknowledgement and disclosure -----------------------------------------------

def test_disclosure_verifies_only_the_right_key(sealed_two: Any) -> None:
    sealed, privates = sealed_two
    bob, carol = (delivery_for(sealed, a) for a in TWO)
    bob_key = E.disclosure_for(open_as(bob, TWO[0], privates[TWO[0]]))
    carol_key = E.disclosure_for(open_as(carol, TWO[1], privates[TWO[1]]))
    E.verify_disclosure(bob, bob_key)
    E.verify_disclosure(bob, bob_key, digest=sealed.ciphertext_digest)
    rejects("mac", "ENV-14", lambda: E.verify_disclosure(bob, carol_key))
    rejects("mac", "ENV-14", lambda: E.verify_disclosure(bob, flip(bob_key, 7, 3)))
    rejects("mac", "ENV-14", lambda: E.verify_disclosure(
        bob, sealed.recipients[0].keys.encryption_key))
    rejects("length", "ENV-14", lambda: E.verify_disclosure(bob, bob_key[:31]))


def test_disclosed_key_lets_anyone_make_a_valid_tag(sealed_two: Any) -> None:
    """Deniability: after disclosure the tag is no evidence -- anyone can compute one."""
    sealed, privates = sealed_two
    bob = delivery_for(sealed, TWO[0])
    mac_key = E.disclosure_for(open_as(bob, TWO[0], privates[TWO[0]]))
    forged_payload = E.Payload(bob.payload.nonce, b"anything at all, really!")
    forged = with_header(bob, payload=forged_payload)
    forged = with_entry(forged, mac=E.compute_mac(mac_key, E.delivery_mac_input(forged)))
    E.verify_disclosure(forged, mac_key)


def test_ack_body() -> None:
    key = bytes(range(32))
    assert E.parse_ack(E.ack_to_wire(key)) == key
    rejects("length", "ENV-14", lambda: E.parse_ack({"mac_key": b64url_encode(key[:16])}))
    rejects("decode", "API-6", lambda: E.parse_ack({"mac_key": b64url_encode(key), "x": 1}))
    rejects("decode", "API-6", lambda: E.parse_ack({}))


def test_apply_ack_first_repeat_and_wrong_key(sealed_two: Any) -> None:
    sealed, _ = sealed_two
    bob = delivery_for(sealed, TWO[0])
    right = sealed.recipients[0].keys.mac_key
    first = E.apply_ack(bob, right)
    assert first == E.AckOutcome(mac_key=right, changed=True)
    stored = with_header(bob, mac_key=first.mac_key)
    assert E.apply_ack(stored, right) == E.AckOutcome(mac_key=right, changed=False)
    for delivery in (bob, stored):
        rejects("mac", "ENV-14", functools.partial(E.apply_ack, delivery, flip(right)))
        rejects("mac", "ENV-14", functools.partial(E.apply_ack, delivery,
                                                   sealed.recipients[1].keys.mac_key))


def test_inbox_opens_acknowledges_and_refuses_replays(sealed_two: Any) -> None:
    sealed, privates = sealed_two
    bob = delivery_for(sealed, TWO[0])
    inbox = E.Inbox(user_id="bob", device_id="phone", device_private=privates[TWO[0]])
    message_id = sealed.envelope.message_id
    # Nothing is disclosed for a message the device has not opened (ENV-16).
    rejects("binding", "ENV-16", lambda: inbox.acknowledge(message_id))
    assert inbox.open(bob).plaintext == MESSAGE
    body = inbox.acknowledge(message_id)
    assert body == {"mac_key": b64url_encode(sealed.recipients[0].keys.mac_key)}
    assert inbox.acknowledge(message_id) == body  # a lost ACK can be retried
    assert inbox.acknowledged == {message_id}
    rejects("replay", "ENV-18", lambda: inbox.open(bob))
    # The acknowledged set survives a restart through the caller.
    restarted = E.Inbox(user_id="bob", device_id="phone", device_private=privates[TWO[0]],
                        acknowledged=inbox.acknowledged)
    rejects("replay", "ENV-18", lambda: restarted.open(bob))


def test_inbox_discloses_nothing_for_a_tampered_message(sealed_two: Any) -> None:
    sealed, privates = sealed_two
    bob = delivery_for(sealed, TWO[0])
    tampered = with_entry(bob, mac=flip(bob.entry.mac))
    inbox = E.Inbox(user_id="bob", device_id="phone", device_private=privates[TWO[0]])
    rejects("mac", "ENV-8", lambda: inbox.open(tampered))
    rejects("binding", "ENV-16", lambda: inbox.acknowledge(bob.message_id))


# --- step 12: retention --------------------------------------------------------------------

def test_retention() -> None:
    assert E.expires_at(1000, 60) == 1060
    E.check_retained(1000, now=1059, retention_seconds=60)
    rejects("expired", "ENV-17", lambda: E.check_retained(1000, now=1060, retention_seconds=60))


# --- requirement hygiene -------------------------------------------------------------------

def test_every_cited_requirement_exists() -> None:
    import inspect
    import re

    source = inspect.getsource(E)
    cited = set(re.findall(r'requirement="([A-Z]+-[0-9]+)"', source))
    cited |= set(re.findall(r"\((ENV-[0-9]+)", source))
    known = registry()
    assert cited - set(known) == set()
    env = {rid for rid, req in known.items() if req.flow == "envelope"}
    assert env == {f"ENV-{i}" for i in range(1, 21)}


# --- the payload raw (ENV-19, ENV-20) ------------------------------------------------------

def _raw_case() -> tuple[E.Sealed, dict[str, Any], bytes]:
    private = Drbg("test/raw/device")(32)
    device = E.Device(user_id="bob", device_id="phone",
                      public_key=primitives.x25519_public_key(private))
    sealed = E.seal(b"raw payload", sender="alice", recipients=[device],
                    random=Drbg("test/raw/seal"))
    record = E.delivery_to_wire(E.fan_out(sealed.envelope)[("bob", "phone")])
    header = {**record, "payload": {"nonce": record["payload"]["nonce"]}}
    return sealed, header, private


def test_a_raw_payload_opens_like_an_inline_one() -> None:
    sealed, header, private = _raw_case()
    raw = sealed.envelope.payload.ciphertext
    delivery = E.parse_delivery(header, ciphertext=raw)
    assert delivery == E.fan_out(sealed.envelope)[("bob", "phone")]
    opened = E.open_delivery(delivery, user_id="bob", device_id="phone",
                             device_private=private)
    assert opened.plaintext == b"raw payload"


def test_a_raw_payload_is_checked() -> None:
    sealed, header, private = _raw_case()
    raw = sealed.envelope.payload.ciphertext
    flipped = bytes([raw[0] ^ 1]) + raw[1:]
    rejects("mac", "ENV-8", lambda: E.open_delivery(
        E.parse_delivery(header, ciphertext=flipped), user_id="bob", device_id="phone",
        device_private=private))
    rejects("length", "ENV-20", lambda: E.parse_delivery(header, ciphertext=raw[:15]))
    inline = {**header, "payload": {**header["payload"], "ciphertext": "AAAA"}}
    rejects("decode", "API-6", lambda: E.parse_delivery(inline, ciphertext=raw))
