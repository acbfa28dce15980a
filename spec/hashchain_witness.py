"""Flow hashchain, step 6: witnesses (c2sp.org/tlog-witness, add-checkpoint).

The log submits each new checkpoint to its witnesses with a consistency proof from the
size each witness cosigned last; a witness checks the log's signature and the proof and
answers with its timestamped cosignature (c2sp.org/tlog-cosignature). The witness's
decisions (`add_checkpoint`) and the log's handling of the answers (`read_answer`) are
here; a witness server stores the state these functions return, atomically with the
check against the state they were given (HC-42), and maps each refusal to the status the
protocol names (`answer_for`). Sans-I/O: bodies in, bodies and states out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from keyflows.spec import hashchain_merkle as merkle
from keyflows.spec import hashchain_note as note
from keyflows.spec.errors import (
    BindingError,
    DecodeError,
    LengthError,
    LinkError,
    ParamsError,
    ProofError,
    SignatureError,
    SpecError,
)

ADD_CHECKPOINT = "add-checkpoint"
SIZE_MEDIA_TYPE = "text/x.tlog.size"
SIGNATURES_MEDIA_TYPE = "text/plain; charset=utf-8"
MAX_PROOF_LINES = 63
MAX_REQUEST_LEN = note.MAX_NOTE_LEN + 8 * 1024


# --- the request ---------------------------------------------------------------------------

@dataclass(frozen=True)
class AddCheckpoint:
    """An add-checkpoint request: the old size, a consistency proof from it, the note."""

    old_size: int
    proof: tuple[bytes, ...]
    checkpoint: bytes

    def to_bytes(self) -> bytes:
        """HC-40: "old <size>\\n", one base64 hash per line, an empty line, the note."""
        head = f"old {self.old_size}\n" + "".join(note.b64std_encode(h) + "\n"
                                                  for h in self.proof)
        return (head + "\n").encode("ascii") + self.checkpoint


def parse_add_checkpoint(body: bytes) -> AddCheckpoint:
    """HC-40: refuse (400, class decode) a body that is not old line, proof lines, empty
    line and a note; at most 63 proof lines of 32-byte hashes."""
    if len(body) > MAX_REQUEST_LEN:
        raise LengthError("the add-checkpoint body is too large", requirement="HC-40")
    split = body.find(b"\n\n")
    if split < 0:
        raise DecodeError("the request has no empty line before the checkpoint",
                          requirement="HC-40")
    try:
        lines = body[:split].decode("ascii").split("\n")
    except UnicodeDecodeError as exc:
        raise DecodeError("the request's head is not ASCII", requirement="HC-40") from exc
    if not lines[0].startswith("old "):
        raise DecodeError("the request starts with 'old <size>'", requirement="HC-40")
    old_size = note.parse_decimal(lines[0][4:], what="the old size", requirement="HC-40")
    if len(lines) - 1 > MAX_PROOF_LINES:
        raise DecodeError(f"more than {MAX_PROOF_LINES} consistency proof lines",
                          requirement="HC-40")
    proof = tuple(note.b64std_decode(line, what="a proof line", requirement="HC-40")
                  for line in lines[1:])
    if any(len(h) != merkle.HASH_LEN for h in proof):
        raise DecodeError("proof lines are 32-byte hashes", requirement="HC-40")
    return AddCheckpoint(old_size=old_size, proof=proof, checkpoint=body[split + 2:])


def checkpoint_of(request: AddCheckpoint) -> tuple[note.Note, note.Checkpoint]:
    """The submitted note and its checkpoint, both well formed (else 400)."""
    submitted = note.parse_note(request.checkpoint)
    return submitted, note.parse_checkpoint_text(submitted.text)


# --- the witness --------------------------------------------------------------------------------

@dataclass(frozen=True)
class LogState:
    """What a witness keeps per origin: the latest cosigned size and root, and that
    checkpoint with the log's and the witness's signatures (served to monitors)."""

    size: int
    root: bytes
    checkpoint: bytes


class SizeConflict(LinkError):
    """The old size is not the witness's latest cosigned size (409, body: that size)."""

    def __init__(self, message: str, *, size: int) -> None:
        super().__init__(message, requirement="HC-40")
        self.size = size


class UnknownOrigin(BindingError):
    """The witness does not witness this log (404)."""


@dataclass(frozen=True)
class Cosigned:
    """What the witness answers (200) and the state it must store before answering."""

    state: LogState
    cosignature: note.NoteSignature

    def body(self) -> bytes:
        return self.cosignature.line().encode("utf-8")


