"""envelope checks: the device registry, sending to several devices of several users,
per-device queues that hold each device's own entry only, ACKs that disclose and are
verified, and the attacks (foreign senders, replays, malformed and oversized envelopes,
wrong disclosures, other users' tokens).

The runner plays every client with keyflows.spec.envelope: it seals real envelopes to
devices whose private keys it holds, and opens what the server delivers.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass
from typing import Any

from keyflows.conformance.checks.support import expect_unauthorized, first_difference
from keyflows.conformance.clients import LOW_ORDER_X25519, non_canonical_x25519
from keyflows.conformance.http import Exchange
from keyflows.conformance.probe import CheckSkipped, Probe, User, describe
from keyflows.conformance.registry import check
from keyflows.spec import envelope as E
from keyflows.spec import primitives
from keyflows.spec.encoding import b64url_decode, b64url_encode
from keyflows.spec.errors import SpecError

FLOW = "envelope"
NEEDS = (FLOW,)
JSON = {"content-type": "application/json"}
DELIVERY_MEMBERS = {"message_id", "sender", "payload", "recipient", "received_at",
                    "expires_at"}


# --- the runner's clients ---------------------------------------------------------------------

@dataclass(frozen=True)
class Handset:
    """A device the runner registered: its owner, id and private key."""

    owner: User
    device_id: str
    private: bytes

    @property
    def public(self) -> bytes:
        return primitives.x25519_public_key(self.private)

    @property
    def device(self) -> E.Device:
        return E.Device(user_id=self.owner.user_id, device_id=self.device_id,
                        public_key=self.public)

    @property
    def label(self) -> str:
        return f"{self.owner.user_id}/{self.device_id}"


def devices_path(user_id: str) -> str:
    return f"/v1/users/{user_id}/devices"


def device_path(user_id: str, device_id: str) -> str:
    return f"/v1/users/{user_id}/devices/{device_id}"


def messages_path(user_id: str) -> str:
    return f"/v1/users/{user_id}/messages"


def queue_path(h: Handset) -> str:
    return f"/v1/users/{h.owner.user_id}/devices/{h.device_id}/messages"


def message_path(h: Handset, message_id: str) -> str:
    return f"{queue_path(h)}/{message_id}"


def ack_path(h: Handset, message_id: str) -> str:
    return f"{message_path(h, message_id)}/ack"


def payload_path(h: Handset, message_id: str) -> str:
    return f"{message_path(h, message_id)}/payload"


def key_body(public: bytes) -> dict[str, Any]:
    return {"x25519": b64url_encode(public)}


def limits(t: Probe) -> dict[str, int]:
    caps = (t.session.capabilities or {}).get(FLOW)
    if not isinstance(caps, dict):
        t.fail("capabilities list the envelope flow but have no 'envelope' member (ENV-17)",
               expected='"envelope": {"max_recipients", "max_message_bytes", ...}',
               actual=str(sorted(t.session.capabilities or {})))
    return {k: v for k, v in caps.items() if isinstance(v, int) and not isinstance(v, bool)}


def register(t: Probe, owner: User, device_id: str, private: bytes | None = None) -> Handset:
    """PUT a fresh device key under `device_id` as its owner; 201 required."""
    handset = Handset(owner=owner, device_id=device_id, private=private or os.urandom(32))
    exchange = t.request("PUT", device_path(owner.user_id, device_id), token=owner.token,
                         json_body=key_body(handset.public))
    t.expect_status(exchange, 201, what=f"PUT device {handset.label} as its owner")
    return handset


def send(t: Probe, sender: User, handsets: list[Handset], message: bytes | None = None
         ) -> tuple[E.Sealed, dict[str, Any]]:
    """Seal to the handsets and POST as the sender; 201 required."""
    sealed = E.seal(message if message is not None else os.urandom(64),
                    sender=sender.user_id, recipients=[h.device for h in handsets],
                    random=os.urandom, keep_trace=True)
    wire = E.envelope_to_wire(sealed.envelope)
    exchange = post_envelope(t, sender, wire)
    t.expect_status(exchange, 201, what=f"POST an envelope to {len(handsets)} devices")
    return sealed, wire


def post_envelope(t: Probe, sender: User, wire: Any, *, token: str | None = None) -> Exchange:
    return t.request("POST", messages_path(sender.user_id),
                     token=sender.token if token is None else token, json_body=wire)


def read_queue(t: Probe, h: Handset, *, what: str) -> list[dict[str, Any]]:
    exchange = t.request("GET", queue_path(h), token=h.owner.token)
    body = t.expect_ok_json(exchange, 200, what=what)
    messages = body.get("messages") if isinstance(body, dict) else None
    if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
        t.fail(f"{what}: the queue has no list of message objects",
               expected='{"messages": [...], ...}', actual=describe(exchange),
               exchange=exchange)
    return messages


def queued_ids(t: Probe, h: Handset, *, what: str) -> list[str]:
    return [str(m.get("message_id")) for m in read_queue(t, h, what=what)]


def find(t: Probe, h: Handset, message_id: str, *, what: str) -> dict[str, Any]:
    for record in read_queue(t, h, what=what):
        if record.get("message_id") == message_id:
            return record
    t.fail(f"{what}: message {message_id} is not in the queue of {h.label}",
           expected=f"a record with message_id {message_id}", actual="absent")


def open_record(t: Probe, h: Handset, record: dict[str, Any], *, what: str) -> E.Opened:
    """Open a delivery as the device would (ENV-13); a rejection fails the check."""
    try:
        return E.open_delivery(E.parse_delivery(record), user_id=h.owner.user_id,
                               device_id=h.device_id, device_private=h.private)
    except SpecError as exc:
        t.fail(f"{what}: {h.label} cannot open its delivery: {exc} (failure class "
               f"{exc.failure_class})", expected="a delivery this device opens",
               actual=_short(record))


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 300 else text[:297] + "..."


def mac_key_of(sealed: E.Sealed, h: Handset) -> bytes:
    for trace in sealed.recipients:
        if trace.device.device_id == h.device_id and trace.device.user_id == h.owner.user_id:
            return trace.keys.mac_key
    raise KeyError(h.label)


OWNER = "owner"


def ack(t: Probe, h: Handset, message_id: str, mac_key: bytes, *,
        token: str | None = OWNER) -> Exchange:
    """POST the ACK with the owner's token (default), another token, or none (None)."""
    return t.request("POST", ack_path(h, message_id),
                     token=h.owner.token if token == OWNER else token,
                     json_body=E.ack_to_wire(mac_key))


