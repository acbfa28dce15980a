"""Routes of the lock-layering flow (LOCK-1 .. LOCK-19).

  POST   /v1/users/{user_id}/keystores                      controller (bearer) creates
  GET    /v1/keystores/{keystore_id}                        read: the keystore and its keys
  POST   /v1/keystores/{keystore_id}/keys                   create-key
  GET    /v1/keystores/{keystore_id}/keys/{key_id}          export: the public description
  DELETE /v1/keystores/{keystore_id}/keys/{key_id}          delete-key
  POST   /v1/keystores/{keystore_id}/keys/{key_id}/sign     sign      (ed25519)
  POST   /v1/keystores/{keystore_id}/keys/{key_id}/verify   verify    (ed25519)
  POST   /v1/keystores/{keystore_id}/keys/{key_id}/encrypt  encrypt   (aes256gcm)
  POST   /v1/keystores/{keystore_id}/keys/{key_id}/decrypt  decrypt   (aes256gcm)
  POST   /v1/keystores/{keystore_id}/wrap                   wrap      (to any X25519 key)
  POST   /v1/keystores/{keystore_id}/keys/{key_id}/unwrap   unwrap    (x25519)

Keystore operations are authorized by a capability (`Authorization: Bearer kfc1...`),
not by the account server: whoever holds a capability may use what it grants, so a
controller can delegate an attenuated one (LOCK-11, LOCK-12). Every capability failure is
the uniform 401 (API-4, LOCK-18). In scenario "shares" an operation that needs the user
lock takes the user's share from the `Secret-Share` header and the other from the account
server; every share failure is one and the same 422 (LOCK-6, LOCK-10).

Order of checks: path identifiers (400), capability (401), body size (413), the key
exists (404), Content-Type (415), JSON shape (400), the key type supports the operation
(400), the shares open the user lock (422), the operation's own checks (400 / 422).

The flow is mounted only when a server lock is configured (Settings.server_lock);
otherwise its routes answer 404 and /v1/capabilities does not list it.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from keyflows.reference.auth import bearer_token
from keyflows.reference.common import (
    accounts,
    authenticate,
    json_body,
    json_text_response,
    limited_body,
    method_route,
    not_found,
    path_identifiers,
    spec_checked,
)
from keyflows.reference.config import Settings
from keyflows.reference.lock_layering_store import KeyIdTaken, LockStore
from keyflows.reference.problems import Problem, Unauthorized
from keyflows.reference.server_lock import ServerLock, ServerLockError, open_server_lock
from keyflows.reference.store import canonical_json
from keyflows.spec import contract
from keyflows.spec import lock_layering as spec
from keyflows.spec.encoding import b64url_encode
from keyflows.spec.errors import ShareError, SpecError

FLOW = "lock-layering"
SHARE_HEADER = "secret-share"
SHARE_REFUSED_DETAIL = "The secret shares do not open this keystore."

CREATE_PATH = "/v1/users/{user_id}/keystores"
KEYSTORE_PATH = "/v1/keystores/{keystore_id}"
KEYS_PATH = "/v1/keystores/{keystore_id}/keys"
KEY_PATH = "/v1/keystores/{keystore_id}/keys/{key_id}"
WRAP_PATH = "/v1/keystores/{keystore_id}/wrap"

T = TypeVar("T")
logger = logging.getLogger("keyflows.reference.lock_layering")


@dataclass
class LockLayering:
    """The flow's resources, kept on app.state.lock_layering."""

    store: LockStore
    server_lock: ServerLock
    random: Callable[[int], bytes] = os.urandom
    clock: Callable[[], int] = field(default=lambda: int(time.time()))

    def close(self) -> None:
        self.server_lock.close()
        self.store.close()


# --- app hooks (called by keyflows.reference.app) ------------------------------------------

def enabled(settings: Settings) -> bool:
    return settings.server_lock is not None


def setup(settings: Settings, server_lock: ServerLock | None = None) -> LockLayering | None:
    """Open the server lock (refusing a bad one: LOCK-19), unless the app opened it
    already, and the flow's tables."""
    if settings.server_lock is None:
        return None
    if server_lock is None:
        server_lock = open_server_lock(settings.server_lock)
    try:
        store = LockStore.open(settings.db_path)
    except BaseException:
        server_lock.close()
        raise
    return LockLayering(store=store, server_lock=server_lock)


