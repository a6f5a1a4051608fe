"""Blob store ``s3``: committed blobs at ``layout.blob_data_key``, uploads as multipart.

An upload (see :mod:`angos_s3.state` for the objects it keeps in the bucket):

* ``upload_append`` (:mod:`angos_s3.append`) spools incoming bytes to a local temporary
  file and sends every full ``multipart_part_size`` part to S3 as soon as it is complete,
  in the background while the next one spools; what is left (less than a part) is stored
  as the session's tail object. Memory per upload: two small buffers.
* ``upload_read`` (core re-hashes when the PUT lands where the PATCHes did not) needs the
  bytes as one object: it *seals* the session, completing the multipart upload with the tail
  as its last part (copied server-side) into ``data``.
* ``upload_commit`` makes the bytes visible at the blob's key with a server-side copy, an
  atomic operation in S3: ``CopyObject`` up to ``multipart_copy_threshold``, above it a
  multipart copy in ``multipart_copy_chunk_size`` pieces, ``multipart_copy_jobs`` at a
  time. A blob below one part never had a multipart upload: its tail object is the copy's
  source. Then the session's objects are deleted.
* ``upload_abort`` aborts the multipart upload and deletes the session's objects.

A writer that has the whole blob and its digest (``angos migrate``) skips all that:
``put_blob`` (:mod:`angos_s3.put`) is one verified ``PutObject``, or one multipart upload
at the blob's key for a blob above a part.

The session's state and its multipart calls live in :mod:`angos_s3.sessions`, which both
this store and the appender use: blobs -> append -> sessions, never back.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterable, AsyncIterator
from datetime import UTC, datetime
from typing import Any

from angos_core.errors import BlobNotFound, UploadNotFound, UploadOffsetMismatch
from angos_core.layout import (
    REPOSITORIES,
    STARTED_AT,
    UPLOADS_DIR,
    blob_data_key,
    blobs_prefix,
    digest_from_blob_key,
    is_reserved,
    started_at_content,
    upload_key,
    upload_prefix,
    uploads_prefix,
)
from angos_core.protocols import UploadRef
from angos_s3 import put
from angos_s3.append import Appender
from angos_s3.client import BACKEND, Missing, S3Backend
from angos_s3.config import S3_MAX_PART_SIZE, S3Config
from angos_s3.sessions import UploadSessions
from angos_s3.state import UploadState, data_key, state_key

#: What S3 answers a presigned GET of a blob with, as the registry itself would.
BLOB_TYPE = "application/octet-stream"


class S3BlobStore(S3Backend):
    def __init__(self, config: S3Config) -> None:
        super().__init__(config)
        self.sessions = UploadSessions(self.s3, int(config.multipart_part_size))

    # ------------------------------------------------------------------ committed blobs

    async def stat(self, digest: str) -> int | None:
        return await self.s3.size(blob_data_key(digest))

    async def modified_at(self, digest: str) -> datetime | None:
        try:
            head = await self.s3.call("head_object", blob_data_key(digest))
        except Missing:
            return None
        when: datetime = head["LastModified"]
        return when.astimezone(UTC)

    async def read(
        self, digest: str, offset: int = 0, length: int | None = None
    ) -> AsyncIterator[bytes]:
        try:
            async for chunk in self.s3.stream(blob_data_key(digest), offset, length):
                yield chunk
        except Missing:
            raise BlobNotFound(BACKEND, f"blob {digest} not found") from None

    async def delete(self, digest: str) -> bool:
        key = blob_data_key(digest)
        if await self.s3.size(key) is None:
            return False
        await self.s3.call("delete_object", key)
        return True

    async def list_digests(self) -> AsyncIterator[str]:
        async for page in self.s3.pages(blobs_prefix()):
            for obj in page.get("Contents", []):
                digest = digest_from_blob_key(self.s3.rel(obj["Key"]))
                if digest is not None:
                    yield digest

    async def presigned_url(self, digest: str, expires_secs: int) -> str | None:
        client = await self.s3.client()
        url: str = await client.generate_presigned_url(
            "get_object",
            Params={"Bucket": self.s3.bucket, "Key": self.s3.key(blob_data_key(digest))},
            ExpiresIn=expires_secs,
        )
        return url

    def local_path(self, digest: str) -> str | None:
        return None

    async def put_blob(self, digest: str, chunks: AsyncIterable[bytes], size: int) -> bool:
        return await put.put_blob(
            self.s3, int(self.config.multipart_part_size), digest, chunks, size
        )

    # ------------------------------------------------------------------ uploads

    async def upload_start(self, upload: UploadRef) -> None:
        # Two independent writes side by side: the start time (its object's LastModified is
        # what list_uploads reports, and it is never rewritten) and the state. If one fails
        # the client gets an error; whatever was written is a session the purger removes.
        await asyncio.gather(
            self.s3.call(
                "put_object",
                upload_key(upload, STARTED_AT),
                Body=started_at_content(datetime.now(UTC)),
            ),
            self.s3.call("put_object", state_key(upload), Body=UploadState().to_json()),
        )

    async def upload_size(self, upload: UploadRef) -> int:
        return (await self.sessions.load(upload)).size

    async def upload_append(
        self, upload: UploadRef, offset: int, chunks: AsyncIterable[bytes]
    ) -> int:
        state = await self.sessions.load(upload)
        if offset != state.size:
            raise UploadOffsetMismatch(BACKEND, state.size, offset)
        return await Appender(self.sessions, upload, state).run(chunks)

    async def upload_read(self, upload: UploadRef) -> AsyncIterator[bytes]:
        state = await self.sessions.load(upload)
        if state.mpu_id is not None and not state.sealed:
            await self.sessions.seal(upload, state)
        if state.sealed:
            source: str | None = data_key(upload)
        else:
            source = state.tail_key
        if source is None or state.size == 0:
            return
        try:
            async for chunk in self.s3.stream(source, 0, state.size):
                yield chunk
        except Missing:
            raise UploadNotFound(BACKEND, f"upload {upload.upload_id} lost its data") from None

    async def upload_commit(self, upload: UploadRef, digest: str) -> None:
        state = await self.sessions.load(upload)
        target = blob_data_key(digest)
        if await self.s3.size(target) is None:
            if state.mpu_id is not None and not state.sealed:
                await self.sessions.seal(upload, state)
            source = data_key(upload) if state.sealed else state.tail_key
            if source is None:
                await self.s3.call("put_object", target, Body=b"", ContentType=BLOB_TYPE)
            else:
                await self._copy(source, target, state.size)
        await self._discard(upload, state)

    async def _copy(self, source: str, target: str, size: int) -> None:
        """Server-side copy; the target appears whole or not at all."""
        threshold = min(int(self.config.multipart_copy_threshold), S3_MAX_PART_SIZE)
        if size <= threshold:
            await self.s3.call(
                "copy_object",
                target,
                CopySource=self.sessions.source(source),
                MetadataDirective="REPLACE",
                ContentType=BLOB_TYPE,
            )
            return
        resp = await self.s3.call("create_multipart_upload", target, ContentType=BLOB_TYPE)
        mpu_id = resp["UploadId"]
        chunk = int(self.config.multipart_copy_chunk_size)
        jobs = asyncio.Semaphore(self.config.multipart_copy_jobs)

        async def copy_part(number: int, first: int) -> dict[str, Any]:
            last = min(first + chunk, size) - 1
            async with jobs:
                r = await self.s3.call(
                    "upload_part_copy",
                    target,
                    UploadId=mpu_id,
                    PartNumber=number,
                    CopySource=self.sessions.source(source),
                    CopySourceRange=f"bytes={first}-{last}",
                )
            return {"ETag": r["CopyPartResult"]["ETag"], "PartNumber": number}

        try:
            parts = await asyncio.gather(
                *(copy_part(i + 1, first) for i, first in enumerate(range(0, size, chunk)))
            )
            await self.s3.call(
                "complete_multipart_upload",
                target,
                UploadId=mpu_id,
                MultipartUpload={"Parts": list(parts)},
            )
        except BaseException:
            with contextlib.suppress(Exception):
                await self.s3.call("abort_multipart_upload", target, UploadId=mpu_id)
            raise

    async def _discard(self, upload: UploadRef, state: UploadState | None) -> None:
        if state is not None and state.mpu_id is not None and not state.sealed:
            with contextlib.suppress(Missing):
                await self.s3.call(
                    "abort_multipart_upload", data_key(upload), UploadId=state.mpu_id
                )
        await self.s3.delete_prefix(upload_prefix(upload))

    async def upload_abort(self, upload: UploadRef) -> None:
        try:
            state: UploadState | None = await self.sessions.load(upload)
        except UploadNotFound:
            state = None
        await self._discard(upload, state)

    async def list_uploads(self) -> AsyncIterator[tuple[UploadRef, datetime]]:
        # A walk of the repository "directories" with delimited listings (one LIST request
        # per directory of a name, per 1000 children), then one undelimited listing of each
        # repository's _uploads/: its objects carry the times, so no GET per session.
        pending = [""]
        while pending:
            name = pending.pop()
            prefix = f"{REPOSITORIES}{name}/" if name else REPOSITORIES
            has_uploads = False
            async for page in self.s3.pages(prefix, delimiter="/"):
                for entry in page.get("CommonPrefixes", []):
                    child = self.s3.rel(entry["Prefix"])[len(prefix) : -1]
                    if child == UPLOADS_DIR:
                        has_uploads = True
                    elif child and "/" not in child and not is_reserved(child):
                        pending.append(f"{name}/{child}" if name else child)
            if name and has_uploads:
                async for found in self._sessions(name):
                    yield found

    async def _sessions(self, name: str) -> AsyncIterator[tuple[UploadRef, datetime]]:
        """The sessions under one repository's _uploads/; a session's objects list together."""
        prefix = uploads_prefix(name)
        current: str | None = None
        started: datetime | None = None
        oldest: datetime | None = None
        async for page in self.s3.pages(prefix):
            for obj in page.get("Contents", []):
                upload_id, sep, part = self.s3.rel(obj["Key"])[len(prefix) :].partition("/")
                if not sep:
                    continue  # an object beside the sessions, not in one
                if upload_id != current:
                    if current is not None and oldest is not None:
                        yield UploadRef(name, current), started or oldest
                    current, started, oldest = upload_id, None, None
                modified: datetime = obj["LastModified"].astimezone(UTC)
                oldest = modified if oldest is None else min(oldest, modified)
                if part == STARTED_AT:
                    started = modified
        if current is not None and oldest is not None:
            yield UploadRef(name, current), started or oldest
