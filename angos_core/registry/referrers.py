"""The referrers API: manifests whose ``subject`` is a given digest.

Each referrer is one entry under its subject's prefix (:func:`layout.referrer_link_key`),
written at push and deleted (before the revision) at delete. Since the per-subject index,
an entry holds the referrer's descriptor, so a listing reads entries and no manifest
bodies; an entry written before (it holds only the digest) is described from the body.

A listing is paged: in digest order, ``n`` at a time after ``last``, and a caller learns of
the next page from the ``Link`` header (the spec's rule for results that do not fit one
response). Entries are read ``READ_BATCH`` at a time, and only as many as the page needs.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any

from angos_core import layout
from angos_core.oci import mediatypes as mt
from angos_core.oci.digest import is_digest, parse_digest
from angos_core.oci.manifest import parse_stored
from angos_core.oci.names import validate_name
from angos_core.registry.links import Links
from angos_core.registry.manifests import ManifestService
from angos_core.registry.stores import Stores

#: Referrers per page when the request names no ``n``: large enough that the usual subject
#: (a few signatures and SBOMs) fits one response for clients that do not follow ``Link``.
DEFAULT_REFERRERS_PAGE = 1000
#: Entries read concurrently while a page is filled.
READ_BATCH = 64
#: Names asked of the store per listing call (at most): one S3 ListObjectsV2 page.
LIST_BATCH = 1000


@dataclass(frozen=True, slots=True)
class ReferrersPage:
    index: dict[str, Any]
    #: The digest to continue after (the ``last`` of the next page), or None at the end.
    next_last: str | None


class ReferrerService:
    def __init__(self, stores: Stores, links: Links, manifests: ManifestService) -> None:
        self.stores = stores
        self.links = links
        self.manifests = manifests

    async def _descriptor(self, name: str, subject: str, digest: str) -> dict[str, Any] | None:
        entry = await self.stores.meta.get(layout.referrer_link_key(name, subject, digest))
        if entry is None:
            return None
        descriptor = layout.parse_referrer_entry(entry, digest)
        if descriptor is not None:
            # Trusted without a look at the revision: a push writes the revision before the
            # entry and a delete removes the entry before the revision, so an entry means a
            # revision (docs/architecture.md, "The key layout", says when it does not).
            return descriptor
        # An entry without a descriptor (written before the index): from the body, as then.
        if not await self.links.has_revision(name, digest):
            return None
        body = await self.manifests.body(digest)
        manifest = parse_stored(body) if body is not None else None
        if body is None or manifest is None:
            return None
        return manifest.referrer_descriptor(digest, len(body))

    async def _digests(
        self, name: str, subject: str, last: str | None, first: int
    ) -> AsyncGenerator[str, None]:
        """The referrer digests of ``subject`` after ``last``, in byte order, listed lazily:
        ``first`` names at most by the first call, ``LIST_BATCH`` by each later one."""
        prefix = layout.referrers_prefix(name, subject)
        last_alg, _, last_hex = last.partition(":") if last else ("", "", "")
        limit = min(first, LIST_BATCH)
        for alg in await self.stores.meta.list_children(prefix):
            if alg < last_alg:
                continue
            after = last_hex if alg == last_alg else None
            while True:
                batch = await self.stores.meta.list_children(
                    f"{prefix}{alg}/", start_after=after, limit=limit
                )
                for hexpart in batch:
                    digest = f"{alg}:{hexpart}"
                    if is_digest(digest):
                        yield digest
                if len(batch) < limit:
                    break
                after, limit = batch[-1], LIST_BATCH

    async def list(
        self,
        name: str,
        subject: str,
        artifact_type: str | None = None,
        n: int = DEFAULT_REFERRERS_PAGE,
        last: str | None = None,
    ) -> ReferrersPage:
        """One page of the referrers, as an OCI image index (empty when there are none)."""
        validate_name(name)
        parse_digest(subject)
        if last is not None:
            parse_digest(last)
        found: list[dict[str, Any]] = []
        more = False
        pending: list[str] = []

        async def drain() -> bool:
            """Describe ``pending`` into ``found``; True once a referrer past the page is seen."""
            described = await asyncio.gather(*(self._descriptor(name, subject, d) for d in pending))
            pending.clear()
            for descriptor in described:
                if descriptor is None:
                    continue
                if artifact_type and descriptor.get("artifactType") != artifact_type:
                    continue
                if len(found) == n:
                    return True
                found.append(descriptor)
            return False

        if n > 0:
            # Unfiltered, the page needs n + 1 names (is there a next?); filtered, maybe more.
            first = n + 1 if artifact_type is None else LIST_BATCH
            async with aclosing(self._digests(name, subject, last, first)) as digests:
                async for digest in digests:
                    pending.append(digest)
                    # Read no more than the page can still use (plus one: is there a next?).
                    if len(pending) >= min(READ_BATCH, n - len(found) + 1):
                        more = await drain()
                        if more:
                            break
            if not more and pending:
                more = await drain()
        index = {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": found}
        return ReferrersPage(index, found[-1]["digest"] if more else None)
