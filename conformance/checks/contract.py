"""Checks of the HTTP contract (keyflows.spec.contract, API-8 .. API-23) and of the
authentication edge cases: the Authorization syntax, an account server that answers with
the wrong status or breaks the connection, strict JSON, path identifiers, integers, list
order, Location and the order of checks.

Every check that tries to change state reads the resource before and after, so a server
that refuses with the right status but changes state anyway is caught too."""

from __future__ import annotations

import importlib
import json
import os
import re
import secrets
from collections.abc import Callable
from importlib import resources
from typing import Any

import jsonschema

from keyflows.conformance.checks.support import (
    ATTEMPT_LIMIT_TRIES,
    expect_absent,
    expect_stored,
    expect_unauthorized,
    over_the_attempt_limit,
)
from keyflows.conformance.clients import Sealed, seal_with_application_key, to_json
from keyflows.conformance.http import Exchange, json_or_none
from keyflows.conformance.probe import (
    JSON_HEADERS,
    CheckSkipped,
    Probe,
    User,
    apps_path,
    describe,
    keypair_path,
)
from keyflows.conformance.registry import check
from keyflows.spec import contract, xeddsa, yamlfile
from keyflows.spec.encoding import b64url_decode, b64url_encode
from keyflows.spec.keypair_publication import PublicKeys, possession_message

CLIENT = "contract-app"
B64TOKEN_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~+/"


def owner_with_record(t: Probe, label: str) -> tuple[User, dict[str, Any]]:
    user = t.user(label)
    return user, t.publish(user, CLIENT).record


def random_token(length: int) -> str:
    return "".join(secrets.choice(B64TOKEN_ALPHABET) for _ in range(length))


# --- authentication ------------------------------------------------------------------------

@check("common/auth/bearer-syntax", requirements=("API-14", "API-4", "API-13"))
def bearer_syntax(t: Probe) -> None:
    """The scheme name Bearer in any letter case and several spaces are accepted; a valid
    token of 4096 characters is accepted and one of 4097 gets the uniform 401, even though
    the account server would call it valid."""
    owner, record = owner_with_record(t, "syntax")
    path = keypair_path(owner.user_id, CLIENT)
    for value in (f"bearer {owner.token}", f"BEARER   {owner.token}", f"bEaReR {owner.token}"):
        exchange = t.request("GET", path, headers={"authorization": value})
        t.expect_status(exchange, 200, what=f"GET own record with Authorization: "
                                            f"{value.split(' ')[0]} and the owner's token")
    longest = t.session.accounts.mint(owner.user_id, random_token(contract.MAX_TOKEN_LENGTH))
    exchange = t.request("GET", path, headers={"authorization": f"Bearer {longest}"})
    t.expect_status(exchange, 200, what=f"GET own record with a valid token of "
                                        f"{contract.MAX_TOKEN_LENGTH} characters")
    too_long = t.session.accounts.mint(owner.user_id,
                                       random_token(contract.MAX_TOKEN_LENGTH + 1))
    exchange = t.request("GET", path, headers={"authorization": f"Bearer {too_long}"})
    expect_unauthorized(t, exchange, what=f"GET own record with a token of "
                                          f"{contract.MAX_TOKEN_LENGTH + 1} characters")
    newer = seal_with_application_key(owner.user_id, CLIENT, 2)
    exchange = t.request("PUT", path, headers={**JSON_HEADERS,
                                               "authorization": f"Bearer {too_long}"},
                         body=newer.body)
    expect_unauthorized(t, exchange, what="PUT a newer record with the over-long token")
    expect_stored(t, owner, CLIENT, record, what="the record after the refused PUT")


ACCOUNT_FAILURES: tuple[tuple[str, bytes, int], ...] = (
    ("status 500 with a body saying valid", b'{"valid":true}', 500),
    ("status 404 with a body saying valid", b'{"valid":true}', 404),
    ("status 201 with a body saying valid", b'{"valid":true}', 201),
    ("a broken connection after a body saying valid", b'{"valid":true}', 0),
    ("a body naming valid twice", b'{"valid":false,"valid":true}', 200),
    ("a body naming valid twice, both true", b'{"valid":true,"valid":true}', 200),
    ("a body with NaN beside valid", b'{"valid":true,"since":NaN}', 200),
)


@check("common/auth/account-server-failure", requirements=("API-3",))
def account_server_failure(t: Probe) -> None:
    """An account server that answers with another status than 200, breaks the
    connection, or sends JSON two parsers could read differently (a repeated member, NaN)
    never lets a request through: 503 account-server-unavailable, and nothing changes."""
    owner, record = owner_with_record(t, "acctfail")
    for label, body, status in ACCOUNT_FAILURES:
        token = t.token_for(owner.user_id)
        t.session.accounts.answer_badly(token, body, status)
        what = f"the account server answers with {label}"
        exchange = t.get_keypair(owner.user_id, CLIENT, token=token)
        if 200 <= exchange.status < 300:
            t.fail(f"GET own record while {what}: the request was let through (API-3)",
                   expected="503 account-server-unavailable", actual=describe(exchange),
                   exchange=exchange)
        t.expect_problem(exchange, 503, what=f"GET own record while {what}",
                         slug="account-server-unavailable")
        newer = seal_with_application_key(owner.user_id, CLIENT, 2)
        exchange = t.put_keypair(owner.user_id, CLIENT, newer.record, token=token)
        t.expect_problem(exchange, 503, what=f"PUT a newer record while {what}",
                         slug="account-server-unavailable")
    expect_stored(t, owner, CLIENT, record, what="the record after the refused requests")


