"""Checks every v1 server must pass whatever flows it offers: capabilities, routing,
authentication (uniform, oracle-free 401s), limits, media types, error format and the
canonical base64url encoding."""

from __future__ import annotations

import os
from typing import Any

from keyflows.conformance.checks.support import (
    DELETE,
    expect_absent,
    expect_stored,
    expect_unauthorized,
    get_path,
    mutated,
)
from keyflows.conformance.clients import (
    Sealed,
    seal_with_application_key,
    standard_alphabet,
    to_json,
    with_padding,
    with_trailing_bits,
)
from keyflows.conformance.http import Exchange
from keyflows.conformance.probe import (
    JSON_HEADERS,
    CheckSkipped,
    Probe,
    User,
    bearer,
    describe,
    keypair_path,
)
from keyflows.conformance.registry import KEYPAIR_PUBLICATION, check

CLIENT = "conformance-app"

# Fields whose base64url encoding the encoding checks mutate, by dotted path.
B64_FIELDS = ("public_keys.x25519", "public_keys.ed25519", "binding_signature",
              "encrypted_private_keys.nonce", "encrypted_private_keys.commitment",
              "encrypted_private_keys.ciphertext")


def owner_with_record(t: Probe, label: str = "owner", client_id: str = CLIENT,
                      ) -> tuple[User, Sealed]:
    user = t.user(label)
    return user, t.publish(user, client_id)


# --- capabilities ----------------------------------------------------------------------

@check("common/capabilities/shape", requirements=("API-7",), needs=())
def capabilities_shape(t: Probe) -> None:
    """GET /v1/capabilities answers without credentials: profile, flows, limits, auth."""
    exchange = t.request("GET", "/v1/capabilities")
    caps = t.expect_ok_json(exchange, 200, what="GET /v1/capabilities without credentials")
    problems = capability_problems(caps)
    if problems:
        t.fail("capabilities: " + "; ".join(problems),
               expected='{"profile": "v1", "spec_version": str, "server": {"name", "version"}, '
                        '"flows": [str], "limits": {"max_body_bytes": int > 0}, '
                        '"auth": {"scheme": "bearer", "account_server": "validate"}}',
               actual=describe(exchange), exchange=exchange)


def capability_problems(caps: Any) -> list[str]:
    if not isinstance(caps, dict):
        return ["not a JSON object"]
    problems = []
    if caps.get("profile") != "v1":
        problems.append(f"profile is {caps.get('profile')!r}, expected 'v1'")
    if not isinstance(caps.get("spec_version"), str):
        problems.append("spec_version is not a string")
    server = caps.get("server")
    if not (isinstance(server, dict) and isinstance(server.get("name"), str)
            and isinstance(server.get("version"), str)):
        problems.append("server lacks string members name and version")
    flows = caps.get("flows")
    if not (isinstance(flows, list) and all(isinstance(f, str) for f in flows)):
        problems.append("flows is not a list of strings")
    limits = caps.get("limits")
    limit = limits.get("max_body_bytes") if isinstance(limits, dict) else None
    if not isinstance(limit, int) or isinstance(limit, bool) or limit <= 0:
        problems.append("limits.max_body_bytes is not a positive integer")
    auth = caps.get("auth")
    if not (isinstance(auth, dict) and auth.get("scheme") == "bearer"
            and auth.get("account_server") == "validate"):
        problems.append('auth is not {"scheme": "bearer", "account_server": "validate"}')
    return problems


# --- routing ---------------------------------------------------------------------------

@check("common/routes/unknown-route", requirements=("API-2", "API-10"), needs=())
def unknown_route(t: Probe) -> None:
    """Unknown routes answer 404 problem+json."""
    for path in ("/v1/no-such-route", "/v2/capabilities", "/v1/users/u1/apps/c1/secret-keys",
                 "/v1/users/u1"):
        exchange = t.request("GET", path)
        t.expect_rejected(exchange, 404, what=f"GET {path}")


