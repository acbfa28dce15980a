"""`keyflows serve` and `python -m keyflows.reference`: run the reference server.

Every option can also come from a KEYFLOWS_* environment variable. With --port 0 the
kernel picks a free port; once the server listens, its base URL and a newline are written
to --ready-file (through a temporary file and a rename, so no reader sees half a line).
"""

from __future__ import annotations

import os
import socket
import sys
from dataclasses import replace
from pathlib import Path
from typing import NoReturn

import click
import uvicorn

from keyflows.reference.app import create_app
from keyflows.reference.config import ConfigError, Settings, load_settings
from keyflows.reference.sealed_secrets import SecretsError
from keyflows.reference.server_lock import ServerLockError, configured_server_lock
from keyflows.reference.serving import uvicorn_config
from keyflows.reference.store import StoreError

EXIT_BAD_CONFIG = 2


def fail(message: str) -> NoReturn:
    click.echo(f"keyflows serve: error: {message}", err=True)
    sys.exit(EXIT_BAD_CONFIG)


def bind_socket(host: str, port: int) -> socket.socket:
    """Bind before serving, so port 0 resolves to a known port for the ready-file."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    return sock


def base_url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def write_ready_file(path: Path, url: str) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(url + "\n", encoding="ascii")
    os.replace(temporary, path)


def check_ready_file(path: Path | None) -> None:
    if path is not None and not path.parent.is_dir():
        raise ConfigError(f"the directory of the ready file does not exist: {str(path.parent)!r}")


class _ReadyServer(uvicorn.Server):
    """A uvicorn server that announces its URL once it accepts connections."""

    def __init__(self, config: uvicorn.Config, url: str, ready_file: Path | None) -> None:
        super().__init__(config)
        self.url = url
        self.ready_file = ready_file

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.should_exit or self.ready_file is None:
            return
        try:
            write_ready_file(self.ready_file, self.url)
        except OSError as exc:
            click.echo(f"keyflows serve: error: cannot write ready file: {exc}", err=True)
            self.should_exit = True


def serve(settings: Settings) -> None:
    check_ready_file(settings.ready_file)
    sock = bind_socket(settings.host, settings.port)
    port = int(sock.getsockname()[1])
    # With --port 0 the origin of the listening address is known only now (SC-17).
    settings = replace(settings, port=port)
    try:
        app = create_app(settings)
    except (StoreError, ServerLockError, SecretsError) as exc:
        sock.close()
        raise ConfigError(str(exc)) from None
    except BaseException:
        sock.close()
        raise
    config = uvicorn_config(app, settings, port=port)
    server = _ReadyServer(config, base_url(settings.host, port), settings.ready_file)
    server.run(sockets=[sock])


@click.command("serve")
@click.option("--host", help="Address to listen on [env KEYFLOWS_HOST; default 127.0.0.1].")
@click.option("--port", help="Port, 0 for an ephemeral one [env KEYFLOWS_PORT; default 8000].")
@click.option("--db", help="SQLite database file, or a postgresql:// URL shared by several "
                          "processes [env KEYFLOWS_DB].")
@click.option("--account-server", help="Account server base URL [env KEYFLOWS_ACCOUNT_SERVER].")
@click.option("--max-body-bytes",
              help="Largest accepted request body [env KEYFLOWS_MAX_BODY_BYTES; default 65536].")
@click.option("--secrets-key-file",
              help="Key sealing the server's own secrets when no server lock is configured, "
                   "mode 0600, created if absent [env KEYFLOWS_SECRETS_KEY_FILE; default the "
                   "database path + .key].")
@click.option("--header-timeout", help="Seconds for a request's line and headers to arrive "
                                      "[env KEYFLOWS_HEADER_TIMEOUT; default 10].")
@click.option("--body-timeout", help="Seconds for a request body to arrive after its headers "
                                    "[env KEYFLOWS_BODY_TIMEOUT; default 30].")
@click.option("--body-min-rate", help="Bytes per second a request body must average once "
                                      "the body timeout has passed, so a large upload goes on "
                                      "while a trickled one is cut "
                                      "[env KEYFLOWS_BODY_MIN_RATE; default 4096].")
@click.option("--idle-timeout", help="Seconds a connection may stay idle between requests "
                                    "[env KEYFLOWS_IDLE_TIMEOUT; default 5].")
@click.option("--max-connections", help="Open connections beyond which new ones get 503 "
                                       "[env KEYFLOWS_MAX_CONNECTIONS; default 1024].")
@click.option("--rates", help="Rate limits NAME=CAPACITY/WINDOW_SECONDS,... over the defaults "
                             "[env KEYFLOWS_RATES]; names: challenge-create, keyinit-fetch, "
                             "keyinit-fetch-identity, uid-create.")
@click.option("--quotas", help="Quotas NAME=LIMIT,... over the defaults [env KEYFLOWS_QUOTAS]; "
                              "names: queue-per-device, queue-per-sender.")
@click.option("--ready-file", help="Write the base URL here once listening.")
@click.option("--origin", help="The origin clients reach the server at, e.g. "
                               "https://keys.example; session challenges name it "
                               "[env KEYFLOWS_ORIGIN; default http://HOST:PORT].")
@click.option("--log-level", help="uvicorn log level [default warning].")
@click.option("--challenge-lifetime",
              help="Session-challenge lifetime in seconds, 1..300 "
                   "[env KEYFLOWS_CHALLENGE_LIFETIME; default 60].")
@click.option("--challenge-max-attempts",
              help="Challenges per user within one challenge lifetime, 1..1000 "
                   "[env KEYFLOWS_CHALLENGE_MAX_ATTEMPTS; default 5].")
@click.option("--session-lifetime",
              help="Session-token lifetime in seconds, 1..86400 "
                   "[env KEYFLOWS_SESSION_LIFETIME; default 900].")
@click.option("--server-lock", type=click.Choice(["file", "aws-kms", "pkcs11"]),
              help="Server lock of the lock-layering flow [env KEYFLOWS_SERVER_LOCK; default "
                   "file when a master key file is given; none: the flow is off].")
@click.option("--master-key-file", help="32-byte master key, mode 0600 "
                                        "[env KEYFLOWS_MASTER_KEY_FILE].")
@click.option("--kms-key-id", help="AWS KMS key id, ARN or alias [env KEYFLOWS_KMS_KEY_ID].")
@click.option("--kms-endpoint", help="AWS KMS endpoint URL [env KEYFLOWS_KMS_ENDPOINT].")
@click.option("--kms-region", help="AWS region [env KEYFLOWS_KMS_REGION or AWS_REGION].")
@click.option("--pkcs11-lib", help="PKCS#11 module [env KEYFLOWS_PKCS11_LIB; default SoftHSM2]; "
                                   "the user PIN comes from KEYFLOWS_PKCS11_PIN only.")
@click.option("--pkcs11-token", help="PKCS#11 token label [env KEYFLOWS_PKCS11_TOKEN].")
@click.option("--pkcs11-key-label", help="Label of the AES-256 key on the token "
                                         "[env KEYFLOWS_PKCS11_KEY_LABEL].")
@click.option("--edv-server", "edv_servers", multiple=True,
              help="An encrypted data vault server keystores may keep their working keys in; "
                   "repeatable [env KEYFLOWS_EDV_SERVERS, comma-separated].")
@click.option("--root-capability-lifetime",
              help="Seconds a keystore's root capability lives, 60..31622400 "
                   "[env KEYFLOWS_ROOT_CAPABILITY_LIFETIME; default 2592000].")
@click.option("--message-retention",
              help="Seconds an envelope message is served from its arrival, 1..31622400 "
                   "[env KEYFLOWS_MESSAGE_RETENTION; default 604800].")
def serve_command(host: str | None, port: str | None, db: str | None,
                  account_server: str | None, max_body_bytes: str | None,
                  secrets_key_file: str | None, header_timeout: str | None,
                  body_timeout: str | None, body_min_rate: str | None,
                  idle_timeout: str | None,
                  max_connections: str | None, rates: str | None, quotas: str | None,
                  ready_file: str | None, origin: str | None, log_level: str | None,
                  challenge_lifetime: str | None, challenge_max_attempts: str | None,
                  session_lifetime: str | None, server_lock: str | None,
                  master_key_file: str | None, kms_key_id: str | None,
                  kms_endpoint: str | None, kms_region: str | None, pkcs11_lib: str | None,
                  pkcs11_token: str | None, pkcs11_key_label: str | None,
                  edv_servers: tuple[str, ...], root_capability_lifetime: str | None,
                  message_retention: str | None) -> None:
    """Run the keyflows reference key server."""
    try:
        lock = configured_server_lock(
            backend=server_lock, master_key_file=master_key_file, kms_key_id=kms_key_id,
            kms_endpoint=kms_endpoint, kms_region=kms_region, pkcs11_lib=pkcs11_lib,
            pkcs11_token=pkcs11_token, pkcs11_key_label=pkcs11_key_label)
        settings = load_settings(host=host, port=port, db=db, account_server=account_server,
                                 max_body_bytes=max_body_bytes, ready_file=ready_file,
                                 secrets_key_file=secrets_key_file, origin=origin,
                                 limits={"header_timeout": header_timeout,
                                         "body_timeout": body_timeout,
                                         "body_min_rate": body_min_rate,
                                         "idle_timeout": idle_timeout,
                                         "max_connections": max_connections,
                                         "rates": rates, "quotas": quotas},
                                 log_level=log_level, challenge_lifetime=challenge_lifetime,
                                 challenge_max_attempts=challenge_max_attempts,
                                 session_lifetime=session_lifetime, server_lock=lock,
                                 root_capability_lifetime=root_capability_lifetime,
                                 message_retention=message_retention,
                                 edv_servers=edv_servers)
        serve(settings)
    except (ConfigError, ServerLockError) as exc:
        fail(str(exc))
