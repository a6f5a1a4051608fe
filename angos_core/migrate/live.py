"""Live migration: the new stores serve, and what is not copied yet is read through from
the old ones (and copied as it is read), while ``angos migrate`` copies the rest.

Selected by ``[migration] from = "OLD.toml"`` in the new config; ``angos serve`` then wraps
its blob and metadata stores in :class:`LiveBlobStore` and :class:`LiveMetadataStore`
(each inside core's usual wrapper). The rules, at the store level so that every reader
(manifests by tag or digest, blobs, tags lists, the catalog, referrers) follows them:

* **Reads** go to the new store first. A miss for a registry key (below ``v2/blobs/`` or
  ``v2/repositories/``) that has no tombstone is read from the old store, and the object is
  copied to the new store with ``create``: never over what the new store holds.
* **Listings** are the union of both stores' children, less the old side's directories a
  ``delete_prefix`` on the new side removed (each has a directory tombstone): a deleted
  tag is not listed (a tag list reads no link). A name whose single object was deleted may
  still be listed; reading it answers absent.
* **Writes** go to the new store only. A **delete** first writes a tombstone
  (:func:`angos_core.layout.migration_tombstone_key`) for each key the old store holds, then
  deletes from the new store: no later read-through and no copy pass brings it back.
* **Blobs**: a read of a blob the new store lacks copies it first (verified, as ``angos
  migrate`` does), then serves it from the new store; if the copy fails, it is served from
  the old store. ``stat`` answers from the old store without copying.

``angos migrate`` itself writes to the plain new stores through :class:`CopyTarget`, which
refuses to create a tombstoned key: together with "never overwrite" (``overwrite=False``),
a tag pushed or deleted on the new side during the copy stays as the new side has it.

A copy that races a delete of the same key (it read the old object before the tombstone
and creates after the delete) re-reads the tombstone after its create and removes its own
copy, so the window is the few milliseconds between those two steps.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterable, AsyncIterator
from datetime import datetime

from angos_core import layout
from angos_core.migrate.transfer import transfer_blob
from angos_core.protocols import BlobStore, Children, MetadataStore, UploadRef

log = logging.getLogger("angos.migrate.live")

_FALLS_THROUGH = (layout.blobs_prefix(), layout.REPOSITORIES)


def falls_through(key: str) -> bool:
    """Whether a miss for ``key`` is read from the old store (registry data; never upload
    sessions, gc records or tombstones)."""
    return key.startswith(_FALLS_THROUGH) and "/_uploads/" not in key


class Tombstones:
    """The deletes made on the new side during a live migration, kept in the new store."""

    def __init__(self, new: MetadataStore) -> None:
        self.new = new

    async def has(self, key: str) -> bool:
        return await self.new.get(layout.migration_tombstone_key(key)) is not None

    async def put(self, key: str) -> None:
        await self.new.put(layout.migration_tombstone_key(key), b"deleted\n")

    async def put_directory(self, prefix: str) -> None:
        """The tombstone of the directory ``prefix`` (``/``-ended), which ``delete_prefix``
        removed: listings leave it out of the old side's children."""
        await self.put(_directory_key(prefix))

    async def has_directory(self, prefix: str) -> bool:
        return await self.has(_directory_key(prefix))

    async def create(self, key: str, data: bytes) -> bool:
        """``create`` on the new store unless ``key`` was deleted there; a create that
        raced the delete is undone."""
        if await self.has(key):
            return False
        created = await self.new.create(key, data)
        if created and await self.has(key):
            await self.new.delete(key)
            return False
        return created