@check("common/routes/wrong-method", requirements=("API-2", "API-11"), needs=())
def wrong_method(t: Probe) -> None:
    """A known route with a method it does not serve answers 405 problem+json with an
    Allow header naming the methods the path serves."""
    attempts: list[tuple[str, str, str | None, set[str]]] = [
        ("POST", "/v1/capabilities", None, {"GET"}),
        ("DELETE", "/v1/capabilities", None, {"GET"})]
    if KEYPAIR_PUBLICATION in t.session.flows:
        user = t.user("method")
        attempts += [("PATCH", keypair_path(user.user_id, CLIENT), user.token,
                      {"GET", "PUT", "DELETE"}),
                     ("POST", f"/v1/users/{user.user_id}/apps/{CLIENT}/public-keys", None,
                      {"GET"}),
                     ("PUT", f"/v1/users/{user.user_id}/apps", None, {"GET"})]
    for method, path, token, served in attempts:
        exchange = t.request(method, path, token=token)
        t.expect_rejected(exchange, 405, what=f"{method} {path}")
        allow = {m.strip().upper() for m in (exchange.header("allow") or "").split(",")
                 if m.strip()}
        if not served <= allow or method in allow:
            t.fail(f"{method} {path}: the 405's Allow header does not list the path's "
                   f"methods (API-11)", expected=f"Allow naming {', '.join(sorted(served))}",
                   actual=f"Allow: {exchange.header('allow') or '(none)'}", exchange=exchange)


# --- authentication --------------------------------------------------------------------

@check("common/auth/missing-token", requirements=("API-3", "API-4"))
def missing_token(t: Probe) -> None:
    """Requests without credentials are refused with 401 and change nothing."""
    owner, sealed = owner_with_record(t)
    newer = seal_with_application_key(owner.user_id, CLIENT, 2)
    for exchange in (t.get_keypair(owner.user_id, CLIENT, token=None),
                     t.put_keypair(owner.user_id, CLIENT, newer.record, token=None),
                     t.delete_keypair(owner.user_id, CLIENT, token=None)):
        expect_unauthorized(t, exchange, what=f"{exchange.method} without Authorization")
    expect_stored(t, owner, CLIENT, sealed.record, what="the record after refused requests")


MALFORMED_AUTHORIZATION = ("Basic dXNlcjpwYXNzd29yZA==", "Bearer", "Token {token}",
                           "Basic {token}", "Bearer {token} extra", "{token}")


@check("common/auth/malformed-header", requirements=("API-4",))
def malformed_header(t: Probe) -> None:
    """Authorization headers that are not 'Bearer <token>' are refused with 401, even
    when they carry a valid token."""
    owner, _ = owner_with_record(t)
    for template in MALFORMED_AUTHORIZATION:
        value = template.format(token=owner.token)
        exchange = t.request("GET", keypair_path(owner.user_id, CLIENT),
                             headers={"authorization": value})
        shown = template.format(token="<valid token>")
        expect_unauthorized(t, exchange, what=f"GET with 'Authorization: {shown}'")


@check("common/auth/unknown-token", requirements=("API-3", "API-4"))
def unknown_token(t: Probe) -> None:
    """A token the account server never issued is refused with 401."""
    owner, sealed = owner_with_record(t)
    token = os.urandom(24).hex()
    newer = seal_with_application_key(owner.user_id, CLIENT, 2)
    for exchange in (t.get_keypair(owner.user_id, CLIENT, token=token),
                     t.put_keypair(owner.user_id, CLIENT, newer.record, token=token),
                     t.delete_keypair(owner.user_id, CLIENT, token=token)):
        expect_unauthorized(t, exchange, what=f"{exchange.method} with an unknown token")
    expect_stored(t, owner, CLIENT, sealed.record, what="the record after refused requests")


