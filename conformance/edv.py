"""The runner's encrypted data vault (DIF Confidential Storage, lock-layering step 12).

A thin shell over keyflows.spec.edv, served by the runner's account server under /edvs,
in memory: the key server under test writes its working-key documents here, so the
lock-layering checks can read what it stores (well-formed documents, nothing in clear),
see what it reads back, and make the vault misbehave (tamper with a document, answer
with another key's document) to see that the key server refuses what it cannot
authenticate. Same routes, statuses and checks as the reference vault (`keyflows edv`).
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from keyflows.conformance.parties import ExchangeLog
from keyflows.spec import edv
from keyflows.spec.errors import SpecError

VAULT_PARTY = "vault"

# A query's answer through a check: documents, or any JSON value in their place.
QueryRewrite = Callable[[str, edv.Query, list[edv.EncryptedDocument]], list[Any]]
ROUTES = ("read", "create", "delete", "query")


@dataclass
class Vault:
    token_id: bytes
    config: edv.VaultConfig
    documents: dict[str, edv.EncryptedDocument] = field(default_factory=dict)


@dataclass(frozen=True)
class VaultCall:
    """One request the key server made to the runner's vault."""

    method: str
    path: str
    body: Any


class RunnerVaults:
    """Vaults in memory, the calls made to them, and the misbehaviour checks ask for."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._vaults: dict[str, Vault] = {}
        self._calls: list[VaultCall] = []
        self._rewrites: dict[str, QueryRewrite] = {}
        self._raw: dict[tuple[str, str], tuple[int, bytes]] = {}
        self.log = ExchangeLog(VAULT_PARTY)
        """What the server under test asked the vault, exchange by exchange."""

    # --- what checks use -----------------------------------------------------------------

    def create(self, controller: str) -> tuple[str, str]:
        """A fresh vault of this controller: (vault id, bearer token)."""
        vault_id, token = edv.new_id(os.urandom), edv.new_token(os.urandom)
        with self._lock:
            self._vaults[vault_id] = Vault(edv.token_id(token), edv.VaultConfig(controller))
        return vault_id, token

    def documents(self, vault_id: str) -> list[edv.EncryptedDocument]:
        with self._lock:
            return list(self._vaults[vault_id].documents.values())

    def replace(self, vault_id: str, doc: edv.EncryptedDocument) -> None:
        """Put a document in place of the stored one with its id, unchecked."""
        with self._lock:
            self._vaults[vault_id].documents[doc.id] = doc

    def rewrite_queries(self, vault_id: str, rewrite: QueryRewrite | None) -> None:
        """Answer this vault's queries through `rewrite` (or normally again)."""
        with self._lock:
            if rewrite is None:
                self._rewrites.pop(vault_id, None)
            else:
                self._rewrites[vault_id] = rewrite

    def answer_raw(self, vault_id: str, route: str, answer: tuple[int, bytes] | None) -> None:
        """Answer this vault's `route` (one of ROUTES) with (status, body) as it is, or
        normally again (None)."""
        assert route in ROUTES
        with self._lock:
            if answer is None:
                self._raw.pop((vault_id, route), None)
            else:
                self._raw[(vault_id, route)] = answer

    def raw(self, vault_id: str, route: str) -> Response | None:
        with self._lock:
            answer = self._raw.get((vault_id, route))
        if answer is None:
            return None
        status, body = answer
        return Response(body, status_code=status, media_type="application/json")

    def calls(self, vault_id: str) -> list[VaultCall]:
        with self._lock:
            return [c for c in self._calls if c.path.startswith(f"/edvs/{vault_id}")]

    # --- what the routes use ---------------------------------------------------------------

    def record(self, call: VaultCall) -> None:
        with self._lock:
            self._calls.append(call)

    def vault(self, vault_id: str, token: str | None) -> Vault | None:
        with self._lock:
            found = self._vaults.get(vault_id)
        if found is None or token is None or edv.token_id(token) != found.token_id:
            return None
        return found

    def rewrite(self, vault_id: str) -> QueryRewrite | None:
        with self._lock:
            return self._rewrites.get(vault_id)

    def add(self, vault: Vault, doc: edv.EncryptedDocument) -> bool:
        with self._lock:
            taken = {k for d in vault.documents.values() for k in edv.unique_keys(d)}
            if doc.id in vault.documents or taken & set(edv.unique_keys(doc)):
                return False
            vault.documents[doc.id] = doc
            return True

    def delete(self, vault: Vault, doc_id: str) -> bool:
        with self._lock:
            return vault.documents.pop(doc_id, None) is not None


