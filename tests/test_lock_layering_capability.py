"""Unit tests of the lock-layering capabilities (keyflows.spec.lock_layering_capability):
the chain, caveats, expiry on every capability, revocation ids, holder binding with RFC
9421 signatures, delegation and unlock grants."""

from __future__ import annotations

import pytest

from keyflows.reference.config import ConfigError, Settings, load_settings
from keyflows.spec import http_signatures as hs
from keyflows.spec import lock_layering_capability as C
from keyflows.spec import primitives as P
from keyflows.spec.encoding import b64url_encode, labelled_context
from keyflows.spec.errors import (
    AuthzError,
    BindingError,
    DecodeError,
    ExpiredError,
    LengthError,
    MacError,
    ParamsError,
    ShareError,
    SignatureError,
)


def settings_with_root_lifetime(lifetime: int) -> Settings:
    """The server's settings, checked at start-up (LOCK-23: the root lifetime's range)."""
    return load_settings(host=None, port=None, db="unused.db", environ={},
                         account_server="http://127.0.0.1:1", max_body_bytes=None,
                         root_capability_lifetime=str(lifetime))


KS = "ks-Alpha"
ROOT = bytes(range(200, 232))
EXP = 10_000
HOLDER_SEED = bytes(range(40, 72))
HOLDER = P.ed25519_public_key(HOLDER_SEED)
DELEGATE_SEED = bytes(range(80, 112))
DELEGATE = P.ed25519_public_key(DELEGATE_SEED)


def root(holder: bytes | None = None) -> C.Capability:
    return C.mint_root_capability(ROOT, KS, EXP, holder)


