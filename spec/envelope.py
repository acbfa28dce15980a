"""Flow: envelope (multi-recipient messages and files, seeds 000 and 001 made sound).

Steps (see the envelope chapter; steps 1-2 are in envelope_devices, 3-4 in envelope_stream):
  1. Devices: the owner's signed device list (ENV-1 .. ENV-3, ENV-21).
  2. The sender verifies each recipient's list against the recipient's published key
     (ENV-22).
  3. Per message: a fresh message_id and content key K, the payload key and the
     commitment derived from K (ENV-4).
  4. The payload is encrypted once as a STREAM under the payload key (ENV-23).
  5. Per recipient device, with the header every entry binds (the entry info, ENV-6):
     suite "x25519": HPKE SealAuth to the device's X25519 key with the sender's published
     X25519 key (ENV-5); suite "mlkem768x25519": HPKE SealPSK to the device's MLKEM768-X25519
     key with a PSK from the same static-static X25519 exchange (ENV-25). The plaintext
     is K; the ciphertext is the wrapped key (ENV-7).
  6. (6 is 5's output: the entry {user_id, device_id, enc, wrapped_key}.)
  7. The sender posts the envelope: header and entries (ENV-9).
  8. The server checks it in one ordered function, accept_envelope (ENV-9, ENV-10, ENV-17,
     ENV-27), then takes the payload as raw bytes, exactly payload_length of them, durable
     before it answers (ENV-26), and fans the message out: each device's queue gets the
     header and that device's entry only (ENV-11).
  9. A device's queue and payload are served to its owner only (ENV-12, ENV-19).
  10. The recipient opens: binding, the sender's published key, HPKE open, commitment, then
      the payload chunk by chunk (ENV-13, ENV-8, ENV-20, ENV-24, ENV-28), and refuses a
      message id it already acknowledged (ENV-18).
  11. ACK: the owner acknowledges; the server dequeues, stops serving the record and the
      payload to that device (ENV-14, ENV-15), and deletes the payload once every
      addressed device acknowledged (ENV-16).
  12. Retention: records live at most retention_seconds (ENV-17).

Sender authentication is deniable by construction: the static-static X25519 term that
authenticates the sender is one the recipient can compute too, so a recipient knows who
sent a message but could have produced the same bytes itself; no signature exists.

The functions here are pure: records are plain JSON-shaped dicts, randomness is passed in.
A device's side of steps 10-11 is also a small state machine, `Inbox`.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from keyflows.spec import hpke, primitives, wire
from keyflows.spec.drbg import RandomSource, is_unrecorded
from keyflows.spec.encoding import (
    b64url_decode_exact,
    b64url_encode,
    labelled_context,
    u32be,
    u64be,
)
from keyflows.spec.envelope_devices import (
    Device,
    DevicePrivateKeys,
    PublishedKeys,
    check_device_id,
)
from keyflows.spec.envelope_stream import (
    COMMITMENT_LEN,
    CONTENT_KEY_LEN,
    MESSAGE_ID_LEN,
    ContentKeys,
    StreamOpener,
    check_commitment,
    ciphertext_length,
    content_keys,
    encrypt_payload,
    plaintext_length,
)
from keyflows.spec.errors import (
    BindingError,
    DecodeError,
    ExpiredError,
    LengthError,
    ParamsError,
    ReplayError,
)
from keyflows.spec.key_derivation import LABELS, check_identifier

SUITE_X25519 = "x25519"
SUITE_HYBRID = "mlkem768x25519"
SUITES = (SUITE_X25519, SUITE_HYBRID)
#: The HPKE algorithms of each suite (RFC 9180 registry values; 0x647a: draft-ietf-hpke-pq).
SUITE_HPKE: dict[str, dict[str, int]] = {
    SUITE_X25519: {"mode": hpke.MODE_AUTH, "kem_id": hpke.KEM_ID, "kdf_id": hpke.KDF_ID,
                   "aead_id": hpke.AEAD_ID},
    SUITE_HYBRID: {"mode": hpke.MODE_PSK, "kem_id": hpke.HYBRID_KEM_ID, "kdf_id": hpke.KDF_ID,
                   "aead_id": hpke.AEAD_ID},
}
ENC_LEN = {SUITE_X25519: hpke.N_ENC, SUITE_HYBRID: hpke.HYBRID_N_ENC}
WRAPPED_KEY_LEN = CONTENT_KEY_LEN + hpke.N_T
X25519_LEN = primitives.X25519_KEY_LEN
MAX_KEY_VERSION = 2**32 - 1
MAX_PAYLOAD_LENGTH = 2**63 - 1

LABEL_ENTRY = "envelope-entry"
LABEL_RECIPIENT = "envelope-recipient"
LABEL_SENDER_PSK = "envelope-sender-psk"
LABEL_SENDER = "envelope-sender"

HEADER_MEMBERS = ("suite", "message_id", "client_id", "sender", "sender_key_version",
                  "payload_length", "commitment")
ENVELOPE_MEMBERS = (*HEADER_MEMBERS, "recipients")
ENTRY_MEMBERS = ("user_id", "device_id", "enc", "wrapped_key")
DELIVERY_MEMBERS = (*HEADER_MEMBERS, "recipient")
# Members a server adds to a delivery record; a consumer tolerates exactly these.
DELIVERY_SERVER_MEMBERS = ("received_at", "expires_at")


def _check_labels_registered() -> None:
    """KD-7: every label this flow feeds to HKDF or HPKE is registered."""
    for label in (LABEL_ENTRY, LABEL_RECIPIENT, LABEL_SENDER_PSK, LABEL_SENDER):
        if label not in LABELS:
            raise RuntimeError(f"envelope label {label!r} is not in key_derivation.LABELS")


_check_labels_registered()


# --- records ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Header:
    """What every recipient entry binds (ENV-6): the message's public description."""

    suite: str
    message_id: bytes
    client_id: str
    sender: str
    sender_key_version: int
    payload_length: int  # ciphertext bytes of the STREAM payload
    commitment: bytes


