"""One ``upload_append``: spool the incoming bytes, ship full parts, record the result.

A full part is sent in the background while the next one spools, so the client's stream
does not stall for each part's round trip to S3; at most one part is in flight per upload
(two spool files on disk, two small buffers in memory).

What is recorded when the request ends (see :mod:`angos_s3.state`):

* normally: the parts sent, then what is left as the new tail;
* the client's stream broke: the same, so the client can resume from the size it reads;
* a part could not be sent: the parts sent before it (which hold the old tail, if any),
  and no tail; if none was sent, nothing, and the previous state stands.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterable

from angos_core.protocols import UploadRef
from angos_s3.sessions import UploadSessions
from angos_s3.spool import Spool
from angos_s3.state import Part, UploadState


class Appender:
    def __init__(self, sessions: UploadSessions, upload: UploadRef, state: UploadState) -> None:
        self.sessions = sessions
        self.upload = upload
        self.state = state
        self.part_size = sessions.part_size
        self.old_tail = state.tail_key
        self.recorded = len(state.parts)
        self.spool = Spool()
        self.spare: Spool | None = None
        self.inflight: asyncio.Task[Part] | None = None
        self.inflight_spool: Spool | None = None
        self.primed = False
        self.lost = False

    async def run(self, chunks: AsyncIterable[bytes]) -> int:
        try:
            try:
                async for chunk in chunks:
                    if not chunk:
                        continue
                    if not self.primed:
                        # Only once bytes arrive: an empty append (the body of a final PUT)
                        # neither moves the tail through this process nor rewrites the state.
                        await self.sessions.prime(self.upload, self.state, self.spool)
                        self.primed = True
                    view = memoryview(chunk)
                    while view:
                        if self.spool.size >= self.part_size:
                            await self._ship()
                        room = self.part_size - self.spool.size
                        await self.spool.write(view[:room])
                        view = view[room:]
                await self._settle()
            except BaseException:
                with contextlib.suppress(Exception):
                    await self._salvage()
                raise
            if self.primed:
                await self.sessions.save_tail(self.upload, self.state, self.spool, self.old_tail)
            return self.state.size
        finally:
            if self.inflight is not None:
                self.inflight.cancel()
                with contextlib.suppress(BaseException):
                    await self.inflight
            for spool in (self.spool, self.spare, self.inflight_spool):
                if spool is not None:
                    spool.close()

    async def _ship(self) -> None:
        """Send the full spool as the next part, in the background."""
        await self._settle()
        state = self.state
        if state.mpu_id is None:
            await self.sessions.create_multipart(self.upload, state)
        assert state.mpu_id is not None
        full, self.spool = self.spool, self.spare or Spool()
        self.spare = None
        self.inflight_spool = full
        self.inflight = asyncio.create_task(
            self.sessions.upload_part(self.upload, state.mpu_id, len(state.parts) + 1, full)
        )

    async def _settle(self) -> None:
        """Wait for the part in flight and record it."""
        if self.inflight is None:
            return
        task, self.inflight = self.inflight, None
        spool, self.inflight_spool = self.inflight_spool, None
        assert spool is not None
        try:
            part = await task
        except BaseException:
            self.lost = True
            spool.close()
            raise
        self.state.parts.append(part)
        await spool.reset()
        self.spare = spool

    async def _salvage(self) -> None:
        if not self.primed:
            return
        if not self.lost:
            with contextlib.suppress(Exception):
                await self._settle()
        sessions, state = self.sessions, self.state
        if not self.lost:
            await sessions.save_tail(self.upload, state, self.spool, self.old_tail)
        elif len(state.parts) > self.recorded:
            await sessions.save_tail(self.upload, state, None, self.old_tail)
