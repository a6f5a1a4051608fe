"""Digests spilled to temporary files, bucketed by shard, so that the garbage collector's
mark set never has to be in memory whole (docs/operations.md, "Memory").

A digest's shard is the first byte of its hex part (``00`` .. ``ff``: the fan-out of
``v2/blobs/<alg>/<xx>/``). Every record of a run (a marked digest, a listed blob, a layer
link) is appended to its shard's file; the sweep then loads one shard at a time. What a run
holds in memory is the write buffer (:data:`BUFFER_LINES` lines) plus one shard's records:
about 1/256 of the store, e.g. some 40,000 digests (a few MB) at 10 million blobs.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

SHARDS = 256
#: Lines buffered in memory across all shards before they are appended to their files.
BUFFER_LINES = 4096


def shard_of(digest: str) -> int:
    """The shard of a validated digest: its first hex byte."""
    return int(digest.partition(":")[2][:2], 16)


class Spill:
    """Records ``(digest, text)`` appended per shard, read back one shard at a time."""

    def __init__(self, directory: Path, name: str) -> None:
        self._dir = directory / name
        self._dir.mkdir()
        self._buffered: dict[int, list[str]] = {}
        self._count = 0

    def add(self, digest: str, text: str = "") -> None:
        # A digest and a repository name hold no tab or newline (both validated).
        self._buffered.setdefault(shard_of(digest), []).append(f"{digest}\t{text}\n")
        self._count += 1
        if self._count >= BUFFER_LINES:
            self.flush()

    def flush(self) -> None:
        for shard, lines in self._buffered.items():
            with open(self._dir / f"{shard:02x}", "a", encoding="utf-8") as f:
                f.writelines(lines)
        self._buffered.clear()
        self._count = 0

    def shard(self, shard: int) -> Iterator[tuple[str, str]]:
        """The records of ``shard``, in the order they were added (call after the last
        :meth:`add` of the phase)."""
        self.flush()
        path = self._dir / f"{shard:02x}"
        if not path.exists():
            return
        with open(path, encoding="utf-8") as f:
            for line in f:
                digest, _, text = line.rstrip("\n").partition("\t")
                yield digest, text


class SpillDirectory:
    """The temporary directory of one run's spills, removed when the run ends."""

    def __init__(self) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="angos-gc-")
        self.path = Path(self._tmp.name)

    def spill(self, name: str) -> Spill:
        return Spill(self.path, name)

    def close(self) -> None:
        self._tmp.cleanup()
