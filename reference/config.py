"""Reference server configuration: a Settings record built from flags or the environment.

Every value arrives as text (a flag or an environment variable) and is checked here, so a
bad value costs the operator one readable line instead of a traceback.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
DEFAULT_MAX_BODY_BYTES = 65536
DEFAULT_LOG_LEVEL = "warning"
DEFAULT_ACCOUNT_TIMEOUT = 5.0
LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")

ENV_HOST = "KEYFLOWS_HOST"
ENV_PORT = "KEYFLOWS_PORT"
ENV_DB = "KEYFLOWS_DB"
ENV_ACCOUNT_SERVER = "KEYFLOWS_ACCOUNT_SERVER"
ENV_MAX_BODY_BYTES = "KEYFLOWS_MAX_BODY_BYTES"


class ConfigError(Exception):
    """A configuration value is missing or invalid; the message is one line for the user."""


@dataclass(frozen=True)
class Settings:
    db_path: Path
    account_server: str
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    ready_file: Path | None = None
    log_level: str = DEFAULT_LOG_LEVEL
    account_timeout: float = DEFAULT_ACCOUNT_TIMEOUT


def parse_int(text: str, name: str, *, minimum: int, maximum: int) -> int:
    try:
        value = int(text.strip(), 10)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {text!r}") from None
    if not minimum <= value <= maximum:
        raise ConfigError(f"{name} must be in {minimum}..{maximum}, got {value}")
    return value


def check_account_server(url: str) -> str:
    """An http(s) base URL; requests go to {url}/v1/validate."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"account server must be an http(s) URL, got {url!r}")
    if parts.query or parts.fragment:
        raise ConfigError(f"account server URL must not have a query or fragment: {url!r}")
    return url.rstrip("/")


def load_settings(*, host: str | None, port: str | None, db: str | None,
                  account_server: str | None, max_body_bytes: str | None,
                  ready_file: str | None = None, log_level: str | None = None,
                  environ: Mapping[str, str] | None = None) -> Settings:
    """Settings from flag values, falling back to the KEYFLOWS_* environment variables."""
    env = os.environ if environ is None else environ
    host = host or env.get(ENV_HOST) or DEFAULT_HOST
    port_text = port or env.get(ENV_PORT) or str(DEFAULT_PORT)
    db = db or env.get(ENV_DB)
    account_server = account_server or env.get(ENV_ACCOUNT_SERVER)
    limit_text = max_body_bytes or env.get(ENV_MAX_BODY_BYTES) or str(DEFAULT_MAX_BODY_BYTES)
    if not account_server:
        raise ConfigError("no account server: pass --account-server URL"
                          f" or set {ENV_ACCOUNT_SERVER}")
    if not db:
        raise ConfigError(f"no database: pass --db PATH or set {ENV_DB}")
    level = (log_level or DEFAULT_LOG_LEVEL).lower()
    if level not in LOG_LEVELS:
        raise ConfigError(f"log level must be one of {', '.join(LOG_LEVELS)}, got {log_level!r}")
    return Settings(
        host=host,
        port=parse_int(port_text, "port", minimum=0, maximum=65535),
        db_path=Path(db),
        account_server=check_account_server(account_server),
        max_body_bytes=parse_int(limit_text, "max body bytes", minimum=1, maximum=2**31 - 1),
        ready_file=Path(ready_file) if ready_file else None,
        log_level=level,
    )
