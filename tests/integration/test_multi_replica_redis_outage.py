"""Replicas on one shared fs root while their Redis goes away and comes back.

* Redis down (refused connections) or hung (SIGSTOP: connections time out): reads keep being
  served from the store with the right answers; writes that need the lock fail with 503
  UNAVAILABLE naming Redis and leave nothing behind (blob uploads take no lock and complete);
  once Redis is back, the same processes serve writes again without a restart.
* A cache outage alone (lock elsewhere) costs no request anything: no 5xx, no wrong answer,
  and an invalidation that could not reach a hung Redis is delivered once it answers.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from tests.integration.test_multi_replica import (
    OCI_MANIFEST,
    Client,
    Image,
    _path,
    _with_digest,
    make_image,
)
from tests.support.angos_server import AngosServer, AngosServerFactory
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.timeout(300)

NAME = "mr/outage"


def _config(root: Path, redis_url: str, *, lock: bool, ttl: float = 10) -> str:
    toml = f'[blob_store.fs]\nroot_dir = "{root}"\n'
    if lock:
        toml += f'[metadata_store.fs.redis]\nurl = "{redis_url}"\nttl = {ttl}\n'
    return toml + f'[cache.redis]\nurl = "{redis_url}"\n'


async def _client(servers: list[AngosServer]) -> AsyncIterator[Client]:
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        yield Client(session, [s.url for s in servers])


@pytest.fixture
def images() -> list[Image]:
    rng = random.Random(3)
    shared = rng.randbytes(1500)
    return [make_image(rng, f"outage-{i}", shared) for i in range(4)]


async def _tag_digest(client: Client, replica: int, tag: str = "v1") -> str:
    _, headers, _ = await client.get_manifest(replica, NAME, tag, {200})
    digest: str = headers["Docker-Content-Digest"]
    return digest


def _assert_unavailable_from_redis(body: bytes) -> None:
    (error,) = json.loads(body)["errors"]
    assert error["code"] == "UNAVAILABLE"
    assert error["detail"]["backend"] == "redis"


async def _reads_are_served(client: Client, image: Image) -> None:
    for r in range(len(client.urls)):
        assert await _tag_digest(client, r) == image.digest
        await client.request("HEAD", r, f"/v2/{NAME}/manifests/v1", {200})
        for digest, data in image.blobs.items():
            _, _, body = await client.request("GET", r, f"/v2/{NAME}/blobs/{digest}", {200})
            assert body == data
        _, _, listing = await client.request("GET", r, f"/v2/{NAME}/tags/list", {200})
        assert json.loads(listing)["tags"] == ["v1"]


async def _writes_recover_within(client: Client, seconds: float) -> None:
    """Poll a locked write (deleting a tag that does not exist: 404 once the tag's lock is
    held) until it succeeds.

    A lock command Redis buffered while hung may run when it resumes; the provider releases
    such keys in the background, and at the latest they expire after the lock's ttl. On a
    loaded machine that can outlast one request's bounded lock wait, so the first write
    after recovery may still get 503: what must hold is that writes recover, in bounded time.
    """
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        status, _, _ = await client.request("DELETE", 0, f"/v2/{NAME}/manifests/probe", {404, 503})
        if status == 404:
            return
        assert asyncio.get_running_loop().time() < deadline, "writes did not recover in time"
        await asyncio.sleep(0.2)


async def _writes_fail_cleanly(client: Client, pushed: Image, refused: Image) -> None:
    """Every locked write answers 503 from Redis; the tag still names ``pushed`` after."""
    # A blob upload takes no lock (its link is one create of a key naming its content):
    # it completes without Redis.
    digest, data = next(iter(refused.blobs.items()))
    _, headers, _ = await client.request("POST", 0, f"/v2/{NAME}/blobs/uploads/", {202})
    await client.request(
        "PUT", 1, _with_digest(_path(headers["Location"]), digest), {201}, data=data
    )
    _, _, body = await client.request(
        "PUT",
        1,
        f"/v2/{NAME}/manifests/v1",
        {503},
        data=pushed.manifest,  # all its blobs are there: only the lock is missing
        headers={"Content-Type": OCI_MANIFEST},
    )
    _assert_unavailable_from_redis(body)
    _, _, body = await client.request("DELETE", 0, f"/v2/{NAME}/manifests/v1", {503})
    _assert_unavailable_from_redis(body)
    for r in range(len(client.urls)):
        assert await _tag_digest(client, r) == pushed.digest
        await client.request("HEAD", r, f"/v2/{NAME}/blobs/{digest}", {200})


@pytest.mark.parametrize("outage", ["down", "hung"])
async def test_redis_outage_fails_writes_cleanly_and_recovers_without_restart(
    outage: str,
    angos_server_factory: AngosServerFactory,
    redis_server: RedisServer,
    redis_url: str,
    tmp_path: Path,
    images: list[Image],
) -> None:
    # ttl 3: a hung Redis times lock commands out after 1 s (ttl/3) instead of 2.
    toml = _config(tmp_path / "root", redis_url, lock=True, ttl=3)
    servers = [angos_server_factory(toml) for _ in range(2)]
    async for client in _client(servers):
        first, second = images[0], images[1]
        await client.push(NAME, "v1", first, 0)
        await _reads_are_served(client, first)  # and cached

        with redis_server.down() if outage == "down" else redis_server.frozen():
            await _reads_are_served(client, first)
            await _writes_fail_cleanly(client, first, second)

        # The same processes, no restart: writes go through again and every replica agrees.
        await _writes_recover_within(client, seconds=3 + 5)  # the lock ttl bounds an orphan
        await client.push(NAME, "v1", second, 1)
        for r in range(len(servers)):
            assert await _tag_digest(client, r) == second.digest
        await client.request("DELETE", 0, f"/v2/{NAME}/manifests/v1", {202})
        for r in range(len(servers)):
            await client.get_manifest(r, NAME, "v1", {404})
        assert all(s.running for s in servers)
        only_expected = [e for e in client.server_errors if " -> 503 " not in e]
        assert not only_expected, only_expected


async def test_cache_outage_alone_costs_no_request_anything(
    angos_server_factory: AngosServerFactory,
    redis_server: RedisServer,
    redis_url: str,
    tmp_path: Path,
    images: list[Image],
) -> None:
    # Lock provider "memory" (the test's requests never overlap), cache on the Redis that
    # goes away: only the cache is out.
    toml = _config(tmp_path / "root", redis_url, lock=False)
    servers = [angos_server_factory(toml) for _ in range(2)]
    async for client in _client(servers):
        await client.push(NAME, "v1", images[0], 0)
        await _reads_are_served(client, images[0])

        with redis_server.down():
            await client.push(NAME, "v1", images[1], 1)
            await _reads_are_served(client, images[1])
        await _reads_are_served(client, images[1])

        # Hung rather than down: the invalidation of the tag move cannot reach Redis, which
        # comes back still holding the old digest; it is delivered once Redis answers.
        with redis_server.frozen():
            await client.push(NAME, "v1", images[2], 0)
            for r in range(len(servers)):
                assert await _tag_digest(client, r) == images[2].digest
        seen: list[str] = []
        for _ in range(50):
            seen = [await _tag_digest(client, r) for r in range(len(servers))]
            if seen == [images[2].digest] * len(servers):
                break
            await asyncio.sleep(0.1)
        assert seen == [images[2].digest] * len(servers), "a stale tag outlived the outage"
        await _reads_are_served(client, images[2])
        assert not client.server_errors, client.server_errors
