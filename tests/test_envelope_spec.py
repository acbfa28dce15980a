"""The envelope flow's specification (spec/envelope*.py): behaviour the vectors do not pin.

The vectors (vectors/envelope.yaml) replay every intermediate; these tests check what
lies between cases: that the per-message fast path equals RFC 9180's single-shot API,
that the server's checks run in their stated order, that STREAM is independent of how
the bytes are cut, that sender authentication is deniable, and the device-list rules.
"""

from __future__ import annotations

import json
import os

import pytest

from keyflows.spec import envelope as E
from keyflows.spec import envelope_devices as D
from keyflows.spec import envelope_stream as S
from keyflows.spec import hpke, primitives
from keyflows.spec import keypair_publication as KP
from keyflows.spec.drbg import Drbg, unrecorded
from keyflows.spec.errors import (
    AeadError,
    BindingError,
    DecodeError,
    LengthError,
    LinkError,
    MacError,
    ParamsError,
    PointError,
    ReplayError,
    SignatureError,
)
from keyflows.vectors.envelope_common import device, device_private, user

ALICE = user("alice")
BOB_PHONE = device("bob", "phone")
CAROL_TABLET = device("carol", "tablet")
DEVICES = (BOB_PHONE, CAROL_TABLET)


def sealed(suite: str, message: bytes = b"hello", random: object = None) -> E.Sealed:
    return E.seal(message, suite=suite, sender=ALICE.sender, recipients=DEVICES,
                  random=random or Drbg(f"test/{suite}"))  # type: ignore[arg-type]


def delivery_for(s: E.Sealed, address: tuple[str, str]) -> E.Delivery:
    return E.parse_delivery(E.delivery_to_wire(E.fan_out(s.envelope)[address]))


def open_as(s: E.Sealed, address: tuple[str, str], payload: bytes | None = None,
            sender: D.PublishedKeys | None = None) -> E.Opened:
    return E.open_delivery(delivery_for(s, address), s.payload if payload is None else payload,
                           user_id=address[0], device_id=address[1],
                           device=device_private(*address), sender=sender or ALICE.published)


@pytest.mark.parametrize("suite", E.SUITES)
@pytest.mark.parametrize("random", ["recorded", "unrecorded"])
def test_every_device_opens_the_same_plaintext(suite: str, random: str) -> None:
    source = Drbg(f"test/{suite}") if random == "recorded" else unrecorded(os.urandom)
    s = sealed(suite, b"x" * 70_000, source)
    for d in DEVICES:
        assert open_as(s, d.address).plaintext == b"x" * 70_000


@pytest.mark.parametrize("suite", E.SUITES)
def test_fast_path_equals_rfc9180_single_shot(suite: str) -> None:
    """The per-message context (shared info_hash, psk_id_hash, sender key object) gives
    byte-identical entries to HPKE's single-shot SealAuth / SealPSK."""
    s = sealed(suite)
    header = s.envelope.header
    info = E.entry_info(header)
    for trace in s.header.recipients:
        d = trace.device
        aad = E.entry_aad(d.user_id, d.device_id)
        if suite == E.SUITE_X25519:
            assert isinstance(trace.encapsulation, hpke.Encapsulation)
            auth = hpke.seal_auth(d.x25519, info, aad, s.header.content_key,
                                  ikm_e=trace.encapsulation.ikm_e,
                                  sender_private=ALICE.x25519_private)
            reference = (auth.enc, auth.ciphertext)
        else:
            assert isinstance(trace.encapsulation, hpke.HybridEncapsulation)
            m = trace.encapsulation.mlkem_m
            assert m is not None
            draws = [m, trace.encapsulation.ephemeral_private]

            def replay(n: int, draws: list[bytes] = draws) -> bytes:
                return draws.pop(0)

            psk = E.sender_psk(primitives.x25519(ALICE.x25519_private, d.x25519),
                               ALICE.published.x25519, d.x25519)
            hybrid = hpke.seal_hybrid_psk(d.hybrid_public_key, info, aad, s.header.content_key,
                                      random=replay, psk=psk, psk_id=E.sender_psk_id(header))
            reference = (hybrid.enc, hybrid.ciphertext)
        assert reference == (trace.entry.enc, trace.entry.wrapped_key)


