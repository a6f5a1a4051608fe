"""Angos filesystem backends: blob store ``fs`` and metadata store ``fs``."""

from angos_fs.blob_store import FsBlobStore
from angos_fs.config import FsConfig
from angos_fs.metadata_store import FsMetadataStore

__all__ = ["FsBlobStore", "FsConfig", "FsMetadataStore"]
