"""Garbage collection of unreferenced blobs and manifest bodies (``angos gc``), safe while
any number of replicas serve pushes: the writers' side is in
:mod:`angos_core.registry.references`, the argument in docs/architecture.md ("Online
garbage collection").

Prepare: clear stale tombstones, rotate the reference marks (``ref`` dropped, an expired
``recent`` dropped), each under its object's ``blob:`` key.

Untagged (``delete_untagged``): per repository, the manifests nothing keeps: a manifest
is kept if a tag points at it (its ``current`` link or an entry of its tag index), if it is
a child of a kept index, or if it is a referrer (``subject``) of a kept manifest, until
nothing changes; each of the rest is deleted under its key unless a writer marked it, via
:meth:`ManifestService.delete` (caches and referrer links stay right).

Mark: every manifest revision link of every repository marks that manifest's digest and,
from its body, its config and layers, or (an index) its children, recursively. A body that
cannot be read or parsed stops the run before anything is deleted: never sweep on an
incomplete mark.

Sweep: every blob of the blob store that is not marked and whose data is older than
``min_age_secs``, and every unmarked manifest body of the metadata store, is deleted under
its key if no writer marked it (its tombstone up meanwhile, for lockless ``HEAD``s), a
deleted blob's layer links with it (under the same tombstone); then the layer links to
blobs missing already, one deletion per digest and only if the bytes are still gone: in
every repository with anything stored, also one whose last manifest was deleted, which
the catalog no longer lists.

Memory: the marks, the blob listing and the layer links are spilled to per-shard temporary
files (:mod:`angos_core.registry.gc_spill`) and the sweep runs shard by shard, so a run
holds one shard's digests, not the store's.

Concurrency: the phases work on up to ``concurrency`` repositories or objects at once (the
store calls overlap instead of waiting one after another). What the safety argument orders
stays in order for each object: tombstone up, marks read, delete, tombstone down; and no two
deletions of one digest overlap (:meth:`GarbageCollector._exclusive`). A blob's layer links
go inside its own deletion, under the same tombstone and mark check.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import IO, TypeVar

from angos_core import layout
from angos_core.config import GC_CONCURRENCY, GC_MIN_AGE_SECS, GcScheduleConfig
from angos_core.errors import AngosError, LockUnavailable, ManifestUnknown
from angos_core.oci.digest import is_digest
from angos_core.oci.manifest import Manifest, parse_stored
from angos_core.progress import Progress
from angos_core.protocols import Lease, LockProvider
from angos_core.registry import Registry
from angos_core.registry.gc_spill import SHARDS, Spill, SpillDirectory

#: Marked or tombstoned digests read from the listing at a time at the start of a run.
_PREPARE_BATCH = 1000

T = TypeVar("T")


log = logging.getLogger("angos.gc")

#: Parsed manifests kept for the run (an index child shared by many indexes is read once
#: while it stays among the latest used), and manifests remembered as walked: both bounded,
#: so memory does not grow with the store (gc_spill.py).
PARSED_CACHE = 256
WALKED_CACHE = 16_384

#: Without a terminal, ``angos gc`` logs a progress line this often.
PROGRESS_LOG_SECS = 10.0

#: Held for a whole run: two collectors at once would rotate each other's marks.
COLLECTOR_LOCK_KEY = "gc:collector"
#: How long a collector waits for that lock before saying another one runs: a run takes
#: minutes, so waiting out the provider's own retries (a minute with the memory lock) only
#: delays the answer.
COLLECTOR_LOCK_WAIT_SECS = 3.0


@contextlib.asynccontextmanager
async def collector_lock(locks: LockProvider, busy: AngosError) -> AsyncIterator[Lease]:
    """Hold :data:`COLLECTOR_LOCK_KEY` for a run (gc, prune), or raise ``busy`` once it
    could not be had within :data:`COLLECTOR_LOCK_WAIT_SECS`. Only the acquisition is
    judged: a ``LockUnavailable`` inside the run is the run's own."""
    async with contextlib.AsyncExitStack() as held:
        try:
            lease = await asyncio.wait_for(
                held.enter_async_context(locks.acquire([COLLECTOR_LOCK_KEY])),
                COLLECTOR_LOCK_WAIT_SECS,
            )
        except (LockUnavailable, TimeoutError):
            raise busy from None
        yield lease


