"""lock-layering attacks on capabilities a holder or a delegate can mount: rebinding a
stolen capability to the thief's key, a signature that leaves a required component out or
pairs labels that do not match, a grant for a capability that expired or was forged, and
unlock grants that were reshaped after the server made them.

Each one is refused: the uniform 401 for a credential (LOCK-29), 422 for a grant request
whose target does not hold (LOCK-28) and the one share failure for a grant that does not
open (LOCK-6, LOCK-28).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from keyflows.conformance.checks.lock_layering_capability import (
    ask_grant,
    expect_uniform_401,
    granted,
    reference_401,
)
from keyflows.conformance.checks.lock_layering_strict import (
    Fields,
    capability_of_length,
    signed_read,
)
from keyflows.conformance.checks.lock_layering_support import (
    HELD,
    NEEDS,
    SHARES,
    Signer,
    call,
    create_key,
    create_keystore,
    fresh_capability,
    key_op,
    sign,
    with_unchecked_caveat,
)
from keyflows.conformance.probe import Probe
from keyflows.conformance.registry import check
from keyflows.spec import lock_layering as spec
from keyflows.spec import lock_layering_capability as cap
from keyflows.spec.encoding import b64url_decode, b64url_encode

# --- holder binding -----------------------------------------------------------------------------


@check("lock-layering/holder/rebinding-refused", requirements=("LOCK-25", "LOCK-27",
                                                               "LOCK-29"), needs=NEEDS)
def rebinding_refused(t: Probe) -> None:
    """A thief who holds a bound capability cannot make it its own: appending a second
    holder caveat naming the thief's key (the chain stays valid) and signing with that
    key gets the uniform 401, as does a delegate caveat on a bearer capability (there is
    no holder to sign a delegation). The holder's own signed read works."""
    holder, thief = Signer.fresh(), Signer.fresh()
    ks = create_keystore(t, HELD, "rebind", holder=holder.public)
    reference = reference_401(t, ks)
    t.expect_status(call(t, ks, "GET", signer=holder), 200, what="read, signed by the holder")
    rebound = with_unchecked_caveat(ks, cap.holder_caveat(thief.public))
    expect_uniform_401(t, call(t, ks, "GET", capability=rebound, signer=thief), reference,
                       what="read with the bound capability plus holder=<thief's key>, "
                            "signed by the thief")
    bearer = create_keystore(t, HELD, "rebind-bearer")
    root = cap.decode_capability(bearer.capability)
    delegation = cap.delegate_caveat(thief.seed, bearer.keystore_id, root.mac, thief.public)
    expect_uniform_401(t, call(t, bearer, "GET", signer=thief,
                               capability=with_unchecked_caveat(bearer, delegation)),
                       reference_401(t, bearer),
                       what="read with a bearer capability plus a delegate caveat, signed "
                            "by the delegate")


def _relabel(field: str, label: str) -> Callable[[Fields], None]:
    def change(fields: Fields) -> None:
        fields[field] = fields[field].replace(f"{cap.SIGNATURE_LABEL}=", f"{label}=", 1)
    return change


def _without(field: str) -> Callable[[Fields], None]:
    def change(fields: Fields) -> None:
        del fields[field]
    return change


@check("lock-layering/holder/signature-coverage-strict", requirements=("LOCK-25", "LOCK-29"),
       needs=NEEDS)
def signature_coverage_strict(t: Probe) -> None:
    """The holder's valid signature is refused (the uniform 401) when it leaves out a
    component LOCK-25 requires (without Authorization it would bind no capability; without
    @path or @query it would serve any request), or when its Signature-Input and
    Signature do not both carry the label "kfc" (one of the two fields missing, or the
    other under another label)."""
    holder = Signer.fresh()
    ks = create_keystore(t, HELD, "coverage", holder=holder.public)
    reference = reference_401(t, ks)
    for left_out in cap.REQUIRED_COMPONENTS:
        covered = tuple(c for c in cap.REQUIRED_COMPONENTS if c != left_out)
        exchange = t.request("GET", ks.path, headers=signed_read(t, ks, holder,
                                                                  components=covered))
        expect_uniform_401(t, exchange, reference,
                           what=f"read, signed over every required component but {left_out}")
    cases: list[tuple[str, Callable[[Fields], None]]] = [
        ('a Signature under another label than the Signature-Input\'s "kfc"',
         _relabel("signature", "other")),
        ('a Signature-Input under another label than the Signature\'s "kfc"',
         _relabel("signature-input", "other")),
        ("no Signature field", _without("signature")),
        ("no Signature-Input field", _without("signature-input")),
    ]
    for what, change in cases:
        fields = signed_read(t, ks, holder)
        change(fields)
        expect_uniform_401(t, t.request("GET", ks.path, headers=fields), reference,
                           what=f"read, signed, with {what}")
    t.expect_status(t.request("GET", ks.path, headers=signed_read(t, ks, holder)), 200,
                    what="read, signed over every required component")


# --- unlock grants ------------------------------------------------------------------------------

def _reshaped(grant: str, change: Callable[[bytes], bytes], prefix: str = cap.GRANT_PREFIX
              ) -> str:
    return prefix + b64url_encode(change(b64url_decode(grant[len(cap.GRANT_PREFIX):])))


def _flip_mac(capability: str) -> str:
    decoded = cap.decode_capability(capability)
    mac = bytes([decoded.mac[0] ^ 1]) + decoded.mac[1:]
    return cap.encode_capability(cap.Capability(decoded.keystore_id, decoded.caveats, mac))


