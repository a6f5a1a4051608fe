"""Hashing streams without stalling the event loop.

hashlib releases the GIL for buffers above 2 KiB, so hashing a large chunk in a worker
thread runs in parallel with the loop serving other requests.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterable, AsyncIterator

#: Chunks at least this large are hashed in a worker thread; smaller ones inline, where the
#: thread hop would cost more than the hash.
THREAD_THRESHOLD = 256 * 1024


async def update(hasher: hashlib._Hash, data: bytes) -> None:
    if len(data) >= THREAD_THRESHOLD:
        await asyncio.to_thread(hasher.update, data)
    else:
        hasher.update(data)


class HashingStream:
    """Pass chunks through while hashing them (when given a hasher) and counting bytes.

    ``started`` tells whether the consumer pulled anything, i.e. whether the source stream was
    touched (an append that failed before reading can be retried).
    """

    def __init__(self, source: AsyncIterable[bytes], hasher: hashlib._Hash | None) -> None:
        self._source = source
        self.hasher = hasher
        self.count = 0
        self.started = False

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._run()

    async def _run(self) -> AsyncIterator[bytes]:
        self.started = True
        hasher = self.hasher
        pending: asyncio.Future[None] | None = None
        try:
            async for chunk in self._source:
                if not chunk:
                    continue
                self.count += len(chunk)
                if hasher is not None:
                    # Hash chunk k in a thread while the consumer stores it; updates stay in
                    # order because chunk k+1 waits for chunk k's hash.
                    if pending is not None:
                        await pending
                        pending = None
                    if len(chunk) >= THREAD_THRESHOLD:
                        pending = asyncio.ensure_future(asyncio.to_thread(hasher.update, chunk))
                    else:
                        hasher.update(chunk)
                yield chunk
                # The consumer has it (and the hashing thread): not kept alive by this
                # frame while the source waits for the next one.
                del chunk
            if pending is not None:
                await pending
                pending = None
        finally:
            if pending is not None and not pending.done():
                # The consumer gave up: the hash is discarded, but let the thread finish.
                self.hasher = None


async def hash_stream(chunks: AsyncIterable[bytes], algorithm: str) -> tuple[str, int]:
    """Hex digest and byte count of a stream."""
    hasher = hashlib.new(algorithm)
    size = 0
    async for chunk in chunks:
        size += len(chunk)
        await update(hasher, chunk)
    return hasher.hexdigest(), size
