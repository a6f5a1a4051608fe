"""``angos prune``: apply the retention policies (:mod:`angos_core.policy.retention`) to
every repository a policy covers, beside live pushes and pulls.

Per repository:

1. Judge: every tag (``image.tag`` its name) whose ``current`` link names a revision; then
   every revision no kept tag points at, as untagged (``image.tag`` null), including those
   whose tags are about to go. Immutable tags ([global] ``immutable_tags``) are kept
   without asking the rules, and so are their manifests.
2. Protect: from the kept manifests, keep their index children, their referrers (a
   signature of a kept image stays) and, for a kept referrer, its subject, until nothing
   changes. A kept manifest whose body cannot be read stops the repository: nothing of it
   is deleted (it could have children we cannot see).
3. Untag the tags not kept, each under its lock and only if it still points where it did
   (a push moved it meanwhile: kept), then delete the manifests not kept, indexes first, as
   ``DELETE /v2/<name>/manifests/<digest>`` does, and only if no tag points at them then.

A manifest pushed during the run, or within ``min_age_secs`` before it, is never untagged
nor deleted: every push marks its digest ``recent`` before it stores anything
(:mod:`angos_core.registry.references`), and each deletion is decided under the digest's
tombstone exactly as ``angos gc``'s untagged pass decides (docs/architecture.md, "Online
garbage collection"): the push either wrote its mark before the check, and is kept, or it
waits for the tombstone and stores the manifest again after the deletion. The run holds
``gc:collector``, so a prune and a collection never run at once.

Blobs are not touched: what the deleted manifests alone referenced is reclaimed by the next
``angos gc``.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import IO, Any

from angos_core import layout
from angos_core.config import GC_MIN_AGE_SECS, PruneScheduleConfig
from angos_core.errors import AngosError, ManifestUnknown
from angos_core.oci.manifest import Manifest, parse_stored
from angos_core.policy.retention import Image, Rankings, RetentionRules, Rule, judge
from angos_core.progress import Progress
from angos_core.registry import Registry
from angos_core.registry.gc import COLLECTOR_LOCK_KEY, collector_lock

log = logging.getLogger("angos.prune")

#: Without a terminal, a progress line is logged this often.
PROGRESS_LOG_SECS = 10.0


async def _no_checkpoint(point: str, name: str) -> None:
    return None


class PruneError(AngosError):
    """The run could not start (another collection holds the lock)."""


@dataclass
class PruneResult:
    repositories: int = 0
    #: Repositories some policy covers (the others are not read).
    judged: int = 0
    tags_kept: int = 0
    manifests_kept: int = 0
    #: Kept only as an index child, a referrer or a subject of a kept manifest.
    protected: int = 0
    immutable: int = 0
    #: Rules that failed to evaluate, each keeping what it judged.
    rule_errors: int = 0
    #: Planned deletions kept because a writer pushed or tagged them meanwhile.
    kept_by_writer: int = 0
    untagged: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    #: Repositories left untouched, with why.
    skipped: dict[str, str] = field(default_factory=dict)
    #: Manifests with no push time recorded (pushed by an older Angos, or copied in):
    #: dated from this run on.
    backfilled: int = 0

    @property
    def exit_code(self) -> int:
        return 1 if self.skipped else 0

    def summary(self, dry_run: bool) -> str:
        verb = "would untag" if dry_run else "untagged"
        deleted = "would delete" if dry_run else "deleted"
        text = (
            f"prune{' (dry run)' if dry_run else ''}: {self.repositories} repositories, "
            f"{self.judged} under a retention policy; {verb} {len(self.untagged)} tags, "
            f"{deleted} {len(self.deleted)} manifests; kept {self.tags_kept} tags and "
            f"{self.manifests_kept} manifests ({self.protected} as index children, referrers "
            f"or subjects of kept ones, {self.immutable} immutable tags, {self.kept_by_writer} "
            f"pushed meanwhile, {self.rule_errors} by a failing rule)"
        )
        if self.backfilled:
            text += f"; {self.backfilled} manifests had no push time and are dated from now"
        if self.skipped:
            text += f"; {len(self.skipped)} repositories skipped: " + "; ".join(
                f"{name}: {why}" for name, why in sorted(self.skipped.items())
            )
        return text + "; the blobs they alone used are reclaimed by the next `angos gc`"

    def as_json(self, dry_run: bool) -> dict[str, Any]:
        return {
            "dry_run": dry_run,
            "repositories": self.repositories,
            "judged": self.judged,
            "untagged": self.untagged,
            "deleted": self.deleted,
            "kept": {
                "tags": self.tags_kept,
                "manifests": self.manifests_kept,
                "protected": self.protected,
                "immutable": self.immutable,
                "pushed_meanwhile": self.kept_by_writer,
                "rule_errors": self.rule_errors,
            },
            "backfilled": self.backfilled,
            "skipped": self.skipped,
        }


class _Unreadable(Exception):
    pass


class Pruner:
    def __init__(
        self,
        registry: Registry,
        rules: RetentionRules,
        *,
        dry_run: bool = False,
        min_age_secs: float = GC_MIN_AGE_SECS,
        out: Callable[[str], None] = print,
        progress: IO[str] | None = sys.stderr,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        checkpoint: Callable[[str, str], Awaitable[None]] | None = None,
    ) -> None:
        self.registry = registry
        self.rules = rules
        self.dry_run = dry_run
        self.min_age = timedelta(seconds=min_age_secs)
        self.out = out
        self.progress_stream = progress
        self.now = now
        #: Awaited at "judged" (a repository judged, before anything of it is deleted):
        #: where a test holds the run to interleave a push.
        self._checkpoint = checkpoint or _no_checkpoint
        self._started = self.now()
        self._parsed: dict[str, Manifest | None] = {}

    async def run(self) -> PruneResult:
        busy = PruneError(
            f"a garbage collection or another prune holds the lock {COLLECTOR_LOCK_KEY!r} "
            "on these stores; nothing pruned: run one at a time"
        )
        async with collector_lock(self.registry.stores.locks, busy) as lease:
            self._started = self.now()
            result = PruneResult()
            repositories = await self.registry.catalog.repositories()
            result.repositories = len(repositories)
            progress = Progress("prune", self.progress_stream, log, interval=PROGRESS_LOG_SECS)
            progress.phase("repositories", total=len(repositories), unit="repo")
            try:
                for done, name in enumerate(repositories, 1):
                    lease.check()
                    rules = self.rules.rules_for(name)
                    if rules:
                        result.judged += 1
                        await self._repository(name, rules, result)
                    progress.update(1, f"{done}/{len(repositories)} repositories (at {name})")
            finally:
                progress.close()
            return result

    # ------------------------------------------------------------------ reading

    async def _manifest(self, digest: str) -> Manifest | None:
        if digest not in self._parsed:
            body = await self.registry.manifests.body(digest)
            self._parsed[digest] = parse_stored(body) if body is not None else None
        return self._parsed[digest]

    async def _image(self, name: str, digest: str, result: PruneResult) -> Image:
        times = self.registry.times
        pushed = await times.read(name, layout.PUSHED, digest)
        if pushed is None:
            # Unknown: dated from the first run that sees it, so a rule on age can delete
            # it only that long after (never at once, for having no record).
            result.backfilled += 1
            started = int(self._started.timestamp())
            if not self.dry_run:
                await self.registry.stores.meta.create(
                    layout.manifest_time_key(name, layout.PUSHED, digest),
                    layout.time_content(self._started),
                )
                pushed = await times.read(name, layout.PUSHED, digest)
            pushed = started if pushed is None else pushed
        pulled = await times.read(name, layout.PULLED, digest) or 0
        return Image(None, pushed, pulled)

    # ------------------------------------------------------------------ one repository

    async def _repository(self, name: str, rules: tuple[Rule, ...], result: PruneResult) -> None:
        links = self.registry.links
        revisions = set(await links.digests_under(layout.revisions_prefix(name)))
        tagged: dict[str, str] = {}
        for tag in await links.tags(name):
            digest = await links.tag_digest(name, tag, fresh=True)
            if digest is not None and digest in revisions:
                tagged[tag] = digest
        images = {d: await self._image(name, d, result) for d in sorted(revisions)}
        by_tag = {
            tag: Image(tag, images[d].pushed_at, images[d].last_pulled_at)
            for tag, d in tagged.items()
        }
        rankings = Rankings.of(by_tag)
        now = int(self._started.timestamp())
        immutable = self.registry.manifests.immutable

        drop_tags: list[str] = []
        kept: set[str] = set()
        for tag, image in sorted(by_tag.items()):
            if immutable.protects(name, tag):
                result.immutable += 1
                kept.add(tagged[tag])
                continue
            verdict = judge(rules, image, rankings, now)
            result.rule_errors += verdict.error is not None
            if verdict.kept:
                kept.add(tagged[tag])
            else:
                drop_tags.append(tag)
        result.tags_kept += len(tagged) - len(drop_tags)
        for digest in sorted(revisions - kept):
            verdict = judge(rules, images[digest], rankings, now)
            result.rule_errors += verdict.error is not None
            if verdict.kept:
                kept.add(digest)
        by_rules = len(kept)
        try:
            kept = await self._protect(name, kept, revisions)
        except _Unreadable as exc:
            result.skipped[name] = str(exc)
            return
        result.manifests_kept += len(kept)
        result.protected += len(kept) - by_rules
        await self._checkpoint("judged", name)

        for tag in drop_tags:
            await self._untag(name, tag, tagged[tag], result)
        doomed = sorted(revisions - kept)
        # Indexes first: a child never goes before the index that lists it.
        indexes = [d for d in doomed if (m := await self._manifest(d)) is not None and m.is_index]
        for digest in indexes + [d for d in doomed if d not in indexes]:
            await self._delete(name, digest, result)

    async def _protect(self, name: str, kept: set[str], revisions: set[str]) -> set[str]:
        """``kept`` closed over index children, referrers and subjects within the
        repository."""
        links = self.registry.links
        kept = set(kept)
        todo = list(kept)
        while todo:
            digest = todo.pop()
            manifest = await self._manifest(digest)
            if manifest is None:
                raise _Unreadable(
                    f"manifest {digest} is kept but its body is missing or unreadable; "
                    "nothing of this repository pruned (see `angos scrub`)"
                )
            linked = [d.digest for d in manifest.manifests]
            if manifest.subject is not None:
                linked.append(manifest.subject.digest)
            linked += await links.digests_under(layout.referrers_prefix(name, digest))
            for other in linked:
                if other in revisions and other not in kept:
                    kept.add(other)
                    todo.append(other)
        return kept

    # ------------------------------------------------------------------ changes

    async def _pushed_meanwhile(self, digest: str) -> bool:
        """A push of ``digest`` began within the minimum age before this run, or since
        (its ``recent`` mark), or is checking its references now (a ``pending`` mark)."""
        since = self._started - self.min_age
        return await self.registry.references.is_marked(digest, since, refs=False)

    async def _untag(self, name: str, tag: str, digest: str, result: PruneResult) -> None:
        what = f"{name}:{tag}"
        if self.dry_run:
            if await self._pushed_meanwhile(digest):
                result.kept_by_writer += 1
                return
            self.out(f"would untag {what} ({digest})")
            result.untagged.append(what)
            return

        async def keep() -> bool:
            return await self._pushed_meanwhile(digest)

        if await self.registry.manifests.untag(name, tag, digest, keep):
            self.out(f"untagged {what} ({digest})")
            result.untagged.append(what)
        else:
            result.kept_by_writer += 1

    async def _delete(self, name: str, digest: str, result: PruneResult) -> None:
        what = f"{name}@{digest}"
        refs = self.registry.references
        if self.dry_run:
            if await self._pushed_meanwhile(digest):
                result.kept_by_writer += 1
                return
            self.out(f"would delete manifest {what}")
            result.deleted.append(what)
            return
        # As gc's untagged pass (gc.GarbageCollector._doom): the tombstone is up from
        # before the marks are read until after the deletion.
        await refs.set_tombstone(digest)
        try:
            deleted = not await self._pushed_meanwhile(
                digest
            ) and await self.registry.manifests.delete(name, digest, only_untagged=True)
        except ManifestUnknown:
            return  # deleted meanwhile (a client's DELETE): nothing left to do
        finally:
            await refs.clear_tombstone(digest)
        if deleted:
            self.out(f"deleted manifest {what}")
            result.deleted.append(what)
        else:
            result.kept_by_writer += 1


async def prune_forever(
    registry: Registry,
    rules: RetentionRules,
    settings: PruneScheduleConfig,
    paused: Callable[[], bool] = lambda: False,
) -> None:
    """``[maintenance.prune]``: a run every ``interval_secs`` (the first after one
    interval), until cancelled. A failed run (a gc holding the lock, a store failure) is
    logged and the next one runs on time. A run due while ``paused()``
    (``[maintenance.read_only]``) is skipped with a log line, as ``[maintenance.gc]``'s."""
    log.info(
        "prune: every %gs%s, min age %gs",
        settings.interval_secs,
        " (dry run)" if settings.dry_run else "",
        settings.min_age_secs,
    )
    while True:
        await asyncio.sleep(settings.interval_secs)
        if paused():
            log.info(
                "prune: skipped, the registry is read-only; next in %gs", settings.interval_secs
            )
            continue
        pruner = Pruner(
            registry,
            rules,
            dry_run=settings.dry_run,
            min_age_secs=settings.min_age_secs,
            out=log.debug,
            progress=None,
        )
        try:
            result = await pruner.run()
        except Exception as exc:
            log.warning("prune: run failed, next in %gs: %s", settings.interval_secs, exc)
            continue
        log.info("%s", result.summary(settings.dry_run))
