"""The `keyflows` command.

Subcommands are discovered through the `keyflows.commands` entry-point group, so this
shell offers `serve` (from reference/) without importing it: conformance/ tests every
server, the reference one included, over HTTP only.
"""

from __future__ import annotations

from importlib.metadata import entry_points

import click


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
        except ImportError as exc:
            # A missing optional part must cost one clear line, not a traceback.
            message = f"keyflows {cmd_name} is unavailable: {exc}"

            @click.command(cmd_name, help=message, context_settings={"ignore_unknown_options": True})
            @click.argument("args", nargs=-1, type=click.UNPROCESSED)
            def unavailable(args: tuple[str, ...]) -> None:
                raise click.ClickException(message)

            return unavailable
        assert isinstance(command, click.Command)
        return command


@click.group(cls=_EntryPointGroup)
@click.version_option(package_name="keyflows")
def main() -> None:
    """keyflows: vectors, a reference key server and a conformance runner."""


@click.command("conformance")
def conformance_command() -> None:
    """Run the conformance suite (placeholder, replaced by the runner)."""
    raise click.ClickException("not implemented yet")
