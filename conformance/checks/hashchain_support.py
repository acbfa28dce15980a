"""What the hashchain checks share: the target's parameters, a client that follows its
log (keyflows.spec.hashchain_client over HTTP: checkpoint, consistency proof, entry
bundles), and the runner as a user making UIDs with keyflows.spec.hashchain_uid.

Every answer of the server is judged by the spec's client side; a rejection fails the
check with the exchange that carried it.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from typing import Any

from keyflows.conformance.http import Exchange
from keyflows.conformance.probe import CheckSkipped, Probe, describe
from keyflows.conformance.witness import runner_witness_verifier
from keyflows.spec import hashchain as hc
from keyflows.spec import hashchain_client as hcc
from keyflows.spec import hashchain_note as note
from keyflows.spec import hashchain_tiles as tiles
from keyflows.spec import hashchain_uid as hu
from keyflows.spec import primitives
from keyflows.spec.encoding import b64url_decode, b64url_encode
from keyflows.spec.errors import SpecError
from keyflows.spec.hashchain_mute import map_localpart

FLOW = "hashchain"
NEEDS = (FLOW,)
PREFIX = "/v1/hashchain"
CHECKPOINT = f"{PREFIX}/checkpoint"
UIDS = f"{PREFIX}/uids"
CONCURRENT_WRITERS = 16
MIN_LOG = 8
WITNESS_MAX_AGE = 600
FIRST_STATE = "hashchain.first-state"
UID_RATE_WAIT_S = 10  # the longest a check waits out the uid-create bucket in all


def identity_path(identity: str, suffix: str = "") -> str:
    return f"{PREFIX}/identities/{identity}{suffix}"


def tile_path(tile: tiles.Tile) -> str:
    return f"{PREFIX}/{tile.path()}"


# --- what the runner knows about the target ------------------------------------------------

@dataclass(frozen=True)
class Params:
    origin: str
    domains: tuple[str, ...]
    log_key: bytes
    witnesses: tuple[str, ...]  # vkeys the target says it submits to

    @property
    def verifier(self) -> note.Verifier:
        return note.log_verifier(self.origin, self.log_key)

    @property
    def runner_witnessed(self) -> bool:
        return runner_witness_verifier().vkey in self.witnesses


def params(t: Probe) -> Params:
    """capabilities.hashchain, read strictly; the runner's witness learns the log key."""
    member = (t.session.capabilities or {}).get(FLOW)
    if not isinstance(member, dict):
        raise CheckSkipped("the capabilities have no hashchain member")
    try:
        domains = tuple(str(d) for d in member["domains"])
        key = note.parse_vkey(str(member["log_keys"][0]))
        witnesses = tuple(str(w["vkey"]) for w in member["witnesses"])
        p = Params(origin=str(member["origin"]), domains=domains, log_key=key.public_key,
                   witnesses=witnesses)
        if key.name != p.origin or key.sig_type != note.SIG_ED25519:
            raise ValueError("log_keys[0] is not an Ed25519 vkey named after the origin")
    except (KeyError, IndexError, TypeError, ValueError, SpecError) as exc:
        t.fail(f"capabilities.hashchain is malformed: {exc}",
               expected="origin, domains, log_keys [vkey], witnesses [{vkey, url}]",
               actual=repr(member)[:300])
    t.session.accounts.witness.trust(p.verifier)
    return p


def expect_spec(t: Probe, what: str, exchange: Exchange | None, action: Any) -> Any:
    """Run a client-side spec check; a rejection is a failed check with the exchange."""
    try:
        return action()
    except hcc.ForkDetected as exc:
        t.fail(f"{what}: the log forked ({exc}); fork proof: {exc.proof.to_wire()}",
               expected="one history", actual=str(exc), exchange=exchange)
    except SpecError as exc:
        t.fail(f"{what}: {exc} (failure class {exc.failure_class})",
               expected="a value the client-side verification accepts",
               actual=describe(exchange) if exchange else str(exc), exchange=exchange)


