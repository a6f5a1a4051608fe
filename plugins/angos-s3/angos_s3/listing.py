"""Immediate children of a "directory", in name order, from S3's key-ordered listing.

S3 lists a directory child ``d`` at the position of ``d/`` and an object child ``o`` at
``o``. Name order and key order disagree when one name extends another with a byte below
``/`` (``-`` or ``.``): tags ``v1`` (listed as ``v1/``) and ``v1.0`` list as ``v1.0``, ``v1``.
So names are collected, sorted, and a limited listing stops only once no name still to come
can sort before the last one returned (:func:`safe_to_stop`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from angos_core.protocols import Children


def safe_to_stop(cutoff: str, position: str) -> bool:
    """True if every child not yet listed sorts after ``cutoff``, the listing being at key
    ``position`` (relative to the directory; every unseen child's key is above it, and
    ``cutoff``'s own key was listed, so ``position >= cutoff``).

    An unseen child ``m < cutoff`` lists at ``m`` or ``m/``, above ``position``. If ``m`` is
    not a prefix of ``cutoff``, both keys are below ``cutoff``: impossible. If it is, ``m/``
    lies above ``cutoff`` only when the byte after ``m`` in ``cutoff`` is below ``/``; the
    shortest such ``m`` lists last. Past its key, nothing below ``cutoff`` is left. Stopping
    right at ``cutoff`` matters: a page of exactly ``limit`` names needs one call, not two.
    """
    for i in range(1, len(cutoff)):
        if cutoff[i] < "/":
            return position >= cutoff[:i] + "/"
    return True


async def list_children(
    pages: AsyncIterator[dict[str, Any]],
    full_prefix: str,
    start_after: str | None,
    limit: int | None,
) -> list[str]:
    """Names from ListObjectsV2 ``pages`` (Delimiter="/") under the absolute ``full_prefix``."""
    if limit is not None and limit <= 0:
        return []
    page = await list_page(pages, full_prefix, start_after, limit, exact_more=False)
    return page.names


@dataclass
class Rest:
    """What a limited listing read past its page: every name after the page's last one
    whose key is at or below ``position`` (relative to the directory), in order, and
    whether keys follow ``position`` (the last call's ``IsTruncated``). The page that
    continues from that last name starts from it instead of listing those keys again."""

    names: list[str]
    position: str
    truncated: bool


async def list_page(
    pages: AsyncIterator[dict[str, Any]],
    full_prefix: str,
    start_after: str | None,
    limit: int | None,
    *,
    exact_more: bool = True,
) -> Children:
    """Names from ListObjectsV2 ``pages`` (Delimiter="/") under the absolute ``full_prefix``,
    and whether more children follow (:meth:`MetadataStore.list_children_page`).

    ``more`` comes from the listing itself: a name past the page, or ``IsTruncated`` on
    the page that completes it when every key still to come must be a new child. A key
    still to come is ``m/`` of a name ``m`` already seen as the object ``m`` (or of the
    cursor, which S3 lists again as ``<cursor>/``) only if ``m/`` lies above the listing's
    position; only then is the next page read to decide. Without ``exact_more`` (a caller
    that only wants the names) ``more`` may be False when children follow.
    """
    page, _ = await read_page(pages, full_prefix, start_after, limit, exact_more=exact_more)
    return page


async def read_page(
    pages: AsyncIterator[dict[str, Any]],
    full_prefix: str,
    start_after: str | None,
    limit: int | None,
    *,
    exact_more: bool = True,
    seed: Rest | None = None,
) -> tuple[Children, Rest | None]:
    """:func:`list_page`, and the :class:`Rest` it read past the page (None if nothing).

    With ``seed`` (the rest of the page that ended at ``start_after``), ``pages`` must
    list after ``seed.position`` (nothing if it was not truncated): the seed's names are
    every child up to there.
    """
    if limit is not None:
        limit = max(limit, 0)
    names: set[str] = set(seed.names) if seed else set()
    position = seed.position if seed else None
    truncated = seed.truncated if seed else True

    def verdict() -> Children | bool:
        """True: read on; False: the page is in ``names``; a Children: the answer."""
        if limit is None or position is None:
            return True
        if len(names) < limit or (
            limit > 0 and not safe_to_stop(sorted(names)[limit - 1], position)
        ):
            return True
        if len(names) > limit or not truncated or not exact_more:
            return False
        if not _may_list_again(names, start_after, position):
            return Children(sorted(names), True)
        return True

    decided = verdict() if seed else True
    if decided is True:
        async for page in pages:
            entries = sorted(
                [o["Key"] for o in page.get("Contents", [])]
                + [p["Prefix"] for p in page.get("CommonPrefixes", [])]
            )
            truncated = bool(page.get("IsTruncated"))
            for entry in entries:
                rel = entry[len(full_prefix) :]
                name = rel[:-1] if rel.endswith("/") else rel
                if not name or "/" in name:
                    continue  # a "directory marker" object of the prefix itself
                if start_after is not None and name <= start_after:
                    continue
                names.add(name)
            if not entries:
                continue
            position = entries[-1][len(full_prefix) :]
            decided = verdict()
            if decided is not True:
                break
    if isinstance(decided, Children):
        return decided, None
    result = sorted(names)
    if limit is None:
        return Children(result, False), None
    rest = None
    if len(result) > limit and position is not None:
        rest = Rest(result[limit:], position, truncated)
    return Children(result[:limit], len(result) > limit), rest


def _may_list_again(names: set[str], start_after: str | None, position: str) -> bool:
    """Whether a key above ``position`` can be the directory form of a name already seen."""
    seen = names if start_after is None else names | {start_after}
    return any(f"{name}/" > position for name in seen)
