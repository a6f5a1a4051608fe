"""Cached content carries the times retention judges by: a fetch is its push, a pull
through the cache its pull (so `image.last_pulled_at` rules evict what nobody pulls)."""

from __future__ import annotations

from pathlib import Path

from angos_core import layout
from tests.api.test_pull_through import ACCEPT, LAYER, NAME, NS, cache_of, upstream


async def test_a_fetched_manifest_is_dated_and_its_pulls_recorded(tmp_path: Path) -> None:
    async with upstream(tmp_path) as (up, proxy), cache_of(tmp_path, proxy) as cache:
        digest, _ = await up.push_image(NAME, "3.20", layer=LAYER)
        name = f"{NS}/{NAME}"
        times = cache.registry.times
        assert await times.read(name, layout.PUSHED, digest) is None
        resp = await cache.get(f"/v2/{name}/manifests/3.20", headers=ACCEPT)
        assert resp.status == 200, await resp.text()
        assert await times.read(name, layout.PUSHED, digest) is not None
        assert await times.flush() == 1
        assert await times.read(name, layout.PULLED, digest) is not None
