"""Flow hashchain, the key directory's routes (directory steps 14-23, HC-80 .. HC-99).

GET /v1/directory                                      the VRF key and the latest epoch
GET /v1/directory/keypair/{user_id}/{client_id}        a lookup answer (?epoch=N: a past one)
GET /v1/directory/keypair/{user_id}/{client_id}/history
GET /v1/directory/devices/{user_id}/{client_id}        and .../history
GET /v1/directory/uid/{identity}                       and .../history

No credentials: a lookup names what it asks for, and nothing lists names (HC-99). The
directory learns changes from hooks that run inside the transactions that make them (a
keypair publication or deletion, a signed device list, a UID), and publishes them as the
next epoch before it answers (HC-98). Every answer is built by
keyflows.spec.hashchain_directory.
"""

from __future__ import annotations

import functools
import json
import os
import sqlite3
import time
from collections import OrderedDict

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from keyflows.reference import hashchain
from keyflows.reference.common import (
    PreparedResponse,
    Services,
    in_thread,
    json_text_response,
    limited_body,
    method_route,
    not_found,
    path_identifiers,
    prepared_json,
    query_parameter,
    quick_read,
    spec_checked,
)
from keyflows.reference.directory_store import DirectoryStore, Head
from keyflows.reference.keypair_publication import public_view_text
from keyflows.reference.store import canonical_json
from keyflows.spec import hashchain_directory as hd
from keyflows.spec import hashchain_directory_client as hdc
from keyflows.spec import hashchain_note as note
from keyflows.spec import keypair_publication as kp
from keyflows.spec.encoding import b64url_encode

FLOW = "hashchain"
PREFIX = "/v1/directory"
#: The secret the VRF key is kept under (sealed at rest, HC-97).
VRF_KEY_SECRET = "hashchain.directory-vrf-key"
#: An epoch is published at least this often even without changes (HC-98); well under
#: the clients' default maximum epoch age (HC-91).
HEARTBEAT = 3600
#: Lookup answers kept in memory. An answer names one epoch and carries its log proof in
#: one checkpoint: both are published for good, so a kept answer is never stale and none
#: is ever invalidated (a process sees another's epochs and checkpoints at once, since
#: both numbers are read for every request). The least recently served go first.
ANSWERS_KEPT = 2048

#: (kind, names, history, epoch, checkpoint size) of an answer.
AnswerKey = tuple[str, tuple[str, ...], bool, int, int]


