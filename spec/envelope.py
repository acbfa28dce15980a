"""Flow: envelope (multi-recipient messages, seed 001 made sound).

Steps (see the envelope chapter):
  1. Device registry: a user registers X25519 public keys of its devices under device ids
     (ENV-1); every party rejects bad points (ENV-2); only the owner registers or removes a
     device, anyone lists a user's device public keys (ENV-3).
  2. The sender fetches the recipients' device lists and checks every key (ENV-2).
  3. Per message: a fresh message id, content key and payload nonce; the message is
     encrypted ONCE with AES-256-GCM under the content key (ENV-4).
  4. The ciphertext is hashed ONCE; the digest stands for it in every MAC (ENV-8).
  5. Per recipient device: a fresh ephemeral X25519 key, DH with the device key (no all-zero
     secret, ENV-5), and two keys from one labelled HKDF extract (ENV-6).
  6. The content key is wrapped under the encryption key, AAD binding the header (ENV-7).
  7. A per-recipient HMAC-SHA256 over the header, the wrapped key and the digest (ENV-8).
  8. The server checks the envelope (ENV-9), its sender, recipients and id (ENV-10), and
     fans it out: each device's queue gets the payload and that device's entry only
     (ENV-11).
  9. A device's queue is served to the device's owner only (ENV-12); on request without
     the inline payload ciphertext, which the device then fetches as raw bytes (ENV-19).
  10. The recipient opens: binding, derive, unwrap, verify the MAC, decrypt (ENV-13), and
      refuses a message id it already acknowledged (ENV-18); a raw payload is opened
      exactly like an inline one (ENV-20).
  11. ACK: the recipient discloses its MAC key and nothing else (ENV-16); the server checks
      it against the stored MAC (ENV-14), dequeues the message and serves the disclosure
      with the message record; a repeated ACK changes nothing (ENV-15).
  12. Retention: unacknowledged and acknowledged records live at most retention_seconds
      (ENV-17).

Performance is part of the design: the payload is encrypted once and hashed once per
envelope, so the per-recipient work (two X25519 operations, one HKDF extract and two
expands, one 32-byte AEAD, one HMAC over a short input) does not grow with the message.

The functions here are pure: records are plain JSON-shaped dicts, randomness is passed in.
A device's side of steps 10-11 is also offered as a small state machine, `Inbox`; the
server's side of step 11 is `apply_ack`.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from keyflows.spec import primitives, wire
from keyflows.spec.drbg import RandomSource
from keyflows.spec.encoding import (
    b64url_decode,
    b64url_encode,
    labelled_context,
    length_prefixed,
)
from keyflows.spec.errors import (
    BindingError,
    DecodeError,
    ExpiredError,
    LengthError,
    MacError,
    ParamsError,
    ReplayError,
)
from keyflows.spec.key_derivation import LABELS, check_identifier

MESSAGE_ID_LEN = 16
CONTENT_KEY_LEN = 32
PAYLOAD_NONCE_LEN = primitives.GCM_NONCE_LEN
X25519_LEN = primitives.X25519_KEY_LEN
WRAPPED_KEY_LEN = CONTENT_KEY_LEN + primitives.GCM_TAG_LEN
MAC_KEY_LEN = 32
MAC_LEN = 32
DEVICE_ID_RANDOM_LEN = 16
# ENV-7: the encryption key is used for exactly one wrap (it is derived from a fresh
# ephemeral key and the message id), so a constant nonce never repeats under one key.
WRAP_NONCE = bytes(primitives.GCM_NONCE_LEN)

LABEL_PAYLOAD = "envelope-payload"
LABEL_ENCRYPTION_KEY = "envelope-encryption-key"
LABEL_MAC_KEY = "envelope-mac-key"
LABEL_WRAP = "envelope-wrap"
LABEL_MAC = "envelope-mac"

ENVELOPE_MEMBERS = ("message_id", "sender", "payload", "recipients")
PAYLOAD_MEMBERS = ("nonce", "ciphertext")
# Step 9 (ENV-19): a queue record read with payload=omit carries the nonce only.
PAYLOAD_HEADER_MEMBERS = ("nonce",)
ENTRY_MEMBERS = ("user_id", "device_id", "ephemeral_key", "wrapped_key", "mac")
DELIVERY_MEMBERS = ("message_id", "sender", "payload", "recipient")
# Members a server adds to a delivery record; a consumer tolerates exactly these.
DELIVERY_SERVER_MEMBERS = ("received_at", "expires_at", "mac_key")
DEVICE_MEMBERS = ("device_id", "x25519")
DEVICE_LIST_MEMBERS = ("user_id", "devices")
ACK_MEMBERS = ("mac_key",)


def _check_labels_registered() -> None:
    """KD-7: every label this flow feeds to HKDF, an AAD or a MAC is registered."""
    for label in (LABEL_PAYLOAD, LABEL_ENCRYPTION_KEY, LABEL_MAC_KEY, LABEL_WRAP, LABEL_MAC):
        if label not in LABELS:
            raise RuntimeError(f"envelope label {label!r} is not in key_derivation.LABELS")


_check_labels_registered()


# --- records ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Device:
    """A recipient device as the public device list names it."""

    user_id: str
    device_id: str
    public_key: bytes


@dataclass(frozen=True)
class Payload:
    nonce: bytes
    ciphertext: bytes


@dataclass(frozen=True)
class Entry:
    """One recipient device's part of an envelope (the seed's `recipients[i]`)."""

    user_id: str
    device_id: str
    ephemeral_key: bytes
    wrapped_key: bytes
    mac: bytes

    @property
    def address(self) -> tuple[str, str]:
        return (self.user_id, self.device_id)


@dataclass(frozen=True)
class Envelope:
    """What a sender submits: the payload once, one entry per recipient device."""

    message_id: bytes
    sender: str
    payload: Payload
    entries: tuple[Entry, ...]


@dataclass(frozen=True)
class Delivery:
    """What one device receives: the payload and its own entry only (ENV-11)."""

    message_id: bytes
    sender: str
    payload: Payload
    entry: Entry
    mac_key: bytes | None = None


@dataclass(frozen=True)
class Limits:
    """Server limits advertised in the capabilities (ENV-9, ENV-17)."""

    max_recipients: int
    max_ciphertext_bytes: int


@dataclass(frozen=True)
class RecipientKeys:
    """Step 5: the per-recipient shared secret and keys."""

    shared_secret: bytes
    prk: bytes
    encryption_key: bytes
    mac_key: bytes


@dataclass(frozen=True)
class RecipientTrace:
    """Every intermediate of steps 5-7 for one recipient device (for vectors)."""

    device: Device
    ephemeral_private: bytes
    ephemeral_public: bytes
    keys: RecipientKeys
    wrap_aad: bytes
    wrapped_key: bytes
    mac_input: bytes
    mac: bytes


@dataclass(frozen=True)
class Sealed:
    """A sealed envelope and every intermediate of steps 3-7."""

    envelope: Envelope
    content_key: bytes
    payload_aad: bytes
    ciphertext_digest: bytes
    recipients: tuple[RecipientTrace, ...]


@dataclass(frozen=True)
class Opened:
    """What a recipient learns in step 10, and the MAC key it may disclose in step 11."""

    plaintext: bytes
    content_key: bytes
    keys: RecipientKeys
    ciphertext_digest: bytes
    mac_input: bytes


# --- JSON shape helpers -------------------------------------------------------------------

def _bytes(obj: dict[str, Any], key: str, length: int, where: str, requirement: str) -> bytes:
    """Decode a base64url member (API-1) and require its exact length."""
    data = b64url_decode(wire.string(obj, key, where), requirement="API-1")
    if len(data) != length:
        raise LengthError(f"{where}.{key} must be {length} bytes, got {len(data)}",
                          requirement=requirement)
    return data


def _id_bytes(value: str, field: str, requirement: str = "KD-2") -> bytes:
    return check_identifier(value, field, requirement=requirement)


# --- step 1: device registry --------------------------------------------------------------

def new_device_id(random: RandomSource) -> str:
    """Step 1 (ENV-1): a server-assigned device id, base64url of 16 random bytes."""
    return b64url_encode(random(DEVICE_ID_RANDOM_LEN))


def check_device_id(value: object) -> str:
    """Step 1 (ENV-1): device ids follow the identifier syntax."""
    if not isinstance(value, str):
        raise DecodeError("device_id must be a string", requirement="ENV-1")
    _id_bytes(value, "device_id", requirement="ENV-1")
    return value


def check_device_key(public_key: bytes) -> None:
    """Steps 1, 2 (ENV-2): 32 bytes, canonical, not of low order."""
    primitives.check_x25519_public_key(public_key, requirement="ENV-2")


def parse_device_registration(obj: object) -> bytes:
    """Step 1, server side: the body {"x25519": b64url(32)}; returns the checked key."""
    members = wire.members(obj, ("x25519",), "device")
    key = _bytes(members, "x25519", X25519_LEN, "device", "ENV-2")
    check_device_key(key)
    return key


def device_to_wire(device: Device) -> dict[str, Any]:
    return {"device_id": device.device_id, "x25519": b64url_encode(device.public_key)}


def device_list_to_wire(user_id: str, devices: Iterable[Device]) -> dict[str, Any]:
    """Step 1 (ENV-3): the public list, sorted by device id, public keys only."""
    ordered = sorted(devices, key=lambda d: d.device_id)
    return {"user_id": user_id, "devices": [device_to_wire(d) for d in ordered]}


def parse_device_list(obj: object, *, user_id: str) -> tuple[Device, ...]:
    """Step 2, sender side: parse a user's device list and check every key (ENV-2)."""
    members = wire.members(obj, DEVICE_LIST_MEMBERS, "device list")
    if members["user_id"] != user_id:
        raise BindingError("device list is for another user", requirement="ENV-3")
    raw = members["devices"]
    if not isinstance(raw, list):
        raise DecodeError("devices must be a list", requirement="API-6")
    out: list[Device] = []
    seen: set[str] = set()
    for item in raw:
        device = wire.members(item, DEVICE_MEMBERS, "device")
        device_id = check_device_id(device["device_id"])
        if device_id in seen:
            raise DecodeError(f"device {device_id} listed twice", requirement="ENV-3")
        seen.add(device_id)
        key = _bytes(device, "x25519", X25519_LEN, "device", "ENV-2")
        check_device_key(key)
        out.append(Device(user_id=user_id, device_id=device_id, public_key=key))
    return tuple(out)


