"""HC-22 with a real process: appends are serialised and an acknowledged append survives
`kill -9` of the reference server.

The server runs as `python -m keyflows.reference` on loopback. Writer threads create UIDs
concurrently and record every acknowledged (201) reply. The test kills the server with
SIGKILL while the writers are still sending, restarts it on the same database, follows
the log from entry 0 and checks: it verifies (the entries hash to the checkpoint's root)
with the same log key, every acknowledged entry is at its acknowledged index with the
acknowledged bytes, and no two acknowledgements share an index.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from keyflows.spec import hashchain as hc
from keyflows.spec import hashchain_client as hcc
from keyflows.spec import hashchain_note as note
from keyflows.spec import hashchain_tiles as tiles
from keyflows.spec import hashchain_uid as hu
from keyflows.spec import primitives
from keyflows.spec.encoding import b64url_decode

WRITERS = 8
KILL_AFTER_ACKS = 40

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")


def start_server(db: Path, tmp: Path) -> tuple[subprocess.Popen[bytes], str]:
    ready = tmp / f"ready-{time.monotonic_ns()}"
    process = subprocess.Popen(
        [sys.executable, "-m", "keyflows.reference", "--host", "127.0.0.1", "--port", "0",
         "--db", str(db), "--account-server", "http://127.0.0.1:9", "--ready-file",
         str(ready), "--log-level", "warning"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while not ready.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            _, err = process.communicate(timeout=10)
            raise RuntimeError(f"server did not start: {err.decode(errors='replace')}")
        time.sleep(0.02)
    return process, ready.read_text().strip()


def make_uid(base: str, client: httpx.Client, identity: str) -> hu.Uid:
    text = client.get(f"{base}/v1/hashchain/checkpoint").content
    checkpoint = note.parse_checkpoint_text(note.parse_note(text).text)
    sigkey, escrow = os.urandom(32), os.urandom(32)
    now = int(time.time())
    content = hu.UidContent(identity=identity, msg_count=0, not_before=now - 60,
                            not_after=now + 86400, sigkey=primitives.ed25519_public_key(sigkey),
                            sigescrow=primitives.ed25519_public_key(escrow),
                            x25519=primitives.x25519_public_key(os.urandom(32)),
                            last_checkpoint=hu.LastCheckpoint(checkpoint.size,
                                                              checkpoint.root_hash),
                            previous=None)
    return hu.sign_uid(content, sigkey_seed=sigkey, sigescrow_seed=escrow)


def letters(number: int) -> str:
    """A number written without the digits 0 and 1, which mapped identities never hold."""
    return str(number).translate(str.maketrans("01", "ab"))


def fetch_log(base: str) -> tuple[list[bytes], dict[str, object], hcc.LogFollower]:
    """Follow the log from entry 0: checkpoint, entry bundles, verified by the spec."""
    with httpx.Client(timeout=10) as client:
        caps = client.get(f"{base}/v1/capabilities").json()["hashchain"]
        key = note.parse_vkey(caps["log_keys"][0])
        follower = hcc.LogFollower(origin=str(caps["origin"]), log_keys=[key.public_key])
        size = follower.check_checkpoint(client.get(f"{base}/v1/hashchain/checkpoint").content
                                         ).size
        entries: list[bytes] = []
        for n in range(0, (size + tiles.TILE_WIDTH - 1) // tiles.TILE_WIDTH):
            width = min(tiles.TILE_WIDTH, size - n * tiles.TILE_WIDTH)
            bundle = client.get(f"{base}/v1/hashchain/{tiles.Tile(None, n, width).path()}")
            entries += tiles.parse_entry_bundle(bundle.content, count=width,
                                                entry_len=hc.ENTRY_LEN)
        follower.feed(entries)
        follower.finish()
    return entries, caps, follower


def test_acknowledged_appends_survive_kill_9(tmp_path: Path) -> None:
    db = tmp_path / "keys.sqlite3"
    process, base = start_server(db, tmp_path)
    acknowledged: list[tuple[int, bytes]] = []
    lock = threading.Lock()
    stop = threading.Event()

    def writer(number: int) -> None:
        with httpx.Client(timeout=5) as client:
            count = 0
            while not stop.is_set():
                count += 1
                try:
                    uid = make_uid(base, client, f"writer-{letters(number)}-uid-{letters(count)}"
                                                 "@keyflows.test")
                    answer = client.post(f"{base}/v1/hashchain/uids",
                                         json=hu.uid_to_wire(uid))
                except httpx.HTTPError:
                    return  # the server is gone
                assert answer.status_code == 201, answer.text
                body = answer.json()
                with lock:
                    acknowledged.append((body["index"], b64url_decode(body["entry"])))

    try:
        _, caps, _ = fetch_log(base)
        key_before = caps["log_keys"]
        threads = [threading.Thread(target=writer, args=(i,)) for i in range(WRITERS)]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 60
        while (len(acknowledged) < KILL_AFTER_ACKS and time.monotonic() < deadline
               and any(t.is_alive() for t in threads)):
            time.sleep(0.005)
        os.kill(process.pid, signal.SIGKILL)  # writers are mid-request right now
        process.wait(timeout=10)
        stop.set()
        for thread in threads:
            thread.join(timeout=15)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
    assert process.returncode == -signal.SIGKILL
    assert len(acknowledged) >= KILL_AFTER_ACKS

    process, base = start_server(db, tmp_path)
    try:
        entries, caps, _ = fetch_log(base)  # verified: the entries hash to the root
    finally:
        process.terminate()
        process.wait(timeout=15)
    assert caps["log_keys"] == key_before

    indexes = [i for i, _ in acknowledged]
    assert len(set(indexes)) == len(indexes), "two acknowledgements share an index"
    for index, entry in acknowledged:
        assert index < len(entries), f"acknowledged entry {index} was lost"
        assert entries[index] == entry, f"entry {index} changed after the crash"
    # Every entry past 0 is a UID entry or a key-directory root: nothing half-written.
    assert all(e[0] in (hc.TYPE_UID, hc.TYPE_DIRECTORY) for e in entries[1:])
    assert sum(e[0] == hc.TYPE_UID for e in entries) >= len(acknowledged)
    assert len(entries) - 1 >= len(acknowledged)
    print(f"kill -9 after {len(acknowledged)} acknowledged appends by {WRITERS} writers; "
          f"after restart the log has {len(entries)} entries and verifies")
