#!/usr/bin/env python3
"""Replay the exchanges of a failing conformance check, byte for byte.

Written next to the exchanges by `keyflows conformance --save-exchanges DIR`:

    python3 DIR/replay.py CHECK            # CHECK: a check id or its folder in DIR
    python3 DIR/replay.py CHECK --base-url http://127.0.0.1:8080

Each request the check sent is sent again exactly (the same request target, headers,
tokens and body; only Host follows --base-url), and each answer is printed beside the
status the run saw. Bearer tokens stay valid: unless the run's account server address
answers already, this script starts one on that address (`python -m
keyflows.conformance.account`, from the keyflows the run used) serving the tokens and
shares of DIR/accounts.json, and stops it at the end. A run against the embedded
reference server is replayed against a fresh one started the same way.

Only the Python standard library is needed for the HTTP part; the test keys are
throwaway, so nothing here is redacted. Replaying against the server the run used
meets the state the run left behind (records it created exist already), and tokens
keep the state they had at the end of the run (one the check expired stays expired).
"""

from __future__ import annotations

import argparse
import json
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

HERE = Path(__file__).resolve().parent
READ_TIMEOUT_S = 15.0


def check_folder(name: str) -> Path:
    for candidate in (Path(name), HERE / name, HERE / name.replace("/", "__")):
        if (candidate / "exchanges.json").is_file():
            return candidate
    raise SystemExit(f"replay: no saved check {name!r} in {HERE}")


def reachable(url: str) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 80),
                                      timeout=1):
            return True
    except OSError:
        return False


def start_account_server(url: str) -> subprocess.Popen[str] | None:
    """The run's account server again, on its address, with the run's tokens."""
    if reachable(url):
        return None
    listen = url.removeprefix("http://")
    command = [sys.executable, "-m", "keyflows.conformance.account", "--listen", listen,
               "--state", str(HERE / "accounts.json")]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    line = process.stdout.readline() if process.stdout else ""
    if not line.startswith("account server:"):
        process.kill()
        raise SystemExit(f"replay: could not start the account server on {listen} "
                         f"(is keyflows installed for {sys.executable}?)")
    print(f"replay: {line.strip()} (tokens of the run)")
    return process


def start_embedded(account_url: str) -> Any:
    try:
        from keyflows.conformance.embedded import EmbeddedServer
    except ImportError as exc:
        raise SystemExit(f"replay: the run used the embedded reference server; starting "
                         f"one needs keyflows ({exc}); or pass --base-url") from exc
    server = EmbeddedServer(account_url)
    server.start()
    print(f"replay: embedded reference server {server.base_url}")
    return server


def raw_request(exchange: dict[str, Any], folder: Path, netloc: str) -> bytes:
    """The request as the run sent it; Host follows the target, and the connection
    closes after the answer (so the answer ends where the stream ends)."""
    lines = [f"{exchange['method']} {exchange['target']} HTTP/1.1"]
    for name, value in exchange["request_headers"]:
        if name.lower() in ("host", "connection"):
            continue
        lines.append(f"{name}: {value}")
    lines += [f"host: {netloc}", "connection: close"]
    body = (folder / exchange["request_body"]).read_bytes() \
        if exchange.get("request_body") else b""
    if exchange.get("chunked"):
        body = (f"{len(body):x}\r\n".encode() + body + b"\r\n" if body else b"") + b"0\r\n\r\n"
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return head + body


def send(base_url: str, data: bytes, *, timeout: float) -> bytes:
    parts = urlsplit(base_url)
    host = parts.hostname or "127.0.0.1"
    port = parts.port or (443 if parts.scheme == "https" else 80)
    received = b""
    sock: socket.socket = socket.create_connection((host, port), timeout=timeout)
    if parts.scheme == "https":
        sock = ssl.create_default_context().wrap_socket(sock, server_hostname=host)
    deadline = time.monotonic() + timeout
    try:
        sock.sendall(data)
        while time.monotonic() < deadline:
            sock.settimeout(max(deadline - time.monotonic(), 0.01))
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
    except OSError:
        pass  # a timeout or reset: whatever arrived is the answer
    finally:
        sock.close()
    return received


def show(answer: bytes, recorded: int) -> str:
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n", 1)[0].decode("latin-1") or "(no answer)"
    status = status_line.split(" ")[1] if status_line.count(" ") >= 1 else ""
    same = "as in the run" if status == str(recorded) else f"the run saw {recorded or 'none'}"
    text = body[:2000].decode("utf-8", errors="backslashreplace")
    return f"< {status_line}   ({same})\n" + (f"< {text}\n" if text else "")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("check", help="a check id, or its folder")
    parser.add_argument("--base-url", help="the server to replay against (default: the "
                                           "run's; a fresh embedded one for embedded runs)")
    parser.add_argument("--no-account-server", action="store_true",
                        help="do not start the run's account server")
    args = parser.parse_args(argv)
    folder = check_folder(args.check)
    run = json.loads((HERE / "run.json").read_text(encoding="utf-8"))
    saved = json.loads((folder / "exchanges.json").read_text(encoding="utf-8"))
    account = None if args.no_account_server else start_account_server(run["account_url"])
    embedded = None
    try:
        base_url = args.base_url
        if base_url is None and run["mode"] == "embedded":
            embedded = start_embedded(run["account_url"])
            base_url = embedded.base_url
        base_url = (base_url or run["target"]).rstrip("/")
        netloc = urlsplit(base_url).netloc
        changed = 0
        print(f"replay: {saved['check']} against {base_url}")
        sent = [e for e in saved["exchanges"] if e["party"] == "runner"]
        for exchange in sent:
            print(f"> {exchange['method']} {exchange['target']}")
            timeout = 5.0 if exchange.get("declared_length") is not None else READ_TIMEOUT_S
            answer = send(base_url, raw_request(exchange, folder, netloc), timeout=timeout)
            print(show(answer, exchange["status"]))
            status = answer.split(b" ", 2)[1].decode("latin-1") if answer.count(b" ") else ""
            changed += status != str(exchange["status"])
        print(f"replay: {len(sent)} requests, {changed} answered with another status than "
              f"in the run")
    finally:
        if embedded is not None:
            embedded.stop()
        if account is not None:
            account.terminate()
            account.wait(timeout=10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
