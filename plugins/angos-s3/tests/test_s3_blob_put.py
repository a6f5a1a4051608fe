"""A small blob's direct put costs one request (the contract itself: test_s3_contracts.py)."""

from __future__ import annotations

import os
from typing import Any

from angos_s3 import S3BlobStore, S3Config

from angos_core.config import parse_table
from angos_core.testing.blob_store import digest_of, stream
from angos_core.testing.moto_server import S3Bucket


def s3_config(bucket: S3Bucket, **extra: object) -> S3Config:
    return parse_table(S3Config, {**bucket.settings, **extra}, "blob_store.s3")


async def test_a_small_blob_is_one_put_object_with_its_sha256(s3_bucket: S3Bucket) -> None:
    store = S3BlobStore(s3_config(s3_bucket))
    await store.open()
    calls: list[tuple[str, dict[str, Any]]] = []
    real = store.s3.call

    async def counted(op: str, key: str | None, **params: Any) -> dict[str, Any]:
        calls.append((op, params))
        return await real(op, key, **params)

    store.s3.call = counted  # type: ignore[method-assign]
    try:
        data = os.urandom(100_000)
        assert await store.put_blob(digest_of(data), stream(data), len(data))
    finally:
        await store.aclose()
    assert [op for op, _ in calls] == ["put_object"]
    assert "ChecksumSHA256" in calls[0][1]
    # S3 checks the SHA-256 end to end: no MD5 is computed for a second, weaker check.
    assert "ContentMD5" not in calls[0][1]


async def test_a_blob_above_the_in_memory_bound_spools_and_is_one_put_object(
    s3_bucket: S3Bucket,
) -> None:
    from angos_s3.put import IN_MEMORY_MAX

    store = S3BlobStore(s3_config(s3_bucket))
    await store.open()
    try:
        data = os.urandom(IN_MEMORY_MAX + 1)
        digest = digest_of(data)
        assert await store.put_blob(digest, stream(data), len(data))
        assert b"".join([c async for c in store.read(digest)]) == data
        assert not await store.put_blob(digest, stream(data), len(data))  # already there
    finally:
        await store.aclose()
