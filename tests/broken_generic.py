"""Servers that break one common rule on one route: the checks generated from
spec/openapi.yaml (conformance/checks/generic.py) and the schema validation of every
answer must catch each. Each is the reference server behind a small ASGI rewrite."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass

from broken_servers import (
    ASGIApp,
    Receive,
    Scope,
    Send,
    compact,
    read_request_body,
    rewriting,
)


@dataclass(frozen=True)
class GenericVariant:
    name: str
    fault: str
    must_fail: tuple[str, ...]
    wrapper: Callable[[ASGIApp], ASGIApp]
    message: str
    """Text the failure message of the first must-fail check contains."""


def problem(status: int, slug: str, title: str, detail: str) -> bytes:
    return compact({"type": f"urn:keyflows:problem:{slug}", "title": title, "status": status,
                    "detail": detail})


DEVICES = re.compile(r"\A/v1/users/[^/]+/apps/[^/]+/devices\Z")
PAYLOAD = re.compile(r"\A/v1/users/[^/]+/apps/[^/]+/devices/[^/]+/messages/[^/]+/payload\Z")
WRAP = re.compile(r"\A/v1/keystores/[^/]+/wrap\Z")
PUBLIC_KEYS = re.compile(r"\A/v1/users/[^/]+/apps/[^/]+/public-keys\Z")


def _rewrite(match: Callable[[Scope, int], bool],
             change: Callable[[int, list[tuple[bytes, bytes]], bytes],
                              tuple[int, list[tuple[bytes, bytes]], bytes]]
             ) -> Callable[[ASGIApp], ASGIApp]:
    async def rewrite(scope: Scope, request_body: bytes, status: int,
                      headers: list[tuple[bytes, bytes]], body: bytes
                      ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        if match(scope, status):
            return change(status, headers, body)
        return status, headers, body

    return rewriting(rewrite)


def _drop_header(name: bytes) -> Callable[[int, list[tuple[bytes, bytes]], bytes],
                                          tuple[int, list[tuple[bytes, bytes]], bytes]]:
    def change(status: int, headers: list[tuple[bytes, bytes]], body: bytes
               ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        return status, [(k, v) for k, v in headers if k.lower() != name], body

    return change


def unchecked_identifiers(status: int, headers: list[tuple[bytes, bytes]], body: bytes
                          ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """A user id outside the syntax is looked up instead of refused: no such list."""
    return 404, [(b"content-type", b"application/problem+json")], problem(
        404, "not-found", "Not found", "no device list for this user and application")


def without_detail(status: int, headers: list[tuple[bytes, bytes]], body: bytes
                   ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """A problem without its detail member: well-formed RFC 9457, but not the schema."""
    answer = json.loads(body)
    answer.pop("detail", None)
    return status, headers, compact(answer)


def chunked_limit_ignored(app: ASGIApp) -> ASGIApp:
    """A chunked body to the device-list route is read to its end and parsed, whatever
    its size: the limit holds only for bodies that declare a Content-Length."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        headers = dict(scope.get("headers", []))
        if scope["type"] == "http" and scope["method"] == "PUT" and \
                DEVICES.match(scope["path"]) and b"content-length" not in headers:
            await read_request_body(receive)
            body = problem(400, "malformed", "Malformed request", "body is not a JSON object")
            await send({"type": "http.response.start", "status": 400, "headers": [
                (b"content-type", b"application/problem+json"),
                (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})
            return
        await app(scope, receive, send)

    return middleware


def any_media_type_on_wrap(app: ASGIApp) -> ASGIApp:
    """The wrap route takes a body of any content-type as JSON (no 415)."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and WRAP.match(scope["path"]):
            headers = [(k, v) for k, v in scope.get("headers", [])
                       if k.lower() != b"content-type"]
            scope = dict(scope, headers=[*headers, (b"content-type", b"application/json")])
        await app(scope, receive, send)

    return middleware


VARIANTS = (
    GenericVariant(
        "no-allow-on-405", "405 answers on the devices route lack the Allow header",
        ("common/users-apps-devices/methods",),
        _rewrite(lambda s, st: st == 405 and bool(DEVICES.match(s["path"])),
                 _drop_header(b"allow")), "Allow is None (API-11)"),
    GenericVariant(
        "identifiers-unchecked", "a user id outside the identifier syntax is looked up",
        ("common/users-apps-devices/identifiers",),
        _rewrite(lambda s, st: st == 400 and s["method"] == "GET"
                 and bool(DEVICES.match(s["path"])), unchecked_identifiers),
        "expected 400, got 404"),
    GenericVariant(
        "no-challenge-on-payload", "401 answers of the payload route lack WWW-Authenticate",
        ("common/users-apps-devices-messages-payload/get-authentication",),
        _rewrite(lambda s, st: st == 401 and bool(PAYLOAD.match(s["path"])),
                 _drop_header(b"www-authenticate")), "WWW-Authenticate: Bearer"),
    GenericVariant(
        "chunked-limit-ignored", "chunked device-list bodies are parsed whatever their size",
        ("common/users-apps-devices/put-body",), chunked_limit_ignored,
        "chunked"),
    GenericVariant(
        "any-media-type-on-wrap", "the wrap route parses any content-type as JSON",
        ("common/keystores-wrap/post-body",), any_media_type_on_wrap, "expected 415"),
    GenericVariant(
        "problem-off-schema", "404 answers of the public-keys route lack their detail",
        ("keypair-publication/fetch/absent",),
        _rewrite(lambda s, st: st == 404 and bool(PUBLIC_KEYS.match(s["path"])),
                 without_detail),
        "does not match its schema at $: 'detail' is a required property"),
)
