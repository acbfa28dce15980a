"""envelope checks: signed device lists, sending in both suites, raw STREAM payloads,
per-device queues holding each device's own entry only, ACKs that dequeue and drain, and
the attacks (unsigned or foreign device lists, ghost devices, unauthenticated or
mismatched senders, replays, truncated, altered or mixed payloads, payloads kept after
every ACK, two-key payloads).

The runner plays every client with keyflows.spec: it publishes keypairs, signs device
lists, verifies each recipient's list against the recipient's published key before
encrypting (ENV-22), seals real envelopes, and opens what the server delivers.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from keyflows.conformance.checks.support import expect_unauthorized, first_difference
from keyflows.conformance.clients import Sealed
from keyflows.conformance.http import Exchange
from keyflows.conformance.probe import CheckSkipped, Probe, User, describe
from keyflows.conformance.redaction import remember_secret
from keyflows.conformance.registry import check
from keyflows.spec import envelope as E
from keyflows.spec import envelope_devices as D
from keyflows.spec import envelope_stream as S
from keyflows.spec import primitives
from keyflows.spec.drbg import unrecorded
from keyflows.spec.encoding import b64url_encode
from keyflows.spec.errors import SpecError

FLOW = "envelope"
NEEDS = (FLOW,)
CLIENT = "chat"
RANDOM = unrecorded(os.urandom)
OCTET = {"content-type": "application/octet-stream"}
RECORD_MEMBERS = {*E.DELIVERY_MEMBERS, *E.DELIVERY_SERVER_MEMBERS}


# --- the runner's clients ---------------------------------------------------------------------

@dataclass
class Person:
    """A user with a published keypair for the application, and its device list."""

    user: User
    keypair: Sealed
    version: int = 0
    devices: dict[str, D.Device] = field(default_factory=dict)

    @property
    def user_id(self) -> str:
        return self.user.user_id

    @property
    def published(self) -> D.PublishedKeys:
        private = self.keypair.private
        return D.PublishedKeys(user_id=self.user_id, client_id=CLIENT,
                               key_version=self.keypair.record["key_version"],
                               x25519=primitives.x25519_public_key(private.x25519),
                               ed25519=primitives.ed25519_public_key(private.ed25519_seed))

    @property
    def sender(self) -> E.SenderKeys:
        return E.SenderKeys(user_id=self.user_id, client_id=CLIENT,
                            key_version=self.keypair.record["key_version"],
                            x25519_private=self.keypair.private.x25519)


@dataclass(frozen=True)
class Handset:
    """A device the runner registered: its owner, id and private keys."""

    owner: Person
    device_id: str
    keys: D.DevicePrivateKeys

    @property
    def device(self) -> D.Device:
        x25519, mlkem768 = D.device_keys(self.keys)
        return D.Device(user_id=self.owner.user_id, device_id=self.device_id, x25519=x25519,
                        mlkem768=mlkem768)

    @property
    def label(self) -> str:
        return f"{self.owner.user_id}/{self.device_id}"


def app_path(user_id: str) -> str:
    return f"/v1/users/{user_id}/apps/{CLIENT}"


def is_stream_length(length: int) -> bool:
    """Whether some STREAM payload has exactly `length` bytes (ENV-23)."""
    try:
        S.plaintext_length(length)
    except SpecError:
        return False
    return True


OTHER_APP = "mail"
"""A second application some checks set up in full, to tell "another application" from
"an application without keys"."""


def devices_path(user_id: str) -> str:
    return f"{app_path(user_id)}/devices"


def messages_path(user_id: str) -> str:
    return f"{app_path(user_id)}/messages"


def upload_path(user_id: str, message_id: str) -> str:
    return f"{messages_path(user_id)}/{message_id}/payload"


def queue_path(h: Handset) -> str:
    return f"{devices_path(h.owner.user_id)}/{h.device_id}/messages"


def message_path(h: Handset, message_id: str) -> str:
    return f"{queue_path(h)}/{message_id}"


def limits(t: Probe) -> dict[str, Any]:
    caps = (t.session.capabilities or {}).get(FLOW)
    if not isinstance(caps, dict):
        t.fail("capabilities list the envelope flow but have no 'envelope' member (ENV-17)",
               expected='"envelope": {"suites", "max_recipients", "max_payload_bytes", ...}',
               actual=str(sorted(t.session.capabilities or {})))
    return caps


def suites(t: Probe) -> list[str]:
    offered = limits(t).get("suites")
    if not isinstance(offered, list) or not offered:
        t.fail("the envelope capabilities advertise no suites (ENV-17, ENV-27)",
               expected='"suites": ["x25519", ...]', actual=str(offered))
    return [s for s in offered if s in E.SUITES]


def person(t: Probe, label: str) -> Person:
    """A fresh user with a keypair published for the application."""
    user = t.user(label)
    return Person(user=user, keypair=t.publish(user, CLIENT))


def new_handset(owner: Person, device_id: str) -> Handset:
    keys = D.generate_device_keys(os.urandom)
    remember_secret(keys.x25519)
    remember_secret(keys.mlkem_seed)
    return Handset(owner=owner, device_id=device_id, keys=keys)


def signed_list(owner: Person, devices: list[D.Device], version: int, *,
                signer: bytes | None = None, key_version: int | None = None) -> dict[str, Any]:
    listed = D.sign_device_list(
        owner_seed=owner.keypair.private.ed25519_seed if signer is None else signer,
        user_id=owner.user_id, client_id=CLIENT,
        key_version=owner.published.key_version if key_version is None else key_version,
        version=version, devices=devices)
    return D.device_list_to_wire(listed)


def put_list(t: Probe, owner: Person, body: Any, *, token: str | None = None) -> Exchange:
    return t.request("PUT", devices_path(owner.user_id),
                     token=owner.user.token if token is None else token, json_body=body)


def register(t: Probe, owner: Person, *device_ids: str) -> list[Handset]:
    """Publish the owner's next list version with these devices added; 201 or 200."""
    handsets = [new_handset(owner, d) for d in device_ids]
    devices = {**owner.devices, **{h.device_id: h.device for h in handsets}}
    exchange = put_list(t, owner, signed_list(owner, list(devices.values()), owner.version + 1))
    t.expect_status(exchange, 201 if owner.version == 0 else 200,
                    what=f"PUT version {owner.version + 1} of {owner.user_id}'s device list")
    owner.version += 1
    owner.devices = devices
    return handsets


def remove(t: Probe, owner: Person, device_id: str) -> None:
    devices = {k: v for k, v in owner.devices.items() if k != device_id}
    exchange = put_list(t, owner, signed_list(owner, list(devices.values()), owner.version + 1))
    t.expect_status(exchange, 200, what=f"PUT a version of the list without {device_id}")
    owner.version += 1
    owner.devices = devices


def verified_devices(t: Probe, owner: Person) -> list[D.Device]:
    """ENV-22, as a sender: GET the list and the owner's public keys, verify, return."""
    keys = t.expect_ok_json(t.get_public_keys(owner.user_id, CLIENT), 200,
                            what=f"GET {owner.user_id}'s public keys")
    exchange = t.request("GET", devices_path(owner.user_id))
    listed = t.expect_ok_json(exchange, 200, what=f"GET {owner.user_id}'s device list")
    try:
        published = D.published_keys_of(keys, user_id=owner.user_id, client_id=CLIENT)
        return list(D.verify_device_list(listed, published).devices)
    except SpecError as exc:
        t.fail(f"{owner.user_id}'s device list does not verify against the published key: "
               f"{exc} (failure class {exc.failure_class})",
               expected="the list its owner signed", actual=describe(exchange),
               exchange=exchange)


