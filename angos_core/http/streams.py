"""Request bodies as streams of reasonably large chunks."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from angos_core.errors import AngosError, ManifestTooLarge


class ClientGone(AngosError):
    """The request body ended early (client disconnected or sent a broken body).

    Deliberately not an ``OSError``: a backend consuming the stream must not mistake the
    client's failure for its own storage failing.
    """


#: Bytes gathered before handing a chunk to the blob store and the hasher: fewer, larger
#: writes and thread hops than the socket's natural 64 KiB reads.
COALESCE_BYTES = 1024 * 1024


def has_body(request: web.Request) -> bool:
    if request.headers.get("Transfer-Encoding", "").lower().find("chunked") >= 0:
        return True
    return (request.content_length or 0) > 0


async def body_chunks(request: web.Request) -> AsyncIterator[bytes]:
    content = request.content
    while True:
        try:
            chunk = await content.readexactly(COALESCE_BYTES)
        except asyncio.IncompleteReadError as exc:
            if exc.partial:
                yield exc.partial
            return
        except (HttpProcessingError, ConnectionError) as exc:
            raise ClientGone(f"request body incomplete: {exc!r}") from exc
        yield chunk


async def read_limited(request: web.Request, limit: int) -> bytes:
    """The whole (small) body; ``ManifestTooLarge`` (413) beyond ``limit`` bytes."""
    if request.content_length is not None and request.content_length > limit:
        raise ManifestTooLarge(detail={"limit": limit})
    buf = bytearray()
    try:
        async for chunk in request.content.iter_any():
            buf += chunk
            if len(buf) > limit:
                raise ManifestTooLarge(detail={"limit": limit})
    except (HttpProcessingError, ConnectionError) as exc:
        raise ClientGone(f"request body incomplete: {exc!r}") from exc
    return bytes(buf)
