"""One blob from one blob store to another, verified on the way: the step ``angos
migrate`` and a live migration's read-through share."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import AsyncIterator, Callable

from angos_core.errors import BlobDigestMismatch
from angos_core.oci.names import new_upload_id
from angos_core.protocols import BlobStore, UploadRef
from angos_core.registry.hashing import HashingStream
from angos_core.registry.wrappers import blob_put_of

#: The repository whose upload sessions carry the blobs being copied. A valid name, so a
#: session a killed run leaves is one the destination's upload purger can see and remove.
SESSION_REPOSITORY = "angos-migrate"

Tap = Callable[[AsyncIterator[bytes]], AsyncIterator[bytes]]


def _untapped(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    return chunks


async def transfer_blob(
    src: BlobStore, dst: BlobStore, digest: str, size: int, tap: Tap = _untapped
) -> str | None:
    """Copy blob ``digest`` (``size`` bytes) from ``src`` to ``dst``; None when it is
    there, else why not. The destination verifies it in one ``put_blob`` when it has a
    direct put (one request on S3), else it goes through an upload session, hashed on the
    way and committed only if it matches. ``tap`` sees the bytes (progress)."""
    return await store_blob(dst, digest, size, lambda: tap(src.read(digest)))


async def store_blob(
    dst: BlobStore, digest: str, size: int, stream: Callable[[], AsyncIterator[bytes]]
) -> str | None:
    """Blob ``digest`` of ``size`` bytes, the bytes ``stream()`` yields, into ``dst``,
    verified as :func:`transfer_blob` says; None when it is there, else why not."""
    put = blob_put_of(dst)
    if put is not None:
        try:
            await put.put_blob(digest, stream(), size)
        except BlobDigestMismatch:
            return f"{digest}: the source's bytes do not hash to it ({size} bytes): not copied"
        return None
    algorithm = digest.partition(":")[0]
    ref = UploadRef(SESSION_REPOSITORY, new_upload_id())
    committed = False
    try:
        await dst.upload_start(ref)
        hashing = HashingStream(stream(), hashlib.new(algorithm))
        written = await dst.upload_append(ref, 0, hashing)
        hasher = hashing.hasher
        computed = f"{algorithm}:{hasher.hexdigest()}" if hasher is not None else ""
        if computed != digest or written != size:
            return f"{digest}: the source's bytes hash to {computed} ({written} bytes): not copied"
        await dst.upload_commit(ref, digest)
        committed = True
    finally:
        if not committed:
            with contextlib.suppress(Exception):
                await asyncio.shield(dst.upload_abort(ref))
    return None
