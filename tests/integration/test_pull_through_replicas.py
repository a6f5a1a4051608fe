"""Two replicas of one pull-through cache, sharing a store and Redis locks: concurrent cold
pulls of one blob on both make one upstream fetch (the replica without the fetch lock waits
for the other's blob)."""

from __future__ import annotations

import asyncio
import os
import secrets
from pathlib import Path

from angos_core.testing.api import serve_config
from tests.support.api import Api, digest_of, open_api
from tests.support.upstream_proxy import UpstreamProxy, running, upstream_toml

NAME = "library/alpine"
BLOB_MIB = 16


async def test_replicas_fetch_a_missing_blob_once(redis_url: str, tmp_path: Path) -> None:
    blob = os.urandom(BLOB_MIB * 1024 * 1024)
    digest = digest_of(blob)
    prefix = f"pt-{secrets.token_hex(4)}"
    root = tmp_path / "shared"
    toml = f"""
[blob_store.fs]
root_dir = "{root}"

[metadata_store.fs.redis]
url = "{redis_url}"
ttl = 10
key_prefix = "{prefix}-locks"
max_retries = 6000
retry_delay_ms = 20

[cache.redis]
url = "{redis_url}"
key_prefix = "{prefix}-cache"
"""
    async with open_api(tmp_path / "upstream") as up:
        await up.push_blob(NAME, blob)
        target = str(up.client.server.make_url("")).rstrip("/")
        async with running(UpstreamProxy(target)) as proxy:
            config = toml + upstream_toml("docker.io", proxy.url)
            async with serve_config(config, root=root) as a, serve_config(config, root=root) as b:

                async def pull(replica: Api) -> None:
                    resp = await replica.get(f"/v2/docker.io/{NAME}/blobs/{digest}")
                    assert resp.status == 200, await resp.text()
                    assert await resp.read() == blob

                await asyncio.gather(*(pull(r) for r in (a, b, a, b, a, b)))
            assert proxy.blob_gets(digest) == 1
