"""The reference server's envelope flow over real HTTP: what the conformance checks cannot
see from outside -- expiry on the server's clock, queue pages, the device limit, the
payload files on disk (written durably, deleted once drained or expired, swept when
orphaned), concurrent ACKs and uploads -- and every answer against its JSON Schema."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from jsonschema import Draft202012Validator
from servers import AccountServer, RunningServer, start_account_server, start_reference_server

from keyflows.reference import envelope as routes
from keyflows.reference.cli import serve_command
from keyflows.reference.config import ConfigError, load_settings
from keyflows.reference.payload_store import (
    DatabasePayloadStore,
    FilePayloadStore,
    PayloadStore,
)
from keyflows.reference.store import Store
from keyflows.spec import envelope as E
from keyflows.spec import envelope_devices as D
from keyflows.spec import envelope_stream as S
from keyflows.spec import keypair_publication as KP
from keyflows.spec import primitives
from keyflows.spec.drbg import unrecorded
from keyflows.spec.encoding import b64url_encode

SCHEMAS = Path(__file__).resolve().parent.parent / "spec" / "schemas"
CLIENT = "chat"


def schema(name: str) -> Draft202012Validator:
    return Draft202012Validator(json.loads((SCHEMAS / f"{name}.json").read_text()))


@pytest.fixture(scope="module")
def account() -> Iterator[AccountServer]:
    server = start_account_server()
    yield server
    server.stop()


@pytest.fixture
def server(account: AccountServer, tmp_path: Path) -> Iterator[RunningServer]:
    running = start_reference_server(account.url, tmp_path / "keys.db")
    yield running
    running.stop()


@pytest.fixture
def client(server: RunningServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=60) as c:
        yield c


class World:
    """Users with published keypairs, signed device lists and device keys, on one server."""

    def __init__(self, account: AccountServer, client: httpx.Client) -> None:
        self.account = account
        self.client = client
        self.tokens: dict[str, str] = {}
        self.keypairs: dict[str, KP.PrivateKeys] = {}
        self.lists: dict[str, list[D.Device]] = {}
        self.devices: dict[tuple[str, str], D.DevicePrivateKeys] = {}

    def auth(self, user_id: str) -> dict[str, str]:
        if user_id not in self.tokens:
            self.tokens[user_id] = self.account.mint(user_id)[1]
        return {"authorization": f"Bearer {self.tokens[user_id]}"}

    def publish(self, user_id: str) -> KP.PrivateKeys:
        if user_id not in self.keypairs:
            private = KP.generate_private_keys(os.urandom)
            record = KP.seal_record(user_id=user_id, client_id=CLIENT, key_version=1,
                                    private=private, kek=os.urandom(32),
                                    kek_spec=KP.KekSpec(KP.METHOD_APPLICATION_KEY),
                                    nonce=os.urandom(12), z=os.urandom(64)).record
            answer = self.client.put(f"/v1/users/{user_id}/apps/{CLIENT}/keypair", json=record,
                                     headers=self.auth(user_id))
            assert answer.status_code == 201, answer.text
            self.keypairs[user_id] = private
        return self.keypairs[user_id]

    def published(self, user_id: str) -> D.PublishedKeys:
        private = self.publish(user_id)
        return D.PublishedKeys(user_id=user_id, client_id=CLIENT, key_version=1,
                               x25519=primitives.x25519_public_key(private.x25519),
                               ed25519=primitives.ed25519_public_key(private.ed25519_seed))

    def put_list(self, user_id: str, devices: list[D.Device]) -> httpx.Response:
        current = self.client.get(f"/v1/users/{user_id}/apps/{CLIENT}/devices")
        version = current.json()["version"] + 1 if current.status_code == 200 else 1
        listed = D.sign_device_list(owner_seed=self.publish(user_id).ed25519_seed,
                                    user_id=user_id, client_id=CLIENT, key_version=1,
                                    version=version, devices=devices)
        return self.client.put(f"/v1/users/{user_id}/apps/{CLIENT}/devices",
                               json=D.device_list_to_wire(listed), headers=self.auth(user_id))

    def device(self, user_id: str, device_id: str) -> D.Device:
        keys = D.generate_device_keys(os.urandom)
        x25519, mlkem768 = D.device_keys(keys)
        new = D.Device(user_id=user_id, device_id=device_id, x25519=x25519, mlkem768=mlkem768)
        devices = [*self.lists.get(user_id, []), new]
        answer = self.put_list(user_id, devices)
        assert answer.status_code in (200, 201), answer.text
        schema("envelope-device-list").validate(answer.json())
        self.lists[user_id] = devices
        self.devices[(user_id, device_id)] = keys
        return new

    def remove(self, user_id: str, device_id: str) -> None:
        devices = [d for d in self.lists[user_id] if d.device_id != device_id]
        assert self.put_list(user_id, devices).status_code == 200
        self.lists[user_id] = devices

    def send(self, sender: str, devices: list[D.Device], message: bytes = b"hi", *,
             suite: str = E.SUITE_X25519, upload: bool = True) -> tuple[E.Sealed, str]:
        sealed = E.seal(message, suite=suite, recipients=devices, random=unrecorded(os.urandom),
                        sender=E.SenderKeys(user_id=sender, client_id=CLIENT, key_version=1,
                                            x25519_private=self.publish(sender).x25519))
        answer = self.client.post(f"/v1/users/{sender}/apps/{CLIENT}/messages",
                                  content=E.envelope_json(sealed.envelope),
                                  headers={**self.auth(sender),
                                           "content-type": "application/json"})
        assert answer.status_code == 201, answer.text
        schema("envelope-accepted").validate(answer.json())
        message_id = answer.json()["message_id"]
        if upload:
            done = self.upload(sender, message_id, sealed.payload)
            assert done.status_code == 204, done.text
        return sealed, message_id

    def upload(self, sender: str, message_id: str, payload: bytes) -> httpx.Response:
        return self.client.put(f"/v1/users/{sender}/apps/{CLIENT}/messages/{message_id}/payload",
                               content=payload,
                               headers={**self.auth(sender),
                                        "content-type": "application/octet-stream"})

    def base(self, device: D.Device) -> str:
        return f"/v1/users/{device.user_id}/apps/{CLIENT}/devices/{device.device_id}/messages"

    def queue(self, device: D.Device) -> dict[str, Any]:
        answer = self.client.get(self.base(device), headers=self.auth(device.user_id))
        assert answer.status_code == 200, answer.text
        schema("envelope-queue").validate(answer.json())
        body: dict[str, Any] = answer.json()
        return body

    def payload(self, device: D.Device, message_id: str) -> httpx.Response:
        return self.client.get(f"{self.base(device)}/{message_id}/payload",
                               headers=self.auth(device.user_id))

    def ack(self, device: D.Device, message_id: str) -> httpx.Response:
        return self.client.post(f"{self.base(device)}/{message_id}/ack",
                                headers=self.auth(device.user_id))


@pytest.fixture
def world(account: AccountServer, client: httpx.Client) -> World:
    return World(account, client)


def payload_files(server: RunningServer) -> set[str]:
    store = server.app_state.envelope_payloads
    assert isinstance(store, FilePayloadStore)
    return set(store.names())


def test_capabilities_advertise_suites_and_limits(client: httpx.Client) -> None:
    caps = client.get("/v1/capabilities").json()
    schema("capabilities").validate(caps)
    envelope = caps["envelope"]
    assert envelope["suites"] == list(E.SUITES)
    assert envelope["max_payload_bytes"] == routes.MAX_PAYLOAD_BYTES
    assert envelope["chunk_size"] == S.CHUNK_SIZE
    assert envelope["retention_seconds"] == 7 * 86400


def test_retention_is_a_setting_the_server_advertises_and_applies(
        account: AccountServer, tmp_path: Path) -> None:
    """ENV-17: --message-retention sets retention_seconds and every expires_at."""
    running = start_reference_server(account.url, tmp_path / "short.db", message_retention=30)
    try:
        with httpx.Client(base_url=running.url, timeout=30) as client:
            caps = client.get("/v1/capabilities").json()
            schema("capabilities").validate(caps)
            assert caps["envelope"]["retention_seconds"] == 30
            world = World(account, client)
            phone = world.device("bob", "phone")
            world.send("alice", [phone])
            (record,) = world.queue(phone)["messages"]
            assert record["expires_at"] == record["received_at"] + 30
    finally:
        running.stop()


def retention_from(flag: str | None, environ: dict[str, str]) -> int:
    return load_settings(host=None, port=None, db="unused.db", account_server="http://a.test",
                         max_body_bytes=None, message_retention=flag,
                         environ=environ).message_retention


def test_retention_setting_comes_from_the_flag_then_the_environment() -> None:
    assert retention_from(None, {}) == 604800
    assert retention_from(None, {"KEYFLOWS_MESSAGE_RETENTION": "15"}) == 15
    assert retention_from("1", {"KEYFLOWS_MESSAGE_RETENTION": "15"}) == 1
    assert retention_from(str(E.MAX_RETENTION_SECONDS), {}) == 31622400


@pytest.mark.parametrize("text", ["0", "31622401", "-5", "7d", "1.5"])
def test_retention_setting_out_of_bounds_is_one_readable_line(text: str) -> None:
    with pytest.raises(ConfigError, match=r"message retention \(seconds\) must be"):
        retention_from(text, {})
    done = CliRunner().invoke(serve_command, ["--db", "unused.db", "--account-server",
                                              "http://a.test", "--message-retention", text])
    assert done.exit_code == 2
    assert done.output.count("\n") == 1 and "message retention" in done.output, done.output


@pytest.mark.parametrize("suite", E.SUITES)
def test_round_trip_in_both_suites(world: World, suite: str) -> None:
    bob = world.device("bob", "phone")
    message = os.urandom(S.CHUNK_SIZE + 3)
    sealed, message_id = world.send("alice", [bob], message, suite=suite)
    record = world.queue(bob)["messages"][0]
    schema("envelope-delivery").validate(record)
    payload = world.payload(bob, message_id)
    assert payload.headers["content-type"] == "application/octet-stream"
    assert payload.content == sealed.payload
    opened = E.open_delivery(E.parse_delivery(record), payload.content, user_id="bob",
                             device_id="phone", device=world.devices[("bob", "phone")],
                             sender=world.published("alice"))
    assert opened.plaintext == message


def test_payload_files_are_written_and_deleted_once_drained(world: World,
                                                           server: RunningServer) -> None:
    phone, tablet = world.device("bob", "phone"), world.device("carol", "tablet")
    _, message_id = world.send("alice", [phone, tablet])
    assert payload_files(server) == {message_id}
    assert world.ack(phone, message_id).status_code == 204
    assert payload_files(server) == {message_id}
    assert world.ack(tablet, message_id).status_code == 204
    assert payload_files(server) == set()
    assert world.ack(tablet, message_id).status_code == 204


def test_removing_the_last_unacknowledged_device_drains_the_payload(
        world: World, server: RunningServer) -> None:
    phone, laptop = world.device("bob", "phone"), world.device("bob", "laptop")
    _, message_id = world.send("alice", [phone, laptop])
    assert world.ack(phone, message_id).status_code == 204
    world.remove("bob", "laptop")
    assert payload_files(server) == set()
    assert world.queue(phone)["messages"] == []


def test_messages_expire_and_their_payloads_go(world: World, server: RunningServer,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [1_000_000]
    monkeypatch.setattr(routes, "now", lambda: clock[0])
    phone = world.device("bob", "phone")
    _, message_id = world.send("alice", [phone])
    clock[0] += server.settings.message_retention - 1
    assert len(world.queue(phone)["messages"]) == 1
    clock[0] += 1
    assert world.queue(phone)["messages"] == []
    assert world.payload(phone, message_id).status_code == 404
    world.send("alice", [phone])  # accepting a message purges the expired ones
    assert message_id not in payload_files(server)


def test_queue_pages_in_arrival_order(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(routes, "MAX_QUEUE_PAGE", 2)
    phone = world.device("bob", "phone")
    ids = [world.send("alice", [phone])[1] for _ in range(3)]
    first = world.queue(phone)
    assert [m["message_id"] for m in first["messages"]] == ids[:2] and first["more"] is True
    assert world.ack(phone, ids[0]).status_code == 204
    second = world.queue(phone)
    assert [m["message_id"] for m in second["messages"]] == ids[1:] and second["more"] is False


def test_device_limit(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(routes, "MAX_DEVICES_PER_USER", 2)
    world.device("bob", "a")
    world.device("bob", "b")
    keys = D.generate_device_keys(os.urandom)
    x25519, mlkem768 = D.device_keys(keys)
    extra = D.Device(user_id="bob", device_id="c", x25519=x25519, mlkem768=mlkem768)
    answer = world.put_list("bob", [*world.lists["bob"], extra])
    assert answer.status_code == 400 and answer.json()["failure_class"] == "params"


def test_a_message_is_delivered_only_once_its_payload_is_stored(world: World,
                                                               server: RunningServer) -> None:
    phone = world.device("bob", "phone")
    sealed, message_id = world.send("alice", [phone], os.urandom(5000), upload=False)
    assert world.queue(phone)["messages"] == []
    assert world.payload(phone, message_id).status_code == 404
    assert world.upload("alice", message_id, sealed.payload[:100]).status_code == 400
    assert payload_files(server) == set()  # the refused upload left nothing behind
    assert world.upload("alice", message_id, sealed.payload).status_code == 204
    assert [m["message_id"] for m in world.queue(phone)["messages"]] == [message_id]


def test_two_uploads_in_parallel_store_one(world: World) -> None:
    phone = world.device("bob", "phone")
    sealed, message_id = world.send("alice", [phone], os.urandom(300_000), upload=False)
    statuses: list[int] = []

    def put() -> None:
        with httpx.Client(base_url=str(world.client.base_url), timeout=60) as c:
            statuses.append(c.put(
                f"/v1/users/alice/apps/{CLIENT}/messages/{message_id}/payload",
                content=sealed.payload, headers={**world.auth("alice"),
                                                 "content-type": "application/octet-stream"}
            ).status_code)

    threads = [threading.Thread(target=put) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [204, 409]
    assert world.payload(phone, message_id).content == sealed.payload


def test_two_acks_in_parallel_are_one(world: World, server: RunningServer) -> None:
    phone = world.device("bob", "phone")
    _, message_id = world.send("alice", [phone])
    statuses: list[int] = []

    def ack() -> None:
        with httpx.Client(base_url=str(world.client.base_url), timeout=60) as c:
            statuses.append(c.post(f"{world.base(phone)}/{message_id}/ack",
                                   headers=world.auth("bob")).status_code)

    threads = [threading.Thread(target=ack) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses == [204] * 4
    assert payload_files(server) == set()


def test_a_refused_envelope_stores_nothing(world: World, server: RunningServer) -> None:
    phone = world.device("bob", "phone")
    sealed = E.seal(b"x", suite=E.SUITE_X25519, recipients=[phone], random=os.urandom,
                    sender=E.SenderKeys(user_id="alice", client_id=CLIENT, key_version=7,
                                        x25519_private=world.publish("alice").x25519))
    answer = world.client.post(f"/v1/users/alice/apps/{CLIENT}/messages",
                               json=E.envelope_to_wire(sealed.envelope),
                               headers=world.auth("alice"))
    assert answer.status_code == 422 and answer.json()["failure_class"] == "binding"
    listed = world.client.get(f"/v1/users/alice/apps/{CLIENT}/messages/"
                              f"{b64url_encode(sealed.envelope.header.message_id)}/payload")
    assert listed.status_code in (401, 404, 405)
    assert world.queue(phone)["messages"] == []
    assert payload_files(server) == set()


def test_orphaned_payload_files_are_swept_at_start(account: AccountServer,
                                                   tmp_path: Path) -> None:
    db = tmp_path / "keys.db"
    first = start_reference_server(account.url, db)
    first.stop()
    store = FilePayloadStore.beside(db)
    with store.writer("orphan") as writer:
        writer.write(b"bytes no message owns")
        writer.commit(None)  # type: ignore[arg-type]  # files take no transaction
    partial = store.directory / "other.partial-0123456789abcdef"
    partial.write_bytes(b"an upload a crash cut short")
    second = start_reference_server(account.url, db)
    try:
        assert set(FilePayloadStore(store.directory).names()) == set()
        assert not partial.exists()
    finally:
        second.stop()


@pytest.fixture(params=["file", "database"])
def payload_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[
        tuple[PayloadStore, Store]]:
    db = Store.open(tmp_path / "keys.db")
    store: PayloadStore = (FilePayloadStore(tmp_path / "p") if request.param == "file"
                           else DatabasePayloadStore(db))
    yield store, db
    db.close()


def test_payload_store_round_trip(payload_backend: tuple[PayloadStore, Store]) -> None:
    store, db = payload_backend
    pieces = [os.urandom(700_000) for _ in range(3)]  # crosses the database's 1 MiB rows
    with store.writer("m1") as writer:
        for piece in pieces:
            writer.write(piece)
        assert store.reader("m1") is None  # not visible before commit
        with db.write() as tx:
            writer.commit(tx)
    reader = store.reader("m1")
    assert reader is not None
    with reader:
        assert reader.size == 2_100_000
        read = b""
        while piece := reader.read(300_000):
            assert len(piece) <= 300_000
            read += piece
        assert read == b"".join(pieces)
    with store.writer("m2") as aborted:
        aborted.write(b"y")
    assert set(store.names()) == {"m1"}
    store.delete("m1")
    store.delete("m1")
    assert store.reader("m1") is None and set(store.names()) == set()
    with pytest.raises(ValueError):
        store.writer("../escape")


def test_file_payloads_are_private(tmp_path: Path) -> None:
    store = FilePayloadStore(tmp_path / "p")
    assert oct((tmp_path / "p").stat().st_mode & 0o777) == "0o700"
    with store.writer("m1") as writer:
        writer.write(b"x")
        writer.commit(None)  # type: ignore[arg-type]  # files take no transaction
    assert oct((tmp_path / "p" / "m1").stat().st_mode & 0o777) == "0o600"


def test_database_payloads_leave_no_rows_behind(tmp_path: Path) -> None:
    db = Store.open(tmp_path / "keys.db")
    try:
        clock = [1_000_000.0]
        store = DatabasePayloadStore(db, clock=lambda: clock[0])
        with store.writer("m1") as writer:
            writer.write(os.urandom(3 << 20))
            with db.write() as tx:
                writer.commit(tx)
        with store.writer("m1") as replacing:  # a second commit under one name replaces
            replacing.write(b"z")
            with db.write() as tx:
                replacing.commit(tx)
        reader = store.reader("m1")
        assert reader is not None and reader.size == 1 and reader.read(5) == b"z"
        store.writer("cut-short").write(os.urandom(1 << 20))  # a crash: neither end
        with store.writer("aborted") as aborted:
            aborted.write(os.urandom(1 << 20))

        def count(table: str) -> int:
            return int(db.read(lambda tx: tx.execute(
                f"SELECT count(*) FROM {table}").fetchone()[0]))
        assert count("envelope_payload_chunks") == 2  # m1's one row, the cut-short one
        DatabasePayloadStore(db, clock=lambda: clock[0] + 3600)  # not stale yet
        assert count("envelope_payload_chunks") == 2
        DatabasePayloadStore(db, clock=lambda: clock[0] + 2 * 86400)
        assert count("envelope_payload_chunks") == 1 and count("envelope_payload_uploads") == 1
        store.delete("m1")
        assert count("envelope_payload_chunks") == 0 and count("envelope_payloads") == 0
    finally:
        db.close()