@dataclass(frozen=True, slots=True)
class Entry:
    """One recipient device's part of an envelope."""

    user_id: str
    device_id: str
    enc: bytes
    wrapped_key: bytes

    @property
    def address(self) -> tuple[str, str]:
        return (self.user_id, self.device_id)


@dataclass(frozen=True)
class Envelope:
    """What a sender posts: the header once, one entry per recipient device."""

    header: Header
    entries: tuple[Entry, ...]


@dataclass(frozen=True)
class Delivery:
    """What one device receives: the header and its own entry only (ENV-11)."""

    header: Header
    entry: Entry


@dataclass(frozen=True)
class SenderKeys:
    """The sender's side of its keypair record for the application: the X25519 private
    key of the record at `key_version` (ENV-5)."""

    user_id: str
    client_id: str
    key_version: int
    x25519_private: bytes


@dataclass(frozen=True, slots=True)
class RecipientTrace:
    """Every intermediate of step 5 for one recipient device (for vectors)."""

    device: Device
    aad: bytes
    static_dh: bytes  # X25519(sender, device): Auth mode's second DH, or the PSK's input
    psk: bytes  # empty for suite x25519
    psk_id: bytes
    encapsulation: hpke.Encapsulation | hpke.HybridEncapsulation
    schedule: hpke.KeySchedule
    entry: Entry


@dataclass(frozen=True)
class SealedHeader:
    """Steps 3, 5: the envelope and every intermediate; the payload key seals the payload."""

    envelope: Envelope
    content_key: bytes
    keys: ContentKeys
    info: bytes
    recipients: tuple[RecipientTrace, ...]


@dataclass(frozen=True)
class Sealed:
    """A whole message sealed in memory: the envelope and its payload ciphertext."""

    header: SealedHeader
    payload: bytes

    @property
    def envelope(self) -> Envelope:
        return self.header.envelope


@dataclass(frozen=True)
class OpenedKey:
    """Step 10 up to the commitment: what a recipient derives from its entry."""

    content_key: bytes
    keys: ContentKeys
    info: bytes
    aad: bytes
    static_dh: bytes
    psk: bytes
    psk_id: bytes
    shared_secret: bytes
    schedule: hpke.KeySchedule


@dataclass(frozen=True)
class Opened:
    """Step 10 complete: the key schedule and the plaintext."""

    key: OpenedKey
    plaintext: bytes


@dataclass(frozen=True)
class Limits:
    """Server limits and suites advertised in the capabilities (ENV-17, ENV-27)."""

    max_recipients: int
    max_payload_bytes: int
    suites: tuple[str, ...] = SUITES


# --- shared checks ------------------------------------------------------------------------

def _id_bytes(value: str, field_name: str, requirement: str = "KD-2") -> bytes:
    return check_identifier(value, field_name, requirement=requirement)


def check_suite(suite: object, supported: Collection[str] = SUITES) -> str:
    """Steps 5, 8, 10 (ENV-27): one of the suites of profile v1 (and of the server)."""
    if not isinstance(suite, str):
        raise DecodeError("suite must be a string", requirement="API-6")
    if suite not in supported:
        raise ParamsError(f"suite {suite!r} is not supported here", requirement="ENV-27")
    return suite


