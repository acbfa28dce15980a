"""Request handling shared by every flow's routes, in the contract's order of checks:

  1. path identifiers (400)  2. bearer auth (401)  3. body size (413)
  4. Content-Type (415)      5. JSON parse and shape (400)
  6. crypto validation (422) 7. state conflicts (409)

Credentials are checked before a byte of the body is read (API-50): a refused client
costs no body buffering, and limits.BodyGuard closes its connection after the 401.

Each step is one function, so a route reads as the list of steps it performs.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from keyflows.reference.auth import AccountClient
from keyflows.reference.config import Settings
from keyflows.reference.limits import read_body
from keyflows.reference.problems import Problem, from_spec_error, malformed
from keyflows.reference.sealed_secrets import ServerSecrets
from keyflows.reference.store import Store
from keyflows.spec import contract
from keyflows.spec.errors import SpecError
from keyflows.spec.session_challenge import Operation

T = TypeVar("T")
JSON_MEDIA_TYPE = "application/json"
Endpoint = Callable[[Request], Awaitable[Response]]


@dataclass
class Services:
    """What the routes need, kept on app.state.services."""

    settings: Settings
    store: Store
    secrets: ServerSecrets  # the server's own secrets, sealed at rest (sealed_secrets.py)
    accounts: AccountClient | None = None  # created in the lifespan, inside the event loop


_SERVICES = "keyflows.services"


def services(request: Request) -> Services:
    """The app's Services, remembered in the request scope (a route asks several times)."""
    svc = request.scope.get(_SERVICES)
    if svc is None:
        svc = request.scope[_SERVICES] = request.app.state.services
    assert isinstance(svc, Services)
    return svc


def accounts(request: Request) -> AccountClient:
    client = services(request).accounts
    if client is None:  # only if the app is served without its lifespan
        raise RuntimeError("the account client is not running (lifespan not started)")
    return client


# --- step 1 -----------------------------------------------------------------------------

def path_identifiers(request: Request, *names: str) -> tuple[str, ...]:
    """The named path parameters, each an identifier (KD-2) and no dot segment (API-22),
    else 400."""
    params = request.path_params
    return spec_checked(lambda: tuple([contract.path_identifier(params[name], name)
                                       for name in names]))


def query_parameter(request: Request, name: str) -> str | None:
    """A query parameter the route defines, None when absent, 400 when repeated (API-19).
    Parameters a route does not define are never read, so they change nothing."""
    if not request.scope.get("query_string"):
        return None  # no query at all (most requests): nothing to parse
    return spec_checked(partial(contract.single_query_value,
                                request.query_params.getlist(name), name))


# --- step 2 -----------------------------------------------------------------------------

async def authenticate(request: Request, user_id: str,
                       operation: Operation = Operation.OTHER) -> None:
    """API-3; a session token only for an operation SC-15 allows it."""
    await accounts(request).authenticate(request, user_id, operation)


# --- step 3 -----------------------------------------------------------------------------

async def limited_body(request: Request) -> bytes:
    return await read_body(request, services(request).settings.max_body_bytes)


# --- steps 4 and 5 -------------------------------------------------------------------------

def check_json_content_type(request: Request) -> None:
    """application/json, optionally with charset=utf-8; anything else is 415."""
    header = request.headers.get("content-type")
    if header is None:
        raise Problem("unsupported-media-type", "the request body must be application/json")
    media_type, *params = (part.strip() for part in header.split(";"))
    if media_type.lower() != JSON_MEDIA_TYPE:
        raise Problem("unsupported-media-type",
                      f"the request body must be application/json, not {media_type[:100]!r}")
    for param in params:
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset" and value.strip().strip('"').lower() != "utf-8":
            raise Problem("unsupported-media-type", "the only accepted charset is utf-8")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _unique_members(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:  # two readers could otherwise see two different records
            raise ValueError(f"duplicate member {key!r}")
        obj[key] = value
    return obj


def parse_json(body: bytes) -> Any:
    """Strict JSON: UTF-8, no duplicate members, no NaN or Infinity; else 400 (API-6)."""
    try:
        text = body.decode("utf-8")
        return json.loads(text, object_pairs_hook=_unique_members,
                          parse_constant=_reject_constant)
    except UnicodeDecodeError:
        raise malformed("the request body is not UTF-8") from None
    except (ValueError, RecursionError) as exc:
        raise malformed(f"the request body is not valid JSON: {str(exc)[:200]}") from None


def json_body(request: Request, body: bytes) -> Any:
    check_json_content_type(request)
    return parse_json(body)


# --- steps 6 and 7 --------------------------------------------------------------------------

def spec_checked(check: Callable[[], T]) -> T:
    """Run a spec function; its rejection becomes the problem its failure class maps to."""
    try:
        return check()
    except SpecError as exc:
        raise from_spec_error(exc) from None


async def quick_read(request: Request, work: Callable[[], T]) -> T:
    """A short read of the store (a point lookup, one queue page): on the event loop when
    the database answers without blocking (SQLite under WAL), else off it."""
    if services(request).store.reads_inline:
        try:
            return work()
        except SpecError as exc:
            raise from_spec_error(exc) from None
    return await in_thread(work)


async def in_thread(work: Callable[[], T]) -> T:
    """Blocking storage work off the event loop; spec rejections mapped as above."""
    try:
        return await run_in_threadpool(work)
    except SpecError as exc:
        raise from_spec_error(exc) from None


# --- responses --------------------------------------------------------------------------------

def json_text_response(text: str, status: int = 200,
                       headers: dict[str, str] | None = None) -> Response:
    return Response(text.encode("utf-8"), status_code=status, headers=headers,
                    media_type=JSON_MEDIA_TYPE)


class PreparedResponse(Response):
    """A 200 application/json answer whose body and header list were built once (for an
    answer served many times over, such as a record's public view): the same bytes and
    headers as json_text_response(text), without building them again per request."""

    def __init__(self, body: bytes, raw_headers: list[tuple[bytes, bytes]]) -> None:
        self.status_code = 200
        self.background = None
        self.body = body
        self.raw_headers = raw_headers


def prepared_json(text: str) -> PreparedResponse:
    """What json_text_response(text) answers, prepared for reuse (never mutate it)."""
    model = json_text_response(text)
    return PreparedResponse(bytes(model.body), model.raw_headers)


def not_found(detail: str, *, requirement: str | None = None) -> Problem:
    return Problem("not-found", detail, requirement=requirement)


def method_route(path: str, handlers: dict[str, Endpoint], *, name: str) -> Route:
    """One route per path that dispatches on the method, so a wrong method gets a 405
    whose Allow header lists every method of the path (RFC 9110 section 15.5.6)."""
    table = dict(handlers)
    if "GET" in table:
        table["HEAD"] = table["GET"]

    async def endpoint(request: Request) -> Response:
        return await table[request.method](request)

    # Starlette answers any other method with 405 and the Allow header itself.
    return Route(path, endpoint, methods=sorted(table), name=name)
