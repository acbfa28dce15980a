"""RFC 9457 problem details (application/problem+json), the only error format (API-2).

Types, statuses and titles come from the contract registry (keyflows.spec.contract).
Handlers raise `Problem`; the app turns it into a response. Bodies are serialised with no
spaces so equal problems are byte-identical, which the uniform 401 (API-4) relies on.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.responses import Response

from keyflows.spec import contract
from keyflows.spec.errors import SpecError

PROBLEM_MEDIA_TYPE = contract.PROBLEM_MEDIA_TYPE
TYPE_PREFIX = contract.PROBLEM_TYPE_PREFIX

# slug -> (status, title), from the contract's problem-type table (API-8).
SLUGS: dict[str, tuple[int, str]] = {p.slug: (p.status, p.title) for p in contract.PROBLEM_TYPES}

# Failure class of a SpecError -> problem slug (the contract's failure-class table, API-9).
FAILURE_CLASS_SLUGS: dict[str, str] = dict(contract.FAILURE_CLASS_SLUGS)

UNAUTHORIZED_DETAIL = "The request does not carry valid credentials for this resource."
UNAUTHORIZED_BODY = json.dumps(
    {"type": TYPE_PREFIX + "unauthorized", "title": "Unauthorized", "status": 401,
     "detail": UNAUTHORIZED_DETAIL},
    separators=(",", ":"),
).encode("ascii")


class Problem(Exception):
    """A refusal to be answered as problem+json."""

    def __init__(self, slug: str, detail: str, *, failure_class: str | None = None,
                 requirement: str | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.slug = slug
        self.status, self.title = SLUGS[slug]
        self.detail = detail
        self.failure_class = failure_class
        self.requirement = requirement
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": TYPE_PREFIX + self.slug, "title": self.title,
                               "status": self.status, "detail": self.detail}
        if self.failure_class is not None:
            out["failure_class"] = self.failure_class
        if self.requirement is not None:
            out["requirement"] = self.requirement
        return out

    def response(self) -> Response:
        return problem_response(self.status, self.body(), self.headers)


class Unauthorized(Problem):
    """Every authentication failure, whatever its reason, looks exactly the same (API-4)."""

    def __init__(self) -> None:
        super().__init__("unauthorized", UNAUTHORIZED_DETAIL,
                         headers={"WWW-Authenticate": contract.BEARER_CHALLENGE})

    def response(self) -> Response:
        return Response(UNAUTHORIZED_BODY, status_code=401, headers=self.headers,
                        media_type=PROBLEM_MEDIA_TYPE)


def problem_response(status: int, body: dict[str, Any],
                     headers: dict[str, str] | None = None) -> Response:
    content = json.dumps(body, separators=(",", ":"), ensure_ascii=True).encode("ascii")
    return Response(content, status_code=status, headers=headers, media_type=PROBLEM_MEDIA_TYPE)


def from_spec_error(exc: SpecError) -> Problem:
    """Map a spec rejection to its HTTP problem by failure class."""
    slug = FAILURE_CLASS_SLUGS.get(exc.failure_class, "invalid")
    return Problem(slug, str(exc.args[0]) if exc.args else exc.failure_class,
                   failure_class=exc.failure_class, requirement=exc.requirement)


def malformed(detail: str, *, requirement: str = "API-6") -> Problem:
    """A request that is not well-formed (failure class decode)."""
    return Problem("malformed", detail, failure_class="decode", requirement=requirement)
