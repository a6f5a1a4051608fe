"""The four backend interfaces. Every method that does I/O is async.

Backends stay thin: they move bytes and small objects. Registry semantics (what a tag is,
when a blob may become visible, digest checks, locking) live once in ``angos_core.registry``.
Every key a backend stores is built by :mod:`angos_core.layout`, so all backends hold the
same relative keys.

Errors: a backend raises the typed errors of :mod:`angos_core.errors` carrying its name
(``BlobNotFound``, ``UploadNotFound``, ``UploadOffsetMismatch``, ``BackendUnavailable``, ...).
Anything else it raises is wrapped by core into ``BackendError`` and answered with 503.
The shared contract suites in :mod:`angos_core.testing` pin every edge case below.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple, Protocol, TypeVar, runtime_checkable

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class UploadRef:
    """An upload session: repository name plus the server-chosen upload id (a UUID4 string).

    Both are validated by core before a backend sees them.
    """

    name: str
    upload_id: str


@runtime_checkable
class BlobStore(Protocol):
    """Content-addressed bytes plus resumable upload sessions.

    Digests are ``"<algorithm>:<hex>"`` strings already validated by core. Keys come from
    ``angos_core.layout.blob_data_key`` and ``angos_core.layout.upload_key``.
    """

    name: str

    async def stat(self, digest: str) -> int | None:
        """Size in bytes of the committed blob, or ``None`` if there is none."""

    def read(self, digest: str, offset: int = 0, length: int | None = None) -> AsyncIterator[bytes]:
        """Stream the committed blob from ``offset``, ``length`` bytes (to the end if None).

        Raises ``BlobNotFound`` (when iteration starts) if the blob does not exist. Core
        checks the range against ``stat`` first; a backend may assume it is valid.
        """

    async def modified_at(self, digest: str) -> datetime | None:
        """When the committed blob's data was last written (aware, UTC), or ``None`` if absent.

        ``angos gc`` (:mod:`angos_core.registry.gc`) keeps unreferenced blobs younger than its
        ``--min-age-secs``: one may belong to a push whose manifest has not arrived yet.
        ``fs``: the data file's mtime; ``s3``: the object's ``LastModified``.
        """

    async def delete(self, digest: str) -> bool:
        """Delete the committed blob. True if it existed. Idempotent."""

    def list_digests(self) -> AsyncIterator[str]:
        """Every committed blob's digest, in no particular order."""

    async def presigned_url(self, digest: str, expires_secs: int) -> str | None:
        """A URL a client can GET the blob from directly, or ``None`` if unsupported."""

    def local_path(self, digest: str) -> str | None:
        """A local file holding the committed blob (for ``sendfile``), or ``None``."""

    async def upload_start(self, upload: UploadRef) -> None:
        """Create an empty upload session. Its size is 0."""

    async def upload_append(
        self, upload: UploadRef, offset: int, chunks: AsyncIterable[bytes]
    ) -> int:
        """Append the stream to the session; return the new total size.

        ``offset`` must equal the session's current size, else ``UploadOffsetMismatch`` and
        nothing is appended. A stream that fails half way may leave the bytes received so far
        appended (the returned/queried size tells the client where to resume) but never
        corrupts earlier bytes. Raises ``UploadNotFound`` for an unknown session.
        """

    async def upload_size(self, upload: UploadRef) -> int:
        """Bytes received so far. Raises ``UploadNotFound``."""

    def upload_read(self, upload: UploadRef) -> AsyncIterator[bytes]:
        """Stream the session's bytes from the start (core re-hashes when it must)."""

    async def upload_commit(self, upload: UploadRef, digest: str) -> None:
        """Make the session's bytes visible as blob ``digest`` atomically and end the session.

        Core has verified the digest. If the blob already exists the session is simply
        discarded. Readers never see a partial blob. Raises ``UploadNotFound``.
        """

    async def upload_abort(self, upload: UploadRef) -> None:
        """Discard the session and everything it holds. Idempotent."""

    def list_uploads(self) -> AsyncIterator[tuple[UploadRef, datetime]]:
        """Every upload session in the store, with the time it started (aware, UTC).

        Core's upload purger (:mod:`angos_core.registry.upload_purge`) aborts the ones
        older than its configured age; the backend only reports what it holds.

        * Every repository is covered, nested names (``a/b/c``) included: sessions live at
          ``layout.uploads_prefix(name)``, and a path component that starts with ``_`` or
          ``.`` is never part of a name (``layout.is_reserved``), so a walk skips those
          directories, ``_uploads`` aside.
        * Order: none. Each session is reported once per listing.
        * A session committed, aborted or started while the listing runs may or may not be
          reported. Core only aborts what it finds, and ``upload_abort`` is idempotent, so
          reporting one that has just ended is harmless.
        * The start time is the one ``upload_start`` recorded (``fs``: the ``startedat``
          file, RFC 3339 text as CNCF Distribution writes it; ``s3``: the time its
          ``startedat`` object was written). If it cannot be read (missing after a crash
          inside ``upload_start``, unparsable, a session another program wrote), report the
          session with the **oldest** modification time among what it holds: every part
          of a session is written at or after its start, so that time is never earlier
          than the real start, and a session is never purged early. A session with nothing
          left to date (it vanished meanwhile) is skipped.
        * Whatever sits under a ``_uploads`` directory is reported as the backend finds it,
          even an id that is not a UUID: core validates names and ids before it acts and
          skips the rest. A store with no sessions lists nothing.
        * Raises ``BackendUnavailable`` (from iteration) when the store cannot be listed.
          The listing is a background task, so it may take many requests; it must stream
          rather than hold every session of the store in memory at once.
        """

    async def open(self) -> None:
        """Connect or check what is needed before the first request. Called once at startup."""

    async def health(self) -> None:
        """Return if the store is reachable; raise ``BackendUnavailable`` if not.

        Optional refinement: raise ``BackendReadOnly`` (a ``BackendUnavailable``) when reads
        still work but writes fail (read-only mount, full disk), so ``/readyz`` keeps the
        registry in service for pulls. A store that cannot tell raises
        ``BackendUnavailable`` and counts as unable to serve at all.
        """

    async def aclose(self) -> None:
        """Release connections and files. Called once at shutdown."""


