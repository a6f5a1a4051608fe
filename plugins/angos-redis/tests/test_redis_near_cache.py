"""The near cache in front of cache ``redis``: hits cost no round trip, and Redis's tracking
keeps them true (writes elsewhere, expiry, flushes, restarts, a lost connection)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import redis.asyncio as aioredis
from angos_redis import RedisCache, RedisCacheConfig
from angos_redis.near import Tracker

from angos_core.config import parse_table
from angos_core.testing.redis_server import RedisServer

CacheFactory = Callable[..., Awaitable[RedisCache]]


@pytest.fixture
async def raw(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url)
    yield client
    await client.aclose()


def tracker(cache: RedisCache) -> Tracker:
    t = cache._tracker
    assert t is not None
    return t


async def gets_served_by_redis(raw: aioredis.Redis) -> int:
    stats = await raw.info("commandstats")
    return int(stats.get("cmdstat_get", {}).get("calls", 0))


async def until(check: Callable[[], bool], secs: float = 10.0) -> None:
    # What is awaited is Redis's own message to another connection: no event to wait on.
    async with asyncio.timeout(secs):
        while not check():  # noqa: ASYNC110
            await asyncio.sleep(0.01)


async def test_a_hot_key_is_read_from_redis_once(
    make_cache: CacheFactory, raw: aioredis.Redis
) -> None:
    cache = await make_cache()
    await cache.set("tag:lib/app:latest", b"sha256:1")
    before = await gets_served_by_redis(raw)
    for _ in range(200):
        assert await cache.get("tag:lib/app:latest") == b"sha256:1"
    assert await gets_served_by_redis(raw) - before == 1


async def test_a_write_through_another_replica_is_seen_at_once(
    make_cache: CacheFactory, raw: aioredis.Redis
) -> None:
    a, b = await make_cache(), await make_cache()
    for i in range(100):
        value = f"sha256:{i}".encode()
        await a.set("tag:lib/app:latest", value)
        assert await b.get("tag:lib/app:latest") == value
        assert await b.get("tag:lib/app:latest") == value  # now from b's near cache
        await a.delete("tag:lib/app:latest")
        assert await b.get("tag:lib/app:latest") is None
    # Writes that bypass angos (an operator's SET or DEL) are tracked as well.
    await b.set("k", b"old")
    assert await b.get("k") == b"old"
    await raw.set("cache:k", b"new")
    await until(lambda: tracker(b).near.get("cache:k") is None)
    assert await b.get("k") == b"new"
    await raw.delete("cache:k")
    await until(lambda: tracker(b).near.get("cache:k") is None)
    assert await b.get("k") is None


async def test_expiry_and_flush_empty_the_near_cache(
    make_cache: CacheFactory, raw: aioredis.Redis
) -> None:
    cache = await make_cache()
    await cache.set("short", b"v", ttl_secs=0.2)
    await cache.set("long", b"v")
    assert await cache.get("short") == b"v"
    assert await cache.get("long") == b"v"
    assert len(tracker(cache).near) == 2
    # Redis reports the expiry (on access or by its expiry cycle) as an invalidation.
    await asyncio.sleep(0.3)
    await raw.get("cache:short")
    await until(lambda: tracker(cache).near.get("cache:short") is None)
    assert await cache.get("short") is None
    await raw.flushall()
    await until(lambda: len(tracker(cache).near) == 0)
    assert await cache.get("long") is None


async def test_a_redis_restart_never_serves_what_was_near(
    make_cache: CacheFactory, redis_server: RedisServer, raw: aioredis.Redis
) -> None:
    cache = await make_cache()
    t = tracker(cache)
    await cache.set("tag:lib/app:latest", b"sha256:old")
    assert await cache.get("tag:lib/app:latest") == b"sha256:old"
    assert t.near.get("cache:tag:lib/app:latest") == b"sha256:old"
    redis_server.stop()
    # The near cache is emptied when the tracking connection drops, not at the next read.
    await until(lambda: not t.live)
    assert len(t.near) == 0
    redis_server.start()
    await raw.set("cache:tag:lib/app:latest", b"sha256:new")
    # Reads go to Redis until tracking is back, then fill again.
    for _ in range(3):
        with_errors = await _get_or_none(cache, "tag:lib/app:latest")
        assert with_errors in (None, b"sha256:new")
    await until(lambda: t.live)
    assert await cache.get("tag:lib/app:latest") == b"sha256:new"
    assert t.near.get("cache:tag:lib/app:latest") == b"sha256:new"


async def test_a_lost_tracking_connection_empties_the_near_cache(
    make_cache: CacheFactory, raw: aioredis.Redis
) -> None:
    cache = await make_cache()
    t = tracker(cache)
    await cache.set("k", b"old")
    assert await cache.get("k") == b"old"
    connects = t.connects
    # Redis drops the subscriber: every write made until it is back goes unreported.
    await raw.client_kill_filter(_type="pubsub")
    await until(lambda: not t.live or t.connects > connects)
    await raw.set("cache:k", b"new")
    assert await cache.get("k") == b"new"
    await until(lambda: t.live)
    assert await cache.get("k") == b"new"


async def test_memory_is_bounded(make_cache: CacheFactory) -> None:
    cache = await make_cache(near_cache_size=8 * 1024)
    t = tracker(cache)
    for i in range(500):
        await cache.set(f"k{i}", b"x" * 40)
        assert await cache.get(f"k{i}") == b"x" * 40
    assert 0 < t.near.size <= 8 * 1024
    assert len(t.near) < 100
    # The most recent keys are the ones kept.
    assert t.near.get("cache:k499") == b"x" * 40
    assert t.near.get("cache:k0") is None


async def test_size_zero_turns_it_off(make_cache: CacheFactory, raw: aioredis.Redis) -> None:
    cache = await make_cache(near_cache_size=0)
    assert cache._tracker is None
    await cache.set("k", b"v")
    before = await gets_served_by_redis(raw)
    for _ in range(5):
        assert await cache.get("k") == b"v"
    assert await gets_served_by_redis(raw) - before == 5


async def test_a_fill_racing_an_invalidation_is_dropped(
    make_cache: CacheFactory, raw: aioredis.Redis
) -> None:
    cache = await make_cache()
    t = tracker(cache)
    await cache.set("k", b"old")
    # Read "old" from Redis, then an invalidation lands before the fill.
    epoch = t.epoch
    t.invalidated([b"cache:k"])
    t.fill("cache:k", b"old", epoch)
    assert t.near.get("cache:k") is None


async def _get_or_none(cache: RedisCache, key: str) -> bytes | None:
    try:
        return await cache.get(key)
    except Exception:
        return None


def test_near_cache_size_is_a_size_and_never_negative() -> None:
    table = {"url": "redis://r:6379", "near_cache_size": "8KiB"}
    assert parse_table(RedisCacheConfig, table, "cache.redis").near_cache_size == 8192
    with pytest.raises(Exception, match="near_cache_size"):
        parse_table(RedisCacheConfig, {**table, "near_cache_size": -1}, "cache.redis")
