"""The contract registry (keyflows.spec.contract) is complete, cited, and the one source
the schemas, the reference server and the runner use."""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from keyflows.reference import problems
from keyflows.spec import contract
from keyflows.spec.errors import FAILURE_CLASSES, DecodeError
from keyflows.spec.requirements import registry
from keyflows.spec.yamlfile import load

ROOT = Path(__file__).resolve().parent.parent
B64TOKEN = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~+/"


def cited() -> list[str]:
    rows: list[Any] = [*contract.PROBLEM_TYPES, *contract.FAILURE_STATUSES,
                       *contract.HEADER_RULES, *contract.LIMIT_RULES]
    return [r.requirement for r in rows] + [c.requirement for c in contract.CHOICES
                                            if c.requirement is not None]


def test_every_entry_cites_a_known_requirement() -> None:
    known = registry()
    assert [rid for rid in cited() if rid not in known] == []


def test_every_new_common_requirement_is_in_the_contract() -> None:
    """API-8 .. API-23 are the contract's: each is cited by at least one table entry."""
    ours = {f"API-{n}" for n in range(8, 24)}
    assert ours - set(cited()) == set()


def test_every_failure_class_has_one_status() -> None:
    assert [f.failure_class for f in contract.FAILURE_STATUSES] == list(FAILURE_CLASSES)
    for f in contract.FAILURE_STATUSES:
        assert contract.problem_for_failure(f.failure_class).status in (400, 409, 422)


def test_problem_types_are_unique_and_well_formed() -> None:
    slugs = [p.slug for p in contract.PROBLEM_TYPES]
    assert len(slugs) == len(set(slugs))
    for p in contract.PROBLEM_TYPES:
        assert 400 <= p.status <= 599 and p.title and p.when
        assert contract.problem_from_uri(p.uri) is p
    assert contract.problem_from_uri("urn:keyflows:problem:nonsense") is None
    assert contract.problem_from_uri("about:blank") is None


def test_the_problem_schema_lists_exactly_the_registered_types() -> None:
    schema = json.loads((ROOT / "spec/schemas/problem.json").read_text(encoding="utf-8"))
    assert schema["properties"]["type"]["enum"] == [p.uri for p in contract.PROBLEM_TYPES]


def test_every_documented_error_status_has_a_problem_type() -> None:
    document = load((ROOT / "spec/openapi.yaml").read_text(encoding="utf-8"))
    statuses = {int(status) for item in document["paths"].values() for op in item.values()
                if isinstance(op, dict) for status in op.get("responses", {})}
    missing = {s for s in statuses if s >= 400 and not contract.problem_types_with_status(s)}
    assert missing == set()


def test_the_reference_server_takes_its_problems_from_the_contract() -> None:
    assert problems.SLUGS == {p.slug: (p.status, p.title) for p in contract.PROBLEM_TYPES}
    assert problems.FAILURE_CLASS_SLUGS == contract.FAILURE_CLASS_SLUGS
    body = json.loads(problems.UNAUTHORIZED_BODY)
    unauthorized = contract.PROBLEMS["unauthorized"]
    assert (body["type"], body["title"], body["status"]) == (
        unauthorized.uri, unauthorized.title, unauthorized.status)
    assert problems.Unauthorized().headers == {"WWW-Authenticate": contract.BEARER_CHALLENGE}


def _problem_slugs_in_reference() -> list[tuple[str, str]]:
    """(file:line, slug) of every literal slug given to Problem(...) in reference/."""
    out = []
    for file in sorted((ROOT / "reference").glob("*.py")):
        for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) \
                    and node.func.id == "Problem" and node.args \
                    and isinstance(node.args[0], ast.Constant):
                out.append((f"{file.name}:{node.lineno}", str(node.args[0].value)))
    return out


def test_every_problem_the_reference_raises_is_registered() -> None:
    found = _problem_slugs_in_reference()
    assert found  # the scan sees the calls
    assert [(where, slug) for where, slug in found if slug not in contract.PROBLEMS] == []


def test_limit_rules_name_advertised_capability_members() -> None:
    schema = json.loads((ROOT / "spec/schemas/capabilities.json").read_text(encoding="utf-8"))
    for rule in contract.LIMIT_RULES:
        if "(fixed)" in rule.advertised:
            continue
        node = schema
        for part in rule.advertised.split("."):
            node = node["properties"][part]
        assert node["type"] == "integer", rule
        if rule.slug is not None:
            assert contract.PROBLEMS[rule.slug].status == rule.status, rule


@pytest.mark.parametrize(("values", "token"), [
    (["Bearer abc"], "abc"),
    (["bearer abc"], "abc"),
    (["BEARER   a.b-c_d~e+f/g=="], "a.b-c_d~e+f/g=="),
    ([" Bearer abc "], "abc"),
    ([], None),
    (["Bearer abc", "Bearer abc"], None),
    (["Bearer"], None),
    (["Bearer "], None),
    (["Basic abc"], None),
    (["Bearerabc"], None),
    (["Bearer a b"], None),
    (["Bearer =abc"], None),
    (["Bearer\tabc"], None),
    (["Bearer " + "a" * contract.MAX_TOKEN_LENGTH], "a" * contract.MAX_TOKEN_LENGTH),
    (["Bearer " + "a" * (contract.MAX_TOKEN_LENGTH + 1)], None),
])
def test_bearer_credential(values: list[str], token: str | None) -> None:
    if token is None:
        with pytest.raises(DecodeError) as refused:
            contract.bearer_credential(values)
        assert refused.value.requirement == "API-14"
    else:
        assert contract.bearer_credential(values) == token


@given(case=st.lists(st.booleans(), min_size=6, max_size=6), spaces=st.integers(1, 4),
       token=st.text(alphabet=B64TOKEN, min_size=1, max_size=64), padding=st.integers(0, 2))
def test_any_letter_case_of_the_scheme_is_accepted(case: list[bool], spaces: int, token: str,
                                                    padding: int) -> None:
    scheme = "".join(c.upper() if up else c for c, up in zip("bearer", case, strict=True))
    value = token + "=" * padding
    assert contract.bearer_credential([f"{scheme}{' ' * spaces}{value}"]) == value


def test_failure_class_fits() -> None:
    assert contract.failure_class_fits("decode", 400)
    assert not contract.failure_class_fits("decode", 422)
    assert contract.failure_class_fits("replay", 409)
    assert contract.failure_class_fits("params", 413)  # a limit's own status
    assert contract.failure_class_fits("signature", 401)  # a credential
    assert not contract.failure_class_fits("nonsense", 400)
