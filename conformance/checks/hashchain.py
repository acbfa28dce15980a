"""hashchain checks: the chain verifies from entry 0 and from a trusted head, every chunk
agrees with the others and with the signed heads, the chain grows by exactly one entry per
UID and per keypair publication, identities are found, UIDs with one bad signature are
refused, KeyInits are served once (also to concurrent fetchers), and concurrent writers
never fork or skip a position.

The runner plays the clients: it makes SIGKEY/SIGESCROW keys, UIDs, KeyInits and flush
requests with keyflows.spec.hashchain, and verifies everything the server answers with the
same module's ChainVerifier, tracking the keyserver key from entry 0.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from keyflows.conformance.checks.support import advertised_capacity
from keyflows.conformance.http import Exchange
from keyflows.conformance.probe import CheckSkipped, Probe, describe
from keyflows.conformance.registry import check
from keyflows.spec import hashchain_v1chain as hc
from keyflows.spec import primitives
from keyflows.spec.encoding import b64url_decode, b64url_encode
from keyflows.spec.errors import SpecError
from keyflows.spec.hashchain_mute import map_localpart

FLOW = "hashchain"
NEEDS = (FLOW,)
HEAD = "/v1/hashchain/head"
UIDS = "/v1/hashchain/uids"
CONCURRENT_WRITERS = 16
CHUNK_WINDOW = 24
MIN_CHAIN = 8


def identity_path(identity: str, suffix: str = "") -> str:
    return f"/v1/hashchain/identities/{identity}{suffix}"


# --- what the runner knows about the target ------------------------------------------------

@dataclass(frozen=True)
class Params:
    origin: str
    domains: tuple[str, ...]
    signing_key: bytes
    max_chunk: int


def params(t: Probe) -> Params:
    member = (t.session.capabilities or {}).get(FLOW)
    if not isinstance(member, dict):
        raise CheckSkipped("the capabilities have no hashchain member")
    try:
        domains = tuple(str(d) for d in member["domains"])
        return Params(origin=str(member["origin"]), domains=domains,
                      signing_key=b64url_decode(member["signing_keys"][0]),
                      max_chunk=int(member["max_chunk"]))
    except (KeyError, IndexError, TypeError, ValueError, SpecError) as exc:
        t.fail(f"capabilities.hashchain is malformed: {exc}",
               expected="origin, domains, signing_keys, max_chunk", actual=repr(member)[:300])


def expect_spec(t: Probe, what: str, exchange: Exchange | None, action: Any) -> Any:
    """Run a client-side spec check; a rejection is a failed check with the exchange."""
    try:
        return action()
    except SpecError as exc:
        t.fail(f"{what}: {exc} (failure class {exc.failure_class})",
               expected="a value the client-side verification accepts",
               actual=describe(exchange) if exchange else str(exc), exchange=exchange)


def get_json(t: Probe, path: str, *, what: str, status: int = 200) -> tuple[Exchange, Any]:
    exchange = t.request("GET", path)
    return exchange, t.expect_ok_json(exchange, status, what=what)


def fetch_head(t: Probe, p: Params) -> tuple[hc.SignedHead, bytes, Exchange]:
    exchange, body = get_json(t, HEAD, what="GET /v1/hashchain/head")
    head = expect_spec(t, "the head does not parse", exchange, lambda: hc.parse_head(body["head"]))
    entry = expect_spec(t, "the head's entry does not decode", exchange,
                        lambda: hc.decode_entry_b64(body["entry"]))
    return head, entry, exchange


def fetch_chunk(t: Probe, start: int, end: int | None = None
                ) -> tuple[list[bytes], hc.SignedHead, Exchange]:
    query = f"start={start}" + (f"&end={end}" if end is not None else "")
    exchange, body = get_json(t, f"/v1/hashchain/entries?{query}",
                              what=f"GET entries {query}")
    if not isinstance(body, dict) or body.get("start") != start:
        t.fail(f"the chunk for {query} does not start at {start}", expected=f"start {start}",
               actual=describe(exchange), exchange=exchange)

    def decode() -> tuple[list[bytes], hc.SignedHead]:
        return ([hc.decode_entry_b64(e) for e in body["entries"]], hc.parse_head(body["head"]))

    entries, head = expect_spec(t, f"the chunk for {query} does not decode", exchange, decode)
    return entries, head, exchange


class Sync:
    """A client's view: the verified chain up to a head, in constant memory, plus the
    hash of every position it passed (kept here only so checks can compare chunks)."""

    def __init__(self, t: Probe, p: Params) -> None:
        self.t, self.p = t, p
        self.verifier = hc.ChainVerifier(origin=p.origin)
        self.hashes: list[bytes] = []
        self.entries: list[bytes] = []

    def run(self, chunk: int | None = None) -> hc.SignedHead:
        """Fetch and verify everything up to the current head; return that head."""
        t, p = self.t, self.p
        head, _, head_exchange = fetch_head(t, p)
        size = min(chunk or p.max_chunk, p.max_chunk)
        while self.verifier.position < head.position:
            start = self.verifier.position + 1
            entries, chunk_head, exchange = fetch_chunk(t, start, min(start + size - 1,
                                                                      head.position))
            if not entries:
                t.fail(f"an empty chunk at {start} below the head at {head.position}",
                       expected="at least one entry", actual=describe(exchange),
                       exchange=exchange)
            for data in entries:
                expect_spec(t, f"entry {self.verifier.next_position} does not verify",
                            exchange, lambda d=data: self.verifier.feed(d))
                self.hashes.append(self.verifier.last_hash)
                self.entries.append(data)
            self._check_chunk_head(chunk_head, exchange)
        if self.verifier.position > head.position:
            t.fail("the chunks go past the head the server signed", expected="no more "
                   f"than {head.position}", actual=str(self.verifier.position),
                   exchange=head_exchange)
        expect_spec(t, "the signed head does not match the verified chain", head_exchange,
                    lambda: self.verifier.check_head(head, now=int(time.time())))
        return head

    def _check_chunk_head(self, head: hc.SignedHead, exchange: Exchange) -> None:
        """Each chunk's head is validly signed and, where the client has verified its
        position already, agrees with the chain (HC-10, HC-23)."""
        t = self.t
        key = self.verifier.server_key
        if key is None:
            return
        expect_spec(t, "a chunk's head is not validly signed", exchange,
                    lambda: hc.verify_head_signature(head, origin=self.p.origin, key=key))
        if head.position < self.verifier.position:
            t.fail(f"a chunk's head is at {head.position}, before the chunk's end",
                   expected=f"a head at or after {self.verifier.position}",
                   actual=describe(exchange), exchange=exchange)
        if head.position == self.verifier.position and head.hash != self.verifier.last_hash:
            t.fail(f"a chunk's signed head disagrees with its entries at {head.position} "
                   "(a fork)", expected=self.verifier.last_hash.hex(), actual=head.hash.hex(),
                   exchange=exchange)


def synced(t: Probe) -> tuple[Params, Sync, hc.SignedHead]:
    p = params(t)
    sync = Sync(t, p)
    head = sync.run()
    if sync.verifier.server_key != p.signing_key:
        t.fail("the key tracked through the chain is not the advertised signing key",
               expected=p.signing_key.hex(), actual=(sync.verifier.server_key or b"").hex())
    return p, sync, head


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


def uid_content(who: Person, head: hc.SignedHead, **changes: Any) -> hc.UidContent:
    now = int(time.time())
    fields: dict[str, Any] = {
        "identity": who.identity, "msg_count": 0, "not_before": now - 300,
        "not_after": now + 30 * 86400, "sigkey": who.sigkey,
        "sigescrow": primitives.ed25519_public_key(who.escrow_seed),
        "x25519": primitives.x25519_public_key(who.x25519_private),
        "last_entry": hc.LastEntry(position=head.position, hash=head.hash), "previous": None}
    fields.update(changes)
    return hc.UidContent(**fields)


def make_uid(who: Person, head: hc.SignedHead, **changes: Any) -> hc.Uid:
    return hc.sign_uid(uid_content(who, head, **changes), sigkey_seed=who.sigkey_seed,
                       sigescrow_seed=who.escrow_seed)


def post_uid(t: Probe, uid: hc.Uid | dict[str, Any]) -> Exchange:
    wire = hc.uid_to_wire(uid) if isinstance(uid, hc.Uid) else uid
    return t.request("POST", UIDS, json_body=wire)


def checked_reply(t: Probe, p: Params, exchange: Exchange, uid: hc.Uid, status: int,
                  key: bytes) -> hc.UidReply:
    body = t.expect_ok_json(exchange, status, what="the UID reply")

    def parse() -> hc.UidReply:
        return hc.UidReply(position=body["position"],
                           entry=hc.decode_entry_b64(body["entry"]),
                           record_hash=b64url_decode(body["record_hash"]),
                           signature=b64url_decode(body["signature"]))

    reply: hc.UidReply = expect_spec(t, "the UID reply does not decode", exchange, parse)
    expect_spec(t, "the UID reply does not verify (signature by the tracked key, entry "
                "naming this identity and UID)", exchange,
                lambda: hc.verify_uid_reply(reply, uid, origin=p.origin, server_key=key))
    return reply


def create(t: Probe, label: str) -> tuple[Params, Sync, Person, hc.Uid, hc.UidReply]:
    p, sync, head = synced(t)
    who = person(t, p, label)
    uid = make_uid(who, head)
    assert sync.verifier.server_key is not None
    reply = checked_reply(t, p, post_uid(t, uid), uid, 201, sync.verifier.server_key)
    return p, sync, who, uid, reply


def expect_unchanged(t: Probe, sync: Sync, before: hc.SignedHead, *, what: str) -> None:
    head, _, exchange = fetch_head(t, sync.p)
    if head.position != before.position:
        t.fail(f"{what}: the chain grew from {before.position} to {head.position} although "
               "the request was refused", expected=f"head still at {before.position}",
               actual=describe(exchange), exchange=exchange)


def refused_uid(t: Probe, uid: hc.Uid | dict[str, Any], status: int, failure_class: str,
                *, what: str) -> None:
    _p, sync, head = synced(t)
    t.expect_rejected(post_uid(t, uid), status, what=what, failure_class=failure_class)
    expect_unchanged(t, sync, head, what=what)


def synced_with_entries(t: Probe) -> tuple[Params, Sync, hc.SignedHead]:
    """synced(), after adding UIDs to a chain shorter than MIN_CHAIN entries."""
    p, sync, head = synced(t)
    if head.position >= MIN_CHAIN:
        return p, sync, head
    for i in range(MIN_CHAIN - head.position):
        create(t, f"fill{i}")
    return synced(t)


# --- capabilities and the chain --------------------------------------------------------------

@check("hashchain/capabilities/advertised", requirements=("HC-8", "HC-14", "HC-23"),
       needs=NEEDS)
def capabilities_advertised(t: Probe) -> None:
    """The capabilities carry the origin, served domains, signing key and max_chunk."""
    p = params(t)
    if not p.domains or p.max_chunk < 1 or len(p.signing_key) != 32:
        t.fail("capabilities.hashchain has no domain, a max_chunk below 1 or a signing key "
               "that is not 32 bytes", expected="domains, max_chunk >= 1, a 32-byte key",
               actual=repr(p))
    expect_spec(t, "capabilities.hashchain.origin", None, lambda: hc.check_origin(p.origin))
    for domain in p.domains:
        expect_spec(t, "a served domain is not a lowercase DNS name", None,
                    lambda d=domain: hc.check_identity(f"abc@{d}"))


@check("hashchain/chain/entry-0-introduces-key", requirements=("HC-6", "HC-7"), needs=NEEDS)
def entry_zero(t: Probe) -> None:
    """Entry 0 is a keyserver-key entry signed by the key it introduces; the key tracked
    through the chain is the advertised signing key."""
    p = params(t)
    entries, _, exchange = fetch_chunk(t, 0, 0)
    if len(entries) != 1:
        t.fail("GET entries start=0 end=0 does not answer exactly one entry",
               expected="1 entry", actual=describe(exchange), exchange=exchange)
    entry = expect_spec(t, "entry 0 does not decode", exchange,
                        lambda: hc.decode_entry(entries[0]))
    if entry.type != hc.TYPE_SERVER_KEY:
        t.fail(f"entry 0 has type 0x{entry.type:02x}", expected="a keyserver-key entry (0x03)",
               actual=describe(exchange), exchange=exchange)
    expect_spec(t, "entry 0 is not signed by the key it introduces", exchange,
                lambda: hc.verify_server_key_entry(entry, origin=p.origin, position=0,
                                                   key_in_force=None, pinned_key=None))
    synced(t)


@check("hashchain/chain/verifies-from-zero", requirements=("HC-1", "HC-5", "HC-9", "HC-12"),
       needs=NEEDS)
def verifies_from_zero(t: Probe) -> None:
    """The whole chain (of at least MIN_CHAIN entries: the check adds UIDs to a shorter
    one), fetched in chunks of max_chunk, verifies link by link from entry 0 and ends
    exactly at the signed head."""
    synced_with_entries(t)


@check("hashchain/chain/head-signed", requirements=("HC-8", "HC-11"), needs=NEEDS)
def head_signed(t: Probe) -> None:
    """GET /v1/hashchain/head: a fresh head for this origin, signed by the tracked key,
    whose entry is the chain's last."""
    p, sync, _ = synced(t)
    head, entry, exchange = fetch_head(t, p)
    key = sync.verifier.key_at(min(head.position, sync.verifier.position))
    expect_spec(t, "the head is not signed by the tracked key for this origin", exchange,
                lambda: hc.verify_head_signature(head, origin=p.origin, key=key))
    expect_spec(t, "the head is not fresh", exchange,
                lambda: hc.check_head_freshness(head, now=int(time.time())))
    if hc.entry_hash(entry) != head.hash:
        t.fail("the head's entry does not hash to the head's hash", expected=head.hash.hex(),
               actual=hc.entry_hash(entry).hex(), exchange=exchange)


