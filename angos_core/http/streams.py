"""Request bodies as streams of reasonably large chunks."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from aiohttp import StreamReader, web
from aiohttp.http_exceptions import HttpProcessingError

from angos_core.errors import AngosError, ManifestTooLarge
from angos_core.http.body_budget import BODY_BUDGET
from angos_core.http.context import SERVER


class ClientGone(AngosError):
    """The request body ended early (client disconnected or sent a broken body).

    Deliberately not an ``OSError``: a backend consuming the stream must not mistake the
    client's failure for its own storage failing.
    """


class BodyStalled(ClientGone):
    """The client stopped sending the request body for longer than the read timeout."""


#: Bytes gathered before handing a chunk to the blob store and the hasher: fewer, larger
#: writes and thread hops than the socket's natural 64 KiB reads.
COALESCE_BYTES = 1024 * 1024


def has_body(request: web.Request) -> bool:
    if request.headers.get("Transfer-Encoding", "").lower().find("chunked") >= 0:
        return True
    return (request.content_length or 0) > 0


def _idle_timeout(request: web.Request) -> float | None:
    server = request.app.get(SERVER)
    secs = server.read_timeout_secs if server is not None else 0
    return secs or None


async def body_chunks(request: web.Request) -> AsyncIterator[bytes]:
    """The body in chunks of ``COALESCE_BYTES`` (the last one shorter).

    Each chunk's bytes are taken from the app's :class:`BodyBudget` before it is read and
    given back when the next is asked for (waiting for them is backpressure, not a stall).
    ``ClientGone`` if the body ends early, ``BodyStalled`` if no byte arrives for
    ``[server] read_timeout_secs`` (the clock restarts with every byte received).
    """
    content = request.content
    idle = _idle_timeout(request)
    budget = request.app.get(BODY_BUDGET)
    rest = b""
    while True:
        held = await budget.acquire(COALESCE_BYTES) if budget is not None else 0
        try:
            chunk, rest = await _read_chunk(content, idle, rest)
            size = len(chunk)
            if chunk:
                yield chunk
            # Not kept alive by this frame while the next chunk waits for the budget.
            del chunk
        finally:
            if budget is not None:
                budget.release(held)
        if size < COALESCE_BYTES:
            return


async def _read_chunk(
    content: StreamReader, idle: float | None, rest: bytes
) -> tuple[bytes, bytes]:
    """``COALESCE_BYTES`` of the body, starting with ``rest`` (fewer only at its end; empty
    past it), and what was read beyond them.

    ``readany`` hands over what the socket delivered, without raising the reader's buffer
    limit as ``read(n)`` does (to twice the largest ``n`` asked: 2 MiB per connection for
    reads of 1 MiB), so aiohttp pauses each socket at twice ``read_bufsize``.
    """
    loop = asyncio.get_running_loop()
    parts: list[bytes] = [rest] if rest else []
    size = len(rest)
    try:
        async with asyncio.timeout(None) as deadline:
            while size < COALESCE_BYTES:
                if idle is not None:
                    deadline.reschedule(loop.time() + idle)
                part = await content.readany()
                if not part:
                    break
                parts.append(part)
                size += len(part)
    except TimeoutError:
        raise BodyStalled(
            f"request body stalled: no data for {idle:g}s after {content.total_bytes} bytes"
        ) from None
    except (HttpProcessingError, ConnectionError) as exc:
        raise ClientGone(f"request body incomplete: {exc!r}") from exc
    extra = b""
    if size > COALESCE_BYTES:
        # Split the last part, not the joined chunk: one copy of the chunk's bytes, not two.
        last = parts[-1]
        keep = len(last) - (size - COALESCE_BYTES)
        parts[-1], extra = last[:keep], last[keep:]
    return (parts[0] if len(parts) == 1 else b"".join(parts)), extra


async def read_limited(request: web.Request, limit: int) -> bytes:
    """The whole (small) body; ``ManifestTooLarge`` (413) beyond ``limit`` bytes."""
    if request.content_length is not None and request.content_length > limit:
        raise ManifestTooLarge(detail={"limit": limit})
    buf = bytearray()
    idle = _idle_timeout(request)
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(None) as deadline:
            while True:
                if idle is not None:
                    deadline.reschedule(loop.time() + idle)
                chunk = await request.content.readany()
                if not chunk:
                    break
                buf += chunk
                if len(buf) > limit:
                    raise ManifestTooLarge(detail={"limit": limit})
    except TimeoutError:
        raise BodyStalled(f"request body stalled: no data for {idle:g}s") from None
    except (HttpProcessingError, ConnectionError) as exc:
        raise ClientGone(f"request body incomplete: {exc!r}") from exc
    return bytes(buf)
