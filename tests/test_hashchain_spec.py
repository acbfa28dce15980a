"""The hashchain flow's executable specification: record entries, identities, UIDs,
KeyInits and publications (keyflows.spec.hashchain, hashchain_uid) and the mute profile
(hashchain_mute). The log itself is tested in test_hashchain_log and test_hashchain_merkle."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from keyflows.spec import hashchain as hc
from keyflows.spec import hashchain_merkle as merkle
from keyflows.spec import hashchain_mute as mute
from keyflows.spec import hashchain_note as note
from keyflows.spec import hashchain_uid as hu
from keyflows.spec import primitives
from keyflows.spec.drbg import Drbg
from keyflows.spec.errors import SpecError
from keyflows.spec.key_derivation import LABELS
from keyflows.spec.requirements import registry

ORIGIN = "keys.example.org/log"
NOW = 1_700_000_000
KAT = json.loads((Path(__file__).parent / "kat" / "mute_original.json").read_text())
SPEC_DIR = Path(hc.__file__).parent


def failure(exc: pytest.ExceptionInfo[SpecError]) -> str:
    return exc.value.failure_class


def make_log(n: int, label: str = "log") -> tuple[hc.TransparencyLog, Drbg]:
    rnd = Drbg(label)
    log = hc.TransparencyLog(origin=ORIGIN, key_seed=rnd(32), nonce0=rnd(16))
    for i in range(n):
        log.append_record(entry_type=hc.TYPE_UID, subject=f"user{i}@example.org".encode(),
                          record_hash=rnd(32), nonce=rnd(16))
    return log, rnd


def flip(data: bytes, index: int, bit: int = 0) -> bytes:
    out = bytearray(data)
    out[index] ^= 1 << bit
    return bytes(out)


# --- step 2: record entries ----------------------------------------------------------------

class TestRecordEntries:
    def test_intermediates(self) -> None:
        rnd = Drbg("record")
        subject, record_hash, nonce = b"alice@example.org", rnd(32), rnd(16)
        built = hc.build_record_entry(entry_type=hc.TYPE_UID, subject=subject,
                                      record_hash=record_hash, nonce=nonce)
        assert len(built.entry) == hc.ENTRY_LEN
        assert built.hash_id == hc.hash_id_of(subject, nonce, hc.TYPE_UID)
        assert built.record_index == hc.record_index_of(record_hash)
        assert hc.open_record_hash(built.id_key, built.sealed_hash, built.record_index,
                                   hc.TYPE_UID) == record_hash
        assert built.leaf_hash == merkle.leaf_hash(built.entry)

    def test_type_separates_hash_id(self) -> None:
        nonce = bytes(16)
        assert (hc.hash_id_of(b"a/b", nonce, hc.TYPE_UID)
                != hc.hash_id_of(b"a/b", nonce, hc.TYPE_PUBLICATION))

    def test_nonce_blinds(self) -> None:
        assert hc.hash_id_of(b"x@y.z", bytes(16), 1) != hc.hash_id_of(b"x@y.z", b"\1" * 16, 1)

    def test_sealed_hash_wrong_key_is_aead(self) -> None:
        rnd = Drbg("seal")
        built = hc.build_record_entry(entry_type=hc.TYPE_UID, subject=b"alice@example.org",
                                      record_hash=rnd(32), nonce=rnd(16))
        other = hc.id_key_of(b"bob@example.org", built.nonce, hc.TYPE_UID)
        with pytest.raises(SpecError) as exc:
            hc.open_record_hash(other, built.sealed_hash, built.record_index, hc.TYPE_UID)
        assert failure(exc) == "aead"

    def test_log_key_type_is_not_a_record_type(self) -> None:
        with pytest.raises(SpecError):
            hc.build_record_entry(entry_type=hc.TYPE_LOG_KEY, subject=b"x",
                                  record_hash=bytes(32), nonce=bytes(16))

    def test_builders_refuse_wrong_lengths(self) -> None:
        """HC-2, HC-4, HC-6, HC-47: every builder refuses a nonce, hash or key of the
        wrong length (a server draws and computes them; the builder is what checks)."""
        seed = bytes(32)
        key = primitives.ed25519_public_key(seed)
        builds: dict[str, Callable[[], object]] = {
            "record nonce": lambda: hc.build_record_entry(
                entry_type=hc.TYPE_UID, subject=b"x", record_hash=bytes(32), nonce=bytes(15)),
            "record hash": lambda: hc.build_record_entry(
                entry_type=hc.TYPE_UID, subject=b"x", record_hash=bytes(31), nonce=bytes(16)),
            "log-key nonce": lambda: hc.build_log_key_entry(
                origin="o.example/log", index=0, new_key=key, signer_seed=seed,
                nonce=bytes(17)),
            "log key": lambda: hc.build_log_key_entry(
                origin="o.example/log", index=0, new_key=key[:31], signer_seed=seed,
                nonce=bytes(16)),
            "directory root": lambda: hc.build_directory_entry(epoch=1, root=bytes(33),
                                                               nonce=bytes(16)),
            "directory nonce": lambda: hc.build_directory_entry(epoch=1, root=bytes(32),
                                                                nonce=bytes(0)),
        }
        for what, build in builds.items():
            with pytest.raises(SpecError) as exc:
                build()
            assert failure(exc) == "length", what
        for epoch in (-1, hc.MAX_INDEX + 1):
            with pytest.raises(SpecError):
                hc.build_directory_entry(epoch=epoch, root=bytes(32), nonce=bytes(16))
        for epoch in (0, hc.MAX_INDEX):
            entry = hc.decode_entry(hc.build_directory_entry(epoch=epoch, root=bytes(32),
                                                             nonce=bytes(16)))
            assert entry.directory_epoch == epoch



# --- step 10: identities ------------------------------------------------------------------

class TestIdentity:
    @pytest.mark.parametrize("identity", ["alice@example.org", "a.b-c@mail.example.org",
                                          "abc@x.io"])
    def test_valid_identities(self, identity: str) -> None:
        assert hu.check_identity(identity) == identity.encode()

    @pytest.mark.parametrize("identity", ["Alice@example.org", "john@example.org",
                                          "al1ce@example.org", "ab@example.org",
                                          "alice@example", "alice@Example.org", "alice@-x.org",
                                          "alice@example.org@x", "alice", "al ice@example.org"])
    def test_invalid_identities(self, identity: str) -> None:
        with pytest.raises(SpecError) as exc:
            hu.check_identity(identity)
        assert failure(exc) == "decode"
        assert exc.value.requirement == "HC-14"

    def test_domain_not_served(self) -> None:
        with pytest.raises(SpecError) as exc:
            hu.check_identity("alice@example.org", domains=["example.com"])
        assert failure(exc) == "binding"



# --- steps 10-12: UIDs --------------------------------------------------------------------------

class Alice:
    """A user with SIGKEY and SIGESCROW seeds and a helper to make UIDs."""

    def __init__(self, label: str = "alice", identity: str = "alice@example.org") -> None:
        self.rnd = Drbg(label)
        self.identity = identity
        self.sigkey_seed = self.rnd(32)
        self.escrow_seed = self.rnd(32)
        self.x25519_private = self.rnd(32)

    def content(self, log: hc.TransparencyLog, *, msg_count: int = 0,
                previous: bytes | None = None,
                sigkey_seed: bytes | None = None, escrow_seed: bytes | None = None,
                not_before: int = NOW - 60, not_after: int = NOW + 86400) -> hu.UidContent:
        return hu.UidContent(
            identity=self.identity, msg_count=msg_count, not_before=not_before,
            not_after=not_after,
            sigkey=primitives.ed25519_public_key(sigkey_seed or self.sigkey_seed),
            sigescrow=primitives.ed25519_public_key(escrow_seed or self.escrow_seed),
            x25519=primitives.x25519_public_key(self.x25519_private),
            last_checkpoint=hu.LastCheckpoint(size=log.size, root=log.tree.root()),
            previous=previous)

    def create(self, log: hc.TransparencyLog) -> hu.Uid:
        return hu.sign_uid(self.content(log), sigkey_seed=self.sigkey_seed,
                           sigescrow_seed=self.escrow_seed)


def with_sig(uid: hu.Uid, **changes: object) -> hu.Uid:
    fields = {"content": uid.content, "sig_sigkey": uid.sig_sigkey,
              "sig_sigescrow": uid.sig_sigescrow, "previous_role": uid.previous_role,
              "sig_previous": uid.sig_previous}
    fields.update(changes)
    return hu.Uid(**fields)  # type: ignore[arg-type]


class TestUid:
    def test_create_and_wire_round_trip(self) -> None:
        log, _ = make_log(2)
        uid = Alice().create(log)
        record_hash = hu.verify_uid_create(uid, now=NOW, domains=["example.org"])
        wire = json.loads(json.dumps(hu.uid_to_wire(uid)))
        assert hu.parse_uid(wire) == uid
        assert hu.uid_record_hash(hu.parse_uid(wire)) == record_hash

    @pytest.mark.parametrize("which", ["sig_sigkey", "sig_sigescrow"])
    def test_create_with_one_bad_signature(self, which: str) -> None:
        log, _ = make_log(1)
        uid = Alice().create(log)
        bad = with_sig(uid, **{which: flip(getattr(uid, which), 7)})
        with pytest.raises(SpecError) as exc:
            hu.verify_uid_create(bad, now=NOW)
        assert failure(exc) == "signature"
        assert exc.value.requirement == "HC-16"

    def test_create_without_escrow_signature(self) -> None:
        log, _ = make_log(1)
        with pytest.raises(SpecError) as exc:
            hu.verify_uid_create(with_sig(Alice().create(log), sig_sigescrow=None), now=NOW)
        assert failure(exc) == "signature"

    def test_signature_roles_are_separate(self) -> None:
        alice = Alice()
        log, _ = make_log(1)
        content = alice.content(log, escrow_seed=alice.sigkey_seed)
        uid = hu.sign_uid(content, sigkey_seed=alice.sigkey_seed, sigescrow_seed=alice.sigkey_seed)
        with pytest.raises(SpecError) as exc:
            hu.verify_uid_create(uid, now=NOW)
        assert failure(exc) == "binding"
        # A SIGKEY signature can never pass as the SIGESCROW one.
        swapped = with_sig(Alice().create(log), sig_sigescrow=Alice().create(log).sig_sigkey)
        with pytest.raises(SpecError):
            hu.verify_uid_create(swapped, now=NOW)

    def test_validity(self) -> None:
        log, _ = make_log(1)
        alice = Alice()
        too_long = hu.sign_uid(alice.content(log, not_after=NOW + hu.MAX_UID_VALIDITY),
                               sigkey_seed=alice.sigkey_seed, sigescrow_seed=alice.escrow_seed)
        with pytest.raises(SpecError) as exc:
            hu.verify_uid_create(too_long, now=NOW)
        assert failure(exc) == "params"
        expired = hu.sign_uid(alice.content(log, not_before=NOW - 100, not_after=NOW),
                              sigkey_seed=alice.sigkey_seed, sigescrow_seed=alice.escrow_seed)
        with pytest.raises(SpecError) as exc:
            hu.verify_uid_create(expired, now=NOW)
        assert failure(exc) == "expired"

    def test_update_by_previous_sigkey(self) -> None:
        log, _ = make_log(1)
        alice = Alice()
        first = alice.create(log)
        new_seed = alice.rnd(32)
        update = hu.sign_uid(alice.content(log, msg_count=1, previous=hu.uid_record_hash(first),
                                           sigkey_seed=new_seed),
                             sigkey_seed=new_seed, sigescrow_seed=None,
                             previous_seed=alice.sigkey_seed, previous_role="sigkey")
        hu.verify_uid_update(update, first, now=NOW)
        assert hu.parse_uid(hu.uid_to_wire(update)) == update

    def test_update_failures(self) -> None:
        log, _ = make_log(1)
        alice = Alice()
        first = alice.create(log)
        new_seed, new_escrow = alice.rnd(32), alice.rnd(32)

        def make(*, msg_count: int = 1, previous: bytes | None = hu.uid_record_hash(first),
                 escrow: bytes | None = None, role: str = "sigkey",
                 signer: bytes | None = None, escrow_signs: bool = False) -> hu.Uid:
            content = alice.content(log, msg_count=msg_count, previous=previous,
                                    sigkey_seed=new_seed, escrow_seed=escrow)
            return hu.sign_uid(content, sigkey_seed=new_seed,
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
                hu.verify_uid_update(uid, first, now=NOW)
            assert failure(exc) == expected, expected
        # Changing SIGESCROW: authorised by the old escrow and signed by the new one.
        ok = make(escrow=new_escrow, role="sigescrow", signer=alice.escrow_seed,
                  escrow_signs=True)
        hu.verify_uid_update(ok, first, now=NOW)
        with pytest.raises(SpecError) as exc:
            hu.verify_uid_update(with_sig(ok, sig_sigescrow=None), first, now=NOW)
        assert failure(exc) == "signature"

    def test_parse_rejects_unknown_and_missing_members(self) -> None:
        log, _ = make_log(1)
        wire = hu.uid_to_wire(Alice().create(log))
        with pytest.raises(SpecError) as exc:
            hu.parse_uid({**wire, "extra": 1})
        assert failure(exc) == "decode"
        del wire["sigescrow"]
        with pytest.raises(SpecError) as exc:
            hu.parse_uid(wire)
        assert failure(exc) == "decode"

    def test_parse_rejects_low_order_x25519(self) -> None:
        log, _ = make_log(1)
        wire = hu.uid_to_wire(Alice().create(log))
        wire["public_keys"] = {"x25519": "AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}
        with pytest.raises(SpecError) as exc:
            hu.parse_uid(wire)
        assert failure(exc) == "point"

    def test_last_checkpoint(self) -> None:
        log, _ = make_log(3)
        last = hu.LastCheckpoint(size=2, root=log.tree.root(2))
        hu.check_last_checkpoint(last, root_at=log.tree.root, log_size=log.size)
        for bad in (hu.LastCheckpoint(size=2, root=log.tree.root(3)),
                    hu.LastCheckpoint(size=9, root=log.tree.root(2)),
                    hu.LastCheckpoint(size=0, root=merkle.EMPTY_ROOT)):
            with pytest.raises(SpecError) as exc:
                hu.check_last_checkpoint(bad, root_at=log.tree.root, log_size=log.size)
            assert failure(exc) == "link"
        with pytest.raises(SpecError) as exc:
            hu.check_last_checkpoint(last, root_at=log.tree.root, log_size=log.size,
                                     max_lag=0)
        assert failure(exc) == "expired"

    def test_reply(self) -> None:
        log, rnd = make_log(3)
        uid = Alice().create(log)
        record_hash = hu.uid_record_hash(uid)
        index, built = log.append_record(entry_type=hc.TYPE_UID,
                                         subject=uid.content.identity.encode(),
                                         record_hash=record_hash, nonce=rnd(16))
        reply = hu.make_uid_reply(index=index, entry=built.entry, record_hash=record_hash,
                                  inclusion=log.inclusion_proof(index),
                                  checkpoint=log.signed_checkpoint().to_bytes())
        wire = json.loads(json.dumps(hu.uid_reply_to_wire(uid, reply)))
        assert hu.parse_uid_reply(wire) == reply
        hu.verify_uid_reply(reply, uid, origin=ORIGIN, log_keys=log.verifiers())
        stranger = note.log_verifier(ORIGIN, primitives.ed25519_public_key(rnd(32)))
        with pytest.raises(SpecError) as exc:
            hu.verify_uid_reply(reply, uid, origin=ORIGIN, log_keys=[stranger])
        assert failure(exc) == "signature"
        # An entry about someone else, proven included: the client still refuses it.
        other_index, other = log.append_record(entry_type=hc.TYPE_UID,
                                               subject=b"bob@example.org",
                                               record_hash=record_hash, nonce=rnd(16))
        wrong = hu.make_uid_reply(index=other_index, entry=other.entry,
                                  record_hash=record_hash,
                                  inclusion=log.inclusion_proof(other_index),
                                  checkpoint=log.signed_checkpoint().to_bytes())
        with pytest.raises(SpecError) as exc:
            hu.verify_uid_reply(wrong, uid, origin=ORIGIN, log_keys=log.verifiers())
        assert failure(exc) == "binding"

    def test_server_decisions(self) -> None:
        log, _ = make_log(1)
        uid = Alice().create(log)
        hu.decide_create(None)
        with pytest.raises(SpecError) as exc:
            hu.decide_create(uid)
        assert failure(exc) == "replay" and exc.value.requirement == "HC-20"
        with pytest.raises(hu.UnknownIdentity):
            hu.decide_update(None, uid, now=NOW)
        with pytest.raises(SpecError) as exc:
            hu.check_update_path(uid, "bob@example.org", domains=None)
        assert failure(exc) == "binding"

    def test_sealed_uid(self) -> None:
        log, _ = make_log(1)
        uid = Alice().create(log)
        sealed = hu.seal_uid(uid)
        assert hu.open_sealed_uid(sealed, hu.uid_record_hash(uid)) == uid
        with pytest.raises(SpecError) as exc:
            hu.open_sealed_uid(sealed, bytes(32))
        assert failure(exc) == "aead"
        assert b"alice" not in sealed


# --- step 13: KeyInits ------------------------------------------------------------------------

class TestKeyInit:
    def make(self, alice: Alice, **kw: int) -> hu.KeyInit:
        ki, _ = hu.make_keyinit(identity=alice.identity, sigkey_seed=alice.sigkey_seed,
                                not_before=kw.get("not_before", NOW - 10),
                                not_after=kw.get("not_after", NOW + 86400), random=alice.rnd)
        return ki

    def test_round_trip_and_verify(self) -> None:
        alice = Alice()
        ki = self.make(alice)
        assert hu.parse_keyinit(hu.keyinit_to_wire(ki)) == ki
        sigkey = primitives.ed25519_public_key(alice.sigkey_seed)
        hu.verify_keyinit(ki, identity=alice.identity, current_sigkey=sigkey, now=NOW)

    def test_failures(self) -> None:
        alice = Alice()
        sigkey = primitives.ed25519_public_key(alice.sigkey_seed)
        ki = self.make(alice)
        with pytest.raises(SpecError) as exc:
            hu.verify_keyinit(ki, identity=alice.identity,
                              current_sigkey=primitives.ed25519_public_key(alice.escrow_seed),
                              now=NOW)
        assert failure(exc) == "authz"
        forged = hu.KeyInit(**{**vars(ki), "x25519": primitives.x25519_public_key(bytes(32))})
        with pytest.raises(SpecError) as exc:
            hu.verify_keyinit(forged, identity=alice.identity, current_sigkey=sigkey, now=NOW)
        assert failure(exc) == "signature"
        with pytest.raises(SpecError) as exc:
            hu.verify_keyinit(self.make(alice, not_after=NOW + hu.MAX_KEYINIT_LIFETIME),
                              identity=alice.identity, current_sigkey=sigkey, now=NOW)
        assert failure(exc) == "params"
        with pytest.raises(SpecError) as exc:
            hu.verify_keyinit(ki, identity=alice.identity, current_sigkey=sigkey,
                              now=ki.not_after)
        assert failure(exc) == "expired"
        with pytest.raises(SpecError) as exc:
            hu.verify_keyinit(ki, identity="bob@example.org", current_sigkey=sigkey, now=NOW)
        assert failure(exc) == "binding"

    def test_decide_keyinits(self) -> None:
        alice = Alice()
        sigkey = primitives.ed25519_public_key(alice.sigkey_seed)
        kis = [self.make(alice) for _ in range(2)]
        hu.decide_keyinits(kis, identity=alice.identity, current_sigkey=sigkey, now=NOW,
                           known=lambda key_id: False)
        batches: list[tuple[list[hu.KeyInit], set[bytes]]] = [([kis[0], kis[0]], set()),
                                                             (kis, {kis[1].key_id})]
        for batch, known in batches:
            with pytest.raises(SpecError) as exc:
                hu.decide_keyinits(batch, identity=alice.identity, current_sigkey=sigkey,
                                   now=NOW, known=known.__contains__)
            assert failure(exc) == "replay"

    def test_pool_serves_each_once(self) -> None:
        alice = Alice()
        pool = hu.KeyInitPool()
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
        pool = hu.KeyInitPool()
        future = self.make(alice, not_before=NOW + 100, not_after=NOW + 200)
        old = self.make(alice, not_before=NOW - 200, not_after=NOW - 100)
        pool.add(future)
        pool.add(old)
        assert pool.take(alice.identity, now=NOW) is None
        assert pool.take(alice.identity, now=NOW + 150) == future

    def test_flush(self) -> None:
        alice = Alice()
        sigkey = primitives.ed25519_public_key(alice.sigkey_seed)
        req = hu.make_flush_request(origin=ORIGIN, identity=alice.identity,
                                    sigkey_seed=alice.sigkey_seed, timestamp=NOW,
                                    nonce=alice.rnd(16))
        assert hu.parse_flush(hu.flush_to_wire(req)) == req
        hu.verify_flush(req, origin=ORIGIN, identity=alice.identity, current_sigkey=sigkey,
                        now=NOW + hu.FLUSH_WINDOW, nonce_seen=False)
        cases: list[tuple[str, dict[str, object]]] = [
            ("expired", {"now": NOW + hu.FLUSH_WINDOW + 1}),
            ("replay", {"nonce_seen": True}),
            ("signature", {"origin": "other.example"}),
            ("signature", {"current_sigkey": primitives.ed25519_public_key(alice.escrow_seed)}),
            ("binding", {"identity": "bob@example.org"}),
        ]
        for expected, change in cases:
            kw: dict[str, object] = {"origin": ORIGIN, "identity": alice.identity,
                                     "current_sigkey": sigkey, "now": NOW, "nonce_seen": False}
            kw.update(change)
            with pytest.raises(SpecError) as exc:
                hu.verify_flush(req, **kw)  # type: ignore[arg-type]
            assert failure(exc) == expected, change


# --- step 13: publications --------------------------------------------------------------------

def test_publication_subject_and_hash() -> None:
    assert hu.publication_subject("alice", "app.one") == b"alice/app.one"
    h1 = hu.publication_record_hash("alice", "app", 1, bytes(32), bytes(32), bytes(64))
    h2 = hu.publication_record_hash("alice", "app", 2, bytes(32), bytes(32), bytes(64))
    assert h1 != h2 and len(h1) == 32
    with pytest.raises(SpecError):
        hu.publication_subject("alice/x", "app")


# --- requirement IDs and labels ---------------------------------------------------------------

def test_every_cited_requirement_exists() -> None:
    known = registry()
    for name in ("hashchain.py", "hashchain_mute.py", "hashchain_merkle.py", "hashchain_note.py",
                 "hashchain_witness.py", "hashchain_tiles.py", "hashchain_client.py",
                 "hashchain_uid.py", "hashchain_directory.py", "hashchain_directory_map.py",
                 "hashchain_directory_client.py", "hashchain_directory_model.py"):
        cited = set(re.findall(r"HC-\d+", (SPEC_DIR / name).read_text()))
        assert cited <= set(known), cited - set(known)
    hc_ids = {k for k, v in known.items() if v.flow == "hashchain"}
    # HC-35 (strict Ed25519) belongs to the common flow; HC-80.. are the key directory's.
    assert hc_ids == {f"HC-{i}" for i in (*range(1, 35), *range(36, 51), *range(80, 100))}


def test_every_label_is_registered() -> None:
    text = "".join((SPEC_DIR / name).read_text() for name in ("hashchain.py",
                                                              "hashchain_uid.py"))
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
