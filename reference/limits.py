"""Request body size limit (API-5).

A declared Content-Length over the limit is refused before a byte of the body is read;
otherwise the body is read chunk by chunk and reading stops at the first chunk that
takes the total past the limit, so a client can never make the server buffer more than
the limit plus one network chunk.
"""

from __future__ import annotations

from starlette.requests import Request

from keyflows.reference.problems import Problem, malformed


def too_large(limit: int) -> Problem:
    return Problem("too-large", f"the request body exceeds the limit of {limit} bytes",
                   requirement="API-5")


def declared_length(request: Request) -> int | None:
    """The Content-Length header, None when absent."""
    values = request.headers.getlist("content-length")
    if not values:
        return None
    text = values[0].strip()
    if len(set(values)) != 1 or not (text.isascii() and text.isdigit()):
        raise malformed("the Content-Length header is not a single decimal number")
    return int(text)


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, or Problem 413 once it is known to exceed `limit` bytes."""
    declared = declared_length(request)
    if declared is not None and declared > limit:
        raise too_large(limit)
    chunks: list[bytes] = []
    total = 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)
