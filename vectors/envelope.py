"""Vectors of the envelope flow (profile v1).

Three base envelopes -- to 1, 2 and 10 recipient devices -- each yield:

  seal                 the sender's side with every intermediate: payload AAD, ciphertext,
                       digest, and per device the ephemeral key, shared secret, PRK, both
                       HKDF infos and keys, the wrap AAD, the wrapped key, the MAC input and
                       the MAC (ENV-4 .. ENV-8)
  validate-submission  what a server checks and the deliveries it fans out (ENV-9 .. ENV-11)
  open                 each device opens its delivery through the Inbox state machine: keys,
                       content key, digest, plaintext and the ACK body disclosing its MAC
                       key and nothing else (ENV-13, ENV-16)
  acknowledge          the server checks a disclosure; a repeat changes nothing
                       (ENV-14, ENV-15)
  register-device      the server checks a device registration (ENV-1, ENV-2)

Negatives are mutation families, each declaring the failure class and the step that
must reject:

  open                 bit flips in the ciphertext, its tag, the payload nonce, the wrapped
                       key, the MAC, the ephemeral key, the message id; a relabelled
                       sender; the wrong device key; low-order and non-canonical ephemeral
                       keys; another device's entry; another device's crypto under this
                       device's address; an entry or a payload from another message;
                       truncated and extended fields; non-canonical base64url; unknown and
                       missing members; a message id the device already acknowledged
                       (ENV-18)
  validate-submission  duplicate devices; a repeated ephemeral key; no recipients; too many
                       recipients; a ciphertext over the limit; a foreign sender; an
                       unregistered device; a reused message id; low-order ephemeral keys;
                       truncated fields
  acknowledge          another device's MAC key, a flipped key, the encryption key instead
                       of the MAC key, a truncated key
  register-device      low-order and non-canonical keys, wrong lengths, bad encodings and
                       shapes, device ids outside the identifier syntax
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

from keyflows.spec import envelope as E
from keyflows.spec import primitives
from keyflows.spec.drbg import Drbg
from keyflows.spec.encoding import b64url_decode, b64url_encode
from keyflows.vectors.framework import (
    Case,
    Failure,
    Flag,
    Outcome,
    VectorFile,
    compare,
    dispatch,
    expect_rejection,
    hx,
)

FLOW = "envelope"

OP_SEAL = "seal"
OP_SUBMIT = "validate-submission"
OP_OPEN = "open"
OP_ACK = "acknowledge"
OP_REGISTER = "register-device"

# Steps of the envelope chapter where a rejection happens.
STEP_SEND = "5"  # the sender: device keys and ephemeral keys
STEP_SERVER = "8"  # the server: shape, lengths, points, sender, devices, limits, id
STEP_OPEN = "10"  # the recipient device
STEP_ACK = "11"  # the server checks a disclosure
STEP_REGISTER = "1"  # the server checks a device key

LIMITS = E.Limits(max_recipients=16, max_ciphertext_bytes=4096)

NOTES: dict[str, Flag] = {
    "Valid": Flag("A well-formed envelope, delivery or disclosure.",
                  "Accept; recompute every intermediate and output."),
    "BitFlip": Flag("One bit of one field is flipped; the encoding stays canonical.",
                    "Reject at the check protecting that field: the MAC for the ciphertext, "
                    "its tag and the payload nonce (ENV-8); the unwrap for the wrapped key, "
                    "the ephemeral key and the message id (ENV-7)."),
    "Relabelled": Flag("The sender member is changed.",
                       "Reject at the unwrap: the wrap AAD binds the sender (ENV-7)."),
    "WrongKey": Flag("The delivery is opened with another device's private key.",
                     "Reject at the unwrap (failure class aead)."),
    "LowOrderPoint": Flag("The ephemeral key is a point of low order: DH with it gives a "
                          "predictable (all-zero) secret.",
                          "Reject at the point check (failure class point, ENV-5)."),
    "NonCanonicalPoint": Flag("The ephemeral key has its top bit set or u >= 2^255 - 19.",
                              "Reject at the point check (failure class point, ENV-5)."),
    "ForeignEntry": Flag("The delivery carries an entry addressed to another device.",
                         "Reject before any cryptography (failure class binding, ENV-13)."),
    "SwappedEntries": Flag("Another device's ephemeral key, wrapped key and MAC are placed "
                           "under this device's address.",
                           "Reject at the unwrap (failure class aead)."),
    "Spliced": Flag("An entry or a payload is taken from another message of the same sender "
                    "to the same devices.",
                    "Reject: an entry under another message id fails the unwrap; a payload "
                    "under another entry fails the MAC."),
    "Truncated": Flag("A base64url field decodes to fewer bytes than required.",
                      "Reject (failure class length)."),
    "TrailingBytes": Flag("A base64url field decodes to one byte more than required.",
                          "Reject (failure class length)."),
    "NonCanonicalBase64": Flag("A base64url field is padded or has non-zero unused trailing "
                               "bits.",
                               "Reject (failure class decode, API-1)."),
    "UnknownMember": Flag("An object carries a member the wire format does not define.",
                          "Reject (failure class decode)."),
    "MissingMember": Flag("A required member is absent.", "Reject (failure class decode)."),
    "DuplicateRecipient": Flag("The envelope names the same (user_id, device_id) twice.",
                               "Reject (failure class decode, ENV-9)."),
    "RepeatedEphemeral": Flag("Two entries carry the same ephemeral key.",
                              "Reject (failure class decode, ENV-9)."),
    "Limits": Flag("No recipient, more recipients than max_recipients, or a ciphertext "
                   "longer than max_message_bytes.",
                   "Reject (failure class params, ENV-9 or ENV-17)."),
    "ForeignSender": Flag("The envelope's sender is not the authenticated user.",
                          "Reject (failure class binding, ENV-10)."),
    "UnregisteredDevice": Flag("An entry addresses a device that is not registered.",
                               "Reject (failure class binding, ENV-10)."),
    "Replay": Flag("The message id was already used.",
                   "Reject (failure class replay, ENV-10)."),
    "DisclosureMismatch": Flag("The disclosed MAC key does not verify the stored MAC.",
                               "Refuse the ACK (failure class mac, ENV-14)."),
    "RepeatedAck": Flag("The device acknowledges again with the key already stored.",
                        "Accept and change nothing (ENV-15)."),
    "AlreadyAcknowledged": Flag("The device has already acknowledged this message id (its "
                                "MAC key is public now).",
                                "Reject before opening (failure class replay, ENV-18)."),
    "BadIdentifier": Flag("A device id outside ^[A-Za-z0-9._~-]{1,64}$.",
                          "Reject (failure class decode, ENV-1)."),
}


# --- base envelopes -----------------------------------------------------------------------

@dataclass(frozen=True)
class Base:
    name: str
    sender: str
    addresses: tuple[tuple[str, str], ...]
    message_len: int | None  # None: the fixed text below
    comment: str


TEXT = b"FxChat, made sound: encrypt once, wrap per device, disclose the MAC key on ACK."
LONG_ID = "Az09._~-" * 8

BASES = (
    Base("one", "alice", (("bob", "phone"),), None, "to one device"),
    Base("two", "alice", (("bob", "phone"), ("carol", "laptop")), 0,
         "an empty message to two users' devices"),
    Base("ten", LONG_ID, tuple((f"user{i % 4}" if i != 9 else LONG_ID, f"device-{i}")
                               for i in range(10)), 1000,
         "1000 bytes to ten devices of five users, with 64-character identifiers"),
)


class Replay:
    """A random source that replays recorded bytes and insists on the recorded order."""

    def __init__(self, draws: list[bytes]) -> None:
        self._draws = list(draws)

    def __call__(self, n: int) -> bytes:
        if not self._draws:
            raise ValueError("seal drew more random bytes than the case records")
        value = self._draws.pop(0)
        if len(value) != n:
            raise ValueError(f"seal drew {n} bytes where the case records {len(value)}")
        return value

    def exhausted(self) -> bool:
        return not self._draws


@dataclass(frozen=True)
class Material:
    base: Base
    message: bytes
    devices: tuple[E.Device, ...]
    privates: Mapping[tuple[str, str], bytes]
    sealed: E.Sealed

    def drbg(self, purpose: str) -> Drbg:
        return Drbg(f"{FLOW}/v1/{self.base.name}/{purpose}")

    def delivery(self, index: int) -> dict[str, Any]:
        entry = self.sealed.envelope.entries[index]
        return E.delivery_to_wire(E.fan_out(self.sealed.envelope)[entry.address])

    def address(self, index: int) -> tuple[str, str]:
        return self.sealed.envelope.entries[index].address


@cache
def material(base: Base) -> Material:
    keys = Drbg(f"{FLOW}/v1/{base.name}/devices")
    privates = {address: keys(32) for address in base.addresses}
    devices = tuple(E.Device(user_id=u, device_id=d,
                             public_key=primitives.x25519_public_key(privates[(u, d)]))
                    for u, d in base.addresses)
    message = TEXT if base.message_len is None else \
        Drbg(f"{FLOW}/v1/{base.name}/message")(base.message_len)
    sealed = E.seal(message, sender=base.sender, recipients=devices,
                    random=Drbg(f"{FLOW}/v1/{base.name}/seal"), keep_trace=True)
    return Material(base=base, message=message, devices=devices, privates=privates,
                    sealed=sealed)


# --- the values a case records ------------------------------------------------------------

def _seal_intermediates(sealed: E.Sealed) -> dict[str, Any]:
    env = sealed.envelope
    return {
        "payload_aad": sealed.payload_aad,
        "ciphertext": env.payload.ciphertext,
        "ciphertext_digest": sealed.ciphertext_digest,
        "recipients": [
            {"ephemeral_public": t.ephemeral_public,
             "shared_secret": t.keys.shared_secret,
             "prk": t.keys.prk,
             "encryption_key_info": E.key_info(E.LABEL_ENCRYPTION_KEY, env.message_id,
                                               t.ephemeral_public, t.device.public_key),
             "mac_key_info": E.key_info(E.LABEL_MAC_KEY, env.message_id,
                                        t.ephemeral_public, t.device.public_key),
             "encryption_key": t.keys.encryption_key,
             "mac_key": t.keys.mac_key,
             "wrap_aad": t.wrap_aad,
             "wrapped_key": t.wrapped_key,
             "mac_input": t.mac_input,
             "mac": t.mac}
            for t in sealed.recipients],
    }


def _opened_values(opened: E.Opened, device_public: bytes) -> tuple[dict[str, Any],
                                                                     dict[str, Any]]:
    intermediates = {"device_public": device_public,
                     "shared_secret": opened.keys.shared_secret,
                     "encryption_key": opened.keys.encryption_key,
                     "mac_key": opened.keys.mac_key,
                     "content_key": opened.content_key,
                     "ciphertext_digest": opened.ciphertext_digest,
                     "mac_input": opened.mac_input}
    outputs = {"plaintext": opened.plaintext, "ack": E.ack_to_wire(E.disclosure_for(opened))}
    return intermediates, outputs


# --- wire surgery -------------------------------------------------------------------------

Path = tuple[str | int, ...]


def _parent(record: Any, path: Path) -> Any:
    node = record
    for key in path[:-1]:
        node = node[key]
    return node


def _get(record: Any, path: Path) -> Any:
    return _parent(record, path)[path[-1]]


def _set(record: Any, path: Path, value: Any) -> Any:
    out = copy.deepcopy(record)
    _parent(out, path)[path[-1]] = value
    return out


def _delete(record: Any, path: Path) -> Any:
    out = copy.deepcopy(record)
    del _parent(out, path)[path[-1]]
    return out


def _flip(data: bytes, index: int, bit: int = 0) -> bytes:
    out = bytearray(data)
    out[index] ^= 1 << bit
    return bytes(out)


def _flip_field(record: Any, path: Path, index: int, bit: int = 0) -> Any:
    return _set(record, path, b64url_encode(_flip(b64url_decode(_get(record, path)), index, bit)))


def _resize_field(record: Any, path: Path, size: int, extra: bytes = b"\x00") -> Any:
    data = b64url_decode(_get(record, path))
    data = data[:size] if size <= len(data) else data + extra * (size - len(data))
    return _set(record, path, b64url_encode(data))


def _u(value: int) -> bytes:
    return value.to_bytes(32, "little")


X25519_P = primitives.X25519_P
LOW_ORDER: tuple[tuple[str, bytes, str], ...] = tuple(
    (slug, _u(u), what) for slug, u, what in (
        ("zero", 0, "u = 0, a point of order 2"),
        ("one", 1, "u = 1, a point of order 4"),
        ("order8-a", 325606250916557431795983626356110631294008115727848805560023387167927233504,
         "a point of order 8"),
        ("order8-b",
         39382357235489614581723060781553021112529911719440698176882885853963445705823,
         "the other point of order 8"),
        ("p-minus-1", X25519_P - 1, "u = p - 1, a point of order 4 on the twist"),
    ))

PAYLOAD_CT: Path = ("payload", "ciphertext")
PAYLOAD_NONCE: Path = ("payload", "nonce")
ENTRY_EPH: Path = ("recipient", "ephemeral_key")
ENTRY_WRAP: Path = ("recipient", "wrapped_key")
ENTRY_MAC: Path = ("recipient", "mac")
MESSAGE_ID: Path = ("message_id",)


# --- case builders ------------------------------------------------------------------------

def _seal_case(m: Material) -> Case:
    env, sealed = m.sealed.envelope, m.sealed
    return Case(
        id=f"env-v1-{m.base.name}/seal", comment=f"seal: {m.base.comment}", flags=("Valid",),
        requirements=("ENV-4", "ENV-5", "ENV-6", "ENV-7", "ENV-8", "KD-7"), operation=OP_SEAL,
        inputs={"message": m.message, "sender": m.base.sender,
                "recipients": [{"user_id": d.user_id, "device_id": d.device_id,
                                "device_public": d.public_key} for d in m.devices],
                "message_id": env.message_id, "content_key": sealed.content_key,
                "payload_nonce": env.payload.nonce,
                "ephemeral_privates": [t.ephemeral_private for t in sealed.recipients]},
        intermediates=_seal_intermediates(sealed),
        outputs={"envelope": E.envelope_to_wire(env)})


def _open_case(m: Material, index: int, slug: str, comment: str, flags: tuple[str, ...],
               requirements: tuple[str, ...], failure: Failure | None,
               delivery: Any = None, *, address: tuple[str, str] | None = None,
               private: bytes | None = None, acknowledged: tuple[bytes, ...] = ()) -> Case:
    address = address or m.address(index)
    private = private if private is not None else m.privates[m.address(index)]
    delivery = m.delivery(index) if delivery is None else delivery
    inputs = {"delivery": delivery, "user_id": address[0], "device_id": address[1],
              "device_private": private, "acknowledged": list(acknowledged)}
    intermediates: dict[str, Any] = {}
    outputs: dict[str, Any] = {}
    if failure is None:
        intermediates, outputs = _inbox_open(inputs, private, list(acknowledged))
    suffix = f"/{slug}" if slug else ""
    return Case(
        id=f"env-v1-{m.base.name}/open/{index}{suffix}", comment=comment, flags=flags,
        requirements=requirements, operation=OP_OPEN, inputs=inputs,
        intermediates=intermediates, outputs=outputs, failure=failure)


def _inbox_open(inputs: Mapping[str, Any], private: bytes,
                acknowledged: list[bytes]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Steps 10 and 11 on the device, through the Inbox state machine: open the delivery,
    then make the ACK body (which must disclose the MAC key and nothing else)."""
    inbox = E.Inbox(user_id=inputs["user_id"], device_id=inputs["device_id"],
                    device_private=private, acknowledged=acknowledged)
    delivery = E.parse_delivery(inputs["delivery"])
    opened = inbox.open(delivery)
    intermediates, outputs = _opened_values(opened, primitives.x25519_public_key(private))
    outputs["ack"] = inbox.acknowledge(delivery.message_id)
    return intermediates, outputs


