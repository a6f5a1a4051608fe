"""``angos migrate --max-writes-per-sec``: at most so many objects written to the
destination a second, across every job, so that an online migration spares the registry
still serving from the source, or a bucket with a request-rate limit (rclone's
``--tpslimit``)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, cast

from angos_core.protocols import MetadataStore


class Pace:
    """Spaces starts ``1 / per_sec`` seconds apart; unused time is not saved up (no burst
    after a pause)."""

    def __init__(
        self,
        per_sec: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if per_sec <= 0:
            raise ValueError(f"a pace needs a positive rate, got {per_sec}")
        self.interval = 1.0 / per_sec
        self._clock, self._sleep = clock, sleep
        self._next = 0.0

    async def wait(self) -> None:
        now = self._clock()
        start = max(now, self._next)
        self._next = start + self.interval
        if start > now:
            await self._sleep(start - now)


class _PacedWrites:
    """A metadata store whose ``put`` and ``create`` wait their turn; reads are not paced
    (the listing a pass starts with is what makes most of them unnecessary)."""

    def __init__(self, inner: MetadataStore, pace: Pace) -> None:
        self._inner, self._pace = inner, pace

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def put(self, key: str, data: bytes) -> None:
        await self._pace.wait()
        await self._inner.put(key, data)

    async def create(self, key: str, data: bytes) -> bool:
        await self._pace.wait()
        return await self._inner.create(key, data)


def paced_writes(meta: MetadataStore, pace: Pace) -> MetadataStore:
    """``meta`` with its writes paced by ``pace`` (every other call goes straight through,
    so capability checks see what ``meta`` has)."""
    return cast(MetadataStore, _PacedWrites(meta, pace))