# --- steps 3 and 4: the payload, once per message -----------------------------------------

def payload_aad(message_id: bytes, sender: str) -> bytes:
    """Step 3 (ENV-4): AAD = ctx("envelope-payload", message_id, sender)."""
    return labelled_context(LABEL_PAYLOAD, message_id, _id_bytes(sender, "sender"))


def encrypt_payload(content_key: bytes, nonce: bytes, message: bytes, *, message_id: bytes,
                    sender: str) -> Payload:
    """Step 3 (ENV-4): the message encrypted once under the content key."""
    aad = payload_aad(message_id, sender)
    return Payload(nonce=nonce,
                   ciphertext=primitives.aes256gcm_encrypt(content_key, nonce, message, aad))


def ciphertext_digest(ciphertext: bytes) -> bytes:
    """Step 4 (ENV-8): SHA-256 of the payload ciphertext (tag included), computed once."""
    return primitives.sha256(ciphertext)


# --- step 5: per-recipient keys -----------------------------------------------------------

def key_info(label: str, message_id: bytes, ephemeral_public: bytes,
             device_public: bytes) -> bytes:
    """Step 5 (ENV-6): HKDF info = ctx(label, message_id, ephemeral key, device key)."""
    return labelled_context(label, message_id, ephemeral_public, device_public)


