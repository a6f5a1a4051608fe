"""The link cache against a reader that races a writer (angos_core.registry.links).

A reader misses the cache, reads the store, and is held there while a writer changes the
link and invalidates the cache; then the reader goes on. Before the fix it filled the cache
with what it had read, and every later read (on every replica sharing the cache) served the
old value until the ttl. The reader may still return the old value itself: it read before
the write. What it must not do is cache it.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from angos_fs.config import FsConfig
from angos_fs.metadata_store import FsMetadataStore
from angos_memory.cache import MemoryCache, MemoryCacheConfig

from angos_core.registry.links import Links
from angos_core.registry.wrappers import WrappedCache, WrappedMetadataStore

D1 = "sha256:" + "1" * 64
D2 = "sha256:" + "2" * 64


class HeldReads:
    """A metadata store whose ``get`` can be held after it has read (the race's window)."""

    def __init__(self, inner: FsMetadataStore) -> None:
        self.inner = inner
        self.name = inner.name
        self.gets = 0
        self.hold: asyncio.Event | None = None
        self.read_done = asyncio.Event()

    async def get(self, key: str) -> bytes | None:
        value = await self.inner.get(key)
        self.gets += 1
        if self.hold is not None:
            hold, self.hold = self.hold, None
            self.read_done.set()
            await hold.wait()
        return value

    def __getattr__(self, attr: str) -> Any:
        return getattr(self.inner, attr)


def make_links(tmp_path: Path) -> tuple[Links, HeldReads]:
    store = HeldReads(FsMetadataStore(FsConfig(root_dir=str(tmp_path / "data"))))
    cache = WrappedCache(MemoryCache(MemoryCacheConfig()))
    return Links(WrappedMetadataStore(store), cache), store


async def race(store: HeldReads, read: Any, write: Any) -> object:
    """Run ``read`` until its store read is done, run ``write`` to the end, finish ``read``."""
    hold = asyncio.Event()
    store.hold = hold
    reader = asyncio.create_task(read())
    await asyncio.wait_for(store.read_done.wait(), 10)
    await write()
    hold.set()
    return await asyncio.wait_for(reader, 10)


async def test_a_tag_moved_during_a_read_is_not_cached_old(tmp_path: Path) -> None:
    links, store = make_links(tmp_path)
    await links.move_tag("repo", "latest", D1)

    raced = await race(
        store,
        lambda: links.tag_digest("repo", "latest"),
        lambda: links.move_tag("repo", "latest", D2),
    )
    assert raced == D1  # read before the write: allowed
    assert await links.tag_digest("repo", "latest") == D2
    assert await links.tag_digest("repo", "latest") == D2


async def test_a_tag_deleted_during_a_read_is_not_cached(tmp_path: Path) -> None:
    links, store = make_links(tmp_path)
    await links.move_tag("repo", "gone", D1)

    await race(
        store,
        lambda: links.tag_digest("repo", "gone"),
        lambda: links.delete_tag("repo", "gone"),
    )
    assert await links.tag_digest("repo", "gone") is None


async def test_a_layer_unlinked_during_a_read_is_not_cached_present(tmp_path: Path) -> None:
    links, store = make_links(tmp_path)
    await links.put_layer("repo", D1)

    raced = await race(
        store,
        lambda: links.has_layer("repo", D1),
        lambda: links.delete_layer("repo", D1),
    )
    assert raced is True
    assert await links.has_layer("repo", D1) is False


async def test_without_a_race_a_miss_fills_the_cache(tmp_path: Path) -> None:
    links, store = make_links(tmp_path)
    await links.move_tag("repo", "latest", D1)
    await links.put_layer("repo", D2)

    for _ in range(3):
        assert await links.tag_digest("repo", "latest") == D1
        assert await links.has_layer("repo", D2) is True
    assert store.gets == 2  # one store read each, then hits

    await links.move_tag("repo", "latest", D2)  # a write invalidates ...
    assert await links.tag_digest("repo", "latest") == D2
    assert await links.tag_digest("repo", "latest") == D2
    assert store.gets == 3  # ... and the next miss fills again
