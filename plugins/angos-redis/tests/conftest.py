"""Fixtures shared by the redis plugin's tests."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from angos_redis import RedisCache, RedisCacheConfig, RedisLockConfig, RedisLockProvider

ProviderFactory = Callable[..., Awaitable[RedisLockProvider]]
CacheFactory = Callable[..., Awaitable[RedisCache]]


@pytest.fixture
async def make_provider(redis_url: str) -> AsyncIterator[ProviderFactory]:
    """Independent providers (own connection pools), like replicas sharing one Redis."""
    made: list[RedisLockProvider] = []

    async def make(**settings: Any) -> RedisLockProvider:
        provider = RedisLockProvider(RedisLockConfig(url=redis_url, **settings))
        await provider.open()
        made.append(provider)
        return provider

    yield make
    for provider in made:
        await provider.aclose()


@pytest.fixture
async def make_cache(redis_url: str) -> AsyncIterator[CacheFactory]:
    """Independent caches (own connections and near caches), like replicas on one Redis."""
    made: list[RedisCache] = []

    async def make(**settings: Any) -> RedisCache:
        cache = RedisCache(RedisCacheConfig(url=redis_url, **settings))
        await cache.open()
        made.append(cache)
        return cache

    yield make
    for cache in made:
        await cache.aclose()
