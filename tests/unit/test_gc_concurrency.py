"""The collector's bounded concurrency (``angos gc --jobs``): at most that many objects at
once, the first failure raised as it is, and never two deletions of one digest at once
(each keeps the order tombstone up, marks read, delete, tombstone down)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

from angos_core.registry.gc import GarbageCollector, GcError


def collector(references: Any = None, concurrency: int = 4) -> GarbageCollector:
    registry: Any = SimpleNamespace(
        stores=SimpleNamespace(meta=None, blobs=None), references=references
    )
    return GarbageCollector(registry, out=lambda line: None, concurrency=concurrency)


async def test_at_most_concurrency_items_at_once() -> None:
    gc = collector(concurrency=4)
    running = peak = 0
    seen: list[int] = []

    async def action(item: int) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.001)
        seen.append(item)
        running -= 1

    await gc._each(range(40), action)
    assert sorted(seen) == list(range(40))
    assert peak == 4


async def test_the_first_failure_is_raised_as_it_is() -> None:
    gc = collector(concurrency=4)

    async def action(item: int) -> None:
        await asyncio.sleep(0)
        if item == 5:
            raise GcError("manifest unreadable")

    with pytest.raises(GcError, match="manifest unreadable"):
        await gc._each(range(40), action)


def test_concurrency_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        collector(concurrency=0)


class Recording:
    """A References stand-in that logs the collector's side of each deletion."""

    def __init__(self) -> None:
        self.log: list[str] = []

    async def set_tombstone(self, digest: str) -> None:
        self.log.append(f"up {digest}")
        await asyncio.sleep(0.001)

    async def is_marked(self, digest: str, since: Any, *, refs: bool = True) -> bool:
        self.log.append(f"check {digest}")
        await asyncio.sleep(0.001)
        return False

    async def clear_tombstone(self, digest: str) -> None:
        self.log.append(f"down {digest}")


async def test_deletions_of_one_digest_never_overlap() -> None:
    """Two repositories holding the same untagged manifest: the first deletion to end
    must not take the tombstone down while the other is still deleting."""
    refs = Recording()
    gc = collector(refs, concurrency=8)

    async def delete() -> None:
        refs.log.append("delete a")
        await asyncio.sleep(0.001)

    async def doom(item: str) -> None:
        await gc._doom(item, delete)

    await gc._each(["a", "a", "a"], doom)
    assert refs.log == ["up a", "check a", "delete a", "down a"] * 3
