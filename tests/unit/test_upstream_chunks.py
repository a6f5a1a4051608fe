"""An upstream blob reaches the cache in chunks of at least ``CHUNK_BYTES`` however the upstream
dribbles it: a slow link delivers 64 KiB reads or less, and every chunk costs the cache a
hash, a store hop and a write to each client of the flight."""

from __future__ import annotations

import asyncio
import hashlib
import os

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer

from angos_core.config import UpstreamConfig
from angos_core.upstream.client import CHUNK_BYTES, UpstreamClient

BLOB = os.urandom(3 * CHUNK_BYTES + 12345)
DIGEST = "sha256:" + hashlib.sha256(BLOB).hexdigest()
PIECE = 16 * 1024


async def dribble(request: web.Request) -> web.StreamResponse:
    resp = web.StreamResponse(headers={"Content-Length": str(len(BLOB))})
    await resp.prepare(request)
    for i in range(0, len(BLOB), PIECE):
        await resp.write(BLOB[i : i + PIECE])
        if i % (8 * PIECE) == 0:
            await asyncio.sleep(0.001)  # the next piece comes after the reader has read
    await resp.write_eof()
    return resp


async def test_a_dribbled_blob_comes_in_whole_chunks() -> None:
    app = web.Application()
    app.router.add_get(f"/v2/library/app/blobs/{DIGEST}", dribble)
    async with TestServer(app) as server, aiohttp.ClientSession() as session:
        client = UpstreamClient(UpstreamConfig(url=str(server.make_url("")).rstrip("/")), session)
        async with client.get_blob("library/app", DIGEST) as blob:
            assert blob.size == len(BLOB)
            chunks = [chunk async for chunk in blob.chunks]
    assert b"".join(chunks) == BLOB
    # Each one read past CHUNK_BYTES by at most the socket read that crossed it.
    assert all(CHUNK_BYTES <= len(c) < 2 * CHUNK_BYTES for c in chunks[:-1]), len(chunks)
    assert len(chunks[-1]) > 0
    assert len(chunks) <= 4
