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
#: Just past one ListObjectsV2 call (1,000 keys).
TAGS = [f"t{i:04d}" for i in range(1050)]


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
    # The S3 store under the wrappers: its client is where the list calls are counted.
    meta: Any = api.registry.stores.meta.inner
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

    # A walk: 1,000 + 50, no empty page at the end. The old code asked for 1,001 tags:
    # two calls for the first page.
    tags, link = await page(api, "n=1000")
    assert tags == TAGS[:1000]
    assert link == f'</v2/{NAME}/tags/list?n=1000&last=t0999>; rel="next"'
    assert calls.count == 1
    calls.count = 0
    tags, link = await page(api, "n=1000&last=t0999")
    assert (tags, link) == (TAGS[1000:], None)
    assert calls.count == 1

    # After a cursor S3 lists the cursor's own "t0049/" again, so 999 tags fill one call,
    # and its IsTruncated says t1049 follows. The old code asked for 1,000: two calls.
    calls.count = 0
    tags, link = await page(api, "n=999&last=t0049")
    assert tags == TAGS[50:1049]
    assert link == f'</v2/{NAME}/tags/list?n=999&last=t1048>; rel="next"'
    assert calls.count == 1

    # A page ending exactly at the last tag has no Link, still from one call.
    calls.count = 0
    tags, link = await page(api, "n=50&last=t0999")
    assert (tags, link) == (TAGS[1000:], None)
    assert calls.count == 1


async def test_the_next_page_of_a_walk_starts_from_what_the_last_call_read(api: Api) -> None:
    calls = await seed(api)

    # The first call read 1,000 keys for a page of 500: the next page is already read.
    tags, link = await page(api, "n=500")
    assert (tags, calls.count) == (TAGS[:500], 1)
    tags, link = await page(api, "n=500&last=t0499")
    assert (tags, calls.count) == (TAGS[500:1000], 1)
    assert link == f'</v2/{NAME}/tags/list?n=500&last=t0999>; rel="next"'
    tags, link = await page(api, "n=500&last=t0999")
    assert (tags, link, calls.count) == (TAGS[1000:], None, 2)


async def test_a_write_under_the_directory_drops_what_was_read_past_a_page(api: Api) -> None:
    calls = await seed(api)
    tags, _ = await page(api, "n=500")
    assert tags == TAGS[:500]
    await api.push_image(NAME, tag="t0500a")
    calls.count = 0
    tags, _ = await page(api, "n=500&last=t0499")
    assert tags == [*TAGS[500:501], "t0500a", *TAGS[501:999]]
    assert calls.count == 1
    # A write elsewhere keeps it.
    tags, _ = await page(api, "n=10")
    await api.push_image("lib/other", tag="x")
    calls.count = 0
    tags, _ = await page(api, "n=10&last=t0009")
    assert (tags, calls.count) == (TAGS[10:20], 0)
