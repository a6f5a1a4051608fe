"""An upload body read in budgeted chunks: what an upload holds while it waits for the body
budget, and that the chunks add up to the body."""

from __future__ import annotations

import asyncio
import os
from types import SimpleNamespace
from typing import cast
from unittest.mock import Mock

from aiohttp import StreamReader, web

from angos_core.http.body_budget import BODY_BUDGET, BodyBudget
from angos_core.http.streams import COALESCE_BYTES, body_chunks


class _CountingReader(StreamReader):
    """aiohttp's reader, counting the bytes its consumer has taken out of it."""

    taken = 0

    async def read(self, n: int = -1) -> bytes:
        data = await super().read(n)
        self.taken += len(data)
        return data

    async def readany(self) -> bytes:
        data = await super().readany()
        self.taken += len(data)
        return data


def _request(reader: StreamReader, budget: BodyBudget) -> web.Request:
    return cast(web.Request, SimpleNamespace(content=reader, app={BODY_BUDGET: budget}))


def _reader() -> _CountingReader:
    # The limit aiohttp gets from the app's read_bufsize.
    return _CountingReader(Mock(), 16 * 1024, loop=asyncio.get_running_loop())


async def test_an_upload_waiting_for_the_budget_holds_one_byte() -> None:
    budget = BodyBudget(COALESCE_BYTES)
    await budget.acquire(COALESCE_BYTES)  # another upload's chunk
    reader = _reader()
    data = os.urandom(200_000)
    reader.feed_data(data)
    reader.feed_eof()
    chunks = body_chunks(_request(reader, budget))
    waiting = asyncio.ensure_future(anext(chunks))
    for _ in range(5):
        await asyncio.sleep(0)
    assert budget.waiting == 1 and not waiting.done()
    # The rest of what arrived stays in the reader (its socket paused), not in the upload.
    assert reader.taken == 1
    budget.release(COALESCE_BYTES)
    assert await waiting == data
    assert [c async for c in chunks] == []
    assert budget.free == budget.capacity


async def test_chunks_reach_the_coalesce_size_and_add_up_to_the_body() -> None:
    budget = BodyBudget(2 * COALESCE_BYTES)
    reader = _reader()
    data = os.urandom(3 * COALESCE_BYTES + 12345)

    async def client() -> None:
        for i in range(0, len(data), 100_000):
            reader.feed_data(data[i : i + 100_000])
            await asyncio.sleep(0)
        reader.feed_eof()

    sending = asyncio.ensure_future(client())
    chunks = [c async for c in body_chunks(_request(reader, budget))]
    await sending
    assert b"".join(chunks) == data
    # Each but the last is full; the part that filled one is kept whole (no tail carried).
    assert all(COALESCE_BYTES <= len(c) < COALESCE_BYTES + 100_000 for c in chunks[:-1])
    assert budget.free == budget.capacity