def _counter(obj: dict[str, Any], key: str, where: str, low: int, high: int) -> int:
    value = wire.integer(obj, key, where)
    if not low <= value <= high:
        raise DecodeError(f"{where}.{key} must be in {low}..{high}", requirement="ENV-9")
    return value


# --- step 5: the per-recipient key schedule -----------------------------------------------

def header_fields(header: Header) -> tuple[bytes, ...]:
    """The header as the context fields of ENV-6, in order."""
    return (header.suite.encode("ascii"), header.message_id,
            _id_bytes(header.client_id, "client_id"), _id_bytes(header.sender, "sender"),
            u32be(header.sender_key_version), u64be(header.payload_length), header.commitment)


def entry_info(header: Header) -> bytes:
    """Step 5 (ENV-6): HPKE info = ctx("envelope-entry", suite, message_id, client_id,
    sender, u32be(sender_key_version), u64be(payload_length), commitment): the same for
    every entry of a message, so its info_hash is computed once."""
    return labelled_context(LABEL_ENTRY, *header_fields(header))


def entry_aad(user_id: str, device_id: str) -> bytes:
    """Step 5 (ENV-6): HPKE aad = ctx("envelope-recipient", user_id, device_id)."""
    return _recipient_aad(_id_bytes(user_id, "user_id"),
                          _id_bytes(device_id, "device_id", requirement="ENV-1"))


#: ctx("envelope-recipient") without its fields: the aad's prefix, the same for all.
_RECIPIENT_AAD_PREFIX = labelled_context(LABEL_RECIPIENT)


def _recipient_aad(user_id: bytes, device_id: bytes) -> bytes:
    """entry_aad of identifiers already checked (seal_header checks each recipient once):
    ctx("envelope-recipient", user_id, device_id), whose fields are identifiers of at most
    64 bytes, so each length prefix is its length as two bytes."""
    return b"".join((_RECIPIENT_AAD_PREFIX, len(user_id).to_bytes(2, "big"), user_id,
                     len(device_id).to_bytes(2, "big"), device_id))


def suite_id(suite: str) -> bytes:
    """The HPKE suite_id of the key schedule of an envelope suite."""
    return hpke.HPKE_SUITE_ID if suite == SUITE_X25519 else hpke.HYBRID_SUITE_ID


def sender_psk_id(header: Header) -> bytes:
    """Step 5 (ENV-25): psk_id = ctx("envelope-sender", client_id, sender,
    u32be(sender_key_version)) -- which published key the PSK stands for."""
    return labelled_context(LABEL_SENDER, _id_bytes(header.client_id, "client_id"),
                            _id_bytes(header.sender, "sender"), u32be(header.sender_key_version))


def sender_psk(static_dh: bytes, sender_public: bytes, device_public: bytes) -> bytes:
    """Step 5 (ENV-25): psk = HKDF-SHA256(IKM = X25519(sender, device), salt = empty,
    info = ctx("envelope-sender-psk", sender X25519 key, device X25519 key), 32)."""
    return primitives.hkdf_sha256(static_dh, b"", labelled_context(
        LABEL_SENDER_PSK, sender_public, device_public), 32)


def static_dh(private_key: bytes, public_key: bytes) -> bytes:
    """Steps 5, 10 (ENV-5, ENV-25): the checked static-static X25519 exchange."""
    return primitives.x25519(private_key, public_key, requirement="ENV-5")


# --- steps 3-6: sealing -------------------------------------------------------------------

def _check_recipients(recipients: Sequence[Device]) -> list[bytes]:
    """Step 2 (ENV-9): at least one recipient, no device twice, identifiers checked; returns
    each recipient's aad (ENV-6), built from the identifiers once they are checked. The
    keys were checked when the device list was verified (ENV-2, ENV-22); the KEMs check
    them again as they use them."""
    if not recipients:
        raise ParamsError("an envelope needs at least one recipient", requirement="ENV-9")
    seen: set[tuple[str, str]] = set()
    aads = []
    for device in recipients:
        if device.address in seen:
            raise DecodeError(f"recipient {device.user_id}/{device.device_id} listed twice",
                              requirement="ENV-9")
        seen.add(device.address)
        user_id = _id_bytes(device.user_id, "user_id")
        check_device_id(device.device_id)
        aads.append(_recipient_aad(user_id, device.device_id.encode("ascii")))
    return aads