def test_auth_mode_is_deniable_the_recipient_forges_an_entry() -> None:
    """Bob's phone alone -- its private key and alice's public key -- makes an entry that
    opens as alice's: a transcript proves nothing to a third party."""
    s = sealed(E.SUITE_X25519)
    header = s.envelope.header
    phone = device_private("bob", "phone")
    ephemeral = primitives.X25519Key(bytes(range(32)))
    dh = (primitives.x25519(phone.x25519, ephemeral.public)
          + primitives.x25519(phone.x25519, ALICE.published.x25519))
    kem_context = ephemeral.public + BOB_PHONE.x25519 + ALICE.published.x25519
    schedule = hpke.key_schedule(hpke.MODE_AUTH, hpke.extract_and_expand(dh, kem_context),
                                 E.entry_info(header))
    forged = E.Entry(user_id="bob", device_id="phone", enc=ephemeral.public,
                     wrapped_key=hpke.context_seal(schedule, 0, E.entry_aad("bob", "phone"),
                                                   s.header.content_key))
    opened = E.open_delivery(E.Delivery(header=header, entry=forged), s.payload, user_id="bob",
                             device_id="phone", device=phone, sender=ALICE.published)
    assert opened.plaintext == b"hello"


def test_hybrid_psk_is_symmetric_between_sender_and_recipient() -> None:
    phone = device_private("bob", "phone")
    assert E.static_dh(ALICE.x25519_private, BOB_PHONE.x25519) == \
        E.static_dh(phone.x25519, ALICE.published.x25519)


def test_a_sender_key_of_another_version_is_refused_before_any_dh() -> None:
    s = sealed(E.SUITE_X25519)
    other = D.PublishedKeys(user_id="alice", client_id="chat", key_version=2,
                            x25519=ALICE.published.x25519, ed25519=ALICE.published.ed25519)
    with pytest.raises(BindingError) as caught:
        open_as(s, BOB_PHONE.address, sender=other)
    assert caught.value.requirement == "ENV-28"


def test_envelope_json_is_json_dumps() -> None:
    for suite in E.SUITES:
        envelope = sealed(suite).envelope
        assert E.envelope_json(envelope) == json.dumps(E.envelope_to_wire(envelope),
                                                       separators=(",", ":")).encode()


def test_commitment_is_checked_before_the_payload() -> None:
    s = sealed(E.SUITE_X25519)
    keys = S.content_keys(s.header.content_key, s.envelope.header.message_id)
    assert keys == s.header.keys
    with pytest.raises(MacError):
        S.check_commitment(s.header.content_key, s.envelope.header.message_id, bytes(32))


# --- the server's order of checks ---------------------------------------------------------

class Storage:
    def __init__(self, key_version: int = 1, used: bytes | None = None) -> None:
        self.key_version = key_version
        self.used = used

    def published_key_version(self, user_id: str, client_id: str) -> int | None:
        return self.key_version if (user_id, client_id) == ("alice", "chat") else None

    def has_device(self, user_id: str, client_id: str, device_id: str) -> bool:
        return client_id == "chat" and (user_id, device_id) in {d.address for d in DEVICES}

    def message_id_used(self, message_id: bytes) -> bool:
        return message_id == self.used


LIMITS = E.Limits(max_recipients=10, max_payload_bytes=1 << 20)


def accept(obj: object, storage: Storage, *, user_id: str = "alice",
           limits: E.Limits = LIMITS) -> E.Envelope:
    return E.accept_envelope(obj, authenticated_user=user_id, client_id="chat", limits=limits,
                             directory=storage)


def test_accept_fans_out_one_entry_per_device() -> None:
    s = sealed(E.SUITE_HYBRID, random=unrecorded(os.urandom))
    envelope = accept(E.envelope_to_wire(s.envelope), Storage())
    deliveries = E.fan_out(envelope)
    assert set(deliveries) == {d.address for d in DEVICES}
    for address, delivery in deliveries.items():
        assert delivery.entry.address == address
        assert delivery.header == s.envelope.header


