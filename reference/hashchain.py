"""Routes of the hashchain flow (HC-8 .. HC-29).

  GET  /v1/hashchain/head                                    last entry and a signed head
  GET  /v1/hashchain/entries?start=S&end=E                   entries S..E (max_chunk) + head
  POST /v1/hashchain/uids                                    create a UID (201)
  GET  /v1/hashchain/uids/{record_index}                     the sealed UID of a record index
  GET  /v1/hashchain/identities/{identity}                   positions of an identity's UIDs
  PUT  /v1/hashchain/identities/{identity}/uid               update the identity's UID
  POST /v1/hashchain/identities/{identity}/keyinits          publish one-time KeyInits (201)
  POST /v1/hashchain/identities/{identity}/keyinits/fetch    take exactly one KeyInit
  POST /v1/hashchain/identities/{identity}/keyinits/flush    flush them (signed, fresh)

No bearer token: every write is authorised by the signatures it carries. Configuration,
from the environment: KEYFLOWS_HASHCHAIN_ORIGIN (default "keyflows.test/hashchain", fixed
when the chain is created), KEYFLOWS_HASHCHAIN_DOMAINS (comma-separated, default
"keyflows.test"), KEYFLOWS_HASHCHAIN_MAX_CHUNK (default 1000).
"""

from __future__ import annotations

import json
import os
import re
import time
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from keyflows.reference.common import (
    Services,
    in_thread,
    json_body,
    json_text_response,
    limited_body,
    method_route,
    not_found,
    query_parameter,
    spec_checked,
)
from keyflows.reference.hashchain_store import Appended, HashchainStore, UnknownIdentity
from keyflows.reference.limits import rate_limit, requester
from keyflows.reference.problems import Problem, malformed
from keyflows.reference.store import canonical_json
from keyflows.spec import hashchain_v1chain as hc
from keyflows.spec.encoding import b64url_decode_exact, b64url_encode
from keyflows.spec.errors import BindingError, DecodeError

FLOW = "hashchain"
HEAD_PATH = "/v1/hashchain/head"
ENTRIES_PATH = "/v1/hashchain/entries"
UIDS_PATH = "/v1/hashchain/uids"
UID_PATH = "/v1/hashchain/uids/{record_index}"
IDENTITY_PATH = "/v1/hashchain/identities/{identity}"
IDENTITY_UID_PATH = "/v1/hashchain/identities/{identity}/uid"
KEYINITS_PATH = "/v1/hashchain/identities/{identity}/keyinits"
KEYINIT_FETCH_PATH = "/v1/hashchain/identities/{identity}/keyinits/fetch"
KEYINIT_FLUSH_PATH = "/v1/hashchain/identities/{identity}/keyinits/flush"

ENV_ORIGIN = "KEYFLOWS_HASHCHAIN_ORIGIN"
ENV_DOMAINS = "KEYFLOWS_HASHCHAIN_DOMAINS"
ENV_MAX_CHUNK = "KEYFLOWS_HASHCHAIN_MAX_CHUNK"
DEFAULT_ORIGIN = "keyflows.test/hashchain"
DEFAULT_DOMAINS = ("keyflows.test",)
DEFAULT_MAX_CHUNK = 1000
MAX_KEYINITS_PER_REQUEST = 64
METHODS = ("head", "entries", "uid-create", "uid-update", "uid-fetch", "identity-lookup",
           "keyinit-add", "keyinit-fetch", "keyinit-flush")
_POSITION = re.compile(r"\A(0|[1-9][0-9]{0,18})\Z")


class Config:
    def __init__(self, environ: dict[str, str] | None = None) -> None:
        env = dict(os.environ if environ is None else environ)
        self.origin = env.get(ENV_ORIGIN, DEFAULT_ORIGIN)
        domains = env.get(ENV_DOMAINS)
        self.domains = (tuple(d.strip() for d in domains.split(",") if d.strip())
                        if domains else DEFAULT_DOMAINS)
        self.max_chunk = int(env.get(ENV_MAX_CHUNK, str(DEFAULT_MAX_CHUNK)))


def setup(app: Starlette, svc: Services) -> None:
    """Create the chain (entry 0) and hook publication logging when the app is made."""
    config = Config()
    app.state.hashchain = HashchainStore.attach(svc.store, secrets=svc.secrets,
                                                origin=config.origin, domains=config.domains)
    app.state.hashchain_max_chunk = config.max_chunk


def chain(request: Request) -> HashchainStore:
    store = request.app.state.hashchain
    assert isinstance(store, HashchainStore)
    return store