# --- JSON ----------------------------------------------------------------------------------

def with_leading_member(body: bytes, member: bytes) -> bytes:
    """`{member, ...rest of body}`: the body with one more member written first."""
    assert body.startswith(b"{")
    return b"{" + member + b"," + body[1:]


@check("common/json/repeated-member", requirements=("API-6",))
def repeated_member(t: Probe) -> None:
    """A body naming one member twice is refused with 400, whether the two values agree
    or not (two parsers must never read two different records), and nothing is stored."""
    user = t.user("repeated")
    sealed = seal_with_application_key(user.user_id, CLIENT, 1)
    version = sealed.record["key_version"]
    for member, label in ((f'"key_version":{version}'.encode(), "the same key_version twice"),
                          (b'"key_version":7', "key_version 7, then the real one"),
                          (f'"user_id":"{user.user_id}"'.encode(), "user_id twice")):
        exchange = t.put_keypair(user.user_id, CLIENT, with_leading_member(sealed.body, member),
                                 token=user.token)
        t.expect_rejected(exchange, 400, what=f"PUT a valid record with {label}")
    expect_absent(t, user, CLIENT, what="GET after the refused PUTs")


@check("common/json/integers", requirements=("API-21", "API-6"))
def integers(t: Probe) -> None:
    """An integer member written as 1.0, 1e0, true or "1" is refused with 400 and nothing
    is stored: one value has one encoding."""
    user = t.user("integers")
    sealed = seal_with_application_key(user.user_id, CLIENT, 1)
    text = sealed.body
    needle = b'"key_version":1'
    if needle not in text:
        t.fail("the runner's own record does not carry key_version 1", actual=text.decode())
    for spelled in (b"1.0", b"1e0", b"true", b'"1"', b"01"):
        body = text.replace(needle, b'"key_version":' + spelled, 1)
        exchange = t.put_keypair(user.user_id, CLIENT, body, token=user.token)
        t.expect_rejected(exchange, 400, what=f"PUT a record with key_version {spelled.decode()}")
    expect_absent(t, user, CLIENT, what="GET after the refused PUTs")


@check("common/media/charset", requirements=("API-12",))
def charset(t: Probe) -> None:
    """application/json is accepted with charset utf-8 in any case and quoting, and with
    other parameters, and refused with 415 with any other charset; nothing is stored by a
    refused PUT."""
    user = t.user("charset")
    sealed = seal_with_application_key(user.user_id, CLIENT, 1)
    path = keypair_path(user.user_id, CLIENT)
    for content_type in ("application/json; charset=latin-1",
                         "application/json; charset=utf-16", "application/json;charset=ascii"):
        exchange = t.request("PUT", path, token=user.token,
                             headers={"content-type": content_type}, body=sealed.body)
        t.expect_rejected(exchange, 415, what=f"PUT a valid record as {content_type}")
    expect_absent(t, user, CLIENT, what="GET after the refused PUTs")
    exchange = t.request("PUT", path, token=user.token,
                         headers={"content-type": 'Application/JSON; Charset="UTF-8"'},
                         body=sealed.body)
    t.expect_status(exchange, 201, what='PUT a valid record as Application/JSON; '
                                        'Charset="UTF-8"')
    expect_stored(t, user, CLIENT, sealed.record, what="the record after the PUT")
    second = t.user("charset-param")
    record = seal_with_application_key(second.user_id, CLIENT, 1)
    exchange = t.request("PUT", keypair_path(second.user_id, CLIENT), token=second.token,
                         headers={"content-type": "application/json; profile=keyflows"},
                         body=record.body)
    t.expect_status(exchange, 201, what="PUT a valid record as application/json with a "
                                        "parameter other than charset")


# --- paths ---------------------------------------------------------------------------------

BAD_IDENTIFIERS = (("a%20b", "a space"), ("%C3%A9t%C3%A9", "non-ASCII letters"),
                   ("a" * 65, "65 characters"), ("a%00", "a NUL byte"),
                   ("%2E", "an encoded ."), ("%2E%2E", "an encoded .."))


