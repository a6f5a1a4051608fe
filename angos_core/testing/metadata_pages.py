"""The contract of ``MetadataStore.list_children_page``: a page and whether more follow;
and, for a store with it, of ``MetadataBlockingList.run_listing``.

Part of :class:`~angos_core.testing.MetadataStoreContract` (which inherits these tests), so
every metadata store passes them with the rest of its contract.
"""

from __future__ import annotations

import pytest

from angos_core import layout
from angos_core.protocols import (
    BlockingLister,
    Children,
    MetadataBlockingList,
    MetadataStore,
    StoreLeftovers,
)

BASE = "v2/repositories/contract/pages/"


class ListPageContract:
    """``more`` is exact: True if and only if a child sorts after the page."""

    async def test_more_is_exact_at_every_boundary(self, metadata_store: MetadataStore) -> None:
        names = [f"n{i:03d}" for i in range(25)]
        for name in reversed(names):
            await metadata_store.put(f"{BASE}{name}", b"")
        page = metadata_store.list_children_page
        assert await page(BASE) == Children(names, False)
        assert await page(BASE, limit=5) == Children(names[:5], True)
        assert await page(BASE, limit=24) == Children(names[:24], True)
        # A page holding exactly the last names says none follow.
        assert await page(BASE, limit=25) == Children(names, False)
        assert await page(BASE, limit=100) == Children(names, False)
        assert await page(BASE, start_after="n019", limit=5) == Children(names[20:], False)
        assert await page(BASE, start_after="n018", limit=5) == Children(names[19:24], True)
        assert await page(BASE, start_after="n0185", limit=5) == Children(names[19:24], True)
        assert await page(BASE, start_after="n024", limit=5) == Children([], False)
        assert await page(BASE, start_after="n024") == Children([], False)
        assert await page(f"{BASE}absent/", limit=3) == Children([], False)

    async def test_limit_zero_says_whether_any_child_follows(
        self, metadata_store: MetadataStore
    ) -> None:
        for name in ("a", "b", "c"):
            await metadata_store.put(f"{BASE}{name}/link", b"")
        page = metadata_store.list_children_page
        assert await page(BASE, limit=0) == Children([], True)
        assert await page(BASE, start_after="b", limit=0) == Children([], True)
        assert await page(BASE, start_after="c", limit=0) == Children([], False)
        assert await page(BASE, limit=-1) == Children([], True)
        assert await page(f"{BASE}absent/", limit=0) == Children([], False)

    async def test_names_whose_keys_sort_elsewhere(self, metadata_store: MetadataStore) -> None:
        # "b" is a directory and "b-c", "b.d" extend it with bytes below "/": on S3 their
        # keys come first ("b-c" < "b.d/" < "b/"), and "b/" lists again after a cursor "b".
        await metadata_store.put(f"{BASE}a", b"")
        await metadata_store.put(f"{BASE}b/x", b"")
        await metadata_store.put(f"{BASE}b-c", b"")
        await metadata_store.put(f"{BASE}b.d/x", b"")
        page = metadata_store.list_children_page
        assert await page(BASE, limit=2) == Children(["a", "b"], True)
        assert await page(BASE, limit=3) == Children(["a", "b", "b-c"], True)
        assert await page(BASE, limit=4) == Children(["a", "b", "b-c", "b.d"], False)
        assert await page(BASE, start_after="a", limit=2) == Children(["b", "b-c"], True)
        assert await page(BASE, start_after="b", limit=1) == Children(["b-c"], True)
        assert await page(BASE, start_after="b", limit=2) == Children(["b-c", "b.d"], False)
        assert await page(BASE, start_after="b", limit=0) == Children([], True)
        assert await page(BASE, start_after="b-c", limit=1) == Children(["b.d"], False)
        assert await page(BASE, start_after="b.d", limit=1) == Children([], False)
        assert await page(BASE, start_after="b.d", limit=0) == Children([], False)

    async def test_tag_pages_walk_with_the_flag_alone(self, metadata_store: MetadataStore) -> None:
        # Tag directories whose names extend one another with "-" and "." (byte order and
        # S3 key order disagree on them).
        name = "contract/pages"
        tags = sorted(["v1", "v1-rc", "v1.0", "v1.0-rc", "v10", "v2", "latest", "a.b", "a"])
        for tag in tags:
            await metadata_store.put(layout.tag_current_key(name, tag), b"d")
        prefix = layout.tags_prefix(name)
        for limit in (1, 2, 3, 4, len(tags)):
            walked: list[str] = []
            calls = 0
            last: str | None = None
            while True:
                names, more = await metadata_store.list_children_page(
                    prefix, start_after=last, limit=limit
                )
                calls += 1
                walked += names
                assert len(names) == limit or not more, (limit, last)
                if not more:
                    break
                last = names[-1]
            assert walked == tags, limit
            # No empty page at the end: the flag said when to stop.
            assert calls == -(-len(tags) // limit), limit

    async def test_list_children_agrees_with_the_page(self, metadata_store: MetadataStore) -> None:
        for name in ("x", "x-1", "x.2", "y", "z"):
            await metadata_store.put(f"{BASE}{name}/k", b"")
        for after in (None, "x", "x-1", "y", "zz"):
            for limit in (None, 0, 1, 2, 5):
                children = await metadata_store.list_children(BASE, start_after=after, limit=limit)
                page = await metadata_store.list_children_page(BASE, start_after=after, limit=limit)
                assert page.names == children, (after, limit)


class BlockingListContract:
    """For a metadata store with :class:`~angos_core.protocols.MetadataBlockingList` (fs),
    beside :class:`MetadataStoreContract`: the catalog walk's listings, run in the store's
    pool, answer what ``list_children`` answers, and an error in the walk comes out as it
    is. Needs the same ``metadata_store`` fixture."""

    async def test_blocking_listing_agrees_with_list_children(
        self, metadata_store: MetadataStore
    ) -> None:
        assert isinstance(metadata_store, MetadataBlockingList)
        for name in ("x", "x-1", "x.2", "y", "z"):
            await metadata_store.put(f"{BASE}{name}/k", b"")
        asked = [
            (prefix, after, limit)
            for prefix in (BASE, f"{BASE}x/", f"{BASE}absent/")
            for after in (None, "x", "x-1", "y", "zz")
            for limit in (None, 0, 1, 2, 5)
        ]
        expected = [
            await metadata_store.list_children(p, start_after=a, limit=n) for p, a, n in asked
        ]

        def walk(list_children: BlockingLister) -> list[list[str]]:
            return [list_children(p, a, n) for p, a, n in asked]

        assert await metadata_store.run_listing(walk) == expected

        class Mine(Exception):
            pass

        def fails(list_children: BlockingLister) -> None:
            list_children(BASE, None, 1)
            raise Mine

        with pytest.raises(Mine):
            await metadata_store.run_listing(fails)


class LeftoversContract:
    """For a metadata store with :class:`~angos_core.protocols.StoreLeftovers` (fs),
    beside :class:`MetadataStoreContract`: writes and deletes that complete leave nothing
    behind, and a name that is not a leftover is never removed. Needs the same
    ``metadata_store`` fixture."""

    async def test_completed_writes_leave_no_leftovers(self, metadata_store: MetadataStore) -> None:
        assert isinstance(metadata_store, StoreLeftovers)
        for name in ("a", "b", "c"):
            await metadata_store.put(f"{BASE}{name}/current", b"1")
            await metadata_store.put(f"{BASE}{name}/current", b"2")
            assert await metadata_store.create(f"{BASE}{name}/index/x", b"")
        await metadata_store.delete(f"{BASE}a/current")
        await metadata_store.delete_prefix(f"{BASE}b/")
        assert await metadata_store.leftovers(0) == []

    async def test_only_a_leftover_is_removed(self, metadata_store: MetadataStore) -> None:
        assert isinstance(metadata_store, StoreLeftovers)
        await metadata_store.put(f"{BASE}k", b"kept")
        for name in ("k", f"{BASE}k", "/", "", "../k", ".tmp-never-there"):
            assert not await metadata_store.remove_leftover(name, 0), name
        assert await metadata_store.get(f"{BASE}k") == b"kept"