@check("hashchain/chain/chunks-agree", requirements=("HC-10", "HC-23"), needs=NEEDS)
def chunks_agree(t: Probe) -> None:
    """Chunks of 1, 2 and 3 entries, and overlapping ranges, serve the same bytes for every
    position as chunks of max_chunk, and every chunk's head is signed and agrees with the
    chain (the first CHUNK_WINDOW positions are compared)."""
    p, reference, head = synced_with_entries(t)
    last = min(head.position, CHUNK_WINDOW - 1)
    key = reference.verifier.server_key
    assert key is not None
    for size, step in ((1, 1), (2, 2), (3, 3), (3, 2)):
        for start in range(0, last + 1, step):
            entries, chunk_head, exchange = fetch_chunk(t, start, min(start + size - 1, last))
            for offset, data in enumerate(entries):
                position = start + offset
                if data != reference.entries[position]:
                    t.fail(f"entry {position} differs between a chunk of {size} and one of "
                           f"{p.max_chunk}", expected=reference.entries[position].hex(),
                           actual=data.hex(), exchange=exchange)
            expect_spec(t, "a chunk's head is not validly signed", exchange,
                        lambda h=chunk_head: hc.verify_head_signature(h, origin=p.origin,
                                                                      key=key))
            at = chunk_head.position
            if at < start + len(entries) - 1:
                t.fail("a chunk's head is before the chunk's end",
                       expected=f"a head at or after {start + len(entries) - 1}",
                       actual=describe(exchange), exchange=exchange)
            if at < len(reference.hashes) and chunk_head.hash != reference.hashes[at]:
                t.fail(f"a chunk's signed head disagrees with the chain at {at} (a fork)",
                       expected=reference.hashes[at].hex(), actual=chunk_head.hash.hex(),
                       exchange=exchange)


