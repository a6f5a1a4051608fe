"""Two replicas (in process) on one store and one Redis cache, each with its near cache.

Hot manifest GETs by tag are answered without a Redis round trip, yet a tag moved through
one replica is served new by the other at once (no ttl staleness), and a Redis restart
leaves nothing stale behind.
"""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis

from angos_core.testing.api import Api
from angos_core.testing.redis_server import RedisServer
from tests.support.storage import Storage

pytestmark = pytest.mark.shapes("fs")

NAME, TAG = "lib/near", "latest"


def cache_toml(redis_url: str) -> str:
    return f'[cache.redis]\nurl = "{redis_url}"\nkey_prefix = "near"\n'


async def gets(raw: aioredis.Redis) -> int:
    stats = await raw.info("commandstats")
    return int(stats.get("cmdstat_get", {}).get("calls", 0))


async def digest_served(api: Api) -> str:
    resp = await api.get(f"/v2/{NAME}/manifests/{TAG}")
    assert resp.status == 200, await resp.text()
    await resp.read()
    return resp.headers["Docker-Content-Digest"]


async def test_hot_tags_skip_redis_and_moves_are_seen_at_once(
    storage: Storage, redis_url: str
) -> None:
    raw = aioredis.Redis.from_url(redis_url)
    try:
        async with (
            storage.open_api(cache_toml(redis_url)) as a,
            storage.open_api(cache_toml(redis_url)) as b,
        ):
            digest, _ = await a.push_image(NAME, TAG, layer=b"layer-0")
            assert await digest_served(b) == digest
            before = await gets(raw)
            for _ in range(50):
                assert await digest_served(b) == digest
            # 50 hot GETs by tag: answered from b's near cache, not Redis.
            assert await gets(raw) - before <= 2

            for turn in range(1, 11):
                writer, reader = (a, b) if turn % 2 else (b, a)
                assert await digest_served(reader) == digest  # warm, near
                digest, _ = await writer.push_image(NAME, TAG, layer=f"layer-{turn}".encode())
                assert await digest_served(reader) == digest, f"turn {turn}: stale"
    finally:
        await raw.aclose()


async def test_a_redis_restart_leaves_nothing_stale(
    storage: Storage, redis_url: str, redis_server: RedisServer
) -> None:
    async with (
        storage.open_api(cache_toml(redis_url)) as a,
        storage.open_api(cache_toml(redis_url)) as b,
    ):
        old, _ = await a.push_image(NAME, TAG, layer=b"old")
        assert await digest_served(b) == old
        assert await digest_served(b) == old
        redis_server.stop()
        # While Redis is down the cache misses and the store answers; a tag moved
        # meanwhile (its invalidation lost with Redis) is served new by both.
        new, _ = await a.push_image(NAME, TAG, layer=b"new")
        assert await digest_served(b) == new
        redis_server.start()
        for _ in range(20):
            assert await digest_served(b) == new
            assert await digest_served(a) == new
            await asyncio.sleep(0.05)
