"""Secrets at rest: the reference server's database files hold no usable secret.

After a run that publishes keypairs (appending log entries), issues challenges and
sessions, no Ed25519 seed of the log key, no challenge token and no session token appears
in the database files (main, WAL, SHM); every file is mode 0600; a database or key file
that others can read refuses the start.
"""

from __future__ import annotations

import os
import sqlite3
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from servers import AccountServer, start_account_server, start_reference_server

from keyflows.conformance.clients import Sealed, seal_with_application_key, to_json
from keyflows.reference.app import create_app
from keyflows.reference.config import Settings
from keyflows.reference.hashchain_store import LOG_KEY_SECRET, HashchainStore
from keyflows.reference.sealed_secrets import (
    KEY_FILE_SEALER,
    SecretsError,
    default_key_file,
    open_server_secrets,
)
from keyflows.reference.server_lock import (
    FileServerLock,
    ServerLockSettings,
    create_master_key_file,
    read_master_key_file,
)
from keyflows.reference.store import Store, StoreError
from keyflows.spec import primitives
from keyflows.spec import session_challenge as sc
from keyflows.spec.encoding import b64url_decode

CLIENT = "secrets-app"


@pytest.fixture(scope="module")
def account() -> Iterator[AccountServer]:
    server = start_account_server()
    yield server
    server.stop()


def database_files(db: Path) -> list[Path]:
    return [p for p in (db, Path(f"{db}-wal"), Path(f"{db}-shm")) if p.exists()]


def login(client: httpx.Client, user_id: str, token: str) -> tuple[bytes, bytes]:
    """Publish a keypair (a log entry), then take a challenge and a session:
    returns (challenge token, session token)."""
    sealed: Sealed = seal_with_application_key(user_id, CLIENT, 1)
    put = client.put(f"/v1/users/{user_id}/apps/{CLIENT}/keypair", content=to_json(sealed.record),
                     headers={"Authorization": f"Bearer {token}",
                              "Content-Type": "application/json"})
    assert put.status_code == 201, put.text
    path = f"/v1/users/{user_id}/apps/{CLIENT}/session-challenges"
    challenge = client.post(path)
    assert challenge.status_code == 201, challenge.text
    opened = sc.open_challenge(challenge.json(), origin=sc.origin_of_url(str(client.base_url)),
                               user_id=user_id, client_id=CLIENT,
                               key_version=1, x25519_private=sealed.private.x25519)
    answer = client.post(f"{path}/{challenge.json()['challenge_id']}/answer",
                         content=to_json(sc.answer_to_wire(opened.token)),
                         headers={"Content-Type": "application/json"})
    assert answer.status_code == 200, answer.text
    return opened.token, b64url_decode(answer.json()["session_token"])


def test_no_secret_in_the_database_files(tmp_path: Path, account: AccountServer) -> None:
    db = tmp_path / "keys.sqlite3"
    server = start_reference_server(account.url, db)
    secrets: list[bytes] = []
    try:
        chain = server.app_state.hashchain
        assert isinstance(chain, HashchainStore)
        secrets.append(chain.log_seed)
        with httpx.Client(base_url=server.url, timeout=30) as client:
            for _ in range(3):
                user_id, token = account.mint()
                secrets.extend(login(client, user_id, token))
    finally:
        server.stop()
    files = database_files(db)
    assert {p.name for p in files} >= {"keys.sqlite3"}
    for path in [*files, default_key_file(db)]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    for path in files:
        data = path.read_bytes()
        for secret in secrets:
            assert secret not in data, f"a secret lies in {path.name}"
    # The sealed log key opens with the key file beside the database, and only with it.
    store = Store.open(db)
    try:
        again = open_server_secrets(store, db_path=db, server_lock=None)
        assert again.get(LOG_KEY_SECRET) == secrets[0]
        default_key_file(db).unlink()
        create_master_key_file(default_key_file(db))
        with pytest.raises(SecretsError, match="does not open"):
            open_server_secrets(store, db_path=db, server_lock=None).get(LOG_KEY_SECRET)
    finally:
        store.close()


def settings_for(db: Path, account: AccountServer, **extra: object) -> Settings:
    return Settings(db_path=db, account_server=account.url, **extra)  # type: ignore[arg-type]