async def _no_checkpoint(point: str, digest: str) -> None:
    return None


class GcError(AngosError):
    """The mark cannot be completed (an unreadable manifest): nothing was deleted."""


@dataclass
class GcResult:
    repositories: int = 0
    manifests_marked: int = 0
    blobs_marked: int = 0
    manifests_deleted: int = 0
    blobs_deleted: int = 0
    blobs_kept_young: int = 0
    #: Unmarked at the mark, referenced by a writer before the sweep came to them.
    blobs_kept_marked: int = 0
    bodies_kept_marked: int = 0
    manifests_kept_marked: int = 0
    #: Objects whose key a writer held when the collector came to them: kept.
    kept_busy: int = 0
    bodies_deleted: int = 0
    layer_links_deleted: int = 0
    bytes_freed: int = 0

    def summary(self, dry_run: bool) -> str:
        verb = "would delete" if dry_run else "deleted"
        return (
            f"gc{' (dry run)' if dry_run else ''}: {self.repositories} repositories, "
            f"{self.manifests_marked} manifests marked, {self.blobs_marked} blobs marked, "
            f"{verb} {self.manifests_deleted} untagged manifests, {self.blobs_deleted} blobs, "
            f"{self.bodies_deleted} manifest bodies, {self.layer_links_deleted} layer links; "
            f"{self.blobs_kept_young} unreferenced blobs kept as too young, "
            f"{self.blobs_kept_marked + self.bodies_kept_marked + self.manifests_kept_marked} "
            f"objects kept as referenced by a writer meanwhile, {self.kept_busy} as busy; "
            f"{self.bytes_freed} bytes {'would be ' if dry_run else ''}freed"
        )