def capabilities(request: Request) -> dict[str, Any]:
    """The flow's member of /v1/capabilities; nothing when the flow is off."""
    state = getattr(request.app.state, "lock_layering", None)
    return capability_members(state) if isinstance(state, LockLayering) else {}


CAPABILITIES_MEMBER = "lock_layering"


def capability_members(state: LockLayering) -> dict[str, Any]:
    return {CAPABILITIES_MEMBER: {
        "scenarios": list(spec.SCENARIOS),
        "key_types": list(spec.KEY_TYPES),
        "operations": list(spec.OPERATIONS),
        "capability": {"format": spec.CAPABILITY_PREFIX.rstrip("."),
                       "caveats": list(spec.CAVEAT_NAMES), "max_caveats": spec.MAX_CAVEATS},
        "share_header": "Secret-Share",
        "server_lock": state.server_lock.name,
    }}


def flow_state(request: Request) -> LockLayering:
    state = getattr(request.app.state, "lock_layering", None)
    if not isinstance(state, LockLayering):
        raise not_found("no such resource")
    return state


# --- helpers ---------------------------------------------------------------------------------

def share_refused() -> Problem:
    """LOCK-6: one error, byte for byte, for every share failure."""
    return Problem("invalid", SHARE_REFUSED_DETAIL, failure_class="share", requirement="LOCK-6")


async def server_side(work: Callable[[], T]) -> T:
    """Blocking store or server-lock work. A backend that cannot answer is a 503; stored
    data that does not open under the server lock is the server's fault, a 500."""
    try:
        return await run_in_threadpool(work)
    except ServerLockError as exc:
        logger.error("server lock failure: %s", exc)
        raise Problem("server-lock-unavailable", "the server lock cannot be used now",
                      requirement="LOCK-19") from None
    except SpecError as exc:
        logger.error("stored lock-layering data is unusable: %s", exc)
        raise Problem("internal-error", "the server failed to process the request") from None


def keystore_url(keystore_id: str) -> str:
    return f"/v1/keystores/{keystore_id}"


def key_url(keystore_id: str, key_id: str) -> str:
    return f"/v1/keystores/{keystore_id}/keys/{key_id}"


def key_description(record: spec.WorkingKeyRecord) -> dict[str, str]:
    """What a response may say about a key (LOCK-18): never its material."""
    out = {"key_id": record.key_id, "key_type": record.key_type,
           "key_url": key_url(record.keystore_id, record.key_id)}
    if record.public_key:
        out["public_key"] = b64url_encode(record.public_key)
    return out


def json_response(obj: Any, status: int = 200, headers: dict[str, str] | None = None
                  ) -> Response:
    """Keystore answers carry capabilities and key material: never stored by a cache
    (API-16)."""
    return json_text_response(canonical_json(obj), status,
                              headers={**contract.NO_STORE, **(headers or {})})


def user_share_header(request: Request) -> str | None:
    values = request.headers.getlist(SHARE_HEADER)
    return values[0].strip() if len(values) == 1 else None


@dataclass
class Call:
    """An authorized request on a keystore, after the checks up to the JSON shape."""

    state: LockLayering
    keystore: spec.KeystoreRecord
    key: spec.WorkingKeyRecord | None
    body: dict[str, Any]


async def authorized(request: Request, operation: str, *, body_kind: str | None = None
                     ) -> Call:
    """Every keystore route's common steps, in the module docstring's order."""
    key_scoped = operation in spec.KEY_OPERATIONS
    names = ("keystore_id", "key_id") if key_scoped else ("keystore_id",)
    ids = path_identifiers(request, *names)
    keystore_id, key_id = ids[0], (ids[1] if key_scoped else None)
    state = flow_state(request)
    token = bearer_token(request)
    keystore = await server_side(lambda: state.store.get_keystore(keystore_id))
    if keystore is None:
        raise Unauthorized()  # LOCK-18 / API-4: no hint that the keystore does not exist
    root_key = await server_side(lambda: state.server_lock.open(
        keystore.capability_root_key, keystore_id, spec.PURPOSE_CAPABILITY_ROOT_KEY))
    try:
        spec.check_capability(token, root_key, keystore_id, operation, key_id, state.clock())
    except SpecError:
        raise Unauthorized() from None
    raw = await limited_body(request)  # only once the capability holds (API-50)
    key = None
    if key_id is not None:
        key = await server_side(lambda: state.store.get_key(keystore_id, key_id))
        if key is None:
            raise not_found("no such key in this keystore", requirement="LOCK-14")
    body: dict[str, Any] = {}
    if body_kind is not None:
        obj = json_body(request, raw)
        body = spec_checked(lambda: spec.parse_request(body_kind, obj))
    if key is not None:
        spec_checked(lambda: spec.check_operation_supported(key.key_type, operation))
    return Call(state=state, keystore=keystore, key=key, body=body)