class _MessageContext:
    """The per-message parts of step 5, computed once per envelope: the info and its hash,
    the psk_id and its hash, the key schedule's inputs that follow from them, and the
    sender's static key object."""

    def __init__(self, header: Header, sender: SenderKeys) -> None:
        self.suite = header.suite
        suite = suite_id(header.suite)
        self.info = entry_info(header)
        self.psk_id = sender_psk_id(header) if header.suite == SUITE_HYBRID else b""
        self.schedule = hpke.ScheduleContext(
            hpke.MODE_AUTH if header.suite == SUITE_X25519 else hpke.MODE_PSK,
            psk_id_hash=hpke.psk_id_hash(self.psk_id, suite),
            info_hash=hpke.info_hash(self.info, suite), suite_id=suite)
        self.sender = primitives.X25519Key(sender.x25519_private, requirement="ENV-5")


def _ephemeral_key(random: RandomSource) -> tuple[primitives.X25519Key, bytes]:
    """Step 5: the ephemeral key of an Auth-mode entry and the ikmE it came from. From a
    recorded source, DeriveKeyPair(ikmE) as RFC 9180's vectors do; from an unrecorded one,
    GenerateKeyPair (32 fresh bytes are the key), as RFC 9180 section 4.1 defines Encap."""
    drawn = random(hpke.N_SK)
    if is_unrecorded(random):
        return primitives.X25519Key(drawn), b""
    return primitives.X25519Key(hpke.derive_key_pair(drawn).private), drawn


def _seal_entry(context: _MessageContext, device: Device, aad: bytes, content_key: bytes,
                random: RandomSource) -> RecipientTrace:
    """Step 5 for one device (ENV-5, ENV-6, ENV-7, ENV-25), with its aad."""
    encapsulation: hpke.Encapsulation | hpke.HybridEncapsulation
    if context.suite == SUITE_X25519:
        ephemeral, ikm_e = _ephemeral_key(random)
        encapsulation = hpke.auth_encap_with(device.x25519, ephemeral, context.sender,
                                             ikm_e=ikm_e, requirement="ENV-5")
        dh, psk = encapsulation.dh[X25519_LEN:], b""
    else:
        peer = primitives.X25519Peer(device.x25519, requirement="ENV-25")
        encapsulation = hpke.hybrid_encap(device.hybrid_public_key, random, peer=peer,
                                          requirement="ENV-25")
        dh = context.sender.exchange(peer, requirement="ENV-5")
        psk = sender_psk(dh, context.sender.public, device.x25519)
    schedule = context.schedule.schedule(encapsulation.shared_secret, psk)
    entry = Entry(user_id=device.user_id, device_id=device.device_id, enc=encapsulation.enc,
                  wrapped_key=hpke.seal_once(schedule, aad, content_key))
    return RecipientTrace(device=device, aad=aad, static_dh=dh, psk=psk,
                          psk_id=context.psk_id, encapsulation=encapsulation,
                          schedule=schedule, entry=entry)


def seal_entry(header: Header, sender: SenderKeys, device: Device, content_key: bytes,
               random: RandomSource) -> RecipientTrace:
    """Step 5 for one device, outside seal_header: what a sender who wraps a content key
    of its choosing (a test, an attack construction) computes for an existing header."""
    return _seal_entry(_MessageContext(header, sender), device,
                       entry_aad(device.user_id, device.device_id), content_key, random)


def seal_header(*, suite: str, sender: SenderKeys, recipients: Sequence[Device],
                plaintext_length: int, random: RandomSource) -> SealedHeader:
    """Steps 3 and 5: the envelope for a payload of `plaintext_length` bytes; its payload
    key then seals the payload (envelope_stream.StreamSealer), in constant memory.

    Random bytes are drawn in this order: message_id (16), K (32), then per recipient in
    list order: ikmE (32) for suite x25519; ML-KEM's m (32) and the X25519 ephemeral
    scalar (32) for suite mlkem768x25519.
    """
    check_suite(suite)
    _id_bytes(sender.user_id, "sender")
    _id_bytes(sender.client_id, "client_id")
    aads = _check_recipients(recipients)
    message_id = random(MESSAGE_ID_LEN)
    content_key = random(CONTENT_KEY_LEN)
    keys = content_keys(content_key, message_id)
    header = Header(suite=suite, message_id=message_id, client_id=sender.client_id,
                    sender=sender.user_id, sender_key_version=sender.key_version,
                    payload_length=ciphertext_length(plaintext_length),
                    commitment=keys.commitment)
    context = _MessageContext(header, sender)
    traces = tuple(_seal_entry(context, device, aad, content_key, random)
                   for device, aad in zip(recipients, aads, strict=True))
    envelope = Envelope(header=header, entries=tuple(t.entry for t in traces))
    # _check_recipients refused a device named twice; what is left of step 8's ENV-9 for
    # a sender is an enc drawn twice, which means a broken random source.
    if len({entry.enc for entry in envelope.entries}) != len(envelope.entries):
        raise DecodeError("an enc is repeated within the envelope", requirement="ENV-9")
    return SealedHeader(envelope=envelope, content_key=content_key, keys=keys,
                        info=context.info, recipients=traces)


