"""The referrers API: manifests whose ``subject`` is a given digest."""

from __future__ import annotations

import asyncio
from typing import Any

from angos_core import layout
from angos_core.oci import mediatypes as mt
from angos_core.oci.digest import parse_digest
from angos_core.oci.manifest import parse_stored
from angos_core.oci.names import validate_name
from angos_core.registry.links import Links
from angos_core.registry.manifests import ManifestService
from angos_core.registry.stores import Stores


class ReferrerService:
    def __init__(self, stores: Stores, links: Links, manifests: ManifestService) -> None:
        self.stores = stores
        self.links = links
        self.manifests = manifests

    async def _descriptor(self, name: str, digest: str) -> dict[str, Any] | None:
        # A referrer whose revision is gone (deleted, or a crash mid-delete) is not listed.
        if not await self.links.has_revision(name, digest):
            return None
        body = await self.manifests.body(digest)
        if body is None:
            return None
        manifest = parse_stored(body)
        if manifest is None:
            return None
        descriptor: dict[str, Any] = {
            "mediaType": manifest.media_type,
            "digest": digest,
            "size": len(body),
        }
        artifact_type = manifest.effective_artifact_type()
        if artifact_type:
            descriptor["artifactType"] = artifact_type
        if manifest.annotations:
            descriptor["annotations"] = manifest.annotations
        return descriptor

    async def list(
        self, name: str, subject: str, artifact_type: str | None = None
    ) -> dict[str, Any]:
        """An OCI image index listing the referrers (empty when there are none)."""
        validate_name(name)
        parse_digest(subject)
        digests = await self.links.digests_under(layout.referrers_prefix(name, subject))
        found = await asyncio.gather(*(self._descriptor(name, d) for d in digests))
        descriptors = [d for d in found if d is not None]
        if artifact_type:
            descriptors = [d for d in descriptors if d.get("artifactType") == artifact_type]
        return {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": descriptors}
