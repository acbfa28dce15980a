"""Key servers that break one rule of the HTTP contract each (API-3, API-6, API-12,
API-14, API-15, API-18, API-21, API-22, API-23): the checks of
conformance/checks/contract.py must catch every one.

Like tests/broken_servers.py: the real reference server with one fault, as ASGI
middleware (visible on the wire only) or a monkeypatch where a real bug would sit.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from broken_servers import ASGIApp, Scope, compact, path_of, rewriting


@dataclass(frozen=True)
class ContractVariant:
    name: str
    fault: str
    must_fail: str
    """The one check that must fail (the test runs it alone)."""
    wrapper: Callable[[ASGIApp], ASGIApp] | None = None
    patch: Callable[[pytest.MonkeyPatch], None] | None = None


def case_sensitive_scheme(monkeypatch: pytest.MonkeyPatch) -> None:
    from keyflows.spec import contract

    monkeypatch.setattr(contract, "_AUTHORIZATION",
                        re.compile(r"\ABearer ([A-Za-z0-9\-._~+/]+=*)\Z"))


def unbounded_tokens(monkeypatch: pytest.MonkeyPatch) -> None:
    """Takes the token of a well-formed header whatever its length. (Patched in the
    server's module: the runner shares this process and reads the contract's limit.)"""
    from keyflows.reference import auth
    from keyflows.reference.problems import Unauthorized

    def bearer_token(request: Any) -> str:
        values = request.headers.getlist("authorization")
        match = re.fullmatch(r"[Bb][Ee][Aa][Rr][Ee][Rr] +(\S+)", values[0]) if values else None
        if match is None:
            raise Unauthorized()
        return match.group(1)

    monkeypatch.setattr(auth, "bearer_token", bearer_token)


def account_status_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    """Reads {"valid": true} out of any answer, whatever its status."""
    from keyflows.reference.auth import AccountClient
    from keyflows.reference.upstream import Answer

    original = AccountClient._member

    def member(answer: Answer, name: str, kind: type[Any]) -> Any:
        return original(Answer(200, answer.body), name, kind)

    monkeypatch.setattr(AccountClient, "_member", staticmethod(member))


def fail_open_on_transport_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """Takes whatever arrived before a broken connection as the answer."""
    from keyflows.reference import auth
    from keyflows.reference.upstream import Answer, UpstreamError

    async def call(self: auth.AccountClient, pending: Awaitable[Answer]) -> Answer:
        try:
            return await pending
        except UpstreamError:
            return Answer(200, b'{"valid": true}')

    monkeypatch.setattr(auth.AccountClient, "_call", call)


def lenient_account_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    """Parses the account server's answer as the standard library does by default: the
    last of two equal names wins, NaN is a number."""
    from keyflows.reference import auth

    monkeypatch.setattr(auth, "_unique_members", dict)
    monkeypatch.setattr(auth, "_no_constant", lambda name: float(name))


def last_member_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    from keyflows.reference import common

    monkeypatch.setattr(common, "_unique_members", dict)


def integral_floats(monkeypatch: pytest.MonkeyPatch) -> None:
    """Reads 1.0 and 1e0 as the integer 1."""
    from keyflows.reference import common
    from keyflows.reference.problems import malformed

    def parse(body: bytes) -> Any:
        def number(text: str) -> int | float:
            value = float(text)
            return int(value) if value.is_integer() else value
        try:
            return json.loads(body.decode("utf-8"), parse_float=number)
        except ValueError:
            raise malformed("the request body is not valid JSON") from None

    monkeypatch.setattr(common, "parse_json", parse)


def any_charset(monkeypatch: pytest.MonkeyPatch) -> None:
    from keyflows.reference import common

    original = common.check_json_content_type

    def check(request: Any) -> None:
        header = request.headers.get("content-type", "")
        if header.split(";")[0].strip().lower() != "application/json":
            original(request)

    monkeypatch.setattr(common, "check_json_content_type", check)


def parse_before_media_type(monkeypatch: pytest.MonkeyPatch) -> None:
    from keyflows.reference import common, keypair_publication

    def json_body(request: Any, body: bytes) -> Any:
        parsed = common.parse_json(body)
        common.check_json_content_type(request)
        return parsed

    monkeypatch.setattr(keypair_publication, "json_body", json_body)


def dot_segments(monkeypatch: pytest.MonkeyPatch) -> None:
    from keyflows.spec import contract

    monkeypatch.setattr(contract, "DOT_SEGMENTS", frozenset())


def last_query_value_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    from keyflows.reference import hashchain

    def query_parameter(request: Any, name: str) -> str | None:
        value: str | None = request.query_params.get(name)
        return value

    monkeypatch.setattr(hashchain, "query_parameter", query_parameter)


def query_changes_capabilities(app: ASGIApp) -> ASGIApp:
    """Reads any query string as a request for a leaner capabilities document."""
    async def rewrite(scope: Scope, request_body: bytes, status: int,
                      headers: list[tuple[bytes, bytes]], body: bytes
                      ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        if scope["path"] == "/v1/capabilities" and scope.get("query_string"):
            caps = json.loads(body)
            caps.pop("session_challenge", None)
            body = compact(caps)
        return status, headers, body

    return rewriting(rewrite)(app)


def stale_cache(app: ASGIApp) -> ASGIApp:
    """Keeps the first 200 answer to every GET (per path and credential) for good."""
    cache: dict[tuple[str, bytes], tuple[int, list[tuple[bytes, bytes]], bytes]] = {}

    async def rewrite(scope: Scope, request_body: bytes, status: int,
                      headers: list[tuple[bytes, bytes]], body: bytes
                      ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        if scope["method"] != "GET" or not str(scope["path"]).startswith("/v1/users/"):
            return status, headers, body
        auth = dict(scope.get("headers", [])).get(b"authorization", b"")
        key = (str(scope["path"]), auth)
        if key in cache:
            return cache[key]
        if status == 200:
            cache[key] = (status, headers, body)
        return status, headers, body

    return rewriting(rewrite)(app)


def small_order_ed25519_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    """Verifies Ed25519 as most libraries do: any key that decodes, cofactorless."""
    from keyflows.spec import primitives

    monkeypatch.setattr(primitives, "check_ed25519_public_key",
                        lambda public_key, requirement=None: None)


def base64_of_any_text(monkeypatch: pytest.MonkeyPatch) -> None:
    """Decodes base64url with a library that chokes on non-ASCII text (a 500)."""
    import base64

    from keyflows.spec import encoding

    original = encoding.b64url_decode

    def decode(text: str, *, requirement: str | None = None) -> bytes:
        if isinstance(text, str) and not text.isascii():
            return base64.urlsafe_b64decode(text.encode("ascii"))  # UnicodeEncodeError
        return original(text, requirement=requirement)

    monkeypatch.setattr(encoding, "b64url_decode", decode)


def slash_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    """Takes '/' for '_' in base64url (refusing only '+' and '=' of the standard
    alphabet)."""
    from keyflows.spec import encoding

    original = encoding.b64url_decode

    def decode(text: str, *, requirement: str | None = None) -> bytes:
        if isinstance(text, str):
            text = text.replace("/", "_")
        return original(text, requirement=requirement)

    monkeypatch.setattr(encoding, "b64url_decode", decode)


def booleans_as_integers(monkeypatch: pytest.MonkeyPatch) -> None:
    """Takes true and false for the integers 1 and 0 (Python's bool is an int)."""
    from keyflows.spec import wire
    from keyflows.spec.errors import DecodeError

    def integer(obj: dict[str, Any], key: str, where: str) -> int:
        value = obj[key]
        if not isinstance(value, int):
            raise DecodeError(f"{where}.{key} must be an integer", requirement="API-6")
        return value

    monkeypatch.setattr(wire, "integer", integer)


def device_ids_as_text(monkeypatch: pytest.MonkeyPatch) -> None:
    """Takes any JSON value for a listed device's device_id, as its text (7 -> "7")."""
    from keyflows.spec import envelope_devices
    from keyflows.spec.key_derivation import check_identifier

    def check_device_id(value: object) -> str:
        text = value if isinstance(value, str) else str(value)
        return check_identifier(text, "device_id", requirement="ENV-1").decode("ascii")

    monkeypatch.setattr(envelope_devices, "check_device_id", check_device_id)


def lenient_keyinit_lists(monkeypatch: pytest.MonkeyPatch) -> None:
    """Takes any number of KeyInits and ignores further members of the body."""
    from keyflows.reference import hashchain as route

    original = route.parse_keyinits

    def parse(obj: Any) -> Any:
        if isinstance(obj, dict) and isinstance(obj.get("keyinits"), list) \
                and obj["keyinits"]:
            # The log's spec module is imported as hu (tiled log) or hc (linear chain).
            spec = getattr(route, "hu", None) or getattr(route, "hc")  # noqa: B009
            return [spec.parse_keyinit(item) for item in obj["keyinits"]]
        return original(obj)

    monkeypatch.setattr(route, "parse_keyinits", parse)


def unread_get_bodies(app: ASGIApp) -> ASGIApp:
    """Hands GET requests to the app without their body (as a proxy might)."""
    async def middleware(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] == "GET":
            scope = dict(scope, headers=[(k, v) for k, v in scope["headers"]
                                         if k.lower() not in (b"content-length",
                                                              b"transfer-encoding")])

            async def empty() -> dict[str, Any]:
                return {"type": "http.request", "body": b"", "more_body": False}

            await app(scope, empty, send)
            return
        await app(scope, receive, send)

    return middleware


def strict_media_parameters(monkeypatch: pytest.MonkeyPatch) -> None:
    """Refuses application/json with any parameter but charset."""
    from keyflows.reference import common
    from keyflows.reference.problems import Problem

    original = common.check_json_content_type

    def check(request: Any) -> None:
        for param in request.headers.get("content-type", "").split(";")[1:]:
            if param.split("=")[0].strip().lower() != "charset":
                raise Problem("unsupported-media-type", "unknown parameter")
        original(request)

    monkeypatch.setattr(common, "check_json_content_type", check)


def change_without_type(monkeypatch: pytest.MonkeyPatch) -> None:
    """Reads change["type"] before checking that change is an object with a type."""
    from keyflows.spec import keypair_publication as kp

    original = kp.parse_change

    def parse_change(obj: Any) -> Any:
        obj["type"]  # {} -> KeyError, a 500
        return original(obj)

    monkeypatch.setattr(kp, "parse_change", parse_change)


def without_location(app: ASGIApp) -> ASGIApp:
    async def rewrite(scope: Scope, request_body: bytes, status: int,
                      headers: list[tuple[bytes, bytes]], body: bytes
                      ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        return status, [(k, v) for k, v in headers if k.lower() != b"location"], body

    return rewriting(rewrite)(app)


def apps_in_publication_order(app: ASGIApp) -> ASGIApp:
    """Lists applications in the order they were first published."""
    order: list[tuple[str, str]] = []

    async def rewrite(scope: Scope, request_body: bytes, status: int,
                      headers: list[tuple[bytes, bytes]], body: bytes
                      ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        parts = path_of(scope)
        if scope["method"] == "PUT" and status == 201 and parts[-1] == "keypair":
            order.append((parts[2], parts[4]))
        if scope["method"] == "GET" and len(parts) == 4 and parts[3] == "apps" \
                and status == 200:
            listing = json.loads(body)
            rank = {client: i for i, (user, client) in enumerate(order) if user == parts[2]}
            listing["apps"].sort(key=lambda a: rank.get(a["client_id"], -1))
            body = compact(listing)
        return status, headers, body

    return rewriting(rewrite)(app)


def public_view_with_extra_member(app: ASGIApp) -> ASGIApp:
    """Adds a member no schema lists to every public-key view."""
    async def rewrite(scope: Scope, request_body: bytes, status: int,
                      headers: list[tuple[bytes, bytes]], body: bytes
                      ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        if scope["method"] == "GET" and path_of(scope)[-1] == "public-keys" and status == 200:
            body = compact({**json.loads(body), "display_name": "Alice"})
        return status, headers, body

    return rewriting(rewrite)(app)


def payload_limit_off_by_one(app: ASGIApp) -> ASGIApp:
    """Refuses a payload declaring exactly the advertised max_payload_bytes (it advertises
    one byte more than it takes)."""
    async def rewrite(scope: Scope, request_body: bytes, status: int,
                      headers: list[tuple[bytes, bytes]], body: bytes
                      ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        if scope["path"] == "/v1/capabilities" and status == 200:
            caps = json.loads(body)
            caps["envelope"]["max_payload_bytes"] += 1
            body = compact(caps)
        return status, headers, body

    return rewriting(rewrite)(app)


def without_header(name: bytes, *, path_part: str) -> Callable[[ASGIApp], ASGIApp]:
    """Drops header `name` from answers to paths containing `path_part`."""
    def wrap(app: ASGIApp) -> ASGIApp:
        async def rewrite(scope: Scope, request_body: bytes, status: int,
                          headers: list[tuple[bytes, bytes]], body: bytes
                          ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
            if path_part in str(scope["path"]):
                headers = [(k, v) for k, v in headers if k.lower() != name]
            return status, headers, body

        return rewriting(rewrite)(app)

    return wrap


VARIANTS = (
    ContractVariant("case-sensitive-scheme", "accepts only `Bearer` spelled so",
                    "common/auth/bearer-syntax", patch=case_sensitive_scheme),
    ContractVariant("unbounded-tokens", "accepts bearer tokens of any length",
                    "common/auth/bearer-syntax", patch=unbounded_tokens),
    ContractVariant("account-status-ignored", "grants on {\"valid\": true} with any status",
                    "common/auth/account-server-failure", patch=account_status_ignored),
    ContractVariant("fail-open-transport", "grants when the account server's answer breaks",
                    "common/auth/account-server-failure", patch=fail_open_on_transport_error),
    ContractVariant("lenient-account-answers", "reads a repeated member of the account "
                    "server's answer as its last value", "common/auth/account-server-failure",
                    patch=lenient_account_answers),
    ContractVariant("last-member-wins", "reads a repeated JSON member as its last value",
                    "common/json/repeated-member", patch=last_member_wins),
    ContractVariant("integral-floats", "reads 1.0 and 1e0 as the integer 1",
                    "common/json/integers", patch=integral_floats),
    ContractVariant("any-charset", "accepts application/json in any charset",
                    "common/media/charset", patch=any_charset),
    ContractVariant("parse-before-media-type", "parses the body before checking its type",
                    "common/http/check-order", patch=parse_before_media_type),
    ContractVariant("dot-segments", "takes . and .. as identifiers",
                    "common/path/identifiers", patch=dot_segments),
    ContractVariant("no-location", "answers 201 without Location",
                    "common/http/location", wrapper=without_location),
    ContractVariant("apps-unsorted", "lists applications in publication order",
                    "common/http/apps-order", wrapper=apps_in_publication_order),
    ContractVariant("cacheable-challenge", "lets caches store session challenges",
                    "common/http/no-store-challenge",
                    wrapper=without_header(b"cache-control", path_part="/session-challenges")),
    ContractVariant("cacheable-session", "lets caches store a session token",
                    "common/http/no-store-challenge",
                    wrapper=without_header(b"cache-control", path_part="/session-challenges/")),
    ContractVariant("cacheable-capability", "lets caches store a new keystore's capability",
                    "common/http/no-store-capability",
                    wrapper=without_header(b"cache-control", path_part="/keystores")),
    ContractVariant("unlisted-member", "adds a member no schema lists to public-key views",
                    "common/http/answers-match-shipped-schemas",
                    wrapper=public_view_with_extra_member),
    ContractVariant("payload-limit-off-by-one", "refuses a payload declaring exactly "
                    "max_payload_bytes", "common/limits/payload-declared-at-limit",
                    wrapper=payload_limit_off_by_one),
    ContractVariant("cacheable-plaintext", "lets caches store decrypted plaintexts",
                    "common/http/no-store-plaintext",
                    wrapper=without_header(b"cache-control", path_part="/decrypt")),
    ContractVariant("last-query-value-wins", "takes the last of a repeated query parameter",
                    "common/http/query-parameters", patch=last_query_value_wins),
    ContractVariant("query-changes-capabilities", "answers differently to an unknown query",
                    "common/http/query-parameters", wrapper=query_changes_capabilities),
    ContractVariant("stale-cache", "serves the first answer to a GET for good",
                    "common/http/fresh-after-change", wrapper=stale_cache),
    ContractVariant("small-order-ed25519", "accepts small-order Ed25519 keys",
                    "common/signatures/strict-ed25519", patch=small_order_ed25519_keys),
    ContractVariant("slash-accepted", "takes '/' for '_' in base64url values",
                    "common/encoding/standard-alphabet-rejected", patch=slash_accepted),
    ContractVariant("booleans-as-integers", "takes true for 1 in envelope counters",
                    "common/errors/envelope-shapes", patch=booleans_as_integers),
    ContractVariant("device-id-as-text", "takes a device_id of any JSON type as its text",
                    "common/errors/envelope-shapes", patch=device_ids_as_text),
    ContractVariant("lenient-keyinit-lists", "takes any number of KeyInits and extra members",
                    "common/errors/keyinit-list-bounds", patch=lenient_keyinit_lists),
    ContractVariant("base64-500", "answers 500 to a non-ASCII base64url value",
                    "common/encoding/non-ascii-rejected", patch=base64_of_any_text),
    ContractVariant("unread-get-bodies", "never reads the body of a GET",
                    "common/limits/body-on-bodiless", wrapper=unread_get_bodies),
    ContractVariant("strict-media-parameters", "refuses application/json with a parameter",
                    "common/media/charset", patch=strict_media_parameters),
    ContractVariant("change-without-type", "answers 500 to a change object without a type",
                    "common/errors/nested-shapes", patch=change_without_type),
    ContractVariant("no-retry-after", "answers 429 without Retry-After",
                    "common/limits/retry-after",
                    wrapper=without_header(b"retry-after", path_part="/session-challenges")),
)
