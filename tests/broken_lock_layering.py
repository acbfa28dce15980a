"""Deliberately broken lock-layering servers: the conformance runner must catch each one.

Each variant is the real reference server with one fault, patched where a real bug would
sit (the spec functions the server calls, or one route of reference/lock_layering.py), or
injected as ASGI middleware when the fault is only visible on the wire. The runner runs
in a subprocess, so patching the spec module here changes the server only.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from broken_servers import BrokenVariant, Scope, compact, path_of, rewriting
from starlette.requests import Request
from starlette.responses import Response

from keyflows.spec.encoding import b64url_encode


def _patch_spec(monkeypatch: pytest.MonkeyPatch, name: str, replacement: Any) -> None:
    from keyflows.spec import lock_layering as spec

    monkeypatch.setattr(spec, name, replacement)


def _patch_cap(monkeypatch: pytest.MonkeyPatch, name: str, replacement: Any) -> None:
    from keyflows.spec import lock_layering_capability as cap

    monkeypatch.setattr(cap, name, replacement)


# --- capabilities ---------------------------------------------------------------------------

def ignores_caveat(kind: str) -> Any:
    """authorize() that forgets one kind of caveat (ops, key or exp)."""

    def patch(monkeypatch: pytest.MonkeyPatch) -> None:
        from keyflows.spec import lock_layering_capability as cap

        original = cap.authorize

        def authorize(capability: Any, operation: str, key_id: str | None, now: int) -> None:
            kept = tuple(c for c in capability.caveats if not c.startswith(kind + "="))
            if kind == "exp":
                kept = (*kept, f"exp={now + 1}")  # the expiry rule sees a live capability
            original(cap.Capability(capability.keystore_id, kept, capability.mac), operation,
                     key_id, now)

        _patch_cap(monkeypatch, "authorize", authorize)

    return patch


def skips_mac_check(monkeypatch: pytest.MonkeyPatch) -> None:
    """verify_capability() that checks the keystore id and forgets the MAC."""
    from keyflows.spec import lock_layering_capability as cap
    from keyflows.spec.errors import BindingError

    def verify(capability: Any, root_key: bytes, keystore_id: str) -> list[bytes]:
        if capability.keystore_id != keystore_id:
            raise BindingError("other keystore")
        return cap.capability_chain(root_key, keystore_id, capability.caveats)

    _patch_cap(monkeypatch, "verify_capability", verify)


def unknown_caveats_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    """parse_caveat() that lets anything it does not understand through."""
    from keyflows.spec import lock_layering_capability as cap
    from keyflows.spec.errors import AuthzError

    original = cap.parse_caveat

    def parse(caveat: str) -> Any:
        try:
            return original(caveat)
        except AuthzError:
            return cap.Caveat("ignored")

    _patch_cap(monkeypatch, "parse_caveat", parse)


def roots_never_expire(monkeypatch: pytest.MonkeyPatch) -> None:
    """Root capabilities carry no exp caveat, and capabilities without one are accepted."""
    from keyflows.spec import lock_layering_capability as cap

    def mint(root_key: bytes, keystore_id: str, not_after: int, holder: Any = None) -> Any:
        caveats = [] if holder is None else [cap.holder_caveat(holder)]
        links = cap.capability_chain(root_key, keystore_id, caveats)
        return cap.Capability(keystore_id, tuple(caveats), links[-1])

    original = cap.authorize

    def authorize(capability: Any, operation: str, key_id: str | None, now: int) -> None:
        if cap.not_after(capability) is None:
            capability = cap.Capability(capability.keystore_id,
                                        (*capability.caveats, f"exp={now + 1}"), capability.mac)
        original(capability, operation, key_id, now)

    _patch_cap(monkeypatch, "mint_root_capability", mint)
    _patch_cap(monkeypatch, "authorize", authorize)


def ignores_revocations(monkeypatch: pytest.MonkeyPatch) -> None:
    """The revocation store is never consulted."""
    from keyflows.reference.lock_layering_store import LockStore

    monkeypatch.setattr(LockStore, "revoked_among", lambda self, keystore_id, ids: set())


def revokes_only_the_named_capability(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only the presented capability's own link is looked up, not its ancestors'."""
    from keyflows.spec import lock_layering_capability as cap

    original = cap.check_not_revoked
    _patch_cap(monkeypatch, "check_not_revoked",
               lambda ids, revoked: original(list(ids)[-1:], revoked))


def ignores_holder(monkeypatch: pytest.MonkeyPatch) -> None:
    """holder caveats are parsed and ignored: a bound capability is a bearer token."""
    _patch_cap(monkeypatch, "holder_of", lambda capability, links: None)


def no_nonce_store(monkeypatch: pytest.MonkeyPatch) -> None:
    """Signed requests are checked but their nonces are never remembered."""
    from keyflows.reference.lock_layering_store import LockStore

    monkeypatch.setattr(LockStore, "claim_nonce", lambda self, nonce_id, keep, now: True)


