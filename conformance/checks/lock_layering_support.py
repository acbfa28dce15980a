"""The actors and requests the lock-layering checks share.

The runner plays the user's agent and the account server: for each user it draws a
32-byte secret, splits it 2-of-2 with the spec (keyflows.spec.lock_layering), keeps the
user's share for the `Secret-Share` header and serves the other at
`GET /v1/secret?sub=<user_id>`. It attenuates, binds and delegates capabilities offline
as any holder can (keyflows.spec.lock_layering_capability), and signs requests with a
holder's key (RFC 9421, keyflows.spec.http_signatures).
"""

from __future__ import annotations

import os
import re
import secrets
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from keyflows.conformance.clients import to_json
from keyflows.conformance.http import Exchange
from keyflows.conformance.probe import JSON_HEADERS, Probe, User, describe
from keyflows.spec import http_signatures, primitives
from keyflows.spec import lock_layering as spec
from keyflows.spec import lock_layering_capability as cap
from keyflows.spec.encoding import b64url_decode, b64url_encode
from keyflows.spec.errors import SpecError

FLOW = "lock-layering"
NEEDS = (FLOW,)
CAPABILITIES_MEMBER = "lock_layering"
SHARES = spec.SCENARIO_SHARES
HELD = spec.SCENARIO_SERVER_HELD
KEYSTORE_MEMBERS = {"keystore_id", "keystore_url", "controller", "scenario", "capability"}
B64URL_VALUE = re.compile(r'"([A-Za-z0-9_-]{22,})"')


@dataclass
class Keystore:
    owner: User
    scenario: str
    keystore_id: str
    capability: str
    user_share: str
    account_share: str
    secret: bytes
    exchanges: list[Exchange] = field(default_factory=list)

    @property
    def path(self) -> str:
        return f"/v1/keystores/{self.keystore_id}"

    def lock_key(self) -> bytes | None:
        """What the runner knows the user lock key is (scenario "shares" only)."""
        if self.scenario != SHARES:
            return None
        return spec.lock_key_from_secret(self.secret, self.keystore_id)


def lock_user(t: Probe, label: str) -> tuple[User, str, str, bytes]:
    """A user with a fresh secret: (user, user share, account share, secret)."""
    user = t.user(label)
    secret = os.urandom(spec.SECRET_LEN)
    account, mine = spec.split_user_secret(secret, os.urandom)
    t.session.accounts.set_share(user.user_id, b64url_encode(account))
    return user, b64url_encode(mine), b64url_encode(account), secret


def create_keystore(t: Probe, scenario: str = HELD, label: str = "lock", *,
                    holder: bytes | None = None) -> Keystore:
    user, share, account, secret = lock_user(t, label)
    headers = {"secret-share": share} if scenario == SHARES else {}
    body: dict[str, Any] = {"scenario": scenario}
    if holder is not None:
        body["holder"] = b64url_encode(holder)
    exchange = t.request("POST", f"/v1/users/{user.user_id}/keystores", token=user.token,
                         headers=headers, json_body=body)
    answer = t.expect_ok_json(exchange, 201, what=f"create a {scenario} keystore as its "
                                                    "controller")
    if not isinstance(answer, dict) or set(answer) != KEYSTORE_MEMBERS:
        t.fail("the keystore creation answer has the wrong members",
               expected=f"exactly {sorted(KEYSTORE_MEMBERS)}", actual=describe(exchange),
               exchange=exchange)
    keystore_id = answer["keystore_id"]
    root = expect_root_capability(t, exchange, answer.get("capability"), keystore_id, holder)
    problems = []
    if answer["keystore_url"] != f"/v1/keystores/{keystore_id}":
        problems.append(f"keystore_url is {answer['keystore_url']!r}")
    if exchange.header("location") != answer["keystore_url"]:
        problems.append("the Location header is not the keystore_url")
    if not expect_no_store(exchange):
        problems.append("the answer carries a capability without Cache-Control: no-store "
                        "(API-16)")
    if answer["controller"] != user.user_id or answer["scenario"] != scenario:
        problems.append("controller or scenario differ from the request")
    if problems:
        t.fail("; ".join(problems), expected="a keystore of this controller and scenario",
               actual=describe(exchange), exchange=exchange)
    return Keystore(user, scenario, keystore_id, root, share, account, secret)


def expect_no_store(exchange: Exchange) -> bool:
    """API-16: an answer carrying a capability or an unlock grant is not stored."""
    value = exchange.header("cache-control") or ""
    return "no-store" in [part.strip().lower() for part in value.split(",")]


def root_lifetime_bound(t: Probe) -> int:
    """The longest root lifetime the server says it uses, within the spec's bound."""
    member = (t.session.capabilities or {}).get(CAPABILITIES_MEMBER)
    declared = member.get("capability", {}).get("root_lifetime") if isinstance(
        member, dict) and isinstance(member.get("capability"), dict) else None
    if isinstance(declared, int) and not isinstance(declared, bool):
        return min(declared, cap.MAX_ROOT_LIFETIME)
    return cap.MAX_ROOT_LIFETIME


