"""Routes of the envelope flow (ENV-1 .. ENV-20).

  GET    /v1/users/{user_id}/devices                          anyone: device ids and keys
  POST   /v1/users/{user_id}/devices                          owner: register, id assigned
  PUT    /v1/users/{user_id}/devices/{device_id}              owner: register under an id
  DELETE /v1/users/{user_id}/devices/{device_id}              owner: remove, with its queue
  POST   /v1/users/{user_id}/messages                         sender: post an envelope
  GET    /v1/users/{user_id}/devices/{device_id}/messages     owner: the device's queue
                                                              (?payload=omit: nonce only)
  GET    .../devices/{device_id}/messages/{message_id}        owner: one record, with the
                                                              disclosed MAC key once ACKed
  GET    .../devices/{device_id}/messages/{message_id}/payload owner: the payload
                                                              ciphertext, raw bytes
  POST   .../devices/{device_id}/messages/{message_id}/ack    owner: ACK, disclosing k_mac

The server holds no key of any envelope: it checks what can be checked without one
(shape, lengths, points, sender, devices, limits, id) and, on ACK, that the disclosed key
verifies the stored MAC (ENV-14).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from keyflows.reference.common import (
    authenticate,
    in_thread,
    json_body,
    json_text_response,
    limited_body,
    method_route,
    not_found,
    path_identifiers,
    query_parameter,
    quick_read,
    services,
)
from keyflows.reference.config import Settings
from keyflows.reference.envelope_store import EnvelopeTables, QueueFull, StoredDelivery
from keyflows.reference.limits import quota_exceeded, read_body
from keyflows.reference.problems import Problem, malformed
from keyflows.reference.store import canonical_json
from keyflows.spec import envelope as E
from keyflows.spec.encoding import b64url_decode, b64url_encode
from keyflows.spec.errors import ParamsError

FLOW = "envelope"

DEVICES_PATH = "/v1/users/{user_id}/devices"
DEVICE_PATH = "/v1/users/{user_id}/devices/{device_id}"
MESSAGES_PATH = "/v1/users/{user_id}/messages"
QUEUE_PATH = "/v1/users/{user_id}/devices/{device_id}/messages"
MESSAGE_PATH = "/v1/users/{user_id}/devices/{device_id}/messages/{message_id}"
ACK_PATH = "/v1/users/{user_id}/devices/{device_id}/messages/{message_id}/ack"
PAYLOAD_PATH = "/v1/users/{user_id}/devices/{device_id}/messages/{message_id}/payload"
OCTET_STREAM = "application/octet-stream"

# ENV-17: the limits and lifetime this server advertises.
RETENTION_SECONDS = 7 * 24 * 3600
MAX_RECIPIENTS = 1000
MAX_MESSAGE_BYTES = 1 << 20
MAX_DEVICES_PER_USER = 64
MAX_QUEUE_PAGE = 8
# Largest entry on the wire: two 64-character identifiers and three base64url fields.
_ENTRY_WIRE_BYTES = 400
MAX_ENVELOPE_BODY_BYTES = (4 * -(-MAX_MESSAGE_BYTES // 3) + MAX_RECIPIENTS * _ENTRY_WIRE_BYTES
                           + 4096)


def now() -> int:
    """The server's clock in Unix seconds (tests replace it)."""
    return int(time.time())


CAPABILITIES_MEMBER = "envelope"


def capabilities(settings: Settings) -> dict[str, object]:
    """ENV-17: the flow's own member of /v1/capabilities."""
    return {"max_recipients": MAX_RECIPIENTS,
            "max_message_bytes": MAX_MESSAGE_BYTES,
            "max_body_bytes": MAX_ENVELOPE_BODY_BYTES,
            "retention_seconds": RETENTION_SECONDS,
            "max_devices_per_user": MAX_DEVICES_PER_USER,
            "max_queue_page": MAX_QUEUE_PAGE}


def tables(request: Request) -> EnvelopeTables:
    return services(request).store.envelope()


# --- step 1: device registry ------------------------------------------------------------------

def device_location(user_id: str, device_id: str) -> str:
    return f"/v1/users/{user_id}/devices/{device_id}"


def _device_body(device_id: str, key_text: str) -> str:
    return canonical_json({"device_id": device_id, "x25519": key_text})


