"""`keyflows witness` as a process (c2sp.org/tlog-witness, HC-40 .. HC-43): every answer of
the protocol, state kept across a restart, the monitoring endpoint; and the reference
server publishing to two witnesses, with a client whose policy asks for both."""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from servers import start_reference_server

from keyflows.spec import hashchain as hc
from keyflows.spec import hashchain_note as note
from keyflows.spec import hashchain_uid as hu
from keyflows.spec import hashchain_witness as witness
from keyflows.spec import primitives
from keyflows.spec.errors import WitnessError

WITNESS = [sys.executable, "-m", "keyflows.conformance", "witness"]  # the entry point
ORIGIN = "witness-test.keyflows.test/log"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class WitnessProcess:
    """One `keyflows witness` process on a database that outlives it."""

    def __init__(self, db: Path, name: str) -> None:
        self.db, self.name = db, name
        self.process: subprocess.Popen[bytes] | None = None
        self.url = ""

    def vkey(self) -> str:
        done = subprocess.run([*WITNESS, "--db", str(self.db), "--name", self.name,
                               "--print-vkey"], capture_output=True, text=True, timeout=60,
                              check=True)
        return done.stdout.strip()

    def start(self, log_vkey: str, port: int = 0) -> str:
        ready = self.db.with_suffix(f".ready-{time.monotonic_ns()}")
        self.process = subprocess.Popen(
            [*WITNESS, "--db", str(self.db), "--name", self.name, "--log", log_vkey,
             "--port", str(port), "--ready-file", str(ready)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while not ready.exists() or not ready.read_text().strip():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.process.kill()
                raise RuntimeError(f"witness did not start: {self.process.communicate()[1]!r}")
            time.sleep(0.05)
        self.url = ready.read_text().strip()
        return self.url

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=30)
        self.process = None


@pytest.fixture
def log() -> hc.TransparencyLog:
    return hc.TransparencyLog(origin=ORIGIN, key_seed=bytes(range(32)), nonce0=bytes(16))


@pytest.fixture
def running(tmp_path: Path, log: hc.TransparencyLog) -> Iterator[WitnessProcess]:
    process = WitnessProcess(tmp_path / "witness.sqlite3", "witness-test.keyflows.test/w1")
    process.start(log.verifiers()[0].vkey)
    try:
        yield process
    finally:
        process.stop()


def add(url: str, old_size: int, checkpoint: bytes, proof: list[bytes]) -> httpx.Response:
    return httpx.post(f"{url}/{witness.ADD_CHECKPOINT}", timeout=30,
                      content=witness.submission(old_size=old_size, checkpoint=checkpoint,
                                                 proof=proof))


def grow(log: hc.TransparencyLog, count: int) -> None:
    for _ in range(count):
        log.append_record(entry_type=hc.TYPE_UID, subject=b"a@keyflows.test",
                          record_hash=os.urandom(32), nonce=os.urandom(16))


def test_witness_answers_every_case_and_keeps_its_state(running: WitnessProcess,
                                                        log: hc.TransparencyLog) -> None:
    vkey = note.parse_vkey(running.vkey())
    grow(log, 4)
    first = log.signed_checkpoint().to_bytes()
    answer = add(running.url, 0, first, [])
    assert answer.status_code == 200, answer.text
    reply = witness.read_answer(200, answer.headers["content-type"], answer.content,
                                checkpoint_text=note.parse_note(first).text, witness=vkey)
    assert reply.cosignature is not None  # a cosignature under the printed key

    # 409: the old size is not the latest cosigned one; the body names it
    answer = add(running.url, 0, first, [])
    assert answer.status_code == 409
    assert answer.headers["content-type"].startswith(witness.SIZE_MEDIA_TYPE)
    assert answer.content == b"5\n"

    grow(log, 3)
    second = log.signed_checkpoint().to_bytes()
    bad_proof = [bytes(32)] * len(log.consistency_proof(5))
    assert add(running.url, 5, second, bad_proof).status_code == 422
    other = hc.TransparencyLog(origin="other.keyflows.test/log", key_seed=bytes(32),
                               nonce0=bytes(16))
    assert add(running.url, 0, other.signed_checkpoint().to_bytes(), []).status_code == 404
    forged = hc.TransparencyLog(origin=ORIGIN, key_seed=bytes(31) + b"\x01", nonce0=bytes(16))
    assert add(running.url, 0, forged.signed_checkpoint().to_bytes(), []).status_code == 403
    assert add(running.url, 9, second, []).status_code == 400  # old size above the new
    assert httpx.post(f"{running.url}/{witness.ADD_CHECKPOINT}", content=b"old x\n\n",
                      timeout=30).status_code == 400

    # state survives a restart: the next submission must continue from size 5
    running.stop()
    running.start(log.verifiers()[0].vkey)
    assert add(running.url, 0, second, []).status_code == 409
    answer = add(running.url, 5, second, log.consistency_proof(5))
    assert answer.status_code == 200, answer.text

    # monitors read the latest cosigned checkpoint of the log
    origin_hash = hashlib.sha256(ORIGIN.encode()).hexdigest()
    latest = httpx.get(f"{running.url}/{origin_hash}/checkpoint", timeout=30)
    assert latest.status_code == 200
    verified = note.verify_checkpoint(latest.content, origin=ORIGIN, log_keys=log.verifiers(),
                                      policy=note.WitnessPolicy((vkey,), 1))
    assert verified.checkpoint.size == log.size
    assert httpx.get(f"{running.url}/{'0' * 64}/checkpoint", timeout=30).status_code == 404


def make_uid(identity: str, last: note.Checkpoint) -> hu.Uid:
    sigkey, escrow = os.urandom(32), os.urandom(32)
    now = int(time.time())
    content = hu.UidContent(identity=identity, msg_count=0, not_before=now - 60,
                            not_after=now + 86400, sigkey=primitives.ed25519_public_key(sigkey),
                            sigescrow=primitives.ed25519_public_key(escrow),
                            x25519=primitives.x25519_public_key(os.urandom(32)),
                            last_checkpoint=hu.LastCheckpoint(last.size, last.root_hash),
                            previous=None)
    return hu.sign_uid(content, sigkey_seed=sigkey, sigescrow_seed=escrow)


def test_reference_server_publishes_to_two_witnesses(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """HC-41/HC-43 end to end: a reply carries both cosignatures; with one witness down a
    2-of-2 client refuses and a 1-of-2 client accepts; after the witness restarts (same
    database) the log brings it up to date with a consistency proof."""
    witnesses = [WitnessProcess(tmp_path / f"w{i}.sqlite3", f"witness-test.keyflows.test/w{i}")
                 for i in (1, 2)]
    vkeys = [w.vkey() for w in witnesses]
    ports = [free_port(), free_port()]
    monkeypatch.setenv("KEYFLOWS_HASHCHAIN_WITNESSES", ",".join(
        f"{vkey} http://127.0.0.1:{port}" for vkey, port in zip(vkeys, ports, strict=True)))
    server = start_reference_server("http://127.0.0.1:9", tmp_path / "keys.sqlite3")
    try:
        client = httpx.Client(base_url=server.url, timeout=60)
        caps = client.get("/v1/capabilities").json()["hashchain"]
        assert [w["vkey"] for w in caps["witnesses"]] == vkeys
        origin, log_vkey = caps["origin"], caps["log_keys"][0]
        log_keys = [note.parse_vkey(log_vkey)]
        for w, port in zip(witnesses, ports, strict=True):
            w.start(log_vkey, port)
        both = note.WitnessPolicy(tuple(note.parse_vkey(v) for v in vkeys), 2)
        one = note.WitnessPolicy(both.witnesses, 1)

        def create(n: int) -> tuple[hu.Uid, hu.UidReply]:
            head = note.parse_checkpoint_text(note.parse_note(
                client.get("/v1/hashchain/checkpoint").content).text)
            uid = make_uid(f"user-{'abc'[n]}@keyflows.test", head)
            answer = client.post("/v1/hashchain/uids", json=hu.uid_to_wire(uid))
            assert answer.status_code == 201, answer.text
            return uid, hu.parse_uid_reply(answer.json())

        uid, reply = create(0)
        hu.verify_uid_reply(reply, uid, origin=origin, log_keys=log_keys, policy=both)

        witnesses[1].stop()
        uid, reply = create(1)
        with pytest.raises(WitnessError):
            hu.verify_uid_reply(reply, uid, origin=origin, log_keys=log_keys, policy=both)
        hu.verify_uid_reply(reply, uid, origin=origin, log_keys=log_keys, policy=one)

        witnesses[1].start(log_vkey, ports[1])
        uid, reply = create(2)
        verified = hu.verify_uid_reply(reply, uid, origin=origin, log_keys=log_keys,
                                       policy=both)
        assert verified.checkpoint.size > 3
        client.close()
    finally:
        server.stop()
        for w in witnesses:
            w.stop()


def test_runner_witness_is_the_spec_witness(log: hc.TransparencyLog) -> None:
    """The runner's in-memory witness: unknown log 404 until trusted, then the protocol's
    answers, every submission recorded with what it was answered."""
    from keyflows.conformance.witness import RunnerWitness, runner_witness_verifier

    w = RunnerWitness()
    grow(log, 2)
    body = witness.submission(old_size=0, checkpoint=log.signed_checkpoint().to_bytes(),
                              proof=[])
    assert w.add_checkpoint(body).status == 404
    w.trust(log.verifiers()[0])
    w.trust(log.verifiers()[0])  # trusting twice keeps one key
    answer = w.add_checkpoint(body)
    assert answer.status == 200
    reply = witness.read_answer(200, answer.content_type, answer.body,
                                checkpoint_text=log.signed_checkpoint().text,
                                witness=runner_witness_verifier())
    assert reply.cosignature is not None and w.vkey == runner_witness_verifier().vkey
    assert w.add_checkpoint(body).status == 409
    assert w.add_checkpoint(b"nonsense").status == 400
    state = w.state(ORIGIN)
    assert state is not None and state.size == 3
    assert [(s.status, s.old_size, s.size, s.origin) for s in w.submissions()] == [
        (404, 0, 3, ORIGIN), (200, 0, 3, ORIGIN), (409, 0, 3, ORIGIN),
        (400, None, None, None)]