def post_envelope(t: Probe, sender: Person, wire: Any, *, token: str | None = None,
                  path_user: str | None = None) -> Exchange:
    """POST as the sender; token "" sends no credentials at all."""
    return t.request("POST", messages_path(path_user or sender.user_id),
                     token=(sender.user.token if token is None else token) or None,
                     json_body=wire)


def upload(t: Probe, sender: Person, message_id: str, payload: bytes, *,
           token: str | None = None) -> Exchange:
    return t.request("PUT", upload_path(sender.user_id, message_id),
                     token=sender.user.token if token is None else token, headers=OCTET,
                     body=payload)


@dataclass(frozen=True)
class Sent:
    sealed: E.Sealed
    wire: dict[str, Any]

    @property
    def message_id(self) -> str:
        return str(self.wire["message_id"])


def send(t: Probe, sender: Person, handsets: list[Handset], message: bytes | None = None, *,
         suite: str | None = None, verify: bool = True) -> Sent:
    """Seal to the handsets (their lists verified first, ENV-22), POST the envelope and
    PUT its payload as the sender; 201 and 204 required."""
    suite = suite or suites(t)[0]
    devices = [h.device for h in handsets]
    if verify:
        for owner in {h.owner.user_id: h.owner for h in handsets}.values():
            listed = {d.address for d in verified_devices(t, owner)}
            for d in devices:
                if d.user_id == owner.user_id and d.address not in listed:
                    t.fail(f"{'/'.join(d.address)} is not on its owner's verified list",
                           expected="every registered device listed", actual=str(listed))
    sealed = E.seal(os.urandom(64) if message is None else message, suite=suite,
                    sender=sender.sender, recipients=devices, random=RANDOM)
    return post_sealed(t, sender, sealed)


def post_sealed(t: Probe, sender: Person, sealed: E.Sealed) -> Sent:
    wire = E.envelope_to_wire(sealed.envelope)
    t.expect_status(post_envelope(t, sender, wire), 201,
                    what=f"POST an envelope to {len(wire['recipients'])} device(s)")
    t.expect_status(upload(t, sender, wire["message_id"], sealed.payload), 204,
                    what=f"PUT the {len(sealed.payload)}-byte payload as its sender")
    return Sent(sealed=sealed, wire=wire)


def read_queue(t: Probe, h: Handset, *, what: str) -> list[dict[str, Any]]:
    exchange = t.request("GET", queue_path(h), token=h.owner.user.token)
    body = t.expect_ok_json(exchange, 200, what=what)
    messages = body.get("messages") if isinstance(body, dict) else None
    if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
        t.fail(f"{what}: the queue has no list of message objects",
               expected='{"messages": [...], ...}', actual=describe(exchange),
               exchange=exchange)
    return messages


def find(t: Probe, h: Handset, message_id: str, *, what: str) -> dict[str, Any]:
    for record in read_queue(t, h, what=what):
        if record.get("message_id") == message_id:
            return record
    t.fail(f"{what}: message {message_id} is not in the queue of {h.label}",
           expected=f"a record with message_id {message_id}", actual="absent")


def fetch_payload(t: Probe, h: Handset, message_id: str, *, what: str) -> bytes:
    exchange = t.request("GET", f"{message_path(h, message_id)}/payload",
                         token=h.owner.user.token)
    t.expect_status(exchange, 200, what=what)
    if exchange.media_type != "application/octet-stream":
        t.fail(f"{what}: the payload is served as {exchange.media_type!r} (ENV-19)",
               expected="application/octet-stream", actual=describe(exchange),
               exchange=exchange)
    return exchange.response_body


def open_as(t: Probe, h: Handset, record: dict[str, Any], payload: bytes, sender: Person, *,
            what: str) -> E.Opened:
    """Open a delivery and its raw payload as the device would (ENV-13); a rejection
    fails the check."""
    try:
        return E.open_delivery(E.parse_delivery(record), payload, user_id=h.owner.user_id,
                               device_id=h.device_id, device=h.keys, sender=sender.published)
    except SpecError as exc:
        t.fail(f"{what}: {h.label} rejects what it was served: {exc} (failure class "
               f"{exc.failure_class})", expected="a delivery and payload this device opens",
               actual=_short(record))


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 300 else text[:297] + "..."


def ack(t: Probe, h: Handset, message_id: str, *, token: str | None = None) -> Exchange:
    return t.request("POST", f"{message_path(h, message_id)}/ack",
                     token=h.owner.user.token if token is None else token)


def family(t: Probe, label: str) -> tuple[Person, Handset, Handset, Handset]:
    """A sender, and three recipient devices: two of one user, one of another."""
    sender, bob, carol = (person(t, f"{label}-alice"), person(t, f"{label}-bob"),
                          person(t, f"{label}-carol"))
    phone, laptop = register(t, bob, "phone", "laptop")
    (tablet,) = register(t, carol, "tablet")
    return sender, phone, laptop, tablet


def stored_list(t: Probe, owner: Person, *, what: str) -> Any:
    return t.expect_ok_json(t.request("GET", devices_path(owner.user_id)), 200, what=what)


# --- signed device lists (steps 1, 2) ----------------------------------------------------------

@check("envelope/devices/signed-list-round-trip", requirements=("ENV-3", "ENV-21", "ENV-1"),
       needs=NEEDS)
def signed_list_round_trip(t: Probe) -> None:
    """The owner publishes version 1 (201) and 2 (200); anyone reads the stored signed list
    back unchanged; the same version again answers 200 and changes nothing."""
    owner = person(t, "lists")
    (laptop,) = register(t, owner, "laptop")
    first = signed_list(owner, [laptop.device], 1)
    if first_difference(first, stored_list(t, owner, what="GET version 1")) is not None:
        t.fail("the stored list differs from the one published", expected=_short(first),
               actual=_short(stored_list(t, owner, what="GET version 1")))
    register(t, owner, "phone")
    second = signed_list(owner, list(owner.devices.values()), 2)
    diff = first_difference(second, stored_list(t, owner, what="GET version 2"))
    if diff:
        t.fail(f"the stored version 2 differs from the one published: {diff}",
               expected=_short(second), actual="")
    exchange = put_list(t, owner, second)
    body = t.expect_ok_json(exchange, 200, what="PUT version 2 again")
    if first_difference(second, body) is not None:
        t.fail("PUT of the stored version did not answer the stored list",
               expected=_short(second), actual=describe(exchange), exchange=exchange)
    t.expect_rejected(t.request("GET", devices_path(t.session.new_user_id("nobody"))), 404,
                      what="GET the list of a user who published none")


@check("envelope/devices/unsigned-list-refused", requirements=("ENV-21", "ENV-3"),
       needs=NEEDS)
