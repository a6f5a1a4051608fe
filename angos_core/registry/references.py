"""What writers and the online garbage collector share, so that a collection can run while
any number of replicas serve pushes (docs/architecture.md, "Online garbage collection").

Writers take no lock against each other or the collector: pushes of images sharing a base
layer never queue on it. Two records per object (a blob, or a manifest body, by digest):

- reference marks under ``v2/_gc/marks/<alg>/<hex>/``. A writer that makes a new reference
  to the object (a manifest push to its config, layers or index children and to its own
  body; a blob upload's commit; a mount) creates its own ``ref.<token>`` holding
  ``pending <time>`` before it checks the object, and rewrites it to ``done`` once the
  reference is stored (:meth:`References.referencing`). A blob ``HEAD`` that finds the
  blob, an upload, a mount and a manifest push for its own digest also write ``recent``,
  holding the writer's time. The collector keeps every object with a ``ref.*`` mark, or with
  a ``recent`` mark younger than its ``--min-age-secs``. Each run first deletes every
  ``done`` mark (its reference is stored, so this run's mark phase sees it), every
  ``pending`` mark older than :data:`PENDING_EXPIRY_SECS` (a writer that died) and every
  expired ``recent``;
- a tombstone ``v2/_gc/doomed/<alg>/<hex>``, which the collector writes before it reads an
  object's marks and removes after it deleted (or kept) it. A writer reads it after making
  its mark, waits while it is up, and only then checks that the object exists. Each side
  writes before it reads the other's key, so at least one sees the other: the collector
  sees the mark and keeps the object, or the writer sees the tombstone, and its check, after
  the deletion, finds the object gone (it refuses the push cleanly, or stores the object
  again).
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

from angos_core.oci.digest import is_digest
from angos_core.registry.stores import Stores

GC_PREFIX = "v2/_gc/"
MARKS_PREFIX = f"{GC_PREFIX}marks/"
TOMBSTONES_PREFIX = f"{GC_PREFIX}doomed/"
REF = "ref"
RECENT = "recent"
_PENDING = b"pending "
_DONE = b"done"
#: How long a writer waits for a tombstone to go before it looks anyway (a collector that
#: died mid-deletion leaves one; the next run clears it).
TOMBSTONE_WAIT_SECS = 5.0
_TOMBSTONE_POLL_SECS = 0.02
#: A ``pending`` mark this old belongs to a writer that died: no request lives a day.
PENDING_EXPIRY_SECS = 24 * 3600.0
#: Marks and tombstone reads one writer has in flight at once.
MARK_CONCURRENCY = 16


def _split(digest: str) -> tuple[str, str]:
    alg, _, hexpart = digest.partition(":")
    return alg, hexpart


def mark_key(digest: str, generation: str) -> str:
    alg, hexpart = _split(digest)
    return f"{MARKS_PREFIX}{alg}/{hexpart}/{generation}"


def marks_prefix(digest: str) -> str:
    alg, hexpart = _split(digest)
    return f"{MARKS_PREFIX}{alg}/{hexpart}/"


def ref_key(digest: str, token: str) -> str:
    return f"{marks_prefix(digest)}{REF}.{token}"


def tombstone_key(digest: str) -> str:
    alg, hexpart = _split(digest)
    return f"{TOMBSTONES_PREFIX}{alg}/{hexpart}"


class References:
    """The writer's and the collector's side of the protocol above."""

    def __init__(self, stores: Stores) -> None:
        self.stores = stores

    # ------------------------------------------------------------------ writers

    @asynccontextmanager
    async def referencing(self, digests: Iterable[str]) -> AsyncIterator[None]:
        """Around a writer's check-and-store of new references to ``digests``: its pending
        marks are made and any deletion in progress has finished when the block starts; the
        marks say ``done`` when it ends (also on failure: a done mark only keeps an object
        until the next run starts)."""
        wanted = list(dict.fromkeys(digests))
        token = secrets.token_hex(8)
        pending = _PENDING + _stamp(datetime.now(UTC))
        await self._each(wanted, lambda d: self.stores.meta.put(ref_key(d, token), pending))
        await self._each(wanted, self._wait_for_tombstone)
        try:
            yield
        finally:
            await self._each(wanted, lambda d: self.stores.meta.put(ref_key(d, token), _DONE))

    async def _each(self, digests: list[str], action: Callable[[str], Awaitable[object]]) -> None:
        for i in range(0, len(digests), MARK_CONCURRENCY):
            await asyncio.gather(*(action(d) for d in digests[i : i + MARK_CONCURRENCY]))

    async def _wait_for_tombstone(self, digest: str) -> None:
        meta = self.stores.meta
        loop = asyncio.get_running_loop()
        deadline = loop.time() + TOMBSTONE_WAIT_SECS
        # Polled: the tombstone is another process's, in a shared store; no event reaches us.
        while await meta.get(tombstone_key(digest)) is not None and loop.time() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(_TOMBSTONE_POLL_SECS)

    async def mark_recent(self, digest: str) -> None:
        """Write a ``recent`` mark stamped now: rewritten each time, so it dates the latest
        use (a cost of one small write per found ``HEAD`` and per manifest push)."""
        await self.stores.meta.put(mark_key(digest, RECENT), _stamp(datetime.now(UTC)))

    async def head(self, digest: str) -> None:
        """Before a ``HEAD`` answers that a blob exists: mark it ``recent``, then let a
        deletion in progress finish, so a client that skips its upload on our answer finds
        the blob when its manifest arrives. The caller checks existence afterwards.

        Mark first, tombstone second: the collector writes the tombstone first and reads
        the marks second, so at least one of the two sees the other's write. Either the
        collector sees the mark (it keeps the blob) or this sees the tombstone (it waits,
        and the existence check that follows sees the deletion).
        """
        await self.mark_recent(digest)
        await self._wait_for_tombstone(digest)

    # ------------------------------------------------------------------ collector

    async def is_marked(self, digest: str, recent_since: datetime, *, refs: bool = True) -> bool:
        """Whether a writer marked the object: a ``ref.*`` (unless ``refs`` is False: a dry
        run, which rotates nothing, counts only pending ones), or a ``recent`` stamped after
        ``recent_since``."""
        meta = self.stores.meta
        children = await meta.list_children(marks_prefix(digest))
        for child in children:
            if child.startswith(f"{REF}."):
                if refs:
                    return True
                value = await meta.get(f"{marks_prefix(digest)}{child}")
                if value is not None and value.startswith(_PENDING):
                    return True
        # The listing is this read of the marks (after the tombstone went up): a ``recent``
        # it does not show was written after it, by a writer who then sees the tombstone.
        if RECENT not in children:
            return False
        return _fresh(await meta.get(mark_key(digest, RECENT)), recent_since)

    async def rotate(self, digest: str, recent_since: datetime) -> None:
        """At the start of a run: drop ``done`` and dead ``pending`` marks, and ``recent``
        if stamped before ``recent_since``."""
        meta = self.stores.meta
        dead_before = datetime.now(UTC) - timedelta(seconds=PENDING_EXPIRY_SECS)
        for child in await meta.list_children(marks_prefix(digest)):
            key = f"{marks_prefix(digest)}{child}"
            if child.startswith(f"{REF}."):
                value = await meta.get(key)
                if value is None:
                    continue
                if value == _DONE or (
                    value.startswith(_PENDING) and not _fresh(value[len(_PENDING) :], dead_before)
                ):
                    await meta.delete(key)
        recent = await meta.get(mark_key(digest, RECENT))
        if recent is not None and not _fresh(recent, recent_since):
            await meta.delete(mark_key(digest, RECENT))

    async def marked_digests(self) -> AsyncGenerator[str, None]:
        """Every digest with a mark, streamed page by page."""
        async for digest in self._digests_under(MARKS_PREFIX):
            yield digest

    async def tombstoned_digests(self) -> AsyncGenerator[str, None]:
        async for digest in self._digests_under(TOMBSTONES_PREFIX):
            yield digest

    async def set_tombstone(self, digest: str) -> None:
        await self.stores.meta.put(tombstone_key(digest), b"")

    async def clear_tombstone(self, digest: str) -> None:
        await self.stores.meta.delete(tombstone_key(digest))

    async def _digests_under(self, prefix: str) -> AsyncGenerator[str, None]:
        # Marks are directories and tombstones objects: both list as children.
        meta = self.stores.meta
        for alg in await meta.list_children(prefix):
            after: str | None = None
            while True:
                page = await meta.list_children(f"{prefix}{alg}/", start_after=after, limit=1000)
                for hexpart in page:
                    digest = f"{alg}:{hexpart}"
                    if is_digest(digest):
                        yield digest
                if len(page) < 1000:
                    break
                after = page[-1]


def _stamp(when: datetime) -> bytes:
    return when.astimezone(UTC).isoformat().encode()


def _fresh(stamp: bytes | None, since: datetime) -> bool:
    """Whether a ``recent`` mark's stamp is after ``since``; an unreadable one counts as
    fresh (it keeps, never deletes)."""
    if stamp is None:
        return False
    try:
        when = datetime.fromisoformat(stamp.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        return True
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when > since
