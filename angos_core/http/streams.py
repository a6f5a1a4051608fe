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
#: Longest a chunk holding its share of the body budget waits for more of the client's
#: bytes before it goes on short (a fast client fills 1 MiB in milliseconds).
HOLD_SECS = 0.5


def has_body(request: web.Request) -> bool:
    if request.headers.get("Transfer-Encoding", "").lower().find("chunked") >= 0:
        return True
    return (request.content_length or 0) > 0


def _idle_timeout(request: web.Request) -> float | None:
    server = request.app.get(SERVER)
    secs = server.read_timeout_secs if server is not None else 0
    return secs or None


async def body_chunks(request: web.Request) -> AsyncIterator[bytes]:
    """The body in chunks of about ``COALESCE_BYTES``.

    Each chunk takes ``COALESCE_BYTES`` from the app's :class:`BodyBudget` once its first
    byte has arrived (a client that sends nothing holds none) and gives them back when the
    next chunk is asked for; waiting for them is backpressure, not a stall. A chunk holding
    them waits at most ``HOLD_SECS`` for more of a slow client's bytes, then goes on short,
    so slow clients cannot sit on the budget other uploads wait for.
    ``ClientGone`` if the body ends early, ``BodyStalled`` if no byte arrives for
    ``[server] read_timeout_secs`` (the clock restarts with every byte received).

    An upload waiting for the budget holds one byte of its body: the rest stays in aiohttp's
    reader, whose socket is paused at its small high-water mark. Taking a whole socket read
    (up to 256 KiB) first, or carrying a chunk's overshoot over the wait, cost about 0.25
    MiB per waiting upload (tracemalloc, 256 concurrent uploads: docs/performance.md).
    """
    content = request.content
    idle = _idle_timeout(request)
    budget = request.app.get(BODY_BUDGET)
    while True:
        first = await _read_part(content, idle, None, one_byte=True)
        if not first:
            return
        held = await budget.acquire(COALESCE_BYTES) if budget is not None else 0
        try:
            chunk, ended = await _fill(content, idle, first, budget is not None)
            yield chunk
            # Not kept alive by this frame while the next chunk waits for the budget.
            del chunk
        finally:
            if budget is not None:
                budget.release(held)
        if ended:
            return


async def _fill(
    content: StreamReader, idle: float | None, first: bytes, bounded: bool
) -> tuple[bytes, bool]:
    """A chunk starting with ``first``, and whether the body ended.

    At least ``COALESCE_BYTES`` unless the body ended or, when ``bounded``, the client sent
    nothing more for ``HOLD_SECS``. The part that reaches ``COALESCE_BYTES`` is kept whole
    (over by at most what the reader buffers, ~100 KiB on plain TCP): its tail would
    otherwise wait for the budget outside it, and splitting copied it.
    """
    hold_until = asyncio.get_running_loop().time() + HOLD_SECS if bounded else None
    parts = [first]
    size = len(first)
    ended = False
    while size < COALESCE_BYTES:
        part = await _read_part(content, idle, hold_until)
        if part is None:
            break  # held the budget long enough: on with what came
        if not part:
            ended = True
            break
        parts.append(part)
        size += len(part)
    return (parts[0] if len(parts) == 1 else b"".join(parts)), ended


async def _read_part(
    content: StreamReader, idle: float | None, hold_until: float | None, *, one_byte: bool = False
) -> bytes | None:
    """What the socket delivered next (empty at the body's end), or None if ``hold_until``
    (a loop time) came first; ``one_byte``: only its first byte (the rest stays buffered).

    ``readany`` does not raise the reader's buffer limit as ``read(n)`` does (to twice the
    largest ``n`` asked: 2 MiB per connection for reads of 1 MiB), so aiohttp pauses each
    socket at twice ``read_bufsize``; ``read(1)`` is below that limit and leaves it too.
    """
    loop = asyncio.get_running_loop()
    stall_at = None if idle is None else loop.time() + idle
    deadlines = [t for t in (stall_at, hold_until) if t is not None]
    try:
        async with asyncio.timeout_at(min(deadlines) if deadlines else None):
            return await (content.read(1) if one_byte else content.readany())
    except TimeoutError:
        if hold_until is not None and (stall_at is None or hold_until < stall_at):
            return None
        raise BodyStalled(
            f"request body stalled: no data for {idle:g}s after {content.total_bytes} bytes"
        ) from None
    except (HttpProcessingError, ConnectionError) as exc:
        raise ClientGone(f"request body incomplete: {exc!r}") from exc


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
