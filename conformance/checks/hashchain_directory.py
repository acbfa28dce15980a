"""hashchain checks, the key directory: every lookup answer the target gives is verified
by keyflows.spec.hashchain_directory_client as a client would (VRF proof under the key
GET /v1/directory advertises, value and chained leaf, map proof, commitment in a log
entry included in a checkpoint signed by the log key of the capabilities), and the
runner acts as an owner monitoring its own identities epoch by epoch.

Attacks each check catches: a lookup answered for another identity, a map proof that
does not lead to the committed root, a root the log never committed (lookup-verifies,
absent-verifies, uid-verifies, devices-verifies); a change accepted but never published,
a version the owner did not make, a rewritten history (owner-monitors, history-verifies);
a reset left out of the directory, or a keypair's ML-KEM-768 key dropped from it
(hybrid-reset-verifies);
a past epoch no longer answered (past-epochs); a listing of names (no-enumeration);
a directory route reading a body past the limit every route keeps (body-on-bodiless).
"""

from __future__ import annotations

import time
from typing import Any

from keyflows.conformance.checks import envelope as envelope_checks
from keyflows.conformance.checks.hashchain_support import (
    NEEDS,
    Params,
    create,
    expect_spec,
    get_json,
    params,
)
from keyflows.conformance.clients import seal_with_application_key
from keyflows.conformance.http import Exchange
from keyflows.conformance.probe import JSON_HEADERS, Probe, describe
from keyflows.conformance.registry import check
from keyflows.spec import envelope_devices as D
from keyflows.spec import hashchain_directory as hd
from keyflows.spec import hashchain_directory_client as hdc
from keyflows.spec import hashchain_uid as hu
from keyflows.spec import keypair_publication as kp
from keyflows.spec.encoding import b64url_decode, b64url_encode

DIRECTORY = "/v1/directory"
KEYPAIR_NEEDS = (*NEEDS, "keypair-publication")
#: HC-98: a change is published before the directory answers anything after it; the
#: owner allows this many seconds between acceptance and the epoch (clock and load).
MAX_DELAY = 120


def lookup_path(label: hd.Label, suffix: str = "", epoch: int | None = None) -> str:
    path = f"{DIRECTORY}/{label.kind}/{'/'.join(label.names)}{suffix}"
    return path if epoch is None else f"{path}?epoch={epoch}"


def trust(t: Probe, p: Params) -> tuple[hdc.Trust, int]:
    """What a client pins (HC-97): the advertised VRF key, the log of the capabilities;
    and the latest epoch."""
    exchange, body = get_json(t, DIRECTORY, what="GET the directory")
    try:
        key = b64url_decode(str(body["vrf_public_key"]))
        latest = int(body["epoch"])
    except (KeyError, TypeError, ValueError) as exc:
        t.fail(f"the directory document is malformed: {exc}",
               expected="vrf_public_key (base64url) and epoch", actual=describe(exchange),
               exchange=exchange)
    return hdc.Trust(vrf_public_key=key, origin=p.origin, log_keys=(p.verifier,)), latest


def lookup(t: Probe, tr: hdc.Trust, label: hd.Label, *, what: str, epoch: int | None = None,
           last_epoch: int = 0) -> hdc.Lookup:
    exchange, body = get_json(t, lookup_path(label, epoch=epoch), what=what)
    verified: hdc.Lookup = expect_spec(t, what, exchange, lambda: hdc.verify_lookup(
        body, label=label, trust=tr, now=int(time.time()), last_epoch=last_epoch,
        at_epoch=epoch))
    return verified


def expect_value(t: Probe, found: hdc.Lookup, value: Any, *, version: int, what: str) -> None:
    if found.leaf is None or found.leaf.version != version or found.value != value:
        t.fail(f"{what}: the directory does not hold the latest value",
               expected=f"version {version}: {str(value)[:200]}",
               actual="absent" if found.leaf is None else
               f"version {found.leaf.version}: {str(found.value)[:200]}")


@check("hashchain/directory/lookup-verifies",
       requirements=("HC-80", "HC-82", "HC-83", "HC-86", "HC-88", "HC-97"),
       needs=KEYPAIR_NEEDS)
def lookup_verifies(t: Probe) -> None:
    """A published keypair is found at once with its public view, in an answer every
    part of which verifies; a rotation makes version 2."""
    tr, _ = trust(t, params(t))
    user = t.user("dir-kp")
    label = hd.keypair_label(user.user_id, "dir-app")
    sealed = t.publish(user, "dir-app", 1)
    found = lookup(t, tr, label, what="the lookup of a published keypair")
    expect_value(t, found, kp.public_view(sealed.record), version=1, what="after version 1")
    sealed = t.publish(user, "dir-app", 2)
    found = lookup(t, tr, label, what="the lookup of a rotated keypair",
                   last_epoch=found.epoch)
    expect_value(t, found, kp.public_view(sealed.record), version=2, what="after version 2")