def test_accept_checks_in_the_stated_order() -> None:
    """Each step's failure is reported even when every later step would fail too."""
    s = sealed(E.SUITE_X25519)
    wire = E.envelope_to_wire(s.envelope)
    worst = Storage(key_version=2, used=s.envelope.header.message_id)
    small = E.Limits(max_recipients=1, max_payload_bytes=1 << 20)
    with pytest.raises(DecodeError):
        accept({**wire, "recipients": [*wire["recipients"], wire["recipients"][0]]}, worst,
               user_id="bob", limits=small)
    with pytest.raises(ParamsError) as limits:
        accept(wire, worst, user_id="bob", limits=small)
    assert limits.value.requirement == "ENV-17"
    with pytest.raises(BindingError, match="authenticated"):
        accept(wire, worst, user_id="bob")
    with pytest.raises(BindingError, match="sender_key_version"):
        accept(wire, worst)
    with pytest.raises(ReplayError):
        accept(wire, Storage(used=s.envelope.header.message_id))


def test_payload_upload_length_rule() -> None:
    header = sealed(E.SUITE_X25519).envelope.header
    E.check_payload_upload(header, header.payload_length - 1, complete=False)
    E.check_payload_upload(header, header.payload_length, complete=True)
    with pytest.raises(LengthError):
        E.check_payload_upload(header, header.payload_length + 1, complete=False)
    with pytest.raises(LengthError):
        E.check_payload_upload(header, header.payload_length - 1, complete=True)


@pytest.mark.parametrize(("already", "left", "changed", "delete"), [
    (False, 2, True, False), (False, 1, True, True), (True, 1, False, False),
    (True, 0, False, True)])
def test_apply_ack(already: bool, left: int, changed: bool, delete: bool) -> None:
    assert E.apply_ack(already_acknowledged=already, unacknowledged_devices=left) == \
        E.AckOutcome(changed=changed, delete_payload=delete)


def test_inbox_refuses_an_acknowledged_message_and_acks_only_what_it_opened() -> None:
    s = sealed(E.SUITE_X25519)
    inbox = E.Inbox(user_id="bob", device_id="phone", device=device_private("bob", "phone"))
    message_id = s.envelope.header.message_id
    with pytest.raises(BindingError):
        inbox.acknowledge(message_id)
    inbox.open(delivery_for(s, BOB_PHONE.address), s.payload, sender=ALICE.published)
    inbox.acknowledge(message_id)
    inbox.acknowledge(message_id)
    with pytest.raises(ReplayError):
        inbox.open(delivery_for(s, BOB_PHONE.address), s.payload, sender=ALICE.published)


def test_retention() -> None:
    E.check_retained(100, now=109, retention_seconds=10)
    with pytest.raises(Exception, match="retention"):
        E.check_retained(100, now=110, retention_seconds=10)


# --- STREAM -------------------------------------------------------------------------------

@pytest.mark.parametrize("length", [0, 1, S.CHUNK_SIZE - 1, S.CHUNK_SIZE, S.CHUNK_SIZE + 1,
                                    3 * S.CHUNK_SIZE])
def test_stream_lengths_round_trip(length: int) -> None:
    key = bytes(32)
    payload = S.encrypt_payload(key, bytes(length))
    assert len(payload) == S.ciphertext_length(length)
    assert S.plaintext_length(len(payload)) == length
    assert S.decrypt_payload(key, payload) == bytes(length)


@pytest.mark.parametrize("bad", [0, 15, S.CHUNK_CIPHERTEXT_SIZE + 1,
                                 S.CHUNK_CIPHERTEXT_SIZE + S.TAG_LEN])
def test_lengths_no_stream_has(bad: int) -> None:
    with pytest.raises(LengthError):
        S.plaintext_length(bad)


def test_sealer_refuses_use_after_finish() -> None:
    sealer = S.StreamSealer(bytes(32))
    sealer.finish()
    with pytest.raises(ParamsError):
        sealer.update(b"x")
    with pytest.raises(ParamsError):
        sealer.finish()


def test_opener_refuses_bytes_past_the_declared_length_at_once() -> None:
    opener = S.StreamOpener(bytes(32), 17)
    with pytest.raises(LengthError):
        opener.update(bytes(18))


def test_chunk_nonce_layout() -> None:
    assert S.chunk_nonce(0, False) == bytes(12)
    assert S.chunk_nonce(1, True) == bytes(10) + b"\x01\x01"
    with pytest.raises(ParamsError):
        S.chunk_nonce(-1, False)


# --- signed device lists ------------------------------------------------------------------

def signed(version: int, devices: tuple[D.Device, ...], *, signer: str = "bob",
           key_version: int = 1) -> D.DeviceList:
    return D.sign_device_list(owner_seed=user(signer).ed25519_seed, user_id="bob",
                              client_id="chat", key_version=key_version, version=version,
                              devices=devices)


