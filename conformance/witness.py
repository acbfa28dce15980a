"""The runner as a transparency-log witness (c2sp.org/tlog-witness).

A thin shell over keyflows.spec.hashchain_witness, served by the runner's account server
at <account server>/witness/add-checkpoint. The key server under test submits its
checkpoints here, as to any witness it is configured with (`capabilities.hashchain.
witnesses` lists it); the hashchain checks read what arrived: every submission, what was
answered, and the state the witness keeps per log.

The witness key is derived from a public label, so it is the same in every run and an
implementer configures it once: it proves nothing to anyone but the runner, which knows
what it cosigned.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from keyflows.conformance.parties import ExchangeLog
from keyflows.spec import hashchain_note as note
from keyflows.spec import hashchain_witness as witness
from keyflows.spec import primitives
from keyflows.spec.errors import SpecError

WITNESS_NAME = "conformance.keyflows.test/witness"
WITNESS_SEED = primitives.sha256(b"keyflows conformance runner witness key (public, test only)")
WITNESS_PATH = "/witness"
WITNESS_PARTY = "witness"


#: The ways the runner's witness can spoil its cosignature line (RunnerWitness.sabotage).
SABOTAGE = ("bad-signature", "no-newline", "hyphen", "extra-field", "noncanonical-base64",
            "timestamp-too-large", "timestamp-max", "short-signature")
#: Answers that are not well-formed signature lines although one line is the runner's
#: valid cosignature, or that have no line of the runner's key, or a 409 whose size is
#: not a decimal in 0..2^63-1; "at-size-limit" is well formed (exactly MAX_NOTE_LEN
#: bytes) and its cosignature must be kept (RunnerWitness.sabotage).
MALFORMED_ANSWERS = ("other-keys-only", "key-id-only-line", "key-name-with-plus",
                     "key-name-with-control", "not-base64", "not-utf8", "unterminated",
                     "oversized", "at-size-limit", "size-too-large")
#: Sabotaged answers whose cosignature is valid: the witness did cosign.
KEPT = ("timestamp-max", "at-size-limit")
_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
OTHER_KEY = "other.keyflows.test/witness"
_OTHER_SIGNATURE = note.b64std_encode(bytes(range(4 + 8 + 64)))  # a well-formed field


def _cosignature(text: str, timestamp: int) -> bytes:
    """key ID || u64be(timestamp) || Ed25519 signature, for any 64-bit timestamp."""
    verifier = runner_witness_verifier()
    message = f"{note.COSIGNATURE_HEADER}\ntime {timestamp}\n{text}".encode()
    return (verifier.key_id + timestamp.to_bytes(8, "big")
            + primitives.ed25519_sign(WITNESS_SEED, message))


def spoiled_line(kind: str, text: str) -> bytes:
    """The runner witness's cosignature line for checkpoint `text`, spoiled as `kind`."""
    now = int(time.time())
    raw = _cosignature(text, {"timestamp-too-large": 2**63, "timestamp-max": 2**63 - 1}
                       .get(kind, now))
    if kind == "bad-signature":
        raw = raw[:-1] + bytes([raw[-1] ^ 1])
    if kind == "short-signature":  # key ID, timestamp and 63 bytes of signature
        raw = raw[:-1]
    encoded = note.b64std_encode(raw)
    if kind == "noncanonical-base64":  # 76 bytes: "X==" with 4 unused bits in X; set one
        encoded = encoded[:-3] + _B64[_B64.index(encoded[-3]) ^ 1] + "=="
    dash = "-" if kind == "hyphen" else note.EM_DASH
    extra = " x" if kind == "extra-field" else ""
    end = "" if kind == "no-newline" else "\n"
    return f"{dash} {WITNESS_NAME} {encoded}{extra}{end}".encode()


def _padded(answer: bytes, total: int) -> bytes:
    """`answer` followed by lines of another key, `total` bytes in all."""
    out = bytearray(answer)
    line = f"{note.EM_DASH} {OTHER_KEY} {_OTHER_SIGNATURE}\n".encode()
    while total - len(out) >= 2 * len(line):
        out += line
    name = OTHER_KEY + "x" * (total - len(out) - len(line))
    out += f"{note.EM_DASH} {name} {_OTHER_SIGNATURE}\n".encode()
    assert len(out) == total
    return bytes(out)