def unsigned_delegations(monkeypatch: pytest.MonkeyPatch) -> None:
    """A delegate caveat is believed without checking the holder's signature."""
    from keyflows.spec import lock_layering_capability as cap

    def holder_of(capability: Any, links: Any) -> Any:
        holder = None
        for caveat in capability.caveats:
            parsed = cap.parse_caveat(caveat)
            if parsed.name in (cap.CAVEAT_HOLDER, cap.CAVEAT_DELEGATE):
                holder = parsed.public_key
        return holder

    _patch_cap(monkeypatch, "holder_of", holder_of)


def grants_for_any_capability(monkeypatch: pytest.MonkeyPatch) -> None:
    """The grant's AAD leaves out the capability's link: any capability opens it."""
    from keyflows.spec import lock_layering_capability as cap

    original = cap.grant_aad
    _patch_cap(monkeypatch, "grant_aad",
               lambda keystore_id, depth, link, until: original(keystore_id, 1, bytes(32),
                                                                until))


def unknown_keystore_is_404(monkeypatch: pytest.MonkeyPatch) -> None:
    """A capability for a keystore that does not exist is answered 404: an oracle."""
    from keyflows.reference import lock_layering as routes
    from keyflows.reference.common import not_found

    original = routes.check_capability

    async def check(request: Request, state: Any, keystore_id: str, *args: Any) -> Any:
        if await routes.server_side(lambda: state.store.get_keystore(keystore_id)) is None:
            raise not_found("no such keystore")
        return await original(request, state, keystore_id, *args)

    monkeypatch.setattr(routes, "check_capability", check)


# --- shares ---------------------------------------------------------------------------------

def skips_lock_check(monkeypatch: pytest.MonkeyPatch) -> None:
    """No lock check: a wrong share yields a wrong lock key that fails later, elsewhere."""
    _patch_spec(monkeypatch, "verify_lock_check", lambda *args: None)


