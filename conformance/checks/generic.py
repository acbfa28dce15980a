"""Common rules on every route, generated from spec/openapi.yaml.

For every path of the document: a method it does not serve is 405 with an Allow header
(API-11), and a path parameter outside its schema is 400 before anything else is looked
at (API-22, API-18). For every operation that takes a bearer credential: every refused
credential gets the one uniform 401 with `WWW-Authenticate: Bearer`, also when the body
is garbage (API-4, API-13, API-14, API-18); a valid credential is validated with the
account server for the path's user (API-3), and an unclear account-server answer is a
503, never a grant. For every operation with a request body: a body over its advertised
limit is 413, whether sent with Content-Length, chunked or only declared (API-5); a body
that is not application/json is 415 (API-12); a body that is not JSON, or nests or
counts beyond reason, is 400, never a 5xx (API-6). Every answer is a problem+json of the
registered type (API-2, API-8) and matches its schema.

The checks report under `common/<route>/...` and apply when the server advertises the
route's flow: a server offering only one flow gets every common rule on its routes. A
route added to the document is checked without a line here; how it authenticates
(`x-keyflows-credential`) and which limit bounds its body (`x-keyflows-body-limit`) are
read from the document.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from keyflows.conformance.checks.support import PastRateLimits, expect_unauthorized
from keyflows.conformance.http import Exchange
from keyflows.conformance.openapi import (
    ACCOUNT,
    CAPABILITY,
    REQUEST_BODY,
    Operation,
    Parameter,
    api,
)
from keyflows.conformance.probe import CheckSkipped, Probe, User, bearer, describe
from keyflows.conformance.registry import check

JSON = {"content-type": "application/json"}
UNIFORM_401 = "generic/uniform-401"
"""Session cache key: the first refused-credential body a generic check saw."""
DECLARED_DEADLINE_S = 5.0

# Path-segment values outside every identifier syntax, as sent (percent-encoded) and as
# a server decodes them. A server must refuse them with 400 (API-22, KD-2). (An encoded
# slash is left out: servers that decode before routing see another route, a 404.)
BAD_SEGMENTS: tuple[tuple[str, str], ...] = (
    ("a" * 65, "a" * 65), ("%00", "\x00"), ("a%20b", "a b"), ("%C3%A9", "é"),
    ("ab", "ab"), ("x" * 300, "x" * 300), ("%2E", "."), ("%2E%2E", ".."))

MALFORMED_CREDENTIALS: tuple[tuple[str, str | None], ...] = (
    ("no Authorization header", None),
    ("a Basic credential", "Basic dXNlcjpwYXNzd29yZA=="),
    ("the scheme alone", "Bearer"),
    ("an unknown token", "Bearer {unknown}"),
    ("a token with trailing garbage", "Bearer {valid} extra"),
    ("a token without its scheme", "{valid}"),
)

NOT_JSON: tuple[tuple[str, bytes], ...] = (
    ("not JSON", b"not json"), ("a truncated object", b'{"a":'),
    ("invalid UTF-8", b'{"a":"\xff\xfe"}'), ("a trailing comma", b'{"a":1,}'),
    ("a single quote", b"{'a':1}"))

# Valid or invalid JSON that breaks naive parsers: any 4xx, never a 5xx.
HOSTILE: tuple[tuple[str, bytes], ...] = (
    ("20000 nested arrays", b"[" * 20000 + b"]" * 20000),
    ("5000 nested objects", b'{"a":' * 5000 + b"1" + b"}" * 5000),
    ("a 5000-digit number", b'{"a":' + b"9" * 5000 + b"}"),
    ("NaN", b'{"a":NaN}'), ("a lone surrogate", b'{"a":"\\ud800"}'),
    ("a NUL in a member name", b'{"a\\u0000":1}'))


# --- concrete requests -----------------------------------------------------------------

def fresh_id(label: str) -> str:
    return f"{label}-{os.urandom(4).hex()}"


PARAMETER_VALUES: dict[str, Callable[[Probe], str]] = {}
"""Path parameters whose valid values depend on the server (a served domain): a
function giving one, for each such parameter name."""


def parameter_value(name: str) -> Callable[[Callable[[Probe], str]], Callable[[Probe], str]]:
    def register(func: Callable[[Probe], str]) -> Callable[[Probe], str]:
        PARAMETER_VALUES[name] = func
        return func

    return register


@parameter_value("identity")
def hashchain_identity(t: Probe) -> str:
    """A fresh identity in mapped form on a domain the server serves (HC-14)."""
    from keyflows.conformance.checks.hashchain_support import params, person

    return person(t, params(t), "generic").identity


def valid_value(t: Probe, param: Parameter) -> str:
    """A value the parameter's schema (and the server) accepts, as sent in a path."""
    provider = PARAMETER_VALUES.get(param.name)
    if provider is not None:
        return provider(t)
    candidates = [fresh_id(param.name.replace("_", "-")),
                  quote_b64(os.urandom(32)), f"probe-{os.urandom(3).hex()}@keyflows.test", "0"]
    for candidate in candidates:
        if api().value_fits(param.schema, candidate):
            return candidate
    raise CheckSkipped(f"no probe value fits the schema of path parameter {param.name}")


