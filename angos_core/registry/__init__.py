"""The registry domain: what uploads, blobs, manifests, tags and referrers mean.

Written once against the wrapped backends (:mod:`angos_core.registry.wrappers`); the HTTP
layer only translates requests into these calls.
"""

from __future__ import annotations

from typing import Any

from angos_core.config import UploadPurgingConfig
from angos_core.kinds import ExtensionKind
from angos_core.policy.immutable import TagImmutability
from angos_core.registry.blobs import BlobInfo, BlobService
from angos_core.registry.catalog import CatalogService
from angos_core.registry.links import Links
from angos_core.registry.manifests import ManifestService, PushResult, StoredManifest
from angos_core.registry.pull_through import CachedNamespace, PullObserver, PullThrough
from angos_core.registry.references import References
from angos_core.registry.referrers import ReferrerService
from angos_core.registry.stores import Stores
from angos_core.registry.times import ManifestTimes
from angos_core.registry.upload_limits import UploadSessionLimits
from angos_core.registry.upload_purge import PurgeObserver, UploadPurger
from angos_core.registry.uploads import ChunkOutOfOrder, UploadService
from angos_core.registry.write_gate import WriteGate


class Registry:
    def __init__(
        self,
        stores: Stores,
        upload_limits: UploadSessionLimits | None = None,
        immutable_tags: TagImmutability | None = None,
        pull_through: dict[str, CachedNamespace] | None = None,
        pull_observer: PullObserver | None = None,
    ) -> None:
        self.stores = stores
        #: ``[maintenance.read_only]``: off unless the server turns it on.
        self.writes = WriteGate()
        self.links = Links(stores.meta, stores.cache)
        self.references = References(stores)
        self.blobs = BlobService(stores, self.links, self.references, self.writes)
        self.uploads = UploadService(
            stores, self.links, self.references, upload_limits, self.writes
        )
        self.times = ManifestTimes(stores)
        self.manifests = ManifestService(
            stores, self.links, self.references, immutable_tags, self.times, self.writes
        )
        self.referrers = ReferrerService(stores, self.links, self.manifests)
        self.catalog = CatalogService(stores)
        self.pull_through = PullThrough(
            stores,
            self.links,
            self.references,
            self.blobs,
            self.manifests,
            pull_through or {},
            pull_observer,
        )

    def apply_rules(self, immutable_tags: TagImmutability, read_only: bool) -> None:
        """Swap the write rules a reload may change (no await between the two: a request
        sees both old or both new)."""
        self.manifests.immutable = immutable_tags
        self.writes.set(read_only)

    def backends(self) -> dict[str, tuple[ExtensionKind, Any]]:
        """The wrapped storage backends by kind name, with their kind's declaration, for
        health checks (each backend has ``name`` and ``health()``)."""
        return dict(self.stores.by_kind)

    def migration_backends(self) -> dict[str, tuple[ExtensionKind, Any]]:
        """In a live migration (``[migration] from``), the old stores reads go through to,
        by ``migration.<kind>``: the storage kinds ``/readyz`` checks for reads (the blob
        and metadata stores); empty otherwise."""
        old = self.stores.fallback
        if old is None:
            return {}
        return {
            f"migration.{name}": (kind, backend)
            for name, (kind, backend) in old.by_kind.items()
            if kind.readiness == "read"
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
    "WriteGate",
]