class TestChain:
    def test_root_chain_and_encoding(self) -> None:
        cap = root()
        assert cap.caveats == (f"exp={EXP}",)
        mac0 = P.hmac_sha256(ROOT, labelled_context("capability", KS.encode()))
        assert cap.mac == P.hmac_sha256(mac0, labelled_context("capability-caveat",
                                                               f"exp={EXP}".encode()))
        text = C.encode_capability(cap)
        assert text.startswith("kfc1.")
        assert C.decode_capability(text) == cap
        C.check_capability(text, ROOT, KS, "create-key", None, now=0)

    def test_root_lifetime_bounds(self) -> None:
        assert C.root_not_after(100, 60) == 160
        for lifetime in (C.MIN_ROOT_LIFETIME, C.MAX_ROOT_LIFETIME):
            assert settings_with_root_lifetime(lifetime).root_capability_lifetime == lifetime
        for lifetime in (C.MIN_ROOT_LIFETIME - 1, C.MAX_ROOT_LIFETIME + 1):
            with pytest.raises(ConfigError, match="root capability lifetime"):
                settings_with_root_lifetime(lifetime)

    def test_attenuation_needs_no_root_key(self) -> None:
        cap = C.attenuate(root(), C.ops_caveat(["sign", "verify"]))
        cap = C.attenuate(cap, C.key_caveat("k1"))
        chain = C.capability_chain(ROOT, KS, cap.caveats)
        assert chain[-1] == cap.mac
        assert C.verify_capability(cap, ROOT, KS) == chain

    def test_caveats_narrow(self) -> None:
        cap = C.attenuate(C.attenuate(root(), "ops=sign,verify"), "key=k1")
        cap = C.attenuate(cap, "exp=1000")
        C.authorize(cap, "sign", "k1", now=999)
        with pytest.raises(ExpiredError):
            C.authorize(cap, "sign", "k1", now=1000)
        for operation, key_id in (("decrypt", "k1"), ("sign", "k2")):
            with pytest.raises(AuthzError):
                C.authorize(cap, operation, key_id, now=0)
        with pytest.raises(AuthzError):
            C.authorize(cap, "create-key", None, now=0)

    def test_a_capability_without_expiry_is_refused(self) -> None:
        caveats = ("ops=read",)
        bare = C.Capability(KS, caveats, C.capability_chain(ROOT, KS, caveats)[-1])
        C.verify_capability(bare, ROOT, KS)
        with pytest.raises(AuthzError) as error:
            C.authorize(bare, "read", None, now=0)
        assert error.value.requirement == "LOCK-23"

    def test_a_later_exp_does_not_outlive_the_root(self) -> None:
        cap = C.attenuate(root(), f"exp={EXP * 2}")
        assert C.not_after(cap) == EXP
        with pytest.raises(ExpiredError):
            C.authorize(cap, "read", None, now=EXP)

    def test_removed_reordered_or_changed_caveats_fail(self) -> None:
        cap = C.attenuate(C.attenuate(root(), "ops=sign"), "exp=1000")
        base = root().caveats
        for caveats in ((*base, "exp=1000"), (*base, "ops=sign"), (*base, "exp=1000", "ops=sign"),
                        (*base, "ops=sign,decrypt", "exp=1000"), ("ops=sign", "exp=1000"), ()):
            with pytest.raises(MacError):
                C.verify_capability(C.Capability(KS, caveats, cap.mac), ROOT, KS)

    def test_other_keystore_and_other_root(self) -> None:
        cap = root()
        with pytest.raises(BindingError):
            C.verify_capability(cap, ROOT, "ks-Beta")
        with pytest.raises(MacError):
            C.verify_capability(cap, bytes(32), KS)

    def test_unknown_caveat_denies(self) -> None:
        caveats = (*root().caveats, "aud=bob")
        cap = C.Capability(KS, caveats, C.capability_chain(ROOT, KS, caveats)[-1])
        C.verify_capability(cap, ROOT, KS)
        with pytest.raises(AuthzError):
            C.authorize(cap, "read", None, now=0)
        with pytest.raises(AuthzError):
            C.attenuate(root(), "aud=bob")

    @pytest.mark.parametrize("caveat", ["ops=", "ops=sign,sign", "ops=fly", "exp=01",
                                        "exp=-1", "exp=99999999999999999999", "key=a b",
                                        "Ops=sign", "ops=sign ", "key=" + "k" * 65,
                                        "holder=AAAA", "delegate=AAAA",
                                        "delegate=" + b64url_encode(bytes(32))])
    def test_malformed_caveats(self, caveat: str) -> None:
        with pytest.raises((DecodeError, AuthzError)):
            C.attenuate(root(), caveat)

    def test_caveat_count_limit(self) -> None:
        cap = root()
        for _ in range(C.MAX_CAVEATS - 1):
            cap = C.attenuate(cap, "ops=sign")
        with pytest.raises(ParamsError):
            C.attenuate(cap, "ops=sign")

    @pytest.mark.parametrize("text", [
        "kfc2.e30", "kfc1.***", "kfc1." + b64url_encode(b"[]"),
        "kfc1." + b64url_encode(b"not json"),
        "kfc1." + b64url_encode(b'{"keystore_id":"ks-Alpha","caveats":[],"mac":"AAAA"}'),
        "kfc1." + b64url_encode(b'{"keystore_id":"ks-Alpha","caveats":[],"mac":"'
                                + b64url_encode(bytes(32)).encode() + b'","x":1}'),
        "kfc1." + b64url_encode(b'{"keystore_id":"ks-Alpha","keystore_id":"ks-Alpha",'
                                b'"caveats":[],"mac":"' + b64url_encode(bytes(32)).encode()
                                + b'"}'),
        "kfc1." + "A" * 5000, 42,
    ])
    def test_decode_errors(self, text: object) -> None:
        with pytest.raises((DecodeError, LengthError)):
            C.decode_capability(text)


class TestRevocation:
    def test_ids_name_every_link_after_the_first(self) -> None:
        cap = C.attenuate(root(), "ops=read")
        links = C.verify_capability(cap, ROOT, KS)
        ids = C.revocation_ids(KS, links)
        assert len(ids) == 2
        assert ids[-1] == P.sha256(labelled_context("capability-revocation", KS.encode(),
                                                    cap.mac))
        C.check_not_revoked(ids, set())
        with pytest.raises(AuthzError):  # revoking the root revokes its attenuations
            C.check_not_revoked(ids, {C.revocation_id(KS, root().mac)})

    def test_only_ancestors_act_on_a_capability(self) -> None:
        parent = C.attenuate(root(), "ops=read,revoke")
        child = C.attenuate(parent, "exp=5")
        sibling = C.attenuate(root(), "ops=read")
        assert C.is_attenuation_of(child, parent) and C.is_attenuation_of(parent, parent)
        C.check_may_act_on(parent, child, requirement="LOCK-24")
        for acting, target in ((parent, sibling), (child, parent)):
            with pytest.raises(AuthzError):
                C.check_may_act_on(acting, target, requirement="LOCK-24")


