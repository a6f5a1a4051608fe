"""Links: the small metadata objects that say what a repository holds.

A layer link makes a blob visible in a repository, a revision link a manifest, a tag's
``current`` link the manifest the tag points at. Positive lookups are cached (short ttl) and
every write that changes one deletes its cache entry.

A reader that misses the cache must not put back a value a writer has just replaced: the
reader reads the store, the writer writes it and deletes the cache entry, and only then the
reader fills the cache with what it read, which every replica would serve until the ttl.
So every write also stamps the key with a fresh token in the cache before deleting the
entry, and a reader fills the cache only if the stamp is the same after its store read as
before it. Either the reader sees the writer's stamp (and does not fill), or its fill lands
before the writer's delete (and is deleted). Hits cost nothing more; a miss costs two cache
reads, a write one cache write.
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable

from angos_core import layout
from angos_core.oci.digest import is_digest
from angos_core.registry.wrappers import WrappedCache, WrappedMetadataStore

#: Seconds a cached link lookup lives: the bound on staleness if an invalidation is lost
#: (a cache outage during a write).
CACHE_TTL_SECS = 30.0
#: A write's stamp must outlive any store read that could have started before it.
STAMP_TTL_SECS = 2 * CACHE_TTL_SECS
_PRESENT = b"1"


def tag_lock_key(name: str, tag: str) -> str:
    """Held while the tag moves or goes (its ``current`` link and its directory)."""
    return f"tag:{name}:{tag}"


def manifest_lock_key(name: str, digest: str) -> str:
    """Held while a manifest is tagged or deleted: tags never point at a deleted revision.

    Sorts before every tag key: callers that hold both take them in one ``acquire``.
    """
    return f"manifest:{name}@{digest}"


def parse_link(data: bytes | None) -> str | None:
    """The digest a link holds, or None for an absent or unreadable link."""
    if data is None:
        return None
    value = data.decode("utf-8", "replace").strip()
    return value if is_digest(value) else None


class Links:
    def __init__(self, meta: WrappedMetadataStore, cache: WrappedCache) -> None:
        self.meta = meta
        self.cache = cache

    async def _read_through(
        self, cache_key: str, load: Callable[[], Awaitable[bytes | None]]
    ) -> bytes | None:
        """``load()`` from the store, cached when present unless a write raced the load."""
        stamp_key = f"stamp:{cache_key}"
        before = await self.cache.get(stamp_key)
        value = await load()
        if value is not None and await self.cache.get(stamp_key) == before:
            await self.cache.set(cache_key, value, CACHE_TTL_SECS)
        return value

    async def _invalidate(self, cache_key: str) -> None:
        """After a store write: readers in flight must not fill, then drop the entry."""
        await self.cache.set(f"stamp:{cache_key}", secrets.token_bytes(8), STAMP_TTL_SECS)
        await self.cache.delete(cache_key)

    async def _exists(self, key: str, fresh: bool = False) -> bool:
        cache_key = f"link:{key}"
        if not fresh and await self.cache.get(cache_key) == _PRESENT:
            return True

        async def load() -> bytes | None:
            return None if await self.meta.get(key) is None else _PRESENT

        return await self._read_through(cache_key, load) is not None

    async def _put(self, key: str, digest: str) -> None:
        await self.meta.put(key, layout.link_content(digest))

    async def _ensure(self, key: str, digest: str) -> None:
        # A link's key names its digest, so an existing link already holds these bytes:
        # create-if-absent skips the rewrite (a cheap existence check on every backend).
        await self.meta.create(key, layout.link_content(digest))

    async def _delete(self, key: str) -> bool:
        existed = await self.meta.delete(key)
        await self._invalidate(f"link:{key}")
        return existed

    # ------------------------------------------------------------------ layers (blobs)

    async def has_layer(self, name: str, digest: str, *, fresh: bool = False) -> bool:
        """Whether the blob is linked; ``fresh`` skips the cache (use it under the lock)."""
        return await self._exists(layout.layer_link_key(name, digest), fresh)

    async def put_layer(self, name: str, digest: str) -> None:
        await self._ensure(layout.layer_link_key(name, digest), digest)

    async def delete_layer(self, name: str, digest: str) -> bool:
        return await self._delete(layout.layer_link_key(name, digest))

    # ------------------------------------------------------------------ manifest revisions

    async def has_revision(self, name: str, digest: str, *, fresh: bool = False) -> bool:
        return await self._exists(layout.revision_link_key(name, digest), fresh)

    async def put_revision(self, name: str, digest: str) -> None:
        await self._ensure(layout.revision_link_key(name, digest), digest)

    async def delete_revision(self, name: str, digest: str) -> bool:
        return await self._delete(layout.revision_link_key(name, digest))

    # ------------------------------------------------------------------ tags

    def _tag_cache_key(self, name: str, tag: str) -> str:
        return f"tag:{name}:{tag}"

    async def tag_digest(self, name: str, tag: str, *, fresh: bool = False) -> str | None:
        """The digest ``tag`` points at; ``fresh`` skips the cache (use it under the lock)."""
        cache_key = self._tag_cache_key(name, tag)
        if not fresh:
            cached = parse_link(await self.cache.get(cache_key))
            if cached is not None:
                return cached
        key = layout.tag_current_key(name, tag)

        async def load() -> bytes | None:
            digest = parse_link(await self.meta.get(key))
            return None if digest is None else digest.encode()

        value = await self._read_through(cache_key, load)
        return None if value is None else value.decode()

    async def index_existing_tag(self, name: str, tag: str, digest: str) -> bool:
        """The index entry for ``digest`` of ``tag`` if the tag exists (whether it did): a
        push writes it before taking the tag's lock, so the lock is held for one write (the
        move), as pushes to one tag queue on it. A new tag's entry follows its ``current``
        link instead (:meth:`move_tag`).

        A delete of the tag between the check and the write leaves the entry without
        ``current`` until the push's move writes it (the push re-creates the tag, as it
        would after the delete); only a push that then fails leaves it so: a half-written
        tag, which ``DELETE`` and ``angos scrub`` remove.
        """
        if await self.tag_digest(name, tag) is None:
            return False
        await self._ensure(layout.tag_index_key(name, tag, digest), digest)
        return True

    async def move_tag(self, name: str, tag: str, digest: str, *, indexed: bool = False) -> None:
        """Point ``tag`` at ``digest``: its ``current`` link, then (unless ``indexed``:
        :meth:`index_existing_tag` wrote it) its index entry.

        The ``current`` link is the tag: one atomic replace moves it, so an interruption at
        any step leaves the old tag or the new one. A new tag's is written first, so a tag's
        directory exists only once it resolves (a store shows a directory only with a key
        below it): a listing lists names and reads no link. An interruption between the
        two leaves a tag without the index entry of its current digest, which nothing
        needs (gc keeps the current digest through ``current``); the next move writes it.
        """
        try:
            await self._put(layout.tag_current_key(name, tag), digest)
        finally:
            # Also when the put failed: it may have landed before the error reached us.
            await self._invalidate(self._tag_cache_key(name, tag))
        if not indexed:
            await self._ensure(layout.tag_index_key(name, tag, digest), digest)

    async def delete_tag(self, name: str, tag: str) -> bool:
        """Remove the tag, whole or half-written; whether anything of it was there.

        The index goes first and the directory with its ``current`` link last, in one
        ``delete_prefix`` (one rename on fs): until then the tag still resolves, so a
        failure at any step leaves it a tag, listed, and deleted by the next try.
        """
        prefix = layout.tag_prefix(name, tag)
        existed = bool(await self.meta.list_children(prefix, limit=1))
        try:
            await self.meta.delete_prefix(layout.tag_index_prefix(name, tag))
            await self.meta.delete_prefix(prefix)
        finally:
            await self._invalidate(self._tag_cache_key(name, tag))
        return existed

    async def delete_tag_index(self, name: str, tag: str, digest: str) -> None:
        await self.meta.delete(layout.tag_index_key(name, tag, digest))

    async def digests_under(self, prefix: str) -> list[str]:
        """The ``<alg>/<hex>/`` directories below ``prefix`` (layer and revision links,
        tag index entries, referrers), as digests; anything else there is ignored."""
        found = []
        for alg in await self.meta.list_children(prefix):
            for hexpart in await self.meta.list_children(f"{prefix}{alg}/"):
                digest = f"{alg}:{hexpart}"
                if is_digest(digest):
                    found.append(digest)
        return found

    async def tags(self, name: str) -> list[str]:
        """Every tag of the repository: its directories (one that a tag write or delete of
        an older version or of Distribution cut short, with no ``current`` link, too)."""
        return await self.meta.list_children(layout.tags_prefix(name))