def _submission_inputs(m: Material, envelope: Any, *, sender: str | None = None,
                       registered: list[tuple[str, str]] | None = None,
                       used: list[bytes] | None = None,
                       limits: E.Limits = LIMITS) -> dict[str, Any]:
    return {"envelope": envelope, "authenticated_user": sender or m.base.sender,
            "limits": {"max_recipients": limits.max_recipients,
                       "max_message_bytes": limits.max_ciphertext_bytes},
            "registered_devices": [list(a) for a in (registered if registered is not None
                                                     else m.base.addresses)],
            "used_message_ids": list(used or [])}


def _submission_case(m: Material, slug: str, comment: str, flags: tuple[str, ...],
                     requirements: tuple[str, ...], failure: Failure | None,
                     inputs: dict[str, Any]) -> Case:
    outputs: dict[str, Any] = {}
    if failure is None:
        outputs = {"deliveries": [E.delivery_to_wire(d)
                                  for d in _validated_deliveries(inputs)]}
    suffix = f"/{slug}" if slug else ""
    return Case(id=f"env-v1-{m.base.name}/submit{suffix}", comment=comment, flags=flags,
                requirements=requirements, operation=OP_SUBMIT, inputs=inputs,
                outputs=outputs, failure=failure)


def _ack_case(m: Material, slug: str, comment: str, flags: tuple[str, ...],
              requirements: tuple[str, ...], failure: Failure | None, ack: Any, *,
              delivery: dict[str, Any] | None = None) -> Case:
    delivery = delivery or m.delivery(0)
    outputs: dict[str, Any] = {}
    if failure is None:
        outcome = E.apply_ack(E.parse_delivery(delivery), E.parse_ack(ack))
        outputs = {"changed": outcome.changed,
                   "record": E.delivery_to_wire(E.parse_delivery(delivery)) |
                   {"mac_key": b64url_encode(outcome.mac_key)}}
    return Case(id=f"env-v1-{m.base.name}/ack/{slug}", comment=comment, flags=flags,
                requirements=requirements, operation=OP_ACK,
                inputs={"delivery": delivery, "ack": ack}, outputs=outputs, failure=failure)


