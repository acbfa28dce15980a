"""The `keyflows` command.

Subcommands are discovered through the `keyflows.commands` entry-point group, so this
shell offers `serve` (from reference/) without importing it: conformance/ tests every
server, the reference one included, over HTTP only.
"""

from __future__ import annotations

import sys
import traceback
from importlib.metadata import entry_points
from pathlib import Path

import click

from keyflows.conformance.options import (
    COLOR_MODES,
    DEFAULT_ACCOUNT_LISTEN,
    DEFAULT_REQUEST_DEADLINE_S,
    DEFAULT_RUN_DEADLINE_S,
    RunOptions,
)


class _EntryPointGroup(click.Group):
    def _commands(self) -> dict[str, object]:
        return {ep.name: ep for ep in entry_points(group="keyflows.commands")}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(self._commands())

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        ep = self._commands().get(cmd_name)
        if ep is None:
            return None
        try:
            command = ep.load()  # type: ignore[attr-defined]
        except Exception as exc:
            # A missing optional part, or an error the specification raises while it
            # loads, must cost one clear line naming where, not a traceback.
            message = f"keyflows {cmd_name} is unavailable: {_where(exc)}"

            @click.command(cmd_name, help=message,
                           context_settings={"ignore_unknown_options": True})
            @click.argument("args", nargs=-1, type=click.UNPROCESSED)
            def unavailable(args: tuple[str, ...]) -> None:
                raise click.ClickException(message)

            return unavailable
        assert isinstance(command, click.Command)
        return command


def _where(exc: Exception) -> str:
    """`Type: message (file:line)` of the innermost frame, on one line."""
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" ({Path(frames[-1].filename).name}:{frames[-1].lineno})" if frames else ""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}{where}"


@click.group(cls=_EntryPointGroup)
@click.version_option(package_name="keyflows")
def main() -> None:
    """keyflows: vectors, a reference key server and a conformance runner."""


@click.command("conformance")
@click.option("--base-url", metavar="URL",
              help="Server under test. Without it, the bundled reference server is started "
                   "on an ephemeral loopback port and checked.")
@click.option("--account-listen", default=DEFAULT_ACCOUNT_LISTEN, show_default=True,
              metavar="HOST:PORT", help="Where the runner's account server listens.")
@click.option("--select", "patterns", multiple=True, metavar="GLOB",
              help="Run only checks whose id matches (glob or path prefix); repeatable.")
@click.option("--skip", multiple=True, metavar="GLOB",
              help="Leave out checks whose id matches (glob or path prefix); repeatable.")
@click.option("--known-failing", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              metavar="FILE", help="Check ids/globs expected to fail, one per line.")
@click.option("--report-json", type=click.Path(dir_okay=False, path_type=Path),
              metavar="FILE", help="Write the JSON report here.")
@click.option("--junit-xml", type=click.Path(dir_okay=False, path_type=Path),
              metavar="FILE", help="Write a JUnit XML report here.")
@click.option("--report-html", type=click.Path(dir_okay=False, path_type=Path),
              metavar="FILE", help="Write a self-contained HTML report here.")
@click.option("--docs-url", metavar="URL",
              help="Base URL of the spec site the HTML report links requirement ids to "
                   "(default: the docs built in this checkout, if any).")
@click.option("--save-exchanges", type=click.Path(file_okay=False, path_type=Path),
              metavar="DIR", help="Write each failing check's exchanges, unredacted, with a "
                                  "script that replays them.")
@click.option("--request-deadline", type=click.FloatRange(min=0.1),
              default=DEFAULT_REQUEST_DEADLINE_S, show_default=True, metavar="SECONDS",
              help="Limit on one whole exchange (connect, send, complete answer).")
@click.option("--run-deadline", type=click.FloatRange(min=1),
              default=DEFAULT_RUN_DEADLINE_S, show_default=True, metavar="SECONDS",
              help="Limit on the whole run; checks left are reported as not run.")
@click.option("--color", type=click.Choice(COLOR_MODES), default="auto", show_default=True,
              help="Colour the output (auto: on a terminal, unless NO_COLOR is set).")
@click.option("--trace", is_flag=True, help="Print every HTTP exchange (secrets redacted).")
@click.option("--list", "list_only", is_flag=True, help="List the checks and exit.")
@click.option("-x", "--exitfirst", is_flag=True,
              help="Stop after the first check that fails or errors (known failures aside).")
def conformance_command(base_url: str | None, account_listen: str, patterns: tuple[str, ...],
                        skip: tuple[str, ...], known_failing: Path | None,
                        report_json: Path | None, junit_xml: Path | None,
                        report_html: Path | None, docs_url: str | None,
                        save_exchanges: Path | None, request_deadline: float,
                        run_deadline: float, color: str, trace: bool,
                        list_only: bool, exitfirst: bool) -> None:
    """Check a key server against the keyflows v1 profile, over HTTP.

    The runner plays the clients and the account server the key server validates
    tokens with. Exit status: 0 all passed, 1 a check failed (or the run stopped early),
    2 the run could not start, 130 interrupted (reports are written all the same).
    """
    # Imported here so `keyflows --help` and the other subcommands skip the HTTP stack.
    from keyflows.conformance.orchestrator import StartError, run

    options = RunOptions(base_url=base_url, account_listen=account_listen,
                         patterns=list(patterns), skip=list(skip),
                         known_failing=known_failing, report_json=report_json,
                         junit_xml=junit_xml, report_html=report_html, docs_url=docs_url,
                         save_exchanges=save_exchanges, trace=trace, list_only=list_only,
                         request_deadline=request_deadline, run_deadline=run_deadline,
                         color=color, exitfirst=exitfirst)
    try:
        # The specification and the checks load first: an error in them (a YAML file that
        # does not parse, a label left out of a registry) is one line, not a traceback.
        from keyflows.conformance.registry import all_checks

        all_checks()
    except Exception as exc:
        click.echo(f"keyflows conformance: the checks failed to load: {_where(exc)}", err=True)
        sys.exit(2)
    try:
        code = run(options)
    except StartError as exc:
        click.echo(f"keyflows conformance: {exc}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        # The servers the run started are already stopped (the orchestrator's ExitStack).
        click.echo("\nkeyflows conformance: interrupted", err=True)
        sys.exit(130)
    if code == 130:
        click.echo("keyflows conformance: interrupted; reports written", err=True)
    sys.exit(code)
