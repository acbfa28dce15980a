"""The conformance runner's command line and its parts, without a key server: the check
registry, selection, known-failing lists, exit codes, redaction, reproducers, reports and
the runner's own account server."""

from __future__ import annotations

import base64
import copy
import io
import json
import socket
import threading
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from keyflows.conformance.account import AccountServer
from keyflows.conformance.answers import ShapeError, parse_answer
from keyflows.conformance.checks.support import first_difference
from keyflows.conformance.cli import main
from keyflows.conformance.console import Console, fit, use_color
from keyflows.conformance.http import Exchange
from keyflows.conformance.redaction import SecretRegistry, redact_authorization, redact_text
from keyflows.conformance.registry import FLOWS, all_checks
from keyflows.conformance.report import junit_xml
from keyflows.conformance.runner import (
    FAILED,
    PASSED,
    Result,
    apply_known_failing,
    matches,
    read_known_failing,
    run_failed,
    select,
)
from keyflows.conformance.trace import curl_reproducer, describe_mismatch, format_exchange
from keyflows.spec.requirements import registry


def invoke(*args: str) -> Any:
    return CliRunner().invoke(main, ["conformance", *args])


# --- the registry -----------------------------------------------------------------------------

def test_registry_has_enough_checks_across_the_flows() -> None:
    checks = all_checks()
    by_flow = {flow: [c for c in checks if c.flow == flow] for flow in FLOWS}
    assert len(checks) >= 40
    assert all(len(v) >= 10 for v in by_flow.values()), {k: len(v) for k, v in by_flow.items()}
    assert len({c.id for c in checks}) == len(checks)
    known = registry()
    for c in checks:
        assert c.id.split("/")[0] == c.flow
        assert c.requirements and all(r in known for r in c.requirements)
        assert c.summary and c.summary != c.id


def test_every_api_and_server_side_requirement_is_cited() -> None:
    cited = {r for c in all_checks() for r in c.requirements}
    server_side = {"API-1", "API-2", "API-3", "API-4", "API-5", "API-6", "API-7", "KD-2",
                   "KD-3", "KD-4", "KD-5", "KD-6", "KP-2", "KP-3", "KP-4", "KP-5", "KP-6",
                   "KP-7", "KP-8", "KP-9", "KP-10", "KP-11", "KP-12"}
    assert server_side <= cited, server_side - cited


def test_selection_by_glob_and_by_prefix() -> None:
    checks = all_checks()
    assert matches("common/auth/uniform-401", "common/auth/*")
    assert matches("common/auth/uniform-401", "common/auth")
    assert matches("common/auth/uniform-401", "common/auth/")
    assert not matches("common/authx/y", "common/auth")
    assert matches("keypair-publication/replace/same-version-refused", "*/replace/*-refused")
    picked = select(checks, ["key-derivation"])
    assert picked and all(c.flow == "key-derivation" for c in picked)
    assert select(checks, []) == checks


def test_known_failing_file_parsing(tmp_path: Path) -> None:
    path = tmp_path / "known.txt"
    path.write_text("# a comment\n\ncommon/auth/*  # trailing comment\n  key-derivation/x/y\n")
    assert read_known_failing(path) == ["common/auth/*", "key-derivation/x/y"]


def result(check_id: str, status: str) -> Result:
    check = next(c for c in all_checks() if c.id == check_id)
    return Result(check=check, status=status, message="m")


def test_known_failing_and_stale_grading() -> None:
    patterns = ["common/auth/*"]
    failing = result("common/auth/unknown-token", FAILED)
    apply_known_failing(failing, patterns)
    assert failing.known_failing and not run_failed([failing])
    passing = result("common/auth/expired-token", PASSED)
    apply_known_failing(passing, patterns)
    assert passing.stale and run_failed([passing])
    unlisted = result("common/capabilities/shape", FAILED)
    apply_known_failing(unlisted, patterns)
    assert not unlisted.known_failing and run_failed([unlisted])


# --- command line ----------------------------------------------------------------------------

