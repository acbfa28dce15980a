"""Envelope benchmark (run by `nox -s bench`): like with like, in one run.

Not a pytest module and not a timed test: it prints four tables. Every figure is the
median of --rounds interleaved rounds (ours and the comparison alternate, the order
flipped each round), and the machine's load average is printed before and after.

(a) Whole process against whole process: `keyflows envelope seal` against `age -R`,
    encrypting the same file to the same number of X25519 recipients (1 MiB to 100 and
    to 1,000, 1 GiB to 10), wall time and CPU time of the child, with each tool's
    start-up floor (sealing an empty file to one recipient) measured the same way.
(b) In process, per recipient: `envelope.seal_header` for 1,000 devices, divided by
    1,000, beside the floor -- the bare operations one entry needs, with the same
    library: three X25519 scalar multiplications (ephemeral key, ephemeral DH, static
    DH) and, for the hybrid suite, one ML-KEM-768 encapsulation. floor / ours.
(c) STREAM throughput: StreamSealer / StreamOpener over 128 MiB fed in 1 MiB pieces,
    beside raw AES-256-GCM over the same 64 KiB chunks with the same nonces, one
    AESGCM object. raw / ours (time ratio; >= 0.8 means ours keeps 80 % of the speed).
    (b) and (c) time CPU seconds of this process (time.process_time), both sides alike.
(d) Peak memory (VmHWM) of the sender (`keyflows envelope seal`), the reference server
    (`keyflows serve`, taking the payload raw and serving it back, streamed) and the
    recipient (`keyflows envelope open`) for a 1 GiB payload against a 1 MiB one.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
from cryptography.hazmat.primitives.asymmetric import mlkem
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from keyflows.spec import envelope as E
from keyflows.spec import envelope_devices as D
from keyflows.spec import envelope_stream as S
from keyflows.spec import keypair_publication as KP
from keyflows.spec.drbg import unrecorded
from keyflows.spec.encoding import b64url_encode

MIB = 1 << 20
GIB = 1 << 30
KEYFLOWS = [shutil.which("keyflows") or "keyflows"]


def median(values: list[float]) -> float:
    return statistics.median(values)


@dataclass
class Run:
    wall: float
    cpu: float
    maxrss_kib: int


def run(cmd: list[str]) -> Run:
    """Wall time, CPU time (user + system) and peak RSS of one child process."""
    started = time.perf_counter()
    child = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - started
    err = child.stderr.read().decode() if child.stderr else ""
    if status != 0:
        raise SystemExit(f"{' '.join(cmd[:4])} failed: {err.strip()}")
    return Run(wall, usage.ru_utime + usage.ru_stime, int(usage.ru_maxrss))


def peak_rss_kib(cmd: list[str]) -> int:
    """Peak RSS of `cmd` as /usr/bin/time reports it. Not this process's wait4: Linux
    carries the forking process's RSS into the child's ru_maxrss across exec, so a child
    of this (large) process would report this process's peak, not its own."""
    child = subprocess.run(["/usr/bin/time", "-f", "%M", *cmd], stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, text=True)
    if child.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:4])} failed: {child.stderr.strip()}")
    return int(child.stderr.strip().splitlines()[-1])


def interleaved(rounds: int, *jobs: Callable[[], float]) -> list[list[float]]:
    """Each job `rounds` times, alternating, the order reversed every round."""
    out: list[list[float]] = [[] for _ in jobs]
    for r in range(rounds):
        order = list(range(len(jobs)))
        if r % 2:
            order.reverse()
        for i in order:
            out[i].append(jobs[i]())
    return out


def cpu() -> float:
    """CPU time of this process: tables (b) and (c) run both sides in this one thread, so
    what other processes on a shared machine do between two readings does not count."""
    return time.process_time()


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} CPUs"


# --- keys and files -------------------------------------------------------------------------

@dataclass
class Keys:
    directory: Path
    sender_key: Path
    sender_public: Path
    device_key: Path  # the first recipient's
    ours: dict[int, Path]  # recipient count -> recipients file
    age: dict[int, Path]  # recipient count -> age recipients file
    age_identity: Path
    sender: KP.PrivateKeys


