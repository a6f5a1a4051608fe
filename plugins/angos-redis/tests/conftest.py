"""Fixtures shared by the redis plugin's tests."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from angos_redis import RedisLockConfig, RedisLockProvider

ProviderFactory = Callable[..., Awaitable[RedisLockProvider]]


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
