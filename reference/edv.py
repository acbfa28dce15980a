"""The reference encrypted data vault: `keyflows edv` (DIF Confidential Storage, LOCK-34).

  POST   /edvs                                  create a vault {"sequence": 0, "controller"}
                                                -> 201 {"id", "vault", "token"}
  GET    /edvs/{vault_id}                       the vault's configuration
  POST   /edvs/{vault_id}/documents             create a document (sequence 0)
  GET    /edvs/{vault_id}/documents/{doc_id}    read a document
  POST   /edvs/{vault_id}/documents/{doc_id}    update it (sequence + 1)
  DELETE /edvs/{vault_id}/documents/{doc_id}    delete it
  POST   /edvs/{vault_id}/query                 {"index", "equals" | "has", ...}

Every vault route but creation needs `Authorization: Bearer <the vault's token>`; a wrong
token and a vault that does not exist get the same 401. The vault checks every document
with the spec (keyflows.spec.edv) and stores it as written: it reads none of them. Vault
creation is open to anyone who can reach the server: deploy it behind the network policy
that decides who may have a vault.

A component of its own: its own database file and port, `keyflows edv --db PATH`.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from keyflows.reference.app import (
    http_exception_handler,
    internal_error_handler,
    problem_handler,
)
from keyflows.reference.auth import bearer_token
from keyflows.reference.common import check_json_content_type, method_route, parse_json
from keyflows.reference.edv_store import Conflict, VaultStore
from keyflows.reference.limits import read_body
from keyflows.reference.problems import Problem, Unauthorized
from keyflows.reference.store import canonical_json
from keyflows.spec import contract, primitives
from keyflows.spec import edv as spec
from keyflows.spec.errors import SpecError

T = TypeVar("T")
MAX_BODY_BYTES = 64 * 1024
MAX_QUERY_RESULTS = 100


@dataclass
class VaultServer:
    store: VaultStore
    random: Callable[[int], bytes] = os.urandom


def state(request: Request) -> VaultServer:
    server = request.app.state.vaults
    assert isinstance(server, VaultServer)
    return server


async def blocking(work: Callable[[], T]) -> T:
    return await run_in_threadpool(work)


def checked(work: Callable[[], T]) -> T:
    """A spec rejection of client content: 400 for decode/length/params, 409 for a stale
    sequence (replay), 422 otherwise."""
    try:
        return work()
    except SpecError as exc:
        slug = {"decode": "malformed", "length": "malformed", "params": "malformed",
                "replay": "conflict"}.get(exc.failure_class, "invalid")
        raise Problem(slug, str(exc.args[0]) if exc.args else exc.failure_class,
                      failure_class=exc.failure_class, requirement=exc.requirement) from None


def json_answer(obj: Any, status: int = 200, headers: dict[str, str] | None = None
                ) -> Response:
    return Response(canonical_json(obj).encode("ascii"), status_code=status,
                    headers={**contract.NO_STORE, **(headers or {})},
                    media_type="application/json")


async def json_request(request: Request) -> Any:
    raw = await read_body(request, MAX_BODY_BYTES)
    check_json_content_type(request)
    return parse_json(raw)


async def authorized_vault(request: Request) -> str:
    """The vault of the path, if the bearer token is its token; else the uniform 401."""
    token = bearer_token(request)
    vault_id = str(request.path_params["vault_id"])
    found = await blocking(lambda: state(request).store.vault(vault_id))
    if found is None or not primitives.constant_time_equal(spec.token_id(token), found[0]):
        raise Unauthorized()
    return vault_id


def document_id(request: Request) -> str:
    return checked(lambda: spec.check_id(request.path_params["doc_id"], "document id"))


def document_path(vault_id: str, doc_id: str) -> str:
    return f"/edvs/{vault_id}/documents/{doc_id}"


# --- vaults ------------------------------------------------------------------------------------

async def create_vault_route(request: Request) -> Response:
    obj = await json_request(request)
    config = checked(lambda: spec.parse_vault_config(obj))
    server = state(request)
    vault_id, token = spec.new_id(server.random), spec.new_token(server.random)
    await blocking(lambda: server.store.add_vault(vault_id, spec.token_id(token), config))
    path = f"/edvs/{vault_id}"
    return json_answer({"id": vault_id, "vault": path, "token": token}, 201,
                       headers={"Location": path})


async def read_vault(request: Request) -> Response:
    vault_id = await authorized_vault(request)
    found = await blocking(lambda: state(request).store.vault(vault_id))
    assert found is not None
    return json_answer(dict(found[1].to_json(), id=vault_id))


# --- documents -----------------------------------------------------------------------------------

async def create_document(request: Request) -> Response:
    vault_id = await authorized_vault(request)
    obj = await json_request(request)
    doc = checked(lambda: spec.parse_document(obj))
    checked(lambda: spec.check_new_document(doc))
    try:
        await blocking(lambda: state(request).store.add_document(vault_id, doc))
    except Conflict:
        raise Problem("conflict", "the document id or a unique attribute is taken",
                      requirement="LOCK-34") from None
    return Response(status_code=201, headers={"Location": document_path(vault_id, doc.id)})


async def read_document(request: Request) -> Response:
    vault_id = await authorized_vault(request)
    doc_id = document_id(request)
    doc = await blocking(lambda: state(request).store.document(vault_id, doc_id))
    if doc is None:
        raise Problem("not-found", "no such document", requirement="LOCK-34")
    return json_answer(doc.to_json())


async def update_document(request: Request) -> Response:
    vault_id = await authorized_vault(request)
    doc_id = document_id(request)
    obj = await json_request(request)
    new = checked(lambda: spec.parse_document(obj))
    store = state(request).store
    stored = await blocking(lambda: store.document(vault_id, doc_id))
    if stored is None:
        raise Problem("not-found", "no such document", requirement="LOCK-34")
    checked(lambda: spec.check_update(stored, new, doc_id))
    try:
        await blocking(lambda: store.replace_document(vault_id, new, stored.sequence))
    except Conflict:
        raise Problem("conflict", "the document changed meanwhile, or a unique attribute is"
                      " taken", requirement="LOCK-34") from None
    return Response(status_code=204)


async def delete_document(request: Request) -> Response:
    vault_id = await authorized_vault(request)
    doc_id = document_id(request)
    if not await blocking(lambda: state(request).store.delete_document(vault_id, doc_id)):
        raise Problem("not-found", "no such document", requirement="LOCK-34")
    return Response(status_code=204)


async def query(request: Request) -> Response:
    vault_id = await authorized_vault(request)
    obj = await json_request(request)
    parsed = checked(lambda: spec.parse_query(obj))
    names = sorted({name for group in parsed.equals for name, _ in group} | set(parsed.has))
    candidates = await blocking(lambda: state(request).store.candidates(
        vault_id, parsed.index, names))
    found = [d for d in candidates if spec.matches(d, parsed)][:MAX_QUERY_RESULTS]
    if parsed.return_full_documents:
        return json_answer([d.to_json() for d in found])
    return json_answer([document_path(vault_id, d.id) for d in found])


# --- the app -----------------------------------------------------------------------------------

def create_edv_app(db_path: Path) -> Starlette:
    store = VaultStore.open(db_path)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            store.close()

    doc = "/edvs/{vault_id}/documents/{doc_id}"
    app = Starlette(
        routes=[
            method_route("/edvs", {"POST": create_vault_route}, name="edv_vaults"),
            method_route("/edvs/{vault_id}", {"GET": read_vault}, name="edv_vault"),
            method_route("/edvs/{vault_id}/documents", {"POST": create_document},
                         name="edv_documents"),
            method_route(doc, {"GET": read_document, "POST": update_document,
                               "DELETE": delete_document}, name="edv_document"),
            method_route("/edvs/{vault_id}/query", {"POST": query}, name="edv_query"),
        ],
        lifespan=lifespan,
        exception_handlers={Problem: problem_handler, HTTPException: http_exception_handler,
                            Exception: internal_error_handler},
    )
    app.state.vaults = VaultServer(store)
    return app
