"""The options of one conformance run (shared by the CLI and the pytest plugin; cheap to
import: no HTTP stack)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_REQUEST_DEADLINE_S = 15.0
"""Seconds for one whole exchange: connect, send, and the complete answer."""
DEFAULT_RUN_DEADLINE_S = 1800.0
"""Seconds for the whole run; checks left are reported as not run."""
DEFAULT_ACCOUNT_LISTEN = "127.0.0.1:0"
COLOR_MODES = ("auto", "always", "never")


@dataclass(frozen=True)
class RunOptions:
    base_url: str | None
    account_listen: str = DEFAULT_ACCOUNT_LISTEN
    patterns: list[str] | None = None
    skip: list[str] = field(default_factory=list)
    known_failing: Path | None = None
    report_json: Path | None = None
    junit_xml: Path | None = None
    report_html: Path | None = None
    docs_url: str | None = None
    save_exchanges: Path | None = None
    trace: bool = False
    list_only: bool = False
    request_deadline: float = DEFAULT_REQUEST_DEADLINE_S
    run_deadline: float = DEFAULT_RUN_DEADLINE_S
    color: str = "auto"
    exitfirst: bool = False
    """Stop after the first check that fails or errors (known failures aside)."""
