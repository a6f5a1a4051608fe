"""Request bodies as streams of reasonably large chunks."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from angos_core.errors import AngosError, ManifestTooLarge
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

    ``ClientGone`` if the body ends early, ``BodyStalled`` if no byte arrives for
    ``[server] read_timeout_secs`` (the clock restarts with every byte received).
    """
    content = request.content
    idle = _idle_timeout(request)
    loop = asyncio.get_running_loop()
    while True:
        parts: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout(None) as deadline:
                while size < COALESCE_BYTES:
                    if idle is not None:
                        deadline.reschedule(loop.time() + idle)
                    part = await content.read(COALESCE_BYTES - size)
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
        if size == 0:
            return
        yield parts[0] if len(parts) == 1 else b"".join(parts)
        if size < COALESCE_BYTES:
            return


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
