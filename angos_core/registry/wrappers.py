"""One wrapper per backend kind, applied once in core (as CNCF Distribution's ``base.Base``).

Each wrapper:

* turns anything that is not an Angos error (``OSError``, a client library's exception, a
  timeout) into :class:`BackendUnavailable` / :class:`BackendError` carrying the backend's
  name, so the HTTP layer answers 503 and never a traceback;
* reports every call to an :data:`Observer` (the seam for metrics: kind, backend, operation,
  seconds, and the error class name or None);
* for the cache only: swallows every failure and reports a miss, because a cache is
  best-effort and must never fail a request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import datetime
from typing import Any, TypeVar

from angos_core.errors import AngosError, BackendError, BackendUnavailable, LockUnavailable
from angos_core.protocols import (
    BlobPut,
    BlobStore,
    BlockingLister,
    Cache,
    Children,
    Lease,
    LockProvider,
    MetadataBlockingList,
    MetadataStore,
    StoreLeftovers,
    UploadRef,
)

log = logging.getLogger("angos.backend")

T = TypeVar("T")

#: ``observer(kind, backend, operation, seconds, error_name_or_None)``; must not raise.
Observer = Callable[[str, str, str, float, str | None], None]


def _no_observer(kind: str, backend: str, op: str, secs: float, error: str | None) -> None:
    return None


def translate(backend: str, op: str, exc: BaseException) -> BaseException:
    """The exception to raise for ``exc`` raised by backend ``backend`` during ``op``.

    Non-``Exception`` signals (cancellation, ``GeneratorExit`` when a consumer closes a
    stream early, ``KeyboardInterrupt``) are control flow, not backend failures.
    """
    if isinstance(exc, AngosError) or not isinstance(exc, Exception):
        return exc
    if isinstance(exc, OSError) and exc.filename is not None:
        # The file name is a local path: the log gets it, a client only the reason.
        reason = f"{op} failed: {type(exc).__name__}: {exc.strerror or exc.errno}"
        return BackendUnavailable(backend, reason, log_detail=f"path {exc.filename}")
    if isinstance(exc, TimeoutError | ConnectionError | OSError):
        return BackendUnavailable(backend, f"{op} failed: {type(exc).__name__}: {exc}")
    return BackendError(backend, f"{op} failed: {type(exc).__name__}: {exc}")


class _Wrapped:
    kind = "backend"

    def __init__(self, inner: Any, observer: Observer | None = None) -> None:
        self.inner = inner
        self.name: str = getattr(inner, "name", type(inner).__name__)
        self._observe = observer or _no_observer

    async def _call(self, op: str, fn: Callable[..., Awaitable[T]], *args: Any, **kw: Any) -> T:
        start = time.perf_counter()
        try:
            result = await fn(*args, **kw)
        except BaseException as exc:
            self._observe(self.kind, self.name, op, time.perf_counter() - start, type(exc).__name__)
            err = translate(self.name, op, exc)
            if err is exc:
                raise
            raise err from exc
        self._observe(self.kind, self.name, op, time.perf_counter() - start, None)
        return result

    async def _iterate(self, op: str, it: AsyncIterable[T]) -> AsyncIterator[T]:
        start = time.perf_counter()
        try:
            async for item in it:
                yield item
        except BaseException as exc:
            self._observe(self.kind, self.name, op, time.perf_counter() - start, type(exc).__name__)
            err = translate(self.name, op, exc)
            if err is exc:
                raise
            raise err from exc
        finally:
            # Leaving ``async for`` early does not close an async generator: close the
            # backend's stream now (its files, connections, listings) rather than at GC.
            aclose = getattr(it, "aclose", None)
            if aclose is not None:
                await aclose()
        self._observe(self.kind, self.name, op, time.perf_counter() - start, None)

    async def open(self) -> None:
        await self._call("open", self.inner.open)

    async def health(self) -> None:
        await self._call("health", self.inner.health)

    async def aclose(self) -> None:
        await self._call("aclose", self.inner.aclose)


class _Leftovers(_Wrapped):
    """:class:`StoreLeftovers` through the wrapper: none for a store without it."""

    async def leftovers(self, min_age_secs: float) -> list[str]:
        inner = self.inner
        if not isinstance(inner, StoreLeftovers):
            return []
        return await self._call("leftovers", inner.leftovers, min_age_secs)

    async def remove_leftover(self, leftover: str, min_age_secs: float) -> bool:
        inner = self.inner
        if not isinstance(inner, StoreLeftovers):
            return False
        return await self._call("remove_leftover", inner.remove_leftover, leftover, min_age_secs)


class WrappedBlobStore(_Leftovers):
    kind = "blob_store"
    inner: BlobStore

    async def stat(self, digest: str) -> int | None:
        return await self._call("stat", self.inner.stat, digest)

    def read(self, digest: str, offset: int = 0, length: int | None = None) -> AsyncIterator[bytes]:
        try:
            it = self.inner.read(digest, offset, length)
        except BaseException as exc:  # a non-generator implementation may fail eagerly
            raise translate(self.name, "read", exc) from exc
        return self._iterate("read", it)

    async def modified_at(self, digest: str) -> datetime | None:
        return await self._call("modified_at", self.inner.modified_at, digest)

    async def delete(self, digest: str) -> bool:
        return await self._call("delete", self.inner.delete, digest)

    def list_digests(self) -> AsyncIterator[str]:
        return self._iterate("list_digests", self.inner.list_digests())

    async def presigned_url(self, digest: str, expires_secs: int) -> str | None:
        return await self._call("presigned_url", self.inner.presigned_url, digest, expires_secs)

    def local_path(self, digest: str) -> str | None:
        try:
            return self.inner.local_path(digest)
        except Exception as exc:
            raise translate(self.name, "local_path", exc) from exc

    async def upload_start(self, upload: UploadRef) -> None:
        await self._call("upload_start", self.inner.upload_start, upload)

    async def upload_append(
        self, upload: UploadRef, offset: int, chunks: AsyncIterable[bytes]
    ) -> int:
        return await self._call("upload_append", self.inner.upload_append, upload, offset, chunks)

    async def upload_size(self, upload: UploadRef) -> int:
        return await self._call("upload_size", self.inner.upload_size, upload)

    def upload_read(self, upload: UploadRef) -> AsyncIterator[bytes]:
        return self._iterate("upload_read", self.inner.upload_read(upload))

    async def upload_commit(self, upload: UploadRef, digest: str) -> None:
        await self._call("upload_commit", self.inner.upload_commit, upload, digest)

    async def upload_abort(self, upload: UploadRef) -> None:
        await self._call("upload_abort", self.inner.upload_abort, upload)

    @property
    def direct_put(self) -> bool:
        """Whether the store writes a whole verified blob in one call (:class:`BlobPut`)."""
        return isinstance(self.inner, BlobPut)

    async def put_blob(self, digest: str, chunks: AsyncIterable[bytes], size: int) -> bool:
        """:meth:`BlobPut.put_blob`; only for a store whose :attr:`direct_put` is true."""
        inner = self.inner
        if not isinstance(inner, BlobPut):
            raise BackendError(self.name, "put_blob: this blob store has no direct put")
        return await self._call("put_blob", inner.put_blob, digest, chunks, size)

    def list_uploads(self) -> AsyncIterator[tuple[UploadRef, datetime]]:
        try:
            it = self.inner.list_uploads()
        except BaseException as exc:  # not implemented (an older plugin), or eager failure
            raise translate(self.name, "list_uploads", exc) from exc
        return self._iterate("list_uploads", it)


def blob_put_of(store: BlobStore) -> BlobPut | None:
    """``store`` as a :class:`BlobPut` if it has a direct put (wrapped or not), else None."""
    if isinstance(store, WrappedBlobStore):
        return store if store.direct_put else None
    return store if isinstance(store, BlobPut) else None


class WrappedMetadataStore(_Leftovers):
    kind = "metadata_store"
    inner: MetadataStore

    async def get(self, key: str) -> bytes | None:
        return await self._call("get", self.inner.get, key)

    async def put(self, key: str, data: bytes) -> None:
        await self._call("put", self.inner.put, key, data)

    async def create(self, key: str, data: bytes) -> bool:
        return await self._call("create", self.inner.create, key, data)

    async def delete(self, key: str) -> bool:
        return await self._call("delete", self.inner.delete, key)

    async def delete_prefix(self, prefix: str) -> None:
        await self._call("delete_prefix", self.inner.delete_prefix, prefix)

    async def list_children(
        self, prefix: str, *, start_after: str | None = None, limit: int | None = None
    ) -> list[str]:
        return await self._call(
            "list_children", self.inner.list_children, prefix, start_after=start_after, limit=limit
        )

    async def list_children_page(
        self, prefix: str, *, start_after: str | None = None, limit: int | None = None
    ) -> Children:
        return await self._call(
            "list_children_page",
            self.inner.list_children_page,
            prefix,
            start_after=start_after,
            limit=limit,
        )

    @property
    def blocking_listing(self) -> bool:
        """Whether the store runs many listings in one call (:class:`MetadataBlockingList`)."""
        return isinstance(self.inner, MetadataBlockingList)

    async def run_listing(self, fn: Callable[[BlockingLister], T]) -> T:
        """:meth:`MetadataBlockingList.run_listing`; only for a store whose
        :attr:`blocking_listing` is true."""
        inner = self.inner
        if not isinstance(inner, MetadataBlockingList):
            raise BackendError(self.name, "run_listing: this metadata store lists by awaiting")
        return await self._call("run_listing", inner.run_listing, fn)


class _LocalLocks:
    """Per-key asyncio locks, created on demand and dropped when nobody holds or waits."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    def _enter(self, key: str) -> asyncio.Lock:
        lock, users = self._locks.get(key) or (asyncio.Lock(), 0)
        self._locks[key] = (lock, users + 1)
        return lock

    def _leave(self, key: str) -> None:
        lock, users = self._locks[key]
        if users <= 1:
            del self._locks[key]
        else:
            self._locks[key] = (lock, users - 1)

    @asynccontextmanager
    async def hold(
        self, keys: Sequence[str], wait_secs: float, backend: str
    ) -> AsyncIterator[None]:
        entered: list[str] = []
        acquired: list[asyncio.Lock] = []
        try:
            try:
                async with asyncio.timeout(wait_secs):
                    for key in keys:
                        lock = self._enter(key)
                        entered.append(key)
                        await lock.acquire()
                        acquired.append(lock)
            except TimeoutError:
                raise LockUnavailable(
                    backend,
                    f"waited {wait_secs:.0f}s in this process's queue for {', '.join(keys)}",
                ) from None
            yield
        finally:
            for lock in reversed(acquired):
                lock.release()
            for key in entered:
                self._leave(key)


