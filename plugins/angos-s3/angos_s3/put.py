"""``put_blob`` on S3 (:class:`angos_core.protocols.BlobPut`): a whole blob, verified.

* Up to ``multipart_part_size``: the stream is held (up to :data:`IN_MEMORY_MAX`, in
  memory; above it, spooled through a 1 MiB buffer to a local file), hashed while it
  arrives, and sent as **one** ``PutObject`` with ``If-None-Match: *`` (an existing blob
  is left alone) and, for a sha256 digest, ``x-amz-checksum-sha256`` set to the digest
  itself: S3 refuses the request (``BadDigest``) unless the bytes it received hash to the
  digest, so the check is end to end (a ``Content-MD5`` would only check the same bytes
  again, less strongly, at the cost of one more hash of every byte on each side). A digest
  of another algorithm (S3 has no sha512 checksum) carries a ``Content-MD5`` instead. The
  local hash is checked first, so a stream that does not match never reaches the bucket,
  and a sha512 digest is verified there alone. moto stores the header without checking
  it, so the tests pin the local check; AWS S3 checks it.
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
#: Blobs up to this size are held in memory for their one ``PutObject`` (so ``--jobs`` of
#: them at most: 16 x 4 MiB); larger ones spool to a local file.
IN_MEMORY_MAX = 4 * 1024 * 1024


class _Checked:
    """The running hash and size of a stream, compared with what the caller promised."""

    def __init__(self, digest: str, size: int) -> None:
        self.digest, self.size = digest, size
        self.algorithm, _, self.hex = digest.partition(":")
        self.hasher = hashlib.new(self.algorithm)
        self.seen = 0

    async def update(self, chunk: bytes, also: Any = None) -> None:
        """Count and hash ``chunk`` (and feed it to the hasher ``also``, if given)."""
        self.seen += len(chunk)
        if self.seen > self.size:
            raise self.mismatch()
        if len(chunk) >= THREAD_HASH_MIN:
            await asyncio.to_thread(self._hash, chunk, also)
        else:
            self._hash(chunk, also)

    def _hash(self, chunk: bytes, also: Any) -> None:
        self.hasher.update(chunk)
        if also is not None:
            also.update(chunk)

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
    if checked.size <= IN_MEMORY_MAX:
        return await _small(s3, key, checked, chunks)
    spool = Spool()
    try:
        async for chunk in chunks:
            await checked.update(chunk)
            await spool.write(chunk)
        checked.check()
        body, md5 = await spool.body()
        return await _put_object(s3, key, checked, body, spool.size, md5)
    finally:
        spool.close()


async def _small(s3: S3Client, key: str, checked: _Checked, chunks: AsyncIterable[bytes]) -> bool:
    """A blob of at most :data:`IN_MEMORY_MAX` bytes: held in memory (no spool file, no
    copies through the disk), hashed in a worker thread as it arrives (with an MD5 when S3
    cannot check the digest itself)."""
    # Filled in place: the chunks are dropped as they arrive, so a blob costs its size once.
    body = bytearray(checked.size)
    # S3 checks x-amz-checksum-sha256 (the digest itself): an MD5 would check less, again.
    md5 = None if checked.s3_checksum() else hashlib.md5(usedforsecurity=False)
    async for chunk in chunks:
        start = checked.seen
        await checked.update(chunk, md5)  # raises before a chunk would overflow the size
        body[start : checked.seen] = chunk
    checked.check()
    digest = None if md5 is None else base64.b64encode(md5.digest()).decode()
    return await _put_object(s3, key, checked, body, checked.size, digest)


async def _put_object(
    s3: S3Client, key: str, checked: _Checked, body: Any, size: int, md5: str | None
) -> bool:
    integrity = checked.s3_checksum() or ({} if md5 is None else {"ContentMD5": md5})
    try:
        await s3.call(
            "put_object",
            key,
            Body=body,
            ContentLength=size,
            ContentType=CONTENT_TYPE,
            IfNoneMatch="*",
            **integrity,
        )
    except PreconditionFailed:
        return False  # the blob exists (or our own retried attempt placed it)
    return True


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