# --- positives ----------------------------------------------------------------------------

def _positives(m: Material) -> list[Case]:
    env = m.sealed.envelope
    cases = [_seal_case(m)]
    cases.append(_submission_case(
        m, "", f"a server accepts the envelope {m.base.comment} and fans it out",
        ("Valid",), ("ENV-9", "ENV-10", "ENV-11"), None,
        _submission_inputs(m, E.envelope_to_wire(env))))
    for index in range(len(env.entries)):
        user_id, device_id = m.address(index)
        cases.append(_open_case(m, index, "", f"{user_id}/{device_id} opens its delivery",
                                ("Valid",), ("ENV-13", "ENV-4", "ENV-6", "ENV-7", "ENV-8",
                                             "ENV-16"), None))
    mac_key = m.sealed.recipients[0].keys.mac_key
    cases.append(_ack_case(m, "first", "the first device acknowledges, disclosing its MAC key",
                           ("Valid",), ("ENV-14", "ENV-15"), None, E.ack_to_wire(mac_key)))
    cases.append(_ack_case(m, "repeat", "the same ACK again: accepted, nothing changes",
                           ("Valid", "RepeatedAck"), ("ENV-15",), None, E.ack_to_wire(mac_key),
                           delivery=m.delivery(0) | {"mac_key": b64url_encode(mac_key)}))
    return cases


