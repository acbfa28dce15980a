"""Encrypted data vaults: the spec (keyflows.spec.edv) and the reference vault
(`keyflows edv`, a real process on loopback) that serves it."""

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

from keyflows.spec import edv
from keyflows.spec import primitives as P
from keyflows.spec.drbg import Drbg
from keyflows.spec.encoding import b64url_encode
from keyflows.spec.errors import (
    AeadError,
    BindingError,
    DecodeError,
    LengthError,
    ParamsError,
    PointError,
    ReplayError,
)

KS = "ks-Alpha"
RECIPIENT = bytes(range(32))
MAC_KEY = bytes(range(32, 64))


def document(key_id: str = "k1", version: int = 1, seed: str = "doc",
             content: dict[str, Any] | None = None) -> edv.EncryptedDocument:
    rnd = Drbg(f"edv/test/{seed}")
    public = P.ed25519_public_key(bytes(32))
    doc, _ = edv.encrypt_document(
        doc_id=edv.new_id(rnd), sequence=0,
        content=content or edv.key_content(KS, key_id, "ed25519", version, public,
                                           b"s" * 60),
        recipient_kid=edv.recipient_kid(KS), recipient_public=P.x25519_public_key(RECIPIENT),
        ephemeral_private=rnd(32), cek=rnd(32), iv=rnd(12),
        indexed=[edv.key_index(MAC_KEY, KS, key_id, version)])
    return doc


class TestIdentifiers:
    def test_ids_are_base58btc_of_16_bytes(self) -> None:
        value = edv.new_id(Drbg("edv/test/id"))
        assert edv.check_id(value) == value
        assert edv.base58_decode(value[1:]).rjust(16, b"\x00")[-16:] == Drbg("edv/test/id")(16)
        assert edv.base58_encode(b"\x00\x00\x01") == "112"
        for bad in ("abc", "z0OIl", "z" + edv.base58_encode(bytes(14) + b"\x01"), "z", 7):
            with pytest.raises(DecodeError):
                edv.check_id(bad)


class TestBlinding:
    def test_jcs_member(self) -> None:
        assert edv.jcs_member("content.key", "k1/1") == b'{"content.key":"k1/1"}'
        assert edv.jcs_member('a"b', "\n\x01é") == '{"a\\"b":"\\n\\u0001é"}'.encode()

    def test_dif_blinding(self) -> None:
        attribute = edv.blind_attribute(MAC_KEY, "content.key", "k1/1", unique=True)
        assert attribute.name == b64url_encode(P.hmac_sha256(MAC_KEY, b"content.key"))
        assert attribute.value == b64url_encode(P.hmac_sha256(
            MAC_KEY, b'{"content.key":"k1/1"}'))
        other_name = edv.blind_value(MAC_KEY, "content.key_id", "k1/1")
        assert other_name != attribute.value  # a value is blinded with its name


