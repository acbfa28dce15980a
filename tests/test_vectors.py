"""The shipped vectors: canonical, schema-valid, verified by the spec, and honest.

`check` and `verify` run through the real CLI (click's runner), the same code path
`keyflows vectors check|verify` takes.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from jsonschema import Draft202012Validator

from keyflows.spec import keypair_publication as kp
from keyflows.spec import primitives
from keyflows.spec.drbg import Drbg
from keyflows.spec.encoding import b64url_decode
from keyflows.spec.errors import FAILURE_CLASSES, SpecError
from keyflows.spec.requirements import registry
from keyflows.vectors import catalog
from keyflows.vectors import key_derivation as vkd
from keyflows.vectors.cli import vectors_command
from keyflows.vectors.framework import iter_cases, load_yaml

SHIPPED = resources.files("keyflows.vectors")


def shipped(name: str) -> dict[str, Any]:
    return load_yaml(SHIPPED.joinpath(name).read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def files() -> dict[str, dict[str, Any]]:
    return {name: shipped(name) for name in catalog.FILE_NAMES}


def all_cases(files: dict[str, dict[str, Any]]) -> list[tuple[str, Mapping[str, Any]]]:
    return [(name, case) for name, plain in files.items() for case in iter_cases(plain)]


def copy_shipped(target: Path) -> None:
    """Every shipped file (YAML, its JSON twin, the schema bundle) into `target`."""
    for name in catalog.FILE_NAMES:
        for shipped_name in (name, name.removesuffix(".yaml") + ".json"):
            (target / shipped_name).write_bytes(SHIPPED.joinpath(shipped_name).read_bytes())
    (target / "schemas").mkdir()
    (target / catalog.BUNDLE_FILE).write_bytes(SHIPPED.joinpath(catalog.BUNDLE_FILE).read_bytes())


# --- the commands ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def _generated() -> list[Any]:
    return catalog.generate_all()


@pytest.fixture
def generated_once(_generated: list[Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """The commands regenerate every file; these tests change only the shipped side, so
    one generation (immutable records) serves them all."""
    monkeypatch.setattr(catalog, "generate_all", lambda **_: _generated)


@pytest.mark.usefixtures("generated_once")
def test_check_is_clean() -> None:
    result = CliRunner().invoke(vectors_command, ["check"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert [line.split(":")[0] for line in lines] == [*catalog.FILE_NAMES, catalog.BUNDLE_FILE]
    assert all(": ok, " in line for line in lines), lines
    for name, line in zip(catalog.FILE_NAMES, lines, strict=False):
        assert line.endswith(f"; {name.removesuffix('.yaml')}.json holds the same data"), line


def test_verify_agrees_on_every_case() -> None:
    result = CliRunner().invoke(vectors_command, ["verify"])
    assert result.exit_code == 0, result.output
    for line in result.output.splitlines():
        assert line.endswith(", 0 disagreed"), line


@pytest.mark.usefixtures("generated_once")
def test_generate_writes_the_shipped_bytes(tmp_path: Path) -> None:
    result = CliRunner().invoke(vectors_command, ["generate", "--dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    written = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.*"))
    expected = sorted([*catalog.FILE_NAMES,
                       *(name.removesuffix(".yaml") + ".json" for name in catalog.FILE_NAMES),
                       catalog.BUNDLE_FILE])
    assert written == expected
    for name in expected:
        assert (tmp_path / name).read_bytes() == SHIPPED.joinpath(name).read_bytes(), name


def test_generation_is_deterministic_and_cheap() -> None:
    first = [f.dump() for f in catalog.generate_all(self_check=False)]
    second = [f.dump() for f in catalog.generate_all(self_check=False)]
    assert first == second
    # Argon2id runs are memoised per (password, salt, params): the budget is small
    # (one run per distinct input; the key-committing records' two-password case adds one).
    assert 0 < vkd.argon2id_runs() <= 10


@pytest.mark.usefixtures("generated_once")
def test_tampered_hex_digit_fails_check_and_verify(tmp_path: Path) -> None:
    copy_shipped(tmp_path)
    path = tmp_path / "key-derivation.yaml"
    text = path.read_text(encoding="utf-8")
    at = text.index("    kbr: ") + len("    kbr: ")
    digit = text[at]
    path.write_text(text[:at] + ("1" if digit == "0" else "0") + text[at + 1:], encoding="utf-8")

    check = CliRunner().invoke(vectors_command, ["check", "--dir", str(tmp_path),
                                                 "key-derivation"])
    assert check.exit_code == 1
    assert "key-derivation.yaml: drift" in check.output
    assert "-    kbr: " in check.output and "+    kbr: " in check.output  # the diff excerpt
    assert "Traceback" not in check.output

    verify = CliRunner().invoke(vectors_command, ["verify", "--dir", str(tmp_path),
                                                  "key-derivation"])
    assert verify.exit_code == 1
    summary = re.search(r"key-derivation\.yaml: (\d+) cases, (\d+) agreed, 1 disagreed",
                        verify.output)
    assert summary is not None, verify.output
    assert int(summary.group(2)) == int(summary.group(1)) - 1
    assert "kd-v1-app-key-0: outputs.kbr" in verify.output


def test_a_wrong_failure_class_is_a_disagreement(tmp_path: Path) -> None:
    copy_shipped(tmp_path)
    path = tmp_path / "keypair-publication.yaml"
    text = path.read_text(encoding="utf-8")
    marker = "- id: kp-v1-app-key-0/validate/x25519-low-order-zero\n"
    start = text.index(marker)
    at = text.index("    class: point\n", start)
    path.write_text(text[:at] + "    class: signature\n" + text[at + len("    class: point\n"):],
                    encoding="utf-8")
    verify = CliRunner().invoke(vectors_command, ["verify", "--dir", str(tmp_path)])
    assert verify.exit_code == 1
    assert "kp-v1-app-key-0/validate/x25519-low-order-zero: rejected as point" in verify.output


@pytest.mark.usefixtures("generated_once")
def test_missing_or_broken_files_cost_one_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(vectors_command, ["verify", "--dir", str(tmp_path)])
    assert result.exit_code == 1
    assert "key-derivation.yaml is missing" in result.output
    assert "Traceback" not in result.output and len(result.output.splitlines()) == 1

    copy_shipped(tmp_path)
    path = tmp_path / "key-derivation.yaml"
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    assert lines[3] == "flow: key-derivation\n"
    lines[3] = "flow: key-derivation: x\n"  # a hand edit gone wrong on line 4
    path.write_text("".join(lines), encoding="utf-8")
    result = CliRunner().invoke(vectors_command, ["check", "--dir", str(tmp_path)])
    assert result.exit_code == 1
    # The line and column of the error, as an editor counts them.
    last = result.output.splitlines()[-1]
    # libyaml and pure-Python PyYAML word the problem differently ("here" / "in this context")
    assert last.startswith("Error: key-derivation.yaml:4:21: mapping values are not allowed ")
    assert last.endswith(" (not valid YAML)")
    assert "Traceback" not in result.output


def test_generate_refuses_an_installed_package(monkeypatch: pytest.MonkeyPatch,
                                               tmp_path: Path) -> None:
    import keyflows.vectors as package

    site = tmp_path / "site-packages" / "keyflows" / "vectors"
    site.mkdir(parents=True)
    monkeypatch.setattr(package, "__file__", str(site / "__init__.py"))
    result = CliRunner().invoke(vectors_command, ["generate"])
    assert result.exit_code == 1
    assert "not run from a source checkout" in result.output
    assert "--dir" in result.output and "Traceback" not in result.output


# --- schemas ---------------------------------------------------------------------------------

def test_schemas_are_valid_draft_2020_12() -> None:
    for schema in catalog.schemas().values():
        Draft202012Validator.check_schema(schema)
    assert {s.rsplit(":", 2)[1] for s in catalog.schemas()} == {
        "common", *(name.removesuffix(".yaml") for name in catalog.FILE_NAMES)}


def test_every_file_validates_against_its_schema(files: dict[str, dict[str, Any]]) -> None:
    for name, plain in files.items():
        assert plain["schema"].endswith(f":{name.removesuffix('.yaml')}:1")
        assert catalog.schema_errors(plain) == [], name


def _first(plain: dict[str, Any], case_id: str) -> dict[str, Any]:
    return next(c for c in plain["cases"] if c["id"] == case_id)


@pytest.mark.parametrize("mutate, expected", [
    (lambda p: _first(p, "kp-v1-app-key-0/seal")["inputs"].update(extra=1),
     "Additional properties"),
    (lambda p: _first(p, "kp-v1-app-key-0/seal")["inputs"].update(nonce="00" * 11),
     "does not match"),
    (lambda p: _first(p, "kp-v1-app-key-0/seal").update(failure={"class": "aead", "step": "9"}),
     "is not of type 'null'"),
    (lambda p: _first(p, "kp-v1-app-key-0/validate/x25519-low-order-zero").update(failure=None),
     "is not of type 'object'"),
    (lambda p: _first(p, "kp-v1-app-key-0/validate")["inputs"]["record"].update(extra=1),
     "Additional properties"),
    (lambda p: _first(p, "kp-v1-app-key-0/open").update(operation="decrypt"),
     "is not one of"),
    (lambda p: _first(p, "kp-v1-app-key-0/open")["inputs"].pop("secret"),
     "'secret' is a required property"),
    (lambda p: p.update(number_of_cases=1), "number_of_cases is 1"),
    (lambda p: p["notes"].update(badflag={"description": "x", "effect": "y"}),
     "does not match"),
])
def test_the_schema_rejects_malformed_files(files: dict[str, dict[str, Any]], mutate: Any,
                                            expected: str) -> None:
    plain = copy.deepcopy(files["keypair-publication.yaml"])
    mutate(plain)
    errors = catalog.schema_errors(plain)
    assert errors and any(expected in e for e in errors), errors


# --- content rules ---------------------------------------------------------------------------

def test_many_negatives_across_the_two_flows(files: dict[str, dict[str, Any]]) -> None:
    negatives = [c for _, c in all_cases(files) if c["result"] == "invalid"]
    assert len(negatives) >= 30
    positives = [c for _, c in all_cases(files) if c["result"] == "valid"]
    assert len(positives) >= 20
    classes = {c["failure"]["class"] for c in negatives}
    assert {"decode", "length", "params", "point", "aead", "signature", "binding",
            "replay"} <= classes


def test_requirements_classes_and_flags_are_declared(files: dict[str, dict[str, Any]]) -> None:
    known = registry()
    for name, plain in files.items():
        glossary = plain["notes"]
        used: set[str] = set()
        for case in iter_cases(plain):
            assert case["requirements"], case["id"]
            for rid in case["requirements"]:
                assert rid in known, (name, case["id"], rid)
            if case["failure"] is not None:
                assert case["failure"]["class"] in FAILURE_CLASSES, case["id"]
            for flag in case["flags"]:
                assert flag in glossary, (name, case["id"], flag)
            used.update(case["flags"])
        assert used == set(glossary), f"{name}: glossary flags never used: {set(glossary) - used}"


def test_case_ids_are_unique_and_descriptive(files: dict[str, dict[str, Any]]) -> None:
    ids = [c["id"] for _, c in all_cases(files)]
    assert len(ids) == len(set(ids))
    for expected in ("kp-v1-app-key-0/seal", "kp-v1-password-0/open/wrong-password",
                     "kp-v1-app-key-1/validate/x25519-low-order-order8-a",
                     "kd-v1-app-key-0/kb-truncated", "kd-fxakeys-kbr-0",
                     "kp-fxakeys-enc-0/open/uppercase-hex", "kp-v1-replacement/equal"):
        assert expected in ids


def test_random_inputs_come_from_the_labelled_drbg(files: dict[str, dict[str, Any]]) -> None:
    seal = _first(files["keypair-publication.yaml"], "kp-v1-app-key-0/seal")["inputs"]
    drbg = Drbg("keypair-publication/v1/app-key-0")
    assert [seal["x25519_private"], seal["ed25519_seed"], seal["kek"]["kb"], seal["nonce"]] == [
        drbg(32).hex(), drbg(32).hex(), drbg(32).hex(), drbg(12).hex()]
    kbr = _first(files["key-derivation.fxakeys.yaml"], "kd-fxakeys-kbr-1")["inputs"]
    assert kbr["kb"] == Drbg("key-derivation/fxakeys/kbr-0")(32).hex()


def _public_keys(record: dict[str, Any]) -> kp.PublicKeys:
    return kp.PublicKeys(x25519=b64url_decode(record["public_keys"]["x25519"]),
                         ed25519=b64url_decode(record["public_keys"]["ed25519"]))


def test_point_cases_carry_a_valid_signature(files: dict[str, dict[str, Any]]) -> None:
    """A verifier that checked the signature before the point would accept these: the
    point check must be the one that rejects (a high-level check must not mask it)."""
    plain = files["keypair-publication.yaml"]
    point_cases = [c for c in iter_cases(plain) if c["operation"] == "validate-publication"
                   and {"LowOrderPoint", "NonCanonicalPoint"} & set(c["flags"])
                   and not c["id"].split("/")[-1].startswith("bitflip-")]
    assert len(point_cases) == 4 * 9
    for case in point_cases:
        record = case["inputs"]["record"]
        message = kp.binding_message(record["user_id"], record["client_id"],
                                     record["key_version"], _public_keys(record),
                                     record["change"]["type"])
        primitives.ed25519_verify(_public_keys(record).ed25519, message,
                                  b64url_decode(record["binding_signature"]))
        assert case["failure"]["class"] == "point"


def test_rebound_cases_pass_every_check_but_the_aead(files: dict[str, dict[str, Any]]) -> None:
    plain = files["keypair-publication.yaml"]
    rebound = [c for c in iter_cases(plain) if "Rebound" in c["flags"]]
    assert len(rebound) == 4 * 3
    for case in rebound:
        inputs = case["inputs"]
        kp.validate_publication(inputs["record"], user_id=inputs["user_id"],
                                client_id=inputs["client_id"])
        assert case["failure"]["class"] == "aead"


def _bare_gcm(case: Mapping[str, Any], kek: bytes) -> bytes:
    """AES-GCM alone, without the commitment check of KP-21."""
    inputs = case["inputs"]
    record = kp.parse_record(inputs["record"])
    assert record.kek is not None
    aad = kp.record_aad(inputs["user_id"], inputs["client_id"], record.key_version,
                        record.kek, record.public_keys)
    keys = kp.record_keys(kek, record.nonce, aad)
    return primitives.aes256gcm_decrypt(keys.aead_key, record.nonce, record.ciphertext, aad)


def test_mismatched_private_keys_decrypt_honestly(files: dict[str, dict[str, Any]]) -> None:
    plain = files["keypair-publication.yaml"]
    for case in (c for c in iter_cases(plain) if "MismatchedPrivateKeys" in c["flags"]):
        inputs, kek = case["inputs"], bytes.fromhex(case["intermediates"]["kek"])
        plaintext = _bare_gcm(case, kek)
        record = kp.parse_record(inputs["record"])
        assert kp.public_keys_of(kp.PrivateKeys(plaintext[:32], plaintext[32:64],
                                                plaintext[64:] or None)) != \
            record.public_keys
        with pytest.raises(SpecError) as raised:
            kp.open_record(inputs["record"], user_id=inputs["user_id"],
                           client_id=inputs["client_id"], kek=kek)
        assert raised.value.failure_class == "binding" and raised.value.requirement == "KP-11"


def test_partitioning_ciphertext_authenticates_under_both_passwords(
        files: dict[str, dict[str, Any]]) -> None:
    """KP-21: the crafted ciphertext really opens under both passwords' AEAD keys with bare
    AES-GCM (pyca), so only the commitment makes the second password fail, and it fails
    there (class aead, KP-21) rather than after decryption (class binding, KP-11)."""
    plain = files["keypair-publication.yaml"]
    cases = [c for c in iter_cases(plain) if "PartitioningCiphertext" in c["flags"]]
    assert {c["id"].rsplit("/", 1)[1] for c in cases} == {
        "partitioning-second-password", "partitioning-first-password"}
    assert cases[0]["inputs"]["record"] == cases[1]["inputs"]["record"]
    plaintexts = set()
    for case in cases:
        kek = bytes.fromhex(case["intermediates"]["kek"])
        plaintext = _bare_gcm(case, kek)
        assert plaintext.hex() == case["intermediates"]["gcm_plaintext"]
        plaintexts.add(plaintext)
        inputs = case["inputs"]
        with pytest.raises(SpecError) as raised:
            kp.open_record(inputs["record"], user_id=inputs["user_id"],
                           client_id=inputs["client_id"], kek=kek)
        assert (raised.value.failure_class, raised.value.requirement) == (
            case["failure"]["class"], "KP-21" if "second" in case["id"] else "KP-11")
    assert len(plaintexts) == 2  # two keys, two different plaintexts, one ciphertext


def test_commitment_failures_happen_before_aes_gcm(files: dict[str, dict[str, Any]]) -> None:
    """Every open case refused by KP-21 carries a commitment other than the record's."""
    plain = files["keypair-publication.yaml"]
    refused = [c for c in iter_cases(plain) if c["operation"] == "open"
               and c["result"] == "invalid" and c["failure"]["class"] == "aead"
               and "KP-21" in c["requirements"]]
    assert len(refused) >= 4 * 5
    for case in refused:
        stated = b64url_decode(case["inputs"]["record"]["encrypted_private_keys"]["commitment"])
        assert stated.hex() != case["intermediates"]["commitment"], case["id"]