def family(t: Probe, label: str) -> tuple[User, Handset, Handset, Handset]:
    """A sender, and three recipient devices: two of one user, one of another."""
    sender, bob, carol = t.user(f"{label}-alice"), t.user(f"{label}-bob"), t.user(
        f"{label}-carol")
    return (sender, register(t, bob, "phone"), register(t, bob, "laptop"),
            register(t, carol, "tablet"))


# --- the device registry (step 1) -------------------------------------------------------------

@check("envelope/devices/register-and-list", requirements=("ENV-1", "ENV-3"), needs=NEEDS)
def register_and_list(t: Probe) -> None:
    """The owner registers devices (201, the device as body); anyone lists them sorted by
    device_id with their public keys and nothing else."""
    owner = t.user("devices")
    zeta = register(t, owner, "zeta")
    alpha = register(t, owner, "Alpha.1")
    exchange = t.request("GET", devices_path(owner.user_id))
    body = t.expect_ok_json(exchange, 200, what="GET the device list (no credentials)")
    expected = {"user_id": owner.user_id,
                "devices": [{"device_id": h.device_id, "x25519": b64url_encode(h.public)}
                            for h in (alpha, zeta)]}
    diff = first_difference(expected, body)
    if diff:
        t.fail(f"the device list is not as registered: {diff}", expected=str(expected),
               actual=describe(exchange), exchange=exchange)
    exchange = t.request("GET", devices_path(t.session.new_user_id("nobody")))
    body = t.expect_ok_json(exchange, 200, what="GET the device list of an unknown user")
    if not isinstance(body, dict) or body.get("devices") != []:
        t.fail("an unknown user's device list is not empty", expected='"devices": []',
               actual=describe(exchange), exchange=exchange)


@check("envelope/devices/server-assigned-id", requirements=("ENV-1",), needs=NEEDS)
def server_assigned_id(t: Probe) -> None:
    """POST .../devices registers a device under an id the server assigns: base64url of
    16 random bytes, different each time, listed with the key."""
    owner = t.user("assigned")
    ids: list[str] = []
    for _ in range(2):
        public = primitives.x25519_public_key(os.urandom(32))
        exchange = t.request("POST", devices_path(owner.user_id), token=owner.token,
                             json_body=key_body(public))
        body = t.expect_ok_json(exchange, 201, what="POST a device key as its owner")
        device_id = body.get("device_id") if isinstance(body, dict) else None
        try:
            ok = isinstance(device_id, str) and len(b64url_decode(device_id)) == 16
        except SpecError:
            ok = False
        if not ok or body.get("x25519") != b64url_encode(public):
            t.fail("the assigned device id is not base64url of 16 bytes, or the key differs",
                   expected='{"device_id": <22 base64url characters>, "x25519": <the key>}',
                   actual=describe(exchange), exchange=exchange)
        ids.append(str(device_id))
    listed = t.expect_ok_json(t.request("GET", devices_path(owner.user_id)), 200,
                              what="GET the device list")
    if ids[0] == ids[1] or sorted(d["device_id"] for d in listed["devices"]) != sorted(ids):
        t.fail("assigned ids repeat or are not listed", expected=f"both of {ids} listed",
               actual=_short(listed))


@check("envelope/devices/same-key-again-other-key-refused", requirements=("ENV-3",),
       needs=NEEDS)
def same_key_again(t: Probe) -> None:
    """Registering the same key under the same id again answers 200; another key under a
    registered id is refused with 409 and the stored key stays."""
    owner = t.user("rekey")
    h = register(t, owner, "phone")
    exchange = t.request("PUT", device_path(owner.user_id, "phone"), token=owner.token,
                         json_body=key_body(h.public))
    t.expect_status(exchange, 200, what="PUT the same key again")
    other = primitives.x25519_public_key(os.urandom(32))
    exchange = t.request("PUT", device_path(owner.user_id, "phone"), token=owner.token,
                         json_body=key_body(other))
    t.expect_rejected(exchange, 409, what="PUT another key under a registered device id")
    listed = t.expect_ok_json(t.request("GET", devices_path(owner.user_id)), 200,
                              what="GET the device list after the refused PUT")
    if listed.get("devices") != [{"device_id": "phone", "x25519": b64url_encode(h.public)}]:
        t.fail("a refused registration changed the stored key",
               expected="the first key", actual=_short(listed))


@check("envelope/devices/owner-only", requirements=("ENV-3", "API-4"), needs=NEEDS)
def devices_owner_only(t: Probe) -> None:
    """Only the owner registers or removes a device: another user's token, or none, gets
    the uniform 401 and changes nothing."""
    owner, mallory = t.user("owner"), t.user("mallory")
    h = register(t, owner, "phone")
    public = key_body(primitives.x25519_public_key(os.urandom(32)))
    for token, who in ((mallory.token, "another user's token"), (None, "no token")):
        for method, path, body in (
                ("PUT", device_path(owner.user_id, "evil"), public),
                ("POST", devices_path(owner.user_id), public),
                ("DELETE", device_path(owner.user_id, "phone"), None)):
            exchange = t.request(method, path, token=token, json_body=body)
            expect_unauthorized(t, exchange, what=f"{method} {path} with {who}")
    listed = t.expect_ok_json(t.request("GET", devices_path(owner.user_id)), 200,
                              what="GET the device list after the refused requests")
    if [d.get("device_id") for d in listed.get("devices", [])] != [h.device_id]:
        t.fail("a refused request changed the device list", expected="only 'phone'",
               actual=_short(listed))