class TestDocuments:
    def test_round_trip(self) -> None:
        doc = document()
        parsed = edv.parse_document(json.loads(json.dumps(doc.to_json())))
        assert parsed == doc
        sealed = edv.open_key_document(parsed, RECIPIENT, KS, "k1", 1, "ed25519",
                                       P.ed25519_public_key(bytes(32)))
        assert sealed == b"s" * 60

    def test_substituted_or_tampered_documents_are_refused(self) -> None:
        doc = document()
        public = P.ed25519_public_key(bytes(32))
        for args, error in (((KS, "k2", 1, "ed25519", public), BindingError),
                            ((KS, "k1", 2, "ed25519", public), BindingError),
                            ((KS, "k1", 1, "x25519", public), BindingError),
                            ((KS, "k1", 1, "ed25519", bytes(32)), BindingError),
                            (("ks-Beta", "k1", 1, "ed25519", public), BindingError)):
            with pytest.raises(error):
                edv.open_key_document(doc, RECIPIENT, *args)
        flipped = bytes([doc.jwe.ciphertext[0] ^ 1]) + doc.jwe.ciphertext[1:]
        jwe = edv.Jwe(doc.jwe.kid, doc.jwe.epk, doc.jwe.encrypted_key, doc.jwe.iv, flipped,
                      doc.jwe.tag)
        with pytest.raises(AeadError):
            edv.decrypt_document(edv.EncryptedDocument(doc.id, 0, doc.indexed, jwe), RECIPIENT,
                                 edv.recipient_kid(KS))
        with pytest.raises(AeadError):
            edv.decrypt_document(doc, bytes(32), edv.recipient_kid(KS))
        low = edv.Jwe(doc.jwe.kid, bytes(32), doc.jwe.encrypted_key, doc.jwe.iv,
                      doc.jwe.ciphertext, doc.jwe.tag)
        with pytest.raises(PointError):
            edv.decrypt_document(edv.EncryptedDocument(doc.id, 0, doc.indexed, low), RECIPIENT,
                                 edv.recipient_kid(KS))
        moved = edv.EncryptedDocument(document(seed="other").id, 0, doc.indexed, doc.jwe)
        with pytest.raises(BindingError):  # the plaintext names the document's id
            edv.decrypt_document(moved, RECIPIENT, edv.recipient_kid(KS))
        with pytest.raises(BindingError):
            edv.select_one([doc.to_json(), doc.to_json()])

    @pytest.mark.parametrize(("path", "value", "error"), [
        (("extra",), 1, DecodeError),
        (("sequence",), -1, DecodeError),
        (("sequence",), True, DecodeError),
        (("jwe", "protected"), "e30", DecodeError),
        (("jwe", "iv"), "AAAA", LengthError),
        (("jwe", "recipients", 0, "header", "alg"), "ECDH-ES", DecodeError),
        (("jwe", "recipients", 0, "header", "apu"), "AAAA", BindingError),
        (("jwe", "recipients", 0, "encrypted_key"), "AAAA", LengthError),
        (("indexed", 0, "attributes", 0, "value"), "plain-text", DecodeError),
        (("indexed", 0, "attributes", 0, "unique"), 1, DecodeError),
        (("indexed", 0, "hmac", "type"), "Sha512", DecodeError),
        (("indexed", 0, "sequence"), 1, DecodeError),
        (("id",), "urn:uuid:1", DecodeError),
    ])
    def test_parse_is_strict(self, path: tuple[Any, ...], value: object,
                             error: type[Exception]) -> None:
        obj: Any = document().to_json()
        target = obj
        for step in path[:-1]:
            target = target[step]
        target[path[-1]] = value
        with pytest.raises(error):
            edv.parse_document(obj)


class TestVaultRules:
    def test_sequences(self) -> None:
        doc = document()
        edv.check_new_document(doc)
        nxt = edv.EncryptedDocument(doc.id, 1, doc.indexed, doc.jwe)
        with pytest.raises(ParamsError):
            edv.check_new_document(nxt)
        edv.check_update(doc, nxt, doc.id)
        with pytest.raises(ReplayError):
            edv.check_update(nxt, nxt, doc.id)
        with pytest.raises(BindingError):
            edv.check_update(doc, nxt, "zOther")

    def test_queries(self) -> None:
        first, second = document("k1", 1, "a"), document("k1", 2, "b")
        by_version = edv.key_query(MAC_KEY, KS, "k1", 2)
        by_key = edv.key_query(MAC_KEY, KS, "k1")
        assert [edv.matches(d, by_version) for d in (first, second)] == [False, True]
        assert [edv.matches(d, by_key) for d in (first, second)] == [True, True]
        has = edv.parse_query({"index": edv.hmac_kid(KS),
                               "has": [edv.blind_name(MAC_KEY, "content.key")]})
        assert edv.matches(first, has)
        other_index = edv.Query("urn:other", by_key.equals)
        assert not edv.matches(first, other_index)
        assert edv.parse_query(by_version.to_json()) == by_version
        for bad in ({"index": "i"}, {"index": "i", "equals": [], "has": ["a"]},
                    {"index": "i", "equals": [{}]}, {"index": "i", "has": "a"}):
            with pytest.raises(DecodeError):
                edv.parse_query(bad)
        assert edv.unique_keys(first) == [(edv.hmac_kid(KS), first.indexed[0].attributes[0].name,
                                           first.indexed[0].attributes[0].value)]

    def test_trusted_vault_urls(self) -> None:
        vault = edv.new_id(Drbg("edv/test/vault"))
        assert edv.check_vault_url(f"http://v.example:8/edvs/{vault}",
                                   ["http://v.example:8/"]) == ("http://v.example:8", vault)
        for url in (f"http://evil.example/edvs/{vault}", f"http://v.example:8/edvs/{vault}/x",
                    "http://v.example:8/edvs/", 3):
            with pytest.raises(ParamsError):
                edv.check_vault_url(url, ["http://v.example:8"])


