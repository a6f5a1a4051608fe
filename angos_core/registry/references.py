"""What writers and the online garbage collector share, so that a collection can run while
any number of replicas serve pushes (docs/architecture.md, "Online garbage collection").

Three things, all keyed by a blob's (or manifest body's) digest:

- the lock ``blob:<digest>`` (:func:`blob_lock_key`): a writer that makes a new reference
  to an object (a manifest push to its config, layers and index children and to its own
  body; a blob upload's commit; a mount) holds it from its existence check until the
  reference is stored; the collector holds it while it decides on and deletes the object;
- reference marks under ``v2/_gc/marks/<alg>/<hex>/``: a writer creates ``ref`` under that
  lock; a blob ``HEAD`` that finds the blob, and a manifest push for its own digest, write
  ``recent``, which holds the writer's time (see :meth:`References.head`). The collector
  keeps every object with a ``ref`` mark, or with a ``recent`` mark younger than its
  ``--min-age-secs``. Each run first deletes, under each object's lock, every ``ref`` (the
  reference it announced is stored by now, so this run's mark sees it) and every expired
  ``recent``. So a ``ref`` protects its object during the run it was made in; a ``recent``
  for the minimum age: the window a client has between a ``HEAD`` and the manifest that
  relies on it, or between a child manifest and its index;
- a tombstone ``v2/_gc/doomed/<alg>/<hex>``, written by the collector (under the lock)
  before it looks at the marks of an object it may delete and removed after: a ``HEAD``,
  which takes no lock, makes its mark, then waits while a tombstone is there, then looks.

Lock order: ``blob:`` keys before ``manifest:`` keys before ``tag:`` keys (they sort so).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Iterable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import UTC, datetime

from angos_core.oci.digest import is_digest
from angos_core.protocols import Lease
from angos_core.registry.stores import Stores

GC_PREFIX = "v2/_gc/"
MARKS_PREFIX = f"{GC_PREFIX}marks/"
TOMBSTONES_PREFIX = f"{GC_PREFIX}doomed/"
REF = "ref"
RECENT = "recent"
#: How long a ``HEAD`` waits for a tombstone to go before it answers from what it sees.
TOMBSTONE_WAIT_SECS = 5.0
_TOMBSTONE_POLL_SECS = 0.02
#: Blob keys a manifest push takes per ``acquire`` call (a lock provider takes keys of one
#: call together; a manifest may list thousands of blobs).
LOCK_BATCH = 256
#: Marks one writer creates at once (a push's are written while it holds the blob keys).
MARK_CONCURRENCY = 16


def blob_lock_key(digest: str) -> str:
    return f"blob:{digest}"


def _split(digest: str) -> tuple[str, str]:
    alg, _, hexpart = digest.partition(":")
    return alg, hexpart


def mark_key(digest: str, generation: str) -> str:
    alg, hexpart = _split(digest)
    return f"{MARKS_PREFIX}{alg}/{hexpart}/{generation}"


def tombstone_key(digest: str) -> str:
    alg, hexpart = _split(digest)
    return f"{TOMBSTONES_PREFIX}{alg}/{hexpart}"


class References:
    """The writer's and the collector's side of the protocol above."""

    def __init__(self, stores: Stores) -> None:
        self.stores = stores

    # ------------------------------------------------------------------ writers

    @asynccontextmanager
    async def guarding(self, digests: Iterable[str]) -> AsyncIterator[Sequence[Lease]]:
        """Hold ``blob:<d>`` for every digest (deduplicated, in sorted batches)."""
        keys = sorted({blob_lock_key(d) for d in digests})
        async with AsyncExitStack() as stack:
            leases = [
                await stack.enter_async_context(self.stores.locks.acquire(keys[i : i + LOCK_BATCH]))
                for i in range(0, len(keys), LOCK_BATCH)
            ]
            yield leases

    async def mark(self, digests: Iterable[str]) -> None:
        """Make a ``ref`` mark for each digest: a writer, under the digests' keys."""
        pending = list(dict.fromkeys(digests))
        for i in range(0, len(pending), MARK_CONCURRENCY):
            await asyncio.gather(
                *(
                    self.stores.meta.create(mark_key(d, REF), b"")
                    for d in pending[i : i + MARK_CONCURRENCY]
                )
            )

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
        meta = self.stores.meta
        await self.mark_recent(digest)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + TOMBSTONE_WAIT_SECS
        # Polled: the tombstone is another process's, in a shared store; no event reaches us.
        while await meta.get(tombstone_key(digest)) is not None and loop.time() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(_TOMBSTONE_POLL_SECS)

    # ------------------------------------------------------------------ collector

    async def is_marked(self, digest: str, recent_since: datetime, *, refs: bool = True) -> bool:
        """Whether a writer marked the object: a ``ref`` (unless ``refs`` is False: a dry
        run, which rotates nothing, counts them as the rotation would leave them), or a
        ``recent`` stamped after ``recent_since``."""
        meta = self.stores.meta
        if refs and await meta.get(mark_key(digest, REF)) is not None:
            return True
        return _fresh(await meta.get(mark_key(digest, RECENT)), recent_since)

    async def rotate(self, digest: str, recent_since: datetime) -> None:
        """Under ``blob:<digest>``, at the start of a run: drop ``ref``, and ``recent`` if
        stamped before ``recent_since``."""
        meta = self.stores.meta
        await meta.delete(mark_key(digest, REF))
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
