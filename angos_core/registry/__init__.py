"""The registry domain: what uploads, blobs, manifests, tags and referrers mean.

Written once against the wrapped backends (:mod:`angos_core.registry.wrappers`); the HTTP
layer only translates requests into these calls.
"""

from __future__ import annotations

from typing import Any

from angos_core.config import UploadPurgingConfig
from angos_core.policy.immutable import TagImmutability
from angos_core.registry.blobs import BlobInfo, BlobService
from angos_core.registry.catalog import CatalogService
from angos_core.registry.links import Links
from angos_core.registry.manifests import ManifestService, PushResult, StoredManifest
from angos_core.registry.referrers import ReferrerService
from angos_core.registry.stores import Stores
from angos_core.registry.upload_limits import UploadSessionLimits
from angos_core.registry.upload_purge import PurgeObserver, UploadPurger
from angos_core.registry.uploads import ChunkOutOfOrder, UploadService


class Registry:
    def __init__(
        self,
        stores: Stores,
        upload_limits: UploadSessionLimits | None = None,
        immutable_tags: TagImmutability | None = None,
    ) -> None:
        self.stores = stores
        self.links = Links(stores.meta, stores.cache)
        self.blobs = BlobService(stores, self.links)
        self.uploads = UploadService(stores, self.links, upload_limits)
        self.manifests = ManifestService(stores, self.links, immutable_tags)
        self.referrers = ReferrerService(stores, self.links, self.manifests)
        self.catalog = CatalogService(stores, self.links)

    def backends(self) -> dict[str, Any]:
        """The four wrapped backends by kind, for health checks (each has ``name`` and
        ``health()``)."""
        stores = self.stores
        return {
            "blob_store": stores.blobs,
            "metadata_store": stores.meta,
            "lock_provider": stores.locks,
            "cache": stores.cache,
        }

    def upload_purger(
        self, settings: UploadPurgingConfig, *, observer: PurgeObserver | None = None
    ) -> UploadPurger:
        """The ``[maintenance.upload_purging]`` task over this registry's blob store."""
        limits = self.uploads.limits
        return UploadPurger(
            self.stores.blobs,
            settings,
            observer=observer,
            released=limits.release if limits is not None else None,
        )


__all__ = [
    "BlobInfo",
    "ChunkOutOfOrder",
    "PushResult",
    "Registry",
    "StoredManifest",
    "Stores",
    "UploadSessionLimits",
]
