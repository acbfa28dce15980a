"""The HTTP API as the runner reads it from spec/openapi.yaml: its routes, operations and
the schema of every documented answer.

The generic checks are generated from these operations (so a route added to the
document is checked without a line of runner code), and every answer of every check is
validated against the schema the document gives for its operation, status and media
type (a check that passes otherwise fails when an answer does not match its schema).

Operation extensions the runner reads:
- `x-keyflows-credential`: how a bearer-secured operation authenticates: `account` (an
  access token the account server validates for the path's user_id), `capability` (a
  keystore capability, lock-layering), or `request-body` (a token in the body, not a
  header). Without it, the rule the bearer security scheme states applies: a capability
  under /v1/keystores/, an account token elsewhere.
- `x-keyflows-body-limit`: the capabilities member bounding the request body (default
  `limits.max_body_bytes`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cache
from importlib.resources import files
from typing import Any

import jsonschema
import referencing
from referencing.jsonschema import DRAFT202012

from keyflows.spec.yamlfile import load as load_yaml

DOCUMENT_URI = "urn:keyflows:openapi"
METHODS = ("GET", "PUT", "POST", "DELETE", "PATCH")
ACCOUNT, CAPABILITY, REQUEST_BODY, NONE = "account", "capability", "request-body", "none"
CAPABILITY_PREFIX = "/v1/keystores/"
DEFAULT_BODY_LIMIT = "limits.max_body_bytes"
ANY_OPERATION_STATUSES = (408, 429, 503)
"""Answers the contract allows on every operation whether documented there or not: a
header or body deadline (408), a rate limit or quota (429, API-51; "a 429 may come
before or after any check except route and method"), a busy server or an unclear
account server (503). Their body is a problem (components/schemas/Problem)."""
PROBLEM_SCHEMA = "/components/schemas/Problem"
_PARAM = re.compile(r"\{([A-Za-z0-9_]+)\}")


@dataclass(frozen=True)
class Parameter:
    name: str
    schema: dict[str, Any]


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    operation_id: str
    flow: str
    """The tag: a flow id, or `common`."""
    credential: str
    """account, capability, request-body or none."""
    parameters: tuple[Parameter, ...]
    body_media_types: tuple[str, ...]
    body_required: bool
    body_limit: str
    statuses: tuple[str, ...]
    pointer: str
    """JSON pointer of the operation in the document."""

    @property
    def has_body(self) -> bool:
        return bool(self.body_media_types)

    @property
    def route(self) -> str:
        return route_name(self.path)


@dataclass
class Api:
    document: dict[str, Any]
    operations: list[Operation]
    _patterns: list[tuple[re.Pattern[str], str]] = field(default_factory=list)
    _validators: dict[tuple[str, str, str], Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for path in self.paths():
            regex = "".join(r"[^/]+" if part.startswith("{") else re.escape(part)
                            for part in re.split(r"(\{[A-Za-z0-9_]+\})", path))
            self._patterns.append((re.compile(f"\\A{regex}\\Z"), path))
        self._registry = referencing.Registry().with_resource(
            DOCUMENT_URI, DRAFT202012.create_resource(self.document))

    def paths(self) -> list[str]:
        return list(self.document.get("paths", {}))

    def methods_of(self, path: str) -> list[str]:
        return [m.upper() for m in self.document["paths"][path] if m.upper() in METHODS]

    def route_of(self, concrete: str) -> str | None:
        """The path template a concrete path (query string ignored) belongs to."""
        concrete = concrete.split("?", 1)[0]
        for pattern, path in self._patterns:
            if pattern.match(concrete):
                return path
        return None

    def operation(self, method: str, concrete: str) -> Operation | None:
        path = self.route_of(concrete)
        if path is None:
            return None
        return next((o for o in self.operations if o.path == path and o.method == method),
                    None)

    def _response(self, op: Operation, status: int) -> tuple[dict[str, Any], str] | None:
        """The response object for a status (or `default`) and its JSON pointer."""
        responses = self.document["paths"][op.path][op.method.lower()]["responses"]
        for key in (str(status), f"{str(status)[0]}XX", "default"):
            if key in responses:
                pointer = f"{op.pointer}/responses/{key}"
                return self._deref(responses[key], pointer)
        return None

    def _deref(self, node: dict[str, Any], pointer: str) -> tuple[dict[str, Any], str]:
        while "$ref" in node:
            ref = node["$ref"]
            if not ref.startswith("#/"):
                raise ValueError(f"unsupported reference {ref} in the OpenAPI document")
            pointer = ref[1:]
            node = self.document
            for part in ref[2:].split("/"):
                node = node[_unescape(part)]
        return node, pointer

    def answer_problem(self, method: str, concrete: str, status: int, media_type: str,
                       body: Any) -> str | None:
        """Why an answer does not match the document, or None when it does (or the
        document does not describe it: an unknown route, a body that is not JSON)."""
        op = self.operation(method, concrete)
        if op is None or status == 0:
            return None
        found = self._response(op, status)
        if found is None and status in ANY_OPERATION_STATUSES:
            return self._problem_mismatch(op, status, media_type, body)
        if found is None:
            return (f"status {status} is not a documented answer of {op.method} {op.path} "
                    f"(documented: {', '.join(op.statuses)})")
        response, pointer = found
        content = response.get("content") or {}
        if not content:
            return None
        if media_type not in content:
            return (f"{op.method} {op.path} answered {status} with content-type "
                    f"{media_type or '(none)'}; documented: {', '.join(content)}")
        if body is _NOT_JSON or "schema" not in content[media_type]:
            return None
        validator = self._validator(f"{pointer}/content/{_escape(media_type)}/schema")
        error = jsonschema.exceptions.best_match(validator.iter_errors(body))
        if error is None:
            return None
        where = "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}"
                              for p in error.absolute_path)
        message = error.message if len(error.message) < 300 else error.message[:297] + "..."
        return (f"the {status} answer of {op.method} {op.path} does not match its schema at "
                f"{where}: {message}")

    def _problem_mismatch(self, op: Operation, status: int, media_type: str,
                          body: Any) -> str | None:
        if media_type != "application/problem+json":
            return (f"{op.method} {op.path} answered {status} with content-type "
                    f"{media_type or '(none)'}; expected application/problem+json")
        if body is _NOT_JSON:
            return None
        error = jsonschema.exceptions.best_match(
            self._validator(PROBLEM_SCHEMA).iter_errors(body))
        if error is None:
            return None
        return (f"the {status} answer of {op.method} {op.path} is not a problem of the "
                f"documented shape: {error.message[:300]}")

    def value_fits(self, schema: dict[str, Any], value: str) -> bool:
        """Whether a path-parameter value (a string on the wire) fits its schema."""
        if schema.get("type") == "integer":
            try:
                return bool(self._schema_validator(schema).is_valid(int(value)))
            except ValueError:
                return False
        return bool(self._schema_validator(schema).is_valid(value))

    def _schema_validator(self, schema: dict[str, Any]) -> Any:
        ref = schema.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/"):
            return self._validator(ref[1:])
        return jsonschema.Draft202012Validator(schema, registry=self._registry)

    def _validator(self, pointer: str) -> Any:
        key = ("", "", pointer)
        validator = self._validators.get(key)
        if validator is None:
            schema = {"$ref": f"{DOCUMENT_URI}#{pointer}"}
            validator = jsonschema.Draft202012Validator(schema, registry=self._registry)
            self._validators[key] = validator
        return validator


class _NotJson:
    """Marker: the body was not JSON (its media type check still applies)."""


_NOT_JSON = _NotJson()
NOT_JSON = _NOT_JSON


def _escape(part: str) -> str:
    return part.replace("~", "~0").replace("/", "~1")


def _unescape(part: str) -> str:
    return part.replace("~1", "/").replace("~0", "~")


def route_name(path: str) -> str:
    """A check-id segment for a path template: its literal segments joined by '-', and
    the name of a trailing parameter (`/v1/users/{user_id}/apps/{client_id}/keypair` ->
    `users-apps-keypair`; `/v1/keystores/{keystore_id}` -> `keystores-keystore-id`)."""
    parts = path.strip("/").split("/")
    literal = [p for p in parts if not p.startswith("{")]
    if literal and literal[0] == "v1":
        literal = literal[1:]
    if parts and parts[-1].startswith("{"):
        literal.append(parts[-1].strip("{}").replace("_", "-"))
    name = "-".join(literal).lower()
    return re.sub(r"[^a-z0-9-]+", "-", name).strip("-") or "root"


def _operation(document: dict[str, Any], path: str, method: str) -> Operation:
    item = document["paths"][path]
    op = item[method.lower()]
    params: dict[str, Parameter] = {}
    for raw in [*item.get("parameters", []), *op.get("parameters", [])]:
        node = raw
        while "$ref" in node:
            node = document
            for part in raw["$ref"][2:].split("/"):
                node = node[_unescape(part)]
            raw = node
        if node.get("in") == "path":
            params[node["name"]] = Parameter(node["name"], dict(node.get("schema", {})))
    body = op.get("requestBody") or {}
    security = op.get("security", document.get("security")) or []
    credential = op.get("x-keyflows-credential")
    if credential is None and any("bearer" in s for s in security):
        credential = CAPABILITY if path.startswith(CAPABILITY_PREFIX) else ACCOUNT
    elif credential is None:
        credential = NONE
    tags = op.get("tags") or ["common"]
    ordered = tuple(params[name] for name in _PARAM.findall(path) if name in params)
    return Operation(
        method=method, path=path, operation_id=op.get("operationId", ""), flow=tags[0],
        credential=credential, parameters=ordered,
        body_media_types=tuple(body.get("content", {})), body_required=bool(
            body.get("required")), body_limit=op.get("x-keyflows-body-limit",
                                                     DEFAULT_BODY_LIMIT),
        statuses=tuple(str(s) for s in op.get("responses", {})),
        pointer=f"/paths/{_escape(path)}/{method.lower()}")


@cache
def api() -> Api:
    """The shipped OpenAPI document (spec/openapi.yaml), parsed once."""
    text = (files("keyflows.spec") / "openapi.yaml").read_text(encoding="utf-8")
    document = load_yaml(text)
    operations = [_operation(document, path, method.upper())
                  for path, item in document.get("paths", {}).items()
                  for method in item if method.upper() in METHODS]
    return Api(document=document, operations=operations)
