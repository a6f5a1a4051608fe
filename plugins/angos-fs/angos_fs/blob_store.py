"""Blob store ``fs``: committed blobs and upload sessions as files under ``root_dir``.

Uploads grow ``<upload prefix>/data`` by appending; committing renames that file onto the
blob's key, so a blob appears complete or not at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import os
from collections.abc import AsyncIterable, AsyncIterator, Callable
from concurrent.futures import Future
from datetime import UTC, datetime
from typing import Any

from angos_core import layout
from angos_core.errors import (
    BlobDigestMismatch,
    BlobNotFound,
    UploadNotFound,
    UploadOffsetMismatch,
)
from angos_core.protocols import UploadRef
from angos_fs import files
from angos_fs.files import BACKEND, FsBackend, unavailable

#: Bytes per read of a blob.
READ_SIZE = 1024 * 1024
#: Appended chunks are gathered into writes of about this size: few thread hops per GiB.
WRITE_BATCH = 1024 * 1024


class _Fd:
    """A file descriptor used from the I/O pool, closed only once no call still uses it.

    A task cancelled while awaiting a pool call does not stop the call; closing the fd under
    it could let the number be reused by another file or socket.
    """

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._last: Future[Any] | None = None

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        fut = files.submit(fn, self.fd, *args)
        self._last = fut
        return await asyncio.wrap_future(fut)

    def start(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        fut = files.submit(fn, self.fd, *args)
        self._last = fut
        return fut

    def close(self) -> None:
        last = self._last
        if last is None or last.done():
            os.close(self.fd)
        else:
            last.add_done_callback(lambda _f: os.close(self.fd))


class FsBlobStore(FsBackend):
    # ------------------------------------------------------------------ committed blobs

    def _blob_path(self, digest: str) -> str:
        return self.paths.path(layout.blob_data_key(digest))

    async def _stat_blob(self, digest: str) -> os.stat_result | None:
        try:
            return await files.run(os.stat, self._blob_path(digest))
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            raise unavailable(exc, f"cannot stat blob {digest}") from exc

    async def stat(self, digest: str) -> int | None:
        st = await self._stat_blob(digest)
        return None if st is None else st.st_size

    async def modified_at(self, digest: str) -> datetime | None:
        st = await self._stat_blob(digest)
        return None if st is None else datetime.fromtimestamp(st.st_mtime, UTC)

    def read(self, digest: str, offset: int = 0, length: int | None = None) -> AsyncIterator[bytes]:
        return self._read_file(self._blob_path(digest), offset, length, digest, upload=None)

    async def _read_file(
        self, path: str, offset: int, length: int | None, what: str, upload: UploadRef | None
    ) -> AsyncIterator[bytes]:
        try:
            fd = _Fd(await files.run(os.open, path, os.O_RDONLY))
        except (FileNotFoundError, NotADirectoryError):
            if upload is not None:
                raise UploadNotFound(BACKEND, f"no upload {upload.upload_id}") from None
            raise BlobNotFound(BACKEND, f"no blob {what}") from None
        except OSError as exc:
            raise unavailable(exc, f"cannot open {what}") from exc
        try:
            pos = offset
            end = None if length is None else offset + length
            while end is None or pos < end:
                want = READ_SIZE if end is None else min(READ_SIZE, end - pos)
                try:
                    data: bytes = await fd.run(os.pread, want, pos)
                except OSError as exc:
                    raise unavailable(exc, f"cannot read {what}") from exc
                if not data:
                    break
                pos += len(data)
                yield data
        finally:
            fd.close()

    def local_path(self, digest: str) -> str | None:
        path = self._blob_path(digest)
        return path if os.path.isfile(path) else None

    async def presigned_url(self, digest: str, expires_secs: int) -> str | None:
        return None

    async def delete(self, digest: str) -> bool:
        path = self._blob_path(digest)

        def delete() -> bool:
            try:
                os.unlink(path)
            except (FileNotFoundError, NotADirectoryError):
                return False
            files.prune_empty_dirs(os.path.dirname(path), self.paths.dir_path(layout.ROOT))
            return True

        try:
            return await files.run(delete)
        except OSError as exc:
            raise unavailable(exc, f"cannot delete blob {digest}") from exc

    async def list_digests(self) -> AsyncIterator[str]:
        base = self.paths.dir_path(layout.blobs_prefix())
        try:
            algorithms = await files.run(_subdirs, base)
            for alg in algorithms:
                for fanout in await files.run(_subdirs, os.path.join(base, alg)):
                    found = await files.run(_blobs_in, os.path.join(base, alg, fanout))
                    for hexpart in found:
                        yield f"{alg}:{hexpart}"
        except OSError as exc:
            raise unavailable(exc, "cannot list blobs") from exc

    async def put_blob(self, digest: str, chunks: AsyncIterable[bytes], size: int) -> bool:
        """A temporary file beside the blob's ``data`` (``.tmp-<uuid>``, which no listing
        counts), written and hashed in the I/O pool, renamed onto ``data`` only if it holds
        ``size`` bytes hashing to ``digest``; removed otherwise. A process killed part way
        leaves that temporary file, never a blob."""
        target = self._blob_path(digest)
        target_dir = os.path.dirname(target)
        tmp = os.path.join(target_dir, files.temp_name())
        algorithm, _, expected = digest.partition(":")
        hasher = hashlib.new(algorithm)
        sync, root = self.sync, self.paths.root

        def create() -> int:
            files.makedirs(target_dir, durable=sync, root=root)
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)

        def write(fd: int, data: bytes | bytearray) -> None:
            # In the pool, one write at a time: the hash sees the bytes in order.
            files.write_all(fd, data)
            hasher.update(data)

        def place() -> bool:
            if os.path.exists(target):
                return False  # a racing put or commit placed it: equal bytes
            if sync:
                files.fsync_file(tmp)
            os.replace(tmp, target)
            if sync:
                files.fsync_dir(target_dir)
            return True

        def discard() -> None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            files.prune_empty_dirs(target_dir, root)

        try:
            if await files.run(os.path.exists, target):
                return False
            fd = _Fd(await files.run(files.retry_on_pruned, create))
        except OSError as exc:
            raise unavailable(exc, f"cannot write blob {digest}") from exc
        placed = False
        try:
            written = 0
            pending: Future[Any] | None = None
            buf = bytearray()
            try:
                async for chunk in chunks:
                    written += len(chunk)
                    if written > size:
                        break
                    buf += chunk
                    if len(buf) < WRITE_BATCH:
                        continue
                    if pending is not None:
                        await asyncio.wrap_future(pending)
                    pending, buf = fd.start(write, buf), bytearray()
            finally:
                if pending is not None:
                    await asyncio.wrap_future(pending)
            if buf:
                await fd.run(write, buf)
            if written != size or hasher.hexdigest() != expected:
                raise BlobDigestMismatch(
                    BACKEND, f"the stream is not {size} bytes hashing to {digest}: not stored"
                )
            placed = await files.run(place)
            return placed
        except OSError as exc:
            raise unavailable(exc, f"cannot write blob {digest}") from exc
        finally:
            fd.close()
            if not placed:
                with contextlib.suppress(OSError):
                    await asyncio.shield(files.run(discard))

    # ------------------------------------------------------------------ uploads

    def _upload_path(self, upload: UploadRef, part: str = "data") -> str:
        return self.paths.path(layout.upload_key(upload, part))

    async def upload_start(self, upload: UploadRef) -> None:
        data = self._upload_path(upload)
        started = self._upload_path(upload, layout.STARTED_AT)
        sync = self.sync
        root = self.paths.root

        def start() -> None:
            files.makedirs(os.path.dirname(data), durable=sync, root=root)
            stamp = layout.started_at_content(datetime.now(UTC))
            for path, content in ((data, b""), (started, stamp)):
                files.write_file(path, content, sync=sync, flags=os.O_TRUNC)
            if sync:
                files.fsync_dir(os.path.dirname(data))

        try:
            await files.run(files.retry_on_pruned, start)
        except OSError as exc:
            raise unavailable(exc, f"cannot start upload {upload.upload_id}") from exc

    async def upload_size(self, upload: UploadRef) -> int:
        try:
            st = await files.run(os.stat, self._upload_path(upload))
        except (FileNotFoundError, NotADirectoryError):
            raise UploadNotFound(BACKEND, f"no upload {upload.upload_id}") from None
        except OSError as exc:
            raise unavailable(exc, f"cannot stat upload {upload.upload_id}") from exc
        return st.st_size

    async def upload_append(
        self, upload: UploadRef, offset: int, chunks: AsyncIterable[bytes]
    ) -> int:
        path = self._upload_path(upload)
        try:
            fd = _Fd(await files.run(_open_for_append, path, offset))
        except (FileNotFoundError, NotADirectoryError):
            raise UploadNotFound(BACKEND, f"no upload {upload.upload_id}") from None
        except OSError as exc:
            raise unavailable(exc, f"cannot open upload {upload.upload_id}") from exc
        size = offset
        try:
            # One write in flight while the next batch is gathered: network and disk overlap,
            # and at most two batches are in memory.
            pending: Future[Any] | None = None
            pending_len = 0
            buf = bytearray()
            try:
                async for chunk in chunks:
                    if not chunk:
                        continue
                    # A chunk of a batch's size is written as it came: no copy of its bytes.
                    batch: bytes | bytearray
                    if not buf and len(chunk) >= WRITE_BATCH:
                        batch = chunk
                    else:
                        buf += chunk
                        if len(buf) < WRITE_BATCH:
                            continue
                        batch, buf = buf, bytearray()
                    if pending is not None:
                        await asyncio.wrap_future(pending)
                        size += pending_len
                    pending, pending_len = fd.start(files.write_all, batch), len(batch)
                    # The write holds the bytes until it is done; this frame does not while
                    # it waits for the next chunk.
                    del chunk, batch
            finally:
                # Keep what arrived even if the stream broke: the size says where to resume.
                if pending is not None:
                    await asyncio.wrap_future(pending)
                    size += pending_len
                if buf:
                    await fd.run(files.write_all, buf)
                    size += len(buf)
            if self.sync:
                await fd.run(os.fsync)
        except OSError as exc:
            raise unavailable(exc, f"cannot write upload {upload.upload_id}") from exc
        finally:
            fd.close()
        return size

    def upload_read(self, upload: UploadRef) -> AsyncIterator[bytes]:
        return self._read_file(
            self._upload_path(upload), 0, None, f"upload {upload.upload_id}", upload=upload
        )

    async def upload_commit(self, upload: UploadRef, digest: str) -> None:
        source = self._upload_path(upload)
        target = self._blob_path(digest)
        upload_dir = os.path.dirname(source)
        sync = self.sync
        root = self.paths.root

        def commit() -> None:
            if not os.path.isfile(source):
                raise UploadNotFound(BACKEND, f"no upload {upload.upload_id}")
            target_dir = os.path.dirname(target)
            if not os.path.exists(target):
                if sync:
                    # The bytes before the name: appends fsync, but one cut short does not,
                    # and the commit may follow it without another append.
                    files.fsync_file(source)

                def place() -> None:
                    files.makedirs(target_dir, durable=sync, root=root)
                    # Content-addressed: replacing an equal blob a racing commit just placed
                    # is harmless, and the rename is atomic for readers.
                    os.replace(source, target)

                files.retry_on_pruned(place)
            elif sync:
                # Placed by a racing commit that may not have made it durable yet.
                files.makedirs(target_dir, durable=sync, root=root)
                files.fsync_file(target)
            if sync:
                files.fsync_dir(target_dir)
            files.remove_tree(upload_dir, ignore_errors=True)
            files.prune_empty_dirs(os.path.dirname(upload_dir), root)

        try:
            await files.run(commit)
        except OSError as exc:
            raise unavailable(exc, f"cannot commit upload {upload.upload_id} as {digest}") from exc

    async def upload_abort(self, upload: UploadRef) -> None:
        upload_dir = os.path.dirname(self._upload_path(upload))
        root = self.paths.root

        def abort() -> None:
            try:
                files.remove_tree(upload_dir)
            except FileNotFoundError:
                return
            files.prune_empty_dirs(os.path.dirname(upload_dir), root)

        try:
            await files.run(abort)
        except OSError as exc:
            raise unavailable(exc, f"cannot remove upload {upload.upload_id}") from exc

    async def list_uploads(self) -> AsyncIterator[tuple[UploadRef, datetime]]:
        # A walk of the repository directories: one scandir per directory of a name, plus
        # one per repository with sessions and one small read per session.
        base = self.paths.dir_path(layout.REPOSITORIES)
        pending = [""]
        try:
            while pending:
                name = pending.pop()
                where = os.path.join(base, name) if name else base
                children, has_uploads = await files.run(_repository_dir, where)
                pending.extend(f"{name}/{c}" if name else c for c in children)
                if not (name and has_uploads):
                    continue
                sessions = await files.run(_sessions_in, os.path.join(where, layout.UPLOADS_DIR))
                for upload_id, started in sessions:
                    yield UploadRef(name, upload_id), started
        except OSError as exc:
            raise unavailable(exc, "cannot list upload sessions") from exc


# ---------------------------------------------------------------------- pool functions


def _repository_dir(path: str) -> tuple[list[str], bool]:
    """The name components below ``path`` and whether it holds an ``_uploads`` directory."""
    children: list[str] = []
    has_uploads = False
    try:
        with os.scandir(path) as it:
            for entry in it:
                if not entry.is_dir(follow_symlinks=False):
                    continue
                if entry.name == layout.UPLOADS_DIR:
                    has_uploads = True
                elif not layout.is_reserved(entry.name):
                    children.append(entry.name)
    except (FileNotFoundError, NotADirectoryError):
        pass  # removed while we walk (the last session of a repository pruned its dirs)
    return children, has_uploads


def _sessions_in(uploads_dir: str) -> list[tuple[str, datetime]]:
    try:
        with os.scandir(uploads_dir) as it:
            ids = [e.name for e in it if e.is_dir(follow_symlinks=False)]
    except (FileNotFoundError, NotADirectoryError):
        return []
    found = []
    for upload_id in ids:
        started = _started_at(os.path.join(uploads_dir, upload_id))
        if started is not None:
            found.append((upload_id, started))
    return found


def _started_at(session_dir: str) -> datetime | None:
    """The session's recorded start, else its oldest mtime (never earlier than the start),
    else None when the session is gone."""
    try:
        with open(os.path.join(session_dir, layout.STARTED_AT), "rb") as f:
            recorded = layout.parse_started_at(f.read(100))
        if recorded is not None:
            return recorded
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        pass
    try:
        times = [os.stat(session_dir).st_mtime]
        with os.scandir(session_dir) as it:
            for entry in it:
                with contextlib.suppress(FileNotFoundError):
                    times.append(entry.stat(follow_symlinks=False).st_mtime)
    except (FileNotFoundError, NotADirectoryError):
        return None
    return datetime.fromtimestamp(min(times), UTC)


def _open_for_append(path: str, offset: int) -> int:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    try:
        # An exclusive flock for the whole append: a second append to the same session (in
        # this process or another on the same host) fails instead of interleaving bytes.
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            size = os.fstat(fd).st_size
            raise UploadOffsetMismatch(BACKEND, size, offset) from None
        size = os.fstat(fd).st_size
        if size != offset:
            raise UploadOffsetMismatch(BACKEND, size, offset)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _subdirs(path: str) -> list[str]:
    try:
        with os.scandir(path) as it:
            return sorted(
                e.name for e in it if not e.name.startswith(".") and e.is_dir(follow_symlinks=False)
            )
    except (FileNotFoundError, NotADirectoryError):
        return []


def _blobs_in(fanout_dir: str) -> list[str]:
    return [h for h in _subdirs(fanout_dir) if os.path.isfile(os.path.join(fanout_dir, h, "data"))]