def capabilities(request: Request) -> dict[str, Any]:
    """The flow's member of GET /v1/capabilities."""
    store = chain(request)
    return {"hashchain": {
        "origin": store.origin,
        "methods": list(METHODS),
        "domains": list(store.domains),
        "signing_keys": [b64url_encode(store.server_key)],
        "max_chunk": int(request.app.state.hashchain_max_chunk),
        "max_keyinits": MAX_KEYINITS_PER_REQUEST,
        "max_last_entry_lag": hc.DEFAULT_MAX_LAST_ENTRY_LAG,
        "max_head_age": hc.DEFAULT_MAX_HEAD_AGE,
    }}


def now() -> int:
    return int(time.time())


# --- step 1 of every request: path values ------------------------------------------------

def path_identity(request: Request) -> str:
    identity = request.path_params["identity"]
    spec_checked(lambda: hc.check_identity(identity))
    return str(identity)


def path_record_index(request: Request) -> bytes:
    return spec_checked(lambda: b64url_decode_exact(request.path_params["record_index"], 32,
                                                    field="record_index", requirement="API-1"))


def query_position(request: Request, name: str, default: int | None = None) -> int:
    text = query_parameter(request, name)
    if text is None:
        if default is None:
            raise malformed(f"query parameter {name} is required", requirement="HC-23")
        return default
    if not _POSITION.match(text) or int(text) > hc.MAX_POSITION:
        raise malformed(f"query parameter {name} must be a position 0..2^63-1",
                        requirement="HC-23")
    return int(text)


def reply_body(uid: hc.Uid, appended: Appended) -> str:
    return canonical_json({"uid": hc.uid_to_wire(uid), "position": appended.position,
                           "entry": b64url_encode(appended.entry),
                           "record_hash": b64url_encode(appended.record_hash),
                           "signature": b64url_encode(appended.signature)})


def unknown_identity() -> Problem:
    return not_found("this identity has no UID here", requirement="HC-20")


# --- the chain ----------------------------------------------------------------------------

async def get_head(request: Request) -> Response:
    """HC-8: the last entry and a head over it, signed now."""
    await limited_body(request)
    store = chain(request)
    head = await in_thread(lambda: store.head(now()))
    return json_text_response(canonical_json({"head": hc.head_to_wire(head.head),
                                              "entry": b64url_encode(head.entry)}))


async def get_entries(request: Request) -> Response:
    """HC-23: a chunk of at most max_chunk entries and a head at or after its end."""
    await limited_body(request)
    start = query_position(request, "start")
    max_chunk = int(request.app.state.hashchain_max_chunk)
    end = query_position(request, "end", start + max_chunk - 1)
    if end < start:
        raise malformed("end is before start", requirement="HC-23")
    end = min(end, start + max_chunk - 1)
    store = chain(request)
    found = await in_thread(lambda: store.entries(start, end, now()))
    if found is None:
        raise not_found("start is past the last entry", requirement="HC-23")
    entries, head = found
    return json_text_response(canonical_json({
        "start": start, "entries": [b64url_encode(e) for e in entries],
        "head": hc.head_to_wire(head)}))


# --- UIDs -------------------------------------------------------------------------------

async def post_uid(request: Request) -> Response:
    """Steps 8-9: create (HC-14 .. HC-21)."""
    await rate_limit(request, ("uid-create", requester(request)))
    body = await limited_body(request)
    obj = json_body(request, body)
    store = chain(request)
    uid = spec_checked(lambda: hc.parse_uid(obj))
    record_hash = spec_checked(lambda: hc.verify_uid_create(uid, now=now(),
                                                            domains=store.domains))
    appended = await in_thread(lambda: store.create_uid(uid, record_hash))
    location = f"{UIDS_PATH}/{b64url_encode(hc.record_index_of(record_hash))}"
    return json_text_response(reply_body(uid, appended), 201, headers={"Location": location})


async def put_uid(request: Request) -> Response:
    """Steps 8-9: update (HC-17, HC-20, HC-21)."""
    identity = path_identity(request)
    body = await limited_body(request)
    obj = json_body(request, body)
    store = chain(request)
    uid = spec_checked(lambda: hc.parse_uid(obj))
    if uid.content.identity != identity:
        spec_checked(lambda: _raise(BindingError("the UID is for another identity than the "
                                                 "path", requirement="HC-17")))
    spec_checked(lambda: hc.check_identity(identity, domains=store.domains))
    try:
        appended = await in_thread(lambda: store.update_uid(uid, now()))
    except UnknownIdentity:
        raise unknown_identity() from None
    return json_text_response(reply_body(uid, appended))


