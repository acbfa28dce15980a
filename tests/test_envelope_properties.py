"""Properties of the envelope flow: round trips, and every protected byte protected."""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keyflows.spec import envelope as E
from keyflows.spec import primitives
from keyflows.spec.drbg import Drbg
from keyflows.spec.encoding import b64url_decode, b64url_encode
from keyflows.spec.errors import SpecError

IDENT = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._~-",
                min_size=1, max_size=64)
SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])

ADDRESSES = st.lists(st.tuples(IDENT, IDENT), min_size=1, max_size=5,
                     unique=True)


def build(seed: str, message: bytes, sender: str,
          addresses: list[tuple[str, str]]) -> tuple[E.Sealed, dict[tuple[str, str], bytes]]:
    random = Drbg(f"devices/{seed}")
    privates = {a: random(32) for a in addresses}
    devices = [E.Device(user_id=u, device_id=d,
                        public_key=primitives.x25519_public_key(privates[(u, d)]))
               for u, d in addresses]
    return E.seal(message, sender=sender, recipients=devices, random=Drbg(f"seal/{seed}"),
                  keep_trace=True), \
        privates


def open_wire(record: dict[str, Any], address: tuple[str, str], private: bytes) -> E.Opened:
    return E.open_delivery(E.parse_delivery(record), user_id=address[0], device_id=address[1],
                           device_private=private)


@SETTINGS
@given(seed=st.text(max_size=8), message=st.binary(max_size=2048), sender=IDENT,
       addresses=ADDRESSES)
def test_every_recipient_opens_through_the_wire(seed: str, message: bytes, sender: str,
                                                addresses: list[tuple[str, str]]) -> None:
    sealed, privates = build(seed, message, sender, addresses)
    wire = E.envelope_to_wire(sealed.envelope)
    envelope = E.parse_envelope(copy.deepcopy(wire))
    assert envelope == sealed.envelope
    for address, delivery in E.fan_out(envelope).items():
        opened = open_wire(E.delivery_to_wire(delivery), address, privates[address])
        assert opened.plaintext == message
        E.verify_disclosure(delivery, E.disclosure_for(opened))


# Where a changed bit of each protected field must be caught, by failure class. An
# ephemeral key with a changed bit may also stop being a valid point (class point).
FIELD_CLASSES: dict[str, set[str]] = {
    "message_id": {"aead"},
    "payload.nonce": {"mac"},
    "payload.ciphertext": {"mac"},
    "recipient.ephemeral_key": {"aead", "point"},
    "recipient.wrapped_key": {"aead"},
    "recipient.mac": {"mac"},
}


def _get(record: dict[str, Any], path: str) -> tuple[dict[str, Any], str]:
    *parents, leaf = path.split(".")
    node = record
    for part in parents:
        node = node[part]
    return node, leaf


@SETTINGS
@given(data=st.data(), field=st.sampled_from(sorted(FIELD_CLASSES)),
       message=st.binary(min_size=0, max_size=256))
def test_any_flipped_bit_is_rejected_with_its_class(data: st.DataObject, field: str,
                                                   message: bytes) -> None:
    addresses = [("bob", "phone"), ("carol", "laptop")]
    sealed, privates = build("flip", message, "alice", addresses)
    address = addresses[data.draw(st.integers(0, 1))]
    record = E.delivery_to_wire(E.fan_out(sealed.envelope)[address])
    node, leaf = _get(record, field)
    raw = bytearray(b64url_decode(node[leaf]))
    index = data.draw(st.integers(0, len(raw) - 1))
    raw[index] ^= 1 << data.draw(st.integers(0, 7))
    node[leaf] = b64url_encode(bytes(raw))
    try:
        open_wire(record, address, privates[address])
    except SpecError as exc:
        assert exc.failure_class in FIELD_CLASSES[field], (field, str(exc))
    else:
        raise AssertionError(f"a flipped bit in {field} was accepted")


@SETTINGS
@given(data=st.data(), field=st.sampled_from(sorted(FIELD_CLASSES)),
       grow=st.booleans())
def test_any_length_change_is_a_length_error(data: st.DataObject, field: str,
                                             grow: bool) -> None:
    addresses = [("bob", "phone")]
    sealed, privates = build("len", b"hello", "alice", addresses)
    record = E.delivery_to_wire(E.fan_out(sealed.envelope)[addresses[0]])
    node, leaf = _get(record, field)
    raw = b64url_decode(node[leaf])
    if field == "payload.ciphertext":
        # The ciphertext has no fixed length: only one shorter than its tag is malformed.
        raw = raw[:data.draw(st.integers(0, 15))]
    elif grow:
        raw += data.draw(st.binary(min_size=1, max_size=8))
    else:
        raw = raw[:data.draw(st.integers(0, len(raw) - 1))]
    node[leaf] = b64url_encode(raw)
    try:
        open_wire(record, addresses[0], privates[addresses[0]])
    except SpecError as exc:
        assert exc.failure_class == "length", (field, str(exc))
    else:
        raise AssertionError(f"a resized {field} was accepted")


@SETTINGS
@given(index=st.integers(0, 31), bit=st.integers(0, 7))
def test_any_flipped_bit_of_a_disclosed_key_is_refused(index: int, bit: int) -> None:
    sealed, _ = build("ack", b"hello", "alice", [("bob", "phone")])
    delivery = E.fan_out(sealed.envelope)[("bob", "phone")]
    key = bytearray(sealed.recipients[0].keys.mac_key)
    E.verify_disclosure(delivery, bytes(key))
    key[index] ^= 1 << bit
    try:
        E.verify_disclosure(delivery, bytes(key))
    except SpecError as exc:
        assert exc.failure_class == "mac"
    else:
        raise AssertionError("a wrong MAC key verified")


@SETTINGS
@given(sender=IDENT, other=IDENT, user=IDENT, device=IDENT)
def test_header_fields_are_bound(sender: str, other: str, user: str, device: str) -> None:
    """Any change of sender or addressee is caught (binding or aead), never accepted."""
    sealed, privates = build("hdr", b"bound", sender, [(user, device)])
    delivery = E.fan_out(sealed.envelope)[(user, device)]
    private = privates[(user, device)]
    if other != sender:
        moved = E.Delivery(message_id=delivery.message_id, sender=other,
                           payload=delivery.payload, entry=delivery.entry)
        try:
            E.open_delivery(moved, user_id=user, device_id=device, device_private=private)
        except SpecError as exc:
            assert exc.failure_class == "aead"
        else:
            raise AssertionError("a changed sender was accepted")
    if other != device:
        try:
            E.open_delivery(delivery, user_id=user, device_id=other, device_private=private)
        except SpecError as exc:
            assert exc.failure_class == "binding"
        else:
            raise AssertionError("an entry for another device was accepted")
