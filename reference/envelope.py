"""Routes of the envelope flow (ENV-1 .. ENV-28). Under /v1/users/{user_id}/apps/{client_id}:

  GET  /devices                                       anyone: the owner's signed device list
  PUT  /devices                                       owner: the next signed version
  POST /messages                                      sender: the envelope (header, entries)
  PUT  /messages/{message_id}/payload                 sender: the payload, raw bytes
  GET  /devices/{device_id}/messages                  owner: the device's queue
  GET  /devices/{device_id}/messages/{message_id}     owner: one record
  GET  /devices/{device_id}/messages/{message_id}/payload   owner: the payload, raw
  POST /devices/{device_id}/messages/{message_id}/ack       owner: ACK

The server holds no key of any message. Every decision is the spec's -- the device-list
update (envelope_devices.decide_device_list), the ordered checks of a posted envelope
(envelope.accept_envelope), the payload's length (check_payload_upload), the ACK
(apply_ack) -- and runs inside the store's transaction; this module reads requests,
streams payloads through the payload store, and answers.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import BaseRoute

from keyflows.reference.common import (
    Services,
    authenticate,
    in_thread,
    json_body,
    json_text_response,
    limited_body,
    method_route,
    not_found,
    path_identifiers,
    quick_read,
    services,
    spec_checked,
)
from keyflows.reference.config import Settings
from keyflows.reference.envelope_store import EnvelopeTables, QueueFull, StoredRecord
from keyflows.reference.limits import declared_length, quota_exceeded, read_body, too_large
from keyflows.reference.payload_store import (
    DatabasePayloadStore,
    FilePayloadStore,
    PayloadStore,
)
from keyflows.reference.problems import Problem
from keyflows.reference.store import canonical_json
from keyflows.spec import envelope as E
from keyflows.spec import envelope_devices as D
from keyflows.spec import envelope_stream as S
from keyflows.spec import keypair_publication
from keyflows.spec.encoding import b64url_encode
from keyflows.spec.errors import ParamsError

FLOW = "envelope"

APP_PATH = "/v1/users/{user_id}/apps/{client_id}"
DEVICES_PATH = APP_PATH + "/devices"
MESSAGES_PATH = APP_PATH + "/messages"
UPLOAD_PATH = MESSAGES_PATH + "/{message_id}/payload"
QUEUE_PATH = DEVICES_PATH + "/{device_id}/messages"
MESSAGE_PATH = QUEUE_PATH + "/{message_id}"
ACK_PATH = MESSAGE_PATH + "/ack"
PAYLOAD_PATH = MESSAGE_PATH + "/payload"
OCTET_STREAM = "application/octet-stream"

# ENV-17: the limits this server advertises (the retention period is a setting,
# Settings.message_retention).
MAX_RECIPIENTS = 1000
MAX_PAYLOAD_BYTES = 1 << 32
MAX_DEVICES_PER_USER = 32  # a signed list of 32 fits the general body limit
MAX_QUEUE_PAGE = 64
# Largest entry on the wire: two 64-character identifiers, a hybrid enc and a wrapped key.
_ENTRY_WIRE_BYTES = 1700
MAX_ENVELOPE_BODY_BYTES = MAX_RECIPIENTS * _ENTRY_WIRE_BYTES + 4096
READ_PIECE = 1 << 16

CAPABILITIES_MEMBER = "envelope"


def now() -> int:
    """The server's clock in Unix seconds (tests replace it)."""
    return int(time.time())


def limits() -> E.Limits:
    return E.Limits(max_recipients=MAX_RECIPIENTS, max_payload_bytes=MAX_PAYLOAD_BYTES)


def capabilities(settings: Settings) -> dict[str, object]:
    """ENV-17, ENV-27: the flow's own member of /v1/capabilities."""
    return {"suites": list(limits().suites),
            "max_recipients": MAX_RECIPIENTS,
            "max_payload_bytes": MAX_PAYLOAD_BYTES,
            "max_body_bytes": MAX_ENVELOPE_BODY_BYTES,
            "chunk_size": S.CHUNK_SIZE,
            "retention_seconds": settings.message_retention,
            "max_devices_per_user": MAX_DEVICES_PER_USER,
            "max_queue_page": MAX_QUEUE_PAGE}


