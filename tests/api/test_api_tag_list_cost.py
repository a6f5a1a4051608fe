"""What a tag page costs the metadata store: about one listing, not a read per tag (issue 16).

A counting proxy in front of the ``fs`` store counts every call the registry makes; a page
of tags must cost a constant number of them whatever its size. The same listing on a store
without batched reads (the proxy hides ``get_many``) still lists only tags that resolve.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest

from angos_core import layout
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
    whole = sum(proxy.calls.values())
    assert whole <= 3, proxy.calls

    proxy.calls.clear()
    found, pages = await _walk(api, 25)
    assert found == tags
    assert pages == 3
    assert sum(proxy.calls.values()) <= 3 * pages, proxy.calls
    assert proxy.calls["get"] == 0, proxy.calls


async def test_a_batched_page_lists_only_tags_that_resolve(api: Api) -> None:
    tags = await _tagged(api, 5)
    meta = api.registry.stores.meta
    digest = await api.registry.links.tag_digest("lib/app", "t000")
    assert digest is not None
    # A half-written tag (index entry, no current link) and one whose link is garbage.
    await meta.create(layout.tag_index_key("lib/app", "t001a", digest), digest.encode())
    await meta.put(layout.tag_current_key("lib/app", "t002a"), b"not a digest")
    proxy = _count(api)
    resp = await api.get("/v2/lib/app/tags/list")
    assert (await resp.json())["tags"] == tags
    assert proxy.calls["get_many"] == 1, proxy.calls
    resp = await api.get("/v2/lib/app/tags/list?n=2&last=t001")
    assert (await resp.json())["tags"] == ["t002", "t003"]
    assert (await api.get("/v2/lib/app/manifests/t001a")).status == 404
    assert (await api.get("/v2/lib/app/manifests/t002a")).status == 404


async def test_a_store_without_batched_reads_is_read_tag_by_tag(api: Api) -> None:
    tags = await _tagged(api, 5)
    digest = await api.registry.links.tag_digest("lib/app", "t000")
    assert digest is not None
    meta = api.registry.stores.meta
    await meta.create(layout.tag_index_key("lib/app", "t001a", digest), digest.encode())
    proxy = _count(api, hidden=frozenset({"get_many"}))
    assert not meta.batched_get
    resp = await api.get("/v2/lib/app/tags/list")
    assert (await resp.json())["tags"] == tags
    # Tags already in the link cache cost nothing; the half-written one costs its read.
    assert proxy.calls["get"] >= 1, proxy.calls


async def test_a_failing_batched_read_answers_503(api: Api) -> None:
    await _tagged(api, 3)
    proxy = _count(api)

    async def broken(keys: Any) -> Any:
        raise OSError(5, "I/O error in get_many")

    proxy.__dict__["get_many"] = broken
    resp = await api.get("/v2/lib/app/tags/list")
    assert resp.status == 503, await resp.text()
    assert (await resp.json())["errors"][0]["code"] == "UNAVAILABLE"
