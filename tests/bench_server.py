"""Reference server benchmark (run by `nox -s bench`): three ratios measured side by side.

Not a pytest module and not a timed test: it prints a table. Every server is a separate
process with one uvicorn worker (httptools, uvloop), the load comes from `wrk -t1` (Debian
package `wrk`) on the same machine, and the rounds are interleaved so that a change of
load on the shared machine hits every subject alike; the figure is the median of the
rounds, and the load average is printed with each round. The reference server runs
under its own protocol layer (reference/serving.py: a subclass of uvicorn's httptools
protocol adding the header deadline, the connection limit and joined writes), the
hello-world under uvicorn's own.

1. public-key GET: GET /v1/users/{u}/apps/{c}/public-keys of a published record, beside
   the floor of a Starlette hello-world JSON route under the same uvicorn settings.
   Target: >= 0.6 x the hello-world's requests per second.
2. owner GET: GET /v1/users/{u}/apps/{c}/keypair with a bearer token the key server
   validates with a local account server (a raw ASGI app under uvicorn, its own process),
   beside the public GET. No cache: every request asks the account server.
   Target: >= 0.3 x the public GET.
   The same ratio is printed for the key directory's answer for this route,
   GET /v1/directory/keypair/{u}/{c} (the public keys with the VRF proof, map proof,
   epoch commitment and log inclusion proof a client verifies), beside the same
   hello-world and against the same target. The server builds that answer once per
   epoch and checkpoint and keeps it: the figure is a kept answer's (the checks and one
   read of the directory's head, i.e. the latest epoch, whether changes wait and the
   published checkpoint, still run per request), not the cost of building one.
3. queue read: GET .../apps/{c}/devices/{d}/messages (one page) of a device with 10
   and of one with 10,000 messages queued, read in interleaved rounds: wrk -c1 latency,
   and the same read in process (EnvelopeTables.queue, CPU time). Target: the read at
   10,000 <= 2 x the read at 10.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx

from keyflows.conformance.clients import seal_with_application_key, to_json
from keyflows.reference.store import Store
from keyflows.spec import envelope as E
from keyflows.spec import envelope_devices as D
from keyflows.spec.drbg import unrecorded
from keyflows.spec.encoding import b64url_encode

USER, CLIENT = "bench-user", "bench-app"
TOKEN = "bench-token-0123456789"
SENDERS = 20

HELLO_APP = textwrap.dedent('''
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def hello(request):
        return JSONResponse({"hello": "world"})

    app = Starlette(routes=[Route("/hello", hello)])
''')

# A local account server: every token "<user>-token" is valid for <user>.
ACCOUNT_APP = textwrap.dedent('''
    import json

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        ask = json.loads(body)
        valid = ask.get("access_token") == ask.get("user_id") + "-token"
        answer = b'{"valid":true}' if valid else b'{"valid":false}'
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(answer)).encode())]})
        await send({"type": "http.response.body", "body": answer})
''')


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_listening(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"a server exited with status {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit("a server did not start")


@contextmanager
def processes(tmp: Path) -> Iterator[dict[str, str]]:
    """The hello-world, the account server and the reference server, each on its port."""
    (tmp / "hello_app.py").write_text(HELLO_APP)
    (tmp / "account_app.py").write_text(ACCOUNT_APP)
    ports = {name: free_port() for name in ("hello", "account", "keys")}
    uvicorn = [sys.executable, "-m", "uvicorn", "--host", "127.0.0.1", "--log-level",
               "warning", "--http", "httptools", "--loop", "uvloop", "--app-dir", str(tmp)]
    started = [
        subprocess.Popen([*uvicorn, "--port", str(ports["hello"]), "hello_app:app"]),
        subprocess.Popen([*uvicorn, "--port", str(ports["account"]), "account_app:app"]),
        subprocess.Popen([sys.executable, "-m", "keyflows.reference", "--port",
                          str(ports["keys"]), "--db", str(tmp / "keys.sqlite3"),
                          "--account-server", f"http://127.0.0.1:{ports['account']}",
                          "--quotas", "queue-per-device=20000,queue-per-sender=20000"]),
    ]
    try:
        for process, port in zip(started, ports.values(), strict=True):
            wait_listening(port, process)
        PIDS.update({name: process.pid for name, process in zip(ports, started, strict=True)})
        yield {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    finally:
        for process in started:
            process.terminate()
        for process in started:
            process.wait(timeout=15)


PIDS: dict[str, int] = {}
"""name -> process id of the hello-world, account and key servers."""


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measured(url: str, server: str, *, headers: dict[str, str] | None = None,
             seconds: float) -> tuple[float, dict[str, float]]:
    """(requests per second, CPU microseconds per request of each server process) of
    one wrk -c32 run. CPU per request hardly moves with the machine's load, unlike the
    rate: it shows what each request costs the servers themselves."""
    before = {name: cpu_seconds(pid) for name, pid in PIDS.items()}
    started = time.monotonic()
    rate, _ = wrk(url, connections=32, seconds=seconds, headers=headers)
    count = rate * (time.monotonic() - started)
    cost = {name: (cpu_seconds(pid) - before[name]) / count * 1e6 for name, pid in PIDS.items()}
    return rate, {name: cost[name] for name in ("hello", "account", "keys") if cost[name] > 1
                  or name == server}


def auth(user: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {user}-token"}


def publish(client: httpx.Client, user: str = USER) -> bytes:
    """Publish a keypair for `user`; its private X25519 key (a sender's key) and keep
    the owner's Ed25519 seed for the device list."""
    sealed = seal_with_application_key(user, CLIENT, 1)
    answer = client.put(f"/v1/users/{user}/apps/{CLIENT}/keypair", content=to_json(sealed.record),
                        headers={**auth(user), "Content-Type": "application/json"})
    answer.raise_for_status()
    OWNER_SEEDS[user] = sealed.private.ed25519_seed
    return sealed.private.x25519


OWNER_SEEDS: dict[str, bytes] = {}
SENDER_KEYS: dict[int, bytes] = {}


def enqueue(base: str, device: D.Device, count: int) -> None:
    """`count` small envelopes (header and payload) to the device, from SENDERS senders,
    in parallel."""
    if not SENDER_KEYS:  # each sender publishes its keypair once (version 1)
        with httpx.Client(base_url=base, trust_env=False, timeout=30) as client:
            SENDER_KEYS.update({i: publish(client, f"bench-sender-{i}") for i in range(SENDERS)})
    keys = SENDER_KEYS

    def post(i: int) -> None:
        sender = f"bench-sender-{i % SENDERS}"
        sealed = E.seal(b"m", suite=E.SUITE_X25519, recipients=[device],
                        sender=E.SenderKeys(user_id=sender, client_id=CLIENT, key_version=1,
                                            x25519_private=keys[i % SENDERS]),
                        random=unrecorded(os.urandom))
        message_id = b64url_encode(sealed.envelope.header.message_id)
        with httpx.Client(base_url=base, trust_env=False, timeout=30) as client:
            answer = client.post(f"/v1/users/{sender}/apps/{CLIENT}/messages",
                                 content=E.envelope_json(sealed.envelope),
                                 headers={**auth(sender), "Content-Type": "application/json"})
            answer.raise_for_status()
            answer = client.put(f"/v1/users/{sender}/apps/{CLIENT}/messages/{message_id}"
                                "/payload", content=sealed.payload,
                                headers={**auth(sender),
                                         "Content-Type": "application/octet-stream"})
            answer.raise_for_status()
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(post, range(count)))


