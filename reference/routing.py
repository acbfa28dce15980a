"""Route matching that asks only the routes a path can match.

Starlette's Router tries every route's regular expression in turn until one matches, at
about half a microsecond each: a route registered late (the key directory's come after
some forty others) paid some twenty microseconds per request before its handler ran,
more than its handler. A route matches only a path that begins with its fixed part (the
text before its first parameter: its expression is anchored there and that text is
literal), or, without parameters, only its own path. So this router sorts the routes once
by the first two segments of the paths they can match (their bucket: "/v1/directory" for
"/v1/directory/keypair/{user_id}/{client_id}") and tries, in registration order, only the
routes of the request path's bucket, and those whose bucket is not known from their fixed
part. Which route answers, and how (the first full match, else the first route of the
path with another method: 405), is unchanged; a path no route matches falls through to
Starlette's own handling (404).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from starlette._utils import get_route_path
from starlette.routing import BaseRoute, Match, Route, Router
from starlette.types import Receive, Scope, Send

#: How many leading path segments name a bucket.
BUCKET_SEGMENTS = 2


def bucket_of(path: str) -> str:
    """The first BUCKET_SEGMENTS segments of a path: "/v1/directory/keypair/u/c" ->
    "/v1/directory" (a shorter path is its own bucket)."""
    return "/".join(path.split("/", BUCKET_SEGMENTS + 1)[:BUCKET_SEGMENTS + 1])


def home_bucket(route: BaseRoute) -> str | None:
    """The bucket of every path the route can match; None when its fixed part does not
    tell (the route is then asked for every path)."""
    if not isinstance(route, Route):
        return None
    path_format = route.path_format
    brace = path_format.find("{")
    if brace < 0:
        return bucket_of(path_format)  # it matches its own path only
    fixed = path_format[:brace]
    if fixed.count("/") <= BUCKET_SEGMENTS:
        return None  # the bucket's last segment may go on into a parameter
    return bucket_of(fixed)


class PrefixRouter(Router):
    """A Router that tries only the routes that can match the path (module docstring)."""

    def __init__(self, routes: Sequence[BaseRoute], **kwargs: Any) -> None:
        super().__init__(list(routes), **kwargs)
        self._index()

    def _index(self) -> None:
        homes = [(route, home_bucket(route)) for route in self.routes]
        self._anywhere = [route for route, home in homes if home is None]
        self._buckets = {bucket: [route for route, home in homes if home in (bucket, None)]
                         for _, bucket in homes if bucket is not None}
        self._indexed = len(self.routes)

    def routes_for(self, path: str) -> list[BaseRoute]:
        """The routes that can match `path`, in registration order (sorted again when a
        route was added since, e.g. with add_route)."""
        if len(self.routes) != self._indexed:
            self._index()
        return self._buckets.get(bucket_of(path), self._anywhere)

    async def app(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await super().app(scope, receive, send)
            return
        if "router" not in scope:
            scope["router"] = self
        partial: BaseRoute | None = None
        partial_scope: Scope = {}
        for route in self.routes_for(get_route_path(scope)):
            match, child_scope = route.matches(scope)
            if match is Match.FULL:
                scope["route"] = route
                scope.update(child_scope)
                await route.handle(scope, receive, send)
                return
            if match is Match.PARTIAL and partial is None:
                partial, partial_scope = route, child_scope
        if partial is not None:  # the path exists, not with this method: 405
            scope["route"] = partial
            scope.update(partial_scope)
            await partial.handle(scope, receive, send)
            return
        await super().app(scope, receive, send)  # no route matches: Starlette's 404
