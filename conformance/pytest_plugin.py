"""The conformance checks as pytest items, for projects that test their key server in CI.

    pytest -p keyflows.conformance.pytest_plugin \\
        --keyflows-base-url http://127.0.0.1:8080 --keyflows-account-listen 127.0.0.1:9000
    pytest --keyflows                 # the bundled reference server, embedded

The plugin is also registered as a pytest entry point: it only adds options, and stays
inert (importing nothing heavy) unless a --keyflows option is given. Then it collects
one item per check, named by the check id (`keyflows::common/auth/uniform-401`), with
the markers `keyflows`, the check's flow and each requirement id it cites (`-m KP-8`);
`-k` selects by id; a check that does not apply is skipped with its reason; a failure
shows what was expected, what came back, the trace and a reproducer; checks listed in
--keyflows-known-failing are strict xfails (a listed check that passes fails the run,
as with `keyflows conformance --known-failing`). The servers start with the first item
and stop at the end of the session; when the server stops answering (or never consults
the runner's account server) the session stops with that reason.
"""

from __future__ import annotations

from collections.abc import Generator
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from keyflows.conformance.options import (
    DEFAULT_ACCOUNT_LISTEN,
    DEFAULT_REQUEST_DEADLINE_S,
    DEFAULT_RUN_DEADLINE_S,
)

if TYPE_CHECKING:
    from keyflows.conformance.registry import Check
    from keyflows.conformance.runner import Guard, Result

_STATE = pytest.StashKey["_PluginRun"]()
_OPTIONS = ("keyflows_base_url", "keyflows_known_failing", "keyflows_select",
            "keyflows_skip")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("keyflows", "keyflows conformance checks")
    group.addoption("--keyflows", action="store_true", default=False,
                    help="Run the keyflows conformance checks as test items (against the "
                         "embedded reference server unless --keyflows-base-url is given).")
    group.addoption("--keyflows-base-url", metavar="URL",
                    help="The key server to check (implies --keyflows).")
    group.addoption("--keyflows-account-listen", metavar="HOST:PORT",
                    default=DEFAULT_ACCOUNT_LISTEN,
                    help="Where the runner's account server listens (the server under "
                         f"test must trust it; default {DEFAULT_ACCOUNT_LISTEN}).")
    group.addoption("--keyflows-known-failing", metavar="FILE",
                    help="Check ids/globs expected to fail, one per line: strict xfail.")
    group.addoption("--keyflows-select", action="append", default=[], metavar="GLOB",
                    help="Collect only checks whose id matches; repeatable.")
    group.addoption("--keyflows-skip", action="append", default=[], metavar="GLOB",
                    help="Leave out checks whose id matches; repeatable.")
    group.addoption("--keyflows-request-deadline", type=float, metavar="SECONDS",
                    default=DEFAULT_REQUEST_DEADLINE_S,
                    help="Limit on one whole HTTP exchange.")


def enabled(config: pytest.Config) -> bool:
    if config.getoption("keyflows") or any(config.getoption(o) for o in _OPTIONS):
        return True
    return bool(config.getoption("keyflows_account_listen") != DEFAULT_ACCOUNT_LISTEN)


def pytest_configure(config: pytest.Config) -> None:
    if not enabled(config):
        return
    from keyflows.conformance.orchestrator import (
        StartError,
        known_failing_patterns,
        selected_checks,
    )

    try:
        checks = selected_checks(config.getoption("keyflows_select"),
                                 config.getoption("keyflows_skip"))
        known_file = config.getoption("keyflows_known_failing")
        known = known_failing_patterns(Path(known_file)) if known_file else []
    except StartError as exc:
        raise pytest.UsageError(f"keyflows: {exc}") from exc
    config.stash[_STATE] = _PluginRun(config, checks, known)
    config.addinivalue_line("markers", "keyflows: a keyflows conformance check")
    names = {c.flow for c in checks} | {r for c in checks for r in c.requirements}
    for name in sorted(names):
        config.addinivalue_line("markers", f"{name}: keyflows conformance ({name})")


def pytest_unconfigure(config: pytest.Config) -> None:
    state = config.stash.get(_STATE, None)
    if state is not None:
        state.stop()


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config,
                                  items: list[pytest.Item]) -> None:
    """Add the checks before -k, -m and --lf look at the items."""
    state = config.stash.get(_STATE, None)
    if state is None:
        return
    collector = KeyflowsCollector.from_parent(session, name="keyflows", nodeid="keyflows")
    added = collector.collect()
    # Reported like any collected node, so "collected N items" and -k/-m counts add up.
    config.hook.pytest_collectreport(report=pytest.CollectReport(
        nodeid=collector.nodeid, outcome="passed", longrepr=None, result=list(added)))
    items.extend(added)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]
                              ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A skipped check is reported at the check's own function, with its reason."""
    report = yield
    if isinstance(item, CheckItem) and report.skipped and isinstance(report.longrepr, tuple):
        path, line, _ = item.reportinfo()
        report.longrepr = (str(path), line + 1, report.longrepr[2])
    return report


class KeyflowsCollector(pytest.Collector):
    def collect(self) -> list[pytest.Item]:
        from keyflows.conformance.runner import matches

        state = self.config.stash[_STATE]
        items: list[pytest.Item] = []
        for check in state.checks:
            item = CheckItem.from_parent(self, name=check.id, check=check)
            item.add_marker(pytest.mark.keyflows)
            item.add_marker(getattr(pytest.mark, check.flow))
            for requirement in check.requirements:
                item.add_marker(getattr(pytest.mark, requirement))
            if any(matches(check.id, p) for p in state.known):
                item.add_marker(pytest.mark.xfail(
                    strict=True, reason="listed in --keyflows-known-failing"))
            items.append(item)
        return items