class BuiltAnswers:
    """The bytes and headers of lookup answers already built, least recently served first.
    A kept answer is sent as it is, to every request that asks for it (as the public-key
    GET's prepared answer is): sending a response reads its bytes and header list, and
    nothing changes them."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._kept: OrderedDict[AnswerKey, PreparedResponse] = OrderedDict()

    def get(self, key: AnswerKey) -> PreparedResponse | None:
        built = self._kept.get(key)
        if built is None:
            return None
        self._kept.move_to_end(key)
        return built

    def keep(self, key: AnswerKey, built: PreparedResponse) -> None:
        self._kept[key] = built
        self._kept.move_to_end(key)
        while len(self._kept) > self.capacity:
            self._kept.popitem(last=False)


def setup(app: Starlette, svc: Services) -> None:
    """The directory over the log (hashchain.setup runs first), its hooks, and epoch 1."""
    log = app.state.hashchain
    seed = svc.secrets.get_or_create(VRF_KEY_SECRET, lambda: os.urandom(32))
    directory = DirectoryStore(svc.store, vrf_secret_key=seed, append_entry=log.append_entry,
                               random=os.urandom, heartbeat=HEARTBEAT)

    # Each hook runs in the transaction of a change its flow's route has just verified
    # for these names (a keypair's binding, a UID's own identity, a device list signed
    # for this user and application): the value bytes (step 15) are made from it.
    def published(db: sqlite3.Connection, user_id: str, client_id: str, _version: int,
                  record_text: str) -> None:
        record = kp.parse_record(json.loads(record_text))
        directory.queue(db, hd.keypair_label(user_id, client_id),
                        json.loads(public_view_text(record_text)),
                        hd.keypair_value_bytes(record))

    def deleted(db: sqlite3.Connection, user_id: str, client_id: str) -> None:
        directory.queue(db, hd.keypair_label(user_id, client_id), None, hd.TOMBSTONE)

    def uid_recorded(db: sqlite3.Connection, identity: str, record_hash: bytes,
                     uid_json: str) -> None:
        directory.queue(db, hd.uid_label(identity), json.loads(uid_json), record_hash)

    def listed(db: sqlite3.Connection, user_id: str, client_id: str, signed: bytes) -> None:
        directory.queue(db, hd.devices_label(user_id, client_id), b64url_encode(signed),
                        signed)

    svc.store.publication_hooks.append(published)
    svc.store.device_list_hooks.append(listed)
    svc.store.deletion_hooks.append(deleted)
    svc.store.uid_hooks.append(uid_recorded)
    directory.publish_if_due(now())
    app.state.directory = directory
    app.state.directory_answers = BuiltAnswers(ANSWERS_KEPT)


def now() -> int:
    return int(time.time())


def directory_of(request: Request) -> DirectoryStore:
    store = request.app.state.directory
    assert isinstance(store, DirectoryStore)
    return store


async def fresh(request: Request) -> Head:
    """HC-98: the directory's head, after publishing what waits (or a heartbeat epoch):
    nothing is answered from an epoch that misses a change made before the request."""
    store = directory_of(request)
    head = await quick_read(request, store.head)
    if store.due(head, now()):  # mostly not
        await in_thread(lambda: store.publish_if_due(now()))
        head = await quick_read(request, store.head)
    assert head is not None
    return head


async def checkpoint_size(request: Request, head: Head) -> int:
    """The size of the published checkpoint an answer's log proof is read in: the log's
    largest, put to its witnesses first when it is not published yet (HC-43)."""
    if head.checkpoint_current:
        return head.checkpoint
    size, _checkpoint = await hashchain.publisher(request).publish()
    return size


async def get_directory(request: Request) -> Response:
    """HC-88: the VRF public key and the latest epoch."""
    await limited_body(request)
    head = await fresh(request)
    return json_text_response(canonical_json({
        "vrf_public_key": b64url_encode(directory_of(request).vrf_public_key),
        "epoch": head.epoch.epoch, "published_at": head.epoch.published_at,
        "heartbeat": directory_of(request).heartbeat, "max_epoch_age": hdc.DEFAULT_MAX_EPOCH_AGE}))


def built_answers(request: Request) -> BuiltAnswers:
    answers = request.app.state.directory_answers
    assert isinstance(answers, BuiltAnswers)
    return answers


def query_epoch(request: Request) -> int | None:
    """HC-88: ?epoch=N, a decimal in 1..2^63-1; repeated is 400 (API-19)."""
    value = query_parameter(request, "epoch")
    if value is None:
        return None
    return int(spec_checked(lambda: note.parse_decimal(value, what="query parameter epoch",
                                                       requirement="HC-88")))


@functools.lru_cache(maxsize=ANSWERS_KEPT)
def checked_label(kind: str, names: tuple[str, ...]) -> hd.Label:
    """The Label of these names, checked when made (HC-80). A Label is a function of its
    kind and names alone, so the one made last time is the same label; names it refuses
    raise every time (a refusal is not remembered)."""
    return hd.Label(kind, names)


def label_of(request: Request, kind: str) -> hd.Label:
    """HC-80: the label a lookup names, its names checked (a Label is checked when made)
    before any query sees them."""
    if kind == hd.KIND_UID:
        identity = str(request.path_params["identity"])
        return spec_checked(lambda: checked_label(hd.KIND_UID, (identity,)))
    user_id, client_id = path_identifiers(request, "user_id", "client_id")
    return spec_checked(lambda: checked_label(kind, (user_id, client_id)))


async def answer(request: Request, kind: str, *, history: bool) -> Response:
    """HC-88, HC-95: the lookup answer (and the versions) at the latest or asked epoch,
    built once per epoch and checkpoint (both read for every request, in one read)."""
    label = label_of(request, kind)
    at_epoch = query_epoch(request)
    await limited_body(request)
    head = await fresh(request)
    size = await checkpoint_size(request, head)
    epoch = head.epoch.epoch if at_epoch is None else at_epoch
    answers = built_answers(request)
    key = (label.kind, label.names, history, epoch, size)
    kept = answers.get(key)
    if kept is not None:
        return kept
    built = await build_answer(request, directory_of(request), label, epoch, history=history)
    answers.keep(key, built)
    return built


async def build_answer(request: Request, store: DirectoryStore, label: hd.Label,
                       epoch: int, *, history: bool) -> PreparedResponse:
    """The answer at `epoch`, read and proved (HC-88, HC-95); 404 for an epoch not
    published (yet)."""
    # Short reads on the event loop where the database allows; proving a label's VRF
    # output (one never changed) takes milliseconds: off it.
    kept = await quick_read(request, lambda: store.kept_position(label))
    positioned = kept if kept is not None else await in_thread(lambda: store.positioned(label))
    found = await quick_read(request, lambda: store.lookup(label, positioned, epoch))
    if found is None:
        raise not_found("the directory has no such epoch", requirement="HC-88")
    stored, latest, proof, versions = found
    log_proof = await hashchain.tlog_proof(request.app.state, stored.log_index)
    leaf = None if latest is None else hd.FoundLeaf(
        version=latest.leaf.version, epoch=latest.leaf.epoch, previous=latest.leaf.previous,
        value=latest.value)
    wire = hd.answer_to_wire(hd.Answer(
        label=label, epoch=stored.epoch.epoch, published_at=stored.epoch.published_at,
        vrf_proof=positioned.proof, leaf=leaf, map_proof=proof, log_entry=stored.entry,
        log_proof=log_proof))
    if history:
        wire = hdc.history_to_wire(wire, [(v.leaf.epoch, v.value) for v in versions])
    return prepared_json(canonical_json(wire))


async def get_keypair(request: Request) -> Response:
    return await answer(request, hd.KIND_KEYPAIR, history=False)


async def get_keypair_history(request: Request) -> Response:
    return await answer(request, hd.KIND_KEYPAIR, history=True)


async def get_devices(request: Request) -> Response:
    return await answer(request, hd.KIND_DEVICES, history=False)


async def get_devices_history(request: Request) -> Response:
    return await answer(request, hd.KIND_DEVICES, history=True)


async def get_uid(request: Request) -> Response:
    return await answer(request, hd.KIND_UID, history=False)


async def get_uid_history(request: Request) -> Response:
    return await answer(request, hd.KIND_UID, history=True)


KEYPAIR_PATH = f"{PREFIX}/keypair/{{user_id}}/{{client_id}}"
DEVICES_PATH = f"{PREFIX}/devices/{{user_id}}/{{client_id}}"
UID_PATH = f"{PREFIX}/uid/{{identity}}"


def routes() -> list[BaseRoute]:
    return [
        method_route(PREFIX, {"GET": get_directory}, name="directory"),
        method_route(KEYPAIR_PATH, {"GET": get_keypair}, name="directory_keypair"),
        method_route(f"{KEYPAIR_PATH}/history", {"GET": get_keypair_history},
                     name="directory_keypair_history"),
        method_route(DEVICES_PATH, {"GET": get_devices}, name="directory_devices"),
        method_route(f"{DEVICES_PATH}/history", {"GET": get_devices_history},
                     name="directory_devices_history"),
        method_route(UID_PATH, {"GET": get_uid}, name="directory_uid"),
        method_route(f"{UID_PATH}/history", {"GET": get_uid_history},
                     name="directory_uid_history"),
    ]