@check("hashchain/chain/chunk-limit", requirements=("HC-23",), needs=NEEDS)
def chunk_limit(t: Probe) -> None:
    """A range wider than max_chunk is answered with at most max_chunk entries, and an
    end past the head stops at the head."""
    p, _, head = synced(t)
    entries, _, exchange = fetch_chunk(t, 0, head.position + 10 * p.max_chunk)
    if len(entries) > p.max_chunk:
        t.fail(f"{len(entries)} entries in one chunk", expected=f"at most {p.max_chunk}",
               actual=describe(exchange), exchange=exchange)
    if len(entries) != min(p.max_chunk, head.position + 1):
        t.fail("the chunk is not clamped to the head and to max_chunk",
               expected=f"{min(p.max_chunk, head.position + 1)} entries",
               actual=f"{len(entries)} entries", exchange=exchange)


@check("hashchain/chain/bad-range-refused", requirements=("HC-23", "API-6"), needs=NEEDS)
def bad_range(t: Probe) -> None:
    """A start past the head is 404; a non-numeric, negative or reversed range is 400."""
    _, _, head = synced(t)
    t.expect_rejected(t.request("GET", f"/v1/hashchain/entries?start={head.position + 1000}"),
                      404, what="start past the head")
    for query in ("start=abc", "start=-1", "start=2&end=1", "start=1e3", "end=3"):
        t.expect_rejected(t.request("GET", f"/v1/hashchain/entries?{query}"), 400,
                          what=f"GET entries?{query}")


