"""Metadata store ``s3``: small objects, one S3 object per key, under ``key_prefix``.

S3 PUTs are atomic (readers see the old or the new object), and ``create`` is a conditional
PUT (``If-None-Match: *``), which AWS S3, MinIO and moto honour. On a service that ignores
the header a racing create could succeed twice; core only creates keys that name their
content (links, manifest bytes), so both write the same bytes and nothing is lost.
"""

from __future__ import annotations

import contextlib
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from angos_core.protocols import Children
from angos_s3.client import Missing, PreconditionFailed, S3Backend
from angos_s3.listing import Rest, list_children, read_page


class S3MetadataStore(S3Backend):
    async def get(self, key: str) -> bytes | None:
        try:
            resp = await self.s3.call("get_object", key)
            async with resp["Body"] as body:
                data: bytes = await body.read()
        except Missing:
            return None
        return data

    async def put(self, key: str, data: bytes) -> None:
        self._rests.forget(key)
        await self.s3.call("put_object", key, Body=data)

    async def create(self, key: str, data: bytes) -> bool:
        self._rests.forget(key)
        try:
            await self.s3.call("put_object", key, Body=data, IfNoneMatch="*")
        except PreconditionFailed as exc:
            # A retried create that fails its condition may have lost the answer of its own
            # successful first attempt: the object holding our bytes says so.
            return exc.retried and await self.get(key) == data
        return True

    async def delete(self, key: str) -> bool:
        self._rests.forget(key)
        try:
            await self.s3.call("head_object", key)
        except Missing:
            return False
        await self.s3.call("delete_object", key)
        return True

    async def delete_prefix(self, prefix: str) -> None:
        self._rests.forget(prefix)
        await self.s3.delete_prefix(prefix)

    async def list_children(
        self, prefix: str, *, start_after: str | None = None, limit: int | None = None
    ) -> list[str]:
        return await list_children(
            self.s3.pages(prefix, delimiter="/", start_after=_start_key(prefix, start_after)),
            self.s3.key(prefix),
            start_after,
            limit,
        )

    async def list_children_page(
        self, prefix: str, *, start_after: str | None = None, limit: int | None = None
    ) -> Children:
        seed = None
        if start_after is not None and limit is not None:
            seed = self._rests.take(prefix, start_after)
        if seed is None:
            pages = self.s3.pages(
                prefix, delimiter="/", start_after=_start_key(prefix, start_after)
            )
        elif seed.truncated:
            pages = self.s3.pages(prefix, delimiter="/", start_after=prefix + seed.position)
        else:
            pages = _no_pages()
        with self._rests.listing(prefix) as watch:
            page, rest = await read_page(pages, self.s3.key(prefix), start_after, limit, seed=seed)
        # A write under the directory while the calls ran may be missing from them.
        if rest is not None and page.names and not watch.written:
            self._rests.keep(prefix, page.names[-1], rest)
        return page

    @cached_property
    def _rests(self) -> _Rests:
        return _Rests(self.config.listing_snapshot_secs)


class _Rests:
    """What the last calls of a tag page or catalog walk read past it, for the next page.

    A page of 1,000 names after a cursor takes two calls: S3 lists the cursor's own
    ``<cursor>/`` again, so the first call holds 999 names. The second reads up to 1,000
    more, the next page's names: kept here under (directory, the page's last name), the
    cursor the next page asks with, for ``listing_snapshot_secs``, that page needs one
    call. A write through this store forgets what it lists under; nothing tells of
    another replica's writes (S3 has no directory stamp), so that page may miss one made
    since the call that read its first names.
    """

    MAX_ENTRIES = 256

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._entries: OrderedDict[tuple[str, str], tuple[float, Rest]] = OrderedDict()
        self._listings: set[_Watch] = set()

    def take(self, prefix: str, cursor: str) -> Rest | None:
        kept = self._entries.pop((prefix, cursor), None)
        if kept is None or time.monotonic() > kept[0]:
            return None
        return kept[1]

    def forget(self, key: str) -> None:
        """Drop what was kept of every directory holding ``key`` (a key, or a prefix: then
        also of the directories below it)."""
        for watch in self._listings:
            if _holds(watch.prefix, key):
                watch.written = True
        if self._entries:
            for kept in [d for d in self._entries if _holds(d[0], key)]:
                del self._entries[kept]

    @contextlib.contextmanager
    def listing(self, prefix: str) -> Iterator[_Watch]:
        """Watch for writes under ``prefix`` while a listing of it runs."""
        watch = _Watch(prefix)
        self._listings.add(watch)
        try:
            yield watch
        finally:
            self._listings.discard(watch)

    def keep(self, prefix: str, cursor: str, rest: Rest) -> None:
        if self.seconds <= 0:
            return
        self._entries[(prefix, cursor)] = (time.monotonic() + self.seconds, rest)
        while len(self._entries) > self.MAX_ENTRIES:
            self._entries.popitem(last=False)


@dataclass(eq=False)
class _Watch:
    prefix: str
    written: bool = False


def _holds(directory: str, key: str) -> bool:
    """Whether a write of ``key`` (a key, or a prefix deleted whole) changes ``directory``."""
    return key.startswith(directory) or directory.startswith(key)


async def _no_pages() -> AsyncIterator[dict[str, Any]]:
    return
    yield


def _start_key(prefix: str, start_after: str | None) -> str | None:
    # Every child named above start_after lists above this key (see angos_s3.listing).
    return None if start_after is None else prefix + start_after
