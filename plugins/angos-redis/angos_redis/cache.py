"""Cache ``redis``: one cache shared by every replica, so an invalidation is seen by all."""

from __future__ import annotations

import redis.asyncio as aioredis

from angos_redis.client import BACKEND, call, make_client
from angos_redis.config import RedisCacheConfig

#: A cache read that takes longer than this is slower than reading the store.
_OP_TIMEOUT_SECS = 1.0


class RedisCache:
    """``[cache.redis]``. Every failure raises ``BackendUnavailable``; core treats it as a miss."""

    name = BACKEND

    def __init__(self, config: RedisCacheConfig) -> None:
        self.config = config
        self._client: aioredis.Redis | None = None

    def _key(self, key: str) -> str:
        prefix = self.config.key_prefix
        return f"{prefix}:{key}" if prefix else key

    def _redis(self) -> aioredis.Redis:
        if self._client is None:
            self._client = make_client(self.config.url, op_timeout_secs=_OP_TIMEOUT_SECS)
        return self._client

    async def get(self, key: str) -> bytes | None:
        value = await call(self._redis().get(self._key(key)), self.config.url, "cache GET")
        # decode_responses is off, so Redis hands back bytes.
        return value if value is None or isinstance(value, bytes) else value.encode()

    async def set(self, key: str, value: bytes, ttl_secs: float | None = None) -> None:
        if ttl_secs is not None and ttl_secs <= 0:
            # Already expired: storing it would only serve it once more.
            await self.delete(key)
            return
        px = None if ttl_secs is None else max(1, int(ttl_secs * 1000))
        await call(self._redis().set(self._key(key), value, px=px), self.config.url, "cache SET")

    async def delete(self, key: str) -> None:
        await call(self._redis().delete(self._key(key)), self.config.url, "cache DEL")

    async def open(self) -> None:
        self._redis()

    async def health(self) -> None:
        await call(self._redis().ping(), self.config.url, "PING")

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()
