"""``FsMetadataStore.get_many``: ``get`` of each key in one pool call (the tag list's read)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from angos_fs import FsConfig, FsMetadataStore

from angos_core.errors import BackendError
from angos_core.protocols import MetadataGetMany


@pytest.fixture
async def meta(tmp_path: Path) -> AsyncIterator[FsMetadataStore]:
    store = FsMetadataStore(FsConfig(root_dir=str(tmp_path / "data")))
    await store.open()
    yield store
    await store.aclose()


async def test_get_many_is_get_of_each_key_in_order(meta: FsMetadataStore) -> None:
    assert isinstance(meta, MetadataGetMany)
    await meta.put("a/b/link", b"one")
    await meta.put("a/c/link", b"two")
    keys = ["a/c/link", "a/missing/link", "a/b/link", "a/b", "a/b/link/deeper"]
    assert await meta.get_many(keys) == [await meta.get(k) for k in keys]
    assert await meta.get_many(keys) == [b"two", None, b"one", None, None]
    assert await meta.get_many([]) == []


@pytest.mark.parametrize("key", ["../x", "a/../b", "a/.hidden", "/abs", "a//b", "a\\b"])
async def test_get_many_refuses_a_key_outside_the_root(meta: FsMetadataStore, key: str) -> None:
    with pytest.raises(BackendError):
        await meta.get_many(["a/b", key])
