"""Failure classes: where a consumer must reject an input.

Every invalid vector names one of these classes, and every rejection raised by the
executable specification carries one, so an implementation is graded on *where* it
rejects (as in the age test kit), not merely on whether it does.
"""

from __future__ import annotations

FAILURE_CLASSES: dict[str, str] = {
    "decode": "The input is not a well-formed encoding (JSON, base64url, UTF-8, hex).",
    "length": "A field has the wrong length.",
    "params": "A parameter is outside the range the profile allows.",
    "point": "A public key is non-canonical or of low order.",
    "aead": "AEAD authentication failed (tampered ciphertext, nonce or AAD, or wrong key).",
    "mac": "A MAC did not verify.",
    "signature": "A signature did not verify.",
    "binding": "A value is bound to a different user, application, version or context.",
    "link": "A chain link or position does not match.",
    "replay": "A single-use value was presented again.",
    "expired": "A value was presented outside its validity period.",
    "authz": "The caller is not allowed to perform the operation.",
    "share": "A secret share is malformed, duplicated or inconsistent.",
    "proof": "A Merkle inclusion or consistency proof does not verify.",
    "history": "An identity's history in a log is not valid (a second creation, an update "
               "that does not follow the record it replaces).",
    "fork": "Two statements signed by a log cannot both be true (a fork or split view).",
    "witness": "A checkpoint lacks the witness cosignatures the verifier's policy requires.",
    "monitor": "An owner's own key-directory entry holds something its owner did not make "
               "(an unexpected version, a changed or vanished leaf, a change never "
               "published).",
}


class SpecError(Exception):
    """A rejection by the specification. `failure_class` is a key of FAILURE_CLASSES."""

    failure_class: str = ""

    def __init__(self, message: str, *, requirement: str | None = None) -> None:
        super().__init__(message)
        self.requirement = requirement

    def __str__(self) -> str:
        base = super().__str__()
        return f"{base} [{self.requirement}]" if self.requirement else base


class DecodeError(SpecError):
    failure_class = "decode"


class LengthError(SpecError):
    failure_class = "length"


class ParamsError(SpecError):
    failure_class = "params"


class PointError(SpecError):
    failure_class = "point"


class AeadError(SpecError):
    failure_class = "aead"


class MacError(SpecError):
    failure_class = "mac"


class SignatureError(SpecError):
    failure_class = "signature"


class BindingError(SpecError):
    failure_class = "binding"


class LinkError(SpecError):
    failure_class = "link"


class ReplayError(SpecError):
    failure_class = "replay"


class ExpiredError(SpecError):
    failure_class = "expired"


class AuthzError(SpecError):
    failure_class = "authz"


class ShareError(SpecError):
    failure_class = "share"


class ProofError(SpecError):
    failure_class = "proof"


class HistoryError(SpecError):
    failure_class = "history"


class ForkError(SpecError):
    failure_class = "fork"


class WitnessError(SpecError):
    failure_class = "witness"


class MonitorError(SpecError):
    failure_class = "monitor"


def _check_classes() -> None:
    for cls in SpecError.__subclasses__():
        assert cls.failure_class in FAILURE_CLASSES, cls


_check_classes()
