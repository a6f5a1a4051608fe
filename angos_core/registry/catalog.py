"""Listing: a repository's tags and the registry's repositories, paginated."""

from __future__ import annotations

import heapq
import re
from collections.abc import Generator
from dataclasses import dataclass
from typing import cast

from angos_core import layout
from angos_core.errors import NameUnknown, PaginationNumberInvalid
from angos_core.oci.names import NAME_RE, is_tag, validate_name
from angos_core.protocols import BlockingLister, MetadataBlockingList
from angos_core.registry.stores import Stores

#: Page size when the client does not ask for one (Distribution's default is 100 for the
#: catalog; tags are returned whole unless ``n`` is given).
DEFAULT_CATALOG_PAGE = 1000
_TAG_CHARS = re.compile(r"[A-Za-z0-9._-]*")
MAX_PAGE = 10000


def page_size(value: str | None, default: int | None) -> int | None:
    if value is None or value == "":
        return default
    try:
        n = int(value)
    except ValueError:
        raise PaginationNumberInvalid(detail={"n": value}) from None
    if n < 0:
        raise PaginationNumberInvalid(detail={"n": value})
    return min(n, MAX_PAGE)


class CatalogService:
    def __init__(self, stores: Stores) -> None:
        self.stores = stores

    async def tags(self, name: str, n: int | None, last: str | None) -> tuple[list[str], bool]:
        """One page of tags, in lexical order, and whether more follow.

        A page is one listing of the tag directories, exactly the names wanted
        (``list_children_page``: one S3 call when it fits in one), and reads no link: a tag
        write makes the directory with its ``current`` link and a delete removes it with
        that link last (:class:`~angos_core.registry.links.Links`), so a directory is a tag
        that resolves. Only a tag write or delete that an older version or Distribution
        cut short leaves a directory without ``current``; ``angos scrub`` finds those.
        """
        validate_name(name)
        meta = self.stores.meta
        if n == 0:
            return [], False
        cursor = last or None
        if last and not is_tag(last):
            # A cursor no tag can equal (a client's own, with control characters, say) never
            # reaches a backend, which may refuse it (S3 answers 500): list from its longest
            # tag-alphabet prefix, and drop below what does not sort after it.
            alphabet_prefix = _TAG_CHARS.match(last)
            cursor = (alphabet_prefix.group(0) if alphabet_prefix else "") or None
        # The store lists after the cursor: only a cursor other than ``last`` (above) can
        # return names at or before it.
        drop_through = last if last and cursor != last else None
        tags: list[str] = []
        while True:
            names, more = await meta.list_children_page(
                layout.tags_prefix(name),
                start_after=cursor,
                limit=None if n is None else n - len(tags),
            )
            if names:
                cursor = names[-1]
            tags += [t for t in names if t > drop_through] if drop_through else names
            # Only a cursor outside the tag alphabet can drop names and need another call.
            if not more or n is None or len(tags) >= n:
                break
        if (
            not tags
            and not last
            and not await meta.list_children(layout.repository_prefix(name), limit=1)
        ):
            raise NameUnknown(detail={"name": name})
        return tags, more

    async def repositories(self) -> list[str]:
        """Every repository name, sorted. A directory with a ``_manifests`` child is one."""
        return await self._collect(_walk(layout.REPOSITORIES, "", None), None)

    async def stored_repositories(self) -> list[str]:
        """Every repository with anything stored, sorted: also one whose last manifest was
        deleted and that keeps only layer links (``_layers``), which the catalog does not
        list but the garbage collector must walk."""
        walk = _walk(layout.REPOSITORIES, "", None, markers=_STORED_MARKERS)
        return await self._collect(walk, None)

    async def catalog(self, n: int | None, last: str | None) -> tuple[list[str], bool]:
        """One page of repository names after ``last``; the walk stops after ``n`` + 1."""
        found = await self._collect(
            _walk(layout.REPOSITORIES, "", last or None), None if n is None else n + 1
        )
        if n is not None and len(found) > n:
            return found[:n], True
        return found, False

    async def _collect(self, walk: _Walk, want: int | None) -> list[str]:
        """The first ``want`` names the walk finds (all of them for None).

        The walk is the same on every store; only who answers its listings differs. A store
        that lists by a local blocking call (:class:`~angos_core.protocols.MetadataBlockingList`,
        ``fs``) answers ``_LISTINGS_PER_HOP`` of them per hop to its I/O pool; otherwise each
        listing is awaited. The walk reads the tree as it is at each listing, so what
        another replica wrote or a crash left is seen as it is, with no index to go stale.
        """
        meta = self.stores.meta
        driver = _Driver(walk, want)
        if _lists_blocking(meta):
            runner = cast(MetadataBlockingList, meta)
            while not driver.done:
                await runner.run_listing(driver.run)
            return driver.found
        while not driver.done:
            if (wanted := driver.step()) is not None:
                driver.answer(
                    await meta.list_children(
                        wanted.prefix, start_after=wanted.start_after, limit=wanted.limit
                    )
                )
        return driver.found


def _lists_blocking(meta: object) -> bool:
    """Whether ``meta`` (wrapped, or a bare store in tests) can run listings in its pool."""
    flag = getattr(meta, "blocking_listing", None)
    if flag is not None:
        return bool(flag)
    return isinstance(meta, MetadataBlockingList)


@dataclass(frozen=True, slots=True)
class _List:
    """A listing the walk needs before it can go on: send back ``list_children``'s names."""

    prefix: str
    start_after: str | None
    limit: int


#: The repository walk, written once for every store: it yields a :class:`_List` and is
#: sent the names, or yields a repository name found (and is sent None).
_Walk = Generator["_List | str", "list[str] | None", None]

