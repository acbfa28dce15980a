"""Routes of the keypair-publication flow (KP-7 .. KP-12).

  PUT    /v1/users/{user_id}/apps/{client_id}/keypair      owner publishes or replaces
  GET    /v1/users/{user_id}/apps/{client_id}/keypair      owner fetches the whole record
  DELETE /v1/users/{user_id}/apps/{client_id}/keypair      owner deletes
  GET    /v1/users/{user_id}/apps/{client_id}/public-keys  anyone: the public view
  GET    /v1/users/{user_id}/apps                          owner: client_ids and versions
"""

from __future__ import annotations

import functools
import json

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
    prepared_json,
    quick_read,
    services,
    spec_checked,
)
from keyflows.reference.session_challenge import check_session_record
from keyflows.reference.store import canonical_json
from keyflows.spec import keypair_publication as kp
from keyflows.spec.session_challenge import Operation

FLOW = "keypair-publication"
KEYPAIR_PATH = "/v1/users/{user_id}/apps/{client_id}/keypair"
PUBLIC_KEYS_PATH = "/v1/users/{user_id}/apps/{client_id}/public-keys"
APPS_PATH = "/v1/users/{user_id}/apps"


def keypair_location(user_id: str, client_id: str) -> str:
    return f"/v1/users/{user_id}/apps/{client_id}/keypair"


async def put_keypair(request: Request) -> Response:
    """Step 6: validate everything checkable without the KEK, then store if newer."""
    user_id, client_id = path_identifiers(request, "user_id", "client_id")
    # KP-7; a session token is refused for this operation (SC-15).
    await authenticate(request, user_id, Operation.PUT_KEYPAIR)
    body = await limited_body(request)
    obj = json_body(request, body)
    record = spec_checked(lambda: kp.validate_publication(obj, user_id=user_id,
                                                          client_id=client_id))
    text = canonical_json(obj)
    store = services(request).store

    def decide(live: str | None, deleted_version: int | None) -> None:
        """Step 11: the change against what is stored (KP-8, KP-15 .. KP-18)."""
        state = kp.state_of(None if live is None else json.loads(live), deleted_version)
        kp.check_change(state, record)

    created = await in_thread(lambda: store.put_keypair(user_id, client_id,
                                                        record.key_version, text, decide))
    if created:
        return json_text_response(text, 201,
                                  headers={"Location": keypair_location(user_id, client_id)})
    return json_text_response(text, 200)


async def get_keypair(request: Request) -> Response:
    """Step 7 (KP-9): the owner gets the stored record, byte for byte."""
    user_id, client_id = path_identifiers(request, "user_id", "client_id")
    await authenticate(request, user_id, Operation.GET_KEYPAIR)
    await limited_body(request)
    store = services(request).store
    found = await quick_read(request, lambda: store.get_keypair_and_version(user_id, client_id))
    text, key_version = (None, None) if found is None else found
    # SC-16: a session token reads only the record whose key won it.
    check_session_record(request, key_version)
    if text is None:
        raise not_found("no keypair is published for this application", requirement="KP-12")
    return json_text_response(text)


async def delete_keypair(request: Request) -> Response:
    """KP-12, KP-19: a deletion signed by the live record's key; afterwards the record and
    its public keys are gone, and KP-8 remembers its version."""
    user_id, client_id = path_identifiers(request, "user_id", "client_id")
    # KP-12; a session token is refused for this operation (SC-15).
    await authenticate(request, user_id, Operation.DELETE_KEYPAIR)
    body = await limited_body(request)
    obj = json_body(request, body)
    store = services(request).store

    def decide(live: str) -> None:
        """Step 11 (KP-19): the deletion against the live record (a missing record is a
        404 whatever the body)."""
        kp.check_deletion(kp.stored_predecessor(json.loads(live)), kp.parse_deletion(obj),
                          user_id=user_id, client_id=client_id)

    if not await in_thread(lambda: store.delete_keypair(user_id, client_id, decide)):
        raise not_found("no keypair is published for this application", requirement="KP-12")
    return Response(status_code=204)


@functools.lru_cache(maxsize=1024)
def public_view_text(record_text: str) -> str:
    """KP-10: the public view of a stored record, as canonical JSON. A pure function of
    the stored text, so remembering it can never serve a stale view."""
    return canonical_json(kp.public_view(json.loads(record_text)))


@functools.lru_cache(maxsize=1024)
def public_view_response(record_text: str) -> Response:
    """The answer carrying public_view_text(record_text), built once per stored text
    (the store is still read on every request: only the answer's bytes are reused)."""
    return prepared_json(public_view_text(record_text))


async def get_public_keys(request: Request) -> Response:
    """Step 8 (KP-10): anyone gets the record without encrypted_private_keys."""
    user_id, client_id = path_identifiers(request, "user_id", "client_id")
    await limited_body(request)
    store = services(request).store
    text = await quick_read(request, lambda: store.get_keypair(user_id, client_id))
    if text is None:
        raise not_found("no keypair is published for this application", requirement="KP-12")
    return public_view_response(text)


async def list_apps(request: Request) -> Response:
    """The owner only (KP-23): the applications with a published keypair and their
    versions. A session token is refused (SC-15: Operation.OTHER)."""
    (user_id,) = path_identifiers(request, "user_id")
    await authenticate(request, user_id)
    await limited_body(request)
    store = services(request).store
    apps = await quick_read(request, lambda: store.list_apps(user_id))
    body = {"user_id": user_id,
            "apps": [{"client_id": client_id, "key_version": version}
                     for client_id, version in apps]}
    return json_text_response(canonical_json(body))


def routes() -> list[BaseRoute]:
    return [
        method_route(KEYPAIR_PATH, {"PUT": put_keypair, "GET": get_keypair,
                                    "DELETE": delete_keypair}, name="keypair"),
        method_route(PUBLIC_KEYS_PATH, {"GET": get_public_keys}, name="public_keys"),
        method_route(APPS_PATH, {"GET": list_apps}, name="apps"),
    ]
