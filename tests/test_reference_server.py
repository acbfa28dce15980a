"""The reference key server over real HTTP: uvicorn on loopback, an in-test account server."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from jsonschema import Draft202012Validator
from servers import (
    FAILURE_MODES,
    AccountServer,
    RunningServer,
    start_account_server,
    start_reference_server,
)

from keyflows.reference.problems import UNAUTHORIZED_BODY
from keyflows.spec import keypair_publication as kp
from keyflows.spec import primitives
from keyflows.spec.drbg import Drbg
from keyflows.spec.encoding import b64url_decode, b64url_encode
from keyflows.spec.key_derivation import Argon2Params

SCHEMAS = Path(__file__).resolve().parent.parent / "spec" / "schemas"
EXPECTED_401 = (b'{"type":"urn:keyflows:problem:unauthorized","title":"Unauthorized",'
                b'"status":401,"detail":"The request does not carry valid credentials for '
                b'this resource."}')


def validator(name: str) -> Draft202012Validator:
    return Draft202012Validator(json.loads((SCHEMAS / f"{name}.json").read_text()))


# --- records --------------------------------------------------------------------------------

def private_keys(user_id: str, client_id: str, key_version: int, label: str) -> kp.PrivateKeys:
    return kp.generate_private_keys(
        Drbg(f"test-reference/{label}/{user_id}/{client_id}/{key_version}"))


def make_record(user_id: str, client_id: str, key_version: int, *, label: str = "r",
                password: bool = False, reset: bool = False) -> dict[str, Any]:
    """A valid sealed record; deterministic per label. Version 1 is initial; a later one
    is a rotation signed by the keys of the previous version with the same label (KP-17),
    or with `reset` a reset (KP-18)."""
    rng = Drbg(f"test-reference/{label}/{user_id}/{client_id}/{key_version}/seal")
    private = private_keys(user_id, client_id, key_version, label)
    if password:
        spec = kp.KekSpec(method="password", salt=rng(16), params=Argon2Params(2, 19456, 1))
    else:
        spec = kp.KekSpec(method="application-key")
    change, previous = kp.CHANGE_INITIAL, None
    if key_version > 1:
        change = kp.CHANGE_RESET if reset else kp.CHANGE_ROTATION
        if not reset:
            previous = private_keys(user_id, client_id, key_version - 1, label)
    sealed = kp.seal_record(user_id=user_id, client_id=client_id, key_version=key_version,
                            private=private, kek=rng(32), kek_spec=spec, nonce=rng(12),
                            z=rng(64), change_type=change, previous=previous)
    return sealed.record


def deletion(user_id: str, client_id: str, key_version: int, *, label: str = "r"
             ) -> dict[str, Any]:
    """The signed body of DELETE for make_record's record of that version (KP-19)."""
    return kp.sign_deletion(user_id=user_id, client_id=client_id, key_version=key_version,
                            private=private_keys(user_id, client_id, key_version, label))


def resign(record: dict[str, Any], seed_label: str) -> dict[str, Any]:
    """Re-sign a (modified) record with a fresh Ed25519 key, so only other checks can fail."""
    seed = Drbg(seed_label)(32)
    public = kp.PublicKeys(x25519=b64url_decode(record["public_keys"]["x25519"]),
                           ed25519=primitives.ed25519_public_key(seed))
    message = kp.binding_message(record["user_id"], record["client_id"],
                                 record["key_version"], public, record["change"]["type"])
    out: dict[str, Any] = json.loads(json.dumps(record))
    out["public_keys"]["ed25519"] = b64url_encode(public.ed25519)
    out["binding_signature"] = b64url_encode(primitives.ed25519_sign(seed, message))
    return out


