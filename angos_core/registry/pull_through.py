"""Pull-through namespaces: ``[repository."<ns>"]`` with upstreams, served from the store
and filled from the upstreams on a miss (docs/architecture.md, "Pull-through cache").

A pull of ``<ns>/<path>`` asks the upstreams, in order, for ``<path>``. What this layer
decides: hit or miss, when a cached tag is re-validated (a HEAD after ``tag_ttl_secs``;
never for an immutable tag or a digest), what is served when every upstream fails (what is
cached, a stale tag logged once), and that one process fetches a missing blob once
however many clients want it (a *flight*: the first request streams it from the upstream
while it is stored, and so do the requests that come before its first chunk went out; later
ones wait for it to be stored; replicas take turns through the lock ``pull:<digest>``).
Everything it stores goes through the same writers as a push:
:meth:`ManifestService.store_fetched`, and an upload session committed under
:meth:`References.referencing`, so the garbage collector never deletes a blob being cached.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal, TypeVar

from angos_core.errors import (
    BlobUnknown,
    LockUnavailable,
    ManifestUnknown,
    UpstreamUnavailable,
)
from angos_core.oci.digest import digest_bytes, parse_digest
from angos_core.oci.names import namespace_covers, new_upload_id, validate_name, validate_tag
from angos_core.protocols import UploadRef
from angos_core.registry.blobs import BlobInfo, BlobService
from angos_core.registry.hashing import HashingStream
from angos_core.registry.links import Links
from angos_core.registry.manifests import ManifestService, StoredManifest
from angos_core.registry.references import References
from angos_core.registry.stores import Stores
from angos_core.upstream.client import (
    UpstreamClient,
    UpstreamFailed,
    UpstreamNotFound,
)

log = logging.getLogger("angos.pull_through")
T = TypeVar("T")

#: ``(event, upstream url, amount)``: event is ``hit``, ``miss``, ``bytes`` or ``error``.
PullObserver = Callable[[str, str, int], None]
#: Chunks a flight holds for its first client before the fetch waits for it.
STREAM_QUEUE_CHUNKS = 8
#: How long a replica waits for another replica's fetch of a blob before it gives up (503).
REPLICA_WAIT_SECS = 300.0
_REPLICA_POLL_SECS = 0.2
_FRESH_PREFIX = "pull-through:tag:"


@dataclass(frozen=True, slots=True)
class CachedNamespace:
    namespace: str
    upstreams: tuple[UpstreamClient, ...]
    tag_ttl_secs: float

    @property
    def label(self) -> str:
        """The metric label of a hit: the namespace's first upstream."""
        return self.upstreams[0].url

    def upstream_path(self, name: str) -> str:
        return name[len(self.namespace) + 1 :]


@dataclass(slots=True)
class BlobStream:
    """A missed blob as the first client gets it: streamed while it is stored. The last
    chunk arrives only once the bytes are verified and stored; a failure after the first
    chunk is raised from ``chunks`` (the caller cuts the connection)."""

    digest: str
    size: int | None
    chunks: AsyncIterator[bytes]
    _flight: _Flight
    _queue: asyncio.Queue[object]

    def close(self) -> None:
        """The client is gone (or done): the fetch goes on without queueing for it."""
        self._flight.unsubscribe(self._queue)


_END = object()


@dataclass(eq=False)
class _Flight:
    """One fetch of one blob in this process."""

    digest: str
    #: Resolves to the blob's size (or None, unknown) once the upstream answered, to
    #: ``"stored"`` if a replica stored it meanwhile; raises if the fetch failed first.
    opened: asyncio.Future[int | Literal["stored"] | None]
    #: Resolves once the blob is stored (or raises why not).
    done: asyncio.Future[None]
    #: The queues of the clients streaming the fetch: the first request's, and those of
    #: requests that came before its first chunk went out (they get every chunk too).
    listeners: list[asyncio.Queue[object]] = field(default_factory=list)
    #: Whether a chunk went out: a request coming later waits for the store instead.
    published: bool = False

    def subscribe(self) -> asyncio.Queue[object] | None:
        """A queue of every chunk of the fetch, or None if it is too late for one."""
        if self.published:
            return None
        queue: asyncio.Queue[object] = asyncio.Queue(maxsize=STREAM_QUEUE_CHUNKS)
        self.listeners.append(queue)
        return queue

    async def publish(self, item: object) -> None:
        # The fetch goes at the pace of its slowest client (and of the store's writer).
        self.published = True
        for queue in list(self.listeners):
            await queue.put(item)

    def unsubscribe(self, queue: asyncio.Queue[object]) -> None:
        if queue in self.listeners:
            self.listeners.remove(queue)
        # Unblock a fetch waiting on this full queue: it goes on without it.
        while not queue.empty():
            queue.get_nowait()