#: Listings answered per hop to a blocking store's I/O pool: a few milliseconds of
#: directory reads, so a whole walk of 100,000 repositories never holds a pool thread long.
_LISTINGS_PER_HOP = 256


class _Driver:
    """Runs a :data:`_Walk` until it has found ``want`` names or is done."""

    def __init__(self, walk: _Walk, want: int | None) -> None:
        self.walk = walk
        self.want = want
        self.found: list[str] = []
        self.done = want is not None and want <= 0
        self._sent: list[str] | None = None

    def step(self) -> _List | None:
        """Advance to the next listing the walk needs (None once done)."""
        while not self.done:
            try:
                step = self.walk.send(self._sent)
            except StopIteration:
                self.done = True
                break
            self._sent = None
            if isinstance(step, _List):
                return step
            self.found.append(step)
            if self.want is not None and len(self.found) >= self.want:
                self.done = True
        self.walk.close()
        return None

    def answer(self, names: list[str]) -> None:
        self._sent = names

    def run(self, list_children: BlockingLister) -> None:
        """Up to ``_LISTINGS_PER_HOP`` listings, answered by the blocking ``list_children``
        (in the store's pool: :meth:`MetadataBlockingList.run_listing`)."""
        for _ in range(_LISTINGS_PER_HOP):
            wanted = self.step()
            if wanted is None:
                return
            self.answer(list_children(wanted.prefix, wanted.start_after, wanted.limit))


def _list(
    prefix: str, start_after: str | None, limit: int
) -> Generator[_List | str, list[str] | None, list[str]]:
    names = yield _List(prefix, start_after, limit)
    assert names is not None
    return names


def _walk(
    prefix: str,
    name: str,
    after: str | None,
    first: list[str] | None = None,
    markers: tuple[str, ...] | None = None,
) -> _Walk:
    """Repository names strictly below the directory ``prefix`` (holding repository
    ``name``, "" at the root) that sort after ``after``, in byte order. ``first`` is the
    directory's first listing when the caller already read it.

    A child ``c`` contributes its own name at ``c`` and its nested names at ``c/``; the
    two positions differ when a sibling extends ``c`` with a byte below ``/`` ("a-c"
    lies between "a" and "a/b"), so nested walks wait in a heap keyed by ``c/`` until
    no sibling still to come sorts before them. Each child directory is listed once:
    that listing says whether it is a repository (it holds one of ``markers``) and starts
    its nested walk.
    """
    markers = markers or (_MARKER,)
    base = f"{name}/" if name else ""
    # (base + c + "/", c, marker within, c's first listing)
    pending: list[tuple[str, str, str | None, list[str]]] = []
    cursor = _listing_start(after[len(base) :]) if after is not None else None
    children = first
    while True:
        if children is None:
            children = yield from _list(prefix, cursor, _CHUNK)
        for child in children:
            full = f"{base}{child}"
            while pending and pending[0][0] < full:
                yield from _nested(prefix, markers, *heapq.heappop(pending))
            if child.startswith("_") or not NAME_RE.fullmatch(full):
                continue
            nested = f"{full}/"
            if after is None or nested > after:
                within = None
            elif after.startswith(nested):
                within = after
            else:
                continue  # the name and everything below it sort before the marker
            directory = f"{prefix}{child}/"
            listing = yield from _list(
                directory,
                None if within is None else _listing_start(within[len(nested) :]),
                _CHUNK,
            )
            if (after is None or full > after) and (
                yield from _is_repository(directory, listing, markers)
            ):
                yield full
            heapq.heappush(pending, (nested, child, within, listing))
        if len(children) < _CHUNK:
            break
        cursor = children[-1]
        children = None
    while pending:
        yield from _nested(prefix, markers, *heapq.heappop(pending))


def _nested(
    prefix: str,
    markers: tuple[str, ...],
    nested: str,
    child: str,
    after: str | None,
    first: list[str],
) -> _Walk:
    yield from _walk(f"{prefix}{child}/", nested[:-1], after, first, markers)


def _is_repository(
    prefix: str, listing: list[str], markers: tuple[str, ...]
) -> Generator[_List | str, list[str] | None, bool]:
    """Whether ``prefix`` holds one of ``markers``, given its listing from the start."""
    for marker in markers:
        if len(listing) < _CHUNK or listing[-1] >= marker:
            if marker in listing:
                return True
            continue
        # A directory with more than a chunk of nested names: read from just before
        # the marker; only stray names that extend it lie between.
        cursor = marker[:-1]
        while page := (yield from _list(prefix, cursor, 8)):
            if any(child >= marker for child in page):
                if marker in page:
                    return True
                break
            cursor = page[-1]
    return False


#: Children read per list call while walking: one S3 ListObjectsV2 page (1,000 keys), less
#: the key of the previous chunk's last child, which S3 lists again as ``<child>/``.
_CHUNK = 999
_MARKER = "_manifests"
#: What a repository the catalog no longer lists may still hold.
_STORED_MARKERS = (_MARKER, "_layers")


def _listing_start(rest: str) -> str | None:
    """A ``start_after`` for a directory listing that skips only children holding no name
    above ``rest`` (the marker relative to the directory).

    A child ``c`` holds such names if ``c >= rest`` or if ``c`` is a proper prefix of
    ``rest`` followed by a byte up to ``/`` (then ``c/...`` can sort above ``rest``). The
    shortest such prefix is the smallest candidate; start just below it.
    """
    for i in range(1, len(rest) + 1):
        if i == len(rest) or rest[i] <= "/":
            return rest[: i - 1] or None
    return None
