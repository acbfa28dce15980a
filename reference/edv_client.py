"""The key server's client of the encrypted data vaults it trusts (lock-layering step 12).

One UpstreamClient per trusted vault server (`--edv-server URL`, repeatable). A vault
that cannot be reached or gives no clear answer is a 503 ("vault-unavailable"); an answer
that breaks the vault protocol, or a document that fails the spec's checks, is a 502
("vault-bad-answer"): the key server never signs, decrypts or unwraps with material it
could not authenticate (LOCK-33).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from keyflows.reference.problems import Problem
from keyflows.reference.upstream import Answer, UpstreamClient, UpstreamError
from keyflows.spec import edv

logger = logging.getLogger("keyflows.reference.edv_client")


def unavailable(why: str) -> Problem:
    logger.warning("encrypted data vault unavailable: %s", why)
    return Problem("vault-unavailable", "the encrypted data vault cannot answer now",
                   requirement="LOCK-33")


def bad_answer(why: str) -> Problem:
    logger.error("encrypted data vault answered wrongly: %s", why)
    return Problem("vault-bad-answer", "the encrypted data vault answered wrongly",
                   requirement="LOCK-33")


class VaultClients:
    """Clients of the trusted vault servers, by base URL, made in the serving loop."""

    def __init__(self, servers: tuple[str, ...], *, timeout: float) -> None:
        self.servers = servers
        self.timeout = timeout
        self._clients: dict[str, UpstreamClient] = {}

    def client(self, base: str) -> UpstreamClient:
        if base not in self._clients:
            self._clients[base] = UpstreamClient(base, timeout=self.timeout)
        return self._clients[base]

    def close_idle(self) -> None:
        """Close every idle connection (at shutdown; no request is in flight)."""
        clients, self._clients = self._clients, {}
        for client in clients.values():
            for connection in client._idle:
                connection.close()

    async def call(self, base: str, method: str, path: str, token: str,
                   body: Any = None) -> Answer:
        payload = b"" if body is None else json.dumps(body, separators=(",", ":")).encode()
        client = self.client(base)
        head = (f"{method} {client.base_path}{path} HTTP/1.1\r\n").encode("ascii") \
            + client._host_line + f"Authorization: Bearer {token}\r\n".encode("ascii")
        if body is not None:
            head += (b"Content-Type: application/json\r\nContent-Length: "
                     + str(len(payload)).encode("ascii") + b"\r\n")
        elif method in ("POST", "PUT"):
            head += b"Content-Length: 0\r\n"
        try:
            return await client.send(head + b"\r\n" + payload)
        except UpstreamError as exc:
            raise unavailable(str(exc)) from None

    # --- the vault operations the key server uses -----------------------------------------

    async def check_access(self, base: str, vault_id: str, token: str) -> bool:
        """LOCK-35: the token opens the vault (GET /edvs/{id} answers 200)."""
        answer = await self.call(base, "GET", f"/edvs/{vault_id}", token)
        if answer.status >= 500:
            raise unavailable(f"status {answer.status}")
        return answer.status == 200

    async def store(self, base: str, vault_id: str, token: str,
                    doc: edv.EncryptedDocument) -> None:
        answer = await self.call(base, "POST", f"/edvs/{vault_id}/documents", token,
                                 doc.to_json())
        if answer.status != 201:
            raise bad_answer(f"storing a document: status {answer.status}")

    async def find(self, base: str, vault_id: str, token: str, query: edv.Query
                   ) -> list[object]:
        """The documents a query returns (full documents), unparsed."""
        answer = await self.call(base, "POST", f"/edvs/{vault_id}/query", token,
                                 query.to_json())
        if answer.status != 200:
            raise bad_answer(f"a query: status {answer.status}")
        try:
            found = json.loads(answer.body)
        except ValueError:
            raise bad_answer("a query answer that is not JSON") from None
        if not isinstance(found, list):
            raise bad_answer("a query answer that is not a list")
        return found

    async def delete(self, base: str, vault_id: str, token: str, doc_id: str) -> None:
        answer = await self.call(base, "DELETE", f"/edvs/{vault_id}/documents/{doc_id}", token)
        if answer.status not in (200, 204, 404):
            raise bad_answer(f"deleting a document: status {answer.status}")
