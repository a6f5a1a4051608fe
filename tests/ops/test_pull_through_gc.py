"""The garbage collector treats what a pull-through namespace cached like pushed content:
a tagged cached image and its blobs are kept, an untagged one is collected, and a pull
fetches it again."""

from __future__ import annotations

import json
from pathlib import Path

from angos_core.registry.gc import GarbageCollector
from tests.support.api import Api, open_api
from tests.support.upstream_proxy import UpstreamProxy, running, upstream_toml

NAME = "library/alpine"
LAYER = b"cached-layer" * 1000
ACCEPT = {"Accept": "application/vnd.oci.image.manifest.v1+json"}


async def collect(api: Api, **kw: object) -> None:
    await GarbageCollector(api.registry, out=lambda line: None, min_age_secs=0, **kw).run()  # type: ignore[arg-type]


async def test_cached_content_is_collected_like_pushed_content(tmp_path: Path) -> None:
    async with open_api(tmp_path / "upstream") as up:
        tagged, body = await up.push_image(NAME, "3.20", layer=LAYER)
        untagged, _ = await up.push_image(NAME, None, layer=LAYER + b"u")
        target = str(up.client.server.make_url("")).rstrip("/")
        async with running(UpstreamProxy(target)) as proxy:
            toml = upstream_toml("docker.io", proxy.url)
            async with open_api(tmp_path / "cache", toml) as cache:
                base = f"/v2/docker.io/{NAME}"
                for ref in ("3.20", untagged):
                    assert (
                        await cache.get(f"{base}/manifests/{ref}", headers=ACCEPT)
                    ).status == 200
                layer = json.loads(body)["layers"][0]["digest"]
                assert (await cache.get(f"{base}/blobs/{layer}")).status == 200
                await collect(cache, delete_untagged=True)
                # Kept: the tagged manifest and its blob, served without the upstream.
                proxy.target = "http://127.0.0.1:9"
                resp = await cache.get(f"{base}/manifests/3.20", headers=ACCEPT)
                assert resp.status == 200 and resp.headers["Docker-Content-Digest"] == tagged
                resp = await cache.get(f"{base}/blobs/{layer}")
                assert resp.status == 200 and await resp.read() == LAYER
                # Collected: the untagged one is gone from the store, fetched again on a pull.
                assert (
                    await cache.get(f"{base}/manifests/{untagged}", headers=ACCEPT)
                ).status == 503
                proxy.target = target
                assert (
                    await cache.get(f"{base}/manifests/{untagged}", headers=ACCEPT)
                ).status == 200
                gets = [p for (m, p) in proxy.forwarded if m == "GET" and p.endswith(untagged)]
                # The first pull, the one while the upstream was away, and the fetch again.
                assert proxy.forwarded[("GET", gets[0])] == 3
