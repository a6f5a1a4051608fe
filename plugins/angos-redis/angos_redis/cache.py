"""Cache ``redis``: one cache shared by every replica, so an invalidation is seen by all.

Two things keep an outage from turning into wrong answers or slow requests:

* An invalidation (``delete``) that fails is remembered, retried in the background every
  few hundred milliseconds and before any other command, until Redis takes it. Otherwise a
  Redis that hung (rather than restarted empty) would come back still holding the value the
  write meant to remove, and every replica would serve it until its ttl. Until it is taken,
  this replica reads the key as a miss.
* After a timeout, reads and fills stop asking Redis for a moment and fail at once (a miss):
  a hung Redis would otherwise add a timeout to every request. Invalidations are always
  sent. A refused connection fails fast by itself and does not trip this.

Reads are answered from a near cache in the process while Redis tracks it
(:mod:`angos_redis.near`), so a hot tag costs no round trip; ``near_cache_size = 0`` turns
it off.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from contextlib import suppress
from typing import TypeVar

import redis.asyncio as aioredis
from redis.exceptions import TimeoutError as RedisTimeoutError

from angos_core.errors import BackendUnavailable
from angos_redis.client import BACKEND, CONNECT_TIMEOUT_SECS, call, make_client
from angos_redis.config import RedisCacheConfig
from angos_redis.near import Tracker

T = TypeVar("T")

#: A cache answer slower than this is slower than reading the store.
_OP_TIMEOUT_SECS = 0.5
#: How long to skip Redis after a timeout.
_BACKOFF_SECS = 1.0
#: Pause between background retries of failed invalidations.
_RETRY_INVALIDATION_SECS = 0.2


class RedisCache:
    """``[cache.redis]``. Every failure raises ``BackendUnavailable``; core treats it as a miss."""

    name = BACKEND

    def __init__(self, config: RedisCacheConfig) -> None:
        self.config = config
        self._client: aioredis.Redis | None = None
        self._pending_deletes: set[str] = set()
        self._skip_until = 0.0
        self._retrier: asyncio.Task[None] | None = None
        self._tracker: Tracker | None = None
        if config.near_cache_size > 0:
            prefix = f"{config.key_prefix}:" if config.key_prefix else ""
            self._tracker = Tracker(config.url, prefix, config.near_cache_size)

    def _key(self, key: str) -> str:
        prefix = self.config.key_prefix
        return f"{prefix}:{key}" if prefix else key

    def _redis(self) -> aioredis.Redis:
        if self._client is None:
            self._client = make_client(self.config.url, op_timeout_secs=_OP_TIMEOUT_SECS)
        return self._client

    async def _call(self, aw: Awaitable[T], what: str) -> T:
        try:
            return await call(aw, self.config.url, what)
        except BackendUnavailable as exc:
            if isinstance(exc.__cause__, RedisTimeoutError | TimeoutError):
                self._skip_until = time.monotonic() + _BACKOFF_SECS
            raise

    async def _ready(self, what: str, *, invalidating: bool = False) -> aioredis.Redis:
        """The client, once earlier failed invalidations are done; else BackendUnavailable.

        Invalidations never skip Redis: a write's invalidation that waits out the pause would
        let other replicas serve the old value meanwhile.
        """
        if not invalidating and time.monotonic() < self._skip_until:
            raise BackendUnavailable(
                BACKEND, f"{what} skipped: Redis timed out less than {_BACKOFF_SECS}s ago"
            )
        client = self._redis()
        if self._pending_deletes:
            keys = sorted(self._pending_deletes)
            await self._call(
                client.delete(*(self._key(k) for k in keys)), "retrying cache invalidations"
            )
            self._pending_deletes.difference_update(keys)
        return client

    async def get(self, key: str) -> bytes | None:
        full = self._key(key)
        tracker = self._tracker
        epoch = 0
        if tracker is not None:
            near = tracker.get(full)
            if near is not None:
                return near
            epoch = tracker.epoch
        client = await self._ready("cache GET")
        value = await self._call(client.get(full), "cache GET")
        # decode_responses is off, so Redis hands back bytes.
        if value is not None and not isinstance(value, bytes):
            value = value.encode()
        if tracker is not None and value is not None:
            tracker.fill(full, value, epoch)
        return value

    async def set(self, key: str, value: bytes, ttl_secs: float | None = None) -> None:
        if ttl_secs is not None and ttl_secs <= 0:
            # Already expired: storing it would only serve it once more.
            await self.delete(key)
            return
        if self._tracker is not None:
            self._tracker.forget(self._key(key))
        client = await self._ready("cache SET")
        px = None if ttl_secs is None else max(1, int(ttl_secs * 1000))
        await self._call(client.set(self._key(key), value, px=px), "cache SET")

    async def delete(self, key: str) -> None:
        # Queued with any invalidations that failed before, and sent with them: if this fails
        # too, it stays queued for the next call.
        if self._tracker is not None:
            self._tracker.forget(self._key(key))
        self._pending_deletes.add(key)
        try:
            await self._ready("cache DEL", invalidating=True)
        except BackendUnavailable:
            self._retry_invalidations_later()
            raise

    def _retry_invalidations_later(self) -> None:
        if self._retrier is None or self._retrier.done():
            self._retrier = asyncio.get_running_loop().create_task(
                self._retry_invalidations(), name="angos-redis-cache-invalidations"
            )

    async def _retry_invalidations(self) -> None:
        while self._pending_deletes:
            await asyncio.sleep(_RETRY_INVALIDATION_SECS)
            with suppress(BackendUnavailable):
                await self._ready("retrying cache invalidations", invalidating=True)

    async def open(self) -> None:
        # A wrong url or password shows at startup rather than as a cache that never hits.
        await self._call(self._redis().ping(), "PING at startup")
        if self._tracker is not None:
            await self._tracker.start(wait_secs=CONNECT_TIMEOUT_SECS)

    async def health(self) -> None:
        await self._call(self._redis().ping(), "PING")

    async def aclose(self) -> None:
        if self._tracker is not None:
            await self._tracker.aclose()
        if self._retrier is not None:
            self._retrier.cancel()
            await asyncio.wait([self._retrier])
            self._retrier = None
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()
