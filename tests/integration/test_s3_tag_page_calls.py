"""A tag page on S3 costs one ListObjectsV2 call when it fits in one (moto, over HTTP).

The store says whether more tags follow the page (``list_children_page``), so the page
no longer lists one tag more than it returns: that extra tag was a second call whenever
the page filled S3's 1,000-key listing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from angos_core import layout
from angos_core.testing.api import Api

pytestmark = pytest.mark.shapes("s3")

NAME = "lib/many"
DIGEST = "sha256:" + "c" * 64
TAGS = [f"t{i:04d}" for i in range(1500)]


class ListCalls:
    """Counts the S3 client's ListObjectsV2 calls."""

    def __init__(self, call: Callable[..., Awaitable[dict[str, Any]]]) -> None:
        self.inner = call
        self.count = 0

    async def __call__(self, op: str, key: str | None, **params: Any) -> dict[str, Any]:
        if op == "list_objects_v2":
            self.count += 1
        return await self.inner(op, key, **params)


async def seed(api: Api) -> ListCalls:
    meta = api.registry.stores.meta.inner
    gate = asyncio.Semaphore(32)

    async def put(tag: str) -> None:
        async with gate:
            await meta.put(layout.tag_current_key(NAME, tag), layout.link_content(DIGEST))

    await asyncio.gather(*(put(tag) for tag in TAGS))
    calls = ListCalls(meta.s3.call)
    meta.s3.call = calls
    return calls


async def page(api: Api, query: str) -> tuple[list[str], str | None]:
    resp = await api.get(f"/v2/{NAME}/tags/list?{query}")
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    return body["tags"], resp.headers.get("Link")


async def test_a_tag_page_is_one_list_call(api: Api) -> None:
    calls = await seed(api)

    tags, link = await page(api, "n=1000")
    assert tags == TAGS[:1000]
    assert link == f'</v2/{NAME}/tags/list?n=1000&last=t0999>; rel="next"'
    assert calls.count == 1  # the old code asked for 1,001 tags: two calls

    # After a cursor S3 lists the cursor's own "t0499/" again, so 999 tags fill one call.
    calls.count = 0
    tags, link = await page(api, "n=999&last=t0499")
    assert tags == TAGS[500:1499]
    assert link == f'</v2/{NAME}/tags/list?n=999&last=t1498>; rel="next"'
    assert calls.count == 1  # the old code asked for 1,000: two calls

    calls.count = 0
    tags, link = await page(api, "n=500&last=t0999")
    assert (tags, link) == (TAGS[1000:], None)
    assert calls.count == 1

    # A page ending exactly at the last tag has no Link, still from one call.
    calls.count = 0
    tags, link = await page(api, "n=300&last=t1199")
    assert (tags, link) == (TAGS[1200:], None)
    assert calls.count == 1


async def test_a_walk_costs_one_call_per_page(api: Api) -> None:
    calls = await seed(api)
    walked: list[str] = []
    query = "n=1000"
    pages = 0
    while True:
        tags, link = await page(api, query)
        walked += tags
        pages += 1
        if link is None:
            break
        query = link.split("?", 1)[1].split(">", 1)[0]
    assert walked == TAGS
    assert pages == 2  # 1,000 + 500: no empty page at the end
    assert calls.count == pages  # the old code made 3: two for the first page