@check("envelope/devices/bad-keys-refused", requirements=("ENV-2",), needs=NEEDS)
def bad_device_keys(t: Probe) -> None:
    """Low-order and non-canonical X25519 keys are refused with 422 (point); a key of the
    wrong length with 400 (length); nothing is registered."""
    owner = t.user("badkeys")
    valid = primitives.x25519_public_key(os.urandom(32))
    bad = {**{f"low-order-{k}": v for k, v in LOW_ORDER_X25519.items()},
           **non_canonical_x25519(valid)}
    for i, (name, key) in enumerate(sorted(bad.items())):
        exchange = t.request("PUT", device_path(owner.user_id, f"d{i}"), token=owner.token,
                             json_body=key_body(key))
        t.expect_rejected(exchange, 422, what=f"PUT a {name} device key",
                          failure_class="point")
    exchange = t.request("PUT", device_path(owner.user_id, "short"), token=owner.token,
                         json_body=key_body(valid[:31]))
    t.expect_rejected(exchange, 400, what="PUT a 31-byte device key", failure_class="length")
    listed = t.expect_ok_json(t.request("GET", devices_path(owner.user_id)), 200,
                              what="GET the device list")
    if listed.get("devices") != []:
        t.fail("a refused key was registered", expected="no device", actual=_short(listed))


@check("envelope/devices/remove", requirements=("ENV-3",), needs=NEEDS)
def remove_device(t: Probe) -> None:
    """DELETE removes a device (204): it leaves the list, its queue is gone (404), a second
    DELETE answers 404, and envelopes to it are refused."""
    sender, owner = t.user("rm-alice"), t.user("rm-bob")
    h = register(t, owner, "old")
    keep = register(t, owner, "keep")
    send(t, sender, [h, keep])
    exchange = t.request("DELETE", device_path(owner.user_id, "old"), token=owner.token)
    t.expect_status(exchange, 204, what="DELETE own device")
    t.expect_rejected(t.request("GET", queue_path(h), token=owner.token), 404,
                      what="GET the queue of the removed device")
    t.expect_rejected(t.request("DELETE", device_path(owner.user_id, "old"),
                                token=owner.token), 404, what="DELETE the device again")
    listed = t.expect_ok_json(t.request("GET", devices_path(owner.user_id)), 200,
                              what="GET the device list")
    if [d.get("device_id") for d in listed.get("devices", [])] != ["keep"]:
        t.fail("the removed device is still listed", expected="only 'keep'",
               actual=_short(listed))
    sealed = E.seal(b"late", sender=sender.user_id, recipients=[h.device], random=os.urandom)
    exchange = post_envelope(t, sender, E.envelope_to_wire(sealed.envelope))
    t.expect_rejected(exchange, 422, what="POST an envelope to the removed device",
                      failure_class="binding")


# --- sending and queues (steps 8, 9, 10) -------------------------------------------------------

@check("envelope/send/every-device-reads", requirements=("ENV-11", "ENV-13", "ENV-4"),
       needs=NEEDS)
def every_device_reads(t: Probe) -> None:
    """A message to two devices of one user and one of another: each device finds it in
    its queue and opens it to the plaintext sent."""
    sender, phone, laptop, tablet = family(t, "fanout")
    message = b"to every device of bob and carol " + os.urandom(16)
    sealed, wire = send(t, sender, [phone, laptop, tablet], message)
    for h in (phone, laptop, tablet):
        record = find(t, h, wire["message_id"], what=f"GET the queue of {h.label}")
        if record.get("sender") != sender.user_id:
            t.fail(f"the delivery to {h.label} names sender {record.get('sender')!r}",
                   expected=sender.user_id, actual=_short(record))
        opened = open_record(t, h, record, what=f"open as {h.label}")
        if opened.plaintext != message:
            t.fail(f"{h.label} decrypts another plaintext", expected=repr(message),
                   actual=repr(opened.plaintext[:80]))
    del sealed


@check("envelope/queue/own-entry-only", requirements=("ENV-11",), needs=NEEDS)
def own_entry_only(t: Probe) -> None:
    """Each delivery carries exactly this device's entry, as sent, and nothing of any other
    device's entry anywhere in the answer."""
    sender, phone, laptop, tablet = family(t, "own")
    _, wire = send(t, sender, [phone, laptop, tablet])
    entries = {(e["user_id"], e["device_id"]): e for e in wire["recipients"]}
    for h in (phone, laptop, tablet):
        exchange = t.request("GET", queue_path(h), token=h.owner.token)
        body = t.expect_ok_json(exchange, 200, what=f"GET the queue of {h.label}")
        record = next((m for m in body.get("messages", [])
                       if m.get("message_id") == wire["message_id"]), None)
        if record is None:
            t.fail(f"the message is not in the queue of {h.label}", expected="present",
                   actual=describe(exchange), exchange=exchange)
        mine = entries[(h.owner.user_id, h.device_id)]
        diff = first_difference(mine, record.get("recipient"))
        extra = sorted(set(record) - DELIVERY_MEMBERS - {"mac_key"})
        if diff or extra:
            t.fail(f"the delivery to {h.label} does not carry exactly its own entry "
                   f"({diff or 'extra members ' + ', '.join(extra)})",
                   expected=f"recipient = {mine}", actual=describe(exchange),
                   exchange=exchange)
        text = exchange.response_body.decode("utf-8", "replace")
        for address, entry in entries.items():
            if address != (h.owner.user_id, h.device_id) and (
                    entry["mac"] in text or entry["ephemeral_key"] in text):
                t.fail(f"the queue of {h.label} shows the entry of {'/'.join(address)}",
                       expected="no other device's entry", actual=describe(exchange),
                       exchange=exchange)


