"""One conformance run, start to finish.

Start the account server; start the embedded reference server (or take --base-url);
discover capabilities; run the selected checks; print and write reports; stop
everything. Anything that prevents the run from starting is a StartError: one line on
stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from keyflows.conformance.account import AccountServer, AccountServerError, parse_listen
from keyflows.conformance.console import Console
from keyflows.conformance.embedded import EmbeddedServer, EmbeddedServerError
from keyflows.conformance.http import HttpClient, TransportError
from keyflows.conformance.probe import Session, describe
from keyflows.conformance.registry import Check, all_checks
from keyflows.conformance.report import json_report, write_json, write_junit
from keyflows.conformance.runner import (
    ERRORED,
    FAILED,
    read_known_failing,
    run_all,
    run_failed,
    select,
    summarize,
)


class StartError(Exception):
    """The run could not start; the message is one line."""


@dataclass(frozen=True)
class RunOptions:
    base_url: str | None
    account_listen: str = "127.0.0.1:0"
    patterns: list[str] | None = None
    known_failing: Path | None = None
    report_json: Path | None = None
    junit_xml: Path | None = None
    trace: bool = False
    list_only: bool = False
    exitfirst: bool = False


def selected_checks(patterns: list[str]) -> list[Check]:
    checks = select(all_checks(), patterns)
    if not checks:
        raise StartError(f"no check matches --select {' '.join(patterns)} "
                         f"(see keyflows conformance --list)")
    return checks


def list_checks(checks: list[Check]) -> None:
    for c in checks:
        print(f"{c.id}  [{', '.join(c.requirements)}]  {c.summary}")
    print(f"{len(checks)} checks")


def discover(session: Session) -> None:
    """GET /v1/capabilities. Unreachable: the run cannot start. Unusable: recorded, so
    that the capabilities check fails and flow checks are skipped with the reason."""
    try:
        exchange = session.http.send("GET", "/v1/capabilities")
    except TransportError as exc:
        raise StartError(str(exc)) from exc
    body: Any = None
    if exchange.status == 200:
        try:
            body = exchange.json()
        except ValueError:
            body = None
    if isinstance(body, dict):
        session.capabilities = body
    else:
        session.capabilities_problem = f"GET /v1/capabilities answered {describe(exchange)}"


def check_base_url(url: str) -> str:
    if not url.startswith(("http://", "https://")):
        raise StartError(f"--base-url must be an http:// or https:// URL, got {url!r}")
    return url.rstrip("/")


def run(options: RunOptions) -> int:
    checks = selected_checks(options.patterns or [])
    if options.list_only:
        list_checks(checks)
        return 0
    known = read_known_failing(options.known_failing) if options.known_failing else []
    target = check_base_url(options.base_url) if options.base_url else None
    try:
        host, port = parse_listen(options.account_listen)
    except AccountServerError as exc:
        raise StartError(str(exc)) from exc
    with ExitStack() as stack:
        account = AccountServer(host, port)
        try:
            account.start()
        except AccountServerError as exc:
            raise StartError(f"account server: {exc}") from exc
        stack.callback(account.stop)
        embedded: EmbeddedServer | None = None
        if target is None:
            embedded = EmbeddedServer(account.url)
            try:
                embedded.start()
            except (EmbeddedServerError, OSError) as exc:
                embedded.stop()
                raise StartError(str(exc)) from exc
            stack.callback(embedded.stop)
            target, mode = embedded.base_url, "embedded"
            print(f"embedded reference server: {target} (account server {account.url})")
        else:
            mode = "external"
            print(f"account server for this run: {account.url} "
                  f"(configure the server under test to trust it)", flush=True)
        http = HttpClient(target)
        stack.callback(http.close)
        session = Session(base_url=target, http=http, accounts=account.store)
        discover(session)
        code = execute(checks, session, options, known=known, mode=mode)
        note = embedded.exit_note() if embedded is not None else None
        if note:
            print(f"keyflows conformance: {note}")
        return code
    raise AssertionError("unreachable")


def execute(checks: list[Check], session: Session, options: RunOptions, *,
            known: list[str], mode: str) -> int:
    rerun = "keyflows conformance" + (f" --base-url {session.base_url}"
                                      if mode == "external" else "")
    console = Console(len(checks), trace=options.trace, rerun=rerun)
    started = time.perf_counter()
    try:
        results = run_all(checks, session, known_failing=known, on_start=console.started,
                          on_result=console.finished, exitfirst=options.exitfirst)
    finally:
        console.close()
    duration = time.perf_counter() - started
    summary = summarize(results)
    for result in results:
        if result.stale:
            console.line(f"stale known-failing entry: {result.check.id} passes now; remove it "
                         f"from {options.known_failing}")
    known_ids = [r.check.id for r in results if r.known_failing]
    if known_ids:
        console.line(f"known failing ({len(known_ids)}): {', '.join(known_ids)}")
    unexpected = [r.check.id for r in results
                  if r.status in (FAILED, ERRORED) and not r.known_failing]
    if unexpected:
        console.line(f"failed ({len(unexpected)}): {', '.join(unexpected)}")
    noun = "check" if len(results) == 1 else "checks"
    console.line(f"{len(results)} {noun} against {session.base_url}: "
                 f"{summary['passed']} passed, {summary['failed']} failed, "
                 f"{summary['skipped']} skipped, {summary['errored']} errored"
                 f"{f', {len(known_ids)} known failing' if known_ids else ''} "
                 f"in {duration:.1f} s")
    if options.report_json:
        write_json(options.report_json, json_report(
            results, target=session.base_url, mode=mode, capabilities=session.capabilities,
            duration_s=duration))
    if options.junit_xml:
        write_junit(options.junit_xml, results, target=session.base_url)
    return 1 if run_failed(results) else 0
