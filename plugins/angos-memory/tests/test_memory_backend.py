"""What only the memory backends promise: LRU bounds, config checks, and locks that work
across event loops of one process."""

from __future__ import annotations

import asyncio
import threading

import pytest
from angos_memory import (
    LockTable,
    MemoryCache,
    MemoryCacheConfig,
    MemoryLockConfig,
    MemoryLockProvider,
)

from angos_core.config import parse_table
from angos_core.errors import ConfigError, LockUnavailable
from angos_core.plugins import load_catalogue


def test_registered_through_the_entry_point() -> None:
    catalogue = load_catalogue()
    lock = catalogue.get("lock_provider", "memory")
    cache = catalogue.get("cache", "memory")
    assert lock.distribution == cache.distribution == "angos-memory"
    assert lock.config_type is MemoryLockConfig
    assert cache.config_type is MemoryCacheConfig
    assert "shared" not in lock.capabilities  # one process only


def test_lock_config_uses_the_redis_provider_names() -> None:
    path = "metadata_store.fs.memory"
    assert parse_table(MemoryLockConfig, {}, path) == MemoryLockConfig(10.0, 100, 10)
    parsed = parse_table(MemoryLockConfig, {"ttl": 3, "max_retries": 5, "retry_delay_ms": 1}, path)
    assert parsed == MemoryLockConfig(3.0, 5, 1)
    with pytest.raises(ConfigError) as info:
        parse_table(MemoryLockConfig, {"ttl": 0}, path)
    assert info.value.key == path and "ttl must be positive" in str(info.value)
    with pytest.raises(ConfigError) as info:
        parse_table(MemoryLockConfig, {"url": "redis://x"}, path)
    assert info.value.key == f"{path}.url"


def test_cache_config() -> None:
    assert parse_table(MemoryCacheConfig, {}, "cache.memory").max_entries == 10000
    with pytest.raises(ConfigError) as info:
        parse_table(MemoryCacheConfig, {"max_entries": 0}, "cache.memory")
    assert info.value.key == "cache.memory"
    with pytest.raises(ConfigError) as info:
        parse_table(MemoryCacheConfig, {"max_entries": "many"}, "cache.memory")
    assert info.value.key == "cache.memory.max_entries"


async def test_cache_drops_the_least_recently_used() -> None:
    cache = MemoryCache(MemoryCacheConfig(max_entries=3))
    for key in ("a", "b", "c"):
        await cache.set(key, key.encode())
    assert await cache.get("a") == b"a"  # a is now the most recently used
    await cache.set("d", b"d")
    assert len(cache) == 3
    assert await cache.get("b") is None
    assert [await cache.get(k) for k in ("a", "c", "d")] == [b"a", b"c", b"d"]
    await cache.set("c", b"c2")  # overwriting refreshes too
    await cache.set("e", b"e")
    assert await cache.get("a") is None
    assert await cache.get("c") == b"c2"


async def test_cache_non_positive_ttl_stores_nothing() -> None:
    cache = MemoryCache(MemoryCacheConfig())
    await cache.set("k", b"old")
    await cache.set("k", b"new", ttl_secs=0)
    assert await cache.get("k") is None
    assert len(cache) == 0


async def test_expired_entries_are_dropped_on_read() -> None:
    cache = MemoryCache(MemoryCacheConfig())
    await cache.set("k", b"v", ttl_secs=0.05)
    await asyncio.sleep(0.1)
    assert await cache.get("k") is None
    assert len(cache) == 0


async def test_providers_built_separately_do_not_share_locks() -> None:
    config = MemoryLockConfig(max_retries=0)
    one, two = MemoryLockProvider(config), MemoryLockProvider(config)
    async with one.acquire(["k"]), two.acquire(["k"]):
        pass
    shared = LockTable()
    three, four = MemoryLockProvider(config, shared), MemoryLockProvider(config, shared)
    async with three.acquire(["k"]):
        with pytest.raises(LockUnavailable):
            async with four.acquire(["k"]):
                pass  # pragma: no cover


def test_exclusion_across_event_loops_in_threads() -> None:
    table = LockTable()
    counter = 0
    inside = 0
    most_inside = 0
    errors: list[BaseException] = []

    async def worker() -> None:
        nonlocal counter, inside, most_inside
        provider = MemoryLockProvider(MemoryLockConfig(max_retries=5000, retry_delay_ms=5), table)
        for _ in range(20):
            async with provider.acquire(["shared"]) as lease:
                inside += 1
                most_inside = max(most_inside, inside)
                seen = counter
                await asyncio.sleep(0.001)
                lease.check()
                counter = seen + 1
                inside -= 1

    def run() -> None:
        try:
            asyncio.run(worker())
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert counter == 60
    assert most_inside == 1
