"""A part being assembled, on local disk rather than in memory.

Incoming bytes of an upload collect here until they make a full part; the part is then
sent to S3 straight from the file, so each upload holds at most :data:`BUFFER_SIZE` bytes
in memory whatever the part size.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import tempfile
from typing import IO

#: Bytes gathered in memory before one write to the file (one thread hop per write).
BUFFER_SIZE = 1024 * 1024


class Spool:
    def __init__(self) -> None:
        self._file: IO[bytes] = tempfile.TemporaryFile(prefix="angos-s3-part-")  # noqa: SIM115
        self._buffer = bytearray()
        self._md5 = hashlib.md5(usedforsecurity=False)
        self.size = 0

    async def write(self, data: bytes | bytearray | memoryview) -> None:
        self._buffer += data
        self._md5.update(data)
        self.size += len(data)
        if len(self._buffer) >= BUFFER_SIZE:
            await self._flush()

    async def _flush(self) -> None:
        if self._buffer:
            data, self._buffer = bytes(self._buffer), bytearray()
            await asyncio.to_thread(self._file.write, data)

    async def body(self) -> tuple[IO[bytes], str]:
        """The file, rewound, holding exactly the spooled bytes, and their base64 MD5."""
        await self._flush()
        await asyncio.to_thread(self._file.flush)
        self._file.seek(0)
        return self._file, base64.b64encode(self._md5.digest()).decode()

    async def reset(self) -> None:
        """Empty the spool for the next part."""
        self._file.seek(0)
        await asyncio.to_thread(self._file.truncate, 0)
        self._buffer = bytearray()
        self._md5 = hashlib.md5(usedforsecurity=False)
        self.size = 0

    def close(self) -> None:
        self._file.close()