def quote_b64(raw: bytes) -> str:
    import base64

    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def concrete(t: Probe, op: Operation, values: dict[str, str]) -> str:
    path = op.path
    for param in op.parameters:
        value = values.get(param.name) or valid_value(t, param)
        values[param.name] = value
        path = path.replace("{" + param.name + "}", value)
    return path


@dataclass
class Credential:
    """A valid credential for an operation, and the path it is valid for."""

    path: str
    authorization: str
    user: User | None = None
    headers: dict[str, str] | None = None


def prepared(t: Probe, op: Operation, *, existing: bool) -> tuple[dict[str, str], str,
                                                                 User | None]:
    """Path values, an Authorization value and the account user for a request to `op`
    with a valid credential. With `existing`, the keystore (and key) the path names exist
    and belong to that user, so a body check meets the rule it tests, not a 404."""
    names = {p.name for p in op.parameters}
    if op.credential == CAPABILITY or (existing and "keystore_id" in names):
        from keyflows.conformance.checks.lock_layering_support import (
            create_key,
            create_keystore,
        )

        keystore = create_keystore(t, label="generic")
        values = {"keystore_id": keystore.keystore_id, "user_id": keystore.owner.user_id}
        if existing and "key_id" in names:
            values["key_id"] = str(create_key(t, keystore, "ed25519")["key_id"])
        if op.credential == CAPABILITY:
            return values, f"Bearer {keystore.capability}", None
        return values, f"Bearer {keystore.owner.token}", keystore.owner
    if op.credential == ACCOUNT:
        user = t.user("generic")
        return {"user_id": user.user_id}, f"Bearer {user.token}", user
    return {}, "", None


def valid_credential(t: Probe, op: Operation, *, existing: bool = False) -> Credential:
    """A valid credential and a path it is valid for (see `prepared`)."""
    values, authorization, user = prepared(t, op, existing=existing)
    return Credential(concrete(t, op, values), authorization, user=user)


def auth_headers(credential: Credential) -> dict[str, str]:
    headers = dict(credential.headers or {})
    if credential.authorization:
        headers["authorization"] = credential.authorization
    return headers


# --- 405 on every path ---------------------------------------------------------------------

def methods_check(path: str) -> Callable[[Probe], None]:
    served = api().methods_of(path)
    others = [m for m in ("GET", "PUT", "POST", "DELETE", "PATCH") if m not in served]

    def run(t: Probe) -> None:
        op = next(o for o in api().operations if o.path == path)
        url = concrete(t, op, {})
        for method in others:
            exchange = t.request(method, url)
            what = f"{method} {path} (it serves {', '.join(served)})"
            t.expect_rejected(exchange, 405, what=what)
            allow = {m.strip().upper() for m in (exchange.header("allow") or "").split(",")
                     if m.strip()}
            if not set(served) <= allow or not allow <= {*served, "HEAD", "OPTIONS"}:
                t.fail(f"{what}: Allow is {exchange.header('allow')!r} (API-11)",
                       expected=f"Allow: {', '.join(served)}",
                       actual=exchange.header("allow") or "(no Allow header)",
                       exchange=exchange)

    return run


# --- 400 for every path parameter outside its schema -------------------------------------------

def identifiers_check(path: str) -> Callable[[Probe], None]:
    ops = [o for o in api().operations if o.path == path]

    def run(t: Probe) -> None:
        for op in ops:
            values: dict[str, str] = {}
            concrete(t, op, values)
            for param in op.parameters:
                for sent, decoded in BAD_SEGMENTS:
                    if api().value_fits(param.schema, decoded):
                        continue
                    url = concrete(t, op, {**values, param.name: sent})
                    exchange = t.request(op.method, url, headers=JSON if op.has_body else None,
                                         body=b"{}" if op.has_body else None)
                    t.expect_rejected(exchange, 400, what=f"{op.method} {op.path} with "
                                      f"{param.name} = {sent[:40]!r} (outside its schema)")

    return run


# --- the uniform 401 and the account server --------------------------------------------------