class Children(NamedTuple):
    """One page of a directory's children (:meth:`MetadataStore.list_children_page`)."""

    names: list[str]
    #: Whether the directory holds a child after this page: exactly what the same call
    #: without ``limit`` would have returned beyond ``names``.
    more: bool


@runtime_checkable
class BlobPut(Protocol):
    """Optional, beside :class:`BlobStore`: a whole blob written in one call, verified.

    A blob store declares it with the capability ``direct_put``
    (:data:`angos_core.hookspecs.CAP_DIRECT_PUT`); core refuses a spec that declares it for
    a store lacking :meth:`put_blob`. A writer that knows the digest before the bytes
    (``angos migrate``) uses it instead of the upload-session calls, which cost a store
    such as S3 about a dozen requests per blob. A store without it is used through its
    upload sessions, as before. Pinned by :class:`angos_core.testing.BlobPutContract`.
    """

    async def put_blob(self, digest: str, chunks: AsyncIterable[bytes], size: int) -> bool:
        """Store the stream as blob ``digest``, which must be ``size`` bytes hashing to it.

        * The store verifies what it receives: if the bytes do not hash to ``digest``
          (under the digest's algorithm), or are not ``size`` bytes, it raises
          ``BlobDigestMismatch`` and stores nothing. **A blob never becomes visible under
          a digest it does not have**, not even for a moment, and nothing of the refused
          stream stays behind (no temporary file, no S3 multipart upload).
        * Atomic for readers: ``stat``/``read`` see no blob, then the whole blob.
        * A stream that fails (raises) or a call that is cancelled part way stores nothing;
          the error propagates.
        * If blob ``digest`` already exists, the call returns ``False`` and leaves it as it
          is (content-addressed: it already holds these bytes); the stream may be read or
          not. Otherwise it returns ``True`` once the blob is there. Two concurrent calls
          for one digest both succeed and the blob holds the right bytes.
        * Memory stays bounded whatever ``size`` is: a store spools what it must keep
          (``s3``: a local file per part) rather than holding the blob.
        * No session is created: nothing for ``list_uploads`` to report or the upload
          purger to remove, whenever the process dies.
        """


