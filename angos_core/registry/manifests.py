"""Manifests and tags: push (with reference checks), fetch, delete."""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass

from angos_core import layout
from angos_core.errors import (
    DigestInvalid,
    LockUnavailable,
    ManifestBlobUnknown,
    ManifestInvalid,
    ManifestTooLarge,
    ManifestUnknown,
    TagImmutable,
)
from angos_core.oci import mediatypes as mt
from angos_core.oci.digest import digest_bytes, parse_digest
from angos_core.oci.manifest import Manifest, parse_manifest, parse_stored, stored_media_type
from angos_core.oci.names import validate_name, validate_tag
from angos_core.policy.immutable import TagImmutability
from angos_core.registry.links import Links, manifest_lock_key, tag_lock_key
from angos_core.registry.references import References
from angos_core.registry.stores import Stores
from angos_core.registry.times import ManifestTimes
from angos_core.registry.write_gate import WriteGate

#: Manifest bodies kept in process by digest. Safe to cache: a digest names its bytes, and
#: every fetch first checks the repository's revision link.
BODY_CACHE_BYTES = 8 * 1024 * 1024
BODY_CACHE_MAX_ITEM = 256 * 1024
#: Rounds of a delete by digest whose tags keep changing under it before it gives up (503).
DELETE_ATTEMPTS = 5
#: Bodies at least this large are parsed in a thread: a 4 MiB manifest takes about half a
#: second of CPU to parse, which would stall every other request on the loop.
PARSE_OFF_LOOP_BYTES = 64 * 1024
#: Reference checks one push keeps in flight: enough to overlap backend round trips, few
#: enough that a manifest listing thousands of blobs leaves the loop to other requests.
CHECK_CONCURRENCY = 16
#: A check answered from the cache never suspends; yield to the loop every this many.
CHECK_YIELD_EVERY = 64


@dataclass(frozen=True, slots=True)
class StoredManifest:
    digest: str
    body: bytes
    media_type: str


@dataclass(frozen=True, slots=True)
class PushResult:
    digest: str
    subject: str | None
    #: The tags of the push's ``tag`` parameters, as set (deduplicated, in request order).
    extra_tags: tuple[str, ...] = ()


