"""The redis lock provider and cache pass the shipped contracts against a real redis-server."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from angos_redis import RedisCache, RedisCacheConfig

from angos_core.protocols import Cache
from angos_core.testing import CacheContract, LockProviderContract, LockProviderFactory


class TestRedisLockProvider(LockProviderContract):
    @pytest.fixture
    def lock_provider_factory(self, make_provider: LockProviderFactory) -> LockProviderFactory:
        # Each provider has its own connection pool, as each replica does (conftest.py).
        return make_provider


class TestRedisCache(CacheContract):
    @pytest.fixture
    async def cache(self, redis_url: str) -> AsyncIterator[Cache]:
        cache = RedisCache(RedisCacheConfig(url=redis_url))
        await cache.open()
        yield cache
        await cache.aclose()
