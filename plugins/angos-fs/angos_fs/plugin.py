"""The ``angos-fs`` entry point: blob store ``fs`` and metadata store ``fs``."""

from __future__ import annotations

from typing import Any

from angos_core import (
    CAP_ATOMIC_CREATE,
    CAP_DIRECT_PUT,
    CAP_LOCAL_FILES,
    CAP_SHARED,
    BackendSpec,
    hookimpl,
)
from angos_fs.blob_store import FsBlobStore
from angos_fs.config import FsConfig
from angos_fs.metadata_store import FsMetadataStore

DISTRIBUTION = "angos-fs"


@hookimpl
def angos_blob_stores() -> list[BackendSpec[Any]]:
    return [
        BackendSpec(
            name="fs",
            factory=FsBlobStore,
            config_type=FsConfig,
            capabilities=frozenset({CAP_LOCAL_FILES, CAP_SHARED, CAP_DIRECT_PUT}),
            distribution=DISTRIBUTION,
            description="blobs as files under root_dir",
        )
    ]


@hookimpl
def angos_metadata_stores() -> list[BackendSpec[Any]]:
    return [
        BackendSpec(
            name="fs",
            factory=FsMetadataStore,
            config_type=FsConfig,
            capabilities=frozenset({CAP_ATOMIC_CREATE, CAP_SHARED}),
            distribution=DISTRIBUTION,
            description="metadata as small files under root_dir",
        )
    ]
