"""A near cache in each process, in front of the shared Redis cache, kept true by Redis.

Redis client-side caching in broadcasting mode (Redis 6 or later): one connection per
process runs ``CLIENT TRACKING ON REDIRECT <its own id> BCAST PREFIX <key prefix>`` and
subscribes to ``__redis__:invalidate``. Redis then sends it the name of every key under the
prefix that any client changes (``SET``, ``DEL``, expiry, eviction; a null list for
``FLUSHALL``), and it sends it before the writer's own reply. So when a write on another
replica has returned, its invalidation is already on the way to this one.

Chosen over pub/sub invalidation (each write also ``PUBLISH``-ing its key): no second
round trip per write, and Redis reports what no writer publishes (expiry, eviction, a
flush, an operator's ``DEL``).

Why the connection is a plain asyncio protocol and not a redis-py client: its
``data_received`` runs as soon as the event loop reads the socket, before any task the
same loop iteration wakes (a request handler among them), so an invalidation already
received is applied before a request that came after it can read the near cache. A
redis-py reader task would be one more task in that queue, in no fixed order.

Never stale after a reconnect: entries are served only while the tracking connection is
up and subscribed. When it drops (Redis restarted, the network failed, ``PING`` went
unanswered for :data:`DEAD_AFTER_SECS`), the near cache is emptied at once and fills
nothing until a new connection is tracking again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections import OrderedDict
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

log = logging.getLogger("angos.redis")

#: The channel Redis sends tracking invalidations to (RESP2 redirect mode).
CHANNEL = b"__redis__:invalidate"
#: A PING goes out this often on the tracking connection...
PING_EVERY_SECS = 1.0
#: ...and the connection is given up (and the near cache emptied) after this long without
#: any reply: a black-holed Redis stops the near cache within this bound.
DEAD_AFTER_SECS = 3.0
#: Entry overhead counted against the byte bound, beside its key and value (the dict
#: slot, the tuple, two bytes objects: measured at about this much on CPython 3.11).
ENTRY_OVERHEAD = 160
_RECONNECT_MIN_SECS = 0.1
_RECONNECT_MAX_SECS = 2.0


class NearCache:
    """Values by full Redis key, least recently used dropped beyond ``max_bytes``."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.size = 0
        self._entries: OrderedDict[str, bytes] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str) -> bytes | None:
        value = self._entries.get(key)
        if value is not None:
            self._entries.move_to_end(key)
        return value

    def put(self, key: str, value: bytes) -> None:
        cost = _cost(key, value)
        if cost > self.max_bytes:
            return
        self.drop(key)
        self._entries[key] = value
        self.size += cost
        while self.size > self.max_bytes:
            old_key, old = self._entries.popitem(last=False)
            self.size -= _cost(old_key, old)

    def drop(self, key: str) -> None:
        old = self._entries.pop(key, None)
        if old is not None:
            self.size -= _cost(key, old)

    def clear(self) -> None:
        self._entries.clear()
        self.size = 0


def _cost(key: str, value: bytes) -> int:
    return len(key) + len(value) + ENTRY_OVERHEAD


class Tracker:
    """The tracking connection and the near cache it keeps true.

    ``live`` is True only while Redis is known to send this process every invalidation.
    ``epoch`` moves on every invalidation and every loss: a reader notes it before asking
    Redis and fills the near cache only if it has not moved, so a value read just before an
    invalidation landed is never kept after it.
    """

    def __init__(self, url: str, prefix: str, max_bytes: int) -> None:
        self.url = url
        self.prefix = prefix
        self.near = NearCache(max_bytes)
        self.live = False
        self.epoch = 0
        self.connects = 0
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()

    # ------------------------------------------------------------------ reading

    def get(self, key: str) -> bytes | None:
        return self.near.get(key) if self.live else None

    def fill(self, key: str, value: bytes, epoch: int) -> None:
        if self.live and epoch == self.epoch:
            self.near.put(key, value)

    def forget(self, key: str) -> None:
        """This process is about to change ``key``: drop it and stop fills in flight."""
        self.epoch += 1
        self.near.drop(key)

    # ------------------------------------------------------------------ invalidations

    def invalidated(self, keys: list[bytes] | None) -> None:
        self.epoch += 1
        if keys is None:
            self.near.clear()
            return
        for key in keys:
            self.near.drop(key.decode("utf-8", "replace"))

    def lost(self) -> None:
        if self.live:
            log.warning("redis cache: tracking connection lost; near cache emptied")
        self.live = False
        self.epoch += 1
        self.near.clear()
        self._ready.clear()

    # ------------------------------------------------------------------ lifecycle

    async def start(self, wait_secs: float) -> None:
        """Connect in the background; wait up to ``wait_secs`` for the first subscription."""
        self._task = asyncio.get_running_loop().create_task(
            self._run(), name="angos-redis-near-cache"
        )
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(wait_secs):
                await self._ready.wait()

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait([self._task])
            self._task = None
        self.live = False  # closing on purpose: nothing to warn about
        self.lost()

    async def _run(self) -> None:
        delay = _RECONNECT_MIN_SECS
        while True:
            try:
                await self._session()
                delay = _RECONNECT_MIN_SECS
            except (OSError, ConnectionError, TimeoutError, RespError) as exc:
                log.info("redis cache: tracking connection failed: %s", exc)
            self.lost()
            await asyncio.sleep(delay)
            delay = min(delay * 2, _RECONNECT_MAX_SECS)

    async def _session(self) -> None:
        """One tracking connection, from connect to loss."""
        loop = asyncio.get_running_loop()
        target = _Target.parse(self.url)
        async with asyncio.timeout(DEAD_AFTER_SECS):
            if target.path is not None:
                transport, proto = await loop.create_unix_connection(
                    lambda: _Protocol(self), target.path
                )
            else:
                transport, proto = await loop.create_connection(
                    lambda: _Protocol(self), target.host, target.port, ssl=target.ssl
                )
        try:
            async with asyncio.timeout(DEAD_AFTER_SECS):
                if target.password is not None:
                    auth = [target.username] if target.username else []
                    await proto.command(b"AUTH", *auth, target.password)
                client_id = await proto.command(b"CLIENT", b"ID")
                tracking: list[str | int] = ["CLIENT", "TRACKING", "ON", "REDIRECT", client_id]
                tracking += ["BCAST", "PREFIX", self.prefix] if self.prefix else ["BCAST"]
                await proto.command(*tracking)
                await proto.command(b"SUBSCRIBE", CHANNEL)
            # Whatever the near cache held was not tracked by this connection.
            self.near.clear()
            self.epoch += 1
            self.live = True
            self.connects += 1
            self._ready.set()
            while not proto.closed.is_set():
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(PING_EVERY_SECS):
                        await proto.closed.wait()
                if proto.closed.is_set():
                    break
                if time.monotonic() - proto.heard > DEAD_AFTER_SECS:
                    raise TimeoutError(f"no reply from Redis for {DEAD_AFTER_SECS}s")
                proto.send(b"PING")
        finally:
            transport.abort()


