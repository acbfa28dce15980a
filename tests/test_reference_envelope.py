"""The reference server's envelope flow over real HTTP: what the conformance checks cannot
see from outside -- expiry on the server's clock, queue pages, the device limit, the
stored state after refusals -- and every answer against its JSON Schema."""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from jsonschema import Draft202012Validator
from servers import AccountServer, RunningServer, start_account_server, start_reference_server

from keyflows.reference import envelope as routes
from keyflows.spec import envelope as E
from keyflows.spec import primitives
from keyflows.spec.encoding import b64url_encode

SCHEMAS = Path(__file__).resolve().parent.parent / "spec" / "schemas"


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
    with httpx.Client(base_url=server.url, timeout=30) as c:
        yield c


class World:
    """Users with tokens and devices with private keys, on one server."""

    def __init__(self, account: AccountServer, client: httpx.Client) -> None:
        self.account = account
        self.client = client
        self.tokens: dict[str, str] = {}
        self.privates: dict[tuple[str, str], bytes] = {}

    def auth(self, user_id: str) -> dict[str, str]:
        if user_id not in self.tokens:
            self.tokens[user_id] = self.account.mint(user_id)[1]
        return {"authorization": f"Bearer {self.tokens[user_id]}"}

    def device(self, user_id: str, device_id: str) -> E.Device:
        private = os.urandom(32)
        public = primitives.x25519_public_key(private)
        answer = self.client.put(f"/v1/users/{user_id}/devices/{device_id}",
                                 json={"x25519": b64url_encode(public)},
                                 headers=self.auth(user_id))
        assert answer.status_code == 201, answer.text
        schema("envelope-device").validate(answer.json())
        self.privates[(user_id, device_id)] = private
        return E.Device(user_id=user_id, device_id=device_id, public_key=public)

    def send(self, sender: str, devices: list[E.Device], message: bytes = b"hi"
             ) -> httpx.Response:
        sealed = E.seal(message, sender=sender, recipients=devices, random=os.urandom)
        wire = E.envelope_to_wire(sealed.envelope)
        schema("envelope").validate(wire)
        return self.client.post(f"/v1/users/{sender}/messages", json=wire,
                                headers=self.auth(sender))

    def queue(self, user_id: str, device_id: str) -> dict[str, Any]:
        answer = self.client.get(f"/v1/users/{user_id}/devices/{device_id}/messages",
                                 headers=self.auth(user_id))
        assert answer.status_code == 200, answer.text
        body: dict[str, Any] = answer.json()
        schema("envelope-queue").validate(body)
        return body


@pytest.fixture
def world(account: AccountServer, client: httpx.Client) -> World:
    return World(account, client)


def test_capabilities_advertise_the_limits(client: httpx.Client) -> None:
    caps = client.get("/v1/capabilities").json()
    schema("capabilities").validate(caps)
    assert "envelope" in caps["flows"]
    assert caps["envelope"]["retention_seconds"] == routes.RETENTION_SECONDS
    assert caps["envelope"]["max_body_bytes"] > caps["envelope"]["max_message_bytes"]


def test_round_trip_answers_conform_to_the_schemas(world: World) -> None:
    bob = world.device("bob", "phone")
    answer = world.send("alice", [bob], b"hello")
    assert answer.status_code == 201
    schema("envelope-accepted").validate(answer.json())
    (record,) = world.queue("bob", "phone")["messages"]
    schema("envelope-delivery").validate(record)
    opened = E.open_delivery(E.parse_delivery(record), user_id="bob", device_id="phone",
                             device_private=world.privates[("bob", "phone")])
    assert opened.plaintext == b"hello"
    ack = world.client.post(f"/v1/users/bob/devices/phone/messages/{record['message_id']}/ack",
                            json=E.ack_to_wire(opened.keys.mac_key), headers=world.auth("bob"))
    assert ack.status_code == 200
    schema("envelope-delivery").validate(ack.json())
    assert ack.json()["mac_key"] == b64url_encode(opened.keys.mac_key)
    listed = world.client.get("/v1/users/bob/devices").json()
    schema("envelope-devices").validate(listed)