def add_checkpoint(request: AddCheckpoint, *, logs: Mapping[str, Sequence[note.Verifier]],
                   state: LogState | None, name: str, seed: bytes, now: int) -> Cosigned:
    """Step 6 (HC-40, HC-42), the witness, in the protocol's order: origin known (404);
    the log's signature (403); old size not above the new (400); old size equal to the
    latest cosigned size, or 0 for a new log (409); size 0 means the empty root (422);
    the consistency proof from the stored checkpoint (422). Then cosign, with `now`."""
    submitted, checkpoint = checkpoint_of(request)
    keys = logs.get(checkpoint.origin)
    if not keys:
        raise UnknownOrigin(f"origin {checkpoint.origin!r} is not witnessed here",
                            requirement="HC-40")
    note.verify_note(submitted, keys)
    if request.old_size > checkpoint.size:
        raise ParamsError("the old size is above the checkpoint size", requirement="HC-40")
    latest = 0 if state is None else state.size
    if request.old_size != latest:
        raise SizeConflict(f"the latest cosigned size is {latest}", size=latest)
    if checkpoint.size == 0 and checkpoint.root_hash != merkle.EMPTY_ROOT:
        raise ProofError("a checkpoint of size 0 must have the empty root", requirement="HC-40")
    if request.old_size == 0:
        if request.proof:
            raise ProofError("a proof from size 0 must be empty", requirement="HC-40")
    else:
        assert state is not None
        merkle.verify_consistency(size1=state.size, size2=checkpoint.size, root1=state.root,
                                  root2=checkpoint.root_hash, proof=request.proof)
    cosignature = note.cosign(submitted.text, name=name, seed=seed, timestamp=now)
    kept = note.add_signatures(note.Note(submitted.text, tuple(
        s for s in submitted.signatures if any(s.name == k.name and s.key_id == k.key_id
                                               for k in keys))), [cosignature])
    return Cosigned(state=LogState(size=checkpoint.size, root=checkpoint.root_hash,
                                   checkpoint=kept.to_bytes()),
                    cosignature=cosignature)


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes
    content_type: str


def answer_for(exc: SpecError) -> Answer:
    """HC-40: the status the protocol gives each refusal."""
    text = "text/plain; charset=utf-8"
    if isinstance(exc, SizeConflict):
        return Answer(409, f"{exc.size}\n".encode("ascii"), SIZE_MEDIA_TYPE)
    if isinstance(exc, UnknownOrigin):
        return Answer(404, b"unknown log origin\n", text)
    if isinstance(exc, SignatureError):
        return Answer(403, b"the checkpoint is not signed by a trusted key of the log\n", text)
    if isinstance(exc, ProofError):
        return Answer(422, f"{exc.args[0]}\n".encode(), text)
    return Answer(400, f"{exc.args[0]}\n".encode(), text)


# --- the log's side -------------------------------------------------------------------------------

def submission(*, old_size: int, checkpoint: bytes, proof: Sequence[bytes]) -> bytes:
    """HC-43: the body the log posts to a witness that cosigned `old_size` last."""
    return AddCheckpoint(old_size=old_size, proof=tuple(proof), checkpoint=checkpoint).to_bytes()


@dataclass(frozen=True)
class WitnessReply:
    """What the log learned from a witness: a verified cosignature, or the size the
    witness says it cosigned last (a 409), or neither (any other answer)."""

    cosignature: note.NoteSignature | None = None
    timestamp: int | None = None
    latest_size: int | None = None
    line: bytes | None = None
    """The cosignature's line exactly as the witness sent it: what the log serves."""


def read_answer(status: int, content_type: str, body: bytes, *, checkpoint_text: str,
                witness: note.Verifier) -> WitnessReply:
    """HC-43: keep a 200's cosignature only if the answer is well-formed signature lines
    and every line of the witness's key verifies under it (HC-38: lines of other keys
    are ignored); read a 409's size; treat anything else as no answer."""
    if status == 409 and content_type.split(";")[0].strip() == SIZE_MEDIA_TYPE:
        text = body.decode("ascii", "replace")
        if not text.endswith("\n"):
            return WitnessReply()
        try:
            return WitnessReply(latest_size=note.parse_decimal(
                text[:-1], what="the witness's size", requirement="HC-43"))
        except SpecError:
            return WitnessReply()
    if status != 200:
        return WitnessReply()
    try:
        lines = note.signature_lines(body)
        first = note.verify_note(note.Note(checkpoint_text, lines), [witness])[0]
    except SpecError:
        return WitnessReply()
    # signature_lines took a UTF-8 body ending with a newline: its lines are these
    raw = body[:-1].split(b"\n")[lines.index(first.signature)] + b"\n"
    return WitnessReply(cosignature=first.signature, timestamp=first.timestamp, line=raw)