def seal(message: bytes, *, suite: str, sender: SenderKeys, recipients: Sequence[Device],
         random: RandomSource) -> Sealed:
    """Steps 3-6 for a message in memory: the envelope and its STREAM payload."""
    header = seal_header(suite=suite, sender=sender, recipients=recipients,
                         plaintext_length=len(message), random=random)
    return Sealed(header=header, payload=encrypt_payload(header.keys.payload_key, message))


# --- wire forms ---------------------------------------------------------------------------

def header_to_wire(header: Header) -> dict[str, Any]:
    return {"suite": header.suite, "message_id": b64url_encode(header.message_id),
            "client_id": header.client_id, "sender": header.sender,
            "sender_key_version": header.sender_key_version,
            "payload_length": header.payload_length,
            "commitment": b64url_encode(header.commitment)}


def entry_to_wire(entry: Entry) -> dict[str, Any]:
    return {"user_id": entry.user_id, "device_id": entry.device_id,
            "enc": b64url_encode(entry.enc), "wrapped_key": b64url_encode(entry.wrapped_key)}


def envelope_to_wire(envelope: Envelope) -> dict[str, Any]:
    out = header_to_wire(envelope.header)
    out["recipients"] = [entry_to_wire(e) for e in envelope.entries]
    return out


def envelope_json(envelope: Envelope) -> bytes:
    """The request body: json.dumps(envelope_to_wire(envelope), separators=(",", ":")),
    byte for byte, built without the escape scan of a large document.

    Every string in an envelope is a suite name, an identifier or base64url text, whose
    characters JSON never escapes; the identifiers are checked here so that stays true.
    """
    header = envelope.header
    check_suite(header.suite)
    for name in (header.sender, header.client_id,
                 *(x for e in envelope.entries for x in (e.user_id, e.device_id))):
        _id_bytes(name, "identifier")
    entries = ",".join(
        f'{{"user_id":"{e.user_id}","device_id":"{e.device_id}",'
        f'"enc":"{b64url_encode(e.enc)}","wrapped_key":"{b64url_encode(e.wrapped_key)}"}}'
        for e in envelope.entries)
    text = (f'{{"suite":"{header.suite}","message_id":"{b64url_encode(header.message_id)}",'
            f'"client_id":"{header.client_id}","sender":"{header.sender}",'
            f'"sender_key_version":{header.sender_key_version},'
            f'"payload_length":{header.payload_length},'
            f'"commitment":"{b64url_encode(header.commitment)}","recipients":[{entries}]}}')
    return text.encode("ascii")


def delivery_to_wire(delivery: Delivery) -> dict[str, Any]:
    """The crypto members of a delivery; a server adds received_at / expires_at."""
    out = header_to_wire(delivery.header)
    out["recipient"] = entry_to_wire(delivery.entry)
    return out


# --- parsing (every party) ----------------------------------------------------------------

def parse_header(members: dict[str, Any], where: str,
                 supported: Collection[str] = SUITES) -> Header:
    """Steps 8, 10 (ENV-9): the header members, every length exact."""
    suite = check_suite(members["suite"], supported)
    message_id = b64url_decode_exact(wire.string(members, "message_id", where), MESSAGE_ID_LEN,
                                     field="message_id", requirement="ENV-9")
    client_id = wire.string(members, "client_id", where)
    _id_bytes(client_id, "client_id")
    sender = wire.string(members, "sender", where)
    _id_bytes(sender, "sender")
    key_version = _counter(members, "sender_key_version", where, 1, MAX_KEY_VERSION)
    payload_length = _counter(members, "payload_length", where, 0, MAX_PAYLOAD_LENGTH)
    plaintext_length(payload_length, requirement="ENV-23")
    commitment = b64url_decode_exact(wire.string(members, "commitment", where), COMMITMENT_LEN,
                                     field="commitment", requirement="ENV-9")
    return Header(suite=suite, message_id=message_id, client_id=client_id, sender=sender,
                  sender_key_version=key_version, payload_length=payload_length,
                  commitment=commitment)