@check("common/path/identifiers", requirements=("API-22", "KD-2"), needs=())
def path_identifiers(t: Probe) -> None:
    """A path identifier is matched after percent-decoding: one outside
    ^[A-Za-z0-9._~-]{1,64}$, or . or .., is refused with 400 (before authentication);
    a percent-encoded valid one addresses the same resource as its plain form."""
    for segment, label in BAD_IDENTIFIERS:
        exchange = t.request("GET", apps_path(segment))
        t.expect_rejected(exchange, 400, what=f"GET the applications of a user_id with "
                                              f"{label} ({segment})")
        exchange = t.request("GET", keypair_path(segment, CLIENT))
        t.expect_rejected(exchange, 400, what=f"GET a keypair of a user_id with {label}, "
                                              f"without credentials (path before auth)")
    if "keypair-publication" not in t.session.flows:
        return
    owner, _ = owner_with_record(t, "encoded")
    encoded = "".join(f"%{b:02X}" for b in owner.user_id.encode("ascii"))
    exchange = t.request("GET", apps_path(encoded), token=owner.token)
    body = t.expect_ok_json(exchange, 200, what="GET the applications of a fully "
                                                "percent-encoded user_id, as its owner")
    if body.get("user_id") != owner.user_id:
        t.fail("a percent-encoded user_id names another user (API-22)",
               expected=f'"user_id": "{owner.user_id}"', actual=describe(exchange),
               exchange=exchange)


# --- answers -------------------------------------------------------------------------------

@check("common/http/location", requirements=("API-15", "KP-9"))
def location(t: Probe) -> None:
    """The 201 of a first publication carries Location with the record's path, and a GET
    of that path answers the stored record; a later replacement (200) needs none."""
    user = t.user("location")
    expect_absent(t, user, CLIENT, what="GET before the first publication")
    sealed = seal_with_application_key(user.user_id, CLIENT, 1)
    exchange = t.put_keypair(user.user_id, CLIENT, sealed.record, token=user.token)
    t.expect_status(exchange, 201, what="PUT a first record")
    expected = keypair_path(user.user_id, CLIENT)
    if exchange.header("location") != expected:
        t.fail("the 201 does not carry Location with the record's path (API-15)",
               expected=f"Location: {expected}",
               actual=f"Location: {exchange.header('location') or '(none)'}",
               exchange=exchange)
    t.published[(user.user_id, CLIENT)] = sealed
    expect_stored(t, user, CLIENT, sealed.record, what="GET the Location")


@check("common/http/apps-order", requirements=("API-23", "KP-10"))
def apps_order(t: Probe) -> None:
    """The applications of a user are listed by client_id in ascending byte order,
    whatever the order of publication."""
    user = t.user("order")
    names = ["b-app", "A-app", "a-app", "_app", "0app", "B.app", "b~app"]
    for name in names:
        t.publish(user, name)
    exchange = t.get_apps(user.user_id, token=user.token)
    body = t.expect_ok_json(exchange, 200, what="GET the applications")
    listed = [a.get("client_id") for a in body.get("apps", [])]
    if listed != sorted(names, key=lambda n: n.encode("ascii")):
        t.fail("applications are not listed by client_id in byte order (API-23)",
               expected=str(sorted(names, key=lambda n: n.encode("ascii"))),
               actual=str(listed), exchange=exchange)


@check("common/http/check-order", requirements=("API-18", "API-12", "API-6"))
def check_order(t: Probe) -> None:
    """Where a request fails several checks, the first in the contract's order decides:
    a bad path identifier before missing credentials (400), a wrong media type before a
    body that is not JSON (415), a missing member before a bad signature (400)."""
    user = t.user("order-of-checks")
    exchange = t.request("PUT", keypair_path("a%20b", CLIENT), headers=JSON_HEADERS,
                         body=b"not json")
    t.expect_rejected(exchange, 400, what="PUT to a bad user_id, without credentials, "
                                          "a body that is not JSON")
    exchange = t.request("PUT", keypair_path(user.user_id, CLIENT), token=user.token,
                         headers={"content-type": "text/plain"}, body=b"not json")
    t.expect_rejected(exchange, 415, what="PUT text/plain that is not JSON either")
    record = seal_with_application_key(user.user_id, CLIENT, 1).record
    broken = {k: v for k, v in record.items() if k != "binding_signature"}
    broken["public_keys"] = dict(record["public_keys"], x25519="A" * 43)
    exchange = t.put_keypair(user.user_id, CLIENT, to_json(broken), token=user.token)
    t.expect_rejected(exchange, 400, what="PUT a record missing binding_signature, with "
                                          "a public key that does not match")
    expect_absent(t, user, CLIENT, what="GET after the refused PUTs")


# --- caching and rate limits ---------------------------------------------------------------

def expect_no_store(t: Probe, exchange: Exchange, *, what: str) -> None:
    directives = {d.strip().lower() for d in (exchange.header("cache-control") or "").split(",")}
    if "no-store" not in directives:
        t.fail(f"{what}: the answer may be stored by a cache (API-16)",
               expected="Cache-Control: no-store",
               actual=f"Cache-Control: {exchange.header('cache-control') or '(none)'}",
               exchange=exchange)


@check("common/http/no-store-challenge", requirements=("API-16", "SC-3", "SC-12"),
       needs=("keypair-publication", "session-challenge"))