def test_list_prints_every_check_with_its_requirements() -> None:
    outcome = invoke("--list")
    assert outcome.exit_code == 0
    lines = outcome.stdout.splitlines()
    assert lines[-1] == f"{len(all_checks())} checks"
    assert any(line.startswith("common/auth/uniform-401  [API-4]") for line in lines)


def test_list_respects_select() -> None:
    outcome = invoke("--list", "--select", "key-derivation/argon2-params/*")
    assert outcome.exit_code == 0
    ids = [line.split()[0] for line in outcome.stdout.splitlines()[:-1]]
    assert ids and all(i.startswith("key-derivation/argon2-params/") for i in ids)


@pytest.mark.parametrize(("args", "message"), [
    (["--select", "no/such/check"],
     "keyflows conformance: --select no/such/check matches no check "
     "(see keyflows conformance --list)"),
    (["--base-url", "ftp://example.org"],
     "keyflows conformance: --base-url must be an http:// or https:// URL, "
     "got 'ftp://example.org'"),
    (["--account-listen", "nonsense", "--base-url", "http://127.0.0.1:9"],
     "keyflows conformance: --account-listen must be HOST:PORT, got 'nonsense'"),
    (["--base-url", "http://127.0.0.1:9"],
     "keyflows conformance: cannot reach http://127.0.0.1:9/v1/capabilities: "
     "connection refused"),
])
def test_runs_that_cannot_start_exit_2_with_one_line(args: list[str], message: str) -> None:
    outcome = invoke(*args)
    assert outcome.exit_code == 2
    assert outcome.stderr.strip() == message
    assert "Traceback" not in outcome.output


def test_account_port_in_use_exits_2() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        outcome = invoke("--account-listen", f"127.0.0.1:{port}", "--base-url",
                         "http://127.0.0.1:9")
    assert outcome.exit_code == 2
    assert outcome.stderr.startswith(f"keyflows conformance: account server: cannot listen "
                                     f"on 127.0.0.1:{port}")
    assert len(outcome.stderr.strip().splitlines()) == 1


class _NoCapabilities(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        body = b"<html>not here</html>"
        self.send_response(404)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def not_a_key_server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _NoCapabilities)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_server_without_capabilities_fails_and_skips_with_reasons(
        not_a_key_server: str, tmp_path: Path) -> None:
    report_path = tmp_path / "report.json"
    outcome = invoke("--base-url", not_a_key_server, "--report-json", str(report_path))
    assert outcome.exit_code == 1
    report = json.loads(report_path.read_text())
    by_id = {c["id"]: c for c in report["checks"]}
    assert by_id["common/capabilities/shape"]["status"] == "failed"
    skipped = by_id["keypair-publication/publish/create"]
    assert skipped["status"] == "skipped"
    assert skipped["message"].startswith("capabilities unavailable (GET /v1/capabilities "
                                         "answered 404")
    assert report["summary"]["skipped"] > 40
    assert report["target"] == not_a_key_server


# --- redaction and reproducers ----------------------------------------------------------------

RECORD_TEXT = ('{"user_id":"u","encrypted_private_keys":{"kek":{"salt":"c2FsdHNhbHRzYWx0c2FsdA"},'
               '"nonce":"bm9uY2Vub25jZW5v","ciphertext":"Y2lwaGVydGV4dA"}}')


def test_redaction_hides_secret_values_and_tokens() -> None:
    redacted = redact_text(RECORD_TEXT)
    for secret in ("c2FsdHNhbHRzYWx0c2FsdA", "bm9uY2Vub25jZW5v", "Y2lwaGVydGV4dA"):
        assert secret not in redacted
    assert '"salt":"<redacted 22 chars>"' in redacted
    assert '"user_id":"u"' in redacted
    assert redact_authorization("Bearer abcdefgh") == "Bearer <redacted 8 chars>"
    assert redact_authorization("Bearer") == "Bearer"