WRK_RATE = re.compile(r"Requests/sec:\s+([0-9.]+)")
WRK_LATENCY = re.compile(r"Latency\s+([0-9.]+)(us|ms|s)")


def wrk(url: str, *, connections: int, seconds: float,
        headers: dict[str, str] | None = None) -> tuple[float, float]:
    """(requests per second, mean latency in ms) of one wrk run; non-2xx answers abort."""
    command = ["wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "--latency"]
    for name, value in (headers or {}).items():
        command += ["-H", f"{name}: {value}"]
    out = subprocess.run([*command, url], capture_output=True, text=True, check=True).stdout
    if "Non-2xx" in out:
        raise SystemExit(f"wrk saw errors on {url}:\n{out}")
    rate = float(WRK_RATE.search(out).group(1))  # type: ignore[union-attr]
    value, unit = WRK_LATENCY.search(out).groups()  # type: ignore[union-attr]
    latency = float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
    return rate, latency


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"load {one:.1f}/{five:.1f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--queued", type=int, default=10_000)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("bench_server: wrk is not installed (Debian: apt-get install -y wrk)")
        return 2
    with tempfile.TemporaryDirectory(prefix="keyflows-bench-") as name, processes(Path(name)) \
            as urls:
        base = urls["keys"]
        with httpx.Client(base_url=base, trust_env=False, timeout=30) as client:
            publish(client)
            shallow, deep = register(client, ["shallow", "deep"])
        public = f"{base}/v1/users/{USER}/apps/{CLIENT}/public-keys"
        owner = f"{base}/v1/users/{USER}/apps/{CLIENT}/keypair"
        directory = f"{base}/v1/directory/keypair/{USER}/{CLIENT}"
        hello = f"{urls['hello']}/hello"
        subjects = {"hello": (hello, "hello", None), "public": (public, "keys", None),
                    "owner": (owner, "keys", auth(USER)),
                    "directory": (directory, "keys", None)}
        for url, _, headers in subjects.values():
            wrk(url, connections=32, seconds=1, headers=headers)  # warm up
        rows: dict[str, list[float]] = {subject: [] for subject in subjects}
        costs: dict[str, list[dict[str, float]]] = {subject: [] for subject in subjects}
        print(f"rounds of {args.seconds:g} s, wrk -t1 -c32, one uvicorn worker each "
              f"(server CPU microseconds per request in brackets)")
        for i in range(args.rounds):
            for subject, (url, server, headers) in subjects.items():
                rate, cost = measured(url, server, headers=headers, seconds=args.seconds)
                rows[subject].append(rate)
                costs[subject].append(cost)
            print(f"  round {i + 1}: " + "  ".join(
                f"{subject} {rows[subject][-1]:6.0f}/s ["
                + " ".join(f"{who} {us:.0f}" for who, us in costs[subject][-1].items()) + "]"
                for subject in subjects) + f"  ({load()})")
        med = {k: statistics.median(v) for k, v in rows.items()}
        for subject in subjects:
            print(f"  median CPU per {subject} request: " + ", ".join(
                f"{who} {statistics.median(c.get(who, 0.0) for c in costs[subject]):.0f} us"
                for who in costs[subject][0]))
        queue_rows = queue_reads(base, Path(name) / "keys.sqlite3", shallow, deep, args)
        report(med, queue_rows)
    return 0