def no_store_challenge(t: Probe) -> None:
    """A session challenge (it carries a sealed token) and the session its answer opens
    (a bearer token in the clear) are both answered with Cache-Control: no-store."""
    from .session_challenge import answer, expect_session, new_challenge, open_token, owner

    who = owner(t, "nostore")
    challenge = new_challenge(t, who)
    exchange = t.exchanges[-1]
    expect_no_store(t, exchange, what="the new session challenge")
    token = open_token(t, who, challenge, exchange)
    session = answer(t, who, str(challenge.get("challenge_id")), token)
    expect_session(t, who, session, what="answer the challenge with its opened token")
    expect_no_store(t, session, what="the session (its answer carries the session token)")


@check("common/http/no-store-capability", requirements=("API-16", "LOCK-1"),
       needs=("lock-layering",))
def no_store_capability(t: Probe) -> None:
    """A new keystore's answer (it carries the root capability) is answered with
    Cache-Control: no-store."""
    user = t.user("nostore-ks")
    exchange = t.request("POST", f"/v1/users/{user.user_id}/keystores", token=user.token,
                         json_body={"scenario": "server-held"})
    t.expect_status(exchange, 201, what="create a server-held keystore as its controller")
    expect_no_store(t, exchange, what="the new keystore and its root capability")


@check("common/http/no-store-plaintext", requirements=("API-16", "LOCK-16"),
       needs=("lock-layering",))
def no_store_plaintext(t: Probe) -> None:
    """A decrypted plaintext (key material in the clear) is answered with
    Cache-Control: no-store."""
    from keyflows.spec import lock_layering as spec

    from .lock_layering import decrypt_body, encrypt
    from .lock_layering_support import create_key, create_keystore, key_op

    keystore = create_keystore(t, label="nostore-plain")
    key = create_key(t, keystore, spec.KEY_AES256GCM)
    nonce, ciphertext = encrypt(t, keystore, key, b"plaintext", b"")
    exchange = key_op(t, keystore, key, "decrypt", decrypt_body(nonce, ciphertext, b""))
    t.expect_status(exchange, 200, what="decrypt a fresh ciphertext")
    expect_no_store(t, exchange, what="the decrypted plaintext")


MAX_ATTEMPTS_TRIED = 20


@check("common/limits/retry-after", requirements=("API-17", "SC-2"),
       needs=("keypair-publication", "session-challenge"))
def retry_after(t: Probe) -> None:
    """Over an advertised rate limit (challenges per user) the answer is 429
    too-many-requests with Retry-After in whole seconds, at least 1."""
    caps = t.session.capabilities or {}
    attempts = (caps.get("session_challenge") or {}).get("max_attempts")
    if not isinstance(attempts, int) or isinstance(attempts, bool) or attempts < 1:
        t.fail("the capabilities do not advertise session_challenge.max_attempts (SC-14)",
               expected="an integer >= 1", actual=repr(attempts))
    if attempts > MAX_ATTEMPTS_TRIED:
        raise CheckSkipped(f"max_attempts is {attempts}; the runner tries at most "
                           f"{MAX_ATTEMPTS_TRIED}")
    lifetime = (caps.get("session_challenge") or {}).get("challenge_lifetime_seconds")
    for tries_left in reversed(range(ATTEMPT_LIMIT_TRIES)):
        exchange = over_the_attempt_limit(t, CLIENT, attempts, lifetime,
                                          last=tries_left == 0)
        if exchange is not None:
            break
    else:
        raise CheckSkipped(f"{ATTEMPT_LIMIT_TRIES} tries took {lifetime} - 1 s or more, so the "
                           f"server's window (whole seconds) may have closed before challenge "
                           f"{attempts + 1}, which it issued")
    t.expect_problem(exchange, 429, what=f"challenge {attempts + 1} within one lifetime",
                     slug="too-many-requests")
    value = exchange.header("retry-after") or ""
    if not (value.isascii() and value.isdigit() and int(value) >= 1):
        t.fail("the 429 does not say when to retry (API-17)",
               expected="Retry-After: <delta-seconds >= 1>",
               actual=f"Retry-After: {value or '(none)'}", exchange=exchange)


# --- query parameters ------------------------------------------------------------------------

def public_query_operations() -> list[tuple[str, str, dict[str, str]]]:
    """(method, path, {parameter: a valid value}) for every operation of the shipped
    openapi.yaml with query parameters, no path parameter and no authentication."""
    document = yamlfile.load(resources.files("keyflows.spec").joinpath("openapi.yaml")
                             .read_text(encoding="utf-8"))

    def resolve(node: Any) -> Any:
        while isinstance(node, dict) and "$ref" in node:
            target: Any = document
            for part in str(node["$ref"]).removeprefix("#/").split("/"):
                target = target[part]
            node = target
        return node

    out = []
    for path, item in document["paths"].items():
        if "{" in path:
            continue
        for method, op in item.items():
            if not isinstance(op, dict) or op.get("security", [{}]) != []:
                continue
            query = {str(p["name"]): valid_value(p.get("schema", {}))
                     for p in (resolve(p) for p in op.get("parameters", []))
                     if p.get("in") == "query"}
            if query and all(v is not None for v in query.values()):
                out.append((method.upper(), path, {k: str(v) for k, v in query.items()}))
    return out


