"""Routes of the session-challenge flow (SC-1 .. SC-14).

  POST /v1/users/{user_id}/apps/{client_id}/session-challenges
        anyone: a challenge sealed to the published X25519 key (201), 404 when there is
        no published keypair (one body for every reason, SC-1), 429 past the attempt
        limit (SC-2)
  POST /v1/users/{user_id}/apps/{client_id}/session-challenges/{challenge_id}/answer
        anyone: {"token"} -> a session token (200); 400 for a malformed body; the
        uniform 401 for every other refusal (SC-11)

A session token is then a bearer credential for one operation, reading that user's
record for that application (SC-13, SC-15), while the record keeps the key_version that
won it (SC-16): `session_credential` is the hook the bearer authentication asks before
it asks the account server, and `check_session_record` the check the reading route makes
against the record it serves.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from keyflows.reference.common import (
    in_thread,
    json_body,
    json_text_response,
    limited_body,
    method_route,
    not_found,
    path_identifiers,
    quick_read,
    services,
    spec_checked,
)
from keyflows.reference.config import Settings, database_of, effective_origin
from keyflows.reference.limits import rate_limit, requester
from keyflows.reference.problems import Problem, Unauthorized, malformed
from keyflows.reference.session_challenge_store import (
    AttemptLimitReached,
    ChallengeStore,
    NewChallenge,
)
from keyflows.reference.store import canonical_json
from keyflows.spec import session_challenge as sc
from keyflows.spec.drbg import unrecorded
from keyflows.spec.encoding import b64url_decode, b64url_decode_exact
from keyflows.spec.errors import SpecError

FLOW = sc.FLOW_ID
CAPABILITIES_MEMBER = "session_challenge"
CHALLENGES_PATH = "/v1/users/{user_id}/apps/{client_id}/session-challenges"
ANSWER_PATH = CHALLENGES_PATH + "/{challenge_id}/answer"
NO_KEYPAIR_DETAIL = "no keypair is published for this user and application"
NO_STORE = {"Cache-Control": "no-store"}

#: Nobody records the server's random bytes: ML-KEM's encapsulation of the hybrid suite
#: (SC-50) may then draw its randomness inside the library.
RANDOM = unrecorded(os.urandom)


def limits(settings: Settings) -> sc.Limits:
    return sc.check_limits(sc.Limits(challenge_lifetime=settings.challenge_lifetime,
                                     max_attempts=settings.challenge_max_attempts,
                                     session_lifetime=settings.session_lifetime))


def capabilities(settings: Settings) -> dict[str, int]:
    """Step 11 (SC-14): this flow's member of the capabilities document."""
    return sc.limits_to_wire(limits(settings))


def open_store(settings: Settings) -> ChallengeStore:
    return ChallengeStore.open_challenges(database_of(settings))


def attach(app: Starlette, store: ChallengeStore) -> None:
    app.state.session_challenges = store


def challenge_store(request: Request) -> ChallengeStore:
    store = request.app.state.session_challenges
    assert isinstance(store, ChallengeStore)
    return store


def now() -> int:
    return int(time.time())


# --- steps 1 to 5 ------------------------------------------------------------------------------

def check_empty_body(request: Request, body: bytes) -> None:
    """The request carries nothing: no body, or the empty JSON object."""
    if body and json_body(request, body) != {}:
        raise malformed("a challenge request has no body, or the empty JSON object {}")


def _mlkem768(record: dict[str, Any]) -> bytes | None:
    """The record's ML-KEM-768 key, if it has one: the challenge then uses the hybrid
    suite (SC-50)."""
    key = record["public_keys"].get("mlkem768")
    return None if key is None else b64url_decode(key)