@check("envelope/queue/owner-only", requirements=("ENV-12", "API-4"), needs=NEEDS)
def queue_owner_only(t: Probe) -> None:
    """A device's queue and records are served to its owner only: the sender, another
    recipient and no token all get the uniform 401."""
    sender, phone, _, tablet = family(t, "qowner")
    _, wire = send(t, sender, [phone, tablet])
    for token, who in ((sender.token, "the sender"), (tablet.owner.token, "another recipient"),
                       (None, "no token")):
        for path in (queue_path(phone), message_path(phone, wire["message_id"])):
            expect_unauthorized(t, t.request("GET", path, token=token),
                                what=f"GET {path} as {who}")


@check("envelope/queue/arrival-order", requirements=("ENV-12",), needs=NEEDS)
def arrival_order(t: Probe) -> None:
    """A queue lists its messages in the order the server accepted them."""
    sender, other = t.user("order-alice"), t.user("order-dave")
    owner = t.user("order-bob")
    h = register(t, owner, "phone")
    ids = [send(t, s, [h])[1]["message_id"] for s in (sender, other, sender)]
    got = queued_ids(t, h, what="GET the queue")
    if got != ids:
        t.fail("the queue is not in arrival order", expected=str(ids), actual=str(got))


@check("envelope/queue/unaddressed-device-sees-nothing", requirements=("ENV-11",),
       needs=NEEDS)
def unaddressed(t: Probe) -> None:
    """A device not addressed by an envelope -- even one of an addressed user -- gets
    nothing of it, and cannot fetch or ACK it by id (404)."""
    sender, phone, laptop, _ = family(t, "unaddr")
    sealed, wire = send(t, sender, [phone])
    if queued_ids(t, laptop, what=f"GET the queue of {laptop.label}"):
        t.fail(f"{laptop.label} was not addressed but has messages", expected="[]",
               actual="a non-empty queue")
    t.expect_rejected(t.request("GET", message_path(laptop, wire["message_id"]),
                                token=laptop.owner.token), 404,
                      what=f"GET the message as the unaddressed {laptop.label}")
    t.expect_rejected(ack(t, laptop, wire["message_id"], mac_key_of(sealed, phone)), 404,
                      what=f"ACK as the unaddressed {laptop.label} with phone's MAC key")
    if wire["message_id"] not in queued_ids(t, phone, what="GET the queue of the recipient"):
        t.fail("the message left the recipient's queue after another device's ACK",
               expected="still queued", actual="absent")


# --- acknowledgement and disclosure (step 11) ----------------------------------------------------

@check("envelope/ack/removes-from-queue", requirements=("ENV-15",), needs=NEEDS)
def ack_removes(t: Probe) -> None:
    """A valid ACK (200) removes the message from that device's queue only."""
    sender, phone, laptop, _ = family(t, "ackrm")
    sealed, wire = send(t, sender, [phone, laptop])
    exchange = ack(t, phone, wire["message_id"], mac_key_of(sealed, phone))
    t.expect_status(exchange, 200, what="ACK with the right MAC key")
    if wire["message_id"] in queued_ids(t, phone, what="GET the queue after the ACK"):
        t.fail("the acknowledged message is still in the queue", expected="absent",
               actual="present")
    if wire["message_id"] not in queued_ids(t, laptop, what="GET the other device's queue"):
        t.fail("one device's ACK removed the message from another device's queue",
               expected="still queued for the laptop", actual="absent")


@check("envelope/ack/repeat-harmless", requirements=("ENV-15",), needs=NEEDS)
def ack_repeat(t: Probe) -> None:
    """The same ACK again answers 200 with the same record and changes nothing."""
    sender, phone, _, _ = family(t, "ack2")
    sealed, wire = send(t, sender, [phone])
    key = mac_key_of(sealed, phone)
    first = t.expect_ok_json(ack(t, phone, wire["message_id"], key), 200, what="first ACK")
    second = t.expect_ok_json(ack(t, phone, wire["message_id"], key), 200, what="second ACK")
    diff = first_difference(first, second)
    if diff:
        t.fail(f"the second ACK answered another record: {diff}", expected=_short(first),
               actual=_short(second))
    if wire["message_id"] in queued_ids(t, phone, what="GET the queue after two ACKs"):
        t.fail("the message is back in the queue", expected="absent", actual="present")


@check("envelope/ack/only-the-recipient", requirements=("ENV-14", "API-4"), needs=NEEDS)
def ack_only_recipient(t: Probe) -> None:
    """Only the device's owner can ACK: the sender and another recipient get the uniform
    401 even with the right MAC key, and the message stays queued."""
    sender, phone, _, tablet = family(t, "ackwho")
    sealed, wire = send(t, sender, [phone, tablet])
    key = mac_key_of(sealed, phone)
    for token, who in ((sender.token, "the sender"), (tablet.owner.token, "another recipient"),
                       (None, "no token")):
        expect_unauthorized(t, ack(t, phone, wire["message_id"], key, token=token),
                            what=f"ACK phone's message as {who}")
    if wire["message_id"] not in queued_ids(t, phone, what="GET the queue"):
        t.fail("a refused ACK removed the message", expected="still queued", actual="absent")


