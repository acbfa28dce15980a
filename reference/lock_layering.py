"""Routes of the lock-layering flow (LOCK-1 .. LOCK-29).

  POST   /v1/users/{user_id}/keystores                       controller (bearer) creates
  POST   /v1/users/{user_id}/keystores/{keystore_id}/capability  a fresh root capability
  GET    /v1/keystores/{keystore_id}                         read: the keystore and its keys
  POST   /v1/keystores/{keystore_id}/keys                    create-key
  GET    /v1/keystores/{keystore_id}/keys/{key_id}           export: the public description
  DELETE /v1/keystores/{keystore_id}/keys/{key_id}           delete-key
  POST   /v1/keystores/{keystore_id}/keys/{key_id}/{op}      sign, verify (ed25519);
                                                             encrypt, decrypt (aes256gcm);
                                                             unwrap (x25519); computemac,
                                                             verifymac (hmac-sha256); rotate
  POST   /v1/keystores/{keystore_id}/wrap                    wrap (to any X25519 key)
  POST   /v1/keystores/{keystore_id}/revocations             revoke a capability
  POST   /v1/keystores/{keystore_id}/grants                  an unlock grant for a capability

Keystore operations are authorized by a capability (`Authorization: Bearer kfc1...`),
not by the account server: whoever holds a capability -- and, for one bound to a holder,
signs the request with the holder's key (RFC 9421) -- may use what it grants. Every
capability failure, for a keystore that exists or not, is the uniform 401 (API-4,
LOCK-29). In scenario "shares" an operation that needs the user lock takes the user's
share from the `Secret-Share` header and the other from the account server, or an unlock
grant from `Unlock-Grant`; every unlock failure is one and the same 422 (LOCK-6, LOCK-28).

Order of checks: path identifiers (400), the capability and the request signature,
revocations and the nonce store (401, before the body is read: API-50), body size (413),
the body's Content-Digest if the signature covers it (401), Content-Type (415), JSON
shape (400), the key exists (404, API-18), the key type supports the operation (400), the
lock opens (422), in a vault-bound keystore the version's document (502 / 503, LOCK-33),
the operation's own checks (400 / 422). The decisions are the spec's
(keyflows.spec.lock_layering, keyflows.spec.lock_layering_capability); this module stores
and serves.

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
from keyflows.reference.config import Settings, database_of
from keyflows.reference.edv_client import VaultClients, bad_answer
from keyflows.reference.lock_layering_store import KeyIdTaken, LockStore
from keyflows.reference.problems import Problem, Unauthorized
from keyflows.reference.server_lock import ServerLock, ServerLockError, open_server_lock
from keyflows.reference.store import canonical_json
from keyflows.spec import contract, edv, http_signatures
from keyflows.spec import lock_layering as spec
from keyflows.spec import lock_layering_capability as cap
from keyflows.spec.encoding import b64url_encode
from keyflows.spec.errors import ShareError, SpecError

FLOW = "lock-layering"
SHARE_HEADER = "secret-share"
GRANT_HEADER = "unlock-grant"
SHARE_REFUSED_DETAIL = "The secret shares do not open this keystore."

CREATE_PATH = "/v1/users/{user_id}/keystores"
ROOT_PATH = "/v1/users/{user_id}/keystores/{keystore_id}/capability"
KEYSTORE_PATH = "/v1/keystores/{keystore_id}"
KEYS_PATH = "/v1/keystores/{keystore_id}/keys"
KEY_PATH = "/v1/keystores/{keystore_id}/keys/{key_id}"
WRAP_PATH = "/v1/keystores/{keystore_id}/wrap"
REVOCATIONS_PATH = "/v1/keystores/{keystore_id}/revocations"
GRANTS_PATH = "/v1/keystores/{keystore_id}/grants"

T = TypeVar("T")
logger = logging.getLogger("keyflows.reference.lock_layering")


@dataclass
class LockLayering:
    """The flow's resources, kept on app.state.lock_layering."""

    store: LockStore
    server_lock: ServerLock
    root_lifetime: int = 30 * 86400
    vaults: VaultClients = field(default_factory=lambda: VaultClients((), timeout=5.0))
    random: Callable[[int], bytes] = os.urandom
    clock: Callable[[], int] = field(default=lambda: int(time.time()))

    def close(self) -> None:
        self.vaults.close_idle()
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
        store = LockStore.open(database_of(settings))
    except BaseException:
        server_lock.close()
        raise
    return LockLayering(store=store, server_lock=server_lock,
                        root_lifetime=settings.root_capability_lifetime,
                        vaults=VaultClients(settings.edv_servers,
                                            timeout=settings.account_timeout))


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
        "capability": {"format": cap.CAPABILITY_PREFIX.rstrip("."),
                       "caveats": list(cap.CAVEAT_NAMES), "max_caveats": cap.MAX_CAVEATS,
                       "root_lifetime": state.root_lifetime,
                       "signature": {"label": cap.SIGNATURE_LABEL, "tag": cap.SIGNATURE_TAG,
                                     "max_age": cap.SIGNATURE_MAX_AGE,
                                     "components": list(cap.REQUIRED_COMPONENTS)}},
        "share_header": "Secret-Share",
        "grant_header": cap.GRANT_HEADER,
        "max_key_versions": spec.MAX_KEY_VERSIONS,
        "edv_servers": list(state.vaults.servers),
        "server_lock": state.server_lock.name,
    }}