async def create_challenge(request: Request) -> Response:
    user_id, client_id = path_identifiers(request, "user_id", "client_id")
    who = requester(request)
    await rate_limit(request, ("challenge-create", who))
    body = await limited_body(request)
    check_empty_body(request, body)
    text = await in_thread(lambda: services(request).store.get_keypair(user_id, client_id))
    if text is None:
        # Step 2 (SC-1): one refusal, whatever the reason there is no key.
        raise not_found(NO_KEYPAIR_DETAIL, requirement="SC-1")
    record: dict[str, Any] = json.loads(text)
    settings = services(request).settings
    # SC-17: the configured origin, never the request's Host or X-Forwarded-Host.
    new = NewChallenge(origin=effective_origin(settings), user_id=user_id, client_id=client_id,
                       key_version=int(record["key_version"]),
                       recipient_public=b64url_decode(record["public_keys"]["x25519"]),
                       recipient_mlkem768=_mlkem768(record), requester=who)
    store = challenge_store(request)
    try:
        issued = await in_thread(lambda: store.issue(new, now=now(), limits=limits(settings),
                                                     random=RANDOM))
    except AttemptLimitReached as exc:
        raise Problem("too-many-requests",
                      f"at most {settings.challenge_max_attempts} challenges per user and "
                      f"requester within "
                      f"{settings.challenge_lifetime} s", requirement="SC-2",
                      headers={"Retry-After": str(exc.retry_after)}) from None
    return json_text_response(canonical_json(issued.wire), 201, headers=NO_STORE)


# --- steps 7 to 9 -------------------------------------------------------------------------------

def decode_challenge_id(text: str) -> bytes | None:
    try:
        return b64url_decode_exact(text, sc.CHALLENGE_ID_LEN, field="challenge_id")
    except SpecError:
        return None


async def answer_challenge(request: Request) -> Response:
    user_id, client_id, challenge_text = path_identifiers(request, "user_id", "client_id",
                                                          "challenge_id")
    body = await limited_body(request)
    obj = json_body(request, body)
    token = spec_checked(lambda: sc.parse_answer(obj))
    challenge_id = decode_challenge_id(challenge_text)
    if challenge_id is None:  # no challenge can have this id: as unknown (SC-11)
        raise Unauthorized()
    settings = services(request).settings
    store = challenge_store(request)
    origin = effective_origin(settings)
    issued = await in_thread(lambda: store.answer(
        challenge_id, origin=origin, user_id=user_id, client_id=client_id, token=token,
        now=now(),
        session_lifetime=settings.session_lifetime, random=os.urandom))
    if issued is None:
        raise Unauthorized()
    return json_text_response(canonical_json(issued.wire), 200, headers=NO_STORE)


# --- step 10: the bearer hook ------------------------------------------------------------------

SESSION_STATE = "keyflows_session"
"""The request.state attribute where the hook leaves the session it accepted."""


async def session_credential(request: Request, user_id: str, credential: str,
                             operation: sc.Operation) -> bool | None:
    """True: a live session of this user and application, for an operation a session
    allows; False: a session, but expired, for another resource or for an operation it
    does not allow (refuse, SC-13, SC-15); None: no session has this token (it may be an
    account-server access token)."""
    raw = sc.session_token_from_bearer(credential)
    if raw is None:
        return None
    store = challenge_store(request)
    session = await quick_read(request, lambda: store.find_session(sc.session_token_digest(raw)))
    if session is None:
        return None
    client_id = request.path_params.get("client_id")
    try:
        sc.check_session(session, user_id=user_id,
                         client_id=client_id if isinstance(client_id, str) else "",
                         operation=operation, now=now())
    except SpecError:
        return False
    setattr(request.state, SESSION_STATE, session)
    return True


def check_session_record(request: Request, live_key_version: int | None) -> None:
    """SC-16, at the point of use: when the request came with a session token, the
    record it reads must still have the key_version the session was won with (None: no
    live record). A request with an access token passes."""
    session = getattr(request.state, SESSION_STATE, None)
    if session is None:
        return
    try:
        sc.check_session_key_version(session, live_key_version)
    except SpecError:
        raise Unauthorized() from None


def routes() -> list[BaseRoute]:
    return [
        method_route(CHALLENGES_PATH, {"POST": create_challenge}, name="session_challenges"),
        method_route(ANSWER_PATH, {"POST": answer_challenge}, name="session_challenge_answer"),
    ]
