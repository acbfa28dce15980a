"""Hostile HTTP servers the conformance runner must survive (a plain module).

- `drip`: answers every request, on every route, one byte every `interval` seconds.
- `huge`: answers every request with a 200 whose body is `size` bytes (100 MB by
  default), sent as fast as the client reads.
- `huge-answers`: serves honest capabilities, then 100 MB bodies on every other route
  (so every check runs into the body cap).
- `gone`: answers GET /v1/capabilities like a key server, then closes every other
  connection without a word (a server that died after start-up).
- `weird`: capabilities with NaN and control characters; every other answer a problem
  whose bytes are control characters, escape sequences and invalid UTF-8 (the reports
  must still parse, the terminal must not be repainted).

Each runs on 127.0.0.1 in daemon threads: `with hostile("drip") as url: ...`.
Also a command: `python tests/hostile_servers.py drip --port 8081` (for a soak run).

`run_measured(*args)` runs `keyflows ARGS` as a process of its own and returns its result,
its duration and its own peak resident memory.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import socketserver
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

CAPABILITIES = json.dumps({
    "profile": "v1", "spec_version": "1.0.0",
    "server": {"name": "hostile", "version": "0"},
    "flows": ["keypair-publication", "session-challenge", "hashchain", "envelope",
              "lock-layering"],
    "limits": {"max_body_bytes": 65536},
    "auth": {"scheme": "bearer", "account_server": "validate"}}).encode()
HUNDRED_MB = 100 * 1000 * 1000
WEIRD_CAPABILITIES = (rb'{"profile":"v1","spec_version":"1\u0000","flows":["keypair-publication",'
                      rb'"\u001b[2J"],"limits":{"max_body_bytes":NaN},"x":Infinity}')
WEIRD_PROBLEM = (rb'{"type":"urn:keyflows:problem:malformed","title":"\u0001\u0007",'
                 rb'"status":400,"detail":"\u001b[31mred\u0000 \ud800"}' + b"\x01\xff\x1b[2J")


def read_head(sock: socket.socket) -> bytes:
    """Read until the end of the request headers (the body, if any, is ignored)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def response_head(status: str, length: int, media: str = "application/json") -> bytes:
    return (f"HTTP/1.1 {status}\r\nContent-Type: {media}\r\nContent-Length: {length}\r\n"
            f"Connection: close\r\n\r\n").encode()


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    block_on_close = False

    def __init__(self, kind: str, *, interval: float, size: int, port: int = 0) -> None:
        self.kind = kind
        self.interval = interval
        self.size = size
        self.stopping = threading.Event()
        super().__init__(("127.0.0.1", port), _Handler)


class _Handler(socketserver.BaseRequestHandler):
    server: _Server

    def handle(self) -> None:
        sock: socket.socket = self.request
        try:
            head = read_head(sock)
            if not head:
                return
            getattr(self, f"_{self.server.kind.replace('-', '_')}")(sock, head)
        except OSError:
            pass

    def _drip(self, sock: socket.socket, head: bytes) -> None:
        answer = response_head("200 OK", len(CAPABILITIES)) + CAPABILITIES
        for byte in answer:
            if self.server.stopping.wait(self.server.interval):
                return
            sock.sendall(bytes([byte]))

    def _huge(self, sock: socket.socket, head: bytes) -> None:
        sock.sendall(response_head("200 OK", self.server.size))
        block = b" " * 65536
        left = self.server.size
        while left > 0 and not self.server.stopping.is_set():
            piece = block[:min(left, len(block))]
            sock.sendall(piece)
            left -= len(piece)

    def _huge_answers(self, sock: socket.socket, head: bytes) -> None:
        if head.startswith(b"GET /v1/capabilities "):
            sock.sendall(response_head("200 OK", len(CAPABILITIES)) + CAPABILITIES)
        else:
            self._huge(sock, head)

    def _weird(self, sock: socket.socket, head: bytes) -> None:
        if head.startswith(b"GET /v1/capabilities "):
            sock.sendall(response_head("200 OK", len(WEIRD_CAPABILITIES))
                         + WEIRD_CAPABILITIES)
        else:
            sock.sendall(response_head("400 \x01Bad\x7f", len(WEIRD_PROBLEM),
                                       "application/problem+json") + WEIRD_PROBLEM)

    def _gone(self, sock: socket.socket, head: bytes) -> None:
        if head.startswith(b"GET /v1/capabilities "):
            sock.sendall(response_head("200 OK", len(CAPABILITIES)) + CAPABILITIES)
            self.server.kind = "closing"
        # Every later request: the connection closes with no answer.

    def _closing(self, sock: socket.socket, head: bytes) -> None:
        sock.close()


@contextlib.contextmanager
def hostile(kind: str, *, interval: float = 3.0, size: int = HUNDRED_MB,
            port: int = 0) -> Iterator[str]:
    """Serve a hostile server of this kind; yields its base URL."""
    server = _Server(kind, interval=interval, size=size, port=port)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                              daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.stopping.set()
        server.shutdown()
        server.server_close()


# `keyflows` that writes its own peak resident memory (VmHWM, KiB) to the file named by
# $PEAK_FILE as it exits. Not ru_maxrss from wait4: Linux carries the high-water mark of
# the image a child had between fork and exec (a copy of the parent: a pytest process late
# in a suite run holds some hundreds of MB) into the program it executes.
PEAK_PROBE = """
import os, runpy
try:
    runpy.run_module("keyflows.conformance", run_name="__main__", alter_sys=True)
finally:
    with open("/proc/self/status", encoding="ascii") as status:
        peak = next(line.split()[1] for line in status if line.startswith("VmHWM:"))
    with open(os.environ["PEAK_FILE"], "w", encoding="ascii") as out:
        out.write(peak)
"""


def run_measured(*args: str, timeout: float = 120
                 ) -> tuple[subprocess.CompletedProcess[str], float, int]:
    """`keyflows ARGS` as a process: (result, seconds, its own peak resident memory, KiB)."""
    with tempfile.TemporaryDirectory() as scratch:
        peak_file = Path(scratch) / "peak"
        env = dict(os.environ, PYTHONUNBUFFERED="1", PEAK_FILE=str(peak_file))
        started = time.monotonic()
        done = subprocess.run([sys.executable, "-c", PEAK_PROBE, *args], capture_output=True,
                              text=True, env=env, timeout=timeout, check=False)
        elapsed = time.monotonic() - started
        return done, elapsed, int(peak_file.read_text(encoding="ascii"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("kind", choices=("drip", "huge", "huge-answers", "gone", "weird"))
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--interval", type=float, default=3.0)
    parser.add_argument("--size", type=int, default=HUNDRED_MB)
    args = parser.parse_args()
    with hostile(args.kind, interval=args.interval, size=args.size, port=args.port) as url:
        print(f"{args.kind} server on {url}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            while True:
                time.sleep(3600)


if __name__ == "__main__":
    main()
