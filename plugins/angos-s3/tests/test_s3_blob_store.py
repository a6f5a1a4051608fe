"""The s3 blob store against moto's server over HTTP: uploads, multipart, copies, objects.

The shared contract suite (angos_core.testing) pins the protocol; these pin what is
particular to S3: where the bytes are, when parts go out, what a session leaves behind.
"""

from __future__ import annotations

import hashlib
import itertools
import os
from collections.abc import AsyncIterator
from typing import Any

import pytest
from angos_s3 import S3BlobStore, S3Config
from angos_s3.sessions import UploadSessions

from angos_core.config import parse_table
from angos_core.errors import BlobNotFound, UploadNotFound, UploadOffsetMismatch
from angos_core.layout import blob_data_key, upload_prefix
from angos_core.protocols import UploadRef
from angos_core.testing.moto_server import S3Bucket, s3_client

MIB = 1024 * 1024
PART = 5 * MIB


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


async def _chunks(data: bytes, size: int = 256 * 1024) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


async def _collect(it: AsyncIterator[bytes]) -> bytes:
    return b"".join([c async for c in it])


def _keys(bucket: S3Bucket) -> list[str]:
    resp = s3_client(bucket.endpoint).list_objects_v2(Bucket=bucket.name)
    return [o["Key"] for o in resp.get("Contents", [])]


def _open_mpus(bucket: S3Bucket) -> list[dict[str, Any]]:
    resp = s3_client(bucket.endpoint).list_multipart_uploads(Bucket=bucket.name)
    return list(resp.get("Uploads", []))


def _config(bucket: S3Bucket, **extra: object) -> S3Config:
    return parse_table(S3Config, {**bucket.settings, "multipart_part_size": PART, **extra}, "s3")


@pytest.fixture
async def store(s3_bucket: S3Bucket) -> AsyncIterator[S3BlobStore]:
    s = S3BlobStore(_config(s3_bucket, key_prefix="reg"))
    await s.open()
    yield s
    await s.aclose()


def _ref() -> UploadRef:
    import uuid

    return UploadRef("library/test", str(uuid.uuid4()))


async def test_small_blob_is_one_object_and_no_multipart(
    store: S3BlobStore, s3_bucket: S3Bucket
) -> None:
    data = os.urandom(100_000)
    ref = _ref()
    await store.upload_start(ref)
    assert await store.upload_append(ref, 0, _chunks(data)) == len(data)
    assert _open_mpus(s3_bucket) == []
    await store.upload_commit(ref, _digest(data))
    assert await store.stat(_digest(data)) == len(data)
    assert await _collect(store.read(_digest(data))) == data
    # Under key_prefix, at the layout's key; the session's objects are gone.
    assert _keys(s3_bucket) == ["reg/" + blob_data_key(_digest(data))]


async def test_large_blob_goes_out_in_parts_while_it_arrives(
    store: S3BlobStore, s3_bucket: S3Bucket
) -> None:
    data = os.urandom(2 * PART + 12345)
    ref = _ref()
    await store.upload_start(ref)
    # Chunked over three PATCHes that do not line up with parts.
    cuts = [0, 3 * MIB, 3 * MIB + 1, len(data)]
    for a, b in itertools.pairwise(cuts):
        assert await store.upload_append(ref, a, _chunks(data[a:b])) == b
    (mpu,) = _open_mpus(s3_bucket)
    parts = s3_client(s3_bucket.endpoint).list_parts(
        Bucket=s3_bucket.name, Key=mpu["Key"], UploadId=mpu["UploadId"]
    )["Parts"]
    assert [p["Size"] for p in parts] == [PART, PART]
    assert await store.upload_size(ref) == len(data)
    assert await _collect(store.upload_read(ref)) == data
    await store.upload_commit(ref, _digest(data))
    assert await _collect(store.read(_digest(data), 5, 10)) == data[5:15]
    assert await _collect(store.read(_digest(data), PART - 3)) == data[PART - 3 :]
    assert _open_mpus(s3_bucket) == []
    assert _keys(s3_bucket) == ["reg/" + blob_data_key(_digest(data))]


