"""`keyflows witness`: a transparency-log witness (c2sp.org/tlog-witness).

  POST <prefix>/add-checkpoint           cosign a checkpoint consistent with the last one
  GET  <prefix>/<sha256(origin) hex>/checkpoint   the latest cosigned checkpoint of a log

Every decision is keyflows.spec.hashchain_witness.add_checkpoint's; this module keeps the
state per log origin in its own SQLite database and stores the new state in the same
IMMEDIATE transaction that read the old one, so two concurrent submissions can never roll
it back (HC-42). The witness's Ed25519 seed is a sealed server secret of that database
(sealed_secrets.py: under a 0600 key file beside it, or a server lock).
"""

from __future__ import annotations

import hashlib
import os
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import click
import uvicorn
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from keyflows.reference.cli import bind_socket, check_ready_file, write_ready_file
from keyflows.reference.config import ConfigError, parse_int
from keyflows.reference.limits import read_body
from keyflows.reference.problems import Problem
from keyflows.reference.sealed_secrets import SecretsError, ServerSecrets, open_server_secrets
from keyflows.reference.store import Database, StoreError, open_connection
from keyflows.spec import hashchain_note as note
from keyflows.spec import hashchain_witness as witness
from keyflows.spec import primitives
from keyflows.spec.errors import SpecError

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS witness_logs (
        origin TEXT PRIMARY KEY,
        size INTEGER NOT NULL,
        root BLOB NOT NULL,
        checkpoint BLOB NOT NULL
    ) WITHOUT ROWID""",
)
WITNESS_KEY_SECRET = "witness.key"
EXIT_BAD_CONFIG = 2


@dataclass(frozen=True)
class WitnessSettings:
    db_path: Path
    name: str
    logs: tuple[note.Verifier, ...]
    host: str = "127.0.0.1"
    port: int = 8100
    ready_file: Path | None = None
    secrets_key_file: Path | None = None


class WitnessStore(Database):
    """The latest cosigned checkpoint of every witnessed log."""

    @classmethod
    def open(cls, path: Path) -> WitnessStore:
        return cls(open_connection(path, SCHEMA))

    def add_checkpoint(self, request: witness.AddCheckpoint, *,
                       logs: dict[str, list[note.Verifier]], name: str, seed: bytes,
                       now: int) -> witness.Cosigned:
        """HC-40, HC-42: judge against the stored state and store the new one, atomically."""
        _, checkpoint = witness.checkpoint_of(request)
        with self.write() as db:
            row = db.execute("SELECT size, root, checkpoint FROM witness_logs WHERE origin = ?",
                             (checkpoint.origin,)).fetchone()
            state = None if row is None else witness.LogState(int(row[0]), bytes(row[1]),
                                                              bytes(row[2]))
            cosigned = witness.add_checkpoint(request, logs=logs, state=state, name=name,
                                              seed=seed, now=now)
            db.execute("INSERT INTO witness_logs (origin, size, root, checkpoint)"
                       " VALUES (?, ?, ?, ?) ON CONFLICT (origin) DO UPDATE SET"
                       " size = excluded.size, root = excluded.root,"
                       " checkpoint = excluded.checkpoint",
                       (checkpoint.origin, cosigned.state.size, cosigned.state.root,
                        cosigned.state.checkpoint))
            return cosigned

    def latest(self, origin_hash: str) -> bytes | None:
        rows = self.read(lambda db: db.execute(
            "SELECT origin, checkpoint FROM witness_logs").fetchall())
        for origin, checkpoint in rows:
            if hashlib.sha256(str(origin).encode("utf-8")).hexdigest() == origin_hash:
                return bytes(checkpoint)
        return None


def witness_seed(secrets: ServerSecrets) -> bytes:
    """The witness's Ed25519 seed: a sealed secret of its database, made on first use."""
    return secrets.get_or_create(WITNESS_KEY_SECRET, lambda: os.urandom(32))


