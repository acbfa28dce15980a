"""Flow: envelope, steps 3 and 4 -- the content key, its commitment, and the STREAM payload.

Step 3. Per message the sender draws a 16-byte message_id and a 32-byte content key K
(ENV-4) and derives, with PRK = HKDF-Extract(salt = message_id, IKM = K)::

    payload_key = HKDF-Expand(PRK, labelled_context("envelope-payload-key"), 32)
    commitment  = HKDF-Expand(PRK, labelled_context("envelope-commitment"), 32)

The commitment travels in the header every recipient entry authenticates; a recipient
recomputes it from the K it unwrapped and refuses a mismatch (ENV-8). HMAC-SHA256 is
collision resistant in its key (SHA-256 is), so no one -- the sender included -- can find
two content keys with one commitment: every recipient who accepts a message holds the
same K, hence the same payload_key and plaintext.

Step 4. The payload is encrypted once under payload_key as a STREAM (ENV-23), as age
does: the plaintext is cut into chunks of CHUNK_SIZE bytes, the last one shorter or full
and empty only when the whole plaintext is empty; chunk i is::

    AES-256-GCM(payload_key, nonce = u88be(i) || last, chunk, aad = empty)

with last = 0x01 on the final chunk and 0x00 on every other. Truncation (a missing final
chunk), extension, reordering and chunks from another message (another key) all fail
authentication (ENV-24); the recipient also knows the exact ciphertext length from the
header, so a short or long payload fails before any decryption (ENV-20).

Encryption and decryption run in constant memory: `StreamSealer` and `StreamOpener` take
and return one chunk at a time (h11-like: the caller owns all I/O), so a multi-gigabyte
payload never sits in memory.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from keyflows.spec import primitives
from keyflows.spec.encoding import labelled_context
from keyflows.spec.errors import AeadError, LengthError, MacError, ParamsError
from keyflows.spec.key_derivation import LABELS

CONTENT_KEY_LEN = 32
MESSAGE_ID_LEN = 16
COMMITMENT_LEN = 32
CHUNK_SIZE = 64 * 1024
TAG_LEN = primitives.GCM_TAG_LEN
CHUNK_CIPHERTEXT_SIZE = CHUNK_SIZE + TAG_LEN
MAX_CHUNKS = 2**88  # the 11-byte counter
LAST = b"\x01"
NOT_LAST = b"\x00"

LABEL_PAYLOAD_KEY = "envelope-payload-key"
LABEL_COMMITMENT = "envelope-commitment"

for _label in (LABEL_PAYLOAD_KEY, LABEL_COMMITMENT):  # KD-7: every label is registered
    if _label not in LABELS:
        raise RuntimeError(f"label {_label!r} is not in key_derivation.LABELS")


# --- step 3: the content key schedule ------------------------------------------------------

@dataclass(frozen=True)
class ContentKeys:
    """Step 3: what a content key yields for one message."""

    prk: bytes
    payload_key: bytes
    commitment: bytes


def content_keys(content_key: bytes, message_id: bytes) -> ContentKeys:
    """Step 3 (ENV-4): PRK = HKDF-Extract(message_id, K); payload key and commitment."""
    if len(content_key) != CONTENT_KEY_LEN:
        raise LengthError(f"a content key is {CONTENT_KEY_LEN} bytes", requirement="ENV-4")
    if len(message_id) != MESSAGE_ID_LEN:
        raise LengthError(f"a message id is {MESSAGE_ID_LEN} bytes", requirement="ENV-4")
    prk = primitives.hkdf_extract(message_id, content_key)
    return ContentKeys(
        prk=prk,
        payload_key=primitives.hkdf_expand(prk, labelled_context(LABEL_PAYLOAD_KEY), 32),
        commitment=primitives.hkdf_expand(prk, labelled_context(LABEL_COMMITMENT),
                                          COMMITMENT_LEN))


def check_commitment(content_key: bytes, message_id: bytes, commitment: bytes) -> ContentKeys:
    """Step 10 (ENV-8): the unwrapped K must yield the header's commitment (failure class
    mac), compared in constant time, before any payload byte is decrypted."""
    keys = content_keys(content_key, message_id)
    if not primitives.constant_time_equal(keys.commitment, commitment):
        raise MacError("the content key does not match the envelope's commitment",
                       requirement="ENV-8")
    return keys


# --- step 4: STREAM lengths ----------------------------------------------------------------

def chunk_count(plaintext_length: int) -> int:
    """Chunks of a plaintext: at least one (an empty plaintext is one empty final chunk)."""
    if plaintext_length < 0:
        raise ParamsError("a length is not negative")
    return max(1, -(-plaintext_length // CHUNK_SIZE))


def ciphertext_length(plaintext_length: int) -> int:
    """Step 4 (ENV-23): plaintext length + 16 bytes per chunk."""
    return plaintext_length + TAG_LEN * chunk_count(plaintext_length)


def plaintext_length(ciphertext_len: int, *, requirement: str = "ENV-23") -> int:
    """Step 4 (ENV-23): the inverse of ciphertext_length, refusing a length no STREAM has
    (shorter than one tag, or a final chunk of only a tag after full chunks: length)."""
    if ciphertext_len < TAG_LEN:
        raise LengthError(f"a STREAM payload is at least {TAG_LEN} bytes", requirement=requirement)
    full, rest = divmod(ciphertext_len, CHUNK_CIPHERTEXT_SIZE)
    if rest == 0:
        return full * CHUNK_SIZE  # the last chunk is full
    if rest < TAG_LEN or (rest == TAG_LEN and full > 0):
        raise LengthError(f"{ciphertext_len} bytes is not the length of a STREAM payload",
                          requirement=requirement)
    return full * CHUNK_SIZE + rest - TAG_LEN


def chunk_nonce(index: int, last: bool) -> bytes:
    """Step 4 (ENV-23): u88be(index) || (0x01 if last else 0x00)."""
    if not 0 <= index < MAX_CHUNKS:
        raise ParamsError("STREAM chunk counter out of range")
    return index.to_bytes(11, "big") + (LAST if last else NOT_LAST)


# --- step 4: sealing and opening, one chunk at a time --------------------------------------

class StreamSealer:
    """Step 4 (ENV-23), sender side: feed plaintext pieces of any size, get ciphertext
    chunks back; `finish()` emits the final chunk. Holds at most one chunk of plaintext:
    a full chunk is kept back until it is known whether more follows."""

    def __init__(self, payload_key: bytes) -> None:
        self._aead = primitives.Aes256Gcm(payload_key)
        self._index = 0
        self._pending = bytearray()
        self._finished = False

    def update(self, data: bytes) -> list[bytes]:
        """The ciphertext chunks completed by `data`, never the final one."""
        if self._finished:
            raise ParamsError("the stream is already finished")
        out: list[bytes] = []
        view = memoryview(data)
        if self._pending:
            take = view[:CHUNK_SIZE - len(self._pending)]
            self._pending += take
            view = view[len(take):]
            if not view:
                return out
            out.append(self._seal(self._pending, last=False))
            self._pending = bytearray()
        while len(view) > CHUNK_SIZE:
            out.append(self._seal(view[:CHUNK_SIZE], last=False))
            view = view[CHUNK_SIZE:]
        self._pending += view
        return out

    def finish(self) -> bytes:
        """The final chunk (empty only if the whole plaintext was empty)."""
        if self._finished:
            raise ParamsError("the stream is already finished")
        self._finished = True
        return self._seal(self._pending, last=True)

    def _seal(self, chunk: bytes | bytearray | memoryview, *, last: bool) -> bytes:
        nonce = chunk_nonce(self._index, last)
        self._index += 1
        return self._aead.encrypt(nonce, chunk, b"")


def seal_stream(payload_key: bytes, pieces: Iterable[bytes]) -> Iterator[bytes]:
    """Step 4: the ciphertext chunks of a plaintext given as pieces of any size."""
    sealer = StreamSealer(payload_key)
    for piece in pieces:
        yield from sealer.update(piece)
    yield sealer.finish()


def encrypt_payload(payload_key: bytes, plaintext: bytes) -> bytes:
    """Step 4 for a plaintext in memory (vectors, small messages)."""
    return b"".join(seal_stream(payload_key, [plaintext]))


class StreamOpener:
    """Steps 4, 10 (ENV-20, ENV-24), recipient side: a state machine fed ciphertext pieces
    of any size. It knows the declared ciphertext length, hence which chunk is final; each
    chunk's plaintext is released only once that chunk authenticates at its position, and
    `finish()` refuses a stream that ended early. A consumer that needs all or nothing
    discards what it was given when any call raises."""

    def __init__(self, payload_key: bytes, ciphertext_len: int) -> None:
        plaintext_length(ciphertext_len, requirement="ENV-20")
        self._aead = primitives.Aes256Gcm(payload_key)
        self._remaining = ciphertext_len  # bytes not yet opened, pending ones included
        self._index = 0
        self._pending = bytearray()

    def _next_size(self) -> int:
        return min(self._remaining, CHUNK_CIPHERTEXT_SIZE)

    def update(self, data: bytes) -> list[bytes]:
        """The plaintext of every chunk completed by `data`: LengthError past the declared
        length, AeadError for a chunk that does not authenticate where it stands."""
        if len(data) > self._remaining - len(self._pending):
            raise LengthError("the payload is longer than its declared length",
                              requirement="ENV-20")
        out: list[bytes] = []
        view = memoryview(data)
        if self._pending:
            take = view[:self._next_size() - len(self._pending)]
            self._pending += take
            view = view[len(take):]
            if len(self._pending) < self._next_size():
                return out
            out.append(self._open(self._pending))
            self._pending = bytearray()
        while view:
            size = self._next_size()
            if len(view) < size:
                self._pending += view
                break
            out.append(self._open(view[:size]))
            view = view[size:]
        return out

    def finish(self) -> None:
        """The stream must have delivered exactly its declared length (length)."""
        if self._remaining:
            raise LengthError("the payload ended before its declared length",
                              requirement="ENV-20")

    def _open(self, chunk: bytes | bytearray | memoryview) -> bytes:
        last = self._remaining == len(chunk)
        nonce = chunk_nonce(self._index, last)
        self._index += 1
        self._remaining -= len(chunk)
        try:
            return self._aead.decrypt(nonce, chunk, b"", requirement="ENV-24")
        except AeadError:
            where = "final " if last else ""
            raise AeadError(f"{where}payload chunk {self._index - 1} does not authenticate",
                            requirement="ENV-24") from None


def decrypt_payload(payload_key: bytes, ciphertext: bytes) -> bytes:
    """Steps 4, 10 for a payload in memory."""
    opener = StreamOpener(payload_key, len(ciphertext))
    plaintext = b"".join(opener.update(ciphertext))
    opener.finish()
    return plaintext