def _raise(exc: Exception) -> None:
    raise exc


async def get_uid(request: Request) -> Response:
    """HC-24: the sealed UID of a record index, with its entry and position."""
    record_index = path_record_index(request)
    await limited_body(request)
    store = chain(request)
    found = await in_thread(lambda: store.fetch_uid(record_index))
    if found is None:
        raise not_found("no UID has this record index", requirement="HC-24")
    position, entry, sealed = found
    return json_text_response(canonical_json({
        "record_index": b64url_encode(record_index), "position": position,
        "entry": b64url_encode(entry), "sealed_uid": b64url_encode(sealed)}))


async def get_identity(request: Request) -> Response:
    """HC-13: the positions of an identity's UID entries (a client checks each)."""
    identity = path_identity(request)
    await limited_body(request)
    store = chain(request)
    positions = await in_thread(lambda: store.lookup(identity))
    if not positions:
        raise unknown_identity()
    return json_text_response(canonical_json({"identity": identity, "positions": positions}))


# --- KeyInits ------------------------------------------------------------------------------

def parse_keyinits(obj: Any) -> list[hc.KeyInit]:
    if not isinstance(obj, dict) or set(obj) != {"keyinits"}:
        raise DecodeError("the body must be {\"keyinits\": [...]}", requirement="API-6")
    items = obj["keyinits"]
    if not isinstance(items, list) or not 1 <= len(items) <= MAX_KEYINITS_PER_REQUEST:
        raise DecodeError(f"keyinits must be a list of 1..{MAX_KEYINITS_PER_REQUEST}",
                          requirement="API-6")
    return [hc.parse_keyinit(item) for item in items]


async def post_keyinits(request: Request) -> Response:
    """HC-25, HC-26."""
    identity = path_identity(request)
    body = await limited_body(request)
    obj = json_body(request, body)
    keyinits = spec_checked(lambda: parse_keyinits(obj))
    store = chain(request)
    try:
        count = await in_thread(lambda: store.add_keyinits(identity, keyinits, now()))
    except UnknownIdentity:
        raise unknown_identity() from None
    return json_text_response(canonical_json({"identity": identity, "accepted": count}), 201)


async def fetch_keyinit(request: Request) -> Response:
    """HC-27: exactly one KeyInit, never handed out again; 404 when none is left.
    Counted per requester, so no one can drain another identity's pool (API-54)."""
    identity = path_identity(request)
    who = requester(request)
    await rate_limit(request, ("keyinit-fetch", who), ("keyinit-fetch-identity", who, identity))
    await limited_body(request)
    store = chain(request)
    try:
        text = await in_thread(lambda: store.take_keyinit(identity, now()))
    except UnknownIdentity:
        raise unknown_identity() from None
    if text is None:
        raise not_found("no KeyInit is left for this identity", requirement="HC-27")
    return json_text_response(canonical_json({"keyinit": json.loads(text)}))


async def flush_keyinits(request: Request) -> Response:
    """HC-28."""
    identity = path_identity(request)
    body = await limited_body(request)
    obj = json_body(request, body)
    flush = spec_checked(lambda: hc.parse_flush(obj))
    if flush.identity != identity:
        spec_checked(lambda: _raise(BindingError("the flush request is for another identity",
                                                 requirement="HC-28")))
    store = chain(request)
    try:
        count = await in_thread(lambda: store.flush_keyinits(flush, now()))
    except UnknownIdentity:
        raise unknown_identity() from None
    return json_text_response(canonical_json({"identity": identity, "flushed": count}))


def routes() -> list[BaseRoute]:
    return [
        method_route(HEAD_PATH, {"GET": get_head}, name="hashchain_head"),
        method_route(ENTRIES_PATH, {"GET": get_entries}, name="hashchain_entries"),
        method_route(UIDS_PATH, {"POST": post_uid}, name="hashchain_uids"),
        method_route(UID_PATH, {"GET": get_uid}, name="hashchain_uid"),
        method_route(IDENTITY_PATH, {"GET": get_identity}, name="hashchain_identity"),
        method_route(IDENTITY_UID_PATH, {"PUT": put_uid}, name="hashchain_identity_uid"),
        method_route(KEYINITS_PATH, {"POST": post_keyinits}, name="hashchain_keyinits"),
        method_route(KEYINIT_FETCH_PATH, {"POST": fetch_keyinit}, name="hashchain_keyinit_fetch"),
        method_route(KEYINIT_FLUSH_PATH, {"POST": flush_keyinits},
                     name="hashchain_keyinit_flush"),
    ]