@runtime_checkable
class MetadataStore(Protocol):
    """Small objects (KB) by key: links, tags, manifests, referrers.

    Keys are ``/``-separated relative paths built by ``angos_core.layout``. A key names an
    object; a prefix ending in ``/`` names a "directory" of keys below it.
    """

    name: str

    async def get(self, key: str) -> bytes | None:
        """The object's bytes, or ``None`` if absent."""

    async def put(self, key: str, data: bytes) -> None:
        """Create or replace the object atomically: readers see old or new bytes, never a mix."""

    async def create(self, key: str, data: bytes) -> bool:
        """Create the object only if absent. True if created, False if it already existed."""

    async def delete(self, key: str) -> bool:
        """Delete the object. True if it existed. Idempotent."""

    async def delete_prefix(self, prefix: str) -> None:
        """Delete every object whose key starts with ``prefix`` (a ``/``-ended directory)."""

    async def list_children(
        self, prefix: str, *, start_after: str | None = None, limit: int | None = None
    ) -> list[str]:
        """Names of the immediate children under the directory ``prefix`` (ending in ``/``).

        A child is either an object or a directory holding objects further down; names carry
        no slashes. Sorted by byte order, strictly after ``start_after`` when given, at most
        ``limit`` names. An absent directory lists as empty.
        """

    async def list_children_page(
        self, prefix: str, *, start_after: str | None = None, limit: int | None = None
    ) -> Children:
        """The same names as :meth:`list_children`, and whether more children follow them.

        ``more`` is exact, never a guess: True if and only if the directory holds a child
        that sorts after the last name returned (after ``start_after`` when no name is
        returned). So ``more`` is always False without ``limit``; with ``limit`` 0 (or less)
        ``names`` is empty and ``more`` says whether any child lies after ``start_after``;
        a page of exactly the directory's last ``limit`` names has ``more`` False. A child
        that is both an object and a directory counts once, on either side of the page.

        It exists so a caller paging through a directory (the tag list and its ``Link``
        header) need not ask for one name more than it returns: on S3 that extra name can
        cost a second ListObjectsV2 call per page. A store answers it at the cost of the
        page itself: one ListObjectsV2 call when the page fits in one, one name read past
        the page elsewhere.
        """

    async def open(self) -> None:
        """Connect or check what is needed before the first request. Called once at startup."""

    async def health(self) -> None:
        """Return if the store is reachable; raise ``BackendUnavailable`` if not.

        Optional refinement: raise ``BackendReadOnly`` (a ``BackendUnavailable``) when reads
        still work but writes fail (read-only mount, full disk), so ``/readyz`` keeps the
        registry in service for pulls. A store that cannot tell raises
        ``BackendUnavailable`` and counts as unable to serve at all.
        """

    async def aclose(self) -> None:
        """Release connections and files. Called once at shutdown."""


class Lease(Protocol):
    """A held lock. Renewed in the background while the ``async with`` block runs."""

    def check(self) -> None:
        """Raise ``LockLost`` if the lock expired or a renewal failed.

        Core calls this right before every commit, so a holder that lost its lock stops
        before writing anything.
        """


#: The blocking form of :meth:`MetadataStore.list_children`: ``(prefix, start_after, limit)``
#: to the same names, for use inside :meth:`MetadataBlockingList.run_listing` only.
BlockingLister = Callable[[str, "str | None", "int | None"], list[str]]


