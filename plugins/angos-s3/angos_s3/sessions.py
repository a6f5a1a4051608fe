"""The state of an S3 upload session and the multipart upload behind it.

Used by the blob store (start, read, commit, abort) and by :class:`angos_s3.append.Appender`
(one append); it depends on neither, so the dependency runs one way: blobs -> append ->
sessions.
"""

from __future__ import annotations

import contextlib

from angos_core.errors import UploadNotFound
from angos_core.protocols import UploadRef
from angos_s3.client import BACKEND, Missing, S3Client
from angos_s3.spool import Spool
from angos_s3.state import Part, UploadState, data_key, state_key, tail_key


class UploadSessions:
    def __init__(self, s3: S3Client, part_size: int) -> None:
        self.s3 = s3
        self.part_size = part_size

    async def load(self, upload: UploadRef) -> UploadState:
        try:
            resp = await self.s3.call("get_object", state_key(upload))
            async with resp["Body"] as body:
                raw = await body.read()
        except Missing:
            raise UploadNotFound(BACKEND, f"upload {upload.upload_id} not found") from None
        return UploadState.from_json(raw)

    async def save(self, upload: UploadRef, state: UploadState, old_tail: str | None) -> None:
        state.gen += 1
        await self.s3.call("put_object", state_key(upload), Body=state.to_json())
        if old_tail is not None and old_tail != state.tail_key:
            # Garbage only: nothing refers to it any more; the session's delete sweeps it too.
            with contextlib.suppress(Exception):
                await self.s3.call("delete_object", old_tail)

    async def prime(self, upload: UploadRef, state: UploadState, spool: Spool) -> None:
        """Put the bytes after the last full part (the tail) in ``spool``, to append to."""
        if state.sealed:
            await self._unseal(upload, state, spool)
        elif state.tail_key is not None:
            async for chunk in self.s3.stream(state.tail_key):
                await spool.write(chunk)

    async def create_multipart(self, upload: UploadRef, state: UploadState) -> None:
        resp = await self.s3.call("create_multipart_upload", data_key(upload))
        state.mpu_id = resp["UploadId"]
        # Recorded at once so an abort can find the multipart upload even if this request
        # dies before its end.
        await self.save(upload, state, None)

    async def upload_part(self, upload: UploadRef, mpu_id: str, number: int, spool: Spool) -> Part:
        body, md5 = await spool.body()
        resp = await self.s3.call(
            "upload_part",
            data_key(upload),
            UploadId=mpu_id,
            PartNumber=number,
            Body=body,
            ContentLength=spool.size,
            ContentMD5=md5,
        )
        return Part(resp["ETag"], spool.size)

    async def save_tail(
        self, upload: UploadRef, state: UploadState, spool: Spool | None, old_tail: str | None
    ) -> None:
        """Store ``spool`` as the new tail (None: no tail), then the state."""
        if spool is not None and spool.size:
            key = tail_key(upload, state.gen + 1)
            body, md5 = await spool.body()
            await self.s3.call(
                "put_object", key, Body=body, ContentLength=spool.size, ContentMD5=md5
            )
            state.tail_key, state.tail_size = key, spool.size
        else:
            state.tail_key, state.tail_size = None, 0
        state.size = state.parts_size + state.tail_size
        await self.save(upload, state, old_tail)

    async def seal(self, upload: UploadRef, state: UploadState) -> None:
        """Complete the multipart upload, the tail as its last part, into ``data``."""
        assert state.mpu_id is not None
        key = data_key(upload)
        parts = list(state.parts)
        try:
            if state.tail_key is not None:
                resp = await self.s3.call(
                    "upload_part_copy",
                    key,
                    UploadId=state.mpu_id,
                    PartNumber=len(parts) + 1,
                    CopySource=self.source(state.tail_key),
                )
                parts.append(Part(resp["CopyPartResult"]["ETag"], state.tail_size))
            await self.s3.call(
                "complete_multipart_upload",
                key,
                UploadId=state.mpu_id,
                MultipartUpload={
                    "Parts": [{"ETag": p.etag, "PartNumber": i + 1} for i, p in enumerate(parts)]
                },
            )
        except Missing:
            # A request that completed it died before recording so: the data says.
            if await self.s3.size(key) != state.size:
                raise
        old_tail = state.tail_key
        state.mpu_id, state.parts, state.tail_key, state.tail_size = None, [], None, 0
        state.sealed = True
        await self.save(upload, state, old_tail)

    async def _unseal(self, upload: UploadRef, state: UploadState, spool: Spool) -> None:
        """Reopen a sealed session for appending: full parts copied server-side into a new
        multipart upload, the rest into ``spool``. The state is saved by the caller."""
        key = data_key(upload)
        resp = await self.s3.call("create_multipart_upload", key)
        mpu_id = resp["UploadId"]
        full = state.size // self.part_size
        parts = []
        for i in range(full):
            first = i * self.part_size
            resp = await self.s3.call(
                "upload_part_copy",
                key,
                UploadId=mpu_id,
                PartNumber=i + 1,
                CopySource=self.source(key),
                CopySourceRange=f"bytes={first}-{first + self.part_size - 1}",
            )
            parts.append(Part(resp["CopyPartResult"]["ETag"], self.part_size))
        if state.size > full * self.part_size:
            async for chunk in self.s3.stream(key, full * self.part_size):
                await spool.write(chunk)
        state.sealed, state.mpu_id, state.parts = False, mpu_id, parts

    def source(self, key: str) -> dict[str, str]:
        return {"Bucket": self.s3.bucket, "Key": self.s3.key(key)}