async def account_share(request: Request, controller: str) -> str | None:
    return await accounts(request).get_share(controller)


async def unlock(request: Request, call: Call) -> bytes:
    """The user lock key: from the server lock, or from the two shares (LOCK-6, LOCK-10)."""
    keystore = call.keystore
    if keystore.scenario == spec.SCENARIO_SERVER_HELD:
        return await server_side(lambda: call.state.server_lock.open(
            keystore.user_lock_key, keystore.keystore_id, spec.PURPOSE_USER_LOCK_KEY))
    user_share = user_share_header(request)
    other = await account_share(request, keystore.controller)
    try:
        return spec.unlock_with_shares(other, user_share, keystore.keystore_id,
                                       keystore.lock_check)
    except ShareError:
        raise share_refused() from None


async def working_material(request: Request, call: Call) -> bytes:
    lock_key = await unlock(request, call)
    assert call.key is not None
    record = call.key
    return await server_side(lambda: spec.open_working_key_record(lock_key, record))


# --- keystores ---------------------------------------------------------------------------------

async def create_keystore(request: Request) -> Response:
    """Steps 1-6: the controller (bearer, validated with the account server) creates a
    keystore and receives its root capability, once."""
    (user_id,) = path_identifiers(request, "user_id")
    state = flow_state(request)
    await authenticate(request, user_id)
    raw = await limited_body(request)
    obj = json_body(request, raw)
    scenario = spec_checked(lambda: spec.parse_request("create-keystore", obj))["scenario"]
    keystore_id = spec.new_identifier(state.random)
    root_key = spec.new_capability_root_key(state.random)
    user_lock_key = b""
    lock_check = b""
    if scenario == spec.SCENARIO_SHARES:
        other = await account_share(request, user_id)
        try:
            shares = [spec.decode_share(other), spec.decode_share(user_share_header(request))]
            lock_key = spec.lock_key_from_shares(shares, keystore_id)
        except SpecError:
            raise share_refused() from None
        lock_check = spec.make_lock_check(lock_key, keystore_id)
    lock = state.server_lock
    sealed_root = await server_side(lambda: lock.seal(
        root_key, keystore_id, spec.PURPOSE_CAPABILITY_ROOT_KEY))
    if scenario == spec.SCENARIO_SERVER_HELD:
        fresh = spec.new_user_lock_key(state.random)
        user_lock_key = await server_side(lambda: lock.seal(
            fresh, keystore_id, spec.PURPOSE_USER_LOCK_KEY))
    record = spec.KeystoreRecord(keystore_id, user_id, scenario, sealed_root,
                                 user_lock_key=user_lock_key, lock_check=lock_check)
    await server_side(lambda: state.store.add_keystore(record))
    capability = spec.encode_capability(spec.mint_root_capability(root_key, keystore_id))
    body = {"keystore_id": keystore_id, "keystore_url": keystore_url(keystore_id),
            "controller": user_id, "scenario": scenario, "capability": capability}
    return json_response(body, 201, headers={"Location": keystore_url(keystore_id)})


async def read_keystore(request: Request) -> Response:
    call = await authorized(request, spec.OP_READ)
    keystore = call.keystore
    keys = await server_side(lambda: call.state.store.list_keys(keystore.keystore_id))
    return json_response({"keystore_id": keystore.keystore_id,
                          "controller": keystore.controller, "scenario": keystore.scenario,
                          "keys": [key_description(k) for k in keys]})


# --- keys ---------------------------------------------------------------------------------------

async def create_key(request: Request) -> Response:
    """Step 7 (LOCK-7, LOCK-14): a fresh key sealed under the user lock."""
    call = await authorized(request, spec.OP_CREATE_KEY, body_kind="create-key")
    key_type = call.body["key_type"]
    lock_key = await unlock(request, call)
    keystore_id = call.keystore.keystore_id
    state = call.state
    while True:  # a 128-bit id collides only in theory; never reuse one (LOCK-14)
        record = spec.make_working_key_record(
            lock_key, state.random(spec.NONCE_LEN),
            spec.generate_working_key(key_type, state.random), keystore_id,
            spec.new_identifier(state.random), key_type)
        try:
            await server_side(partial(state.store.add_key, record))
            break
        except KeyIdTaken:
            continue
    return json_response(key_description(record), 201,
                         headers={"Location": key_url(keystore_id, record.key_id)})