class ManifestService:
    def __init__(
        self,
        stores: Stores,
        links: Links,
        references: References,
        immutable: TagImmutability | None = None,
        times: ManifestTimes | None = None,
        writes: WriteGate | None = None,
    ) -> None:
        self.stores = stores
        self.links = links
        self.references = references
        self.times = times if times is not None else ManifestTimes(stores)
        self.immutable = immutable if immutable is not None else TagImmutability()
        self.writes = writes if writes is not None else WriteGate()
        self._bodies: OrderedDict[str, bytes] = OrderedDict()
        self._bodies_size = 0

    @property
    def max_size(self) -> int:
        """The largest manifest body a push may send, in bytes (``[global]``)."""
        return int(self.stores.settings.max_manifest_size)

    # ------------------------------------------------------------------ bodies

    async def body(self, digest: str) -> bytes | None:
        cached = self._bodies.get(digest)
        if cached is not None:
            self._bodies.move_to_end(digest)
            return cached
        body = await self.stores.meta.get(layout.blob_data_key(digest))
        if body is not None:
            self._keep(digest, body)
        return body

    def _keep(self, digest: str, body: bytes) -> None:
        if len(body) > BODY_CACHE_MAX_ITEM or digest in self._bodies:
            return
        self._bodies[digest] = body
        self._bodies_size += len(body)
        while self._bodies_size > BODY_CACHE_BYTES:
            _, dropped = self._bodies.popitem(last=False)
            self._bodies_size -= len(dropped)

    # ------------------------------------------------------------------ push

    async def put(
        self,
        name: str,
        reference: str,
        body: bytes,
        content_type: str | None,
        extra_tags: Iterable[str] = (),
    ) -> PushResult:
        validate_name(name)
        self.writes.check()
        if len(body) > self.max_size:
            raise ManifestTooLarge(detail={"limit": self.max_size})
        extra = tuple(dict.fromkeys(validate_tag(t) for t in extra_tags))
        tags = list(extra)
        if ":" in reference:
            parsed = parse_digest(reference)
            digest = digest_bytes(body, parsed.algorithm)
            if digest != reference:
                raise DigestInvalid(
                    "manifest digest does not match the reference",
                    detail={"digest": reference, "computed": digest},
                )
        else:
            tags.insert(0, validate_tag(reference))
            digest = digest_bytes(body)
        if len(body) >= PARSE_OFF_LOOP_BYTES:
            manifest = await asyncio.to_thread(parse_manifest, body, content_type)
        else:
            manifest = parse_manifest(body, content_type)
        self._check_descriptor_count(manifest)
        unique_tags = list(dict.fromkeys(tags))
        # Unlocked, so that a refused push writes nothing; checked again under the locks.
        await self._check_immutable(name, unique_tags, digest)
        # Every object the push references, and its own body, under its ``blob:`` lock and
        # marked from the checks until the revision is stored: a collection running
        # meanwhile either marked them from an earlier reference or sees the mark
        # (docs/architecture.md, "Online garbage collection").
        referenced = _referenced(manifest)
        for _ in range(DELETE_ATTEMPTS):
            async with self.references.referencing([*referenced, digest]):
                # Its own digest also as recent: an untagged child or referrer must outlive
                # the next collection's untagged pass, until its index or subject arrives.
                await self.references.mark_recent(digest)
                await self._check_references(name, manifest)
                # Again after the reference checks' awaits, before the first store write.
                self.writes.check()
                # Content-addressed: written once (create-if-absent), as are the links that
                # name their content, so the manifest lock below covers only the tag moves
                # (docs/architecture.md, "Locking points").
                await self.stores.meta.create(layout.blob_data_key(digest), body)
                indexed = await self._link(name, digest, body, manifest, unique_tags)
                # Before the answer: what ``angos prune`` judges by (image.pushed_at).
                await self.times.pushed(name, digest)
            # The blob keys are held only while references are checked and stored: pushes
            # of images sharing a base layer queue on its key, for that step only.
            if await self._move_tags(name, digest, unique_tags, indexed):
                self._keep(digest, body)
                return PushResult(
                    digest, manifest.subject.digest if manifest.subject else None, extra
                )
        raise LockUnavailable(
            self.stores.locks.name, f"{name}@{digest} was deleted on every attempt to push it"
        )

    async def store_fetched(
        self, name: str, tag: str | None, body: bytes, content_type: str | None, digest: str
    ) -> StoredManifest:
        """Store a manifest a pull-through namespace fetched from its upstream (``digest``
        already verified), tagged ``tag`` if given. As a push, through the references
        protocol, but without the reference checks: its blobs arrive when pulled."""
        if len(body) >= PARSE_OFF_LOOP_BYTES:
            manifest = await asyncio.to_thread(parse_manifest, body, content_type)
        else:
            manifest = parse_manifest(body, content_type)
        tags = [tag] if tag is not None else []
        for _ in range(DELETE_ATTEMPTS):
            async with self.references.referencing([digest]):
                await self.references.mark_recent(digest)
                await self.stores.meta.create(layout.blob_data_key(digest), body)
                indexed = await self._link(name, digest, body, manifest, tags)
                # A cached manifest's image.pushed_at is when it was fetched (retention).
                await self.times.pushed(name, digest)
            if await self._move_tags(name, digest, tags, indexed):
                self._keep(digest, body)
                return StoredManifest(digest, body, stored_media_type(body))
        raise LockUnavailable(
            self.stores.locks.name, f"{name}@{digest} was deleted on every attempt to cache it"
        )

    async def _move_tags(
        self, name: str, digest: str, unique_tags: list[str], indexed: set[str]
    ) -> bool:
        """Point the tags at the pushed revision; False if a delete of it ran since it was
        linked (the push links it again, under the blob keys)."""
        locks = self.stores.locks
        async with locks.acquire([manifest_lock_key(name, digest)]) as manifest_lease:
            manifest_lease.check()
            if not await self.links.has_revision(name, digest, fresh=True):
                return False
            if unique_tags:
                # Tag keys last, and nobody holding one waits for another key: no cycle.
                # They are held only for the moves, the one step pushes to a tag share.
                tag_keys = [tag_lock_key(name, t) for t in unique_tags]
                async with locks.acquire(tag_keys) as lease:
                    await self._check_immutable(name, unique_tags, digest)
                    for tag in unique_tags:
                        manifest_lease.check()
                        lease.check()
                        await self.links.move_tag(name, tag, digest, indexed=tag in indexed)
        return True

    async def _check_immutable(self, name: str, tags: list[str], digest: str) -> None:
        """Refuse the push if it would move a protected tag (every tag is checked before
        any moves: a push moves all its tags or none)."""
        for tag in tags:
            if self.immutable.protects(name, tag):
                current = await self.links.tag_digest(name, tag, fresh=True)
                if current is not None and current != digest:
                    raise TagImmutable(tag)

    def _check_descriptor_count(self, manifest: Manifest) -> None:
        limit = self.stores.settings.max_manifest_descriptors
        count = len(manifest.layers) + len(manifest.manifests)
        count += (manifest.config is not None) + (manifest.subject is not None)
        if count > limit:
            raise ManifestInvalid(
                f"manifest lists {count} descriptors, more than the limit of {limit} "
                "([global] max_manifest_descriptors)",
                detail={"descriptors": count, "limit": limit},
            )

    async def _link(
        self, name: str, digest: str, body: bytes, manifest: Manifest, tags: list[str]
    ) -> set[str]:
        """The revision, then the referrer and tag index links: the reverse of a delete's
        order, so a revision found present afterwards means no delete undid the others.
        Only tags that exist get their index entry here, outside their locks (a new tag's
        comes after its ``current`` link: :meth:`Links.move_tag`); the ones that did."""
        await self.links.put_revision(name, digest)
        if manifest.subject is not None:
            # The entry holds the descriptor the referrers API lists: no body read there.
            descriptor = manifest.referrer_descriptor(digest, len(body), stored_media_type(body))
            await self.stores.meta.create(
                layout.referrer_link_key(name, manifest.subject.digest, digest),
                layout.referrer_entry_content(descriptor),
            )
        return {tag for tag in tags if await self.links.index_existing_tag(name, tag, digest)}

    async def _check_references(self, name: str, manifest: Manifest) -> None:
        if manifest.is_index:
            children = manifest.manifests
            if self.stores.settings.accept_index_with_missing_children:
                # Only a child that says it is a manifest may be missing: anything else an
                # index lists cannot arrive later as a manifest of this repository.
                children = tuple(d for d in children if d.media_type not in mt.PUSHABLE)
            digests = [d.digest for d in children]
            missing = await _first_missing(digests, lambda d: self.links.has_revision(name, d))
        else:
            blobs = [manifest.config] if manifest.config is not None else []
            blobs += [d for d in manifest.layers if not mt.is_foreign_layer(d.media_type)]
            digests = [d.digest for d in blobs]
            missing = await _first_missing(digests, lambda d: self._has_blob(name, d))
        if missing is not None:
            raise ManifestBlobUnknown(
                f"manifest references {missing}, which is not in the repository",
                detail={"digest": missing},
            )

    async def _has_blob(self, name: str, digest: str) -> bool:
        # The link says the repository holds it; the bytes are checked too, under the blob
        # key: a collection deletes the bytes first and stale links after.
        if not await self.links.has_layer(name, digest):
            return False
        return await self.stores.blobs.stat(digest) is not None

    # ------------------------------------------------------------------ fetch

    async def resolve(self, name: str, reference: str) -> str:
        """The digest a tag or digest reference names in ``name``; ``ManifestUnknown``."""
        validate_name(name)
        if ":" in reference:
            parse_digest(reference)
            if await self.links.has_revision(name, reference):
                return reference
        else:
            validate_tag(reference)
            digest = await self.links.tag_digest(name, reference)
            if digest is not None:
                return digest
        raise ManifestUnknown(detail={"name": name, "reference": reference})

    async def get(self, name: str, reference: str) -> StoredManifest:
        digest = await self.resolve(name, reference)
        body = await self.body(digest)
        if body is None:
            raise ManifestUnknown(detail={"name": name, "reference": reference})
        return StoredManifest(digest, body, stored_media_type(body))

    # ------------------------------------------------------------------ delete

    async def delete(self, name: str, reference: str, *, only_untagged: bool = False) -> bool:
        """Delete a tag, or a manifest and every tag pointing at it. ``only_untagged``
        (``angos prune``): a manifest some tag points at when its locks are held is kept,
        and False returned."""
        validate_name(name)
        self.writes.check()
        if ":" not in reference:
            await self._delete_tag(name, validate_tag(reference))
            return True
        parse_digest(reference)
        # The manifest's key keeps new tags off it; the tags pointing at it are locked too,
        # as they are deleted. Which those are is read before locking, so a push that
        # tagged it in between sends us round again.
        pointing = await self._tags_pointing_at(name, reference)
        for _ in range(DELETE_ATTEMPTS):
            keys = [manifest_lock_key(name, reference)]
            keys += [tag_lock_key(name, t) for t in pointing]
            async with self.stores.locks.acquire(keys) as lease:
                if not await self.links.has_revision(name, reference, fresh=True):
                    raise ManifestUnknown(detail={"name": name, "reference": reference})
                now = await self._tags_pointing_at(name, reference)
                if only_untagged and now:
                    return False
                if not now <= pointing:
                    pointing |= now
                    continue
                for tag in sorted(now):
                    if self.immutable.protects(name, tag):
                        raise TagImmutable(tag, deleting=True)
                body = await self.body(reference)
                lease.check()
                # Tags first (never a tag pointing at a missing manifest), the revision last.
                # An index entry of another tag is one delete no tag move conflicts with.
                for tag in await self.links.tags(name):
                    if tag in now:
                        await self.links.delete_tag(name, tag)
                    else:
                        await self.links.delete_tag_index(name, tag, reference)
                manifest = parse_stored(body) if body is not None else None
                if manifest is not None and manifest.subject is not None:
                    await self.stores.meta.delete(
                        layout.referrer_link_key(name, manifest.subject.digest, reference)
                    )
                await self.links.delete_revision(name, reference)
                await self.times.forget(name, reference)
                return True
        raise LockUnavailable(
            self.stores.locks.name,
            f"{name}@{reference} was tagged again on every attempt to delete it",
        )

    async def untag(
        self, name: str, tag: str, digest: str, keep: Callable[[], Awaitable[bool]]
    ) -> bool:
        """Delete ``tag`` if it still points at ``digest`` and ``keep()``, asked under the
        tag's lock, says no (``angos prune``: a push of the digest since the run began
        keeps it); immutable tags are never deleted. Whether it was deleted."""
        async with self.stores.locks.acquire([tag_lock_key(name, tag)]) as lease:
            if self.immutable.protects(name, tag):
                return False
            if await self.links.tag_digest(name, tag, fresh=True) != digest or await keep():
                return False
            lease.check()
            return await self.links.delete_tag(name, tag)

    async def _tags_pointing_at(self, name: str, digest: str) -> set[str]:
        return {
            tag
            for tag in await self.links.tags(name)
            if await self.links.tag_digest(name, tag, fresh=True) == digest
        }

    async def _delete_tag(self, name: str, tag: str) -> None:
        async with self.stores.locks.acquire([tag_lock_key(name, tag)]) as lease:
            lease.check()
            if self.immutable.protects(name, tag) and await self.links.tag_digest(
                name, tag, fresh=True
            ):
                raise TagImmutable(tag, deleting=True)
            # A half-written tag (no ``current`` link, left by an older version or by
            # Distribution) is removed too: left alone it would keep its directory forever.
            if not await self.links.delete_tag(name, tag):
                raise ManifestUnknown(detail={"name": name, "reference": tag})


