"""The contract of :class:`~angos_core.protocols.BlobPut`, for every blob store declaring
``direct_put``. Subclass it beside :class:`BlobStoreContract`, with the same ``blob_store``
fixture (and ``big_blob_size`` above the size from which the store changes method, if it
has one: s3's part size)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator

import pytest

from angos_core.errors import BlobDigestMismatch
from angos_core.protocols import BlobPut, BlobStore
from angos_core.testing.blob_store import digest_of, listed_uploads, put_blob, read_all, stream


async def listed_digests(store: BlobStore) -> set[str]:
    return {d async for d in store.list_digests()}


class _Broken(Exception):
    """The source stream failed half way."""


class BlobPutContract:
    @pytest.fixture
    async def blob_store(self) -> AsyncIterator[BlobStore]:
        raise NotImplementedError("override the blob_store fixture: yield an opened store")
        yield  # pragma: no cover

    @pytest.fixture
    def big_blob_size(self) -> int:
        """A size that takes the store's path for big blobs (none: small is enough)."""
        return 3 * 1024 * 1024

    async def test_is_a_blob_put(self, blob_store: BlobStore) -> None:
        assert isinstance(blob_store, BlobPut)

    async def test_put_makes_the_blob_visible(self, blob_store: BlobStore) -> None:
        assert isinstance(blob_store, BlobPut)
        data = os.urandom(70_000)
        digest = digest_of(data)
        assert await blob_store.put_blob(digest, stream(data[:1000], data[1000:]), len(data))
        assert await blob_store.stat(digest) == len(data)
        assert await read_all(blob_store, digest) == data
        assert digest in await listed_digests(blob_store)
        assert await listed_uploads(blob_store) == {}

    @pytest.mark.parametrize("algorithm", ["sha256", "sha512"])
    async def test_big_blob(
        self, blob_store: BlobStore, big_blob_size: int, algorithm: str
    ) -> None:
        assert isinstance(blob_store, BlobPut)
        data = os.urandom(big_blob_size)
        digest = digest_of(data, algorithm)
        chunks = [data[i : i + 1024 * 1024] for i in range(0, len(data), 1024 * 1024)]
        assert await blob_store.put_blob(digest, stream(*chunks), len(data))
        assert await read_all(blob_store, digest) == data

    async def test_empty_blob(self, blob_store: BlobStore) -> None:
        assert isinstance(blob_store, BlobPut)
        digest = digest_of(b"")
        assert await blob_store.put_blob(digest, stream(), 0)
        assert await blob_store.stat(digest) == 0

    @pytest.mark.parametrize(
        ("wrong", "big"),
        [("bytes", False), ("bytes", True), ("size_short", False), ("size_long", True)],
        ids=["bytes-small", "bytes-big", "short-small", "long-big"],
    )
    async def test_mismatch_is_refused_and_leaves_nothing(
        self, blob_store: BlobStore, big_blob_size: int, big: bool, wrong: str
    ) -> None:
        assert isinstance(blob_store, BlobPut)
        data = os.urandom(big_blob_size if big else 5000)
        digest = digest_of(data)
        sent = {
            "bytes": data[:-1] + bytes([data[-1] ^ 1]),
            "size_short": data[:-1],
            "size_long": data + b"x",
        }[wrong]
        with pytest.raises(BlobDigestMismatch):
            await blob_store.put_blob(digest, stream(sent), len(data))
        # Nor under the digest the bytes do have.
        for d in (digest, digest_of(sent)):
            assert await blob_store.stat(d) is None
        assert await listed_digests(blob_store) == set()
        assert await listed_uploads(blob_store) == {}
        # A put with the right bytes still works afterwards.
        assert await blob_store.put_blob(digest, stream(data), len(data))
        assert await read_all(blob_store, digest) == data

    async def test_broken_stream_leaves_nothing(
        self, blob_store: BlobStore, big_blob_size: int
    ) -> None:
        assert isinstance(blob_store, BlobPut)
        data = os.urandom(big_blob_size)
        digest = digest_of(data)

        async def breaks() -> AsyncIterator[bytes]:
            yield data[: len(data) // 2]
            raise _Broken()

        with pytest.raises(_Broken):
            await blob_store.put_blob(digest, breaks(), len(data))
        assert await blob_store.stat(digest) is None
        assert await listed_digests(blob_store) == set()

    async def test_cancelled_put_leaves_nothing(self, blob_store: BlobStore) -> None:
        assert isinstance(blob_store, BlobPut)
        data = os.urandom(10_000)
        digest = digest_of(data)
        started = asyncio.Event()

        async def stalls() -> AsyncIterator[bytes]:
            yield data[:100]
            started.set()
            await asyncio.sleep(3600)
            yield data[100:]

        task = asyncio.create_task(blob_store.put_blob(digest, stalls(), len(data)))
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await blob_store.stat(digest) is None
        assert await listed_digests(blob_store) == set()

    async def test_existing_blob_is_left_alone(self, blob_store: BlobStore) -> None:
        assert isinstance(blob_store, BlobPut)
        data = b"already here"
        digest = await put_blob(blob_store, data)
        assert not await blob_store.put_blob(digest, stream(data), len(data))
        assert await read_all(blob_store, digest) == data

    async def test_concurrent_puts_of_one_digest(self, blob_store: BlobStore) -> None:
        assert isinstance(blob_store, BlobPut)
        data = os.urandom(50_000)
        digest = digest_of(data)
        results = await asyncio.gather(
            *(blob_store.put_blob(digest, stream(data[:7], data[7:]), len(data)) for _ in range(4))
        )
        assert any(results)
        assert await read_all(blob_store, digest) == data