class RespError(Exception):
    """Redis answered a tracking-connection command with an error."""


class _Protocol(asyncio.Protocol):
    """RESP2 over the tracking connection: command replies in order, invalidation pushes
    applied as soon as they are read."""

    def __init__(self, tracker: Tracker) -> None:
        self.tracker = tracker
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiters: list[asyncio.Future[Any]] = []
        self.closed = asyncio.Event()
        self.heard = time.monotonic()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        # Right here, in the loop's callback: no request may read the near cache after the
        # connection that kept it true is gone.
        self.tracker.lost()
        self.closed.set()
        for waiter in self.waiters:
            if not waiter.done():
                waiter.set_exception(ConnectionError("tracking connection closed"))
        self.waiters.clear()

    def send(self, *args: bytes | str | int) -> None:
        assert self.transport is not None
        parts = [str(a).encode() if not isinstance(a, bytes) else a for a in args]
        out = b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts)
        self.transport.write(out)

    async def command(self, *args: bytes | str | int) -> Any:
        waiter: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.waiters.append(waiter)
        self.send(*args)
        return await waiter

    def data_received(self, data: bytes) -> None:
        self.heard = time.monotonic()
        self.buffer += data
        pos = 0
        while True:
            try:
                value, pos = _parse(self.buffer, pos)
            except _Incomplete:
                break
            self._handle(value)
        del self.buffer[:pos]

    def _handle(self, value: Any) -> None:
        if isinstance(value, list) and len(value) == 3 and value[0] == b"message":
            if value[1] == CHANNEL:
                self.tracker.invalidated(value[2])
            return
        if isinstance(value, list) and value and value[0] == b"pong":
            return  # PING's answer in subscribed mode: being heard is all it is for
        if self.waiters:
            waiter = self.waiters.pop(0)
            if not waiter.done():
                if isinstance(value, RespError):
                    waiter.set_exception(value)
                else:
                    waiter.set_result(value)


class _Incomplete(Exception):
    pass


def _parse(buf: bytearray, pos: int) -> tuple[Any, int]:
    """One RESP2 value from ``buf`` at ``pos``, and the position after it."""
    end = buf.find(b"\r\n", pos)
    if end < 0:
        raise _Incomplete
    kind, line = buf[pos : pos + 1], bytes(buf[pos + 1 : end])
    pos = end + 2
    if kind == b"+":
        return line, pos
    if kind == b"-":
        return RespError(line.decode("utf-8", "replace")), pos
    if kind == b":":
        return int(line), pos
    if kind == b"$":
        n = int(line)
        if n < 0:
            return None, pos
        if len(buf) < pos + n + 2:
            raise _Incomplete
        return bytes(buf[pos : pos + n]), pos + n + 2
    if kind == b"*":
        n = int(line)
        if n < 0:
            return None, pos
        items = []
        for _ in range(n):
            item, pos = _parse(buf, pos)
            items.append(item)
        return items, pos
    raise RespError(f"unexpected RESP type {kind!r}")


class _Target:
    """Where the tracking connection goes, from the cache's ``url``."""

    def __init__(self) -> None:
        self.host = "localhost"
        self.port = 6379
        self.path: str | None = None
        self.username: str | None = None
        self.password: str | None = None
        self.ssl: ssl.SSLContext | None = None

    @classmethod
    def parse(cls, url: str) -> _Target:
        parts = urlsplit(url)
        target = cls()
        if parts.username:
            target.username = unquote(parts.username)
        if parts.password is not None:
            target.password = unquote(parts.password)
        query = parse_qs(parts.query)
        if parts.scheme == "unix":
            target.path = parts.path
            if "password" in query:
                target.password = query["password"][0]
            return target
        target.host = parts.hostname or "localhost"
        target.port = parts.port or 6379
        if parts.scheme == "rediss":
            context = ssl.create_default_context(cafile=query.get("ssl_ca_certs", [None])[0])
            if query.get("ssl_cert_reqs", [""])[0].lower() in ("none", "cert_none"):
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            target.ssl = context
        return target
