"""Schemathesis against the reference server over real HTTP (uvicorn on loopback).

Every operation of spec/openapi.yaml is exercised with generated valid and invalid input;
the checks require no 5xx, only documented status codes, content types and headers, and
responses that conform to the documented schemas. Authenticated operations get a token
the in-test account server really issued for the user of the path (or none, or a wrong
one), and some requests address, or publish, real records so that the success responses
are checked too.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.core.parameters import ParameterLocation
from schemathesis.specs.openapi.checks import positive_data_acceptance
from servers import AccountServer, RunningServer, start_account_server, start_reference_server

from keyflows.reference.config import DEFAULT_RATES
from keyflows.reference.server_lock import load_server_lock_settings
from keyflows.spec import contract
from keyflows.spec import keypair_publication as kp
from keyflows.spec.drbg import Drbg
from keyflows.spec.limits import Rate

OPENAPI = Path(__file__).resolve().parent.parent / "spec" / "openapi.yaml"
MAX_EXAMPLES = int(os.environ.get("KEYFLOWS_SCHEMATHESIS_EXAMPLES", "100"))
# In CI the same examples every run, so a result there is reproducible; a developer's
# runs keep exploring new ones.
DERANDOMIZE = os.environ.get("CI", "").lower() == "true"
KNOWN_USER = "known-user"
KNOWN_CLIENT = "known.app"
KNOWN_KEYSTORE: dict[str, str] = {}
KNOWN_KEYS: list[str] = []


@pytest.fixture(scope="module")
def account() -> Iterator[AccountServer]:
    server = start_account_server()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def server(account: AccountServer, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[RunningServer]:
    folder = tmp_path_factory.mktemp("st")
    master_key = folder / "master.key"  # the lock-layering flow's file server lock
    master_key.write_bytes(os.urandom(32))
    master_key.chmod(0o600)
    lock = load_server_lock_settings(master_key_file=str(master_key), environ={})
    # Fuzzing sends far more requests from one address than the rate limits admit; the
    # limits have their own checks (test_conformance_limits.py), so here they are wide.
    rates = {name: Rate(1_000_000, 1) for name in DEFAULT_RATES}
    running = start_reference_server(account.url, folder / "keys.db", server_lock=lock,
                                     rates=rates)
    yield running
    running.stop()


def sealed(user_id: str, client_id: str, key_version: int, label: str) -> dict[str, Any]:
    rng = Drbg(f"test-schemathesis/{label}")
    return kp.seal_record(user_id=user_id, client_id=client_id, key_version=key_version,
                          private=kp.generate_private_keys(rng), kek=rng(32),
                          kek_spec=kp.KekSpec(method="application-key"),
                          nonce=rng(12), z=rng(64)).record


@pytest.fixture(scope="module")
def base_url(server: RunningServer, account: AccountServer) -> str:
    """The server URL, once a record exists that GETs may address (so 200s are checked)."""
    _, token = account.mint(KNOWN_USER)
    response = httpx.put(f"{server.url}/v1/users/{KNOWN_USER}/apps/{KNOWN_CLIENT}/keypair",
                         json=sealed(KNOWN_USER, KNOWN_CLIENT, 1, "known"),
                         headers={"Authorization": f"Bearer {token}"}, trust_env=False)
    assert response.status_code == 201
    # lock-layering: a keystore with a key of each type, whose operations may be addressed.
    made = httpx.post(f"{server.url}/v1/users/{KNOWN_USER}/keystores",
                      json={"scenario": "server-held"},
                      headers={"Authorization": f"Bearer {token}"}, trust_env=False)
    assert made.status_code == 201
    KNOWN_KEYSTORE.update(made.json())
    for key_type in ("ed25519", "x25519", "aes256gcm"):
        key = httpx.post(f"{server.url}/v1/keystores/{made.json()['keystore_id']}/keys",
                         json={"key_type": key_type}, trust_env=False,
                         headers={"Authorization": f"Bearer {made.json()['capability']}"})
        assert key.status_code == 201
        KNOWN_KEYS.append(key.json()["key_id"])
    return server.url


# Loaded eagerly: schemathesis.pytest.from_fixture does not work with pytest 9 (it sets
# the removed Node._nodeid), so the base URL is passed to each call instead.
schema = schemathesis.openapi.from_path(OPENAPI, config=schemathesis.Config.from_dict({
    "generation": {"max-examples": MAX_EXAMPLES, "mode": "all", "deterministic": True},
    "phases": {"stateful": {"enabled": False}},
}))


def _secured(case: schemathesis.Case[Any]) -> bool:
    return bool(case.operation.definition.raw.get("security"))


def positive(case: schemathesis.Case[Any], location: ParameterLocation) -> bool:
    """Whether schemathesis generated this component as valid data."""
    if case.meta is None:
        return False
    info = case.meta.components.get(location)
    return info is None or info.mode.is_positive


@schema.parametrize()
@schema.given(data=st.data())
@settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=DERANDOMIZE,
          suppress_health_check=list(HealthCheck))
def test_api_conforms(case: schemathesis.Case[Any], data: st.DataObject, base_url: str,
                      account: AccountServer) -> None:
    # Only components generated as valid are edited: schemathesis judges a case by the
    # negative components it generated, and does not re-check edits made here.
    params = case.path_parameters or {}
    path_ok, headers_ok, body_ok = (positive(case, loc) for loc in
                                    (ParameterLocation.PATH, ParameterLocation.HEADER,
                                     ParameterLocation.BODY))
    if path_ok and case.method == "GET" and "user_id" in params and data.draw(st.booleans()):
        params["user_id"] = KNOWN_USER
        if "client_id" in params:
            params["client_id"] = KNOWN_CLIENT
    headers: dict[str, str] = {}
    if _secured(case) and path_ok and headers_ok and "keystore_id" in params:
        # lock-layering: the bearer credential is a keystore capability (LOCK-11).
        if data.draw(st.booleans()):
            params["keystore_id"] = KNOWN_KEYSTORE["keystore_id"]
            if "key_id" in params:
                params["key_id"] = data.draw(st.sampled_from(KNOWN_KEYS))
            headers["Authorization"] = "Bearer " + KNOWN_KEYSTORE["capability"]
    elif _secured(case) and path_ok and headers_ok:
        how = data.draw(st.sampled_from(["owner", "other-user", "generated"]))
        if how == "owner":
            headers["Authorization"] = "Bearer " + account.mint(params["user_id"])[1]
        elif how == "other-user":
            headers["Authorization"] = "Bearer " + account.mint()[1]
        if (case.method == "PUT" and case.path.endswith("/keypair") and how == "owner"
                and body_ok and data.draw(st.booleans())):
            # A genuinely valid record, so 201/200 (or 409) answers are checked too.
            version = data.draw(st.integers(1, 2**32 - 1))
            case.body = sealed(params["user_id"], params["client_id"], version,
                               f"{params['user_id']}/{version}")
            case.media_type = "application/json"
    response = case.call_and_validate(base_url=base_url, headers=headers or None, timeout=10,
                                      excluded_checks=[positive_data_acceptance])
    check_positive_data_acceptance(case, response)


def has_float(value: object) -> bool:
    if isinstance(value, float):
        return True
    if isinstance(value, dict):
        return any(has_float(v) for v in value.values())
    if isinstance(value, list):
        return any(has_float(v) for v in value)
    return False


# Rules that relate several fields or follow a mapping algorithm, which a JSON Schema
# cannot state: a schema-valid request may break them and is rightly refused with 400.
RULES_NO_SCHEMA_EXPRESSES = {
    "KD-5": "Argon2id m >= 8p",
    "KP-3": "a sealed ciphertext of 144 bytes exactly when public_keys has mlkem768 (80 without)",
    "HC-14": "an identity in mapped form (the HC-34 mapping)",
    "LOCK-11": "a capability in a body is base64url of a JSON object after kfc1.",
    "ENV-1": "a device list's devices in strictly increasing device_id order",
    "ENV-23": "payload_length of a STREAM (no 16-byte final chunk after full ones)",
    "HC-44": "a tile path's grammar (3-digit index elements, x prefixes, widths 1..255)",
    "HC-46": "a proof's index below its size, and its first size above 0 and not above the second",
}


def check_positive_data_acceptance(case: schemathesis.Case[Any], response: Any) -> None:
    """Schemathesis's positive_data_acceptance, minus what no JSON Schema can express.

    A schema-valid record may still carry a signature that does not verify or a low-order
    key (422), be bound to another path (422), be stale (409), or pair Argon2id m < 8p
    (400, failure class params: a cross-field rule). JSON Schema also calls 1.0 an
    integer, but keyflows requires integer literals (400, failure class decode). Anything
    else is a real rejection.
    """
    if case.meta is None or not case.meta.generation.mode.is_positive:
        return
    status = response.status_code
    if 200 <= status < 300 or status in (401, 404, 409, 422):
        return
    problem = response.json() if status in (400, 413) else {}
    if status == 413 and problem.get("requirement") in {r.requirement
                                                        for r in contract.LIMIT_RULES}:
        return  # an advertised limit (capabilities), which the schema does not carry
    failure_class = problem.get("failure_class")
    if failure_class == "params" or (failure_class == "decode" and has_float(case.body)):
        return
    if problem.get("requirement") in RULES_NO_SCHEMA_EXPRESSES:
        return
    raise AssertionError(f"schema-valid request rejected with {status}: {response.text}"
                         f" body: {str(case.body)[:600]}")
