"""Shared material of the envelope vectors: identities, devices, and the wire surgery
the mutation families use (vectors/envelope.py is the file's generator)."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

from keyflows.spec import envelope as E
from keyflows.spec import envelope_devices as D
from keyflows.spec import envelope_stream as S
from keyflows.spec import primitives
from keyflows.spec.drbg import Drbg
from keyflows.spec.encoding import b64url_decode, b64url_encode
from keyflows.vectors.framework import Failure, hx

FLOW = "envelope"
CLIENT = "chat"

OP_SEAL = "seal"
OP_OPEN = "open"
OP_STREAM = "stream"
OP_ACCEPT = "accept-envelope"
OP_UPLOAD = "upload-payload"
OP_ACK = "acknowledge"
OP_VERIFY_LIST = "verify-device-list"
OP_UPDATE_LIST = "update-device-list"

STEP_LIST_SERVER = "1"
STEP_LIST_SENDER = "2"
STEP_SERVER = "8"
STEP_OPEN = "10"

LIMITS = E.Limits(max_recipients=8, max_payload_bytes=1 << 20)
MAX_DEVICES = 4



# --- identities and devices ---------------------------------------------------------------

@dataclass(frozen=True)
class User:
    name: str
    x25519_private: bytes
    ed25519_seed: bytes

    @property
    def published(self) -> D.PublishedKeys:
        return D.PublishedKeys(user_id=self.name, client_id=CLIENT, key_version=1,
                               x25519=primitives.x25519_public_key(self.x25519_private),
                               ed25519=primitives.ed25519_public_key(self.ed25519_seed))

    @property
    def sender(self) -> E.SenderKeys:
        return E.SenderKeys(user_id=self.name, client_id=CLIENT, key_version=1,
                            x25519_private=self.x25519_private)


@cache
def user(name: str) -> User:
    draw = Drbg(f"{FLOW}/v1/users/{name}")
    return User(name=name, x25519_private=draw(32), ed25519_seed=draw(32))


@cache
def device_private(user_id: str, device_id: str) -> D.DevicePrivateKeys:
    return D.generate_device_keys(Drbg(f"{FLOW}/v1/devices/{user_id}/{device_id}"))


@cache
def device(user_id: str, device_id: str) -> D.Device:
    x25519, mlkem768 = D.device_keys(device_private(user_id, device_id))
    return D.Device(user_id=user_id, device_id=device_id, x25519=x25519, mlkem768=mlkem768)


def device_private_to_plain(keys: D.DevicePrivateKeys) -> dict[str, Any]:
    return {"x25519": keys.x25519, "mlkem_seed": keys.mlkem_seed}


def published_to_plain(keys: D.PublishedKeys) -> dict[str, Any]:
    return {"user_id": keys.user_id, "client_id": keys.client_id,
            "key_version": keys.key_version, "x25519": keys.x25519, "ed25519": keys.ed25519}


def published_from_case(obj: Mapping[str, Any]) -> D.PublishedKeys:
    return D.PublishedKeys(user_id=obj["user_id"], client_id=obj["client_id"],
                           key_version=obj["key_version"], x25519=hx(obj["x25519"], "x25519"),
                           ed25519=hx(obj["ed25519"], "ed25519"))



def chunk_nonces(plaintext_len: int) -> list[bytes]:
    count = S.chunk_count(plaintext_len)
    return [S.chunk_nonce(i, i == count - 1) for i in range(count)]



def device_plain(d: D.Device) -> dict[str, Any]:
    return {"user_id": d.user_id, "device_id": d.device_id, "x25519": d.x25519,
            "mlkem768": d.mlkem768}



def device_from_case(obj: Mapping[str, Any]) -> D.Device:
    return D.Device(user_id=obj["user_id"], device_id=obj["device_id"],
                    x25519=hx(obj["x25519"], "x25519"), mlkem768=hx(obj["mlkem768"], "mlkem768"))



# --- wire surgery -------------------------------------------------------------------------

Path = tuple[str | int, ...]


def _parent(record: Any, path: Path) -> Any:
    node = record
    for key in path[:-1]:
        node = node[key]
    return node


def member_at(record: Any, path: Path) -> Any:
    return _parent(record, path)[path[-1]]


def with_member(record: Any, path: Path, value: Any) -> Any:
    out = copy.deepcopy(record)
    _parent(out, path)[path[-1]] = value
    return out


def without_member(record: Any, path: Path) -> Any:
    out = copy.deepcopy(record)
    del _parent(out, path)[path[-1]]
    return out


def flip(data: bytes, index: int, bit: int = 0) -> bytes:
    out = bytearray(data)
    out[index] ^= 1 << bit
    return bytes(out)


def flip_field(record: Any, path: Path, index: int, bit: int = 0) -> Any:
    data = flip(b64url_decode(member_at(record, path)), index, bit)
    return with_member(record, path, b64url_encode(data))


def resize_field(record: Any, path: Path, size: int) -> Any:
    data = b64url_decode(member_at(record, path))
    data = data[:size] if size <= len(data) else data + bytes(size - len(data))
    return with_member(record, path, b64url_encode(data))


def replace_tail(record: Any, path: Path, tail: bytes) -> Any:
    data = b64url_decode(member_at(record, path))
    return with_member(record, path, b64url_encode(data[:len(data) - len(tail)] + tail))


def u(value: int) -> bytes:
    return value.to_bytes(32, "little")


LOW_ORDER = u(1)  # u = 1, a point of order 4
ORDER_EIGHT = u(325606250916557431795983626356110631294008115727848805560023387167927233504)
NON_CANONICAL = u(primitives.X25519_P + 9)  # u >= p: the base point's non-canonical twin

ENC: Path = ("recipient", "enc")
WRAP: Path = ("recipient", "wrapped_key")


def fails(cls: str, step: str) -> Failure:
    return Failure(cls, step)
