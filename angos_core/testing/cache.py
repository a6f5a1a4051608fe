"""The contract every cache passes. Subclass it and override ``cache``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from angos_core.protocols import Cache


class CacheContract:
    """Behaviour every :class:`~angos_core.protocols.Cache` must have.

    Override the ``cache`` fixture to yield an opened, empty cache and close it after.
    """

    @pytest.fixture
    async def cache(self) -> AsyncIterator[Cache]:
        raise NotImplementedError("override the cache fixture: yield an opened cache")
        yield  # pragma: no cover

    async def test_is_a_cache(self, cache: Cache) -> None:
        assert isinstance(cache, Cache)
        assert isinstance(cache.name, str) and cache.name
        await cache.health()

    async def test_miss(self, cache: Cache) -> None:
        assert await cache.get("contract:absent") is None

    async def test_set_get_overwrite(self, cache: Cache) -> None:
        await cache.set("contract:k", b"one")
        assert await cache.get("contract:k") == b"one"
        await cache.set("contract:k", b"two")
        assert await cache.get("contract:k") == b"two"

    async def test_values_are_bytes_as_given(self, cache: Cache) -> None:
        await cache.set("contract:binary", bytes(range(256)))
        await cache.set("contract:empty", b"")
        assert await cache.get("contract:binary") == bytes(range(256))
        assert await cache.get("contract:empty") == b""  # empty, not a miss

    async def test_keys_are_opaque_strings(self, cache: Cache) -> None:
        keys = ["a/b:c", "sha256:" + "a" * 64, "with space", "ünï", "x" * 200]
        for i, key in enumerate(keys):
            await cache.set(key, str(i).encode())
        for i, key in enumerate(keys):
            assert await cache.get(key) == str(i).encode()

    async def test_delete(self, cache: Cache) -> None:
        await cache.set("contract:gone", b"x")
        await cache.set("contract:kept", b"y")
        await cache.delete("contract:gone")
        assert await cache.get("contract:gone") is None
        assert await cache.get("contract:kept") == b"y"
        await cache.delete("contract:gone")  # idempotent
        await cache.delete("contract:never-set")

    async def test_ttl_expiry(self, cache: Cache) -> None:
        await cache.set("contract:short", b"x", ttl_secs=0.3)
        await cache.set("contract:long", b"y", ttl_secs=60)
        await cache.set("contract:forever", b"z")
        assert await cache.get("contract:short") == b"x"
        await asyncio.sleep(0.8)
        assert await cache.get("contract:short") is None
        assert await cache.get("contract:long") == b"y"
        assert await cache.get("contract:forever") == b"z"

    async def test_set_again_resets_the_ttl(self, cache: Cache) -> None:
        await cache.set("contract:k", b"old", ttl_secs=0.3)
        await cache.set("contract:k", b"new")
        await asyncio.sleep(0.8)
        assert await cache.get("contract:k") == b"new"
        await cache.set("contract:k", b"newer", ttl_secs=0.3)
        await asyncio.sleep(0.8)
        assert await cache.get("contract:k") is None