@check("envelope/ack/wrong-key-refused", requirements=("ENV-14",), needs=NEEDS)
def ack_wrong_key(t: Probe) -> None:
    """A disclosed key that does not verify the entry's MAC -- another device's MAC key,
    the encryption key, a flipped bit -- is refused with 422 (mac); the message stays
    queued with no disclosure."""
    sender, phone, laptop, _ = family(t, "ackbad")
    sealed, wire = send(t, sender, [phone, laptop])
    right = mac_key_of(sealed, phone)
    phone_trace = next(tr for tr in sealed.recipients if tr.device.device_id == "phone")
    flipped = bytes([right[0] ^ 1]) + right[1:]
    for key, what in ((mac_key_of(sealed, laptop), "the laptop's MAC key"),
                      (phone_trace.keys.encryption_key, "the encryption key"),
                      (flipped, "the MAC key with one bit flipped")):
        t.expect_rejected(ack(t, phone, wire["message_id"], key), 422,
                          what=f"ACK with {what}", failure_class="mac")
    record = find(t, phone, wire["message_id"], what="GET the queue after refused ACKs")
    if "mac_key" in record:
        t.fail("a refused ACK left a disclosure", expected="no mac_key", actual=_short(record))
    exchange = t.request("POST", ack_path(phone, wire["message_id"]), token=phone.owner.token,
                         json_body={"mac_key": b64url_encode(right[:31])})
    t.expect_rejected(exchange, 400, what="ACK with a 31-byte key", failure_class="length")


@check("envelope/ack/disclosure-served", requirements=("ENV-15", "ENV-14"), needs=NEEDS)
def disclosure_served(t: Probe) -> None:
    """After the ACK the message record carries the disclosed mac_key, which verifies the
    entry's MAC: anyone holding the record could now have made that MAC."""
    sender, phone, _, _ = family(t, "disclose")
    sealed, wire = send(t, sender, [phone])
    record = find(t, phone, wire["message_id"], what="GET the queue")
    opened = open_record(t, phone, record, what="open the delivery")
    t.expect_status(ack(t, phone, wire["message_id"], E.disclosure_for(opened)), 200,
                    what="ACK with the MAC key the device derived")
    exchange = t.request("GET", message_path(phone, wire["message_id"]),
                         token=phone.owner.token)
    body = t.expect_ok_json(exchange, 200, what="GET the message record after the ACK")
    if body.get("mac_key") != b64url_encode(E.disclosure_for(opened)):
        t.fail("the record does not serve the disclosed MAC key",
               expected=f"mac_key = {b64url_encode(E.disclosure_for(opened))}",
               actual=describe(exchange), exchange=exchange)
    try:
        delivery = E.parse_delivery(body)
        assert delivery.mac_key is not None
        E.verify_disclosure(delivery, delivery.mac_key)
    except SpecError as exc:
        t.fail(f"the served disclosure does not verify the served record: {exc}",
               expected="a record whose mac_key verifies its MAC", actual=describe(exchange),
               exchange=exchange)
    del sealed


@check("envelope/ack/unknown-message", requirements=("ENV-14",), needs=NEEDS)
def ack_unknown(t: Probe) -> None:
    """ACK or GET of a message id never sent to the device answers 404."""
    owner = t.user("ack404")
    h = register(t, owner, "phone")
    ghost = b64url_encode(os.urandom(16))
    t.expect_rejected(ack(t, h, ghost, os.urandom(32)), 404, what="ACK an unknown message")
    t.expect_rejected(t.request("GET", message_path(h, ghost), token=owner.token), 404,
                      what="GET an unknown message")


# --- the payload raw (steps 9 and 10, ENV-19, ENV-20) -------------------------------------------

def read_queue_omit(t: Probe, h: Handset, *, what: str) -> list[dict[str, Any]]:
    exchange = t.request("GET", queue_path(h) + "?payload=omit", token=h.owner.token)
    body = t.expect_ok_json(exchange, 200, what=what)
    messages = body.get("messages") if isinstance(body, dict) else None
    if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
        t.fail(f"{what}: the queue has no list of message objects",
               expected='{"messages": [...], ...}', actual=describe(exchange),
               exchange=exchange)
    return messages


def fetch_raw(t: Probe, h: Handset, message_id: str, *, what: str) -> bytes:
    """GET .../payload as the device's owner: 200 application/octet-stream required."""
    exchange = t.request("GET", payload_path(h, message_id), token=h.owner.token)
    t.expect_status(exchange, 200, what=what)
    if exchange.media_type != "application/octet-stream":
        t.fail(f"{what}: expected application/octet-stream, got "
               f"{exchange.media_type or 'no content-type'}",
               expected="content-type application/octet-stream", actual=describe(exchange),
               exchange=exchange)
    return exchange.response_body


@check("envelope/payload/raw-byte-identical", requirements=("ENV-19", "ENV-20", "ENV-13"),
       needs=NEEDS)
def raw_byte_identical(t: Probe) -> None:
    """GET .../messages/{message_id}/payload serves each addressed device the payload
    ciphertext exactly as posted -- of that message, not another -- and the device opens
    it with its queue record read with payload=omit."""
    sender, phone, laptop, tablet = family(t, "raw")
    sent = []
    for n in range(2):
        message = f"raw payload {n} ".encode() + os.urandom(4096 + n)
        sealed, wire = send(t, sender, [phone, laptop, tablet], message)
        sent.append((message, sealed, wire))
    for message, sealed, wire in sent:
        posted = sealed.envelope.payload.ciphertext
        for h in (phone, laptop, tablet):
            raw = fetch_raw(t, h, wire["message_id"],
                            what=f"GET the raw payload of {wire['message_id']} as {h.label}")
            if raw != posted:
                t.fail(f"the raw payload served to {h.label} is not the posted ciphertext "
                       f"of message {wire['message_id']}",
                       expected=f"{len(posted)} bytes, SHA-256 "
                                f"{primitives.sha256(posted).hex()}",
                       actual=f"{len(raw)} bytes, SHA-256 {primitives.sha256(raw).hex()}")
            record = next((m for m in read_queue_omit(
                t, h, what=f"GET the queue of {h.label} with payload=omit")
                if m.get("message_id") == wire["message_id"]), None)
            if record is None:
                t.fail(f"message {wire['message_id']} is not in the payload=omit queue of "
                       f"{h.label}", expected="present", actual="absent")
            try:
                opened = E.open_delivery(E.parse_delivery(record, ciphertext=raw),
                                         user_id=h.owner.user_id, device_id=h.device_id,
                                         device_private=h.private)
            except SpecError as exc:
                t.fail(f"{h.label} cannot open its payload=omit record with the raw payload: "
                       f"{exc} (failure class {exc.failure_class})",
                       expected="a record and payload this device opens",
                       actual=_short(record))
            if opened.plaintext != message:
                t.fail(f"{h.label} decrypts another plaintext from the raw payload",
                       expected=repr(message[:40]), actual=repr(opened.plaintext[:40]))


