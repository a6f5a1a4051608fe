"""A 1 GiB blob through the real server: streamed PATCH in, GET out, byte-identical.

Both directions stream: the test never holds more than one chunk, and the server's peak RSS
(VmHWM) after the round trip shows whether it streamed too. The figure is printed on the
terminal (and recorded as a junit property) so it can be reported.
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TYPE_CHECKING

import aiohttp
import pytest
from yarl import URL

if TYPE_CHECKING:
    from tests.e2e.conftest import Registry

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

BLOB_SIZE = 1024**3
CHUNK = 1024**2
# Generous on purpose (the target is under 100 MiB): the bound must never flake, it only
# catches a server that buffers the blob.
RSS_BOUND = 200 * 1024**2


def chunk_at(block: bytes, index: int) -> bytes:
    """Chunk ``index`` of the blob: one random block, made distinct by its index."""
    return index.to_bytes(8, "big") + block[8:]


async def blob_body(block: bytes, hasher: hashlib._Hash) -> AsyncIterator[bytes]:
    for index in range(BLOB_SIZE // CHUNK):
        data = chunk_at(block, index)
        hasher.update(data)
        yield data


async def test_one_gib_blob_streamed_push_and_pull(
    fs_registry: Registry,
    tmp_path: Path,
    record_property: Callable[[str, object], None],
    capsys: pytest.CaptureFixture[str],
) -> None:
    try:
        await round_trip(fs_registry, record_property, capsys)
    finally:
        # 1 GiB on disk: do not leave it in the temp directories pytest keeps.
        for data_dir in ("registry-data", "data"):
            shutil.rmtree(tmp_path / data_dir, ignore_errors=True)


async def round_trip(
    registry: Registry,
    record_property: Callable[[str, object], None],
    capsys: pytest.CaptureFixture[str],
) -> None:
    block = hashlib.shake_256(b"angos large blob").digest(CHUNK)
    repo = "e2e/large"
    base = URL(registry.url)
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=300)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        async with http.post(base / f"v2/{repo}/blobs/uploads/") as resp:
            assert resp.status == 202, await resp.text()
            location = base.join(URL(resp.headers["Location"]))

        # No Content-Length: aiohttp sends an async generator with chunked transfer encoding,
        # as docker streams a layer.
        sent = hashlib.sha256()
        async with http.patch(
            location,
            data=blob_body(block, sent),
            headers={"Content-Type": "application/octet-stream"},
        ) as resp:
            assert resp.status == 202, await resp.text()
            assert resp.headers["Range"] == f"0-{BLOB_SIZE - 1}"
            location = base.join(URL(resp.headers["Location"]))
        digest = f"sha256:{sent.hexdigest()}"

        async with http.put(location.update_query(digest=digest)) as resp:
            assert resp.status == 201, await resp.text()
            assert resp.headers["Docker-Content-Digest"] == digest

        async with http.head(base / f"v2/{repo}/blobs/{digest}") as resp:
            assert resp.status == 200
            assert int(resp.headers["Content-Length"]) == BLOB_SIZE

        received = hashlib.sha256()
        size = 0
        async with http.get(base / f"v2/{repo}/blobs/{digest}") as resp:
            assert resp.status == 200
            async for data in resp.content.iter_chunked(CHUNK):
                received.update(data)
                size += len(data)
        assert size == BLOB_SIZE
        assert f"sha256:{received.hexdigest()}" == digest

    peak_rss = getattr(registry, "peak_rss_bytes", None)
    if peak_rss is not None:
        peak = peak_rss()
        record_property("angos_peak_rss_bytes", peak)
        with capsys.disabled():
            print(
                f"\n[angos] 1 GiB blob push+pull: server peak RSS (VmHWM) = "
                f"{peak / 1024**2:.1f} MiB"
            )
        assert peak < RSS_BOUND, f"peak RSS {peak / 1024**2:.1f} MiB: the server buffered?"
