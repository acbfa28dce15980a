"""Bearer authentication against the account server (API-3, API-4).

For each authenticated request the key server asks `POST {account_server}/v1/validate`
whether (user_id from the path, access_token) is valid, with no caching, so an expired
or revoked token stops working at once. Every refusal is the same 401 (API-4); an account
server that cannot give a clear answer is a 503, never an accidental grant.
"""

from __future__ import annotations

import re

import httpx
from keyflows.reference.problems import Problem, Unauthorized
from starlette.requests import Request

# RFC 6750 section 2.1: b64token.
_BEARER = re.compile(r"\A[Bb][Ee][Aa][Rr][Ee][Rr] +([A-Za-z0-9\-._~+/]+=*)\Z")
_MAX_TOKEN_LEN = 4096


class AccountServerUnavailable(Problem):
    def __init__(self, detail: str) -> None:
        super().__init__("account-server-unavailable", detail, requirement="API-3")


def bearer_token(request: Request) -> str:
    """The token of the single `Authorization: Bearer <token>` header, else 401."""
    values = request.headers.getlist("authorization")
    if len(values) != 1:
        raise Unauthorized()
    match = _BEARER.match(values[0].strip())
    if match is None or len(match.group(1)) > _MAX_TOKEN_LEN:
        raise Unauthorized()
    return match.group(1)


class AccountClient:
    """Asks the account server about (user_id, access_token) pairs."""

    def __init__(self, base_url: str, *, timeout: float) -> None:
        self.validate_url = base_url.rstrip("/") + "/v1/validate"
        # trust_env=False: a proxy from the environment must not sit between the key
        # server and the authority it trusts.
        self._client = httpx.AsyncClient(timeout=timeout, follow_redirects=False,
                                         trust_env=False)

    async def aclose(self) -> None:
        await self._client.aclose()

    async def is_valid(self, user_id: str, access_token: str) -> bool:
        """True or False as the account server says; AccountServerUnavailable otherwise."""
        try:
            response = await self._client.post(
                self.validate_url, json={"user_id": user_id, "access_token": access_token})
        except httpx.HTTPError as exc:
            raise AccountServerUnavailable(
                f"the account server could not be reached ({type(exc).__name__})") from None
        if response.status_code != 200:
            raise AccountServerUnavailable(
                f"the account server answered status {response.status_code}")
        try:
            answer = response.json()
        except ValueError:
            raise AccountServerUnavailable("the account server answer is not JSON") from None
        valid = answer.get("valid") if isinstance(answer, dict) else None
        if not isinstance(valid, bool):
            raise AccountServerUnavailable("the account server answer has no boolean 'valid'")
        return valid

    async def authenticate(self, request: Request, user_id: str) -> None:
        """Let the request through only if its bearer token is valid for `user_id`."""
        token = bearer_token(request)
        if not await self.is_valid(user_id, token):
            raise Unauthorized()
