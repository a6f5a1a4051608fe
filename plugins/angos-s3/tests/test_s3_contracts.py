"""The s3 stores pass the shipped contracts against moto's server over HTTP on loopback.

Run at the bucket's root and under a key_prefix, with a 5 MiB part size (S3's minimum) so
that the contract's larger blobs do cross part boundaries; the blob store also passes the
direct-put contract.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from angos_s3 import S3BlobStore, S3Config, S3MetadataStore

from angos_core.config import parse_table
from angos_core.protocols import BlobStore, MetadataStore
from angos_core.testing import BlobPutContract, BlobStoreContract, MetadataStoreContract
from angos_core.testing.moto_server import S3Bucket


def s3_config(bucket: S3Bucket, **extra: object) -> S3Config:
    return parse_table(S3Config, {**bucket.settings, **extra}, "blob_store.s3")


class TestS3BlobStore(BlobStoreContract, BlobPutContract):
    @pytest.fixture
    async def blob_store(self, s3_bucket: S3Bucket) -> AsyncIterator[BlobStore]:
        store = S3BlobStore(s3_config(s3_bucket, multipart_part_size="5MiB"))
        await store.open()
        yield store
        await store.aclose()

    @pytest.fixture
    def big_blob_size(self) -> int:
        return 6 * 1024 * 1024 + 17  # past one 5 MiB part: a direct put's multipart path


class TestS3BlobStoreUnderPrefix(BlobStoreContract):
    @pytest.fixture
    async def blob_store(self, s3_bucket: S3Bucket) -> AsyncIterator[BlobStore]:
        store = S3BlobStore(s3_config(s3_bucket, key_prefix="registry/blobs/"))
        await store.open()
        yield store
        await store.aclose()


class TestS3MetadataStore(MetadataStoreContract):
    @pytest.fixture
    async def metadata_store(self, s3_bucket: S3Bucket) -> AsyncIterator[MetadataStore]:
        store = S3MetadataStore(s3_config(s3_bucket))
        await store.open()
        yield store
        await store.aclose()


class TestS3MetadataStoreUnderPrefix(MetadataStoreContract):
    @pytest.fixture
    async def metadata_store(self, s3_bucket: S3Bucket) -> AsyncIterator[MetadataStore]:
        store = S3MetadataStore(s3_config(s3_bucket, key_prefix="meta"))
        await store.open()
        yield store
        await store.aclose()
