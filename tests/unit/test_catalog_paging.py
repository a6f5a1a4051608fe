"""Catalog pages walk the repository tree in order from ``last`` and stop after ``n``.

Checked against the plain implementation (walk everything, sort, slice) on trees whose
names make tree order and name order disagree ("a/b" vs "a-c": ``-`` sorts below ``/``).
"""

from __future__ import annotations

import asyncio
import tempfile
from types import SimpleNamespace
from typing import Any, cast

from angos_fs.config import FsConfig
from angos_fs.metadata_store import FsMetadataStore
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from angos_core import layout
from angos_core.oci.names import NAME_RE
from angos_core.protocols import MetadataStore
from angos_core.registry.catalog import CatalogService
from angos_core.registry.links import Links
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
    # The repository walk reads the metadata store only (links serve tag listings).
    return CatalogService(cast(Stores, SimpleNamespace(meta=meta)), cast(Links, None))


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


async def check(tree: list[tuple[str, str]], n: int, last: str | None, cached: bool) -> None:
    with tempfile.TemporaryDirectory() as root:
        meta = FsMetadataStore(FsConfig(root_dir=root, cache_listings=cached))
        await meta.open()
        await fill(meta, tree)
        catalog = service(meta)
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


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tree=TREES, n=st.integers(min_value=1, max_value=4), last=MARKERS, cached=st.booleans())
def test_catalog_pages_match_sorting_everything(
    tree: list[tuple[str, str]], n: int, last: str | None, cached: bool
) -> None:
    asyncio.run(check(tree, n, last, cached))


class CountingStore:
    """Counts list calls, to show a page costs what the page holds."""

    def __init__(self, inner: MetadataStore) -> None:
        self.inner = inner
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def list_children(self, prefix: str, **kw: Any) -> list[str]:
        self.calls += 1
        return await self.inner.list_children(prefix, **kw)


async def test_catalog_page_lists_only_what_it_returns(tmp_path: Any) -> None:
    meta = FsMetadataStore(FsConfig(root_dir=str(tmp_path)))
    await meta.open()
    names = [f"repo{i:04d}" for i in range(500)] + [f"ns/sub{i:03d}" for i in range(100)]
    for name in names:
        await meta.put(f"{layout.repository_prefix(name)}_manifests/x", b"")
    counting = CountingStore(meta)
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
