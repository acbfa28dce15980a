"""Deliberately broken key servers: the conformance runner must catch every one.

Each variant is the real reference server with one fault, injected either as ASGI
middleware around the real app (the fault is visible on the wire only) or as a small
monkeypatch of reference internals (the fault sits where a real bug would). Each names
the checks that must fail because of it.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

import pytest

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
Rewrite = Callable[[Scope, bytes, int, list[tuple[bytes, bytes]], bytes],
                   Awaitable[tuple[int, list[tuple[bytes, bytes]], bytes]]]


@dataclass(frozen=True)
class BrokenVariant:
    name: str
    fault: str
    must_fail: tuple[str, ...]
    """Check ids that must fail against this variant (others may fail too)."""
    wrapper: Callable[[ASGIApp], ASGIApp] | None = None
    patch: Callable[[pytest.MonkeyPatch], None] | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    """Settings fields the variant's server starts with (test settings of its checks)."""


# --- ASGI plumbing ---------------------------------------------------------------------------

async def read_request_body(receive: Receive) -> bytes:
    body = b""
    while True:
        message = await receive()
        body += bytes(message.get("body", b""))
        if not message.get("more_body"):
            return body


def replay(body: bytes) -> Receive:
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive


async def call_app(app: ASGIApp, scope: Scope, method: str, path: str,
                   headers: list[tuple[bytes, bytes]] | None = None,
                   body: bytes = b"") -> tuple[int, bytes]:
    """Send a side request to the wrapped app; returns (status, body)."""
    inner = dict(scope, method=method, path=path, raw_path=path.encode(), query_string=b"",
                 headers=headers or [])
    status = 0
    chunks: list[bytes] = []

    async def capture(message: Message) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await app(inner, replay(body), capture)
    return status, b"".join(chunks)


def small_body(scope: Scope) -> bool:
    """Buffer only bodies that can arrive whole: never wait for a declared 4 MB."""
    declared = dict(scope.get("headers", [])).get(b"content-length", b"0")
    return int(declared or 0) < 2**20


def rewriting(rewrite: Rewrite, *, capture_request: bool = False
              ) -> Callable[[ASGIApp], ASGIApp]:
    """Middleware that buffers each response and lets `rewrite` change it."""

    def wrap(app: ASGIApp) -> ASGIApp:
        async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http":
                await app(scope, receive, send)
                return
            request_body = b""
            if capture_request and scope["method"] == "PUT" and small_body(scope):
                request_body = await read_request_body(receive)
                receive = replay(request_body)
            start: Message = {}
            chunks: list[bytes] = []

            async def capture(message: Message) -> None:
                if message["type"] == "http.response.start":
                    start.update(message)
                    return
                if message["type"] != "http.response.body":
                    await send(message)
                    return
                chunks.append(message.get("body", b""))
                if message.get("more_body"):
                    return
                status, headers, body = await rewrite(
                    scope, request_body, start["status"], list(start.get("headers", [])),
                    b"".join(chunks))
                headers = [(k, v) for k, v in headers if k.lower() != b"content-length"]
                headers.append((b"content-length", str(len(body)).encode()))
                await send({"type": "http.response.start", "status": status,
                            "headers": headers})
                await send({"type": "http.response.body", "body": body})

            await app(scope, receive, capture)

        return middleware

    return wrap


def path_of(scope: Scope) -> list[str]:
    return str(scope["path"]).strip("/").split("/")


def is_keypair(scope: Scope) -> bool:
    parts = path_of(scope)
    return len(parts) == 6 and parts[0] == "v1" and parts[5] == "keypair"


def is_public_keys(scope: Scope) -> bool:
    parts = path_of(scope)
    return len(parts) == 6 and parts[0] == "v1" and parts[5] == "public-keys"


