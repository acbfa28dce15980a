"""Deliberately broken session-challenge servers: the conformance runner must catch each.

Each variant is the real reference server with one fault, injected where a real bug would
sit: in the step-8 seam of the challenge store (`judge`), in the session hook of the
bearer authentication, in the spec function the server seals with, or as ASGI middleware
when the fault is only visible on the wire. The runner runs in another process, so
patching spec functions here changes the server only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import Any

import pytest
from broken_servers import ASGIApp, path_of, rewriting

from keyflows.spec import primitives
from keyflows.spec import session_challenge as sc

SHORT_LIFETIME = 2
"""The challenge lifetime the tests give the server, so the runner waits out expiry."""
SHORT_SESSION_LIFETIME = 6
"""The session lifetime the tests give the server, so the runner waits out its expiry."""


@dataclass(frozen=True)
class BrokenVariant:
    name: str
    fault: str
    must_fail: tuple[str, ...]
    patch: Any = None
    wrapper: Any = None


def _patch_judge(monkeypatch: pytest.MonkeyPatch, judge: Any) -> None:
    from keyflows.reference import session_challenge_store

    monkeypatch.setattr(session_challenge_store, "judge", judge)


def accepts_replay(monkeypatch: pytest.MonkeyPatch) -> None:
    """Checks the token but forgets that the challenge was already answered."""

    def judge(challenge: sc.ServerChallenge, token: bytes, now: int) -> sc.AnswerResult:
        if challenge.state is sc.ChallengeState.ANSWERED and \
                primitives.constant_time_equal(token, challenge.token):
            return sc.AnswerResult(challenge, None)
        return sc.answer_challenge(challenge, token, now=now)

    _patch_judge(monkeypatch, judge)


def accepts_wrong_token(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any token answers an issued, unexpired challenge (the comparison is missing)."""

    def judge(challenge: sc.ServerChallenge, token: bytes, now: int) -> sc.AnswerResult:
        return sc.answer_challenge(challenge, challenge.token, now=now)

    _patch_judge(monkeypatch, judge)


def never_expires(monkeypatch: pytest.MonkeyPatch) -> None:
    """Judges every answer as if it arrived when the challenge was issued."""

    def judge(challenge: sc.ServerChallenge, token: bytes, now: int) -> sc.AnswerResult:
        return sc.answer_challenge(challenge, token, now=challenge.issued_at)

    _patch_judge(monkeypatch, judge)


def session_for_any_resource(monkeypatch: pytest.MonkeyPatch) -> None:
    """A live session token opens every user's and application's records."""
    from keyflows.reference import session_challenge

    original = session_challenge.session_credential

    async def session_credential(request: Any, user_id: str, credential: str,
                                 operation: sc.Operation) -> bool | None:
        verdict = await original(request, user_id, credential, operation)
        return True if verdict is False else verdict

    monkeypatch.setattr(session_challenge, "session_credential", session_credential)


def session_never_expires(monkeypatch: pytest.MonkeyPatch) -> None:
    """Session expiry is not checked (SC-13): every use is judged as if it came at once."""
    original = sc.check_session

    def check_session(session: sc.Session, *, user_id: str, client_id: str,
                      operation: sc.Operation, now: int) -> None:
        original(session, user_id=user_id, client_id=client_id, operation=operation,
                 now=session.expires_at - 1)

    monkeypatch.setattr(sc, "check_session", check_session)


def session_passed_on(monkeypatch: pytest.MonkeyPatch) -> None:
    """A session token the hook refuses is passed on to the account server (which says
    invalid: the answer is still 401, but the account server saw the token, SC-13)."""
    from keyflows.reference import session_challenge

    original = session_challenge.session_credential

    async def session_credential(request: Any, user_id: str, credential: str,
                                 operation: sc.Operation) -> bool | None:
        verdict = await original(request, user_id, credential, operation)
        return None if verdict is False else verdict

    monkeypatch.setattr(session_challenge, "session_credential", session_credential)


def session_allows_writes(monkeypatch: pytest.MonkeyPatch) -> None:
    """The session hook ignores what the request does: a session token PUTs and DELETEs
    (a reset made with a session token, SC-15)."""
    from keyflows.reference import session_challenge

    original = session_challenge.session_credential

    async def session_credential(request: Any, user_id: str, credential: str,
                                 operation: sc.Operation) -> bool | None:
        return await original(request, user_id, credential, sc.Operation.GET_KEYPAIR)

    monkeypatch.setattr(session_challenge, "session_credential", session_credential)


def session_survives_rotation(monkeypatch: pytest.MonkeyPatch) -> None:
    """Sessions are not bound to the key_version that won them (SC-16)."""
    from keyflows.reference import keypair_publication

    monkeypatch.setattr(keypair_publication, "check_session_record",
                        lambda request, live_key_version: None)