PHONE, LAPTOP = device("bob", "phone"), device("bob", "laptop")


def test_list_wire_round_trip_and_signed_bytes() -> None:
    listed = signed(3, (PHONE, LAPTOP))
    assert [d.device_id for d in listed.devices] == ["laptop", "phone"]
    wire = D.device_list_to_wire(listed)
    assert D.verify_device_list(wire, user("bob").published) == listed
    assert D.device_list_signed_bytes(listed) == D.tbs_of(listed) + listed.signature
    assert D.find_device(listed, "phone") == PHONE
    assert D.find_device(listed, "ghost") is None


def test_server_decisions() -> None:
    owner = user("bob").published
    v1, v2 = signed(1, (LAPTOP,)), signed(2, (LAPTOP, PHONE))

    def decide(proposed: D.DeviceList, current: D.DeviceList | None,
               max_devices: int = 4) -> D.DeviceListDecision:
        return D.decide_device_list(D.device_list_to_wire(proposed), current=current,
                                    owner=owner, max_devices=max_devices)

    assert decide(v1, None).outcome is D.DeviceListOutcome.CREATED
    added = decide(v2, v1)
    assert (added.outcome, added.added, added.removed) == (D.DeviceListOutcome.UPDATED,
                                                           ("phone",), ())
    assert decide(v2, v2).outcome is D.DeviceListOutcome.UNCHANGED
    removed = decide(signed(3, (PHONE,)), v2)
    assert removed.removed == ("laptop",)
    with pytest.raises(ReplayError):
        decide(v1, v2)
    with pytest.raises(LinkError):
        decide(signed(3, (LAPTOP,)), v1)
    with pytest.raises(ParamsError):
        decide(v2, v1, max_devices=1)
    with pytest.raises(SignatureError):
        decide(signed(2, (LAPTOP, PHONE), signer="mallory"), v1)
    with pytest.raises(BindingError):
        D.decide_device_list(D.device_list_to_wire(v1), current=None, owner=None,
                             max_devices=4)


def test_sender_refuses_a_rollback_and_a_bad_device() -> None:
    owner = user("bob").published
    wire = D.device_list_to_wire(signed(2, (PHONE,)))
    D.verify_device_list(wire, owner, seen_version=2)
    with pytest.raises(ReplayError):
        D.verify_device_list(wire, owner, seen_version=3)
    bad = dict(wire)
    bad["devices"] = [dict(wire["devices"][0], x25519="AQ" + "A" * 41)]
    with pytest.raises((PointError, SignatureError)):
        D.verify_device_list(bad, owner)


def test_published_keys_come_from_a_checked_public_view() -> None:
    private = KP.PrivateKeys(x25519=ALICE.x25519_private, ed25519_seed=ALICE.ed25519_seed)
    record = KP.seal_record(user_id="alice", client_id="chat", key_version=1, private=private,
                            kek=bytes(32), kek_spec=KP.KekSpec(KP.METHOD_APPLICATION_KEY),
                            nonce=bytes(12), z=bytes(64)).record
    view = KP.public_view(record)
    assert D.published_keys_of(view, user_id="alice", client_id="chat") == ALICE.published
    with pytest.raises(BindingError):
        D.published_keys_of(view, user_id="bob", client_id="chat")
    with pytest.raises(DecodeError):
        D.published_keys_of({"user_id": "alice"}, user_id="alice", client_id="chat")


def test_new_device_id_is_16_random_bytes() -> None:
    assert D.new_device_id(Drbg("id")) == D.new_device_id(Drbg("id"))
    assert len(D.new_device_id(Drbg("id"))) == 22


def test_tampered_entry_is_an_aead_failure_not_a_crash() -> None:
    s = sealed(E.SUITE_HYBRID, random=unrecorded(os.urandom))
    delivery = delivery_for(s, BOB_PHONE.address)
    entry = delivery.entry
    tampered = E.Delivery(header=delivery.header,
                          entry=E.Entry(entry.user_id, entry.device_id,
                                        bytes([entry.enc[0] ^ 1]) + entry.enc[1:],
                                        entry.wrapped_key))
    with pytest.raises(AeadError):
        E.open_key(tampered, user_id="bob", device_id="phone",
                   device=device_private("bob", "phone"), sender=ALICE.published)