def derive_recipient_keys(shared_secret: bytes, *, message_id: bytes, ephemeral_public: bytes,
                          device_public: bytes) -> RecipientKeys:
    """Step 5 (ENV-6): one HKDF-SHA256 extract (empty salt), two labelled expands.

    Equal to two full labelled HKDF calls (KD-7); the extract is shared because it is the
    same computation. The MAC key is independent of the encryption key, so disclosing it
    (step 11) reveals nothing about the encryption key, the content key or the secret.
    """
    prk = primitives.hkdf_extract(b"", shared_secret)
    enc = primitives.hkdf_expand(
        prk, key_info(LABEL_ENCRYPTION_KEY, message_id, ephemeral_public, device_public), 32)
    mac = primitives.hkdf_expand(
        prk, key_info(LABEL_MAC_KEY, message_id, ephemeral_public, device_public), MAC_KEY_LEN)
    return RecipientKeys(shared_secret=shared_secret, prk=prk, encryption_key=enc, mac_key=mac)


def shared_secret(private_key: bytes, public_key: bytes) -> bytes:
    """Step 5 (ENV-5): checked X25519; low-order or non-canonical keys, zero secrets refused."""
    return primitives.x25519(private_key, public_key, requirement="ENV-5")


# --- step 6: wrapping the content key -----------------------------------------------------

def wrap_aad(*, message_id: bytes, sender: str, user_id: str, device_id: str,
             ephemeral_public: bytes) -> bytes:
    """Step 6 (ENV-7): AAD = ctx("envelope-wrap", message_id, sender, user, device, eph)."""
    return labelled_context(LABEL_WRAP, message_id, _id_bytes(sender, "sender"),
                            _id_bytes(user_id, "user_id"),
                            _id_bytes(device_id, "device_id", requirement="ENV-1"),
                            ephemeral_public)


def wrap_content_key(encryption_key: bytes, content_key: bytes, aad: bytes) -> bytes:
    """Step 6 (ENV-7): AES-256-GCM(k_enc, 12 zero bytes, content key, AAD): 48 bytes."""
    return primitives.aes256gcm_encrypt(encryption_key, WRAP_NONCE, content_key, aad)


def unwrap_content_key(encryption_key: bytes, wrapped_key: bytes, aad: bytes) -> bytes:
    """Step 10 (ENV-7): raises AeadError for a wrong key, a tampered wrap or header."""
    return primitives.aes256gcm_decrypt(encryption_key, WRAP_NONCE, wrapped_key, aad,
                                        requirement="ENV-7")


# --- step 7: the per-recipient MAC --------------------------------------------------------

