"""Name-ordered children from key-ordered listings (pure; no S3 needed)."""

from __future__ import annotations

import itertools
import random
from collections.abc import AsyncIterator
from typing import Any

import pytest
from angos_s3.listing import list_children


def _pages(keys: list[str], prefix: str, page_size: int) -> AsyncIterator[dict[str, Any]]:
    """What ListObjectsV2 with Delimiter="/" returns for ``keys``, ``page_size`` per page."""
    entries: list[tuple[str, bool]] = []
    seen: set[str] = set()
    for key in sorted(keys):
        rest = key[len(prefix) :]
        if "/" in rest:
            cp = prefix + rest.split("/", 1)[0] + "/"
            if cp not in seen:
                seen.add(cp)
                entries.append((cp, True))
        else:
            entries.append((key, False))

    async def gen() -> AsyncIterator[dict[str, Any]]:
        for i in range(0, max(len(entries), 1), page_size):
            chunk = entries[i : i + page_size]
            yield {
                "Contents": [{"Key": k} for k, d in chunk if not d],
                "CommonPrefixes": [{"Prefix": k} for k, d in chunk if d],
                "IsTruncated": i + page_size < len(entries),
            }

    return gen()


@pytest.mark.parametrize("page_size", [1, 2, 1000])
async def test_names_come_in_byte_order_though_keys_do_not(page_size: int) -> None:
    p = "t/"
    keys = [p + "v1/current/link", p + "v1.0/current/link", p + "v1-rc/current/link", p + "v10"]
    names = await list_children(_pages(keys, p, page_size), p, None, None)
    assert names == ["v1", "v1-rc", "v1.0", "v10"]
    assert await list_children(_pages(keys, p, page_size), p, None, 1) == ["v1"]
    assert await list_children(_pages(keys, p, page_size), p, "v1", 2) == ["v1-rc", "v1.0"]


async def test_limited_listings_page_through_everything_in_order() -> None:
    rng = random.Random(7)
    alphabet = "a-.0"
    names = sorted(
        {"".join(rng.choice(alphabet) for _ in range(rng.randint(1, 4))) for _ in range(200)}
    )
    names = [n for n in names if n[0] not in "-."]
    p = "d/"
    keys = [p + n + ("/x" if rng.random() < 0.5 else "") for n in names]
    for page_size, limit in itertools.product([1, 3, 50], [1, 2, 7]):
        got: list[str] = []
        last = None
        while True:
            # S3's StartAfter: only keys above prefix+last are listed.
            after = [k for k in keys if last is None or k > p + last]
            batch = await list_children(_pages(after, p, page_size), p, last, limit)
            if not batch:
                break
            got.extend(batch)
            last = batch[-1]
        assert got == names, (page_size, limit)
