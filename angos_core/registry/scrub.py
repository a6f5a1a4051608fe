"""``angos scrub``: check a store for damage and repair what can be derived.

Scan (read-only, safe beside a serving registry):

1. Every blob of the blob store is hashed as it streams (never whole in memory), paced to
   ``rate_limit`` bytes per second; a blob whose bytes do not hash to its digest is corrupt.
2. Every repository of the catalog walk: each layer link needs its blob; each revision link
   needs a body that hashes to its digest and parses; each manifest's config and layers must
   be stored, intact and linked in the repository, an index's children must be revisions of
   it; each tag directory needs a ``current`` link to a present revision; each referrer link
   needs the referrer's revision.
3. What writes cut short left in a store where no listing shows it (the fs stores'
   ``.tmp-*`` files and directories, :class:`~angos_core.protocols.StoreLeftovers`), once
   ``LEFTOVER_MIN_AGE_SECS`` old.

Only states no writer passes through are findings. A push writes the blob before its link,
the body before the revision, the revision before the referrer and tag links, and a delete
removes them in the reverse order. The one exception is a tag's index entry, written just
before the tag's ``current`` link: a tag seen without one is looked at again after
``HALF_WRITTEN_SETTLE_SECS``, and only reported if it still has none.

Repair (``--repair``) runs after the scan, each finding on its own, through the registry's
services and under the locks its writers take; each re-checks the finding first and skips
it if it no longer holds, so a push racing the repair is never undone. Unlocked links (layer
and referrer links, which writers create without a lock) are checked again after their
delete and put back if what they point at arrived meanwhile. docs/operations.md ("Scrub")
lists what is repaired and how.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import IO, Any

from angos_core import layout
from angos_core.errors import BlobNotFound, BlobUnknown
from angos_core.oci import mediatypes as mt
from angos_core.oci.digest import digest_bytes
from angos_core.oci.manifest import parse_stored
from angos_core.progress import Progress
from angos_core.registry import Registry, hashing
from angos_core.registry.links import manifest_lock_key, tag_lock_key
from angos_core.registry.wrappers import WrappedBlobStore, WrappedMetadataStore

log = logging.getLogger("angos.scrub")

#: A tag seen without its ``current`` link is looked at again this long after: a push
#: writes the tag's index entry just before the link.
HALF_WRITTEN_SETTLE_SECS = 10.0
#: Without a terminal, a progress line is logged this often.
PROGRESS_LOG_SECS = 30.0
#: Blob existence answers kept per run (many manifests share their layers).
STAT_MEMO = 10_000
#: A temporary file or directory untouched this long is a leftover: a write in progress
#: keeps its own fresh, and every write gives up long before (a read timeout, a client gone).
LEFTOVER_MIN_AGE_SECS = 24 * 3600.0


class Kind(StrEnum):
    BLOB_CORRUPT = "blob_corrupt"
    LAYER_LINK_MISSING_BLOB = "layer_link_missing_blob"
    REVISION_BODY_MISSING = "revision_body_missing"
    REVISION_BODY_UNPARSABLE = "revision_body_unparsable"
    REVISION_BODY_CORRUPT = "revision_body_corrupt"
    MANIFEST_BLOB_MISSING = "manifest_blob_missing"
    MANIFEST_BLOB_CORRUPT = "manifest_blob_corrupt"
    MANIFEST_BLOB_UNLINKED = "manifest_blob_unlinked"
    MANIFEST_CHILD_MISSING = "manifest_child_missing"
    TAG_MANIFEST_MISSING = "tag_manifest_missing"
    TAG_HALF_WRITTEN = "tag_half_written"
    REFERRER_MISSING = "referrer_missing"
    LEFTOVER = "leftover"


#: What ``--repair`` does for each kind it can repair.
REPAIRS: dict[Kind, str] = {
    Kind.BLOB_CORRUPT: "delete the blob's data and its layer links",
    Kind.LAYER_LINK_MISSING_BLOB: "delete the layer link",
    Kind.MANIFEST_BLOB_UNLINKED: "link the blob into the repository",
    Kind.TAG_MANIFEST_MISSING: "delete the tag",
    Kind.TAG_HALF_WRITTEN: "delete the tag directory",
    Kind.REFERRER_MISSING: "delete the referrer link",
    Kind.LEFTOVER: "remove it",
}


@dataclass
class Finding:
    kind: Kind
    repository: str | None
    digest: str
    tag: str | None = None
    #: The manifest a blob or child belongs to, or a referrer's subject.
    manifest: str | None = None
    #: Where a leftover is (its store's name for it: the fs stores' absolute path).
    path: str | None = None
    repaired: bool = False
    #: What the repair did, would do (dry run), or why it was skipped.
    outcome: str = ""

    @property
    def repairable(self) -> bool:
        return self.kind in REPAIRS

    def describe(self) -> str:
        if self.path is not None:
            line = f"{self.kind.value}: {self.path}"
            return f"{line}: {self.outcome}" if self.outcome else line
        where = self.repository or "blob store"
        what = f"{where}:{self.tag}" if self.tag else f"{where}@{self.digest}"
        extra = f" (manifest {self.manifest})" if self.manifest else ""
        if self.tag and self.digest:
            extra += f" -> {self.digest}"
        line = f"{self.kind.value}: {what}{extra}"
        return f"{line}: {self.outcome}" if self.outcome else line

    def as_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind.value,
            "repository": self.repository,
            "digest": self.digest or None,
            "tag": self.tag,
            "manifest": self.manifest,
            "path": self.path,
            "repairable": self.repairable,
            "repaired": self.repaired,
            "outcome": self.outcome,
        }


@dataclass
class ScrubReport:
    repair: bool = False
    dry_run: bool = False
    blobs_checked: int = 0
    bytes_checked: int = 0
    repositories: int = 0
    manifests_checked: int = 0
    tags_checked: int = 0
    seconds: float = 0.0
    findings: list[Finding] = field(default_factory=list)

    @property
    def unresolved(self) -> list[Finding]:
        return [f for f in self.findings if not f.repaired]

    @property
    def exit_code(self) -> int:
        """1 while anything found stays wrong (everything, without a repair), else 0."""
        return 1 if self.unresolved else 0

    def summary(self) -> str:
        repaired = len(self.findings) - len(self.unresolved)
        mode = " (dry run)" if self.dry_run else ""
        text = (
            f"scrub{mode}: {self.blobs_checked} blobs ({self.bytes_checked} bytes) hashed, "
            f"{self.repositories} repositories, {self.manifests_checked} manifests, "
            f"{self.tags_checked} tags checked in {self.seconds:.1f}s; "
            f"{len(self.findings)} problems found"
        )
        if self.repair:
            text += f", {repaired} repaired, {len(self.unresolved)} not repaired"
        return text

    def as_json(self) -> dict[str, Any]:
        return {
            "repair": self.repair,
            "dry_run": self.dry_run,
            "blobs_checked": self.blobs_checked,
            "bytes_checked": self.bytes_checked,
            "repositories": self.repositories,
            "manifests_checked": self.manifests_checked,
            "tags_checked": self.tags_checked,
            "seconds": round(self.seconds, 3),
            "findings": [f.as_json() for f in self.findings],
            "exit_code": self.exit_code,
        }


class Pacer:
    """Holds a byte stream to ``rate`` bytes per second on average since its start."""

    def __init__(self, rate: float | None, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.clock = clock
        self.start = clock()
        self.total = 0

    async def consumed(self, n: int) -> None:
        self.total += n
        if self.rate is None:
            return
        ahead = self.start + self.total / self.rate - self.clock()
        if ahead > 0:
            await asyncio.sleep(ahead)


def _hashed_so_far(report: ScrubReport) -> str:
    return f"{report.blobs_checked} blobs ({report.bytes_checked} bytes) hashed so far"


@dataclass
class _Corrupt:
    modified_at: datetime | None
    #: Repositories with a layer link to it (filled by the walk).
    linked_in: list[str] = field(default_factory=list)


class Scrubber:
    def __init__(
        self,
        registry: Registry,
        *,
        repair: bool = False,
        dry_run: bool = False,
        rate_limit: float | None = None,
        progress: IO[str] | None = sys.stderr,
        out: Callable[[str], None] = print,
    ) -> None:
        self.registry = registry
        self.links = registry.links
        self.blobs = registry.stores.blobs
        self.meta = registry.stores.meta
        self.locks = registry.stores.locks
        self.repair_mode = repair
        self.dry_run = dry_run
        self.rate_limit = rate_limit
        self.progress_stream = progress
        self.out = out
        self._corrupt: dict[str, _Corrupt] = {}
        self._present: dict[str, bool] = {}
        self._half_written: list[tuple[str, str, float]] = []
        #: Each leftover found, and the store that holds it.
        self._leftovers: dict[str, WrappedBlobStore | WrappedMetadataStore] = {}

    # ------------------------------------------------------------------ blobs

    async def _verify(self, digest: str, pacer: Pacer, progress: Progress | None) -> bool | None:
        """Whether the blob's bytes hash to ``digest``; None if it is gone."""
        algorithm = digest.partition(":")[0]
        try:
            hasher = hashlib.new(algorithm)
        except ValueError:
            return False
        try:
            async for chunk in self.blobs.read(digest):
                await hashing.update(hasher, chunk)
                await pacer.consumed(len(chunk))
                if progress is not None:
                    progress.update(len(chunk))
        except (BlobNotFound, BlobUnknown):
            return None
        return f"{algorithm}:{hasher.hexdigest()}" == digest

    async def _scan_blobs(self, report: ScrubReport, progress: Progress) -> None:
        progress.phase("hashing blobs", unit="B", unit_scale=True)
        pacer = Pacer(self.rate_limit)
        async for digest in self.blobs.list_digests():
            before = pacer.total
            ok = await self._verify(digest, pacer, progress)
            if ok is None:
                continue
            report.blobs_checked += 1
            report.bytes_checked += pacer.total - before
            progress.update(
                0,
                lambda: (
                    f"{report.blobs_checked} blobs ({report.bytes_checked} bytes) hashed so far"
                ),
            )
            if not ok:
                self._corrupt[digest] = _Corrupt(await self.blobs.modified_at(digest))

    async def _blob_state(self, digest: str) -> str:
        """``ok``, ``corrupt`` or ``missing``."""
        if digest in self._corrupt:
            return "corrupt"
        present = self._present.get(digest)
        if present is None:
            present = await self.blobs.stat(digest) is not None
            if len(self._present) >= STAT_MEMO:
                self._present.pop(next(iter(self._present)))
            self._present[digest] = present
        return "ok" if present else "missing"

    # ------------------------------------------------------------------ repositories

    async def _scan_repository(self, name: str, report: ScrubReport) -> None:
        found = report.findings
        for digest in await self.links.digests_under(layout.layers_prefix(name)):
            corrupt = self._corrupt.get(digest)
            if corrupt is not None:
                corrupt.linked_in.append(name)
            elif await self.blobs.stat(digest) is None:
                found.append(Finding(Kind.LAYER_LINK_MISSING_BLOB, name, digest))

        revisions = await self.links.digests_under(layout.revisions_prefix(name))
        for digest in revisions:
            report.manifests_checked += 1
            await self._scan_manifest(name, digest, found)

        for tag in await self.links.tags(name):
            report.tags_checked += 1
            current = await self.links.tag_digest(name, tag, fresh=True)
            if current is None:
                self._half_written.append((name, tag, time.monotonic()))
            elif not await self.links.has_revision(name, current, fresh=True):
                found.append(Finding(Kind.TAG_MANIFEST_MISSING, name, current, tag=tag))

        root = f"{layout.repository_prefix(name)}_referrers/"
        for subject in await self.links.digests_under(root):
            prefix = layout.referrers_prefix(name, subject)
            for referrer in await self.links.digests_under(prefix):
                if not await self.links.has_revision(name, referrer, fresh=True):
                    found.append(Finding(Kind.REFERRER_MISSING, name, referrer, manifest=subject))

    async def _scan_manifest(self, name: str, digest: str, found: list[Finding]) -> None:
        # The store itself, not the in-process body cache: that would hide a lost body.
        body = await self.meta.get(layout.blob_data_key(digest))
        if body is None:
            found.append(Finding(Kind.REVISION_BODY_MISSING, name, digest))
            return
        if digest_bytes(body, digest.partition(":")[0]) != digest:
            found.append(Finding(Kind.REVISION_BODY_CORRUPT, name, digest))
            return
        manifest = parse_stored(body)
        if manifest is None:
            found.append(Finding(Kind.REVISION_BODY_UNPARSABLE, name, digest))
            return
        if manifest.is_index:
            lenient = self.registry.stores.settings.accept_index_with_missing_children
            for child in manifest.manifests:
                if lenient and child.media_type in mt.PUSHABLE:
                    continue  # allowed to arrive later ([global])
                if not await self.links.has_revision(name, child.digest, fresh=True):
                    found.append(
                        Finding(Kind.MANIFEST_CHILD_MISSING, name, child.digest, manifest=digest)
                    )
            return
        blobs = [manifest.config] if manifest.config is not None else []
        blobs += [d for d in manifest.layers if not mt.is_foreign_layer(d.media_type)]
        for blob in dict.fromkeys(d.digest for d in blobs):
            state = await self._blob_state(blob)
            if state == "corrupt":
                found.append(Finding(Kind.MANIFEST_BLOB_CORRUPT, name, blob, manifest=digest))
            elif state == "missing":
                found.append(Finding(Kind.MANIFEST_BLOB_MISSING, name, blob, manifest=digest))
            elif not await self.links.has_layer(name, blob, fresh=True):
                found.append(Finding(Kind.MANIFEST_BLOB_UNLINKED, name, blob, manifest=digest))

    async def _settle_half_written(self, found: list[Finding]) -> None:
        for name, tag, seen in self._half_written:
            wait = seen + HALF_WRITTEN_SETTLE_SECS - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            if await self._is_half_written(name, tag):
                found.append(Finding(Kind.TAG_HALF_WRITTEN, name, "", tag=tag))

    async def _is_half_written(self, name: str, tag: str) -> bool:
        if await self.links.tag_digest(name, tag, fresh=True) is not None:
            return False
        return bool(await self.meta.list_children(layout.tag_prefix(name, tag), limit=1))

    def _blob_findings(self, report: ScrubReport) -> None:
        """Corrupt blobs, known once the walk has said which are manifest bodies."""
        # A corrupt blob that is a revision's corrupt body (one file when fs holds both) is
        # reported once, by the revision check, and never deleted: the revision needs it
        # pushed again. A corrupt blob-store copy of an intact body is a blob like any other.
        bodies = {f.digest for f in report.findings if f.kind is Kind.REVISION_BODY_CORRUPT}
        for digest in self._corrupt:
            if digest in bodies:
                continue
            report.findings.append(Finding(Kind.BLOB_CORRUPT, None, digest))

    # ------------------------------------------------------------------ leftovers

    async def _scan_leftovers(self, found: list[Finding]) -> None:
        # Both stores on one fs root name each leftover alike: reported once.
        for store in (self.blobs, self.meta):
            for leftover in await store.leftovers(LEFTOVER_MIN_AGE_SECS):
                if leftover not in self._leftovers:
                    self._leftovers[leftover] = store
                    found.append(Finding(Kind.LEFTOVER, None, "", path=leftover))

    # ------------------------------------------------------------------ run

    async def scan(self) -> ScrubReport:
        report = ScrubReport(repair=self.repair_mode, dry_run=self.dry_run)
        started = time.monotonic()
        progress = Progress("scrub", self.progress_stream, log, interval=PROGRESS_LOG_SECS)
        try:
            await self._scan_blobs(report, progress)
            repositories = await self.registry.catalog.repositories()
            report.repositories = len(repositories)
            progress.phase("checking repositories", total=len(repositories), unit="repo")
            for i, name in enumerate(repositories, 1):
                await self._scan_repository(name, report)
                progress.update(1, f"{i}/{len(repositories)} repositories checked")
            self._blob_findings(report)
            await self._scan_leftovers(report.findings)
            await self._settle_half_written(report.findings)
        finally:
            progress.close()
        report.seconds = time.monotonic() - started
        return report

    async def run(self) -> ScrubReport:
        report = await self.scan()
        if self.repair_mode:
            started = time.monotonic() - report.seconds
            for finding in report.findings:
                await self.repair(finding)
            report.seconds = time.monotonic() - started
        for finding in report.findings:
            self.out(finding.describe())
        return report

    # ------------------------------------------------------------------ repair

    async def repair(self, finding: Finding) -> None:
        """Repair one finding if it is repairable and still holds; sets its outcome."""
        action = REPAIRS.get(finding.kind)
        if action is None:
            finding.outcome = "not repairable: " + _WHY_NOT.get(finding.kind, "")
            return
        if self.dry_run:
            finding.outcome = f"would {action}"
            return
        handler = {
            Kind.BLOB_CORRUPT: self._repair_corrupt_blob,
            Kind.LAYER_LINK_MISSING_BLOB: self._repair_layer_link,
            Kind.MANIFEST_BLOB_UNLINKED: self._repair_unlinked,
            Kind.TAG_MANIFEST_MISSING: self._repair_tag,
            Kind.TAG_HALF_WRITTEN: self._repair_half_written,
            Kind.REFERRER_MISSING: self._repair_referrer,
            Kind.LEFTOVER: self._repair_leftover,
        }[finding.kind]
        skipped = await handler(finding)
        finding.repaired = True
        finding.outcome = f"skipped: {skipped}" if skipped else f"repaired: {action}"

    async def _unlink_missing(self, name: str, digest: str) -> None:
        """Drop a layer link to a blob that is not stored, through the blob delete path.

        Writers create layer links without a lock, after the blob: if the blob is stored
        again once the link is gone, a push raced us and the link goes back.
        """
        try:
            await self.registry.blobs.delete(name, digest)
        except BlobUnknown:
            return
        if await self.blobs.stat(digest) is not None:
            await self.links.put_layer(name, digest)

    async def _repair_layer_link(self, finding: Finding) -> str | None:
        assert finding.repository is not None
        if await self.blobs.stat(finding.digest) is not None:
            return "the blob is stored again"
        await self._unlink_missing(finding.repository, finding.digest)
        return None

    async def _repair_corrupt_blob(self, finding: Finding) -> str | None:
        digest = finding.digest
        corrupt = self._corrupt[digest]
        # Again, just before the delete: a push may have written good bytes since.
        if await self.blobs.modified_at(digest) != corrupt.modified_at:
            return "the blob was written again since the scan"
        ok = await self._verify(digest, Pacer(self.rate_limit), None)
        if ok is None:
            return "the blob is gone"
        if ok:
            return "the blob now matches its digest"
        if await self.blobs.modified_at(digest) != corrupt.modified_at:
            return "the blob was written again since the scan"
        await self.blobs.delete(digest)
        for name in corrupt.linked_in:
            await self._unlink_missing(name, digest)
        return None

    async def _repair_unlinked(self, finding: Finding) -> str | None:
        name = finding.repository
        assert name is not None and finding.manifest is not None
        if not await self.links.has_revision(name, finding.manifest, fresh=True):
            return "the manifest is gone"
        if await self.blobs.stat(finding.digest) is None:
            return "the blob is gone"
        await self.links.put_layer(name, finding.digest)
        return None

    async def _repair_tag(self, finding: Finding) -> str | None:
        name, tag = finding.repository, finding.tag
        assert name is not None and tag is not None
        # The keys a push to this tag and a delete of this manifest take.
        keys = [manifest_lock_key(name, finding.digest), tag_lock_key(name, tag)]
        async with self.locks.acquire(keys) as lease:
            current = await self.links.tag_digest(name, tag, fresh=True)
            if current != finding.digest:
                return "the tag was moved since the scan"
            if await self.links.has_revision(name, current, fresh=True):
                return "the manifest is present again"
            lease.check()
            await self.links.delete_tag(name, tag)
        return None

    async def _repair_half_written(self, finding: Finding) -> str | None:
        name, tag = finding.repository, finding.tag
        assert name is not None and tag is not None
        async with self.locks.acquire([tag_lock_key(name, tag)]) as lease:
            if not await self._is_half_written(name, tag):
                return "the tag was written since the scan"
            lease.check()
            await self.links.delete_tag(name, tag)
        return None

    async def _repair_referrer(self, finding: Finding) -> str | None:
        name, subject, referrer = finding.repository, finding.manifest, finding.digest
        assert name is not None and subject is not None
        key = layout.referrer_link_key(name, subject, referrer)
        # The key a delete of the referrer takes (it deletes this link).
        async with self.locks.acquire([manifest_lock_key(name, referrer)]) as lease:
            if await self.links.has_revision(name, referrer, fresh=True):
                return "the referrer is present again"
            lease.check()
            await self.meta.delete(key)
            # A push links its revision, then creates this link, without a lock.
            if await self.links.has_revision(name, referrer, fresh=True):
                await self.meta.create(key, layout.link_content(referrer))
        return None

    async def _repair_leftover(self, finding: Finding) -> str | None:
        assert finding.path is not None
        store = self._leftovers[finding.path]
        if not await store.remove_leftover(finding.path, LEFTOVER_MIN_AGE_SECS):
            return "no longer a leftover"
        return None


_WHY_NOT: dict[Kind, str] = {
    Kind.REVISION_BODY_MISSING: "the manifest's bytes are lost; push it again",
    Kind.REVISION_BODY_UNPARSABLE: "the manifest's bytes are damaged; push it again",
    Kind.REVISION_BODY_CORRUPT: "the manifest's bytes are damaged; push it again",
    Kind.MANIFEST_BLOB_MISSING: "the blob's bytes are lost; push the image again",
    Kind.MANIFEST_BLOB_CORRUPT: "the blob's bytes are damaged; push the image again",
    Kind.MANIFEST_CHILD_MISSING: "push the child manifest again",
}
