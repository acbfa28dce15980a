"""The checks generated from spec/openapi.yaml: one per common rule and route, present
for every route of the document, and each catching a server that breaks its rule on
one route (tests/broken_generic.py). The unbroken reference passes them all in the
embedded run (tests/test_conformance.py)."""

from __future__ import annotations

import json
import os
import socket
from typing import Any

import pytest
from broken_generic import VARIANTS, GenericVariant
from broken_servers import ASGIApp
from runner_runs import run_conformance
from servers import start_reference_server

from keyflows.conformance.openapi import ACCOUNT, CAPABILITY, NONE, REQUEST_BODY, api, route_name
from keyflows.conformance.registry import all_checks
from keyflows.reference.server_lock import load_server_lock_settings


def test_every_route_and_operation_has_its_generic_checks() -> None:
    ids = {c.id for c in all_checks()}
    routes = {route_name(p) for p in api().paths()}
    assert len(routes) == len(api().paths()), "two routes share a check-id segment"
    for op in api().operations:
        prefix = f"common/{op.route}"
        assert f"{prefix}/methods" in ids
        if op.parameters:
            assert f"{prefix}/identifiers" in ids
        assert op.credential in (ACCOUNT, CAPABILITY, REQUEST_BODY, NONE), op
        has_auth = f"{prefix}/{op.method.lower()}-authentication" in ids
        assert has_auth == (op.credential in (ACCOUNT, CAPABILITY)), op
        if op.credential == ACCOUNT:
            assert "{user_id}" in op.path, f"{op.method} {op.path}: whose token?"
        has_body = f"{prefix}/{op.method.lower()}-body" in ids
        assert has_body == ("application/json" in op.body_media_types
                            and op.credential != REQUEST_BODY), op


def test_generic_checks_apply_to_the_flow_of_their_route() -> None:
    routes = {o.route for o in api().operations}
    for check in all_checks():
        parts = check.id.split("/")
        if parts[0] != "common" or parts[1] not in routes or not parts[2].endswith(
                ("-authentication", "-body")):
            continue
        op = next(o for o in api().operations if o.route == parts[1]
                  and parts[2].startswith(o.method.lower() + "-"))
        assert check.needs == (() if op.flow == "common" else (op.flow,)), check.id


def all_faults(app: ASGIApp) -> ASGIApp:
    """Every variant's fault at once: each touches its own route only."""
    for variant in VARIANTS:
        app = variant.wrapper(app)
    return app


@pytest.fixture(scope="module")
def broken_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One run of the must-fail checks of every variant against one server carrying all
    the faults (each on its own route), so the suite pays for one run, not six."""
    tmp = tmp_path_factory.mktemp("generic")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    key = tmp / "master.key"
    key.write_bytes(os.urandom(32))
    key.chmod(0o600)
    lock = load_server_lock_settings(master_key_file=str(key), environ={})
    server = start_reference_server(f"http://127.0.0.1:{port}", tmp / "k.sqlite3",
                                    app_wrapper=all_faults, server_lock=lock)
    report = tmp / "r.json"
    try:
        selects = [arg for v in VARIANTS for cid in v.must_fail for arg in ("--select", cid)]
        done = run_conformance("--base-url", server.url, "--account-listen",
                               f"127.0.0.1:{port}", "--report-json", str(report), *selects)
    finally:
        server.stop()
    assert done.returncode == 1, done.stdout + done.stderr
    return {c["id"]: c for c in json.loads(report.read_text())["checks"]}


@pytest.mark.parametrize("variant", VARIANTS, ids=[v.name for v in VARIANTS])
def test_a_server_breaking_one_rule_on_one_route_is_caught(
        variant: GenericVariant, broken_run: dict[str, Any]) -> None:
    for check_id in variant.must_fail:
        assert broken_run[check_id]["status"] == "failed", (check_id, broken_run[check_id])
    assert variant.message in broken_run[variant.must_fail[0]]["message"]