@check("envelope/payload/omit-option", requirements=("ENV-19", "ENV-11"), needs=NEEDS)
def omit_option(t: Probe) -> None:
    """The default queue read carries the payload inline, unchanged; with payload=omit
    every record is the same but for a payload of {"nonce"} only."""
    sender, phone, _, _ = family(t, "omit")
    _, wire = send(t, sender, [phone])
    inline = find(t, phone, wire["message_id"], what="GET the queue (default)")
    if inline.get("payload") != wire["payload"]:
        t.fail("the default queue read does not carry the payload inline as posted",
               expected=_short(wire["payload"]), actual=_short(inline.get("payload")))
    omitted = next((m for m in read_queue_omit(t, phone, what="GET the queue, payload=omit")
                    if m.get("message_id") == wire["message_id"]), None)
    expected = {**inline, "payload": {"nonce": wire["payload"]["nonce"]}}
    diff = first_difference(expected, omitted)
    if diff:
        t.fail(f"the payload=omit record is not the default one with the ciphertext left "
               f"out: {diff}", expected=_short(expected), actual=_short(omitted))
    exchange = t.request("GET", queue_path(phone) + "?payload=maybe", token=phone.owner.token)
    t.expect_rejected(exchange, 400, what="GET the queue with payload=maybe")


@check("envelope/payload/owner-only", requirements=("ENV-19", "API-4"), needs=NEEDS)
def raw_owner_only(t: Probe) -> None:
    """The raw payload is served to the device's owner only: the sender, another
    recipient (who holds the same ciphertext) and no token get the uniform 401."""
    sender, phone, _, tablet = family(t, "rawowner")
    _, wire = send(t, sender, [phone, tablet])
    path = payload_path(phone, wire["message_id"])
    for token, who in ((sender.token, "the sender"), (tablet.owner.token, "another recipient"),
                       (None, "no token")):
        expect_unauthorized(t, t.request("GET", path, token=token), what=f"GET {path} as {who}")


@check("envelope/payload/unknown-message", requirements=("ENV-19",), needs=NEEDS)
def raw_unknown(t: Probe) -> None:
    """The raw payload of a message id never sent, or not addressed to this device (even
    one of an addressed user), answers 404 problem+json."""
    sender, phone, laptop, _ = family(t, "raw404")
    _, wire = send(t, sender, [phone])
    ghost = b64url_encode(os.urandom(16))
    t.expect_rejected(t.request("GET", payload_path(phone, ghost), token=phone.owner.token),
                      404, what="GET the raw payload of an unknown message")
    t.expect_rejected(t.request("GET", payload_path(laptop, wire["message_id"]),
                                token=laptop.owner.token), 404,
                      what=f"GET the raw payload as the unaddressed {laptop.label}")


# --- what the server refuses (steps 8 and 12) -----------------------------------------------------

def expect_nothing_queued(t: Probe, handsets: list[Handset], message_id: str, *,
                          what: str) -> None:
    for h in handsets:
        if message_id in queued_ids(t, h, what=f"GET the queue of {h.label} after: {what}"):
            t.fail(f"a refused envelope was queued for {h.label} ({what})",
                   expected="nothing stored", actual="queued")


@check("envelope/submit/foreign-sender-refused", requirements=("ENV-10", "API-4"),
       needs=NEEDS)
def foreign_sender(t: Probe) -> None:
    """An envelope naming another sender is refused with 422 (binding); posting under
    another user's path gets the uniform 401; nothing is queued."""
    sender, phone, _, _ = family(t, "foreign")
    mallory = t.user("foreign-mallory")
    sealed = E.seal(b"x", sender=sender.user_id, recipients=[phone.device], random=os.urandom)
    wire = E.envelope_to_wire(sealed.envelope)
    t.expect_rejected(post_envelope(t, mallory, wire), 422,
                      what="mallory POSTs an envelope naming alice as sender",
                      failure_class="binding")
    expect_unauthorized(t, post_envelope(t, sender, wire, token=mallory.token),
                        what="mallory POSTs under alice's path with her own token")
    expect_unauthorized(t, t.request("POST", messages_path(sender.user_id), json_body=wire),
                        what="POST an envelope with no token")
    expect_nothing_queued(t, [phone], wire["message_id"], what="the refused posts")


@check("envelope/submit/unregistered-device-refused", requirements=("ENV-10",), needs=NEEDS)
def unregistered(t: Probe) -> None:
    """An envelope addressing one unregistered device is refused whole with 422 (binding):
    not even the registered devices get it."""
    sender, phone, _, _ = family(t, "unreg")
    ghost = Handset(owner=phone.owner, device_id="ghost", private=os.urandom(32))
    sealed = E.seal(b"x", sender=sender.user_id, recipients=[phone.device, ghost.device],
                    random=os.urandom)
    wire = E.envelope_to_wire(sealed.envelope)
    t.expect_rejected(post_envelope(t, sender, wire), 422,
                      what="POST an envelope to a registered and an unregistered device",
                      failure_class="binding")
    expect_nothing_queued(t, [phone], wire["message_id"], what="the refused post")


