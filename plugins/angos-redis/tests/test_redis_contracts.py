"""The redis lock provider and cache pass the shipped contracts against a real redis-server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from angos_redis import RedisCache, RedisCacheConfig, RedisLockConfig, RedisLockProvider

from angos_core.protocols import Cache, LockProvider
from angos_core.testing import CacheContract, LockProviderContract, LockProviderFactory


class TestRedisLockProvider(LockProviderContract):
    @pytest.fixture
    async def lock_provider_factory(self, redis_url: str) -> AsyncIterator[LockProviderFactory]:
        # Each provider has its own connection pool, as each replica does.
        made: list[RedisLockProvider] = []

        async def make(**settings: Any) -> LockProvider:
            provider = RedisLockProvider(RedisLockConfig(url=redis_url, **settings))
            await provider.open()
            made.append(provider)
            return provider

        yield make
        for provider in made:
            await provider.aclose()


class TestRedisCache(CacheContract):
    @pytest.fixture
    async def cache(self, redis_url: str) -> AsyncIterator[Cache]:
        cache = RedisCache(RedisCacheConfig(url=redis_url))
        await cache.open()
        yield cache
        await cache.aclose()
