"""Soak of the reference server (run by `nox -s soak`): mixed traffic for a minute.

Not a pytest module: it prints a table and exits 1 on any error. The reference server
runs as its own process with its default settings, beside a local account server (a raw
ASGI app under uvicorn); CLIENTS concurrent clients, each as its own requester (a
trusted-proxy X-Forwarded-For address, as clients behind a reverse proxy arrive), send a
weighted mix for --seconds:

  publish   PUT a first keypair for a new user (and so a log entry, HC-29)
  lookup    GET the public keys of a published user, or the owner GET of its record
  send      POST an envelope to one to three registered devices
  ack       GET a device's queue, open the first message as the device and ACK it
  append    POST a new UID to the log

Reported: requests and errors per kind, latency p50 / p99 per kind, the server's RSS
before and after the run and its peak. Pass: no transport error, no 5xx, no status
other than the expected one (429 is an error here: the mix stays under the defaults).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from bench_server import ACCOUNT_APP, free_port, wait_listening

from keyflows.conformance.checks import hashchain as hc_checks
from keyflows.conformance.clients import seal_with_application_key, to_json
from keyflows.spec import envelope as E
from keyflows.spec import hashchain_v1chain as hc  # the log API the runner's checks use
from keyflows.spec import primitives
from keyflows.spec.encoding import b64url_encode
from keyflows.spec.hashchain_mute import map_localpart

CLIENTS = 16
MIX = {"publish": 2, "lookup": 6, "send": 4, "ack": 3, "append": 1}
JSON = {"Content-Type": "application/json"}


@dataclass
class Device:
    user_id: str
    device_id: str
    private: bytes

    @property
    def spec(self) -> E.Device:
        return E.Device(user_id=self.user_id, device_id=self.device_id,
                        public_key=primitives.x25519_public_key(self.private))


@dataclass
class World:
    published: list[str] = field(default_factory=list)
    devices: list[Device] = field(default_factory=list)
    domain: str = ""
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))


def token(user: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {user}-token"}


async def timed(world: World, kind: str, expected: int, send: object) -> httpx.Response | None:
    started = time.perf_counter()
    try:
        answer: httpx.Response = await send  # type: ignore[misc]
    except httpx.HTTPError as exc:
        world.errors[kind].append(f"{type(exc).__name__}: {exc}")
        return None
    world.latencies[kind].append((time.perf_counter() - started) * 1000)
    if answer.status_code != expected:
        world.errors[kind].append(f"{answer.status_code} {answer.text[:160]}")
        return None
    return answer


async def publish(c: httpx.AsyncClient, world: World, user: str) -> None:
    sealed = seal_with_application_key(user, "app", 1)
    if await timed(world, "publish", 201, c.put(f"/v1/users/{user}/apps/app/keypair",
                                                 content=to_json(sealed.record),
                                                 headers={**token(user), **JSON})):
        world.published.append(user)


async def lookup(c: httpx.AsyncClient, world: World) -> None:
    user = random.choice(world.published)
    if random.random() < 0.5:
        await timed(world, "lookup", 200, c.get(f"/v1/users/{user}/apps/app/public-keys"))
    else:
        await timed(world, "lookup", 200, c.get(f"/v1/users/{user}/apps/app/keypair",
                                                headers=token(user)))


async def send(c: httpx.AsyncClient, world: World, sender: str) -> None:
    targets = random.sample(world.devices, random.randint(1, 3))
    sealed = E.seal(os.urandom(random.choice((64, 1024, 16384))), sender=sender,
                    recipients=[d.spec for d in targets], random=os.urandom)
    await timed(world, "send", 201, c.post(f"/v1/users/{sender}/messages",
                                           content=json.dumps(E.envelope_to_wire(
                                               sealed.envelope)),
                                           headers={**token(sender), **JSON}))


async def ack(c: httpx.AsyncClient, world: World) -> None:
    device = random.choice(world.devices)
    base = f"/v1/users/{device.user_id}/devices/{device.device_id}/messages"
    page = await timed(world, "ack", 200, c.get(base, headers=token(device.user_id)))
    if page is None or not page.json()["messages"]:
        return
    record = page.json()["messages"][0]
    opened = E.open_delivery(E.parse_delivery(record), user_id=device.user_id,
                             device_id=device.device_id, device_private=device.private)
    await timed(world, "ack", 200, c.post(f"{base}/{record['message_id']}/ack",
                                          json=E.ack_to_wire(opened.keys.mac_key),
                                          headers=token(device.user_id)))


async def append(c: httpx.AsyncClient, world: World, label: str) -> None:
    head = await timed(world, "append", 200, c.get("/v1/hashchain/head"))
    if head is None:
        return
    who = hc_checks.Person(identity=f"{map_localpart(label)}@{world.domain}",
                           sigkey_seed=os.urandom(32),
                           escrow_seed=os.urandom(32), x25519_private=os.urandom(32))
    uid = hc_checks.make_uid(who, hc.parse_head(head.json()["head"]))
    await timed(world, "append", 201, c.post("/v1/hashchain/uids",
                                             json=hc.uid_to_wire(uid)))


async def client(base: str, world: World, number: int, deadline: float) -> None:
    address = f"10.{number // 250}.{number % 250}.1"
    kinds, weights = list(MIX), list(MIX.values())
    async with httpx.AsyncClient(base_url=base, trust_env=False, timeout=30,
                                 headers={"X-Forwarded-For": address}) as c:
        count = 0
        while time.monotonic() < deadline:
            count += 1
            kind = random.choices(kinds, weights)[0]
            if kind == "publish":
                await publish(c, world, f"soak-{number}-{count}")
            elif kind == "lookup":
                await lookup(c, world)
            elif kind == "send":
                await send(c, world, f"soak-sender-{number}")
            elif kind == "ack":
                await ack(c, world)
            else:
                await append(c, world, f"soak-{number}-{count}")


async def setup(base: str, world: World) -> None:
    async with httpx.AsyncClient(base_url=base, trust_env=False, timeout=30) as c:
        caps = (await c.get("/v1/capabilities")).json()
        world.domain = caps["hashchain"]["domains"][0]
        for i in range(8):
            await publish(c, world, f"soak-seed-{i}")
        for i in range(12):
            device = Device(f"soak-owner-{i % 4}", f"dev-{i}", os.urandom(32))
            answer = await c.put(f"/v1/users/{device.user_id}/devices/{device.device_id}",
                                 json={"x25519": b64url_encode(device.spec.public_key)},
                                 headers=token(device.user_id))
            answer.raise_for_status()
            world.devices.append(device)


def memory(pid: int) -> dict[str, int]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            out[name] = int(value.split()[0]) // 1024
    return out


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--clients", type=int, default=CLIENTS)
    args = parser.parse_args()
    import subprocess
    with tempfile.TemporaryDirectory(prefix="keyflows-soak-") as name:
        tmp = Path(name)
        (tmp / "account_app.py").write_text(ACCOUNT_APP)
        account_port, port = free_port(), free_port()
        account = subprocess.Popen([sys.executable, "-m", "uvicorn", "--host", "127.0.0.1",
                                    "--port", str(account_port), "--log-level", "warning",
                                    "--app-dir", str(tmp), "account_app:app"])
        server = subprocess.Popen([sys.executable, "-m", "keyflows.reference", "--port",
                                   str(port), "--db", str(tmp / "keys.sqlite3"),
                                   "--account-server", f"http://127.0.0.1:{account_port}"])
        try:
            wait_listening(account_port, account)
            wait_listening(port, server)
            base = f"http://127.0.0.1:{port}"
            world = World()
            asyncio.run(setup(base, world))
            before = memory(server.pid)
            started = time.monotonic()
            deadline = started + args.seconds

            async def run() -> None:
                await asyncio.gather(*(client(base, world, i, deadline)
                                       for i in range(args.clients)))
            asyncio.run(run())
            elapsed = time.monotonic() - started
            after = memory(server.pid)
        finally:
            for process in (server, account):
                process.terminate()
            for process in (server, account):
                process.wait(timeout=15)
    total = sum(len(v) for v in world.latencies.values())
    errors = sum(len(v) for v in world.errors.values())
    print(f"{elapsed:.0f} s, {args.clients} clients, {total} requests "
          f"({total / elapsed:.0f}/s), {errors} errors; one uvicorn worker, default limits, "
          f"load {os.getloadavg()[0]:.1f}")
    print(f"{'kind':8} {'requests':>9} {'errors':>7} {'p50 ms':>8} {'p99 ms':>8}")
    for kind in MIX:
        values = world.latencies.get(kind, [])
        if values:
            print(f"{kind:8} {len(values):9} {len(world.errors.get(kind, [])):7} "
                  f"{statistics.median(values):8.1f} {percentile(values, 0.99):8.1f}")
    print(f"server RSS: {before['VmRSS']} MB before, {after['VmRSS']} MB after, peak "
          f"{after['VmHWM']} MB")
    for kind, messages in world.errors.items():
        for message in sorted(set(messages))[:5]:
            print(f"  error ({kind}): {message}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