@check("hashchain/chain/extension-from-trusted-head", requirements=("HC-11", "HC-12"),
       needs=NEEDS)
def extension(t: Probe) -> None:
    """A client that trusts an earlier head verifies only the entries after it, and the
    new head is not behind it."""
    p, sync, first = synced(t)
    trusted = sync.verifier.state()
    create(t, "ext")
    head, _, head_exchange = fetch_head(t, p)
    verifier = hc.ChainVerifier(origin=p.origin, trusted=trusted)
    entries, _, exchange = fetch_chunk(t, trusted.position + 1, head.position)
    expect_spec(t, "the extension does not link to the trusted head", exchange,
                lambda: verifier.feed_chunk(b"".join(entries)))
    expect_spec(t, "the new head is not consistent with the trusted one", head_exchange,
                lambda: verifier.check_head(head, now=int(time.time()),
                                            trusted_position=first.position))


@check("hashchain/chain/heads-agree", requirements=("HC-10",), needs=NEEDS)
def heads_agree(t: Probe) -> None:
    """A head fetched earlier and the chain fetched later agree at the earlier position
    (the server shows one history)."""
    p, _, _ = synced(t)
    early, _, _ = fetch_head(t, p)
    create(t, "heads")
    verifier = hc.ChainVerifier(origin=p.origin)
    entries, _, exchange = fetch_chunk(t, 0, 0)
    expect_spec(t, "entry 0", exchange, lambda: verifier.feed(entries[0]))
    expect_spec(t, "the earlier head does not verify", exchange,
                lambda: verifier.expect_head(early))
    sync = Sync(t, p)
    sync.verifier = verifier
    sync.run()


# --- growth ------------------------------------------------------------------------------------

@check("hashchain/growth/one-entry-per-uid", requirements=("HC-21", "HC-22"), needs=NEEDS)
def grows_with_uid(t: Probe) -> None:
    """Creating a UID appends exactly one entry, at the position the reply names, holding
    the reply's bytes."""
    p, sync, before = synced(t)
    who = person(t, p, "grow")
    uid = make_uid(who, before)
    assert sync.verifier.server_key is not None
    reply = checked_reply(t, p, post_uid(t, uid), uid, 201, sync.verifier.server_key)
    head = sync.run()
    if head.position != before.position + 1 or reply.position != head.position:
        t.fail("the chain did not grow by exactly the reply's entry",
               expected=f"head {before.position + 1}, reply position {before.position + 1}",
               actual=f"head {head.position}, reply position {reply.position}")
    if sync.entries[reply.position] != reply.entry:
        t.fail("the entry in the chain differs from the reply's entry",
               expected=reply.entry.hex(), actual=sync.entries[reply.position].hex())


