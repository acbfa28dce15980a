"""Bearer authentication against the account server (API-3, API-4).

For each authenticated request the key server asks `POST {account_server}/v1/validate`
whether (user_id from the path, access_token) is valid, with no caching, so an expired
or revoked token stops working at once. Every refusal is the same 401 (API-4); an account
server that cannot give a clear answer is a 503, never an accidental grant.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import httpx
from starlette.requests import Request

from keyflows.reference.problems import Problem, Unauthorized
from keyflows.spec import contract
from keyflows.spec.errors import SpecError

T = TypeVar("T")

SessionCheck = Callable[[Request, str, str], Awaitable[bool | None]]
"""(request, user_id, credential) -> True: a valid session token for the addressed
resource; False: a session token, refused; None: not a session token (ask the account
server). The session-challenge flow provides it (SC-13)."""


class AccountServerUnavailable(Problem):
    def __init__(self, detail: str) -> None:
        super().__init__("account-server-unavailable", detail, requirement="API-3")


def bearer_token(request: Request) -> str:
    """The token of the single `Authorization: Bearer <token>` header, else 401 (API-14)."""
    try:
        return contract.bearer_credential(request.headers.getlist("authorization"))
    except SpecError:
        raise Unauthorized() from None


class AccountClient:
    """Asks the account server about (user_id, access_token) pairs."""

    def __init__(self, base_url: str, *, timeout: float,
                 session_check: SessionCheck | None = None) -> None:
        self.validate_url = base_url.rstrip("/") + "/v1/validate"
        self.secret_url = base_url.rstrip("/") + "/v1/secret"
        self.session_check = session_check
        # trust_env=False: a proxy from the environment must not sit between the key
        # server and the authority it trusts.
        self._client = httpx.AsyncClient(timeout=timeout, follow_redirects=False,
                                         trust_env=False)

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _ask(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """One call to the account server; any transport failure is unavailability."""
        try:
            return await self._client.request(method, url, **kwargs)
        except httpx.HTTPError as exc:
            raise AccountServerUnavailable(
                f"the account server could not be reached ({type(exc).__name__})") from None

    @staticmethod
    def _member(response: httpx.Response, name: str, kind: type[T]) -> T:
        """Member `name` of a 200 JSON object answer, of type `kind`; else unavailability."""
        if response.status_code != 200:
            raise AccountServerUnavailable(
                f"the account server answered status {response.status_code}")
        try:
            answer = response.json()
        except ValueError:
            raise AccountServerUnavailable("the account server answer is not JSON") from None
        value = answer.get(name) if isinstance(answer, dict) else None
        if not isinstance(value, kind):
            raise AccountServerUnavailable(
                f"the account server answer has no {kind.__name__} {name!r}")
        return value

    async def is_valid(self, user_id: str, access_token: str) -> bool:
        """True or False as the account server says; AccountServerUnavailable otherwise."""
        response = await self._ask("POST", self.validate_url,
                                   json={"user_id": user_id, "access_token": access_token})
        return self._member(response, "valid", bool)

    async def get_share(self, user_id: str) -> str | None:
        """The account server's secret share of a user, `GET /v1/secret?sub=<user_id>` ->
        {"secret": base64url} (lock-layering, LOCK-10); None if it has none (404).
        The text is returned unchecked: every defect of a share is the caller's one
        share failure (LOCK-6)."""
        response = await self._ask("GET", self.secret_url, params={"sub": user_id})
        if response.status_code == 404:
            return None
        return self._member(response, "secret", str)

    async def authenticate(self, request: Request, user_id: str) -> None:
        """Let the request through only if its bearer token is valid for `user_id`:
        a session token of the session-challenge flow (SC-13), else an access token
        the account server validates (API-3)."""
        token = bearer_token(request)
        if self.session_check is not None:
            verdict = await self.session_check(request, user_id, token)
            if verdict is not None:
                if verdict:
                    return
                raise Unauthorized()
        if not await self.is_valid(user_id, token):
            raise Unauthorized()