def malformed_answer(kind: str, line: bytes) -> witness.Answer:
    """The runner witness's answer `kind` (one of MALFORMED_ANSWERS) around its valid
    cosignature `line`."""
    if kind == "size-too-large":
        return witness.Answer(409, f"{2**63}\n".encode("ascii"), witness.SIZE_MEDIA_TYPE)
    other = f"{note.EM_DASH} {OTHER_KEY} {_OTHER_SIGNATURE}\n".encode()
    extra = {
        "other-keys-only": other,
        "key-id-only-line": f"{note.EM_DASH} {OTHER_KEY} {note.b64std_encode(bytes(4))}\n"
                            .encode(),
        "key-name-with-plus": other.replace(b"/witness", b"+witness"),
        "key-name-with-control": other.replace(b"/witness", b"\x01witness"),
        "not-base64": other.replace(_OTHER_SIGNATURE.encode(), b"!" * 104),
        "not-utf8": other.replace(b"/witness", b"\xffwitness"),
        # a line without its newline, which would be well formed without its last byte
        "unterminated": other[:-1] + b"A",
    }
    if kind == "other-keys-only":
        body = other
    elif kind in extra:
        body = line + extra[kind]
    else:
        body = _padded(line, note.MAX_NOTE_LEN + (kind == "oversized"))
    return witness.Answer(200, body, witness.SIGNATURES_MEDIA_TYPE)


def runner_witness_verifier() -> note.Verifier:
    return note.witness_verifier(WITNESS_NAME, primitives.ed25519_public_key(WITNESS_SEED))


@dataclass(frozen=True)
class Submission:
    """One add-checkpoint request as received and answered."""

    at: float
    body: bytes
    status: int
    old_size: int | None
    size: int | None
    origin: str | None
    reason: str


class RunnerWitness:
    """Witness state in memory, per origin, changed under one lock (HC-42)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._logs: dict[str, list[note.Verifier]] = {}
        self._states: dict[str, witness.LogState] = {}
        self._submissions: list[Submission] = []
        self._sabotage: str | None = None
        self.log = ExchangeLog(WITNESS_PARTY)
        """What the server under test submitted to the witness, exchange by exchange."""

    @property
    def vkey(self) -> str:
        return runner_witness_verifier().vkey

    def trust(self, log_key: note.Verifier) -> None:
        """Witness the log with this key (learned from the capabilities of the target)."""
        with self._lock:
            keys = self._logs.setdefault(log_key.name, [])
            if log_key not in keys:
                keys.append(log_key)

    def submissions(self) -> list[Submission]:
        with self._lock:
            return list(self._submissions)

    def sabotage(self, kind: str | None) -> None:
        """Answer the next acceptable submission with a cosignature line spoiled as `kind`
        says (one of SABOTAGE or MALFORMED_ANSWERS; None: stop). All but those of KEPT are
        answers a log must drop (HC-39, HC-43), so the witness keeps its old state for
        them, as if it had cosigned nothing; those of KEPT hold a valid cosignature a log
        must keep."""
        if kind is not None and kind not in SABOTAGE + MALFORMED_ANSWERS:
            raise ValueError(f"unknown sabotage {kind!r}")
        with self._lock:
            self._sabotage = kind

    def state(self, origin: str) -> witness.LogState | None:
        with self._lock:
            return self._states.get(origin)

    def add_checkpoint(self, body: bytes) -> witness.Answer:
        """POST /witness/add-checkpoint: the spec decides, this stores and records."""
        old_size = size = origin = None
        with self._lock:
            try:
                request = witness.parse_add_checkpoint(body)
                old_size = request.old_size
                _, checkpoint = witness.checkpoint_of(request)
                size, origin = checkpoint.size, checkpoint.origin
                cosigned = witness.add_checkpoint(
                    request, logs=self._logs, state=self._states.get(origin),
                    name=WITNESS_NAME, seed=WITNESS_SEED, now=int(time.time()))
            except SpecError as exc:
                answer = witness.answer_for(exc)
                reason = f"{exc.failure_class}: {exc}"
            else:
                kind, self._sabotage = self._sabotage, None
                if kind is None:
                    self._states[origin] = cosigned.state
                    answer = witness.Answer(200, cosigned.body(), witness.SIGNATURES_MEDIA_TYPE)
                    reason = "cosigned"
                else:
                    assert origin is not None
                    if kind in SABOTAGE:
                        line = spoiled_line(kind, note.parse_note(request.checkpoint).text)
                        answer = witness.Answer(200, line, witness.SIGNATURES_MEDIA_TYPE)
                    else:
                        answer = malformed_answer(kind, cosigned.body())
                    if kind in KEPT:  # valid: the witness did cosign
                        self._states[origin] = cosigned.state
                    reason = f"sabotaged: {kind}"
            self._submissions.append(Submission(at=time.monotonic(), body=body,
                                                status=answer.status, old_size=old_size,
                                                size=size, origin=origin, reason=reason))
        return answer