def mac_input(*, message_id: bytes, sender: str, user_id: str, device_id: str,
              ephemeral_public: bytes, wrapped_key: bytes, payload_nonce: bytes,
              digest: bytes) -> bytes:
    """Step 7 (ENV-8): ctx("envelope-mac", message_id, sender, user, device, eph,
    wrapped_key, payload nonce, SHA-256(ciphertext)) -- O(1) in the payload size."""
    return labelled_context(LABEL_MAC, message_id, _id_bytes(sender, "sender"),
                            _id_bytes(user_id, "user_id"),
                            _id_bytes(device_id, "device_id", requirement="ENV-1"),
                            ephemeral_public, wrapped_key, payload_nonce, digest)


def compute_mac(mac_key: bytes, data: bytes) -> bytes:
    """Step 7 (ENV-8): HMAC-SHA256(k_mac, mac_input)."""
    return primitives.hmac_sha256(mac_key, data)


def verify_mac(mac_key: bytes, data: bytes, mac: bytes, *, requirement: str) -> None:
    """Steps 10, 11: constant-time comparison; MacError on mismatch."""
    if not primitives.constant_time_equal(compute_mac(mac_key, data), mac):
        raise MacError("per-recipient MAC does not verify", requirement=requirement)


# --- steps 3-7 together: sealing ----------------------------------------------------------

class _MessageContext:
    """The per-message parts of the step 5-7 contexts, computed once per envelope.

    labelled_context is prefix-extensible -- ctx(l, a, b) == ctx(l, a) || u16be(len(b)) ||
    b -- so each per-recipient context is its message prefix plus the recipient's fields.
    The result is byte-identical to key_info, wrap_aad and mac_input (the tests hold the
    two paths equal); only the repeated work of encoding the shared fields is saved.
    """

    __slots__ = ("enc_info", "mac_info", "mac_prefix", "mac_suffix", "wrap_prefix")

    def __init__(self, *, message_id: bytes, sender: str, payload_nonce: bytes,
                 digest: bytes) -> None:
        sender_bytes = _id_bytes(sender, "sender")
        self.enc_info = labelled_context(LABEL_ENCRYPTION_KEY, message_id)
        self.mac_info = labelled_context(LABEL_MAC_KEY, message_id)
        self.wrap_prefix = labelled_context(LABEL_WRAP, message_id, sender_bytes)
        self.mac_prefix = labelled_context(LABEL_MAC, message_id, sender_bytes)
        self.mac_suffix = length_prefixed(payload_nonce) + length_prefixed(digest)


def _seal_entry(context: _MessageContext, device: Device, ephemeral_private: bytes,
                content_key: bytes, keep_trace: bool) -> tuple[Entry, RecipientTrace | None]:
    """Steps 5-7 for one recipient device (ENV-5 .. ENV-8)."""
    ephemeral_public, secret = primitives.x25519_keypair_exchange(
        ephemeral_private, device.public_key, requirement="ENV-5")
    address = (length_prefixed(device.user_id.encode("ascii"))
               + length_prefixed(device.device_id.encode("ascii")))
    ephemeral_field = length_prefixed(ephemeral_public)
    key_fields = ephemeral_field + length_prefixed(device.public_key)
    prk = primitives.hkdf_extract(b"", secret)
    encryption_key = primitives.hkdf_expand(prk, context.enc_info + key_fields, 32)
    mac_key = primitives.hkdf_expand(prk, context.mac_info + key_fields, MAC_KEY_LEN)
    aad = context.wrap_prefix + address + ephemeral_field
    wrapped = primitives.aes256gcm_encrypt(encryption_key, WRAP_NONCE, content_key, aad)
    data = (context.mac_prefix + address + ephemeral_field + length_prefixed(wrapped)
            + context.mac_suffix)
    mac = primitives.hmac_sha256(mac_key, data)
    entry = Entry(user_id=device.user_id, device_id=device.device_id,
                  ephemeral_key=ephemeral_public, wrapped_key=wrapped, mac=mac)
    if not keep_trace:
        return entry, None
    keys = RecipientKeys(shared_secret=secret, prk=prk, encryption_key=encryption_key,
                         mac_key=mac_key)
    trace = RecipientTrace(device=device, ephemeral_private=ephemeral_private,
                           ephemeral_public=ephemeral_public, keys=keys, wrap_aad=aad,
                           wrapped_key=wrapped, mac_input=data, mac=mac)
    return entry, trace


def seal(message: bytes, *, sender: str, recipients: Sequence[Device], random: RandomSource,
         keep_trace: bool = False) -> Sealed:
    """Steps 3-7: encrypt once, hash once, then one entry per recipient device.

    Random bytes are drawn in this order: message id (16), content key (32), payload
    nonce (12), then one 32-byte ephemeral private key per recipient in list order.
    With keep_trace the result carries every per-recipient intermediate (for vectors);
    without it no ephemeral private key or derived key outlives the call.
    """
    _id_bytes(sender, "sender")
    _check_recipient_devices(recipients)
    message_id = random(MESSAGE_ID_LEN)
    content_key = random(CONTENT_KEY_LEN)
    nonce = random(PAYLOAD_NONCE_LEN)
    aad = payload_aad(message_id, sender)
    payload = Payload(nonce=nonce,
                      ciphertext=primitives.aes256gcm_encrypt(content_key, nonce, message, aad))
    digest = ciphertext_digest(payload.ciphertext)
    context = _MessageContext(message_id=message_id, sender=sender, payload_nonce=nonce,
                              digest=digest)
    sealed = [_seal_entry(context, device, random(X25519_LEN), content_key, keep_trace)
              for device in recipients]
    entries = tuple(entry for entry, _ in sealed)
    _check_distinct_ephemerals(e.ephemeral_key for e in entries)
    traces = tuple(trace for _, trace in sealed if trace is not None)
    envelope = Envelope(message_id=message_id, sender=sender, payload=payload, entries=entries)
    return Sealed(envelope=envelope, content_key=content_key, payload_aad=aad,
                  ciphertext_digest=digest, recipients=traces)


