"""The HTTP contract of profile v1, in one registry: problem types, the status of every
failure class, the headers answers must carry, the status of every limit, and the choices
an implementer would otherwise have to guess.

The reference server builds its answers from these tables (reference/problems.py), the
conformance runner judges answers by them, and the docs render them (docs/common.rst).
Every entry cites the requirement that makes it normative. Pure data: no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from keyflows.spec import limits
from keyflows.spec.errors import DecodeError
from keyflows.spec.key_derivation import IDENTIFIER

PROBLEM_MEDIA_TYPE = "application/problem+json"
JSON_MEDIA_TYPE = "application/json"
PROBLEM_TYPE_PREFIX = "urn:keyflows:problem:"
BEARER_CHALLENGE = "Bearer"
"""The value of WWW-Authenticate on every 401 (API-13)."""
NO_STORE = {"Cache-Control": "no-store"}
"""The header of every answer that carries a token, a challenge, a capability or key
material in the clear (API-16)."""
MAX_TOKEN_LENGTH = 4096
"""Longest bearer token a server considers (API-14)."""
_AUTHORIZATION = re.compile(r"\A[Bb][Ee][Aa][Rr][Ee][Rr] +([A-Za-z0-9\-._~+/]+=*)\Z")


@dataclass(frozen=True)
class ProblemType:
    slug: str
    status: int
    title: str
    requirement: str
    when: str

    @property
    def uri(self) -> str:
        return PROBLEM_TYPE_PREFIX + self.slug


PROBLEM_TYPES: tuple[ProblemType, ...] = (
    ProblemType("malformed", 400, "Malformed request", "API-6",
                "The request is not well-formed: a path identifier, the JSON syntax or shape, "
                "an encoding, a length or a parameter range (failure classes decode, "
                "length, params)."),
    ProblemType("unauthorized", 401, "Unauthorized", "API-4",
                "Every authentication or authorization failure, whatever its reason; the "
                "body is byte-identical for all of them."),
    ProblemType("not-found", 404, "Not found", "API-10",
                "No route has this path, or the addressed resource does not exist (where "
                "the flow lets the caller learn that)."),
    ProblemType("method-not-allowed", 405, "Method not allowed", "API-11",
                "The path exists but not with this method."),
    ProblemType("request-timeout", 408, "Request timeout", "API-53",
                "The request line and headers, or the body, did not arrive within the "
                "advertised deadline; the server closes the connection."),
    ProblemType("conflict", 409, "Conflict", "API-9",
                "The request is well-formed and valid but conflicts with stored state: a "
                "replayed single-use value (failure class replay), an existing identifier, "
                "a version that is not newer, a quota of stored things."),
    ProblemType("too-large", 413, "Request body too large", "API-5",
                "The body exceeds an advertised size or count limit."),
    ProblemType("unsupported-media-type", 415, "Unsupported media type", "API-12",
                "A request body that is not application/json (charset, if given, utf-8)."),
    ProblemType("invalid", 422, "Invalid content", "API-9",
                "Well-formed content that fails validation: a key, signature, MAC, AEAD, "
                "binding, chain link, share or proof check (failure classes point, signature, "
                "mac, aead, binding, link, share, expired, authz, proof, history, fork, "
                "witness, monitor)."),
    ProblemType("too-many-requests", 429, "Too many requests", "API-17",
                "An advertised rate limit is reached; Retry-After says when to retry."),
    ProblemType("internal-error", 500, "Internal server error", "API-8",
                "A fault of the server. Never the answer to client input."),
    ProblemType("account-server-unavailable", 503, "Account server unavailable", "API-3",
                "The account server could not give a clear answer; no request is granted "
                "on an unclear answer."),
    ProblemType("server-lock-unavailable", 503, "Server lock unavailable", "LOCK-5",
                "The server lock (key file, AWS KMS, PKCS#11) could not open or seal."),
    ProblemType("vault-bad-answer", 502, "Encrypted data vault answered wrongly", "LOCK-33",
                "An encrypted data vault the keystore keeps its working keys in broke its "
                "protocol or returned a document that does not authenticate or belongs to "
                "another key; nothing is done with it."),
    ProblemType("vault-unavailable", 503, "Encrypted data vault unavailable", "LOCK-33",
                "An encrypted data vault the keystore keeps its working keys in could not be "
                "reached or gave no clear answer."),
    ProblemType("busy", 503, "Server busy", "API-53",
                "The server holds as many connections as it accepts; Retry-After says when "
                "to try again."),
)

PROBLEMS: dict[str, ProblemType] = {p.slug: p for p in PROBLEM_TYPES}


@dataclass(frozen=True)
class FailureStatus:
    failure_class: str
    slug: str
    requirement: str

    @property
    def status(self) -> int:
        return PROBLEMS[self.slug].status


# The status of a refusal of client content, by the failure class of the step that
# refused it. Authentication material is the exception: a credential that fails any
# check (binding, expired, authz, signature) is the uniform 401 of API-4, as each flow
# says where it applies.
FAILURE_STATUSES: tuple[FailureStatus, ...] = (
    FailureStatus("decode", "malformed", "API-9"),
    FailureStatus("length", "malformed", "API-9"),
    FailureStatus("params", "malformed", "API-9"),
    FailureStatus("point", "invalid", "API-9"),
    FailureStatus("aead", "invalid", "API-9"),
    FailureStatus("mac", "invalid", "API-9"),
    FailureStatus("signature", "invalid", "API-9"),
    FailureStatus("binding", "invalid", "API-9"),
    FailureStatus("link", "invalid", "API-9"),
    FailureStatus("replay", "conflict", "API-9"),
    FailureStatus("expired", "invalid", "API-9"),
    FailureStatus("authz", "invalid", "API-9"),
    FailureStatus("share", "invalid", "API-9"),
    FailureStatus("proof", "invalid", "API-9"),
    FailureStatus("history", "invalid", "API-9"),
    FailureStatus("fork", "invalid", "API-9"),
    FailureStatus("witness", "invalid", "API-9"),
    FailureStatus("monitor", "invalid", "API-9"),
)

FAILURE_CLASS_SLUGS: dict[str, str] = {f.failure_class: f.slug for f in FAILURE_STATUSES}


@dataclass(frozen=True)
class HeaderRule:
    header: str
    answers: str
    value: str
    requirement: str


HEADER_RULES: tuple[HeaderRule, ...] = (
    HeaderRule("Content-Type", "every answer with a JSON body",
               "application/json (an optional charset parameter is utf-8)", "API-2"),
    HeaderRule("Content-Type", "every refusal (4xx, 5xx)", "application/problem+json",
               "API-2"),
    HeaderRule("WWW-Authenticate", "every 401", "Bearer (the same value on every 401)",
               "API-13"),
    HeaderRule("Allow", "every 405", "every method the path serves, comma-separated",
               "API-11"),
    HeaderRule("Location", "every 201", "the path of the created resource, from /v1/ on; "
               "equal to the URL member of the body where the body has one", "API-15"),
    HeaderRule("Retry-After", "every 429", "delta-seconds, an integer >= 1", "API-17"),
    HeaderRule("Cache-Control", "every answer that carries a session token, a session "
               "challenge, a capability or key material in the clear", "no-store", "API-16"),
)


@dataclass(frozen=True)
class LimitRule:
    limit: str
    advertised: str
    status: int
    slug: str | None
    requirement: str


LIMIT_RULES: tuple[LimitRule, ...] = (
    LimitRule("request body size", "limits.max_body_bytes", 413, "too-large", "API-5"),
    LimitRule("envelope request body size", "envelope.max_body_bytes", 413, "too-large",
              "ENV-17"),
    LimitRule("recipients of one envelope", "envelope.max_recipients", 413, "too-large",
              "ENV-17"),
    LimitRule("payload_length of one envelope", "envelope.max_payload_bytes", 413,
              "too-large", "ENV-17"),
    LimitRule("devices in one signed device list", "envelope.max_devices_per_user", 400,
              "malformed", "ENV-3"),
    LimitRule("challenges per user and requester within one lifetime",
              "session_challenge.max_attempts",
              429, "too-many-requests", "SC-2"),
    LimitRule("KeyInits in one publication", "hashchain.max_keyinits", 400, "malformed",
              "HC-26"),
    LimitRule("last_checkpoint lag of a UID", "hashchain.max_checkpoint_lag", 422, "invalid",
              "HC-19"),
    LimitRule("caveats of one capability", "lock_layering.capability.max_caveats", 401,
              "unauthorized", "LOCK-11"),
    LimitRule("messages in one queue page", "envelope.max_queue_page", 200, None, "ENV-12"),
    LimitRule("seconds a message is served from its arrival", "envelope.retention_seconds",
              404, "not-found", "ENV-17"),
    LimitRule("hashes or entries in one tile", "256 (fixed)", 200, None,
              "HC-44"),
    LimitRule("bearer token length", "4096 characters (fixed)", 401, "unauthorized",
              "API-14"),
    *(LimitRule(what, f"limits.rates.{name}.capacity", 429, "too-many-requests", "API-52")
      for name, what in limits.RATES.items()),
    *(LimitRule(what, f"limits.quotas.{name}.limit", 429, "too-many-requests", "API-54")
      for name, what in limits.QUOTAS.items()),
    LimitRule("seconds for the request line and headers", "limits.header_timeout_seconds",
              408, "request-timeout", "API-53"),
    LimitRule("seconds for the request body", "limits.body_timeout_seconds", 408,
              "request-timeout", "API-53"),
    LimitRule("bytes per second a body averages past its timeout",
              "limits.body_min_rate_bytes_per_second", 408, "request-timeout", "API-53"),
)


@dataclass(frozen=True)
class Choice:
    topic: str
    rule: str
    requirement: str | None
    """None: explicitly left to the implementation."""


CHOICES: tuple[Choice, ...] = (
    Choice("Authorization scheme",
           "Exactly one Authorization header; the scheme name Bearer in any letter case "
           "(RFC 9110 section 11.1), one or more spaces, then a b64token (RFC 6750 section "
           "2.1) of at most 4096 characters. Anything else is the uniform 401. Clients "
           "send `Bearer` and one space.", "API-14"),
    Choice("Order of checks",
           "A request that fails several checks is answered for the first in this order: "
           "route and method (404, 405); path identifiers (400); authentication (401); "
           "body size (413); media type (415); JSON syntax and shape (400); content "
           "validation (by failure class, 400 or 422); existence of the addressed "
           "resource (404); stored state (409). A flow chapter may order the content "
           "checks of its own steps further.", "API-18"),
    Choice("Where rate limits come in the order",
           "Left to the implementation: a 429 may come before or after any check "
           "except route and method.", None),
    Choice("Unknown query parameters",
           "Ignored: the answer is the one without them. A parameter a route defines "
           "given twice, or with a value outside its syntax, is 400.", "API-19"),
    Choice("Unknown JSON members in requests",
           "Refused with 400 (API-6), like a missing member, a wrong type or a repeated "
           "member name.", "API-6"),
    Choice("Unknown JSON members in answers",
           "Clients ignore members they do not know, in every answer. A v1 server sends "
           "only the members the schemas list, except at the top level of the "
           "capabilities, where further members are extensions.",
           "API-20"),
    Choice("Integers in JSON",
           "An integer member is a JSON number without fraction or exponent (`2`, never "
           "`2.0` or `2e0`); anything else is 400.", "API-21"),
    Choice("Path segments",
           "Identifiers are matched after percent-decoding and must match "
           "^[A-Za-z0-9._~-]{1,64}$ (KD-2); `.` and `..` are not identifiers (400).",
           "API-22"),
    Choice("Order of lists",
           "Applications by client_id (ascending, bytewise); a device's queue in arrival "
           "order; log entries by position. Other lists are in the order their flow "
           "chapter gives.", "API-23"),
    Choice("Expired messages",
           "A message is served while the server's clock (Unix seconds) is before its "
           "expires_at; from that second on no route serves it (its record and payload "
           "are 404) and no quota counts it. When its rows and payload are deleted is "
           "left to the implementation.", "ENV-17"),
    Choice("Attempt counting",
           "Attempts are counted per user and requester (the client's address). "
           "Every challenge a server issues for a user counts against max_attempts from "
           "its issued_at second until the server's clock (whole Unix seconds) reaches "
           "issued_at + challenge_lifetime_seconds, the second it expires, answered or "
           "not; a refused request (404, 429) does not count.", "SC-2"),
)


def problem_for_failure(failure_class: str) -> ProblemType:
    """The problem type a refusal of client content with this failure class gets."""
    return PROBLEMS[FAILURE_CLASS_SLUGS[failure_class]]


def failure_class_fits(failure_class: str, status: int) -> bool:
    """Whether a problem naming `failure_class` may have `status` (API-9): the class's own
    status, or the status a limit (413, 429) or the uniform 401 gives the refusal."""
    if status in (401, 413, 429):
        return True
    slug = FAILURE_CLASS_SLUGS.get(failure_class)
    return slug is not None and PROBLEMS[slug].status == status


def problem_types_with_status(status: int) -> list[ProblemType]:
    return [p for p in PROBLEM_TYPES if p.status == status]


def problem_from_uri(uri: str) -> ProblemType | None:
    if not uri.startswith(PROBLEM_TYPE_PREFIX):
        return None
    return PROBLEMS.get(uri[len(PROBLEM_TYPE_PREFIX):])


def bearer_credential(values: list[str]) -> str:
    """API-14: the token of the request's Authorization headers (their values, in
    order). Raises DecodeError unless they are exactly one `Bearer <b64token>` of at most
    MAX_TOKEN_LENGTH characters; a server answers that with the uniform 401 (API-4).
    Surrounding whitespace of the value is not part of it (RFC 9110 section 5.5)."""
    if len(values) != 1:
        raise DecodeError("exactly one Authorization header is required", requirement="API-14")
    match = _AUTHORIZATION.match(values[0].strip(" \t"))
    if match is None:
        raise DecodeError("Authorization is not `Bearer <b64token>`", requirement="API-14")
    if len(match.group(1)) > MAX_TOKEN_LENGTH:
        raise DecodeError(f"the bearer token is longer than {MAX_TOKEN_LENGTH} characters",
                          requirement="API-14")
    return match.group(1)


DOT_SEGMENTS = frozenset({".", ".."})


def path_identifier(value: object, name: str) -> str:
    """API-22 / KD-2: a path segment used as an identifier (user_id, client_id, ...),
    percent-decoded by the caller. Raises DecodeError unless it matches the identifier
    syntax and is not a dot segment, which a client's URL handling would remove."""
    if not isinstance(value, str) or not IDENTIFIER.match(value):
        raise DecodeError(f"path parameter {name} does not match ^[A-Za-z0-9._~-]{{1,64}}$",
                          requirement="KD-2")
    if value in DOT_SEGMENTS:
        raise DecodeError(f"path parameter {name} is a dot segment", requirement="API-22")
    return value


def single_query_value(values: list[str], name: str) -> str | None:
    """API-19: the value of a query parameter a route defines, None when absent; given
    twice (even with equal values) it is a DecodeError, since two readers could take
    different ones."""
    if len(values) > 1:
        raise DecodeError(f"query parameter {name} is given {len(values)} times",
                          requirement="API-19")
    return values[0] if values else None