@check("hashchain/directory/absent-verifies", requirements=("HC-80", "HC-85", "HC-88"),
       needs=NEEDS)
def absent_verifies(t: Probe) -> None:
    """An identity nobody published is absent, with an absence proof that verifies."""
    tr, _ = trust(t, params(t))
    label = hd.keypair_label(t.session.new_user_id("dir-none"), "dir-app")
    found = lookup(t, tr, label, what="the lookup of an unknown keypair")
    if found.leaf is not None:
        t.fail("an unknown identity is present in the directory", expected="leaf null",
               actual=f"version {found.leaf.version}")


@check("hashchain/directory/no-enumeration", requirements=("HC-99",), needs=KEYPAIR_NEEDS)
def no_enumeration(t: Probe) -> None:
    """Nothing lists names: a user's applications are not listed to anyone but the
    user, and the directory has no route below a lookup's full name."""
    user = t.user("dir-enum")
    t.publish(user, "dir-app", 1)
    listed = t.request("GET", f"/v1/users/{user.user_id}/apps")
    if listed.status == 200:
        t.fail("a user's applications are listed without the user's credentials",
               expected="401", actual=describe(listed), exchange=listed)
    partial = t.request("GET", f"{DIRECTORY}/keypair/{user.user_id}")
    t.expect_rejected(partial, 404, what="GET the directory below a user (no listing)")


@check("hashchain/directory/body-on-bodiless", requirements=("API-5", "API-18", "HC-88"),
       needs=NEEDS)
def body_on_bodiless(t: Probe) -> None:
    """A GET of the directory or of a lookup carrying a body over max_body_bytes is
    refused with 413, as on every route: a directory route reads no more than the rest."""
    caps = t.session.capabilities or {}
    limit = (caps.get("limits") or {}).get("max_body_bytes")
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
        t.fail("the capabilities do not advertise limits.max_body_bytes (API-7)",
               expected="an integer >= 1", actual=repr(limit))
    label = hd.Label(hd.KIND_KEYPAIR, (t.session.new_user_id("dir-body"), "dir-app"))
    for path in (DIRECTORY, lookup_path(label)):
        exchange = t.request("GET", path, headers=JSON_HEADERS, body=b" " * (limit + 1))
        t.expect_rejected(exchange, 413, what=f"GET {path} with a {limit + 1}-byte body")


@check("hashchain/directory/uid-verifies", requirements=("HC-80", "HC-82", "HC-88"),
       needs=NEEDS)
def uid_verifies(t: Probe) -> None:
    """A new UID is in the directory under its identity, the UID itself its value."""
    p = params(t)
    tr, _ = trust(t, p)
    _p, _client, who, uid, _reply = create(t, "dir-uid")
    found = lookup(t, tr, hd.uid_label(who.identity), what="the lookup of a new UID")
    expect_value(t, found, hu.uid_to_wire(uid), version=1, what="after the UID's creation")


@check("hashchain/directory/devices-verifies", requirements=("HC-80", "HC-82", "HC-88"),
       needs=(*KEYPAIR_NEEDS, "envelope"))
def devices_verifies(t: Probe) -> None:
    """A signed device list is in the directory under (user, application), its canonical
    signed bytes the value; its next version is version 2."""
    tr, _ = trust(t, params(t))
    owner = envelope_checks.person(t, "dir-dev")
    label = hd.devices_label(owner.user_id, envelope_checks.CLIENT)
    for version in (1, 2):
        envelope_checks.register(t, owner, f"dir-device-{version}")
        exchange, body = get_json(t, envelope_checks.devices_path(owner.user_id),
                                  what="GET the device list")
        listed = expect_spec(t, "the stored device list", exchange,
                             lambda body=body: D.parse_device_list(body))
        found = lookup(t, tr, label, what=f"the lookup of device list version {version}")
        expect_value(t, found, b64url_encode(D.device_list_signed_bytes(listed)),
                     version=version, what=f"after device list version {version}")


@check("hashchain/directory/owner-monitors",
       requirements=("HC-87", "HC-93", "HC-98", "HC-83", "HC-89"), needs=KEYPAIR_NEEDS)