@check("hashchain/growth/one-entry-per-publication", requirements=("HC-29",),
       needs=(FLOW, "keypair-publication"))
def grows_with_publication(t: Probe) -> None:
    """Every keypair publication appends one type 0x02 entry that names the user and
    application and seals the hash of the published public view."""
    _p, sync, before = synced(t)
    user = t.user("hc-pub")
    sealed = t.publish(user, "hc-app", 1)
    head = sync.run()
    if head.position != before.position + 1:
        t.fail("a keypair publication did not add exactly one entry",
               expected=f"head at {before.position + 1}", actual=f"head at {head.position}")
    record = sealed.record
    record_hash = hc.publication_record_hash(
        user.user_id, "hc-app", 1, b64url_decode(record["public_keys"]["x25519"]),
        b64url_decode(record["public_keys"]["ed25519"]),
        b64url_decode(record["binding_signature"]))
    expect_spec(t, "the new entry does not record this publication", None,
                lambda: hc.check_entry_for(sync.entries[head.position],
                                           subject=hc.publication_subject(user.user_id,
                                                                          "hc-app"),
                                           record_hash=record_hash,
                                           entry_type=hc.TYPE_PUBLICATION))


@check("hashchain/growth/concurrent-writers-no-fork",
       requirements=("HC-22", "HC-5", "HC-10"), needs=NEEDS)
def concurrent_writers(t: Probe) -> None:
    """16 concurrent UID creations give 16 new entries at 16 distinct consecutive
    positions; the chain still verifies: no fork, no gap."""
    p, sync, before = synced(t)
    uids = [make_uid(person(t, p, f"par{i}"), before) for i in range(CONCURRENT_WRITERS)]
    with ThreadPoolExecutor(max_workers=CONCURRENT_WRITERS) as pool:
        exchanges = list(pool.map(lambda u: post_uid(t, u), uids))
    assert sync.verifier.server_key is not None
    positions = sorted(checked_reply(t, p, e, u, 201, sync.verifier.server_key).position
                       for e, u in zip(exchanges, uids, strict=True))
    head = sync.run()
    expected = list(range(before.position + 1, before.position + 1 + CONCURRENT_WRITERS))
    if positions != expected or head.position != expected[-1]:
        t.fail("concurrent creations did not get consecutive distinct positions",
               expected=f"positions {expected[0]}..{expected[-1]}, head {expected[-1]}",
               actual=f"positions {positions}, head {head.position}")


# --- UIDs ----------------------------------------------------------------------------------------

@check("hashchain/uid/create-reply-verifies", requirements=("HC-16", "HC-21"), needs=NEEDS)
def create_reply(t: Probe) -> None:
    """A UID signed by SIGKEY and SIGESCROW is accepted with 201 and a reply signed by the
    tracked key whose entry names this identity and this UID."""
    create(t, "create")


@check("hashchain/uid/identity-found", requirements=("HC-13",), needs=NEEDS)
def identity_found(t: Probe) -> None:
    """Scanning the chain finds the new identity at the reply's position (and nowhere
    else); the lookup endpoint names that position; an unknown identity is not found."""
    p, sync, who, _uid, reply = create(t, "found")
    sync.run()
    scanner = hc.IdentityScanner(who.identity.encode("ascii"))
    for position, data in enumerate(sync.entries):
        scanner.feed(position, data)
    if [m.position for m in scanner.matches] != [reply.position]:
        t.fail("scanning the chain does not find the identity exactly at the reply's entry",
               expected=str([reply.position]), actual=str([m.position for m in scanner.matches]))
    exchange, body = get_json(t, identity_path(who.identity), what="GET the identity")
    if body.get("positions") != [reply.position]:
        t.fail("the lookup endpoint does not name the identity's entry",
               expected=str([reply.position]), actual=describe(exchange), exchange=exchange)
    stranger = person(t, p, "nobody")
    t.expect_rejected(t.request("GET", identity_path(stranger.identity)), 404,
                      what="GET an identity without a UID")


@check("hashchain/uid/sealed-uid-served", requirements=("HC-24",), needs=NEEDS)
def sealed_uid(t: Probe) -> None:
    """The repository serves the UID by record index only sealed; it opens with the
    record hash from the chain to exactly the UID sent."""
    _, _, who, uid, reply = create(t, "sealed")
    index = b64url_encode(hc.record_index_of(reply.record_hash))
    exchange, body = get_json(t, f"{UIDS}/{index}", what="GET the sealed UID")
    opened = expect_spec(t, "the sealed UID does not open to the UID", exchange,
                         lambda: hc.open_sealed_uid(b64url_decode(body["sealed_uid"]),
                                                    reply.record_hash))
    if opened != uid or body.get("position") != reply.position:
        t.fail("the repository serves another UID or position", expected=repr(reply.position),
               actual=describe(exchange), exchange=exchange)
    if who.identity.encode() in exchange.response_body:
        t.fail("the repository names the identity in clear", expected="only sealed data",
               actual=describe(exchange), exchange=exchange)