# --- open families ------------------------------------------------------------------------

MAC_REJECT = Failure("mac", STEP_OPEN)
AEAD_REJECT = Failure("aead", STEP_OPEN)
POINT_REJECT = Failure("point", STEP_OPEN)
LENGTH_REJECT = Failure("length", STEP_OPEN)
DECODE_REJECT = Failure("decode", STEP_OPEN)


def _open_bitflips(m: Material) -> list[Case]:
    d = m.delivery(0)
    ct_len = len(b64url_decode(_get(d, PAYLOAD_CT)))
    specs: list[tuple[str, str, Path, int, int, tuple[str, ...], Failure]] = [
        ("ciphertext-first", "bit 0 of the first ciphertext byte", PAYLOAD_CT, 0, 0,
         ("ENV-8",), MAC_REJECT),
        ("ciphertext-tag", "bit 7 of the last byte (the GCM tag)", PAYLOAD_CT, ct_len - 1, 7,
         ("ENV-8",), MAC_REJECT),
        ("payload-nonce", "bit 0 of the first payload nonce byte", PAYLOAD_NONCE, 0, 0,
         ("ENV-8",), MAC_REJECT),
        ("wrapped-key-first", "bit 0 of the first wrapped-key byte", ENTRY_WRAP, 0, 0,
         ("ENV-7",), AEAD_REJECT),
        ("wrapped-key-tag", "bit 0 of the last wrapped-key byte (its tag)", ENTRY_WRAP, 47, 0,
         ("ENV-7",), AEAD_REJECT),
        ("mac-first", "bit 0 of the first MAC byte", ENTRY_MAC, 0, 0, ("ENV-8",), MAC_REJECT),
        ("mac-last", "bit 7 of the last MAC byte", ENTRY_MAC, 31, 7, ("ENV-8",), MAC_REJECT),
        ("ephemeral-key", "bit 1 of the first ephemeral-key byte: another valid point, so "
         "the derived keys differ", ENTRY_EPH, 0, 1, ("ENV-7",), AEAD_REJECT),
        ("message-id", "bit 0 of the first message-id byte", MESSAGE_ID, 0, 0, ("ENV-7",),
         AEAD_REJECT),
    ]
    return [_open_case(m, 0, f"bitflip-{slug}", f"flips {what}", ("BitFlip",), reqs, failure,
                       _flip_field(d, path, index, bit))
            for slug, what, path, index, bit, reqs, failure in specs]