def signed(cap: C.Capability, seed: bytes, *, body: bytes = b"", created: int = 1000,
           nonce: str = "n" * 22, method: str = "POST", path: str = "/v1/keystores/ks/keys",
           **sign_args: object) -> hs.Request:
    headers = [("authorization", f"Bearer {C.encode_capability(cap)}"),
               ("host", "kms.example")]
    request = hs.Request(method, "kms.example", path, "", tuple(headers), body)
    fields = C.sign_request(seed, request, created=created, nonce=nonce, **sign_args)  # type: ignore[arg-type]
    return hs.Request(method, "kms.example", path, "", (*headers, *fields.items()), body)


class TestHolder:
    def test_holder_signs_the_request(self) -> None:
        cap = root(HOLDER)
        request = signed(cap, HOLDER_SEED, body=b'{"key_type":"ed25519"}')
        auth = C.check_capability(C.encode_capability(cap), ROOT, KS, "create-key", None,
                                  now=1000, request=request)
        assert auth.holder == HOLDER
        assert auth.nonce == C.NonceClaim(C.nonce_id(HOLDER, "n" * 22),
                                          1000 + C.SIGNATURE_MAX_AGE)

    def test_unsigned_or_other_signer_or_changed_request(self) -> None:
        cap = root(HOLDER)
        text = C.encode_capability(cap)
        other_seed = bytes(32)
        good = signed(cap, HOLDER_SEED, body=b"{}")
        attempts: list[tuple[hs.Request | None, type[Exception]]] = [
            (None, AuthzError),
            (hs.Request("POST", "kms.example", "/v1/keystores/ks/keys", "",
                        (("authorization", f"Bearer {text}"),), b"{}"), AuthzError),
            (signed(cap, other_seed, body=b"{}"), BindingError),
            (hs.Request(good.method, good.authority, "/v1/keystores/ks/wrap", good.query,
                        good.headers, good.body), SignatureError),
            (hs.Request(good.method, good.authority, good.path, good.query, good.headers,
                        b"[]"), BindingError),
        ]
        for request, error in attempts:
            with pytest.raises(error):
                C.check_capability(text, ROOT, KS, "create-key", None, now=1000,
                                   request=request)

    @pytest.mark.parametrize(("created", "error"), [(1000 - 301, ExpiredError),
                                                    (1000 + 61, ExpiredError),
                                                    (1000 - 300, None), (1000 + 60, None)])
    def test_created_window(self, created: int, error: type[Exception] | None) -> None:
        cap = root(HOLDER)
        request = signed(cap, HOLDER_SEED, created=created)
        text = C.encode_capability(cap)
        if error is None:
            C.check_capability(text, ROOT, KS, "create-key", None, now=1000, request=request)
        else:
            with pytest.raises(error):
                C.check_capability(text, ROOT, KS, "create-key", None, now=1000,
                                   request=request)

    @pytest.mark.parametrize("nonce", ["short", "n" * 65, "n" * 21 + "!"])
    def test_nonce_syntax(self, nonce: str) -> None:
        cap = root(HOLDER)
        with pytest.raises(AuthzError):
            C.check_capability(C.encode_capability(cap), ROOT, KS, "create-key", None,
                               now=1000, request=signed(cap, HOLDER_SEED, nonce=nonce))

    def test_required_components_and_tag(self) -> None:
        cap = root(HOLDER)
        text = C.encode_capability(cap)
        request = hs.Request("GET", "kms.example", "/p", "",
                             (("authorization", f"Bearer {text}"),), b"")
        for components, params in (
                (("@method", "@path", "@query", "authorization"),
                 (("created", 1000), ("nonce", "n" * 22), ("keyid", b64url_encode(HOLDER)),
                  ("tag", C.SIGNATURE_TAG))),
                (C.REQUIRED_COMPONENTS, (("created", 1000), ("nonce", "n" * 22),
                                         ("keyid", b64url_encode(HOLDER)), ("tag", "other"))),
                (C.REQUIRED_COMPONENTS, (("created", 1000), ("nonce", "n" * 22),
                                         ("keyid", b64url_encode(HOLDER)),
                                         ("tag", C.SIGNATURE_TAG), ("extra", 1)))):
            entry = hs.SignatureInput(components, params)
            sig = hs.sign_ed25519(HOLDER_SEED, request, entry)
            fields = hs.signature_fields("kfc", entry, sig)
            full = hs.Request("GET", "kms.example", "/p", "",
                              (*request.headers, *fields.items()), b"")
            with pytest.raises(AuthzError):
                C.check_capability(text, ROOT, KS, "read", None, now=1000, request=full)

    def test_a_second_holder_caveat_is_refused(self) -> None:
        cap = C.attenuate(root(HOLDER), C.holder_caveat(DELEGATE))
        with pytest.raises(AuthzError):
            C.holder_of(cap, C.verify_capability(cap, ROOT, KS))