@check("hashchain/uid/bad-sigkey-signature-refused", requirements=("HC-16",), needs=NEEDS)
def bad_sigkey_signature(t: Probe) -> None:
    """A UID whose SIGKEY signature is bad (SIGESCROW's good) is refused with 422."""
    p, _, head = synced(t)
    uid = make_uid(person(t, p, "badsig"), head)
    bad = hc.Uid(content=uid.content, sig_sigkey=flip(uid.sig_sigkey),
                 sig_sigescrow=uid.sig_sigescrow, previous_role=None, sig_previous=None)
    refused_uid(t, bad, 422, "signature", what="POST a UID with a bad SIGKEY signature")


@check("hashchain/uid/bad-escrow-signature-refused", requirements=("HC-16",), needs=NEEDS)
def bad_escrow_signature(t: Probe) -> None:
    """A UID whose SIGESCROW signature is bad (SIGKEY's good) is refused with 422."""
    p, _, head = synced(t)
    uid = make_uid(person(t, p, "badesc"), head)
    bad = hc.Uid(content=uid.content, sig_sigkey=uid.sig_sigkey,
                 sig_sigescrow=flip(uid.sig_sigescrow or bytes(64)), previous_role=None,
                 sig_previous=None)
    refused_uid(t, bad, 422, "signature", what="POST a UID with a bad SIGESCROW signature")


@check("hashchain/uid/escrow-signature-required", requirements=("HC-16",), needs=NEEDS)
def escrow_required(t: Probe) -> None:
    """A creation signed by SIGKEY alone is refused with 422."""
    p, _, head = synced(t)
    uid = make_uid(person(t, p, "noesc"), head)
    wire = hc.uid_to_wire(uid)
    del wire["signatures"]["sigescrow"]
    refused_uid(t, wire, 422, "signature", what="POST a UID without the SIGESCROW signature")


@check("hashchain/uid/duplicate-identity-refused", requirements=("HC-20",), needs=NEEDS)
def duplicate_identity(t: Probe) -> None:
    """A second creation for an identity that has a UID is refused with 409."""
    _p, _, who, _, _ = create(t, "dup")
    _, _, head = synced(t)
    rival = Person(identity=who.identity, sigkey_seed=os.urandom(32),
                   escrow_seed=os.urandom(32), x25519_private=os.urandom(32))
    refused_uid(t, make_uid(rival, head), 409, "replay",
                what="POST a second UID for the same identity")


@check("hashchain/uid/identity-syntax-and-domain", requirements=("HC-14",), needs=NEEDS)
def identity_syntax(t: Probe) -> None:
    """An identity not in mapped form is 400; a domain the server does not serve is 422."""
    p, _, head = synced(t)
    who = person(t, p, "syntax")
    local = who.identity.split("@")[0]
    unmapped = Person(identity=f"J{local}@{p.domains[0]}", sigkey_seed=who.sigkey_seed,
                      escrow_seed=who.escrow_seed, x25519_private=who.x25519_private)
    refused_uid(t, make_uid(unmapped, head), 400, "decode",
                what="POST a UID whose identity is not in mapped form")
    foreign = Person(identity=f"{local}@not-served.invalid", sigkey_seed=who.sigkey_seed,
                     escrow_seed=who.escrow_seed, x25519_private=who.x25519_private)
    refused_uid(t, make_uid(foreign, head), 422, "binding",
                what="POST a UID for a domain the server does not serve")


@check("hashchain/uid/last-entry-checked", requirements=("HC-19",), needs=NEEDS)
def last_entry_checked(t: Probe) -> None:
    """A UID whose last_entry is not an entry of this chain is refused with 422 (link)."""
    p, _, head = synced(t)
    uid = make_uid(person(t, p, "last"), head,
                   last_entry=hc.LastEntry(position=head.position, hash=os.urandom(32)))
    refused_uid(t, uid, 422, "link", what="POST a UID naming a foreign last entry")


@check("hashchain/uid/validity-checked", requirements=("HC-18",), needs=NEEDS)
def validity_checked(t: Probe) -> None:
    """An expired UID is refused with 422 (expired); a validity over 366 days with 400."""
    p, _, head = synced(t)
    now = int(time.time())
    expired = make_uid(person(t, p, "old"), head, not_before=now - 7200, not_after=now - 3600)
    refused_uid(t, expired, 422, "expired", what="POST an expired UID")
    too_long = make_uid(person(t, p, "long"), head, not_before=now - 60,
                        not_after=now - 60 + hc.MAX_UID_VALIDITY + 1)
    refused_uid(t, too_long, 400, "params", what="POST a UID valid for more than 366 days")


def update_of(who: Person, current: hc.Uid, head: hc.SignedHead, *, new_seed: bytes,
              escrow_seed: bytes | None = None, role: str = "sigkey",
              escrow_signs: bool = False) -> hc.Uid:
    content = uid_content(who, head, msg_count=current.content.msg_count + 1,
                          previous=hc.uid_record_hash(current),
                          sigkey=primitives.ed25519_public_key(new_seed),
                          sigescrow=primitives.ed25519_public_key(escrow_seed or who.escrow_seed))
    return hc.sign_uid(content, sigkey_seed=new_seed,
                       sigescrow_seed=(escrow_seed or who.escrow_seed) if escrow_signs else None,
                       previous_seed=who.sigkey_seed if role == "sigkey" else who.escrow_seed,
                       previous_role=role)


