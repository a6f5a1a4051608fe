"""The contract every blob store passes. Subclass it and override ``blob_store``."""

from __future__ import annotations

import asyncio
import hashlib
import os
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from angos_core.errors import BlobNotFound, UploadNotFound, UploadOffsetMismatch
from angos_core.protocols import BlobStore, UploadRef


def digest_of(data: bytes, algorithm: str = "sha256") -> str:
    return f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"


def new_upload(name: str = "contract/repo") -> UploadRef:
    return UploadRef(name, str(uuid.uuid4()))


async def stream(*chunks: bytes) -> AsyncIterator[bytes]:
    for chunk in chunks:
        await asyncio.sleep(0)
        yield chunk


async def read_all(
    store: BlobStore, digest: str, offset: int = 0, length: int | None = None
) -> bytes:
    return b"".join([piece async for piece in store.read(digest, offset, length)])


async def listed_uploads(store: BlobStore) -> dict[UploadRef, datetime]:
    """``list_uploads`` as a dict; fails if a session is listed twice."""
    found: dict[UploadRef, datetime] = {}
    async for upload, started in store.list_uploads():
        assert upload not in found, f"{upload} listed twice"
        found[upload] = started
    return found


#: How far a listed start time may be from the clock around ``upload_start`` (stores record
#: whole seconds, and a remote store's clock is not ours).
START_TIME_TOLERANCE = timedelta(seconds=5)


async def upload_bytes(store: BlobStore, upload: UploadRef) -> bytes:
    return b"".join([piece async for piece in store.upload_read(upload)])


async def put_blob(store: BlobStore, data: bytes, algorithm: str = "sha256") -> str:
    """Upload ``data`` in one append and commit it; return its digest."""
    upload = new_upload()
    await store.upload_start(upload)
    await store.upload_append(upload, 0, stream(data))
    digest = digest_of(data, algorithm)
    await store.upload_commit(upload, digest)
    return digest


class _Broken(Exception):
    """The client's stream failed half way."""