def make_keys(directory: Path, counts: list[int]) -> Keys:
    most = max(counts)
    sender = KP.generate_private_keys(os.urandom)
    sender_key = directory / "alice.key"
    sender_key.write_text(json.dumps({"user_id": "alice", "client_id": "chat",
                                      "key_version": 1,
                                      "x25519": b64url_encode(sender.x25519)}))
    sender_public = directory / "alice.pub"
    from keyflows.spec import primitives

    sender_public.write_text(json.dumps({
        "user_id": "alice", "client_id": "chat", "key_version": 1,
        "x25519": b64url_encode(primitives.x25519_public_key(sender.x25519))}))
    lines = []
    device_key = directory / "device-0.key"
    for i in range(most):
        keys = D.generate_device_keys(os.urandom)
        x25519, mlkem768 = D.device_keys(keys)
        lines.append(f"user{i} d {b64url_encode(x25519)} {b64url_encode(mlkem768)}")
        if i == 0:
            device_key.write_text(json.dumps({
                "user_id": "user0", "device_id": "d", "x25519": b64url_encode(keys.x25519),
                "mlkem_seed": b64url_encode(keys.mlkem_seed)}))
    age_lines = []
    identity = directory / "age-0.key"
    for i in range(most):
        out = subprocess.run(["age-keygen"], capture_output=True, text=True, check=True).stdout
        public = next(line.split(": ")[1] for line in out.splitlines()
                      if line.startswith("# public key"))
        age_lines.append(public)
        if i == 0:
            identity.write_text(out)
    ours, age = {}, {}
    for n in [*counts, 1]:
        ours[n] = directory / f"recipients-{n}.txt"
        ours[n].write_text("\n".join(lines[:n]) + "\n")
        age[n] = directory / f"age-recipients-{n}.txt"
        age[n].write_text("\n".join(age_lines[:n]) + "\n")
    return Keys(directory, sender_key, sender_public, device_key, ours, age, identity, sender)


def random_file(path: Path, size: int) -> Path:
    with path.open("wb") as out:
        left = size
        while left:
            piece = os.urandom(min(left, 8 * MIB))
            out.write(piece)
            left -= len(piece)
    return path


def ours_seal(keys: Keys, n: int, source: Path, out: Path) -> list[str]:
    return [*KEYFLOWS, "envelope", "seal", "--sender", str(keys.sender_key), "-R",
            str(keys.ours[n]), "-o", str(out), str(source)]


def age_seal(keys: Keys, n: int, source: Path, out: Path) -> list[str]:
    return ["age", "-R", str(keys.age[n]), "-o", str(out), str(source)]


# --- (a) process against process ------------------------------------------------------------

def table_a(keys: Keys, rounds: int, files: dict[int, Path]) -> dict[tuple[int, int], Run]:
    print("\n(a) whole process: keyflows envelope seal (suite x25519) vs age -R, "
          f"median of {rounds} interleaved rounds")
    print(f"{'case':<24}{'ours wall ms':>14}{'age wall ms':>13}{'ratio':>8}"
          f"{'ours cpu ms':>13}{'age cpu ms':>12}{'ratio':>8}")
    out = keys.directory / "out"
    cases = [("start-up floor", 0, 1), ("1 MiB to 100", MIB, 100), ("1 MiB to 1000", MIB, 1000),
             ("1 GiB to 10", GIB, 10)]
    kept: dict[tuple[int, int], Run] = {}
    for label, size, n in cases:
        source = files[size]
        ours_runs: list[Run] = []
        age_runs: list[Run] = []

        def ours(source: Path = source, n: int = n, runs: list[Run] = ours_runs) -> float:
            runs.append(run(ours_seal(keys, n, source, out.with_suffix(".ours"))))
            return runs[-1].wall

        def theirs(source: Path = source, n: int = n, runs: list[Run] = age_runs) -> float:
            runs.append(run(age_seal(keys, n, source, out.with_suffix(".age"))))
            return runs[-1].wall

        interleaved(rounds, ours, theirs)
        ow, aw = median([r.wall for r in ours_runs]), median([r.wall for r in age_runs])
        oc, ac = median([r.cpu for r in ours_runs]), median([r.cpu for r in age_runs])
        print(f"{label:<24}{ow * 1e3:>14.1f}{aw * 1e3:>13.1f}{ow / aw:>8.2f}"
              f"{oc * 1e3:>13.1f}{ac * 1e3:>12.1f}{oc / ac:>8.2f}")
        kept[(size, n)] = ours_runs[-1]
    print("ratio = ours / age (lower is better for ours). Both floors are whole processes: "
          "ours starts a Python interpreter and imports the crypto stack, age is one Go "
          "binary.")
    return kept