class PullThrough:
    def __init__(
        self,
        stores: Stores,
        links: Links,
        references: References,
        blobs: BlobService,
        manifests: ManifestService,
        namespaces: dict[str, CachedNamespace],
        observer: PullObserver | None = None,
    ) -> None:
        self.stores = stores
        self.links = links
        self.references = references
        self.blobs = blobs
        self.manifests = manifests
        self.namespaces = namespaces
        self._observe = observer or (lambda event, upstream, amount: None)
        self._flights: dict[str, _Flight] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._stale_logged: set[tuple[str, str]] = set()

    def namespace(self, name: str) -> CachedNamespace | None:
        """The pull-through namespace ``name`` is in, if any (namespaces never overlap); the
        namespace itself is not a cached repository: it maps to no upstream path."""
        for namespace, cached in self.namespaces.items():
            if name != namespace and namespace_covers(namespace, name):
                return cached
        return None

    def covers(self, name: str) -> CachedNamespace | None:
        """The pull-through namespace whose repositories include ``name`` (or ``name``
        itself), for refusing writes."""
        for namespace, cached in self.namespaces.items():
            if namespace_covers(namespace, name):
                return cached
        return None

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    # ------------------------------------------------------------------ manifests

    async def manifest(self, ns: CachedNamespace, name: str, reference: str) -> StoredManifest:
        validate_name(name)
        path = ns.upstream_path(name)
        if ":" in reference:
            parse_digest(reference)
            try:
                found = await self.manifests.get(name, reference)
            except ManifestUnknown:
                pass
            else:
                # A digest names its bytes: never re-checked.
                self._observe("hit", ns.label, 1)
                return found
            return await self._fetch_manifest(ns, name, path, reference, None)
        tag = validate_tag(reference)
        current = await self.links.tag_digest(name, tag)
        if current is None:
            return await self._fetch_manifest(ns, name, path, tag, None)
        if self.manifests.immutable.protects(name, tag) or await self._fresh(name, tag):
            self._observe("hit", ns.label, 1)
            return await self.manifests.get(name, tag)
        try:
            _, upstream_digest = await self._first(
                ns, lambda c: c.head_manifest(path, tag), f"{path}:{tag}"
            )
        except UpstreamUnavailable as exc:
            return await self._stale(ns, name, tag, str(exc))
        except ManifestUnknown:
            return await self._stale(ns, name, tag, "no upstream has the tag any more")
        if upstream_digest == current:
            await self._mark_fresh(ns, name, tag, current)
            self._observe("hit", ns.label, 1)
            return await self.manifests.get(name, tag)
        return await self._fetch_manifest(ns, name, path, tag, current)

    async def _stale(self, ns: CachedNamespace, name: str, tag: str, why: str) -> StoredManifest:
        if (name, tag) not in self._stale_logged:
            self._stale_logged.add((name, tag))
            log.warning("serving cached %s:%s unchecked (stale): %s", name, tag, why)
        self._observe("hit", ns.label, 1)
        return await self.manifests.get(name, tag)

    async def _fetch_manifest(
        self, ns: CachedNamespace, name: str, path: str, reference: str, cached: str | None
    ) -> StoredManifest:
        is_digest = ":" in reference
        try:
            upstream, fetched = await self._first(
                ns, lambda c: c.get_manifest(path, reference), f"{path}:{reference}"
            )
        except UpstreamUnavailable as exc:
            if cached is not None:
                return await self._stale(ns, name, reference, str(exc))
            raise
        algorithm = parse_digest(reference).algorithm if is_digest else "sha256"
        if fetched.digest and not is_digest:
            algorithm = parse_digest(fetched.digest).algorithm
        digest = digest_bytes(fetched.body, algorithm)
        expected = reference if is_digest else fetched.digest
        if expected is not None and digest != expected:
            self._observe("error", upstream.url, 1)
            raise UpstreamUnavailable(
                f"upstream {upstream.url} sent a manifest for {path}:{reference} whose digest "
                f"is {digest}, not {expected}"
            )
        self._observe("miss", upstream.url, 1)
        self._observe("bytes", upstream.url, len(fetched.body))
        stored = await self.manifests.store_fetched(
            name, None if is_digest else reference, fetched.body, fetched.content_type, digest
        )
        if not is_digest:
            await self._mark_fresh(ns, name, reference, digest)
            self._stale_logged.discard((name, reference))
        return stored

    async def _fresh(self, name: str, tag: str) -> bool:
        return await self.stores.cache.get(f"{_FRESH_PREFIX}{name}:{tag}") is not None

    async def _mark_fresh(self, ns: CachedNamespace, name: str, tag: str, digest: str) -> None:
        self._stale_logged.discard((name, tag))
        if ns.tag_ttl_secs > 0:
            await self.stores.cache.set(
                f"{_FRESH_PREFIX}{name}:{tag}", digest.encode(), ns.tag_ttl_secs
            )

    async def _first(
        self, ns: CachedNamespace, ask: Callable[[UpstreamClient], Awaitable[T]], what: str
    ) -> tuple[UpstreamClient, T]:
        """The first upstream's answer, in order; ``ManifestUnknown`` if every upstream that
        answered has none, ``UpstreamUnavailable`` naming each failure otherwise."""
        failures: list[str] = []
        for client in ns.upstreams:
            try:
                return client, await ask(client)
            except UpstreamNotFound:
                continue
            except UpstreamFailed as exc:
                self._observe("error", client.url, 1)
                failures.append(str(exc))
        if failures:
            raise UpstreamUnavailable(f"cannot fetch {what}: " + "; ".join(failures))
        raise ManifestUnknown(
            f"no upstream of {ns.namespace} has {what}", detail={"reference": what}
        )

    # ------------------------------------------------------------------ blobs

    async def blob(self, ns: CachedNamespace, name: str, digest: str) -> BlobInfo | BlobStream:
        """The blob as stored (a hit, or the wait for another request's fetch ended), or
        the stream of a fetch this request leads."""
        validate_name(name)
        parse_digest(digest)
        found = await self._stored(name, digest)
        if found is not None:
            self._observe("hit", ns.label, 1)
            return found
        flight = self._flights.get(digest)
        if flight is not None:
            # Another request of this process fetches it (the fetch counts its one miss):
            # streamed with it if no chunk went out yet, else served once stored; a hit.
            return await self._join(ns, name, flight, flight.subscribe(), streamed_hit=True)
        flight = _Flight(
            digest,
            asyncio.get_running_loop().create_future(),
            asyncio.get_running_loop().create_future(),
        )
        self._flights[digest] = flight
        queue = flight.subscribe()
        task = asyncio.create_task(self._fly(ns, name, flight), name=f"angos-pull-{digest}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return await self._join(ns, name, flight, queue, streamed_hit=False)

    async def _join(
        self,
        ns: CachedNamespace,
        name: str,
        flight: _Flight,
        queue: asyncio.Queue[object] | None,
        *,
        streamed_hit: bool,
    ) -> BlobInfo | BlobStream:
        """The fetch's stream through ``queue`` (None: too late to join it), or the blob
        served from the store once the flight stored it (a replica, or a fetch before the
        lock, may have: then nothing streams), a hit. ``streamed_hit``: a stream counts as
        a hit too (a follower's; the leader's fetch counts its miss)."""
        digest = flight.digest
        if queue is not None:
            try:
                opened = await asyncio.shield(flight.opened)
            except BaseException:
                flight.unsubscribe(queue)
                raise
            if opened != "stored":
                if streamed_hit:
                    self._observe("hit", ns.label, 1)
                return BlobStream(digest, opened, self._listen(flight, queue), flight, queue)
            flight.unsubscribe(queue)
        await asyncio.shield(flight.done)
        found = await self._after_flight(name, digest)
        self._observe("hit", ns.label, 1)
        return found

    async def head_blob(self, ns: CachedNamespace, name: str, digest: str) -> BlobInfo:
        """A ``HEAD``: the stored blob, else the upstream's size (nothing is fetched)."""
        validate_name(name)
        parse_digest(digest)
        found = await self._stored(name, digest)
        if found is not None:
            return found
        path = ns.upstream_path(name)
        try:
            _, size = await self._first(ns, lambda c: c.head_blob(path, digest), f"{path}@{digest}")
        except ManifestUnknown:
            raise BlobUnknown(detail={"digest": digest}) from None
        return BlobInfo(digest, size if size is not None else -1)

    async def _after_flight(self, name: str, digest: str) -> BlobInfo:
        found = await self._stored(name, digest)
        if found is None:  # pragma: no cover - a collection deleted it in between
            raise BlobUnknown(detail={"digest": digest})
        return found

    async def _stored(self, name: str, digest: str) -> BlobInfo | None:
        """The blob if this repository has it, or linked here if the store has its bytes
        (another cached repository, or a replica, fetched it)."""
        try:
            return await self.blobs.stat(name, digest)
        except BlobUnknown:
            pass
        async with self.references.referencing([digest]):
            size = await self.stores.blobs.stat(digest)
            if size is None:
                return None
            await self.links.put_layer(name, digest)
        return BlobInfo(digest, size)

    async def _listen(self, flight: _Flight, queue: asyncio.Queue[object]) -> AsyncIterator[bytes]:
        try:
            while True:
                item = await queue.get()
                if item is _END:
                    return
                if isinstance(item, BaseException):
                    raise item
                assert isinstance(item, bytes)
                yield item
        finally:
            flight.unsubscribe(queue)

    async def _fly(self, ns: CachedNamespace, name: str, flight: _Flight) -> None:
        try:
            await self._fetch_blob(ns, name, flight)
        except BaseException as exc:
            error = exc if isinstance(exc, Exception) else UpstreamUnavailable("fetch cancelled")
            if not flight.opened.done():
                flight.opened.set_exception(error)
            else:
                await flight.publish(error)
            flight.done.set_exception(error)
            if not isinstance(exc, Exception):
                raise
        else:
            flight.done.set_result(None)
        finally:
            self._flights.pop(flight.digest, None)
            # Nobody may be waiting on them: retrieve the exceptions so none is logged.
            for future in (flight.opened, flight.done):
                if future.done() and not future.cancelled():
                    future.exception()

    async def _fetch_blob(self, ns: CachedNamespace, name: str, flight: _Flight) -> None:
        digest = flight.digest
        try:
            async with self.stores.locks.acquire([f"pull:{digest}"]):
                # A replica may have stored it while we waited for its lock.
                if await self.stores.blobs.stat(digest) is not None:
                    flight.opened.set_result("stored")
                    return
                await self._fetch_locked(ns, name, flight)
        except LockUnavailable:
            # A replica holds the fetch longer than the lock provider lets us wait: wait for
            # its blob instead of fetching it a second time.
            await self._wait_for_replica(flight)

    async def _wait_for_replica(self, flight: _Flight) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + REPLICA_WAIT_SECS
        # Polled: the other replica's fetch sends us no event.
        while await self.stores.blobs.stat(flight.digest) is None:
            if loop.time() > deadline:
                raise UpstreamUnavailable(
                    f"another replica's fetch of {flight.digest} did not finish in "
                    f"{REPLICA_WAIT_SECS:.0f}s"
                )
            await asyncio.sleep(_REPLICA_POLL_SECS)
        flight.opened.set_result("stored")

    async def _fetch_locked(self, ns: CachedNamespace, name: str, flight: _Flight) -> None:
        digest = flight.digest
        parsed = parse_digest(digest)
        path = ns.upstream_path(name)
        failures: list[str] = []
        for client in ns.upstreams:
            try:
                await self._fetch_from(client, name, path, flight, parsed.algorithm, parsed.hex)
                self._observe("miss", client.url, 1)
                return
            except UpstreamNotFound:
                continue
            except UpstreamFailed as exc:
                self._observe("error", client.url, 1)
                if flight.opened.done():
                    raise UpstreamUnavailable(str(exc)) from None
                failures.append(str(exc))
        if failures:
            raise UpstreamUnavailable(f"cannot fetch {path}@{digest}: " + "; ".join(failures))
        raise BlobUnknown(f"no upstream of {ns.namespace} has {path}@{digest}", {"digest": digest})

    async def _fetch_from(
        self,
        client: UpstreamClient,
        name: str,
        path: str,
        flight: _Flight,
        algorithm: str,
        expected_hex: str,
    ) -> None:
        digest = flight.digest
        async with client.get_blob(path, digest) as upstream:
            upload = UploadRef(name, new_upload_id())
            await self.stores.blobs.upload_start(upload)
            hasher = hashlib.new(algorithm)
            held: list[bytes] = []
            received = 0

            async def tee() -> AsyncIterator[bytes]:
                nonlocal received
                async for chunk in upstream.chunks:
                    if not chunk:
                        continue
                    received += len(chunk)
                    self._observe("bytes", client.url, len(chunk))
                    # One chunk behind: the last reaches the client only once verified.
                    if held:
                        await flight.publish(held.pop())
                    held.append(chunk)
                    yield chunk

            flight.opened.set_result(upstream.size)
            try:
                # Hashed as an upload is: chunk k in a thread while chunk k is stored.
                await self.stores.blobs.upload_append(upload, 0, HashingStream(tee(), hasher))
                if hasher.hexdigest() != expected_hex or (
                    upstream.size is not None and received != upstream.size
                ):
                    raise UpstreamFailed(
                        f"upstream {client.url} sent {received} bytes for {digest} that do not "
                        f"match it ({algorithm}:{hasher.hexdigest()})"
                    )
                # Stored as an upload's commit is: marked for a collection running meanwhile.
                async with self.references.referencing([digest]):
                    await self.references.mark_recent(digest)
                    await self.stores.blobs.upload_commit(upload, digest)
                    await self.links.put_layer(name, digest)
            except BaseException:
                await self.stores.blobs.upload_abort(upload)
                raise
            for chunk in held:
                await flight.publish(chunk)
            await flight.publish(_END)