def test_a_database_others_can_read_is_refused(tmp_path: Path, account: AccountServer) -> None:
    db = tmp_path / "open.sqlite3"
    db.touch(mode=0o644)
    db.chmod(0o644)
    with pytest.raises(StoreError, match=r"accessible by group or others \(mode 0644\)"):
        create_app(settings_for(db, account))
    # The command line says it in one line and exits 2.
    done = subprocess.run([sys.executable, "-m", "keyflows.reference", "--db", str(db),
                           "--account-server", account.url, "--port", "0"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "chmod 600" in done.stderr, done.stderr


def test_a_wal_file_others_can_read_is_refused(tmp_path: Path, account: AccountServer) -> None:
    db = tmp_path / "wal.sqlite3"
    Store.open(db).close()
    wal = Path(f"{db}-wal")
    wal.touch()
    wal.chmod(0o640)
    with pytest.raises(StoreError, match="-wal"):
        Store.open(db)


def test_new_database_files_are_private(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        db = tmp_path / "fresh.sqlite3"
        store = Store.open(db)
        with store.write() as tx:
            tx.execute("CREATE TABLE t (x)")
            tx.execute("INSERT INTO t VALUES (1)")
        try:
            for path in database_files(db):
                assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
            assert Path(f"{db}-wal").exists()
        finally:
            store.close()
    finally:
        os.umask(old)


def test_a_key_file_others_can_read_is_refused(tmp_path: Path, account: AccountServer) -> None:
    db = tmp_path / "k.sqlite3"
    key = default_key_file(db)
    create_master_key_file(key)
    key.chmod(0o644)
    with pytest.raises(SecretsError, match=r"secrets key file .* accessible by group or others"):
        create_app(settings_for(db, account))


def test_secrets_move_under_a_server_lock(tmp_path: Path) -> None:
    """Run without a lock, then with one: the secret is re-sealed under the lock, and the
    same value comes back; without the lock it is refused with one line."""
    db = tmp_path / "m.sqlite3"
    store = Store.open(db)
    try:
        local = open_server_secrets(store, db_path=db, server_lock=None)
        value = local.get_or_create("test.secret", lambda: os.urandom(32))
        assert local.sealer_name == KEY_FILE_SEALER
        master = tmp_path / "master.key"
        create_master_key_file(master)
        lock = FileServerLock(read_master_key_file(master))
        locked = open_server_secrets(store, db_path=db, server_lock=lock)
        assert locked.get("test.secret") == value
        row = store.read(lambda tx: tx.execute(
            "SELECT sealer FROM server_secrets WHERE name = 'test.secret'").fetchone())
        assert row[0] == "file"
        other = FileServerLock(os.urandom(32))
        with pytest.raises(SecretsError, match="does not open"):
            open_server_secrets(store, db_path=db, server_lock=other).get("test.secret")
        default_key_file(db).unlink()
        with pytest.raises(SecretsError, match="sealed by 'file'"):
            open_server_secrets(store, db_path=db, server_lock=None).get("test.secret")
    finally:
        store.close()


def test_get_or_create_keeps_the_first_value(tmp_path: Path) -> None:
    db = tmp_path / "g.sqlite3"
    first, second = Store.open(db), Store.open(db)  # two processes' connections
    try:
        a = open_server_secrets(first, db_path=db, server_lock=None)
        b = open_server_secrets(second, db_path=db, server_lock=None)
        value = a.get_or_create("race", lambda: b"first")
        assert b.get_or_create("race", lambda: b"second") == value == b"first"
        with pytest.raises(ValueError):
            a.get("not a name")
    finally:
        first.close()
        second.close()


def test_a_clear_log_key_is_moved_and_erased(tmp_path: Path, account: AccountServer) -> None:
    """A database written when the log key lay in hashchain_meta: the key is sealed, the
    row erased, and the chain keeps its key."""
    db = tmp_path / "legacy.sqlite3"
    seed = bytes(range(32))
    server = start_reference_server(account.url, db)
    server.stop()
    with sqlite3.connect(db) as raw:
        raw.execute("DELETE FROM server_secrets")
        raw.execute("INSERT INTO hashchain_meta (name, value) VALUES ('server_seed', ?)", (seed,))
    server = start_reference_server(account.url, db)
    try:
        assert server.app_state.hashchain.log_key == primitives.ed25519_public_key(seed)
    finally:
        server.stop()
    for path in database_files(db):
        assert seed not in path.read_bytes(), path


def test_the_server_lock_seals_the_log_key(tmp_path: Path, account: AccountServer) -> None:
    master = tmp_path / "master.key"
    create_master_key_file(master)
    db = tmp_path / "locked.sqlite3"
    server = start_reference_server(
        account.url, db, server_lock=ServerLockSettings(master_key_file=master))
    server.stop()
    assert not default_key_file(db).exists()  # the lock seals: no local key file
    with sqlite3.connect(db) as raw:
        sealer, = raw.execute("SELECT sealer FROM server_secrets WHERE name = ?",
                              (LOG_KEY_SECRET,)).fetchone()
    assert sealer == "file"