# --- fixtures -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def account() -> Iterator[AccountServer]:
    server = start_account_server()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def server(account: AccountServer, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[RunningServer]:
    running = start_reference_server(account.url, tmp_path_factory.mktemp("db") / "keys.db")
    yield running
    running.stop()


@pytest.fixture
def client(server: RunningServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=10, trust_env=False) as c:
        yield c


@pytest.fixture
def owner(account: AccountServer) -> tuple[str, str]:
    return account.mint()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def keypair_path(user_id: str, client_id: str = "app") -> str:
    return f"/v1/users/{user_id}/apps/{client_id}/keypair"


def put(client: httpx.Client, user_id: str, token: str, record: object,
        client_id: str = "app") -> httpx.Response:
    return client.put(keypair_path(user_id, client_id), json=record, headers=bearer(token))


def publish_up_to(client: httpx.Client, user_id: str, token: str, version: int,
                  client_id: str = "app") -> dict[str, Any]:
    """Publish versions 1 .. `version`, each a rotation of the one before; the last record."""
    for v in range(1, version + 1):
        record = make_record(user_id, client_id, v)
        response = put(client, user_id, token, record, client_id)
        assert response.status_code in (200, 201), response.text
    return record


def delete(client: httpx.Client, user_id: str, token: str, version: int,
           client_id: str = "app") -> httpx.Response:
    """DELETE with the deletion signed by make_record's keys of `version` (KP-19)."""
    return client.request("DELETE", keypair_path(user_id, client_id), headers=bearer(token),
                          json=deletion(user_id, client_id, version))


def assert_problem(response: httpx.Response, status: int, slug: str,
                   failure_class: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    validator("problem").validate(body)
    assert body["type"] == f"urn:keyflows:problem:{slug}"
    assert body["status"] == status
    if failure_class is not None:
        assert body["failure_class"] == failure_class
    return body


# --- capabilities and routing -------------------------------------------------------------------

def test_capabilities(client: httpx.Client) -> None:
    response = client.get("/v1/capabilities")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    validator("capabilities").validate(body)
    assert body["profile"] == "v1"
    assert "keypair-publication" in body["flows"]
    limits = body["limits"]
    assert limits["max_body_bytes"] == 65536
    assert (limits["header_timeout_seconds"], limits["body_timeout_seconds"],
            limits["idle_timeout_seconds"]) == (2, 2, 2)  # the test servers' values
    assert limits["rates"]["challenge-create"] == {"capacity": 60, "window_seconds": 60,
                                                   "per": "requester"}
    assert limits["quotas"]["queue-per-sender"] == {"limit": 12, "per": "sender+device"}
    assert body["auth"] == {"scheme": "bearer", "account_server": "validate"}


def test_default_limits_are_advertised(account: AccountServer, tmp_path: Path) -> None:
    running = start_reference_server(account.url, tmp_path / "d.db", defaults=True)
    try:
        limits = httpx.get(running.url + "/v1/capabilities", trust_env=False).json()["limits"]
    finally:
        running.stop()
    assert (limits["header_timeout_seconds"], limits["body_timeout_seconds"],
            limits["idle_timeout_seconds"]) == (10, 30, 5)
    assert limits["body_min_rate_bytes_per_second"] == 4096
    assert limits["rates"] == {
        "challenge-create": {"capacity": 60, "window_seconds": 60, "per": "requester"},
        "keyinit-fetch": {"capacity": 120, "window_seconds": 60, "per": "requester"},
        "keyinit-fetch-identity": {"capacity": 10, "window_seconds": 60,
                                   "per": "requester+identity"},
        "uid-create": {"capacity": 60, "window_seconds": 60, "per": "requester"}}
    assert limits["quotas"] == {"queue-per-device": {"limit": 1000, "per": "device"},
                                "queue-per-sender": {"limit": 100, "per": "sender+device"}}


def test_unknown_route_and_wrong_method_are_problems(client: httpx.Client, owner: tuple[str, str]
                                                     ) -> None:
    assert_problem(client.get("/v1/nothing-here"), 404, "not-found")
    assert_problem(client.get("/v1/capabilities/"), 404, "not-found")
    response = client.post(keypair_path(owner[0]), json={})
    assert_problem(response, 405, "method-not-allowed")
    assert response.headers["allow"] == "DELETE, GET, HEAD, PUT"
    response = client.delete("/v1/capabilities")
    assert_problem(response, 405, "method-not-allowed")
    assert response.headers["allow"] == "GET, HEAD"


# --- the flow ----------------------------------------------------------------------------------

def test_publish_fetch_replace_delete(client: httpx.Client, owner: tuple[str, str]) -> None:
    user, token = owner
    v1 = make_record(user, "app", 1)
    created = put(client, user, token, v1)
    assert created.status_code == 201
    assert created.headers["location"] == keypair_path(user)
    assert created.json() == v1
    validator("keypair-record").validate(created.json())

    fetched = client.get(keypair_path(user), headers=bearer(token))
    assert fetched.status_code == 200
    assert fetched.json() == v1
    assert fetched.content == created.content  # KP-9: the stored bytes, unchanged

    v2 = make_record(user, "app", 2, password=True)
    replaced = put(client, user, token, v2)
    assert replaced.status_code == 200
    assert replaced.json() == v2
    assert client.get(keypair_path(user), headers=bearer(token)).json() == v2

    deleted = delete(client, user, token, 2)
    assert deleted.status_code == 204
    assert deleted.content == b""
    assert_problem(client.get(keypair_path(user), headers=bearer(token)), 404, "not-found")
    assert_problem(delete(client, user, token, 2), 404, "not-found")
    assert_problem(client.get(f"/v1/users/{user}/apps/app/public-keys"), 404, "not-found")


def test_public_keys_never_carry_private_material(client: httpx.Client,
                                                  owner: tuple[str, str]) -> None:
    user, token = owner
    record = publish_up_to(client, user, token, 7)
    response = client.get(f"/v1/users/{user}/apps/app/public-keys")  # no credentials needed
    assert response.status_code == 200
    body = response.json()
    validator("keypair-public").validate(body)
    assert body == kp.public_view(record)
    assert "encrypted_private_keys" not in response.text
    assert record["encrypted_private_keys"]["ciphertext"] not in response.text
    kp.validate_public_view(body, user_id=user, client_id="app")
    # The answer is built once per stored record and reused: the same bytes and headers
    # each time, the headers without the body for HEAD, and the next version's view as
    # soon as it is stored.
    again = client.get(f"/v1/users/{user}/apps/app/public-keys")
    assert (again.content, again.headers.raw) == (response.content, response.headers.raw)
    head = client.head(f"/v1/users/{user}/apps/app/public-keys")
    assert (head.status_code, head.content) == (200, b"")
    assert head.headers["content-length"] == str(len(response.content))
    record = make_record(user, "app", 8)
    assert put(client, user, token, record).status_code == 200
    newer = client.get(f"/v1/users/{user}/apps/app/public-keys").json()
    assert (newer["key_version"], newer) == (8, kp.public_view(record))


def test_apps_listing(client: httpx.Client, account: AccountServer) -> None:
    user, token = account.mint()
    for client_id, version in (("zeta", 3), ("alpha", 1), ("mid.app", 9)):
        publish_up_to(client, user, token, version, client_id)
    response = client.get(f"/v1/users/{user}/apps", headers=bearer(token))
    assert response.status_code == 200
    body = response.json()
    validator("apps").validate(body)
    assert body == {"user_id": user, "apps": [{"client_id": "alpha", "key_version": 1},
                                              {"client_id": "mid.app", "key_version": 9},
                                              {"client_id": "zeta", "key_version": 3}]}
    nobody, nobody_token = account.mint()
    assert client.get(f"/v1/users/{nobody}/apps", headers=bearer(nobody_token)).json() == {
        "user_id": nobody, "apps": []}
    # Owner only (KP-23): the same 401 without a token, with another user's token, and
    # whether or not the user has records.
    refused = [client.get(f"/v1/users/{user}/apps"),
               client.get(f"/v1/users/{user}/apps", headers=bearer(nobody_token)),
               client.get(f"/v1/users/{nobody}/apps"),
               client.get(f"/v1/users/{nobody}/apps", headers=bearer(token))]
    assert {r.status_code for r in refused} == {401}
    assert len({r.content for r in refused}) == 1


# --- authentication (API-3, API-4) -------------------------------------------------------------

def test_every_auth_failure_is_the_same_401(client: httpx.Client,
                                            account: AccountServer) -> None:
    user, token = account.mint()
    _, other_token = account.mint()
    _, expired = account.mint(user)
    account.expire(expired)
    record = make_record(user, "app", 1)
    assert put(client, user, token, record).status_code == 201
    assert UNAUTHORIZED_BODY == EXPECTED_401
    attempts: list[dict[str, str]] = [
        {},
        {"Authorization": f"Basic {token}"},
        {"Authorization": "Bearer"},
        {"Authorization": f"Token {token}"},
        {"Authorization": f"Bearer {token} extra"},
        {"Authorization": "Bearer unknown-token"},
        {"Authorization": f"Bearer {expired}"},
        {"Authorization": f"Bearer {other_token}"},  # a valid token of another user
    ]
    for headers in attempts:
        for method, path in (("GET", keypair_path(user)), ("DELETE", keypair_path(user)),
                             ("GET", keypair_path(user, "never-published"))):
            response = client.request(method, path, headers=headers)
            assert response.status_code == 401, (headers, response.text)
            assert response.content == EXPECTED_401
            assert response.headers["www-authenticate"] == "Bearer"
            assert response.headers["content-type"] == "application/problem+json"
        response = client.put(keypair_path(user), json=make_record(user, "app", 2),
                              headers=headers)
        assert response.status_code == 401
        assert response.content == EXPECTED_401
    # Nothing changed for the owner.
    assert client.get(keypair_path(user), headers=bearer(token)).json() == record


def test_owner_only_writes(client: httpx.Client, account: AccountServer) -> None:
    alice, alice_token = account.mint()
    mallory, mallory_token = account.mint()
    record = make_record(alice, "app", 1)
    response = client.put(keypair_path(alice), json=record, headers=bearer(mallory_token))
    assert response.status_code == 401
    assert response.content == EXPECTED_401
    # Mallory publishing Alice's record under her own path: bound to another user (KP-7).
    response = client.put(keypair_path(mallory), json=record, headers=bearer(mallory_token))
    body = assert_problem(response, 422, "invalid", "binding")
    assert body["requirement"] == "KP-7"
    assert_problem(client.get(keypair_path(alice), headers=bearer(alice_token)), 404,
                   "not-found")


def test_each_request_asks_the_account_server(client: httpx.Client,
                                              account: AccountServer) -> None:
    user, token = account.mint()
    before = len(account.validations)
    client.get(keypair_path(user), headers=bearer(token))
    client.get(keypair_path(user), headers=bearer(token))
    assert account.validations[before:] == [(user, token), (user, token)]
    account.expire(token)
    assert client.get(keypair_path(user), headers=bearer(token)).content == EXPECTED_401


@pytest.mark.parametrize("mode", [m for m in FAILURE_MODES if m is not None])
def test_account_server_bad_answer_is_503(client: httpx.Client, account: AccountServer,
                                          mode: str) -> None:
    user, token = account.mint()
    account.failure_mode = mode
    try:
        response = client.get(keypair_path(user), headers=bearer(token))
    finally:
        account.failure_mode = None
    assert_problem(response, 503, "account-server-unavailable")


def test_account_server_down_is_503(account: AccountServer, tmp_path: Path) -> None:
    down = start_account_server()
    user, token = down.mint()
    down.stop()  # its port now refuses connections
    running = start_reference_server(down.url, tmp_path / "keys.db")
    try:
        with httpx.Client(base_url=running.url, trust_env=False) as c:
            response = c.put(keypair_path(user), json=make_record(user, "app", 1),
                             headers=bearer(token))
            assert_problem(response, 503, "account-server-unavailable")
            # public reads work: an unknown record is a plain 404
            assert_problem(c.get(f"/v1/users/{user}/apps/app/public-keys"), 404, "not-found")
    finally:
        running.stop()


# --- KP-8 ------------------------------------------------------------------------------------

def test_stale_versions_conflict_and_leave_state_unchanged(client: httpx.Client,
                                                          owner: tuple[str, str]) -> None:
    user, token = owner
    v5 = publish_up_to(client, user, token, 5)
    for version in (5, 4, 1):
        body = assert_problem(put(client, user, token, make_record(user, "app", version,
                                                                   label="other")),
                              409, "conflict", "replay")
        assert body["requirement"] == "KP-8"
    assert client.get(keypair_path(user), headers=bearer(token)).json() == v5

    assert delete(client, user, token, 5).status_code == 204
    # After a delete, neither the deleted version nor an older one may come back.
    assert_problem(put(client, user, token, v5), 409, "conflict", "replay")
    assert_problem(put(client, user, token, make_record(user, "app", 3)), 409, "conflict")
    assert_problem(client.get(keypair_path(user), headers=bearer(token)), 404, "not-found")
    v6 = make_record(user, "app", 6, reset=True)
    assert put(client, user, token, v6).status_code == 201  # created anew, as a reset


def test_concurrent_publications_of_one_version_have_one_winner(
        client: httpx.Client, server: RunningServer, owner: tuple[str, str]) -> None:
    user, token = owner
    records = [make_record(user, "race", 1, label=f"racer-{i}") for i in range(12)]
    statuses: list[int] = []
    lock = threading.Lock()

    def publish(record: dict[str, Any]) -> None:
        with httpx.Client(base_url=server.url, trust_env=False, timeout=10) as c:
            status = put(c, user, token, record, "race").status_code
        with lock:
            statuses.append(status)

    threads = [threading.Thread(target=publish, args=(r,)) for r in records]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(statuses) == [201] + [409] * 11
    stored = client.get(keypair_path(user, "race"), headers=bearer(token)).json()
    assert stored in records


# --- malformed, too large, wrong media type, invalid ------------------------------------------

def test_bad_path_identifiers_are_400_before_anything_else(client: httpx.Client) -> None:
    huge = b"x" * 100_000
    for path in (keypair_path("a" * 65), keypair_path("a%20b"), keypair_path("ok", "b%C3%A9"),
                 "/v1/users/a!b/apps", "/v1/users/a*b/apps/c/public-keys"):
        for method in ("GET", "PUT", "DELETE"):
            if method != "GET" and not path.endswith("/keypair"):
                continue
            # No credentials and an oversized body: the path check still comes first.
            response = client.request(method, path, content=huge)
            body = assert_problem(response, 400, "malformed", "decode")
            assert body["requirement"] == "KD-2"


def test_credentials_before_body_size(client: httpx.Client, owner: tuple[str, str]) -> None:
    """API-50: no credentials, 401 whatever the body; with them, an oversized body 413."""
    user, token = owner
    declared = client.put(keypair_path(user), content=b"{" + b" " * 70_000 + b"}",
                          headers={"Content-Type": "application/json"})
    assert declared.status_code == 401
    assert declared.headers["connection"] == "close"  # the unread body ends the connection
    declared = client.put(keypair_path(user), content=b"{" + b" " * 70_000 + b"}",
                          headers={"Content-Type": "application/json", **bearer(token)})
    assert_problem(declared, 413, "too-large")

    def chunks() -> Iterator[bytes]:  # no Content-Length: the stream is counted
        for _ in range(40):
            yield b" " * 4096

    streamed = client.put(keypair_path(user), content=chunks(), headers=bearer(token))
    assert "content-length" not in streamed.request.headers
    assert_problem(streamed, 413, "too-large")
    massive = client.put(keypair_path(user), content=b"x" * 8_000_000, headers=bearer(token))
    assert_problem(massive, 413, "too-large")
    assert_problem(client.get(keypair_path(user), headers=bearer(token)), 404, "not-found")


def test_custom_body_limit(account: AccountServer, tmp_path: Path) -> None:
    user, token = account.mint()
    record = make_record(user, "app", 1)
    size = len(json.dumps(record).encode())
    running = start_reference_server(account.url, tmp_path / "k.db", max_body_bytes=size)
    try:
        with httpx.Client(base_url=running.url, trust_env=False) as c:
            caps = c.get("/v1/capabilities").json()
            assert caps["limits"]["max_body_bytes"] == size
            exact = c.put(keypair_path(user), content=json.dumps(record).encode(),
                          headers={**bearer(token), "Content-Type": "application/json"})
            assert exact.status_code == 201
            over = c.put(keypair_path(user), content=json.dumps(record).encode() + b" ",
                         headers={**bearer(token), "Content-Type": "application/json"})
            assert_problem(over, 413, "too-large")
    finally:
        running.stop()


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/xml",
                                          "application/json; charset=latin-1",
                                          "application/jsonx"])
