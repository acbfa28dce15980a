"""Reference server configuration: a Settings record built from flags or the environment.

Every value arrives as text (a flag or an environment variable) and is checked here, so a
bad value costs the operator one readable line instead of a traceback.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypedDict
from urllib.parse import urlsplit

from keyflows.reference.server_lock import ServerLockSettings
from keyflows.spec import envelope as spec_envelope
from keyflows.spec import limits as spec_limits
from keyflows.spec import lock_layering_capability as capability
from keyflows.spec.errors import SpecError
from keyflows.spec.session_challenge import check_origin, origin_of_url

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
DEFAULT_MAX_BODY_BYTES = 65536
DEFAULT_LOG_LEVEL = "warning"
DEFAULT_ACCOUNT_TIMEOUT = 5.0
# session-challenge (SC-2, SC-3, SC-12); the ranges are the spec's.
DEFAULT_CHALLENGE_LIFETIME = 60
DEFAULT_CHALLENGE_MAX_ATTEMPTS = 5
DEFAULT_SESSION_LIFETIME = 900
# Connections (API-53): generous for honest clients on slow links, short enough that idle
# and trickling connections are not kept.
DEFAULT_HEADER_TIMEOUT = 10
DEFAULT_BODY_TIMEOUT = 30
# After body_timeout, a body must go on arriving at this many bytes/s on average.
DEFAULT_BODY_MIN_RATE = 4096
DEFAULT_IDLE_TIMEOUT = 5
DEFAULT_MAX_CONNECTIONS = 1024
# Rate limits (API-52, API-54): token buckets per requester, refilled within a minute.
DEFAULT_RATES: dict[str, spec_limits.Rate] = {
    "challenge-create": spec_limits.Rate(60, 60),
    "keyinit-fetch": spec_limits.Rate(120, 60),
    "keyinit-fetch-identity": spec_limits.Rate(10, 60),
    "uid-create": spec_limits.Rate(60, 60),
}
# Quotas (API-54): stored quantities per owner.
DEFAULT_QUOTAS: dict[str, int] = {
    "queue-per-device": 1000,
    "queue-per-sender": 100,
}
# lock-layering (LOCK-23): how long a root capability lives; the range is the spec's.
DEFAULT_ROOT_CAPABILITY_LIFETIME = 30 * 86400
# envelope (ENV-17): how long a message is served; the range is the spec's.
DEFAULT_MESSAGE_RETENTION = 7 * 86400
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
ENV_HEADER_TIMEOUT = "KEYFLOWS_HEADER_TIMEOUT"
ENV_BODY_TIMEOUT = "KEYFLOWS_BODY_TIMEOUT"
ENV_BODY_MIN_RATE = "KEYFLOWS_BODY_MIN_RATE"
ENV_IDLE_TIMEOUT = "KEYFLOWS_IDLE_TIMEOUT"
ENV_MAX_CONNECTIONS = "KEYFLOWS_MAX_CONNECTIONS"
ENV_RATES = "KEYFLOWS_RATES"
ENV_QUOTAS = "KEYFLOWS_QUOTAS"
ENV_ROOT_CAPABILITY_LIFETIME = "KEYFLOWS_ROOT_CAPABILITY_LIFETIME"
ENV_MESSAGE_RETENTION = "KEYFLOWS_MESSAGE_RETENTION"
ENV_ORIGIN = "KEYFLOWS_ORIGIN"
ENV_EDV_SERVERS = "KEYFLOWS_EDV_SERVERS"


class ConfigError(Exception):
    """A configuration value is missing or invalid; the message is one line for the user."""


@dataclass(frozen=True)
class Settings:
    db_path: Path
    """The SQLite database file (unused when db_url names a PostgreSQL database)."""
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
    # A postgresql:// URL: the database every process of a deployment shares.
    db_url: str | None = None
    # limits (API-51 .. API-54)
    header_timeout: int = DEFAULT_HEADER_TIMEOUT
    body_timeout: int = DEFAULT_BODY_TIMEOUT
    body_min_rate: int = DEFAULT_BODY_MIN_RATE
    idle_timeout: int = DEFAULT_IDLE_TIMEOUT
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    rates: dict[str, spec_limits.Rate] = field(default_factory=lambda: dict(DEFAULT_RATES))
    quotas: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_QUOTAS))
    root_capability_lifetime: int = DEFAULT_ROOT_CAPABILITY_LIFETIME
    # envelope step 12: seconds a message is served from its arrival (ENV-17)
    message_retention: int = DEFAULT_MESSAGE_RETENTION
    # The origin clients reach the server at (session-challenge, SC-17); None: the origin
    # of http://host:port as the server listens.
    origin: str | None = None
    # lock-layering step 12: the encrypted data vault servers keystores may use (LOCK-35)
    edv_servers: tuple[str, ...] = ()


def listening_url(host: str, port: int) -> str:
    """The base URL of a server listening on host:port (brackets around an IPv6 host)."""
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def effective_origin(settings: Settings) -> str:
    """SC-17: the configured origin, else the one of the listening address."""
    return settings.origin or origin_of_url(listening_url(settings.host, settings.port))


def check_origin_setting(text: str) -> str:
    """An origin as RFC 6454 serializes it (https://keys.example, http://127.0.0.1:8000)."""
    try:
        return check_origin(text.strip())
    except SpecError:
        raise ConfigError(f"origin must be scheme://host[:port] (https or http, lowercase "
                          f"host, no default port, no path), got {text!r}") from None


def database_of(settings: Settings) -> Path | str:
    """What the stores open: the PostgreSQL URL if one is configured, else the file."""
    return settings.db_url or settings.db_path


def parse_int(text: str, name: str, *, minimum: int, maximum: int) -> int:
    try:
        value = int(text.strip(), 10)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {text!r}") from None
    if not minimum <= value <= maximum:
        raise ConfigError(f"{name} must be in {minimum}..{maximum}, got {value}")
    return value


def check_server_url(url: str, what: str) -> str:
    """An http(s) base URL without query or fragment."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query \
            or parts.fragment:
        raise ConfigError(f"{what} must be an http(s) base URL, got {url!r}")
    return url.rstrip("/")


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
                  limits: Mapping[str, str | None] | None = None,
                  root_capability_lifetime: str | None = None,
                  message_retention: str | None = None,
                  origin: str | None = None,
                  edv_servers: tuple[str, ...] = (),
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
    root_text = (root_capability_lifetime or env.get(ENV_ROOT_CAPABILITY_LIFETIME)
                 or str(DEFAULT_ROOT_CAPABILITY_LIFETIME))
    retention_text = (message_retention or env.get(ENV_MESSAGE_RETENTION)
                      or str(DEFAULT_MESSAGE_RETENTION))
    origin = origin or env.get(ENV_ORIGIN)
    level = (log_level or DEFAULT_LOG_LEVEL).lower()
    if level not in LOG_LEVELS:
        raise ConfigError(f"log level must be one of {', '.join(LOG_LEVELS)}, got {log_level!r}")
    postgres = db.startswith(("postgresql://", "postgres://"))
    if postgres and not (secrets_key_file or server_lock):
        raise ConfigError("with a PostgreSQL database, configure a server lock or"
                          " --secrets-key-file (the same for every process): the server's"
                          " secrets are never stored in the clear")
    return Settings(
        host=host,
        port=parse_int(port_text, "port", minimum=0, maximum=65535),
        db_path=Path() if postgres else Path(db),
        db_url=db if postgres else None,
        account_server=check_account_server(account_server),
        max_body_bytes=parse_int(limit_text, "max body bytes", minimum=1, maximum=2**31 - 1),
        ready_file=Path(ready_file) if ready_file else None,
        log_level=level,
        server_lock=server_lock,
        secrets_key_file=Path(secrets_key_file) if secrets_key_file else None,
        **limit_settings(limits or {}, env),
        root_capability_lifetime=parse_int(root_text, "root capability lifetime (seconds)",
                                           minimum=capability.MIN_ROOT_LIFETIME,
                                           maximum=capability.MAX_ROOT_LIFETIME),
        message_retention=parse_int(retention_text, "message retention (seconds)",
                                    minimum=spec_envelope.MIN_RETENTION_SECONDS,
                                    maximum=spec_envelope.MAX_RETENTION_SECONDS),
        origin=check_origin_setting(origin) if origin else None,
        edv_servers=tuple(check_server_url(u, "EDV server") for u in (
            edv_servers or tuple(u for u in env.get(ENV_EDV_SERVERS, "").split(",") if u))),
        **challenge_settings(challenge_lifetime, challenge_max_attempts, session_lifetime,
                             env),
    )


class ChallengeSettings(TypedDict):
    challenge_lifetime: int
    challenge_max_attempts: int
    session_lifetime: int


class LimitSettings(TypedDict):
    header_timeout: int
    body_timeout: int
    body_min_rate: int
    idle_timeout: int
    max_connections: int
    rates: dict[str, spec_limits.Rate]
    quotas: dict[str, int]


def challenge_settings(lifetime: str | None, max_attempts: str | None,
                       session_lifetime: str | None, env: Mapping[str, str]
                       ) -> ChallengeSettings:
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


def limit_settings(flags: Mapping[str, str | None], env: Mapping[str, str]) -> LimitSettings:
    """Deadlines, connection limit, rates and quotas from flags, then the environment.

    Rates and quotas are lists `name=CAPACITY/WINDOW,...` and `name=LIMIT,...` that
    change the named defaults; an unknown name is an error, not silently ignored."""
    def value(name: str, variable: str, default: int) -> str:
        return flags.get(name) or env.get(variable) or str(default)

    return {
        "header_timeout": parse_int(value("header_timeout", ENV_HEADER_TIMEOUT,
                                          DEFAULT_HEADER_TIMEOUT),
                                    "header timeout (seconds)", minimum=1, maximum=3600),
        "body_timeout": parse_int(value("body_timeout", ENV_BODY_TIMEOUT, DEFAULT_BODY_TIMEOUT),
                                  "body timeout (seconds)", minimum=1, maximum=3600),
        "body_min_rate": parse_int(value("body_min_rate", ENV_BODY_MIN_RATE,
                                         DEFAULT_BODY_MIN_RATE),
                                   "body minimum rate (bytes/s)", minimum=1,
                                   maximum=spec_limits.MAX_BODY_MIN_RATE),
        "idle_timeout": parse_int(value("idle_timeout", ENV_IDLE_TIMEOUT, DEFAULT_IDLE_TIMEOUT),
                                  "idle timeout (seconds)", minimum=1, maximum=3600),
        "max_connections": parse_int(value("max_connections", ENV_MAX_CONNECTIONS,
                                           DEFAULT_MAX_CONNECTIONS),
                                     "max connections", minimum=1, maximum=1_000_000),
        "rates": parse_rates(flags.get("rates") or env.get(ENV_RATES) or ""),
        "quotas": parse_quotas(flags.get("quotas") or env.get(ENV_QUOTAS) or ""),
    }


def _assignments(text: str, what: str, known: Mapping[str, object]) -> list[tuple[str, str]]:
    out = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or name not in known:
            raise ConfigError(f"{what} must be NAME=VALUE with NAME one of"
                              f" {', '.join(sorted(known))}, got {item!r}")
        out.append((name, value.strip()))
    return out


def parse_rates(text: str) -> dict[str, spec_limits.Rate]:
    """`challenge-create=60/60,uid-create=30/60` over the defaults."""
    rates = dict(DEFAULT_RATES)
    for name, value in _assignments(text, "a rate", DEFAULT_RATES):
        capacity, sep, window = value.partition("/")
        if not sep:
            raise ConfigError(f"rate {name} must be CAPACITY/WINDOW_SECONDS, got {value!r}")
        try:
            rates[name] = spec_limits.Rate(
                parse_int(capacity, f"rate {name} capacity", minimum=1,
                          maximum=spec_limits.MAX_CAPACITY),
                parse_int(window, f"rate {name} window", minimum=1,
                          maximum=spec_limits.MAX_WINDOW_SECONDS))
        except SpecError as exc:
            raise ConfigError(f"rate {name}: {exc}") from None
    return rates


def parse_quotas(text: str) -> dict[str, int]:
    """`queue-per-device=1000,queue-per-sender=100` over the defaults."""
    quotas = dict(DEFAULT_QUOTAS)
    for name, value in _assignments(text, "a quota", DEFAULT_QUOTAS):
        quotas[name] = parse_int(value, f"quota {name}", minimum=1,
                                 maximum=spec_limits.MAX_QUOTA)
    return quotas