def unsigned_list_refused(t: Probe) -> None:
    """A new version is refused unless signed by the owner's current published key: a
    flipped signature, a device added without a new signature and another user's key are
    refused (422, signature), a list naming another key_version, user or application too
    (422, binding), and the stored list does not change."""
    owner, mallory = person(t, "unsigned"), person(t, "unsigned-mallory")
    register(t, owner, "phone")
    before = stored_list(t, owner, what="GET the list before the attacks")
    devices = [*owner.devices.values(), new_handset(owner, "ghost").device]
    good = signed_list(owner, devices, 2)
    signature = bytearray(D.parse_device_list(good).signature)
    signature[0] ^= 1
    flipped = dict(good, signature=b64url_encode(bytes(signature)))
    unsigned = dict(signed_list(owner, list(owner.devices.values()), 2),
                    devices=good["devices"])
    foreign = signed_list(owner, devices, 2, signer=mallory.keypair.private.ed25519_seed)
    for body, what in ((flipped, "a list with a flipped signature bit"),
                       (unsigned, "a device added without a new signature"),
                       (foreign, "a list signed with another user's key")):
        t.expect_rejected(put_list(t, owner, body), 422, what=f"PUT {what}",
                          failure_class="signature")
    t.expect_rejected(put_list(t, owner, signed_list(owner, devices, 2, key_version=2)), 422,
                      what="PUT a list naming a key_version not published",
                      failure_class="binding")
    for user_id, client_id, what in ((mallory.user_id, CLIENT, "another user"),
                                     (owner.user_id, OTHER_APP, "another application")):
        renamed = D.device_list_to_wire(D.sign_device_list(
            owner_seed=owner.keypair.private.ed25519_seed, user_id=user_id,
            client_id=client_id, key_version=owner.published.key_version, version=2,
            devices=devices))
        t.expect_rejected(put_list(t, owner, renamed), 422, what=f"PUT a list naming {what}, "
                          "signed by the owner's key", failure_class="binding")
    after = stored_list(t, owner, what="GET the list after the refused versions")
    if first_difference(before, after) is not None:
        t.fail("a refused version changed the stored list", expected=_short(before),
               actual=_short(after))


@check("envelope/devices/replay-and-gap-refused", requirements=("ENV-3",), needs=NEEDS)
def replay_and_gap(t: Probe) -> None:
    """An older version again, or another list of the stored version, is refused (409,
    replay); a version that skips one is refused (422, link); a kept device with other keys
    is refused (422, binding)."""
    owner = person(t, "replay")
    (phone,) = register(t, owner, "phone")
    old = signed_list(owner, [phone.device], 1)
    register(t, owner, "laptop")
    t.expect_rejected(put_list(t, owner, old), 409, what="PUT version 1 after version 2",
                      failure_class="replay")
    t.expect_rejected(put_list(t, owner, signed_list(owner, [phone.device], 2)), 409,
                      what="PUT another list of the stored version 2", failure_class="replay")
    t.expect_rejected(put_list(t, owner, signed_list(owner, list(owner.devices.values()), 4)),
                      422, what="PUT version 4 after version 2", failure_class="link")
    rekeyed = D.Device(user_id=owner.user_id, device_id="phone",
                       x25519=new_handset(owner, "x").device.x25519,
                       mlkem768=phone.device.mlkem768)
    t.expect_rejected(put_list(t, owner, signed_list(owner, [rekeyed], 3)), 422,
                      what="PUT version 3 giving the phone another key", failure_class="binding")


@check("envelope/devices/owner-only", requirements=("ENV-3", "API-4"), needs=NEEDS)
def devices_owner_only(t: Probe) -> None:
    """Only the owner publishes a version: another user's token, or none, gets the uniform
    401 even for a correctly signed list."""
    owner, mallory = person(t, "downer"), person(t, "downer-mallory")
    body = signed_list(owner, [new_handset(owner, "phone").device], 1)
    for token, who in ((mallory.user.token, "another user's token"), ("", "no token")):
        exchange = t.request("PUT", devices_path(owner.user_id), token=token or None,
                             json_body=body)
        expect_unauthorized(t, exchange, what=f"PUT a signed list with {who}")


@check("envelope/devices/bad-keys-refused", requirements=("ENV-2", "ENV-1"), needs=NEEDS)
def bad_device_keys(t: Probe) -> None:
    """Even signed, a list with a low-order X25519 key or an ML-KEM key failing the
    modulus check is refused (422, point); a short ML-KEM key (400, length); device ids
    that are not identifiers and devices out of order (400, decode)."""
    owner = person(t, "badkeys")
    good = new_handset(owner, "phone").device
    low = D.Device(user_id=owner.user_id, device_id="phone", x25519=bytes([1]) + bytes(31),
                   mlkem768=good.mlkem768)
    q = 3329  # the first 12-bit coefficient set to q exactly: the smallest unreduced value
    modulus = D.Device(user_id=owner.user_id, device_id="phone", x25519=good.x25519,
                       mlkem768=bytes([q & 0xFF, (good.mlkem768[1] & 0xF0) | (q >> 8)])
                       + good.mlkem768[2:])
    for device, what in ((low, "a low-order X25519 key"), (modulus, "an ML-KEM key >= q")):
        t.expect_rejected(put_list(t, owner, signed_list(owner, [device], 1)), 422,
                          what=f"PUT a list with {what}", failure_class="point")
    short = signed_list(owner, [good], 1)
    short["devices"][0]["mlkem768"] = b64url_encode(good.mlkem768[:-3])
    t.expect_rejected(put_list(t, owner, short), 400, what="PUT a list with a short ML-KEM key",
                      failure_class="length")
    for device_id, what in (("no spaces allowed", "not an identifier"), (7, "a number")):
        odd = signed_list(owner, [good], 1)
        odd["devices"][0]["device_id"] = device_id
        t.expect_rejected(put_list(t, owner, odd), 400, what=f"PUT a list whose device_id "
                          f"is {what}", failure_class="decode")
    twice = signed_list(owner, [good], 1)
    twice["devices"] = [twice["devices"][0], twice["devices"][0]]
    t.expect_rejected(put_list(t, owner, twice), 400, what="PUT a list naming one device "
                      "twice", failure_class="decode")
    two = signed_list(owner, [good, new_handset(owner, "alpha").device], 1)
    two["devices"].reverse()
    t.expect_rejected(put_list(t, owner, two), 400, what="PUT a list out of device_id order",
                      failure_class="decode")
    t.expect_rejected(t.request("GET", devices_path(owner.user_id)), 404,
                      what="GET the list after only refused versions")


@check("envelope/devices/counters-checked", requirements=("ENV-21", "API-6"), needs=NEEDS)
def device_list_counters(t: Probe) -> None:
    """A list's user_id and client_id are identifiers, its version and key_version
    integers in range: a string, true, 0 or one past the largest are refused (400,
    decode); the largest version is well-formed, so a
    first list of that version is refused as a gap (422, link), not as malformed."""
    owner = person(t, "counters")
    good = new_handset(owner, "phone").device
    base = signed_list(owner, [good], 1)
    for member, value in (("user_id", "no spaces allowed"), ("client_id", "")):
        t.expect_rejected(put_list(t, owner, dict(base, **{member: value})), 400,
                          what=f"PUT a list whose {member} is {value!r}", failure_class="decode")
    for member, high in (("version", D.MAX_LIST_VERSION), ("key_version", D.MAX_KEY_VERSION)):
        for bad in ("1", True, 0, high + 1):
            t.expect_rejected(put_list(t, owner, dict(base, **{member: bad})), 400,
                              what=f"PUT a list whose {member} is {bad!r}",
                              failure_class="decode")
    t.expect_rejected(put_list(t, owner, signed_list(owner, [good], D.MAX_LIST_VERSION)), 422,
                      what=f"PUT a first list of version {D.MAX_LIST_VERSION}, the largest "
                           "(well-formed, but versions start at 1)", failure_class="link")


