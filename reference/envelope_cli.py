"""`keyflows envelope`: seal a file to devices and open it, in constant memory.

    keyflows envelope keygen -o device.key [--user bob --device phone]   prints the device's
                                                                          recipient line
    keyflows envelope seal --sender sender.key -R recipients.txt [--suite S] -o OUT IN
    keyflows envelope open --key device.key --sender-public sender.pub -o OUT IN

A key file is JSON: a device's {"user_id", "device_id", "x25519", "mlkem_seed"} or a
sender's {"user_id", "client_id", "key_version", "x25519"} (private keys, base64url). A
recipient line is `user_id device_id x25519 mlkem768` (public keys, base64url) -- what a
sender takes from a verified device list (ENV-22). The sealed file is the envelope JSON on
one line, a newline, then the STREAM payload (ENV-23): what a sender posts and uploads, in
one file. The tool is a client of the spec (keyflows.spec.envelope) and does no I/O but
files: a small command to compare, process for process, with `age`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, BinaryIO

import click

from keyflows.spec import envelope as E
from keyflows.spec import envelope_devices as D
from keyflows.spec import envelope_stream as S
from keyflows.spec import primitives
from keyflows.spec.drbg import unrecorded
from keyflows.spec.encoding import b64url_decode, b64url_encode
from keyflows.spec.errors import SpecError

PIECE = 1 << 20
RANDOM = unrecorded(os.urandom)


def _load(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise click.ClickException(f"cannot read key file {path}: {exc}") from None
    if not isinstance(data, dict):
        raise click.ClickException(f"key file {path} is not a JSON object")
    return data


def _b64(data: dict[str, Any], key: str, path: Path) -> bytes:
    try:
        return b64url_decode(str(data[key]))
    except (KeyError, SpecError) as exc:
        raise click.ClickException(f"key file {path}: bad or missing {key!r} ({exc})") from None


def _recipients(path: Path) -> list[D.Device]:
    devices = []
    try:
        lines = path.read_text(encoding="ascii").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise click.ClickException(f"cannot read recipients {path}: {exc}") from None
    for number, line in enumerate(lines, 1):
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) != 4:
            raise click.ClickException(f"{path}:{number}: expected `user_id device_id x25519 "
                                       "mlkem768`")
        try:
            device = D.Device(user_id=parts[0], device_id=D.check_device_id(parts[1]),
                              x25519=b64url_decode(parts[2]), mlkem768=b64url_decode(parts[3]))
            primitives.check_x25519_public_key(device.x25519, requirement="ENV-2")
        except SpecError as exc:
            raise click.ClickException(f"{path}:{number}: {exc}") from None
        devices.append(device)
    return devices


@click.group(name="envelope")
def envelope_command() -> None:
    """Seal a file to devices and open it (the envelope flow's client side)."""


@envelope_command.command()
@click.option("-o", "--out", "out", type=click.Path(path_type=Path), required=True,
              help="Where to write the device's private keys (mode 0600).")
@click.option("--user", default="user", show_default=True)
@click.option("--device", default="device", show_default=True)
def keygen(out: Path, user: str, device: str) -> None:
    """A device key pair; prints its recipient line."""
    keys = D.generate_device_keys(os.urandom)
    x25519, mlkem768 = D.device_keys(keys)
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump({"user_id": user, "device_id": device, "x25519": b64url_encode(keys.x25519),
                   "mlkem_seed": b64url_encode(keys.mlkem_seed)}, handle)
    click.echo(f"{user} {device} {b64url_encode(x25519)} {b64url_encode(mlkem768)}")


def _copy_sealed(source: BinaryIO, sink: BinaryIO, sealer: S.StreamSealer) -> None:
    while piece := source.read(PIECE):
        for chunk in sealer.update(piece):
            sink.write(chunk)
    sink.write(sealer.finish())


@envelope_command.command()
@click.option("--sender", "sender_path", type=click.Path(path_type=Path, exists=True),
              required=True, help="The sender's key file.")
@click.option("-R", "--recipients", "recipients_path",
              type=click.Path(path_type=Path, exists=True), required=True)
@click.option("--suite", type=click.Choice(E.SUITES), default=E.SUITE_X25519,
              show_default=True)
@click.option("-o", "--out", "out", type=click.Path(path_type=Path), required=True)
@click.argument("source", type=click.Path(path_type=Path, exists=True, dir_okay=False))
def seal(sender_path: Path, recipients_path: Path, suite: str, out: Path,
         source: Path) -> None:
    """Seal SOURCE to every recipient: the envelope line, then the STREAM payload."""
    data = _load(sender_path)
    sender = E.SenderKeys(user_id=str(data.get("user_id")), client_id=str(data.get("client_id")),
                          key_version=int(data.get("key_version", 0)),
                          x25519_private=_b64(data, "x25519", sender_path))
    try:
        header = E.seal_header(suite=suite, sender=sender,
                               recipients=_recipients(recipients_path),
                               plaintext_length=source.stat().st_size, random=RANDOM)
    except SpecError as exc:
        raise click.ClickException(str(exc)) from None
    with source.open("rb") as reader, out.open("wb") as writer:
        writer.write(E.envelope_json(header.envelope) + b"\n")
        _copy_sealed(reader, writer, S.StreamSealer(header.keys.payload_key))


@envelope_command.command(name="open")
@click.option("--key", "key_path", type=click.Path(path_type=Path, exists=True), required=True)
@click.option("--sender-public", "sender_path", type=click.Path(path_type=Path, exists=True),
              required=True, help="The sender's published keys: {user_id, client_id, "
              "key_version, x25519}.")
@click.option("--payload", "payload_path", type=click.Path(path_type=Path, exists=True),
              default=None, help="Read the payload from this file (as downloaded raw from "
              "a server) rather than after the envelope line of SOURCE.")
@click.option("-o", "--out", "out", type=click.Path(path_type=Path), required=True)
@click.argument("source", type=click.Path(path_type=Path, exists=True, dir_okay=False))
def open_command(key_path: Path, sender_path: Path, payload_path: Path | None, out: Path,
                 source: Path) -> None:
    """Open a sealed file as one device; nothing is left at OUT if any check fails."""
    key = _load(key_path)
    device = D.DevicePrivateKeys(x25519=_b64(key, "x25519", key_path),
                                 mlkem_seed=_b64(key, "mlkem_seed", key_path))
    data = _load(sender_path)
    sender = D.PublishedKeys(user_id=str(data.get("user_id")),
                             client_id=str(data.get("client_id")),
                             key_version=int(data.get("key_version", 0)),
                             x25519=_b64(data, "x25519", sender_path), ed25519=bytes(32))
    partial = out.with_name(out.name + ".partial")
    try:
        with source.open("rb") as reader:
            envelope = E.parse_envelope(json.loads(reader.readline()))
            user_id, device_id = str(key.get("user_id")), str(key.get("device_id"))
            entry = next((e for e in envelope.entries if e.address == (user_id, device_id)),
                         None)
            if entry is None:
                raise click.ClickException(f"no entry for {user_id}/{device_id}")
            opened = E.open_key(E.Delivery(header=envelope.header, entry=entry),
                                user_id=user_id, device_id=device_id, device=device,
                                sender=sender)
            opener = E.payload_opener(opened, envelope.header)
            payload = reader if payload_path is None else payload_path.open("rb")
            with payload, partial.open("wb") as writer:
                while piece := payload.read(PIECE):
                    for chunk in opener.update(piece):
                        writer.write(chunk)
                opener.finish()
        partial.replace(out)
    except (SpecError, ValueError) as exc:
        partial.unlink(missing_ok=True)
        raise click.ClickException(f"cannot open {source}: {exc}") from None