# --- (b) per recipient, in process ----------------------------------------------------------

def table_b(rounds: int, count: int = 1000) -> None:
    print(f"\n(b) in process, per recipient: seal_header to {count} devices / {count} vs the "
          f"bare operations, CPU time, median of {rounds} interleaved rounds")
    print(f"{'suite':<18}{'ours us':>10}{'floor us':>10}{'floor/ours':>12}{'>= 0.8':>8}")
    random = unrecorded(os.urandom)
    sender_private = os.urandom(32)
    sender = E.SenderKeys(user_id="alice", client_id="chat", key_version=1,
                          x25519_private=sender_private)
    devices = []
    for i in range(count):
        keys = D.generate_device_keys(os.urandom)
        x25519, mlkem768 = D.device_keys(keys)
        devices.append(D.Device(user_id=f"u{i}", device_id="d", x25519=x25519,
                                mlkem768=mlkem768))
    static = X25519PrivateKey.from_private_bytes(sender_private)
    for suite in E.SUITES:
        def ours(suite: str = suite) -> float:
            started = cpu()
            E.seal_header(suite=suite, sender=sender, recipients=devices, plaintext_length=MIB,
                          random=random)
            return (cpu() - started) / count

        def floor(suite: str = suite) -> float:
            started = cpu()
            for d in devices:
                ephemeral = X25519PrivateKey.from_private_bytes(os.urandom(32))
                ephemeral.public_key().public_bytes_raw()
                peer = X25519PublicKey.from_public_bytes(d.x25519)
                ephemeral.exchange(peer)
                static.exchange(peer)
                if suite == E.SUITE_HYBRID:
                    mlkem.MLKEM768PublicKey.from_public_bytes(d.mlkem768).encapsulate()
            return (cpu() - started) / count

        mine, bare = interleaved(rounds, ours, floor)
        o, f = median(mine), median(bare)
        print(f"{suite:<18}{o * 1e6:>10.1f}{f * 1e6:>10.1f}{f / o:>12.2f}"
              f"{'met' if f / o >= 0.8 else 'BELOW':>8}")
    print("floor = ephemeral key + ephemeral DH + static DH (+ ML-KEM-768 encapsulation), "
          "pyca/cryptography, the same calls ours makes; ours adds the HPKE key schedule, "
          "the 32-byte AEAD and Python.")


# --- (c) STREAM throughput ------------------------------------------------------------------