@check("envelope/devices/device-limit", requirements=("ENV-3", "ENV-17"), needs=NEEDS)
def device_limit(t: Probe) -> None:
    """A list of max_devices_per_user devices is accepted (201); one more is refused (400,
    params) before its signature is looked at."""
    most = limits(t).get("max_devices_per_user")
    if not isinstance(most, int) or isinstance(most, bool) or not 1 <= most <= 256:
        raise CheckSkipped("max_devices_per_user is absent or too large to fill in a check")
    owner = person(t, "devlimit")
    keys = new_handset(owner, "d").device
    devices = [D.Device(user_id=owner.user_id, device_id=f"d{i:04d}", x25519=keys.x25519,
                        mlkem768=keys.mlkem768) for i in range(most + 1)]
    t.expect_rejected(put_list(t, owner, signed_list(owner, devices, 1)), 400,
                      what=f"PUT a list of {most + 1} devices", failure_class="params")
    t.expect_status(put_list(t, owner, signed_list(owner, devices[:most], 1)), 201,
                    what=f"PUT a list of exactly {most} devices")


@check("envelope/send/stream-lengths", requirements=("ENV-23", "ENV-9"), needs=NEEDS)
def stream_lengths(t: Probe) -> None:
    """payload_length must be the length of some STREAM payload: 15 bytes, a full chunk
    plus a bare tag, and a full chunk plus 15 bytes are refused (400, length); 16 bytes
    (the empty payload), one full chunk and a full chunk plus 17 bytes are accepted."""
    sender, phone, _, _ = family(t, "lengths")
    sealed = E.seal(b"x", suite=suites(t)[0], sender=sender.sender, recipients=[phone.device],
                    random=RANDOM)
    wire = E.envelope_to_wire(sealed.envelope)
    full, tag = S.CHUNK_CIPHERTEXT_SIZE, S.TAG_LEN
    for length, good in ((tag - 1, False), (full + tag, False), (full + tag - 1, False),
                         (tag, True), (full, True), (full + tag + 1, True)):
        body = dict(wire, payload_length=length,
                    message_id=b64url_encode(os.urandom(S.MESSAGE_ID_LEN)))
        exchange = post_envelope(t, sender, body)
        if good:
            t.expect_status(exchange, 201, what=f"POST an envelope of payload_length {length}")
        else:
            t.expect_rejected(exchange, 400, what=f"POST an envelope of payload_length "
                              f"{length} (no STREAM has it)", failure_class="length")


@check("envelope/devices/owner-without-keypair", requirements=("ENV-21",), needs=NEEDS)
def owner_without_keypair(t: Probe) -> None:
    """A user with no published keypair for the application cannot publish a list (422,
    binding): nothing could verify it."""
    user = t.user("nokeys")
    seed = os.urandom(32)
    remember_secret(seed)
    body = D.device_list_to_wire(D.sign_device_list(
        owner_seed=seed, user_id=user.user_id, client_id=CLIENT, key_version=1, version=1,
        devices=[]))
    exchange = t.request("PUT", devices_path(user.user_id), token=user.token, json_body=body)
    t.expect_rejected(exchange, 422, what="PUT a list without a published keypair",
                      failure_class="binding")


@check("envelope/devices/sender-verifies-list", requirements=("ENV-22", "ENV-21"),
       needs=NEEDS)
def sender_verifies_list(t: Probe) -> None:
    """As a sender does before encrypting, the runner verifies each served list against
    the owner's published Ed25519 key: the server serves the owner's signed list, with no
    device added, dropped or changed."""
    owner = person(t, "verify")
    register(t, owner, "phone", "laptop")
    register(t, owner, "tablet")
    remove(t, owner, "laptop")
    listed = {d.device_id for d in verified_devices(t, owner)}
    if listed != set(owner.devices):
        t.fail("the verified list is not the one published", expected=str(sorted(owner.devices)),
               actual=str(sorted(listed)))


@check("envelope/devices/removal-drops-queue", requirements=("ENV-3", "ENV-10"), needs=NEEDS)
def removal_drops_queue(t: Probe) -> None:
    """A version without a device drops its queue (404) and envelopes to it are refused
    (422, binding); a device listed again later under the same id starts empty."""
    sender, bob = person(t, "rm-alice"), person(t, "rm-bob")
    old, keep = register(t, bob, "old", "keep")
    send(t, sender, [old, keep])
    remove(t, bob, "old")
    t.expect_rejected(t.request("GET", queue_path(old), token=bob.user.token), 404,
                      what="GET the queue of the removed device")
    sealed = E.seal(b"late", suite=suites(t)[0], sender=sender.sender,
                    recipients=[old.device], random=RANDOM)
    t.expect_rejected(post_envelope(t, sender, E.envelope_to_wire(sealed.envelope)), 422,
                      what="POST an envelope to the removed device", failure_class="binding")
    if not read_queue(t, keep, what="GET the queue of the kept device"):
        t.fail("removing one device emptied another's queue", expected="one message",
               actual="none")
    again = register(t, bob, "old")[0]
    if read_queue(t, again, what="GET the queue of a new device listed under the old id"):
        t.fail("a device listed under a removed device's id got the removed device's "
               "messages (ENV-3)", expected="an empty queue", actual="the old messages")


# --- sending (steps 5, 8, 10) -----------------------------------------------------------------

def _every_device_reads(t: Probe, suite: str) -> None:
    if suite not in suites(t):
        raise CheckSkipped(f"the server does not offer suite {suite}")
    sender, phone, laptop, tablet = family(t, f"read-{suite}")
    message = b"to every device of bob and carol " + os.urandom(S.CHUNK_SIZE)
    sent = send(t, sender, [phone, laptop, tablet], message, suite=suite)
    for h in (phone, laptop, tablet):
        record = find(t, h, sent.message_id, what=f"GET the queue of {h.label}")
        payload = fetch_payload(t, h, sent.message_id, what=f"GET the payload as {h.label}")
        opened = open_as(t, h, record, payload, sender, what=f"open as {h.label}")
        if opened.plaintext != message:
            t.fail(f"{h.label} decrypts another plaintext", expected=repr(message[:80]),
                   actual=repr(opened.plaintext[:80]))


@check("envelope/send/x25519-every-device-reads",
       requirements=("ENV-5", "ENV-11", "ENV-13", "ENV-19", "ENV-26"), needs=NEEDS)
def every_device_reads_x25519(t: Probe) -> None:
    """Suite x25519: a 64 KiB message to two devices of one user and one of another; each
    device finds it, downloads the raw payload and opens it to the plaintext sent."""
    _every_device_reads(t, E.SUITE_X25519)


@check("envelope/send/mlkem768x25519-every-device-reads",
       requirements=("ENV-25", "ENV-11", "ENV-13", "ENV-19", "ENV-26"), needs=NEEDS)
def every_device_reads_hybrid(t: Probe) -> None:
    """Suite mlkem768x25519, as above."""
    _every_device_reads(t, E.SUITE_HYBRID)


@check("envelope/capabilities/suites-and-limits", requirements=("ENV-17", "ENV-27"),
       needs=NEEDS)