class TestDelegation:
    def test_the_holder_hands_over(self) -> None:
        cap = C.delegate(C.attenuate(root(HOLDER), "ops=sign"), HOLDER_SEED, DELEGATE)
        links = C.verify_capability(cap, ROOT, KS)
        assert C.holder_of(cap, links) == DELEGATE
        request = signed(cap, DELEGATE_SEED, path="/v1/keystores/ks/keys/k1/sign", body=b"{}")
        C.check_capability(C.encode_capability(cap), ROOT, KS, "sign", "k1", now=1000,
                           request=request)
        with pytest.raises(BindingError):  # the old holder is not the holder any more
            C.check_capability(C.encode_capability(cap), ROOT, KS, "sign", "k1", now=1000,
                               request=signed(cap, HOLDER_SEED, body=b"{}"))

    def test_a_delegation_not_signed_by_the_holder(self) -> None:
        cap = C.delegate(root(HOLDER), bytes(32), DELEGATE)
        with pytest.raises(SignatureError):
            C.holder_of(cap, C.verify_capability(cap, ROOT, KS))

    def test_a_delegation_moved_to_another_capability(self) -> None:
        source = C.delegate(C.attenuate(root(HOLDER), "ops=sign"), HOLDER_SEED, DELEGATE)
        moved = C.attenuate(C.attenuate(root(HOLDER), "ops=read"), source.caveats[-1])
        with pytest.raises(SignatureError):
            C.holder_of(moved, C.verify_capability(moved, ROOT, KS))

    def test_delegation_needs_a_holder(self) -> None:
        cap = C.attenuate(root(), C.delegate_caveat(HOLDER_SEED, KS, root().mac, DELEGATE))
        with pytest.raises(AuthzError):
            C.holder_of(cap, C.verify_capability(cap, ROOT, KS))


GRANT_KEY = bytes(range(100, 132))
LOCK_KEY = bytes(range(7, 39))


class TestGrants:
    def _grant(self, cap: C.Capability, now: int = 0) -> str:
        return C.make_unlock_grant(GRANT_KEY, bytes(12), LOCK_KEY, KS, cap, now)

    def test_opens_for_the_capability_and_its_attenuations(self) -> None:
        cap = C.attenuate(root(), "ops=sign")
        grant = self._grant(cap)
        assert grant.startswith("kfg1.")
        for presented in (cap, C.attenuate(cap, "key=k1")):
            links = C.verify_capability(presented, ROOT, KS)
            assert C.open_unlock_grant(GRANT_KEY, grant, KS, links, now=0) == LOCK_KEY

    def test_refused_like_a_bad_share(self) -> None:
        cap = C.attenuate(root(), "ops=sign")
        grant = self._grant(cap)
        sibling = C.attenuate(root(), "ops=verify")
        links = C.verify_capability(cap, ROOT, KS)
        tampered = grant[:-2] + ("A" if grant[-2] != "A" else "B") + grant[-1]
        for text, presented_links, keystore, now in (
                (grant, C.verify_capability(sibling, ROOT, KS), KS, 0),
                (grant, C.verify_capability(root(), ROOT, KS), KS, 0),
                (grant, links, KS, EXP),
                (grant, links, "ks-Beta", 0),
                (tampered, links, KS, 0),
                ("kfg1.AAAA", links, KS, 0),
                (None, links, KS, 0)):
            with pytest.raises(ShareError):
                C.open_unlock_grant(GRANT_KEY, text, keystore, presented_links, now=now)

    def test_lasts_as_long_as_its_capability(self) -> None:
        cap = C.attenuate(root(), "exp=50")
        assert C.grant_not_after(cap, 0) == 50
        with pytest.raises(ExpiredError):
            self._grant(cap, now=50)

    def test_unlock_method(self) -> None:
        assert C.unlock_method(["s"], []) == C.UNLOCK_BY_SHARE
        assert C.unlock_method([], []) == C.UNLOCK_BY_SHARE
        assert C.unlock_method([], ["g"]) == C.UNLOCK_BY_GRANT
        for shares, grants in ((["s"], ["g"]), ([], ["g", "g"])):
            with pytest.raises(ShareError):
                C.unlock_method(shares, grants)