def _open_context(m: Material) -> list[Case]:
    d = m.delivery(0)
    other_private = m.drbg("wrong-device-key")(32)
    other_id = _other_message(m.base).envelope.message_id
    cases = [
        _open_case(m, 0, "already-acknowledged", "the device acknowledged this message id "
                   "before (its MAC key is public): a re-served copy is refused",
                   ("AlreadyAcknowledged",), ("ENV-18",), Failure("replay", STEP_OPEN),
                   acknowledged=(other_id, m.sealed.envelope.message_id)),
        _open_case(m, 0, "other-message-acknowledged", "the device acknowledged another "
                   "message: this one opens", ("Valid",), ("ENV-18", "ENV-13", "ENV-16"), None,
                   acknowledged=(other_id,)),
        _open_case(m, 0, "relabel-sender", "the sender member changed to 'mallory'",
                   ("Relabelled",), ("ENV-7",), AEAD_REJECT, _set(d, ("sender",), "mallory")),
        _open_case(m, 0, "wrong-device-key", "opened with another X25519 private key under "
                   "the right address", ("WrongKey",), ("ENV-7",), AEAD_REJECT,
                   private=other_private),
    ]
    for slug, point, what in LOW_ORDER:
        cases.append(_open_case(m, 0, f"ephemeral-low-order-{slug}", f"the ephemeral key is "
                                f"{what}", ("LowOrderPoint",), ("ENV-5",), POINT_REJECT,
                                _set(d, ENTRY_EPH, b64url_encode(point))))
    real = b64url_decode(_get(d, ENTRY_EPH))
    cases.append(_open_case(m, 0, "ephemeral-top-bit", "the ephemeral key with its top bit "
                            "set (a second encoding of the same point)",
                            ("NonCanonicalPoint",), ("ENV-5",), POINT_REJECT,
                            _set(d, ENTRY_EPH, b64url_encode(real[:31] +
                                                             bytes([real[31] | 0x80])))))
    cases.append(_open_case(m, 0, "ephemeral-p-plus-9", "the ephemeral key is u = p + 9, a "
                            "non-canonical encoding of the base point",
                            ("NonCanonicalPoint",), ("ENV-5",), POINT_REJECT,
                            _set(d, ENTRY_EPH, b64url_encode(_u(X25519_P + 9)))))
    return cases


def _open_swaps(m: Material) -> list[Case]:
    """Needs a second device: the two-device base and the ten-device base."""
    if len(m.sealed.envelope.entries) < 2:
        return []
    mine, theirs = m.delivery(0), m.delivery(1)
    moved = copy.deepcopy(mine)
    for key in ("ephemeral_key", "wrapped_key", "mac"):
        moved["recipient"][key] = theirs["recipient"][key]
    return [
        _open_case(m, 0, "foreign-entry", f"the delivery of {'/'.join(m.address(1))} handed "
                   f"to {'/'.join(m.address(0))}", ("ForeignEntry",), ("ENV-13",),
                   Failure("binding", STEP_OPEN), theirs),
        _open_case(m, 0, "swapped-entries", "the other device's ephemeral key, wrapped key "
                   "and MAC under this device's address", ("SwappedEntries",), ("ENV-7",),
                   AEAD_REJECT, moved),
    ]


@cache
def _other_message(base: Base) -> E.Sealed:
    m = material(base)
    return E.seal(m.message, sender=base.sender, recipients=m.devices,
                  random=m.drbg("other-message"))


def _open_splices(m: Material) -> list[Case]:
    other = _other_message(m.base)
    d = m.delivery(0)
    other_delivery = E.delivery_to_wire(E.fan_out(other.envelope)[m.address(0)])
    entry_spliced = _set(other_delivery, ("recipient",), d["recipient"])
    payload_spliced = _set(d, ("payload",), other_delivery["payload"])
    return [
        _open_case(m, 0, "entry-from-other-message", "this message's entry under another "
                   "message (id and payload) of the same sender", ("Spliced",), ("ENV-7",),
                   AEAD_REJECT, entry_spliced),
        _open_case(m, 0, "payload-from-other-message", "another message's payload under "
                   "this message's id and entry", ("Spliced",), ("ENV-8",), MAC_REJECT,
                   payload_spliced),
    ]


FIELD_SIZES: dict[str, tuple[Path, int, str]] = {
    "message-id": (MESSAGE_ID, E.MESSAGE_ID_LEN, "ENV-9"),
    "payload-nonce": (PAYLOAD_NONCE, E.PAYLOAD_NONCE_LEN, "ENV-9"),
    "ephemeral-key": (ENTRY_EPH, E.X25519_LEN, "ENV-9"),
    "wrapped-key": (ENTRY_WRAP, E.WRAPPED_KEY_LEN, "ENV-9"),
    "mac": (ENTRY_MAC, E.MAC_LEN, "ENV-9"),
}