class BlobStoreContract:
    """Behaviour every :class:`~angos_core.protocols.BlobStore` must have.

    Override the ``blob_store`` fixture to yield an opened, empty store and close it after.
    """

    @pytest.fixture
    async def blob_store(self) -> AsyncIterator[BlobStore]:
        raise NotImplementedError("override the blob_store fixture: yield an opened store")
        yield  # pragma: no cover

    # ------------------------------------------------------------------ basics

    async def test_is_a_blob_store(self, blob_store: BlobStore) -> None:
        assert isinstance(blob_store, BlobStore)
        assert isinstance(blob_store.name, str) and blob_store.name
        await blob_store.health()

    async def test_unknown_blob(self, blob_store: BlobStore) -> None:
        digest = digest_of(b"never stored")
        assert await blob_store.stat(digest) is None
        assert blob_store.local_path(digest) is None
        with pytest.raises(BlobNotFound) as info:
            await read_all(blob_store, digest)
        assert info.value.backend == blob_store.name
        assert await blob_store.delete(digest) is False

    # ------------------------------------------------------------------ upload sessions

    async def test_new_upload_is_empty(self, blob_store: BlobStore) -> None:
        upload = new_upload()
        await blob_store.upload_start(upload)
        assert await blob_store.upload_size(upload) == 0
        assert await upload_bytes(blob_store, upload) == b""

    async def test_appends_accumulate(self, blob_store: BlobStore) -> None:
        upload = new_upload()
        await blob_store.upload_start(upload)
        assert await blob_store.upload_append(upload, 0, stream(b"abc", b"", b"de")) == 5
        assert await blob_store.upload_size(upload) == 5
        assert await blob_store.upload_append(upload, 5, stream(b"fgh")) == 8
        assert await blob_store.upload_append(upload, 8, stream()) == 8
        assert await blob_store.upload_size(upload) == 8
        assert await upload_bytes(blob_store, upload) == b"abcdefgh"

    async def test_many_small_chunks_keep_their_order(self, blob_store: BlobStore) -> None:
        chunks = [bytes([i % 251]) * (i % 97 + 1) for i in range(2000)]
        upload = new_upload()
        await blob_store.upload_start(upload)
        size = await blob_store.upload_append(upload, 0, stream(*chunks))
        data = b"".join(chunks)
        assert size == len(data)
        assert await upload_bytes(blob_store, upload) == data

    @pytest.mark.parametrize("wrong_offset", [0, 2, 4, 100])  # below and beyond the end (3)
    async def test_wrong_offset_appends_nothing(
        self, blob_store: BlobStore, wrong_offset: int
    ) -> None:
        upload = new_upload()
        await blob_store.upload_start(upload)
        await blob_store.upload_append(upload, 0, stream(b"abc"))
        with pytest.raises(UploadOffsetMismatch) as info:
            await blob_store.upload_append(upload, wrong_offset, stream(b"XYZ"))
        assert info.value.backend == blob_store.name
        assert info.value.expected == 3
        assert info.value.actual == wrong_offset
        assert await blob_store.upload_size(upload) == 3
        assert await upload_bytes(blob_store, upload) == b"abc"
        # The session is still usable at the right offset.
        assert await blob_store.upload_append(upload, 3, stream(b"d")) == 4
        assert await upload_bytes(blob_store, upload) == b"abcd"

    async def test_broken_stream_keeps_earlier_bytes(self, blob_store: BlobStore) -> None:
        upload = new_upload()
        await blob_store.upload_start(upload)
        await blob_store.upload_append(upload, 0, stream(b"first-"))

        async def breaks() -> AsyncIterator[bytes]:
            yield b"second-"
            raise _Broken()

        with pytest.raises(_Broken):
            await blob_store.upload_append(upload, 6, breaks())
        # The bytes received may or may not have been kept; the earlier ones are intact and
        # the client resumes from the reported size.
        size = await blob_store.upload_size(upload)
        assert size in (6, 13)
        data = await upload_bytes(blob_store, upload)
        assert data == b"first-second-"[:size]
        rest = b"first-second-third"[size:]
        assert await blob_store.upload_append(upload, size, stream(rest)) == 18
        digest = digest_of(b"first-second-third")
        await blob_store.upload_commit(upload, digest)
        assert await read_all(blob_store, digest) == b"first-second-third"

    async def test_unknown_upload(self, blob_store: BlobStore) -> None:
        upload = new_upload()
        with pytest.raises(UploadNotFound) as info:
            await blob_store.upload_size(upload)
        assert info.value.backend == blob_store.name
        with pytest.raises(UploadNotFound):
            await blob_store.upload_append(upload, 0, stream(b"x"))
        with pytest.raises(UploadNotFound):
            await upload_bytes(blob_store, upload)
        with pytest.raises(UploadNotFound):
            await blob_store.upload_commit(upload, digest_of(b""))
        await blob_store.upload_abort(upload)  # idempotent, even for a session never started

    async def test_sessions_are_independent(self, blob_store: BlobStore) -> None:
        one, two = new_upload("contract/one"), new_upload("contract/one")
        other_repo = UploadRef("contract/two", one.upload_id)
        for upload in (one, two, other_repo):
            await blob_store.upload_start(upload)
        await blob_store.upload_append(one, 0, stream(b"1111"))
        await blob_store.upload_append(two, 0, stream(b"22"))
        await blob_store.upload_append(other_repo, 0, stream(b"333"))
        await blob_store.upload_append(one, 4, stream(b"1"))
        assert await upload_bytes(blob_store, one) == b"11111"
        assert await upload_bytes(blob_store, two) == b"22"
        assert await upload_bytes(blob_store, other_repo) == b"333"
        await blob_store.upload_abort(two)
        assert await upload_bytes(blob_store, one) == b"11111"
        assert await blob_store.upload_size(other_repo) == 3

    # ------------------------------------------------------------------ commit

    async def test_commit_makes_the_blob_visible_and_ends_the_session(
        self, blob_store: BlobStore
    ) -> None:
        data = b"hello blob" * 1000
        digest = digest_of(data)
        upload = new_upload()
        await blob_store.upload_start(upload)
        await blob_store.upload_append(upload, 0, stream(data[:100], data[100:]))
        assert await blob_store.stat(digest) is None  # nothing visible before the commit
        await blob_store.upload_commit(upload, digest)
        assert await blob_store.stat(digest) == len(data)
        assert await read_all(blob_store, digest) == data
        assert digest in [d async for d in blob_store.list_digests()]
        with pytest.raises(UploadNotFound):
            await blob_store.upload_size(upload)
        with pytest.raises(UploadNotFound):
            await blob_store.upload_commit(upload, digest)
        await blob_store.upload_abort(upload)  # ending an ended session is harmless
        assert await read_all(blob_store, digest) == data

    async def test_commit_of_an_existing_blob_discards_the_session(
        self, blob_store: BlobStore
    ) -> None:
        data = b"same content"
        digest = await put_blob(blob_store, data)
        upload = new_upload()
        await blob_store.upload_start(upload)
        await blob_store.upload_append(upload, 0, stream(data))
        await blob_store.upload_commit(upload, digest)
        assert await read_all(blob_store, digest) == data
        assert await blob_store.stat(digest) == len(data)
        with pytest.raises(UploadNotFound):
            await blob_store.upload_size(upload)
        assert [d async for d in blob_store.list_digests()].count(digest) == 1

    async def test_concurrent_commits_of_one_digest(self, blob_store: BlobStore) -> None:
        data = os.urandom(300_000)
        digest = digest_of(data)
        uploads = [new_upload() for _ in range(6)]
        for upload in uploads:
            await blob_store.upload_start(upload)
            await blob_store.upload_append(upload, 0, stream(data))
        await asyncio.gather(*(blob_store.upload_commit(u, digest) for u in uploads))
        assert await read_all(blob_store, digest) == data
        for upload in uploads:
            with pytest.raises(UploadNotFound):
                await blob_store.upload_size(upload)

    async def test_readers_never_see_a_partial_blob(self, blob_store: BlobStore) -> None:
        data = os.urandom(2 * 1024 * 1024 + 17)
        digest = digest_of(data)
        upload = new_upload()
        await blob_store.upload_start(upload)
        await blob_store.upload_append(upload, 0, stream(data))
        seen: set[int | None] = set()

        async def watch() -> None:
            while (size := await blob_store.stat(digest)) is None:
                seen.add(size)
                await asyncio.sleep(0)
            seen.add(size)

        watcher = asyncio.create_task(watch())
        await asyncio.sleep(0)
        await blob_store.upload_commit(upload, digest)
        await asyncio.wait_for(watcher, 30)
        assert seen <= {None, len(data)}
        assert await read_all(blob_store, digest) == data

    async def test_zero_byte_blob(self, blob_store: BlobStore) -> None:
        digest = digest_of(b"")
        upload = new_upload()
        await blob_store.upload_start(upload)
        await blob_store.upload_commit(upload, digest)
        assert await blob_store.stat(digest) == 0
        assert await read_all(blob_store, digest) == b""
        assert await read_all(blob_store, digest, 0, 0) == b""
        assert await blob_store.delete(digest) is True
        assert await blob_store.stat(digest) is None

    async def test_sha512_blob(self, blob_store: BlobStore) -> None:
        data = b"sha512 content"
        digest = await put_blob(blob_store, data, "sha512")
        assert digest.startswith("sha512:")
        assert await blob_store.stat(digest) == len(data)
        assert await read_all(blob_store, digest) == data
        assert digest in [d async for d in blob_store.list_digests()]

    # ------------------------------------------------------------------ reading

    @pytest.mark.parametrize(
        ("offset", "length"),
        [(0, None), (0, 1), (1, None), (5, 10), (99, 1), (0, 100), (50, 50), (10, 0), (100, 0)],
    )
    async def test_read_ranges(
        self, blob_store: BlobStore, offset: int, length: int | None
    ) -> None:
        data = bytes(range(100))
        digest = await put_blob(blob_store, data)
        end = None if length is None else offset + length
        assert await read_all(blob_store, digest, offset, length) == data[offset:end]

    async def test_large_blob_streams_in_pieces(self, blob_store: BlobStore) -> None:
        data = os.urandom(5 * 1024 * 1024 + 3)
        digest = await put_blob(blob_store, data)
        pieces = [p async for p in blob_store.read(digest)]
        assert b"".join(pieces) == data
        # Streamed, not loaded whole.
        assert max(len(p) for p in pieces) < len(data)
        tail = await read_all(blob_store, digest, len(data) - 1_500_000, 1_000_000)
        assert tail == data[len(data) - 1_500_000 : len(data) - 500_000]

    async def test_abandoned_read_is_harmless(self, blob_store: BlobStore) -> None:
        data = os.urandom(3 * 1024 * 1024)
        digest = await put_blob(blob_store, data)
        reader = blob_store.read(digest)
        first = await reader.__anext__()
        assert data.startswith(first)
        aclose = getattr(reader, "aclose", None)
        if aclose is not None:
            await aclose()
        assert await read_all(blob_store, digest) == data

    async def test_local_path_and_presigned_url(self, blob_store: BlobStore) -> None:
        data = b"served directly"
        digest = await put_blob(blob_store, data)
        path = blob_store.local_path(digest)
        if path is not None:
            with open(path, "rb") as f:  # noqa: ASYNC230 - a tiny file, test only
                assert f.read() == data
        url = await blob_store.presigned_url(digest, 60)
        assert url is None or isinstance(url, str)

    # ------------------------------------------------------------------ delete and list

    async def test_delete(self, blob_store: BlobStore) -> None:
        keep = await put_blob(blob_store, b"keep me")
        gone = await put_blob(blob_store, b"delete me")
        assert await blob_store.delete(gone) is True
        assert await blob_store.stat(gone) is None
        assert blob_store.local_path(gone) is None
        with pytest.raises(BlobNotFound):
            await read_all(blob_store, gone)
        assert await blob_store.delete(gone) is False
        assert await read_all(blob_store, keep) == b"keep me"
        # A deleted blob can be uploaded again.
        assert await put_blob(blob_store, b"delete me") == gone
        assert await read_all(blob_store, gone) == b"delete me"

    async def test_modified_at(self, blob_store: BlobStore) -> None:
        absent = digest_of(b"never stored")
        assert await blob_store.modified_at(absent) is None
        before = datetime.now(UTC) - timedelta(minutes=5)  # clock skew with a remote store
        digest = await put_blob(blob_store, b"dated")
        when = await blob_store.modified_at(digest)
        assert when is not None and when.tzinfo is not None
        assert before <= when <= datetime.now(UTC) + timedelta(minutes=5)
        await blob_store.delete(digest)
        assert await blob_store.modified_at(digest) is None

    async def test_list_digests(self, blob_store: BlobStore) -> None:
        assert [d async for d in blob_store.list_digests()] == []
        expected = {await put_blob(blob_store, f"blob {i}".encode()) for i in range(12)}
        expected.add(await put_blob(blob_store, b"long", "sha512"))
        pending = new_upload()
        await blob_store.upload_start(pending)
        await blob_store.upload_append(pending, 0, stream(b"not committed"))
        listed = [d async for d in blob_store.list_digests()]
        assert len(listed) == len(expected)
        assert set(listed) == expected
        removed = next(iter(expected))
        await blob_store.delete(removed)
        assert {d async for d in blob_store.list_digests()} == expected - {removed}

    async def test_abort(self, blob_store: BlobStore) -> None:
        committed = await put_blob(blob_store, b"committed")
        upload = new_upload()
        await blob_store.upload_start(upload)
        await blob_store.upload_append(upload, 0, stream(b"in progress"))
        await blob_store.upload_abort(upload)
        with pytest.raises(UploadNotFound):
            await blob_store.upload_size(upload)
        with pytest.raises(UploadNotFound):
            await blob_store.upload_append(upload, 11, stream(b"more"))
        await blob_store.upload_abort(upload)
        assert await read_all(blob_store, committed) == b"committed"

    # ------------------------------------------------------------------ listing sessions

    async def test_empty_store_lists_no_uploads(self, blob_store: BlobStore) -> None:
        assert await listed_uploads(blob_store) == {}
        await put_blob(blob_store, b"a committed blob is not a session")
        assert await listed_uploads(blob_store) == {}

    async def test_started_upload_is_listed_with_its_start_time(
        self, blob_store: BlobStore
    ) -> None:
        before = datetime.now(UTC)
        empty, written = new_upload(), new_upload()
        await blob_store.upload_start(empty)
        await blob_store.upload_start(written)
        await blob_store.upload_append(written, 0, stream(b"some bytes"))
        found = await listed_uploads(blob_store)
        after = datetime.now(UTC)
        assert set(found) == {empty, written}
        for started in found.values():
            assert isinstance(started, datetime)
            assert started.utcoffset() == timedelta(0)  # aware, UTC
            assert before - START_TIME_TOLERANCE <= started <= after + START_TIME_TOLERANCE

    async def test_ended_uploads_are_not_listed(self, blob_store: BlobStore) -> None:
        committed, aborted, open_ = new_upload(), new_upload(), new_upload()
        for upload in (committed, aborted, open_):
            await blob_store.upload_start(upload)
            await blob_store.upload_append(
                upload, 0, stream(b"data of " + upload.upload_id.encode())
            )
        await blob_store.upload_commit(
            committed, digest_of(b"data of " + committed.upload_id.encode())
        )
        await blob_store.upload_abort(aborted)
        assert set(await listed_uploads(blob_store)) == {open_}
        await blob_store.upload_abort(open_)
        assert await listed_uploads(blob_store) == {}

    async def test_uploads_in_nested_names_are_listed(self, blob_store: BlobStore) -> None:
        uploads = [
            new_upload("top"),
            new_upload("a/b"),
            new_upload("a/b/c"),
            new_upload("a/b/c"),
            new_upload("x.y/z-1/deeper_still/name__five"),
        ]
        # The same upload id in two repositories is two sessions.
        uploads.append(UploadRef("a", uploads[0].upload_id))
        for upload in uploads:
            await blob_store.upload_start(upload)
        assert set(await listed_uploads(blob_store)) == set(uploads)

    async def test_ending_sessions_while_listing(self, blob_store: BlobStore) -> None:
        """What the purger does: abort each session as it is listed."""
        uploads = {new_upload(f"contract/r{i % 3}") for i in range(7)}
        for upload in uploads:
            await blob_store.upload_start(upload)
            await blob_store.upload_append(upload, 0, stream(b"x"))
        seen = set()
        async for upload, _started in blob_store.list_uploads():
            seen.add(upload)
            await blob_store.upload_abort(upload)
        assert seen == uploads
        assert await listed_uploads(blob_store) == {}