def expect_root_capability(t: Probe, exchange: Exchange, text: object, keystore_id: str,
                           holder: bytes | None) -> str:
    """A root capability: of this keystore, one exp caveat in the future within the
    server's root lifetime (LOCK-23), a holder caveat if one was asked for, nothing else."""
    try:
        capability = cap.decode_capability(text)
    except SpecError as exc:
        t.fail(f"the root capability does not decode: {exc}",
               expected='"kfc1." || base64url(JSON {"keystore_id", "caveats", "mac"}) (LOCK-11)',
               actual=describe(exchange), exchange=exchange)
    now = int(time.time())
    expected_len = 1 if holder is None else 2
    problems = []
    if capability.keystore_id != keystore_id:
        problems.append("it is for another keystore")
    expiry = None
    try:
        expiry = cap.not_after(capability)
    except SpecError:
        problems.append("a caveat does not parse")
    if len(capability.caveats) != expected_len or expiry is None:
        problems.append(f"it has caveats {list(capability.caveats)}")
    elif not now - 5 < expiry <= now + root_lifetime_bound(t) + 60:
        problems.append(f"its expiry {expiry} is not within the root lifetime from now ({now})")
    if holder is not None and cap.holder_caveat(holder) not in capability.caveats:
        problems.append("it is not bound to the holder key asked for")
    if problems:
        t.fail("the root capability is wrong: " + "; ".join(problems),
               expected="one exp caveat a root lifetime ahead (LOCK-13, LOCK-23)"
                        + (" and the holder caveat (LOCK-25)" if holder else ""),
               actual=describe(exchange), exchange=exchange)
    assert isinstance(text, str)
    return text


# --- requests ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Signer:
    """A holder's Ed25519 key (RFC 9421 signatures, LOCK-25)."""

    seed: bytes

    @property
    def public(self) -> bytes:
        return primitives.ed25519_public_key(self.seed)

    @staticmethod
    def fresh() -> Signer:
        return Signer(os.urandom(32))


def new_nonce() -> str:
    return secrets.token_urlsafe(18)


def signature_headers(t: Probe, signer: Signer, method: str, path: str,
                      headers: dict[str, str], body: bytes, *, created: int | None = None,
                      nonce: str | None = None) -> dict[str, str]:
    """The RFC 9421 fields the holder adds to a request (LOCK-25): Signature-Input,
    Signature and, with a body, Content-Digest. Host and path are as the runner's HTTP
    client sends them."""
    url = urlsplit(t.session.base_url + path)
    view = http_signatures.Request(method, url.netloc, url.path, url.query,
                                   tuple(headers.items()), body, url.scheme)
    return cap.sign_request(signer.seed, view, created=int(time.time()) if created is None
                            else created, nonce=nonce or new_nonce())


def call(t: Probe, ks: Keystore, method: str, suffix: str = "", *, body: Any = None,
         capability: str | None = None, share: str | None = "",
         raw_authorization: str | None = None, signer: Signer | None = None,
         grant: str | None = None, created: int | None = None, nonce: str | None = None,
         headers: dict[str, str] | None = None) -> Exchange:
    """A keystore request with the capability (default: the root one) and, for a shares
    keystore, the user's share (share="" means the right one, None means none) or an
    unlock grant; signed by `signer` when given."""
    sent: dict[str, str] = dict(headers or {})
    if raw_authorization is not None:
        sent["authorization"] = raw_authorization
    else:
        sent["authorization"] = f"Bearer {capability or ks.capability}"
    if grant is not None:
        sent["unlock-grant"] = grant
    elif ks.scenario == SHARES and share is not None:
        sent["secret-share"] = share or ks.user_share
    raw = b""
    if body is not None:
        raw = to_json(body)
        sent.update(JSON_HEADERS)
    if signer is not None:
        sent.update(signature_headers(t, signer, method, ks.path + suffix, sent, raw,
                                      created=created, nonce=nonce))
    exchange = t.request(method, ks.path + suffix, headers=sent,
                         body=raw if body is not None else None)
    ks.exchanges.append(exchange)
    return exchange


def create_key(t: Probe, ks: Keystore, key_type: str, **kwargs: Any) -> dict[str, Any]:
    exchange = call(t, ks, "POST", "/keys", body={"key_type": key_type}, **kwargs)
    description = t.expect_ok_json(exchange, 201, what=f"create an {key_type} key")
    expect_description(t, exchange, ks, description, key_type)
    return dict(description)


