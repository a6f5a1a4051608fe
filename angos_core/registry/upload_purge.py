"""Purging abandoned upload sessions, as CNCF Distribution's ``uploadpurging`` does.

A client that starts an upload (POST, maybe some PATCHes) and never finishes it leaves the
session in the blob store: a directory on fs, objects and an open multipart upload on S3.
Every ``[maintenance.upload_purging] interval_secs`` a pass lists every session
(``BlobStore.list_uploads``) and aborts (``upload_abort``) each one that *started* more than
``age_secs`` ago, whatever it did since: the age is measured from the start, as in
Distribution, so a week-old session still receiving chunks is purged too. A session older
than ``empty_age_secs`` that holds no byte (one ``upload_size`` call, for such sessions
only) is purged as well: a client that opens sessions and never sends anything cannot keep
them for a week.

Safe with several replicas, or a replica and a client racing: ``upload_abort`` is
idempotent, a pass only aborts sessions it found, and a session is the private state of one
upload id, so two purgers aborting the same session, or a purger aborting a session whose
client commits at that moment, cost at most that one upload (the client is answered
``BLOB_UPLOAD_UNKNOWN``, exactly as if it had come back after the purge); committed blobs,
links and tags are never touched. No lock is taken.

Faults: a failed abort is logged and the pass goes on; a store that cannot be listed makes
the pass log a warning and stop, and the next one runs an interval later. Nothing here ever
stops the server.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

from angos_core.config import UploadPurgingConfig
from angos_core.errors import AngosError
from angos_core.oci.names import validate_name, validate_upload_id
from angos_core.protocols import UploadRef

log = logging.getLogger("angos.upload_purge")

#: The first pass starts this many seconds after startup, plus a random share of as many
#: again (or after one interval, if shorter): never during startup, replicas started
#: together spread out, and a short-lived process (a test's app) never lists its store.
FIRST_PASS_AFTER_SECS = 60.0


class UploadLister(Protocol):
    """What the purger needs of the (wrapped) blob store."""

    name: str

    def list_uploads(self) -> AsyncIterator[tuple[UploadRef, datetime]]: ...

    async def upload_abort(self, upload: UploadRef) -> None: ...

    async def upload_size(self, upload: UploadRef) -> int: ...


class PurgeObserver(Protocol):
    """Where the purger reports (the app's metrics)."""

    def upload_purged(self) -> None: ...

    def upload_sessions_left(self, count: int) -> None: ...


@dataclass
class PassResult:
    #: Sessions listed (those with an invalid name or id included).
    found: int = 0
    #: Aborted.
    purged: int = 0
    #: Older than the age, left alone because of ``dry_run``.
    would_purge: int = 0
    #: Older than the age, but their abort failed (tried again next pass).
    failed: int = 0
    #: Listed entries that are not sessions Angos could have made (invalid name or id).
    skipped: int = 0
    #: False if the listing failed part way: the counts cover what was listed before.
    complete: bool = True

    @property
    def left_open(self) -> int:
        return self.found - self.skipped - self.purged


def _now() -> datetime:
    return datetime.now(UTC)


def _age_text(age: timedelta) -> str:
    """``7d0h``, ``2h5m``, ``3m9s``, ``2s``: an age at a glance in the log."""
    secs = max(0, int(age.total_seconds()))
    days, rest = divmod(secs, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours}h"
    if hours:
        return f"{hours}h{minutes}m"
    return f"{minutes}m{secs}s" if minutes else f"{secs}s"


class UploadPurger:
    def __init__(
        self,
        blobs: UploadLister,
        settings: UploadPurgingConfig,
        *,
        observer: PurgeObserver | None = None,
        clock: Callable[[], datetime] = _now,
        released: Callable[[str], None] | None = None,
    ) -> None:
        self.blobs = blobs
        self.settings = settings
        self.observer = observer
        self.clock = clock
        #: Told the upload id of every session purged (the per-process session count).
        self.released = released

    async def run_pass(self) -> PassResult:
        """List every session and abort those older than the age. Never raises ``Exception``."""
        age = timedelta(seconds=self.settings.age_secs)
        empty_age = timedelta(seconds=self.settings.empty_age_secs)
        dry_run = self.settings.dry_run
        result = PassResult()
        now = self.clock()
        try:
            sessions = self.blobs.list_uploads()
            try:
                async for upload, started in sessions:
                    result.found += 1
                    try:
                        validate_name(upload.name)
                        validate_upload_id(upload.upload_id)
                    except AngosError:
                        # Never build a key from what another program left there.
                        result.skipped += 1
                        log.debug("upload purge: not a session, skipped: %r", upload)
                        continue
                    if now - started <= min(age, empty_age):
                        continue
                    why = "started"
                    if now - started <= age:
                        # Past the empty age only: one size call, for old sessions only.
                        if not await self._is_empty(upload):
                            continue
                        why = "empty, started"
                    if dry_run:
                        result.would_purge += 1
                        log.info(
                            "upload purge (dry run): would purge upload %s of repository %s, "
                            "%s %s ago",
                            upload.upload_id,
                            upload.name,
                            why,
                            _age_text(now - started),
                        )
                    elif await self._purge(upload, now - started, why):
                        result.purged += 1
                    else:
                        result.failed += 1
            finally:
                # A pass cancelled at shutdown closes the listing (and its files) at once.
                aclose = getattr(sessions, "aclose", None)
                if aclose is not None:
                    await aclose()
        except Exception as exc:  # the listing itself failed: try again next interval
            result.complete = False
            log.warning(
                "upload purge: cannot list the upload sessions of blob store %s (%s); "
                "trying again in %gs",
                self.blobs.name,
                exc,
                self.settings.interval_secs,
            )
        self._summarise(result)
        return result

    async def _is_empty(self, upload: UploadRef) -> bool:
        try:
            return await self.blobs.upload_size(upload) == 0
        except Exception:  # gone meanwhile, or unreadable: not ours to purge early
            return False

    async def _purge(self, upload: UploadRef, age: timedelta, why: str = "started") -> bool:
        try:
            await self.blobs.upload_abort(upload)
        except Exception as exc:  # one session's failure must not stop the pass
            log.warning(
                "upload purge: cannot abort upload %s of repository %s (started %s ago): %s",
                upload.upload_id,
                upload.name,
                _age_text(age),
                exc,
            )
            return False
        log.info(
            "upload purge: purged upload %s of repository %s, %s %s ago",
            upload.upload_id,
            upload.name,
            why,
            _age_text(age),
        )
        if self.released is not None:
            self.released(upload.upload_id)
        if self.observer is not None:
            self.observer.upload_purged()
        return True

    def _summarise(self, result: PassResult) -> None:
        if result.complete and self.observer is not None:
            self.observer.upload_sessions_left(result.left_open)
        log.info(
            "upload purge: %s: %d session(s) found, %d purged, %d failed, %d left open%s%s",
            "pass done" if result.complete else "pass stopped early",
            result.found,
            result.purged,
            result.failed,
            result.left_open,
            f" ({result.would_purge} would be purged: dry run)" if self.settings.dry_run else "",
            f", {result.skipped} not a session" if result.skipped else "",
        )

    async def run_forever(self, first_delay_secs: float | None = None) -> None:
        """A pass after ``first_delay_secs`` (default: random, see
        :data:`FIRST_PASS_AFTER_SECS`), then one every interval, until cancelled."""
        interval = self.settings.interval_secs
        if first_delay_secs is None:
            first_delay_secs = min(interval, FIRST_PASS_AFTER_SECS * (1 + random.random()))
        log.info(
            "upload purge: on%s; sessions older than %gs are aborted every %gs, first pass in "
            "%.1fs",
            " (dry run)" if self.settings.dry_run else "",
            self.settings.age_secs,
            interval,
            first_delay_secs,
        )
        await asyncio.sleep(first_delay_secs)
        while True:
            try:
                await self.run_pass()
            except Exception:  # pragma: no cover - run_pass catches its own; belt and braces
                log.exception("upload purge: pass failed")
            await asyncio.sleep(interval)
