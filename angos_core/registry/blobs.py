"""Blobs as a repository sees them: linked, readable by range, mountable, deletable."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

from angos_core import layout
from angos_core.errors import BlobUnknown
from angos_core.oci.digest import parse_digest
from angos_core.oci.names import validate_name
from angos_core.registry.links import Links
from angos_core.registry.references import References
from angos_core.registry.stores import Stores
from angos_core.registry.write_gate import WriteGate


@dataclass(frozen=True, slots=True)
class BlobInfo:
    digest: str
    size: int
    #: The bytes of a manifest fetched through /blobs/ (held in the metadata store), else None.
    manifest_body: bytes | None = None


class BlobService:
    def __init__(
        self,
        stores: Stores,
        links: Links,
        references: References,
        writes: WriteGate | None = None,
    ) -> None:
        self.stores = stores
        self.links = links
        self.references = references
        self.writes = writes if writes is not None else WriteGate()

    async def stat(
        self, name: str, digest: str, *, need_size: bool = True, probe: bool = False
    ) -> BlobInfo:
        """The blob as repository ``name`` sees it; ``BlobUnknown`` if not linked there.

        With ``need_size=False`` a linked blob is not stat'ed (``size`` is -1): a GET that
        can sendfile a local path learns the size from the file itself. ``probe`` is a
        ``HEAD``: a pusher that finds the blob skips its upload, so a found blob is marked
        for the garbage collector first (:meth:`References.head`).
        """
        validate_name(name)
        parse_digest(digest)
        if probe and await self.links.has_layer(name, digest):
            # Found: mark it before answering so (only then: a 404 sends the client to
            # upload, which needs no protection).
            await self.references.head(digest)
        if await self.links.has_layer(name, digest):
            if not need_size:
                return BlobInfo(digest, -1)
            size = await self.stores.blobs.stat(digest)
            if size is not None:
                return BlobInfo(digest, size)
        elif await self.links.has_revision(name, digest):
            # Distribution serves manifests through /blobs/ too; their bytes are metadata.
            body = await self.stores.meta.get(layout.blob_data_key(digest))
            if body is not None:
                return BlobInfo(digest, len(body), body)
        raise BlobUnknown(detail={"digest": digest})

    async def size(self, digest: str) -> int:
        size = await self.stores.blobs.stat(digest)
        if size is None:
            raise BlobUnknown(detail={"digest": digest})
        return size

    def read(self, digest: str, offset: int = 0, length: int | None = None) -> AsyncIterator[bytes]:
        return self.stores.blobs.read(digest, offset, length)

    def local_path(self, digest: str) -> str | None:
        return self.stores.blobs.local_path(digest)

    async def redirect_url(self, digest: str) -> str | None:
        settings = self.stores.settings
        if not settings.enable_redirect:
            return None
        return await self.stores.blobs.presigned_url(digest, settings.redirect_expiry_secs)

    async def delete(self, name: str, digest: str) -> None:
        """Unlink the blob from the repository (the bytes stay until garbage collection)."""
        validate_name(name)
        parse_digest(digest)
        self.writes.check()
        # One delete of one key: any interleaving with a link's create is some order of the
        # two, so no lock (docs/architecture.md, "Locking points").
        if not await self.links.delete_layer(name, digest):
            raise BlobUnknown(detail={"digest": digest})

    async def mount(self, name: str, from_name: str, digest: str) -> int | None:
        """Link a blob of ``from_name`` into ``name``; its size, or None if it cannot be."""
        validate_name(name)
        validate_name(from_name)
        parse_digest(digest)
        self.writes.check()
        # A new reference to a blob that may be old and unreferenced: marked for a
        # collection running meanwhile, checked after any deletion in progress, then linked.
        async with self.references.referencing([digest]):
            await self.references.mark_recent(digest)  # until its manifest arrives
            if not await self.links.has_layer(from_name, digest):
                return None
            size = await self.stores.blobs.stat(digest)
            if size is None:
                return None
            await self.links.put_layer(name, digest)
        return size