def expect_description(t: Probe, exchange: Exchange, ks: Keystore, description: Any,
                       key_type: str, *, version: int = 1) -> None:
    """A key's description: id, type, URL, current version and every version's public
    key (LOCK-14, LOCK-18, LOCK-22)."""
    members = {"key_id", "key_type", "key_url", "version", "versions"}
    asymmetric = key_type in spec.ASYMMETRIC_KEY_TYPES
    if asymmetric:
        members.add("public_key")
    if not isinstance(description, dict) or set(description) != members:
        t.fail(f"a {key_type} key is described with the wrong members",
               expected=f"exactly {sorted(members)} (LOCK-14, LOCK-18, LOCK-22)",
               actual=describe(exchange), exchange=exchange)
    problems = []
    if description["key_type"] != key_type:
        problems.append(f"key_type is {description['key_type']!r}")
    if description["key_url"] != f"{ks.path}/keys/{description['key_id']}":
        problems.append(f"key_url is {description['key_url']!r}")
    if description["version"] != version:
        problems.append(f"version is {description['version']!r}, not {version}")
    versions = description["versions"]
    if not isinstance(versions, list) or [v.get("version") if isinstance(v, dict) else None
                                          for v in versions] != list(range(1, version + 1)):
        problems.append("versions is not the list of versions 1..current")
    else:
        for entry in versions:
            wanted = {"version", "public_key"} if asymmetric else {"version"}
            if set(entry) != wanted or (asymmetric and not _is_b64url32(entry["public_key"])):
                problems.append(f"version entry {entry!r} is not {sorted(wanted)}")
        if asymmetric and versions and versions[-1].get("public_key") != description.get(
                "public_key"):
            problems.append("public_key is not the current version's")
    if asymmetric and not _is_b64url32(description.get("public_key")):
        problems.append("public_key is not 32 bytes of base64url")
    if problems:
        t.fail("; ".join(problems), expected=f"the description of an {key_type} key",
               actual=describe(exchange), exchange=exchange)


def _is_b64url32(value: object) -> bool:
    try:
        return isinstance(value, str) and len(b64url_decode(value)) == 32
    except SpecError:
        return False


def key_op(t: Probe, ks: Keystore, key: dict[str, Any], operation: str, body: Any = None,
           **kwargs: Any) -> Exchange:
    method = "GET" if operation == "export" else "DELETE" if operation == "delete" else "POST"
    suffix = f"/keys/{key['key_id']}" + ("" if operation in ("export", "delete")
                                         else f"/{operation}")
    return call(t, ks, method, suffix, body=body, **kwargs)


def decoded(t: Probe, exchange: Exchange, answer: Any, name: str, length: int | None = None
            ) -> bytes:
    value = answer.get(name) if isinstance(answer, dict) else None
    try:
        data = b64url_decode(value if isinstance(value, str) else "*")
    except SpecError:
        t.fail(f"the answer's {name} is not base64url", expected=f"{name}: base64url",
               actual=describe(exchange), exchange=exchange)
    if length is not None and len(data) != length:
        t.fail(f"the answer's {name} is {len(data)} bytes", expected=f"{length} bytes",
               actual=describe(exchange), exchange=exchange)
    return data


def expect_answer(t: Probe, exchange: Exchange, members: set[str], *, what: str,
                  version: int | None = None) -> dict[str, Any]:
    """A 200 JSON answer with exactly these members; with `version`, its version member
    must name it (LOCK-22)."""
    answer = t.expect_ok_json(exchange, 200, what=what)
    if not isinstance(answer, dict) or set(answer) != members:
        t.fail(f"{what}: the answer has the wrong members",
               expected=f"exactly {sorted(members)}", actual=describe(exchange),
               exchange=exchange)
    if version is not None and answer.get("version") != version:
        t.fail(f"{what}: the answer names version {answer.get('version')!r}",
               expected=f"version {version} (LOCK-22)", actual=describe(exchange),
               exchange=exchange)
    return answer


def sign(t: Probe, ks: Keystore, key: dict[str, Any], message: bytes, *, version: int = 1,
         **kwargs: Any) -> bytes:
    exchange = key_op(t, ks, key, "sign", {"message": b64url_encode(message)}, **kwargs)
    answer = expect_answer(t, exchange, {"signature", "version"}, version=version,
                           what="sign with an ed25519 key")
    return decoded(t, exchange, answer, "signature", 64)


def expect_share_refused(t: Probe, exchange: Exchange, *, what: str) -> None:
    t.expect_rejected(exchange, 422, what=what, failure_class="share")


def fresh_capability(ks: Keystore, *caveats: str, base: str | None = None) -> str:
    capability = cap.decode_capability(base or ks.capability)
    for caveat in caveats:
        capability = cap.attenuate(capability, caveat)
    return cap.encode_capability(capability)


def forged_capability(ks: Keystore, caveats: tuple[str, ...], mac_from: str) -> str:
    """A capability with these caveats and the MAC of another one (a holder's forgery)."""
    return cap.encode_capability(cap.Capability(ks.keystore_id, caveats,
                                                cap.decode_capability(mac_from).mac))


def with_unchecked_caveat(ks: Keystore, caveat: str, base: str | None = None) -> str:
    """Append a caveat no spec function would append, with a valid chain link."""
    capability = cap.decode_capability(base or ks.capability)
    return cap.encode_capability(cap.Capability(
        ks.keystore_id, (*capability.caveats, caveat), cap.extend_mac(capability.mac, caveat)))


def root_expiry(ks: Keystore) -> int:
    expiry = cap.not_after(cap.decode_capability(ks.capability))
    assert expiry is not None
    return expiry