def origin_from_host(monkeypatch: pytest.MonkeyPatch) -> None:
    """The challenge names the origin of the request's Host header (SC-17)."""
    from keyflows.reference import session_challenge

    monkeypatch.setattr(session_challenge, "effective_origin", _origin_of_current_request)
    original = session_challenge.create_challenge

    async def create_challenge(request: Any) -> Any:
        _REQUEST_HOST.append(request.headers.get("host", ""))
        try:
            return await original(request)
        finally:
            _REQUEST_HOST.pop()

    monkeypatch.setattr(session_challenge, "create_challenge", create_challenge)


_REQUEST_HOST: list[str] = []


def _origin_of_current_request(settings: Any) -> str:
    from keyflows.reference.config import effective_origin

    if _REQUEST_HOST:
        return sc.origin_of_url(f"http://{_REQUEST_HOST[-1]}")
    return effective_origin(settings)


def info_without_expiry(monkeypatch: pytest.MonkeyPatch) -> None:
    """Seals the token under an info that leaves out expires_at (SC-4): honest clients
    cannot open it."""
    original = sc.challenge_info

    def challenge_info(binding: sc.Binding) -> bytes:
        return original(replace(binding, expires_at=0))

    monkeypatch.setattr(sc, "challenge_info", challenge_info)


def user_existence_oracle(app: ASGIApp) -> ASGIApp:
    """The 404 for a challenge says whether the user has keys for other applications."""

    async def rewrite(scope: Any, request_body: bytes, status: int,
                      headers: list[tuple[bytes, bytes]], body: bytes
                      ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        parts = path_of(scope)
        if status == 404 and len(parts) == 6 and parts[5] == "session-challenges":
            # The application list is the owner's (KP-23): the server asks its store.
            known = bool(scope["app"].state.services.store.list_apps(parts[2]))
            problem = json.loads(body)
            problem["detail"] = ("this user has no keypair for this application" if known
                                 else "unknown user")
            body = json.dumps(problem, separators=(",", ":")).encode()
        return status, headers, body

    return rewriting(rewrite)(app)


def session_valid_at_expiry(monkeypatch: pytest.MonkeyPatch) -> None:
    """A session is still accepted in the second expires_at (now > expires_at instead of
    now >= expires_at, SC-13): one second too long."""
    original = sc.check_session

    def check_session(session: sc.Session, *, user_id: str, client_id: str,
                      operation: sc.Operation, now: int) -> None:
        original(session, user_id=user_id, client_id=client_id, operation=operation,
                 now=now - 1 if now == session.expires_at else now)

    monkeypatch.setattr(sc, "check_session", check_session)


VARIANTS = (
    BrokenVariant("accepts-replay", "accepts the right token again after a success",
                  ("session-challenge/answer/replay-refused",
                   "session-challenge/answer/uniform-refusal"),
                  patch=accepts_replay),
    BrokenVariant("accepts-wrong-token", "accepts any token for an issued challenge",
                  ("session-challenge/answer/wrong-token-burns",
                   "session-challenge/answer/other-challenge-token",
                   "session-challenge/answer/uniform-refusal"),
                  patch=accepts_wrong_token),
    BrokenVariant("never-expires", "answers are judged as if they came at once",
                  ("session-challenge/answer/expiry",),
                  patch=never_expires),
    BrokenVariant("session-for-any-resource", "a session token opens every record",
                  ("session-challenge/session/other-user-refused",
                   "session-challenge/session/other-application-refused"),
                  patch=session_for_any_resource),
    BrokenVariant("session-never-expires", "sessions are judged as if used at once",
                  ("session-challenge/session/expiry",),
                  patch=session_never_expires),
    BrokenVariant("session-valid-at-expiry", "a session is accepted in its expires_at second",
                  ("session-challenge/session/expiry",),
                  patch=session_valid_at_expiry),
    BrokenVariant("session-passed-on", "a refused session token goes on to the account "
                  "server", ("session-challenge/session/write-refused",
                             "session-challenge/session/other-user-refused"),
                  patch=session_passed_on),
    BrokenVariant("session-allows-writes", "a session token PUTs and DELETEs the record",
                  ("session-challenge/session/write-refused",),
                  patch=session_allows_writes),
    BrokenVariant("session-survives-rotation", "a session outlives its key_version",
                  ("session-challenge/session/ends-on-rotation",
                   "session-challenge/session/ends-on-reset-and-deletion"),
                  patch=session_survives_rotation),
    BrokenVariant("origin-from-host", "the challenge names the Host header's origin",
                  ("session-challenge/create/origin",),
                  patch=origin_from_host),
    BrokenVariant("info-without-expiry", "seals the token with an info lacking expires_at",
                  ("session-challenge/flow/full", "session-challenge/answer/replay-refused",
                   "session-challenge/session/own-record"),
                  patch=info_without_expiry),
    BrokenVariant("user-existence-oracle",
                  "the challenge 404 tells unknown users from users with other keys",
                  ("session-challenge/create/uniform-refusal",),
                  wrapper=user_existence_oracle),
)