@check("common/auth/expired-token", requirements=("API-3", "API-4"))
def expired_token(t: Probe) -> None:
    """A token that worked and then expired is refused (the server must not cache a
    validation answer)."""
    owner, sealed = owner_with_record(t)
    token = t.token_for(owner.user_id)
    exchange = t.get_keypair(owner.user_id, CLIENT, token=token)
    t.expect_status(exchange, 200, what="GET own record with a fresh token")
    t.session.accounts.expire(token)
    newer = seal_with_application_key(owner.user_id, CLIENT, 2)
    for exchange in (t.get_keypair(owner.user_id, CLIENT, token=token),
                     t.put_keypair(owner.user_id, CLIENT, newer.record, token=token),
                     t.delete_keypair(owner.user_id, CLIENT, token=token)):
        expect_unauthorized(t, exchange, what=f"{exchange.method} with an expired token")
    expect_stored(t, owner, CLIENT, sealed.record, what="the record after refused requests")


@check("common/auth/account-server-consulted", requirements=("API-3",))
def account_server_consulted(t: Probe) -> None:
    """Each authenticated request is validated with the account server, for the user
    whose resource is addressed."""
    owner, _ = owner_with_record(t)
    for attempt in (1, 2):
        before = len(t.session.accounts.calls())
        exchange = t.get_keypair(owner.user_id, CLIENT, token=owner.token)
        t.expect_status(exchange, 200, what=f"GET own record (request {attempt})")
        calls = t.session.accounts.calls()[before:]
        if not any(c.user_id == owner.user_id and c.access_token == owner.token
                   for c in calls):
            seen = ", ".join(f"user_id={c.user_id!r}" for c in calls) or "no call"
            t.fail(f"request {attempt} was answered without asking the account server to "
                   f"validate (user_id={owner.user_id}, access_token)",
                   expected=f"POST /v1/validate with user_id {owner.user_id!r} and the token",
                   actual=f"account server saw: {seen}", exchange=exchange)


BAD_ACCOUNT_ANSWERS = (b'{"valid":"true"}', b"not json", b"{}", b'{"valid":1}', b"[true]")


@check("common/auth/bad-account-answer", requirements=("API-3",))
def bad_account_answer(t: Probe) -> None:
    """A malformed answer from the account server is never taken as valid (503)."""
    owner, _ = owner_with_record(t)
    for answer in BAD_ACCOUNT_ANSWERS:
        token = t.token_for(owner.user_id)
        t.session.accounts.answer_badly(token, answer)
        exchange = t.get_keypair(owner.user_id, CLIENT, token=token)
        what = f"GET own record while the account server answers {answer.decode()}"
        if 200 <= exchange.status < 300:
            t.fail(f"{what}: the request was accepted (API-3: only an answer of valid "
                   f"may let it through)", expected="503 account-server-unavailable",
                   actual=describe(exchange), exchange=exchange)
        t.expect_problem(exchange, 503, what=what, slug="account-server-unavailable")


@check("common/auth/uniform-401", requirements=("API-4",))
def uniform_401(t: Probe) -> None:
    """Every refused credential (missing, malformed, unknown, expired, another user's)
    gets a byte-identical 401, whether or not the addressed record exists."""
    owner, _ = owner_with_record(t)
    other, _ = owner_with_record(t, "other")
    expired = t.token_for(owner.user_id)
    t.session.accounts.expire(expired)
    credentials: dict[str, dict[str, str]] = {
        "no Authorization header": {},
        "a Basic header": {"authorization": "Basic dXNlcjpwYXNzd29yZA=="},
        "'Bearer' alone": {"authorization": "Bearer"},
        "an unknown token": bearer(os.urandom(24).hex()),
        "an expired token": bearer(expired),
        "another user's valid token": bearer(other.token),
    }
    targets = {"an existing record": (owner.user_id, CLIENT),
               "an absent record": (owner.user_id, "absent-app"),
               "an unknown user": (t.session.new_user_id("nobody"), CLIENT)}
    baseline: Exchange | None = None
    for target_name, (user_id, client_id) in targets.items():
        body = seal_with_application_key(user_id, client_id, 7).body
        for cred_name, headers in credentials.items():
            for method in ("GET", "PUT", "DELETE"):
                extra = dict(JSON_HEADERS) if method == "PUT" else {}
                exchange = t.request(method, keypair_path(user_id, client_id),
                                     headers={**headers, **extra},
                                     body=body if method == "PUT" else None)
                what = f"{method} {target_name} with {cred_name}"
                expect_unauthorized(t, exchange, what=what)
                if baseline is None:
                    baseline = exchange
                elif exchange.response_body != baseline.response_body:
                    t.fail(f"{what}: the 401 body differs from the one for {baseline.method} "
                           f"{next(iter(targets))} with no Authorization header "
                           f"(an oracle on the reason or on the record's existence)",
                           expected=baseline.response_body.decode(errors="replace"),
                           actual=exchange.response_body.decode(errors="replace"),
                           exchange=exchange)