def test_wrong_media_type_is_415_after_auth(client: httpx.Client, owner: tuple[str, str],
                                            content_type: str | None) -> None:
    user, token = owner
    body = json.dumps(make_record(user, "app", 1)).encode()
    headers = {} if content_type is None else {"Content-Type": content_type}
    response = client.put(keypair_path(user), content=body, headers={**headers, **bearer(token)})
    assert_problem(response, 415, "unsupported-media-type")
    unauthenticated = client.put(keypair_path(user), content=body, headers=headers)
    assert unauthenticated.content == EXPECTED_401


def test_json_media_type_parameters_are_accepted(client: httpx.Client,
                                                 owner: tuple[str, str]) -> None:
    user, token = owner
    body = json.dumps(make_record(user, "app", 1)).encode()
    response = client.put(keypair_path(user), content=body,
                          headers={**bearer(token),
                                   "Content-Type": "Application/JSON; charset=UTF-8"})
    assert response.status_code == 201


def _mutate(record: dict[str, Any], path: tuple[str, ...], value: object) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(json.dumps(record))
    target = out
    for key in path[:-1]:
        target = target[key]
    if value is _DELETE:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return out


_DELETE = object()


def test_malformed_bodies_are_400(client: httpx.Client, owner: tuple[str, str]) -> None:
    user, token = owner
    good = make_record(user, "app", 1)
    raw_cases: list[tuple[bytes, str]] = [
        (b"", "decode"),
        (b"{", "decode"),
        (b"[]", "decode"),
        (b'"record"', "decode"),
        (json.dumps(good).encode()[:-1] + b', "user_id": "x"}', "decode"),  # duplicate
        (json.dumps(good).replace('"key_version": 1', '"key_version": NaN').encode(), "decode"),
        (b"\xff\xfe{}", "decode"),
        (b"[" * 100_00 + b"]" * 100_00, "decode"),
    ]
    shaped: list[tuple[dict[str, Any], str]] = [
        (_mutate(good, ("extra",), 1), "decode"),
        (_mutate(good, ("encrypted_private_keys", "extra"), 1), "decode"),
        (_mutate(good, ("binding_signature",), _DELETE), "decode"),
        (_mutate(good, ("key_version",), "1"), "decode"),
        (_mutate(good, ("key_version",), 0), "decode"),
        (_mutate(good, ("key_version",), 2**32), "decode"),
        (_mutate(good, ("key_version",), True), "decode"),
        (_mutate(good, ("public_keys", "x25519"), good["public_keys"]["x25519"] + "="),
         "decode"),
        (_mutate(good, ("public_keys", "x25519"), b64url_encode(bytes(31))),
         "length"),
        (_mutate(good, ("encrypted_private_keys", "aead"), "A128GCM"), "decode"),
        (_mutate(good, ("encrypted_private_keys", "kek"),
                 {"method": "password", "kdf": "argon2id", "salt": b64url_encode(bytes(16)),
                  "t": 99, "m": 19456, "p": 1}), "params"),
        (_mutate(good, ("user_id",), "not valid!"), "decode"),
    ]
    for raw, failure_class in raw_cases:
        response = client.put(keypair_path(user), content=raw,
                              headers={**bearer(token), "Content-Type": "application/json"})
        assert_problem(response, 400, "malformed", failure_class)
    for obj, failure_class in shaped:
        assert_problem(put(client, user, token, obj), 400, "malformed", failure_class)
    assert_problem(client.get(keypair_path(user), headers=bearer(token)), 404, "not-found")