class CopyTarget:
    """The new metadata store as ``angos migrate`` writes it in a live migration: what the
    new side deleted is not created again."""

    def __init__(self, new: MetadataStore) -> None:
        self.inner = new
        self.name = new.name
        self.tombstones = Tombstones(new)

    async def get(self, key: str) -> bytes | None:
        return await self.inner.get(key)

    async def put(self, key: str, data: bytes) -> None:
        await self.inner.put(key, data)

    async def create(self, key: str, data: bytes) -> bool:
        return await self.tombstones.create(key, data)

    async def delete(self, key: str) -> bool:
        return await self.inner.delete(key)

    async def delete_prefix(self, prefix: str) -> None:
        await self.inner.delete_prefix(prefix)

    async def list_children(
        self, prefix: str, *, start_after: str | None = None, limit: int | None = None
    ) -> list[str]:
        return await self.inner.list_children(prefix, start_after=start_after, limit=limit)

    async def list_children_page(
        self, prefix: str, *, start_after: str | None = None, limit: int | None = None
    ) -> Children:
        return await self.inner.list_children_page(prefix, start_after=start_after, limit=limit)

    async def open(self) -> None:
        await self.inner.open()

    async def health(self) -> None:
        await self.inner.health()

    async def aclose(self) -> None:
        await self.inner.aclose()


class LiveMetadataStore:
    def __init__(self, new: MetadataStore, old: MetadataStore) -> None:
        self.new, self.old = new, old
        self.name = new.name
        self.tombstones = Tombstones(new)

    async def get(self, key: str) -> bytes | None:
        data = await self.new.get(key)
        if data is not None or not falls_through(key) or await self.tombstones.has(key):
            return data
        data = await self.old.get(key)
        if data is None:
            return None
        try:
            if not await self.tombstones.create(key, data):
                return await self.new.get(key)  # written or deleted meanwhile: the new side's
        except Exception as exc:  # the read still answers; the copy pass retries the copy
            log.warning("live migration: copying %s failed: %s", key, exc)
        return data

    async def put(self, key: str, data: bytes) -> None:
        await self.new.put(key, data)

    async def create(self, key: str, data: bytes) -> bool:
        return await self.new.create(key, data)

    async def delete(self, key: str) -> bool:
        on_old = falls_through(key) and await self.old.get(key) is not None
        if on_old:
            await self.tombstones.put(key)  # first: no read-through between the two steps
        existed = await self.new.delete(key)
        return existed or on_old

    async def delete_prefix(self, prefix: str) -> None:
        if falls_through(prefix):
            async for key in _keys_under(self.old, prefix):
                await self.tombstones.put(key)
            await self.tombstones.put_directory(prefix)
        await self.new.delete_prefix(prefix)

    async def list_children(
        self, prefix: str, *, start_after: str | None = None, limit: int | None = None
    ) -> list[str]:
        new = await self.new.list_children(prefix, start_after=start_after, limit=limit)
        if not falls_through(prefix):
            return new
        old = await self.old.list_children(prefix, start_after=start_after, limit=limit)
        old = await self._not_deleted(prefix, old, set(new))
        # The first ``limit`` names of the union are among the first ``limit`` of each.
        merged = sorted(set(new) | set(old), key=lambda n: n.encode())
        return merged if limit is None else merged[:limit]

    async def list_children_page(
        self, prefix: str, *, start_after: str | None = None, limit: int | None = None
    ) -> Children:
        new = await self.new.list_children_page(prefix, start_after=start_after, limit=limit)
        if not falls_through(prefix):
            return new
        old = await self.old.list_children_page(prefix, start_after=start_after, limit=limit)
        old_names = await self._not_deleted(prefix, old.names, set(new.names))
        merged = sorted(set(new.names) | set(old_names), key=lambda n: n.encode())
        if limit is None:
            return Children(merged, False)
        if len(merged) > max(limit, 0):
            return Children(merged[: max(limit, 0)], True)
        # All of both pages returned: more follows exactly when either side has more.
        return Children(merged, new.more or old.more)

    async def _not_deleted(self, prefix: str, old: list[str], new: set[str]) -> list[str]:
        """The old side's children but those only it has whose directory a
        ``delete_prefix`` removed (a deleted tag: a listing of names must not show it)."""
        only_old = [name for name in old if name not in new]
        deleted = await asyncio.gather(
            *(self.tombstones.has_directory(f"{prefix}{name}/") for name in only_old)
        )
        gone = {name for name, dead in zip(only_old, deleted, strict=True) if dead}
        return [name for name in old if name not in gone]

    async def open(self) -> None:
        await self.new.open()

    async def health(self) -> None:
        await self.new.health()

    async def aclose(self) -> None:
        await self.new.aclose()


