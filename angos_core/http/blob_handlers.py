"""GET / HEAD / DELETE /v2/<name>/blobs/<digest>."""

from __future__ import annotations

import logging
import re

from aiohttp import web

from angos_core.errors import AngosError, BackendError, RangeNotSatisfiable
from angos_core.http.context import byte_offset, registry
from angos_core.http.threaded_sendfile import ThreadedFileResponse
from angos_core.registry import BlobInfo
from angos_core.registry.pull_through import BlobStream

# ASCII digits only ("\d" takes any Unicode digit, which int() would then accept).
_RANGE_RE = re.compile(r"\s*bytes=([0-9]*)-([0-9]*)\s*", re.ASCII)
#: The single ranges aiohttp's ``FileResponse`` parses exactly as ``parse_range`` does.
_SENDFILE_RANGE_RE = re.compile(r"bytes=[0-9]{1,18}-[0-9]{0,18}|bytes=-[0-9]{1,18}")
OCTET_STREAM = "application/octet-stream"
log = logging.getLogger("angos.http")


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """``(start, end_inclusive)`` for a single byte range, None to send the whole blob.

    Multi-range and malformed headers are ignored (RFC 9110 allows serving the full
    representation); a well-formed range outside the blob raises ``RangeNotSatisfiable``.
    """
    if not header:
        return None
    m = _RANGE_RE.fullmatch(header)
    if not m or (not m.group(1) and not m.group(2)):
        return None
    first, last = m.group(1), m.group(2)
    if not first:  # suffix range: the last N bytes
        n = byte_offset(last)
        if n == 0 or size == 0:
            raise RangeNotSatisfiable(detail={"range": header, "size": size})
        return max(size - n, 0), size - 1
    start = byte_offset(first)
    end = byte_offset(last) if last else size - 1
    if start >= size or end < start:
        raise RangeNotSatisfiable(detail={"range": header, "size": size})
    return start, min(end, size - 1)


def _headers(info: BlobInfo) -> dict[str, str]:
    return {
        "Docker-Content-Digest": info.digest,
        "ETag": f'"{info.digest}"',
        "Accept-Ranges": "bytes",
        "Content-Type": OCTET_STREAM,
        "Cache-Control": "max-age=31536000",
    }


async def head_blob(request: web.Request) -> web.StreamResponse:
    reg = registry(request)
    name, digest = request.match_info["name"], request.match_info["digest"]
    cached = reg.pull_through.namespace(name)
    if cached is not None:
        info = await reg.pull_through.head_blob(cached, name, digest)
    else:
        info = await reg.blobs.stat(name, digest, probe=True)
    headers = _headers(info)
    if info.size >= 0:
        headers["Content-Length"] = str(info.size)
    return web.Response(status=200, headers=headers)


async def get_blob(request: web.Request) -> web.StreamResponse:
    reg = registry(request)
    name, digest = request.match_info["name"], request.match_info["digest"]
    cached = reg.pull_through.namespace(name)
    if cached is not None:
        found = await reg.pull_through.blob(cached, name, digest)
        if isinstance(found, BlobStream):
            return await _stream_fetch(request, found)
        info = found
    else:
        info = await reg.blobs.stat(name, digest, need_size=False)
    headers = _headers(info)
    range_header = request.headers.get("Range")

    if info.manifest_body is not None:
        rng = parse_range(range_header, info.size)
        if rng is None:
            return web.Response(body=info.manifest_body, headers=headers)
        start, end = rng
        headers["Content-Range"] = f"bytes {start}-{end}/{info.size}"
        return web.Response(status=206, body=info.manifest_body[start : end + 1], headers=headers)

    url = await reg.blobs.redirect_url(info.digest)
    if url:
        raise web.HTTPTemporaryRedirect(url, headers={"Docker-Content-Digest": info.digest})

    path = reg.blobs.local_path(info.digest)
    size = await reg.blobs.size(info.digest) if path is None or range_header else None
    # Refuse an unsatisfiable range ourselves: aiohttp's 416 has no JSON body.
    rng = parse_range(range_header, size) if size is not None else None
    if path is not None and (
        not range_header or (rng is not None and _SENDFILE_RANGE_RE.fullmatch(range_header))
    ):
        # sendfile, with Range / If-Range handled by aiohttp. A Range that parse_range ignores
        # (multi-range, malformed) would get aiohttp's bare 416, so those are streamed below.
        headers.pop("ETag")
        return ThreadedFileResponse(path, headers=headers)

    if size is None:
        size = await reg.blobs.size(info.digest)
    if rng is None:
        start, length, status = 0, size, 200
    else:
        start, end = rng
        length, status = end - start + 1, 206
        headers["Content-Range"] = f"bytes {start}-{end}/{size}"
    response = web.StreamResponse(status=status, headers=headers)
    response.content_length = length
    await response.prepare(request)
    try:
        if length:
            async for chunk in reg.blobs.read(info.digest, start, length):
                await response.write(chunk)
    except BackendError as exc:
        # Headers are gone already: cut the connection so the client sees a short body
        # rather than a silently truncated blob.
        log.warning("GET %s: backend failed mid-stream: %s", request.path, exc)
        if request.transport is not None:
            request.transport.close()
        return response
    await response.write_eof()
    return response


async def _stream_fetch(request: web.Request, fetch: BlobStream) -> web.StreamResponse:
    """A missed blob, streamed from the upstream while it is stored. A Range is ignored
    (RFC 9110 allows the whole representation). A transfer that breaks after the headers
    cuts the connection: the client sees a short body, never a wrong blob (the last chunk
    is held back until the bytes are verified), and its retry fetches again."""
    headers = _headers(BlobInfo(fetch.digest, fetch.size or 0))
    response = web.StreamResponse(status=200, headers=headers)
    if fetch.size is not None:
        response.content_length = fetch.size
    try:
        await response.prepare(request)
        async for chunk in fetch.chunks:
            await response.write(chunk)
    except AngosError as exc:
        log.warning("GET %s: upstream transfer failed mid-stream: %s", request.path, exc)
        if request.transport is not None:
            request.transport.close()
        return response
    finally:
        fetch.close()
    await response.write_eof()
    return response


async def delete_blob(request: web.Request) -> web.StreamResponse:
    digest = request.match_info["digest"]
    await registry(request).blobs.delete(request.match_info["name"], digest)
    return web.Response(status=202, headers={"Docker-Content-Digest": digest})