def _open_lengths(m: Material) -> list[Case]:
    d = m.delivery(0)
    cases = []
    for name, (path, size, req) in FIELD_SIZES.items():
        cases.append(_open_case(m, 0, f"truncated-{name}", f"{name} is one byte short",
                                ("Truncated",), (req,), LENGTH_REJECT,
                                _resize_field(d, path, size - 1)))
        cases.append(_open_case(m, 0, f"extended-{name}", f"{name} has one trailing byte",
                                ("TrailingBytes",), (req,), LENGTH_REJECT,
                                _resize_field(d, path, size + 1)))
    cases.append(_open_case(m, 0, "truncated-ciphertext-below-tag", "the ciphertext is 15 "
                            "bytes, shorter than a GCM tag", ("Truncated",), ("ENV-9",),
                            LENGTH_REJECT, _resize_field(d, PAYLOAD_CT, 15)))
    return cases


_B64_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def _open_structure(m: Material) -> list[Case]:
    d = m.delivery(0)
    mac_text = _get(d, ENTRY_MAC)
    trailing = mac_text[:-1] + _B64_ALPHABET[_B64_ALPHABET.index(mac_text[-1]) | 1]
    reqs = ("API-6",)
    return [
        _open_case(m, 0, "b64-padded-mac", "the MAC carries '=' padding",
                   ("NonCanonicalBase64",), ("API-1",), DECODE_REJECT,
                   _set(d, ENTRY_MAC, mac_text + "=")),
        _open_case(m, 0, "b64-trailing-bits-mac", "the MAC has a non-zero unused trailing bit",
                   ("NonCanonicalBase64",), ("API-1",), DECODE_REJECT,
                   _set(d, ENTRY_MAC, trailing)),
        _open_case(m, 0, "unknown-member-delivery", "an unknown member 'recipients' beside "
                   "'recipient'", ("UnknownMember",), reqs, DECODE_REJECT,
                   _set(d, ("recipients",), [])),
        _open_case(m, 0, "unknown-member-entry", "an unknown member in the entry",
                   ("UnknownMember",), reqs, DECODE_REJECT, _set(d, ("recipient", "note"), "")),
        _open_case(m, 0, "missing-mac", "the entry has no MAC", ("MissingMember",), reqs,
                   DECODE_REJECT, _delete(d, ENTRY_MAC)),
        _open_case(m, 0, "missing-payload", "the delivery has no payload", ("MissingMember",),
                   reqs, DECODE_REJECT, _delete(d, ("payload",))),
    ]


# --- validate-submission families ---------------------------------------------------------

def _submission_negatives(m: Material) -> list[Case]:
    env = E.envelope_to_wire(m.sealed.envelope)
    entries = env["recipients"]
    n = len(entries)
    server = STEP_SERVER
    cases = [
        _submission_case(m, "duplicate-recipient", "the first entry appears twice",
                         ("DuplicateRecipient",), ("ENV-9",), Failure("decode", server),
                         _submission_inputs(m, _set(env, ("recipients",),
                                                    [*entries, entries[0]]))),
        _submission_case(m, "no-recipients", "the recipient list is empty", ("Limits",),
                         ("ENV-9",), Failure("params", server),
                         _submission_inputs(m, _set(env, ("recipients",), []))),
        _submission_case(m, "too-many-recipients", f"{n} recipients where the server allows "
                         f"{n - 1}" if n > 1 else "one recipient where the server allows none",
                         ("Limits",), ("ENV-17",), Failure("params", server),
                         _submission_inputs(m, env, limits=E.Limits(
                             max_recipients=n - 1,
                             max_ciphertext_bytes=LIMITS.max_ciphertext_bytes))),
        _submission_case(m, "ciphertext-too-large", "the ciphertext is one byte over "
                         "max_message_bytes", ("Limits",), ("ENV-17",),
                         Failure("params", server),
                         _submission_inputs(m, env, limits=E.Limits(
                             max_recipients=LIMITS.max_recipients,
                             max_ciphertext_bytes=len(m.sealed.envelope.payload.ciphertext) - 1
                         ))),
        _submission_case(m, "foreign-sender", "posted by 'mallory' in the sender's name",
                         ("ForeignSender",), ("ENV-10",), Failure("binding", server),
                         _submission_inputs(m, env, sender="mallory")),
        _submission_case(m, "unregistered-device", "the last addressed device is not "
                         "registered", ("UnregisteredDevice",), ("ENV-10",),
                         Failure("binding", server),
                         _submission_inputs(m, env, registered=list(m.base.addresses[:-1]))),
        _submission_case(m, "message-id-reused", "the message id was used before",
                         ("Replay",), ("ENV-10",), Failure("replay", server),
                         _submission_inputs(m, env, used=[m.sealed.envelope.message_id])),
        _submission_case(m, "ephemeral-low-order", "the first entry's ephemeral key is u = 1",
                         ("LowOrderPoint",), ("ENV-5",), Failure("point", server),
                         _submission_inputs(m, _set(env, ("recipients", 0, "ephemeral_key"),
                                                    b64url_encode(_u(1))))),
        _submission_case(m, "truncated-wrapped-key", "the first entry's wrapped key is one "
                         "byte short", ("Truncated",), ("ENV-9",), Failure("length", server),
                         _submission_inputs(m, _resize_field(
                             env, ("recipients", 0, "wrapped_key"), E.WRAPPED_KEY_LEN - 1))),
    ]
    if n > 1:
        repeated = _set(env, ("recipients", 1, "ephemeral_key"), entries[0]["ephemeral_key"])
        cases.append(_submission_case(
            m, "repeated-ephemeral", "the second entry repeats the first one's ephemeral key",
            ("RepeatedEphemeral",), ("ENV-9",), Failure("decode", server),
            _submission_inputs(m, repeated)))
    return cases