def parse_entry(obj: object, suite: str) -> Entry:
    """Steps 8, 10 (ENV-9): one entry; enc of the suite's length, a wrapped key of 48
    bytes; for suite x25519 the enc is a canonical point of large order (ENV-5)."""
    members = wire.members(obj, ENTRY_MEMBERS, "recipient")
    user_id = wire.string(members, "user_id", "recipient")
    _id_bytes(user_id, "user_id")
    device_id = check_device_id(members["device_id"])
    enc = b64url_decode_exact(wire.string(members, "enc", "recipient"), ENC_LEN[suite],
                              field="enc", requirement="ENV-9")
    wrapped = b64url_decode_exact(wire.string(members, "wrapped_key", "recipient"),
                                  WRAPPED_KEY_LEN, field="wrapped_key", requirement="ENV-9")
    primitives.check_x25519_public_key(enc[-X25519_LEN:], requirement="ENV-5")
    return Entry(user_id=user_id, device_id=device_id, enc=enc, wrapped_key=wrapped)


def parse_envelope(obj: object, supported: Collection[str] = SUITES) -> Envelope:
    """Step 8 (ENV-9): decode a posted envelope; no device and no enc twice."""
    members = wire.members(obj, ENVELOPE_MEMBERS, "envelope")
    header = parse_header(members, "envelope", supported)
    raw = members["recipients"]
    if not isinstance(raw, list):
        raise DecodeError("envelope.recipients must be a list", requirement="API-6")
    if not raw:
        raise ParamsError("an envelope needs at least one recipient", requirement="ENV-9")
    entries = tuple(parse_entry(item, header.suite) for item in raw)
    check_distinct_entries(entries)
    return Envelope(header=header, entries=entries)


def check_distinct_entries(entries: Sequence[Entry]) -> None:
    """Step 8 (ENV-9): each (user_id, device_id) and each enc appears once (a repeated
    enc means a broken random source)."""
    addresses: set[tuple[str, str]] = set()
    encs: set[bytes] = set()
    for entry in entries:
        if entry.address in addresses:
            raise DecodeError(f"recipient {entry.user_id}/{entry.device_id} listed twice",
                              requirement="ENV-9")
        if entry.enc in encs:
            raise DecodeError("an enc is repeated within the envelope", requirement="ENV-9")
        addresses.add(entry.address)
        encs.add(entry.enc)


def parse_delivery(obj: object) -> Delivery:
    """Step 10 (ENV-9): decode a delivery record, tolerating the server's own members."""
    members = wire.members(obj, DELIVERY_MEMBERS, "delivery", optional=DELIVERY_SERVER_MEMBERS)
    header = parse_header(members, "delivery")
    return Delivery(header=header, entry=parse_entry(members["recipient"], header.suite))


# --- step 8: the server's ordered checks and the fan-out ----------------------------------

class Directory(Protocol):
    """What the server's storage answers for step 8, inside the transaction that stores."""

    def published_key_version(self, user_id: str, client_id: str) -> int | None:
        """The key_version of the user's keypair record for the application, if any."""

    def has_device(self, user_id: str, client_id: str, device_id: str) -> bool:
        """Whether the device is on the user's current signed device list."""

    def message_id_used(self, message_id: bytes) -> bool:
        """Whether an envelope with this message_id was ever accepted."""


def check_limits(envelope: Envelope, limits: Limits) -> None:
    """Step 8 (ENV-17): recipient count and payload length within the advertised limits."""
    if len(envelope.entries) > limits.max_recipients:
        raise ParamsError(f"{len(envelope.entries)} recipients exceed the limit of "
                          f"{limits.max_recipients}", requirement="ENV-17")
    if envelope.header.payload_length > limits.max_payload_bytes:
        raise ParamsError(f"a payload of {envelope.header.payload_length} bytes exceeds the "
                          f"limit of {limits.max_payload_bytes}", requirement="ENV-17")


def check_sender(header: Header, *, authenticated_user: str, client_id: str,
                 directory: Directory) -> None:
    """Step 8 (ENV-10): the sender is the authenticated user, the envelope is for the
    addressed application, and it names the sender's current published key."""
    if header.sender != authenticated_user:
        raise BindingError("envelope.sender is not the authenticated user",
                           requirement="ENV-10")
    if header.client_id != client_id:
        raise BindingError("envelope.client_id is not the addressed application",
                           requirement="ENV-10")
    current = directory.published_key_version(header.sender, header.client_id)
    if current != header.sender_key_version:
        raise BindingError(f"sender_key_version {header.sender_key_version} is not the "
                           "sender's current published key", requirement="ENV-10")


def check_recipients_registered(envelope: Envelope, directory: Directory) -> None:
    """Step 8 (ENV-10): every entry addresses a device on its owner's current list."""
    client_id = envelope.header.client_id
    for entry in envelope.entries:
        if not directory.has_device(entry.user_id, client_id, entry.device_id):
            raise BindingError(f"recipient {entry.user_id}/{entry.device_id} is not on the "
                               "owner's device list", requirement="ENV-10")