def test_low_order_key_and_bad_signature_are_422(client: httpx.Client,
                                                 owner: tuple[str, str]) -> None:
    user, token = owner
    good = make_record(user, "app", 1)
    low_order = resign(_mutate(good, ("public_keys", "x25519"), b64url_encode(bytes(32))),
                       "low-order")
    body = assert_problem(put(client, user, token, low_order), 422, "invalid", "point")
    assert body["requirement"] == "KP-5"

    signature = bytearray(b64url_decode(good["binding_signature"]))
    signature[10] ^= 0x01
    forged = _mutate(good, ("binding_signature",), b64url_encode(bytes(signature)))
    body = assert_problem(put(client, user, token, forged), 422, "invalid", "signature")
    assert body["requirement"] == "KP-6"

    other_app = make_record(user, "other-app", 1)
    body = assert_problem(put(client, user, token, other_app), 422, "invalid", "binding")
    assert body["requirement"] == "KP-7"
    assert_problem(client.get(keypair_path(user), headers=bearer(token)), 404, "not-found")


# --- storage ---------------------------------------------------------------------------------

def test_database_is_wal_and_survives_restart(account: AccountServer, tmp_path: Path) -> None:
    db = tmp_path / "persist.db"
    user, token = account.mint()
    first = start_reference_server(account.url, db)
    try:
        with httpx.Client(base_url=first.url, trust_env=False) as c:
            publish_up_to(c, user, token, 3, "kept")
            kept = put(c, user, token, make_record(user, "kept", 4), "kept")
            assert kept.status_code == 200
            publish_up_to(c, user, token, 2, "gone")
            assert delete(c, user, token, 2, "gone").status_code == 204
        with sqlite3.connect(db) as probe:
            assert probe.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert Path(f"{db}-wal").exists()
    finally:
        first.stop()

    second = start_reference_server(account.url, db)
    try:
        with httpx.Client(base_url=second.url, trust_env=False) as c:
            again = c.get(keypair_path(user, "kept"), headers=bearer(token))
            assert again.status_code == 200
            assert again.content == kept.content
            # The tombstone survived too (KP-8).
            assert_problem(put(c, user, token, make_record(user, "gone", 2), "gone"), 409,
                           "conflict")
            assert c.get(f"/v1/users/{user}/apps", headers=bearer(token)).json()["apps"] == [
                {"client_id": "kept", "key_version": 4}]
    finally:
        second.stop()