def flow_state(request: Request) -> LockLayering:
    state = getattr(request.app.state, "lock_layering", None)
    if not isinstance(state, LockLayering):
        raise not_found("no such resource")
    return state


# --- helpers ---------------------------------------------------------------------------------

def share_refused() -> Problem:
    """LOCK-6, LOCK-28: one error, byte for byte, for every unlock failure."""
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


async def seal_secret(state: LockLayering, secret: bytes, keystore_id: str, purpose: str
                      ) -> bytes:
    """The one place this flow seals a server secret under the server lock (LOCK-5)."""
    return await server_side(lambda: state.server_lock.seal(secret, keystore_id, purpose))


async def open_secret(state: LockLayering, sealed: bytes, keystore_id: str, purpose: str
                      ) -> bytes:
    """The one place this flow opens a server secret sealed under the server lock."""
    return await server_side(lambda: state.server_lock.open(sealed, keystore_id, purpose))


def keystore_url(keystore_id: str) -> str:
    return f"/v1/keystores/{keystore_id}"


def key_url(keystore_id: str, key_id: str) -> str:
    return f"/v1/keystores/{keystore_id}/keys/{key_id}"


def key_description(record: spec.WorkingKeyRecord) -> dict[str, Any]:
    """What a response may say about a key (LOCK-18, LOCK-22): never its material."""
    return spec.key_description(record, key_url(record.keystore_id, record.key_id))


def json_response(obj: Any, status: int = 200, headers: dict[str, str] | None = None
                  ) -> Response:
    """Keystore answers carry capabilities, grants and key descriptions: never stored by a
    cache (API-16)."""
    return json_text_response(canonical_json(obj), status,
                              headers={**contract.NO_STORE, **(headers or {})})


def header_values(request: Request, name: str) -> list[str]:
    return [v.strip() for v in request.headers.getlist(name)]