def exchange_with(body: bytes, token: str = "sekrit-token-value") -> Exchange:
    headers = {"authorization": f"Bearer {token}", "content-type": "application/json"}
    return Exchange(method="PUT", url="http://127.0.0.1:1/v1/users/u/apps/c/keypair",
                    sent_headers=headers, request_headers=list(headers.items()),
                    request_body=body, status=500, reason="Internal Server Error",
                    response_headers=[("content-type", "text/plain")],
                    response_body=RECORD_TEXT.encode())


def test_trace_and_curl_never_show_the_token_or_key_material() -> None:
    exchange = exchange_with(RECORD_TEXT.encode())
    for text in (format_exchange(exchange), curl_reproducer(exchange)):
        assert "sekrit-token-value" not in text
        assert "Y2lwaGVydGV4dA" not in text
    curl = curl_reproducer(exchange)
    assert curl.startswith("curl -sS -i -X PUT http://127.0.0.1:1/v1/users/u/apps/c/keypair")
    assert '-H "authorization: Bearer $KEYFLOWS_TOKEN"' in curl
    assert "--data-binary '{\"user_id\":\"u\"" in curl


def test_curl_for_binary_and_large_bodies() -> None:
    assert curl_reproducer(exchange_with(b"\xff\xfe")).startswith("printf '\\xff\\xfe' | curl")
    assert "body: 5000 bytes, not shown" in curl_reproducer(exchange_with(b" " * 5000))


def test_junit_counts_failures_known_failures_and_stale_entries() -> None:
    failed = result("common/auth/unknown-token", FAILED)
    known = result("common/auth/expired-token", FAILED)
    known.known_failing = True
    stale = result("common/auth/missing-token", PASSED)
    stale.stale = True
    ok = result("key-derivation/salt/wrong-length", PASSED)
    root = ET.fromstring(ET.tostring(junit_xml([failed, known, stale, ok],
                                               target="http://x").getroot()))
    common = root.find("testsuite[@name='common']")
    assert common is not None
    assert (common.get("tests"), common.get("failures"), common.get("skipped")) == ("3", "2", "1")
    assert root.find("testsuite[@name='key-derivation']") is not None


# --- the runner's account server --------------------------------------------------------------

def test_account_server_validates_mints_expires_and_misbehaves_on_request() -> None:
    server = AccountServer()
    server.start()
    try:
        token = server.mint("alice")

        def ask(user_id: str, access_token: str) -> httpx.Response:
            return httpx.post(f"{server.url}/v1/validate",
                              json={"user_id": user_id, "access_token": access_token})

        assert ask("alice", token).json() == {"valid": True}
        assert ask("bob", token).json() == {"valid": False}
        assert ask("alice", "unknown").json() == {"valid": False}
        server.expire(token)
        assert ask("alice", token).json() == {"valid": False}
        odd = server.mint("alice")
        server.store.answer_badly(odd, b'{"valid":"true"}')
        assert ask("alice", odd).content == b'{"valid":"true"}'
        assert httpx.post(f"{server.url}/v1/validate", content=b"nope").status_code == 400
        assert [c.user_id for c in server.store.calls()] == ["alice", "bob", "alice", "alice",
                                                             "alice"]
    finally:
        server.stop()


# --- selection and terminal hygiene ------------------------------------------------------------

def test_skip_leaves_checks_out_and_typos_are_refused(tmp_path: Path) -> None:
    outcome = invoke("--list", "--select", "common/auth", "--skip", "common/auth/uniform-401")
    ids = [line.split()[0] for line in outcome.stdout.splitlines()[:-1]]
    assert ids and "common/auth/uniform-401" not in ids
    assert all(i.startswith("common/auth/") for i in ids)
    outcome = invoke("--list", "--skip", "common/auth/no-such")
    assert outcome.exit_code == 2
    assert outcome.stderr.strip() == ("keyflows conformance: --skip common/auth/no-such "
                                      "matches no check (see keyflows conformance --list)")
    known = tmp_path / "known.txt"
    known.write_text("common/auth/uniform-401\ncommon/auth/uniform-410  # a typo\n")
    outcome = invoke("--known-failing", str(known), "--base-url", "http://127.0.0.1:9")
    assert outcome.exit_code == 2
    assert outcome.stderr.strip() == (f"keyflows conformance: --known-failing {known}: "
                                      f"'common/auth/uniform-410' matches no check (see "
                                      f"keyflows conformance --list)")