def _check_recipient_devices(recipients: Sequence[Device]) -> None:
    """Step 2: at least one recipient, no device twice, every key checked (ENV-2, ENV-9)."""
    if not recipients:
        raise ParamsError("an envelope needs at least one recipient", requirement="ENV-9")
    seen: set[tuple[str, str]] = set()
    for device in recipients:
        address = (device.user_id, device.device_id)
        if address in seen:
            raise DecodeError(f"recipient {address[0]}/{address[1]} listed twice",
                              requirement="ENV-9")
        seen.add(address)
        _id_bytes(device.user_id, "user_id")
        check_device_id(device.device_id)
        check_device_key(device.public_key)


def _check_distinct_ephemerals(keys: Iterable[bytes]) -> None:
    """Step 5 (ENV-9): a repeated ephemeral key means a broken random source."""
    seen: set[bytes] = set()
    for key in keys:
        if key in seen:
            raise DecodeError("an ephemeral key is repeated within the envelope",
                              requirement="ENV-9")
        seen.add(key)


# --- wire forms ---------------------------------------------------------------------------

def payload_to_wire(payload: Payload) -> dict[str, Any]:
    return {"nonce": b64url_encode(payload.nonce),
            "ciphertext": b64url_encode(payload.ciphertext)}


def entry_to_wire(entry: Entry) -> dict[str, Any]:
    return {"user_id": entry.user_id, "device_id": entry.device_id,
            "ephemeral_key": b64url_encode(entry.ephemeral_key),
            "wrapped_key": b64url_encode(entry.wrapped_key), "mac": b64url_encode(entry.mac)}


def envelope_to_wire(envelope: Envelope) -> dict[str, Any]:
    return {"message_id": b64url_encode(envelope.message_id), "sender": envelope.sender,
            "payload": payload_to_wire(envelope.payload),
            "recipients": [entry_to_wire(e) for e in envelope.entries]}


def envelope_json(envelope: Envelope) -> bytes:
    """The request body: json.dumps(envelope_to_wire(envelope), separators=(",", ":")),
    byte for byte, built without the escape scan of a 1 MiB string.

    Every string in an envelope is an identifier or base64url text, whose characters
    JSON never escapes; the identifiers are checked here so that stays true.
    """
    for name in (envelope.sender, *(x for e in envelope.entries
                                     for x in (e.user_id, e.device_id))):
        _id_bytes(name, "identifier")
    entries = ",".join(
        f'{{"user_id":"{e.user_id}","device_id":"{e.device_id}",'
        f'"ephemeral_key":"{b64url_encode(e.ephemeral_key)}",'
        f'"wrapped_key":"{b64url_encode(e.wrapped_key)}","mac":"{b64url_encode(e.mac)}"}}'
        for e in envelope.entries)
    text = (f'{{"message_id":"{b64url_encode(envelope.message_id)}",'
            f'"sender":"{envelope.sender}","payload":{{"nonce":'
            f'"{b64url_encode(envelope.payload.nonce)}","ciphertext":"'
            + b64url_encode(envelope.payload.ciphertext)
            + f'"}},"recipients":[{entries}]}}')
    return text.encode("ascii")


def delivery_to_wire(delivery: Delivery) -> dict[str, Any]:
    """The crypto members of a delivery; a server adds received_at / expires_at."""
    out: dict[str, Any] = {"message_id": b64url_encode(delivery.message_id),
                           "sender": delivery.sender,
                           "payload": payload_to_wire(delivery.payload),
                           "recipient": entry_to_wire(delivery.entry)}
    if delivery.mac_key is not None:
        out["mac_key"] = b64url_encode(delivery.mac_key)
    return out


def ack_to_wire(mac_key: bytes) -> dict[str, Any]:
    return {"mac_key": b64url_encode(mac_key)}


# --- step 8: server-side checks and fan-out -----------------------------------------------