def check_message_id_unused(message_id: bytes, directory: Directory) -> None:
    """Step 8 (ENV-10): a message id is accepted once; a resubmission is a replay."""
    if directory.message_id_used(message_id):
        raise ReplayError("message_id was already used", requirement="ENV-10")


def accept_envelope(obj: object, *, authenticated_user: str, client_id: str, limits: Limits,
                    directory: Directory) -> Envelope:
    """Step 8, the server's decision on a posted envelope, in this order:

    1. decode: shape, base64url, lengths, points, the suite among the server's
       (decode, length, point, params: ENV-9, ENV-27);
    2. limits: recipients and payload length (params, status 413: ENV-17);
    3. the sender: the authenticated user, the addressed application, its current key
       (binding: ENV-10);
    4. every entry addresses a device on its owner's signed list (binding: ENV-10);
    5. the message id was never accepted (replay, status 409: ENV-10).

    The caller runs this inside the transaction that stores the envelope.
    """
    envelope = parse_envelope(obj, limits.suites)
    check_limits(envelope, limits)
    check_sender(envelope.header, authenticated_user=authenticated_user, client_id=client_id,
                 directory=directory)
    check_recipients_registered(envelope, directory)
    check_message_id_unused(envelope.header.message_id, directory)
    return envelope


def fan_out(envelope: Envelope) -> dict[tuple[str, str], Delivery]:
    """Step 8 (ENV-11): one delivery per device, each holding only that device's entry."""
    return {entry.address: Delivery(header=envelope.header, entry=entry)
            for entry in envelope.entries}


def check_payload_upload(header: Header, received: int, *, complete: bool) -> None:
    """Step 8 (ENV-26): the raw payload is exactly payload_length bytes (length): more is
    refused as soon as it arrives, less when the body ends."""
    if received > header.payload_length:
        raise LengthError(f"the payload is longer than the declared {header.payload_length} "
                          "bytes", requirement="ENV-26")
    if complete and received != header.payload_length:
        raise LengthError(f"the payload has {received} bytes, the envelope declared "
                          f"{header.payload_length}", requirement="ENV-26")


# --- step 10: the recipient opens its delivery --------------------------------------------

def check_addressed_to(entry: Entry, *, user_id: str, device_id: str) -> None:
    """Step 10 (ENV-13): the entry names this very device."""
    if entry.user_id != user_id or entry.device_id != device_id:
        raise BindingError("the entry is addressed to another device", requirement="ENV-13")


def check_sender_key(header: Header, sender: PublishedKeys) -> None:
    """Step 10 (ENV-28): the sender key the recipient resolved itself -- the sender's
    keypair record for the application at the envelope's sender_key_version -- is the one
    the header names; the envelope never carries a key of its own."""
    if ((sender.user_id, sender.client_id, sender.key_version)
            != (header.sender, header.client_id, header.sender_key_version)):
        raise BindingError("the resolved sender key is not the one the envelope names",
                           requirement="ENV-28")


def open_key(delivery: Delivery, *, user_id: str, device_id: str, device: DevicePrivateKeys,
             sender: PublishedKeys) -> OpenedKey:
    """Step 10 (ENV-13) up to the payload: binding, the sender's key, HPKE open with the
    static-static term (point, aead: ENV-7), then the commitment (mac: ENV-8)."""
    header, entry = delivery.header, delivery.entry
    check_addressed_to(entry, user_id=user_id, device_id=device_id)
    check_sender_key(header, sender)
    info = entry_info(header)
    aad = entry_aad(user_id, device_id)
    if header.suite == SUITE_X25519:
        opened = hpke.open_auth(entry.enc, device.x25519, info, aad, entry.wrapped_key,
                                sender_public=sender.x25519, requirement="ENV-7")
        dh, psk, psk_id = opened.decapsulation.dh[X25519_LEN:], b"", b""
        shared, schedule, content_key = (opened.decapsulation.shared_secret, opened.schedule,
                                         opened.plaintext)
    else:
        # One key object gives the device's public key and the static DH (ENV-5, ENV-25).
        device_key = primitives.X25519Key(device.x25519, requirement="ENV-5")
        dh = device_key.exchange(sender.x25519, requirement="ENV-5")
        psk = sender_psk(dh, sender.x25519, device_key.public)
        psk_id = sender_psk_id(header)
        private = hpke.HybridPrivateKey(mlkem_seed=device.mlkem_seed, x25519=device.x25519)
        hybrid = hpke.open_hybrid(entry.enc, private, info, aad, entry.wrapped_key,
                                  psk=psk, psk_id=psk_id, requirement="ENV-7")
        shared, schedule, content_key = (hybrid.decapsulation.shared_secret, hybrid.schedule,
                                         hybrid.plaintext)
    keys = check_commitment(content_key, header.message_id, header.commitment)
    return OpenedKey(content_key=content_key, keys=keys, info=info, aad=aad, static_dh=dh,
                     psk=psk, psk_id=psk_id, shared_secret=shared, schedule=schedule)


