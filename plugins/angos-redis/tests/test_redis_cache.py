"""Cache ``redis`` against a real redis-server: sharing, ttl in Redis, and outages."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest
import redis.asyncio as aioredis
from angos_redis import RedisCache

from angos_core.errors import BackendUnavailable
from angos_core.testing.redis_server import RedisServer

CacheFactory = Callable[..., Awaitable[RedisCache]]


async def test_entries_live_under_the_prefix_with_a_ttl(
    make_cache: CacheFactory, redis_url: str
) -> None:
    cache = await make_cache(key_prefix="c")
    await cache.set("tag/a", b"sha256:1", ttl_secs=30)
    await cache.set("tag/b", b"sha256:2")
    raw = aioredis.Redis.from_url(redis_url)
    try:
        assert await raw.get("c:tag/a") == b"sha256:1"
        assert 0 < await raw.pttl("c:tag/a") <= 30_000
        assert await raw.pttl("c:tag/b") == -1  # no ttl: kept until deleted
    finally:
        await raw.aclose()


async def test_a_write_on_one_replica_is_seen_by_the_others(make_cache: CacheFactory) -> None:
    one, two = await make_cache(), await make_cache()
    await one.set("tag/latest", b"sha256:old")
    assert await two.get("tag/latest") == b"sha256:old"
    await two.delete("tag/latest")
    assert await one.get("tag/latest") is None


async def test_prefixes_keep_caches_apart(make_cache: CacheFactory) -> None:
    a, b = await make_cache(key_prefix="a"), await make_cache(key_prefix="b")
    await a.set("k", b"from a")
    assert await b.get("k") is None


async def test_entry_expires_after_its_ttl(make_cache: CacheFactory) -> None:
    cache = await make_cache()
    await cache.set("k", b"v", ttl_secs=0.1)
    await asyncio.sleep(0.25)
    assert await cache.get("k") is None


async def test_a_ttl_already_past_stores_nothing(make_cache: CacheFactory) -> None:
    cache = await make_cache()
    await cache.set("k", b"old")
    await cache.set("k", b"new", ttl_secs=0)
    assert await cache.get("k") is None


async def test_binary_values_round_trip(make_cache: CacheFactory) -> None:
    cache = await make_cache()
    value = bytes(range(256)) * 4
    await cache.set("blob", value)
    assert await cache.get("blob") == value


async def test_outage_raises_backend_unavailable_then_recovers(
    make_cache: CacheFactory, redis_server: RedisServer
) -> None:
    cache = await make_cache()
    await cache.set("k", b"v")  # a pooled connection the restart will break
    with redis_server.down():
        for op in (cache.get("k"), cache.set("k", b"w"), cache.delete("k"), cache.health()):
            with pytest.raises(BackendUnavailable) as excinfo:
                await op
            assert excinfo.value.backend == "redis"
    # Restarted empty (no persistence): a miss, not an error, and writes work again.
    assert await cache.get("k") is None
    await cache.set("k", b"again")
    assert await cache.get("k") == b"again"


async def test_hung_redis_fails_fast_and_keeps_no_stale_entry(
    make_cache: CacheFactory, redis_server: RedisServer
) -> None:
    writer, reader = await make_cache(), await make_cache()
    await writer.set("tag/latest", b"sha256:old")
    assert await reader.get("tag/latest") == b"sha256:old"
    with redis_server.frozen():
        # The tag moves while Redis hangs: the invalidation times out.
        with pytest.raises(BackendUnavailable):
            await writer.delete("tag/latest")
        # Right after a timeout the cache does not wait on Redis again.
        with pytest.raises(BackendUnavailable, match="skipped"):
            await writer.get("tag/latest")
    # Redis resumes with the old value still in it. The writer retries the invalidation it
    # owes in the background, without being asked anything, so no replica serves the old
    # value once it went through.
    for _ in range(50):
        if await reader.get("tag/latest") is None:
            break
        await asyncio.sleep(0.1)
    assert await reader.get("tag/latest") is None
    await asyncio.sleep(1.0)  # the writer's own pause after its timeout ends
    assert await writer.get("tag/latest") is None