def test_colour_follows_no_color_terminals_and_the_option(
        monkeypatch: pytest.MonkeyPatch) -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    assert use_color(Tty()) and not use_color(io.StringIO())
    assert use_color(io.StringIO(), "always") and not use_color(Tty(), "never")
    monkeypatch.setenv("NO_COLOR", "1")
    assert not use_color(Tty())
    monkeypatch.setenv("NO_COLOR", "")
    monkeypatch.setenv("TERM", "dumb")
    assert not use_color(Tty())


def test_live_line_fits_the_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert fit("x" * 100, 40) == "x" * 38 + "…" and len(fit("x" * 100, 40)) < 40
    assert fit("short", 40) == "short"
    monkeypatch.setenv("COLUMNS", "30")
    stream = Tty()
    console = Console(500, trace=False, stream=stream, color="never")
    check = next(c for c in all_checks() if len(c.id) > 30)
    console.started(check)
    live = stream.getvalue().rsplit("\r\x1b[2K", 1)[-1]
    assert 0 < len(live) < 30 and "\n" not in live


# --- answers, mismatches, redaction by value ---------------------------------------------------

def test_missing_members_of_an_answer_name_the_path() -> None:
    answer = parse_answer(b'{"head": {"size": 1}, "entries": []}', where="GET /x -> 200")
    assert answer["head"]["size"] == 1 and answer == {"head": {"size": 1}, "entries": []}
    with pytest.raises(ShapeError, match=r"GET /x -> 200: the answer has no member 'tree' "
                                         r"at \$\.head \(members: size\)"):
        answer["head"]["tree"]
    with pytest.raises(KeyError):  # code that catches KeyError keeps working
        answer["nope"]
    with pytest.raises(ShapeError, match=r"array at \$\.entries has 0 items, no item 0"):
        answer["entries"][0]
    assert copy.deepcopy(answer) == answer and json.loads(json.dumps(answer)) == answer
    with pytest.raises(ValueError, match="nests too deeply"):
        parse_answer(b"[" * 100000 + b"]" * 100000, where="x")


def test_long_mismatches_show_the_first_differing_offset() -> None:
    expected = "A" * 50 + "B" + "C" * 20
    actual = "A" * 50 + "X" + "C" * 20
    text = describe_mismatch(expected, actual)
    assert text.startswith("values differ first at offset 50 (length 71): expected ")
    assert "'AAAAAAAAAAAABCCCCCCCCCCC'" in text and "'AAAAAAAAAAAAXCCCCCCCCCCC'" in text
    assert "offset 4 (lengths 4 and 60)" in describe_mismatch("abcd", "abcd" + "e" * 56)
    assert describe_mismatch(1, 2) == "expected 1, got 2"
    assert first_difference({"a": expected}, {"a": actual}) == f"$.a: {text}"
    assert first_difference({"a": 1}, parse_answer(b'{"a": 1}', where="x")) is None
    assert first_difference({"a": 1}, {"a": True}) == "$.a: expected 1, got True"


def test_registered_secrets_are_redacted_in_every_form() -> None:
    secrets = SecretRegistry()
    key = bytes(range(32))
    secrets.add(key)
    secrets.add("tok-1234567890")
    text = (f"b64url {base64.urlsafe_b64encode(key).decode().rstrip('=')} std "
            f"{base64.b64encode(key).decode()} hex {key.hex()} inside "
            f"x{key.hex()}y and path /v1/tok-1234567890/z, short tok-1")
    out = secrets.redact(text)
    assert key.hex() not in out and "tok-1234567890" not in out
    assert base64.b64encode(key).decode() not in out
    assert out.count("<redacted") == 5 and "short tok-1" in out
    secrets.learn_json({"a": [{"session_token": "sess-abcdefgh"}], "nonce": "n-12345678"})
    assert secrets.redact("sess-abcdefgh n-12345678") == "<redacted 13 chars> n-12345678"
