"""reference/routing.py: the bucketed router picks the same route, with the same status,
as Starlette's own Router, for every route of the server and for paths no route has."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence

import pytest
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Route, Router
from starlette.types import Message, Scope

from keyflows.reference.app import all_routes
from keyflows.reference.routing import PrefixRouter, bucket_of, home_bucket

METHODS = ("GET", "HEAD", "PUT", "POST", "DELETE", "PATCH")


def named_routes(routes: Sequence[BaseRoute]) -> list[BaseRoute]:
    """The same paths and methods, each answering with its own path format."""
    out: list[BaseRoute] = []
    for route in routes:
        assert isinstance(route, Route)

        def endpoint(_request: Request, name: str = route.path_format) -> Response:
            return PlainTextResponse(name)

        out.append(Route(route.path, endpoint, methods=sorted(route.methods or ())))
    return out


def concrete(path_format: str, value: str) -> str:
    return re.sub(r"\{[^}]+\}", value, path_format)


def paths_to_try(routes: Sequence[BaseRoute]) -> list[str]:
    paths = {"/", "", "/v1", "/v1/", "/v2/directory", "/v1/unknown/x", "/v1/directoryx",
             "/v1/directory/", "/v1/users", "/v1/users/", "/v1/hashchain/tile/a/b/c"}
    for route in routes:
        assert isinstance(route, Route)
        for value in ("x", "a%2Fb", "a/b", ""):
            path = concrete(route.path_format, value)
            paths.update({path, path + "/", path + "/more", path.rstrip("/") + "x"})
    return sorted(paths)


async def answer(router: Router, method: str, path: str, root_path: str) -> tuple[int, bytes,
                                                                                 str]:
    scope: Scope = {"type": "http", "method": method, "path": root_path + path,
                    "root_path": root_path, "raw_path": (root_path + path).encode(),
                    "query_string": b"", "headers": [], "scheme": "http",
                    "server": ("127.0.0.1", 80), "http_version": "1.1"}
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    await router(scope, receive, send)
    start = sent[0]
    allow = dict(start["headers"]).get(b"allow", b"").decode()
    body = b"".join(m.get("body", b"") for m in sent[1:])
    return int(start["status"]), body, allow


@pytest.fixture(scope="module")
def routers() -> tuple[Router, PrefixRouter, list[str]]:
    routes = named_routes(all_routes())
    return (Router(routes, redirect_slashes=False), PrefixRouter(routes, redirect_slashes=False),
            paths_to_try(routes))


@pytest.mark.parametrize("root_path", ["", "/mounted"])
def test_the_same_route_answers_every_path_and_method(
        routers: tuple[Router, PrefixRouter, list[str]], root_path: str) -> None:
    plain, bucketed, paths = routers

    async def compare() -> set[int]:
        seen = set()
        for path in paths:
            for method in METHODS:
                expected = await answer(plain, method, path, root_path)
                assert await answer(bucketed, method, path, root_path) == expected, (method,
                                                                                     path)
                seen.add(expected[0])
        return seen

    assert asyncio.run(compare()) == {200, 404, 405}  # every outcome was exercised


def test_buckets_hold_only_routes_that_can_match() -> None:
    routes = all_routes()
    bucketed = PrefixRouter(routes)
    assert bucket_of("/v1/directory/keypair/u/c") == "/v1/directory"
    assert bucket_of("/v1/capabilities") == "/v1/capabilities"
    assert bucket_of("/v1") == "/v1"
    directory = bucketed.routes_for("/v1/directory/keypair/u/c")
    assert directory and all(isinstance(r, Route) and r.path.startswith("/v1/directory")
                             for r in directory)
    assert len(directory) < len(routes) / 4
    assert bucketed.routes_for("/v1/unknown/x") == []
    # a route whose fixed part stops inside the bucket's segments is asked for every path
    loose = Route("/v1/{anything}/x", PlainTextResponse)
    assert home_bucket(loose) is None
    widened = PrefixRouter([*routes, loose])
    assert widened.routes_for("/v1/unknown/x") == [loose]
    assert widened.routes_for("/v1/directory/keypair/u/c")[-1] is loose


def test_a_route_added_later_is_found() -> None:
    bucketed = PrefixRouter(all_routes())
    assert bucketed.routes_for("/v1/extra/x") == []
    bucketed.add_route("/v1/extra/{name}", PlainTextResponse)
    assert [r.path for r in bucketed.routes_for("/v1/extra/x")  # type: ignore[attr-defined]
            ] == ["/v1/extra/{name}"]
