"""The reference key server as an ASGI application: `create_app(settings)`.

Each flow contributes one module with a FLOW name and its routes(); the capabilities
document lists the flows mounted here (API-7). Every refusal is problem+json (API-2).
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.metadata import PackageNotFoundError, version
from types import ModuleType

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from keyflows.reference import (
    directory,
    envelope,
    hashchain,
    keypair_publication,
    limits,
    lock_layering,
    session_challenge,
)
from keyflows.reference.auth import AccountClient
from keyflows.reference.common import (
    Services,
    json_text_response,
    limited_body,
    method_route,
    services,
)
from keyflows.reference.config import Settings, database_of
from keyflows.reference.problems import SLUGS, Problem
from keyflows.reference.routing import PrefixRouter
from keyflows.reference.sealed_secrets import open_server_secrets
from keyflows.reference.server_lock import open_server_lock
from keyflows.reference.store import Store
from keyflows.spec import PROFILE, SPEC_VERSION

SERVER_NAME = "keyflows-reference"
FLOW_MODULES: tuple[ModuleType, ...] = (keypair_publication, session_challenge, hashchain, envelope,
                                        lock_layering)

logger = logging.getLogger("keyflows.reference")


def server_version() -> str:
    try:
        return version("keyflows")
    except PackageNotFoundError:
        return "0.0.0"


def capabilities_document(settings: Settings) -> dict[str, object]:
    return {
        "profile": PROFILE,
        "spec_version": SPEC_VERSION,
        "server": {"name": SERVER_NAME, "version": server_version()},
        "flows": [module.FLOW for module in FLOW_MODULES
                  if module is not lock_layering or lock_layering.enabled(settings)],
        "limits": limits.capabilities_member(settings),
        "auth": {"scheme": "bearer", "account_server": "validate"},
        session_challenge.CAPABILITIES_MEMBER: session_challenge.capabilities(settings),
        envelope.CAPABILITIES_MEMBER: envelope.capabilities(settings),
    }


async def get_capabilities(request: Request) -> Response:
    await limited_body(request)
    document = capabilities_document(services(request).settings)
    document.update(hashchain.capabilities(request))  # needs the chain's origin and key
    document.update(lock_layering.capabilities(request))  # needs the server lock in use
    return json_text_response(json.dumps(document, separators=(",", ":")))


# --- errors -----------------------------------------------------------------------------------

async def problem_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, Problem)
    return exc.response()


_STATUS_SLUGS = {status: slug for slug, (status, _) in SLUGS.items()}


async def http_exception_handler(request: Request, exc: Exception) -> Response:
    """Starlette's own refusals (unknown route) as problem+json."""
    assert isinstance(exc, HTTPException)
    slug = _STATUS_SLUGS.get(exc.status_code, "malformed" if exc.status_code < 500
                             else "internal-error")
    headers = dict(exc.headers or {})
    if exc.status_code == 404:
        detail = "no such resource"
    elif exc.status_code == 405:
        # Starlette keeps the methods in a set; a sorted list keeps answers reproducible.
        allowed = ", ".join(sorted(m.strip() for m in headers.get("Allow", "").split(",")))
        headers["Allow"] = allowed
        detail = f"{request.method[:20]} is not allowed here; allowed: {allowed}"
    else:
        detail = str(exc.detail)
    problem = Problem(slug, detail, headers=headers)
    problem.status = exc.status_code
    return problem.response()


async def disconnect_handler(request: Request, exc: Exception) -> Response:
    """The client went away while its body was read: nobody is left to answer, and it is
    not a server fault worth a traceback."""
    return Response(status_code=400)


async def internal_error_handler(request: Request, exc: Exception) -> Response:
    """A bug, never a client's fault: logged with its traceback, answered without it."""
    logger.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return Problem("internal-error", "the server failed to process the request").response()


# --- assembly ----------------------------------------------------------------------------------

def all_routes() -> list[BaseRoute]:
    out: list[BaseRoute] = [
        method_route("/v1/capabilities", {"GET": get_capabilities}, name="capabilities"),
    ]
    for module in FLOW_MODULES:
        out.extend(module.routes())
    out.extend(directory.routes())  # flow hashchain: the key directory
    return out


def create_app(settings: Settings) -> Starlette:
    """The ASGI app. Opens the store now (raising StoreError for a bad path), and the
    account-server client in the lifespan, inside the serving event loop."""
    server_lock = (None if settings.server_lock is None
                   else open_server_lock(settings.server_lock))  # LOCK-19: refused if unusable
    locks = lock_layering.setup(settings, server_lock)
    store = Store.open(database_of(settings))
    secrets = open_server_secrets(store, db_path=None if settings.db_url else settings.db_path,
                                  server_lock=server_lock,
                                  key_file=settings.secrets_key_file)
    challenges = session_challenge.open_store(settings)
    svc = Services(settings=settings, store=store, secrets=secrets)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        svc.accounts = AccountClient(settings.account_server, timeout=settings.account_timeout,
                                     session_check=session_challenge.session_credential)
        try:
            yield
        finally:
            await svc.accounts.aclose()
            svc.accounts = None
            await hashchain.shutdown(app)
            challenges.close()
            secrets.close()
            if locks is not None:
                locks.close()
            store.close()

    app = Starlette(
        routes=all_routes(),
        lifespan=lifespan,
        middleware=[Middleware(limits.BodyGuard, body_timeout=settings.body_timeout,
                               body_min_rate=settings.body_min_rate)],
        exception_handlers={
            Problem: problem_handler,
            HTTPException: http_exception_handler,
            ClientDisconnect: disconnect_handler,
            Exception: internal_error_handler,
        },
    )
    # Only the routes that can match a path are tried (reference/routing.py); an unknown
    # path is a 404, never a redirect to a slash-less twin.
    app.router = PrefixRouter(app.router.routes, lifespan=lifespan, redirect_slashes=False)
    app.state.services = svc
    app.state.rate_limiter = limits.RateLimiter(store, settings.rates)
    session_challenge.attach(app, challenges)
    hashchain.setup(app, svc)
    directory.setup(app, svc)  # over the log: after hashchain.setup
    envelope.setup(app, svc)
    app.state.lock_layering = locks
    return app
