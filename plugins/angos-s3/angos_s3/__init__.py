"""angos-s3: blob store ``s3`` and metadata store ``s3`` on S3-compatible object storage."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from angos_s3.config import S3Config

if TYPE_CHECKING:
    from angos_s3.blobs import S3BlobStore
    from angos_s3.metadata import S3MetadataStore

__all__ = ["S3BlobStore", "S3Config", "S3MetadataStore"]

# Loaded on first use, so that finding the plugin does not import aioboto3.
_LAZY = {"S3BlobStore": "angos_s3.blobs", "S3MetadataStore": "angos_s3.metadata"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'angos_s3' has no attribute {name!r}")