def parse_payload(obj: object) -> Payload:
    members = wire.members(obj, PAYLOAD_MEMBERS, "payload")
    nonce = _bytes(members, "nonce", PAYLOAD_NONCE_LEN, "payload", "ENV-9")
    ciphertext = b64url_decode(wire.string(members, "ciphertext", "payload"), requirement="API-1")
    if len(ciphertext) < primitives.GCM_TAG_LEN:
        raise LengthError("payload.ciphertext is shorter than its 16-byte tag",
                          requirement="ENV-9")
    return Payload(nonce=nonce, ciphertext=ciphertext)


def parse_entry(obj: object) -> Entry:
    """Step 8/10 (ENV-9): one recipient entry, every length exact, the ephemeral key a
    canonical point of large order (ENV-5)."""
    members = wire.members(obj, ENTRY_MEMBERS, "recipient")
    user_id = wire.string(members, "user_id", "recipient")
    _id_bytes(user_id, "user_id")
    device_id = check_device_id(members["device_id"])
    ephemeral = _bytes(members, "ephemeral_key", X25519_LEN, "recipient", "ENV-9")
    wrapped = _bytes(members, "wrapped_key", WRAPPED_KEY_LEN, "recipient", "ENV-9")
    mac = _bytes(members, "mac", MAC_LEN, "recipient", "ENV-9")
    primitives.check_x25519_public_key(ephemeral, requirement="ENV-5")
    return Entry(user_id=user_id, device_id=device_id, ephemeral_key=ephemeral,
                 wrapped_key=wrapped, mac=mac)


def _parse_header(members: dict[str, Any], where: str,
                  ciphertext: bytes | None = None) -> tuple[bytes, str, Payload]:
    message_id = _bytes(members, "message_id", MESSAGE_ID_LEN, where, "ENV-9")
    sender = wire.string(members, "sender", where)
    _id_bytes(sender, "sender")
    if ciphertext is None:
        return message_id, sender, parse_payload(members["payload"])
    return message_id, sender, parse_raw_payload(members["payload"], ciphertext)


def parse_envelope(obj: object) -> Envelope:
    """Step 8 (ENV-9): decode a submitted envelope; no device or ephemeral key twice."""
    members = wire.members(obj, ENVELOPE_MEMBERS, "envelope")
    message_id, sender, payload = _parse_header(members, "envelope")
    raw = members["recipients"]
    if not isinstance(raw, list):
        raise DecodeError("envelope.recipients must be a list", requirement="API-6")
    if not raw:
        raise ParamsError("an envelope needs at least one recipient", requirement="ENV-9")
    entries = tuple(parse_entry(item) for item in raw)
    check_distinct_entries(entries)
    return Envelope(message_id=message_id, sender=sender, payload=payload, entries=entries)


def check_distinct_entries(entries: Sequence[Entry]) -> None:
    """Step 8 (ENV-9): each (user_id, device_id) and each ephemeral key appears once."""
    seen: set[tuple[str, str]] = set()
    for entry in entries:
        if entry.address in seen:
            raise DecodeError(f"recipient {entry.user_id}/{entry.device_id} listed twice",
                              requirement="ENV-9")
        seen.add(entry.address)
    _check_distinct_ephemerals(e.ephemeral_key for e in entries)


def check_limits(envelope: Envelope, limits: Limits) -> None:
    """Step 8 (ENV-17): recipient count and ciphertext size within the advertised limits."""
    if len(envelope.entries) > limits.max_recipients:
        raise ParamsError(f"{len(envelope.entries)} recipients exceed the limit of "
                          f"{limits.max_recipients}", requirement="ENV-17")
    if len(envelope.payload.ciphertext) > limits.max_ciphertext_bytes:
        raise ParamsError(f"ciphertext of {len(envelope.payload.ciphertext)} bytes exceeds "
                          f"the limit of {limits.max_ciphertext_bytes}", requirement="ENV-17")


def check_sender(envelope: Envelope, authenticated_user: str) -> None:
    """Step 8 (ENV-10): the sender member is the authenticated user, never another."""
    if envelope.sender != authenticated_user:
        raise BindingError("envelope.sender is not the authenticated user",
                           requirement="ENV-10")


def check_recipients_registered(envelope: Envelope,
                                device_key: Callable[[str, str], bytes | None]) -> None:
    """Step 8 (ENV-10): every entry addresses a registered device (device_key returns
    the registered public key, or None)."""
    for entry in envelope.entries:
        if device_key(entry.user_id, entry.device_id) is None:
            raise BindingError(f"recipient {entry.user_id}/{entry.device_id} is not a "
                               "registered device", requirement="ENV-10")


def check_message_id_unused(message_id: bytes, used: Collection[bytes]) -> None:
    """Step 8 (ENV-10): a message id is accepted once; a resubmission is a replay."""
    if message_id in used:
        raise ReplayError("message_id was already used", requirement="ENV-10")


def validate_submission(obj: object, *, sender: str, limits: Limits) -> Envelope:
    """Step 8: everything a server checks without any key (decode, length, point, params,
    binding); registration and id reuse need storage and are separate calls."""
    envelope = parse_envelope(obj)
    check_limits(envelope, limits)
    check_sender(envelope, sender)
    return envelope


