"""key-derivation checks, over the keypair-publication API.

The server never derives keys, but it stores what clients need to: the salt and the
Argon2id parameters (KD-4, KD-5), and it must refuse parameters and identifiers outside
the profile before anyone runs a derivation on them (KD-2, KD-5). The round trips prove
the runner's kBr and password key (KD-3, KD-6) open what the server gives back.
"""

from __future__ import annotations

from typing import Any

from keyflows.conformance.checks.support import (
    expect_absent,
    expect_same_record,
    first_difference,
    mutated,
)
from keyflows.conformance.clients import (
    RUNNER_ARGON2,
    Sealed,
    b64_of_length,
    seal_with_application_key,
    seal_with_password,
)
from keyflows.conformance.probe import Probe, User, describe, keypair_path
from keyflows.conformance.registry import check
from keyflows.spec.encoding import b64url_decode
from keyflows.spec.errors import SpecError
from keyflows.spec.key_derivation import Argon2Params, application_key, password_key
from keyflows.spec.keypair_publication import open_record

CLIENT = "kd-app"
PASSWORD = "correct horse battery staple"


def password_record(t: Probe) -> tuple[User, Sealed]:
    """One password-protected record per run: Argon2id is the one slow step (KD-5 costs),
    so it is sealed and published once and shared by the checks that need it."""
    cached = t.session.cache.get("password-record")
    if cached is None:
        user = t.user("password")
        sealed = seal_with_password(user.user_id, CLIENT, 1, PASSWORD)
        t.publish(user, CLIENT, sealed=sealed)
        cached = t.session.cache["password-record"] = (user, sealed)
    user, sealed = cached
    assert isinstance(user, User) and isinstance(sealed, Sealed)
    return user, sealed


def fetch_own(t: Probe, user: User, client_id: str, *, what: str) -> dict[str, Any]:
    exchange = t.get_keypair(user.user_id, client_id, token=user.token)
    record = t.expect_ok_json(exchange, 200, what=what)
    if not isinstance(record, dict):
        t.fail(f"{what}: the answer is not a JSON object", expected="the record",
               actual=describe(exchange), exchange=exchange)
    return record


def open_or_fail(t: Probe, record: dict[str, Any], *, user: User, client_id: str,
                 kek: bytes, sealed: Sealed, what: str) -> None:
    try:
        private = open_record(record, user_id=user.user_id, client_id=client_id, kek=kek)
    except SpecError as exc:
        t.fail(f"{what}: the owner cannot open the fetched record: {exc} "
               f"(failure class {exc.failure_class})",
               expected="the record decrypts to the published private keys",
               actual=str(exc), exchange=t.exchanges[-1])
    if private != sealed.private:
        t.fail(f"{what}: the fetched record decrypts to other private keys",
               expected="the private keys the runner sealed", actual="other keys",
               exchange=t.exchanges[-1])


@check("key-derivation/application-key/round-trip", requirements=("KD-3", "KP-2", "KP-11"))
def application_key_round_trip(t: Probe) -> None:
    """A record sealed under kBr = HKDF(kB, client_id) comes back and opens with kBr."""
    user = t.user("kbr")
    sealed = t.publish(user, CLIENT)
    record = fetch_own(t, user, CLIENT, what="GET own application-key record")
    assert sealed.kb is not None
    kek = application_key(sealed.kb, CLIENT)
    open_or_fail(t, record, user=user, client_id=CLIENT, kek=kek, sealed=sealed,
                 what="opening the record with kBr")


@check("key-derivation/password-key/round-trip", requirements=("KD-6", "KP-2", "KP-11"))
def password_key_round_trip(t: Probe) -> None:
    """A record sealed under the Argon2id password key opens with the key re-derived from
    the salt and parameters the server returns."""
    user, sealed = password_record(t)
    record = fetch_own(t, user, CLIENT, what="GET own password record")
    kek_wire = record.get("encrypted_private_keys", {}).get("kek", {})
    try:
        params = Argon2Params(t=kek_wire["t"], m=kek_wire["m"], p=kek_wire["p"])
        salt = b64url_decode(kek_wire["salt"])
        kek = password_key(PASSWORD, salt, params, user.user_id, CLIENT)
    except (KeyError, TypeError, SpecError) as exc:
        t.fail(f"the returned kek cannot be used to re-derive the password key: {exc}",
               expected="the kek as published", actual=repr(kek_wire),
               exchange=t.exchanges[-1])
    open_or_fail(t, record, user=user, client_id=CLIENT, kek=kek, sealed=sealed,
                 what="opening the record with the password key")