# --- acknowledge families -----------------------------------------------------------------

def _ack_negatives(m: Material) -> list[Case]:
    first = m.sealed.recipients[0].keys
    mismatch = Failure("mac", STEP_ACK)
    cases = [
        _ack_case(m, "flipped-key", "the disclosed key with bit 0 of its first byte flipped",
                  ("DisclosureMismatch", "BitFlip"), ("ENV-14",), mismatch,
                  E.ack_to_wire(_flip(first.mac_key, 0))),
        _ack_case(m, "encryption-key", "the encryption key disclosed instead of the MAC key",
                  ("DisclosureMismatch",), ("ENV-14",), mismatch,
                  E.ack_to_wire(first.encryption_key)),
        _ack_case(m, "truncated-key", "the disclosed key is 31 bytes", ("Truncated",),
                  ("ENV-14",), Failure("length", STEP_ACK), E.ack_to_wire(first.mac_key[:31])),
    ]
    if len(m.sealed.recipients) > 1:
        cases.append(_ack_case(m, "other-device-key", "another device's MAC key for this "
                               "device's delivery", ("DisclosureMismatch",), ("ENV-14",),
                               mismatch, E.ack_to_wire(m.sealed.recipients[1].keys.mac_key)))
    return cases


def _register_case(slug: str, comment: str, flags: tuple[str, ...],
                   requirements: tuple[str, ...], failure: Failure | None, body: Any,
                   device_id: str = "phone") -> Case:
    outputs: dict[str, Any] = {}
    if failure is None:
        outputs = {"x25519": _registered(device_id, body)}
    return Case(id=f"env-v1-register/{slug}", comment=comment, flags=flags,
                requirements=requirements, operation=OP_REGISTER,
                inputs={"device_id": device_id, "body": body}, outputs=outputs,
                failure=failure)


def _registered(device_id: str, body: Any) -> bytes:
    E.check_device_id(device_id)
    return E.parse_device_registration(body)


def _register_cases() -> list[Case]:
    key = primitives.x25519_public_key(Drbg(f"{FLOW}/v1/register/device")(32))
    text = b64url_encode(key)
    point, length, decode = (Failure("point", STEP_REGISTER), Failure("length", STEP_REGISTER),
                             Failure("decode", STEP_REGISTER))
    body = {"x25519": text}
    cases = [
        _register_case("valid", "a device key registered under a client-chosen id",
                       ("Valid",), ("ENV-1", "ENV-2"), None, body),
        _register_case("valid-assigned-id", "a device key under an id the server assigned "
                       "(base64url of 16 random bytes)", ("Valid",), ("ENV-1", "ENV-2"), None,
                       body, device_id=E.new_device_id(Drbg(f"{FLOW}/v1/register/id"))),
    ]
    for slug, value, what in LOW_ORDER:
        cases.append(_register_case(f"low-order-{slug}", f"the device key is {what}",
                                    ("LowOrderPoint",), ("ENV-2",), point,
                                    {"x25519": b64url_encode(value)}))
    top = key[:31] + bytes([key[31] | 0x80])
    for slug, value, what in (("top-bit", top, "the key with its top bit set"),
                              ("p-plus-9", _u(X25519_P + 9), "u = p + 9"),
                              ("p", _u(X25519_P), "u = p (a second encoding of u = 0)")):
        flags: tuple[str, ...] = ("NonCanonicalPoint",)
        cases.append(_register_case(f"non-canonical-{slug}", f"the device key is {what}",
                                    flags, ("ENV-2",), point, {"x25519": b64url_encode(value)}))
    cases += [
        _register_case("truncated-key", "a 31-byte key", ("Truncated",), ("ENV-2",), length,
                       {"x25519": b64url_encode(key[:31])}),
        _register_case("extended-key", "a 33-byte key", ("TrailingBytes",), ("ENV-2",),
                       length, {"x25519": b64url_encode(key + b"\x00")}),
        _register_case("b64-padded-key", "the key carries '=' padding",
                       ("NonCanonicalBase64",), ("API-1",), decode, {"x25519": text + "="}),
        _register_case("unknown-member", "an unknown member beside the key", ("UnknownMember",),
                       ("API-6",), decode, {"x25519": text, "name": "phone"}),
        _register_case("missing-key", "an empty object", ("MissingMember",), ("API-6",), decode,
                       {}),
    ]
    for slug, device_id, what in (("slash", "a/b", "contains '/'"), ("empty", "", "is empty"),
                                  ("too-long", "d" * 65, "has 65 characters"),
                                  ("space", "my phone", "contains a space")):
        cases.append(_register_case(f"device-id-{slug}", f"the device id {what}",
                                    ("BadIdentifier",), ("ENV-1",), decode, body,
                                    device_id=device_id))
    return cases


