"""Upload sessions: start, append (chunked or streamed), status, complete, cancel.

The bytes go straight to the blob store's session while being hashed. The running hash is
kept in this process per session; when it does not cover the whole upload at completion
(a chunk landed on another replica, or the process restarted) the session is re-read and
re-hashed. The digest is always verified before the blob is committed.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections import OrderedDict
from collections.abc import AsyncIterable
from dataclasses import dataclass

from angos_core.errors import (
    BlobUploadUnknown,
    DigestInvalid,
    RangeInvalid,
    UploadNotFound,
    UploadOffsetMismatch,
)
from angos_core.oci.digest import parse_digest
from angos_core.oci.names import new_upload_id, validate_name, validate_upload_id
from angos_core.protocols import UploadRef
from angos_core.registry.hashing import HashingStream, hash_stream
from angos_core.registry.links import Links
from angos_core.registry.references import References
from angos_core.registry.stores import Stores
from angos_core.registry.upload_limits import UploadSessionLimits
from angos_core.registry.write_gate import WriteGate

#: The algorithm hashed while streaming; another one is computed at completion if asked for.
STREAM_ALGORITHM = "sha256"
#: Sessions whose running hash this process remembers (abandoned ones fall off the end).
MAX_TRACKED_SESSIONS = 4096


class ChunkOutOfOrder(RangeInvalid):
    """416: the chunk does not start at the current end of the session."""

    def __init__(self, upload: UploadRef, size: int) -> None:
        super().__init__(detail={"uuid": upload.upload_id, "size": size})
        self.upload = upload
        self.size = size


@dataclass(slots=True)
class _Progress:
    size: int
    hasher: hashlib._Hash


class UploadService:
    def __init__(
        self,
        stores: Stores,
        links: Links,
        references: References,
        limits: UploadSessionLimits | None = None,
        writes: WriteGate | None = None,
    ) -> None:
        self.stores = stores
        self.links = links
        self.references = references
        self.limits = limits
        self.writes = writes if writes is not None else WriteGate()
        self._progress: OrderedDict[tuple[str, str], _Progress] = OrderedDict()

    # ------------------------------------------------------------------ bookkeeping

    def _remember(self, upload: UploadRef, progress: _Progress) -> None:
        key = (upload.name, upload.upload_id)
        self._progress[key] = progress
        self._progress.move_to_end(key)
        while len(self._progress) > MAX_TRACKED_SESSIONS:
            self._progress.popitem(last=False)

    def _forget(self, upload: UploadRef) -> _Progress | None:
        return self._progress.pop((upload.name, upload.upload_id), None)

    def _ended(self, upload: UploadRef) -> None:
        """The session is gone (completed, aborted, not found): it no longer counts."""
        self._forget(upload)
        if self.limits is not None:
            self.limits.release(upload.upload_id)

    @staticmethod
    def ref(name: str, upload_id: str) -> UploadRef:
        validate_name(name)
        validate_upload_id(upload_id)
        return UploadRef(name, upload_id)

    # ------------------------------------------------------------------ operations

    async def start(self, name: str, client: str | None = None) -> UploadRef:
        """A new session; ``TooManyRequests`` if ``name`` or ``client`` (the client's
        address) already holds the most sessions ``[global]`` allows."""
        validate_name(name)
        self.writes.check()
        upload = UploadRef(name, new_upload_id())
        if self.limits is not None:
            # Counted before the store call, so concurrent starts cannot overshoot.
            self.limits.admit(upload.upload_id, name, client)
        try:
            await self.stores.blobs.upload_start(upload)
        except BaseException:
            self._ended(upload)
            raise
        self._remember(upload, _Progress(0, hashlib.new(STREAM_ALGORITHM)))
        return upload

    async def size(self, upload: UploadRef) -> int:
        try:
            return await self.stores.blobs.upload_size(upload)
        except UploadNotFound:
            self._ended(upload)
            raise BlobUploadUnknown(detail={"uuid": upload.upload_id}) from None

    async def append(
        self, upload: UploadRef, chunks: AsyncIterable[bytes], start: int | None = None
    ) -> int:
        """Append a stream; ``start`` is the client's Content-Range start, if it sent one.

        Returns the session's new size. ``ChunkOutOfOrder`` if ``start`` is not the end.
        """
        self.writes.check()
        progress = self._progress.get((upload.name, upload.upload_id))
        if start is not None:
            offset = start
        elif progress is not None:
            offset = progress.size
        else:
            offset = await self.size(upload)
        for attempt in (1, 2):
            hasher = progress.hasher.copy() if progress and progress.size == offset else None
            stream = HashingStream(chunks, hasher)
            try:
                new_size = await self.stores.blobs.upload_append(upload, offset, stream)
            except UploadOffsetMismatch as exc:
                self._forget(upload)
                progress = None
                if start is None and not stream.started and attempt == 1:
                    # Our idea of the end was stale (another replica appended): the body is
                    # untouched, so append it at the real end.
                    offset = exc.expected
                    continue
                raise ChunkOutOfOrder(upload, exc.expected) from None
            except UploadNotFound:
                self._ended(upload)
                raise BlobUploadUnknown(detail={"uuid": upload.upload_id}) from None
            except BaseException:
                # Part of the stream may have been stored: the running hash no longer says
                # what the session holds.
                self._forget(upload)
                raise
            if stream.hasher is not None and new_size == offset + stream.count:
                self._remember(upload, _Progress(new_size, stream.hasher))
            else:
                self._forget(upload)
            return new_size
        raise AssertionError("unreachable")  # pragma: no cover

    async def complete(self, upload: UploadRef, digest: str) -> int:
        """Verify the session's bytes against ``digest``, commit and link the blob.

        On a mismatch the session is discarded and ``DigestInvalid`` raised: nothing stored.
        Returns the blob's size.
        """
        parsed = parse_digest(digest)
        self.writes.check()
        size = await self.size(upload)
        progress = self._forget(upload)
        if progress is not None and progress.size == size and parsed.algorithm == STREAM_ALGORITHM:
            computed = progress.hasher.hexdigest()
        else:
            try:
                computed, hashed = await hash_stream(
                    self.stores.blobs.upload_read(upload), parsed.algorithm
                )
            except UploadNotFound:
                self._ended(upload)
                raise BlobUploadUnknown(detail={"uuid": upload.upload_id}) from None
            size = hashed
        if computed != parsed.hex:
            await self.stores.blobs.upload_abort(upload)
            self._ended(upload)
            raise DigestInvalid(
                detail={"digest": digest, "computed": f"{parsed.algorithm}:{computed}"}
            )
        # Committing makes the verified bytes a content-addressed blob, visible to no
        # repository until linked; it is idempotent. Commit and link happen under the
        # blob's lock, marked: a collection running meanwhile deletes neither the bytes
        # (they may land on an old unreferenced blob of the same digest) nor the link
        # (docs/architecture.md, "Online garbage collection").
        # Again: the body of a monolithic PUT may have streamed in while the switch flipped.
        self.writes.check()
        async with self.references.referencing([digest]):
            # Until its manifest arrives, the minimum age keeps it: its data may be older (a
            # commit onto an equal old blob leaves that blob's bytes and time in place).
            await self.references.mark_recent(digest)
            try:
                await self.stores.blobs.upload_commit(upload, digest)
            except UploadNotFound:
                self._ended(upload)
                raise BlobUploadUnknown(detail={"uuid": upload.upload_id}) from None
            self._ended(upload)
            await self.links.put_layer(upload.name, digest)
        return size

    async def cancel(self, upload: UploadRef) -> None:
        self.writes.check()
        await self.size(upload)  # BlobUploadUnknown for a session that does not exist
        await self.stores.blobs.upload_abort(upload)
        self._ended(upload)

    async def discard(self, upload: UploadRef) -> None:
        """Abort a session after a failure; never raises (the failure is what matters)."""
        self._ended(upload)
        with contextlib.suppress(Exception):
            await self.stores.blobs.upload_abort(upload)