@check("key-derivation/password-key/salt-and-params-unchanged", requirements=("KD-4", "KD-5"))
def salt_and_params_unchanged(t: Probe) -> None:
    """The salt and Argon2id parameters are stored beside the ciphertext and returned
    unchanged to the owner."""
    user, sealed = password_record(t)
    exchange = t.get_keypair(user.user_id, CLIENT, token=user.token)
    t.expect_status(exchange, 200, what="GET own password record")
    record = t.expect_json(exchange, what="GET own password record")
    published = sealed.record["encrypted_private_keys"]["kek"]
    got = record.get("encrypted_private_keys", {}).get("kek") if isinstance(record, dict) \
        else None
    diff = first_difference(published, got, "$.encrypted_private_keys.kek")
    if diff:
        t.fail(f"the stored KDF parameters changed: {diff}",
               expected=f"salt, t={RUNNER_ARGON2.t}, m={RUNNER_ARGON2.m}, "
                        f"p={RUNNER_ARGON2.p} as published",
               actual=describe(exchange), exchange=exchange)
    expect_same_record(t, exchange, sealed.record, what="GET own password record")


def password_kek(params: dict[str, Any], *, salt: str | None = None) -> dict[str, Any]:
    """A password kek member with the given Argon2id params (others at the minimum)."""
    return {"method": "password", "kdf": "argon2id",
            "salt": salt if salt is not None else b64_of_length(16),
            "t": params.get("t", 2), "m": params.get("m", 19456), "p": params.get("p", 1)}


OUT_OF_RANGE: dict[str, dict[str, int]] = {
    "t-zero": {"t": 0},
    "t-above-16": {"t": 17},
    "p-zero": {"p": 0, "m": 8},
    "p-above-16": {"p": 17, "m": 19456},
    "m-below-8p": {"p": 4, "m": 31},
    "m-above-4194304": {"m": 4194305},
    # The one floor of producers and consumers (KD-5): below it is refused too.
    "t-below-floor": {"t": 1},
    "m-below-floor": {"m": 19455},
    "m-8-kib": {"m": 8},
}


def _register_out_of_range(name: str, params: dict[str, int]) -> None:
    shown = ", ".join(f"{k}={v}" for k, v in params.items())

    def out_of_range(t: Probe) -> None:
        user = t.user("params")
        record = seal_with_application_key(user.user_id, CLIENT, 1).record
        bad = mutated(record, "encrypted_private_keys.kek", password_kek(params))
        exchange = t.put_keypair(user.user_id, CLIENT, bad, token=user.token)
        t.expect_rejected(exchange, 400, what=f"PUT a password record with Argon2id {shown}",
                          failure_class="params")
        expect_absent(t, user, CLIENT, what="GET after the refused PUT")

    out_of_range.__doc__ = f"Argon2id parameters {shown} are refused with 400 (params)."
    check(f"key-derivation/argon2-params/{name}", requirements=("KD-5",))(out_of_range)


for _name, _params in OUT_OF_RANGE.items():
    _register_out_of_range(_name, _params)


@check("key-derivation/argon2-params/non-integer", requirements=("KD-5",))
def params_non_integer(t: Probe) -> None:
    """Argon2id parameters that are not integers are refused with 400."""
    user = t.user("params")
    record = seal_with_application_key(user.user_id, CLIENT, 1).record
    # p=True would be 1, inside the range: only the integer test refuses it.
    for name, value in (("t", "2"), ("t", 2.5), ("t", True), ("m", None), ("p", [1]),
                        ("p", True)):
        bad = mutated(record, "encrypted_private_keys.kek", password_kek({name: value}))
        exchange = t.put_keypair(user.user_id, CLIENT, bad, token=user.token)
        t.expect_rejected(exchange, 400, what=f"PUT a password record with {name}={value!r}")


@check("key-derivation/argon2-params/range-boundaries-accepted", requirements=("KD-5",))
def params_boundaries_accepted(t: Probe) -> None:
    """Parameters on the edges of the accepted range (t=2..16, p=1..16,
    m=max(19456, 8p)..4194304) are stored: a consumer rejects only what lies outside."""
    user = t.user("bounds")
    for i, params in enumerate(({"t": 2, "m": 19456, "p": 1}, {"t": 16, "m": 19456, "p": 16},
                                {"t": 2, "m": 4194304, "p": 1})):
        client_id = f"bounds-{i}"
        record = seal_with_application_key(user.user_id, client_id, 1).record
        edge = mutated(record, "encrypted_private_keys.kek", password_kek(params))
        exchange = t.put_keypair(user.user_id, client_id, edge, token=user.token)
        shown = ", ".join(f"{k}={v}" for k, v in params.items())
        t.expect_status(exchange, 201, what=f"PUT a password record with Argon2id {shown}")