def table_c(rounds: int, total: int = 128 * MIB) -> None:
    print(f"\n(c) STREAM over {total // MIB} MiB in 1 MiB pieces vs raw AES-256-GCM over the "
          f"same 64 KiB chunks, CPU time, median of {rounds} interleaved rounds")
    print(f"{'direction':<12}{'ours MB/s':>11}{'raw MB/s':>10}{'raw/ours':>10}{'>= 0.8':>8}")
    key = os.urandom(32)
    plaintext = os.urandom(total)
    count = S.chunk_count(total)
    nonces = [S.chunk_nonce(i, i == count - 1) for i in range(count)]
    ciphertext = S.encrypt_payload(key, plaintext)
    pieces = [plaintext[i:i + MIB] for i in range(0, total, MIB)]
    sealed_pieces = [ciphertext[i:i + MIB] for i in range(0, len(ciphertext), MIB)]
    per_piece = MIB // S.CHUNK_SIZE
    chunk = S.CHUNK_CIPHERTEXT_SIZE

    # Both sides take the same 1 MiB pieces and hand back each piece's chunks as a list
    # the caller then drops (as a writer would after writing them).
    def ours_seal() -> float:
        started = cpu()
        sealer = S.StreamSealer(key)
        for piece in pieces:
            sealer.update(piece)
        sealer.finish()
        return cpu() - started

    def raw_seal() -> float:
        started = cpu()
        raw = AESGCM(key)
        for p, piece in enumerate(pieces):
            view = memoryview(piece)
            [raw.encrypt(nonces[p * per_piece + j], view[j * S.CHUNK_SIZE:(j + 1) * S.CHUNK_SIZE],
                         b"") for j in range(per_piece)]
        return cpu() - started

    def ours_open() -> float:
        started = cpu()
        opener = S.StreamOpener(key, len(ciphertext))
        for piece in sealed_pieces:
            opener.update(piece)
        opener.finish()
        return cpu() - started

    # The floor opens chunks cut straight from the whole ciphertext: no chunk straddles a
    # piece, so it never reassembles one (ours copies one straddling chunk per piece).
    def raw_open() -> float:
        started = cpu()
        raw = AESGCM(key)
        view = memoryview(ciphertext)
        for first in range(0, count, per_piece):
            [raw.decrypt(nonces[i], view[i * chunk:(i + 1) * chunk], b"")
             for i in range(first, min(first + per_piece, count))]
        return cpu() - started

    for label, ours, raw in (("seal", ours_seal, raw_seal), ("open", ours_open, raw_open)):
        mine, bare = interleaved(rounds, ours, raw)
        o, r = median(mine), median(bare)
        print(f"{label:<12}{total / o / 1e6:>11.0f}{total / r / 1e6:>10.0f}{r / o:>10.2f}"
              f"{'met' if r / o >= 0.8 else 'BELOW':>8}")
    print("Both sides run one AES-256-GCM call per 64 KiB chunk on the same key, nonces and "
          "1 MiB pieces, from memory; ours adds holding back the last chunk, reassembling "
          "chunks that straddle pieces, and the bookkeeping of ENV-20/ENV-23/ENV-24.")