def authentication_check(op: Operation) -> Callable[[Probe], None]:
    def run(t: Probe) -> None:
        valid = valid_credential(t, op)
        token = valid.authorization.partition(" ")[2]
        unknown = "kfc1." + quote_b64(os.urandom(48)) if op.credential == CAPABILITY \
            else os.urandom(24).hex()
        attempts: list[tuple[str, dict[str, str]]] = []
        for name, template in MALFORMED_CREDENTIALS:
            if template is None:
                attempts.append((name, {}))
            else:
                attempts.append((name, {"authorization": template.format(
                    unknown=unknown, valid=token)}))
        if valid.user is not None:
            other = t.user("generic-other")
            expired = t.token_for(valid.user.user_id)
            t.session.accounts.expire(expired)
            attempts += [("another user's valid token", bearer(other.token)),
                         ("an expired token of this user", bearer(expired))]
        else:
            owner = t.user("generic-owner")
            attempts.append(("an account token instead of a capability", bearer(owner.token)))
        for index, (name, headers) in enumerate(attempts):
            # Half the attempts carry a body that is wrong in every other way too:
            # authentication comes first (API-18).
            garbage = op.has_body and index % 2 == 1
            body = b"not json" if garbage else (b"{}" if op.has_body else None)
            media = {"content-type": "text/plain"} if garbage else (JSON if op.has_body else {})
            exchange = t.request(op.method, valid.path, headers={**headers, **media},
                                 body=body)
            what = f"{op.method} {op.path} with {name}" + (" and a garbage body" if garbage
                                                            else "")
            expect_unauthorized(t, exchange, what=what)
            expect_uniform(t, exchange, what=what)
        if op.credential == ACCOUNT:
            expect_account_consulted(t, op, valid)

    return run


def expect_uniform(t: Probe, exchange: Exchange, *, what: str) -> None:
    """Every refused credential, on every route, gets one 401 body (API-4)."""
    baseline: Exchange | None = t.session.cache.setdefault(UNIFORM_401, exchange)
    if baseline is None or baseline.response_body == exchange.response_body:
        return
    t.fail(f"{what}: the 401 body differs from the one for {baseline.method} "
           f"{baseline.url} (an oracle on the reason, the route or the resource; API-4)",
           expected=baseline.response_body.decode(errors="replace"),
           actual=exchange.response_body.decode(errors="replace"), exchange=exchange)


def expect_account_consulted(t: Probe, op: Operation, valid: Credential) -> None:
    """A valid token passes authentication after the account server says so for the
    path's user (API-3); an unclear answer is a 503, never a grant."""
    assert valid.user is not None
    user = valid.user
    before = len(t.session.accounts.calls())
    body = b"{}" if op.has_body else None
    exchange = t.request(op.method, valid.path, token=user.token,
                         headers=JSON if op.has_body else None, body=body)
    what = f"{op.method} {op.path} with the user's valid token"
    if exchange.status in (401, 503) or exchange.status >= 500:
        t.fail(f"{what}: answered {exchange.status}", expected="any answer past "
               "authentication (not 401, 503 or another 5xx)", actual=describe(exchange),
               exchange=exchange)
    calls = t.session.accounts.calls()[before:]
    if not any(c.user_id == user.user_id and c.access_token == user.token for c in calls):
        seen = ", ".join(f"user_id={c.user_id!r}" for c in calls) or "no call"
        t.fail(f"{what}: answered without asking the account server to validate "
               f"(user_id={user.user_id}, access_token) (API-3)",
               expected=f"POST /v1/validate with user_id {user.user_id!r} and the token",
               actual=f"account server saw: {seen}", exchange=exchange)
    unclear = t.token_for(user.user_id)
    t.session.accounts.answer_badly(unclear, b'{"valid":"true"}')
    exchange = t.request(op.method, valid.path, token=unclear,
                         headers=JSON if op.has_body else None, body=body)
    t.expect_problem(exchange, 503, what=f"{op.method} {op.path} while the account server "
                     f"answers {{\"valid\":\"true\"}}", slug="account-server-unavailable")


# --- 413, 415, 400 for every request body -------------------------------------------------------

def body_limit(t: Probe, op: Operation) -> int:
    node: Any = t.session.capabilities or {}
    for part in op.body_limit.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    if not isinstance(node, int) or isinstance(node, bool) or node <= 0:
        t.fail(f"the capabilities do not advertise {op.body_limit} as a positive integer "
               f"(API-5, API-7)", expected=f"{op.body_limit}: a positive integer",
               actual=repr(node))
    return node


