"""What a check works with: the run's session and a per-check Probe.

A Probe sends requests (recording each exchange for the trace), mints users on the
runner's account server, publishes records the runner sealed, and states expectations.
A failed expectation raises CheckFailed carrying what was expected, what came back and
the exchange that showed it.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any, NoReturn

from keyflows.conformance.account import AccountStore
from keyflows.conformance.clients import Sealed, seal_with_application_key, to_json
from keyflows.conformance.http import (
    BadAnswer,
    Exchange,
    HttpClient,
    TransportError,
    json_or_none,
)
from keyflows.conformance.openapi import NOT_JSON, api
from keyflows.conformance.parties import ExchangeLog
from keyflows.conformance.redaction import redact_text
from keyflows.conformance.trace import first_difference
from keyflows.spec import contract

PROBLEM_JSON = contract.PROBLEM_MEDIA_TYPE
PROBLEM_TYPE_PREFIX = contract.PROBLEM_TYPE_PREFIX
JSON_HEADERS = {"content-type": "application/json"}


class CheckFailed(Exception):
    def __init__(self, message: str, *, expected: str = "", actual: str = "",
                 exchange: Exchange | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.expected = expected
        self.actual = actual
        self.exchange = exchange


class CheckSkipped(Exception):
    """The check does not apply to this target; the message says why."""


@dataclass(frozen=True)
class User:
    user_id: str
    token: str


def keypair_path(user_id: str, client_id: str) -> str:
    return f"/v1/users/{user_id}/apps/{client_id}/keypair"


def public_keys_path(user_id: str, client_id: str) -> str:
    return f"/v1/users/{user_id}/apps/{client_id}/public-keys"


def apps_path(user_id: str) -> str:
    return f"/v1/users/{user_id}/apps"


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


@dataclass
class Session:
    """State shared by every check of one run."""

    base_url: str
    http: HttpClient
    accounts: AccountStore
    capabilities: dict[str, Any] | None = None
    capabilities_problem: str = ""
    validate_answers: bool = True
    """Check every answer against its schema in the OpenAPI document."""
    side_logs: list[ExchangeLog] = field(default_factory=list)
    """Exchange logs of the parties the runner plays besides its account server."""
    run_tag: str = field(default_factory=lambda: secrets.token_hex(4))
    cache: dict[str, Any] = field(default_factory=dict)
    _users: int = 0

    def new_user_id(self, label: str) -> str:
        # Fresh per run, so re-running against a persistent server never collides.
        self._users += 1
        return f"{label[:40]}-{self._users:04d}-{self.run_tag}"

    @property
    def party_logs(self) -> list[ExchangeLog]:
        """Every party's exchanges with the server under test, the account server first
        (and its vault, lock-layering step 12, and its witness, hashchain flow)."""
        return [self.accounts.log, self.accounts.vaults.log, self.accounts.witness.log,
                *self.side_logs]

    def side_exchanges(self, since: float) -> list[Exchange]:
        """What the server under test asked the runner's parties since `since`."""
        return sorted((e for log in self.party_logs for e in log.since(since)),
                      key=lambda e: e.started)

    def forget_side_exchanges(self, before: float) -> None:
        for log in self.party_logs:
            log.forget_before(before)

    @property
    def flows(self) -> list[str]:
        flows = (self.capabilities or {}).get("flows")
        return [f for f in flows if isinstance(f, str)] if isinstance(flows, list) else []

    @property
    def max_body_bytes(self) -> int | None:
        limits = (self.capabilities or {}).get("limits")
        value = limits.get("max_body_bytes") if isinstance(limits, dict) else None
        return value if isinstance(value, int) and not isinstance(value, bool) else None


def describe(exchange: Exchange) -> str:
    """What came back, in one line: status, media type and a short, redacted body."""
    # Redact before truncating, so a cut can never expose part of a secret value.
    body = redact_text(exchange.response_body.decode("utf-8", errors="backslashreplace"))
    body = " ".join(body.split())
    if len(body) > 300:
        body = body[:300] + "..."
    media = exchange.media_type or "no content-type"
    return f"{exchange.status} {media} {body}".rstrip()


