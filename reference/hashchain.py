"""Routes of the hashchain flow: a transparency log served as C2SP tlog-tiles.

  GET  /v1/hashchain/checkpoint                              the latest checkpoint (note)
  GET  /v1/hashchain/tile/<L>/<N>[.p/<W>]                    hash tiles (HC-44)
  GET  /v1/hashchain/tile/entries/<N>[.p/<W>]                entry bundles (HC-44)
  GET  /v1/hashchain/proof/inclusion?index=I&size=N          inclusion proof (HC-46)
  GET  /v1/hashchain/proof/consistency?size1=M&size2=N       consistency proof (HC-46)
  POST /v1/hashchain/uids                                    create a UID (201)
  GET  /v1/hashchain/uids/{record_index}                     the sealed UID of a record index
  GET  /v1/hashchain/identities/{identity}                   indexes of an identity's UIDs
  PUT  /v1/hashchain/identities/{identity}/uid               update the identity's UID
  POST /v1/hashchain/identities/{identity}/keyinits          publish one-time KeyInits (201)
  POST /v1/hashchain/identities/{identity}/keyinits/fetch    take exactly one KeyInit
  POST /v1/hashchain/identities/{identity}/keyinits/flush    flush them (signed, fresh)

No bearer token: every write is authorised by the signatures it carries. Before it
serves a checkpoint, or answers a UID write, the server submits its latest checkpoint to
its witnesses (tlog-witness add-checkpoint) and serves it with the cosignatures it got
(HC-43). Configuration: reference/hashchain_config.py (KEYFLOWS_HASHCHAIN_ORIGIN,
KEYFLOWS_HASHCHAIN_DOMAINS, KEYFLOWS_HASHCHAIN_WITNESSES,
KEYFLOWS_HASHCHAIN_MAX_CHECKPOINT_LAG).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from functools import partial
from typing import Any, TypeVar

import httpx
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import State
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from keyflows.reference import hashchain_config
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
from keyflows.reference.hashchain_store import Appended, HashchainStore
from keyflows.reference.limits import rate_limit, requester
from keyflows.reference.problems import from_spec_error, malformed
from keyflows.reference.store import Store, canonical_json
from keyflows.spec import hashchain as hc
from keyflows.spec import hashchain_merkle as merkle
from keyflows.spec import hashchain_note as note
from keyflows.spec import hashchain_tiles as tiles
from keyflows.spec import hashchain_uid as hu
from keyflows.spec import hashchain_witness as witness
from keyflows.spec.encoding import b64url_decode_exact, b64url_encode
from keyflows.spec.errors import DecodeError, SpecError

T = TypeVar("T")
FLOW = "hashchain"
PREFIX = "/v1/hashchain"
CHECKPOINT_PATH = f"{PREFIX}/checkpoint"
TILE_PATH = f"{PREFIX}/tile/{{path:path}}"
INCLUSION_PATH = f"{PREFIX}/proof/inclusion"
CONSISTENCY_PATH = f"{PREFIX}/proof/consistency"
UIDS_PATH = f"{PREFIX}/uids"
UID_PATH = f"{PREFIX}/uids/{{record_index}}"
IDENTITY_PATH = f"{PREFIX}/identities/{{identity}}"
IDENTITY_UID_PATH = f"{PREFIX}/identities/{{identity}}/uid"
KEYINITS_PATH = f"{PREFIX}/identities/{{identity}}/keyinits"
KEYINIT_FETCH_PATH = f"{PREFIX}/identities/{{identity}}/keyinits/fetch"
KEYINIT_FLUSH_PATH = f"{PREFIX}/identities/{{identity}}/keyinits/flush"

WITNESS_TIMEOUT_S = 3.0
MAX_KEYINITS_PER_REQUEST = 64
METHODS = ("checkpoint", "tiles", "proofs", "uid-create", "uid-update", "uid-fetch",
           "identity-lookup", "keyinit-add", "keyinit-fetch", "keyinit-flush")


class Publisher:
    """Puts the latest checkpoint to the witnesses, one round at a time (HC-43)."""

    def __init__(self, store: HashchainStore,
                 witnesses: tuple[hashchain_config.Witness, ...]) -> None:
        self.store = store
        self.witnesses = witnesses
        self._lock = asyncio.Lock()
        self._client: httpx.AsyncClient | None = None

    def client(self) -> httpx.AsyncClient:
        """One connection pool for every round (made on first use, inside the loop)."""
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=WITNESS_TIMEOUT_S)
        return self._client

    async def publish(self) -> tuple[int, bytes]:
        """The largest published checkpoint, after publishing the latest if it is not."""
        if self.store.publish_at_append:
            found = await read_soon(self.store.store, self.store.published_checkpoint)
            assert found is not None
            return found
        async with self._lock:
            size, signed, published = await in_thread(self.store.latest_checkpoint)
            if not published:
                # the note the store signed: its text, then the log's signature line
                text = signed[:signed.index(b"\n\n") + 1].decode("utf-8")
                client = self.client()
                answers = await asyncio.gather(*(self._ask(client, w, size, signed, text)
                                                 for w in self.witnesses))
                cosigned = signed + b"".join(a for a in answers if a is not None)
                await in_thread(lambda: self.store.mark_published(size, cosigned))
            found = await in_thread(self.store.published_checkpoint)
            assert found is not None
            return found

    async def _ask(self, client: httpx.AsyncClient, w: hashchain_config.Witness, size: int,
                   signed: bytes, text: str) -> bytes | None:
        """One witness: submit with a proof from its last size; after a 409, once more
        from the size it names. A cosignature is kept only if it verifies; the log serves
        its line as the witness sent it."""
        vkey = w.verifier.vkey
        old = await in_thread(lambda: self.store.witness_size(vkey))
        for _ in range(2):
            if old > size:
                return None  # the witness claims a larger tree than this log has
            proof = await in_thread(partial(self._proof, old, size)) if 0 < old < size else []
            body = witness.submission(old_size=old, checkpoint=signed, proof=proof)
            try:
                response = await client.post(f"{w.url}/{witness.ADD_CHECKPOINT}", content=body,
                                             headers={"Content-Type": "text/plain"})
            except httpx.HTTPError:
                return None
            reply = witness.read_answer(response.status_code,
                                        response.headers.get("content-type", ""),
                                        response.content, checkpoint_text=text,
                                        witness=w.verifier)
            if reply.line is not None:
                await in_thread(lambda: self.store.set_witness_size(vkey, size))
                return reply.line
            if reply.latest_size is None or reply.latest_size == old:
                return None
            old = reply.latest_size
            await in_thread(partial(self.store.set_witness_size, vkey, old))
        return None

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def _proof(self, size1: int, size2: int) -> list[bytes]:
        return self.store.read_tree(lambda _n, node: merkle.consistency_proof(size1, size2, node))


def setup(app: Starlette, svc: Services) -> None:
    """Create the log (entry 0) and hook publication logging when the app is made."""
    config = hashchain_config.load()
    store = HashchainStore.attach(svc.store, secrets=svc.secrets, origin=config.origin,
                                  domains=config.domains,
                                  publish_at_append=not config.witnesses,
                                  max_checkpoint_lag=config.max_checkpoint_lag)
    app.state.hashchain = store
    app.state.hashchain_publisher = Publisher(store, config.witnesses)


async def shutdown(app: Starlette) -> None:
    """Close the witness connections (from the app's lifespan)."""
    pub = getattr(app.state, "hashchain_publisher", None)
    if isinstance(pub, Publisher):
        await pub.aclose()


async def tlog_proof(state: State, index: int) -> bytes:
    """The tlog-proof of entry `index` (e.g. a key-directory root, HC-47) in a checkpoint
    published after it was appended (its witnesses asked first); `state` is the app's."""
    pub = state.hashchain_publisher
    assert isinstance(pub, Publisher)
    await pub.publish()
    return await read_soon(pub.store.store, lambda: pub.store.store.read(
        lambda db: pub.store.tlog_proof(db, index)))


async def read_soon(store: Store, work: Callable[[], T]) -> T:
    """A short read: on the event loop where the database answers without blocking
    (SQLite under WAL), else off it; spec rejections mapped as in_thread maps them."""
    if store.reads_inline:
        return spec_checked(work)
    return await in_thread(work)


def chain(request: Request) -> HashchainStore:
    store = request.app.state.hashchain
    assert isinstance(store, HashchainStore)
    return store


def publisher(request: Request) -> Publisher:
    pub = request.app.state.hashchain_publisher
    assert isinstance(pub, Publisher)
    return pub


def capabilities(request: Request) -> dict[str, Any]:
    """The flow's member of GET /v1/capabilities."""
    store = chain(request)
    return {"hashchain": {
        "origin": store.origin,
        "methods": list(METHODS),
        "domains": list(store.domains),
        "log_keys": [store.verifier.vkey],
        "witnesses": [{"vkey": w.verifier.vkey, "url": w.url}
                      for w in publisher(request).witnesses],
        "max_keyinits": MAX_KEYINITS_PER_REQUEST,
        "max_checkpoint_lag": store.max_checkpoint_lag,
    }}


def now() -> int:
    return int(time.time())


# --- path and query values ------------------------------------------------------------------

def path_identity(request: Request) -> str:
    identity = request.path_params["identity"]
    spec_checked(lambda: hu.check_identity(identity))
    return str(identity)


def path_record_index(request: Request) -> bytes:
    return spec_checked(lambda: b64url_decode_exact(request.path_params["record_index"], 32,
                                                    field="record_index", requirement="API-1"))


def query_size(request: Request, name: str) -> int:
    """One decimal 0..2^63-1 (HC-46); a parameter given twice is 400 (API-19), so is a
    missing one."""
    value = query_parameter(request, name)
    if value is None:
        raise malformed(f"query parameter {name} is required", requirement="HC-46")
    return int(spec_checked(lambda: note.parse_decimal(value, what=f"query parameter {name}",
                                                       requirement="HC-46")))


def text_response(body: bytes, media_type: str, cache_control: str) -> Response:
    return Response(body, media_type=media_type, headers={"Cache-Control": cache_control})


# --- the log ------------------------------------------------------------------------------------

async def get_checkpoint(request: Request) -> Response:
    """HC-38, HC-43, HC-45: the latest published checkpoint with its cosignatures."""
    await limited_body(request)
    _, signed = await publisher(request).publish()
    return text_response(signed, tiles.CHECKPOINT_MEDIA_TYPE, tiles.SHORT_LIVED)


async def get_tile(request: Request) -> Response:
    """HC-44, HC-45: a hash tile or an entry bundle, if the tree has it."""
    await limited_body(request)
    tile = spec_checked(lambda: tiles.parse_tile_path(request.path_params["path"]))
    body = await in_thread(lambda: chain(request).tile(tile))
    if body is None:
        raise not_found("the tree has no such tile yet", requirement="HC-44")
    return text_response(body, tiles.TILE_MEDIA_TYPE, tile.cache_control())


async def get_inclusion(request: Request) -> Response:
    """HC-46: the inclusion proof of an index in the tree of a size."""
    await limited_body(request)
    index, size = query_size(request, "index"), query_size(request, "size")
    ranges = spec_checked(lambda: merkle.inclusion_ranges(index, size))  # 0 <= index < size

    def prove(current: int, node: merkle.NodeReader) -> list[bytes] | None:
        return None if size > current else [merkle.range_hash(a, b, node) for a, b in ranges]

    proof = await in_thread(lambda: chain(request).read_tree(prove))
    if proof is None:
        raise not_found("size is beyond the log", requirement="HC-46")
    return json_text_response(canonical_json(tiles.inclusion_to_wire(index, size, proof)))


async def get_consistency(request: Request) -> Response:
    """HC-46: the consistency proof between two sizes, with the root at the first."""
    await limited_body(request)
    size1, size2 = query_size(request, "size1"), query_size(request, "size2")
    ranges = spec_checked(lambda: merkle.consistency_ranges(size1, size2))  # 0 < size1 <= size2

    def prove(current: int, node: merkle.NodeReader) -> tuple[bytes, list[bytes]] | None:
        if size2 > current:
            return None
        return (merkle.tree_root(size1, node),
                [merkle.range_hash(a, b, node) for a, b in ranges])

    found = await in_thread(lambda: chain(request).read_tree(prove))
    if found is None:
        raise not_found("size2 is beyond the log", requirement="HC-46")
    root1, proof = found
    return json_text_response(canonical_json(tiles.consistency_to_wire(size1, size2, root1,
                                                                       proof)))


# --- UIDs -----------------------------------------------------------------------------------------

async def reply_for(request: Request, uid: hu.Uid, appended: Appended) -> str:
    """HC-21: the entry with a tlog-proof of it in the checkpoint just published."""
    size, signed = await publisher(request).publish()
    proof = await in_thread(lambda: chain(request).read_tree(
        lambda _n, node: merkle.inclusion_proof(appended.index, size, node)))
    reply = hu.make_uid_reply(index=appended.index, entry=appended.entry,
                              record_hash=appended.record_hash, inclusion=proof,
                              checkpoint=signed)
    return canonical_json(hu.uid_reply_to_wire(uid, reply))


async def post_uid(request: Request) -> Response:
    """Steps 10-11: create (HC-14 .. HC-21)."""
    await rate_limit(request, ("uid-create", requester(request)))
    body = await limited_body(request)
    obj = json_body(request, body)
    store = chain(request)
    uid = spec_checked(lambda: hu.parse_uid(obj))
    record_hash = spec_checked(lambda: hu.verify_uid_create(uid, now=now(),
                                                            domains=store.domains))
    appended = await in_thread(lambda: store.create_uid(uid, record_hash))
    location = f"{UIDS_PATH}/{b64url_encode(hc.record_index_of(record_hash))}"
    return json_text_response(await reply_for(request, uid, appended), 201,
                              headers={"Location": location})


async def put_uid(request: Request) -> Response:
    """Steps 10-11: update (HC-17, HC-20, HC-21)."""
    identity = path_identity(request)
    body = await limited_body(request)
    obj = json_body(request, body)
    store = chain(request)
    uid = spec_checked(lambda: hu.parse_uid(obj))
    spec_checked(lambda: hu.check_update_path(uid, identity, domains=store.domains))
    appended = await unknown_is_404(lambda: store.update_uid(uid, now()))
    return json_text_response(await reply_for(request, uid, appended))


async def unknown_is_404(work: Callable[[], T]) -> T:
    """Storage work for an identity; an identity without a UID is a 404 (HC-20), any
    other rejection the problem its failure class maps to."""
    try:
        return await run_in_threadpool(work)
    except hu.UnknownIdentity as exc:
        raise not_found(str(exc.args[0]), requirement=exc.requirement) from None
    except SpecError as exc:
        raise from_spec_error(exc) from None


async def get_uid(request: Request) -> Response:
    """HC-24: the sealed UID of a record index, with its entry and index."""
    record_index = path_record_index(request)
    await limited_body(request)
    store = chain(request)
    found = await in_thread(lambda: store.fetch_uid(record_index))
    if found is None:
        raise not_found("no UID has this record index", requirement="HC-24")
    index, entry, sealed = found
    return json_text_response(canonical_json({
        "record_index": b64url_encode(record_index), "index": index,
        "entry": b64url_encode(entry), "sealed_uid": b64url_encode(sealed)}))


async def get_identity(request: Request) -> Response:
    """The indexes of an identity's UID entries (a convenience; clients check each)."""
    identity = path_identity(request)
    await limited_body(request)
    store = chain(request)
    indexes = await in_thread(lambda: store.lookup(identity))
    if not indexes:
        raise not_found("this identity has no UID here", requirement="HC-20")
    return json_text_response(canonical_json({"identity": identity, "indexes": indexes}))


# --- KeyInits ------------------------------------------------------------------------------

def parse_keyinits(obj: Any) -> list[hu.KeyInit]:
    if not isinstance(obj, dict) or set(obj) != {"keyinits"}:
        raise DecodeError("the body must be {\"keyinits\": [...]}", requirement="API-6")
    items = obj["keyinits"]
    if not isinstance(items, list) or not 1 <= len(items) <= MAX_KEYINITS_PER_REQUEST:
        raise DecodeError(f"keyinits must be a list of 1..{MAX_KEYINITS_PER_REQUEST}",
                          requirement="API-6")
    return [hu.parse_keyinit(item) for item in items]


async def post_keyinits(request: Request) -> Response:
    """HC-25, HC-26."""
    identity = path_identity(request)
    body = await limited_body(request)
    obj = json_body(request, body)
    keyinits = spec_checked(lambda: parse_keyinits(obj))
    store = chain(request)
    count = await unknown_is_404(lambda: store.add_keyinits(identity, keyinits, now()))
    return json_text_response(canonical_json({"identity": identity, "accepted": count}), 201)


async def fetch_keyinit(request: Request) -> Response:
    """HC-27: exactly one KeyInit, never handed out again; 404 when none is left.
    Counted per requester, so no one can drain another identity's pool (API-54)."""
    identity = path_identity(request)
    who = requester(request)
    await rate_limit(request, ("keyinit-fetch", who), ("keyinit-fetch-identity", who, identity))
    await limited_body(request)
    store = chain(request)
    text = await unknown_is_404(lambda: store.take_keyinit(identity, now()))
    if text is None:
        raise not_found("no KeyInit is left for this identity", requirement="HC-27")
    return json_text_response(canonical_json({"keyinit": json.loads(text)}))


async def flush_keyinits(request: Request) -> Response:
    """HC-28."""
    identity = path_identity(request)
    body = await limited_body(request)
    obj = json_body(request, body)
    flush = spec_checked(lambda: hu.parse_flush(obj))
    store = chain(request)
    count = await unknown_is_404(lambda: store.flush_keyinits(identity, flush, now()))
    return json_text_response(canonical_json({"identity": identity, "flushed": count}))


def routes() -> list[BaseRoute]:
    return [
        method_route(CHECKPOINT_PATH, {"GET": get_checkpoint}, name="hashchain_checkpoint"),
        method_route(TILE_PATH, {"GET": get_tile}, name="hashchain_tile"),
        method_route(INCLUSION_PATH, {"GET": get_inclusion}, name="hashchain_inclusion"),
        method_route(CONSISTENCY_PATH, {"GET": get_consistency}, name="hashchain_consistency"),
        method_route(UIDS_PATH, {"POST": post_uid}, name="hashchain_uids"),
        method_route(UID_PATH, {"GET": get_uid}, name="hashchain_uid"),
        method_route(IDENTITY_PATH, {"GET": get_identity}, name="hashchain_identity"),
        method_route(IDENTITY_UID_PATH, {"PUT": put_uid}, name="hashchain_identity_uid"),
        method_route(KEYINITS_PATH, {"POST": post_keyinits}, name="hashchain_keyinits"),
        method_route(KEYINIT_FETCH_PATH, {"POST": fetch_keyinit}, name="hashchain_keyinit_fetch"),
        method_route(KEYINIT_FLUSH_PATH, {"POST": flush_keyinits},
                     name="hashchain_keyinit_flush"),
    ]