@check("hashchain/uid/update-chains", requirements=("HC-17", "HC-21"), needs=NEEDS)
def update_chains(t: Probe) -> None:
    """An update authorised by the previous SIGKEY is accepted with a verified reply; the
    identity's latest entry is then the update's; replaying it is refused with 409."""
    p, sync, who, uid, first = create(t, "upd")
    head = sync.run()
    update = update_of(who, uid, head, new_seed=os.urandom(32))
    exchange = t.request("PUT", identity_path(who.identity, "/uid"),
                         json_body=hc.uid_to_wire(update))
    assert sync.verifier.server_key is not None
    reply = checked_reply(t, p, exchange, update, 200, sync.verifier.server_key)
    sync.run()
    scanner = hc.IdentityScanner(who.identity.encode("ascii"))
    for position, data in enumerate(sync.entries):
        scanner.feed(position, data)
    latest = scanner.latest
    if latest is None or latest.position != reply.position or len(scanner.matches) != 2:
        t.fail("after the update the identity's latest entry is not the update's",
               expected=f"entries {first.position} and {reply.position}",
               actual=str([m.position for m in scanner.matches]))
    again = t.request("PUT", identity_path(who.identity, "/uid"),
                      json_body=hc.uid_to_wire(update))
    t.expect_rejected(again, 409, what="PUT the same update again", failure_class="replay")


@check("hashchain/uid/update-authorisation", requirements=("HC-17", "HC-20"), needs=NEEDS)
def update_authorisation(t: Probe) -> None:
    """A new SIGESCROW authorised only by the previous SIGKEY is refused with 422 (authz);
    an update signed by a stranger with 422 (signature); an update of an identity without
    a UID with 404."""
    p, sync, who, uid, _ = create(t, "auth")
    head = sync.run()
    escrow_swap = update_of(who, uid, head, new_seed=os.urandom(32),
                            escrow_seed=os.urandom(32), escrow_signs=True)
    t.expect_rejected(t.request("PUT", identity_path(who.identity, "/uid"),
                                json_body=hc.uid_to_wire(escrow_swap)), 422,
                      what="PUT a new SIGESCROW authorised by SIGKEY only",
                      failure_class="authz")
    thief = Person(identity=who.identity, sigkey_seed=os.urandom(32),
                   escrow_seed=who.escrow_seed, x25519_private=who.x25519_private)
    stolen = update_of(thief, uid, head, new_seed=os.urandom(32))
    t.expect_rejected(t.request("PUT", identity_path(who.identity, "/uid"),
                                json_body=hc.uid_to_wire(stolen)), 422,
                      what="PUT an update signed by a stranger", failure_class="signature")
    nobody = person(t, p, "nouid")
    t.expect_rejected(t.request("PUT", identity_path(nobody.identity, "/uid"),
                                json_body=hc.uid_to_wire(make_uid(nobody, head))), 404,
                      what="PUT an update for an identity without a UID")


# --- KeyInits ---------------------------------------------------------------------------------

def keyinits(who: Person, count: int, *, seed: bytes | None = None) -> list[hc.KeyInit]:
    now = int(time.time())
    return [hc.make_keyinit(identity=who.identity, sigkey_seed=seed or who.sigkey_seed,
                            not_before=now - 60, not_after=now + 86400, random=os.urandom)[0]
            for _ in range(count)]


def publish_keyinits(t: Probe, who: Person, kis: list[hc.KeyInit]) -> Exchange:
    return t.request("POST", identity_path(who.identity, "/keyinits"),
                     json_body={"keyinits": [hc.keyinit_to_wire(k) for k in kis]})


def fetch_keyinit(t: Probe, who: Person) -> Exchange:
    return t.request("POST", identity_path(who.identity, "/keyinits/fetch"))


def served_key(t: Probe, who: Person, exchange: Exchange) -> bytes:
    body = t.expect_ok_json(exchange, 200, what="fetch a KeyInit")
    ki = expect_spec(t, "the KeyInit does not verify against the identity's SIGKEY", exchange,
                     lambda: hc.parse_keyinit(body["keyinit"]))
    expect_spec(t, "the KeyInit does not verify against the identity's SIGKEY", exchange,
                lambda: hc.verify_keyinit(ki, identity=who.identity, current_sigkey=who.sigkey,
                                          now=int(time.time())))
    return bytes(ki.key_id)