class GarbageCollector:
    def __init__(
        self,
        registry: Registry,
        *,
        dry_run: bool = False,
        delete_untagged: bool = False,
        min_age_secs: float = GC_MIN_AGE_SECS,
        out: Callable[[str], None] = print,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        checkpoint: Callable[[str, str], Awaitable[None]] | None = None,
        progress: IO[str] | None = None,
        concurrency: int = GC_CONCURRENCY,
    ) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {concurrency}")
        self.registry = registry
        self.concurrency = concurrency
        #: Digests being deleted now, each with the event set when its deletion ends.
        self._dooming: dict[str, asyncio.Event] = {}
        self.meta = registry.stores.meta
        self.blobs = registry.stores.blobs
        self.dry_run = dry_run
        self.delete_untagged = delete_untagged
        self.min_age = timedelta(seconds=min_age_secs)
        self.out = out
        self.now = now
        self._parsed: OrderedDict[str, Manifest] = OrderedDict()
        self._walked: OrderedDict[str, None] = OrderedDict()
        self._recent_since = self.now() - self.min_age
        #: Awaited at named points of a run ("untagged" with a repository whose untagged
        #: manifests are listed, "marked", "doomed" with a digest about to go):
        #: where a test holds the collector to interleave a writer.
        self._checkpoint = checkpoint or _no_checkpoint
        #: A bar if ``progress`` is a terminal (``angos gc`` passes stderr), else a log
        #: line now and then: also in the scheduled collector, whose long runs say so.
        self._progress_stream = progress

    # ------------------------------------------------------------------ concurrency

    async def _each(self, items: Iterable[T], action: Callable[[T], Awaitable[None]]) -> None:
        """``action`` for every item, at most ``concurrency`` at once; the first failure
        cancels the rest and is raised as it is."""
        iterator = iter(items)
        if self.concurrency == 1:
            for item in iterator:
                await action(item)
            return

        async def worker() -> None:
            # One iterator shared by the workers: each takes the next item when free.
            for item in iterator:
                await action(item)

        try:
            async with asyncio.TaskGroup() as group:
                for _ in range(self.concurrency):
                    group.create_task(worker())
        except BaseExceptionGroup as failed:
            raise failed.exceptions[0] from None

    async def _each_streamed(
        self, items: AsyncIterator[T], action: Callable[[T], Awaitable[None]]
    ) -> None:
        """As :meth:`_each` over a stream, a batch at a time (memory stays bounded)."""
        batch: list[T] = []
        async for item in items:
            batch.append(item)
            if len(batch) >= _PREPARE_BATCH:
                await self._each(batch, action)
                batch = []
        await self._each(batch, action)

    @contextlib.asynccontextmanager
    async def _exclusive(self, digest: str) -> AsyncIterator[None]:
        """One deletion of ``digest`` at a time in this run (two repositories may hold the
        same untagged manifest): the first to end would take the tombstone down while the
        other still deletes."""
        while (busy := self._dooming.get(digest)) is not None:
            await busy.wait()
        done = asyncio.Event()
        self._dooming[digest] = done
        try:
            yield
        finally:
            del self._dooming[digest]
            done.set()

    # ------------------------------------------------------------------ reading

    async def _manifest(self, name: str, digest: str) -> Manifest:
        manifest = await self._manifest_if_stored(name, digest)
        if manifest is None:
            raise GcError(f"manifest {digest} of repository {name}: body missing; nothing deleted")
        return manifest

    async def _manifest_if_stored(self, name: str, digest: str) -> Manifest | None:
        cached = self._parsed.get(digest)
        if cached is not None:
            self._parsed.move_to_end(digest)
            return cached
        body = await self.registry.manifests.body(digest)
        if body is None:
            return None
        manifest = parse_stored(body)
        if manifest is None:
            raise GcError(
                f"manifest {digest} of repository {name}: body cannot be parsed; nothing deleted"
            )
        self._parsed[digest] = manifest
        if len(self._parsed) > PARSED_CACHE:
            self._parsed.popitem(last=False)
        return manifest

    async def _tagged(self, name: str) -> set[str]:
        tagged: set[str] = set()
        for tag in await self.registry.links.tags(name):
            current = await self.registry.links.tag_digest(name, tag, fresh=True)
            if current is not None:
                tagged.add(current)
            index = layout.tag_index_prefix(name, tag)
            tagged.update(await self.registry.links.digests_under(index))
        return tagged

    # ------------------------------------------------------------------ untagged

    async def _untagged(self, name: str, revisions: list[str]) -> list[str]:
        present = set(revisions)
        kept = await self._tagged(name) & present
        todo = list(kept)
        while todo:
            digest = todo.pop()
            manifest = await self._manifest(name, digest)
            linked = [d.digest for d in manifest.manifests]
            linked += await self.registry.links.digests_under(layout.referrers_prefix(name, digest))
            for child in linked:
                if child in present and child not in kept:
                    kept.add(child)
                    todo.append(child)
        return sorted(present - kept)

    # ------------------------------------------------------------------ mark

    async def _mark(self, name: str, digest: str, marks: Spill) -> None:
        """Spill ``digest`` and what it references, recursively, as marks: ``m`` for a
        manifest, ``b`` for a blob (counted, deduplicated, per shard in the sweep)."""
        # (digest, whether it must be stored): a revision must, an index's child need not
        # ([global] accept_index_with_missing_children); a child that is also a revision is
        # a root of its own, checked as one.
        todo = [(digest, True)]
        while todo:
            current, required = todo.pop()
            if current in self._walked:
                self._walked.move_to_end(current)
                continue
            if required:
                manifest = await self._manifest(name, current)
            else:
                found = await self._manifest_if_stored(name, current)
                if found is None:
                    continue
                manifest = found
            # Forgotten when it falls out of the window: walked again, marking the same.
            self._walked[current] = None
            if len(self._walked) > WALKED_CACHE:
                self._walked.popitem(last=False)
            marks.add(current, "m")
            if manifest.config is not None:
                marks.add(manifest.config.digest, "b")
            for layer in manifest.layers:
                marks.add(layer.digest, "b")
            todo.extend((d.digest, False) for d in manifest.manifests)

    # ------------------------------------------------------------------ run

    async def run(self) -> GcResult:
        """One collection, safe beside live writers (module docstring)."""
        busy = GcError(
            "another garbage collection is running on these stores (it holds the lock "
            f"{COLLECTOR_LOCK_KEY!r}); nothing deleted: run one collection at a time"
        )
        async with collector_lock(self.registry.stores.locks, busy) as lease:
            return await self._run(lease)

    async def _run(self, lease: Lease) -> GcResult:
        progress = Progress("gc", self._progress_stream, log, interval=PROGRESS_LOG_SECS)
        try:
            return await self._phases(lease, progress)
        finally:
            progress.close()

    async def _phases(self, lease: Lease, progress: Progress) -> GcResult:
        result = GcResult()
        # A writer's "recent" mark protects for the minimum age, as a young blob's data does.
        self._recent_since = self.now() - self.min_age
        if not self.dry_run:
            await self._prepare()
        # Also the repositories whose last manifest went: their layer links still need
        # sweeping, and the catalog does not list them.
        repositories = await self.registry.catalog.stored_repositories()
        result.repositories = len(repositories)
        total = len(repositories)
        done = 0
        if self.delete_untagged:
            progress.phase("untagged manifests", total=total, unit="repo")

            async def untag(name: str) -> None:
                nonlocal done
                revisions = await self.registry.links.digests_under(layout.revisions_prefix(name))
                untagged = await self._untagged(name, revisions)
                await self._checkpoint("untagged", name)
                for digest in untagged:
                    await self._delete_untagged(name, digest, result)
                done += 1
                progress.update(
                    1, f"{done}/{total} repositories, {result.manifests_deleted} deleted"
                )

            await self._each(repositories, untag)
        spills = SpillDirectory()
        try:
            # Roots listed after the untagged deletions; the whole mark (every body parsed)
            # completes before anything is deleted.
            marks = spills.spill("marks")
            progress.phase("mark", total=total, unit="repo")
            done = 0

            async def mark(name: str) -> None:
                nonlocal done
                roots = layout.revisions_prefix(name)
                for digest in await self.registry.links.digests_under(roots):
                    await self._mark(name, digest, marks)
                done += 1
                progress.update(1, f"{done}/{total} repositories walked")

            # Every repository's walk ends (or the first failure stops the run) here.
            await self._each(repositories, mark)
            await self._checkpoint("marked", "")
            lease.check()
            await self._sweep(repositories, marks, spills, result, progress)
        finally:
            spills.close()
        return result

    async def _prepare(self) -> None:
        """Clear the tombstones of a collector that died mid-deletion, then rotate the
        reference marks (references.py): from here on a ``ref`` mark means a writer's
        reference was being made when this run began, or since."""
        refs = self.registry.references
        async with contextlib.aclosing(refs.tombstoned_digests()) as stale:
            await self._each_streamed(stale, refs.clear_tombstone)

        async def rotate(digest: str) -> None:
            await refs.rotate(digest, self._recent_since)

        async with contextlib.aclosing(refs.marked_digests()) as marked:
            await self._each_streamed(marked, rotate)

    async def _delete_untagged(self, name: str, digest: str, result: GcResult) -> None:
        skipped = False

        async def delete() -> None:
            nonlocal skipped
            # A client may delete it, or tag it, between the listing and here: the one is
            # done already, the other keeps it (its tags are checked under their locks).
            try:
                skipped = not await self.registry.manifests.delete(name, digest, only_untagged=True)
            except ManifestUnknown:
                skipped = True

        # Pushed, or referenced as an index child or a subject, within the minimum age or
        # during this run: it may be a push in progress, kept.
        if await self._doom(digest, delete) and not skipped:
            self._report(f"manifest {name}@{digest}")
            result.manifests_deleted += 1
        else:
            result.manifests_kept_marked += 1

    def _report(self, what: str) -> None:
        self.out(f"{'would delete' if self.dry_run else 'deleted'} {what}")

    async def _doom(self, digest: str, delete: Callable[[], Awaitable[None]]) -> bool:
        """Delete an unmarked object unless a writer references it meanwhile: its tombstone
        is up from before its marks are read until after it is deleted (references.py).
        True if it was deleted (or, in a dry run, would be)."""
        refs = self.registry.references
        if self.dry_run:
            return not await refs.is_marked(digest, self._recent_since, refs=False)
        async with self._exclusive(digest):
            await refs.set_tombstone(digest)
            try:
                if await refs.is_marked(digest, self._recent_since):
                    return False
                await self._checkpoint("doomed", digest)
                await delete()
                return True
            finally:
                await refs.clear_tombstone(digest)

    async def _sweep(
        self,
        repositories: list[str],
        marks: Spill,
        spills: SpillDirectory,
        result: GcResult,
        progress: Progress,
    ) -> None:
        """List every blob and layer link into shards, then sweep shard by shard: only one
        shard's marks, blobs and links are in memory at a time (gc_spill.py)."""
        progress.phase("listing blobs", unit="blob")
        blobs = spills.spill("blobs")
        listed = 0
        async for digest in self.blobs.list_digests():
            blobs.add(digest)
            listed += 1
            progress.update(1, f"{listed} blobs listed")
        progress.phase("listing layer links", total=len(repositories), unit="repo")
        links = spills.spill("links")
        done = 0

        async def list_links(name: str) -> None:
            nonlocal done
            for digest in await self.registry.links.digests_under(layout.layers_prefix(name)):
                links.add(digest, name)
            done += 1
            progress.update(1, f"{done}/{len(repositories)} repositories listed")

        await self._each(repositories, list_links)
        progress.phase("sweep", total=SHARDS, unit="shard")
        swept = 0
        algorithms = await self.meta.list_children(layout.blobs_prefix())
        cutoff = self.now() - self.min_age
        for shard in range(SHARDS):
            manifests: set[str] = set()
            referenced: set[str] = set()
            for digest, kind in marks.shard(shard):
                (manifests if kind == "m" else referenced).add(digest)
            result.manifests_marked += len(manifests)
            result.blobs_marked += len(referenced - manifests)
            marked = manifests | referenced
            del manifests, referenced
            seen = {digest for digest, _ in blobs.shard(shard)}
            swept += len(seen)
            linked: dict[str, list[str]] = {}
            for digest, name in links.shard(shard):
                if digest not in marked:
                    linked.setdefault(digest, []).append(name)
            bodies = await self._bodies(algorithms, f"{shard:02x}", seen | marked)
            # One pool for the shard's three kinds of object: their digests are disjoint
            # (a body the blob sweep saw is skipped; a dangling link's blob was not listed).
            work: list[Callable[[], Awaitable[None]]] = []
            for digest in sorted(seen - marked):
                work.append(self._blob_work(digest, linked.get(digest, []), cutoff, result))
            for digest in bodies:
                work.append(self._body_work(digest, result))
            for digest, names in sorted(linked.items()):
                # Dangling links: their blob was gone before this run (deleted by a run that
                # did not walk the repository). A blob committed after the listing is not in
                # ``seen`` but stored: _unlink_dangling keeps its links.
                if digest not in seen:
                    work.append(self._dangling_work(digest, names, result))
            del linked
            await self._each(work, _call)
            progress.update(
                1,
                f"{shard + 1}/{SHARDS} shards, {swept}/{listed} blobs swept, "
                f"{result.blobs_deleted} deleted",
            )

    def _blob_work(
        self, digest: str, names: list[str], cutoff: datetime, result: GcResult
    ) -> Callable[[], Awaitable[None]]:
        """Delete an unmarked blob older than ``cutoff``, and the layer links to it (``names``,
        the repositories linking it) within the same deletion: the links go only once the
        bytes are gone, under the blob's tombstone and its mark check."""

        async def sweep() -> None:
            when = await self.blobs.modified_at(digest)
            if when is None:
                return
            if when > cutoff:
                result.blobs_kept_young += 1
                return
            size = await self.blobs.stat(digest) or 0
            unlinked: list[str] = []

            async def delete_blob() -> None:
                await self.blobs.delete(digest)
                for name in names:
                    await self.registry.links.delete_layer(name, digest)
                    unlinked.append(name)

            if not await self._doom(digest, delete_blob):
                result.blobs_kept_marked += 1
                return
            self._report(f"blob {digest} ({size} bytes)")
            result.blobs_deleted += 1
            result.bytes_freed += size
            for name in names if self.dry_run else unlinked:
                self._report(f"layer link {name}/{digest}")
                result.layer_links_deleted += 1

        return sweep

    async def _bodies(self, algorithms: list[str], fanout: str, skip: set[str]) -> list[str]:
        """Manifest bodies of the metadata store under ``v2/blobs/<alg>/<fanout>/``. With fs
        for both stores they share the blob's key, so a body the blob sweep saw (deleted or
        kept young) is done already: it is in ``skip``, with the marked."""
        prefix = layout.blobs_prefix()
        found: list[str] = []
        for alg in algorithms:
            for hexpart in await self.meta.list_children(f"{prefix}{alg}/{fanout}/"):
                digest = f"{alg}:{hexpart}"
                if not is_digest(digest) or digest in skip:
                    continue
                if not layout.blob_data_key(digest).startswith(f"{prefix}{alg}/{fanout}/"):
                    continue
                found.append(digest)
        return found

    def _body_work(self, digest: str, result: GcResult) -> Callable[[], Awaitable[None]]:
        async def sweep() -> None:
            async def delete_body() -> None:
                await self.meta.delete(layout.blob_data_key(digest))

            if not await self._doom(digest, delete_body):
                result.bodies_kept_marked += 1
                return
            self._report(f"manifest body {digest}")
            result.bodies_deleted += 1

        return sweep

    def _dangling_work(
        self, digest: str, names: list[str], result: GcResult
    ) -> Callable[[], Awaitable[None]]:
        """Drop the links to a missing blob, unless a writer references it again (an upload
        brings the bytes back, a manifest push relies on the link): one deletion for every
        repository linking it."""

        async def sweep() -> None:
            if self.dry_run:
                # Nothing was deleted: what is missing already.
                if await self.blobs.stat(digest) is None:
                    for name in names:
                        self._report(f"layer link {name}/{digest}")
                        result.layer_links_deleted += 1
                return
            unlinked: list[str] = []

            async def unlink() -> None:
                if await self.blobs.stat(digest) is None:
                    for name in names:
                        await self.registry.links.delete_layer(name, digest)
                        unlinked.append(name)

            if await self._doom(digest, unlink):
                for name in unlinked:
                    self._report(f"layer link {name}/{digest}")
                    result.layer_links_deleted += 1

        return sweep


