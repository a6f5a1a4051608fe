"""What a tag page costs the metadata store: one listing, no read per tag (issue 16).

A counting proxy in front of the ``fs`` store counts every call the registry makes; a page
of tags must cost a constant number of them whatever its size, and read no key.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest

from angos_core.testing.api import Api

pytestmark = pytest.mark.shapes("fs")

TAGS = 60


class CountingProxy:
    """Counts the calls made to ``inner``'s coroutine methods; can hide some methods."""

    def __init__(self, inner: Any, hidden: frozenset[str] = frozenset()) -> None:
        self._inner = inner
        self._hidden = hidden
        self.calls: Counter[str] = Counter()

    def __getattr__(self, attr: str) -> Any:
        if attr in self._hidden:
            raise AttributeError(attr)
        value = getattr(self._inner, attr)
        if not asyncio.iscoroutinefunction(value):
            return value

        async def counted(*args: Any, **kw: Any) -> Any:
            self.calls[attr] += 1
            return await value(*args, **kw)

        return counted


async def _tagged(api: Api, count: int) -> list[str]:
    _, body = await api.push_image("lib/app", "t000")
    tags = [f"t{i:03d}" for i in range(count)]
    for i in range(1, count, 20):
        resp = await asyncio.gather(
            *(api.put_manifest("lib/app", t, body) for t in tags[i : i + 20])
        )
        assert [r.status for r in resp] == [201] * len(resp)
    return tags


def _count(api: Api, hidden: frozenset[str] = frozenset()) -> CountingProxy:
    meta = api.registry.stores.meta
    proxy = CountingProxy(meta.inner, hidden)
    meta.inner = proxy
    return proxy


async def _walk(api: Api, n: int) -> tuple[list[str], int]:
    found: list[str] = []
    pages = 0
    url: str | None = f"/v2/lib/app/tags/list?n={n}"
    while url:
        resp = await api.get(url)
        assert resp.status == 200, await resp.text()
        found += (await resp.json())["tags"]
        pages += 1
        link = resp.headers.get("Link")
        url = link[1 : link.index(">")] if link else None
    return found, pages


async def test_a_tag_page_costs_a_constant_number_of_store_calls(api: Api) -> None:
    tags = await _tagged(api, TAGS)
    proxy = _count(api)

    resp = await api.get("/v2/lib/app/tags/list")
    assert (await resp.json())["tags"] == tags
    assert proxy.calls == {"list_children_page": 1}, proxy.calls

    proxy.calls.clear()
    found, pages = await _walk(api, 25)
    assert found == tags
    assert pages == 3
    assert proxy.calls == {"list_children_page": pages}, proxy.calls


async def test_a_failing_listing_answers_503(api: Api) -> None:
    await _tagged(api, 3)
    proxy = _count(api)

    async def broken(*args: Any, **kw: Any) -> Any:
        raise OSError(5, "I/O error in list_children_page")

    proxy.__dict__["list_children_page"] = broken
    resp = await api.get("/v2/lib/app/tags/list")
    assert resp.status == 503, await resp.text()
    assert (await resp.json())["errors"][0]["code"] == "UNAVAILABLE"