def test_bad_point_values_are_the_spec_low_order_set() -> None:
    from keyflows.vectors import keypair_publication as vkp

    low = {int.from_bytes(p, "little") for slug, p, _, flags in
           vkp._bad_points(vkp.material(vkp.BASES[0])) if flags == ("LowOrderPoint",)}
    assert low == set(primitives.X25519_LOW_ORDER_U)


def test_every_yaml_value_round_trips_as_json(files: dict[str, dict[str, Any]]) -> None:
    # Wire records must be JSON-shaped so an implementation can serialise them as given.
    for name, plain in files.items():
        assert json.loads(json.dumps(plain)) == plain, name


def test_shipped_files_end_with_one_newline_and_never_fold() -> None:
    # Every line is a key, a list item or the document start: a folded scalar would leave a
    # continuation line that is neither.
    line_shape = re.compile(r"^ *(?:- |-$|[A-Za-z_][A-Za-z0-9_]*:(?: |$))")
    for name in catalog.FILE_NAMES:
        text = SHIPPED.joinpath(name).read_text(encoding="utf-8")
        assert text.startswith("---\n") and text.endswith("\n") and not text.endswith("\n\n")
        for number, line in enumerate(text.splitlines()[1:], start=2):
            assert line_shape.match(line), f"{name}:{number}: {line[:60]}"


class _Yaml12CoreLoader(yaml.CSafeLoader):
    """A loader resolving plain scalars by the YAML 1.2 core schema, as js-yaml, Go and
    Rust readers do; PyYAML itself follows YAML 1.1."""


_Yaml12CoreLoader.yaml_implicit_resolvers = {
    k: list(v) for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Yaml12CoreLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?$"),
    list("-+.0123456789"),
)
_Yaml12CoreLoader.add_implicit_resolver(
    "tag:yaml.org,2002:int", re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$"),
    list("-+0123456789"),
)


@pytest.mark.parametrize("name", catalog.FILE_NAMES)
def test_files_read_the_same_under_yaml_1_2(name: str) -> None:
    """A hex string such as '08' or '12e6' must be quoted, or a YAML 1.2 reader in
    another language sees a number where the vector has bytes."""
    text = SHIPPED.joinpath(name).read_text(encoding="utf-8")
    assert yaml.load(text, Loader=_Yaml12CoreLoader) == yaml.load(text, Loader=yaml.CSafeLoader)
