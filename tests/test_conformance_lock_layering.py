"""lock-layering end to end: the conformance runner (a real `keyflows conformance`
subprocess) passes the reference server on each server lock -- a master key file, AWS
KMS (moto_server on loopback) and PKCS#11 (SoftHSM2) -- and catches every broken variant
of tests/broken_lock_layering.py. Plus what a black box cannot see: the database never
holds a share, the secret or a lock key (LOCK-9), and a bad server lock stops the server
from starting (LOCK-19)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from broken_lock_layering import VARIANTS
from broken_servers import BrokenVariant
from lock_backends import KmsBackend, SoftHsm, free_port, kms_backend, moto_endpoint, softhsm
from runner_runs import run_conformance
from servers import RunningServer, start_reference_server

from keyflows.conformance.account import AccountServer
from keyflows.reference.server_lock import ServerLockSettings, load_server_lock_settings
from keyflows.spec import http_signatures as hs
from keyflows.spec import lock_layering as spec
from keyflows.spec import lock_layering_capability as C
from keyflows.spec import primitives as P
from keyflows.spec.encoding import b64url_encode

__all__ = ["kms_backend", "moto_endpoint", "softhsm"]  # fixtures used by name

LOCK_CHECKS = "lock-layering/*"
MIN_LOCK_CHECKS = 20


def master_key(tmp_path: Path) -> Path:
    path = tmp_path / "master.key"
    path.write_bytes(os.urandom(32))
    path.chmod(0o600)
    return path


def file_lock(tmp_path: Path) -> ServerLockSettings:
    return load_server_lock_settings(master_key_file=str(master_key(tmp_path)), environ={})


class Target:
    def __init__(self, server: RunningServer, account_port: int) -> None:
        self.server = server
        self.account_port = account_port

    def run(self, tmp_path: Path, *extra: str, select: tuple[str, ...] = (LOCK_CHECKS,),
            monkeypatch: pytest.MonkeyPatch | None = None
            ) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
        """The runner against this server (in this process unless `monkeypatch` changed
        code the runner shares with the server: tests/runner_runs.py)."""
        report = tmp_path / f"report-{time.monotonic_ns()}.json"
        selection = [arg for pattern in select for arg in ("--select", pattern)]
        done = run_conformance("--base-url", self.server.url, "--account-listen",
                               f"127.0.0.1:{self.account_port}", "--report-json", str(report),
                               *selection, *extra, monkeypatch=monkeypatch)
        assert report.exists(), done.stderr
        return done, json.loads(report.read_text())


def start_target(tmp_path: Path, lock: ServerLockSettings | None,
                 variant: BrokenVariant | None = None) -> Target:
    port = free_port()
    runner = f"http://127.0.0.1:{port}"  # the runner's account server, also its vault server
    server = start_reference_server(runner, tmp_path / "keys.sqlite3",
                                    app_wrapper=variant.wrapper if variant else None,
                                    server_lock=lock, edv_servers=(runner,))
    return Target(server, port)


def expect_all_lock_checks_pass(target: Target, tmp_path: Path) -> dict[str, Any]:
    done, report = target.run(tmp_path)
    assert done.returncode == 0, done.stdout
    checks = [c for c in report["checks"] if c["flow"] == "lock-layering"]
    assert len(checks) >= MIN_LOCK_CHECKS
    assert all(c["status"] == "passed" for c in checks), done.stdout
    assert all(c["requirements"] for c in checks)
    return report


# --- the same conformance run on every server lock ------------------------------------------

def test_passes_on_the_file_lock(tmp_path: Path) -> None:
    target = start_target(tmp_path, file_lock(tmp_path))
    try:
        expect_all_lock_checks_pass(target, tmp_path)
    finally:
        target.server.stop()


def test_passes_on_aws_kms(tmp_path: Path, kms_backend: KmsBackend) -> None:
    lock = load_server_lock_settings(environ=kms_backend.env)
    target = start_target(tmp_path, lock)
    try:
        expect_all_lock_checks_pass(target, tmp_path)
    finally:
        target.server.stop()
    # The server really sealed through KMS: the key has been used.
    blobs = _stored_root_keys(tmp_path / "keys.sqlite3")
    assert blobs and all(not b.startswith(bytes(12)) for b in blobs)


def test_passes_on_pkcs11(tmp_path: Path, softhsm: SoftHsm) -> None:
    lock = load_server_lock_settings(environ=softhsm.env)
    target = start_target(tmp_path, lock)
    try:
        expect_all_lock_checks_pass(target, tmp_path)
    finally:
        target.server.stop()


def _stored_root_keys(db: Path) -> list[bytes]:
    import sqlite3

    from keyflows.spec.encoding import b64url_decode

    with sqlite3.connect(db) as connection:
        rows = connection.execute("SELECT record FROM lock_keystores").fetchall()
    return [b64url_decode(json.loads(r[0])["capability_root_key"]) for r in rows]


def test_without_a_server_lock_the_flow_is_off(tmp_path: Path) -> None:
    target = start_target(tmp_path, None)
    try:
        caps = httpx.get(target.server.url + "/v1/capabilities").json()
        assert "lock-layering" not in caps["flows"] and "lock_layering" not in caps
        answer = httpx.post(target.server.url + "/v1/users/alice/keystores", json={})
        assert answer.status_code == 404
        done, report = target.run(tmp_path)
        assert done.returncode == 0
        assert {c["status"] for c in report["checks"]} == {"skipped"}
    finally:
        target.server.stop()


# --- broken servers ---------------------------------------------------------------------------

@pytest.mark.parametrize("variant", VARIANTS, ids=[v.name for v in VARIANTS])
def test_broken_server_is_caught(variant: BrokenVariant, tmp_path: Path,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    if variant.patch is not None:
        variant.patch(monkeypatch)
    target = start_target(tmp_path, file_lock(tmp_path), variant)
    try:
        # Only the checks that must catch it: every check passes on the sound server
        # (test_passes_on_the_file_lock), so this is what the variant changes.
        done, report = target.run(tmp_path, select=variant.must_fail, monkeypatch=monkeypatch)
    finally:
        target.server.stop()
    assert done.returncode == 1, f"{variant.name} was not caught:\n{done.stdout}"
    results = {c["id"]: c["status"] for c in report["checks"]}
    missed = [cid for cid in variant.must_fail if results.get(cid) != "failed"]
    assert not missed, f"{variant.name} ({variant.fault}) not caught by {missed}"
    assert f"FAIL   {variant.must_fail[0]}" in done.stdout


# --- what the server stores (LOCK-9) -----------------------------------------------------------

@pytest.fixture
def lock_server(tmp_path: Path) -> Iterator[tuple[RunningServer, AccountServer]]:
    accounts = AccountServer()
    accounts.start()
    server = start_reference_server(accounts.url, tmp_path / "keys.sqlite3",
                                    server_lock=file_lock(tmp_path))
    yield server, accounts
    server.stop()
    accounts.stop()


def test_database_holds_no_share_secret_or_lock_key(
        tmp_path: Path, lock_server: tuple[RunningServer, AccountServer]) -> None:
    server, accounts = lock_server
    secret = os.urandom(32)
    account_share, user_share = spec.split_user_secret(secret, os.urandom)
    accounts.store.set_share("alice", b64url_encode(account_share))
    token = accounts.mint("alice")
    with httpx.Client(base_url=server.url) as client:
        made = client.post("/v1/users/alice/keystores", json={"scenario": "shares"},
                           headers={"authorization": f"Bearer {token}",
                                    "secret-share": b64url_encode(user_share)})
        assert made.status_code == 201, made.text
        keystore_id = made.json()["keystore_id"]
        headers = {"authorization": f"Bearer {made.json()['capability']}",
                   "secret-share": b64url_encode(user_share)}
        key = client.post(f"/v1/keystores/{keystore_id}/keys", json={"key_type": "aes256gcm"},
                          headers=headers).json()
        sealed = client.post(f"/v1/keystores/{keystore_id}/keys/{key['key_id']}/encrypt",
                             json={"plaintext": b64url_encode(b"hi")}, headers=headers)
        assert sealed.status_code == 200
    lock_key = spec.lock_key_from_secret(secret, keystore_id)
    stored = b"".join(p.read_bytes() for p in tmp_path.glob("keys.sqlite3*") if p.is_file())
    assert stored, "the database files exist"
    for name, value in (("user share", user_share), ("account share", account_share),
                        ("secret", secret), ("lock key", lock_key)):
        for form in (value, b64url_encode(value).encode(), value.hex().encode()):
            assert form not in stored, f"the database holds the {name}"
    # The record has the lock check and nothing else of the user lock.
    import sqlite3

    with sqlite3.connect(tmp_path / "keys.sqlite3") as connection:
        record = json.loads(connection.execute("SELECT record FROM lock_keystores").fetchone()[0])
    assert set(record) == {"keystore_id", "controller", "scenario", "capability_root_key",
                           "lock_check", "unlock_grant_key"}
    assert spec.parse_keystore_record(record).lock_check == spec.lock_check_from_secret(
        secret, keystore_id)


# --- a bad server lock stops the server (LOCK-19) --------------------------------------------

def serve(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEYFLOWS_")}
    return subprocess.run(
        [sys.executable, "-m", "keyflows.reference", "--port", "0", "--db",
         str(tmp_path / "db.sqlite3"), "--account-server", "http://127.0.0.1:9", *args],
        capture_output=True, text=True, timeout=60, env=env, check=False)


@pytest.mark.parametrize(("size", "mode", "message"), [
    (None, 0o600, "does not exist"),
    (31, 0o600, "exactly 32 bytes"),
    (32, 0o644, "accessible by group or others"),
])
def test_serve_refuses_a_bad_master_key_file(tmp_path: Path, size: int | None, mode: int,
                                             message: str) -> None:
    key = tmp_path / "master.key"
    if size is not None:
        key.write_bytes(os.urandom(size))
        key.chmod(mode)
    done = serve(tmp_path, "--master-key-file", str(key))
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], done.stderr
    assert lines[0].startswith("keyflows serve: error: master key file")


def test_serve_refuses_an_unreachable_kms(tmp_path: Path) -> None:
    done = serve(tmp_path, "--server-lock", "aws-kms", "--kms-key-id", "alias/keyflows",
                 "--kms-region", "us-east-1", "--kms-endpoint",
                 f"http://127.0.0.1:{free_port()}")
    assert done.returncode == 2
    assert done.stderr.strip().startswith("keyflows serve: error: cannot describe the KMS key")
    assert len(done.stderr.strip().splitlines()) == 1


# --- one nonce store for every server process (LOCK-26) ----------------------------------------

def test_a_replay_is_refused_by_another_server_process(tmp_path: Path) -> None:
    """Two reference servers on one database: a signed request accepted by the first is
    refused when replayed to the second, and the other way round."""
    accounts = AccountServer()
    accounts.start()
    lock = file_lock(tmp_path)
    first = start_reference_server(accounts.url, tmp_path / "keys.sqlite3", server_lock=lock)
    second = start_reference_server(accounts.url, tmp_path / "keys.sqlite3", server_lock=lock)
    try:
        holder = bytes(range(32))
        token = accounts.mint("alice")
        made = httpx.post(first.url + "/v1/users/alice/keystores",
                          json={"scenario": "server-held",
                                "holder": b64url_encode(P.ed25519_public_key(holder))},
                          headers={"authorization": f"Bearer {token}"})
        assert made.status_code == 201, made.text
        path = f"/v1/keystores/{made.json()['keystore_id']}"
        for origin, replica in ((first, second), (second, first)):
            headers = _signed_read(holder, made.json()["capability"], origin.url, path)
            assert httpx.get(origin.url + path, headers=headers).status_code == 200
            # The same bytes to the other process: the signature covers @authority, so the
            # replay keeps the Host the signature was made for.
            replayed = httpx.get(replica.url + path, headers=headers)
            assert replayed.status_code == 401, replayed.text
    finally:
        first.stop()
        second.stop()
        accounts.stop()


def _signed_read(seed: bytes, capability: str, base: str, path: str) -> dict[str, str]:
    from urllib.parse import urlsplit

    host = urlsplit(base).netloc
    headers = {"authorization": f"Bearer {capability}", "host": host}
    view = hs.Request("GET", host, path, "", tuple(headers.items()), b"", "http")
    headers.update(C.sign_request(seed, view, created=int(time.time()),
                                  nonce=b64url_encode(os.urandom(16))))
    return headers


# --- a keystore bound to a vault keeps no sealed material itself (LOCK-32) --------------------

def test_vault_keystores_keep_their_keys_in_the_vault(tmp_path: Path) -> None:
    """The key server's database holds no sealed working key of a vault-bound keystore,
    and its vault secrets only as server-lock blobs; the vault holds one document per
    version, which opens only with the keystore's recipient key."""
    import sqlite3

    from keyflows.spec import edv

    accounts = AccountServer()
    accounts.start()
    server = start_reference_server(accounts.url, tmp_path / "keys.sqlite3",
                                    server_lock=file_lock(tmp_path),
                                    edv_servers=(accounts.url,))
    try:
        secret = os.urandom(32)
        account_share, user_share = spec.split_user_secret(secret, os.urandom)
        accounts.store.set_share("alice", b64url_encode(account_share))
        vault_id, token = accounts.store.vaults.create("alice")
        with httpx.Client(base_url=server.url) as client:
            made = client.post("/v1/users/alice/keystores", json={
                "scenario": "shares", "edv": {"vault": f"{accounts.url}/edvs/{vault_id}",
                                              "token": token}},
                headers={"authorization": f"Bearer {accounts.mint('alice')}",
                         "secret-share": b64url_encode(user_share)})
            assert made.status_code == 201, made.text
            headers = {"authorization": f"Bearer {made.json()['capability']}",
                       "secret-share": b64url_encode(user_share)}
            path = f"/v1/keystores/{made.json()['keystore_id']}"
            key = client.post(path + "/keys", json={"key_type": "aes256gcm"},
                              headers=headers).json()
            assert client.post(f"{path}/keys/{key['key_id']}/rotate",
                               headers=headers).status_code == 200
    finally:
        server.stop()
        accounts.stop()
    with sqlite3.connect(tmp_path / "keys.sqlite3") as connection:
        record = json.loads(connection.execute(
            "SELECT record FROM lock_working_keys").fetchone()[0])
        keystore = json.loads(connection.execute(
            "SELECT record FROM lock_keystores").fetchone()[0])
    assert [set(v) for v in record["versions"]] == [{"version"}, {"version"}]
    assert set(keystore["edv"]) == {"vault", "recipient_public_key", "recipient_key",
                                    "mac_key", "token"}
    stored = b"".join(p.read_bytes() for p in tmp_path.glob("keys.sqlite3*") if p.is_file())
    assert token.encode() not in stored
    docs = accounts.store.vaults.documents(vault_id)
    assert len(docs) == 2 and {d.jwe.kid for d in docs} == {
        edv.recipient_kid(made.json()["keystore_id"])}