async def _register(request: Request, user_id: str, device_id: str | None) -> Response:
    """ENV-1 .. ENV-3: check the key, then store it under the given or a fresh id."""
    await authenticate(request, user_id)
    body = await limited_body(request)
    obj = json_body(request, body)
    key = await in_thread(lambda: E.parse_device_registration(obj))
    key_text = b64url_encode(key)
    store = tables(request)
    assigned = device_id is None

    def put(candidate: str) -> Callable[[], str]:
        return lambda: store.put_device(user_id, candidate, key_text,
                                        max_devices=MAX_DEVICES_PER_USER)

    for _ in range(3):  # a fresh 16-byte id colliding is all but impossible
        candidate = device_id or E.new_device_id(os.urandom)
        outcome = await in_thread(put(candidate))
        if outcome == "created":
            return json_text_response(_device_body(candidate, key_text), 201,
                                      headers={"Location": device_location(user_id, candidate)})
        if outcome == "unchanged" and not assigned:
            return json_text_response(_device_body(candidate, key_text), 200)
        if outcome == "full":
            raise Problem("conflict", f"the user already has {MAX_DEVICES_PER_USER} devices",
                          requirement="ENV-3")
        if not assigned:
            raise Problem("conflict", "the device id is registered with another key; remove "
                          "the device first", requirement="ENV-3")
    raise Problem("conflict", "could not assign a device id", requirement="ENV-1")


async def put_device(request: Request) -> Response:
    user_id, device_id = path_identifiers(request, "user_id", "device_id")
    return await _register(request, user_id, device_id)


async def post_device(request: Request) -> Response:
    (user_id,) = path_identifiers(request, "user_id")
    return await _register(request, user_id, None)


async def list_devices(request: Request) -> Response:
    """ENV-3: anyone lists a user's device ids and public keys, sorted by device_id."""
    (user_id,) = path_identifiers(request, "user_id")
    await limited_body(request)
    store = tables(request)
    devices = await quick_read(request, lambda: store.list_devices(user_id))
    return json_text_response(canonical_json(
        {"user_id": user_id,
         "devices": [{"device_id": d, "x25519": k} for d, k in devices]}))


async def delete_device(request: Request) -> Response:
    user_id, device_id = path_identifiers(request, "user_id", "device_id")
    await authenticate(request, user_id)
    await limited_body(request)
    store = tables(request)
    if not await in_thread(lambda: store.delete_device(user_id, device_id)):
        raise not_found("no such device", requirement="ENV-3")
    return Response(status_code=204)


# --- step 8: accepting an envelope ---------------------------------------------------------------

def _validated(obj: Any, sender: str) -> E.Envelope:
    """Step 8 without storage: shape, lengths, points (ENV-9), limits (ENV-17), sender
    (ENV-10). Over a limit is 413, not the 400 of other params failures."""
    envelope = E.parse_envelope(obj)
    try:
        E.check_limits(envelope, E.Limits(max_recipients=MAX_RECIPIENTS,
                                          max_ciphertext_bytes=MAX_MESSAGE_BYTES))
    except ParamsError as exc:
        raise Problem("too-large", str(exc.args[0]), failure_class=exc.failure_class,
                      requirement=exc.requirement) from None
    E.check_sender(envelope, sender)
    return envelope


async def post_message(request: Request) -> Response:
    """Steps 8 (ENV-9, ENV-10, ENV-11): check, then queue for every addressed device."""
    (user_id,) = path_identifiers(request, "user_id")
    await authenticate(request, user_id)
    body = await read_body(request, MAX_ENVELOPE_BODY_BYTES)
    obj = json_body(request, body)
    envelope = await in_thread(lambda: _validated(obj, user_id))
    store = tables(request)
    received = now()
    message_id = obj["message_id"]
    entries = [(e["user_id"], e["device_id"], canonical_json(e)) for e in obj["recipients"]]
    digest = E.ciphertext_digest(envelope.payload.ciphertext)

    quotas = services(request).settings.quotas

    def store_it() -> None:
        store.purge_expired(received)
        store.put_message(message_id=message_id, sender=envelope.sender,
                          payload=canonical_json(obj["payload"]), digest=digest,
                          entries=entries, received_at=received,
                          expires_at=E.expires_at(received, RETENTION_SECONDS), quotas=quotas)

    try:
        await in_thread(store_it)
    except QueueFull as full:  # the owner frees space by acknowledging (API-54)
        raise quota_exceeded(full.quota, full.limit) from None
    return json_text_response(canonical_json(
        {"message_id": message_id, "recipients": len(entries), "received_at": received,
         "expires_at": E.expires_at(received, RETENTION_SECONDS)}), 201)


# --- steps 9 and 11: queue, records, ACK -----------------------------------------

def record_text(stored: StoredDelivery) -> str:
    """The delivery record as canonical JSON (sorted keys), spliced from the stored JSON
    texts so a 1 MiB payload is not parsed again for every read."""
    parts = [f'"expires_at":{stored.expires_at}']
    if stored.mac_key is not None:
        parts.append(f'"mac_key":{json.dumps(stored.mac_key)}')
    parts += [f'"message_id":{json.dumps(stored.message_id)}', f'"payload":{stored.payload}',
              f'"received_at":{stored.received_at}', f'"recipient":{stored.entry}',
              f'"sender":{json.dumps(stored.sender)}']
    return "{" + ",".join(parts) + "}"