def missing_share_is_400(app: Any) -> Any:
    """A request without Secret-Share is answered 400 'missing header' (an oracle)."""

    async def rewrite(scope: Scope, request_body: bytes, status: int,
                      headers: list[tuple[bytes, bytes]], body: bytes
                      ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        sent = {k.lower() for k, _ in scope.get("headers", [])}
        if status == 422 and b'"share"' in body and b"secret-share" not in sent:
            problem = {"type": "urn:keyflows:problem:malformed", "title": "Malformed request",
                       "status": 400, "detail": "the Secret-Share header is missing",
                       "failure_class": "decode", "requirement": "LOCK-10"}
            return 400, headers, compact(problem)
        return status, headers, body

    return rewriting(rewrite)(app)


def checks_type_after_unlock(monkeypatch: pytest.MonkeyPatch) -> None:
    """The key type is checked only inside the operation: the share is asked for first."""
    _patch_spec(monkeypatch, "check_operation_supported", lambda *args: None)


# --- operations ----------------------------------------------------------------------------

def signs_another_message(monkeypatch: pytest.MonkeyPatch) -> None:
    from keyflows.spec import lock_layering as spec

    original = spec.sign_signable
    _patch_spec(monkeypatch, "sign_signable",
                lambda seed, message: original(seed, message + b"\n"))


def fixed_nonce(monkeypatch: pytest.MonkeyPatch) -> None:
    """The encrypt route draws no fresh nonce: every ciphertext uses the same one."""
    from keyflows.reference import lock_layering as routes
    from keyflows.spec import lock_layering as spec

    async def encrypt(request: Request) -> Response:
        call = await routes.authorized(request, spec.OP_ENCRYPT, body_kind="encrypt")
        key, version = await routes.working_material(request, call)
        nonce = bytes(12)
        ciphertext = spec.encrypt(key, nonce, call.body["plaintext"], call.body["aad"])
        return routes.json_response({"nonce": b64url_encode(nonce),
                                     "ciphertext": b64url_encode(ciphertext),
                                     "version": version})

    monkeypatch.setattr(routes, "encrypt", encrypt)


def unwrap_without_point_check(monkeypatch: pytest.MonkeyPatch) -> None:
    """unwrap() with the raw X25519 function: a low-order enc gets through to the AEAD."""
    from keyflows.spec import hpke, primitives
    from keyflows.spec import lock_layering as spec

    def unwrap(wrapped: Any, recipient_private: bytes) -> bytes:
        recipient_public = primitives.x25519_public_key(recipient_private)
        dh = primitives.x25519_raw(recipient_private, wrapped.enc)
        shared = hpke.extract_and_expand(dh, wrapped.enc + recipient_public)
        schedule = hpke.key_schedule_base(shared, spec.WRAP_INFO)
        return hpke.context_open(schedule, 0, b"", wrapped.wrapped_key)

    _patch_spec(monkeypatch, "open_wrapped", unwrap)


def accepts_non_canonical_x25519(monkeypatch: pytest.MonkeyPatch) -> None:
    """wrap() and unwrap() read a key as RFC 7748 receivers do (top bit masked, u reduced
    mod p) instead of refusing a second encoding; low-order keys are still refused."""
    from keyflows.spec import lock_layering as spec
    from keyflows.spec import primitives

    def reduced(key: bytes) -> bytes:
        u = (int.from_bytes(key, "little") & ((1 << 255) - 1)) % primitives.X25519_P
        return u.to_bytes(primitives.X25519_KEY_LEN, "little")

    wrap, open_wrapped = spec.wrap, spec.open_wrapped
    _patch_spec(monkeypatch, "wrap", lambda cek, recipient_public, ikm_e: wrap(
        cek, reduced(recipient_public), ikm_e))
    _patch_spec(monkeypatch, "open_wrapped", lambda wrapped, recipient_private: open_wrapped(
        spec.Wrapped(reduced(wrapped.enc), wrapped.wrapped_key), recipient_private))


def leaks_signing_seed(monkeypatch: pytest.MonkeyPatch) -> None:
    """The sign route returns the seed it used as a 'debug' member."""
    from keyflows.reference import lock_layering as routes
    from keyflows.spec import lock_layering as spec

    async def sign(request: Request) -> Response:
        call = await routes.authorized(request, spec.OP_SIGN, body_kind="sign")
        seed, version = await routes.working_material(request, call)
        return routes.json_response({"signature": b64url_encode(spec.sign(
            seed, call.body["message"])), "version": version, "debug": b64url_encode(seed)})

    monkeypatch.setattr(routes, "sign", sign)


def signs_keyflows_contexts(monkeypatch: pytest.MonkeyPatch) -> None:
    """sign() without the domain separation: keyflows' own statements get signed."""
    _patch_spec(monkeypatch, "check_signable", lambda message: None)


def rotation_overwrites(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rotation replaces the key's only version instead of adding one."""
    from keyflows.spec import lock_layering as spec

    _patch_spec(monkeypatch, "next_version", lambda record: 1)
    _patch_spec(monkeypatch, "rotated", lambda record, entry: spec.WorkingKeyRecord(
        record.keystore_id, record.key_id, record.key_type, (entry,)))


def verifymac_always_true(monkeypatch: pytest.MonkeyPatch) -> None:
    _patch_spec(monkeypatch, "mac_matches", lambda key, message, mac: True)


def computemac_ignores_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """computemac() hashes the message alone (and verifymac agrees with it)."""
    import hashlib

    from keyflows.spec import primitives

    _patch_spec(monkeypatch, "computemac", lambda key, message: hashlib.sha256(message).digest())
    _patch_spec(monkeypatch, "mac_matches", lambda key, message, mac:
                primitives.constant_time_equal(hashlib.sha256(message).digest(), mac))


def capabilities_cached(app: Any) -> Any:
    """Answers that carry a capability lose their Cache-Control: no-store."""

    async def rewrite(scope: Scope, request_body: bytes, status: int,
                      headers: list[tuple[bytes, bytes]], body: bytes
                      ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        return status, [(k, v) for k, v in headers if k.lower() != b"cache-control"], body

    return rewriting(rewrite)(app)


# --- the vault -------------------------------------------------------------------------------

def _patch_edv(monkeypatch: pytest.MonkeyPatch, name: str, replacement: Any) -> None:
    from keyflows.spec import edv

    monkeypatch.setattr(edv, name, replacement)


def trusts_any_document(monkeypatch: pytest.MonkeyPatch) -> None:
    """The document read back is opened, but not checked to be the asked-for key's."""
    from keyflows.spec import edv
    from keyflows.spec.encoding import b64url_decode

    def open_key_document(doc: Any, recipient_private: bytes, keystore_id: str, *args: Any
                          ) -> bytes:
        content = edv.decrypt_document(doc, recipient_private, edv.recipient_kid(keystore_id))
        return b64url_decode(content["sealed"])

    _patch_edv(monkeypatch, "open_key_document", open_key_document)
    _patch_edv(monkeypatch, "select_one", lambda docs: edv.parse_document(docs[0]))


def reuses_the_ephemeral_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every document is encrypted with one fixed ephemeral key."""
    from keyflows.spec import edv

    original = edv.encrypt_document

    def encrypt_document(**kwargs: Any) -> Any:
        return original(**dict(kwargs, ephemeral_private=bytes(range(1, 33))))

    _patch_edv(monkeypatch, "encrypt_document", encrypt_document)


def caches_sealed_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    """The server keeps the sealed material in its own database and never reads the vault
    back."""
    from keyflows.reference import lock_layering as routes
    from keyflows.spec import lock_layering as spec

    monkeypatch.setattr(spec, "without_sealed", lambda record: record)

    async def read_sealed_version(state: Any, keystore: Any, record: Any, entry: Any) -> bytes:
        return bytes(entry.sealed)

    monkeypatch.setattr(routes, "read_sealed_version", read_sealed_version)


def trusts_any_vault(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any vault URL is accepted, on any server."""
    from keyflows.spec import edv

    original = edv.check_vault_url

    def check_vault_url(url: Any, trusted: Any) -> Any:
        base = str(url).split("/edvs/")[0]
        return original(url, (*trusted, base))

    _patch_edv(monkeypatch, "check_vault_url", check_vault_url)


def leaks_user_share(app: Any) -> Any:
    """Key creation answers echo the user's share (say, for debugging)."""

    async def rewrite(scope: Scope, request_body: bytes, status: int,
                      headers: list[tuple[bytes, bytes]], body: bytes
                      ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        parts = path_of(scope)
        share = dict(scope.get("headers", [])).get(b"secret-share")
        if status == 201 and parts[-1] == "keys" and share:
            answer = json.loads(body)
            answer["unlocked_with"] = share.decode()
            return status, headers, compact(answer)
        return status, headers, body

    return rewriting(rewrite)(app)


# --- strict formats -----------------------------------------------------------------------------

def drops_unknown_members(monkeypatch: pytest.MonkeyPatch) -> None:
    """Request bodies lose their unknown members instead of being refused."""
    from keyflows.spec import lock_layering as spec

    original = spec.parse_request

    def parse_request(kind: str, obj: object) -> dict[str, Any]:
        if isinstance(obj, dict):
            required, optional = spec.REQUEST_MEMBERS[kind]
            obj = {k: v for k, v in obj.items() if k in required or k in optional}
        return original(kind, obj)

    _patch_spec(monkeypatch, "parse_request", parse_request)


def long_signature_fields(monkeypatch: pytest.MonkeyPatch) -> None:
    """Signature fields of any length up to 16 KiB are parsed (RFC 9421's fields over the
    limit every server shares)."""
    from keyflows.spec import http_signatures

    monkeypatch.setattr(http_signatures, "MAX_FIELD_LEN", 16384)


def too_many_caveats(monkeypatch: pytest.MonkeyPatch) -> None:
    """A capability may carry 17 caveats."""
    _patch_cap(monkeypatch, "MAX_CAVEATS", 17)


def share_wins_over_grant(monkeypatch: pytest.MonkeyPatch) -> None:
    """A request with a share and a grant unlocks with the share."""
    from keyflows.spec import lock_layering_capability as cap
    from keyflows.spec.errors import ShareError

    def unlock_method(share_values: Any, grant_values: Any) -> str:
        if share_values:
            return cap.UNLOCK_BY_SHARE
        if len(grant_values) != 1:
            raise ShareError("one Unlock-Grant field line", requirement="LOCK-28")
        return cap.UNLOCK_BY_GRANT

    _patch_cap(monkeypatch, "unlock_method", unlock_method)


def rotates_forever(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keys take a 33rd version."""
    _patch_spec(monkeypatch, "MAX_KEY_VERSIONS", 33)


def many_attributes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Vault documents may carry 17 attributes."""
    _patch_edv(monkeypatch, "MAX_ATTRIBUTES", 17)


def creates_without_the_share(monkeypatch: pytest.MonkeyPatch) -> None:
    """A shares keystore made without a usable user share takes its lock from the
    account server's share alone: the server can open it by itself."""
    from keyflows.spec import lock_layering as spec
    from keyflows.spec.errors import SpecError

    original = spec.lock_from_new_shares

    def lock_from_new_shares(account: object, user: object, keystore_id: str
                             ) -> tuple[bytes, bytes]:
        try:
            return original(account, user, keystore_id)
        except SpecError:
            secret = spec.decode_share(account)[1:]
            return (spec.lock_key_from_secret(secret, keystore_id),
                    spec.lock_check_from_secret(secret, keystore_id))

    _patch_spec(monkeypatch, "lock_from_new_shares", lock_from_new_shares)


def combines_x_zero(monkeypatch: pytest.MonkeyPatch) -> None:
    """Shares are interpolated as they come: a share with x = 0 (the secret itself) is
    taken, and the other share is multiplied by zero."""
    from keyflows.spec import shamir

    def combine_decoded_shares(*shares: bytes) -> bytes:
        basis = shamir.lagrange_basis_at_zero([s[-1] for s in shares])
        out = bytearray(len(shares[0]) - 1)
        for k in range(len(out)):
            for share, b in zip(shares, basis, strict=True):
                out[k] ^= shamir.gf_mul(share[k], b)
        return bytes(out)

    _patch_spec(monkeypatch, "combine_decoded_shares", combine_decoded_shares)


def any_share_length(monkeypatch: pytest.MonkeyPatch) -> None:
    """A share is decoded without checking its length: two shares of a 31-byte secret
    make a keystore."""
    from keyflows.spec.encoding import b64url_decode
    from keyflows.spec.errors import ShareError, SpecError

    def decode_share(text: Any) -> bytes:
        try:
            return b64url_decode(text)
        except SpecError as exc:
            raise ShareError("not base64url", requirement="LOCK-10") from exc

    _patch_spec(monkeypatch, "decode_share", decode_share)


def unprefixed_document_ids(monkeypatch: pytest.MonkeyPatch) -> None:
    """A vault document's id is read without its "z" prefix."""
    from keyflows.spec import edv

    original = edv.check_id

    def check_id(value: object, what: str = "id") -> str:
        if isinstance(value, str) and value:
            original("z" + value[1:], what)
            return value
        return original(value, what)

    _patch_edv(monkeypatch, "check_id", check_id)


def checks_wrapped_key_late(monkeypatch: pytest.MonkeyPatch) -> None:
    """The wrapped key's length is left to the unwrap itself: after the key lookup and
    the lock."""
    from keyflows.spec import lock_layering as spec
    from keyflows.spec.encoding import b64url_decode

    original = spec.parse_request

    def parse_request(kind: str, obj: object) -> dict[str, Any]:
        if kind == "unwrap" and isinstance(obj, dict) and isinstance(obj.get("wrapped_key"),
                                                                     str):
            padded = dict(obj, wrapped_key=b64url_encode(bytes(spec.CEK_MIN_LEN
                                                               + spec.TAG_LEN)))
            out = original(kind, padded)
            out["wrapped_key"] = b64url_decode(obj["wrapped_key"])
            return out
        return original(kind, obj)

    _patch_spec(monkeypatch, "parse_request", parse_request)


def short_ciphertext_is_a_forgery(monkeypatch: pytest.MonkeyPatch) -> None:
    """A ciphertext shorter than its tag is answered as one that does not authenticate."""
    from keyflows.spec import lock_layering as spec
    from keyflows.spec.errors import AeadError

    original = spec.decrypt

    def decrypt(key: bytes, nonce: bytes, ciphertext: bytes, aad: bytes) -> bytes:
        if len(ciphertext) < spec.TAG_LEN:
            raise AeadError("the ciphertext does not authenticate", requirement="LOCK-16")
        return original(key, nonce, ciphertext, aad)

    _patch_spec(monkeypatch, "decrypt", decrypt)


def any_digest_algorithm(monkeypatch: pytest.MonkeyPatch) -> None:
    """A Content-Digest without a sha-256 member is taken as it comes."""
    from keyflows.spec import http_signatures

    original = http_signatures.check_content_digest

    def check_content_digest(values: Any, body: bytes, *, requirement: str | None = None
                             ) -> None:
        if all("sha-256" not in v for v in values):
            return
        original(values, body, requirement=requirement)

    monkeypatch.setattr(http_signatures, "check_content_digest", check_content_digest)


def long_ceks(monkeypatch: pytest.MonkeyPatch) -> None:
    """wrap takes content keys of up to 65 bytes."""
    _patch_spec(monkeypatch, "CEK_MAX_LEN", 65)


def ignores_signature_params(monkeypatch: pytest.MonkeyPatch) -> None:
    """The holder's signature parameters are not checked; only its nonce is taken."""
    def check_signature_params(entry: Any, holder: bytes, now: int) -> str:
        nonce = entry.param("nonce")
        return nonce if isinstance(nonce, str) else "A" * 22

    _patch_cap(monkeypatch, "check_signature_params", check_signature_params)


def created_window_excludes_its_start(monkeypatch: pytest.MonkeyPatch) -> None:
    """A signature created exactly 300 s ago is refused: the window's first second is out."""
    from keyflows.spec import lock_layering_capability as cap
    from keyflows.spec.errors import ExpiredError

    original = cap.check_signature_params

    def check_signature_params(entry: Any, holder: bytes, now: int) -> str:
        if entry.param("created") == now - cap.SIGNATURE_MAX_AGE:
            raise ExpiredError("created is outside the window", requirement="LOCK-26")
        nonce: str = original(entry, holder, now)
        return nonce

    _patch_cap(monkeypatch, "check_signature_params", check_signature_params)


def named_keystore_id_unchecked(monkeypatch: pytest.MonkeyPatch) -> None:
    """A capability's keystore_id is not checked as an identifier when it is decoded: a
    malformed one fails later, as a capability of another keystore (binding)."""
    from keyflows.spec import lock_layering_capability as cap
    from keyflows.spec.encoding import b64url_decode
    from keyflows.spec.errors import DecodeError

    original = cap.decode_capability

    def decode_capability(text: object) -> Any:
        try:
            return original(text)
        except DecodeError as exc:
            if "keystore_id does not match" not in str(exc) or not isinstance(text, str):
                raise
            obj = json.loads(b64url_decode(text[len(cap.CAPABILITY_PREFIX):]))
            return cap.Capability(obj["keystore_id"], tuple(obj["caveats"]),
                                  b64url_decode(obj["mac"]))

    _patch_cap(monkeypatch, "decode_capability", decode_capability)


def named_mac_length_unchecked(monkeypatch: pytest.MonkeyPatch) -> None:
    """A capability's MAC is decoded at any length: a short one fails later, as a MAC that
    does not verify."""
    from keyflows.spec import lock_layering_capability as cap
    from keyflows.spec.encoding import b64url_decode
    from keyflows.spec.errors import LengthError

    original = cap.decode_capability

    def decode_capability(text: object) -> Any:
        try:
            return original(text)
        except LengthError as exc:
            if "mac" not in str(exc) or not isinstance(text, str):
                raise
            obj = json.loads(b64url_decode(text[len(cap.CAPABILITY_PREFIX):]))
            return cap.Capability(obj["keystore_id"], tuple(obj["caveats"]),
                                  b64url_decode(obj["mac"]))

    _patch_cap(monkeypatch, "decode_capability", decode_capability)


def other_keystore_is_a_mac_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    """verify_capability() recomputes the chain for the keystore asked about without first
    comparing the capability's own keystore_id: another keystore's capability is a MAC
    failure, not a binding one."""
    from keyflows.spec import lock_layering_capability as cap

    original = cap.verify_capability

    def verify_capability(capability: Any, root_key: bytes, keystore_id: str) -> Any:
        moved = cap.Capability(keystore_id, capability.caveats, capability.mac)
        return original(moved, root_key, keystore_id)

    _patch_cap(monkeypatch, "verify_capability", verify_capability)


def caveat_length_unchecked(monkeypatch: pytest.MonkeyPatch) -> None:
    """A caveat of any length is well-formed."""
    _patch_cap(monkeypatch, "MAX_CAVEAT_LEN", 10_000)


def caveats_under_256(monkeypatch: pytest.MonkeyPatch) -> None:
    """A caveat must be shorter than 256 characters (off by one)."""
    _patch_cap(monkeypatch, "MAX_CAVEAT_LEN", 255)


def trusts_vault_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    """A query answer is used whatever its status, if its body is a list."""
    from keyflows.reference import edv_client

    async def find(self: Any, base: str, vault_id: str, token: str, query: Any) -> Any:
        answer = await self.call(base, "POST", f"/edvs/{vault_id}/query", token,
                                 query.to_json())
        found = json.loads(answer.body)
        if not isinstance(found, list):
            raise edv_client.bad_answer("a query answer that is not a list")
        return found

    monkeypatch.setattr(edv_client.VaultClients, "find", find)


def holder_rebinding(monkeypatch: pytest.MonkeyPatch) -> None:
    """A later holder caveat replaces the earlier one: a thief rebinds a stolen capability
    to its own key."""
    from keyflows.spec import lock_layering_capability as cap

    original = cap.holder_of

    def holder_of(capability: Any, links: Any) -> bytes | None:
        holders = [c for c in capability.caveats if c.startswith(cap.CAVEAT_HOLDER + "=")]
        if len(holders) < 2:
            holder: bytes | None = original(capability, links)
            return holder
        rebound: bytes = cap.parse_caveat(holders[-1]).public_key
        return rebound

    _patch_cap(monkeypatch, "holder_of", holder_of)


def signature_covers_anything(monkeypatch: pytest.MonkeyPatch) -> None:
    """The holder's signature may cover any components: none is required."""
    _patch_cap(monkeypatch, "required_components", lambda request: ())


def grants_for_expired_capabilities(monkeypatch: pytest.MonkeyPatch) -> None:
    """A grant is made for an expired capability (it lasts until that past expiry)."""
    from keyflows.spec import lock_layering_capability as cap

    def grant_not_after(capability: Any, now: int) -> int:
        return cap.not_after(capability) or 0

    _patch_cap(monkeypatch, "grant_not_after", grant_not_after)


CAP = "lock-layering/capability/"
EDV = "lock-layering/edv/"
VARIANTS = (
    BrokenVariant("ignores-ops-caveats", "capabilities grant every operation despite ops=",
                  ("lock-layering/capability/ops-caveat", "lock-layering/capability/cannot-widen"),
                  patch=ignores_caveat("ops")),
    BrokenVariant("ignores-key-caveats", "capabilities act on every key despite key=",
                  ("lock-layering/capability/key-caveat",), patch=ignores_caveat("key")),
    BrokenVariant("ignores-expiry", "expired capabilities keep working",
                  ("lock-layering/capability/expiry", "lock-layering/capability/cannot-widen"),
                  patch=ignores_caveat("exp")),
    BrokenVariant("skips-mac-check", "capabilities are not verified against the root key",
                  ("lock-layering/capability/tampered-caveats-refused",
                   "lock-layering/capability/refusals-are-uniform"), patch=skips_mac_check),
    BrokenVariant("unknown-caveats-ignored", "a caveat the server does not know grants",
                  ("lock-layering/capability/unknown-caveat-denies",),
                  patch=unknown_caveats_ignored),
    BrokenVariant("skips-lock-check", "no lock check: wrong shares fail later, differently",
                  ("lock-layering/shares/refusals-are-uniform",), patch=skips_lock_check),
    BrokenVariant("missing-share-is-400", "a missing share is told apart from a wrong one",
                  ("lock-layering/shares/refusals-are-uniform",), wrapper=missing_share_is_400),
    BrokenVariant("checks-type-after-unlock", "an unsupported operation asks for the share",
                  ("lock-layering/keys/unsupported-operation",), patch=checks_type_after_unlock),
    BrokenVariant("signs-another-message", "signatures cover the message plus a newline",
                  ("lock-layering/sign/verifies-with-exported-key",),
                  patch=signs_another_message),
    BrokenVariant("fixed-nonce", "every encryption uses the same nonce",
                  ("lock-layering/encrypt/round-trip-fresh-nonces",), patch=fixed_nonce),
    BrokenVariant("unwrap-without-point-check", "a low-order ephemeral key reaches the AEAD",
                  ("lock-layering/wrap/low-order-refused",), patch=unwrap_without_point_check),
    BrokenVariant("accepts-non-canonical-x25519", "a second encoding of a key is reduced, "
                  "not refused", ("lock-layering/wrap/non-canonical-refused",),
                  patch=accepts_non_canonical_x25519),
    BrokenVariant("leaks-signing-seed", "the sign answer carries the Ed25519 seed",
                  ("lock-layering/privacy/no-secret-material",), patch=leaks_signing_seed),
    BrokenVariant("leaks-user-share", "key creation echoes the user's share",
                  ("lock-layering/privacy/no-secret-material",), wrapper=leaks_user_share),
    BrokenVariant("capabilities-cached", "a capability is answered without no-store",
                  ("lock-layering/keystore/create-server-held",
                   CAP + "root-expires-and-is-renewed"), wrapper=capabilities_cached),
    BrokenVariant("trusts-any-document", "the vault's answer is used without checking whose "
                  "key it is", (EDV + "substituted-document-refused",
                                EDV + "form-checked-even-when-sealed-right"),
                  patch=trusts_any_document),
    BrokenVariant("reuses-the-ephemeral-key", "every vault document uses one ephemeral key",
                  (EDV + "documents-are-opaque",), patch=reuses_the_ephemeral_key),
    BrokenVariant("caches-sealed-keys", "sealed keys stay in the database; the vault is "
                  "never read back", (EDV + "reads-back-what-it-wrote",),
                  patch=caches_sealed_keys),
    BrokenVariant("trusts-any-vault", "a keystore can be bound to any vault server",
                  (EDV + "untrusted-vault-refused",), patch=trusts_any_vault),
    BrokenVariant("roots-never-expire", "root capabilities have no expiry",
                  (CAP + "root-expires-and-is-renewed",), patch=roots_never_expire),
    BrokenVariant("ignores-revocations", "a revoked capability keeps working",
                  (CAP + "revoked-refused", "lock-layering/delegation/grant-needs-the-share"),
                  patch=ignores_revocations),
    BrokenVariant("revokes-only-the-named-capability", "capabilities attenuated from a "
                  "revoked one keep working", (CAP + "revoked-refused",),
                  patch=revokes_only_the_named_capability),
    BrokenVariant("unknown-keystore-is-404", "a capability for a missing keystore gets 404",
                  (CAP + "refusals-are-uniform",), patch=unknown_keystore_is_404),
    BrokenVariant("ignores-holder", "a capability bound to a key works without its signature",
                  ("lock-layering/holder/stolen-capability-refused",), patch=ignores_holder),
    BrokenVariant("no-nonce-store", "a replayed signed request is accepted",
                  ("lock-layering/holder/replay-refused",), patch=no_nonce_store),
    BrokenVariant("unsigned-delegations", "a delegation the holder did not sign is believed",
                  ("lock-layering/delegation/grant-within-caveats",),
                  patch=unsigned_delegations),
    BrokenVariant("grants-for-any-capability", "an unlock grant opens with any capability",
                  ("lock-layering/delegation/grant-within-caveats",),
                  patch=grants_for_any_capability),
    BrokenVariant("signs-keyflows-contexts", "sign signs keyflows' own statements",
                  ("lock-layering/sign/refuses-keyflows-contexts",),
                  patch=signs_keyflows_contexts),
    BrokenVariant("rotation-overwrites", "rotating replaces the key",
                  ("lock-layering/rotate/keeps-old-versions",), patch=rotation_overwrites),
    BrokenVariant("verifymac-always-true", "verifymac answers valid for any MAC",
                  ("lock-layering/mac/compute-and-verify",), patch=verifymac_always_true),
    BrokenVariant("computemac-ignores-key", "computemac is a hash of the message",
                  ("lock-layering/mac/compute-and-verify",), patch=computemac_ignores_key),
    BrokenVariant("drops-unknown-members", "unknown request members are dropped, not refused",
                  ("lock-layering/operations/body-shape-strict",), patch=drops_unknown_members),
    BrokenVariant("long-signature-fields", "signature fields over 8192 characters parse",
                  ("lock-layering/holder/signature-fields-strict",),
                  patch=long_signature_fields),
    BrokenVariant("too-many-caveats", "a capability of 17 caveats is accepted",
                  (CAP + "format-strict",), patch=too_many_caveats),
    BrokenVariant("share-wins-over-grant", "a share and a grant together unlock",
                  ("lock-layering/shares/one-way-to-unlock",), patch=share_wins_over_grant),
    BrokenVariant("rotates-forever", "a key takes a 33rd version",
                  ("lock-layering/rotate/at-most-32-versions",), patch=rotates_forever),
    BrokenVariant("many-attributes", "a vault document of 17 attributes is used",
                  (EDV + "malformed-documents-refused",), patch=many_attributes),
    BrokenVariant("creates-without-the-share", "a shares keystore is made from the account "
                  "share alone", ("lock-layering/keystore/create-shares",),
                  patch=creates_without_the_share),
    BrokenVariant("any-digest-algorithm", "a Content-Digest without sha-256 is accepted",
                  ("lock-layering/holder/content-digest-strict",), patch=any_digest_algorithm),
    BrokenVariant("long-ceks", "a cek of 65 bytes is wrapped",
                  ("lock-layering/wrap/lengths",), patch=long_ceks),
    BrokenVariant("ignores-signature-params", "signature parameters are not checked",
                  ("lock-layering/holder/signature-params-strict",),
                  patch=ignores_signature_params),
    BrokenVariant("created-window-excludes-its-start", "a signature created exactly 300 s "
                  "ago is refused", ("lock-layering/holder/created-window-lower-edge",),
                  patch=created_window_excludes_its_start),
    BrokenVariant("named-keystore-id-unchecked", "a named capability's keystore_id is not "
                  "checked as an identifier", (CAP + "named-capability-strict",),
                  patch=named_keystore_id_unchecked),
    BrokenVariant("named-mac-length-unchecked", "a named capability's MAC of 31 bytes is a "
                  "MAC failure", (CAP + "named-capability-strict",),
                  patch=named_mac_length_unchecked),
    BrokenVariant("other-keystore-is-a-mac-failure", "another keystore's capability is a MAC "
                  "failure, not a binding one", (CAP + "named-capability-strict",),
                  patch=other_keystore_is_a_mac_failure),
    BrokenVariant("caveat-length-unchecked", "a caveat of 257 characters is well-formed",
                  (CAP + "named-capability-strict",), patch=caveat_length_unchecked),
    BrokenVariant("caveats-under-256", "a caveat of 256 characters is refused",
                  (CAP + "named-capability-strict",), patch=caveats_under_256),
    BrokenVariant("holder-rebinding", "a second holder caveat rebinds a capability",
                  ("lock-layering/holder/rebinding-refused",), patch=holder_rebinding),
    BrokenVariant("signature-covers-anything", "a holder signature need cover no component",
                  ("lock-layering/holder/signature-coverage-strict",),
                  patch=signature_covers_anything),
    BrokenVariant("grants-for-expired-capabilities", "an expired capability gets a grant",
                  ("lock-layering/delegation/grant-strict",),
                  patch=grants_for_expired_capabilities),
    BrokenVariant("trusts-vault-errors", "a query answered with an error status is used",
                  (EDV + "vault-errors",), patch=trusts_vault_errors),
    BrokenVariant("checks-wrapped-key-late", "a short wrapped_key is refused only after the "
                  "key lookup and the lock", ("lock-layering/operations/lengths-before-key-"
                                              "and-lock",), patch=checks_wrapped_key_late),
    BrokenVariant("short-ciphertext-is-a-forgery", "a ciphertext shorter than its tag is a "
                  "422 aead", ("lock-layering/encrypt/ciphertext-holds-its-tag",),
                  patch=short_ciphertext_is_a_forgery),
    BrokenVariant("combines-x-zero", "a share with x = 0 (the secret) opens the keystore",
                  ("lock-layering/shares/degenerate-shares-refused",), patch=combines_x_zero),
    BrokenVariant("any-share-length", "shares of a 31-byte secret make a keystore",
                  ("lock-layering/shares/degenerate-shares-refused",), patch=any_share_length),
    BrokenVariant("unprefixed-document-ids", "a vault document id without its z is used",
                  (EDV + "form-checked-even-when-sealed-right",),
                  patch=unprefixed_document_ids),
)