def fan_out(envelope: Envelope) -> dict[tuple[str, str], Delivery]:
    """Step 8 (ENV-11): one delivery per device, each holding only that device's entry."""
    return {entry.address: Delivery(message_id=envelope.message_id, sender=envelope.sender,
                                    payload=envelope.payload, entry=entry)
            for entry in envelope.entries}


# --- step 10: the recipient opens its delivery --------------------------------------------

def parse_raw_payload(members: object, ciphertext: bytes) -> Payload:
    """Step 10 (ENV-20): a record's payload read with payload=omit -- {"nonce"} only --
    joined with the ciphertext fetched raw (ENV-19). The raw bytes are checked like the
    inline ones (at least the 16-byte tag); their integrity is the MAC's job (step 10)."""
    header = wire.members(members, PAYLOAD_HEADER_MEMBERS, "payload")
    nonce = _bytes(header, "nonce", PAYLOAD_NONCE_LEN, "payload", "ENV-9")
    if len(ciphertext) < primitives.GCM_TAG_LEN:
        raise LengthError("the raw payload is shorter than its 16-byte tag",
                          requirement="ENV-20")
    return Payload(nonce=nonce, ciphertext=bytes(ciphertext))


def parse_delivery(obj: object, *, ciphertext: bytes | None = None) -> Delivery:
    """Step 10 (ENV-9): decode a delivery record, tolerating the server's own members.

    With `ciphertext` (the payload fetched raw, ENV-19) the record must be one read with
    payload=omit: its payload carries the nonce only, and the raw bytes stand in for the
    inline ciphertext (ENV-20). Either way the result opens the same (open_delivery).
    """
    members = wire.members(obj, DELIVERY_MEMBERS, "delivery", optional=DELIVERY_SERVER_MEMBERS)
    message_id, sender, payload = _parse_header(members, "delivery", ciphertext)
    entry = parse_entry(members["recipient"])
    mac_key = None
    if "mac_key" in members:
        mac_key = _bytes(members, "mac_key", MAC_KEY_LEN, "delivery", "ENV-14")
    return Delivery(message_id=message_id, sender=sender, payload=payload, entry=entry,
                    mac_key=mac_key)


def check_addressed_to(entry: Entry, *, user_id: str, device_id: str) -> None:
    """Step 10 (ENV-13): the entry names this very device."""
    if entry.user_id != user_id or entry.device_id != device_id:
        raise BindingError("the entry is addressed to another device", requirement="ENV-13")


def open_delivery(delivery: Delivery, *, user_id: str, device_id: str,
                  device_private: bytes) -> Opened:
    """Step 10 (ENV-13): binding, derive, unwrap (aead), verify the MAC (mac), decrypt
    (aead). No plaintext is released unless every check passes."""
    entry = delivery.entry
    check_addressed_to(entry, user_id=user_id, device_id=device_id)
    device_public = primitives.x25519_public_key(device_private)
    secret = shared_secret(device_private, entry.ephemeral_key)
    keys = derive_recipient_keys(secret, message_id=delivery.message_id,
                                 ephemeral_public=entry.ephemeral_key,
                                 device_public=device_public)
    aad = wrap_aad(message_id=delivery.message_id, sender=delivery.sender, user_id=user_id,
                   device_id=device_id, ephemeral_public=entry.ephemeral_key)
    content_key = unwrap_content_key(keys.encryption_key, entry.wrapped_key, aad)
    digest = ciphertext_digest(delivery.payload.ciphertext)
    data = delivery_mac_input(delivery, digest)
    verify_mac(keys.mac_key, data, entry.mac, requirement="ENV-8")
    plaintext = primitives.aes256gcm_decrypt(content_key, delivery.payload.nonce,
                                             delivery.payload.ciphertext,
                                             payload_aad(delivery.message_id, delivery.sender),
                                             requirement="ENV-4")
    return Opened(plaintext=plaintext, content_key=content_key, keys=keys,
                  ciphertext_digest=digest, mac_input=data)


def open_envelope(envelope: Envelope, *, user_id: str, device_id: str,
                  device_private: bytes) -> Opened:
    """Step 10 on a whole envelope: find this device's entry, then open it."""
    for entry in envelope.entries:
        if entry.address == (user_id, device_id):
            delivery = Delivery(message_id=envelope.message_id, sender=envelope.sender,
                                payload=envelope.payload, entry=entry)
            return open_delivery(delivery, user_id=user_id, device_id=device_id,
                                 device_private=device_private)
    raise BindingError("the envelope has no entry for this device", requirement="ENV-13")


def check_not_acknowledged(message_id: bytes, acknowledged: Collection[bytes]) -> None:
    """Step 10 (ENV-18): a message id this device already acknowledged is a replay."""
    if message_id in acknowledged:
        raise ReplayError("message was already acknowledged", requirement="ENV-18")


# --- step 11: acknowledgement and disclosure ----------------------------------------------

