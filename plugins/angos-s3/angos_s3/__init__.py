"""angos-s3: blob store ``s3`` and metadata store ``s3`` on S3-compatible object storage."""

from __future__ import annotations

from typing import TYPE_CHECKING

from angos_core.lazy import lazy_exports
from angos_s3.config import S3Config

if TYPE_CHECKING:
    from angos_s3.blobs import S3BlobStore
    from angos_s3.metadata import S3MetadataStore

__all__ = ["S3BlobStore", "S3Config", "S3MetadataStore"]

# Loaded on first use, so that finding the plugin does not import aioboto3.
__getattr__ = lazy_exports(
    __name__, {"S3BlobStore": "angos_s3.blobs", "S3MetadataStore": "angos_s3.metadata"}
)