@check("common/auth/before-parsing", requirements=("API-4",))
def auth_before_parsing(t: Probe) -> None:
    """Without valid credentials a malformed body is still a 401: an unauthenticated
    caller learns nothing about validation."""
    owner, _ = owner_with_record(t)
    for body, content_type in ((b"not json", "application/json"),
                               (b'{"user_id": 1}', "application/json"),
                               (b"{}", "text/plain")):
        exchange = t.request("PUT", keypair_path(owner.user_id, CLIENT),
                             headers={"content-type": content_type}, body=body)
        expect_unauthorized(t, exchange, what=f"PUT {body.decode()!r} ({content_type}) "
                                               f"without credentials")


# --- limits ----------------------------------------------------------------------------

def body_limit(t: Probe) -> int:
    limit = t.session.max_body_bytes
    if limit is None:
        t.fail("capabilities do not advertise limits.max_body_bytes (API-5, API-7)",
               expected="limits.max_body_bytes: a positive integer", actual="absent")
    return limit


def padded_record(record: dict[str, Any], size: int) -> bytes:
    """The record's JSON followed by spaces up to `size` bytes: valid JSON, only big."""
    body = to_json(record)
    return body + b" " * (size - len(body))


@check("common/limits/oversized-body", requirements=("API-5", "API-6"))
def oversized_body(t: Probe) -> None:
    """A body of max_body_bytes + 1 bytes is refused with 413 and nothing is stored."""
    limit = body_limit(t)
    user = t.user("big")
    sealed = seal_with_application_key(user.user_id, CLIENT, 1)
    exchange = t.put_keypair(user.user_id, CLIENT, padded_record(sealed.record, limit + 1),
                             token=user.token)
    t.expect_rejected(exchange, 413, what=f"PUT a valid record padded to {limit + 1} bytes")
    expect_absent(t, user, CLIENT, what="GET after the refused oversized PUT")


@check("common/limits/body-at-limit-accepted", requirements=("API-5",))
def body_at_limit(t: Probe) -> None:
    """A valid record of exactly max_body_bytes bytes is accepted (no off-by-one)."""
    limit = body_limit(t)
    user = t.user("limit")
    sealed = seal_with_application_key(user.user_id, CLIENT, 1)
    if len(sealed.body) > limit:
        raise CheckSkipped(f"max_body_bytes {limit} is smaller than a record")
    exchange = t.put_keypair(user.user_id, CLIENT, padded_record(sealed.record, limit),
                             token=user.token)
    t.expect_status(exchange, 201, what=f"PUT a valid record padded to exactly {limit} bytes")


@check("common/limits/oversized-chunked", requirements=("API-5",))
def oversized_chunked(t: Probe) -> None:
    """A chunked body (no Content-Length) larger than max_body_bytes is refused with 413."""
    limit = body_limit(t)
    user = t.user("chunked")
    sealed = seal_with_application_key(user.user_id, CLIENT, 1)
    body = padded_record(sealed.record, limit + 1)
    chunks = [body[i:i + 4096] for i in range(0, len(body), 4096)]
    exchange = t.request("PUT", keypair_path(user.user_id, CLIENT), token=user.token,
                         headers=JSON_HEADERS, chunks=chunks)
    t.expect_rejected(exchange, 413, what=f"PUT a chunked body of {limit + 1} bytes")
    expect_absent(t, user, CLIENT, what="GET after the refused chunked PUT")


