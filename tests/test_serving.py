"""The protocol layer's transport wrapper (reference/serving.py): writes joined without
changing the bytes or their order, and a close that first sends what is held."""

from __future__ import annotations

import asyncio
from typing import Any

from keyflows.reference.serving import HELD_WRITE_MAX, LingeringTransport


class RecordingTransport:
    """What a transport was asked to do, in order."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.closing = False

    def write(self, data: bytes) -> None:
        self.calls.append(("write", bytes(data)))

    def writelines(self, chunks: Any) -> None:
        self.calls.append(("writelines", [bytes(c) for c in chunks]))

    def is_closing(self) -> bool:
        return self.closing

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.calls.append(("write_eof", None))

    def close(self) -> None:
        self.closing = True
        self.calls.append(("close", None))

    def abort(self) -> None:
        self.closing = True
        self.calls.append(("abort", None))

    def get_write_buffer_size(self) -> int:
        return 0

    def pause_reading(self) -> None: ...
    def resume_reading(self) -> None: ...
    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default

    def sent(self) -> bytes:
        out = b""
        for kind, data in self.calls:
            if kind == "write":
                out += data
            elif kind == "writelines":
                out += b"".join(data)
        return out


def wrapped() -> tuple[LingeringTransport, RecordingTransport, asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    inner = RecordingTransport()
    return LingeringTransport(inner, loop), inner, loop  # type: ignore[arg-type]


def run_pending(loop: asyncio.AbstractEventLoop) -> None:
    loop.run_until_complete(asyncio.sleep(0))


def test_a_head_and_its_body_leave_in_one_call() -> None:
    outer, inner, loop = wrapped()
    try:
        outer.write(b"HTTP/1.1 200 OK\r\n\r\n")
        assert inner.calls == []  # held
        assert outer.get_write_buffer_size() == 19
        outer.write(b"body")
        assert inner.calls == [("writelines", [b"HTTP/1.1 200 OK\r\n\r\n", b"body"])]
        run_pending(loop)
        assert len(inner.calls) == 1  # nothing held, nothing sent twice
    finally:
        loop.close()


def test_a_lone_write_leaves_at_the_end_of_the_pass() -> None:
    outer, inner, loop = wrapped()
    try:
        outer.write(b"head")
        run_pending(loop)
        assert inner.calls == [("write", b"head")]
    finally:
        loop.close()


def test_large_writes_are_never_held() -> None:
    outer, inner, loop = wrapped()
    try:
        big = b"x" * (HELD_WRITE_MAX + 1)
        outer.write(big)
        assert inner.calls == [("write", big)]
    finally:
        loop.close()


def test_close_sends_what_is_held_first_and_abort_drops_it() -> None:
    outer, inner, loop = wrapped()
    try:
        outer.write(b"answer")
        outer.close()
        assert inner.calls[:2] == [("write", b"answer"), ("write_eof", None)]
        assert outer.is_closing()
        run_pending(loop)
        assert inner.sent() == b"answer"
    finally:
        loop.close()
    outer, inner, loop = wrapped()
    try:
        outer.write(b"answer")
        outer.abort()
        run_pending(loop)
        assert inner.calls == [("abort", None)]
    finally:
        loop.close()


def test_a_held_write_is_dropped_once_the_connection_is_gone() -> None:
    outer, inner, loop = wrapped()
    try:
        outer.write(b"answer")
        inner.closing = True  # the peer reset the connection meanwhile
        run_pending(loop)
        assert inner.calls == []
    finally:
        loop.close()
