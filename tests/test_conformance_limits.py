"""The limit checks end to end: a server with each limit broken is caught by the check
that guards it (API-50 .. API-54). The reference server passing them is the embedded run
of test_conformance.py."""

from __future__ import annotations

import json
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from broken_servers import (
    ASGIApp,
    BrokenVariant,
    Message,
    Receive,
    Scope,
    Send,
    read_request_body,
    replay,
)
from runner_runs import run_conformance
from servers import RunningServer, start_reference_server
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from keyflows.reference import envelope_store, limits, serving
from keyflows.spec import limits as spec_limits
from keyflows.spec.limits import Admission

SELECT = ("--select", "common/limits/*", "--select", "*/limits/*")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run(server: RunningServer, account_port: int, tmp_path: Path, *select: str,
        monkeypatch: pytest.MonkeyPatch | None = None
        ) -> tuple[subprocess.CompletedProcess[str], dict[str, str]]:
    report = tmp_path / f"report-{time.monotonic_ns()}.json"
    done = run_conformance("--base-url", server.url, "--account-listen",
                           f"127.0.0.1:{account_port}", "--report-json", str(report),
                           *(select or SELECT), monkeypatch=monkeypatch)
    assert report.exists(), done.stderr
    return done, {c["id"]: c["status"] for c in json.loads(report.read_text())["checks"]}


# --- faults --------------------------------------------------------------------------------

def body_before_credentials(app: ASGIApp) -> ASGIApp:
    """Reads the whole body before the app looks at the credentials."""
    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in ("PUT", "POST"):
            body = await read_request_body(receive)
            await app(scope, replay(body), send)
            return
        await app(scope, receive, send)
    return wrapped


def deadlines_not_kept(app: ASGIApp) -> ASGIApp:
    """Advertises 2 s deadlines while it keeps the defaults (10, 30 and 5 s)."""
    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != "/v1/capabilities":
            await app(scope, receive, send)
            return
        parts: list[Message] = []

        async def keep(message: Message) -> None:
            parts.append(message)

        await app(scope, receive, keep)
        doc = json.loads(b"".join(m.get("body", b"") for m in parts[1:]))
        doc["limits"].update(header_timeout_seconds=2, body_timeout_seconds=2,
                             idle_timeout_seconds=2)
        body = json.dumps(doc).encode()
        headers = [(k, v) for k, v in parts[0]["headers"] if k != b"content-length"]
        length = (b"content-length", str(len(body)).encode())
        await send({**parts[0], "headers": [*headers, length]})
        await send({"type": "http.response.body", "body": body})
    return wrapped


def no_retry_after(app: ASGIApp) -> ASGIApp:
    """Answers 429 without Retry-After."""
    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        async def strip(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] == 429:
                message = {**message, "headers": [(k, v) for k, v in message["headers"]
                                                  if k.lower() != b"retry-after"]}
            await send(message)
        await app(scope, receive, strip)
    return wrapped


def rates_not_enforced(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(limits.RateLimiter, "take",
                        lambda self, *buckets: Admission(True, 0))


def whole_body_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Cuts every body at body_timeout, however fast it arrives (no minimum rate)."""
    monkeypatch.setattr(spec_limits, "body_allowance",
                        lambda received, *, body_timeout, body_min_rate: float(body_timeout))


def plain_text_400(monkeypatch: pytest.MonkeyPatch) -> None:
    """Answers a request its HTTP parser refuses with uvicorn's plain-text 400."""
    monkeypatch.setattr(serving.GuardedHttpProtocol, "send_400_response",
                        HttpToolsProtocol.send_400_response)


def quotas_not_enforced(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(envelope_store, "_check_quotas", lambda *args: None)


VARIANTS = (
    BrokenVariant("body-before-credentials", "reads the body before checking the token",
                  ("common/limits/credentials-before-body",), wrapper=body_before_credentials),
    BrokenVariant("deadlines-not-kept", "advertises deadlines it does not keep",
                  ("common/limits/deadlines",), wrapper=deadlines_not_kept),
    BrokenVariant("whole-body-deadline", "cuts a body at the body timeout despite its rate",
                  ("common/limits/deadlines",), patch=whole_body_deadline),
    BrokenVariant("plain-text-400", "answers a bad Content-Length with a plain-text 400",
                  ("common/http/framing",), patch=plain_text_400),
    BrokenVariant("rates-not-enforced", "advertises rate limits it does not enforce",
                  ("session-challenge/limits/challenge-rate", "hashchain/limits/keyinit-rate",
                   "hashchain/limits/uid-rate"), patch=rates_not_enforced),
    BrokenVariant("no-retry-after", "answers 429 without Retry-After",
                  ("session-challenge/limits/challenge-rate",), wrapper=no_retry_after),
    BrokenVariant("quotas-not-enforced", "advertises queue quotas it does not enforce",
                  ("envelope/limits/queue-quotas",), patch=quotas_not_enforced),
)
SELECTED = {"body-before-credentials": ("--select", "common/limits/credentials-before-body"),
            "deadlines-not-kept": ("--select", "common/limits/deadlines"),
            "whole-body-deadline": ("--select", "common/limits/deadlines"),
            "plain-text-400": ("--select", "common/http/framing"),
            "no-retry-after": ("--select", "session-challenge/limits/*"),
            "quotas-not-enforced": ("--select", "envelope/limits/*")}


def start(tmp_path: Path, variant: BrokenVariant | None = None, **settings: Any
          ) -> tuple[RunningServer, int]:
    port = free_port()
    server = start_reference_server(f"http://127.0.0.1:{port}", tmp_path / "keys.sqlite3",
                                    app_wrapper=variant.wrapper if variant else None,
                                    **settings)
    return server, port


@pytest.mark.parametrize("variant", VARIANTS, ids=[v.name for v in VARIANTS])
def test_broken_limit_is_caught(variant: BrokenVariant, tmp_path: Path,
                                monkeypatch: pytest.MonkeyPatch) -> None:
    if variant.patch is not None:
        variant.patch(monkeypatch)
    settings = {"defaults": True} if variant.name == "deadlines-not-kept" else {}
    server, port = start(tmp_path, variant, **settings)
    try:
        done, results = run(server, port, tmp_path, *SELECTED.get(variant.name, ()),
                            monkeypatch=monkeypatch)
    finally:
        server.stop()
    assert done.returncode == 1, f"{variant.name} was not caught:\n{done.stdout}"
    missed = [cid for cid in variant.must_fail if results.get(cid) != "failed"]
    assert not missed, f"{variant.name} ({variant.fault}) not caught by {missed}"
