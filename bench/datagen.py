"""Repeatable pseudo-random blob content that never sits in memory whole.

A blob of ``size`` bytes is a sequence of 16 MiB blocks. Every block is the same PRNG buffer
(seeded) with its first 8 bytes replaced by the block counter, so blocks differ and the
stream is the same on every run, yet only one buffer is ever held. Each block is handed out
as an 8-byte header plus a memoryview of the shared buffer: nothing is copied per block.
"""

from __future__ import annotations

import hashlib
import random
import struct
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field

BLOCK = 16 * 1024 * 1024
#: Slices handed to the HTTP client; small enough to keep socket buffers moving.
PIECE = 1024 * 1024


@dataclass
class BlobStream:
    """``size`` bytes derived from ``seed``; :attr:`digest` is computed once, lazily."""

    seed: int
    size: int
    _base: bytes = field(init=False, repr=False)
    _digest: str | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self._base = random.Random(self.seed).randbytes(BLOCK)

    def pieces(self, start: int = 0, end: int | None = None) -> Iterator[bytes | memoryview]:
        """The bytes of ``[start, end)`` as zero-copy pieces of at most PIECE bytes."""
        end = self.size if end is None else min(end, self.size)
        view = memoryview(self._base)
        pos = start
        while pos < end:
            block, off = divmod(pos, BLOCK)
            block_end = min(end, (block + 1) * BLOCK)
            if off < 8:
                header = struct.pack(">Q", block)[off : min(8, off + block_end - pos)]
                yield header
                pos += len(header)
                off += len(header)
            while pos < block_end:
                n = min(PIECE, block_end - pos)
                yield view[off : off + n]
                pos += n
                off += n

    async def aiter(self, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        for piece in self.pieces(start, end):
            yield piece  # type: ignore[misc]  # aiohttp accepts any buffer

    @property
    def digest(self) -> str:
        if self._digest is None:
            h = hashlib.sha256()
            for piece in self.pieces():
                h.update(piece)
            self._digest = f"sha256:{h.hexdigest()}"
        return self._digest


def small_blob(rng: random.Random, lo: int, hi: int) -> bytes:
    """A random blob of between lo and hi bytes (small-image layers)."""
    return rng.randbytes(rng.randint(lo, hi))