class CheckFailure(Exception):
    """A check failed or errored; carries the result for the failure report."""

    def __init__(self, result: Result) -> None:
        super().__init__(result.message)
        self.result = result


class CheckItem(pytest.Item):
    def __init__(self, *, check: Check, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.check = check

    def runtest(self) -> None:
        from keyflows.conformance.runner import ERRORED, FAILED, SKIPPED

        state = self.config.stash[_STATE]
        result = state.run(self.check)
        if state.stop_reason and not self.session.shouldstop:
            self.session.shouldstop = f"keyflows: {state.stop_reason}"
        if result.status == SKIPPED:
            pytest.skip(result.message)
        if result.status in (FAILED, ERRORED):
            raise CheckFailure(result)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException],
                     style: Any = None) -> str:
        if isinstance(excinfo.value, CheckFailure):
            return failure_text(excinfo.value.result, self.config.stash[_STATE].rerun)
        return str(super().repr_failure(excinfo))

    def reportinfo(self) -> tuple[Path, int, str]:
        code = self.check.func.__code__
        return Path(code.co_filename), code.co_firstlineno - 1, self.check.id


def failure_text(result: Result, rerun: str) -> str:
    """The runner's failure block, as plain text for pytest's report."""
    import io

    from keyflows.conformance.console import Console
    from keyflows.conformance.redaction import redact_text

    stream = io.StringIO()
    console = Console(1, trace=False, rerun=rerun, stream=stream, color="never")
    stream.write(f"{result.status.upper()}: {redact_text(result.message)}\n")
    console.details(result)
    return stream.getvalue().rstrip()


class _PluginRun:
    """The servers and session of one pytest run, started with the first check."""

    def __init__(self, config: pytest.Config, checks: list[Check], known: list[str]) -> None:
        self.config = config
        self.checks = checks
        self.known = known
        self.stop_reason = ""
        self.rerun = "keyflows conformance"
        self._stack = ExitStack()
        self._session: Any = None
        self._guard: Guard | None = None
        self._failed_to_start = ""

    def _start(self) -> None:
        import time

        from keyflows.conformance.account import AccountServer, AccountServerError, parse_listen
        from keyflows.conformance.embedded import EmbeddedServer, EmbeddedServerError
        from keyflows.conformance.http import HttpClient
        from keyflows.conformance.options import RunOptions
        from keyflows.conformance.orchestrator import (
            StartError,
            check_base_url,
            discover,
            rerun_command,
        )
        from keyflows.conformance.probe import Session
        from keyflows.conformance.runner import Guard

        config = self.config
        base_url = config.getoption("keyflows_base_url")
        listen = config.getoption("keyflows_account_listen")
        try:
            host, port = parse_listen(listen)
            account = AccountServer(host, port)
            account.start()
            self._stack.callback(account.stop)
            if base_url:
                target, mode = check_base_url(base_url), "external"
            else:
                embedded = EmbeddedServer(account.url)
                self._stack.callback(embedded.stop)
                embedded.start()
                target, mode = embedded.base_url, "embedded"
            deadline = float(config.getoption("keyflows_request_deadline"))
            http = HttpClient(target, request_deadline=deadline,
                              run_deadline=time.monotonic() + DEFAULT_RUN_DEADLINE_S)
            self._stack.callback(http.close)
            session = Session(base_url=target, http=http, accounts=account.store)
            discover(session)
        except (StartError, AccountServerError, EmbeddedServerError, OSError) as exc:
            self._failed_to_start = f"keyflows: the run could not start: {exc}"
            self._stack.close()
            return
        self._session = session
        self._guard = Guard(session, run_deadline=http.run_deadline, account_url=account.url)
        options = RunOptions(base_url=base_url, account_listen=listen,
                             request_deadline=deadline)
        self.rerun = rerun_command(options, target=target, mode=mode,
                                   account_url=account.url)
        where = (f"account server {account.url}" if mode == "embedded" else
                 f"configure the server to trust the account server {account.url}")
        self._announce(f"keyflows: checking {target} ({mode}; {where})")

    def _announce(self, line: str) -> None:
        """One line on the terminal, outside the captured output of the first item."""
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        capture = self.config.pluginmanager.get_plugin("capturemanager")
        if reporter is None:
            return
        if capture is None:
            reporter.write_line(line)
            return
        with capture.global_and_fixture_disabled():
            reporter.write_line(line)

    def run(self, check: Check) -> Result:
        from keyflows.conformance.runner import apply_known_failing, run_check

        if self._session is None and not self._failed_to_start:
            self._start()
        if self._failed_to_start:
            pytest.fail(self._failed_to_start, pytrace=False)
        if self.stop_reason:
            pytest.fail(f"not run: {self.stop_reason}", pytrace=False)
        result = run_check(check, self._session)
        apply_known_failing(result, self.known)
        if self._guard is not None:
            self.stop_reason = self._guard.after(result) or ""
        result.compact()
        self._session.forget_side_exchanges(_now())
        return result

    def stop(self) -> None:
        self._stack.close()


def _now() -> float:
    import time

    return time.monotonic()
