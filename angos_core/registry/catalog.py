"""Listing: a repository's tags and the registry's repositories, paginated."""

from __future__ import annotations

import re

from angos_core import layout
from angos_core.errors import NameUnknown, PaginationNumberInvalid
from angos_core.oci.names import NAME_RE, is_tag, validate_name
from angos_core.registry.links import Links
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
    def __init__(self, stores: Stores, links: Links) -> None:
        self.stores = stores
        self.links = links

    async def tags(self, name: str, n: int | None, last: str | None) -> tuple[list[str], bool]:
        """One page of tags, in lexical order, and whether more follow.

        Only tags whose ``current`` link resolves are listed: a directory left by a tag
        write or delete that was cut short (a crash, a full disk, or Distribution) is not a
        tag, as ``GET`` and ``DELETE`` agree. Each listed tag costs one cached lookup.
        """
        validate_name(name)
        meta = self.stores.meta
        if n == 0:
            return [], False
        prefix = layout.tags_prefix(name)
        want = None if n is None else n + 1
        tags: list[str] = []
        cursor = last or None
        if last and not is_tag(last):
            # A cursor no tag can equal (a client's own, with control characters, say) never
            # reaches a backend, which may refuse it (S3 answers 500): list from its longest
            # tag-alphabet prefix, and drop below what does not sort after it.
            alphabet_prefix = _TAG_CHARS.match(last)
            cursor = (alphabet_prefix.group(0) if alphabet_prefix else "") or None
        while want is None or len(tags) < want:
            names = await meta.list_children(
                prefix, start_after=cursor, limit=None if want is None else want - len(tags)
            )
            if not names:
                break
            cursor = names[-1]
            if last:
                names = [t for t in names if t > last]
            tags += await self.links.live_tags(name, names)
            if want is None:
                break
        if (
            not tags
            and not last
            and not await meta.list_children(layout.repository_prefix(name), limit=1)
        ):
            raise NameUnknown(detail={"name": name})
        if n is not None and len(tags) > n:
            return tags[:n], True
        return tags, False

    async def repositories(self) -> list[str]:
        """Every repository name, sorted. A directory with a ``_manifests`` child is one."""
        meta = self.stores.meta
        found: list[str] = []

        async def walk(prefix: str, name: str) -> None:
            children = await meta.list_children(prefix)
            if name and "_manifests" in children:
                found.append(name)
            for child in children:
                if child.startswith("_"):
                    continue
                sub = f"{name}/{child}" if name else child
                if NAME_RE.fullmatch(sub):
                    await walk(f"{prefix}{child}/", sub)

        await walk(layout.REPOSITORIES, "")
        return sorted(found)

    async def catalog(self, n: int | None, last: str | None) -> tuple[list[str], bool]:
        names = await self.repositories()
        if last:
            names = [r for r in names if r > last]
        if n is not None and len(names) > n:
            return names[:n], True
        return names, False