def get_json(t: Probe, path: str, *, what: str, status: int = 200,
             headers: dict[str, str] | None = None) -> tuple[Exchange, Any]:
    exchange = t.request("GET", path, headers=headers)
    return exchange, t.expect_ok_json(exchange, status, what=what)


def get_bytes(t: Probe, path: str, *, what: str, media_type: str,
              headers: dict[str, str] | None = None) -> Exchange:
    exchange = t.request("GET", path, headers=headers)
    t.expect_status(exchange, 200, what=what)
    if exchange.media_type != media_type.split(";")[0]:
        t.fail(f"{what}: content-type {exchange.media_type or '(none)'}",
               expected=media_type, actual=describe(exchange), exchange=exchange)
    return exchange


# --- a client that follows the log -----------------------------------------------------------

class Client:
    """A follower of the target's log: the spec's LogFollower fed over HTTP.

    `entries` keeps every entry seen (the checks compare them); the follower itself keeps
    only its checkpoint and compact range. `headers` make it a distinct client (for the
    split-view check)."""

    def __init__(self, t: Probe, p: Params, *, state: hcc.FollowerState | None = None,
                 headers: dict[str, str] | None = None,
                 policy: note.WitnessPolicy | None = None) -> None:
        self.t, self.p, self.headers = t, p, headers
        self.follower = hcc.LogFollower(origin=p.origin, log_keys=[p.log_key], policy=policy,
                                        state=state)
        self.entries: list[bytes] = []
        self.note = b""
        self.exchange: Exchange | None = None

    def fetch_checkpoint(self) -> tuple[bytes, Exchange]:
        exchange = get_bytes(self.t, CHECKPOINT, what="GET the checkpoint",
                             media_type=tiles.CHECKPOINT_MEDIA_TYPE, headers=self.headers)
        return exchange.response_body, exchange

    def sync(self) -> note.Checkpoint:
        """Verify the current checkpoint, a consistency proof from the trusted one, and
        the new entries (HC-9, HC-12); the follower's state advances only if all hold."""
        t = self.t
        data, exchange = self.fetch_checkpoint()
        self.note, self.exchange = data, exchange
        checkpoint: note.Checkpoint = expect_spec(
            t, "the checkpoint does not verify", exchange,
            lambda: self.follower.check_checkpoint(data, now=int(time.time())))
        needed = self.follower.consistency_needed()
        if needed is not None:
            size1, size2 = needed
            proof_exchange, body = get_json(
                t, f"{PREFIX}/proof/consistency?size1={size1}&size2={size2}",
                what="GET a consistency proof", headers=self.headers)
            wire = expect_spec(t, "the consistency proof does not decode", proof_exchange,
                               lambda: tiles.parse_consistency(body))
            expect_spec(t, f"the checkpoint at {size2} is not consistent with the one the "
                        f"runner verified at {size1}", proof_exchange,
                        lambda: self.follower.check_consistency(
                            size1=wire.size1, size2=wire.size2, root1=wire.root1,
                            proof=wire.proof))
        start = self.follower.next_index()
        new = self.fetch_entries(start, checkpoint.size)
        expect_spec(t, f"the entries {start}..{checkpoint.size - 1} do not verify", None,
                    lambda: self.follower.feed(new))
        expect_spec(t, f"the entries up to {checkpoint.size} do not hash to the "
                    "checkpoint's root", exchange, self.follower.finish)
        self.entries.extend(new)
        return checkpoint

    def fetch_entries(self, start: int, end: int) -> list[bytes]:
        """Entries start..end-1 from the entry bundles (full or partial, HC-44)."""
        out: list[bytes] = []
        for n in range(start // tiles.TILE_WIDTH, math.ceil(end / tiles.TILE_WIDTH)):
            width = min(tiles.TILE_WIDTH, end - n * tiles.TILE_WIDTH)
            bundle = tiles.Tile(None, n, width)
            exchange = get_bytes(self.t, tile_path(bundle), what=f"GET {bundle.path()}",
                                 media_type=tiles.TILE_MEDIA_TYPE, headers=self.headers)
            entries = expect_spec(self.t, f"{bundle.path()} is not a bundle of {width} "
                                  "entries", exchange,
                                  lambda b=exchange.response_body, w=width:
                                  tiles.parse_entry_bundle(b, count=w, entry_len=hc.ENTRY_LEN))
            first = n * tiles.TILE_WIDTH
            out.extend(entries[max(0, start - first):])
        return out

    @property
    def state(self) -> hcc.FollowerState:
        assert self.follower.state is not None
        return self.follower.state


def synced(t: Probe, **kw: Any) -> tuple[Params, Client, note.Checkpoint]:
    """A client that verified the whole log from entry 0; the first such state of the run
    is kept, so a later check can hold the target to it."""
    p = params(t)
    client = Client(t, p, **kw)
    checkpoint = client.sync()
    t.session.cache.setdefault(FIRST_STATE, client.state)
    return p, client, checkpoint


def synced_with_entries(t: Probe) -> tuple[Params, Client, note.Checkpoint]:
    """synced(), after adding UIDs to a log shorter than MIN_LOG entries."""
    p, client, checkpoint = synced(t)
    if checkpoint.size >= MIN_LOG:
        return p, client, checkpoint
    for i in range(MIN_LOG - checkpoint.size):
        create(t, f"fill{i}")
    return synced(t)


# --- the runner as a user --------------------------------------------------------------------

@dataclass
class Person:
    identity: str
    sigkey_seed: bytes
    escrow_seed: bytes
    x25519_private: bytes

    @property
    def sigkey(self) -> bytes:
        return primitives.ed25519_public_key(self.sigkey_seed)


def person(t: Probe, p: Params, label: str) -> Person:
    """A fresh identity in mapped form on the target's first domain."""
    local = map_localpart(t.session.new_user_id(f"hc-{label}").lower().replace("_", "-"))
    return Person(identity=f"{local}@{p.domains[0]}", sigkey_seed=os.urandom(32),
                  escrow_seed=os.urandom(32), x25519_private=os.urandom(32))


def uid_content(who: Person, checkpoint: note.Checkpoint, **changes: Any) -> hu.UidContent:
    now = int(time.time())
    fields: dict[str, Any] = {
        "identity": who.identity, "msg_count": 0, "not_before": now - 300,
        "not_after": now + 30 * 86400, "sigkey": who.sigkey,
        "sigescrow": primitives.ed25519_public_key(who.escrow_seed),
        "x25519": primitives.x25519_public_key(who.x25519_private),
        "last_checkpoint": hu.LastCheckpoint(size=checkpoint.size, root=checkpoint.root_hash),
        "previous": None}
    fields.update(changes)
    return hu.UidContent(**fields)


def make_uid(who: Person, checkpoint: note.Checkpoint, **changes: Any) -> hu.Uid:
    return hu.sign_uid(uid_content(who, checkpoint, **changes), sigkey_seed=who.sigkey_seed,
                       sigescrow_seed=who.escrow_seed)


def post_uid(t: Probe, uid: hu.Uid | dict[str, Any], *, patient: bool = True) -> Exchange:
    """POST a UID. Every POST counts in the server's uid-create bucket (API-52), refused
    ones too, and this flow's checks post many within a minute: a patient post waits out a
    short Retry-After and sends again (at most UID_RATE_WAIT_S in all), so a check judges
    the UID, not the rate limit; hashchain/limits/uid-rate posts impatiently."""
    wire = hu.uid_to_wire(uid) if isinstance(uid, hu.Uid) else uid
    waited = 0
    while True:
        exchange = t.request("POST", UIDS, json_body=wire)
        after = exchange.header("retry-after") or ""
        if (not patient or exchange.status != 429 or not after.isdigit()
                or waited + int(after) > UID_RATE_WAIT_S):
            return exchange
        time.sleep(int(after))
        waited += int(after)


def checked_reply(t: Probe, p: Params, exchange: Exchange, uid: hu.Uid, status: int, *,
                  policy: note.WitnessPolicy | None = None) -> hu.UidReply:
    """HC-21: the reply is for this UID and carries a tlog-proof of its entry in a
    checkpoint the log signed (and, with a policy, its witnesses cosigned)."""
    body = t.expect_ok_json(exchange, status, what="the UID reply")
    if body["uid"] != hu.uid_to_wire(uid):
        t.fail("the reply echoes another UID than the one sent", expected="the UID sent",
               actual=describe(exchange), exchange=exchange)
    reply: hu.UidReply = expect_spec(t, "the UID reply does not decode", exchange,
                                     lambda: hu.parse_uid_reply(body))
    expect_spec(t, "the UID reply does not verify (record hash, checkpoint, inclusion, "
                "entry naming this identity and UID)", exchange,
                lambda: hu.verify_uid_reply(reply, uid, origin=p.origin,
                                            log_keys=[p.verifier], policy=policy,
                                            now=int(time.time())))
    return reply


def create(t: Probe, label: str, *, policy: note.WitnessPolicy | None = None
           ) -> tuple[Params, Client, Person, hu.Uid, hu.UidReply]:
    p, client, checkpoint = synced(t)
    who = person(t, p, label)
    uid = make_uid(who, checkpoint)
    reply = checked_reply(t, p, post_uid(t, uid), uid, 201, policy=policy)
    return p, client, who, uid, reply


def expect_unchanged(t: Probe, client: Client, before: note.Checkpoint, *, what: str) -> None:
    checkpoint = client.sync()
    if checkpoint.size != before.size:
        t.fail(f"{what}: the log grew from {before.size} to {checkpoint.size} although the "
               "request was refused", expected=f"size still {before.size}",
               actual=f"size {checkpoint.size}", exchange=client.exchange)


def refused_uid(t: Probe, uid: hu.Uid | dict[str, Any], status: int, failure_class: str,
                *, what: str) -> None:
    _p, client, checkpoint = synced(t)
    t.expect_rejected(post_uid(t, uid), status, what=what, failure_class=failure_class)
    expect_unchanged(t, client, checkpoint, what=what)


def history_of(t: Probe, client: Client, identity: str) -> hcc.IdentityHistory:
    """HC-13, HC-48: the identity's history from the followed log and the repository."""
    history = hcc.IdentityHistory(identity)
    for index, data in enumerate(client.entries):
        found = expect_spec(t, f"entry {index} does not open", None,
                            lambda d=data: history.match(d))
        if found is None:
            continue
        record_index, record_hash = found
        exchange, body = get_json(t, f"{UIDS}/{b64url_encode(record_index)}",
                                  what=f"GET the sealed UID of entry {index}")
        uid = expect_spec(t, f"the sealed UID of entry {index} does not open", exchange,
                          lambda b=body, h=record_hash: hu.open_sealed_uid(
                              b64url_decode(b["sealed_uid"]), h))
        expect_spec(t, f"the identity's history breaks at entry {index}", exchange,
                    lambda i=index, h=record_hash, u=uid: history.add(i, h, u))
    return history


def witness_policy(p: Params) -> note.WitnessPolicy:
    """The runner's policy when the target submits to it: its cosignature, recent."""
    return note.WitnessPolicy((runner_witness_verifier(),), quorum=1, max_age=WITNESS_MAX_AGE)


def flip(data: bytes, index: int = 0) -> bytes:
    out = bytearray(data)
    out[index] ^= 0x01
    return bytes(out)
