"""Flow: envelope, steps 1 and 2 -- devices and signed device lists.

Steps (see the envelope chapter):
  1. A user's devices for an application (user_id, client_id) form one device list: each
     device an id (ENV-1) and two public keys, X25519 and ML-KEM-768 (ENV-2). The owner
     signs every version of the list with the Ed25519 key of its keypair record for that
     application (ENV-21); registering or removing a device is publishing the next version.
     The server accepts a version only from the owner, only if it is signed by the owner's
     current published key, numbered one above the stored one, and changes no device's
     keys; it serves the signed list, unchanged, to anyone (ENV-3).
  2. A sender verifies a recipient's device list against the recipient's published
     Ed25519 key before encrypting to any device on it, and refuses a version older than
     one it has seen (ENV-22): a device the owner did not sign -- a ghost device added by
     the server -- never receives a content key.

Canonical bytes (what the signature covers, and what a key directory commits to)::

    tbs = labelled_context("envelope-device-list", user_id, client_id, u32be(key_version),
                           u64be(version), u32be(n), then for each device in device_id
                           order: device_id, x25519 (32 bytes), mlkem768 (1184 bytes))
    signed bytes = tbs || signature (64 bytes)

The functions here are pure: a list is a plain record, keys are bytes, nothing is stored.
"""

from __future__ import annotations

import enum
import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, cast

from keyflows.spec import keypair_publication, mlkem, primitives, wire
from keyflows.spec.encoding import (
    b64url_decode_exact,
    b64url_encode,
    labelled_context,
    u32be,
    u64be,
)
from keyflows.spec.errors import (
    BindingError,
    DecodeError,
    LinkError,
    ParamsError,
    ReplayError,
)
from keyflows.spec.key_derivation import LABELS, check_identifier

LABEL_DEVICE_LIST = "envelope-device-list"
X25519_LEN = primitives.X25519_KEY_LEN
MLKEM768_LEN = mlkem.ENCAPSULATION_KEY_LEN
SIGNATURE_LEN = 64
DEVICE_ID_RANDOM_LEN = 16
MAX_KEY_VERSION = 2**32 - 1
MAX_LIST_VERSION = 2**63 - 1

DEVICE_MEMBERS = ("device_id", "x25519", "mlkem768")
DEVICE_LIST_MEMBERS = ("user_id", "client_id", "key_version", "version", "devices", "signature")

if LABEL_DEVICE_LIST not in LABELS:  # KD-7: every label is registered
    raise RuntimeError(f"label {LABEL_DEVICE_LIST!r} is not in key_derivation.LABELS")


@dataclass(frozen=True)
class Device:
    """A recipient device as its owner's signed list names it."""

    user_id: str
    device_id: str
    x25519: bytes
    mlkem768: bytes

    @property
    def address(self) -> tuple[str, str]:
        return (self.user_id, self.device_id)

    @property
    def hybrid_public_key(self) -> bytes:
        """The MLKEM768-X25519 public key ek_PQ || ek_T of the hybrid suite."""
        return self.mlkem768 + self.x25519


@dataclass(frozen=True)
class DevicePrivateKeys:
    """What a device keeps: its X25519 scalar and its 64-byte ML-KEM seed d || z."""

    x25519: bytes
    mlkem_seed: bytes


@dataclass(frozen=True)
class PublishedKeys:
    """The public keys of a user's keypair record for an application, at its current
    key_version (keypair-publication flow): its Ed25519 key signs the user's device list
    (ENV-21), its X25519 key authenticates the user as a sender (ENV-5, ENV-28)."""

    user_id: str
    client_id: str
    key_version: int
    x25519: bytes
    ed25519: bytes


def published_keys_of(public_view: object, *, user_id: str, client_id: str) -> PublishedKeys:
    """The keys of a public keypair view, checked as keypair-publication requires (the
    binding signature, the points): the one place the envelope flow reads that record."""
    record = keypair_publication.validate_public_view(public_view, user_id=user_id,
                                                      client_id=client_id)
    return PublishedKeys(user_id=user_id, client_id=client_id, key_version=record.key_version,
                         x25519=record.public_keys.x25519, ed25519=record.public_keys.ed25519)


@dataclass(frozen=True)
class DeviceList:
    """One signed version of a user's device list for one application."""

    user_id: str
    client_id: str
    key_version: int
    version: int
    devices: tuple[Device, ...]
    signature: bytes


# --- step 1: device ids and keys -----------------------------------------------------------

def new_device_id(random: Any) -> str:
    """Step 1 (ENV-1): a fresh device id, base64url of 16 random bytes (drawn by the owner)."""
    return b64url_encode(random(DEVICE_ID_RANDOM_LEN))


def check_device_id(value: object) -> str:
    """Step 1 (ENV-1): device ids follow the identifier syntax (check_identifier refuses a
    non-string too)."""
    check_identifier(value, "device_id", requirement="ENV-1")
    return cast(str, value)


