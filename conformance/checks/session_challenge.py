"""session-challenge checks: the full flow, single use, burning, expiry, the attempt limit,
uniform refusals (no oracle on users, challenges or reasons), the origin a challenge is
for, and what a session token allows (reading the own record) and for how long (until it
expires or the record's key changes).

The runner plays the client: it publishes a keypair it sealed itself (so it holds the
X25519 private key), asks for challenges without credentials, opens them with the spec's
client side (keyflows.spec.session_challenge.open_challenge) for the origin of its base
URL, and answers.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from keyflows.conformance.checks.support import (
    ATTEMPT_LIMIT_TRIES,
    bucket_refill_wait,
    expect_absent,
    expect_stored,
    expect_unauthorized,
    over_the_attempt_limit,
)
from keyflows.conformance.clients import Sealed, seal_with_application_key, to_json
from keyflows.conformance.http import Exchange
from keyflows.conformance.probe import JSON_HEADERS, CheckSkipped, Probe, User, describe
from keyflows.conformance.registry import check
from keyflows.spec import session_challenge as sc
from keyflows.spec.encoding import b64url_encode
from keyflows.spec.errors import SpecError

FLOW = sc.FLOW_ID
NEEDS = ("keypair-publication", FLOW)
CLIENT = "sc-app"
OTHER_CLIENT = "sc-other-app"
CAPABILITIES_MEMBER = "session_challenge"
MAX_WAITED_LIFETIME = 3
"""The longest challenge lifetime the runner waits out to check expiry (seconds)."""
MAX_WAITED_SESSION_LIFETIME = 6
"""The longest session lifetime the runner waits out to check session expiry (seconds)."""
MAX_ATTEMPTS_TRIED = 20
"""The runner checks the attempt limit only when it is at most this many challenges."""
RELAY_HOST = "relay.invalid"
"""The Host a relaying server would send; the challenge must not name it (SC-17)."""


def challenges_path(user_id: str, client_id: str) -> str:
    return f"/v1/users/{user_id}/apps/{client_id}/session-challenges"


def answer_path(user_id: str, client_id: str, challenge_id: str) -> str:
    return f"{challenges_path(user_id, client_id)}/{challenge_id}/answer"


@dataclass(frozen=True)
class Owner:
    user: User
    client_id: str
    sealed: Sealed

    @property
    def user_id(self) -> str:
        return self.user.user_id

    @property
    def key_version(self) -> int:
        version = self.sealed.record["key_version"]
        assert isinstance(version, int)
        return version


def expected_origin(t: Probe) -> str:
    """SC-18: the origin the runner sends its requests to."""
    return sc.origin_of_url(t.session.base_url)


def limits(t: Probe) -> sc.Limits:
    """The advertised lifetimes and attempt limit (SC-14); a bad member fails the check."""
    caps = t.session.capabilities or {}
    try:
        return sc.parse_limits(caps.get(CAPABILITIES_MEMBER))
    except SpecError as exc:
        t.fail(f"capabilities member {CAPABILITIES_MEMBER!r}: {exc}",
               expected=f"{CAPABILITIES_MEMBER}: challenge_lifetime_seconds 1..300, "
                        "max_attempts 1..1000, session_lifetime_seconds 1..86400",
               actual=repr(caps.get(CAPABILITIES_MEMBER)))


def owner(t: Probe, label: str, client_id: str = CLIENT, key_version: int = 1) -> Owner:
    user = t.user(label)
    return Owner(user=user, client_id=client_id,
                 sealed=t.publish(user, client_id, key_version))


CHALLENGES_AT_ONCE = 8
"""Room in the challenge-create bucket a check waits for when it finds it empty."""


def past_the_bucket(t: Probe, send: Callable[[], Exchange]) -> Exchange:
    """The answer to a challenge request. A 429 with Retry-After, when the server
    advertises a challenge-create rate (API-52), may come from that per-requester bucket,
    which other checks of the run can have emptied (session-challenge/limits/challenge-rate
    does), and a rate limit may answer before any other check (API-18): the check waits for
    room for a few challenges and asks once more, then judges that answer. (The attempt
    limit, the route's other 429, is checked with fresh users by over_the_attempt_limit.)"""
    exchange = send()
    wait = bucket_refill_wait(t, exchange, "challenge-create", CHALLENGES_AT_ONCE)
    if wait is None:
        return exchange
    time.sleep(wait)
    return send()


def create(t: Probe, user_id: str, client_id: str) -> Exchange:
    """POST .../session-challenges without credentials and without a body."""
    return past_the_bucket(t, lambda: t.request("POST", challenges_path(user_id, client_id)))


def new_challenge(t: Probe, who: Owner) -> dict[str, Any]:
    exchange = create(t, who.user_id, who.client_id)
    body = t.expect_ok_json(exchange, 201, what="POST session-challenges for a published key")
    if not isinstance(body, dict):
        t.fail("the challenge is not a JSON object", expected="a challenge object",
               actual=describe(exchange), exchange=exchange)
    return body


def open_token(t: Probe, who: Owner, challenge: dict[str, Any], exchange: Exchange | None = None
               ) -> bytes:
    """Step 6 as an honest client: check and open; any rejection fails the check."""
    try:
        opened = sc.open_challenge(challenge, origin=expected_origin(t), user_id=who.user_id,
                                   client_id=who.client_id,
                                   key_version=who.key_version,
                                   x25519_private=who.sealed.private.x25519)
    except SpecError as exc:
        t.fail(f"the owner cannot open the challenge: {exc} (failure class "
               f"{exc.failure_class})",
               expected=f"a challenge for origin {expected_origin(t)}, this user, "
                        "application and key version, sealed with HPKE to the published "
                        "X25519 key (SC-4, SC-17)",
               actual=str(exc), exchange=exchange or (t.exchanges[-1] if t.exchanges else None))
    return opened.token


def answer(t: Probe, who: Owner, challenge_id: str, token: bytes | Any) -> Exchange:
    body = sc.answer_to_wire(token) if isinstance(token, bytes) else token
    return t.request("POST", answer_path(who.user_id, who.client_id, challenge_id),
                     headers=JSON_HEADERS, body=to_json(body))


def expect_session(t: Probe, who: Owner, exchange: Exchange, *, what: str) -> bytes:
    body = t.expect_ok_json(exchange, 200, what=what)
    try:
        token, session = sc.parse_session(body)
        sc.check_session_answer(session, user_id=who.user_id, client_id=who.client_id,
                                key_version=who.key_version)
    except SpecError as exc:
        t.fail(f"{what}: the session body is not the one of the answered challenge: {exc} "
               f"({exc.requirement})",
               expected="{session_token, token_type: Bearer, scope: keypair:read, "
                        f"user_id: {who.user_id}, client_id: {who.client_id}, "
                        f"key_version: {who.key_version}, expires_at}}",
               actual=describe(exchange), exchange=exchange)
    return token


def expect_not_passed_on(t: Probe, session: str, *, what: str) -> None:
    """SC-13: a session token is judged by the key server itself, never sent to the
    account server, even when it is refused."""
    sent = [call for call in t.session.accounts.calls() if call.access_token == session]
    if sent:
        t.fail(f"{what}: the key server asked the account server about a session token "
               f"({len(sent)} validate call(s)); a credential naming a stored session is "
               "judged as a session (SC-13)", expected="no validate call with the session "
               "token", actual=f"{len(sent)} call(s)",
               exchange=t.exchanges[-1] if t.exchanges else None)


def confirm_live(t: Probe, who: Owner, session: str, *, what: str) -> None:
    """The session still reads the own record: its refusals before were not expiry."""
    exchange = t.get_keypair(who.user_id, who.client_id, token=session)
    if exchange.status == 401:
        lifetime = limits(t).session_lifetime
        if lifetime <= MAX_WAITED_SESSION_LIFETIME:
            raise CheckSkipped(f"the {lifetime} s session expired before {what}; the "
                               "machine is too slow for this session lifetime")
    expect_stored(t, User(who.user_id, session), who.client_id, who.sealed.record,
                  what=f"GET the own keypair with the session token after {what}")


def login(t: Probe, who: Owner) -> bytes:
    """The whole flow; returns the session token."""
    challenge = new_challenge(t, who)
    token = open_token(t, who, challenge)
    exchange = answer(t, who, challenge["challenge_id"], token)
    return expect_session(t, who, exchange, what="answering with the right token in time")


def expect_refused_answer(t: Probe, exchange: Exchange, *, what: str,
                          baseline: Exchange | None = None) -> None:
    """SC-11: the uniform 401 of API-4, byte-identical to the baseline if one is given."""
    expect_unauthorized(t, exchange, what=what)
    if baseline is not None and exchange.response_body != baseline.response_body:
        t.fail(f"{what}: the 401 body differs from the one for {baseline.line} "
               "(an oracle on why the answer was refused)",
               expected=baseline.response_body.decode(errors="replace"),
               actual=exchange.response_body.decode(errors="replace"), exchange=exchange)


def flipped(token: bytes) -> bytes:
    return bytes([token[0] ^ 1]) + token[1:]


# --- capabilities and the flow --------------------------------------------------------------

@check("session-challenge/capabilities/limits-advertised", requirements=("SC-14",),
       needs=(FLOW,))
def limits_advertised(t: Probe) -> None:
    """The capabilities carry the challenge lifetime, the attempt limit and the session
    lifetime, each within the profile's range."""
    limits(t)


@check("session-challenge/flow/full",
       requirements=("SC-3", "SC-4", "SC-7", "SC-12", "SC-13", "SC-19"), needs=NEEDS)
def full_flow(t: Probe) -> None:
    """Publish, ask for a challenge without credentials, open it with the private key,
    answer, and fetch the own record with the session token."""
    who = owner(t, "sc-full")
    lim = limits(t)
    before = int(time.time())
    challenge = new_challenge(t, who)
    expires_at = challenge.get("expires_at")
    if not isinstance(expires_at, int) or not before <= expires_at - lim.challenge_lifetime \
            <= int(time.time()) + 5:
        t.fail("the challenge's expires_at is not now + challenge_lifetime_seconds (SC-3)",
               expected=f"about {before + lim.challenge_lifetime}", actual=repr(expires_at),
               exchange=t.exchanges[-1])
    token = open_token(t, who, challenge)
    session = expect_session(t, who, answer(t, who, challenge["challenge_id"], token),
                             what="answering with the right token in time")
    exchange = t.get_keypair(who.user_id, who.client_id, token=b64url_encode(session))
    t.expect_status(exchange, 200, what="GET the own keypair with the session token")


@check("session-challenge/flow/fresh-challenges", requirements=("SC-3",), needs=NEEDS)
def fresh_challenges(t: Probe) -> None:
    """Two challenges for the same key differ in id, ephemeral key and token."""
    who = owner(t, "sc-fresh")
    first, second = new_challenge(t, who), new_challenge(t, who)
    for member in ("challenge_id", "enc", "ciphertext"):
        if first.get(member) == second.get(member):
            t.fail(f"two challenges share their {member} (SC-3: fresh per challenge)",
                   expected="distinct values", actual=repr(first.get(member)),
                   exchange=t.exchanges[-1])
    if open_token(t, who, first) == open_token(t, who, second):
        t.fail("two challenges seal the same token (SC-3)", expected="distinct tokens",
               actual="equal tokens", exchange=t.exchanges[-1])


@check("session-challenge/flow/current-key", requirements=("SC-4",), needs=NEEDS)
def current_key(t: Probe) -> None:
    """After the owner replaces the keypair, challenges name the new key_version and are
    sealed to the new X25519 key."""
    who = owner(t, "sc-rotate")
    newer = seal_with_application_key(who.user_id, who.client_id, 2, previous=who.sealed)
    t.publish(who.user, who.client_id, sealed=newer)
    rotated = Owner(user=who.user, client_id=who.client_id, sealed=newer)
    challenge = new_challenge(t, rotated)
    open_token(t, rotated, challenge)


# --- single use, burning, expiry ----------------------------------------------------------------

@check("session-challenge/answer/replay-refused", requirements=("SC-8", "SC-11"), needs=NEEDS)
def replay_refused(t: Probe) -> None:
    """The right token a second time is refused with the uniform 401, and issues no second
    session."""
    who = owner(t, "sc-replay")
    challenge = new_challenge(t, who)
    token = open_token(t, who, challenge)
    expect_session(t, who, answer(t, who, challenge["challenge_id"], token),
                   what="the first answer")
    expect_refused_answer(t, answer(t, who, challenge["challenge_id"], token),
                          what="the same right answer again (a replay)")


@check("session-challenge/answer/wrong-token-burns", requirements=("SC-10", "SC-8", "SC-11"),
       needs=NEEDS)
def wrong_token_burns(t: Probe) -> None:
    """A wrong token is refused and burns the challenge: the right token afterwards is
    refused too."""
    who = owner(t, "sc-burn")
    challenge = new_challenge(t, who)
    token = open_token(t, who, challenge)
    expect_refused_answer(t, answer(t, who, challenge["challenge_id"], flipped(token)),
                          what="a token with one bit flipped")
    expect_refused_answer(t, answer(t, who, challenge["challenge_id"], token),
                          what="the right token after a wrong one (the challenge is burned)")


@check("session-challenge/answer/other-challenge-token", requirements=("SC-10", "SC-11"),
       needs=NEEDS)
def other_challenge_token(t: Probe) -> None:
    """The token of one challenge does not answer another, and burns it."""
    who = owner(t, "sc-swap")
    first, second = new_challenge(t, who), new_challenge(t, who)
    first_token, second_token = open_token(t, who, first), open_token(t, who, second)
    expect_refused_answer(t, answer(t, who, second["challenge_id"], first_token),
                          what="the first challenge's token to the second challenge")
    expect_refused_answer(t, answer(t, who, second["challenge_id"], second_token),
                          what="the second challenge's own token after that")
    expect_session(t, who, answer(t, who, first["challenge_id"], first_token),
                   what="the first challenge, still unanswered, with its token")


@check("session-challenge/answer/expiry", requirements=("SC-9", "SC-11"), needs=NEEDS)
def expiry(t: Probe) -> None:
    """An answer after expires_at is refused, even with the right token (run only when
    the advertised lifetime is short enough to wait out)."""
    lifetime = limits(t).challenge_lifetime
    if lifetime > MAX_WAITED_LIFETIME:
        raise CheckSkipped(f"the advertised challenge_lifetime_seconds is {lifetime}; the "
                           f"runner waits out at most {MAX_WAITED_LIFETIME} s (start the "
                           "server with a shorter lifetime to run this check)")
    who = owner(t, "sc-expiry")
    challenge = new_challenge(t, who)
    token = open_token(t, who, challenge)
    # expires_at is in whole seconds and the server's clock may lead ours by a little.
    deadline = challenge["expires_at"] + 1.2
    time.sleep(max(0.0, deadline - time.time()))
    expect_refused_answer(t, answer(t, who, challenge["challenge_id"], token),
                          what=f"the right token after expires_at ({lifetime} s lifetime)")


@check("session-challenge/answer/malformed-keeps-challenge", requirements=("API-6", "SC-8"),
       needs=NEEDS)
def malformed_answer(t: Probe) -> None:
    """Malformed answer bodies are refused with 400 and do not use up the challenge."""
    who = owner(t, "sc-malformed")
    challenge = new_challenge(t, who)
    token = open_token(t, who, challenge)
    cid = challenge["challenge_id"]
    bodies: dict[str, Any] = {
        "a 31-byte token": {"token": b64url_encode(token[:31])},
        "a padded token": {"token": b64url_encode(token) + "="},
        "an unknown member": {"token": b64url_encode(token), "session": True},
        "no token": {},
        "a numeric token": {"token": 7},
    }
    for name, body in bodies.items():
        t.expect_rejected(answer(t, who, cid, body), 400, what=f"an answer with {name}")
    exchange = t.request("POST", answer_path(who.user_id, who.client_id, cid),
                         headers=JSON_HEADERS, body=b"{not json")
    t.expect_rejected(exchange, 400, what="an answer that is not JSON")
    expect_session(t, who, answer(t, who, cid, token),
                   what="the right token after the malformed answers")


# --- uniform refusals ---------------------------------------------------------------------------

@check("session-challenge/create/no-published-key", requirements=("SC-1",), needs=NEEDS)
def no_published_key(t: Probe) -> None:
    """A challenge for a user with no published keypair is refused cleanly: 404
    problem+json, not a challenge and not a server error."""
    exchange = create(t, t.session.new_user_id("sc-nobody"), CLIENT)
    t.expect_rejected(exchange, 404, what="a challenge for a user who never published a key")


@check("session-challenge/create/uniform-refusal", requirements=("SC-1",), needs=NEEDS)
def uniform_refusal(t: Probe) -> None:
    """Unknown user, a user with a key for another application only, and a deleted
    keypair get the same 404, byte for byte."""
    other_app = owner(t, "sc-otherapp", client_id=OTHER_CLIENT)
    deleted = owner(t, "sc-deleted")
    t.expect_status(t.delete_keypair(deleted.user_id, deleted.client_id,
                                     token=deleted.user.token), 204,
                    what="DELETE the keypair as its owner")
    cases = {
        "an unknown user": create(t, t.session.new_user_id("sc-unknown"), CLIENT),
        "a user with a key for another application": create(t, other_app.user_id, CLIENT),
        "a user whose keypair was deleted": create(t, deleted.user_id, CLIENT),
    }
    baseline_name, baseline = next(iter(cases.items()))
    for name, exchange in cases.items():
        t.expect_rejected(exchange, 404, what=f"a challenge for {name}")
        if exchange.response_body != baseline.response_body or \
                exchange.media_type != baseline.media_type:
            t.fail(f"a challenge for {name}: the refusal differs from the one for "
                   f"{baseline_name} (it tells whether the user exists)",
                   expected=describe(baseline), actual=describe(exchange), exchange=exchange)


@check("session-challenge/answer/uniform-refusal", requirements=("SC-11",), needs=NEEDS)
def uniform_answer_refusal(t: Probe) -> None:
    """Every refused answer, whatever the reason, is the same 401 as a refused bearer
    token: an unknown challenge, a wrong token, a replay, another user's challenge."""
    who = owner(t, "sc-uniform")
    other = owner(t, "sc-uniform-other")
    baseline = t.get_keypair(who.user_id, who.client_id, token=None)
    expect_unauthorized(t, baseline, what="GET the keypair without credentials")
    unknown_id = b64url_encode(os.urandom(sc.CHALLENGE_ID_LEN))
    expect_refused_answer(t, answer(t, who, unknown_id, os.urandom(32)),
                          what="an answer to an unknown challenge id", baseline=baseline)
    challenge = new_challenge(t, who)
    token = open_token(t, who, challenge)
    foreign = t.request("POST", answer_path(other.user_id, other.client_id,
                                            challenge["challenge_id"]),
                        headers=JSON_HEADERS, body=to_json(sc.answer_to_wire(token)))
    expect_refused_answer(t, foreign, what="the right token on another user's path",
                          baseline=baseline)
    expect_session(t, who, answer(t, who, challenge["challenge_id"], token),
                   what="the right token on the right path after that")
    expect_refused_answer(t, answer(t, who, challenge["challenge_id"], token),
                          what="a replay", baseline=baseline)
    burned = new_challenge(t, who)
    expect_refused_answer(t, answer(t, who, burned["challenge_id"], os.urandom(32)),
                          what="a wrong token", baseline=baseline)


@check("session-challenge/create/attempt-limit", requirements=("SC-2",), needs=NEEDS)
def attempt_limit(t: Probe) -> None:
    """After max_attempts challenges within one lifetime, the next request for that user
    is refused with 429; another user is unaffected."""
    lim = limits(t)
    if lim.max_attempts > MAX_ATTEMPTS_TRIED:
        raise CheckSkipped(f"the advertised max_attempts is {lim.max_attempts}; the runner "
                           f"tries at most {MAX_ATTEMPTS_TRIED}")
    for tries_left in reversed(range(ATTEMPT_LIMIT_TRIES)):
        exchange = over_the_attempt_limit(t, CLIENT, lim.max_attempts, lim.challenge_lifetime,
                                          last=tries_left == 0)
        if exchange is not None:
            break
    else:
        raise CheckSkipped(f"{ATTEMPT_LIMIT_TRIES} tries took one lifetime - 1 s or more; "
                           f"the server's window (whole seconds) may have moved on before "
                           f"challenge {lim.max_attempts + 1}, which it issued")
    t.expect_problem(exchange, 429, what=f"challenge number {lim.max_attempts + 1} within "
                     f"{lim.challenge_lifetime} s")
    new_challenge(t, owner(t, "sc-limit-other"))


# --- the session token ----------------------------------------------------------------------------

@check("session-challenge/session/own-record", requirements=("SC-13", "SC-12", "SC-15"),
       needs=NEEDS)
def session_own_record(t: Probe) -> None:
    """The session token works as a bearer credential for reading its own record, byte
    for byte, as often as needed while it lives."""
    who = owner(t, "sc-own")
    session = b64url_encode(login(t, who))
    for attempt in ("", " again"):
        expect_stored(t, User(who.user_id, session), who.client_id, who.sealed.record,
                      what=f"GET the own keypair with the session token{attempt}")


@check("session-challenge/session/write-refused", requirements=("SC-15", "API-4"),
       needs=NEEDS)
def session_write_refused(t: Probe) -> None:
    """A live session token on its own record changes nothing: a rotation signed by the
    record's key, a reset and a signed deletion sent with it are each refused with the
    uniform 401, and the record stays as it was (only an access token changes a record);
    it does not read the owner's application list either."""
    who = owner(t, "sc-write")
    session = b64url_encode(login(t, who))
    baseline = t.get_keypair(who.user_id, who.client_id, token=None)
    expect_unauthorized(t, baseline, what="GET the keypair without credentials")
    attempts = {
        "PUT a rotation signed by the record's key": seal_with_application_key(
            who.user_id, who.client_id, who.key_version + 1, previous=who.sealed).record,
        "PUT a reset (no signature by the old key)": seal_with_application_key(
            who.user_id, who.client_id, who.key_version + 1).record,
    }
    for what, record in attempts.items():
        exchange = t.put_keypair(who.user_id, who.client_id, record, token=session)
        expect_refused_answer(t, exchange, what=f"{what} with a session token",
                              baseline=baseline)
    exchange = t.delete_keypair(who.user_id, who.client_id, token=session,
                                body=who.sealed.deletion())
    expect_refused_answer(t, exchange, what="DELETE with a signed body and a session token",
                          baseline=baseline)
    exchange = t.get_apps(who.user_id, token=session)
    expect_refused_answer(t, exchange, what="GET the owner's application list (KP-23) with a "
                          "session token", baseline=baseline)
    expect_not_passed_on(t, session, what="the writes with a session token")
    confirm_live(t, who, session, what="the refused writes")
    expect_stored(t, who.user, who.client_id, who.sealed.record,
                  what="the record after the writes with a session token")


@check("session-challenge/session/ends-on-rotation", requirements=("SC-16",), needs=NEEDS)
def session_ends_on_rotation(t: Probe) -> None:
    """A session won with key_version 1 reads nothing once the owner rotated to 2 (with
    an access token), not even the new record; a fresh challenge wins a new session."""
    who = owner(t, "sc-rotation")
    session = b64url_encode(login(t, who))
    newer = t.publish(who.user, who.client_id, who.key_version + 1)
    exchange = t.get_keypair(who.user_id, who.client_id, token=session)
    expect_refused_answer(t, exchange, what="GET with a session won before the rotation")
    rotated = Owner(user=who.user, client_id=who.client_id, sealed=newer)
    fresh = b64url_encode(login(t, rotated))
    expect_stored(t, User(who.user_id, fresh), who.client_id, newer.record,
                  what="GET with a session won after the rotation")


@check("session-challenge/session/ends-on-reset-and-deletion", requirements=("SC-16",),
       needs=NEEDS)
def session_ends_on_reset_and_deletion(t: Probe) -> None:
    """A reset (a new key_version not signed by the old key) ends the sessions won before
    it, and so does a deletion: afterwards the old session token gets the uniform 401,
    never the new record or a 404."""
    who = owner(t, "sc-reset")
    session = b64url_encode(login(t, who))
    reset = seal_with_application_key(who.user_id, who.client_id, who.key_version + 1)
    t.publish(who.user, who.client_id, sealed=reset)
    expect_refused_answer(t, t.get_keypair(who.user_id, who.client_id, token=session),
                          what="GET with a session won before a reset")
    after_reset = Owner(user=who.user, client_id=who.client_id, sealed=reset)
    session = b64url_encode(login(t, after_reset))
    t.expect_status(t.delete_keypair(who.user_id, who.client_id, token=who.user.token), 204,
                    what="DELETE the keypair as its owner")
    expect_refused_answer(t, t.get_keypair(who.user_id, who.client_id, token=session),
                          what="GET with a session won before the deletion")
    expect_absent(t, who.user, who.client_id, what="GET with an access token after DELETE")


# --- the origin ------------------------------------------------------------------------------

@check("session-challenge/create/origin", requirements=("SC-17", "SC-18"), needs=NEEDS)
def challenge_origin(t: Probe) -> None:
    """Every challenge names the origin the runner sends its requests to, and opens under
    it; a request whose Host and X-Forwarded-Host name another server (as a relaying
    server's would) still gets a challenge for this server's configured origin."""
    who = owner(t, "sc-origin")
    open_token(t, who, new_challenge(t, who))
    exchange = past_the_bucket(t, lambda: t.request(
        "POST", challenges_path(who.user_id, who.client_id),
        headers={"Host": RELAY_HOST, "X-Forwarded-Host": RELAY_HOST,
                 "X-Forwarded-Proto": "https"}))
    if exchange.status != 201:
        t.expect_status(exchange, 201, 400, 421,
                        what="POST session-challenges with the Host of another server")
        return  # refusing a foreign Host is allowed too
    body = t.expect_ok_json(exchange, 201, what="POST session-challenges with a foreign Host")
    named = body.get("origin") if isinstance(body, dict) else None
    if named != expected_origin(t):
        t.fail("the challenge names the origin of the request's Host header, not the "
               "server's own (SC-17): a relaying server gets challenges it can pass off "
               "as its own", expected=expected_origin(t), actual=repr(named),
               exchange=exchange)
    open_token(t, who, body, exchange)


@check("session-challenge/session/expiry", requirements=("SC-13", "SC-12"), needs=NEEDS)
def session_expiry(t: Probe) -> None:
    """A session token reads the own record until its expires_at and never after, nor in
    the second expires_at itself (run only when the advertised session lifetime is short
    enough to wait out)."""
    lifetime = limits(t).session_lifetime
    if lifetime > MAX_WAITED_SESSION_LIFETIME:
        raise CheckSkipped(f"the advertised session_lifetime_seconds is {lifetime}; the "
                           f"runner waits out at most {MAX_WAITED_SESSION_LIFETIME} s (start "
                           "the server with a shorter session lifetime to run this check)")
    who = owner(t, "sc-session-expiry")
    challenge = new_challenge(t, who)
    exchange = answer(t, who, challenge["challenge_id"], open_token(t, who, challenge))
    token = expect_session(t, who, exchange, what="answering with the right token in time")
    expires_at = t.expect_ok_json(exchange, 200, what="the session")["expires_at"]
    session = b64url_encode(token)
    confirm_live(t, who, session, what="the answer")
    refused_in_the_expiry_second(t, who, session, expires_at)
    # expires_at is in whole seconds and the server's clock may lead ours by a little.
    time.sleep(max(0.0, expires_at + 1.2 - time.time()))
    expect_refused_answer(t, t.get_keypair(who.user_id, who.client_id, token=session),
                          what=f"GET with the session token after its expires_at "
                               f"({lifetime} s lifetime)")
    expect_not_passed_on(t, session, what="an expired session token")


def server_second(t: Probe, who: Owner) -> int | None:
    """The server's clock in whole seconds, read off a new challenge (its expires_at is
    now + challenge_lifetime_seconds, SC-3); None if no challenge was issued."""
    exchange = create(t, who.user_id, who.client_id)
    if exchange.status != 201:
        return None
    try:
        expires = t.expect_ok_json(exchange, 201, what="a challenge").get("expires_at")
    except AttributeError:
        return None
    if not isinstance(expires, int) or isinstance(expires, bool):
        return None
    return expires - limits(t).challenge_lifetime


def refused_in_the_expiry_second(t: Probe, who: Owner, session: str, expires_at: int) -> None:
    """SC-13: a session is valid while now < expires_at, so a use in the server's second
    expires_at is refused. The server's second just before and just after the use is read
    off new challenges; the use is judged only when both are expires_at (a slow machine
    or a skewed clock gives no verdict here, never a wrong one)."""
    time.sleep(max(0.0, expires_at + 0.05 - time.time()))
    for _attempt in range(2):
        before = server_second(t, who)
        if before is None or before > expires_at:
            return
        if before < expires_at:  # the server's clock lags ours: wait for its second
            time.sleep(min(1.0, 0.1 + 0.5 * (expires_at - before)))
            continue
        exchange = t.get_keypair(who.user_id, who.client_id, token=session)
        if server_second(t, who) == expires_at:
            expect_refused_answer(t, exchange, what=f"GET with the session token in the "
                                                    f"server's second {expires_at}, its "
                                                    "expires_at (valid only before it)")
        return


@check("session-challenge/create/body-refused", requirements=("API-6",), needs=NEEDS)
def create_body_refused(t: Probe) -> None:
    """A challenge request carries nothing: a non-empty JSON object or a body that is not
    JSON is refused with 400; the empty object is accepted."""
    who = owner(t, "sc-body")
    for what, body in (("a JSON object with a member", b'{"key_version":1}'),
                       ("a body that is not JSON", b"{not json")):
        exchange = past_the_bucket(t, functools.partial(
            t.request, "POST", challenges_path(who.user_id, who.client_id),
            headers=JSON_HEADERS, body=body))
        t.expect_rejected(exchange, 400, what=f"POST session-challenges with {what}")
    exchange = past_the_bucket(t, lambda: t.request(
        "POST", challenges_path(who.user_id, who.client_id), headers=JSON_HEADERS,
        body=b"{}"))
    t.expect_ok_json(exchange, 201, what="POST session-challenges with the empty object")


@check("session-challenge/session/other-user-refused", requirements=("SC-13", "API-4"),
       needs=NEEDS)
def session_other_user(t: Probe) -> None:
    """A session token opens nothing of another user: the uniform 401."""
    who = owner(t, "sc-scope")
    victim = owner(t, "sc-victim")
    session = b64url_encode(login(t, who))
    baseline = t.get_keypair(victim.user_id, victim.client_id, token=None)
    expect_unauthorized(t, baseline, what="GET another user's keypair without credentials")
    for method in ("GET", "DELETE"):
        exchange = t.request(method, f"/v1/users/{victim.user_id}/apps/{victim.client_id}"
                                     "/keypair", token=session)
        expect_refused_answer(t, exchange, what=f"{method} another user's keypair with a "
                              "session token", baseline=baseline)
    newer = seal_with_application_key(victim.user_id, victim.client_id, 9)
    exchange = t.put_keypair(victim.user_id, victim.client_id, newer.record, token=session)
    expect_refused_answer(t, exchange, what="PUT over another user's keypair with a session "
                          "token", baseline=baseline)
    expect_not_passed_on(t, session, what="a session token on another user's record")
    confirm_live(t, who, session, what="the refused attempts")
    expect_stored(t, victim.user, victim.client_id, victim.sealed.record,
                  what="the victim's record after the attempts")


@check("session-challenge/session/other-application-refused", requirements=("SC-13",),
       needs=NEEDS)
def session_other_application(t: Probe) -> None:
    """A session won with one application's key opens nothing of the same user's other
    applications."""
    who = owner(t, "sc-apps")
    other_app = seal_with_application_key(who.user_id, OTHER_CLIENT, 1)
    t.publish(who.user, OTHER_CLIENT, 1, sealed=other_app)
    session = b64url_encode(login(t, who))
    expect_refused_answer(t, t.get_keypair(who.user_id, OTHER_CLIENT, token=session),
                          what="GET the same user's other application with the session token")


@check("session-challenge/session/not-a-challenge-token", requirements=("SC-13",),
       needs=NEEDS)
def challenge_token_is_no_session(t: Probe) -> None:
    """The decrypted challenge token itself is no credential, before or after the answer."""
    who = owner(t, "sc-notsession")
    challenge = new_challenge(t, who)
    token = open_token(t, who, challenge)
    expect_unauthorized(t, t.get_keypair(who.user_id, who.client_id,
                                         token=b64url_encode(token)),
                        what="GET the own keypair with the challenge token as bearer")
    expect_session(t, who, answer(t, who, challenge["challenge_id"], token),
                   what="the answer")
    expect_unauthorized(t, t.get_keypair(who.user_id, who.client_id,
                                         token=b64url_encode(token)),
                        what="GET with the challenge token after the answer")