# --- (d) peak memory ------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def reference_server(directory: Path, account: str) -> Iterator[tuple[str, int]]:
    port = _free_port()
    db = directory / f"server-{port}.db"
    child = subprocess.Popen([*KEYFLOWS, "serve", "--port", str(port), "--db", str(db),
                              "--account-server", account],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            httpx.get(url + "/v1/capabilities", timeout=1)
            break
        except httpx.HTTPError:
            if time.monotonic() > deadline or child.poll() is not None:
                raise SystemExit("the reference server did not start") from None
            time.sleep(0.1)
    try:
        yield url, child.pid
    finally:
        child.terminate()
        child.wait(timeout=30)


def vm_hwm_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise SystemExit("no VmHWM")


def server_round_trip(keys: Keys, directory: Path, sealed: Path, size: int) -> tuple[int, Path]:
    """Post the sealed file's envelope and payload to a fresh server, download the payload
    back; the server's peak memory and the downloaded file."""
    sys.path.insert(0, str(Path(__file__).parent))
    from servers import start_account_server

    account = start_account_server()
    try:
        with reference_server(directory, account.url) as (url, pid), \
                httpx.Client(base_url=url, timeout=600) as client:
            def auth(user: str) -> dict[str, str]:
                return {"authorization": f"Bearer {account.mint(user)[1]}"}

            for user, private in (("alice", keys.sender),
                                  ("user0", KP.generate_private_keys(os.urandom))):
                record = KP.seal_record(user_id=user, client_id="chat", key_version=1,
                                        private=private, kek=os.urandom(32),
                                        kek_spec=KP.KekSpec(KP.METHOD_APPLICATION_KEY),
                                        nonce=os.urandom(12), z=os.urandom(64)).record
                assert client.put(f"/v1/users/{user}/apps/chat/keypair", json=record,
                                  headers=auth(user)).status_code == 201
                if user == "user0":
                    owner_seed = private.ed25519_seed
            line = keys.ours[1].read_text().split()
            from keyflows.spec.encoding import b64url_decode

            listed = D.sign_device_list(
                owner_seed=owner_seed, user_id="user0", client_id="chat", key_version=1,
                version=1, devices=[D.Device(user_id="user0", device_id="d",
                                             x25519=b64url_decode(line[2]),
                                             mlkem768=b64url_decode(line[3]))])
            assert client.put("/v1/users/user0/apps/chat/devices",
                              json=D.device_list_to_wire(listed),
                              headers=auth("user0")).status_code == 201
            with sealed.open("rb") as source:
                header = source.readline()
                answer = client.post("/v1/users/alice/apps/chat/messages", content=header,
                                     headers={**auth("alice"),
                                              "content-type": "application/json"})
                assert answer.status_code == 201, answer.text
                message_id = answer.json()["message_id"]

                def pieces() -> Iterator[bytes]:
                    while piece := source.read(MIB):
                        yield piece

                done = client.put(f"/v1/users/alice/apps/chat/messages/{message_id}/payload",
                                  content=pieces(),
                                  headers={**auth("alice"),
                                           "content-type": "application/octet-stream"})
                assert done.status_code == 204, done.text
            downloaded = directory / f"downloaded-{size}"
            path = f"/v1/users/user0/apps/chat/devices/d/messages/{message_id}/payload"
            with client.stream("GET", path, headers=auth("user0")) as answer, \
                    downloaded.open("wb") as out:
                assert answer.status_code == 200
                for piece in answer.iter_bytes(MIB):
                    out.write(piece)
            return vm_hwm_kib(pid), downloaded
    finally:
        account.stop()


def table_d(keys: Keys, files: dict[int, Path]) -> None:
    print("\n(d) peak memory (server: VmHWM; sender, recipient: /usr/bin/time %M) for 1 GiB "
          "against 1 MiB, one recipient")
    print(f"{'party':<12}{'1 MiB MiB':>11}{'1 GiB MiB':>11}{'growth MiB':>12}{'bound':>8}")
    rows: dict[str, list[float]] = {"sender": [], "server": [], "recipient": []}
    for size in (MIB, GIB):
        sealed = keys.directory / f"rss-{size}.env"
        rows["sender"].append(peak_rss_kib(ours_seal(keys, 1, files[size], sealed)) / 1024)
        hwm, downloaded = server_round_trip(keys, keys.directory, sealed, size)
        rows["server"].append(hwm / 1024)
        opened = keys.directory / f"opened-{size}"
        rows["recipient"].append(peak_rss_kib([*KEYFLOWS, "envelope", "open", "--key",
                                               str(keys.device_key), "--sender-public",
                                               str(keys.sender_public), "--payload",
                                               str(downloaded), "-o", str(opened),
                                               str(sealed)]) / 1024)
        if opened.stat().st_size != size:
            raise SystemExit("the recipient opened another size")
        for path in (sealed, downloaded, opened):
            path.unlink()
    for party, (small, large) in rows.items():
        growth = large - small
        print(f"{party:<12}{small:>11.1f}{large:>11.1f}{growth:>12.1f}"
              f"{'ok' if growth <= 64 else 'OVER':>8}")
    print("bound: the 1 GiB figure within 64 MiB of the 1 MiB one.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--skip-gib", action="store_true", help="leave out the 1 GiB cases")
    args = parser.parse_args()
    if shutil.which("age") is None or shutil.which("age-keygen") is None:
        raise SystemExit("age is missing: apt-get install -y age")
    print(f"envelope benchmark, {load()}")
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="keyflows-bench-") as tmp:
        directory = Path(tmp)
        keys = make_keys(directory, [10, 100, 1000])
        files = {0: random_file(directory / "empty", 0), MIB: random_file(directory / "mib", MIB)}
        files[GIB] = files[MIB] if args.skip_gib else random_file(directory / "gib", GIB)
        table_a(keys, args.rounds, files)
        table_b(max(args.rounds, 7))
        table_c(args.rounds)
        if not args.skip_gib:
            table_d(keys, files)
    print(f"\n{load()}; envelope benchmark took {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