def check_device_keys(x25519: bytes, mlkem768: bytes) -> None:
    """Steps 1, 2 (ENV-2): the X25519 key canonical and not of low order (point); the
    ML-KEM key 1184 bytes (length) passing FIPS 203's modulus check (point)."""
    primitives.check_x25519_public_key(x25519, requirement="ENV-2")
    mlkem.check_encapsulation_key(mlkem768, requirement="ENV-2")


def device_keys(private: DevicePrivateKeys) -> tuple[bytes, bytes]:
    """The (x25519, mlkem768) public keys of a device's private keys."""
    return (primitives.x25519_public_key(private.x25519),
            mlkem.public_key_from_seed(private.mlkem_seed))


def generate_device_keys(random: Any) -> DevicePrivateKeys:
    """Step 1: a device draws its X25519 scalar (32 bytes), then its ML-KEM seed (64)."""
    return DevicePrivateKeys(x25519=random(X25519_LEN), mlkem_seed=random(mlkem.PRIVATE_SEED_LEN))


# --- step 1: the signed list ---------------------------------------------------------------

def _ordered(devices: Iterable[Device]) -> tuple[Device, ...]:
    return tuple(sorted(devices, key=lambda d: d.device_id))


def device_list_tbs(*, user_id: str, client_id: str, key_version: int, version: int,
                    devices: Sequence[Device]) -> bytes:
    """Step 1 (ENV-21): the bytes the owner signs; devices in device_id order."""
    check_identifier(user_id, "user_id")
    check_identifier(client_id, "client_id")
    _check_counter(key_version, 1, MAX_KEY_VERSION, "key_version")
    _check_counter(version, 1, MAX_LIST_VERSION, "version")
    fields: list[bytes] = [user_id.encode("ascii"), client_id.encode("ascii"),
                           u32be(key_version), u64be(version), u32be(len(devices))]
    for device in _ordered(devices):
        fields += [device.device_id.encode("ascii"), device.x25519, device.mlkem768]
    return labelled_context(LABEL_DEVICE_LIST, *fields)


def sign_device_list(*, owner_seed: bytes, user_id: str, client_id: str, key_version: int,
                     version: int, devices: Iterable[Device]) -> DeviceList:
    """Step 1 (ENV-21): the owner signs a version of its list with its Ed25519 key."""
    ordered = _ordered(devices)
    tbs = device_list_tbs(user_id=user_id, client_id=client_id, key_version=key_version,
                          version=version, devices=ordered)
    return DeviceList(user_id=user_id, client_id=client_id, key_version=key_version,
                      version=version, devices=ordered,
                      signature=primitives.ed25519_sign(owner_seed, tbs))


def tbs_of(device_list: DeviceList) -> bytes:
    return device_list_tbs(user_id=device_list.user_id, client_id=device_list.client_id,
                           key_version=device_list.key_version, version=device_list.version,
                           devices=device_list.devices)


def device_list_signed_bytes(device_list: DeviceList) -> bytes:
    """The canonical bytes of a signed list: tbs || signature (a directory's leaf value)."""
    return tbs_of(device_list) + device_list.signature


def device_to_wire(device: Device) -> dict[str, Any]:
    return {"device_id": device.device_id, "x25519": b64url_encode(device.x25519),
            "mlkem768": b64url_encode(device.mlkem768)}


def device_list_to_wire(device_list: DeviceList) -> dict[str, Any]:
    return {"user_id": device_list.user_id, "client_id": device_list.client_id,
            "key_version": device_list.key_version, "version": device_list.version,
            "devices": [device_to_wire(d) for d in device_list.devices],
            "signature": b64url_encode(device_list.signature)}