@check("common/limits/content-length-early", requirements=("API-5",))
def content_length_early(t: Probe) -> None:
    """A Content-Length above the limit is refused with 413 before the body is read."""
    limit = body_limit(t)
    user = t.user("declared")
    declared = limit * 64 + 1
    exchange = t.send_declared_length(
        "PUT", keypair_path(user.user_id, CLIENT), {**bearer(user.token), **JSON_HEADERS},
        declared=declared, sent=b"{", deadline_s=5.0)
    if exchange.status == 0:
        t.fail(f"PUT declaring Content-Length {declared} got no answer within 5 s while "
               f"the body was withheld: the server waits to read more than its limit",
               expected="413 at once", actual="no answer", exchange=exchange)
    t.expect_rejected(exchange, 413, what=f"PUT declaring Content-Length {declared}")


# --- media type and malformed input ------------------------------------------------------

@check("common/media/wrong-content-type", requirements=("API-2",))
def wrong_content_type(t: Probe) -> None:
    """A record sent as anything but application/json is refused with 415."""
    user = t.user("media")
    sealed = seal_with_application_key(user.user_id, CLIENT, 1)
    for content_type in ("text/plain", "application/x-www-form-urlencoded",
                         "application/jsonx", None):
        headers = {"content-type": content_type} if content_type else {}
        exchange = t.request("PUT", keypair_path(user.user_id, CLIENT), token=user.token,
                             headers=headers, body=sealed.body)
        t.expect_rejected(exchange, 415,
                          what=f"PUT a valid record as {content_type or 'no content-type'}")
    expect_absent(t, user, CLIENT, what="GET after the refused PUTs")


NOT_JSON = (b"not json", b"{", b"", b"\xff\xfe{}", b'{"user_id":"a",}', b"[]", b"null", b"1",
            b'"record"')


@check("common/errors/not-json", requirements=("API-6", "API-2"))
def not_json(t: Probe) -> None:
    """A body that is not a JSON object is refused with 400."""
    user = t.user("notjson")
    for body in NOT_JSON:
        exchange = t.put_keypair(user.user_id, CLIENT, body, token=user.token)
        t.expect_rejected(exchange, 400, what=f"PUT body {body!r}")


def record_for(t: Probe, label: str) -> tuple[User, dict[str, Any]]:
    user = t.user(label)
    return user, seal_with_application_key(user.user_id, CLIENT, 1).record


@check("common/errors/unknown-member", requirements=("API-6",))
def unknown_member(t: Probe) -> None:
    """A record with a member the profile does not define is refused with 400."""
    user, record = record_for(t, "unknown")
    for parent in ("", "public_keys.", "encrypted_private_keys.", "encrypted_private_keys.kek."):
        bad = mutated(record, parent + "extra", "x")
        exchange = t.put_keypair(user.user_id, CLIENT, bad, token=user.token)
        t.expect_rejected(exchange, 400, what=f"PUT with an unknown member {parent}extra",
                          failure_class="decode")
    expect_absent(t, user, CLIENT, what="GET after the refused PUTs")


REQUIRED_MEMBERS = ("user_id", "client_id", "key_version", "public_keys", "binding_signature",
                    "encrypted_private_keys", "public_keys.x25519", "public_keys.ed25519",
                    "encrypted_private_keys.aead", "encrypted_private_keys.kek",
                    "encrypted_private_keys.nonce", "encrypted_private_keys.commitment",
                    "encrypted_private_keys.ciphertext", "encrypted_private_keys.kek.method")


@check("common/errors/missing-member", requirements=("API-6",))
def missing_member(t: Probe) -> None:
    """A record lacking a required member is refused with 400."""
    user, record = record_for(t, "missing")
    for path in REQUIRED_MEMBERS:
        exchange = t.put_keypair(user.user_id, CLIENT, mutated(record, path, DELETE),
                                 token=user.token)
        t.expect_rejected(exchange, 400, what=f"PUT without {path}", failure_class="decode")


WRONG_TYPES: tuple[tuple[str, Any], ...] = (
    ("key_version", "1"), ("key_version", True), ("key_version", 1.5), ("key_version", None),
    ("user_id", 5), ("public_keys", "x"), ("public_keys.x25519", 5),
    ("binding_signature", ["a"]), ("encrypted_private_keys", []),
    ("encrypted_private_keys.kek", "application-key"), ("encrypted_private_keys.nonce", {}))