def capabilities_advertised(t: Probe) -> None:
    """The capabilities advertise the suites offered and the limits as positive integers."""
    caps = limits(t)
    offered = suites(t)
    if not offered:
        t.fail("no suite of profile v1 is offered", expected=str(E.SUITES),
               actual=str(caps.get("suites")))
    for name in ("max_recipients", "max_payload_bytes", "retention_seconds"):
        value = caps.get(name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            t.fail(f"capabilities envelope.{name} is not a positive integer (ENV-17)",
                   expected="an integer >= 1", actual=repr(value))


@check("envelope/send/unauthenticated-or-mismatched-sender",
       requirements=("ENV-10", "API-4"), needs=NEEDS)
def sender_authenticated(t: Probe) -> None:
    """An envelope is accepted only from its authenticated sender: no token or another
    user's token gets 401; an envelope naming another sender, another application or a
    key_version that is not the sender's current one is refused (422, binding); nothing
    is queued."""
    sender, phone, _, _ = family(t, "sender")
    mallory = person(t, "sender-mallory")
    sealed = E.seal(b"x", suite=suites(t)[0], sender=sender.sender, recipients=[phone.device],
                    random=RANDOM)
    wire = E.envelope_to_wire(sealed.envelope)
    expect_unauthorized(t, post_envelope(t, sender, wire, token=""), what="POST with no token")
    expect_unauthorized(t, post_envelope(t, sender, wire, token=mallory.user.token),
                        what="POST to alice's messages with mallory's token")
    t.expect_rejected(post_envelope(t, mallory, wire), 422,
                      what="POST, as mallory, an envelope naming alice as sender",
                      failure_class="binding")
    for member, value, what in (("client_id", "mail", "another application"),
                                ("sender_key_version", 2, "a key_version not published")):
        t.expect_rejected(post_envelope(t, sender, dict(wire, **{member: value})), 422,
                          what=f"POST an envelope naming {what}", failure_class="binding")
    # The other application set up in full (the sender's key and the device listed there
    # too): still refused at this application's path.
    t.publish(sender.user, OTHER_APP)
    bob = phone.owner
    other_key = t.publish(bob.user, OTHER_APP)
    other_list = D.device_list_to_wire(D.sign_device_list(
        owner_seed=other_key.private.ed25519_seed, user_id=bob.user_id, client_id=OTHER_APP,
        key_version=1, version=1, devices=[phone.device]))
    t.expect_status(t.request("PUT", f"/v1/users/{bob.user_id}/apps/{OTHER_APP}/devices",
                              token=bob.user.token, json_body=other_list), 201,
                    what=f"PUT bob's device list of {OTHER_APP}")
    t.expect_rejected(post_envelope(t, sender, dict(wire, client_id=OTHER_APP)), 422,
                      what=f"POST to {CLIENT}'s messages an envelope for {OTHER_APP}, where "
                           "the sender's key and the device are listed", failure_class="binding")
    if read_queue(t, phone, what="GET the queue after the refused envelopes"):
        t.fail("a refused envelope was queued", expected="an empty queue",
               actual="a message")


@check("envelope/send/replay-refused", requirements=("ENV-10",), needs=NEEDS)
def replay_refused(t: Probe) -> None:
    """The same message_id again is refused (409, replay), with the original intact."""
    sender, phone, _, _ = family(t, "replay-send")
    sent = send(t, sender, [phone])
    t.expect_rejected(post_envelope(t, sender, sent.wire), 409, what="POST the envelope again",
                      failure_class="replay")
    if [r.get("message_id") for r in read_queue(t, phone, what="GET the queue")] != [
            sent.message_id]:
        t.fail("the replay changed the queue", expected="one message", actual="other")


@check("envelope/send/unlisted-device-refused", requirements=("ENV-10",), needs=NEEDS)
def unlisted_device(t: Probe) -> None:
    """An entry for a device that is not on its owner's signed list is refused (422,
    binding), and nothing of the envelope is queued for the listed ones."""
    sender, phone, _, _ = family(t, "unlisted")
    stranger = new_handset(phone.owner, "stranger")
    sealed = E.seal(b"x", suite=suites(t)[0], sender=sender.sender,
                    recipients=[phone.device, stranger.device], random=RANDOM)
    t.expect_rejected(post_envelope(t, sender, E.envelope_to_wire(sealed.envelope)), 422,
                      what="POST an envelope to a device not on the list",
                      failure_class="binding")
    if read_queue(t, phone, what="GET the queue of the listed device"):
        t.fail("a refused envelope was queued", expected="an empty queue", actual="a message")


@check("envelope/send/malformed-refused", requirements=("ENV-9", "ENV-27"), needs=NEEDS)
def malformed_refused(t: Probe) -> None:
    """Lengths (400, length), low-order points (422, point), duplicates, identifiers and
    key versions out of range (400, decode), no recipient and an unknown suite (400,
    params) are refused; the largest key version is well-formed and refused as not the
    sender's current key (422, binding)."""
    sender, phone, laptop, _ = family(t, "malformed")
    sealed = E.seal(b"x", suite=suites(t)[0], sender=sender.sender,
                    recipients=[phone.device, laptop.device], random=RANDOM)
    wire = E.envelope_to_wire(sealed.envelope)
    entries = wire["recipients"]
    enc = entries[0]["enc"]
    low = b64url_encode(b"\x00" * (len(enc) * 3 // 4 - 32) + bytes([1]) + bytes(31))
    for body, status, cls, what in (
            (dict(wire, message_id=b64url_encode(sealed.envelope.header.message_id[:15])),
             400, "length", "a 15-byte message id"),
            (dict(wire, recipients=[dict(entries[0], wrapped_key=b64url_encode(
                sealed.envelope.entries[0].wrapped_key[:47]))]),
             400, "length", "a 47-byte wrapped key"),
            (dict(wire, recipients=[dict(entries[0], enc=low)]), 422, "point",
             "an enc of low order"),
            (dict(wire, recipients=[entries[0], entries[0]]), 400, "decode", "a device twice"),
            (dict(wire, recipients=[entries[0], dict(entries[0], enc=entries[1]["enc"])]),
             400, "decode", "a device twice, with two encs"),
            (dict(wire, recipients=[entries[0], dict(entries[1], enc=entries[0]["enc"])]),
             400, "decode", "one enc for two devices"),
            (dict(wire, recipients=[dict(entries[0], user_id="no spaces allowed")]), 400,
             "decode", "a recipient user_id that is not an identifier"),
            (dict(wire, recipients=[]), 400, "params", "no recipient"),
            (dict(wire, suite="x448"), 400, "params", "an unknown suite"),
            (dict(wire, sender="no spaces allowed"), 400, "decode", "a sender that is not an "
             "identifier"),
            (dict(wire, client_id=""), 400, "decode", "an empty client_id"),
            (dict(wire, sender_key_version=2**32), 400, "decode", "sender_key_version 2^32"),
            (dict(wire, sender_key_version=0), 400, "decode", "sender_key_version 0"),
            (dict(wire, sender_key_version=2**32 - 1), 422, "binding",
             "sender_key_version 2^32 - 1 (well-formed, not the sender's current key)")):
        t.expect_rejected(post_envelope(t, sender, body), status, what=f"POST {what}",
                          failure_class=cls)


@check("envelope/send/limits", requirements=("ENV-17",), needs=NEEDS)
def send_limits(t: Probe) -> None:
    """More recipients than max_recipients, or a payload_length above max_payload_bytes,
    is refused with 413 (params)."""
    caps = limits(t)
    sender, phone, _, _ = family(t, "limits")
    sealed = E.seal(b"x", suite=suites(t)[0], sender=sender.sender, recipients=[phone.device],
                    random=RANDOM)
    wire = E.envelope_to_wire(sealed.envelope)
    biggest = caps.get("max_payload_bytes")
    if not isinstance(biggest, int) or isinstance(biggest, bool) or biggest < 1:
        t.fail("capabilities envelope.max_payload_bytes is not a positive integer",
               expected="an integer >= 1", actual=repr(biggest))
    over = S.ciphertext_length(biggest)  # a STREAM length above the limit
    t.expect_rejected(post_envelope(t, sender, dict(wire, payload_length=over)), 413,
                      what="POST an envelope above max_payload_bytes", failure_class="params")
    most = caps.get("max_recipients")
    if not isinstance(most, int) or most > 2000:
        raise CheckSkipped("max_recipients is too large to exceed in a check")
    entry = wire["recipients"][0]
    many = [dict(entry, device_id=f"d{i}", enc=b64url_encode(
        primitives.x25519_public_key(os.urandom(32)) if len(entry["enc"]) < 100
        else os.urandom(1088) + primitives.x25519_public_key(os.urandom(32))))
        for i in range(most + 1)]
    t.expect_rejected(post_envelope(t, sender, dict(wire, recipients=many)), 413,
                      what=f"POST an envelope to {most + 1} devices", failure_class="params")
    # Exactly at the limits: not refused for size (here: for the unlisted devices).
    t.expect_rejected(post_envelope(t, sender, dict(wire, recipients=many[:most])), 422,
                      what=f"POST an envelope to exactly {most} unlisted devices",
                      failure_class="binding")
    if is_stream_length(biggest):
        exchange = post_envelope(t, sender, dict(wire, payload_length=biggest))
        if exchange.status == 413:
            t.fail("a payload_length of exactly max_payload_bytes is refused as too large",
                   expected="not 413", actual=describe(exchange), exchange=exchange)


# --- the payload (steps 8, 9) -----------------------------------------------------------------

def _posted(t: Probe, label: str, size: int) -> tuple[Person, Handset, E.Sealed, str]:
    sender, phone, _, _ = family(t, label)
    sealed = E.seal(os.urandom(size), suite=suites(t)[0], sender=sender.sender,
                    recipients=[phone.device], random=RANDOM)
    wire = E.envelope_to_wire(sealed.envelope)
    t.expect_status(post_envelope(t, sender, wire), 201, what="POST the envelope")
    return sender, phone, sealed, wire["message_id"]


@check("envelope/payload/length-enforced", requirements=("ENV-26", "ENV-12", "API-5"),
       needs=NEEDS)
def payload_length_enforced(t: Probe) -> None:
    """Before its payload the message is not delivered; a payload one byte short or long
    is refused (400, length), a declared length above max_payload_bytes at once (413),
    another media type (415); the exact one is taken (204) and a second upload refused
    (409, replay)."""
    sender, phone, sealed, message_id = _posted(t, "upload", 3000)
    if read_queue(t, phone, what="GET the queue before the payload"):
        t.fail("a message was delivered before its payload was stored (ENV-12, ENV-26)",
               expected="an empty queue", actual="a message")
    for body, what in ((sealed.payload[:-1], "one byte short"),
                       (sealed.payload + b"\x00", "one byte long")):
        t.expect_rejected(upload(t, sender, message_id, body), 400,
                          what=f"PUT a payload {what}", failure_class="length")
    biggest = limits(t).get("max_payload_bytes")
    if isinstance(biggest, int) and not isinstance(biggest, bool):
        declared = t.send_declared_length(
            "PUT", upload_path(sender.user_id, message_id),
            {"authorization": f"Bearer {sender.user.token}", **OCTET}, declared=biggest + 1,
            sent=b"", deadline_s=10.0)
        t.expect_rejected(declared, 413, what="PUT a payload declaring max_payload_bytes + 1")
    exchange = t.request("PUT", upload_path(sender.user_id, message_id),
                         token=sender.user.token, headers={"content-type": "application/json"},
                         body=sealed.payload)
    t.expect_rejected(exchange, 415, what="PUT the payload as application/json")
    t.expect_status(upload(t, sender, message_id, sealed.payload), 204, what="PUT the payload")
    t.expect_rejected(upload(t, sender, message_id, sealed.payload), 409,
                      what="PUT the payload again", failure_class="replay")
    find(t, phone, message_id, what="GET the queue after the payload")


@check("envelope/payload/streamed-length-enforced", requirements=("ENV-26", "ENV-20"),
       needs=NEEDS)
def streamed_length_enforced(t: Probe) -> None:
    """The declared length holds for every way of sending: a payload for an unknown
    message is 404; a chunked upload one byte short or long is refused (400, length) and
    stores nothing; a Content-Length other than the envelope's is refused before the body
    is read, and a chunked upload is refused as soon as it runs past the length, without
    waiting for its end; the exact payload sent chunked is taken and served unchanged."""
    sender, phone, sealed, message_id = _posted(t, "chunked", S.CHUNK_SIZE + 500)
    t.expect_rejected(upload(t, sender, b64url_encode(os.urandom(16)), sealed.payload), 404,
                      what="PUT a payload for a message id that was never posted")
    path = upload_path(sender.user_id, message_id)
    half = len(sealed.payload) // 2
    for body, what in ((sealed.payload[:-1], "one byte short"),
                       (sealed.payload + b"\x00", "one byte long")):
        exchange = t.request("PUT", path, token=sender.user.token, headers=OCTET,
                             chunks=[body[:half], body[half:]])
        t.expect_rejected(exchange, 400, what=f"PUT a chunked payload {what}",
                          failure_class="length")
    headers = {"authorization": f"Bearer {sender.user.token}", **OCTET}
    for declared, sent, what in (
            (len(sealed.payload) + 1, b"", "declaring one byte more than the envelope"),
            (None, sealed.payload + b"\x00", "chunked, one byte past the length, never ended")):
        exchange = t.send_declared_length("PUT", path, headers, declared=declared, sent=sent,
                                          deadline_s=10.0)
        if exchange.status == 0:
            t.fail(f"PUT a payload {what}: no answer within 10 s -- the server waited for "
                   "a body it must refuse (ENV-26)", expected="400 at once",
                   actual="no answer", exchange=exchange)
        t.expect_rejected(exchange, 400, what=f"PUT a payload {what}", failure_class="length")
    if read_queue(t, phone, what="GET the queue after the refused uploads"):
        t.fail("a refused upload made the message deliverable (ENV-26)",
               expected="an empty queue", actual="a message")
    exchange = t.request("PUT", path, token=sender.user.token, headers=OCTET,
                         chunks=[sealed.payload[:half], sealed.payload[half:]])
    t.expect_status(exchange, 204, what="PUT the exact payload chunked")
    if fetch_payload(t, phone, message_id, what="GET the payload") != sealed.payload:
        t.fail("the payload uploaded chunked is served changed (ENV-19)",
               expected="the uploaded bytes", actual="other bytes")


class Gated(list[bytes]):
    """Body pieces whose first iteration waits at `gate` after the first piece (a sent
    request that is retried on a fresh connection does not wait again)."""

    def __init__(self, pieces: list[bytes], gate: threading.Barrier) -> None:
        super().__init__(pieces)
        self.gate = gate
        self.waited = False

    def __iter__(self) -> Iterator[bytes]:
        for index, piece in enumerate(list.__iter__(self)):
            if index == 1 and not self.waited:
                self.waited = True
                try:
                    self.gate.wait(timeout=20)
                except threading.BrokenBarrierError:
                    pass  # a racer failed early: go on, the check judges the answers
            yield piece


@check("envelope/payload/concurrent-uploads-one-wins", requirements=("ENV-26",), needs=NEEDS)
def concurrent_uploads(t: Probe) -> None:
    """Eight uploads of one payload at once: exactly one is taken (204), every other is
    refused (409, replay), and the payload served is the one uploaded."""
    sender, phone, sealed, message_id = _posted(t, "racing", 2 * 1024 * 1024)
    racers = 8
    start, halfway = threading.Barrier(racers), threading.Barrier(racers)
    half = len(sealed.payload) // 2

    def race(_: int) -> Exchange:
        start.wait(timeout=30)
        # Every racer sends half of the body, then waits for the others: all of them are
        # past the server's early checks before any can finish, so the race is decided
        # where ENV-26 puts it, when the payloads are committed.
        return t.request("PUT", upload_path(sender.user_id, message_id),
                         token=sender.user.token, headers=OCTET,
                         chunks=Gated([sealed.payload[:half], sealed.payload[half:]], halfway))

    with ThreadPoolExecutor(max_workers=racers) as pool:
        exchanges = list(pool.map(race, range(racers)))
    taken = [e for e in exchanges if e.status == 204]
    if len(taken) != 1:
        t.fail(f"{len(taken)} of {racers} concurrent uploads of one payload were taken "
               "(ENV-26: exactly one)", expected="one 204, the rest 409",
               actual=", ".join(str(e.status) for e in exchanges), exchange=exchanges[0])
    for exchange in exchanges:
        if exchange.status != 204:
            t.expect_rejected(exchange, 409, what="a concurrent upload that lost",
                              failure_class="replay")
    if fetch_payload(t, phone, message_id, what="GET the payload") != sealed.payload:
        t.fail("the payload served after concurrent uploads differs from the upload",
               expected="the uploaded bytes", actual="other bytes")


@check("envelope/payload/sender-only", requirements=("ENV-26", "API-4"), needs=NEEDS)
def payload_sender_only(t: Probe) -> None:
    """Only the sender uploads: another user's token or none gets 401."""
    sender, phone, sealed, message_id = _posted(t, "upowner", 100)
    expect_unauthorized(t, upload(t, sender, message_id, sealed.payload,
                                  token=phone.owner.user.token),
                        what="PUT the payload as the recipient")
    expect_unauthorized(t, t.request("PUT", upload_path(sender.user_id, message_id),
                                     headers=OCTET, body=sealed.payload),
                        what="PUT the payload with no token")


@check("envelope/payload/byte-identical-stream",
       requirements=("ENV-19", "ENV-20", "ENV-24"), needs=NEEDS)
def payload_byte_identical(t: Probe) -> None:
    """The payload is served raw, byte-identical to the upload: a 3-chunk STREAM the
    device opens -- a truncated, altered or reordered payload is caught here."""
    sender, phone, _, _ = family(t, "bytes")
    message = os.urandom(2 * S.CHUNK_SIZE + 1000)
    sent = send(t, sender, [phone], message)
    payload = fetch_payload(t, phone, sent.message_id, what="GET the raw payload")
    if payload != sent.sealed.payload:
        offset = next((i for i, (a, b) in enumerate(zip(payload, sent.sealed.payload,
                                                        strict=False)) if a != b),
                      min(len(payload), len(sent.sealed.payload)))
        t.fail(f"the served payload differs from the upload ({len(payload)} bytes, uploaded "
               f"{len(sent.sealed.payload)}; first difference at byte {offset})",
               expected="the uploaded bytes", actual=f"{len(payload)} bytes")
    record = find(t, phone, sent.message_id, what="GET the queue")
    if open_as(t, phone, record, payload, sender, what="open the 3-chunk payload").plaintext \
            != message:
        t.fail("the payload opens to another plaintext", expected="the message", actual="")


@check("envelope/payload/no-chunk-mixing", requirements=("ENV-19", "ENV-24"), needs=NEEDS)
def no_chunk_mixing(t: Probe) -> None:
    """Two multi-chunk messages to one device: each payload is served as its own -- no
    chunk of one appears in the other -- and each opens."""
    sender, phone, _, _ = family(t, "mix")
    first = send(t, sender, [phone], os.urandom(S.CHUNK_SIZE + 10))
    second = send(t, sender, [phone], os.urandom(S.CHUNK_SIZE + 10))
    for sent in (first, second):
        payload = fetch_payload(t, phone, sent.message_id, what="GET a payload")
        if payload != sent.sealed.payload:
            t.fail("a payload is served with bytes of another message",
                   expected="the bytes uploaded for this message", actual=f"{len(payload)} "
                   "other bytes")
        record = find(t, phone, sent.message_id, what="GET the queue")
        open_as(t, phone, record, payload, sender, what="open a payload")


@check("envelope/payload/owner-only", requirements=("ENV-19", "API-4"), needs=NEEDS)
def payload_owner_only(t: Probe) -> None:
    """A device's payload is served to its owner only: the sender, another recipient and
    no token get 401."""
    sender, phone, _, tablet = family(t, "powner")
    sent = send(t, sender, [phone, tablet])
    for token, who in ((sender.user.token, "the sender"),
                       (tablet.owner.user.token, "another recipient"), (None, "no token")):
        for path in (queue_path(phone), message_path(phone, sent.message_id),
                     f"{message_path(phone, sent.message_id)}/payload"):
            expect_unauthorized(t, t.request("GET", path, token=token),
                                what=f"GET {path} as {who}")


# --- queues (step 9) --------------------------------------------------------------------------

@check("envelope/queue/own-entry-only", requirements=("ENV-11",), needs=NEEDS)
def own_entry_only(t: Probe) -> None:
    """Each record carries the header and exactly this device's entry, as sent, and
    nothing of another device's entry anywhere in the answer."""
    sender, phone, laptop, tablet = family(t, "own")
    sent = send(t, sender, [phone, laptop, tablet])
    entries = {(e["user_id"], e["device_id"]): e for e in sent.wire["recipients"]}
    header = {k: v for k, v in sent.wire.items() if k != "recipients"}
    for h in (phone, laptop, tablet):
        exchange = t.request("GET", queue_path(h), token=h.owner.user.token)
        body = t.expect_ok_json(exchange, 200, what=f"GET the queue of {h.label}")
        record = next((m for m in body.get("messages", [])
                       if m.get("message_id") == sent.message_id), None)
        if record is None:
            t.fail(f"the message is not in the queue of {h.label}", expected="present",
                   actual=describe(exchange), exchange=exchange)
        mine = entries[(h.owner.user_id, h.device_id)]
        diff = first_difference(mine, record.get("recipient")) or first_difference(
            header, {k: record.get(k) for k in header})
        extra = sorted(set(record) - RECORD_MEMBERS)
        if diff or extra:
            t.fail(f"the record of {h.label} is not the header and its own entry "
                   f"({diff or 'extra members ' + ', '.join(extra)})",
                   expected=f"recipient = {_short(mine)}", actual=describe(exchange),
                   exchange=exchange)
        text = exchange.response_body.decode("utf-8", "replace")
        for address, entry in entries.items():
            if address != (h.owner.user_id, h.device_id) and entry["wrapped_key"] in text:
                t.fail(f"the queue of {h.label} shows the entry of {'/'.join(address)}",
                       expected="no other device's entry", actual=describe(exchange),
                       exchange=exchange)


@check("envelope/queue/arrival-order", requirements=("ENV-12",), needs=NEEDS)
def arrival_order(t: Probe) -> None:
    """A queue lists its messages in the order the server completed them."""
    sender, phone, _, _ = family(t, "order")
    other = person(t, "order-dave")
    ids = [send(t, s, [phone]).message_id for s in (sender, other, sender)]
    got = [r.get("message_id") for r in read_queue(t, phone, what="GET the queue")]
    if got != ids:
        t.fail("the queue is not in arrival order", expected=str(ids), actual=str(got))


@check("envelope/queue/unaddressed-device-sees-nothing", requirements=("ENV-11",),
       needs=NEEDS)
def unaddressed(t: Probe) -> None:
    """A device not addressed -- even one of an addressed user -- gets nothing of the
    message and cannot fetch its record, payload or ACK it (404)."""
    sender, phone, laptop, _ = family(t, "unaddr")
    sent = send(t, sender, [phone])
    if read_queue(t, laptop, what=f"GET the queue of {laptop.label}"):
        t.fail(f"{laptop.label} was not addressed but has messages", expected="[]",
               actual="a non-empty queue")
    for method, path in (("GET", message_path(laptop, sent.message_id)),
                         ("GET", f"{message_path(laptop, sent.message_id)}/payload"),
                         ("POST", f"{message_path(laptop, sent.message_id)}/ack")):
        t.expect_rejected(t.request(method, path, token=laptop.owner.user.token), 404,
                          what=f"{method} {path} as an unaddressed device")


# --- acknowledgement (step 11) ----------------------------------------------------------------

@check("envelope/ack/dequeues", requirements=("ENV-14", "ENV-15"), needs=NEEDS)
def ack_dequeues(t: Probe) -> None:
    """An ACK (204) removes the message from that device's queue, record and payload (404);
    a repeated ACK answers 204; the other device still has it."""
    sender, phone, laptop, _ = family(t, "ack")
    sent = send(t, sender, [phone, laptop])
    t.expect_status(ack(t, phone, sent.message_id), 204, what="ACK as the device's owner")
    if any(r.get("message_id") == sent.message_id
           for r in read_queue(t, phone, what="GET the queue after the ACK")):
        t.fail("an acknowledged message is still queued", expected="dequeued", actual="queued")
    for path in (message_path(phone, sent.message_id),
                 f"{message_path(phone, sent.message_id)}/payload"):
        t.expect_rejected(t.request("GET", path, token=phone.owner.user.token), 404,
                          what=f"GET {path} after the ACK")
    t.expect_status(ack(t, phone, sent.message_id), 204, what="ACK again")
    find(t, laptop, sent.message_id, what="GET the queue of the other device")
    fetch_payload(t, laptop, sent.message_id, what="GET the payload as the other device")


@check("envelope/ack/payload-gone-after-every-ack", requirements=("ENV-16", "ENV-15"),
       needs=NEEDS)
def payload_gone(t: Probe) -> None:
    """Once every addressed device acknowledged, no device gets the payload (404)."""
    sender, phone, laptop, tablet = family(t, "drain")
    sent = send(t, sender, [phone, laptop, tablet])
    for h in (phone, laptop, tablet):
        t.expect_status(ack(t, h, sent.message_id), 204, what=f"ACK as {h.label}")
    for h in (phone, laptop, tablet):
        t.expect_rejected(t.request("GET", f"{message_path(h, sent.message_id)}/payload",
                                    token=h.owner.user.token), 404,
                          what=f"GET the payload as {h.label} after every ACK")


@check("envelope/ack/owner-only", requirements=("ENV-14", "API-4"), needs=NEEDS)
def ack_owner_only(t: Probe) -> None:
    """Only the device's owner ACKs: the sender, another user or no token get 401 and the
    message stays queued; an unknown message id is 404."""
    sender, phone, _, tablet = family(t, "ackowner")
    sent = send(t, sender, [phone, tablet])
    for token, who in ((sender.user.token, "the sender"),
                       (tablet.owner.user.token, "another recipient")):
        expect_unauthorized(t, ack(t, phone, sent.message_id, token=token),
                            what=f"ACK as {who}")
    expect_unauthorized(t, t.request("POST", f"{message_path(phone, sent.message_id)}/ack"),
                        what="ACK with no token")
    find(t, phone, sent.message_id, what="GET the queue after the refused ACKs")
    t.expect_rejected(ack(t, phone, b64url_encode(os.urandom(16))), 404,
                      what="ACK an unknown message id")


# --- what the recipient must refuse (step 10), through the server --------------------------

@check("envelope/open/two-key-payload-refused", requirements=("ENV-8",), needs=NEEDS)
def two_key_payload(t: Probe) -> None:
    """A malicious sender's envelope whose payload decrypts under two content keys: the
    server delivers it unchanged, the device the commitment names reads it, the other
    refuses it at the commitment (mac) -- it never reads a second plaintext."""
    from keyflows.vectors.envelope_attacks import two_key_payload as build

    sender, phone, _, tablet = family(t, "twokeys")
    suite = suites(t)[0]
    honest = E.seal_header(suite=suite, sender=sender.sender, recipients=[phone.device],
                           plaintext_length=32, random=RANDOM)
    header = honest.envelope.header
    k2 = os.urandom(32)
    keys2 = S.content_keys(k2, header.message_id)
    payload = build(honest.keys.payload_key, keys2.payload_key, os.urandom(16))
    carol = E.seal_entry(header, sender.sender, tablet.device, k2, RANDOM).entry
    envelope = E.Envelope(header=header, entries=(honest.envelope.entries[0], carol))
    sent = post_sealed(t, sender, E.Sealed(header=E.SealedHeader(
        envelope=envelope, content_key=honest.content_key, keys=honest.keys, info=honest.info,
        recipients=()), payload=payload))
    record = find(t, phone, sent.message_id, what="GET bob's queue")
    open_as(t, phone, record, fetch_payload(t, phone, sent.message_id, what="GET the payload"),
            sender, what="open as the device the commitment names")
    record = find(t, tablet, sent.message_id, what="GET carol's queue")
    served = fetch_payload(t, tablet, sent.message_id, what="GET the payload as carol")
    try:
        E.open_delivery(E.parse_delivery(record), served, user_id=tablet.owner.user_id,
                        device_id=tablet.device_id, device=tablet.keys,
                        sender=sender.published)
    except SpecError as exc:
        if exc.failure_class != "mac":
            t.fail(f"the two-key delivery was refused as {exc.failure_class}, not at the "
                   "commitment", expected="failure class mac", actual=str(exc))
        return
    t.fail("the device read the second plaintext of a two-key payload",
           expected="a refusal at the commitment (ENV-8)", actual="a plaintext")


# --- bodies where none belongs --------------------------------------------------------------

@check("envelope/limits/bodiless-requests-bounded", requirements=("API-5",), needs=NEEDS)
def bodiless_requests_bounded(t: Probe) -> None:
    """The routes that take no body still bound one (API-5): a body one byte over
    limits.max_body_bytes on GET devices, the queue, a record, a payload and on the ACK
    is 413, and the request changes nothing."""
    limit = t.session.max_body_bytes
    if limit is None:
        t.fail("capabilities do not advertise limits.max_body_bytes (API-5, API-7)",
               expected="limits.max_body_bytes: a positive integer", actual="absent")
    sender, phone, _, _ = family(t, "bodiless")
    sent = send(t, sender, [phone])
    over = b"x" * (limit + 1)
    token = phone.owner.user.token
    for method, path, bearer in (
            ("GET", devices_path(phone.owner.user_id), None),
            ("GET", queue_path(phone), token),
            ("GET", message_path(phone, sent.message_id), token),
            ("GET", f"{message_path(phone, sent.message_id)}/payload", token),
            ("POST", f"{message_path(phone, sent.message_id)}/ack", token)):
        exchange = t.request(method, path, token=bearer, headers=OCTET, body=over)
        t.expect_rejected(exchange, 413, what=f"{method} {path} with a {limit + 1}-byte body")
    find(t, phone, sent.message_id, what="GET the queue after the refused requests")