async def _call(work: Callable[[], Awaitable[None]]) -> None:
    await work()


async def collect_forever(
    registry: Registry,
    settings: GcScheduleConfig,
    finished: Callable[[GcResult | None, float], None],
    paused: Callable[[], bool] = lambda: False,
) -> None:
    """``[maintenance.gc]``: a collection every ``interval_secs`` (the first after one
    interval), until cancelled. A failed run is logged and the next one runs on time.

    A run due while ``paused()`` (``[maintenance.read_only]``) is skipped, with a log line:
    the server writes nothing while read-only, its collector included; ``angos gc`` from
    the command line is how an operator collects during the window."""
    log.info(
        "gc: every %gs%s, min age %gs%s",
        settings.interval_secs,
        " (dry run)" if settings.dry_run else "",
        settings.min_age_secs,
        ", untagged manifests deleted" if settings.delete_untagged else "",
    )
    while True:
        await asyncio.sleep(settings.interval_secs)
        if paused():
            log.info("gc: skipped, the registry is read-only; next in %gs", settings.interval_secs)
            continue
        started = time.monotonic()
        collector = GarbageCollector(
            registry,
            dry_run=settings.dry_run,
            delete_untagged=settings.delete_untagged,
            min_age_secs=settings.min_age_secs,
            out=log.debug,
            concurrency=settings.concurrency,
        )
        try:
            result = await collector.run()
        except Exception as exc:
            finished(None, time.monotonic() - started)
            log.warning("gc: collection failed, next in %gs: %s", settings.interval_secs, exc)
            continue
        finished(result, time.monotonic() - started)
        log.info("%s", result.summary(settings.dry_run))