@check("common/errors/wrong-type", requirements=("API-6",))
def wrong_type(t: Probe) -> None:
    """A member of the wrong JSON type is refused with 400."""
    user, record = record_for(t, "types")
    for path, value in WRONG_TYPES:
        exchange = t.put_keypair(user.user_id, CLIENT, mutated(record, path, value),
                                 token=user.token)
        t.expect_rejected(exchange, 400, what=f"PUT with {path} = {value!r}",
                          failure_class="decode")


def hostile_bodies(record: dict[str, Any]) -> list[tuple[str, bytes]]:
    """Inputs that crash naive parsers: deep nesting, huge numbers, odd code points."""
    plain = to_json(record).decode()
    version = f'"key_version":{record["key_version"]}'
    return [
        ("deeply nested arrays", b"[" * 20000 + b"]" * 20000),
        ("deeply nested objects", b'{"a":' * 5000 + b"1" + b"}" * 5000),
        ("a 5000-digit key_version", plain.replace(version, '"key_version":' + "9" * 5000)
         .encode()),
        ("key_version 1e400", plain.replace(version, '"key_version":1e400').encode()),
        ("key_version NaN", plain.replace(version, '"key_version":NaN').encode()),
        ("key_version -Infinity", plain.replace(version, '"key_version":-Infinity').encode()),
        ("key_version 2^64", plain.replace(version, f'"key_version":{2**64}').encode()),
        ("a lone surrogate in user_id",
         plain.replace(f'"user_id":"{record["user_id"]}"', '"user_id":"\\ud800"').encode()),
        ("a NUL in client_id",
         plain.replace(f'"client_id":"{record["client_id"]}"', '"client_id":"a\\u0000"')
         .encode()),
        ("invalid UTF-8 in a string", plain.replace('"A256GCM"', '"A256\xffGCM"')
         .encode("latin-1")),
        ("Argon2id t = 10^30", to_json(mutated(record, "encrypted_private_keys.kek", {
            "method": "password", "kdf": "argon2id", "salt": "A" * 21 + "w",
            "t": 10**30, "m": 10**30, "p": 10**30}))),
    ]


@check("common/errors/no-server-error", requirements=("API-6",))
def no_server_error(t: Probe) -> None:
    """Hostile input (deep nesting, huge numbers, bad code points, odd paths and headers)
    never gets a 5xx; hostile bodies get a 4xx."""
    user, record = record_for(t, "hostile")
    path = keypair_path(user.user_id, CLIENT)
    # (what, exchange, whether only a 4xx is right)
    attempts: list[tuple[str, Exchange, bool]] = []
    for name, body in hostile_bodies(record):
        exchange = t.put_keypair(user.user_id, CLIENT, body, token=user.token)
        attempts.append((f"PUT {name}", exchange, True))
    for odd in ("/v1/users/%00/apps", "/v1/users/%ff%fe/apps",
                "/v1/users/" + "a" * 2000 + "/apps", "/v1/users/%2e%2e/apps/x/public-keys",
                f"/v1/users/{user.user_id}/apps/%0a/keypair"):
        exchange = t.request("GET", odd, token=user.token)
        attempts.append((f"GET {odd[:60]}", exchange, False))
    exchange = t.request("PUT", path, token=user.token, body=to_json(record),
                         headers={"content-type": "application/json; charset=no-such-charset"})
    attempts.append(("PUT with charset=no-such-charset", exchange, False))
    exchange = t.request("PUT", path, body=to_json(record),
                         headers={"authorization": "Bearer "
                                  + "\u00e9t\u00e9".encode().decode("latin-1"),
                                  **JSON_HEADERS})
    attempts.append(("PUT with a non-ASCII bearer token", exchange, True))
    for what, exchange, client_error_only in attempts:
        bad = exchange.status >= 500 or (client_error_only and not 400 <= exchange.status < 500)
        if bad:
            t.fail(f"{what}: answered {exchange.status}",
                   expected="a 4xx status" if client_error_only else "no 5xx status",
                   actual=describe(exchange), exchange=exchange)


