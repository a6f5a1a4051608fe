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
