"""spec/openapi.yaml and spec/schemas/*.json: valid, consistent with each other and the server.

The JSON Schema files are the source of truth; the OpenAPI component schemas mirror them
exactly, minus the two members that only make sense in a standalone file ("$schema" and
"$id").
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate
from starlette.routing import Route

from keyflows.reference.app import all_routes
from keyflows.reference.problems import UNAUTHORIZED_BODY
from keyflows.spec import keypair_publication as kp
from keyflows.spec import yamlfile
from keyflows.spec.drbg import Drbg
from keyflows.spec.encoding import b64url_encode
from keyflows.spec.errors import FAILURE_CLASSES
from keyflows.spec.key_derivation import Argon2Params

ROOT = Path(__file__).resolve().parent.parent
OPENAPI = ROOT / "spec" / "openapi.yaml"
SCHEMAS = ROOT / "spec" / "schemas"
MIRRORS = {"KeypairRecord": "keypair-record", "KeypairPublic": "keypair-public",
           "KeypairDeletion": "keypair-deletion",
           "Problem": "problem", "Capabilities": "capabilities", "Apps": "apps",
           "EnvelopeDeviceList": "envelope-device-list", "Envelope": "envelope",
           "EnvelopeAccepted": "envelope-accepted", "EnvelopeDelivery": "envelope-delivery",
           "EnvelopeQueue": "envelope-queue",
           "SessionChallenge": "session-challenge",
           "SessionChallengeAnswer": "session-challenge-answer", "Session": "session"}
HTTP_METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    loaded: dict[str, Any] = yamlfile.load(OPENAPI.read_text(encoding="utf-8"))
    return loaded


def schema_file(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((SCHEMAS / f"{name}.json").read_text(encoding="utf-8"))
    return loaded


def resolve(document: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        pointer = node["$ref"].removeprefix("#/").split("/")
        target: Any = document
        for part in pointer:
            target = target[part]
        node = target
    return node


def operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(method, path, op) for path, item in document["paths"].items()
            for method, op in item.items() if method in HTTP_METHODS]


def test_openapi_document_is_valid(document: dict[str, Any]) -> None:
    assert document["openapi"] == "3.1.0"
    validate(document)


@pytest.mark.parametrize("name", sorted(MIRRORS.values()))
def test_schema_files_are_valid_draft_2020_12(name: str) -> None:
    schema = schema_file(name)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"] == f"urn:keyflows:schema:{name}"
    Draft202012Validator.check_schema(schema)
    for node in walk(schema):
        if node is schema and name == "capabilities":
            # The one extension point: clients ignore unknown members (API-20).
            assert node["additionalProperties"] is True
            continue
        if node.get("type") == "object":
            assert node.get("additionalProperties") is False, node
            assert set(node.get("required", [])) <= set(node["properties"])


def walk(node: Any) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if isinstance(node, dict):
        out.append(node)
        for value in node.values():
            out.extend(walk(value))
    elif isinstance(node, list):
        for value in node:
            out.extend(walk(value))
    return out


@pytest.mark.parametrize(("component", "name"), sorted(MIRRORS.items()))
def test_components_mirror_schema_files(document: dict[str, Any], component: str,
                                        name: str) -> None:
    mirror = {k: v for k, v in schema_file(name).items() if k not in ("$schema", "$id")}
    assert document["components"]["schemas"][component] == mirror


def test_operations_match_the_server_routes(document: dict[str, Any]) -> None:
    served = set()
    for route in all_routes():
        assert isinstance(route, Route)
        # Starlette's {name:path} converter is OpenAPI's {name} (the tile paths, HC-44).
        path = route.path.replace(":path}", "}")
        served |= {(m.lower(), path) for m in route.methods or () if m != "HEAD"}
    documented = {(method, path) for method, path, _ in operations(document)}
    assert documented == served


def test_every_refusal_is_problem_json(document: dict[str, Any]) -> None:
    for method, path, op in operations(document):
        for status, response in op["responses"].items():
            response = resolve(document, response)
            if int(status) >= 400:
                assert list(response["content"]) == ["application/problem+json"], (method, path)
            elif int(status) != 204:
                # The binary answers: the envelope payload served raw (ENV-19), the log's
                # tiles (HC-44); the checkpoint is a signed note, text (HC-38).
                raw = (path.endswith("/messages/{message_id}/payload")
                       or path == "/v1/hashchain/tile/{path}")
                media = ("application/octet-stream" if raw else "text/plain"
                         if path == "/v1/hashchain/checkpoint" else "application/json")
                assert list(response["content"]) == [media], (method, path)


def test_authenticated_operations_document_the_uniform_401(document: dict[str, Any]) -> None:
    secured = 0
    for method, path, op in operations(document):
        if op.get("security") == []:
            # Only an operation whose credential is in its body (the session-challenge
            # answer, SC-11) may answer 401 without bearer auth, and then uniformly.
            if op.get("x-keyflows-credential") == "request-body":
                assert op["responses"]["401"] == {"$ref": "#/components/responses/Unauthorized"}
            else:
                assert "401" not in op["responses"], (method, path)
            continue
        assert op["security"] == [{"bearer": []}]
        secured += 1
        response = resolve(document, op["responses"]["401"])
        assert "WWW-Authenticate" in response["headers"]
        media = response["content"]["application/problem+json"]
        example = json.dumps(media["example"], separators=(",", ":")).encode()
        assert example == UNAUTHORIZED_BODY
        Draft202012Validator(resolve(document, media["schema"])).validate(media["example"])
        assert {"503", "400"} <= set(op["responses"]), (method, path)
    assert secured >= 3  # the keypair operations at least; flows add theirs


def test_problem_failure_classes_match_the_spec() -> None:
    assert schema_file("problem")["properties"]["failure_class"]["enum"] == list(FAILURE_CLASSES)


def _record(password: bool, version: int = 1) -> dict[str, Any]:
    rng = Drbg(f"test-openapi/{password}/{version}")
    spec = (kp.KekSpec(method="password", salt=rng(16), params=Argon2Params(2, 19456, 1))
            if password else kp.KekSpec(method="application-key"))
    return kp.seal_record(user_id="alice", client_id="app.example", key_version=version,
                          private=kp.generate_private_keys(rng), kek=rng(32), kek_spec=spec,
                          nonce=rng(12), z=rng(64)).record


@pytest.mark.parametrize("password", [False, True])
def test_spec_records_conform_to_the_schemas(password: bool) -> None:
    record = _record(password)
    Draft202012Validator(schema_file("keypair-record")).validate(record)
    Draft202012Validator(schema_file("keypair-public")).validate(kp.public_view(record))
    assert not Draft202012Validator(schema_file("keypair-public")).is_valid(record)
    extra = {**record, "comment": "x"}
    assert not Draft202012Validator(schema_file("keypair-record")).is_valid(extra)


def _b64_pattern(length: int) -> re.Pattern[str]:
    schema = schema_file("keypair-record")
    props = schema["properties"]
    enc = props["encrypted_private_keys"]["properties"]
    by_length = {32: props["public_keys"]["properties"]["x25519"], 64: props["binding_signature"],
                 12: enc["nonce"], 80: enc["ciphertext"],
                 16: enc["kek"]["oneOf"][1]["properties"]["salt"]}
    return re.compile(by_length[length]["pattern"])


@pytest.mark.parametrize("length", [12, 16, 32, 64, 80])
@given(data=st.data())
def test_b64url_patterns_accept_exactly_canonical_encodings(length: int,
                                                            data: st.DataObject) -> None:
    pattern = _b64_pattern(length)
    value = data.draw(st.binary(min_size=length, max_size=length))
    text = b64url_encode(value)
    assert pattern.match(text)
    assert not pattern.match(text + "=")
    assert not pattern.match(text[:-1])
    shorter = b64url_encode(data.draw(st.binary(min_size=length - 1, max_size=length - 1)))
    assert not pattern.match(shorter)
    if len(text) * 6 != length * 8:  # a last character carrying unused bits
        alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
        unused = len(text) * 6 - length * 8
        last = alphabet.index(text[-1])
        noncanonical = text[:-1] + alphabet[last | data.draw(st.integers(1, 2**unused - 1))]
        assert not pattern.match(noncanonical)