def test_messages_expire_after_the_retention_period(world: World,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [1_800_000_000]
    monkeypatch.setattr(routes, "now", lambda: clock[0])
    bob = world.device("bob", "phone")
    first = world.send("alice", [bob]).json()
    assert first["expires_at"] == clock[0] + routes.RETENTION_SECONDS
    clock[0] = first["expires_at"] - 1
    assert len(world.queue("bob", "phone")["messages"]) == 1
    clock[0] = first["expires_at"]
    assert world.queue("bob", "phone")["messages"] == []
    path = f"/v1/users/bob/devices/phone/messages/{first['message_id']}"
    assert world.client.get(path, headers=world.auth("bob")).status_code == 404
    assert world.client.post(path + "/ack", json=E.ack_to_wire(bytes(32)),
                             headers=world.auth("bob")).status_code == 404


def test_expired_messages_are_purged_and_their_ids_stay_used(
        world: World, server: RunningServer, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [1_800_000_000]
    monkeypatch.setattr(routes, "now", lambda: clock[0])
    bob = world.device("bob", "phone")
    sealed = E.seal(b"old", sender="alice", recipients=[bob], random=os.urandom)
    wire = E.envelope_to_wire(sealed.envelope)
    path = "/v1/users/alice/messages"
    assert world.client.post(path, json=wire, headers=world.auth("alice")).status_code == 201
    clock[0] += routes.RETENTION_SECONDS
    world.send("alice", [bob])  # any accepted envelope purges what expired
    with sqlite3.connect(server.settings.db_path) as db:
        rows = db.execute("SELECT count(*) FROM envelope_messages WHERE message_id = ?",
                          (wire["message_id"],)).fetchone()[0]
    assert rows == 0
    again = world.client.post(path, json=wire, headers=world.auth("alice"))
    assert again.status_code == 409 and again.json()["failure_class"] == "replay"


def test_queue_pages_in_arrival_order(world: World) -> None:
    bob = world.device("bob", "phone")
    ids = [world.send("alice", [bob]).json()["message_id"]
           for _ in range(routes.MAX_QUEUE_PAGE + 2)]
    page = world.queue("bob", "phone")
    assert [m["message_id"] for m in page["messages"]] == ids[:routes.MAX_QUEUE_PAGE]
    assert page["more"] is True
    for record in page["messages"]:
        opened = E.open_delivery(E.parse_delivery(record), user_id="bob", device_id="phone",
                                 device_private=world.privates[("bob", "phone")])
        world.client.post(f"/v1/users/bob/devices/phone/messages/{record['message_id']}/ack",
                          json=E.ack_to_wire(opened.keys.mac_key), headers=world.auth("bob"))
    rest = world.queue("bob", "phone")
    assert [m["message_id"] for m in rest["messages"]] == ids[routes.MAX_QUEUE_PAGE:]
    assert rest["more"] is False


def test_device_limit(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(routes, "MAX_DEVICES_PER_USER", 2)
    world.device("bob", "a")
    world.device("bob", "b")
    answer = world.client.put("/v1/users/bob/devices/c", headers=world.auth("bob"),
                              json={"x25519": b64url_encode(
                                  primitives.x25519_public_key(os.urandom(32)))})
    assert answer.status_code == 409
    assert answer.headers["content-type"] == "application/problem+json"


def test_removing_a_device_drops_its_queue_only(world: World) -> None:
    phone, laptop = world.device("bob", "phone"), world.device("bob", "laptop")
    world.send("alice", [phone, laptop])
    assert world.client.delete("/v1/users/bob/devices/phone",
                               headers=world.auth("bob")).status_code == 204
    assert len(world.queue("bob", "laptop")["messages"]) == 1
    world.device("bob", "phone")  # the id may be registered again, with a new key
    assert world.queue("bob", "phone")["messages"] == []


def test_a_refused_envelope_stores_nothing(world: World) -> None:
    phone = world.device("bob", "phone")
    ghost = E.Device(user_id="bob", device_id="ghost",
                     public_key=primitives.x25519_public_key(os.urandom(32)))
    answer = world.send("alice", [phone, ghost])
    assert answer.status_code == 422 and answer.json()["failure_class"] == "binding"
    assert world.queue("bob", "phone")["messages"] == []


def test_two_acks_in_parallel_are_one(world: World) -> None:
    phone = world.device("bob", "phone")
    world.send("alice", [phone])
    (record,) = world.queue("bob", "phone")["messages"]
    opened = E.open_delivery(E.parse_delivery(record), user_id="bob", device_id="phone",
                             device_private=world.privates[("bob", "phone")])
    path = f"/v1/users/bob/devices/phone/messages/{record['message_id']}/ack"
    statuses: list[int] = []

    def ack() -> None:
        with httpx.Client(base_url=str(world.client.base_url), timeout=30) as c:
            statuses.append(c.post(path, json=E.ack_to_wire(opened.keys.mac_key),
                                   headers=world.auth("bob")).status_code)

    threads = [threading.Thread(target=ack) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert statuses == [200] * 4
    assert world.queue("bob", "phone")["messages"] == []


def test_the_payload_raw_and_the_queue_without_it(world: World) -> None:
    """ENV-19: ?payload=omit leaves the ciphertext out of the records (schema-valid); the
    raw payload is the posted ciphertext, stored once, served until the message expires."""
    phone, laptop = world.device("bob", "phone"), world.device("bob", "laptop")
    sealed = E.seal(b"raw" * 1000, sender="alice", recipients=[phone, laptop],
                    random=os.urandom)
    wire = E.envelope_to_wire(sealed.envelope)
    posted = world.client.post("/v1/users/alice/messages", json=wire,
                               headers=world.auth("alice"))
    assert posted.status_code == 201
    answer = world.client.get("/v1/users/bob/devices/phone/messages",
                              params={"payload": "omit"}, headers=world.auth("bob"))
    assert answer.status_code == 200
    schema("envelope-queue").validate(answer.json())
    (record,) = answer.json()["messages"]
    assert record["payload"] == {"nonce": wire["payload"]["nonce"]}
    assert "ciphertext" in world.queue("bob", "phone")["messages"][0]["payload"]
    path = f"/v1/users/bob/devices/phone/messages/{wire['message_id']}/payload"
    raw = world.client.get(path, headers=world.auth("bob"))
    assert raw.status_code == 200
    assert raw.headers["content-type"] == "application/octet-stream"
    assert raw.content == sealed.envelope.payload.ciphertext
    opened = E.open_delivery(E.parse_delivery(record, ciphertext=raw.content), user_id="bob",
                             device_id="phone", device_private=world.privates[("bob", "phone")])
    assert opened.plaintext == b"raw" * 1000
    head = world.client.head(path, headers=world.auth("bob"))
    assert head.status_code == 200 and head.content == b""
    bad = world.client.get("/v1/users/bob/devices/phone/messages",
                           params={"payload": "none"}, headers=world.auth("bob"))
    assert bad.status_code == 400
    assert bad.headers["content-type"] == "application/problem+json"
