"""Soak of the reference server (run by `nox -s soak`): mixed traffic for a minute.

Not a pytest module: it prints a table and exits 1 on any error. The reference server
runs as its own process with its default settings, beside a local account server (a raw
ASGI app under uvicorn); CLIENTS concurrent clients, each as its own requester (a
trusted-proxy X-Forwarded-For address, as clients behind a reverse proxy arrive), send a
weighted mix for --seconds:

  publish   PUT a first keypair for a new user (and so a log entry, HC-29)
  lookup    GET the public keys of a published user, or the owner GET of its record
  send      POST an envelope to one to three devices of signed device lists, PUT its payload
  ack       GET a device's queue, its first message's payload, open it as the device, ACK it
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

from keyflows.conformance.checks import hashchain_support as hc_checks
from keyflows.conformance.clients import seal_with_application_key, to_json
from keyflows.spec import envelope as E
from keyflows.spec import envelope_devices as D
from keyflows.spec import hashchain_note as note
from keyflows.spec import hashchain_uid as hu
from keyflows.spec.encoding import b64url_encode
from keyflows.spec.hashchain_mute import map_localpart

CLIENTS = 16
CLIENTS_MAX = 64  # senders published in advance
MIX = {"publish": 2, "lookup": 6, "send": 4, "ack": 3, "append": 1}
JSON = {"Content-Type": "application/json"}


@dataclass
class Device:
    spec: D.Device
    private: D.DevicePrivateKeys


@dataclass
class World:
    published: list[str] = field(default_factory=list)
    devices: list[Device] = field(default_factory=list)
    senders: dict[str, tuple[D.PublishedKeys, bytes]] = field(default_factory=dict)
    domain: str = ""
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))


def token(user: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {user}-token"}


async def timed(world: World, kind: str, expected: int | tuple[int, ...],
                send: object) -> httpx.Response | None:
    started = time.perf_counter()
    try:
        answer: httpx.Response = await send  # type: ignore[misc]
    except httpx.HTTPError as exc:
        world.errors[kind].append(f"{type(exc).__name__}: {exc}")
        return None
    world.latencies[kind].append((time.perf_counter() - started) * 1000)
    if answer.status_code not in (expected if isinstance(expected, tuple) else (expected,)):
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
    published, x25519_private = world.senders[sender]
    sealed = E.seal(os.urandom(random.choice((64, 1024, 16384))), suite=E.SUITE_X25519,
                    recipients=[d.spec for d in targets], random=os.urandom,
                    sender=E.SenderKeys(user_id=sender, client_id="app",
                                        key_version=published.key_version,
                                        x25519_private=x25519_private))
    posted = await timed(world, "send", 201, c.post(f"/v1/users/{sender}/apps/app/messages",
                                                    content=E.envelope_json(sealed.envelope),
                                                    headers={**token(sender), **JSON}))
    if posted is not None:
        await timed(world, "send", 204, c.put(
            f"/v1/users/{sender}/apps/app/messages/{posted.json()['message_id']}/payload",
            content=sealed.payload,
            headers={**token(sender), "Content-Type": "application/octet-stream"}))


async def ack(c: httpx.AsyncClient, world: World) -> None:
    device = random.choice(world.devices)
    user_id, device_id = device.spec.user_id, device.spec.device_id
    base = f"/v1/users/{user_id}/apps/app/devices/{device_id}/messages"
    page = await timed(world, "ack", 200, c.get(base, headers=token(user_id)))
    if page is None or not page.json()["messages"]:
        return
    delivery = E.parse_delivery(page.json()["messages"][0])
    message_id = b64url_encode(delivery.header.message_id)
    # 404: another client, acting as the same device, acknowledged it meanwhile.
    payload = await timed(world, "ack", (200, 404), c.get(f"{base}/{message_id}/payload",
                                                          headers=token(user_id)))
    if payload is None or payload.status_code == 404:
        return
    E.open_delivery(delivery, payload.content, user_id=user_id, device_id=device_id,
                    device=device.private, sender=world.senders[delivery.header.sender][0])
    await timed(world, "ack", 204, c.post(f"{base}/{message_id}/ack", headers=token(user_id)))


async def append(c: httpx.AsyncClient, world: World, label: str) -> None:
    head = await timed(world, "append", 200, c.get("/v1/hashchain/checkpoint"))
    if head is None:
        return
    checkpoint = note.parse_checkpoint_text(note.parse_note(head.content).text)
    who = hc_checks.Person(identity=f"{map_localpart(label)}@{world.domain}",
                           sigkey_seed=os.urandom(32),
                           escrow_seed=os.urandom(32), x25519_private=os.urandom(32))
    uid = hc_checks.make_uid(who, checkpoint)
    await timed(world, "append", 201, c.post("/v1/hashchain/uids",
                                             json=hu.uid_to_wire(uid)))


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
        for number in range(CLIENTS_MAX):
            sender = f"soak-sender-{number}"
            sealed = seal_with_application_key(sender, "app", 1)
            answer = await c.put(f"/v1/users/{sender}/apps/app/keypair",
                                 content=to_json(sealed.record),
                                 headers={**token(sender), **JSON})
            answer.raise_for_status()
            view = (await c.get(f"/v1/users/{sender}/apps/app/public-keys")).json()
            world.senders[sender] = (D.published_keys_of(view, user_id=sender,
                                                          client_id="app"),
                                     sealed.private.x25519)
        for owner in range(4):
            user_id = f"soak-owner-{owner}"
            sealed = seal_with_application_key(user_id, "app", 1)
            answer = await c.put(f"/v1/users/{user_id}/apps/app/keypair",
                                 content=to_json(sealed.record),
                                 headers={**token(user_id), **JSON})
            answer.raise_for_status()
            devices = []
            for i in range(3):
                keys = D.generate_device_keys(os.urandom)
                x25519, mlkem768 = D.device_keys(keys)
                devices.append(Device(D.Device(user_id=user_id, device_id=f"dev-{i}",
                                               x25519=x25519, mlkem768=mlkem768), keys))
            listed = D.sign_device_list(owner_seed=sealed.private.ed25519_seed,
                                        user_id=user_id, client_id="app", key_version=1,
                                        version=1, devices=[d.spec for d in devices])
            answer = await c.put(f"/v1/users/{user_id}/apps/app/devices",
                                 content=json.dumps(D.device_list_to_wire(listed)),
                                 headers={**token(user_id), **JSON})
            answer.raise_for_status()
            world.devices.extend(devices)


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
    if args.clients > CLIENTS_MAX:
        parser.error(f"at most {CLIENTS_MAX} clients")
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
