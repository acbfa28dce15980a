"""Vectors of the envelope flow: signed device lists (steps 1 and 2, ENV-1 .. ENV-3,
ENV-21, ENV-22): what a sender verifies and what a server decides on a new version."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from keyflows.spec import envelope_devices as D
from keyflows.spec import mlkem
from keyflows.spec.encoding import b64url_encode
from keyflows.vectors.envelope_common import (
    CLIENT,
    LOW_ORDER,
    MAX_DEVICES,
    OP_UPDATE_LIST,
    OP_VERIFY_LIST,
    STEP_LIST_SENDER,
    STEP_LIST_SERVER,
    device,
    device_plain,
    fails,
    flip_field,
    published_from_case,
    published_to_plain,
    resize_field,
    user,
    with_member,
    without_member,
)
from keyflows.vectors.framework import (
    Case,
    Failure,
    Outcome,
    compare,
    expect_rejection,
    to_plain,
)

LIST_DEVICES = (("bob", "laptop"), ("bob", "phone"))


def _signed(owner: str, version: int, devices: Sequence[tuple[str, str]], *,
            signer: str | None = None, key_version: int = 1) -> D.DeviceList:
    return D.sign_device_list(owner_seed=user(signer or owner).ed25519_seed, user_id=owner,
                              client_id=CLIENT, key_version=key_version, version=version,
                              devices=[device(u, d) for u, d in devices])


def _list_wire(device_list: D.DeviceList) -> dict[str, Any]:
    return D.device_list_to_wire(device_list)


def _verify_list_case(slug: str, comment: str, flags: tuple[str, ...],
                      requirements: tuple[str, ...], failure: Failure | None, *,
                      listed: Any, owner: D.PublishedKeys | None = None,
                      seen_version: int = 0) -> Case:
    owner = owner or user("bob").published
    inputs = {"device_list": listed, "owner": published_to_plain(owner),
              "seen_version": seen_version}
    intermediates: dict[str, Any] = {}
    outputs: dict[str, Any] = {}
    if failure is None:
        verified = D.verify_device_list(listed, owner, seen_version=seen_version)
        intermediates = {"tbs": D.tbs_of(verified)}
        outputs = {"devices": [device_plain(d) for d in verified.devices],
                   "signed_bytes": D.device_list_signed_bytes(verified)}
    return Case(id=f"env-v1-device-list/verify/{slug}", comment=comment, flags=flags,
                requirements=requirements, operation=OP_VERIFY_LIST, inputs=inputs,
                intermediates=intermediates, outputs=outputs, failure=failure)


def _ghost(listed: dict[str, Any], ghost: D.Device) -> Any:
    devices = sorted([*listed["devices"], D.device_to_wire(ghost)], key=lambda d: d["device_id"])
    return with_member(listed, ("devices",), devices)


def verify_list_cases() -> list[Case]:
    sender_step = STEP_LIST_SENDER
    good = _list_wire(_signed("bob", 2, LIST_DEVICES))
    sig = fails("signature", sender_step)
    binding = fails("binding", sender_step)
    bob = user("bob").published
    bob_v2 = D.PublishedKeys(user_id="bob", client_id=CLIENT, key_version=2,
                             x25519=bob.x25519, ed25519=bob.ed25519)
    bad_mlkem = bytes([0xFF, 0xFF]) + device("bob", "phone").mlkem768[2:]
    return [
        _verify_list_case("valid", "bob's two devices, version 2, signed by bob", ("Valid",),
                          ("ENV-21", "ENV-22", "ENV-1", "ENV-2"), None, listed=good,
                          seen_version=1),
        _verify_list_case("empty", "a list with no device", ("Valid",), ("ENV-21", "ENV-22"),
                          None, listed=_list_wire(_signed("bob", 1, ()))),
        _verify_list_case("ghost-device", "the server adds mallory's device to bob's list",
                          ("GhostDevice",), ("ENV-22",), sig,
                          listed=_ghost(good, device("bob", "ghost"))),
        _verify_list_case("dropped-device", "the server drops bob's phone from the list",
                          ("GhostDevice",), ("ENV-22",), sig,
                          listed=with_member(good, ("devices",), good["devices"][:1])),
        _verify_list_case("bitflip-signature", "one bit of the signature flipped",
                          ("BitFlip",), ("ENV-21", "ENV-22"), sig,
                          listed=flip_field(good, ("signature",), 5)),
        _verify_list_case("foreign-signer", "bob's list signed with mallory's key",
                          ("ForeignSigner",), ("ENV-21", "ENV-22"), sig,
                          listed=_list_wire(_signed("bob", 2, LIST_DEVICES, signer="mallory"))),
        _verify_list_case("other-user", "carol's list served as bob's", ("ForeignSigner",),
                          ("ENV-22",), binding,
                          listed=_list_wire(_signed("carol", 1, (("carol", "tablet"),)))),
        _verify_list_case("stale-signer", "signed by bob's key_version 1; bob now publishes "
                          "key_version 2", ("StaleSigner",), ("ENV-21", "ENV-22"), binding,
                          listed=good, owner=bob_v2),
        _verify_list_case("rollback", "version 2 after the sender saw version 3", ("Replay",),
                          ("ENV-22",), fails("replay", sender_step), listed=good,
                          seen_version=3),
        _verify_list_case("unsorted", "devices out of device_id order", ("Unsorted",),
                          ("ENV-1",), fails("decode", sender_step),
                          listed=with_member(good, ("devices",), good["devices"][::-1])),
        _verify_list_case("duplicate-device", "one device listed twice", ("Unsorted",),
                          ("ENV-1",), fails("decode", sender_step),
                          listed=with_member(good, ("devices",), [good["devices"][0]] * 2)),
        _verify_list_case("x25519-low-order", "a device's x25519 key is u = 1",
                          ("LowOrderPoint",), ("ENV-2",), fails("point", sender_step),
                          listed=with_member(good, ("devices", 0, "x25519"),
                                             b64url_encode(LOW_ORDER))),
        _verify_list_case("mlkem-modulus", "a device's mlkem768 key has a coefficient >= q",
                          ("ModulusCheck",), ("ENV-2",), fails("point", sender_step),
                          listed=with_member(good, ("devices", 1, "mlkem768"),
                                      b64url_encode(bad_mlkem))),
        _verify_list_case("mlkem-truncated", "a device's mlkem768 key one byte short",
                          ("Truncated",), ("ENV-2",), fails("length", sender_step),
                          listed=resize_field(good, ("devices", 0, "mlkem768"),
                                               mlkem.ENCAPSULATION_KEY_LEN - 1)),
        _verify_list_case("missing-signature", "the list carries no signature",
                          ("MissingMember",), ("ENV-21", "API-6"),
                          fails("decode", sender_step),
                          listed=without_member(good, ("signature",))),
    ]


def _update_list_case(slug: str, comment: str, flags: tuple[str, ...],
                      requirements: tuple[str, ...], failure: Failure | None, *,
                      current: D.DeviceList | None, proposed: Any,
                      owner: D.PublishedKeys | None = None, has_owner: bool = True) -> Case:
    owner = owner or user("bob").published
    inputs = {"current": None if current is None else _list_wire(current),
              "proposed": proposed, "owner": published_to_plain(owner) if has_owner else None,
              "max_devices": MAX_DEVICES}
    outputs: dict[str, Any] = {}
    if failure is None:
        decision = _decided(to_plain(inputs))
        outputs = {"outcome": decision.outcome.value, "added": list(decision.added),
                   "removed": list(decision.removed)}
    return Case(id=f"env-v1-device-list/update/{slug}", comment=comment, flags=flags,
                requirements=requirements, operation=OP_UPDATE_LIST, inputs=inputs,
                outputs=outputs, failure=failure)


def _decided(inputs: Mapping[str, Any]) -> D.DeviceListDecision:
    current = None if inputs["current"] is None else D.parse_device_list(inputs["current"])
    owner = None if inputs["owner"] is None else published_from_case(inputs["owner"])
    return D.decide_device_list(inputs["proposed"], current=current, owner=owner,
                                max_devices=inputs["max_devices"])


def update_list_cases() -> list[Case]:
    server = STEP_LIST_SERVER
    v1 = _signed("bob", 1, LIST_DEVICES[:1])
    v2 = _signed("bob", 2, LIST_DEVICES)
    v3 = _signed("bob", 3, LIST_DEVICES[1:])
    bob = user("bob").published
    bob_v2 = D.PublishedKeys(user_id="bob", client_id=CLIENT, key_version=2,
                             x25519=bob.x25519, ed25519=bob.ed25519)
    changed = D.sign_device_list(
        owner_seed=user("bob").ed25519_seed, user_id="bob", client_id=CLIENT, key_version=1,
        version=2, devices=[D.Device(user_id="bob", device_id="laptop",
                                     x25519=device("bob", "other").x25519,
                                     mlkem768=device("bob", "other").mlkem768)])
    many = [("bob", f"d{i}") for i in range(MAX_DEVICES + 1)]
    return [
        _update_list_case("create", "the first version", ("Valid",), ("ENV-3", "ENV-21"), None,
                          current=None, proposed=_list_wire(v1)),
        _update_list_case("add", "version 2 adds the phone", ("Valid",), ("ENV-3", "ENV-21"),
                          None, current=v1, proposed=_list_wire(v2)),
        _update_list_case("remove", "version 3 removes the laptop", ("Valid",),
                          ("ENV-3", "ENV-21"), None, current=v2, proposed=_list_wire(v3)),
        _update_list_case("unchanged", "the stored version again", ("Valid",), ("ENV-3",),
                          None, current=v2, proposed=_list_wire(v2)),
        _update_list_case("replay", "version 1 again after version 2", ("Replay",),
                          ("ENV-3",), fails("replay", server), current=v2,
                          proposed=_list_wire(v1)),
        _update_list_case("gap", "version 3 after version 1", ("VersionGap",), ("ENV-3",),
                          fails("link", server), current=v1, proposed=_list_wire(v3)),
        _update_list_case("key-change", "the laptop keeps its id with other keys",
                          ("KeyChange",), ("ENV-3",), fails("binding", server),
                          current=v1, proposed=_list_wire(changed)),
        _update_list_case("too-many", f"{MAX_DEVICES + 1} devices, the limit is {MAX_DEVICES}",
                          ("Limits",), ("ENV-3",), fails("params", server), current=None,
                          proposed=_list_wire(_signed("bob", 1, many))),
        _update_list_case("unsigned-device", "a device added without a new signature",
                          ("GhostDevice",), ("ENV-21",), fails("signature", server),
                          current=v1, proposed=_ghost(_list_wire(v1) | {"version": 2},
                                                      device("bob", "phone"))),
        _update_list_case("foreign-signer", "signed with mallory's key", ("ForeignSigner",),
                          ("ENV-21",), fails("signature", server), current=v1,
                          proposed=_list_wire(_signed("bob", 2, LIST_DEVICES,
                                                      signer="mallory"))),
        _update_list_case("stale-signer", "signed by key_version 1; bob publishes 2",
                          ("StaleSigner",), ("ENV-21",), fails("binding", server),
                          current=v1, proposed=_list_wire(v2), owner=bob_v2),
        _update_list_case("no-keypair", "bob has no published keypair for the application",
                          ("NoKeypair",), ("ENV-21",), fails("binding", server),
                          current=None, proposed=_list_wire(v1), has_owner=False),
    ]



def verify_list(case: Mapping[str, Any]) -> Outcome:
    inputs = case["inputs"]
    owner = published_from_case(inputs["owner"])

    def verify() -> D.DeviceList:
        return D.verify_device_list(inputs["device_list"], owner,
                                    seen_version=inputs["seen_version"])

    if case["result"] == "invalid":
        return expect_rejection(case, verify)
    verified = verify()
    return compare(case, intermediates={"tbs": D.tbs_of(verified)},
                   outputs={"devices": [device_plain(d) for d in verified.devices],
                            "signed_bytes": D.device_list_signed_bytes(verified)})

def verify_update(case: Mapping[str, Any]) -> Outcome:
    inputs = case["inputs"]
    if case["result"] == "invalid":
        return expect_rejection(case, lambda: _decided(inputs))
    decision = _decided(inputs)
    return compare(case, outputs={"outcome": decision.outcome.value,
                                  "added": list(decision.added),
                                  "removed": list(decision.removed)})