class Probe:
    def __init__(self, session: Session) -> None:
        self.session = session
        self.exchanges: list[Exchange] = []
        self.schema_problems: list[tuple[str, Exchange]] = []
        """Answers that did not match the OpenAPI document, with why."""
        # The last record this probe published per (user_id, client_id): the key a
        # rotation is signed with (KP-17) and a deletion is signed with (KP-19).
        self.published: dict[tuple[str, str], Sealed] = {}

    # --- requests -------------------------------------------------------------------

    def request(self, method: str, path: str, *, token: str | None = None,
                headers: dict[str, str] | None = None, body: bytes | None = None,
                json_body: Any = None, chunks: list[bytes] | None = None) -> Exchange:
        sent: dict[str, str] = {}
        if token is not None:
            sent.update(bearer(token))
        if json_body is not None:
            body = to_json(json_body)
            sent.update(JSON_HEADERS)
        sent.update(headers or {})
        try:
            exchange = self.session.http.send(method, path, headers=sent, content=body,
                                              chunks=chunks)
        except (TransportError, BadAnswer) as exc:
            if exc.exchange is not None:
                self._note_credential(exc.exchange, sent)
                self.exchanges.append(exc.exchange)
            raise
        self._note_credential(exchange, sent)
        self.exchanges.append(exchange)
        self._check_schema(exchange, path)
        return exchange

    def _check_schema(self, exchange: Exchange, path: str) -> None:
        """Note an answer that does not match its documented schema (the runner fails the
        check with it unless the check fails for a reason of its own)."""
        if not self.session.validate_answers:
            return
        body: Any = NOT_JSON
        if "json" in exchange.media_type:
            body = json_or_none(exchange.response_body)
            body = NOT_JSON if body is None and exchange.response_body.strip() != b"null" \
                else body
        problem = api().answer_problem(exchange.method, path, exchange.status,
                                       exchange.media_type, body)
        if problem:
            self.schema_problems.append((problem, exchange))

    def _note_credential(self, exchange: Exchange, sent: dict[str, str]) -> None:
        scheme, _, credential = sent.get("authorization", "").partition(" ")
        if scheme == "Bearer" and credential:
            exchange.credential_note = self.session.accounts.describe_token(credential)

    def send_declared_length(self, method: str, path: str, headers: dict[str, str], *,
                             declared: int | None, sent: bytes, deadline_s: float
                             ) -> Exchange:
        """Declare a `declared`-byte body and send only `sent` bytes (status 0 when no
        answer came before the deadline); `declared=None`: a chunked body never ended."""
        exchange = self.session.http.send_declared_length(
            method, path, headers, declared=declared, sent=sent, deadline_s=deadline_s)
        self._note_credential(exchange, headers)
        self.exchanges.append(exchange)
        return exchange

    def put_keypair(self, user_id: str, client_id: str, record: Any, *,
                    token: str | None) -> Exchange:
        body = record if isinstance(record, bytes) else to_json(record)
        return self.request("PUT", keypair_path(user_id, client_id), token=token,
                            headers=JSON_HEADERS, body=body)

    def get_keypair(self, user_id: str, client_id: str, *, token: str | None) -> Exchange:
        return self.request("GET", keypair_path(user_id, client_id), token=token)

    def delete_keypair(self, user_id: str, client_id: str, *, token: str | None,
                       body: Any = None) -> Exchange:
        """DELETE with `body`, by default the deletion signed by the last record this
        probe published there (KP-19), or an empty object if it published none."""
        if body is None:
            last = self.published.get((user_id, client_id))
            body = last.deletion() if last is not None else {}
        return self.request("DELETE", keypair_path(user_id, client_id), token=token,
                            json_body=body)

    def get_public_keys(self, user_id: str, client_id: str) -> Exchange:
        return self.request("GET", public_keys_path(user_id, client_id))

    def get_apps(self, user_id: str, *, token: str | None) -> Exchange:
        """GET the application list; only the owner's access token gets it (KP-23)."""
        return self.request("GET", apps_path(user_id), token=token)

    # --- actors ---------------------------------------------------------------------

    def user(self, label: str = "user") -> User:
        """A fresh user on the runner's account server, with a valid token."""
        user_id = self.session.new_user_id(label)
        return User(user_id=user_id, token=self.session.accounts.mint(user_id))

    def token_for(self, user_id: str) -> str:
        return self.session.accounts.mint(user_id)

    def publish(self, user: User, client_id: str = "app", key_version: int | None = None,
                sealed: Sealed | None = None) -> Sealed:
        """Seal (unless given) and publish a record as its owner; 201 or 200 required.

        Without `sealed`, the records up to `key_version` (default: the next one) are
        published in turn, each a rotation signed by the one before (KP-16, KP-17)."""
        if sealed is not None:
            return self._publish_one(user, client_id, sealed)
        last = self.published.get((user.user_id, client_id))
        target = key_version or (last.key_version + 1 if last else 1)
        while last is None or last.key_version < target:
            version = last.key_version + 1 if last else 1
            last = self._publish_one(user, client_id, seal_with_application_key(
                user.user_id, client_id, version, previous=last))
        return last

    def _publish_one(self, user: User, client_id: str, sealed: Sealed) -> Sealed:
        exchange = self.put_keypair(user.user_id, client_id, sealed.body, token=user.token)
        what = "publishing a valid record as its owner"
        self.expect_status(exchange, 201, 200, what=what)
        self.expect_stored_answer(exchange, sealed.record,
                                  keypair_path(user.user_id, client_id), what=what)
        self.published[(user.user_id, client_id)] = sealed
        return sealed

    def expect_stored_answer(self, exchange: Exchange, record: Any, path: str, *,
                             what: str) -> None:
        """A 200/201 to a write answers the stored record itself (not only a status),
        and a 201 names it in Location (API-15)."""
        stored = self.expect_json(exchange, what=what)
        diff = first_difference(record, stored)
        if diff:
            self.fail(f"{what}: the answer is not the record as stored ({diff})",
                      expected="the published record, every member unchanged",
                      actual=describe(exchange), exchange=exchange)
        if exchange.status == 201 and exchange.header("location") != path:
            self.fail(f"{what}: 201 with Location {exchange.header('location')!r} (API-15)",
                      expected=f"Location: {path}",
                      actual=exchange.header("location") or "(no Location header)",
                      exchange=exchange)

    # --- expectations -----------------------------------------------------------------

    def fail(self, message: str, *, expected: str = "", actual: str = "",
             exchange: Exchange | None = None) -> NoReturn:
        raise CheckFailed(message, expected=expected, actual=actual, exchange=exchange)

    def expect_status(self, exchange: Exchange, *statuses: int, what: str) -> None:
        if exchange.status in statuses:
            return
        wanted = " or ".join(str(s) for s in statuses)
        hint = " (a server error: client input must never cause a 5xx, API-6)" \
            if exchange.status >= 500 else ""
        self.fail(f"{what}: expected {wanted}, got {exchange.status}{hint}",
                  expected=f"status {wanted}", actual=describe(exchange), exchange=exchange)

    def expect_json(self, exchange: Exchange, *, what: str) -> Any:
        if exchange.media_type != "application/json":
            self.fail(f"{what}: expected application/json, got "
                      f"{exchange.media_type or 'no content-type'}",
                      expected="content-type application/json", actual=describe(exchange),
                      exchange=exchange)
        try:
            return exchange.json()
        except ValueError:
            self.fail(f"{what}: the body is not JSON", expected="a JSON body",
                      actual=describe(exchange), exchange=exchange)

    def expect_ok_json(self, exchange: Exchange, status: int, *, what: str) -> Any:
        self.expect_status(exchange, status, what=what)
        return self.expect_json(exchange, what=what)

    def expect_problem(self, exchange: Exchange, status: int, *, what: str,
                       slug: str | None = None,
                       failure_class: str | None = None) -> dict[str, Any]:
        """An RFC 9457 problem with this status (API-2), and optionally its type slug and
        failure class (where the server rejected, as the vectors grade it)."""
        self.expect_status(exchange, status, what=what)
        return self.check_problem_shape(exchange, what=what, slug=slug,
                                        failure_class=failure_class)

    def check_problem_shape(self, exchange: Exchange, *, what: str, slug: str | None = None,
                            failure_class: str | None = None) -> dict[str, Any]:
        expected = f"{exchange.status} {PROBLEM_JSON} with \"status\": {exchange.status}"
        if slug:
            expected += f", type {PROBLEM_TYPE_PREFIX}{slug}"
        if failure_class:
            expected += f", failure_class {failure_class}"
        if exchange.media_type != PROBLEM_JSON:
            self.fail(f"{what}: error answered with content-type "
                      f"{exchange.media_type or '(none)'}, not {PROBLEM_JSON} (API-2)",
                      expected=expected, actual=describe(exchange), exchange=exchange)
        try:
            problem = exchange.json()
        except ValueError:
            problem = None
        if not isinstance(problem, dict):
            self.fail(f"{what}: the problem body is not a JSON object (API-2)",
                      expected=expected, actual=describe(exchange), exchange=exchange)
        status = problem.get("status")
        if status != exchange.status or isinstance(status, bool):
            self.fail(f"{what}: problem member status is {status!r}, HTTP status is "
                      f"{exchange.status} (API-2)", expected=expected,
                      actual=describe(exchange), exchange=exchange)
        for member in ("type", "title"):
            if not isinstance(problem.get(member), str):
                self.fail(f"{what}: problem lacks a string {member!r} member (API-2)",
                          expected=expected, actual=describe(exchange), exchange=exchange)
        registered = contract.problem_from_uri(str(problem.get("type")))
        if registered is None or registered.status != exchange.status:
            known = ", ".join(p.uri for p in contract.problem_types_with_status(exchange.status))
            self.fail(f"{what}: problem type {problem.get('type')!r} is not a type the "
                      f"contract gives status {exchange.status} (API-8)",
                      expected=known or f"no problem type has status {exchange.status}",
                      actual=describe(exchange), exchange=exchange)
        declared = problem.get("failure_class")
        if declared is not None and not contract.failure_class_fits(str(declared),
                                                                    exchange.status):
            fits = [f.failure_class for f in contract.FAILURE_STATUSES
                    if f.status == exchange.status]
            self.fail(f"{what}: failure_class {declared!r} with status {exchange.status} "
                      f"(API-9)", expected=f"one of {fits}" if fits else "another status",
                      actual=describe(exchange), exchange=exchange)
        if slug and problem.get("type") != PROBLEM_TYPE_PREFIX + slug:
            self.fail(f"{what}: problem type is {problem.get('type')!r}, expected "
                      f"{PROBLEM_TYPE_PREFIX + slug!r}", expected=expected,
                      actual=describe(exchange), exchange=exchange)
        if failure_class and problem.get("failure_class") != failure_class:
            self.fail(f"{what}: rejected with failure_class "
                      f"{problem.get('failure_class')!r}, expected {failure_class!r} "
                      f"(the step that must reject)", expected=expected,
                      actual=describe(exchange), exchange=exchange)
        return problem

    def expect_rejected(self, exchange: Exchange, status: int, *, what: str,
                        failure_class: str | None = None) -> dict[str, Any]:
        """A client-input rejection: the status, problem+json, and the failure class."""
        # 400 and 422 are graded by failure class rather than by type slug.
        only = contract.problem_types_with_status(status)
        slug = only[0].slug if len(only) == 1 and status not in (400, 422) else None
        return self.expect_problem(exchange, status, what=what, slug=slug,
                                   failure_class=failure_class)