def valid_value(schema: dict[str, Any]) -> str | None:
    """A value the schema admits, from its default, enum or minimum, else a small guess."""
    candidates = [schema.get("default"), *schema.get("enum", []), schema.get("minimum"),
                  "0", "1", "a"]
    pattern = schema.get("pattern")
    for candidate in (str(c) for c in candidates if c is not None):
        if pattern is None or re.search(str(pattern), candidate):
            return candidate
    return None


@check("common/http/query-parameters", requirements=("API-19",), needs=())
def query_parameters(t: Probe) -> None:
    """A query parameter no route defines changes nothing (the capabilities come back
    byte for byte); a parameter a public route defines, given twice, is refused with 400."""
    plain = t.request("GET", "/v1/capabilities")
    t.expect_status(plain, 200, what="GET /v1/capabilities")
    for query in ("?unknown=1", "?profile=v2&flows=none", "?x"):
        exchange = t.request("GET", "/v1/capabilities" + query)
        t.expect_status(exchange, 200, what=f"GET /v1/capabilities{query}")
        if exchange.response_body != plain.response_body:
            t.fail(f"an undefined query parameter changed the capabilities ({query})",
                   expected="the same body as without it", actual=describe(exchange),
                   exchange=exchange)
    flows = set(t.session.flows)
    for method, path, parameters in public_query_operations():
        if not any(path.startswith(f"/v1/{flow}") for flow in flows):
            continue
        once = "&".join(f"{k}={v}" for k, v in parameters.items())
        exchange = t.request(method, f"{path}?{once}")
        t.expect_status(exchange, 200, what=f"{method} {path}?{once}")
        for name, value in parameters.items():
            exchange = t.request(method, f"{path}?{once}&{name}={value}")
            t.expect_rejected(exchange, 400, what=f"{method} {path}?{once} with {name} "
                                                  f"given twice")


# --- freshness ----------------------------------------------------------------------------

@check("common/http/fresh-after-change", requirements=("KP-9", "KP-10", "KP-12"))
def fresh_after_change(t: Probe) -> None:
    """Every view of a record is read before and after each change, and reflects the
    change at once: the owner's record, the public keys and the application list after a
    replacement, and all three after a deletion (no stale cache answers)."""
    user = t.user("fresh")
    first = t.publish(user, CLIENT, 1)
    views: dict[str, Callable[[], Exchange]] = {
        "the owner's record": lambda: t.get_keypair(user.user_id, CLIENT, token=user.token),
        "the public keys": lambda: t.get_public_keys(user.user_id, CLIENT),
        "the application list": lambda: t.get_apps(user.user_id, token=user.token)}

    def versions() -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, read in views.items():
            exchange = read()
            if exchange.status == 404:
                out[name] = None
                continue
            body = t.expect_ok_json(exchange, 200, what=f"GET {name}")
            if name == "the application list":
                out[name] = {a.get("client_id"): a.get("key_version")
                             for a in body.get("apps", [])}.get(CLIENT)
            else:
                out[name] = body.get("key_version")
        return out

    def expect(wanted: int | None, after: str) -> None:
        seen = versions()
        stale = {name: v for name, v in seen.items() if v != wanted}
        if stale:
            t.fail(f"after {after}, a view still shows the old state (a stale answer)",
                   expected=f"key_version {wanted}" if wanted else "404 everywhere",
                   actual=", ".join(f"{n}: {v}" for n, v in stale.items()),
                   exchange=t.exchanges[-1])

    expect(first.key_version, "the first publication")
    second = t.publish(user, CLIENT, 2)
    expect(second.key_version, "a replacement")
    exchange = t.delete_keypair(user.user_id, CLIENT, token=user.token)
    t.expect_status(exchange, 204, what="DELETE the record as its owner")
    expect(None, "the deletion")


# --- answers carry only the members the shipped schemas list (API-20) --------------------

SHIPPED_SCHEMAS = "keyflows.spec.schemas"


def shipped_schema_mismatch(name: str, body: Any) -> str | None:
    """Where `body` departs from spec/schemas/<name>.json (the shipped JSON Schema file
    that spec/openapi.yaml mirrors), or None."""
    schema = json.loads(resources.files(SHIPPED_SCHEMAS).joinpath(f"{name}.json")
                        .read_text(encoding="utf-8"))
    validator: Any = jsonschema.Draft202012Validator(schema)
    error = jsonschema.exceptions.best_match(validator.iter_errors(body))
    return None if error is None else f"{error.message} (at {error.json_path})"