def create_witness_app(settings: WitnessSettings) -> Starlette:
    store = WitnessStore.open(settings.db_path)
    secrets = open_server_secrets(store, db_path=settings.db_path, server_lock=None,
                                  key_file=settings.secrets_key_file)
    seed = witness_seed(secrets)
    logs: dict[str, list[note.Verifier]] = {}
    for key in settings.logs:
        logs.setdefault(key.name, []).append(key)

    async def add_checkpoint(request: Request) -> Response:
        body = await read_body(request, witness.MAX_REQUEST_LEN)
        try:
            parsed = witness.parse_add_checkpoint(body)
            cosigned = await run_in_threadpool(lambda: store.add_checkpoint(
                parsed, logs=logs, name=settings.name, seed=seed, now=int(time.time())))
        except SpecError as exc:
            answer = witness.answer_for(exc)
            return Response(answer.body, status_code=answer.status,
                            media_type=answer.content_type)
        return Response(cosigned.body(), media_type=witness.SIGNATURES_MEDIA_TYPE)

    async def latest(request: Request) -> Response:
        found = await run_in_threadpool(lambda: store.latest(request.path_params["origin"]))
        if found is None:
            return Response(b"no checkpoint of that log was cosigned here\n", status_code=404,
                            media_type="text/plain; charset=utf-8")
        return Response(found, media_type="text/plain; charset=utf-8",
                        headers={"Cache-Control": "public, max-age=60"})

    async def problem(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, Problem)
        return Response(f"{exc.args[0]}\n".encode(), status_code=exc.status,
                        media_type="text/plain; charset=utf-8")

    app = Starlette(routes=[
        Route(f"/{witness.ADD_CHECKPOINT}", add_checkpoint, methods=["POST"]),
        Route("/{origin:str}/checkpoint", latest, methods=["GET"]),
    ], exception_handlers={Problem: problem})
    app.state.vkey = note.witness_verifier(settings.name,
                                           primitives.ed25519_public_key(seed)).vkey

    def close() -> None:
        secrets.close()
        store.close()

    app.state.close = close
    return app


# --- command line ---------------------------------------------------------------------------

class _ReadyWitness(uvicorn.Server):
    """Announces the witness's URL in the ready file once it accepts connections."""

    def __init__(self, config: uvicorn.Config, url: str, ready_file: Path | None) -> None:
        super().__init__(config)
        self.url, self.ready_file = url, ready_file

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if not self.should_exit and self.ready_file is not None:
            write_ready_file(self.ready_file, self.url)


def fail(message: str) -> NoReturn:
    click.echo(f"keyflows witness: error: {message}", err=True)
    sys.exit(EXIT_BAD_CONFIG)


def load_witness_settings(*, db: str | None, name: str | None, logs: tuple[str, ...],
                          host: str | None, port: str | None, ready_file: str | None,
                          secrets_key_file: str | None) -> WitnessSettings:
    if not db:
        raise ConfigError("no database: pass --db PATH")
    if not name:
        raise ConfigError("no witness name: pass --name (a schema-less URL, e.g. "
                          "witness.example/w1)")
    try:
        note.check_key_name(name)
        keys = tuple(note.parse_vkey(text) for text in logs)
    except SpecError as exc:
        raise ConfigError(str(exc)) from None
    if any(k.sig_type != note.SIG_ED25519 for k in keys):
        raise ConfigError("--log takes a log's Ed25519 vkey (signature type 0x01)")
    return WitnessSettings(db_path=Path(db), name=name, logs=keys, host=host or "127.0.0.1",
                           port=parse_int(port or "8100", "port", minimum=0, maximum=65535),
                           ready_file=Path(ready_file) if ready_file else None,
                           secrets_key_file=Path(secrets_key_file) if secrets_key_file
                           else None)


@click.command("witness")
@click.option("--db", help="SQLite database file of the witness's state and sealed key.")
@click.option("--name", help="The witness's key name (a schema-less URL).")
@click.option("--log", "logs", multiple=True,
              help="The vkey of a log to witness (repeat for more logs or keys).")
@click.option("--host", help="Address to listen on [default 127.0.0.1].")
@click.option("--port", help="Port, 0 for an ephemeral one [default 8100].")
@click.option("--ready-file", help="Write the base URL here once listening.")
@click.option("--secrets-key-file", help="Key sealing the witness key [default the database "
                                         "path + .key].")
@click.option("--print-vkey", is_flag=True, help="Print the witness's vkey and exit.")
def witness_command(db: str | None, name: str | None, logs: tuple[str, ...],
                    host: str | None, port: str | None, ready_file: str | None,
                    secrets_key_file: str | None, print_vkey: bool) -> None:
    """Run a tlog-witness that cosigns the checkpoints of the logs it is given."""
    try:
        settings = load_witness_settings(db=db, name=name, logs=logs, host=host, port=port,
                                         ready_file=ready_file,
                                         secrets_key_file=secrets_key_file)
        check_ready_file(settings.ready_file)
        try:
            app = create_witness_app(settings)
        except (StoreError, SecretsError) as exc:
            raise ConfigError(str(exc)) from None
        if print_vkey:
            click.echo(app.state.vkey)
            app.state.close()
            return
        if not settings.logs:
            raise ConfigError("no log to witness: pass --log VKEY")
        sock = bind_socket(settings.host, settings.port)
        url = (f"http://[{settings.host}]:{sock.getsockname()[1]}" if ":" in settings.host
               else f"http://{settings.host}:{sock.getsockname()[1]}")
        click.echo(f"keyflows witness {app.state.vkey} on {url}", err=True)
        _ReadyWitness(uvicorn.Config(app, log_level="warning", lifespan="off"), url,
                      settings.ready_file).run(sockets=[sock])
    except ConfigError as exc:
        fail(str(exc))