@check("envelope/submit/replay-refused", requirements=("ENV-10",), needs=NEEDS)
def replay_refused(t: Probe) -> None:
    """The same envelope posted again -- also after it was acknowledged -- is refused with
    409 (replay) and not queued twice."""
    sender, phone, _, _ = family(t, "replay")
    sealed, wire = send(t, sender, [phone])
    t.expect_rejected(post_envelope(t, sender, wire), 409, what="POST the envelope again",
                      failure_class="replay")
    if queued_ids(t, phone, what="GET the queue").count(wire["message_id"]) != 1:
        t.fail("the replayed envelope was queued twice", expected="once", actual="twice")
    t.expect_status(ack(t, phone, wire["message_id"], mac_key_of(sealed, phone)), 200,
                    what="ACK the message")
    t.expect_rejected(post_envelope(t, sender, wire), 409,
                      what="POST the acknowledged envelope again", failure_class="replay")
    if wire["message_id"] in queued_ids(t, phone, what="GET the queue after the replay"):
        t.fail("an acknowledged message came back through a replay", expected="absent",
               actual="queued")


def mutations(wire: dict[str, Any]) -> list[tuple[str, Any, int, str]]:
    """(what, body, status, failure class) of malformed envelopes (ENV-9, ENV-5, API-6)."""
    def changed(fn: Any) -> dict[str, Any]:
        out = copy.deepcopy(wire)
        fn(out)
        return out

    def resize(text: str, n: int) -> str:
        raw = b64url_decode(text)
        return b64url_encode(raw[:n] if n <= len(raw) else raw + bytes(n - len(raw)))

    first = wire["recipients"][0]
    return [
        ("a 31-byte ephemeral key", changed(lambda w: w["recipients"][0].update(
            ephemeral_key=resize(first["ephemeral_key"], 31))), 400, "length"),
        ("a 47-byte wrapped key", changed(lambda w: w["recipients"][0].update(
            wrapped_key=resize(first["wrapped_key"], 47))), 400, "length"),
        ("a 33-byte MAC", changed(lambda w: w["recipients"][0].update(
            mac=resize(first["mac"], 33))), 400, "length"),
        ("a 15-byte message id", changed(lambda w: w.update(
            message_id=resize(wire["message_id"], 15))), 400, "length"),
        ("a ciphertext shorter than its tag", changed(lambda w: w["payload"].update(
            ciphertext=b64url_encode(bytes(15)))), 400, "length"),
        ("the same device twice", changed(lambda w: w["recipients"].append(
            copy.deepcopy(first))), 400, "decode"),
        ("two entries with one ephemeral key", changed(lambda w: w["recipients"][1].update(
            ephemeral_key=first["ephemeral_key"])), 400, "decode"),
        ("no recipients", changed(lambda w: w.update(recipients=[])), 400, "params"),
        ("an unknown member", changed(lambda w: w.update(comment="hi")), 400, "decode"),
        ("an entry without its MAC", changed(lambda w: w["recipients"][0].pop("mac")), 400,
         "decode"),
        ("a padded base64url MAC", changed(lambda w: w["recipients"][0].update(
            mac=first["mac"] + "=")), 400, "decode"),
        ("a low-order ephemeral key", changed(lambda w: w["recipients"][0].update(
            ephemeral_key=b64url_encode(LOW_ORDER_X25519["one"]))), 422, "point"),
        ("a non-canonical ephemeral key", changed(lambda w: w["recipients"][0].update(
            ephemeral_key=b64url_encode((2**255 - 19 + 9).to_bytes(32, "little")))), 422,
         "point"),
    ]


@check("envelope/submit/malformed-refused", requirements=("ENV-9", "ENV-5", "API-6"),
       needs=NEEDS)
def malformed(t: Probe) -> None:
    """Malformed envelopes are refused cleanly -- 400 with failure class length, decode or
    params, 422 (point) for a bad ephemeral key -- and nothing is queued."""
    sender, phone, laptop, _ = family(t, "malformed")
    sealed = E.seal(b"x", sender=sender.user_id, recipients=[phone.device, laptop.device],
                    random=os.urandom)
    wire = E.envelope_to_wire(sealed.envelope)
    for what, body, status, failure_class in mutations(wire):
        t.expect_rejected(post_envelope(t, sender, body), status, what=f"POST {what}",
                          failure_class=failure_class)
    exchange = t.request("POST", messages_path(sender.user_id), token=sender.token,
                         headers=JSON, body=b'{"message_id": ')
    t.expect_rejected(exchange, 400, what="POST a body that is not JSON")
    exchange = t.request("POST", messages_path(sender.user_id), token=sender.token,
                         headers={"content-type": "text/plain"}, body=b"{}")
    t.expect_rejected(exchange, 415, what="POST an envelope as text/plain")
    expect_nothing_queued(t, [phone, laptop], wire["message_id"], what="malformed posts")


@check("envelope/submit/too-many-recipients-refused", requirements=("ENV-17",), needs=NEEDS)
def too_many_recipients(t: Probe) -> None:
    """An envelope with max_recipients + 1 entries is refused with 413 (params)."""
    limit = limits(t).get("max_recipients")
    if not limit:
        t.fail("capabilities lack envelope.max_recipients", expected="a positive integer",
               actual=str(limits(t)))
    if limit > 5000:
        raise CheckSkipped(f"max_recipients {limit} is too large to exercise cheaply")
    sender, phone, _, _ = family(t, "many")
    sealed = E.seal(b"x", sender=sender.user_id, recipients=[phone.device], random=os.urandom)
    wire = E.envelope_to_wire(sealed.envelope)
    template = wire["recipients"][0]
    # Entries beyond the first are syntactically valid and distinct; the count decides.
    wire["recipients"] += [
        {**template, "device_id": f"d{i}",
         # 8 * i survives clamping, so every private key and public key differs.
         "ephemeral_key": b64url_encode(primitives.x25519_public_key(
             (8 * i).to_bytes(32, "little")))}
        for i in range(1, limit + 1)]
    t.expect_rejected(post_envelope(t, sender, wire), 413,
                      what=f"POST an envelope with {limit + 1} recipients",
                      failure_class="params")
    expect_nothing_queued(t, [phone], wire["message_id"], what="the refused post")