@check("lock-layering/delegation/grant-strict", requirements=("LOCK-28", "LOCK-24", "LOCK-6"),
       needs=NEEDS)
def grant_strict(t: Probe) -> None:
    """No grant is made for a capability that has expired, or expires this second (422,
    class expired), nor is one made or a revocation taken for a capability whose MAC does
    not verify (422, class mac) or is longer than 4096 characters (400, class length). A
    grant reshaped after the server made it -- another
    prefix, nothing after the prefix, a depth byte beyond the request's capability -- or
    sent on two field lines is the one share failure (422, LOCK-6)."""
    ks = create_keystore(t, SHARES, "grant-strict")
    key = create_key(t, ks, spec.KEY_ED25519)
    target = fresh_capability(ks, "ops=sign")
    expired = fresh_capability(ks, f"exp={int(time.time()) - 1}")
    t.expect_rejected(ask_grant(t, ks, expired), 422,
                      what="ask for a grant for a capability that has expired",
                      failure_class="expired")
    # The server's clock is not behind the runner's: at the server, now >= exp.
    ending = fresh_capability(ks, f"exp={int(time.time())}")
    t.expect_rejected(ask_grant(t, ks, ending), 422,
                      what="ask for a grant for a capability whose exp is now",
                      failure_class="expired")
    forged = _flip_mac(target)
    t.expect_rejected(ask_grant(t, ks, forged), 422,
                      what="ask for a grant for a capability whose MAC does not verify",
                      failure_class="mac")
    t.expect_rejected(call(t, ks, "POST", "/revocations", body={"capability": forged}), 422,
                      what="revoke a capability whose MAC does not verify",
                      failure_class="mac")
    # In a body the capability meets no bearer-token limit: its own 4096 holds (LOCK-11).
    long = capability_of_length(target, cap.MAX_CAPABILITY_LEN + 1)
    t.expect_rejected(call(t, ks, "POST", "/revocations", body={"capability": long}), 400,
                      what="revoke a capability of 4097 characters (its chain valid)",
                      failure_class="length")
    grant = granted(t, ks, target)
    depth = len(cap.decode_capability(target).caveats)
    reshaped = [
        ("a grant under another prefix", _reshaped(grant, lambda raw: raw, prefix="kfX1.")),
        ("a grant that is only its prefix", _reshaped(grant, lambda raw: b"")),
        ("a grant whose depth byte is one beyond the capability's caveats",
         _reshaped(grant, lambda raw: bytes([depth + 1]) + raw[1:])),
    ]
    message = {"message": b64url_encode(b"granted")}
    for what, text in reshaped:
        t.expect_rejected(key_op(t, ks, key, "sign", message, capability=target, grant=text),
                          422, what=f"sign with {what}", failure_class="share")
    t.expect_rejected(key_op(t, ks, key, "sign", message, capability=target, grant=grant,
                             headers={"Unlock-Grant": grant}), 422,
                      what="sign with the grant on two Unlock-Grant field lines",
                      failure_class="share")
    sign(t, ks, key, b"granted once", capability=target, grant=grant)


# --- a capability named in a request body ----------------------------------------------------

@check("lock-layering/capability/named-capability-strict", requirements=("LOCK-11", "LOCK-24"),
       needs=NEEDS)
def named_capability_strict(t: Probe) -> None:
    """A capability named in a request body (to revoke, or to ask a grant for) is parsed
    strictly before its chain is verified, and its refusals are told by class (not the
    uniform 401 of a credential): a keystore_id that is not an identifier is 400 class
    decode (not a binding failure of another keystore), as is a caveat of 257 characters
    whose chain link is valid (LOCK-11), and a MAC of 31 bytes is 400 class length (not a
    MAC that does not verify); a valid capability of another keystore is 422 class binding
    (not a MAC failure). A caveat of exactly 256 characters, with a valid link, is
    well-formed, so a capability attenuated with one is revoked (204)."""
    ks = create_keystore(t, HELD, "named-strict")
    body = cap.decode_capability(ks.capability)
    misnamed = cap.encode_capability(cap.Capability("not an id!", body.caveats, body.mac))
    t.expect_rejected(call(t, ks, "POST", "/revocations", body={"capability": misnamed}), 400,
                      what="revoke a capability whose keystore_id is not an identifier",
                      failure_class="decode")
    short_mac = cap.encode_capability(cap.Capability(body.keystore_id, body.caveats,
                                                     body.mac[:-1]))
    t.expect_rejected(call(t, ks, "POST", "/revocations", body={"capability": short_mac}), 400,
                      what="revoke a capability whose MAC is 31 bytes", failure_class="length")
    other = create_keystore(t, HELD, "named-other")
    t.expect_rejected(call(t, ks, "POST", "/revocations", body={"capability": other.capability}),
                      422, what="revoke the valid root capability of another keystore",
                      failure_class="binding")
    over = with_unchecked_caveat(ks, "x=" + "a" * (cap.MAX_CAVEAT_LEN - 1))
    t.expect_rejected(call(t, ks, "POST", "/revocations", body={"capability": over}), 400,
                      what=f"revoke a capability with a caveat of {cap.MAX_CAVEAT_LEN + 1} "
                           "characters (its chain link valid)", failure_class="decode")
    at_limit = with_unchecked_caveat(ks, "x=" + "a" * (cap.MAX_CAVEAT_LEN - 2))
    t.expect_status(call(t, ks, "POST", "/revocations", body={"capability": at_limit}), 204,
                    what=f"revoke a capability with a caveat of exactly {cap.MAX_CAVEAT_LEN} "
                         "characters (its chain link valid)")
