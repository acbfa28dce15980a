"""The account server's HTTP client: strict framing, bounded answers, stale connections."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from keyflows.reference.upstream import MAX_BODY_BYTES, UpstreamClient, UpstreamError

Script = Callable[[int], bytes]  # request number -> raw answer (b"" closes without one)


async def serve(script: Script) -> tuple[asyncio.Server, str, list[bytes]]:
    """A server answering request n with script(n), keeping connections open."""
    seen: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                seen.append(head + await reader.readexactly(length))
                answer = script(len(seen))
                if not answer:
                    writer.close()
                    return
                writer.write(answer)
                await writer.drain()
                if b"connection: close" in answer.lower():
                    writer.close()
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, f"http://127.0.0.1:{port}", seen


def ok(body: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)


def run(script: Script, calls: int = 1) -> list[object]:
    async def main() -> list[object]:
        server, url, _ = await serve(script)
        client = UpstreamClient(url, timeout=2)
        out: list[object] = []
        try:
            for _ in range(calls):
                try:
                    answer = await client.post_json("/v1/validate", b"{}")
                    out.append((answer.status, answer.body))
                except UpstreamError as exc:
                    out.append(str(exc))
        finally:
            await client.aclose()
            server.close()
        return out
    return asyncio.run(main())


def test_keep_alive_and_chunked_answers() -> None:
    chunked = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"5\r\n{\"a\":\r\n2;ext=1\r\n1}\r\n0\r\nTrailer: x\r\n\r\n")
    assert run(lambda n: ok(b"{}") if n == 1 else chunked, calls=2) == [
        (200, b"{}"), (200, b'{"a":1}')]


def test_a_connection_closed_while_idle_is_retried_once() -> None:
    # Request 2 arrives on the kept connection; the server drops it unanswered: stale.
    assert run(lambda n: b"" if n == 2 else ok(b"{}"), calls=2) == [(200, b"{}"),
                                                                   (200, b"{}")]


@pytest.mark.parametrize("answer,error", [
    (b"HTTP/1.1 200 OK\r\n\r\n{}", "without Content-Length"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n{}", "repeated"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n{}",
     "both"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n{}", "Transfer-Encoding"),
    (b"ICY 200 OK\r\nContent-Length: 2\r\n\r\n{}", "status line"),
    (b"HTTP/1.1 200 OK\r\nX: " + b"a" * 20_000 + b"\r\n\r\n", "headers over"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % (MAX_BODY_BYTES + 1), "over"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
     + b"%x\r\n" % (MAX_BODY_BYTES + 1), "over"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\nConnection: close\r\n\r\n{}", "cut short"),
    (b"HTTP/1.1 200 OK\r\nbroken header\r\nContent-Length: 2\r\n\r\n{}", "malformed"),
])
def test_answers_outside_the_shape_are_refused(answer: bytes, error: str) -> None:
    def once(n: int) -> bytes:
        return answer if n == 1 else b""
    result = run(once)
    assert isinstance(result[0], str) and error in result[0], result


def test_silence_times_out() -> None:
    async def main() -> str:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await asyncio.sleep(10)
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        client = UpstreamClient(f"http://127.0.0.1:{port}", timeout=0.3)
        try:
            await client.get("/v1/secret?sub=x")
        except UpstreamError as exc:
            return str(exc)
        finally:
            server.close()
        return "answered"
    assert asyncio.run(main()) == "no answer within 0.3 s"


def test_an_answer_arriving_byte_by_byte_is_assembled() -> None:
    answer = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
              b"5\r\n{\"a\":\r\n2\r\n1}\r\n0\r\n\r\n")

    async def main() -> tuple[int, bytes]:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readuntil(b"\r\n\r\n")
            await reader.readexactly(2)
            for byte in answer:
                writer.write(bytes([byte]))
                await writer.drain()
                await asyncio.sleep(0.001)
            await asyncio.sleep(1)
            writer.close()
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        client = UpstreamClient(f"http://127.0.0.1:{port}", timeout=5)
        try:
            got = await client.post_json("/v1/validate", b"{}")
            return got.status, got.body
        finally:
            await client.aclose()
            server.close()
    assert asyncio.run(main()) == (200, b'{"a":1}')


def test_a_connection_with_bytes_beyond_the_answer_is_not_reused() -> None:
    connections: list[int] = []

    async def main() -> list[tuple[int, bytes]]:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            connections.append(1)
            try:
                while True:
                    await reader.readuntil(b"\r\n\r\n")
                    await reader.readexactly(2)
                    writer.write(ok(b"{}") + b"HTTP/1.1 200 OK\r\n")  # then junk
                    await writer.drain()
            except (asyncio.IncompleteReadError, ConnectionError):
                writer.close()
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        client = UpstreamClient(f"http://127.0.0.1:{port}", timeout=5)
        try:
            out = []
            for _ in range(2):
                got = await client.post_json("/v1/validate", b"{}")
                out.append((got.status, got.body))
            return out
        finally:
            await client.aclose()
            server.close()
    assert asyncio.run(main()) == [(200, b"{}"), (200, b"{}")]
    assert len(connections) == 2