def signed_view(request: Request, raw: bytes | None) -> http_signatures.Request:
    """The request as RFC 9421 sees it: method, Host, the path as sent, query, field
    lines and body (LOCK-25); `raw` None while the body is not read yet."""
    scope = request.scope
    raw_path = scope.get("raw_path") or scope.get("path", "").encode("utf-8")
    headers = tuple((k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"])
    return http_signatures.Request(
        method=request.method, authority=request.headers.get("host", ""),
        path=raw_path.decode("latin-1"), query=scope.get("query_string", b"").decode("latin-1"),
        headers=headers, body=raw, scheme=request.url.scheme)


@dataclass
class Call:
    """An authorized request on a keystore, after the checks up to the JSON shape."""

    state: LockLayering
    keystore: spec.KeystoreRecord
    key: spec.WorkingKeyRecord | None
    body: dict[str, Any]
    auth: cap.Authorized
    root_key: bytes


async def check_capability(request: Request, state: LockLayering, keystore_id: str,
                           operation: str, key_id: str | None
                           ) -> tuple[spec.KeystoreRecord, cap.Authorized, bytes]:
    """Step 9 (LOCK-11 .. LOCK-29), before the body is read (API-50): every failure,
    whether the keystore exists or not, is the uniform 401."""
    token = bearer_token(request)
    keystore = await server_side(lambda: state.store.get_keystore(keystore_id))
    if keystore is None:
        raise Unauthorized()  # LOCK-29 / API-4: no hint that the keystore does not exist
    root_key = await open_secret(state, keystore.capability_root_key, keystore_id,
                                 spec.PURPOSE_CAPABILITY_ROOT_KEY)
    now = state.clock()
    try:
        auth = cap.check_capability(token, root_key, keystore_id, operation, key_id, now,
                                    signed_view(request, None))
    except SpecError:
        raise Unauthorized() from None
    revoked = await server_side(lambda: state.store.revoked_among(keystore_id,
                                                                  auth.revocation_ids))
    try:
        cap.check_not_revoked(auth.revocation_ids, revoked)
    except SpecError:
        raise Unauthorized() from None
    claim = auth.nonce
    if claim is not None and not await server_side(
            lambda: state.store.claim_nonce(claim.nonce_id, claim.keep_until, now)):
        raise Unauthorized()  # LOCK-26: a replayed signed request
    return keystore, auth, root_key


async def authorized(request: Request, operation: str, *, body_kind: str | None = None
                     ) -> Call:
    """Every keystore route's common steps, in the module docstring's order."""
    key_scoped = operation in spec.KEY_OPERATIONS
    names = ("keystore_id", "key_id") if key_scoped else ("keystore_id",)
    ids = path_identifiers(request, *names)
    keystore_id, key_id = ids[0], (ids[1] if key_scoped else None)
    state = flow_state(request)
    keystore, auth, root_key = await check_capability(request, state, keystore_id, operation,
                                                      key_id)
    raw = await limited_body(request)  # only once the capability holds (API-50)
    try:
        cap.check_signed_body(auth, signed_view(request, raw))
    except SpecError:
        raise Unauthorized() from None
    body: dict[str, Any] = {}
    if body_kind is not None:  # media type and shape before existence (API-18)
        obj = json_body(request, raw)
        body = spec_checked(lambda: spec.parse_request(body_kind, obj))
    key = None
    if key_id is not None:
        key = await server_side(lambda: state.store.get_key(keystore_id, key_id))
        if key is None:
            raise not_found("no such key in this keystore", requirement="LOCK-14")
    if key is not None:
        spec_checked(lambda: spec.check_operation_supported(key.key_type, operation))
    return Call(state=state, keystore=keystore, key=key, body=body, auth=auth,
                root_key=root_key)


async def account_share(request: Request, controller: str) -> str | None:
    return await accounts(request).get_share(controller)


async def unlock(request: Request, call: Call) -> bytes:
    """The user lock key: from the server lock, or from the two shares (LOCK-6, LOCK-10),
    or from an unlock grant for the request's capability (LOCK-28)."""
    keystore, state = call.keystore, call.state
    if keystore.scenario == spec.SCENARIO_SERVER_HELD:
        return await open_secret(state, keystore.user_lock_key, keystore.keystore_id,
                                 spec.PURPOSE_USER_LOCK_KEY)
    shares, grants = header_values(request, SHARE_HEADER), header_values(request, GRANT_HEADER)
    try:
        method = cap.unlock_method(shares, grants)
    except ShareError:
        raise share_refused() from None
    if method == cap.UNLOCK_BY_GRANT:
        return await unlock_by_grant(call, grants[0])
    user_share = shares[0] if len(shares) == 1 else None
    other = await account_share(request, keystore.controller)
    try:
        return spec.unlock_with_shares(other, user_share, keystore.keystore_id,
                                       keystore.lock_check)
    except ShareError:
        raise share_refused() from None


async def unlock_by_grant(call: Call, grant: str) -> bytes:
    """LOCK-28: the lock key an unlock grant carries, for the request's capability only."""
    keystore, state = call.keystore, call.state
    grant_key = await open_secret(state, keystore.unlock_grant_key, keystore.keystore_id,
                                  spec.PURPOSE_UNLOCK_GRANT_KEY)
    try:
        return cap.open_unlock_grant(grant_key, grant, keystore.keystore_id, call.auth.links,
                                     state.clock())
    except ShareError:
        raise share_refused() from None


async def working_material(request: Request, call: Call, version: int | None = None
                           ) -> tuple[bytes, int]:
    """The material of the named (default: current) version and its number (LOCK-22); in a
    vault-bound keystore its sealed form is read back from the vault (LOCK-33)."""
    assert call.key is not None
    record = call.key
    entry = spec_checked(lambda: record.version(version))
    lock_key = await unlock(request, call)
    if call.keystore.edv is None:
        material = await server_side(lambda: spec.open_key_version(lock_key, record, entry))
        return material, entry.version
    sealed = await read_sealed_version(call.state, call.keystore, record, entry)
    try:
        # Anyone can encrypt a document to the recipient key: what authenticates the
        # material is its seal under the user lock (LOCK-7, LOCK-33).
        return spec.open_key_version(lock_key, record, entry, sealed), entry.version
    except SpecError as exc:
        raise bad_answer(f"a working-key document's material: {exc}") from None


# --- the keystore's encrypted data vault (step 12) ---------------------------------------

@dataclass
class Vault:
    """A keystore's vault binding with its secrets opened."""

    base: str
    vault_id: str
    token: str
    recipient_key: bytes
    mac_key: bytes


async def open_vault(state: LockLayering, keystore: spec.KeystoreRecord) -> Vault:
    binding = keystore.edv
    assert binding is not None
    base, vault_id = spec_checked(lambda: edv.check_vault_url(binding.vault,
                                                             state.vaults.servers))
    ks = keystore.keystore_id
    return Vault(base, vault_id,
                 (await open_secret(state, binding.token, ks, spec.PURPOSE_EDV_TOKEN)).decode(),
                 await open_secret(state, binding.recipient_key, ks,
                                   spec.PURPOSE_EDV_RECIPIENT_KEY),
                 await open_secret(state, binding.mac_key, ks, spec.PURPOSE_EDV_MAC_KEY))


async def read_sealed_version(state: LockLayering, keystore: spec.KeystoreRecord,
                              record: spec.WorkingKeyRecord, entry: spec.KeyVersion) -> bytes:
    """LOCK-33: find the version's one document by its blinded index, open it and check
    that it is this keystore's, key's, version's, type's and public key's."""
    vault = await open_vault(state, keystore)
    query = edv.key_query(vault.mac_key, keystore.keystore_id, record.key_id, entry.version)
    found = await state.vaults.find(vault.base, vault.vault_id, vault.token, query)
    try:
        return edv.open_key_document(edv.select_one(found), vault.recipient_key,
                                     keystore.keystore_id, record.key_id, entry.version,
                                     record.key_type, entry.public_key)
    except SpecError as exc:
        raise bad_answer(f"a working-key document: {exc}") from None


async def write_version(state: LockLayering, keystore: spec.KeystoreRecord,
                        record: spec.WorkingKeyRecord, entry: spec.KeyVersion) -> None:
    """LOCK-32: one version as one document, encrypted to the keystore's recipient key and
    indexed under its MAC key."""
    vault = await open_vault(state, keystore)
    binding = keystore.edv
    assert binding is not None
    ks = keystore.keystore_id
    doc, _ = edv.encrypt_document(
        doc_id=edv.new_id(state.random), sequence=0,
        content=edv.key_content(ks, record.key_id, record.key_type, entry.version,
                                entry.public_key, entry.sealed),
        recipient_kid=edv.recipient_kid(ks), recipient_public=binding.recipient_public_key,
        ephemeral_private=state.random(32), cek=state.random(32), iv=state.random(12),
        indexed=[edv.key_index(vault.mac_key, ks, record.key_id, entry.version)])
    await state.vaults.store(vault.base, vault.vault_id, vault.token, doc)


async def forget_key(state: LockLayering, keystore: spec.KeystoreRecord, key_id: str) -> None:
    """Delete every document of a key from the vault (LOCK-32)."""
    vault = await open_vault(state, keystore)
    query = edv.key_query(vault.mac_key, keystore.keystore_id, key_id)
    for found in await state.vaults.find(vault.base, vault.vault_id, vault.token, query):
        doc_id = found.get("id") if isinstance(found, dict) else None
        if isinstance(doc_id, str):
            await state.vaults.delete(vault.base, vault.vault_id, vault.token, doc_id)


async def bind_vault(request: Request, state: LockLayering, keystore_id: str,
                     wanted: dict[str, str]) -> spec.VaultBinding:
    """LOCK-35: a vault on a trusted vault server, whose token opens it; the keystore's
    recipient and MAC keys are drawn now and kept sealed with the token (LOCK-32)."""
    base, vault_id = spec_checked(lambda: edv.check_vault_url(wanted["vault"],
                                                             state.vaults.servers))
    if not await state.vaults.check_access(base, vault_id, wanted["token"]):
        raise Problem("invalid", "the vault refuses the token", failure_class="binding",
                      requirement="LOCK-35")
    recipient = state.random(32)
    return spec.VaultBinding(
        wanted["vault"], spec.public_key_of(spec.KEY_X25519, recipient),
        await seal_secret(state, recipient, keystore_id, spec.PURPOSE_EDV_RECIPIENT_KEY),
        await seal_secret(state, state.random(32), keystore_id, spec.PURPOSE_EDV_MAC_KEY),
        await seal_secret(state, wanted["token"].encode(), keystore_id, spec.PURPOSE_EDV_TOKEN))


def vault_view(keystore: spec.KeystoreRecord) -> dict[str, Any]:
    """What a keystore's answer says of its vault: public values only."""
    assert keystore.edv is not None
    return {"vault": keystore.edv.vault,
            "recipient_kid": edv.recipient_kid(keystore.keystore_id),
            "recipient_public_key": b64url_encode(keystore.edv.recipient_public_key),
            "hmac_kid": edv.hmac_kid(keystore.keystore_id)}


# --- keystores ---------------------------------------------------------------------------------

async def create_keystore(request: Request) -> Response:
    """Steps 1-6 (LOCK-1): the controller (bearer, validated with the account server)
    creates a keystore and receives its root capability, which expires."""
    (user_id,) = path_identifiers(request, "user_id")
    state = flow_state(request)
    await authenticate(request, user_id)
    raw = await limited_body(request)
    obj = json_body(request, raw)
    body = spec_checked(lambda: spec.parse_request("create-keystore", obj))
    scenario = body["scenario"]
    keystore_id = spec.new_identifier(state.random)
    binding = None
    if "edv" in body:
        binding = await bind_vault(request, state, keystore_id, body["edv"])
    root_key = spec.new_capability_root_key(state.random)
    record = spec.KeystoreRecord(keystore_id, user_id, scenario,
                                 await seal_secret(state, root_key, keystore_id,
                                                   spec.PURPOSE_CAPABILITY_ROOT_KEY))
    if scenario == spec.SCENARIO_SHARES:
        other = await account_share(request, user_id)
        shares = header_values(request, SHARE_HEADER)
        try:
            _, lock_check = spec.lock_from_new_shares(
                other, shares[0] if len(shares) == 1 else None, keystore_id)
        except SpecError:
            raise share_refused() from None
        grant_key = await seal_secret(state, cap.new_grant_key(state.random), keystore_id,
                                      spec.PURPOSE_UNLOCK_GRANT_KEY)
        record = spec.KeystoreRecord(keystore_id, user_id, scenario, record.capability_root_key,
                                     lock_check=lock_check, unlock_grant_key=grant_key,
                                     edv=binding)
    else:
        sealed = await seal_secret(state, spec.new_user_lock_key(state.random), keystore_id,
                                   spec.PURPOSE_USER_LOCK_KEY)
        record = spec.KeystoreRecord(keystore_id, user_id, scenario, record.capability_root_key,
                                     user_lock_key=sealed, edv=binding)
    await server_side(lambda: state.store.add_keystore(record))
    capability = mint_root(state, root_key, keystore_id, body.get("holder"))
    answer = {"keystore_id": keystore_id, "keystore_url": keystore_url(keystore_id),
              "controller": user_id, "scenario": scenario, "capability": capability}
    return json_response(answer, 201, headers={"Location": keystore_url(keystore_id)})


def mint_root(state: LockLayering, root_key: bytes, keystore_id: str,
              holder: bytes | None) -> str:
    not_after = cap.root_not_after(state.clock(), state.root_lifetime)
    return cap.encode_capability(cap.mint_root_capability(root_key, keystore_id, not_after,
                                                          holder))


async def reissue_root(request: Request) -> Response:
    """LOCK-13, LOCK-23: the controller, authenticated by the account server, gets a fresh
    root capability for its keystore (the old ones keep their own expiry)."""
    user_id, keystore_id = path_identifiers(request, "user_id", "keystore_id")
    state = flow_state(request)
    await authenticate(request, user_id)
    raw = await limited_body(request)
    obj = json_body(request, raw)  # media type and shape before existence (API-18)
    body = spec_checked(lambda: spec.parse_request("root-capability", obj))
    keystore = await server_side(lambda: state.store.get_keystore(keystore_id))
    if keystore is None or keystore.controller != user_id:
        raise not_found("no such keystore of this controller", requirement="LOCK-13")
    root_key = await open_secret(state, keystore.capability_root_key, keystore_id,
                                 spec.PURPOSE_CAPABILITY_ROOT_KEY)
    return json_response({"capability": mint_root(state, root_key, keystore_id,
                                                  body.get("holder"))}, 201)


async def read_keystore(request: Request) -> Response:
    call = await authorized(request, spec.OP_READ)
    keystore = call.keystore
    keys = await server_side(lambda: call.state.store.list_keys(keystore.keystore_id))
    answer: dict[str, Any] = {"keystore_id": keystore.keystore_id,
                              "controller": keystore.controller, "scenario": keystore.scenario,
                              "keys": [key_description(k) for k in keys]}
    if keystore.edv is not None:
        answer["edv"] = vault_view(keystore)
    return json_response(answer)


async def target_capability(call: Call) -> cap.Capability:
    """LOCK-24, LOCK-28: the capability a revocation or grant names: valid for this
    keystore, attenuated from the caller's own, not revoked."""
    keystore_id = call.keystore.keystore_id
    target = spec_checked(lambda: cap.verified_target(call.body["capability"], call.root_key,
                                                      keystore_id))
    spec_checked(lambda: cap.check_may_act_on(call.auth.capability, target,
                                               requirement="LOCK-24"))
    return target


async def revoke(request: Request) -> Response:
    """LOCK-24: revoke a capability attenuated from the caller's (or the caller's own);
    everything attenuated from it is refused from now on."""
    call = await authorized(request, spec.OP_REVOKE, body_kind="revoke")
    target = await target_capability(call)
    keystore_id, state = call.keystore.keystore_id, call.state
    until = cap.not_after(target) or 0
    await server_side(lambda: state.store.revoke(
        keystore_id, cap.revocation_id(keystore_id, target.mac), until, state.clock()))
    return Response(status_code=204)


async def grant(request: Request) -> Response:
    """LOCK-28: an unlock grant for a capability attenuated from the caller's; the caller
    opens the lock (its share) and the server seals the lock key for that capability."""
    call = await authorized(request, spec.OP_GRANT, body_kind="grant")
    spec_checked(lambda: cap.check_grantable(call.keystore.scenario))
    target = await target_capability(call)
    state, keystore = call.state, call.keystore
    ids = cap.revocation_ids(keystore.keystore_id, cap.capability_chain(
        call.root_key, keystore.keystore_id, target.caveats))
    revoked = await server_side(lambda: state.store.revoked_among(keystore.keystore_id, ids))
    spec_checked(lambda: cap.check_not_revoked(ids, revoked))
    lock_key = await unlock(request, call)
    grant_key = await open_secret(state, keystore.unlock_grant_key, keystore.keystore_id,
                                  spec.PURPOSE_UNLOCK_GRANT_KEY)
    now = state.clock()
    text = spec_checked(lambda: cap.make_unlock_grant(
        grant_key, state.random(spec.NONCE_LEN), lock_key, keystore.keystore_id, target, now))
    return json_response({"grant": text, "not_after": cap.grant_not_after(target, now)}, 201)


# --- keys ---------------------------------------------------------------------------------------

async def create_key(request: Request) -> Response:
    """Step 7 (LOCK-7, LOCK-14): a fresh key, version 1, sealed under the user lock."""
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
        stored = record
        if call.keystore.edv is not None:  # the vault keeps the sealed material (LOCK-32)
            await write_version(state, call.keystore, record, record.current)
            stored = spec.without_sealed(record)
        try:
            await server_side(partial(state.store.add_key, stored))
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
    if call.keystore.edv is not None:
        await forget_key(call.state, call.keystore, key.key_id)
    if not await server_side(lambda: call.state.store.delete_key(key.keystore_id, key.key_id)):
        raise not_found("no such key in this keystore", requirement="LOCK-14")
    return Response(status_code=204)


async def rotate(request: Request) -> Response:
    """LOCK-22: a new version of the key, sealed under the user lock; older versions stay
    for verify, decrypt, unwrap and verifymac."""
    call = await authorized(request, spec.OP_ROTATE)
    assert call.key is not None
    record, state = call.key, call.state
    version = spec_checked(lambda: spec.next_version(record))
    lock_key = await unlock(request, call)
    entry = spec.make_key_version(lock_key, state.random(spec.NONCE_LEN),
                                  spec.generate_working_key(record.key_type, state.random),
                                  record.keystore_id, record.key_id, version, record.key_type)
    updated = spec.rotated(record, entry)
    if call.keystore.edv is not None:  # the vault keeps the sealed material (LOCK-32)
        await write_version(state, call.keystore, updated, entry)
        updated = spec.without_sealed(updated)
    if not await server_side(lambda: state.store.replace_key(updated)):
        raise not_found("no such key in this keystore", requirement="LOCK-14")
    return json_response(key_description(updated))


# --- operations --------------------------------------------------------------------------------

async def sign(request: Request) -> Response:
    """LOCK-15, LOCK-20: with the current version."""
    call = await authorized(request, spec.OP_SIGN, body_kind="sign")
    message = call.body["message"]
    spec_checked(lambda: spec.check_signable(message))
    seed, version = await working_material(request, call)
    return json_response({"signature": b64url_encode(spec.sign_signable(seed, message)),
                          "version": version})


async def verify(request: Request) -> Response:
    """LOCK-15: with the stored public key of the named version; needs no share."""
    call = await authorized(request, spec.OP_VERIFY, body_kind="verify")
    assert call.key is not None
    record, body = call.key, call.body
    entry = spec_checked(lambda: record.version(body["version"]))
    valid = spec_checked(lambda: spec.verify(entry.public_key, body["message"],
                                             body["signature"]))
    return json_response({"valid": valid, "version": entry.version})


async def encrypt(request: Request) -> Response:
    """LOCK-16: a fresh random nonce per encryption, the current version."""
    call = await authorized(request, spec.OP_ENCRYPT, body_kind="encrypt")
    key, version = await working_material(request, call)
    nonce = call.state.random(spec.NONCE_LEN)
    ciphertext = spec.encrypt(key, nonce, call.body["plaintext"], call.body["aad"])
    return json_response({"nonce": b64url_encode(nonce),
                          "ciphertext": b64url_encode(ciphertext), "version": version})


async def decrypt(request: Request) -> Response:
    """LOCK-16: a ciphertext that does not authenticate is a 422 (class aead)."""
    call = await authorized(request, spec.OP_DECRYPT, body_kind="decrypt")
    body = call.body
    key, version = await working_material(request, call, body["version"])
    plaintext = spec_checked(lambda: spec.decrypt(key, body["nonce"], body["ciphertext"],
                                                  body["aad"]))
    return json_response({"plaintext": b64url_encode(plaintext), "version": version})


async def computemac(request: Request) -> Response:
    """LOCK-21: HMAC-SHA256 with the current version."""
    call = await authorized(request, spec.OP_COMPUTEMAC, body_kind="computemac")
    key, version = await working_material(request, call)
    return json_response({"mac": b64url_encode(spec.computemac(key, call.body["message"])),
                          "version": version})


async def verifymac(request: Request) -> Response:
    """LOCK-21: valid true or false with the named version."""
    call = await authorized(request, spec.OP_VERIFYMAC, body_kind="verifymac")
    body = call.body
    key, version = await working_material(request, call, body["version"])
    valid = spec.mac_matches(key, body["message"], body["mac"])  # mac: 32 bytes (parse_request)
    return json_response({"valid": valid, "version": version})


async def wrap(request: Request) -> Response:
    """LOCK-17: HPKE to any X25519 public key; uses no keystore key, needs no share."""
    call = await authorized(request, spec.OP_WRAP, body_kind="wrap")
    body = call.body
    ikm_e = call.state.random(32)
    wrapped = spec_checked(lambda: spec.wrap(body["cek"], body["recipient_public_key"], ikm_e))
    return json_response({"enc": b64url_encode(wrapped.enc),
                          "wrapped_key": b64url_encode(wrapped.wrapped_key)})


async def unwrap(request: Request) -> Response:
    """LOCK-17, LOCK-18: with the named version of the keystore's X25519 key; the answer
    is the caller's own wrapped key."""
    call = await authorized(request, spec.OP_UNWRAP, body_kind="unwrap")
    body = call.body
    private, version = await working_material(request, call, body["version"])
    # wrapped_key's length was checked with the body (parse_request), before the lock
    cek = spec_checked(lambda: spec.open_wrapped(spec.Wrapped(body["enc"], body["wrapped_key"]),
                                                 private))
    return json_response({"cek": b64url_encode(cek), "version": version})


def routes() -> list[BaseRoute]:
    def post(name: str, handler: Callable[[Request], Any]) -> BaseRoute:
        return method_route(f"{KEY_PATH}/{name}", {"POST": handler}, name=f"lock_{name}")

    return [
        method_route(CREATE_PATH, {"POST": create_keystore}, name="lock_keystores"),
        method_route(ROOT_PATH, {"POST": reissue_root}, name="lock_root_capability"),
        method_route(KEYSTORE_PATH, {"GET": read_keystore}, name="lock_keystore"),
        method_route(KEYS_PATH, {"POST": create_key}, name="lock_keys"),
        method_route(KEY_PATH, {"GET": export_key, "DELETE": delete_key}, name="lock_key"),
        method_route(WRAP_PATH, {"POST": wrap}, name="lock_wrap"),
        method_route(REVOCATIONS_PATH, {"POST": revoke}, name="lock_revocations"),
        method_route(GRANTS_PATH, {"POST": grant}, name="lock_grants"),
        post("sign", sign), post("verify", verify), post("encrypt", encrypt),
        post("decrypt", decrypt), post("unwrap", unwrap), post("computemac", computemac),
        post("verifymac", verifymac), post("rotate", rotate),
    ]
