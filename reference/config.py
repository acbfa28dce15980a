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

from keyflows.reference.server_lock import ServerLockSettings

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
DEFAULT_MAX_BODY_BYTES = 65536
DEFAULT_LOG_LEVEL = "warning"
DEFAULT_ACCOUNT_TIMEOUT = 5.0
# session-challenge (SC-2, SC-3, SC-12); the ranges are the spec's.
DEFAULT_CHALLENGE_LIFETIME = 60
DEFAULT_CHALLENGE_MAX_ATTEMPTS = 5
DEFAULT_SESSION_LIFETIME = 900
LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")

ENV_HOST = "KEYFLOWS_HOST"
ENV_PORT = "KEYFLOWS_PORT"
ENV_DB = "KEYFLOWS_DB"
ENV_ACCOUNT_SERVER = "KEYFLOWS_ACCOUNT_SERVER"
ENV_MAX_BODY_BYTES = "KEYFLOWS_MAX_BODY_BYTES"
ENV_CHALLENGE_LIFETIME = "KEYFLOWS_CHALLENGE_LIFETIME"
ENV_CHALLENGE_MAX_ATTEMPTS = "KEYFLOWS_CHALLENGE_MAX_ATTEMPTS"
ENV_SESSION_LIFETIME = "KEYFLOWS_SESSION_LIFETIME"
ENV_SECRETS_KEY_FILE = "KEYFLOWS_SECRETS_KEY_FILE"


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
    challenge_lifetime: int = DEFAULT_CHALLENGE_LIFETIME
    challenge_max_attempts: int = DEFAULT_CHALLENGE_MAX_ATTEMPTS
    session_lifetime: int = DEFAULT_SESSION_LIFETIME
    # lock-layering: None = no server lock configured, the flow is not mounted
    server_lock: ServerLockSettings | None = None
    # Seals the server's own secrets when no server lock is configured; None: the
    # database's path with ".key" appended.
    secrets_key_file: Path | None = None


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
                  challenge_lifetime: str | None = None,
                  challenge_max_attempts: str | None = None,
                  session_lifetime: str | None = None,
                  server_lock: ServerLockSettings | None = None,
                  secrets_key_file: str | None = None,
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
    secrets_key_file = secrets_key_file or env.get(ENV_SECRETS_KEY_FILE)
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
        server_lock=server_lock,
        secrets_key_file=Path(secrets_key_file) if secrets_key_file else None,
        **challenge_settings(challenge_lifetime, challenge_max_attempts, session_lifetime,
                             env),
    )


def challenge_settings(lifetime: str | None, max_attempts: str | None,
                       session_lifetime: str | None, env: Mapping[str, str]) -> dict[str, int]:
    """The session-challenge lifetimes and attempt limit (flags, then environment), within
    the ranges the spec allows (SC-2, SC-3, SC-12)."""
    lifetime_text = lifetime or env.get(ENV_CHALLENGE_LIFETIME) or str(DEFAULT_CHALLENGE_LIFETIME)
    attempts_text = (max_attempts or env.get(ENV_CHALLENGE_MAX_ATTEMPTS)
                     or str(DEFAULT_CHALLENGE_MAX_ATTEMPTS))
    session_text = (session_lifetime or env.get(ENV_SESSION_LIFETIME)
                    or str(DEFAULT_SESSION_LIFETIME))
    return {
        "challenge_lifetime": parse_int(lifetime_text, "challenge lifetime (seconds)",
                                        minimum=1, maximum=300),
        "challenge_max_attempts": parse_int(attempts_text, "challenge max attempts",
                                            minimum=1, maximum=1000),
        "session_lifetime": parse_int(session_text, "session lifetime (seconds)",
                                      minimum=1, maximum=86400),
    }
