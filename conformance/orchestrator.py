"""One conformance run, start to finish.

Start the account server; start the embedded reference server (or take --base-url);
discover capabilities; run the selected checks; print and write reports; stop
everything. Anything that prevents the run from starting is a StartError: one line on
stderr and exit status 2, never a traceback. Once checks start, the reports are written
whatever happens: a failure, an early stop, the run deadline, Ctrl-C.
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from keyflows.conformance.account import AccountServer, AccountServerError, parse_listen
from keyflows.conformance.console import Console
from keyflows.conformance.embedded import EmbeddedServer, EmbeddedServerError, witness_config
from keyflows.conformance.http import (
    BODY_CAP_SLACK,
    DEFAULT_BODY_CAP,
    BadAnswer,
    DeadlineExceeded,
    HttpClient,
    TransportError,
)
from keyflows.conformance.options import (
    DEFAULT_REQUEST_DEADLINE_S,
    DEFAULT_RUN_DEADLINE_S,
    RunOptions,
)
from keyflows.conformance.probe import Session, describe
from keyflows.conformance.registry import Check, all_checks
from keyflows.conformance.report import json_report, write_json, write_junit
from keyflows.conformance.runner import (
    Guard,
    Outcome,
    Result,
    not_run,
    read_known_failing,
    run_all,
    run_failed,
    select,
    summarize,
    unmatched,
)

if TYPE_CHECKING:
    from keyflows.conformance.reproducer import ExchangeSaver

EXIT_INTERRUPTED = 130


class StartError(Exception):
    """The run could not start; the message is one line."""


def selected_checks(patterns: list[str], skip: list[str] | None = None) -> list[Check]:
    checks = all_checks()
    for option, given in (("--select", patterns), ("--skip", skip or [])):
        missing = unmatched(given, checks)
        if missing:
            raise StartError(f"{option} {' '.join(shlex.quote(p) for p in missing)} matches "
                             f"no check (see keyflows conformance --list)")
    chosen = select(checks, patterns, skip or [])
    if not chosen:
        raise StartError("--select and --skip leave no check to run")
    return chosen


def known_failing_patterns(path: Path) -> list[str]:
    """The file's patterns; an entry matching no check at all is a typo: refuse it."""
    try:
        patterns = read_known_failing(path)
    except (OSError, UnicodeDecodeError) as exc:
        raise StartError(f"--known-failing {path}: {exc}") from exc
    missing = unmatched(patterns, all_checks())
    if missing:
        raise StartError(f"--known-failing {path}: {', '.join(repr(p) for p in missing)} "
                         f"matches no check (see keyflows conformance --list)")
    return patterns


def list_checks(checks: list[Check]) -> None:
    for c in checks:
        print(f"{c.id}  [{', '.join(c.requirements)}]  {c.summary}")
    print(f"{len(checks)} checks")


def byte_limits(value: Any, key: str = "") -> list[int]:
    """Every positive integer under a member named `*_bytes`, at any depth."""
    if isinstance(value, dict):
        return [n for k, v in value.items() for n in byte_limits(v, str(k))]
    if isinstance(value, list):
        return [n for v in value for n in byte_limits(v, key)]
    if key.endswith("_bytes") and isinstance(value, int) and not isinstance(value, bool) \
            and value > 0:
        return [value]
    return []


def body_cap(capabilities: dict[str, Any] | None) -> int:
    """The largest byte limit the server advertises, plus slack (an answer carries a
    little framing around the data a limit bounds)."""
    advertised = byte_limits(capabilities or {})
    return max([DEFAULT_BODY_CAP, *advertised]) + BODY_CAP_SLACK


def discover(session: Session) -> None:
    """GET /v1/capabilities. Unreachable: the run cannot start. Reached but unusable
    (no answer in time, too large, not JSON): recorded, so that the capabilities check
    fails and flow checks are skipped with the reason."""
    try:
        exchange = session.http.send("GET", "/v1/capabilities")
    except DeadlineExceeded as exc:
        session.capabilities_problem = str(exc)
        return
    except TransportError as exc:
        raise StartError(str(exc)) from exc
    except BadAnswer as exc:
        session.capabilities_problem = str(exc)
        return
    body: Any = None
    if exchange.status == 200:
        try:
            body = exchange.json()
        except ValueError:
            body = None
    if isinstance(body, dict):
        session.capabilities = body
        session.http.body_cap = body_cap(body)
        limits = body.get("limits")
        idle = limits.get("idle_timeout_seconds") if isinstance(limits, dict) else None
        if isinstance(idle, int | float) and not isinstance(idle, bool) and idle > 0:
            # Reuse a kept-alive connection only well within the server's idle deadline.
            session.http.max_idle_reuse = min(session.http.max_idle_reuse, idle / 2)
    else:
        session.capabilities_problem = f"GET /v1/capabilities answered {describe(exchange)}"


def check_base_url(url: str) -> str:
    if not url.startswith(("http://", "https://")):
        raise StartError(f"--base-url must be an http:// or https:// URL, got {url!r}")
    return url.rstrip("/")