def _directory_key(prefix: str) -> str:
    # Beside the directory's own tombstones, under a name no key of the layout has ("@").
    return f"{prefix[:-1]}@deleted"


async def _keys_under(meta: MetadataStore, prefix: str) -> AsyncIterator[str]:
    """Every object key below the directory ``prefix`` (a child with children is a
    directory; one without is an object)."""
    for child in await meta.list_children(prefix):
        path = f"{prefix}{child}"
        below = [k async for k in _keys_under(meta, f"{path}/")]
        if below:
            for key in below:
                yield key
        else:
            yield path


class LiveBlobStore:
    def __init__(self, new: BlobStore, old: BlobStore) -> None:
        self.new, self.old = new, old
        self.name = new.name
        self._copying: dict[str, asyncio.Task[bool]] = {}

    async def stat(self, digest: str) -> int | None:
        size = await self.new.stat(digest)
        return size if size is not None else await self.old.stat(digest)

    async def _ensure(self, digest: str) -> bool:
        """Whether the new store has the blob, after copying it from the old one if it can
        (once at a time per digest in this process)."""
        if await self.new.stat(digest) is not None:
            return True
        task = self._copying.get(digest)
        if task is None:
            task = asyncio.create_task(self._copy(digest))
            self._copying[digest] = task
            task.add_done_callback(lambda _t: self._copying.pop(digest, None))
        return await asyncio.shield(task)

    async def _copy(self, digest: str) -> bool:
        size = await self.old.stat(digest)
        if size is None:
            return False
        try:
            failure = await transfer_blob(self.old, self.new, digest, size)
        except Exception as exc:
            failure = f"{type(exc).__name__}: {exc}"
        if failure is not None:
            log.warning("live migration: copying blob %s failed: %s", digest, failure)
            return False
        return True

    async def read(
        self, digest: str, offset: int = 0, length: int | None = None
    ) -> AsyncIterator[bytes]:
        source = self.new if await self._ensure(digest) else self.old
        async for chunk in source.read(digest, offset, length):
            yield chunk

    async def modified_at(self, digest: str) -> datetime | None:
        return await self.new.modified_at(digest)

    async def delete(self, digest: str) -> bool:
        return await self.new.delete(digest)

    def list_digests(self) -> AsyncIterator[str]:
        return self.new.list_digests()

    async def presigned_url(self, digest: str, expires_secs: int) -> str | None:
        # Only for what the new store holds: a miss goes down the stream path, which copies.
        if await self.new.stat(digest) is None:
            return None
        return await self.new.presigned_url(digest, expires_secs)

    def local_path(self, digest: str) -> str | None:
        return self.new.local_path(digest)

    async def upload_start(self, upload: UploadRef) -> None:
        await self.new.upload_start(upload)

    async def upload_append(
        self, upload: UploadRef, offset: int, chunks: AsyncIterable[bytes]
    ) -> int:
        return await self.new.upload_append(upload, offset, chunks)

    async def upload_size(self, upload: UploadRef) -> int:
        return await self.new.upload_size(upload)

    def upload_read(self, upload: UploadRef) -> AsyncIterator[bytes]:
        return self.new.upload_read(upload)

    async def upload_commit(self, upload: UploadRef, digest: str) -> None:
        await self.new.upload_commit(upload, digest)

    async def upload_abort(self, upload: UploadRef) -> None:
        await self.new.upload_abort(upload)

    def list_uploads(self) -> AsyncIterator[tuple[UploadRef, datetime]]:
        return self.new.list_uploads()

    async def open(self) -> None:
        await self.new.open()

    async def health(self) -> None:
        await self.new.health()

    async def aclose(self) -> None:
        await self.new.aclose()