@check("common/http/answers-match-shipped-schemas", requirements=("API-20", "KP-9", "KP-10"))
def answers_match_shipped_schemas(t: Probe) -> None:
    """The capabilities, a public-key view, the owner's record and the application list
    each match their shipped JSON Schema (spec/schemas/), which lists every member a v1
    server may send: no member the schema does not name (only the top level of the
    capabilities admits extensions)."""
    user = t.user("schemas")
    t.publish(user, CLIENT)
    answers: tuple[tuple[str, str, Callable[[], Exchange]], ...] = (
        ("capabilities", "GET /v1/capabilities", lambda: t.request("GET", "/v1/capabilities")),
        ("keypair-public", "GET the public keys",
         lambda: t.get_public_keys(user.user_id, CLIENT)),
        ("keypair-record", "GET the owner's record",
         lambda: t.get_keypair(user.user_id, CLIENT, token=user.token)),
        ("apps", "GET the application list as its owner",
         lambda: t.get_apps(user.user_id, token=user.token)))
    for name, what, read in answers:
        exchange = read()
        body = t.expect_ok_json(exchange, 200, what=what)
        mismatch = shipped_schema_mismatch(name, body)
        if mismatch:
            t.fail(f"{what}: the answer does not match spec/schemas/{name}.json: {mismatch} "
                   "(API-20: a v1 server sends only the members its schemas list)",
                   expected=f"a body valid under spec/schemas/{name}.json",
                   actual=describe(exchange), exchange=exchange)


# --- strict Ed25519 (HC-35) and strict base64url (API-1) ------------------------------------

ED25519_IDENTITY = bytes([1]) + bytes(31)
"""The identity point: with R = identity and S = 0 it 'verifies' every message under a
cofactorless check that does not refuse small-order keys."""
ED25519_IDENTITY_NON_CANONICAL = bytes([0xEE]) + b"\xff" * 30 + bytes([0x7F])
"""y = p + 1: a second encoding of the identity point."""
ED25519_L = 2**252 + 27742317777372353535851937790883648493


def with_forged_ed25519(sealed: Sealed, public_ed25519: bytes,
                        signature: bytes) -> dict[str, Any]:
    """The record with another Ed25519 public key and binding signature; the X25519
    possession signature is redone with the record's real X25519 key, so only the
    Ed25519 part is wrong."""
    record = sealed.record
    public = PublicKeys(x25519=b64url_decode(record["public_keys"]["x25519"]),
                        ed25519=public_ed25519)
    context = (record["user_id"], record["client_id"], record["key_version"], public,
               record["change"]["type"])
    out = dict(record, public_keys=dict(record["public_keys"],
                                        ed25519=b64url_encode(public_ed25519)))
    out["binding_signature"] = b64url_encode(signature)
    out["x25519_signature"] = b64url_encode(xeddsa.sign(
        sealed.private.x25519, possession_message(*context), os.urandom(xeddsa.Z_LEN)))
    return out


@check("common/signatures/strict-ed25519", requirements=("HC-35", "KP-6"))
def strict_ed25519(t: Probe) -> None:
    """Ed25519 is verified by the strict rule: a small-order public key (the identity
    point, also in a non-canonical encoding) is refused as class point even with a
    signature that satisfies the equation, and a signature with S >= L as class
    signature; nothing is stored."""
    user = t.user("strict")
    sealed = seal_with_application_key(user.user_id, CLIENT, 1)
    forged = ED25519_IDENTITY + bytes(32)  # R = identity, S = 0
    for key, label in ((ED25519_IDENTITY, "the identity point"),
                       (ED25519_IDENTITY_NON_CANONICAL, "a non-canonical identity point")):
        exchange = t.put_keypair(user.user_id, CLIENT, with_forged_ed25519(sealed, key, forged),
                                 token=user.token)
        t.expect_rejected(exchange, 422, what=f"PUT a record whose Ed25519 key is {label}, "
                                              "with R = identity and S = 0",
                          failure_class="point")
    signature = b64url_decode(sealed.record["binding_signature"])
    s_plus_l = (int.from_bytes(signature[32:], "little") + ED25519_L).to_bytes(32, "little")
    malleated = dict(sealed.record, binding_signature=b64url_encode(signature[:32] + s_plus_l))
    exchange = t.put_keypair(user.user_id, CLIENT, malleated, token=user.token)
    t.expect_rejected(exchange, 422, what="PUT a record whose binding signature has S + L",
                      failure_class="signature")
    expect_absent(t, user, CLIENT, what="GET after the refused PUTs")


@check("common/encoding/non-ascii-rejected", requirements=("API-1", "API-6"))
def non_ascii_base64(t: Probe) -> None:
    """A base64url field with a letter outside ASCII is refused with 400 (decode), never
    a 5xx, and nothing is stored."""
    user = t.user("nonascii")
    record = seal_with_application_key(user.user_id, CLIENT, 1).record
    for field, value in (("binding_signature", "é" + record["binding_signature"][1:]),
                         ("x25519_signature", record["x25519_signature"][:-1] + "ß")):
        exchange = t.put_keypair(user.user_id, CLIENT, dict(record, **{field: value}),
                                 token=user.token)
        t.expect_rejected(exchange, 400, what=f"PUT a record whose {field} has a non-ASCII "
                                              "letter", failure_class="decode")
    expect_absent(t, user, CLIENT, what="GET after the refused PUTs")