def _check_counter(value: object, low: int, high: int, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise DecodeError(f"{what} must be an integer in {low}..{high}", requirement="ENV-21")
    return value


def parse_device(obj: object, user_id: str) -> Device:
    """Steps 1, 2: one device of a list; ids and keys checked (ENV-1, ENV-2)."""
    members = wire.members(obj, DEVICE_MEMBERS, "device")
    device_id = check_device_id(members["device_id"])
    x25519 = b64url_decode_exact(wire.string(members, "x25519", "device"), X25519_LEN,
                                 field="x25519", requirement="ENV-2")
    mlkem768 = b64url_decode_exact(wire.string(members, "mlkem768", "device"), MLKEM768_LEN,
                                   field="mlkem768", requirement="ENV-2")
    check_device_keys(x25519, mlkem768)
    return Device(user_id=user_id, device_id=device_id, x25519=x25519, mlkem768=mlkem768)


def parse_device_list(obj: object) -> DeviceList:
    """Steps 1, 2: decode a signed list (decode, length, point). Devices must be listed in
    strictly increasing device_id order, so each id appears once and the list has one
    encoding (ENV-1)."""
    members = wire.members(obj, DEVICE_LIST_MEMBERS, "device list")
    user_id = wire.string(members, "user_id", "device list")
    client_id = wire.string(members, "client_id", "device list")
    check_identifier(user_id, "user_id")
    check_identifier(client_id, "client_id")
    key_version = _check_counter(members["key_version"], 1, MAX_KEY_VERSION, "key_version")
    version = _check_counter(members["version"], 1, MAX_LIST_VERSION, "version")
    raw = members["devices"]
    if not isinstance(raw, list):
        raise DecodeError("devices must be a list", requirement="API-6")
    devices = tuple(parse_device(item, user_id) for item in raw)
    for before, after in itertools.pairwise(devices):
        if not before.device_id < after.device_id:
            raise DecodeError("devices must be in strictly increasing device_id order",
                              requirement="ENV-1")
    signature = b64url_decode_exact(wire.string(members, "signature", "device list"),
                                    SIGNATURE_LEN, field="signature", requirement="ENV-21")
    return DeviceList(user_id=user_id, client_id=client_id, key_version=key_version,
                      version=version, devices=devices, signature=signature)


# --- step 2: the sender verifies -----------------------------------------------------------

def check_list_signature(device_list: DeviceList, owner: PublishedKeys, *,
                         requirement: str) -> None:
    """Steps 1, 2 (ENV-21, ENV-22): the list is the owner's, for this application, signed
    by the owner's current published key (binding), and the signature verifies (signature)."""
    if (device_list.user_id, device_list.client_id) != (owner.user_id, owner.client_id):
        raise BindingError("the device list is for another user or application",
                           requirement=requirement)
    if device_list.key_version != owner.key_version:
        raise BindingError(f"the device list is signed by key_version "
                           f"{device_list.key_version}, the owner's published key is "
                           f"{owner.key_version}", requirement=requirement)
    primitives.ed25519_verify(owner.ed25519, tbs_of(device_list), device_list.signature,
                              requirement=requirement)


def verify_device_list(obj: object, owner: PublishedKeys, *, seen_version: int = 0
                       ) -> DeviceList:
    """Step 2 (ENV-22): everything a sender checks before it encrypts to a device: the
    encoding and keys (ENV-1, ENV-2), the owner and key version (binding), the signature
    (signature), and that the version is not older than one it has seen (replay)."""
    device_list = parse_device_list(obj)
    check_list_signature(device_list, owner, requirement="ENV-22")
    if device_list.version < seen_version:
        raise ReplayError(f"device list version {device_list.version} is older than version "
                          f"{seen_version} already seen", requirement="ENV-22")
    return device_list


# --- step 1: the server decides on a new version -------------------------------------------

class DeviceListOutcome(enum.Enum):
    """Step 1, server side: what a submitted version does to the stored list."""

    CREATED = "created"  # the first version: store it (201)
    UPDATED = "updated"  # the next version: store it, drop removed devices' queues (200)
    UNCHANGED = "unchanged"  # the stored version again, byte for byte: nothing to do (200)


@dataclass(frozen=True)
class DeviceListDecision:
    outcome: DeviceListOutcome
    device_list: DeviceList
    added: tuple[str, ...]
    removed: tuple[str, ...]


def decide_device_list(obj: object, *, current: DeviceList | None, owner: PublishedKeys | None,
                       max_devices: int) -> DeviceListDecision:
    """Step 1 (ENV-3), the server's decision on a submitted list, in this order:

    1. decode, ids and keys (decode, length, point: ENV-1, ENV-2);
    2. at most max_devices devices (params, ENV-3);
    3. the owner has a published keypair for the application, and the list names it and
       its current key_version (binding, ENV-21); the signature verifies (signature);
    4. the stored version again is UNCHANGED; an older or equal other version is a replay
       (replay); anything but stored + 1 (or 1 for a first list) is a gap (link);
    5. a device kept from the stored version keeps its keys (binding, ENV-3).
    """
    device_list = parse_device_list(obj)
    if len(device_list.devices) > max_devices:
        raise ParamsError(f"{len(device_list.devices)} devices exceed the limit of "
                          f"{max_devices}", requirement="ENV-3")
    if owner is None:
        raise BindingError("the owner has no published keypair for this application",
                           requirement="ENV-21")
    check_list_signature(device_list, owner, requirement="ENV-21")
    if current is not None and device_list == current:
        return DeviceListDecision(DeviceListOutcome.UNCHANGED, device_list, (), ())
    stored_version = 0 if current is None else current.version
    if device_list.version <= stored_version:
        raise ReplayError(f"device list version {device_list.version} is not above the stored "
                          f"version {stored_version}", requirement="ENV-3")
    if device_list.version != stored_version + 1:
        raise LinkError(f"device list version {device_list.version} skips versions after "
                        f"{stored_version}", requirement="ENV-3")
    before = {} if current is None else {d.device_id: d for d in current.devices}
    after = {d.device_id: d for d in device_list.devices}
    for device_id, device in after.items():
        kept = before.get(device_id)
        if kept is not None and (kept.x25519, kept.mlkem768) != (device.x25519, device.mlkem768):
            raise BindingError(f"device {device_id} is registered with other keys; remove it "
                               "first", requirement="ENV-3")
    outcome = DeviceListOutcome.CREATED if current is None else DeviceListOutcome.UPDATED
    return DeviceListDecision(outcome, device_list,
                              added=tuple(sorted(set(after) - set(before))),
                              removed=tuple(sorted(set(before) - set(after))))


def find_device(device_list: DeviceList, device_id: str) -> Device | None:
    for device in device_list.devices:
        if device.device_id == device_id:
            return device
    return None
