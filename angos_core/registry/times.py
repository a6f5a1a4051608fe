"""When each manifest was last pushed and last pulled: the times the retention rules see
(``image.pushed_at``, ``image.last_pulled_at``), one small object per manifest and kind under
``v2/_retention/`` (:func:`angos_core.layout.manifest_time_key`), through the metadata
protocol only, so every backend holds the same keys.

A push writes its time before it answers (one ``put``; every push of the digest rewrites
it, by tag or by digest). A pull is recorded off the request's path: ``GET`` only adds the
manifest to an in-process set, and :meth:`ManifestTimes.flush` (every
``PULL_FLUSH_SECS``, and at shutdown) writes each one once, so a manifest costs at most one
write per interval per process however often it is pulled, and a failing write fails no
pull (it is logged; the pull is recorded again at the next one).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

from angos_core import layout
from angos_core.registry.stores import Stores

log = logging.getLogger("angos.retention")

#: Seconds between two writes of the pulls recorded meanwhile.
PULL_FLUSH_SECS = 60.0
#: Distinct manifests one process remembers between flushes; pulls of more are not
#: recorded until the next flush (a bound on memory, not a limit anyone should meet).
MAX_PENDING_PULLS = 100_000
#: Pull times written at once.
FLUSH_CONCURRENCY = 16


def parse_time(raw: bytes | None) -> int | None:
    """Seconds since the epoch in a time record, or None if absent or unreadable."""
    if raw is None:
        return None
    when = layout.parse_started_at(raw)
    return None if when is None else int(when.timestamp())


class ManifestTimes:
    def __init__(self, stores: Stores) -> None:
        self.meta = stores.meta
        self._pulled: dict[tuple[str, str], datetime] = {}
        self.dropped = 0

    # ------------------------------------------------------------------ writers

    async def pushed(self, name: str, digest: str, when: datetime | None = None) -> None:
        stamp = layout.time_content(when or datetime.now(UTC))
        await self.meta.put(layout.manifest_time_key(name, layout.PUSHED, digest), stamp)

    def pulled(self, name: str, digest: str) -> None:
        """Note a pull; written by the next :meth:`flush`. Never waits, never fails."""
        if (name, digest) not in self._pulled and len(self._pulled) >= MAX_PENDING_PULLS:
            self.dropped += 1
            return
        self._pulled[(name, digest)] = datetime.now(UTC)

    async def flush(self) -> int:
        """Write the pulls noted since the last flush; how many were written."""
        batch, self._pulled = self._pulled, {}
        items = list(batch.items())
        written = 0
        for i in range(0, len(items), FLUSH_CONCURRENCY):
            chunk = items[i : i + FLUSH_CONCURRENCY]
            results = await asyncio.gather(
                *(
                    self.meta.put(
                        layout.manifest_time_key(name, layout.PULLED, digest),
                        layout.time_content(when),
                    )
                    for (name, digest), when in chunk
                ),
                return_exceptions=True,
            )
            failed = [r for r in results if isinstance(r, BaseException)]
            written += len(results) - len(failed)
            if failed:
                log.warning(
                    "pull times: %d of %d not recorded: %s", len(failed), len(chunk), failed[0]
                )
        return written

    async def flush_forever(self, interval_secs: float = PULL_FLUSH_SECS) -> None:
        """Flush every ``interval_secs`` until cancelled; once more when cancelled."""
        try:
            while True:
                await asyncio.sleep(interval_secs)
                await self.flush()
        finally:
            await asyncio.shield(self.flush())

    # ------------------------------------------------------------------ readers

    async def read(self, name: str, kind: str, digest: str) -> int | None:
        return parse_time(await self.meta.get(layout.manifest_time_key(name, kind, digest)))

    async def forget(self, name: str, digest: str) -> None:
        """After the manifest's revision is deleted: its records go too (a pull flushed
        meanwhile may leave one, which a later push of the digest overwrites)."""
        for kind in (layout.PUSHED, layout.PULLED):
            await self.meta.delete(layout.manifest_time_key(name, kind, digest))
