"""Catalog pages walk the repository tree in order from ``last`` and stop after ``n``.

Checked against the plain implementation (walk everything, sort, slice) on trees whose
names make tree order and name order disagree ("a/b" vs "a-c": ``-`` sorts below ``/``),
with the listings answered both ways: in the fs store's pool (``run_listing``) and awaited
one by one (every store without it), and by the fs store's three listing modes: the
listing cache, the scan snapshots of ``cache_listings = false`` and a scan for every page.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any, Literal, cast
from unittest import mock

import pytest
from angos_fs import metadata_store
from angos_fs.config import FsConfig
from angos_fs.metadata_store import FsMetadataStore
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from angos_core import layout
from angos_core.oci.names import NAME_RE
from angos_core.protocols import BlockingLister, MetadataStore
from angos_core.registry import catalog as catalog_module
from angos_core.registry.catalog import CatalogService
from angos_core.registry.stores import Stores

# Short components with the separators that sort below "/" ("-", ".") and above it ("_").
COMPONENTS = ["a", "b", "a-b", "a.b", "a_b", "a__b", "a--b", "ab", "b-a", "a0", "0"]
NAMES = st.lists(st.sampled_from(COMPONENTS), min_size=1, max_size=3).map("/".join)
# A directory is a repository by its _manifests child; other children must not count.
KINDS = st.sampled_from(["_manifests", "_manifests", "_layers", "_uploads"])
TREES = st.lists(st.tuples(NAMES, KINDS), max_size=25)
MARKERS = st.one_of(
    st.none(), NAMES, st.text(alphabet="ab-./_0", max_size=6), st.sampled_from(["", "~", "A"])
)


def service(meta: MetadataStore) -> CatalogService:
    # Listings read the metadata store only.
    return CatalogService(cast(Stores, SimpleNamespace(meta=meta)))


async def sort_everything(meta: MetadataStore) -> list[str]:
    """The catalog as it was: walk the whole tree, then sort."""
    found: list[str] = []

    async def walk(prefix: str, name: str) -> None:
        children = await meta.list_children(prefix)
        if name and "_manifests" in children:
            found.append(name)
        for child in children:
            if child.startswith("_"):
                continue
            sub = f"{name}/{child}" if name else child
            if NAME_RE.match(sub):
                await walk(f"{prefix}{child}/", sub)

    await walk(layout.REPOSITORIES, "")
    return sorted(found)


async def fill(meta: MetadataStore, tree: list[tuple[str, str]]) -> None:
    for name, kind in tree:
        await meta.put(f"{layout.repository_prefix(name)}{kind}/x", b"")
    # Stray entries the walk must step over: a file among repositories, a name "_manifest..."
    # that sorts just before "_manifests", an invalid component.
    await meta.put(f"{layout.REPOSITORIES}a/_manifestr", b"")
    await meta.put(f"{layout.REPOSITORIES}NOPE/_manifests/x", b"")
    await meta.put(f"{layout.REPOSITORIES}stray", b"")


class Awaiting:
    """A store that lists only by awaiting ``list_children`` (no ``run_listing``)."""

    def __init__(self, inner: MetadataStore) -> None:
        self.inner = inner

    async def list_children(self, prefix: str, **kw: Any) -> list[str]:
        return await self.inner.list_children(prefix, **kw)


Listing = Literal["cache", "snapshots", "scans"]


async def check(
    tree: list[tuple[str, str]],
    n: int,
    last: str | None,
    listing: Listing,
    blocking: bool,
    chunk: int = catalog_module._CHUNK,
) -> None:
    config = {
        "cache": FsConfig(cache_listings=True),
        "snapshots": FsConfig(cache_listings=False),
        "scans": FsConfig(cache_listings=False, listing_snapshot_secs=0),
    }[listing]
    with contextlib.ExitStack() as stack:
        root = stack.enter_context(tempfile.TemporaryDirectory())
        # The tree is small and written just now: without these, neither the cache nor a
        # snapshot would keep a listing, and each walk would be the scans' again.
        for name, value in [("SETTLED_NS", -(10**12)), ("MIN_NAMES", 0)]:
            for kind in (metadata_store._Listings, metadata_store._Snapshots):
                stack.enter_context(mock.patch.object(kind, name, value))
        # Small chunks: directories of a few names are walked in several listings.
        stack.enter_context(mock.patch.object(catalog_module, "_CHUNK", chunk))
        stack.enter_context(
            mock.patch.object(metadata_store, "_SNAPSHOTS", metadata_store._Snapshots())
        )
        stack.enter_context(
            mock.patch.object(metadata_store, "_LISTINGS", metadata_store._Listings())
        )
        config.root_dir = root
        meta = FsMetadataStore(config)
        await meta.open()
        await fill(meta, tree)
        catalog = service(meta if blocking else cast(MetadataStore, Awaiting(meta)))
        expected = await sort_everything(meta)
        assert await catalog.repositories() == expected

        after = [r for r in expected if last is None or last == "" or r > last]
        assert await catalog.catalog(n, last) == (after[:n], len(after) > n)
        assert await catalog.catalog(None, last) == (after, False)

        # Paging with each returned last name walks exactly the whole list.
        walked: list[str] = []
        marker: str | None = None
        while True:
            page, more = await catalog.catalog(n, marker)
            walked += page
            if not more:
                break
            marker = page[-1]
        assert walked == expected


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    tree=TREES,
    n=st.integers(min_value=1, max_value=4),
    last=MARKERS,
    listing=st.sampled_from(["cache", "snapshots", "scans"]),
    blocking=st.booleans(),
    chunk=st.sampled_from([2, 3, 999]),
)
def test_catalog_pages_match_sorting_everything(
    tree: list[tuple[str, str]],
    n: int,
    last: str | None,
    listing: Listing,
    blocking: bool,
    chunk: int,
) -> None:
    asyncio.run(check(tree, n, last, listing, blocking, chunk))


class CountingStore(Awaiting):
    """Counts list calls, awaited or in the pool, to show a page costs what it holds."""

    def __init__(self, inner: FsMetadataStore, blocking: bool) -> None:
        super().__init__(inner)
        self.fs = inner
        self.calls = 0
        self.hops = 0
        if blocking:
            self.run_listing = self._run_listing

    async def list_children(self, prefix: str, **kw: Any) -> list[str]:
        self.calls += 1
        return await self.inner.list_children(prefix, **kw)

    async def _run_listing(self, fn: Callable[[BlockingLister], Any]) -> Any:
        self.hops += 1

        def run(list_children: BlockingLister) -> Any:
            def counted(prefix: str, start_after: str | None, limit: int | None) -> list[str]:
                self.calls += 1
                return list_children(prefix, start_after, limit)

            return fn(counted)

        return await self.fs.run_listing(run)


@pytest.mark.parametrize("blocking", [True, False], ids=["in-pool", "awaited"])
async def test_catalog_page_lists_only_what_it_returns(tmp_path: Any, blocking: bool) -> None:
    meta = FsMetadataStore(FsConfig(root_dir=str(tmp_path)))
    await meta.open()
    names = [f"repo{i:04d}" for i in range(500)] + [f"ns/sub{i:03d}" for i in range(100)]
    for name in names:
        await meta.put(f"{layout.repository_prefix(name)}_manifests/x", b"")
    counting = CountingStore(meta, blocking)
    catalog = service(cast(MetadataStore, counting))

    page, more = await catalog.catalog(10, "repo0100")
    assert page == sorted(names)[sorted(names).index("repo0100") + 1 :][:10]
    assert more
    # The root listing, the marker's directory (names nested below it follow it), then one
    # listing per name visited: it says whether the name is a repository and starts its walk.
    assert counting.calls == 2 + 11

    counting.calls = 0
    assert await catalog.catalog(5, "ns/sub050") == (
        [f"ns/sub{i:03d}" for i in range(51, 56)],
        True,
    )
    # The root, ns, the marker's directory, then one per name.
    assert counting.calls == 3 + 6
    # In the pool, a page is one hop; the whole walk of 600 repositories (some 600
    # listings) a few.
    assert counting.hops == (2 if blocking else 0)
    counting.hops = 0
    assert await catalog.repositories() == sorted(names)
    assert counting.hops == (3 if blocking else 0)
