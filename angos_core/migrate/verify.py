"""Compare two registries' stores: does the destination hold everything the source does?

Blobs: every digest the source lists must be at the destination with the same size (with
``deep``, its bytes re-hashed to its digest). The destination may hold more blobs (a store
whose metadata shares the tree lists manifest bodies as blobs too), which is no loss.

Metadata: per repository of either side, every layer, revision, referrer, tag index and
tag ``current`` link and every manifest body must exist on both sides with the same bytes:
a link only at the destination is reported too (a tag deleted at the source after it was
copied, say), since the destination would serve it. In a live migration the destination
is the newer side: what it added, moved or deleted (by its tombstones) is not reported.
"""

from __future__ import annotations

import asyncio
import hashlib

from angos_core import layout
from angos_core.migrate import DEFAULT_JOBS, walk
from angos_core.migrate.copy import bounded
from angos_core.migrate.live import Tombstones
from angos_core.migrate.progress import Progress
from angos_core.protocols import BlobStore, MetadataStore
from angos_core.registry.times import parse_time


class Verifier:
    def __init__(
        self,
        src_blobs: BlobStore,
        src_meta: MetadataStore,
        dst_blobs: BlobStore,
        dst_meta: MetadataStore,
        *,
        jobs: int = DEFAULT_JOBS,
        deep: bool = False,
        progress: Progress | None = None,
        live: bool = False,
    ) -> None:
        self.src_blobs, self.src_meta = src_blobs, src_meta
        self.dst_blobs, self.dst_meta = dst_blobs, dst_meta
        self.jobs = jobs
        self.deep = deep
        #: A live migration: the destination served writes, so a link only there (a push),
        #: a tag ``current`` it moved, and a key it deleted (tombstoned) are no difference.
        self.live = live
        self._tombstones = Tombstones(dst_meta)
        self.progress = progress or Progress(quiet=True)
        self.differences: list[str] = []
        self.checked = 0

    async def run(self) -> list[str]:
        self.differences = []
        digests = [d async for d in self.src_blobs.list_digests()]
        self.progress.phase("verify blobs", len(digests))
        await bounded(digests, self._blob, self.jobs)
        names = sorted(
            set(await walk.repositories(self.src_meta))
            | set(await walk.repositories(self.dst_meta))
        )
        self.progress.phase("verify repositories", len(names))
        for name in sorted(names):
            await self._repository(name)
            self.progress.advance()
        self.progress.close()
        self.differences.sort()
        return self.differences

    async def _blob(self, digest: str) -> None:
        self.checked += 1
        size, other = await asyncio.gather(self.src_blobs.stat(digest), self.dst_blobs.stat(digest))
        if size is None:
            pass  # deleted at the source since it was listed
        elif other is None:
            self.differences.append(f"blob {digest}: missing at the destination")
        elif other != size:
            self.differences.append(
                f"blob {digest}: {other} bytes at the destination, {size} at the source"
            )
        elif self.deep:
            algorithm = digest.partition(":")[0]
            hasher = hashlib.new(algorithm)
            async for chunk in self.dst_blobs.read(digest):
                hasher.update(chunk)
                self.progress.add_bytes(len(chunk))
            if f"{algorithm}:{hasher.hexdigest()}" != digest:
                self.differences.append(
                    f"blob {digest}: the destination's bytes hash to "
                    f"{algorithm}:{hasher.hexdigest()}"
                )
        self.progress.advance()

    async def _repository(self, name: str) -> None:
        src, dst = await asyncio.gather(
            _repository_keys(self.src_meta, name), _repository_keys(self.dst_meta, name)
        )
        for key in sorted(src.keys() | dst.keys()):
            await self._compare(key, src.get(key), dst.get(key))

    async def _compare(self, key: str, kind: str | None, other_kind: str | None) -> None:
        kind = kind or other_kind or "object"
        source, destination = await asyncio.gather(self.src_meta.get(key), self.dst_meta.get(key))
        self.checked += 1
        if source == destination:
            return
        if kind == "retention_time":
            await self._compare_time(key, source, destination)
            return
        if self.live and (
            source is None
            or (kind == "tag" and destination is not None)
            or (destination is None and await self._tombstones.has(key))
        ):
            return
        if destination is None:
            self.differences.append(f"{kind} {key}: missing at the destination")
        elif source is None:
            self.differences.append(f"{kind} {key}: only at the destination")
        else:
            self.differences.append(f"{kind} {key}: different bytes")

    async def _compare_time(
        self, key: str, source: bytes | None, destination: bytes | None
    ) -> None:
        """A push record: the destination's must be there (from the source's) and not
        older. One only at the destination, or a later time there, is no loss."""
        theirs, ours = parse_time(source), parse_time(destination)
        if source is None or theirs is None:
            return
        if ours is None:
            if self.live and await self._tombstones.has(key):
                return
            self.differences.append(f"retention_time {key}: missing at the destination")
        elif destination is not None and ours < theirs:
            self.differences.append(
                f"retention_time {key}: {destination.decode(errors='replace')} at the "
                f"destination, {source.decode(errors='replace')} at the source"
            )


async def _repository_keys(meta: MetadataStore, name: str) -> dict[str, str]:
    """Every metadata key of repository ``name`` (manifest bodies included), by kind."""
    keys: dict[str, str] = {}
    for digest in await walk.linked_digests(meta, layout.layers_prefix(name)):
        keys[layout.layer_link_key(name, digest)] = "layer_link"
    revisions = await walk.linked_digests(meta, layout.revisions_prefix(name))
    for digest in revisions:
        keys[layout.revision_link_key(name, digest)] = "revision_link"
        keys[layout.blob_data_key(digest)] = "manifest"
    # The push records of those manifests (one listing, not a read per manifest; a record
    # left by a deleted manifest is not registry data). Not the pull records: the old
    # registry keeps serving pulls after the last pass (a read-only cut-over does), and
    # the new one records its own, so a pull time missing or older there is no loss.
    manifests = set(revisions)
    prefix = f"{layout.RETENTION_PREFIX}{name}/{layout.PUSHED}/"
    for digest in await _records(meta, prefix):
        if digest in manifests:
            keys[layout.manifest_time_key(name, layout.PUSHED, digest)] = "retention_time"
    for subject in await walk.referrer_subjects(meta, name):
        for digest in await walk.linked_digests(meta, layout.referrers_prefix(name, subject)):
            keys[layout.referrer_link_key(name, subject, digest)] = "referrer_link"
    for tag in await walk.tags(meta, name):
        for digest in await walk.linked_digests(meta, layout.tag_index_prefix(name, tag)):
            keys[layout.tag_index_key(name, tag, digest)] = "tag_index"
        keys[layout.tag_current_key(name, tag)] = "tag"
    return keys


async def _records(meta: MetadataStore, prefix: str) -> list[str]:
    """The digests of the ``<prefix><alg>/<hex>`` records."""
    digests: list[str] = []
    async for alg in walk.children(meta, prefix):
        async for hexpart in walk.children(meta, f"{prefix}{alg}/"):
            digests.append(f"{alg}:{hexpart}")
    return digests