def body_check(op: Operation) -> Callable[[Probe], None]:
    def run(t: Probe) -> None:
        limit = body_limit(t, op)
        valid = valid_credential(t, op, existing=True)
        auth = auth_headers(valid)
        what = f"{op.method} {op.path}"
        # A route's rate limit may answer before its body is read (API-18): earlier checks
        # of the run may have emptied the bucket, so each request is sent past it.
        patient = PastRateLimits()

        def send(headers: dict[str, str], body: bytes | None = None,
                 chunks: list[bytes] | None = None) -> Exchange:
            return patient(lambda: t.request(op.method, valid.path, headers=headers,
                                             body=body, chunks=chunks), what=what)

        over = b" " * (limit + 1)
        exchange = send({**auth, **JSON}, body=over)
        t.expect_rejected(exchange, 413, what=f"{what} with a {limit + 1}-byte body")
        chunks = [over[i:i + 65536] for i in range(0, len(over), 65536)]
        exchange = send({**auth, **JSON}, chunks=chunks)
        t.expect_rejected(exchange, 413, what=f"{what} with a chunked {limit + 1}-byte body")
        declared = patient(lambda: t.send_declared_length(
            op.method, valid.path, {**auth, **JSON}, declared=limit * 16 + 1, sent=b"{",
            deadline_s=DECLARED_DEADLINE_S), what=what)
        if declared.status == 0:
            t.fail(f"{what} declaring Content-Length {limit * 16 + 1}: no answer within "
                   f"{DECLARED_DEADLINE_S:.0f} s while the body was withheld (the server "
                   f"waits to read more than its limit)", expected="413 at once",
                   actual="no answer", exchange=declared)
        t.expect_rejected(declared, 413, what=f"{what} declaring Content-Length "
                          f"{limit * 16 + 1}")
        for media in ("text/plain", "application/x-www-form-urlencoded", None,
                      "application/json; charset=latin-1"):
            headers = {**auth, "content-type": media} if media else dict(auth)
            exchange = send(headers, body=b"{}")
            t.expect_rejected(exchange, 415, what=f"{what} with a body of content-type "
                                                  f"{media or '(none)'}")
        for name, body in NOT_JSON:
            exchange = send({**auth, **JSON}, body=body)
            t.expect_rejected(exchange, 400, what=f"{what} with {name} as the body")
        for name, body in HOSTILE:
            if len(body) > limit:
                continue
            exchange = send({**auth, **JSON}, body=body)
            if not 400 <= exchange.status < 500:
                t.fail(f"{what} with {name} as the body: answered {exchange.status} (API-6)",
                       expected="a 4xx problem (never a 5xx)", actual=describe(exchange),
                       exchange=exchange)
            t.check_problem_shape(exchange, what=f"{what} with {name} as the body")

    return run


# --- registration -------------------------------------------------------------------------------

def _register() -> None:
    routes: dict[str, str] = {}
    for path in api().paths():
        ops = [o for o in api().operations if o.path == path]
        if not ops:
            continue
        route = ops[0].route
        if route in routes:
            raise ValueError(f"routes {routes[route]} and {path} both name {route}")
        routes[route] = path
        needs = tuple(sorted({o.flow for o in ops} - {"common"}))
        served = ", ".join(o.method for o in ops)
        check(f"common/{route}/methods", requirements=("API-11", "API-2"), needs=needs)(
            _named(methods_check(path), f"{path}: a method other than {served} is 405 with "
                                        f"an Allow header naming {served}."))
        if any(o.parameters for o in ops):
            check(f"common/{route}/identifiers", requirements=("API-22", "API-18"),
                  needs=needs)(_named(identifiers_check(path), (
                      f"{path}: a path parameter outside its schema (too long, NUL, space, "
                      f"non-ASCII, an encoded slash) is 400, before authentication.")))
        for op in ops:
            op_needs = () if op.flow == "common" else (op.flow,)
            if op.credential == CAPABILITY:
                op_needs = tuple(sorted({*op_needs, "lock-layering"}))
            prefix = f"common/{route}/{op.method.lower()}"
            if op.credential in (ACCOUNT, CAPABILITY):
                requirements = ("API-4", "API-13", "API-14", "API-18") + (
                    ("API-3",) if op.credential == ACCOUNT else ("LOCK-11",))
                check(f"{prefix}-authentication", requirements=requirements,
                      needs=op_needs)(_named(authentication_check(op), (
                          f"{op.method} {op.path}: every refused credential (none, "
                          f"malformed, unknown, another user's, expired) gets the uniform "
                          f"401 with WWW-Authenticate: Bearer, even with a garbage body"
                          + ("; a valid token is validated with the account server, an "
                             "unclear answer is 503." if op.credential == ACCOUNT else
                             "."))))
            if "application/json" in op.body_media_types and op.credential != REQUEST_BODY:
                check(f"{prefix}-body", requirements=("API-5", "API-12", "API-6", "API-2"),
                      needs=op_needs)(_named(body_check(op), (
                          f"{op.method} {op.path}: a body over {op.body_limit} is 413 "
                          f"(Content-Length, chunked or only declared); not application/json "
                          f"is 415; not JSON, or hostile JSON, is 400.")))


def _named(func: Callable[[Probe], None], summary: str) -> Callable[[Probe], None]:
    func.__doc__ = summary
    return func


_register()