async def export_key(request: Request) -> Response:
    """LOCK-14, LOCK-18: the public description, no material; needs no share."""
    call = await authorized(request, spec.OP_EXPORT)
    assert call.key is not None
    return json_response(key_description(call.key))


async def delete_key(request: Request) -> Response:
    call = await authorized(request, spec.OP_DELETE_KEY)
    assert call.key is not None
    key = call.key
    if not await server_side(lambda: call.state.store.delete_key(key.keystore_id, key.key_id)):
        raise not_found("no such key in this keystore", requirement="LOCK-14")
    return Response(status_code=204)


# --- operations --------------------------------------------------------------------------------

async def sign(request: Request) -> Response:
    """LOCK-15."""
    call = await authorized(request, spec.OP_SIGN, body_kind="sign")
    seed = await working_material(request, call)
    return json_response({"signature": b64url_encode(spec.sign(seed, call.body["message"]))})


async def verify(request: Request) -> Response:
    """LOCK-15: with the stored public key; needs no share."""
    call = await authorized(request, spec.OP_VERIFY, body_kind="verify")
    assert call.key is not None
    public = call.key.public_key
    valid = spec_checked(lambda: spec.verify(public, call.body["message"],
                                             call.body["signature"]))
    return json_response({"valid": valid})


async def encrypt(request: Request) -> Response:
    """LOCK-16: a fresh random nonce per encryption."""
    call = await authorized(request, spec.OP_ENCRYPT, body_kind="encrypt")
    key = await working_material(request, call)
    nonce = call.state.random(spec.NONCE_LEN)
    ciphertext = spec.encrypt(key, nonce, call.body["plaintext"], call.body["aad"])
    return json_response({"nonce": b64url_encode(nonce),
                          "ciphertext": b64url_encode(ciphertext)})


async def decrypt(request: Request) -> Response:
    """LOCK-16: a ciphertext that does not authenticate is a 422 (class aead)."""
    call = await authorized(request, spec.OP_DECRYPT, body_kind="decrypt")
    key = await working_material(request, call)
    body = call.body
    plaintext = spec_checked(lambda: spec.decrypt(key, body["nonce"], body["ciphertext"],
                                                  body["aad"]))
    return json_response({"plaintext": b64url_encode(plaintext)})


async def wrap(request: Request) -> Response:
    """LOCK-17: ECDH-ES to any X25519 public key; uses no keystore key, needs no share."""
    call = await authorized(request, spec.OP_WRAP, body_kind="wrap")
    body = call.body
    ephemeral = call.state.random(32)
    wrapped = spec_checked(lambda: spec.wrap(body["cek"], body["recipient_public_key"],
                                             ephemeral))
    return json_response({"epk": b64url_encode(wrapped.epk),
                          "wrapped_key": b64url_encode(wrapped.wrapped_key)})


async def unwrap(request: Request) -> Response:
    """LOCK-17: with the keystore's X25519 key."""
    call = await authorized(request, spec.OP_UNWRAP, body_kind="unwrap")
    private = await working_material(request, call)
    body = call.body
    cek = spec_checked(lambda: spec.unwrap(spec.Wrapped(body["epk"], body["wrapped_key"]),
                                           private))
    return json_response({"cek": b64url_encode(cek)})


def routes() -> list[BaseRoute]:
    def post(name: str, handler: Callable[[Request], Any]) -> BaseRoute:
        return method_route(f"{KEY_PATH}/{name}", {"POST": handler}, name=f"lock_{name}")

    return [
        method_route(CREATE_PATH, {"POST": create_keystore}, name="lock_keystores"),
        method_route(KEYSTORE_PATH, {"GET": read_keystore}, name="lock_keystore"),
        method_route(KEYS_PATH, {"POST": create_key}, name="lock_keys"),
        method_route(KEY_PATH, {"GET": export_key, "DELETE": delete_key}, name="lock_key"),
        method_route(WRAP_PATH, {"POST": wrap}, name="lock_wrap"),
        post("sign", sign), post("verify", verify), post("encrypt", encrypt),
        post("decrypt", decrypt), post("unwrap", unwrap),
    ]