def _cases() -> list[Case]:
    materials = [material(base) for base in BASES]
    cases: list[Case] = []
    for m in materials:
        cases += _positives(m)
    for m in materials[:2]:
        for family in (_open_bitflips, _open_context, _open_swaps, _open_splices,
                       _open_lengths, _open_structure, _submission_negatives, _ack_negatives):
            cases += family(m)
    return cases + _register_cases()


def generate() -> list[VectorFile]:
    return [VectorFile(
        schema_name=FLOW, flow=FLOW, profile="v1",
        source_labels=(f"Drbg('{FLOW}/v1/<base>/devices') draws each device's X25519 private "
                       f"key (32) in recipient order; Drbg('{FLOW}/v1/<base>/seal') draws the "
                       "message id (16), the content key (32), the payload nonce (12), then "
                       "one ephemeral private key (32) per device in recipient order; "
                       f"Drbg('{FLOW}/v1/<base>/message') draws the message of bases with a "
                       "random one; mutations draw from '<base label>/<mutation>' "
                       "(wrong-device-key, other-message); the register-device cases draw "
                       f"from Drbg('{FLOW}/v1/register/device') and "
                       f"Drbg('{FLOW}/v1/register/id')"),
        notes=NOTES, cases=_cases())]


# --- verification: the consumer side ------------------------------------------------------

def _verify_seal(case: Mapping[str, Any]) -> Outcome:
    inputs = case["inputs"]
    devices = [E.Device(user_id=r["user_id"], device_id=r["device_id"],
                        public_key=hx(r["device_public"], "device_public"))
               for r in inputs["recipients"]]
    replay = Replay([hx(inputs["message_id"], "message_id"),
                     hx(inputs["content_key"], "content_key"),
                     hx(inputs["payload_nonce"], "payload_nonce"),
                     *(hx(e, "ephemeral_private") for e in inputs["ephemeral_privates"])])
    sealed = E.seal(hx(inputs["message"], "message"), sender=inputs["sender"],
                    recipients=devices, random=replay, keep_trace=True)
    if not replay.exhausted():
        return Outcome(False, "seal drew fewer random bytes than the case records")
    return compare(case, intermediates=_seal_intermediates(sealed),
                   outputs={"envelope": E.envelope_to_wire(sealed.envelope)})


def _verify_open(case: Mapping[str, Any]) -> Outcome:
    inputs = case["inputs"]
    private = hx(inputs["device_private"], "device_private")
    acknowledged = [hx(i, "acknowledged") for i in inputs["acknowledged"]]
    if case["result"] == "invalid":
        return expect_rejection(case, lambda: _inbox_open(inputs, private, acknowledged))
    intermediates, outputs = _inbox_open(inputs, private, acknowledged)
    return compare(case, intermediates=intermediates, outputs=outputs)


def _validated_deliveries(inputs: Mapping[str, Any]) -> list[E.Delivery]:
    limits = E.Limits(max_recipients=inputs["limits"]["max_recipients"],
                      max_ciphertext_bytes=inputs["limits"]["max_message_bytes"])
    envelope = E.validate_submission(inputs["envelope"], sender=inputs["authenticated_user"],
                                     limits=limits)
    registered = {(u, d) for u, d in inputs["registered_devices"]}
    E.check_recipients_registered(
        envelope, lambda u, d: b"registered" if (u, d) in registered else None)
    E.check_message_id_unused(envelope.message_id,
                              {hx(i, "used_message_id") for i in inputs["used_message_ids"]})
    deliveries = E.fan_out(envelope)
    return [deliveries[entry.address] for entry in envelope.entries]


def _verify_submission(case: Mapping[str, Any]) -> Outcome:
    inputs = case["inputs"]
    if case["result"] == "invalid":
        return expect_rejection(case, lambda: _validated_deliveries(inputs))
    return compare(case, outputs={"deliveries": [E.delivery_to_wire(d)
                                                 for d in _validated_deliveries(inputs)]})


def _verify_ack(case: Mapping[str, Any]) -> Outcome:
    inputs = case["inputs"]

    def ack() -> E.AckOutcome:
        return E.apply_ack(E.parse_delivery(inputs["delivery"]), E.parse_ack(inputs["ack"]))

    if case["result"] == "invalid":
        return expect_rejection(case, ack)
    outcome = ack()
    record = E.delivery_to_wire(E.parse_delivery(inputs["delivery"])) | {
        "mac_key": b64url_encode(outcome.mac_key)}
    return compare(case, outputs={"changed": outcome.changed, "record": record})


def _verify_register(case: Mapping[str, Any]) -> Outcome:
    inputs = case["inputs"]
    if case["result"] == "invalid":
        return expect_rejection(case, lambda: _registered(inputs["device_id"], inputs["body"]))
    return compare(case, outputs={"x25519": _registered(inputs["device_id"], inputs["body"])})


_VERIFIERS: dict[tuple[str, str], Callable[[Mapping[str, Any]], Outcome]] = {
    ("v1", OP_SEAL): _verify_seal,
    ("v1", OP_OPEN): _verify_open,
    ("v1", OP_SUBMIT): _verify_submission,
    ("v1", OP_ACK): _verify_ack,
    ("v1", OP_REGISTER): _verify_register,
}


def verify_case(header: Mapping[str, Any], case: Mapping[str, Any]) -> Outcome:
    """Replay one case through the spec's consumer side."""
    return dispatch(_VERIFIERS, header, case)