def setup(app: Starlette, svc: Services) -> None:
    """The payload store: files beside an SQLite database, rows in a PostgreSQL one (every
    process serving it sees the same payloads). Payloads no live message owns (a crash
    between the payload's commit and the database's) are removed now."""
    payloads: PayloadStore = (DatabasePayloadStore(svc.store) if svc.settings.db_url
                              else FilePayloadStore.beside(svc.settings.db_path))
    app.state.envelope_payloads = payloads
    # Names first: a payload listed now belongs to a message that already exists, so a
    # message another process accepts meanwhile never loses its payload.
    names = list(payloads.names())
    live = svc.store.envelope().live_payloads()
    for name in names:
        if name not in live:
            payloads.delete(name)


def tables(request: Request) -> EnvelopeTables:
    return services(request).store.envelope()


def payload_store(request: Request) -> PayloadStore:
    store: PayloadStore = request.app.state.envelope_payloads
    return store


async def _delete_payloads(request: Request, names: list[str]) -> None:
    store = payload_store(request)
    for name in names:
        await in_thread(lambda name=name: store.delete(name))  # type: ignore[misc]


def _accepted(check: Callable[[], E.Envelope]) -> E.Envelope:
    """ENV-17: a limit exceeded is 413; every other refusal keeps its class's status."""
    try:
        return check()
    except ParamsError as exc:
        if exc.requirement == "ENV-17":
            raise Problem("too-large", str(exc.args[0]), failure_class=exc.failure_class,
                          requirement=exc.requirement) from None
        raise


# --- step 1: signed device lists --------------------------------------------------------------

async def get_devices(request: Request) -> Response:
    """ENV-3: anyone reads the stored signed list, unchanged."""
    user_id, client_id = path_identifiers(request, "user_id", "client_id")
    await limited_body(request)
    store = tables(request)
    text = await quick_read(request, lambda: store.device_list(user_id, client_id))
    if text is None:
        raise not_found("no device list for this user and application", requirement="ENV-3")
    return json_text_response(text)


def _owner_of(record_text: str | None, user_id: str, client_id: str) -> D.PublishedKeys | None:
    if record_text is None:
        return None
    view = keypair_publication.public_view(json.loads(record_text))
    return D.published_keys_of(view, user_id=user_id, client_id=client_id)


async def put_devices(request: Request) -> Response:
    """ENV-3, ENV-21: the owner publishes the next signed version."""
    user_id, client_id = path_identifiers(request, "user_id", "client_id")
    await authenticate(request, user_id)
    body = await limited_body(request)
    obj = json_body(request, body)
    store = tables(request)

    def decide(current: str | None, owner: str | None) -> D.DeviceListDecision:
        stored = None if current is None else D.parse_device_list(json.loads(current))
        return D.decide_device_list(obj, current=stored,
                                    owner=_owner_of(owner, user_id, client_id),
                                    max_devices=MAX_DEVICES_PER_USER)

    def text(device_list: D.DeviceList) -> str:
        return canonical_json(D.device_list_to_wire(device_list))

    decision, drained = await in_thread(lambda: store.put_device_list(user_id, client_id,
                                                                      decide, text))
    await _delete_payloads(request, drained)
    created = decision.outcome is D.DeviceListOutcome.CREATED
    return json_text_response(text(decision.device_list), 201 if created else 200,
                              headers={"Location": DEVICES_PATH.format(
                                  user_id=user_id, client_id=client_id)} if created else None)


# --- step 8: the envelope and its payload -----------------------------------------------------

def _upload_location(user_id: str, client_id: str, message_id: str) -> str:
    return UPLOAD_PATH.format(user_id=user_id, client_id=client_id, message_id=message_id)


