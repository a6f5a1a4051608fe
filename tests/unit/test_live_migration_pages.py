"""A live migration's metadata store pages the union of the new and the old store with an
exact ``more`` flag (the tag list's ``Link`` depends on it)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from angos_fs import FsConfig, FsMetadataStore

from angos_core.migrate.live import LiveMetadataStore
from angos_core.protocols import Children

BASE = "v2/repositories/lib/app/_manifests/tags/"


@pytest.fixture
async def live(tmp_path: Path) -> AsyncIterator[LiveMetadataStore]:
    new = FsMetadataStore(FsConfig(root_dir=str(tmp_path / "new")))
    old = FsMetadataStore(FsConfig(root_dir=str(tmp_path / "old")))
    for store in (new, old):
        await store.open()
    names = [f"t{i:02d}" for i in range(10)]
    # Split between the sides, one name on both.
    for i, name in enumerate(names):
        await (new if i % 2 else old).put(f"{BASE}{name}/current/link", b"")
    await new.put(f"{BASE}t04/current/link", b"")
    yield LiveMetadataStore(new, old)
    for store in (new, old):
        await store.aclose()


async def test_pages_of_the_union_say_exactly_whether_more_follow(
    live: LiveMetadataStore,
) -> None:
    names = [f"t{i:02d}" for i in range(10)]
    page = live.list_children_page
    assert await page(BASE) == Children(names, False)
    assert await page(BASE, limit=3) == Children(names[:3], True)
    assert await page(BASE, limit=10) == Children(names, False)
    assert await page(BASE, start_after="t06", limit=3) == Children(names[7:], False)
    assert await page(BASE, start_after="t05", limit=3) == Children(names[6:9], True)
    assert await page(BASE, start_after="t08", limit=0) == Children([], True)
    assert await page(BASE, start_after="t09", limit=0) == Children([], False)
    # The same names as list_children, page by page.
    assert (await page(BASE, start_after="t02", limit=4)).names == await live.list_children(
        BASE, start_after="t02", limit=4
    )
