"""The memory lock provider and cache pass the shipped contracts."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from angos_memory import (
    LockTable,
    MemoryCache,
    MemoryCacheConfig,
    MemoryLockConfig,
    MemoryLockProvider,
)

from angos_core.protocols import Cache, LockProvider
from angos_core.testing import CacheContract, LockProviderContract, LockProviderFactory


class TestMemoryLockProvider(LockProviderContract):
    @pytest.fixture
    async def lock_provider_factory(self) -> AsyncIterator[LockProviderFactory]:
        table = LockTable()  # one lock space for every provider of this test
        made: list[MemoryLockProvider] = []

        async def make(**settings: Any) -> LockProvider:
            provider = MemoryLockProvider(MemoryLockConfig(**settings), table=table)
            await provider.open()
            made.append(provider)
            return provider

        yield make
        for provider in made:
            await provider.aclose()


class TestMemoryCache(CacheContract):
    @pytest.fixture
    async def cache(self) -> AsyncIterator[Cache]:
        cache = MemoryCache(MemoryCacheConfig())
        await cache.open()
        yield cache
        await cache.aclose()