@check("key-derivation/salt/wrong-length", requirements=("KD-4",))
def salt_wrong_length(t: Probe) -> None:
    """A salt that is not 16 bytes is refused with 400 (length)."""
    user = t.user("salt")
    record = seal_with_application_key(user.user_id, CLIENT, 1).record
    for n in (15, 17, 0, 32):
        bad = mutated(record, "encrypted_private_keys.kek", password_kek({}, salt=b64_of_length(n)))
        exchange = t.put_keypair(user.user_id, CLIENT, bad, token=user.token)
        t.expect_rejected(exchange, 400, what=f"PUT a password record with a {n}-byte salt",
                          failure_class="length")
    expect_absent(t, user, CLIENT, what="GET after the refused PUTs")


BAD_IDENTIFIERS = {
    "65 characters": "a" * 65,
    "a space": "bad%20id",
    "a non-ASCII letter": "caf%C3%A9",
    "a plus sign": "a+b",
    "a NUL byte": "a%00b",
    "an at sign": "a@b",
}


@check("key-derivation/identifiers/path-user-id", requirements=("KD-2",))
def path_user_id(t: Probe) -> None:
    """A user_id in the path outside ^[A-Za-z0-9._~-]{1,64}$ is refused with 400, before
    authentication."""
    for name, bad in BAD_IDENTIFIERS.items():
        for method, path in (("GET", keypair_path(bad, CLIENT)),
                             ("DELETE", keypair_path(bad, CLIENT)),
                             ("GET", f"/v1/users/{bad}/apps/{CLIENT}/public-keys"),
                             ("GET", f"/v1/users/{bad}/apps")):
            exchange = t.request(method, path)
            t.expect_rejected(exchange, 400, what=f"{method} with a user_id with {name}")


@check("key-derivation/identifiers/path-client-id", requirements=("KD-2",))
def path_client_id(t: Probe) -> None:
    """A client_id in the path outside ^[A-Za-z0-9._~-]{1,64}$ is refused with 400, before
    authentication."""
    user = t.user("ids")
    for name, bad in BAD_IDENTIFIERS.items():
        for method, path in (("GET", keypair_path(user.user_id, bad)),
                             ("PUT", keypair_path(user.user_id, bad)),
                             ("GET", f"/v1/users/{user.user_id}/apps/{bad}/public-keys")):
            exchange = t.request(method, path)
            t.expect_rejected(exchange, 400, what=f"{method} with a client_id with {name}")


@check("key-derivation/identifiers/record-ids", requirements=("KD-2",))
def record_ids(t: Probe) -> None:
    """A record whose user_id or client_id is outside the identifier syntax is refused
    with 400 (decode), not merely as a mismatch with the path."""
    user = t.user("recids")
    record = seal_with_application_key(user.user_id, CLIENT, 1).record
    for member in ("user_id", "client_id"):
        for bad in ("a" * 65, "bad id", "", "caf\u00e9", "a/b"):
            exchange = t.put_keypair(user.user_id, CLIENT, mutated(record, member, bad),
                                     token=user.token)
            t.expect_rejected(exchange, 400, what=f"PUT a record with {member} {bad!r}",
                              failure_class="decode")
    expect_absent(t, user, CLIENT, what="GET after the refused PUTs")


@check("key-derivation/identifiers/longest-accepted", requirements=("KD-2",))
def longest_identifiers(t: Probe) -> None:
    """64-character identifiers using every punctuation mark allowed (._~-) work end to
    end: publish, fetch, public keys, application list."""
    tag = t.session.new_user_id("x")
    user_id = ("U._~-" + tag + "0" * 64)[:64]
    client_id = ("c-~._" + "Z9" * 40)[:64]
    owner = User(user_id=user_id, token=t.token_for(user_id))
    sealed = t.publish(owner, client_id)
    exchange = t.get_keypair(user_id, client_id, token=owner.token)
    t.expect_status(exchange, 200, what="GET a record with 64-character identifiers")
    expect_same_record(t, exchange, sealed.record, what="GET a record with long identifiers")
    exchange = t.get_public_keys(user_id, client_id)
    t.expect_status(exchange, 200, what="GET public keys with 64-character identifiers")
    exchange = t.get_apps(user_id, token=owner.token)
    apps = t.expect_ok_json(exchange, 200, what="GET the application list")
    listed = [a.get("client_id") for a in apps.get("apps", [])] if isinstance(apps, dict) else []
    if client_id not in listed:
        t.fail("the application list lacks the app with a 64-character client_id",
               expected=client_id, actual=describe(exchange), exchange=exchange)
