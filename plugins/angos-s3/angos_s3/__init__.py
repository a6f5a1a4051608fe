"""angos-s3: blob store ``s3`` and metadata store ``s3`` on S3-compatible object storage."""

from angos_s3.blobs import S3BlobStore
from angos_s3.config import S3Config
from angos_s3.metadata import S3MetadataStore

__all__ = ["S3BlobStore", "S3Config", "S3MetadataStore"]