def payload_inline(request: Request) -> bool:
    """ENV-19: ?payload=inline (the default) or ?payload=omit; anything else is 400."""
    value = query_parameter(request, "payload") or "inline"
    if value not in ("inline", "omit"):
        raise malformed("query parameter payload must be inline or omit",
                        requirement="ENV-19")
    return value == "inline"


def stored_delivery(stored: StoredDelivery) -> E.Delivery:
    return E.parse_delivery(json.loads(record_text(stored)))


async def _owned_device(request: Request, *names: str) -> tuple[str, ...]:
    """Path identifiers, no body, the device owner's token (ENV-12)."""
    values = path_identifiers(request, "user_id", "device_id", *names)
    await authenticate(request, values[0])
    await limited_body(request)
    return values


async def get_queue(request: Request) -> Response:
    """Step 9 (ENV-11, ENV-12): the device's unacknowledged messages in arrival order."""
    user_id, device_id = await _owned_device(request)
    inline = payload_inline(request)
    store = tables(request)
    if not await in_thread(lambda: store.has_device(user_id, device_id)):
        raise not_found("no such device", requirement="ENV-12")
    rows, more = await quick_read(request, lambda: store.queue(user_id, device_id, now=now(),
                                                     limit=MAX_QUEUE_PAGE, inline=inline))
    text = (f'{{"device_id":{json.dumps(device_id)},"messages":['
            + ",".join(record_text(r) for r in rows)
            + f'],"more":{json.dumps(more)},"user_id":{json.dumps(user_id)}}}')
    return json_text_response(text)


async def get_message(request: Request) -> Response:
    """ENV-15: the record of one message, with the disclosed key once acknowledged."""
    user_id, device_id, message_id = await _owned_device(request, "message_id")
    store = tables(request)
    stored = await quick_read(request, lambda: store.delivery(user_id, device_id, message_id,
                                                    now=now()))
    if stored is None:
        raise not_found("no such message for this device", requirement="ENV-17")
    return json_text_response(record_text(stored))


async def get_payload(request: Request) -> Response:
    """Step 9 (ENV-19): the payload ciphertext as posted, raw, to the device's owner; the
    message's one stored payload, decoded from the base64url checked when it was posted."""
    user_id, device_id, message_id = await _owned_device(request, "message_id")
    store = tables(request)
    text = await in_thread(lambda: store.payload_ciphertext(user_id, device_id, message_id,
                                                            now=now()))
    if text is None:
        raise not_found("no such message for this device", requirement="ENV-19")
    return Response(await in_thread(lambda: b64url_decode(text)), media_type=OCTET_STREAM)


def _decide(mac_key: bytes) -> Callable[[StoredDelivery], tuple[str, bool]]:
    """ENV-14, ENV-15: verify the disclosure against the stored delivery."""

    def decide(stored: StoredDelivery) -> tuple[str, bool]:
        outcome = E.apply_ack(stored_delivery(stored), mac_key, digest=stored.digest)
        return b64url_encode(outcome.mac_key), outcome.changed

    return decide


async def post_ack(request: Request) -> Response:
    """Step 11: the recipient discloses k_mac; refused (422, mac) unless it verifies."""
    user_id, device_id, message_id = path_identifiers(request, "user_id", "device_id",
                                                      "message_id")
    await authenticate(request, user_id)
    body = await limited_body(request)
    obj = json_body(request, body)
    mac_key = await in_thread(lambda: E.parse_ack(obj))
    store = tables(request)
    stored = await in_thread(lambda: store.acknowledge(user_id, device_id, message_id,
                                                       now=now(), decide=_decide(mac_key)))
    if stored is None:
        raise not_found("no such message for this device", requirement="ENV-14")
    return json_text_response(record_text(stored))


def routes() -> list[BaseRoute]:
    return [
        method_route(DEVICES_PATH, {"GET": list_devices, "POST": post_device},
                     name="envelope_devices"),
        method_route(DEVICE_PATH, {"PUT": put_device, "DELETE": delete_device},
                     name="envelope_device"),
        method_route(MESSAGES_PATH, {"POST": post_message}, name="envelope_messages"),
        method_route(QUEUE_PATH, {"GET": get_queue}, name="envelope_queue"),
        method_route(MESSAGE_PATH, {"GET": get_message}, name="envelope_message"),
        method_route(ACK_PATH, {"POST": post_ack}, name="envelope_ack"),
        method_route(PAYLOAD_PATH, {"GET": get_payload}, name="envelope_payload"),
    ]