def payload_opener(key: OpenedKey, header: Header) -> StreamOpener:
    """Step 10 (ENV-20, ENV-24): the state machine that opens the raw payload chunk by
    chunk, knowing its declared length."""
    return StreamOpener(key.keys.payload_key, header.payload_length)


def open_delivery(delivery: Delivery, payload: bytes, *, user_id: str, device_id: str,
                  device: DevicePrivateKeys, sender: PublishedKeys) -> Opened:
    """Step 10 for a payload in memory: the key, then every chunk, then the end."""
    key = open_key(delivery, user_id=user_id, device_id=device_id, device=device,
                   sender=sender)
    opener = payload_opener(key, delivery.header)
    plaintext = b"".join(opener.update(payload))
    opener.finish()
    return Opened(key=key, plaintext=plaintext)


def check_not_acknowledged(message_id: bytes, acknowledged: Collection[bytes]) -> None:
    """Step 10 (ENV-18): a message id this device already acknowledged is a replay."""
    if message_id in acknowledged:
        raise ReplayError("message was already acknowledged", requirement="ENV-18")


@dataclass
class Inbox:
    """Steps 10-11 on one device, as a small state machine the caller drives.

    `open(delivery, payload)` refuses a message id already acknowledged (ENV-18), then
    opens it (ENV-13) and remembers it; `acknowledge(message_id)` is allowed for an opened
    message only and moves its id to the acknowledged set, which the caller persists
    across restarts. The caller owns all I/O, and resolves the sender's published key.
    """

    user_id: str
    device_id: str
    device: DevicePrivateKeys
    acknowledged: set[bytes] = field(default_factory=set)
    _opened: set[bytes] = field(default_factory=set)

    def open(self, delivery: Delivery, payload: bytes, *, sender: PublishedKeys) -> Opened:
        check_not_acknowledged(delivery.header.message_id, self.acknowledged)
        opened = open_delivery(delivery, payload, user_id=self.user_id,
                               device_id=self.device_id, device=self.device, sender=sender)
        self._opened.add(delivery.header.message_id)
        return opened

    def acknowledge(self, message_id: bytes) -> None:
        """Step 11: the device may ACK what it opened; a retried ACK is harmless."""
        if message_id not in self._opened and message_id not in self.acknowledged:
            raise BindingError("only a message this device opened can be acknowledged",
                               requirement="ENV-14")
        self.acknowledged.add(message_id)


# --- step 11: acknowledgement -------------------------------------------------------------

@dataclass(frozen=True)
class AckOutcome:
    """Step 11, server side: what an ACK does (ENV-14, ENV-15, ENV-16)."""

    changed: bool  # False for a repeated ACK: nothing to do
    delete_payload: bool  # True when this ACK was the last addressed device's


def apply_ack(*, already_acknowledged: bool, unacknowledged_devices: int) -> AckOutcome:
    """Step 11: a first ACK dequeues (the record and payload stop being served to that
    device); a repeat changes nothing; the payload goes once no addressed device is left
    unacknowledged. `unacknowledged_devices` counts them before this ACK."""
    if already_acknowledged:
        return AckOutcome(changed=False, delete_payload=unacknowledged_devices == 0)
    return AckOutcome(changed=True, delete_payload=unacknowledged_devices <= 1)


# --- step 12: retention -------------------------------------------------------------------

MIN_RETENTION_SECONDS = 1
MAX_RETENTION_SECONDS = 366 * 86400
"""The range of retention_seconds a server may advertise (ENV-17): a message may be kept
from one second (test servers) to a leap year."""


def expires_at(received_at: int, retention_seconds: int) -> int:
    """Step 12 (ENV-17): the first second at which a record is no longer served."""
    return received_at + retention_seconds


def check_retained(received_at: int, *, now: int, retention_seconds: int) -> None:
    """Step 12 (ENV-17): ExpiredError once the retention period is over."""
    if now >= expires_at(received_at, retention_seconds):
        raise ExpiredError("the message is past its retention period", requirement="ENV-17")