def _referenced(manifest: Manifest) -> list[str]:
    """What a manifest push makes a new reference to: an index's children, an image's
    config and layers (foreign layers live elsewhere)."""
    if manifest.is_index:
        return [d.digest for d in manifest.manifests]
    blobs = [manifest.config] if manifest.config is not None else []
    blobs += [d for d in manifest.layers if not mt.is_foreign_layer(d.media_type)]
    return [d.digest for d in blobs]


async def _first_missing(
    digests: Sequence[str], exists: Callable[[str], Awaitable[bool]]
) -> str | None:
    """A digest of ``digests`` that ``exists`` denies, or None; stops at the first found.

    Each distinct digest is checked once, at most ``CHECK_CONCURRENCY`` at a time: one task
    per descriptor would flood the loop (38,000 of them stalled every request for seconds).
    """
    pending = iter(dict.fromkeys(digests))
    missing: list[str] = []
    failures: list[BaseException] = []

    async def worker() -> None:
        checked = 0
        try:
            for digest in pending:
                if missing or failures:
                    return
                if not await exists(digest):
                    missing.append(digest)
                    return
                checked += 1
                if checked % CHECK_YIELD_EVERY == 0:
                    await asyncio.sleep(0)
        except Exception as exc:
            failures.append(exc)

    # Workers end on their own (the iterator drains, or one finds a miss or fails), so
    # none outlives the request; the first failure is then raised as it came.
    await asyncio.gather(*(worker() for _ in range(min(CHECK_CONCURRENCY, len(digests)))))
    if failures:
        raise failures[0]
    return missing[0] if missing else None