async def test_a_fresh_store_continues_the_upload_another_one_began(
    store: S3BlobStore, s3_bucket: S3Bucket
) -> None:
    data = os.urandom(PART + 777)
    ref = _ref()
    await store.upload_start(ref)
    await store.upload_append(ref, 0, _chunks(data[:1000]))
    other = S3BlobStore(_config(s3_bucket, key_prefix="reg"))
    try:
        assert await other.upload_size(ref) == 1000
        await other.upload_append(ref, 1000, _chunks(data[1000:]))
        # No in-process state: reading back re-assembles from the bucket.
        assert hashlib.sha256(await _collect(other.upload_read(ref))).hexdigest() == (
            hashlib.sha256(data).hexdigest()
        )
    finally:
        await other.aclose()
    await store.upload_commit(ref, _digest(data))
    assert await _collect(store.read(_digest(data))) == data


async def test_append_after_read_reopens_the_sealed_upload(store: S3BlobStore) -> None:
    data = os.urandom(2 * PART + 10)
    ref = _ref()
    await store.upload_start(ref)
    await store.upload_append(ref, 0, _chunks(data[: PART + 5]))
    assert await _collect(store.upload_read(ref)) == data[: PART + 5]
    await store.upload_append(ref, PART + 5, _chunks(data[PART + 5 :]))
    assert await _collect(store.upload_read(ref)) == data
    await store.upload_commit(ref, _digest(data))
    assert await _collect(store.read(_digest(data))) == data


async def test_wrong_offset_unknown_upload_and_abort(
    store: S3BlobStore, s3_bucket: S3Bucket
) -> None:
    ref = _ref()
    with pytest.raises(UploadNotFound):
        await store.upload_size(ref)
    await store.upload_start(ref)
    await store.upload_append(ref, 0, _chunks(os.urandom(PART + 1)))
    with pytest.raises(UploadOffsetMismatch):
        await store.upload_append(ref, 3, _chunks(b"x"))
    assert await store.upload_size(ref) == PART + 1
    assert len(_open_mpus(s3_bucket)) == 1
    await store.upload_abort(ref)
    await store.upload_abort(ref)  # idempotent
    assert _open_mpus(s3_bucket) == []
    assert not [k for k in _keys(s3_bucket) if k.startswith("reg/" + upload_prefix(ref))]
    with pytest.raises(UploadNotFound):
        await store.upload_size(ref)


async def test_a_failing_stream_keeps_what_arrived(store: S3BlobStore) -> None:
    data = os.urandom(PART + 4000)
    ref = _ref()
    await store.upload_start(ref)

    async def broken() -> AsyncIterator[bytes]:
        yield data[: PART + 1000]
        raise ConnectionResetError("client went away")

    with pytest.raises(ConnectionResetError):
        await store.upload_append(ref, 0, broken())
    assert await store.upload_size(ref) == PART + 1000
    await store.upload_append(ref, PART + 1000, _chunks(data[PART + 1000 :]))
    await store.upload_commit(ref, _digest(data))
    assert await _collect(store.read(_digest(data))) == data


async def test_above_the_copy_threshold_the_commit_is_a_multipart_copy(
    s3_bucket: S3Bucket,
) -> None:
    cfg = _config(
        s3_bucket,
        multipart_copy_threshold=PART,
        multipart_copy_chunk_size=PART,
        multipart_copy_jobs=2,
    )
    store = S3BlobStore(cfg)
    try:
        data = os.urandom(2 * PART + 99)
        ref = _ref()
        await store.upload_start(ref)
        await store.upload_append(ref, 0, _chunks(data))
        await store.upload_commit(ref, _digest(data))
        head = s3_client(s3_bucket.endpoint).head_object(
            Bucket=s3_bucket.name, Key=blob_data_key(_digest(data))
        )
        # A multipart object's ETag ends in -<parts>: three 5 MiB copy chunks.
        assert head["ETag"].strip('"').endswith("-3")
        assert await _collect(store.read(_digest(data))) == data
    finally:
        await store.aclose()


