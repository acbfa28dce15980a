"""The hashchain flow's executable specification (keyflows.spec.hashchain, hashchain_mute)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from keyflows.spec import hashchain_mute as mute
from keyflows.spec import hashchain_v1chain as hc
from keyflows.spec import primitives
from keyflows.spec.drbg import Drbg
from keyflows.spec.errors import SpecError
from keyflows.spec.key_derivation import LABELS
from keyflows.spec.requirements import registry

ORIGIN = "keys.example.org"
NOW = 1_700_000_000
KAT = json.loads((Path(__file__).parent / "kat" / "mute_original.json").read_text())
SPEC_DIR = Path(hc.__file__).parent


def failure(exc: pytest.ExceptionInfo[SpecError]) -> str:
    return exc.value.failure_class


def make_log(n: int, label: str = "log") -> tuple[hc.ChainLog, Drbg]:
    rnd = Drbg(label)
    log = hc.ChainLog(origin=ORIGIN, server_seed=rnd(32), nonce0=rnd(16))
    for i in range(n):
        log.append_record(entry_type=hc.TYPE_UID, subject=f"user{i}@example.org".encode(),
                          record_hash=rnd(32), nonce=rnd(16))
    return log, rnd


def verify(entries: list[bytes], head: hc.SignedHead, **kw: object) -> hc.TrustedState:
    return hc.verify_chain(entries, head, origin=ORIGIN, now=NOW, **kw)  # type: ignore[arg-type]


def flip(data: bytes, index: int, bit: int = 0) -> bytes:
    out = bytearray(data)
    out[index] ^= 1 << bit
    return bytes(out)


# --- step 1: layout ------------------------------------------------------------------------

class TestLayout:
    def test_sizes(self) -> None:
        assert hc.ENTRY_LEN == 161
        assert hc.PREV_OFFSET == 129
        assert hc.PAYLOAD_LEN == 112

    def test_decode_round_trip(self) -> None:
        log, _ = make_log(2)
        for raw in log.entries:
            assert hc.decode_entry(raw).to_bytes() == raw

    @pytest.mark.parametrize("length", [0, 160, 162, 153])
    def test_wrong_length(self, length: int) -> None:
        with pytest.raises(SpecError) as exc:
            hc.decode_entry(bytes(length))
        assert failure(exc) == "length"
        assert exc.value.requirement == "HC-1"

    @pytest.mark.parametrize("entry_type", [0x00, 0x04, 0xFF])
    def test_unknown_type(self, entry_type: int) -> None:
        log, _ = make_log(1)
        with pytest.raises(SpecError) as exc:
            hc.decode_entry(bytes([entry_type]) + log.entries[1][1:])
        assert failure(exc) == "decode"

    def test_server_key_reserved_must_be_zero(self) -> None:
        log, _ = make_log(0)
        raw = flip(log.entries[0], 17 + 32 + 64)
        with pytest.raises(SpecError) as exc:
            hc.decode_entry(raw)
        assert failure(exc) == "decode"


# --- step 2: record entries ----------------------------------------------------------------

class TestRecordEntries:
    def test_intermediates(self) -> None:
        rnd = Drbg("record")
        subject, record_hash, nonce = b"alice@example.org", rnd(32), rnd(16)
        built = hc.build_record_entry(entry_type=hc.TYPE_UID, subject=subject,
                                      record_hash=record_hash, nonce=nonce, prev_hash=hc.ZERO_HASH)
        assert len(built.entry) == hc.ENTRY_LEN
        assert built.hash_id == hc.hash_id_of(subject, nonce, hc.TYPE_UID)
        assert built.record_index == hc.record_index_of(record_hash)
        assert hc.open_record_hash(built.id_key, built.sealed_hash, built.record_index,
                                   hc.TYPE_UID) == record_hash
        assert built.entry_hash == primitives.sha256(built.entry)

    def test_type_separates_hash_id(self) -> None:
        nonce = bytes(16)
        assert (hc.hash_id_of(b"a/b", nonce, hc.TYPE_UID)
                != hc.hash_id_of(b"a/b", nonce, hc.TYPE_PUBLICATION))

    def test_nonce_blinds(self) -> None:
        assert hc.hash_id_of(b"x@y.z", bytes(16), 1) != hc.hash_id_of(b"x@y.z", b"\1" * 16, 1)

    def test_sealed_hash_wrong_key_is_aead(self) -> None:
        rnd = Drbg("seal")
        built = hc.build_record_entry(entry_type=hc.TYPE_UID, subject=b"alice@example.org",
                                      record_hash=rnd(32), nonce=rnd(16), prev_hash=hc.ZERO_HASH)
        other = hc.id_key_of(b"bob@example.org", built.nonce, hc.TYPE_UID)
        with pytest.raises(SpecError) as exc:
            hc.open_record_hash(other, built.sealed_hash, built.record_index, hc.TYPE_UID)
        assert failure(exc) == "aead"

    def test_server_key_type_is_not_a_record_type(self) -> None:
        with pytest.raises(SpecError):
            hc.build_record_entry(entry_type=hc.TYPE_SERVER_KEY, subject=b"x",
                                  record_hash=bytes(32), nonce=bytes(16),
                                  prev_hash=hc.ZERO_HASH)


# --- steps 3-6: verification ------------------------------------------------------------------

class TestVerification:
    def test_whole_chain(self) -> None:
        log, _ = make_log(20)
        state = verify(log.entries, log.head(NOW))
        assert state.position == 20
        assert state.hash == log.head_hash
        assert state.server_key == log.server_key

    def test_chunk_and_single_feeding_agree(self) -> None:
        log, _ = make_log(30)
        single = hc.ChainVerifier(origin=ORIGIN)
        for raw in log.entries:
            single.feed(raw)
        chunked = hc.ChainVerifier(origin=ORIGIN)
        for start in range(0, 31, 7):
            chunked.feed_chunk(b"".join(log.entries[start:start + 7]))
        assert single.state() == chunked.state()
        chunked.check_head(log.head(NOW), now=NOW)

    def test_extension_from_trusted_head(self) -> None:
        log, rnd = make_log(10)
        trusted = verify(log.entries, log.head(NOW))
        for i in range(5):
            log.append_record(entry_type=hc.TYPE_UID, subject=f"late{i}@example.org".encode(),
                              record_hash=rnd(32), nonce=rnd(16))
        state = verify(log.entries[11:], log.head(NOW), trusted=trusted)
        assert state.position == 15

    def test_extension_from_a_forked_trusted_head_fails(self) -> None:
        log, _ = make_log(10)
        trusted = verify(log.entries, log.head(NOW))
        forged = hc.TrustedState(position=trusted.position, hash=bytes(32),
                                 server_key=trusted.server_key, server_key_position=0)
        log2, _ = make_log(12)
        with pytest.raises(SpecError) as exc:
            verify(log2.entries[11:], log2.head(NOW), trusted=forged)
        assert failure(exc) == "link"

    def test_entry_zero_must_be_server_key(self) -> None:
        log, _ = make_log(3)
        raw = log.entries[1][:hc.PREV_OFFSET] + hc.ZERO_HASH
        v = hc.ChainVerifier(origin=ORIGIN)
        with pytest.raises(SpecError) as exc:
            v.feed(raw)
        assert failure(exc) == "decode"
        assert exc.value.requirement == "HC-6"

    def test_gap(self) -> None:
        log, _ = make_log(5)
        with pytest.raises(SpecError) as exc:
            verify(log.entries[:3] + log.entries[4:], log.head(NOW))
        assert failure(exc) == "link"
        assert exc.value.requirement == "HC-5"

    def test_reorder(self) -> None:
        log, _ = make_log(5)
        entries = list(log.entries)
        entries[2], entries[3] = entries[3], entries[2]
        with pytest.raises(SpecError) as exc:
            verify(entries, log.head(NOW))
        assert failure(exc) == "link"

    @pytest.mark.parametrize("offset", [1, 17, 49, 97, 129, 160])
    def test_bit_flip_in_any_field(self, offset: int) -> None:
        log, _ = make_log(4)
        for position in (2, 4):  # in the middle and at the end
            entries = list(log.entries)
            entries[position] = flip(entries[position], offset)
            with pytest.raises(SpecError) as exc:
                verify(entries, log.head(NOW))
            assert failure(exc) == "link"

    def test_bit_flip_in_chunk(self) -> None:
        log, _ = make_log(6)
        data = flip(b"".join(log.entries[1:]), 3 * hc.ENTRY_LEN + 40)
        v = hc.ChainVerifier(origin=ORIGIN)
        v.feed(log.entries[0])
        with pytest.raises(SpecError) as exc:
            v.feed_chunk(data)
        assert failure(exc) == "link"
        assert "entry 5" in str(exc.value)

    def test_chunk_not_whole_entries(self) -> None:
        v = hc.ChainVerifier(origin=ORIGIN)
        with pytest.raises(SpecError) as exc:
            v.feed_chunk(bytes(hc.ENTRY_LEN + 1))
        assert failure(exc) == "length"

    def test_truncated_chain(self) -> None:
        log, _ = make_log(5)
        with pytest.raises(SpecError) as exc:
            verify(log.entries[:-1], log.head(NOW))
        assert failure(exc) == "link"
        assert exc.value.requirement == "HC-9"

    def test_trailing_entries_past_head(self) -> None:
        log, rnd = make_log(5)
        head = log.head(NOW)
        log.append_record(entry_type=hc.TYPE_UID, subject=b"x@example.org", record_hash=rnd(32),
                          nonce=rnd(16))
        with pytest.raises(SpecError) as exc:
            verify(log.entries, head)
        assert failure(exc) == "link"

    def test_head_signature_wrong(self) -> None:
        log, _ = make_log(3)
        head = log.head(NOW)
        bad = hc.SignedHead(origin=head.origin, position=head.position, hash=head.hash,
                            timestamp=head.timestamp, signature=flip(head.signature, 5))
        with pytest.raises(SpecError) as exc:
            verify(log.entries, bad)
        assert failure(exc) == "signature"
        assert exc.value.requirement == "HC-8"

    def test_head_signed_by_foreign_key(self) -> None:
        log, rnd = make_log(3)
        bad = hc.sign_head(origin=ORIGIN, position=log.position, head_hash=log.head_hash,
                           timestamp=NOW, server_seed=rnd(32))
        with pytest.raises(SpecError) as exc:
            verify(log.entries, bad)
        assert failure(exc) == "signature"

    def test_head_of_other_origin(self) -> None:
        log, _ = make_log(3)
        head = hc.sign_head(origin="other.example", position=log.position,
                            head_hash=log.head_hash, timestamp=NOW, server_seed=log.server_seed)
        with pytest.raises(SpecError) as exc:
            verify(log.entries, head)
        assert failure(exc) == "binding"

    def test_head_that_does_not_match_chain_is_a_fork(self) -> None:
        log, _ = make_log(3)
        head = hc.sign_head(origin=ORIGIN, position=log.position, head_hash=bytes(32),
                            timestamp=NOW, server_seed=log.server_seed)
        with pytest.raises(hc.ForkError) as exc:
            verify(log.entries, head)
        assert exc.value.failure_class == "link"
        assert exc.value.requirement == "HC-10"

    def test_stale_and_future_heads(self) -> None:
        log, _ = make_log(3)
        with pytest.raises(SpecError) as exc:
            verify(log.entries, log.head(NOW - hc.DEFAULT_MAX_HEAD_AGE - 1))
        assert failure(exc) == "expired"
        with pytest.raises(SpecError) as exc:
            verify(log.entries, log.head(NOW + hc.MAX_CLOCK_SKEW + 1))
        assert failure(exc) == "expired"
        verify(log.entries, log.head(NOW - hc.DEFAULT_MAX_HEAD_AGE))

    def test_rollback(self) -> None:
        log, _ = make_log(3)
        with pytest.raises(SpecError) as exc:
            hc.check_head_freshness(log.head(NOW), now=NOW, trusted_position=log.position + 1)
        assert failure(exc) == "replay"

    def test_two_heads_disagreeing(self) -> None:
        log_a, _ = make_log(4, "fork")
        log_b, rnd = make_log(3, "fork")
        log_b.append_record(entry_type=hc.TYPE_UID, subject=b"mallory@example.org",
                            record_hash=rnd(32), nonce=rnd(16))
        a, b = log_a.head(NOW), log_b.head(NOW)
        assert a.position == b.position and a.hash != b.hash
        with pytest.raises(hc.ForkError) as exc:
            hc.detect_fork(a, b, origin=ORIGIN, key_a=log_a.server_key, key_b=log_b.server_key)
        assert exc.value.hashes == (a.hash, b.hash)
        hc.detect_fork(a, a, origin=ORIGIN, key_a=log_a.server_key, key_b=log_a.server_key)

    def test_expected_head_mid_chain(self) -> None:
        log, rnd = make_log(5, "mid")
        early = log.head(NOW)
        for i in range(5):
            log.append_record(entry_type=hc.TYPE_UID, subject=f"u{i}@example.org".encode(),
                              record_hash=rnd(32), nonce=rnd(16))
        for feed_chunked in (False, True):
            v = hc.ChainVerifier(origin=ORIGIN)
            v.feed(log.entries[0])
            v.expect_head(early)
            if feed_chunked:
                v.feed_chunk(b"".join(log.entries[1:]))
            else:
                for raw in log.entries[1:]:
                    v.feed(raw)
            v.check_head(log.head(NOW), now=NOW)
        forked = hc.sign_head(origin=ORIGIN, position=3, head_hash=bytes(32), timestamp=NOW,
                              server_seed=log.server_seed)
        for feed_chunked in (False, True):
            v = hc.ChainVerifier(origin=ORIGIN)
            v.feed(log.entries[0])
            v.expect_head(forked)
            with pytest.raises(hc.ForkError):
                if feed_chunked:
                    v.feed_chunk(b"".join(log.entries[1:]))
                else:
                    for raw in log.entries[1:]:
                        v.feed(raw)

    def test_memory_does_not_grow(self) -> None:
        log, rnd = make_log(0, "mem")
        v = hc.ChainVerifier(origin=ORIGIN)
        v.feed(log.entries[0])
        prev = log.head_hash
        for _ in range(20):
            chunk = bytearray()
            for _ in range(500):
                raw = b"\x01" + rnd(128) + prev
                prev = primitives.sha256(raw)
                chunk += raw
            v.feed_chunk(bytes(chunk))
        assert v.position == 10_000
        assert v.last_hash == prev
        assert len(v.key_history) == 1 and not v._expected
        assert set(vars(v)) == {"origin", "pinned_key", "_expected", "next_position", "last_hash",
                                "server_key", "key_history"}


class TestServerKey:
    def test_rotation_is_tracked(self) -> None:
        log, rnd = make_log(3, "rot")
        old_key = log.server_key
        rotated_at = log.rotate_key(rnd(32), nonce=rnd(16))
        log.append_record(entry_type=hc.TYPE_UID, subject=b"a@example.org", record_hash=rnd(32),
                          nonce=rnd(16))
        v = hc.ChainVerifier(origin=ORIGIN, pinned_key=old_key)
        v.feed_chunk(b"".join(log.entries))
        assert v.server_key == log.server_key != old_key
        assert v.key_at(rotated_at - 1) == old_key
        assert v.key_at(rotated_at) == log.server_key
        v.check_head(log.head(NOW), now=NOW)
        stale_key_head = hc.sign_head(origin=ORIGIN, position=log.position,
                                      head_hash=log.head_hash, timestamp=NOW,
                                      server_seed=Drbg("rot")(32))
        with pytest.raises(SpecError) as exc:
            v.check_head(stale_key_head, now=NOW)
        assert failure(exc) == "signature"

    def test_head_after_rotation_checked_with_the_key_then_in_force(self) -> None:
        log, rnd = make_log(2, "rot-head")
        v = hc.ChainVerifier(origin=ORIGIN)
        v.feed_chunk(b"".join(log.entries))
        log.rotate_key(rnd(32), nonce=rnd(16))
        log.append_record(entry_type=hc.TYPE_UID, subject=b"a@example.org", record_hash=rnd(32),
                          nonce=rnd(16))
        later = log.head(NOW)  # signed by the new key, unknown to v yet
        forged = hc.sign_head(origin=ORIGIN, position=later.position, head_hash=bytes(32),
                              timestamp=NOW, server_seed=log.server_seed)
        v.expect_head(later)
        v.expect_head(forged)
        with pytest.raises(hc.ForkError):
            v.feed_chunk(b"".join(log.entries[3:]))
        ok = hc.ChainVerifier(origin=ORIGIN)
        ok.feed_chunk(b"".join(log.entries[:3]))
        ok.expect_head(later)
        ok.feed_chunk(b"".join(log.entries[3:]))
        ok.check_head(later, now=NOW)

    def test_rotation_signed_by_stranger(self) -> None:
        log, rnd = make_log(2, "rot2")
        stranger = rnd(32)
        raw = hc.build_server_key_entry(origin=ORIGIN, position=3,
                                        new_key=primitives.ed25519_public_key(stranger),
                                        signer_seed=stranger, nonce=rnd(16),
                                        prev_hash=log.head_hash)
        v = hc.ChainVerifier(origin=ORIGIN)
        v.feed_chunk(b"".join(log.entries))
        with pytest.raises(SpecError) as exc:
            v.feed(raw)
        assert failure(exc) == "signature"
        assert exc.value.requirement == "HC-6"

    def test_pinned_key_mismatch(self) -> None:
        log, rnd = make_log(1, "pin")
        v = hc.ChainVerifier(origin=ORIGIN, pinned_key=primitives.ed25519_public_key(rnd(32)))
        with pytest.raises(SpecError) as exc:
            v.feed(log.entries[0])
        assert failure(exc) == "binding"
        assert exc.value.requirement == "HC-7"

    def test_server_key_entry_bound_to_position_and_origin(self) -> None:
        log, _ = make_log(0, "bound")
        other = hc.ChainVerifier(origin="other.example")
        with pytest.raises(SpecError) as exc:
            other.feed(log.entries[0])
        assert failure(exc) == "signature"


# --- step 7: identities and lookup ---------------------------------------------------------------

class TestLookup:
    def test_finds_only_the_identity(self) -> None:
        log, rnd = make_log(8, "lookup")
        record = rnd(32)
        position, _ = log.append_record(entry_type=hc.TYPE_UID, subject=b"alice@example.org",
                                        record_hash=record, nonce=rnd(16))
        matches = hc.lookup("alice@example.org", log.entries)
        assert [(m.position, m.record_hash) for m in matches] == [(position, record)]
        assert hc.lookup("bob@example.org", log.entries) == []

    def test_latest_match_wins(self) -> None:
        log, rnd = make_log(2, "latest")
        scanner = hc.IdentityScanner(b"alice@example.org")
        records = [rnd(32) for _ in range(3)]
        for record in records:
            log.append_record(entry_type=hc.TYPE_UID, subject=b"alice@example.org",
                              record_hash=record, nonce=rnd(16))
        for position, raw in enumerate(log.entries):
            scanner.feed(position, raw)
        assert scanner.latest is not None and scanner.latest.record_hash == records[-1]
        assert len(scanner.matches) == 3

    def test_publication_entries_do_not_match_uid_lookups(self) -> None:
        log, rnd = make_log(1, "pub")
        log.append_record(entry_type=hc.TYPE_PUBLICATION, subject=b"alice@example.org",
                          record_hash=rnd(32), nonce=rnd(16))
        assert hc.lookup("alice@example.org", log.entries) == []
        assert len(hc.lookup("alice@example.org", log.entries,
                             entry_type=hc.TYPE_PUBLICATION)) == 1

    @pytest.mark.parametrize("identity", ["alice@example.org", "a.b-c@mail.example.org",
                                          "abc@x.io"])
    def test_valid_identities(self, identity: str) -> None:
        assert hc.check_identity(identity) == identity.encode()

    @pytest.mark.parametrize("identity", ["Alice@example.org", "john@example.org",
                                          "al1ce@example.org", "ab@example.org",
                                          "alice@example", "alice@Example.org", "alice@-x.org",
                                          "alice@example.org@x", "alice", "al ice@example.org"])
    def test_invalid_identities(self, identity: str) -> None:
        with pytest.raises(SpecError) as exc:
            hc.check_identity(identity)
        assert failure(exc) == "decode"
        assert exc.value.requirement == "HC-14"

    def test_domain_not_served(self) -> None:
        with pytest.raises(SpecError) as exc:
            hc.check_identity("alice@example.org", domains=["example.com"])
        assert failure(exc) == "binding"


# --- steps 8-9: UIDs --------------------------------------------------------------------------

class Alice:
    """A user with SIGKEY and SIGESCROW seeds and a helper to make UIDs."""

    def __init__(self, label: str = "alice", identity: str = "alice@example.org") -> None:
        self.rnd = Drbg(label)
        self.identity = identity
        self.sigkey_seed = self.rnd(32)
        self.escrow_seed = self.rnd(32)
        self.x25519_private = self.rnd(32)

    def content(self, log: hc.ChainLog, *, msg_count: int = 0, previous: bytes | None = None,
                sigkey_seed: bytes | None = None, escrow_seed: bytes | None = None,
                not_before: int = NOW - 60, not_after: int = NOW + 86400) -> hc.UidContent:
        return hc.UidContent(
            identity=self.identity, msg_count=msg_count, not_before=not_before,
            not_after=not_after,
            sigkey=primitives.ed25519_public_key(sigkey_seed or self.sigkey_seed),
            sigescrow=primitives.ed25519_public_key(escrow_seed or self.escrow_seed),
            x25519=primitives.x25519_public_key(self.x25519_private),
            last_entry=hc.LastEntry(position=log.position, hash=log.head_hash),
            previous=previous)

    def create(self, log: hc.ChainLog) -> hc.Uid:
        return hc.sign_uid(self.content(log), sigkey_seed=self.sigkey_seed,
                           sigescrow_seed=self.escrow_seed)


def with_sig(uid: hc.Uid, **changes: object) -> hc.Uid:
    fields = {"content": uid.content, "sig_sigkey": uid.sig_sigkey,
              "sig_sigescrow": uid.sig_sigescrow, "previous_role": uid.previous_role,
              "sig_previous": uid.sig_previous}
    fields.update(changes)
    return hc.Uid(**fields)  # type: ignore[arg-type]


class TestUid:
    def test_create_and_wire_round_trip(self) -> None:
        log, _ = make_log(2)
        uid = Alice().create(log)
        record_hash = hc.verify_uid_create(uid, now=NOW, domains=["example.org"])
        wire = json.loads(json.dumps(hc.uid_to_wire(uid)))
        assert hc.parse_uid(wire) == uid
        assert hc.uid_record_hash(hc.parse_uid(wire)) == record_hash

    @pytest.mark.parametrize("which", ["sig_sigkey", "sig_sigescrow"])
    def test_create_with_one_bad_signature(self, which: str) -> None:
        log, _ = make_log(1)
        uid = Alice().create(log)
        bad = with_sig(uid, **{which: flip(getattr(uid, which), 7)})
        with pytest.raises(SpecError) as exc:
            hc.verify_uid_create(bad, now=NOW)
        assert failure(exc) == "signature"
        assert exc.value.requirement == "HC-16"

    def test_create_without_escrow_signature(self) -> None:
        log, _ = make_log(1)
        with pytest.raises(SpecError) as exc:
            hc.verify_uid_create(with_sig(Alice().create(log), sig_sigescrow=None), now=NOW)
        assert failure(exc) == "signature"

    def test_signature_roles_are_separate(self) -> None:
        alice = Alice()
        log, _ = make_log(1)
        content = alice.content(log, escrow_seed=alice.sigkey_seed)
        uid = hc.sign_uid(content, sigkey_seed=alice.sigkey_seed, sigescrow_seed=alice.sigkey_seed)
        with pytest.raises(SpecError) as exc:
            hc.verify_uid_create(uid, now=NOW)
        assert failure(exc) == "binding"
        # A SIGKEY signature can never pass as the SIGESCROW one.
        swapped = with_sig(Alice().create(log), sig_sigescrow=Alice().create(log).sig_sigkey)
        with pytest.raises(SpecError):
            hc.verify_uid_create(swapped, now=NOW)

    def test_validity(self) -> None:
        log, _ = make_log(1)
        alice = Alice()
        too_long = hc.sign_uid(alice.content(log, not_after=NOW + hc.MAX_UID_VALIDITY),
                               sigkey_seed=alice.sigkey_seed, sigescrow_seed=alice.escrow_seed)
        with pytest.raises(SpecError) as exc:
            hc.verify_uid_create(too_long, now=NOW)
        assert failure(exc) == "params"
        expired = hc.sign_uid(alice.content(log, not_before=NOW - 100, not_after=NOW),
                              sigkey_seed=alice.sigkey_seed, sigescrow_seed=alice.escrow_seed)
        with pytest.raises(SpecError) as exc:
            hc.verify_uid_create(expired, now=NOW)
        assert failure(exc) == "expired"

    def test_update_by_previous_sigkey(self) -> None:
        log, _ = make_log(1)
        alice = Alice()
        first = alice.create(log)
        new_seed = alice.rnd(32)
        update = hc.sign_uid(alice.content(log, msg_count=1, previous=hc.uid_record_hash(first),
                                           sigkey_seed=new_seed),
                             sigkey_seed=new_seed, sigescrow_seed=None,
                             previous_seed=alice.sigkey_seed, previous_role="sigkey")
        hc.verify_uid_update(update, first, now=NOW)
        assert hc.parse_uid(hc.uid_to_wire(update)) == update

    def test_update_failures(self) -> None:
        log, _ = make_log(1)
        alice = Alice()
        first = alice.create(log)
        new_seed, new_escrow = alice.rnd(32), alice.rnd(32)

        def make(*, msg_count: int = 1, previous: bytes | None = hc.uid_record_hash(first),
                 escrow: bytes | None = None, role: str = "sigkey",
                 signer: bytes | None = None, escrow_signs: bool = False) -> hc.Uid:
            content = alice.content(log, msg_count=msg_count, previous=previous,
                                    sigkey_seed=new_seed, escrow_seed=escrow)
            return hc.sign_uid(content, sigkey_seed=new_seed,
                               sigescrow_seed=(escrow or alice.escrow_seed) if escrow_signs
                               else None,
                               previous_seed=signer or alice.sigkey_seed, previous_role=role)

        cases = {
            "replay": make(msg_count=0),
            "link": make(previous=bytes(32)),
            "signature": make(signer=new_seed),
            "authz": make(escrow=new_escrow, escrow_signs=True),
        }
        for expected, uid in cases.items():
            with pytest.raises(SpecError) as exc:
                hc.verify_uid_update(uid, first, now=NOW)
            assert failure(exc) == expected, expected
        # Changing SIGESCROW: authorised by the old escrow and signed by the new one.
        ok = make(escrow=new_escrow, role="sigescrow", signer=alice.escrow_seed,
                  escrow_signs=True)
        hc.verify_uid_update(ok, first, now=NOW)
        with pytest.raises(SpecError) as exc:
            hc.verify_uid_update(with_sig(ok, sig_sigescrow=None), first, now=NOW)
        assert failure(exc) == "signature"

    def test_parse_rejects_unknown_and_missing_members(self) -> None:
        log, _ = make_log(1)
        wire = hc.uid_to_wire(Alice().create(log))
        with pytest.raises(SpecError) as exc:
            hc.parse_uid({**wire, "extra": 1})
        assert failure(exc) == "decode"
        del wire["sigescrow"]
        with pytest.raises(SpecError) as exc:
            hc.parse_uid(wire)
        assert failure(exc) == "decode"

    def test_parse_rejects_low_order_x25519(self) -> None:
        log, _ = make_log(1)
        wire = hc.uid_to_wire(Alice().create(log))
        wire["public_keys"] = {"x25519": "AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}
        with pytest.raises(SpecError) as exc:
            hc.parse_uid(wire)
        assert failure(exc) == "point"

    def test_last_entry(self) -> None:
        log, _ = make_log(3)
        last = hc.LastEntry(position=1, hash=log.hashes[1])
        hc.check_last_entry(last, hash_at=log.hashes[1], head_position=log.position)
        with pytest.raises(SpecError) as exc:
            hc.check_last_entry(last, hash_at=log.hashes[2], head_position=log.position)
        assert failure(exc) == "link"
        with pytest.raises(SpecError) as exc:
            hc.check_last_entry(last, hash_at=log.hashes[1], head_position=10_000, max_lag=100)
        assert failure(exc) == "expired"

    def test_reply(self) -> None:
        log, rnd = make_log(3)
        uid = Alice().create(log)
        record_hash = hc.uid_record_hash(uid)
        position, built = log.append_record(entry_type=hc.TYPE_UID,
                                            subject=uid.content.identity.encode(),
                                            record_hash=record_hash, nonce=rnd(16))
        reply = hc.sign_uid_reply(origin=ORIGIN, position=position, entry=built.entry,
                                  record_hash=record_hash, server_seed=log.server_seed)
        hc.verify_uid_reply(reply, uid, origin=ORIGIN, server_key=log.server_key)
        with pytest.raises(SpecError) as exc:
            hc.verify_uid_reply(reply, uid, origin=ORIGIN,
                                server_key=primitives.ed25519_public_key(rnd(32)))
        assert failure(exc) == "signature"
        # A validly signed reply whose entry is about someone else.
        _, other = log.append_record(entry_type=hc.TYPE_UID, subject=b"bob@example.org",
                                     record_hash=record_hash, nonce=rnd(16))
        wrong = hc.sign_uid_reply(origin=ORIGIN, position=position + 1, entry=other.entry,
                                  record_hash=record_hash, server_seed=log.server_seed)
        with pytest.raises(SpecError) as exc:
            hc.verify_uid_reply(wrong, uid, origin=ORIGIN, server_key=log.server_key)
        assert failure(exc) == "binding"

    def test_sealed_uid(self) -> None:
        log, _ = make_log(1)
        uid = Alice().create(log)
        sealed = hc.seal_uid(uid)
        assert hc.open_sealed_uid(sealed, hc.uid_record_hash(uid)) == uid
        with pytest.raises(SpecError) as exc:
            hc.open_sealed_uid(sealed, bytes(32))
        assert failure(exc) == "aead"
        assert b"alice" not in sealed


# --- step 10: KeyInits ------------------------------------------------------------------------

class TestKeyInit:
    def make(self, alice: Alice, **kw: int) -> hc.KeyInit:
        ki, _ = hc.make_keyinit(identity=alice.identity, sigkey_seed=alice.sigkey_seed,
                                not_before=kw.get("not_before", NOW - 10),
                                not_after=kw.get("not_after", NOW + 86400), random=alice.rnd)
        return ki

    def test_round_trip_and_verify(self) -> None:
        alice = Alice()
        ki = self.make(alice)
        assert hc.parse_keyinit(hc.keyinit_to_wire(ki)) == ki
        sigkey = primitives.ed25519_public_key(alice.sigkey_seed)
        hc.verify_keyinit(ki, identity=alice.identity, current_sigkey=sigkey, now=NOW)

    def test_failures(self) -> None:
        alice = Alice()
        sigkey = primitives.ed25519_public_key(alice.sigkey_seed)
        ki = self.make(alice)
        with pytest.raises(SpecError) as exc:
            hc.verify_keyinit(ki, identity=alice.identity,
                              current_sigkey=primitives.ed25519_public_key(alice.escrow_seed),
                              now=NOW)
        assert failure(exc) == "authz"
        forged = hc.KeyInit(**{**vars(ki), "x25519": primitives.x25519_public_key(bytes(32))})
        with pytest.raises(SpecError) as exc:
            hc.verify_keyinit(forged, identity=alice.identity, current_sigkey=sigkey, now=NOW)
        assert failure(exc) == "signature"
        with pytest.raises(SpecError) as exc:
            hc.verify_keyinit(self.make(alice, not_after=NOW + hc.MAX_KEYINIT_LIFETIME),
                              identity=alice.identity, current_sigkey=sigkey, now=NOW)
        assert failure(exc) == "params"
        with pytest.raises(SpecError) as exc:
            hc.verify_keyinit(ki, identity=alice.identity, current_sigkey=sigkey,
                              now=ki.not_after)
        assert failure(exc) == "expired"
        with pytest.raises(SpecError) as exc:
            hc.verify_keyinit(ki, identity="bob@example.org", current_sigkey=sigkey, now=NOW)
        assert failure(exc) == "binding"

    def test_pool_serves_each_once(self) -> None:
        alice = Alice()
        pool = hc.KeyInitPool()
        kis = [self.make(alice) for _ in range(3)]
        for ki in kis:
            pool.add(ki)
        with pytest.raises(SpecError) as exc:
            pool.add(kis[0])
        assert failure(exc) == "replay"
        served = [pool.take(alice.identity, now=NOW) for _ in range(4)]
        assert served[:3] == kis and served[3] is None

    def test_pool_skips_not_yet_valid_and_drops_expired(self) -> None:
        alice = Alice()
        pool = hc.KeyInitPool()
        future = self.make(alice, not_before=NOW + 100, not_after=NOW + 200)
        old = self.make(alice, not_before=NOW - 200, not_after=NOW - 100)
        pool.add(future)
        pool.add(old)
        assert pool.take(alice.identity, now=NOW) is None
        assert pool.take(alice.identity, now=NOW + 150) == future

    def test_flush(self) -> None:
        alice = Alice()
        sigkey = primitives.ed25519_public_key(alice.sigkey_seed)
        req = hc.make_flush_request(origin=ORIGIN, identity=alice.identity,
                                    sigkey_seed=alice.sigkey_seed, timestamp=NOW,
                                    nonce=alice.rnd(16))
        assert hc.parse_flush(hc.flush_to_wire(req)) == req
        hc.verify_flush(req, origin=ORIGIN, identity=alice.identity, current_sigkey=sigkey,
                        now=NOW + hc.FLUSH_WINDOW, nonce_seen=False)
        cases: list[tuple[str, dict[str, Any]]] = [
            ("expired", {"now": NOW + hc.FLUSH_WINDOW + 1}),
            ("replay", {"nonce_seen": True}),
            ("signature", {"origin": "other.example"}),
            ("signature", {"current_sigkey": primitives.ed25519_public_key(alice.escrow_seed)}),
            ("binding", {"identity": "bob@example.org"}),
        ]
        for expected, change in cases:
            kw: dict[str, Any] = {"origin": ORIGIN, "identity": alice.identity,
                                     "current_sigkey": sigkey, "now": NOW, "nonce_seen": False}
            kw.update(change)
            with pytest.raises(SpecError) as exc:
                hc.verify_flush(req, **kw)
            assert failure(exc) == expected, change


# --- step 11: publications --------------------------------------------------------------------

def test_publication_subject_and_hash() -> None:
    assert hc.publication_subject("alice", "app.one") == b"alice/app.one"
    h1 = hc.publication_record_hash("alice", "app", 1, bytes(32), bytes(32), bytes(64))
    h2 = hc.publication_record_hash("alice", "app", 2, bytes(32), bytes(32), bytes(64))
    assert h1 != h2 and len(h1) == 32
    with pytest.raises(SpecError):
        hc.publication_subject("alice/x", "app")


# --- requirement IDs and labels ---------------------------------------------------------------

def test_every_cited_requirement_exists() -> None:
    known = registry()
    for name in ("hashchain.py", "hashchain_mute.py", "hashchain_merkle.py", "hashchain_note.py",
                 "hashchain_witness.py", "hashchain_tiles.py", "hashchain_client.py",
                 "hashchain_uid.py", "hashchain_v1chain.py"):
        cited = set(re.findall(r"HC-\d+", (SPEC_DIR / name).read_text()))
        assert cited <= set(known), cited - set(known)
    hc_ids = {k for k, v in known.items() if v.flow == "hashchain"}
    assert hc_ids == {f"HC-{i}" for i in (*range(1, 35), *range(36, 51))}


def test_every_label_is_registered() -> None:
    text = (SPEC_DIR / "hashchain_v1chain.py").read_text()
    labels = set(re.findall(r'"(hashchain-[a-z-]+)"', text))
    assert labels and labels <= set(LABELS), labels - set(LABELS)


# --- compat profile mute ----------------------------------------------------------------------

class TestMuteOriginalKats:
    """Values published in the original's tests (tests/kat/mute_original.json)."""

    def test_ckdf(self) -> None:
        k1, k2 = mute.ckdf(bytes.fromhex(KAT["ckdf"]["nonce_hex"]))
        assert k1.hex() == KAT["ckdf"]["k1Res"]
        assert k2.hex() == KAT["ckdf"]["k2Res"]

    def test_test_entry_parses(self) -> None:
        text = KAT["test_entry"]["value"]
        expect = KAT["test_entry"]["published_expectations"]
        assert len(text) == expect["EntryBase64Len"]
        entry = mute.decode_entry(text)
        assert len(entry.to_bytes()) == expect["EntryByteLen"]
        assert entry.type == int(expect["type_hex"], 16)
        assert mute.encode_entry(entry) == text
        assert (len(entry.hash), len(entry.nonce), len(entry.hash_id), len(entry.cr_uid),
                len(entry.uid_index)) == (32, 8, 32, 48, 32)

    def test_identity_cases(self) -> None:
        cases = KAT["identity"]
        for case in cases["map"]:
            if case.get("error"):
                with pytest.raises(SpecError):
                    mute.map_identity(case["input"])
            else:
                assert mute.map_identity(case["input"]) == case["output"]
        for case in cases["is_mapped"]:
            assert mute.is_mapped(case["input"]) is case["mapped"]
        for case in cases["map_localpart"]:
            if case.get("error"):
                with pytest.raises(SpecError):
                    mute.map_localpart(case["input"])
            else:
                assert mute.map_localpart(case["input"]) == case["output"]
        for case in cases["map_domain"]:
            assert mute.map_domain(case["input"]) == case["output"]
        with pytest.raises(SpecError):
            mute.map_identity("." * 255)