class WrappedLockProvider(_Wrapped):
    """The provider's lock, with a process-local queue in front of it.

    Tasks of one process that want the same key wait their turn on an ``asyncio.Lock``
    (FIFO, no polling) and only the head of the queue contends for the provider's lock. So
    the provider's bounded retries measure contention *between* processes, and a burst of
    pushes to one repository inside one process queues instead of failing with 503.
    """

    kind = "lock_provider"
    inner: LockProvider

    #: Longest wait in the local queue before ``LockUnavailable``.
    LOCAL_WAIT_SECS = 60.0

    def __init__(self, inner: Any, observer: Observer | None = None) -> None:
        super().__init__(inner, observer)
        self._local = _LocalLocks()

    @asynccontextmanager
    async def _acquire(self, keys: Sequence[str]) -> AsyncIterator[Lease]:
        ordered = sorted(set(keys))
        start = time.perf_counter()
        local = self._local.hold(ordered, self.LOCAL_WAIT_SECS, self.name)
        try:
            await local.__aenter__()
        except LockUnavailable:
            # Waited out the local queue: a lock failure like the provider's own.
            elapsed = time.perf_counter() - start
            self._observe(self.kind, self.name, "acquire", elapsed, "LockUnavailable")
            raise
        async with contextlib.AsyncExitStack() as stack:
            stack.push_async_exit(local)
            try:
                # Inside the try: a provider may also fail eagerly, before awaiting.
                cm = self.inner.acquire(ordered)
                lease = await cm.__aenter__()
            except BaseException as exc:
                self._observe(
                    self.kind,
                    self.name,
                    "acquire",
                    time.perf_counter() - start,
                    type(exc).__name__,
                )
                err = translate(self.name, "acquire", exc)
                if err is exc:
                    raise
                raise err from exc
            self._observe(self.kind, self.name, "acquire", time.perf_counter() - start, None)
            try:
                yield lease
            except BaseException as exc:
                if not await cm.__aexit__(type(exc), exc, exc.__traceback__):
                    raise
            else:
                try:
                    await cm.__aexit__(None, None, None)
                except Exception as exc:
                    # The work is done and committed: a failed release only delays the
                    # next holder by the ttl, it must not turn a success into an error.
                    log.warning("lock_provider %s: release failed: %r", self.name, exc)

    def acquire(self, keys: Sequence[str]) -> AbstractAsyncContextManager[Lease]:
        return self._acquire(keys)


class WrappedCache(_Wrapped):
    """Best-effort: every failure is logged and reported as a miss / ignored."""

    kind = "cache"
    inner: Cache

    async def get(self, key: str) -> bytes | None:
        try:
            return await self._call("get", self.inner.get, key)
        except BackendError as exc:
            log.debug("cache miss on error: %s", exc)
            return None

    async def set(self, key: str, value: bytes, ttl_secs: float | None = None) -> None:
        try:
            await self._call("set", self.inner.set, key, value, ttl_secs)
        except BackendError as exc:
            log.debug("cache set failed: %s", exc)

    async def delete(self, key: str) -> None:
        # A failed invalidation is worth a warning: a stale entry lives until its ttl.
        try:
            await self._call("delete", self.inner.delete, key)
        except BackendError as exc:
            log.warning("cache delete failed (entry stays until its ttl): %s", exc)
