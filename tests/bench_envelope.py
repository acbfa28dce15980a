"""Envelope benchmark: the spec functions beside the `age` command (run by `nox -s bench`).

Not a pytest module (no test_ prefix) and not a timed test: it prints a table.

For each recipient count (10, 100, 1000 by default) on one random 1 MiB payload:
- ours, encrypt: seal() (payload encrypted once, hashed once, one entry per device) plus
  the JSON request body a client would POST -- the whole client-side cost of a send;
- ours, decrypt: what one device does on the fast path (ENV-19, ENV-20) -- parse the JSON
  queue record read with payload=omit (its own entry, the nonce), take the payload
  ciphertext as the raw bytes of GET .../payload, derive, unwrap, verify the MAC, decrypt;
- ours, decrypt inline (extra column): the same from the default queue record, which
  carries the 1 MiB ciphertext inline as base64url (json.loads + strict base64url decode);
- age, encrypt: `age -R recipients -o out payload`, X25519 recipients from age-keygen;
- age, decrypt: `age -d -i identity` as the FIRST listed recipient (age's best case: it
  tries the stanzas in order, one DH each) and as the LAST listed one (its worst case).
  The ratio uses age's best case. Ours does not depend on the position: a device receives
  only its own entry.
Timings are the best of --repeat runs (as timeit reports: the least disturbed run is the
best estimate of the cost on a shared machine), ours and age interleaved. age runs as a process,
so its figures include process start-up; the start-up floor (age encrypting an empty file
to one recipient) is printed so the reader can subtract it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from keyflows.spec import envelope as E
from keyflows.spec import primitives
from keyflows.spec.drbg import Drbg

SENDER = "alice"


@dataclass
class Row:
    recipients: int
    ours_encrypt: float
    age_encrypt: float | None
    ours_decrypt: float
    ours_decrypt_inline: float
    ours_seal: float
    ours_open: float
    age_decrypt_first: float | None
    age_decrypt_last: float | None
    body_bytes: int
    age_bytes: int | None


def best_ms(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times) * 1e3


# --- ours -------------------------------------------------------------------------------

def our_devices(count: int) -> tuple[list[E.Device], bytes]:
    """`count` devices of 10 users; returns them and the last device's private key."""
    random = Drbg(f"bench/devices/{count}")
    devices, private = [], b""
    for i in range(count):
        private = random(32)
        devices.append(E.Device(user_id=f"user{i % 10}", device_id=f"device-{i}",
                                public_key=primitives.x25519_public_key(private)))
    return devices, private


def our_send(payload: bytes, devices: list[E.Device]) -> bytes:
    sealed = E.seal(payload, sender=SENDER, recipients=devices, random=os.urandom)
    return E.envelope_json(sealed.envelope)


def our_seal_only(payload: bytes, devices: list[E.Device]) -> E.Sealed:
    return E.seal(payload, sender=SENDER, recipients=devices, random=os.urandom)


def our_delivery(body: bytes, device: E.Device) -> tuple[bytes, bytes, bytes]:
    """What the server would serve this device (outside the timing): the default queue
    record (payload inline), the record read with payload=omit, and the raw payload."""
    envelope = E.parse_envelope(json.loads(body))
    delivery = E.fan_out(envelope)[(device.user_id, device.device_id)]
    record = E.delivery_to_wire(delivery) | {"received_at": 0, "expires_at": 604800}
    header = record | {"payload": {"nonce": record["payload"]["nonce"]}}
    return (json.dumps(record, separators=(",", ":")).encode(),
            json.dumps(header, separators=(",", ":")).encode(), delivery.payload.ciphertext)


def our_receive(header: bytes, raw: bytes, device: E.Device, private: bytes) -> bytes:
    """The fast path: the payload=omit record and the raw payload bytes -> plaintext."""
    delivery = E.parse_delivery(json.loads(header), ciphertext=raw)
    return E.open_delivery(delivery, user_id=device.user_id, device_id=device.device_id,
                           device_private=private).plaintext


def our_receive_inline(record: bytes, device: E.Device, private: bytes) -> bytes:
    """The default queue record, payload inline as base64url -> plaintext."""
    delivery = E.parse_delivery(json.loads(record))
    return E.open_delivery(delivery, user_id=device.user_id, device_id=device.device_id,
                           device_private=private).plaintext


