"""``list_page``: a name-ordered page of children and an exact "more follow" flag, from
key-ordered ListObjectsV2 pages (pure; no S3 needed), reading no page it does not need."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from angos_s3.listing import Rest, list_page, read_page
from hypothesis import given, settings
from hypothesis import strategies as st

from angos_core.protocols import Children


class Listing:
    """ListObjectsV2 with Delimiter="/" over ``keys``, ``page_size`` entries per call."""

    def __init__(self, keys: list[str], prefix: str, page_size: int) -> None:
        entries = {
            prefix + key[len(prefix) :].split("/", 1)[0] + "/" if "/" in key[len(prefix) :] else key
            for key in keys
        }
        self.entries = sorted(entries)
        self.page_size = page_size
        self.calls = 0

    async def pages(self, start_after: str | None) -> AsyncIterator[dict[str, Any]]:
        entries = [e for e in self.entries if start_after is None or e > start_after]
        for i in range(0, max(len(entries), 1), self.page_size):
            self.calls += 1
            chunk = entries[i : i + self.page_size]
            yield {
                "Contents": [{"Key": k} for k in chunk if not k.endswith("/")],
                "CommonPrefixes": [{"Prefix": k} for k in chunk if k.endswith("/")],
                "IsTruncated": i + self.page_size < len(entries),
            }


def run(listing: Listing, p: str, last: str | None, limit: int | None) -> Any:
    return list_page(listing.pages(None if last is None else p + last), p, last, limit)


async def test_a_full_first_page_is_one_call_and_says_more() -> None:
    p = "r/_manifests/tags/"
    tags = [f"v{i:04d}" for i in range(2500)]
    listing = Listing([f"{p}{t}/current/link" for t in tags], p, 1000)
    assert await run(listing, p, None, 1000) == Children(tags[:1000], True)
    assert listing.calls == 1
    listing.calls = 0
    # After a cursor, S3 lists the cursor's "v0999/" again: 999 new names per call.
    assert await run(listing, p, tags[999], 999) == Children(tags[1000:1999], True)
    assert listing.calls == 1
    listing.calls = 0
    assert await run(listing, p, tags[1999], 1000) == Children(tags[2000:], False)
    assert listing.calls == 1


async def test_the_last_name_of_a_call_may_come_back_as_a_directory() -> None:
    # "b" is an object and a directory: the call ending at "b" is truncated, but what is
    # left may be "b/" alone, no new child. Only the next call tells.
    p = "d/"
    listing = Listing([p + "a", p + "b", p + "b/x"], p, 2)
    assert await run(listing, p, None, 2) == Children(["a", "b"], False)
    assert listing.calls == 2
    listing = Listing([p + "a", p + "b", p + "b/x", p + "c"], p, 2)
    assert await run(listing, p, None, 2) == Children(["a", "b"], True)
    assert listing.calls == 2
    # Tags are directories only: a truncated call that fills the page is enough.
    listing = Listing([p + "a/x", p + "b/x", p + "c/x"], p, 2)
    assert await run(listing, p, None, 2) == Children(["a", "b"], True)
    assert listing.calls == 1


NAMES = st.text(alphabet="a-.0", min_size=1, max_size=4).filter(lambda n: n[0] not in "-.")


@settings(max_examples=120, deadline=None)
@given(
    names=st.lists(st.tuples(NAMES, st.sampled_from(["", "/x", "both"])), max_size=30),
    page_size=st.integers(min_value=1, max_value=6),
    limit=st.one_of(st.none(), st.integers(min_value=-1, max_value=6)),
    last=st.one_of(st.none(), NAMES),
)
async def test_page_and_flag_match_sorting_everything(
    names: list[tuple[str, str]], page_size: int, limit: int | None, last: str | None
) -> None:
    p = "d/"
    keys: list[str] = []
    for name, kind in names:
        keys += [p + name, p + name + "/x"] if kind == "both" else [p + name + kind]
    after = sorted({n for n, _ in names if last is None or n > last})
    if limit is None:
        expected = Children(after, False)
    else:
        expected = Children(after[: max(limit, 0)], len(after) > max(limit, 0))
    assert await run(Listing(keys, p, page_size), p, last, limit) == expected


async def nothing() -> AsyncIterator[dict[str, Any]]:
    return
    yield


async def walk(listing: Listing, p: str, limit: int, keep: bool) -> list[str]:
    """Pages of ``limit`` from the start, each after the last name of the one before, the
    next starting from the :class:`Rest` its predecessor read past it (as the store does)."""
    walked: list[str] = []
    last: str | None = None
    seed: Rest | None = None
    while True:
        if seed is None:
            pages = listing.pages(None if last is None else p + last)
        else:
            pages = listing.pages(p + seed.position) if seed.truncated else nothing()
        page, rest = await read_page(pages, p, last, limit, seed=seed)
        walked += page.names
        if not page.more:
            return walked
        assert page.names
        last = page.names[-1]
        seed = rest if keep else None


@settings(max_examples=150, deadline=None)
@given(
    names=st.lists(st.tuples(NAMES, st.sampled_from(["", "/x", "both"])), max_size=30),
    page_size=st.integers(min_value=1, max_value=6),
    limit=st.integers(min_value=1, max_value=6),
)
async def test_a_walk_from_what_each_page_read_past_it_lists_everything_once(
    names: list[tuple[str, str]], page_size: int, limit: int
) -> None:
    p = "d/"
    keys: list[str] = []
    for name, kind in names:
        keys += [p + name, p + name + "/x"] if kind == "both" else [p + name + kind]
    expected = sorted({n for n, _ in names})
    fresh = Listing(keys, p, page_size)
    assert await walk(fresh, p, limit, keep=False) == expected
    kept = Listing(keys, p, page_size)
    assert await walk(kept, p, limit, keep=True) == expected
    assert kept.calls <= fresh.calls


async def test_a_walk_of_full_pages_is_one_call_a_page() -> None:
    p = "r/_manifests/tags/"
    tags = [f"v{i:04d}" for i in range(10_000)]
    fresh = Listing([f"{p}{t}/current/link" for t in tags], p, 1000)
    assert await walk(fresh, p, 1000, keep=False) == tags
    kept = Listing([f"{p}{t}/current/link" for t in tags], p, 1000)
    assert await walk(kept, p, 1000, keep=True) == tags
    # Each page after the first lists its cursor again: two calls for 1,000 names, unless
    # the names the last call read past the page start the next.
    assert (fresh.calls, kept.calls) == (19, 11)