def _problem(status: int, detail: str) -> Response:
    return JSONResponse({"type": "about:blank", "status": status, "detail": detail},
                        status_code=status, media_type="application/problem+json")


def _token(request: Request) -> str | None:
    values = request.headers.getlist("authorization")
    if len(values) != 1 or not values[0].startswith("Bearer "):
        return None
    return values[0][len("Bearer "):].strip()


def vault_routes(vaults: RunnerVaults) -> list[Route]:
    """The vault's routes (documents and queries; vaults are made by the runner)."""

    async def enter(request: Request) -> tuple[Vault | None, Any]:
        raw = await request.body()
        body: Any = None
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                body = raw.decode("latin-1")
        vaults.record(VaultCall(request.method, request.url.path, body))
        return vaults.vault(request.path_params["vault_id"], _token(request)), body

    async def read_vault(request: Request) -> Response:
        vault, _ = await enter(request)
        if vault is None:
            return _problem(401, "unauthorized")
        return vaults.raw(request.path_params["vault_id"], "read") or JSONResponse(
            vault.config.to_json())

    async def create_document(request: Request) -> Response:
        vault, body = await enter(request)
        if vault is None:
            return _problem(401, "unauthorized")
        raw = vaults.raw(request.path_params["vault_id"], "create")
        if raw is not None:
            return raw
        try:
            doc = edv.parse_document(body)
            edv.check_new_document(doc)
        except SpecError as exc:
            return _problem(400, str(exc))
        if not vaults.add(vault, doc):
            return _problem(409, "the id or a unique attribute is taken")
        path = f"{request.url.path}/{doc.id}"
        return Response(status_code=201, headers={"Location": path})

    async def document(request: Request) -> Response:
        vault, _ = await enter(request)
        if vault is None:
            return _problem(401, "unauthorized")
        doc_id = request.path_params["doc_id"]
        raw = vaults.raw(request.path_params["vault_id"], "delete")
        if request.method == "DELETE" and raw is not None:
            return raw
        if request.method == "DELETE":
            return Response(status_code=204) if vaults.delete(vault, doc_id) \
                else _problem(404, "no such document")
        found = vault.documents.get(doc_id)
        return JSONResponse(found.to_json()) if found else _problem(404, "no such document")

    async def query(request: Request) -> Response:
        vault, body = await enter(request)
        if vault is None:
            return _problem(401, "unauthorized")
        try:
            parsed = edv.parse_query(body)
        except SpecError as exc:
            return _problem(400, str(exc))
        vault_id = request.path_params["vault_id"]
        raw = vaults.raw(vault_id, "query")
        if raw is not None:
            return raw
        found: list[Any] = [d for d in list(vault.documents.values()) if edv.matches(d, parsed)]
        rewrite = vaults.rewrite(vault_id)
        if rewrite is not None:
            found = rewrite(vault_id, parsed, found)
        if parsed.return_full_documents:
            return JSONResponse([d.to_json() if isinstance(d, edv.EncryptedDocument) else d
                                 for d in found])
        return JSONResponse([f"/edvs/{vault_id}/documents/{d.id}" for d in found])

    doc = "/edvs/{vault_id}/documents/{doc_id}"
    return [Route("/edvs/{vault_id}", read_vault, methods=["GET"]),
            Route("/edvs/{vault_id}/documents", create_document, methods=["POST"]),
            Route(doc, document, methods=["GET", "DELETE"]),
            Route("/edvs/{vault_id}/query", query, methods=["POST"])]
