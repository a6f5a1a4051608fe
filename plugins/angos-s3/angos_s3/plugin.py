"""The ``angos`` entry point of the distribution angos-s3."""

from __future__ import annotations

from angos_core import (
    CAP_ATOMIC_CREATE,
    CAP_DIRECT_PUT,
    CAP_PRESIGNED_URLS,
    CAP_SHARED,
    BackendSpec,
    BlobStore,
    MetadataStore,
    hookimpl,
)
from angos_s3.config import S3Config

DISTRIBUTION = "angos-s3"

# The stores are imported when a config selects them: aioboto3 and botocore cost about
# 8 MiB and 0.2 s in every process that merely has this plugin installed.


def _blob_store(config: S3Config) -> BlobStore:
    from angos_s3.blobs import S3BlobStore

    return S3BlobStore(config)


def _metadata_store(config: S3Config) -> MetadataStore:
    from angos_s3.metadata import S3MetadataStore

    return S3MetadataStore(config)


@hookimpl
def angos_blob_stores() -> list[BackendSpec[BlobStore]]:
    return [
        BackendSpec(
            name="s3",
            factory=_blob_store,
            config_type=S3Config,
            capabilities=frozenset({CAP_PRESIGNED_URLS, CAP_SHARED, CAP_DIRECT_PUT}),
            distribution=DISTRIBUTION,
            description="blobs in an S3-compatible bucket, uploaded as multipart",
        )
    ]


@hookimpl
def angos_metadata_stores() -> list[BackendSpec[MetadataStore]]:
    return [
        BackendSpec(
            name="s3",
            factory=_metadata_store,
            config_type=S3Config,
            capabilities=frozenset({CAP_ATOMIC_CREATE, CAP_SHARED}),
            distribution=DISTRIBUTION,
            description="tags, links and manifests as small objects in an S3-compatible bucket",
        )
    ]
