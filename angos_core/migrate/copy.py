"""Copy a registry from one pair of stores to another through the plugin protocols only.

One pass: first every blob the source blob store lists, streamed to the destination and
verified there: in one ``put_blob`` call when the destination declares ``direct_put``
(:class:`~angos_core.protocols.BlobPut`), otherwise through its upload session API, hashed
on the way; then each repository's metadata. Everything is
compared first and copied only when missing or different, so a pass can be repeated
(catch-up, resume after a kill) and copies only what changed.

Nothing is ever half-visible at the destination, whenever the process dies:

* a blob appears only once its bytes hashed to its digest (``put_blob`` verifies it; a
  session is committed only after that check);
* metadata is written in dependency order: a layer link after its blob; a revision link
  after its manifest body and, before that, everything the manifest references (blobs
  with their layer links, an index's child manifests); the manifest's retention records
  (push and pull times), a tag index entry and a referrer link after their revision; a
  tag's ``current`` link last. So a tag resolves at the
  destination only once the whole image behind it is there.

Sessions this module opens live in the repository :data:`SESSION_REPOSITORY`; a run
first aborts the ones a killed run left behind.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Coroutine,
    Iterable,
)
from typing import Any, TypeVar

from angos_core import layout
from angos_core.migrate import DEFAULT_JOBS, walk
from angos_core.migrate.pace import Pace, paced_writes
from angos_core.migrate.progress import Progress
from angos_core.migrate.report import PassReport
from angos_core.migrate.transfer import SESSION_REPOSITORY, store_blob, transfer_blob
from angos_core.oci.manifest import parse_stored
from angos_core.protocols import BlobStore, MetadataStore
from angos_core.registry.links import parse_link
from angos_core.registry.times import parse_time

T = TypeVar("T")


async def bounded(
    items: Iterable[T] | AsyncIterable[T],
    fn: Callable[[T], Coroutine[Any, Any, None]],
    jobs: int,
) -> None:
    """``fn`` over ``items`` with at most ``jobs`` running at once (items read lazily)."""
    running: set[asyncio.Task[None]] = set()
    try:
        async for item in _each(items):
            if len(running) >= jobs:
                finished, running = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                for task in finished:
                    task.result()  # an error stops the walk
            running.add(asyncio.create_task(fn(item)))
        if running:
            finished, running = await asyncio.wait(running)
            for task in finished:
                task.result()
    finally:
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)


async def _each(items: Iterable[T] | AsyncIterable[T]) -> AsyncIterator[T]:
    if isinstance(items, AsyncIterable):
        async for item in items:
            yield item
    else:
        for item in items:
            yield item


class Migration:
    """Copies from ``src`` to ``dst`` (each a blob store and a metadata store)."""

    def __init__(
        self,
        src_blobs: BlobStore,
        src_meta: MetadataStore,
        dst_blobs: BlobStore,
        dst_meta: MetadataStore,
        *,
        jobs: int = DEFAULT_JOBS,
        progress: Progress | None = None,
        overwrite: bool = True,
        max_writes_per_sec: float = 0,
    ) -> None:
        #: ``max_writes_per_sec`` objects written to the destination a second at most (0: no limit):
        #: each blob, and each metadata write (pace.py).
        self._pace = Pace(max_writes_per_sec) if max_writes_per_sec else None
        self.src_blobs, self.src_meta = src_blobs, src_meta
        self.dst_blobs = dst_blobs
        self.dst_meta = paced_writes(dst_meta, self._pace) if self._pace else dst_meta
        self.jobs = jobs
        self.progress = progress or Progress(quiet=True)
        #: Whether a link the destination holds with other content is replaced (a tag moved
        #: at the source). False in a live migration: the destination serves writes, and
        #: what it holds is newer than the source's.
        self.overwrite = overwrite
        self.report = PassReport()
        # What the destination held when the pass listed it: a blob or link not listed is
        # written with one ``create`` instead of a read then a write (one request per object,
        # as ``aws s3 sync`` after its listing). Absent entries: not listed, read first.
        self._dst_blobs: set[str] | None = None
        self._dst_listed: dict[str, set[str]] = {}
        self._dst_dirs: dict[str, asyncio.Future[frozenset[str]]] = {}
        # Per pass: what is known to be at the destination now (or known to be missing at
        # the source), so each object is compared once however many paths lead to it.
        self._blobs: dict[str, asyncio.Future[bool]] = {}
        self._revisions: dict[tuple[str, str], asyncio.Future[bool]] = {}
        self._layers: dict[tuple[str, str], asyncio.Future[bool]] = {}
        #: Whether the destination's metadata store reads what its blob store writes (one
        #: tree), probed once a pass when the first manifest body needs it.
        self._probe: dict[None, asyncio.Future[bool]] = {}
        #: The repositories the destination had no directory for when this pass began.
        self._dst_new: set[str] = set()

    # ------------------------------------------------------------------ pass

    async def run(self) -> PassReport:
        """One complete pass; returns what it did."""
        self.report = PassReport()
        self._blobs.clear()
        self._revisions.clear()
        self._layers.clear()
        self._probe.clear()
        self._dst_new.clear()
        self._dst_listed.clear()
        self._dst_dirs.clear()
        started = time.monotonic()
        await self._abort_stale_sessions()
        digests = [d async for d in self.src_blobs.list_digests()]
        self._dst_blobs = {d async for d in self.dst_blobs.list_digests()}
        self.progress.phase("blobs", len(digests))
        await bounded(digests, self._blob_step, self.jobs)
        repositories = await walk.repositories(self.src_meta)
        self.progress.phase("repositories", len(repositories))
        # Repositories side by side: one's links depend on the blobs (done above) and on
        # its own objects only, and a repository's few links are latency-bound otherwise.
        await bounded(repositories, self._repository_step, self.jobs)
        self.progress.close()
        self.report.seconds = time.monotonic() - started
        return self.report

    async def _repository_step(self, name: str) -> None:
        await self._guard("repository", name, self.copy_repository(name))
        self.progress.advance()

    async def _blob_step(self, digest: str) -> None:
        await self._guard("blob", digest, self.ensure_blob(digest))
        self.progress.advance()

    async def _abort_stale_sessions(self) -> None:
        stale = [
            ref async for ref, _ in self.dst_blobs.list_uploads() if ref.name == SESSION_REPOSITORY
        ]
        for ref in stale:
            await self.dst_blobs.upload_abort(ref)

    # ------------------------------------------------------------------ blobs

    async def ensure_blob(self, digest: str) -> bool:
        """Whether blob ``digest`` is at the destination, after copying it if needed."""
        return await _once(self._blobs, digest, lambda: self._copy_blob(digest))

    async def _copy_blob(self, digest: str) -> bool:
        size = await self.src_blobs.stat(digest)
        listed = self._dst_blobs
        present = None
        if listed is None or digest in listed:
            present = await self.dst_blobs.stat(digest)
        if size is None:
            # Deleted at the source since it was listed (gc): nothing to copy.
            self.report.skipped("blob")
            return (present or await self.dst_blobs.stat(digest)) is not None
        if present == size:
            self.report.skipped("blob")
            return True
        if present is not None:
            self.report.failed(
                "blob", f"{digest}: {present} bytes at the destination, {size} at the source"
            )
            return False
        try:
            if self._pace is not None:
                await self._pace.wait()
            failure = await transfer_blob(
                self.src_blobs, self.dst_blobs, digest, size, self._counted
            )
        except Exception as exc:
            failure = f"{digest}: {type(exc).__name__}: {exc}"
        if failure is not None:
            self.report.failed("blob", failure)
            return False
        self.report.copied("blob")
        self.report.bytes_copied += size
        return True

    async def _counted(self, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        async for chunk in chunks:
            self.progress.add_bytes(len(chunk))
            yield chunk

    # ------------------------------------------------------------------ metadata

    async def copy_repository(self, name: str) -> None:
        """Every link of repository ``name``, each after what it depends on."""
        meta = self.src_meta
        new = not await self._dst_has_directory(name)
        if new:
            self._dst_new.add(name)
        for prefix in (layout.layers_prefix(name), layout.revisions_prefix(name)):
            listed = [] if new else await walk.linked_digests(self.dst_meta, prefix)
            self._dst_listed[prefix] = set(listed)
        tags = [] if new else await walk.tags(self.dst_meta, name)
        self._dst_listed[layout.tags_prefix(name)] = set(tags)
        layers = await walk.linked_digests(meta, layout.layers_prefix(name))
        await bounded(layers, lambda d: self._ensure_layer_step(name, d), self.jobs)
        revisions = await walk.linked_digests(meta, layout.revisions_prefix(name))
        await bounded(revisions, lambda d: self._ensure_revision_step(name, d), self.jobs)
        for subject in await walk.referrer_subjects(meta, name):
            referrers = await walk.linked_digests(meta, layout.referrers_prefix(name, subject))
            await bounded(
                referrers,
                lambda d, s=subject: self._guard(  # type: ignore[misc]
                    "referrer_link", f"{name}@{d}", self._copy_referrer(name, s, d)
                ),
                self.jobs,
            )
        await bounded(
            await walk.tags(meta, name),
            lambda t: self._guard("tag", f"{name}:{t}", self._copy_tag(name, t)),
            self.jobs,
        )

    async def _ensure_layer_step(self, name: str, digest: str) -> None:
        await self._guard("layer_link", f"{name}@{digest}", self.ensure_layer(name, digest))

    async def _ensure_revision_step(self, name: str, digest: str) -> None:
        await self._guard("revision_link", f"{name}@{digest}", self.ensure_revision(name, digest))

    async def _guard(self, kind: str, what: str, step: Awaitable[object]) -> None:
        """Run one item; a backend error fails that item, not the pass."""
        try:
            await step
        except Exception as exc:
            self.report.failed(kind, f"{what}: {type(exc).__name__}: {exc}")

    async def ensure_layer(self, name: str, digest: str) -> None:
        """The layer link, if the source has it, after the blob it names (once a pass: the
        layers walk and every manifest naming the blob lead here)."""
        await _once(self._layers, (name, digest), lambda: self._copy_layer(name, digest))

    async def _copy_layer(self, name: str, digest: str) -> bool:
        key = layout.layer_link_key(name, digest)
        content = await self.src_meta.get(key)
        if content is None:
            return False
        if not await self.ensure_blob(digest):
            self.report.failed("layer_link", f"{name}@{digest}: its blob is not at the destination")
            return False
        absent = self._absent(layout.layers_prefix(name), digest)
        await self._sync_link("layer_link", key, content, absent=absent)
        return True

    async def ensure_revision(self, name: str, digest: str) -> bool:
        """Whether manifest ``digest`` of ``name`` is at the destination, whole, after
        copying what it references, its body, then its revision link."""
        return await _once(
            self._revisions, (name, digest), lambda: self._copy_revision(name, digest)
        )

    async def _copy_revision(self, name: str, digest: str) -> bool:
        key = layout.revision_link_key(name, digest)
        content = await self.src_meta.get(key)
        if content is None:
            # Not (or no longer) a manifest of this repository at the source.
            return await self.dst_meta.get(key) is not None
        body_key = layout.blob_data_key(digest)
        body = await self.src_meta.get(body_key)
        if body is None:
            self.report.failed("manifest", f"{name}@{digest}: no body at the source")
            return False
        manifest = parse_stored(body)
        if manifest is not None:
            blobs = [d.digest for d in (manifest.config, *manifest.layers) if d is not None]
            for blob in blobs:
                await self.ensure_layer(name, blob)
            for child in manifest.manifests:
                if await self.src_meta.get(layout.revision_link_key(name, child.digest)):
                    await self.ensure_revision(name, child.digest)
        if not await self._copy_body(digest, body_key, body):
            return False
        absent = self._absent(layout.revisions_prefix(name), digest)
        await self._sync_link("revision_link", key, content, absent=absent)
        await self._copy_times(name, digest)
        return True

    async def _copy_times(self, name: str, digest: str) -> None:
        """The manifest's retention records (``v2/_retention/``: when it was last pushed and
        last pulled, for ``angos prune``), after its revision link. Only what the source
        has; the later time wins: a record the destination lacks is created, an older one
        replaced, a newer one (a push or pull the destination saw since) kept. Without
        :attr:`overwrite` (live) nothing is replaced: the new side records its own."""
        for kind in (layout.PUSHED, layout.PULLED):
            key = layout.manifest_time_key(name, kind, digest)
            content = await self.src_meta.get(key)
            when = parse_time(content)
            if content is None or when is None:
                continue
            try:
                await self._sync_time(key, content, when, first=name in self._dst_new)
            except Exception as exc:
                self.report.failed("retention_time", f"{key}: {type(exc).__name__}: {exc}")

    async def _sync_time(self, key: str, content: bytes, when: int, *, first: bool) -> None:
        # Into a repository the destination did not have: create at once (one request).
        if first and await self.dst_meta.create(key, content):
            self.report.copied("retention_time")
            return
        present = await self.dst_meta.get(key)
        if present is None and await self.dst_meta.create(key, content):
            self.report.copied("retention_time")
            return
        if present is None:
            present = await self.dst_meta.get(key)
        theirs = parse_time(present)
        if not self.overwrite or (theirs is not None and theirs >= when):
            self.report.skipped("retention_time")
            return
        await self.dst_meta.put(key, content)
        self.report.copied("retention_time")

    async def _copy_body(self, digest: str, key: str, body: bytes) -> bool:
        """The manifest body at the destination (content-addressed: created if absent, else
        compared). No request at all when the destination's metadata store reads its blob
        store's keys (one tree: fs, or s3 on one bucket; :meth:`_meta_sees_blobs` finds
        out), this pass found or put a blob of that digest there (verified to hash to it)
        and ``body`` hashes to it too: then the key holds ``body`` already."""
        if (
            self._put_this_pass(digest)
            and _hashes_to(body, digest)
            and await _once(self._probe, None, self._probe_meta_sees_blobs)
        ):
            self.report.skipped("manifest")
            return True
        if await self.dst_meta.create(key, body):
            self.report.copied("manifest")
            return True
        return self._same_body(digest, await self.dst_meta.get(key), body)

    async def _probe_meta_sees_blobs(self) -> bool:
        """Whether the destination's metadata store reads what its blob store writes: a
        blob of random bytes (unlinked, deleted at once; gc removes it if a kill comes
        between) is put into the blob store and looked up in the metadata store. Only a
        store that shares the tree can know those bytes. Once a pass, 3 requests."""
        data = b"angos migrate probe " + os.urandom(16).hex().encode()
        digest = f"sha256:{hashlib.sha256(data).hexdigest()}"

        async def stream() -> AsyncIterator[bytes]:
            yield data

        try:
            if await store_blob(self.dst_blobs, digest, len(data), stream) is not None:
                return False
            try:
                return await self.dst_meta.get(layout.blob_data_key(digest)) == data
            finally:
                await self.dst_blobs.delete(digest)
        except Exception:  # no shortcut: every body is created or compared
            return False

    def _same_body(self, digest: str, present: bytes | None, body: bytes) -> bool:
        if present == body:
            self.report.skipped("manifest")
            return True
        self.report.failed("manifest", f"{digest}: different bytes at the destination")
        return False

    def _put_this_pass(self, digest: str) -> bool:
        """Whether this pass found blob ``digest`` at the destination or put it there."""
        future = self._blobs.get(digest)
        if future is None or not future.done() or future.cancelled() or future.exception():
            return False
        return future.result()

    async def _copy_referrer(self, name: str, subject: str, digest: str) -> None:
        key = layout.referrer_link_key(name, subject, digest)
        content = await self.src_meta.get(key)
        if content is None:
            return
        if await self.ensure_revision(name, digest):
            await self._sync_link("referrer_link", key, content)
        else:
            self.report.failed("referrer_link", f"{name}@{digest}: its manifest is missing")

    async def _copy_tag(self, name: str, tag: str) -> None:
        """The tag's ``current`` link, then its index entries: the order of a push, so the
        tag's directory appears at the destination only once it resolves."""
        absent = self._absent(layout.tags_prefix(name), tag)
        key = layout.tag_current_key(name, tag)
        content = await self.src_meta.get(key)
        target = parse_link(content)
        if content is None or target is None:
            return  # a tag half written or half deleted at the source: not a tag
        if not await self.ensure_revision(name, target):
            self.report.failed("tag", f"{name}:{tag}: its manifest {target} is missing")
            return
        await self._sync_link("tag", key, content, absent=absent)
        for digest in await walk.linked_digests(self.src_meta, layout.tag_index_prefix(name, tag)):
            key = layout.tag_index_key(name, tag, digest)
            content = await self.src_meta.get(key)
            if content is not None and await self.ensure_revision(name, digest):
                await self._sync_link("tag_index", key, content, absent=absent)

    async def _dst_has_directory(self, name: str) -> bool:
        """Whether the destination has a directory for repository ``name``: each parent's
        listing is read once a pass, so into an empty destination no repository costs a
        listing of its own."""
        parent = layout.REPOSITORIES
        for component in name.split("/"):
            children = await _once_set(self._dst_dirs, parent, self._dst_children)
            if component not in children:
                return False
            parent = f"{parent}{component}/"
        return True

    async def _dst_children(self, prefix: str) -> frozenset[str]:
        return frozenset([child async for child in walk.children(self.dst_meta, prefix)])

    def _absent(self, prefix: str, child: str) -> bool:
        """Whether the pass's listing of the destination's ``prefix`` lacked ``child``."""
        listed = self._dst_listed.get(prefix)
        return listed is not None and child not in listed

    async def _sync_link(
        self, kind: str, key: str, content: bytes, *, absent: bool = False
    ) -> None:
        """The link at the destination: created when it was not listed there, else read and
        replaced if different (unless :attr:`overwrite` is off: then the destination's
        stands). A create that finds the key (written since the listing) reads it too."""
        if absent and await self.dst_meta.create(key, content):
            self.report.copied(kind)
            return
        present = await self.dst_meta.get(key)
        if present == content:
            self.report.skipped(kind)
            return
        if present is None:
            if await self.dst_meta.create(key, content):
                self.report.copied(kind)
                return
            present = await self.dst_meta.get(key)
        if present == content or not self.overwrite:
            self.report.skipped(kind)
            return
        await self.dst_meta.put(key, content)
        self.report.copied(kind)


K = TypeVar("K")


def _hashes_to(data: bytes, digest: str) -> bool:
    algorithm, _, hexpart = digest.partition(":")
    try:
        return hashlib.new(algorithm, data).hexdigest() == hexpart
    except ValueError:
        return False


async def _once_set(
    memo: dict[str, asyncio.Future[frozenset[str]]],
    key: str,
    fn: Callable[[str], Awaitable[frozenset[str]]],
) -> frozenset[str]:
    """``fn(key)`` once per key and pass; concurrent callers share its result."""
    future = memo.get(key)
    if future is None:
        future = asyncio.ensure_future(fn(key))
        memo[key] = future
    return await asyncio.shield(future)


async def _once(
    memo: dict[K, asyncio.Future[bool]], key: K, fn: Callable[[], Awaitable[bool]]
) -> bool:
    """``fn()`` once per key and pass; concurrent callers share its result."""
    future = memo.get(key)
    if future is None:
        future = asyncio.get_running_loop().create_future()
        memo[key] = future
        try:
            result = await fn()
        except BaseException as exc:
            future.set_exception(exc)
            # Nobody else may be waiting; the exception is re-raised here either way.
            future.exception()
            raise
        future.set_result(result)
        return result
    return await future