# --- the process interface ------------------------------------------------------------------------

def _wait_for_file(path: Path, process: subprocess.Popen[str], timeout: float = 20) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            return path.read_text()
        if process.poll() is not None:
            raise AssertionError(f"server exited early: {process.communicate()[1]}")
        time.sleep(0.05)
    raise AssertionError("no ready file")


@pytest.mark.parametrize("command", [
    [sys.executable, "-m", "keyflows.reference"],
    [str(Path(sys.executable).parent / "keyflows"), "serve"],
])
def test_process_writes_ready_file_and_serves(account: AccountServer, tmp_path: Path,
                                              command: list[str]) -> None:
    ready = tmp_path / "ready"
    env = {**os.environ, "KEYFLOWS_ACCOUNT_SERVER": account.url,
           "KEYFLOWS_DB": str(tmp_path / "proc.db")}
    process = subprocess.Popen([*command, "--port", "0", "--ready-file", str(ready)],
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    try:
        text = _wait_for_file(ready, process)
        assert text.endswith("\n") and text.count("\n") == 1
        url = text.strip()
        assert url.startswith("http://127.0.0.1:") and not url.endswith(":0")
        response = httpx.get(url + "/v1/capabilities", trust_env=False)
        assert response.status_code == 200
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=20)
    assert "Traceback" not in stderr