def rerun_command(options: RunOptions, *, target: str, mode: str, account_url: str) -> str:
    """The command that re-runs one check exactly as this run did (add --select)."""
    parts = ["keyflows", "conformance"]
    if mode == "external":
        host_port = account_url.removeprefix("http://")
        parts += ["--base-url", target, "--account-listen", host_port]
    elif options.account_listen != RunOptions.account_listen:
        parts += ["--account-listen", options.account_listen]
    if options.request_deadline != DEFAULT_REQUEST_DEADLINE_S:
        parts += ["--request-deadline", f"{options.request_deadline:g}"]
    if options.run_deadline != DEFAULT_RUN_DEADLINE_S:
        parts += ["--run-deadline", f"{options.run_deadline:g}"]
    if options.known_failing is not None:
        parts += ["--known-failing", str(options.known_failing)]
    return " ".join(shlex.quote(p) for p in parts)


@contextmanager
def _account_server(options: RunOptions) -> Iterator[AccountServer]:
    try:
        host, port = parse_listen(options.account_listen)
    except AccountServerError as exc:
        raise StartError(str(exc)) from exc
    account = AccountServer(host, port)
    try:
        account.start()
    except AccountServerError as exc:
        raise StartError(f"account server: {exc}") from exc
    try:
        yield account
    finally:
        account.stop()


def run(options: RunOptions) -> int:
    checks = selected_checks(options.patterns or [], options.skip)
    if options.list_only:
        list_checks(checks)
        return 0
    known = known_failing_patterns(options.known_failing) if options.known_failing else []
    target = check_base_url(options.base_url) if options.base_url else None
    started = time.monotonic()
    run_deadline = started + options.run_deadline
    with ExitStack() as stack:
        account = stack.enter_context(_account_server(options))
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
            print(f"witness for this run (hashchain): {witness_config(account.url)}",
                  flush=True)
        http = HttpClient(target, request_deadline=options.request_deadline,
                          run_deadline=run_deadline)
        stack.callback(http.close)
        session = Session(base_url=target, http=http, accounts=account.store)
        run_context = RunContext(options=options, session=session, mode=mode,
                                 account=account, known=known, run_deadline=run_deadline)
        code = run_context.execute(checks)
        note = embedded.exit_note() if embedded is not None else None
        if note:
            print(f"keyflows conformance: {note}")
        return code
    raise AssertionError("unreachable")


@dataclass
class RunContext:
    options: RunOptions
    session: Session
    mode: str
    account: AccountServer
    known: list[str]
    run_deadline: float
    rerun: str = "keyflows conformance"

    def execute(self, checks: list[Check]) -> int:
        session, options = self.session, self.options
        rerun = self.rerun = rerun_command(options, target=session.base_url, mode=self.mode,
                                           account_url=self.account.url)
        console = Console(len(checks), trace=options.trace, rerun=rerun, color=options.color)
        saver = self._saver(rerun)
        started = time.perf_counter()
        outcome = Outcome(results=[])
        try:
            discover(session)  # a StartError here: no report, exit status 2
        except KeyboardInterrupt:
            outcome.interrupted, outcome.stop_reason = True, "interrupted (Ctrl-C)"
        try:
            if not outcome.interrupted:
                guard = Guard(session, run_deadline=self.run_deadline,
                              account_url=self.account.url)

                def finished(result: Result) -> None:
                    if saver is not None:
                        saver.save(result)
                    console.finished(result)

                run_all(checks, session, known_failing=self.known, on_start=console.started,
                        on_result=finished, guard=guard, outcome=outcome,
                        exitfirst=options.exitfirst)
        except KeyboardInterrupt:
            outcome.interrupted, outcome.stop_reason = True, "interrupted (Ctrl-C)"
        finally:
            console.close()
            _fill_not_run(outcome, checks, self.known)
            self._finish(outcome, console, time.perf_counter() - started, saver)
        if outcome.interrupted:
            return EXIT_INTERRUPTED
        return 1 if run_failed(outcome.results) or outcome.stop_reason else 0

    def _saver(self, rerun: str) -> ExchangeSaver | None:
        if self.options.save_exchanges is None:
            return None
        from keyflows.conformance.reproducer import ExchangeSaver

        return ExchangeSaver(self.options.save_exchanges, target=self.session.base_url,
                             mode=self.mode, account=self.account, rerun=rerun)

    def _finish(self, outcome: Outcome, console: Console, duration: float,
                saver: ExchangeSaver | None) -> None:
        session, options = self.session, self.options
        results = outcome.results
        console.summary(outcome, target=session.base_url, duration=duration,
                        known_failing_file=options.known_failing)
        if saver is not None:
            saver.finish(results)
        report = json_report(results, target=session.base_url, mode=self.mode,
                             capabilities=session.capabilities, duration_s=duration,
                             stop_reason=outcome.stop_reason)
        if options.report_json:
            write_json(options.report_json, report)
        if options.junit_xml:
            write_junit(options.junit_xml, results, target=session.base_url)
        if options.report_html:
            from keyflows.conformance.report_html import write_html

            write_html(options.report_html, report, results, docs_url=options.docs_url,
                       rerun=self.rerun)


def _fill_not_run(outcome: Outcome, checks: list[Check], known: list[str]) -> None:
    """Append not-run results for the checks an interruption left out."""
    done = {r.check.id for r in outcome.results}
    for check in checks:
        if check.id not in done:
            outcome.results.append(not_run(check, outcome.stop_reason or "interrupted", known))


__all__ = ["RunOptions", "StartError", "run", "summarize"]