async def test_empty_blob_and_existing_blob(store: S3BlobStore) -> None:
    ref = _ref()
    await store.upload_start(ref)
    await store.upload_commit(ref, _digest(b""))
    assert await store.stat(_digest(b"")) == 0
    assert await _collect(store.read(_digest(b""))) == b""
    ref2 = _ref()
    await store.upload_start(ref2)
    await store.upload_append(ref2, 0, _chunks(b""))
    await store.upload_commit(ref2, _digest(b""))  # already there: session just discarded
    with pytest.raises(UploadNotFound):
        await store.upload_size(ref2)


async def test_delete_list_missing_and_presigned(store: S3BlobStore) -> None:
    data = b"hello"
    ref = _ref()
    await store.upload_start(ref)
    await store.upload_append(ref, 0, _chunks(data))
    await store.upload_commit(ref, _digest(data))
    assert [d async for d in store.list_digests()] == [_digest(data)]
    url = await store.presigned_url(_digest(data), 60)
    assert url is not None
    import aiohttp

    async with aiohttp.ClientSession() as http, http.get(url) as resp:
        assert resp.status == 200
        assert await resp.read() == data
    assert store.local_path(_digest(data)) is None
    assert await store.delete(_digest(data)) is True
    assert await store.delete(_digest(data)) is False
    assert await store.stat(_digest(data)) is None
    with pytest.raises(BlobNotFound):
        await _collect(store.read(_digest(data)))


async def test_an_empty_append_writes_nothing(store: S3BlobStore, s3_bucket: S3Bucket) -> None:
    """The final PUT of a chunked push appends an empty body: no tail goes back and forth."""
    ref = _ref()
    await store.upload_start(ref)
    await store.upload_append(ref, 0, _chunks(b"x" * 1000))
    state = "reg/" + upload_prefix(ref) + "state"
    client = s3_client(s3_bucket.endpoint)
    before = client.head_object(Bucket=s3_bucket.name, Key=state)["ETag"]
    assert await store.upload_append(ref, 1000, _chunks(b"")) == 1000
    assert client.head_object(Bucket=s3_bucket.name, Key=state)["ETag"] == before
    with pytest.raises(UploadOffsetMismatch):
        await store.upload_append(ref, 999, _chunks(b""))


class _FailingPart(UploadSessions):
    """Fails to send part number ``fail_at`` (once)."""

    fail_at = 0

    async def upload_part(self, upload: UploadRef, mpu_id: str, number: int, spool: Any) -> Any:
        if number == self.fail_at:
            self.fail_at = 0
            raise ConnectionError("S3 went away")
        return await super().upload_part(upload, mpu_id, number, spool)


@pytest.mark.parametrize("fail_at", [1, 2])
async def test_a_part_that_cannot_be_sent_leaves_a_true_size(
    s3_bucket: S3Bucket, fail_at: int
) -> None:
    store = S3BlobStore(_config(s3_bucket))
    sessions = store.sessions = _FailingPart(store.s3, store.sessions.part_size)
    try:
        data = os.urandom(3 * PART + 500)
        ref = _ref()
        await store.upload_start(ref)
        await store.upload_append(ref, 0, _chunks(data[:1000]))  # a tail first
        sessions.fail_at = fail_at
        with pytest.raises(ConnectionError):
            await store.upload_append(ref, 1000, _chunks(data[1000:]))
        # Part 1 failing: nothing recorded, the old tail stands. Part 2 failing: part 1
        # (which took in the old tail) is recorded, nothing after it.
        size = await store.upload_size(ref)
        assert size == (1000 if fail_at == 1 else PART)
        assert await _collect(store.upload_read(ref)) == data[:size]
        await store.upload_append(ref, size, _chunks(data[size:]))
        await store.upload_commit(ref, _digest(data))
        assert await _collect(store.read(_digest(data))) == data
    finally:
        await store.aclose()
