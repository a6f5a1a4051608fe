"""The bytes of blob bodies the process holds at once, bounded, with backpressure.

Every upload reads its body in chunks of ``COALESCE_BYTES`` (``angos_core.http.streams``).
A chunk takes its bytes from the process's budget before it is read from the socket and
gives them back when the upload asks for its next chunk, by which time the hasher and the
store have started on it. While the budget is spent, an upload waits before reading on:
aiohttp stops reading its socket once its small buffer is full, and TCP slows the client.
So memory for bodies in flight stays near the budget however many uploads run at once,
instead of growing by a few MiB per upload.

An upload never waits while it holds bytes of the budget (a chunk's bytes go back before
the next are asked for), so waiters cannot deadlock each other; they are served first come,
first served, so none starves.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque

from aiohttp import web

#: Bytes of upload bodies the process buffers at once: 8 chunks of 1 MiB, enough to keep
#: the disk, the hashing threads and the event loop busy.
DEFAULT_BODY_BUDGET_BYTES = 8 * 1024 * 1024


class BodyBudget:
    """A FIFO byte semaphore for one event loop."""

    def __init__(self, capacity: int) -> None:
        if capacity <= 0:
            raise ValueError(f"body budget must be positive, got {capacity}")
        self.capacity = capacity
        self.free = capacity
        self._waiters: deque[tuple[int, asyncio.Future[None]]] = deque()

    @property
    def in_use(self) -> int:
        return self.capacity - self.free

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    async def acquire(self, size: int) -> int:
        """Take ``size`` bytes (at most the capacity); the bytes taken, to :meth:`release`."""
        size = min(size, self.capacity)
        if not self._waiters and self.free >= size:
            self.free -= size
            return size
        waiter = asyncio.get_running_loop().create_future()
        entry = (size, waiter)
        self._waiters.append(entry)
        try:
            await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                # Granted as we were cancelled: hand the bytes on.
                self.release(size)
            else:
                with contextlib.suppress(ValueError):  # _wake may have dropped it already
                    self._waiters.remove(entry)
                self._wake()
            raise
        return size

    def release(self, size: int) -> None:
        self.free += size
        self._wake()

    def _wake(self) -> None:
        while self._waiters and self._waiters[0][0] <= self.free:
            size, waiter = self._waiters.popleft()
            if waiter.done():
                continue
            self.free -= size
            waiter.set_result(None)


BODY_BUDGET: web.AppKey[BodyBudget] = web.AppKey("angos_body_budget", BodyBudget)