def owner_monitors(t: Probe) -> None:
    """The runner as an owner: publishes, rotates and deletes a keypair, and checks
    every epoch from the one before its first change to the latest: each holds exactly
    the changes it made, in order, and none is missing once the directory answers."""
    p = params(t)
    tr, start = trust(t, p)
    user = t.user("dir-owner")
    label = hd.keypair_label(user.user_id, "dir-app")
    monitor = hdc.OwnerMonitor(label, max_delay=MAX_DELAY, checked_epoch=start - 1)
    for version in (1, 2):
        sealed = t.publish(user, "dir-app", version)
        monitor.made(hd.value_hash_of(label, kp.public_view(sealed.record)),
                     accepted_at=int(time.time()))
        trust(t, p)  # any directory request publishes what waits (HC-98)
    t.expect_status(t.delete_keypair(user.user_id, "dir-app", token=user.token), 204,
                    what="deleting the keypair")
    monitor.made(hd.value_hash_of(label, None), accepted_at=int(time.time()))
    _, latest = trust(t, p)
    for epoch in range(start, latest + 1):
        found = lookup(t, tr, label, what=f"the owner's lookup at epoch {epoch}", epoch=epoch)
        expect_spec(t, f"the owner's check of epoch {epoch}", None,
                    lambda found=found: monitor.check(found))
    if monitor.pending or monitor.leaf is None or monitor.leaf.version != 3:
        t.fail("a change the server accepted is missing from the latest epoch (HC-98)",
               expected="versions 1, 2 and the removal (3) published",
               actual=f"{len(monitor.pending)} change(s) missing")


@check("hashchain/directory/history-verifies", requirements=("HC-95", "HC-96"),
       needs=KEYPAIR_NEEDS)
def history_verifies(t: Probe) -> None:
    """The history lists every version, chains to the verified leaf, and passes through
    the version-1 leaf the client accepted earlier."""
    tr, _ = trust(t, params(t))
    user = t.user("dir-hist")
    label = hd.keypair_label(user.user_id, "dir-app")
    first = t.publish(user, "dir-app", 1)
    pinned = lookup(t, tr, label, what="the lookup of version 1").leaf
    second = t.publish(user, "dir-app", 2)
    exchange, body = get_json(t, lookup_path(label, "/history"), what="the history")
    history: hdc.History = expect_spec(t, "the history", exchange, lambda: hdc.verify_history(
        body, label=label, trust=tr, now=int(time.time()), pinned=pinned))
    values = [v.value for v in history.versions]
    if values != [kp.public_view(first.record), kp.public_view(second.record)]:
        t.fail("the history does not list the two published public views",
               expected="versions 1 and 2", actual=f"{len(values)} version(s)",
               exchange=exchange)


@check("hashchain/directory/hybrid-reset-verifies",
       requirements=("HC-82", "HC-83", "HC-95"), needs=KEYPAIR_NEEDS)
def hybrid_reset_verifies(t: Probe) -> None:
    """A keypair with an ML-KEM-768 key, then a reset (new keys the old key did not
    sign): the directory publishes the reset as version 2, its value carries the ML-KEM
    key and says reset, and the history shows initial then reset, so monitors see it."""
    tr, _ = trust(t, params(t))
    user = t.user("dir-reset")
    label = hd.keypair_label(user.user_id, "dir-app")
    first = t.publish(user, "dir-app", sealed=seal_with_application_key(
        user.user_id, "dir-app", 1, with_mlkem=True))
    reset = t.publish(user, "dir-app", sealed=seal_with_application_key(
        user.user_id, "dir-app", 2, with_mlkem=True))
    views = [kp.public_view(first.record), kp.public_view(reset.record)]
    found = lookup(t, tr, label, what="the lookup of a reset hybrid keypair")
    expect_value(t, found, views[1], version=2, what="after the reset")
    exchange, body = get_json(t, lookup_path(label, "/history"), what="the history")
    history: hdc.History = expect_spec(t, "the history", exchange, lambda: hdc.verify_history(
        body, label=label, trust=tr, now=int(time.time())))
    changes = [v.value["change"]["type"] if isinstance(v.value, dict) else None
               for v in history.versions]
    if [v.value for v in history.versions] != views or changes != ["initial", "reset"]:
        t.fail("the history does not show the published version 1 and the reset",
               expected="version 1 (initial), version 2 (reset), each with its ML-KEM key",
               actual=f"change types {changes}", exchange=exchange)


@check("hashchain/directory/past-epochs", requirements=("HC-88", "HC-98", "HC-91"),
       needs=NEEDS)
def past_epochs(t: Probe) -> None:
    """Epoch 1 still answers (and verifies as epoch 1); an epoch beyond the latest is
    404; a repeated epoch parameter is 400."""
    tr, latest = trust(t, params(t))
    label = hd.keypair_label(t.session.new_user_id("dir-past"), "dir-app")
    lookup(t, tr, label, what="the lookup at epoch 1", epoch=1)
    beyond: Exchange = t.request("GET", lookup_path(label, epoch=latest + 1000))
    t.expect_rejected(beyond, 404, what="a lookup beyond the latest epoch")
    twice = t.request("GET", lookup_path(label) + "?epoch=1&epoch=1")
    t.expect_rejected(twice, 400, what="a lookup naming the epoch twice")