@runtime_checkable
class MetadataBlockingList(Protocol):
    """Optional, beside :class:`MetadataStore`: many listings in one hop to the I/O pool.

    For a store whose listing is a local blocking call (``fs``). The catalog walks the
    repository tree one directory after another, each listing depending on the one
    before; awaited one by one, every directory costs a thread-pool hop and an event-loop
    turn, several times what listing it costs. With this, core runs a stretch of the walk
    (a few hundred listings) in the store's pool as one call. A store without it (S3,
    sqlite) is walked with awaited ``list_children`` calls, as before, with the same
    results. Core detects it by the method (``isinstance``), no capability to declare.
    """

    async def run_listing(self, fn: Callable[[BlockingLister], _T]) -> _T:
        """Call ``fn(list_children)`` in the store's I/O pool and return what it returns.

        ``list_children(prefix, start_after, limit)`` answers exactly what
        :meth:`MetadataStore.list_children` would (same names, same order, an absent
        directory empty), blocking. A listing failure raises from ``run_listing`` as
        ``list_children`` would (``BackendUnavailable``); anything ``fn`` raises itself
        propagates unchanged. ``fn`` is core's: it does no I/O of its own and holds the pool
        for a bounded number of listings.
        """


@runtime_checkable
class StoreLeftovers(Protocol):
    """Optional, beside :class:`BlobStore` or :class:`MetadataStore`: what writes cut short
    left behind where no listing shows it and nothing else removes it.

    A store that writes under hidden temporary names and renames into place (``fs``: its
    ``.tmp-*`` files and directories) leaves them behind when a crash or a full disk cuts a
    write short. ``angos scrub`` reports them and ``--repair`` removes them. A store
    without such names (S3: an unfinished PutObject leaves nothing) does not implement it.
    Core detects it by the methods (``isinstance``).
    """

    async def leftovers(self, min_age_secs: float) -> list[str]:
        """Every leftover not modified for ``min_age_secs``, each named by a string that
        is the same from any store holding it (the fs stores: its absolute path), so two
        stores on one root report one. A write in progress keeps its temporary name fresh:
        the age is what tells a leftover from it."""

    async def remove_leftover(self, leftover: str, min_age_secs: float) -> bool:
        """Remove one leftover (a file, or a directory with everything in it) named by
        :meth:`leftovers`, if it is still one (still there, still that old, still a
        temporary name under the store's root); False if not, leaving it."""


@runtime_checkable
class LockProvider(Protocol):
    """Mutual exclusion on named keys, across every process sharing the provider."""

    name: str

    def acquire(self, keys: Sequence[str]) -> AbstractAsyncContextManager[Lease]:
        """Hold every key in ``keys`` for the ``async with`` block.

        Several keys are taken in sorted order, so two holders never deadlock. Each holder
        owns its lock by a random token; only the owner releases. The lock expires after the
        provider's ttl unless renewed; it is renewed while held. ``LockUnavailable`` if the
        keys cannot be had within the provider's bounded retries; ``BackendUnavailable`` if
        the provider cannot be reached.
        """

    async def open(self) -> None:
        """Connect before the first request. Called once at startup."""

    async def health(self) -> None:
        """Return if the provider is reachable; raise ``BackendUnavailable`` if not."""

    async def aclose(self) -> None:
        """Release connections. Called once at shutdown."""


@runtime_checkable
class Cache(Protocol):
    """A best-effort key/value cache. Core treats every failure as a miss."""

    name: str

    async def get(self, key: str) -> bytes | None:
        """The cached bytes, or ``None`` on a miss or after the entry's ttl."""

    async def set(self, key: str, value: bytes, ttl_secs: float | None = None) -> None:
        """Store ``value`` under ``key``, for ``ttl_secs`` seconds (forever if None)."""

    async def delete(self, key: str) -> None:
        """Forget ``key``. Idempotent. Visible to every process sharing the cache at once."""

    async def open(self) -> None:
        """Connect before the first request. Called once at startup."""

    async def health(self) -> None:
        """Return if the cache is reachable; raise ``BackendUnavailable`` if not."""

    async def aclose(self) -> None:
        """Release connections. Called once at shutdown."""


__all__ = [
    "BlobStore",
    "BlockingLister",
    "Cache",
    "Children",
    "Lease",
    "LockProvider",
    "MetadataBlockingList",
    "MetadataStore",
    "UploadRef",
]