@check("common/limits/body-on-bodiless", requirements=("API-5", "API-18"))
def body_on_bodiless(t: Probe) -> None:
    """A request that has no body by definition (GET) but carries one over max_body_bytes
    is refused with 413 like any other: public routes at once, owner routes after the
    credential."""
    caps = t.session.capabilities or {}
    limit = (caps.get("limits") or {}).get("max_body_bytes")
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
        t.fail("the capabilities do not advertise limits.max_body_bytes (API-7)",
               expected="an integer >= 1", actual=repr(limit))
    owner, _ = owner_with_record(t, "bodiless")
    body = b" " * (limit + 1)
    for path, token in (("/v1/capabilities", None), (apps_path(owner.user_id), owner.token),
                        (f"/v1/users/{owner.user_id}/apps/{CLIENT}/public-keys", None),
                        (keypair_path(owner.user_id, CLIENT), owner.token)):
        exchange = t.request("GET", path, token=token, headers=JSON_HEADERS, body=body)
        t.expect_rejected(exchange, 413, what=f"GET {path} with a {limit + 1}-byte body")


@check("common/limits/payload-declared-at-limit", requirements=("API-5", "ENV-17", "ENV-26"),
       needs=("envelope",))
def payload_declared_at_limit(t: Probe) -> None:
    """A raw payload upload declaring exactly max_payload_bytes is not too large: it is
    judged against its envelope's payload_length (400, length), while one byte more is
    413 at once."""
    from .envelope import OCTET, _posted, limits, upload_path

    biggest = limits(t).get("max_payload_bytes")
    if not isinstance(biggest, int) or isinstance(biggest, bool) or biggest < 2:
        t.fail("the capabilities do not advertise envelope.max_payload_bytes (ENV-17)",
               expected="an integer >= 2", actual=repr(biggest))
    sender, _, _, message_id = _posted(t, "at-limit", 100)
    headers = {"authorization": f"Bearer {sender.user.token}", **OCTET}
    for declared, status, failure_class in ((biggest, 400, "length"),
                                            (biggest + 1, 413, None)):
        exchange = t.send_declared_length("PUT", upload_path(sender.user_id, message_id),
                                          headers, declared=declared, sent=b"",
                                          deadline_s=10.0)
        t.expect_rejected(exchange, status, failure_class=failure_class,
                          what=f"PUT a 100-byte message's payload declaring Content-Length "
                               f"{declared} (max_payload_bytes{' + 1' if status == 413 else ''})")


ENVELOPE_WRONG_TYPES: tuple[tuple[str, Any], ...] = (
    ("recipients", {}), ("recipients", "phone"), ("suite", 1), ("suite", ["x25519"]),
    ("sender_key_version", True), ("sender_key_version", "1"), ("payload_length", True),
    ("payload_length", "32"))
"""Members of an envelope given a value of the wrong JSON type; each is refused as a
decode error by the type test itself, not later by a range or lookup that happens to
refuse it with another class (or, for true, not at all: true is not 1)."""
DEVICE_ID_WRONG_TYPES: tuple[Any, ...] = (7, ["phone"], None)
"""A listed device's device_id that is not a string (ENV-1: an identifier is a string):
refused as a decode error, never taken as its text and never a 500."""


@check("common/errors/envelope-shapes", requirements=("API-6", "API-21", "ENV-9", "ENV-1"),
       needs=("envelope",))
def envelope_shapes(t: Probe) -> None:
    """A member of the wrong JSON type in an envelope (recipients not a list, a suite that
    is not a string, a counter that is true or a string) or in a device list (devices not
    a list, a device_id that is not a string) is refused with 400 (decode), never taken
    and never refused with another class."""
    from keyflows.spec import envelope as E

    from .envelope import RANDOM, person, post_envelope, put_list, register, signed_list
    from .envelope import suites as envelope_suites

    sender, owner = person(t, "shapes-alice"), person(t, "shapes-bob")
    (phone,) = register(t, owner, "phone")
    sealed = E.seal(os.urandom(32), suite=envelope_suites(t)[0], sender=sender.sender,
                    recipients=[phone.device], random=RANDOM)
    wire = E.envelope_to_wire(sealed.envelope)
    for member, value in ENVELOPE_WRONG_TYPES:
        t.expect_rejected(post_envelope(t, sender, {**wire, member: value}), 400,
                          failure_class="decode",
                          what=f"POST an envelope whose {member} is {json.dumps(value)}")
    listed = signed_list(owner, list(owner.devices.values()), owner.version + 1)
    for value in ({}, "phone"):
        t.expect_rejected(put_list(t, owner, {**listed, "devices": value}), 400,
                          failure_class="decode",
                          what=f"PUT a device list whose devices is {json.dumps(value)}")
    device = listed["devices"][0]
    for value in DEVICE_ID_WRONG_TYPES:
        body = {**listed, "devices": [{**device, "device_id": value}]}
        t.expect_rejected(put_list(t, owner, body), 400, failure_class="decode",
                          what=f"PUT a device list whose device_id is {json.dumps(value)}")


