"""`keyflows edv`: run the reference encrypted data vault (keyflows.reference.edv).

Options may also come from KEYFLOWS_EDV_* environment variables. With --port 0 the kernel
picks a free port; once the vault listens, its base URL is written to --ready-file.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import NoReturn

import click
import uvicorn

from keyflows.reference.cli import _ReadyServer, base_url, bind_socket, check_ready_file
from keyflows.reference.config import ConfigError, parse_int
from keyflows.reference.edv import create_edv_app
from keyflows.reference.store import StoreError

EXIT_BAD_CONFIG = 2


def fail(message: str) -> NoReturn:
    click.echo(f"keyflows edv: error: {message}", err=True)
    sys.exit(EXIT_BAD_CONFIG)


@click.command("edv")
@click.option("--host", help="Address to listen on [env KEYFLOWS_EDV_HOST; default 127.0.0.1].")
@click.option("--port", help="Port, 0 for an ephemeral one [env KEYFLOWS_EDV_PORT; default 8010].")
@click.option("--db", help="SQLite database file of the vaults [env KEYFLOWS_EDV_DB].")
@click.option("--ready-file", help="Write the base URL here once listening.")
@click.option("--log-level", default="warning", show_default=True,
              type=click.Choice(["critical", "error", "warning", "info", "debug"]))
def edv_command(host: str | None, port: str | None, db: str | None, ready_file: str | None,
                log_level: str) -> None:
    """Run the keyflows reference encrypted data vault (DIF Confidential Storage)."""
    try:
        host = host or os.environ.get("KEYFLOWS_EDV_HOST") or "127.0.0.1"
        port_number = parse_int(port or os.environ.get("KEYFLOWS_EDV_PORT") or "8010", "port",
                                minimum=0, maximum=65535)
        db = db or os.environ.get("KEYFLOWS_EDV_DB")
        if not db:
            raise ConfigError("no database: pass --db PATH or set KEYFLOWS_EDV_DB")
        ready = Path(ready_file) if ready_file else None
        check_ready_file(ready)
        try:
            app = create_edv_app(Path(db))
        except StoreError as exc:
            raise ConfigError(str(exc)) from None
        sock = bind_socket(host, port_number)
        bound = int(sock.getsockname()[1])
        config = uvicorn.Config(app, host=host, port=bound, log_level=log_level,
                                lifespan="on", access_log=False)
        _ReadyServer(config, base_url(host, bound), ready).run(sockets=[sock])
    except ConfigError as exc:
        fail(str(exc))