async def post_message(request: Request) -> Response:
    """Step 8 (ENV-9, ENV-10, ENV-17, ENV-27): the spec's ordered checks, then the
    message waits for its payload."""
    user_id, client_id = path_identifiers(request, "user_id", "client_id")
    await authenticate(request, user_id)
    body = await read_body(request, MAX_ENVELOPE_BODY_BYTES)
    obj = json_body(request, body)
    store = tables(request)
    received = now()
    expires = E.expires_at(received, services(request).settings.message_retention)

    def decide(directory: E.Directory) -> E.Envelope:
        return _accepted(lambda: E.accept_envelope(
            obj, authenticated_user=user_id, client_id=client_id, limits=limits(),
            directory=directory))

    quotas = services(request).settings.quotas

    def accept() -> E.Envelope:
        for name in store.purge_expired(received):
            payload_store(request).delete(name)
        return store.accept_message(
            decide, header_text=lambda h: canonical_json(E.header_to_wire(h)),
            entry_text=lambda e: canonical_json(E.entry_to_wire(e)), received_at=received,
            expires_at=expires, quotas=quotas)

    try:
        envelope = await in_thread(accept)
    except QueueFull as full:  # the owner frees space by acknowledging (API-54)
        raise quota_exceeded(full.quota, full.limit) from None
    message_id = b64url_encode(envelope.header.message_id)
    location = _upload_location(user_id, client_id, message_id)
    return json_text_response(canonical_json(
        {"message_id": message_id, "recipients": len(envelope.entries),
         "received_at": received, "expires_at": expires, "payload": location}), 201,
        headers={"Location": location})


def check_octet_stream(request: Request) -> None:
    """The raw payload is application/octet-stream; anything else is 415 (API-12)."""
    media_type = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
    if media_type != OCTET_STREAM:
        raise Problem("unsupported-media-type", "the payload must be application/octet-stream")


async def _body_pieces(request: Request) -> AsyncIterator[bytes]:
    async for piece in request.stream():
        if piece:
            yield piece


async def put_payload(request: Request) -> Response:
    """Step 8 (ENV-26): the sender's raw payload, exactly payload_length bytes, streamed
    into the payload store and durable before the message becomes deliverable."""
    user_id, client_id, message_id = path_identifiers(request, "user_id", "client_id",
                                                      "message_id")
    declared = declared_length(request)
    await authenticate(request, user_id)
    if declared is not None and declared > MAX_PAYLOAD_BYTES:  # API-5, before any lookup
        raise too_large(MAX_PAYLOAD_BYTES)
    check_octet_stream(request)
    store = tables(request)
    state, header_text = await in_thread(lambda: store.pending_upload(user_id, client_id,
                                                                      message_id, now=now()))
    if state == "absent":
        raise not_found("no message of this sender awaits a payload", requirement="ENV-26")
    if header_text is None:
        raise Problem("conflict", "the payload of this message is already stored",
                      failure_class="replay", requirement="ENV-26")
    header = E.parse_header(json.loads(header_text), "stored header")
    if declared is not None:
        spec_checked(lambda: E.check_payload_upload(header, declared, complete=True))
    payloads = payload_store(request)
    with await in_thread(lambda: payloads.writer(message_id)) as writer:
        received = 0
        async for piece in _body_pieces(request):
            received += len(piece)
            spec_checked(lambda n=received: E.check_payload_upload(  # type: ignore[misc]
                header, n, complete=False))
            await in_thread(lambda piece=piece: writer.write(piece))  # type: ignore[misc]
        spec_checked(lambda: E.check_payload_upload(header, received, complete=True))
        won = await in_thread(lambda: store.complete_upload(message_id, writer.commit))
    if not won:
        raise Problem("conflict", "the payload of this message is already stored",
                      failure_class="replay", requirement="ENV-26")
    return Response(status_code=204)


# --- steps 9 and 11: queue, records, payload, ACK ---------------------------------------------

def record_text(stored: StoredRecord) -> str:
    """A delivery record as canonical JSON (sorted keys), spliced from the stored header
    and entry texts: the header's members, the device's entry, the server's times."""
    header = stored.header[1:-1]
    return (f'{{"expires_at":{stored.expires_at},{header},"received_at":{stored.received_at},'
            f'"recipient":{stored.entry}}}')


