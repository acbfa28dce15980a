"""Bearer authentication against the account server (API-3, API-4).

For each authenticated request the key server asks `POST {account_server}/v1/validate`
whether (user_id from the path, access_token) is valid, with no caching, so an expired
or revoked token stops working at once. Every refusal is the same 401 (API-4); an account
server that cannot give a clear answer is a 503, never an accidental grant: unreachable,
slow, a status other than 200, an answer that is not strict JSON (a duplicate member, NaN,
not UTF-8), over 64 KiB, or whose "valid" is not exactly true or false.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from urllib.parse import urlencode

from starlette.requests import Request

from keyflows.reference.problems import Problem, Unauthorized
from keyflows.reference.upstream import Answer, UpstreamClient, UpstreamError
from keyflows.spec import contract
from keyflows.spec.errors import SpecError
from keyflows.spec.session_challenge import Operation

T = TypeVar("T")

SessionCheck = Callable[[Request, str, str, Operation], Awaitable[bool | None]]
"""(request, user_id, credential, operation) -> True: a valid session token for the
addressed resource and operation; False: a session token, refused; None: not a session
token (ask the account server). The session-challenge flow provides it (SC-13, SC-15)."""


class AccountServerUnavailable(Problem):
    def __init__(self, detail: str) -> None:
        super().__init__("account-server-unavailable", detail, requirement="API-3")


def bearer_token(request: Request) -> str:
    """The token of the single `Authorization: Bearer <token>` header, else 401 (API-14)."""
    try:
        return contract.bearer_credential(request.headers.getlist("authorization"))
    except SpecError:
        raise Unauthorized() from None


def strict_json_object(body: bytes) -> dict[str, Any]:
    """The answer as a JSON object: UTF-8, no duplicate member (two readers could see two
    different answers: a duplicate "valid" once granted access), no NaN; else 503."""
    try:
        answer = json.loads(body.decode("utf-8"), object_pairs_hook=_unique_members,
                            parse_constant=_no_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise AccountServerUnavailable(
            f"the account server answer is not strict JSON ({str(exc)[:80]})") from None
    if not isinstance(answer, dict):
        raise AccountServerUnavailable("the account server answer is not a JSON object")
    return answer


def _unique_members(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    members: dict[str, Any] = {}
    for key, value in pairs:
        if key in members:
            raise ValueError(f"duplicate member {key!r}")
        members[key] = value
    return members


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


class AccountClient:
    """Asks the account server about (user_id, access_token) pairs. No answer is cached:
    a revoked token stops working on the next request."""

    def __init__(self, base_url: str, *, timeout: float,
                 session_check: SessionCheck | None = None) -> None:
        self.session_check = session_check
        # A direct connection: no proxy from the environment sits between the key server
        # and the authority it trusts.
        self._upstream = UpstreamClient(base_url, timeout=timeout)

    async def aclose(self) -> None:
        await self._upstream.aclose()

    @staticmethod
    def _member(answer: Answer, name: str, kind: type[T]) -> T:
        """Member `name` of a 200 JSON object answer, of exactly type `kind`; else 503."""
        if answer.status != 200:
            raise AccountServerUnavailable(
                f"the account server answered status {answer.status}")
        value = strict_json_object(answer.body).get(name)
        if type(value) is not kind:  # exactly: 1 is no true, and True no 1
            raise AccountServerUnavailable(
                f"the account server answer has no {kind.__name__} {name!r}")
        return value

    async def _call(self, call: Awaitable[Answer]) -> Answer:
        try:
            return await call
        except UpstreamError as exc:
            raise AccountServerUnavailable(
                f"the account server could not be reached ({exc})") from None

    async def is_valid(self, user_id: str, access_token: str) -> bool:
        """True or False as the account server says; AccountServerUnavailable otherwise."""
        body = json.dumps({"user_id": user_id, "access_token": access_token},
                          separators=(",", ":")).encode("utf-8")
        answer = await self._call(self._upstream.post_json("/v1/validate", body))
        return self._member(answer, "valid", bool)

    async def get_share(self, user_id: str) -> str | None:
        """The account server's secret share of a user, `GET /v1/secret?sub=<user_id>` ->
        {"secret": base64url} (lock-layering, LOCK-10); None if it has none (404).
        The text is returned unchecked: every defect of a share is the caller's one
        share failure (LOCK-6)."""
        answer = await self._call(self._upstream.get("/v1/secret?" + urlencode({"sub": user_id})))
        if answer.status == 404:
            return None
        return self._member(answer, "secret", str)

    async def authenticate(self, request: Request, user_id: str,
                           operation: Operation = Operation.OTHER) -> None:
        """Let the request through only if its bearer token is valid for `user_id`:
        a session token of the session-challenge flow for an operation it allows (SC-13,
        SC-15), else an access token the account server validates (API-3). `operation`
        names what the request does; OTHER (the default) is never allowed to a session."""
        token = bearer_token(request)
        if self.session_check is not None:
            verdict = await self.session_check(request, user_id, token, operation)
            if verdict is not None:
                if verdict:
                    return
                raise Unauthorized()
        if not await self.is_valid(user_id, token):
            raise Unauthorized()