class TestMuteProfile:
    def build_chain(self, n: int) -> list[mute.BuiltMuteEntry]:
        rnd = Drbg("mute-chain")
        out: list[mute.BuiltMuteEntry] = []
        prev = mute.ZERO_HASH
        for i in range(n):
            built = mute.build_entry(mapped_identity=f"user{i}@mute.berlin",
                                     uid_message_json=b'{"UIDCONTENT":{"MSGCOUNT":%d}}' % i,
                                     nonce=rnd(8), iv=rnd(16), previous_hash=prev)
            out.append(built)
            prev = built.entry.hash
        return out

    def test_entry_layout_and_hash_order(self) -> None:
        built = self.build_chain(1)[0]
        raw = built.entry.to_bytes()
        assert len(raw) == 153 and len(built.text) == 204
        assert raw[:32] == primitives.sha256(raw[32:] + bytes(32))
        assert raw[32] == 0x01
        assert built.hash_id == primitives.sha256(built.k1 + b"user0@mute.berlin")
        assert built.cr_uid[16:] == primitives.aes256cbc_encrypt_nopad(
            built.id_key, built.cr_uid[:16], built.uid_hash)
        assert built.uid_index == primitives.sha256(built.uid_hash)

    def test_chain_verifies_and_lookup(self) -> None:
        chain = self.build_chain(6)
        texts = [b.text for b in chain]
        assert mute.verify_chain(texts) == chain[-1].entry.hash
        matches = mute.lookup("user3@mute.berlin", texts)
        assert [(m.position, m.uid_hash) for m in matches] == [(3, chain[3].uid_hash)]

    def test_chain_breaks(self) -> None:
        texts = [b.text for b in self.build_chain(4)]
        with pytest.raises(SpecError) as exc:
            mute.verify_chain(texts[1:])
        assert failure(exc) == "link"
        with pytest.raises(SpecError) as exc:
            mute.verify_chain([texts[0], texts[2], texts[1], texts[3]])
        assert failure(exc) == "link"

    @pytest.mark.parametrize("text,klass", [
        ("", "length"),
        ("A" * 200, "length"),
        ("A" * 203 + "=", "length"),
        ("A" * 203 + "!", "decode"),
        ("A" * 202 + "\n" + "A", "decode"),
        ("-" * 204, "decode"),
    ])
    def test_wire_form_strict(self, text: str, klass: str) -> None:
        with pytest.raises(SpecError) as exc:
            mute.decode_entry(text)
        assert failure(exc) == klass

    def test_wrong_type(self) -> None:
        raw = bytearray(mute.decode_entry(KAT["test_entry"]["value"]).to_bytes())
        raw[32] = 0x02
        import base64
        with pytest.raises(SpecError) as exc:
            mute.decode_entry(base64.b64encode(bytes(raw)).decode())
        assert failure(exc) == "decode"

    @pytest.mark.parametrize("identity,expected", [
        ("  Alice01@Mute.Berlin", None),  # leading spaces are in the local part: trimmed
        ("\u212aelvin@mute.berlin", "kelvin@mute.berlin"),  # KELVIN SIGN lowercases to k
        ("\u0130van@mute.berlin", "ivan@mute.berlin"),      # simple lowercase of U+0130
        ("jojo@MUTE.berlin", "ioio@mute.berlin"),
        ("ab\x1c@mute.berlin", None),                        # Go does not trim U+001C
    ])
    def test_go_mapping_details(self, identity: str, expected: str | None) -> None:
        if identity.startswith("  "):
            assert mute.map_identity(identity) == "aliceol@mute.berlin"
        elif expected is None:
            with pytest.raises(SpecError):
                mute.map_identity(identity)
        else:
            assert mute.map_identity(identity) == expected
