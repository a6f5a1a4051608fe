"""Walking a metadata store's registry layout through ``list_children`` only.

What a migration or a verification visits: repositories (a directory below
``v2/repositories/`` holding ``_layers``, ``_manifests`` or ``_referrers``, nested names
included) and, in each, the ``<alg>/<hex>/link`` files of its layers, revisions, tags and
referrers. Upload sessions (``_uploads``) are never visited: they do not migrate.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from angos_core import layout
from angos_core.oci.names import NAME_RE
from angos_core.protocols import MetadataStore

#: Names per ``list_children`` call: one S3 listing page.
PAGE = 1000
_REPOSITORY_MARKERS = frozenset({"_layers", "_manifests", "_referrers"})


async def children(meta: MetadataStore, prefix: str) -> AsyncIterator[str]:
    """Every child name of the directory ``prefix``, paged, in byte order."""
    cursor: str | None = None
    while True:
        page = await meta.list_children(prefix, start_after=cursor, limit=PAGE)
        for name in page:
            yield name
        if len(page) < PAGE:
            return
        cursor = page[-1]


async def repositories(meta: MetadataStore) -> list[str]:
    """Every repository name, sorted; a directory with any registry data counts."""
    found: list[str] = []
    pending = [""]
    while pending:
        name = pending.pop()
        prefix = layout.repository_prefix(name) if name else layout.REPOSITORIES
        is_repository = False
        async for child in children(meta, prefix):
            if child in _REPOSITORY_MARKERS:
                is_repository = True
            elif not layout.is_reserved(child):
                full = f"{name}/{child}" if name else child
                if NAME_RE.fullmatch(full):
                    pending.append(full)
        if name and is_repository:
            found.append(name)
    return sorted(found)


async def linked_digests(meta: MetadataStore, prefix: str) -> list[str]:
    """The digests of the ``<prefix><alg>/<hex>/link`` files (the link itself unread)."""
    digests: list[str] = []
    async for alg in children(meta, prefix):
        if layout.is_reserved(alg):
            continue
        async for hexpart in children(meta, f"{prefix}{alg}/"):
            if not layout.is_reserved(hexpart):
                digests.append(f"{alg}:{hexpart}")
    return digests


async def tags(meta: MetadataStore, name: str) -> list[str]:
    return [t async for t in children(meta, layout.tags_prefix(name)) if not t.startswith(".")]


async def referrer_subjects(meta: MetadataStore, name: str) -> list[str]:
    """The subjects that have referrer links in repository ``name``."""
    return await linked_digests(meta, f"{layout.repository_prefix(name)}_referrers/")