# --- age --------------------------------------------------------------------------------

def age_keypair(directory: Path, name: str) -> tuple[Path, str]:
    identity = directory / f"{name}.key"
    subprocess.run(["age-keygen", "-o", str(identity)], check=True, capture_output=True)
    recipient = next(line.split(": ", 1)[1] for line in identity.read_text().splitlines()
                     if line.startswith("# public key: "))
    return identity, recipient


def age_setup(directory: Path, count: int) -> tuple[Path, Path, Path]:
    """Recipients file of `count` age X25519 recipients; identities of the first and last."""
    first_identity, first = age_keypair(directory, f"first-{count}")
    recipients = [first]
    for i in range(count - 2):
        recipients.append(age_keypair(directory, f"other-{count}-{i}")[1])
    last_identity, last = age_keypair(directory, f"last-{count}")
    recipients.append(last)
    path = directory / f"recipients-{count}.txt"
    path.write_text("\n".join(recipients) + "\n")
    return path, first_identity, last_identity


def run(argv: list[str]) -> None:
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)


# --- the table ------------------------------------------------------------------------------

def age_commands(count: int, payload_path: Path, work: Path) -> dict[str, list[str]]:
    recipients, first_identity, last_identity = age_setup(work, count)
    out = work / f"out-{count}.age"
    return {
        "encrypt": ["age", "-R", str(recipients), "-o", str(out), str(payload_path)],
        "decrypt-first": ["age", "-d", "-i", str(first_identity), "-o", os.devnull, str(out)],
        "decrypt-last": ["age", "-d", "-i", str(last_identity), "-o", os.devnull, str(out)],
        "output": [str(out)],
    }


def measure(count: int, payload: bytes, payload_path: Path, work: Path, repeat: int,
            age: bool) -> Row:
    devices, private = our_devices(count)
    me = devices[-1]
    body = our_send(payload, devices)
    record, header, raw = our_delivery(body, me)
    assert our_receive(header, raw, me, private) == payload
    assert our_receive_inline(record, me, private) == payload
    parsed = E.parse_delivery(json.loads(record))
    row = Row(recipients=count, ours_encrypt=0.0, age_encrypt=None, ours_decrypt=0.0,
              ours_decrypt_inline=0.0, ours_seal=0.0, ours_open=0.0, age_decrypt_first=None,
              age_decrypt_last=None,
              body_bytes=len(body), age_bytes=None)
    commands: dict[str, list[str]] = {}
    if age:
        commands = age_commands(count, payload_path, work)
        run(commands["encrypt"])
        row.age_bytes = Path(commands["output"][0]).stat().st_size
    # Interleave ours and age so both see the same machine load.
    samples: dict[str, list[float]] = {k: [] for k in ("ours-encrypt", "ours-decrypt",
                                                         "ours-decrypt-inline", "ours-seal",
                                                         "ours-open",
                                                         "encrypt", "decrypt-first",
                                                         "decrypt-last")}
    for _ in range(repeat):
        samples["ours-encrypt"].append(best_ms(lambda: our_send(payload, devices), 1))
        samples["ours-decrypt"].append(best_ms(lambda: our_receive(header, raw, me, private),
                                               1))
        samples["ours-decrypt-inline"].append(best_ms(
            lambda: our_receive_inline(record, me, private), 1))
        samples["ours-seal"].append(best_ms(lambda: our_seal_only(payload, devices), 1))
        samples["ours-open"].append(best_ms(lambda: E.open_delivery(
            parsed, user_id=me.user_id, device_id=me.device_id, device_private=private), 1))
        for name in ("encrypt", "decrypt-first", "decrypt-last") if age else ():
            argv = commands[name]
            samples[name].append(best_ms(lambda: run(argv), 1))  # noqa: B023
    row.ours_encrypt = min(samples["ours-encrypt"])
    row.ours_decrypt = min(samples["ours-decrypt"])
    row.ours_decrypt_inline = min(samples["ours-decrypt-inline"])
    row.ours_seal = min(samples["ours-seal"])
    row.ours_open = min(samples["ours-open"])
    if age:
        row.age_encrypt = min(samples["encrypt"])
        row.age_decrypt_first = min(samples["decrypt-first"])
        row.age_decrypt_last = min(samples["decrypt-last"])
    return row


def fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:8.2f}"


def ratio(ours: float, theirs: float | None) -> str:
    return "n/a" if not theirs else f"{ours / theirs:5.2f}"


def print_table(rows: list[Row], payload_len: int, repeat: int, floor: float | None) -> None:
    print(f"\nenvelope benchmark: {payload_len} byte payload, best of {repeat} runs, "
          "times in ms")
    header = (f"{'recipients':>10} | {'ours enc':>8} | {'age enc':>8} | {'ratio':>5} | "
              f"{'ours dec':>8} | {'age dec':>8} | {'ratio':>5} | {'age dec*':>8} | "
              f"{'dec inl':>8} | {'ratio':>5} | "
              f"{'seal':>6} | {'open':>6} | {'body KiB':>8} | {'age KiB':>8}")
    print(header)
    print("-" * len(header))
    for r in rows:
        age_kib = "n/a" if r.age_bytes is None else f"{r.age_bytes / 1024:8.0f}"
        print(f"{r.recipients:>10} | {fmt(r.ours_encrypt)} | {fmt(r.age_encrypt)} | "
              f"{ratio(r.ours_encrypt, r.age_encrypt):>5} | {fmt(r.ours_decrypt)} | "
              f"{fmt(r.age_decrypt_first)} | {ratio(r.ours_decrypt, r.age_decrypt_first):>5} | "
              f"{fmt(r.age_decrypt_last)} | {fmt(r.ours_decrypt_inline)} | "
              f"{ratio(r.ours_decrypt_inline, r.age_decrypt_first):>5} | "
              f"{r.ours_seal:6.2f} | {r.ours_open:6.2f} | "
              f"{r.body_bytes / 1024:8.0f} | {age_kib:>8}")
    print("ratio = ours / age (below 1.0: ours is faster). age dec = as the first-listed "
          "recipient (age's best case); age dec* = as the last-listed one.")
    print("ours enc = seal() + JSON request body; ours dec = queue record read with "
          "payload=omit + raw payload bytes -> plaintext (a device receives only its own "
          "entry).")
    print("dec inl = the same from the default queue record, payload inline as base64url "
          "(json.loads + strict base64url decoding of the payload); its ratio is to age dec.")
    print("seal / open = our crypto alone (no JSON, no base64): the rest of ours enc / "
          "dec inl is the wire encoding of the 1 MiB payload.")
    if floor is not None:
        print(f"age process start-up floor (empty input, 1 recipient): {floor:.2f} ms, "
              "included in every age figure.")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--recipients", default="10,100,1000",
                        help="comma-separated recipient counts (default 10,100,1000)")
    parser.add_argument("--payload-bytes", type=int, default=1 << 20)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--require-age", action="store_true",
                        help="exit 2 when age is not installed (default: print ours only)")
    args = parser.parse_args(argv)
    counts = [int(c) for c in args.recipients.split(",")]
    if any(c < 2 for c in counts):
        parser.error("recipient counts must be at least 2")
    age = shutil.which("age") is not None and shutil.which("age-keygen") is not None
    if not age:
        print("age / age-keygen not found (Debian: apt-get install -y age); "
              "printing our figures only", file=sys.stderr)
    payload = Drbg("bench/payload")(args.payload_bytes)
    rows: list[Row] = []
    floor: float | None = None
    with tempfile.TemporaryDirectory(prefix="keyflows-bench-") as tmp:
        work = Path(tmp)
        payload_path = work / "payload.bin"
        payload_path.write_bytes(payload)
        if age:
            empty = work / "empty"
            empty.write_bytes(b"")
            _, one = age_keypair(work, "floor")
            floor = best_ms(lambda: run(["age", "-r", one, "-o", os.devnull, str(empty)]),
                              args.repeat)
        for count in counts:
            print(f"measuring {count} recipients ...", file=sys.stderr, flush=True)
            rows.append(measure(count, payload, payload_path, work, args.repeat, age))
    print_table(rows, len(payload), args.repeat, floor)
    if not age and args.require_age:
        print("age is required (--require-age) but not installed", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