@check("hashchain/keyinit/served-once", requirements=("HC-25", "HC-27"), needs=NEEDS)
def served_once(t: Probe) -> None:
    """Three published KeyInits are handed out once each, each signed by SIGKEY; the
    fourth fetch is 404."""
    _, _, who, _, _ = create(t, "ki")
    kis = keyinits(who, 3)
    t.expect_ok_json(publish_keyinits(t, who, kis), 201, what="publish 3 KeyInits")
    served = [served_key(t, who, fetch_keyinit(t, who)) for _ in range(3)]
    if sorted(served) != sorted(k.key_id for k in kis):
        t.fail("the KeyInits handed out are not the three published, once each",
               expected=str(sorted(k.key_id.hex() for k in kis)),
               actual=str(sorted(s.hex() for s in served)))
    t.expect_rejected(fetch_keyinit(t, who), 404, what="a fourth fetch")


@check("hashchain/keyinit/concurrent-fetch-once", requirements=("HC-27",), needs=NEEDS)
def concurrent_fetch(t: Probe) -> None:
    """Six KeyInits and sixteen concurrent fetches: exactly six succeed, with six
    distinct KeyInits; the others are 404. (Fewer of both when the server's advertised
    keyinit-fetch-identity bucket is smaller: the runner stays under it.)"""
    _, _, who, _, _ = create(t, "kic")
    fetches = advertised_capacity(t, "keyinit-fetch-identity", CONCURRENT_WRITERS)
    count = max(1, min(6, fetches - 1))
    kis = keyinits(who, count)
    t.expect_ok_json(publish_keyinits(t, who, kis), 201, what=f"publish {count} KeyInits")
    with ThreadPoolExecutor(max_workers=fetches) as pool:
        exchanges = list(pool.map(lambda _: fetch_keyinit(t, who), range(fetches)))
    ok = [e for e in exchanges if e.status == 200]
    keys = [served_key(t, who, e) for e in ok]
    if len(ok) != count or len(set(keys)) != count:
        t.fail("concurrent fetches did not hand out each KeyInit exactly once",
               expected=f"{count} answers 200 with {count} distinct KeyInits",
               actual=f"{len(ok)} answers 200 with {len(set(keys))} distinct KeyInits",
               exchange=ok[0] if ok else exchanges[0])
    for e in exchanges:
        if e.status != 200:
            t.expect_rejected(e, 404, what="a concurrent fetch after the pool ran dry")


@check("hashchain/keyinit/signer-and-replay-checked", requirements=("HC-25", "HC-26"),
       needs=NEEDS)
def keyinit_signer(t: Probe) -> None:
    """KeyInits signed by another key than the current SIGKEY are refused (422); a key_id
    published twice is refused (409); nothing of a refused batch is served."""
    _, _, who, _, _ = create(t, "kis")
    t.expect_rejected(publish_keyinits(t, who, keyinits(who, 1, seed=who.escrow_seed)), 422,
                      what="publish a KeyInit signed by SIGESCROW", failure_class="authz")
    kis = keyinits(who, 1)
    t.expect_ok_json(publish_keyinits(t, who, kis), 201, what="publish a KeyInit")
    t.expect_rejected(publish_keyinits(t, who, kis + keyinits(who, 1)), 409,
                      what="publish a batch repeating a key_id", failure_class="replay")
    served_key(t, who, fetch_keyinit(t, who))
    t.expect_rejected(fetch_keyinit(t, who), 404, what="fetch after the only valid KeyInit")


@check("hashchain/keyinit/flush-signed-and-fresh", requirements=("HC-28",), needs=NEEDS)
def flush(t: Probe) -> None:
    """A signed fresh flush removes the pending KeyInits; replaying it is 409; a stale one
    or one signed by another key is 422."""
    p, _, who, _, _ = create(t, "fl")
    t.expect_ok_json(publish_keyinits(t, who, keyinits(who, 2)), 201,
                     what="publish 2 KeyInits")
    path = identity_path(who.identity, "/keyinits/flush")
    now = int(time.time())

    def request(seed: bytes, timestamp: int) -> hc.FlushRequest:
        return hc.make_flush_request(origin=p.origin, identity=who.identity, sigkey_seed=seed,
                                     timestamp=timestamp, nonce=os.urandom(16))

    stale = request(who.sigkey_seed, now - hc.FLUSH_WINDOW - 60)
    t.expect_rejected(t.request("POST", path, json_body=hc.flush_to_wire(stale)), 422,
                      what="a stale flush", failure_class="expired")
    forged = request(who.escrow_seed, now)
    t.expect_rejected(t.request("POST", path, json_body=hc.flush_to_wire(forged)), 422,
                      what="a flush signed by another key", failure_class="signature")
    good = request(who.sigkey_seed, now)
    body = t.expect_ok_json(t.request("POST", path, json_body=hc.flush_to_wire(good)), 200,
                            what="a signed fresh flush")
    if body.get("flushed") != 2:
        t.fail("the flush did not remove both KeyInits", expected="flushed 2",
               actual=repr(body))
    t.expect_rejected(fetch_keyinit(t, who), 404, what="fetch after the flush")
    t.expect_rejected(t.request("POST", path, json_body=hc.flush_to_wire(good)), 409,
                      what="the same flush again", failure_class="replay")


def flip(data: bytes, index: int = 0) -> bytes:
    out = bytearray(data)
    out[index] ^= 0x01
    return bytes(out)
