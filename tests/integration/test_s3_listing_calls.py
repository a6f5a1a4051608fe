"""A limited S3 listing reads no ListObjectsV2 page beyond the one that completes it.

Pure (no S3): pages as ListObjectsV2 with Delimiter="/" returns them, counted as read.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from angos_s3.listing import list_children
from hypothesis import given, settings
from hypothesis import strategies as st


class Pages:
    def __init__(self, keys: list[str], prefix: str, page_size: int) -> None:
        entries: list[str] = []
        for key in sorted(keys):
            rest = key[len(prefix) :]
            entry = prefix + rest.split("/", 1)[0] + "/" if "/" in rest else key
            if entry not in entries:
                entries.append(entry)
        self.entries = sorted(entries)
        self.page_size = page_size
        self.read = 0

    async def __call__(self, start_after: str | None) -> AsyncIterator[dict[str, Any]]:
        entries = [e for e in self.entries if start_after is None or e > start_after]
        for i in range(0, max(len(entries), 1), self.page_size):
            self.read += 1
            chunk = entries[i : i + self.page_size]
            yield {
                "Contents": [{"Key": k} for k in chunk if not k.endswith("/")],
                "CommonPrefixes": [{"Prefix": k} for k in chunk if k.endswith("/")],
                "IsTruncated": i + self.page_size < len(entries),
            }


async def test_a_page_of_exactly_one_list_call_reads_one_call() -> None:
    p = "r/_manifests/tags/"
    tags = [f"v{i:04d}" for i in range(2500)]
    pages = Pages([f"{p}{t}/current/link" for t in tags], p, 1000)
    # 1,000 tags from the start; after a marker S3 lists the marker's own "v0999/" first,
    # so 999 new names fill the page.
    assert await list_children(pages(None), p, None, 1000) == tags[:1000]
    assert pages.read == 1
    pages.read = 0
    assert await list_children(pages(p + tags[999]), p, tags[999], 999) == tags[1000:1999]
    assert pages.read == 1


async def test_a_name_whose_extension_lists_later_still_waits() -> None:
    # "v1" lists as "v1/", after "v1-rc" and "v1.0": the page ending at "v1.0" is not enough.
    p = "t/"
    pages = Pages([p + "v1-rc", p + "v1.0", p + "v1/current/link", p + "v2"], p, 2)
    assert await list_children(pages(None), p, None, 2) == ["v1", "v1-rc"]
    assert pages.read == 2


NAMES = st.text(alphabet="a-.0", min_size=1, max_size=4).filter(lambda n: n[0] not in "-.")


@settings(max_examples=80, deadline=None)
@given(
    names=st.lists(st.tuples(NAMES, st.booleans()), max_size=30),
    page_size=st.integers(min_value=1, max_value=6),
    limit=st.integers(min_value=1, max_value=6),
    last=st.one_of(st.none(), NAMES),
)
async def test_limited_listing_matches_sorting_everything(
    names: list[tuple[str, bool]], page_size: int, limit: int, last: str | None
) -> None:
    p = "d/"
    pages = Pages([p + n + ("/x" if d else "") for n, d in names], p, page_size)
    expected = sorted({n for n, _ in names if last is None or n > last})[:limit]
    start = None if last is None else p + last
    assert await list_children(pages(start), p, last, limit) == expected