def register(client: httpx.Client, devices: list[str]) -> list[D.Device]:
    """The owner signs and publishes a list of these devices; returns them as senders
    address them."""
    out = []
    for device_id in devices:
        x25519, mlkem768 = D.device_keys(D.generate_device_keys(os.urandom))
        out.append(D.Device(user_id=USER, device_id=device_id, x25519=x25519,
                            mlkem768=mlkem768))
    listed = D.sign_device_list(owner_seed=OWNER_SEEDS[USER], user_id=USER, client_id=CLIENT,
                                key_version=1, version=1, devices=out)
    answer = client.put(f"/v1/users/{USER}/apps/{CLIENT}/devices",
                        json=D.device_list_to_wire(listed), headers=auth(USER))
    answer.raise_for_status()
    return out


def queue_reads(base: str, db: Path, shallow: D.Device, deep: D.Device,
                args: argparse.Namespace) -> dict[int, tuple[float, float]]:
    """Two devices, 10 and args.queued messages queued, read in interleaved rounds:
    per depth (median wrk -c1 latency in ms, median in-process read in ms)."""
    depths = {10: shallow, args.queued: deep}
    for depth, device in depths.items():
        enqueue(base, device, depth)
    store = Store.open(db)
    tables = store.envelope()
    wire: dict[int, list[float]] = {depth: [] for depth in depths}
    local: dict[int, list[float]] = {depth: [] for depth in depths}
    try:
        for _ in range(args.rounds):
            for depth, device in depths.items():
                url = f"{base}/v1/users/{USER}/apps/{CLIENT}/devices/{device.device_id}/messages"
                wire[depth].append(wrk(url, connections=1, seconds=args.seconds,
                                       headers=auth(USER))[1])
                # CPU time of this process: the read's own cost, which the machine's
                # load hardly moves (wall time here counts the waits for a core)
                started = time.process_time()
                for _ in range(500):
                    tables.queue(USER, CLIENT, device.device_id, now=int(time.time()),
                                 limit=8)
                local[depth].append((time.process_time() - started) / 500 * 1000)
    finally:
        store.close()
    out = {depth: (statistics.median(wire[depth]), statistics.median(local[depth]))
           for depth in depths}
    for depth, (http, process) in out.items():
        print(f"  queue read at {depth:>6} queued: {http:.3f} ms over HTTP (wrk -c1), "
              f"{process:.4f} ms CPU in process ({load()})")
    return out


def report(med: dict[str, float], queue: dict[int, tuple[float, float]]) -> None:
    deep = max(queue)
    rows = [
        ("public-key GET / hello-world", med["public"] / med["hello"], 0.6, True),
        ("owner GET / public-key GET", med["owner"] / med["public"], 0.3, True),
        ("directory keypair GET / hello-world", med["directory"] / med["hello"], 0.6, True),
        (f"queue read at {deep} / at 10 (HTTP)", queue[deep][0] / queue[10][0], 2.0, False),
        (f"queue read at {deep} / at 10 (in process)", queue[deep][1] / queue[10][1], 2.0,
         False),
    ]
    print()
    print(f"medians: hello {med['hello']:.0f}/s, public {med['public']:.0f}/s, owner "
          f"{med['owner']:.0f}/s, directory {med['directory']:.0f}/s")
    print(f"{'ratio':44} {'value':>7} {'target':>8}  verdict")
    for name, value, target, at_least in rows:
        ok = value >= target if at_least else value <= target
        sign = ">=" if at_least else "<="
        print(f"{name:44} {value:7.2f} {sign} {target:<5}  {'met' if ok else 'NOT MET'}")


if __name__ == "__main__":
    sys.exit(main())
