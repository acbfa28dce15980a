"""Vectors for consumers in other languages: every YAML file has a JSON twin holding the
same data, and one schema bundle validates any file with no knowledge of `urn:` ids."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match

from keyflows.vectors import catalog
from keyflows.vectors.cli import vectors_command

SHIPPED = resources.files("keyflows.vectors")
VECTOR_DIR = Path(str(SHIPPED))


@pytest.fixture(autouse=True, scope="module")
def generate_once() -> Any:
    """`check` regenerates every file; these tests change only the shipped side, so one
    generation serves them all (the files are immutable records)."""
    files = catalog.generate_all()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(catalog, "generate_all", lambda **_: files)
        yield


def _yaml_files() -> list[Path]:
    return sorted(VECTOR_DIR.glob("*.yaml"))


def _bundle() -> dict[str, Any]:
    bundle: dict[str, Any] = json.loads(
        SHIPPED.joinpath(catalog.BUNDLE_FILE).read_text(encoding="utf-8"))
    return bundle


def test_every_yaml_file_has_a_json_twin_with_the_same_data() -> None:
    yamls = _yaml_files()
    assert {p.name for p in yamls} == set(catalog.FILE_NAMES)
    jsons = sorted(VECTOR_DIR.glob("*.json"))
    assert sorted(p.stem for p in jsons) == sorted(p.stem for p in yamls)
    for path in yamls:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=yaml.CSafeLoader)
        twin = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
        assert twin == data, path.name
        assert list(twin) == list(data)  # member order too: header first, then cases


def test_the_bundle_alone_validates_every_file() -> None:
    bundle = _bundle()
    Draft202012Validator.check_schema(bundle)
    validator = Draft202012Validator(bundle)  # no registry: the consumer knows no urn: id
    for path in sorted(VECTOR_DIR.glob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        assert list(validator.iter_errors(data)) == [], path.name


def test_the_bundle_rejects_what_the_schemas_reject() -> None:
    validator = Draft202012Validator(_bundle())
    data = json.loads((VECTOR_DIR / "key-derivation.json").read_text(encoding="utf-8"))
    data["cases"][0]["result"] = "vaild"
    error = best_match(validator.iter_errors(data))
    assert error is not None and list(error.absolute_path) == ["cases", 0, "result"]

    data["cases"][0]["result"] = "valid"
    data["schema"] = "urn:keyflows:schema:vectors:no-such-flow:1"
    assert list(validator.iter_errors(data)), "a file naming an unknown schema must fail"


def test_the_bundle_embeds_every_schema_unchanged() -> None:
    embedded = _bundle()["$defs"]
    files = sorted(VECTOR_DIR.joinpath("schemas").glob("*.schema.json"))
    assert sorted(embedded) == sorted(p.name.removesuffix(".schema.json") for p in files)
    for path in files:
        schema = json.loads(path.read_text(encoding="utf-8"))
        assert embedded[path.name.removesuffix(".schema.json")] == schema, path.name


def _copy_shipped(target: Path) -> None:
    for path in VECTOR_DIR.iterdir():
        if path.suffix in (".yaml", ".json"):
            (target / path.name).write_bytes(path.read_bytes())
    (target / "schemas").mkdir()
    (target / catalog.BUNDLE_FILE).write_bytes(SHIPPED.joinpath(catalog.BUNDLE_FILE)
                                               .read_bytes())


@pytest.mark.parametrize("edit", ["value", "whitespace"])
def test_check_fails_on_json_drift(tmp_path: Path, edit: str) -> None:
    _copy_shipped(tmp_path)
    path = tmp_path / "key-derivation.fxakeys.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    if edit == "value":
        data["cases"][0]["comment"] += " (edited)"
        path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    else:  # the same data, written differently: still drift (the bytes are canonical)
        path.write_text(json.dumps(data) + "\n", encoding="utf-8")
    result = CliRunner().invoke(vectors_command, ["check", "--dir", str(tmp_path),
                                                  "key-derivation.fxakeys"])
    assert result.exit_code == 1
    assert "key-derivation.fxakeys.json: drift" in result.output
    differs = "key-derivation.fxakeys.json: its data differs from key-derivation.fxakeys.yaml"
    assert (differs in result.output) == (edit == "value")
    assert "Traceback" not in result.output


def test_check_fails_on_bundle_drift(tmp_path: Path) -> None:
    _copy_shipped(tmp_path)
    bundle = tmp_path / catalog.BUNDLE_FILE
    bundle.write_text(bundle.read_text(encoding="utf-8").replace("every schema", "all"),
                      encoding="utf-8")
    result = CliRunner().invoke(vectors_command, ["check", "--dir", str(tmp_path),
                                                  "key-derivation.fxakeys"])
    assert result.exit_code == 1 and "schemas/bundle.json: drift" in result.output


def test_check_names_the_best_matching_schema_error_first(tmp_path: Path) -> None:
    _copy_shipped(tmp_path)
    path = tmp_path / "keypair-publication.yaml"
    text = path.read_text(encoding="utf-8")
    # An author's typo: the conditional schemas then also complain about other members.
    at = text.index("  result: valid\n")
    path.write_text(text[:at] + "  result: vaild\n" + text[at + len("  result: valid\n"):],
                    encoding="utf-8")
    result = CliRunner().invoke(vectors_command, ["check", "--dir", str(tmp_path),
                                                  "keypair-publication.yaml"])
    assert result.exit_code == 1
    errors = [line for line in result.output.splitlines() if "schema error" in line]
    assert len(errors) == 1
    assert errors[0].startswith("keypair-publication.yaml: schema error at /cases/")
    assert errors[0].endswith("/result: 'vaild' is not one of ['valid', 'invalid']")


def test_check_and_verify_take_file_names(tmp_path: Path) -> None:
    _copy_shipped(tmp_path)
    result = CliRunner().invoke(vectors_command, ["check", "--dir", str(tmp_path),
                                                  "hashchain.mute", "key-derivation.yaml"])
    assert result.exit_code == 0, result.output
    assert [line.split(":")[0] for line in result.output.splitlines()] == [
        "key-derivation.yaml", "hashchain.mute.yaml", catalog.BUNDLE_FILE]
    result = CliRunner().invoke(vectors_command, ["verify", "no-such-flow"])
    assert result.exit_code == 1
    assert result.output.startswith("Error: no vector file 'no-such-flow'; the files are ")