@check("common/errors/problem-json", requirements=("API-2", "API-8", "API-9"))
def problem_json(t: Probe) -> None:
    """Every refusal (400, 401, 404, 405, 409, 413, 415, 422) is problem+json whose
    status member equals the HTTP status, of a problem type the contract gives that status,
    with a failure class that fits it."""
    owner, sealed = owner_with_record(t)
    path = keypair_path(owner.user_id, CLIENT)
    limit = body_limit(t)
    bad_signature = mutated(seal_with_application_key(owner.user_id, "second", 1).record,
                            "binding_signature", "A" * 85 + "A")
    attempts = [
        t.put_keypair(owner.user_id, CLIENT, b"{", token=owner.token),
        t.get_keypair(owner.user_id, CLIENT, token=None),
        t.request("GET", "/v1/nothing-here"),
        t.request("PATCH", path, token=owner.token),
        t.put_keypair(owner.user_id, CLIENT, sealed.record, token=owner.token),
        t.put_keypair(owner.user_id, CLIENT, b" " * (limit + 1), token=owner.token),
        t.request("PUT", path, token=owner.token, headers={"content-type": "text/plain"},
                  body=sealed.body),
        t.put_keypair(owner.user_id, "second", bad_signature, token=owner.token),
    ]
    for exchange in attempts:
        if exchange.status < 400:
            t.fail(f"{exchange.method} {exchange.url}: expected a refusal, got "
                   f"{exchange.status}", expected="a 4xx problem", actual=describe(exchange),
                   exchange=exchange)
        t.check_problem_shape(exchange, what=f"{exchange.method} -> {exchange.status}")


# --- canonical base64url (API-1) ------------------------------------------------------------

def encoding_check(t: Probe, name: str, mutate: Any) -> None:
    user = t.user(name)
    for i, path in enumerate(B64_FIELDS):
        client_id = f"enc-{i}"
        record = seal_with_application_key(user.user_id, client_id, 1).record
        value = mutate(get_path(record, path))
        if value is None:
            continue
        exchange = t.put_keypair(user.user_id, client_id, mutated(record, path, value),
                                 token=user.token)
        t.expect_rejected(exchange, 400, what=f"PUT with {path} {name}",
                          failure_class="decode")


@check("common/encoding/padding-rejected", requirements=("API-1",))
def padding_rejected(t: Probe) -> None:
    """base64url values with '=' padding are refused with 400."""
    encoding_check(t, "padded", with_padding)


@check("common/encoding/standard-alphabet-rejected", requirements=("API-1",))
def standard_alphabet_rejected(t: Probe) -> None:
    """base64 values using '+' or '/' (the standard alphabet) are refused with 400: both
    at once, and each alone (the same bytes to a decoder that accepts either alphabet)."""
    encoding_check(t, "in-the-standard-alphabet", standard_alphabet)
    encoding_check(t, "with-plus", lambda v: one_standard_character(v, "-", "+"))
    encoding_check(t, "with-slash", lambda v: one_standard_character(v, "_", "/"))


def one_standard_character(value: str, url_safe: str, standard: str) -> str:
    """`value` with every `url_safe` character in its standard-alphabet form (the same
    bytes), or with its first character replaced by `standard` when it has none."""
    out = value.replace(url_safe, standard)
    return out if out != value else standard + value[1:]


@check("common/encoding/trailing-bits-rejected", requirements=("API-1",))
def trailing_bits_rejected(t: Probe) -> None:
    """base64url values with non-zero unused trailing bits (same bytes to a lenient
    decoder) are refused with 400."""
    encoding_check(t, "with-trailing-bits", with_trailing_bits)


@check("common/encoding/whitespace-rejected", requirements=("API-1",))
def whitespace_rejected(t: Probe) -> None:
    """base64url values with embedded whitespace are refused with 400."""
    encoding_check(t, "with-whitespace", lambda v: v[:8] + "\n" + v[8:])