# --- the reference vault, served ------------------------------------------------------------

@pytest.fixture(scope="module")
def vault_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("edv")
    ready = tmp / "ready"
    process = subprocess.Popen([sys.executable, "-m", "keyflows.conformance", "edv", "--port",
                                "0", "--db", str(tmp / "edv.sqlite3"), "--ready-file",
                                str(ready)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while not (ready.exists() and ready.read_text().strip()):
        assert process.poll() is None, process.stderr.read() if process.stderr else ""
        assert time.monotonic() < deadline
        time.sleep(0.05)
    yield ready.read_text().strip()
    process.terminate()
    process.wait(timeout=10)


def test_reference_vault_follows_the_vault_rules(vault_server: str) -> None:
    with httpx.Client(base_url=vault_server) as client:
        made = client.post("/edvs", json={"sequence": 0, "controller": "alice"})
        assert made.status_code == 201 and made.headers["location"] == made.json()["vault"]
        vault, token = made.json()["vault"], made.json()["token"]
        auth = {"authorization": f"Bearer {token}"}
        assert client.get(vault, headers=auth).json()["controller"] == "alice"
        for headers in ({}, {"authorization": "Bearer wrong"}):
            assert client.get(vault, headers=headers).status_code == 401
        assert client.get("/edvs/zNoSuchVault1111111111", headers=auth).status_code == 401
        first, second = document("k1", 1, "a"), document("k1", 2, "b")
        for doc in (first, second):
            assert client.post(f"{vault}/documents", json=doc.to_json(),
                               headers=auth).status_code == 201
        assert client.post(f"{vault}/documents", json=first.to_json(),
                           headers=auth).status_code == 409  # the id is taken
        clash = document("k1", 1, "c")  # another id, the same unique content.key
        assert client.post(f"{vault}/documents", json=clash.to_json(),
                           headers=auth).status_code == 409
        bad = first.to_json() | {"extra": 1}
        assert client.post(f"{vault}/documents", json=bad, headers=auth).status_code == 400
        found = client.post(f"{vault}/query", headers=auth,
                            json=edv.key_query(MAC_KEY, KS, "k1", 2).to_json()).json()
        assert [edv.parse_document(d) for d in found] == [second]
        urls = client.post(f"{vault}/query", headers=auth, json={
            "index": edv.hmac_kid(KS), "has": [edv.blind_name(MAC_KEY, "content.key_id")]})
        assert sorted(urls.json()) == sorted(f"{vault}/documents/{d.id}" for d in (first,
                                                                                    second))
        path = f"{vault}/documents/{first.id}"
        assert edv.parse_document(client.get(path, headers=auth).json()) == first
        update = edv.EncryptedDocument(first.id, 1, (edv.IndexEntry(
            first.indexed[0].hmac_id, 1, first.indexed[0].attributes),), first.jwe)
        assert client.post(path, json=update.to_json(), headers=auth).status_code == 204
        assert client.post(path, json=update.to_json(), headers=auth).status_code == 409
        assert client.delete(path, headers=auth).status_code == 204
        assert client.delete(path, headers=auth).status_code == 404


def test_vault_database_keeps_no_token(tmp_path: Path) -> None:
    from keyflows.reference.edv_store import VaultStore

    store = VaultStore.open(tmp_path / "v.sqlite3")
    token = edv.new_token(os.urandom)
    store.add_vault("zVault", edv.token_id(token), edv.VaultConfig("alice"))
    store.close()
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("v.sqlite3*"))
    assert token.encode() not in raw and edv.token_id(token).hex().encode() in raw
