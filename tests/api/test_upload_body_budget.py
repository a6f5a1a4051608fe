"""Concurrent uploads share the process's body budget: they wait for it (backpressure)
instead of buffering more, and every byte of it comes back."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator

import pytest

from angos_core.http import streams
from angos_core.http.body_budget import BODY_BUDGET
from tests.support.api import Api, digest_of

UPLOADS = 8
BLOB_BYTES = 3 * streams.COALESCE_BYTES + 12345


async def _trickle(data: bytes) -> AsyncIterator[bytes]:
    for i in range(0, len(data), 256 * 1024):
        yield data[i : i + 256 * 1024]


@pytest.mark.shapes("fs", "s3")
async def test_concurrent_uploads_stay_within_the_budget(api: Api) -> None:
    budget = api.app[BODY_BUDGET]
    # Room for two chunks: eight uploads must take turns.
    budget.capacity = budget.free = 2 * streams.COALESCE_BYTES
    peak_in_use = 0
    peak_waiting = 0
    real_acquire = budget.acquire

    async def watched_acquire(size: int) -> int:
        nonlocal peak_in_use, peak_waiting
        peak_waiting = max(peak_waiting, budget.waiting + (budget.free < size))
        taken = await real_acquire(size)
        peak_in_use = max(peak_in_use, budget.in_use)
        return taken

    budget.acquire = watched_acquire  # type: ignore[method-assign]
    blobs = [os.urandom(BLOB_BYTES) for _ in range(UPLOADS)]

    async def push(data: bytes) -> None:
        resp = await api.request("POST", "/v2/lib/app/blobs/uploads/")
        assert resp.status == 202
        location = resp.headers["Location"]
        resp = await api.request("PATCH", location, data=_trickle(data))
        assert resp.status == 202, await resp.text()
        resp = await api.request("PUT", f"{location}?digest={digest_of(data)}")
        assert resp.status == 201, await resp.text()

    await asyncio.gather(*(push(b) for b in blobs))

    assert 0 < peak_in_use <= budget.capacity
    assert peak_waiting > 0  # some upload did wait for the budget
    assert budget.free == budget.capacity and budget.waiting == 0
    for data in blobs:
        resp = await api.get(f"/v2/lib/app/blobs/{digest_of(data)}")
        assert resp.status == 200
        assert await resp.read() == data


@pytest.mark.shapes("fs")
async def test_a_slow_client_does_not_hold_the_budget(api: Api) -> None:
    """A client that sends a little and then pauses gives the budget back after HOLD_SECS
    (its chunk goes on short), so an upload behind it is not kept waiting."""
    budget = api.app[BODY_BUDGET]
    budget.capacity = budget.free = streams.COALESCE_BYTES  # room for one chunk
    resume = asyncio.Event()
    slow_data = os.urandom(100_000)
    fast_data = os.urandom(2 * streams.COALESCE_BYTES)

    async def slow_body() -> AsyncIterator[bytes]:
        yield slow_data[:50_000]
        await resume.wait()
        yield slow_data[50_000:]

    async def upload(data: bytes, body: AsyncIterator[bytes]) -> None:
        resp = await api.request("POST", "/v2/lib/app/blobs/uploads/")
        location = resp.headers["Location"]
        resp = await api.request("PATCH", location, data=body)
        assert resp.status == 202, await resp.text()
        resp = await api.request("PUT", f"{location}?digest={digest_of(data)}")
        assert resp.status == 201, await resp.text()

    taken = asyncio.Event()
    real_acquire = budget.acquire

    async def signalling_acquire(size: int) -> int:
        got = await real_acquire(size)
        taken.set()
        return got

    budget.acquire = signalling_acquire  # type: ignore[method-assign]
    slow = asyncio.ensure_future(upload(slow_data, slow_body()))
    await asyncio.wait_for(taken.wait(), timeout=30)  # the slow upload holds the budget
    # The fast upload completes while the slow client is still paused.
    await asyncio.wait_for(upload(fast_data, _trickle(fast_data)), timeout=30)
    assert not slow.done()
    resume.set()
    await slow
    assert budget.free == budget.capacity