@check("envelope/submit/oversized-message-refused", requirements=("ENV-17", "API-5"),
       needs=NEEDS)
def oversized_message(t: Probe) -> None:
    """A ciphertext of max_message_bytes + 1 bytes is refused with 413 (params), and a body
    over envelope.max_body_bytes with 413; a ciphertext of exactly the limit is accepted."""
    caps = limits(t)
    limit, body_limit = caps.get("max_message_bytes"), caps.get("max_body_bytes")
    if not limit or not body_limit:
        t.fail("capabilities lack envelope.max_message_bytes or max_body_bytes",
               expected="positive integers", actual=str(caps))
    if limit > 8 * 2**20 or body_limit > 16 * 2**20:
        raise CheckSkipped(f"limits {limit} / {body_limit} are too large to exercise cheaply")
    sender, phone, _, _ = family(t, "big")
    at_limit = E.seal(bytes(limit - 16), sender=sender.user_id, recipients=[phone.device],
                      random=os.urandom)
    t.expect_status(post_envelope(t, sender, E.envelope_to_wire(at_limit.envelope)), 201,
                    what=f"POST a ciphertext of exactly max_message_bytes ({limit})")
    over = E.seal(bytes(limit - 15), sender=sender.user_id, recipients=[phone.device],
                  random=os.urandom)
    over_wire = E.envelope_to_wire(over.envelope)
    t.expect_rejected(post_envelope(t, sender, over_wire), 413,
                      what=f"POST a ciphertext of {limit + 1} bytes", failure_class="params")
    padded = b'{"pad":"' + b"A" * body_limit + b'"}'
    exchange = t.request("POST", messages_path(sender.user_id), token=sender.token,
                         headers=JSON, body=padded)
    t.expect_rejected(exchange, 413, what=f"POST a body of {len(padded)} bytes")
    expect_nothing_queued(t, [phone], over_wire["message_id"], what="the refused post")


# --- errors and capabilities ----------------------------------------------------------------------

@check("envelope/errors/uniform-401", requirements=("API-4",), needs=NEEDS)
def uniform_401(t: Probe) -> None:
    """Every authentication failure on every envelope operation answers the same 401 body,
    byte for byte, whether or not the addressed device or message exists."""
    sender, phone, _, _ = family(t, "u401")
    _, wire = send(t, sender, [phone])
    stranger = t.user("u401-stranger")
    missing = Handset(owner=phone.owner, device_id="missing", private=os.urandom(32))
    requests: list[tuple[str, str, Any]] = [
        ("POST", messages_path(sender.user_id), wire),
        ("PUT", device_path(phone.owner.user_id, "x"), key_body(phone.public)),
        ("DELETE", device_path(phone.owner.user_id, "phone"), None),
        ("GET", queue_path(phone), None), ("GET", queue_path(missing), None),
        ("GET", message_path(phone, wire["message_id"]), None),
        ("GET", message_path(missing, wire["message_id"]), None),
        ("POST", ack_path(phone, wire["message_id"]), E.ack_to_wire(os.urandom(32))),
        ("GET", payload_path(phone, wire["message_id"]), None),
        ("GET", payload_path(missing, wire["message_id"]), None),
    ]
    bodies = set()
    for method, path, body in requests:
        exchange = t.request(method, path, token=stranger.token, json_body=body)
        expect_unauthorized(t, exchange, what=f"{method} {path} with a stranger's token")
        bodies.add(exchange.response_body)
    if len(bodies) != 1:
        t.fail("the 401 bodies differ between envelope operations",
               expected="one byte-identical body", actual=f"{len(bodies)} different bodies")


@check("envelope/capabilities/limits-advertised", requirements=("ENV-17", "API-7"),
       needs=NEEDS)
def limits_advertised(t: Probe) -> None:
    """The capabilities carry envelope.max_recipients, max_message_bytes, max_body_bytes,
    retention_seconds and max_queue_page as positive integers."""
    caps = limits(t)
    missing = [k for k in ("max_recipients", "max_message_bytes", "max_body_bytes",
                           "retention_seconds", "max_queue_page") if caps.get(k, 0) < 1]
    if missing:
        t.fail(f"capabilities.envelope lacks {', '.join(missing)}",
               expected="positive integers", actual=str(caps))


@check("envelope/retention/expiry-stated", requirements=("ENV-17",), needs=NEEDS)
def expiry_stated(t: Probe) -> None:
    """Accepted messages carry received_at and expires_at = received_at +
    retention_seconds, in the answer to the sender and in every delivery."""
    retention = limits(t).get("retention_seconds")
    sender, phone, _, _ = family(t, "expiry")
    sealed = E.seal(b"x", sender=sender.user_id, recipients=[phone.device], random=os.urandom)
    wire = E.envelope_to_wire(sealed.envelope)
    exchange = post_envelope(t, sender, wire)
    answer = t.expect_ok_json(exchange, 201, what="POST an envelope")
    record = find(t, phone, wire["message_id"], what="GET the queue")
    for what, body in (("the answer to the sender", answer), ("the delivery", record)):
        received, expires = body.get("received_at"), body.get("expires_at")
        if not isinstance(received, int) or not isinstance(expires, int) or \
                expires - received != retention:
            t.fail(f"{what} does not state expires_at = received_at + retention_seconds",
                   expected=f"expires_at - received_at = {retention}", actual=_short(body))