async def _owned_device(request: Request, *names: str) -> tuple[str, ...]:
    """Path identifiers, no body, the device owner's token (ENV-12)."""
    values = path_identifiers(request, "user_id", "client_id", "device_id", *names)
    await authenticate(request, values[0])
    await limited_body(request)
    return values


async def get_queue(request: Request) -> Response:
    """Step 9 (ENV-11, ENV-12): the device's unacknowledged, complete messages in order."""
    user_id, client_id, device_id = await _owned_device(request)
    store = tables(request)
    if not await in_thread(lambda: store.has_device(user_id, client_id, device_id)):
        raise not_found("no such device", requirement="ENV-12")
    rows, more = await quick_read(request, lambda: store.queue(
        user_id, client_id, device_id, now=now(), limit=MAX_QUEUE_PAGE))
    text = (f'{{"client_id":{json.dumps(client_id)},"device_id":{json.dumps(device_id)},'
            f'"messages":[{",".join(record_text(r) for r in rows)}],'
            f'"more":{json.dumps(more)},"user_id":{json.dumps(user_id)}}}')
    return json_text_response(text)


async def get_message(request: Request) -> Response:
    """ENV-12, ENV-15: one record, until the device acknowledges it."""
    user_id, client_id, device_id, message_id = await _owned_device(request, "message_id")
    store = tables(request)
    stored = await quick_read(request, lambda: store.record(user_id, client_id, device_id,
                                                            message_id, now=now()))
    if stored is None:
        raise not_found("no such message for this device", requirement="ENV-15")
    return json_text_response(record_text(stored))


async def get_payload(request: Request) -> Response:
    """Step 9 (ENV-19): the uploaded bytes, raw and streamed, while the message is in the
    device's unacknowledged records."""
    user_id, client_id, device_id, message_id = await _owned_device(request, "message_id")
    store = tables(request)
    stored = await in_thread(lambda: store.record(user_id, client_id, device_id, message_id,
                                                  now=now()))
    reader = None if stored is None else await in_thread(
        lambda: payload_store(request).reader(message_id))
    if reader is None:
        raise not_found("no such message for this device", requirement="ENV-19")

    async def pieces() -> AsyncIterator[bytes]:
        with reader:
            while piece := await in_thread(lambda: reader.read(READ_PIECE)):
                yield piece

    return StreamingResponse(pieces(), media_type=OCTET_STREAM,
                             headers={"Content-Length": str(reader.size)})


async def post_ack(request: Request) -> Response:
    """Step 11 (ENV-14, ENV-15, ENV-16): dequeue; the last ACK deletes the payload."""
    user_id, client_id, device_id, message_id = await _owned_device(request, "message_id")
    store = tables(request)

    def decide(already: bool, left: int) -> E.AckOutcome:
        return E.apply_ack(already_acknowledged=already, unacknowledged_devices=left)

    outcome = await in_thread(lambda: store.acknowledge(user_id, client_id, device_id,
                                                        message_id, now=now(), decide=decide))
    if outcome is None:
        raise not_found("no such message for this device", requirement="ENV-14")
    if outcome.delete_payload:
        await _delete_payloads(request, [message_id])
    return Response(status_code=204)


def routes() -> list[BaseRoute]:
    return [
        method_route(DEVICES_PATH, {"GET": get_devices, "PUT": put_devices},
                     name="envelope_devices"),
        method_route(MESSAGES_PATH, {"POST": post_message}, name="envelope_messages"),
        method_route(UPLOAD_PATH, {"PUT": put_payload}, name="envelope_upload"),
        method_route(QUEUE_PATH, {"GET": get_queue}, name="envelope_queue"),
        method_route(MESSAGE_PATH, {"GET": get_message}, name="envelope_message"),
        method_route(ACK_PATH, {"POST": post_ack}, name="envelope_ack"),
        method_route(PAYLOAD_PATH, {"GET": get_payload}, name="envelope_payload"),
    ]