def compact(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


# --- (1) private material on the public endpoint --------------------------------------------

def leaking_public_keys(app: ASGIApp) -> ASGIApp:
    """Remembers every accepted record and serves it whole on GET public-keys."""
    published: dict[tuple[str, str], Any] = {}

    async def rewrite(scope: Scope, request_body: bytes, status: int,
                      headers: list[tuple[bytes, bytes]], body: bytes
                      ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        parts = path_of(scope)
        if is_keypair(scope) and scope["method"] == "PUT" and status in (200, 201):
            published[(parts[2], parts[4])] = json.loads(request_body)
        if is_public_keys(scope) and status == 200 and (parts[2], parts[4]) in published:
            view = json.loads(body)
            view["encrypted_private_keys"] = published[(parts[2], parts[4])][
                "encrypted_private_keys"]
            body = compact(view)
        return status, headers, body

    return rewriting(rewrite, capture_request=True)(app)


# --- (2) (3) broken owner checks and token validation -----------------------------------------

def token_valid_for_any_user(monkeypatch: pytest.MonkeyPatch) -> None:
    """The classic owner-check bug: 'is this token valid?' instead of 'is it valid for
    the user whose record is addressed?'."""
    from keyflows.reference.auth import AccountClient

    original = AccountClient.is_valid
    owners: dict[str, str] = {}

    async def is_valid(self: AccountClient, user_id: str, access_token: str) -> bool:
        if await original(self, user_id, access_token):
            owners[access_token] = user_id
            return True
        known_owner = owners.get(access_token)
        return known_owner is not None and await original(self, known_owner, access_token)

    monkeypatch.setattr(AccountClient, "is_valid", is_valid)


def any_token_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    """Never asks the account server: any syntactically fine bearer token is valid."""
    from keyflows.reference.auth import AccountClient

    async def is_valid(self: AccountClient, user_id: str, access_token: str) -> bool:
        return True

    monkeypatch.setattr(AccountClient, "is_valid", is_valid)


# --- (4) a 500 on malformed JSON --------------------------------------------------------------

def crash_on_malformed_json(app: ASGIApp) -> ASGIApp:
    """Parses every PUT body itself first and falls over (500) when it is not JSON."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "PUT" and small_body(scope):
            body = await read_request_body(receive)
            try:
                json.loads(body)
            except (ValueError, RecursionError):
                await send({"type": "http.response.start", "status": 500,
                            "headers": [(b"content-type", b"text/plain")]})
                await send({"type": "http.response.body", "body": b"Internal Server Error"})
                return
            receive = replay(body)
        await app(scope, receive, send)

    return middleware


# --- (5) stored bytes mangled -----------------------------------------------------------------

def flipping_ciphertext(app: ASGIApp) -> ASGIApp:
    """Flips one bit of the ciphertext in every record it returns to the owner."""

    async def rewrite(scope: Scope, request_body: bytes, status: int,
                      headers: list[tuple[bytes, bytes]], body: bytes
                      ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        if is_keypair(scope) and scope["method"] == "GET" and status == 200:
            record = json.loads(body)
            enc = record["encrypted_private_keys"]
            raw = bytearray(base64.urlsafe_b64decode(enc["ciphertext"] + "=="))
            raw[10] ^= 0x04
            enc["ciphertext"] = base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()
            body = compact(record)
        return status, headers, body

    return rewriting(rewrite)(app)


# --- (6) non-uniform 401 bodies ---------------------------------------------------------------

def existence_oracle_401(app: ASGIApp) -> ASGIApp:
    """A 401 that says more when the addressed record exists (an existence oracle)."""

    async def rewrite(scope: Scope, request_body: bytes, status: int,
                      headers: list[tuple[bytes, bytes]], body: bytes
                      ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        if status == 401 and is_keypair(scope):
            parts = path_of(scope)
            public = f"/v1/users/{parts[2]}/apps/{parts[4]}/public-keys"
            exists, _ = await call_app(app, scope, "GET", public)
            if exists == 200:
                problem = json.loads(body)
                problem["detail"] = "This token may not access this keypair."
                body = compact(problem)
        return status, headers, body

    return rewriting(rewrite)(app)


def reason_oracle_401(app: ASGIApp) -> ASGIApp:
    """A 401 whose detail tells a missing header from a rejected token."""

    async def rewrite(scope: Scope, request_body: bytes, status: int,
                      headers: list[tuple[bytes, bytes]], body: bytes
                      ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        has_auth = any(k.lower() == b"authorization" for k, _ in scope.get("headers", []))
        if status == 401 and not has_auth:
            problem = json.loads(body)
            problem["detail"] = "No credentials were supplied."
            body = compact(problem)
        return status, headers, body

    return rewriting(rewrite)(app)


# --- (7) stale key_version accepted -----------------------------------------------------------

def stale_versions_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    """The server forgets to compare key_versions with the stored ones (KP-8)."""
    import keyflows.spec.keypair_publication as kp

    monkeypatch.setattr(kp, "check_replacement", lambda stored, new: None)


# --- (7b) continuity not enforced -------------------------------------------------------------

def no_rotation_signature_check(monkeypatch: pytest.MonkeyPatch) -> None:
    """Takes a rotation's hand-over signature on trust (KP-17)."""
    import keyflows.spec.keypair_publication as kp

    monkeypatch.setattr(kp, "check_rotation", lambda record, previous: None)


def versions_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """The v1 server: versions must grow, nothing else about the change is checked
    (KP-15 .. KP-17)."""
    import keyflows.spec.keypair_publication as kp

    monkeypatch.setattr(kp, "check_change", lambda state, record: kp.check_replacement(
        state.floor or None, record.key_version))


def no_possession_check(monkeypatch: pytest.MonkeyPatch) -> None:
    """Verifies the Ed25519 binding signature only, not the X25519 key's (KP-14)."""
    import keyflows.spec.keypair_publication as kp
    from keyflows.spec import xeddsa

    class Lenient:
        SIGNATURE_LEN = 64
        sign = staticmethod(xeddsa.sign)

        @staticmethod
        def verify(*args: Any, **kwargs: Any) -> None:
            return None

    monkeypatch.setattr(kp, "xeddsa", Lenient)


def public_apps_list(monkeypatch: pytest.MonkeyPatch) -> None:
    """Serves a user's application list to anyone, as v1 did (KP-23)."""
    from starlette.requests import Request
    from starlette.responses import Response

    import keyflows.reference.keypair_publication as routes
    from keyflows.reference.common import json_text_response, path_identifiers, services
    from keyflows.reference.store import canonical_json

    async def list_apps(request: Request) -> Response:
        (user_id,) = path_identifiers(request, "user_id")
        apps = services(request).store.list_apps(user_id)
        return json_text_response(canonical_json(
            {"user_id": user_id, "apps": [{"client_id": c, "key_version": v}
                                          for c, v in apps]}))

    monkeypatch.setattr(routes, "list_apps", list_apps)


def rotation_must_change_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    """Refuses a rotation that keeps the public keys, so a re-wrap after a kB rotation
    cannot be published (KP-22)."""
    import keyflows.spec.keypair_publication as kp
    from keyflows.spec.errors import LinkError

    original = kp.check_change

    def check_change(state: kp.StoredState, record: kp.Record) -> None:
        if state.live is not None and record.public_keys == state.live.public_keys:
            raise LinkError("a rotation must change the keys", requirement="KP-17")
        original(state, record)

    monkeypatch.setattr(kp, "check_change", check_change)


def unsigned_deletion(monkeypatch: pytest.MonkeyPatch) -> None:
    """Deletes on any well-formed deletion body (KP-19)."""
    import keyflows.spec.keypair_publication as kp

    monkeypatch.setattr(kp, "check_deletion", lambda live, deletion, **_: None)


# --- (8) limit advertised but not enforced ----------------------------------------------------

ADVERTISED_LIMIT = 4096


def unenforced_body_limit(app: ASGIApp) -> ASGIApp:
    """Advertises a smaller max_body_bytes than it enforces (the server runs with the
    default 65536)."""

    async def rewrite(scope: Scope, request_body: bytes, status: int,
                      headers: list[tuple[bytes, bytes]], body: bytes
                      ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        if scope["path"] == "/v1/capabilities" and status == 200:
            caps = json.loads(body)
            caps["limits"]["max_body_bytes"] = ADVERTISED_LIMIT
            body = compact(caps)
        return status, headers, body

    return rewriting(rewrite)(app)


# --- (9) errors not in problem+json -----------------------------------------------------------

def plain_json_errors(app: ASGIApp) -> ASGIApp:
    """Serves its problems as application/json (API-2 wants application/problem+json)."""

    async def rewrite(scope: Scope, request_body: bytes, status: int,
                      headers: list[tuple[bytes, bytes]], body: bytes
                      ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        if status >= 400:
            headers = [(k, b"application/json" if k.lower() == b"content-type" else v)
                       for k, v in headers]
        return status, headers, body

    return rewriting(rewrite)(app)


# --- (10) (11) lenient crypto input checks ----------------------------------------------------

def no_point_check(monkeypatch: pytest.MonkeyPatch) -> None:
    """Accepts any 32 bytes as an X25519 public key (no low-order / canonical check)."""
    import keyflows.spec.primitives as primitives

    monkeypatch.setattr(primitives, "check_x25519_public_key",
                        lambda pub, requirement=None: None)


def lenient_base64(monkeypatch: pytest.MonkeyPatch) -> None:
    """Decodes base64url the lenient way most libraries do: padding, the standard
    alphabet, whitespace and stray trailing bits all pass."""
    import keyflows.spec.keypair_publication as kp
    from keyflows.spec.errors import LengthError

    def decode_exact(text: str, length: int, *, field: str,
                     requirement: str | None = None) -> bytes:
        cleaned = "".join(text.split()).rstrip("=")
        data = base64.urlsafe_b64decode(cleaned + "=" * (-len(cleaned) % 4))
        if len(data) != length:
            raise LengthError(f"{field} must be {length} bytes", requirement=requirement)
        return data

    monkeypatch.setattr(kp, "b64url_decode_exact", decode_exact)


def old_argon2_floor(monkeypatch: pytest.MonkeyPatch) -> None:
    """The consumer range of old: t >= 1 and m >= 8p, far below the producers' floor
    (KD-5)."""
    import keyflows.spec.key_derivation as kd
    from keyflows.spec.errors import ParamsError

    def check_argon2_params(params: kd.Argon2Params) -> None:
        t, m, p = params.t, params.m, params.p
        for value in (t, m, p):
            if not isinstance(value, int) or isinstance(value, bool):
                raise ParamsError("Argon2id parameters must be integers", requirement="KD-5")
        if not (1 <= t <= 16 and 1 <= p <= 16 and 8 * p <= m <= 4194304):
            raise ParamsError("Argon2id parameters out of range", requirement="KD-5")

    import keyflows.spec.keypair_publication as kp

    monkeypatch.setattr(kp, "check_argon2_params", check_argon2_params)


def empty_ciphertext_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    """Takes an empty encrypted_private_keys.ciphertext (API-1: the ciphertext is exactly
    the sealed private keys' length), as a length check written `if ciphertext and ...`
    would."""
    import copy
    import dataclasses

    import keyflows.spec.keypair_publication as kp

    original = kp.parse_record

    def parse_record(obj: object, *, public_only: bool = False) -> kp.Record:
        enc = obj.get("encrypted_private_keys") if isinstance(obj, dict) else None
        if public_only or not isinstance(obj, dict) or not isinstance(enc, dict) \
                or enc.get("ciphertext") != "":
            return original(obj, public_only=public_only)
        filled = copy.deepcopy(obj)
        filled["encrypted_private_keys"] = {**enc, "ciphertext": base64.urlsafe_b64encode(
            bytes(kp.CIPHERTEXT_LEN)).rstrip(b"=").decode()}
        return dataclasses.replace(original(filled), ciphertext=b"")

    monkeypatch.setattr(kp, "parse_record", parse_record)


STALE_VERSION_CHECKS = (
    "keypair-publication/replace/same-version-refused",
    "keypair-publication/replace/lower-version-refused",
    "keypair-publication/replace/identical-replay-refused",
    "keypair-publication/replace/old-record-replay-refused",
    "keypair-publication/delete/deleted-version-replay-refused",
)

CROSS_USER_CHECKS = (
    "keypair-publication/fetch/other-user-refused",
    "keypair-publication/replace/other-user-refused",
    "keypair-publication/delete/other-user-refused",
)

VARIANTS = (
    BrokenVariant(
        "old-argon2-floor", "accepts Argon2id parameters below the one floor (t=1, 8 KiB)",
        ("key-derivation/argon2-params/t-below-floor",
         "key-derivation/argon2-params/m-below-floor",
         "key-derivation/argon2-params/m-8-kib"),
        patch=old_argon2_floor),
    BrokenVariant(
        "leaks-private-keys", "serves encrypted_private_keys on the public-keys endpoint",
        ("keypair-publication/public-keys/public-view-only",
         "keypair-publication/public/no-private-material",
         "keypair-publication/public-keys/binding-verifies"),
        wrapper=leaking_public_keys),
    BrokenVariant(
        "token-valid-for-any-user", "accepts a token valid for any user (no owner check)",
        (*CROSS_USER_CHECKS, "common/auth/uniform-401"),
        patch=token_valid_for_any_user),
    BrokenVariant(
        "accepts-any-token", "never asks the account server; every bearer token is valid",
        (*CROSS_USER_CHECKS, "common/auth/unknown-token", "common/auth/expired-token",
         "common/auth/account-server-consulted", "common/auth/bad-account-answer",
         "common/auth/uniform-401"),
        patch=any_token_accepted),
    BrokenVariant(
        "500-on-malformed-json", "answers 500 to a body that is not JSON",
        ("common/errors/not-json", "common/errors/no-server-error",
         "common/auth/before-parsing", "common/errors/problem-json"),
        wrapper=crash_on_malformed_json),
    BrokenVariant(
        "flips-ciphertext-bit", "returns the owner's record with one ciphertext bit flipped",
        ("keypair-publication/fetch/own-record-unchanged",
         "key-derivation/application-key/round-trip", "key-derivation/password-key/round-trip",
         "key-derivation/password-key/salt-and-params-unchanged",
         "keypair-publication/replace/higher-version"),
        wrapper=flipping_ciphertext),
    BrokenVariant(
        "401-existence-oracle", "401 detail reveals whether the record exists",
        ("common/auth/uniform-401",), wrapper=existence_oracle_401),
    BrokenVariant(
        "401-reason-oracle", "401 detail tells a missing header from a bad token",
        ("common/auth/uniform-401",), wrapper=reason_oracle_401),
    BrokenVariant(
        "accepts-stale-key-version", "stores records whose key_version is not higher",
        (*STALE_VERSION_CHECKS, "keypair-publication/rotation/replayed-change-refused"),
        patch=stale_versions_accepted),
    BrokenVariant(
        "unsigned-rotation-accepted", "takes a rotation's hand-over signature on trust",
        ("keypair-publication/rotation/unsigned-change-refused",
         "keypair-publication/rotation/other-users-key-refused"),
        patch=no_rotation_signature_check),
    BrokenVariant(
        "versions-only", "checks that versions grow and nothing else about a change",
        ("keypair-publication/rotation/version-gap-refused",
         "keypair-publication/change/wrong-type-refused",
         "keypair-publication/publish/key-version-range",
         "keypair-publication/rotation/unsigned-change-refused",
         "keypair-publication/rotation/other-users-key-refused"),
        patch=versions_only),
    BrokenVariant(
        "no-x25519-possession-check", "does not verify the X25519 key's XEdDSA signature",
        ("keypair-publication/possession/x25519-key-proven",), patch=no_possession_check),
    BrokenVariant(
        "public-apps-list", "lists a user's applications to anyone",
        ("keypair-publication/apps/owner-only", "common/users-apps/get-authentication"),
        patch=public_apps_list),
    BrokenVariant(
        "rewrap-refused", "refuses a rotation that keeps the keys (no re-wrap after kB "
        "rotation)", ("keypair-publication/rotation/rewrap-same-keys",),
        patch=rotation_must_change_keys),
    BrokenVariant(
        "unsigned-deletion-accepted", "deletes without checking the deletion's signature",
        ("keypair-publication/delete/signed-deletion",), patch=unsigned_deletion),
    BrokenVariant(
        "unenforced-body-limit", "advertises max_body_bytes 4096 but accepts 65536",
        ("common/limits/oversized-body", "common/limits/oversized-chunked"),
        wrapper=unenforced_body_limit),
    BrokenVariant(
        "errors-not-problem-json", "serves errors as application/json",
        ("common/errors/problem-json", "common/routes/unknown-route",
         "common/auth/missing-token", "keypair-publication/publish/bad-signature"),
        wrapper=plain_json_errors),
    BrokenVariant(
        "no-x25519-point-check", "accepts low-order and non-canonical X25519 keys",
        ("keypair-publication/publish/low-order-x25519",
         "keypair-publication/publish/non-canonical-x25519"),
        patch=no_point_check),
    BrokenVariant(
        "empty-ciphertext-accepted", "accepts an empty encrypted_private_keys.ciphertext",
        ("keypair-publication/publish/wrong-lengths",), patch=empty_ciphertext_accepted),
    BrokenVariant(
        "lenient-base64", "decodes base64url leniently",
        ("common/encoding/padding-rejected", "common/encoding/standard-alphabet-rejected",
         "common/encoding/trailing-bits-rejected", "common/encoding/whitespace-rejected"),
        patch=lenient_base64),
)