def keyinit_tools() -> tuple[Any, Any]:
    """The log's KeyInit helpers (create, keyinits) and the spec module with
    keyinit_to_wire, from whichever module of the hashchain checks holds them."""
    try:
        checks = importlib.import_module("keyflows.conformance.checks.hashchain_uid")
    except ImportError:
        checks = importlib.import_module("keyflows.conformance.checks.hashchain")
    spec = getattr(checks, "hu", None) or checks.hc
    return checks, spec


@check("common/errors/keyinit-list-bounds", requirements=("API-6", "HC-25"),
       needs=("hashchain",))
def keyinit_list_bounds(t: Probe) -> None:
    """POST .../keyinits takes {"keyinits": [...]} with 1..max_keyinits KeyInits and
    nothing else: an empty list, max_keyinits + 1, an object, a string or a number in
    place of the list, a further top-level member, or a list in place of the body is 400
    (decode, never a 5xx) and stores nothing; exactly
    max_keyinits KeyInits (the same ones) are then taken (201)."""
    caps = (t.session.capabilities or {}).get("hashchain") or {}
    most = caps.get("max_keyinits")
    if not isinstance(most, int) or isinstance(most, bool) or not 1 <= most <= 4096:
        t.fail("the capabilities do not advertise hashchain.max_keyinits", actual=repr(most),
               expected="an integer 1..4096 (the runner publishes that many at once)")
    checks, spec = keyinit_tools()
    _, _, who, _, _ = checks.create(t, "ki-bounds")
    wire = [spec.keyinit_to_wire(k) for k in checks.keyinits(who, most + 1)]
    path = f"/v1/hashchain/identities/{who.identity}/keyinits"
    body_cases: tuple[tuple[Any, str], ...] = (
        ({"keyinits": []}, "no KeyInit"),
        ({"keyinits": wire}, f"{most + 1} KeyInits (max_keyinits + 1)"),
        ({"keyinits": {"0": wire[0]}}, "an object in place of the list"),
        ({"keyinits": "keyinits"}, "a string in place of the list"),
        ({"keyinits": 5}, "a number in place of the list"),
        ({"keyinits": wire[:1], "note": "x"}, "a further top-level member"),
        (["keyinits"], "a list in place of the object"))
    highest = spec.MAX_INDEX
    for value, named in ((True, "true"), ("1", "a string"), (-1, "-1"),
                         (highest + 1, "one past its maximum")):
        body_cases += (({"keyinits": [{**wire[0], "not_before": value}]},
                        f"a KeyInit whose not_before is {named}"),)
    for body, what in body_cases:
        t.expect_rejected(t.request("POST", path, json_body=body), 400,
                          failure_class="decode", what=f"POST KeyInits with {what}")
    # At its maximum the integer decodes; the KeyInit is then refused for what it says
    # (its signature no longer covers it), not as an undecodable integer.
    exchange = t.request("POST", path, json_body={"keyinits": [{**wire[0],
                                                                "not_before": highest}]})
    problem = json_or_none(exchange.response_body)
    if not 400 <= exchange.status < 500 or not isinstance(problem, dict) \
            or problem.get("failure_class") == "decode":
        t.fail("a KeyInit whose not_before is exactly its maximum is refused as "
               "undecodable (API-6: the range includes its maximum)",
               expected="a 4xx problem of another failure class than decode",
               actual=describe(exchange), exchange=exchange)
    exchange = t.request("POST", path, json_body={"keyinits": wire[:most]})
    body = t.expect_ok_json(exchange, 201, what=f"POST exactly max_keyinits ({most}) "
                                                "KeyInits, after the refused ones")
    if body.get("accepted") != most:
        t.fail("the server did not take every one of max_keyinits new KeyInits (a refused "
               "request stored some of them?)", expected=f"accepted: {most}",
               actual=describe(exchange), exchange=exchange)


@check("common/errors/nested-shapes", requirements=("API-6",))
def nested_shapes(t: Probe) -> None:
    """A nested member of the wrong shape (an empty object, or a list holding the name of
    the member the object should have) is refused with 400 (decode), never a 5xx, and
    nothing is stored."""
    user = t.user("shapes")
    record = seal_with_application_key(user.user_id, CLIENT, 1).record
    variants = {
        "encrypted_private_keys.kek {}": ("encrypted_private_keys", "kek", {}),
        'encrypted_private_keys.kek ["method"]': ("encrypted_private_keys", "kek", ["method"]),
        "change {}": (None, "change", {}),
        'change ["type"]': (None, "change", ["type"]),
    }
    for label, (outer, member, value) in variants.items():
        bad = dict(record)
        if outer is None:
            bad[member] = value
        else:
            bad[outer] = dict(record[outer], **{member: value})
        exchange = t.put_keypair(user.user_id, CLIENT, bad, token=user.token)
        t.expect_rejected(exchange, 400, what=f"PUT a record with {label}",
                          failure_class="decode")
    expect_absent(t, user, CLIENT, what="GET after the refused PUTs")
