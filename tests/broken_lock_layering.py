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


# --- capabilities ---------------------------------------------------------------------------

def ignores_caveat(kind: str) -> Any:
    """authorize() that forgets one kind of caveat (ops, key or exp)."""

    def patch(monkeypatch: pytest.MonkeyPatch) -> None:
        from keyflows.spec import lock_layering as spec

        original = spec.authorize

        def authorize(capability: Any, operation: str, key_id: str | None, now: int) -> None:
            kept = tuple(c for c in capability.caveats if not c.startswith(kind + "="))
            original(spec.Capability(capability.keystore_id, kept, capability.mac), operation,
                     key_id, now)

        _patch_spec(monkeypatch, "authorize", authorize)

    return patch


def skips_mac_check(monkeypatch: pytest.MonkeyPatch) -> None:
    """verify_capability() that checks the keystore id and forgets the MAC."""
    from keyflows.spec.errors import BindingError

    def verify(capability: Any, root_key: bytes, keystore_id: str) -> None:
        if capability.keystore_id != keystore_id:
            raise BindingError("other keystore")

    _patch_spec(monkeypatch, "verify_capability", verify)


def unknown_caveats_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    """parse_caveat() that lets anything it does not understand through."""
    from keyflows.spec import lock_layering as spec
    from keyflows.spec.errors import AuthzError

    original = spec.parse_caveat

    def parse(caveat: str) -> Any:
        try:
            return original(caveat)
        except AuthzError:
            return spec.Caveat("ignored")

    _patch_spec(monkeypatch, "parse_caveat", parse)


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

    original = spec.sign
    _patch_spec(monkeypatch, "sign", lambda seed, message: original(seed, message + b"\n"))


def fixed_nonce(monkeypatch: pytest.MonkeyPatch) -> None:
    """The encrypt route draws no fresh nonce: every ciphertext uses the same one."""
    from keyflows.reference import lock_layering as routes
    from keyflows.spec import lock_layering as spec

    async def encrypt(request: Request) -> Response:
        call = await routes.authorized(request, spec.OP_ENCRYPT, body_kind="encrypt")
        key = await routes.working_material(request, call)
        nonce = bytes(12)
        ciphertext = spec.encrypt(key, nonce, call.body["plaintext"], call.body["aad"])
        return routes.json_response({"nonce": b64url_encode(nonce),
                                     "ciphertext": b64url_encode(ciphertext)})

    monkeypatch.setattr(routes, "encrypt", encrypt)


def unwrap_without_point_check(monkeypatch: pytest.MonkeyPatch) -> None:
    """unwrap() with the raw X25519 function: a low-order epk gets through to the AEAD."""
    from keyflows.spec import lock_layering as spec
    from keyflows.spec import primitives

    def unwrap(wrapped: Any, recipient_private: bytes) -> bytes:
        recipient_public = primitives.x25519_public_key(recipient_private)
        shared = primitives.x25519_raw(recipient_private, wrapped.epk)
        kek = spec.wrap_kek(shared, wrapped.epk, recipient_public)
        return primitives.aes256gcm_decrypt(kek, spec.WRAP_NONCE, wrapped.wrapped_key, b"")

    _patch_spec(monkeypatch, "unwrap", unwrap)


def leaks_signing_seed(monkeypatch: pytest.MonkeyPatch) -> None:
    """The sign route returns the seed it used as a 'debug' member."""
    from keyflows.reference import lock_layering as routes
    from keyflows.spec import lock_layering as spec

    async def sign(request: Request) -> Response:
        call = await routes.authorized(request, spec.OP_SIGN, body_kind="sign")
        seed = await routes.working_material(request, call)
        return routes.json_response({"signature": b64url_encode(spec.sign(
            seed, call.body["message"])), "debug": b64url_encode(seed)})

    monkeypatch.setattr(routes, "sign", sign)


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
    BrokenVariant("leaks-signing-seed", "the sign answer carries the Ed25519 seed",
                  ("lock-layering/privacy/no-secret-material",), patch=leaks_signing_seed),
    BrokenVariant("leaks-user-share", "key creation echoes the user's share",
                  ("lock-layering/privacy/no-secret-material",), wrapper=leaks_user_share),
)