def delivery_mac_input(delivery: Delivery, digest: bytes | None = None) -> bytes:
    """Step 7 applied to a stored delivery (the digest may be precomputed)."""
    entry = delivery.entry
    if digest is None:
        digest = ciphertext_digest(delivery.payload.ciphertext)
    return mac_input(message_id=delivery.message_id, sender=delivery.sender,
                     user_id=entry.user_id, device_id=entry.device_id,
                     ephemeral_public=entry.ephemeral_key, wrapped_key=entry.wrapped_key,
                     payload_nonce=delivery.payload.nonce, digest=digest)


def parse_ack(obj: object) -> bytes:
    """Step 11: the ACK body {"mac_key": b64url(32)}."""
    members = wire.members(obj, ACK_MEMBERS, "ack")
    return _bytes(members, "mac_key", MAC_KEY_LEN, "ack", "ENV-14")


def verify_disclosure(delivery: Delivery, mac_key: bytes, *,
                      digest: bytes | None = None) -> None:
    """Step 11 (ENV-14): the disclosed key must verify the stored MAC, else MacError."""
    if len(mac_key) != MAC_KEY_LEN:
        raise LengthError(f"mac_key must be {MAC_KEY_LEN} bytes", requirement="ENV-14")
    verify_mac(mac_key, delivery_mac_input(delivery, digest), delivery.entry.mac,
               requirement="ENV-14")


def disclosure_for(opened: Opened) -> bytes:
    """Step 11 (ENV-16): the one secret a recipient discloses -- its MAC key."""
    return opened.keys.mac_key


@dataclass(frozen=True)
class AckOutcome:
    """Step 11, server side: what an ACK does to a stored delivery."""

    mac_key: bytes
    changed: bool  # False for a repeated ACK: nothing to store, nothing to dequeue


def apply_ack(delivery: Delivery, mac_key: bytes, *,
              digest: bytes | None = None) -> AckOutcome:
    """Step 11 (ENV-14, ENV-15): verify a disclosure against the stored delivery.

    A first valid ACK changes the state (store the key, dequeue the message); the same
    key again changes nothing; any key that does not verify is refused with MacError and
    changes nothing either. `delivery.mac_key` is the disclosure already stored, if any.
    """
    verify_disclosure(delivery, mac_key, digest=digest)
    if delivery.mac_key is not None:
        # Only one key verifies a MAC (short of an HMAC-SHA256 collision), so a stored
        # disclosure that verified is this very key: the ACK is a repeat.
        return AckOutcome(mac_key=mac_key, changed=False)
    return AckOutcome(mac_key=mac_key, changed=True)


class Inbox:
    """Steps 10-11 on one device, as a small state machine the caller drives.

    `open(delivery)` refuses a message id already acknowledged (ENV-18), then opens the
    delivery (ENV-13) and remembers it as opened. `acknowledge(message_id)` returns the
    ACK body for an opened message only -- so nothing is disclosed before its MAC
    verified (ENV-16) -- and moves the id to the acknowledged set, which the caller
    persists (`acknowledged`) across restarts. The caller owns all I/O.
    """

    def __init__(self, *, user_id: str, device_id: str, device_private: bytes,
                 acknowledged: Iterable[bytes] = ()) -> None:
        self.user_id = user_id
        self.device_id = device_id
        self._private = device_private
        self._acknowledged: set[bytes] = set(acknowledged)
        self._opened: dict[bytes, bytes] = {}  # message id -> its MAC key (to disclose)

    @property
    def acknowledged(self) -> frozenset[bytes]:
        return frozenset(self._acknowledged)

    def open(self, delivery: Delivery) -> Opened:
        """Step 10: replay check, then open; the plaintext only if every check passed."""
        check_not_acknowledged(delivery.message_id, self._acknowledged)
        opened = open_delivery(delivery, user_id=self.user_id, device_id=self.device_id,
                               device_private=self._private)
        self._opened[delivery.message_id] = disclosure_for(opened)
        return opened

    def acknowledge(self, message_id: bytes) -> dict[str, Any]:
        """Step 11: the ACK body disclosing this message's MAC key (and nothing else).

        Asking again returns the same body, so a lost ACK can be retried (the server
        treats the repeat as a no-op, ENV-15).
        """
        mac_key = self._opened.get(message_id)
        if mac_key is None:
            raise BindingError("only a message this device opened can be acknowledged",
                               requirement="ENV-16")
        self._acknowledged.add(message_id)
        return ack_to_wire(mac_key)


# --- step 12: retention -------------------------------------------------------------------

def expires_at(received_at: int, retention_seconds: int) -> int:
    """Step 12 (ENV-17): the first second at which a record is no longer served."""
    return received_at + retention_seconds


def check_retained(received_at: int, *, now: int, retention_seconds: int) -> None:
    """Step 12 (ENV-17): ExpiredError once the retention period is over."""
    if now >= expires_at(received_at, retention_seconds):
        raise ExpiredError("the message is past its retention period", requirement="ENV-17")