@pytest.mark.parametrize(("args", "message"), [
    (["--db", "{tmp}/x.db"], "no account server"),
    (["--db", "/nonexistent-dir/sub/x.db", "--account-server", "http://127.0.0.1:9"],
     "cannot open database"),
    (["--db", "{tmp}/x.db", "--account-server", "ftp://example"], "http(s) URL"),
    (["--db", "{tmp}/x.db", "--account-server", "http:///v1"], "http(s) URL"),
    (["--db", "{tmp}/x.db", "--account-server", "http://127.0.0.1:9",
      "--edv-server", "ftp://vault.example"], "http(s) base URL"),
    (["--db", "{tmp}/x.db", "--account-server", "http://127.0.0.1:9",
      "--edv-server", "https://"], "http(s) base URL"),
    (["--db", "{tmp}/x.db", "--account-server", "http://127.0.0.1:9", "--port", "http"],
     "port must be an integer"),
    (["--db", "{tmp}/x.db", "--account-server", "http://127.0.0.1:9",
      "--max-body-bytes", "0"], "max body bytes"),
])
def test_bad_configuration_is_one_line_and_exit_2(tmp_path: Path, args: list[str],
                                                  message: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEYFLOWS_")}
    argv = [a.replace("{tmp}", str(tmp_path)) for a in args]
    result = subprocess.run([sys.executable, "-m", "keyflows.reference", *argv], env=env,
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert message in lines[0]
