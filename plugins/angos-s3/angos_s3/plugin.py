"""The ``angos`` entry point of the distribution angos-s3."""

from __future__ import annotations

from angos_core import (
    CAP_ATOMIC_CREATE,
    CAP_PRESIGNED_URLS,
    CAP_SHARED,
    BackendSpec,
    BlobStore,
    MetadataStore,
    hookimpl,
)
from angos_s3.blobs import S3BlobStore
from angos_s3.config import S3Config
from angos_s3.metadata import S3MetadataStore

DISTRIBUTION = "angos-s3"


@hookimpl
def angos_blob_stores() -> list[BackendSpec[BlobStore]]:
    return [
        BackendSpec(
            name="s3",
            factory=S3BlobStore,
            config_type=S3Config,
            capabilities=frozenset({CAP_PRESIGNED_URLS, CAP_SHARED}),
            distribution=DISTRIBUTION,
            description="blobs in an S3-compatible bucket, uploaded as multipart",
        )
    ]


@hookimpl
def angos_metadata_stores() -> list[BackendSpec[MetadataStore]]:
    return [
        BackendSpec(
            name="s3",
            factory=S3MetadataStore,
            config_type=S3Config,
            capabilities=frozenset({CAP_ATOMIC_CREATE, CAP_SHARED}),
            distribution=DISTRIBUTION,
            description="tags, links and manifests as small objects in an S3-compatible bucket",
        )
    ]
