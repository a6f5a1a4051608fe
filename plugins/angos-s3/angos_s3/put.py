"""``put_blob`` on S3 (:class:`angos_core.protocols.BlobPut`): a whole blob, verified.

* Up to ``multipart_part_size``: the stream is spooled (a 1 MiB buffer, then a local
  file), hashed while it spools, and sent as **one** ``PutObject`` with ``If-None-Match: *``
  (an existing blob is left alone), ``Content-MD5``, and for a sha256 digest
  ``x-amz-checksum-sha256`` set to the digest itself: S3 refuses the request (``BadDigest``)
  unless the bytes it received hash to the digest, so the check is end to end. The local
  hash is checked first, so a stream that does not match never reaches the bucket, and a
  sha512 digest (S3 has no sha512 checksum) is verified there alone. moto stores the
  header without checking it, so the tests pin the local check; AWS S3 checks both.
* Above it: a multipart upload at the blob's key, one spooled part at a time, each part
  with its ``Content-MD5``, the whole stream hashed locally as it goes. S3's multipart
  checksums are per part (a SHA-256 of the parts' SHA-256s), never the object's, so the
  digest is checked locally, and the upload is completed, which is when the object
  appears, only if it matches; otherwise, or on any failure or cancellation, it is
  aborted. A multipart upload is invisible until completed.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
from collections.abc import AsyncIterable
from typing import Any

from angos_core.errors import BlobDigestMismatch
from angos_core.layout import blob_data_key
from angos_s3.client import BACKEND, PreconditionFailed, S3Client
from angos_s3.spool import Spool

#: Chunks from this size are hashed in a worker thread (hashlib releases the GIL).
THREAD_HASH_MIN = 256 * 1024
CONTENT_TYPE = "application/octet-stream"


class _Checked:
    """The running hash and size of a stream, compared with what the caller promised."""

    def __init__(self, digest: str, size: int) -> None:
        self.digest, self.size = digest, size
        self.algorithm, _, self.hex = digest.partition(":")
        self.hasher = hashlib.new(self.algorithm)
        self.seen = 0

    async def update(self, chunk: bytes) -> None:
        self.seen += len(chunk)
        if self.seen > self.size:
            raise self.mismatch()
        if len(chunk) >= THREAD_HASH_MIN:
            await asyncio.to_thread(self.hasher.update, chunk)
        else:
            self.hasher.update(chunk)

    def check(self) -> None:
        if self.seen != self.size or self.hasher.hexdigest() != self.hex:
            raise self.mismatch()

    def mismatch(self) -> BlobDigestMismatch:
        return BlobDigestMismatch(
            BACKEND, f"the stream is not {self.size} bytes hashing to {self.digest}: not stored"
        )

    def s3_checksum(self) -> dict[str, str]:
        if self.algorithm != "sha256":
            return {}
        return {"ChecksumSHA256": base64.b64encode(bytes.fromhex(self.hex)).decode()}


async def put_blob(
    s3: S3Client, part_size: int, digest: str, chunks: AsyncIterable[bytes], size: int
) -> bool:
    checked = _Checked(digest, size)
    key = blob_data_key(digest)
    if size <= part_size:
        return await _single(s3, key, checked, chunks)
    if await s3.size(key) is not None:
        return False
    return await _multipart(s3, key, part_size, checked, chunks)


async def _single(s3: S3Client, key: str, checked: _Checked, chunks: AsyncIterable[bytes]) -> bool:
    spool = Spool()
    try:
        async for chunk in chunks:
            await checked.update(chunk)
            await spool.write(chunk)
        checked.check()
        body, md5 = await spool.body()
        try:
            await s3.call(
                "put_object",
                key,
                Body=body,
                ContentLength=spool.size,
                ContentMD5=md5,
                ContentType=CONTENT_TYPE,
                IfNoneMatch="*",
                **checked.s3_checksum(),
            )
        except PreconditionFailed:
            return False  # the blob exists (or our own retried attempt placed it)
        return True
    finally:
        spool.close()


async def _multipart(
    s3: S3Client, key: str, part_size: int, checked: _Checked, chunks: AsyncIterable[bytes]
) -> bool:
    resp = await s3.call("create_multipart_upload", key, ContentType=CONTENT_TYPE)
    mpu_id: str = resp["UploadId"]
    parts: list[dict[str, Any]] = []
    spool = Spool()
    completed = False

    async def ship() -> None:
        body, md5 = await spool.body()
        number = len(parts) + 1
        r = await s3.call(
            "upload_part",
            key,
            UploadId=mpu_id,
            PartNumber=number,
            Body=body,
            ContentLength=spool.size,
            ContentMD5=md5,
        )
        parts.append({"ETag": r["ETag"], "PartNumber": number})
        await spool.reset()

    try:
        async for chunk in chunks:
            await checked.update(chunk)
            view = memoryview(chunk)
            while view:
                room = part_size - spool.size
                await spool.write(view[:room])
                view = view[room:]
                if spool.size >= part_size:
                    await ship()
        checked.check()
        if spool.size or not parts:
            await ship()
        await s3.call(
            "complete_multipart_upload", key, UploadId=mpu_id, MultipartUpload={"Parts": parts}
        )
        completed = True
        return True
    finally:
        spool.close()
        if not completed:
            with contextlib.suppress(Exception):
                await asyncio.shield(s3.call("abort_multipart_upload", key, UploadId=mpu_id))
