"""Bounding the connections one process holds, so idle ones cannot starve a real request.

Each connection costs an open file, and a process that runs out of them cannot accept the
next one: asyncio then retries ``accept()`` once a second and logs every failed attempt
(thousands of ERROR lines a second), while a normal request waits in the listen backlog
until some idle connection times out. Three measures, all per process:

* :func:`raise_open_file_limit`: the soft ``RLIMIT_NOFILE`` goes up to the hard limit at
  startup (the usual soft default of 1,024 is far below what the kernel allows).
* :class:`LimitedServer`: at most ``[server] max_connections`` connections (lowered to what
  the open-file limit can hold). A connection arriving at the cap closes the oldest idle
  one (keep-alive, or never sent a complete request: slowloris); if every connection is
  busy with a request, the new one is closed at once, so the client fails fast.
* :class:`AcceptErrors`: if ``accept()`` still runs out of descriptors (other files, a
  limit lowered at run time), the oldest idle connections are closed, the cap is lowered
  to what fitted (for a minute after the last such failure), and the failures are logged
  once per interval with a count.

Each connection also reads at most :data:`RECV_BYTES` per ``recv()``: what one read brings
in lands in the request's reader whole before aiohttp pauses the socket, so it is the bulk
of what an upload waiting for the body budget holds (docs/operations.md, "Upload memory").
"""

from __future__ import annotations

import asyncio
import errno
import logging
import resource
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from angos_core.http.aiohttp_compat import request_in_progress, server_settings

log = logging.getLogger("angos")

#: Seconds between two log lines about refused connections or failed accepts.
LOG_INTERVAL_SECS = 10.0
#: Descriptors kept for everything but client connections (listening sockets, logs, the
#: backends' pools).
RESERVED_FDS = 64
#: accept() errors that mean "out of descriptors or memory" (asyncio retries these).
RESOURCE_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
#: On such an error, close this share of the idle connections (at least MIN_SHED).
SHED_FRACTION = 0.5
MIN_SHED = 16
#: The lowered cap goes back to the configured one after this long without such an error.
RESTORE_AFTER_SECS = 60.0
#: Bytes per ``recv()`` on a plain TCP connection, instead of asyncio's 256 KiB: a paused
#: upload's reader then holds up to ~96 KiB (its 32 KiB high-water mark, overshot by one
#: read) instead of ~288 KiB. Four times the reads per byte cost no measurable time on
#: a 512 MiB upload (docs/performance.md).
RECV_BYTES = 64 * 1024


def limit_recv_size(transport: asyncio.BaseTransport, size: int = RECV_BYTES) -> bool:
    """Cap the bytes per ``recv()`` of a selector loop's socket transport; whether it could.

    ``max_size`` is the stdlib's per-transport read size (a plain class attribute, set per
    instance here). TLS transports and uvloop's have none and are left as they are.
    """
    if not isinstance(getattr(transport, "max_size", None), int):
        return False
    transport.max_size = size  # type: ignore[attr-defined]
    return True


def raise_open_file_limit() -> int:
    """Raise the soft open-file limit to the hard limit (logged once); the soft limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft == resource.RLIM_INFINITY or soft >= hard:
        return int(soft) if soft != resource.RLIM_INFINITY else 1 << 20
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError) as exc:
        log.warning("could not raise the open-file limit from %d to %d: %s", soft, hard, exc)
        return int(soft)
    log.info("open-file limit raised from %d to %d (the hard limit)", soft, hard)
    return int(hard)


def connection_cap(configured: int, open_files: int) -> int:
    """``configured``, lowered so that every connection can hold a second descriptor (a
    blob file for ``sendfile``, a backend connection) within ``open_files``."""
    fits = max(1, (open_files - RESERVED_FDS) // 2)
    if configured > fits:
        log.warning(
            "[server] max_connections %d lowered to %d: the open-file limit is %d (each "
            "connection may need 2 descriptors); raise the limit (ulimit -n, LimitNOFILE=) "
            "to allow more",
            configured,
            fits,
            open_files,
        )
        return fits
    return configured


class _CountedLog:
    """One log line now, then at most one per interval saying how often it happened since."""

    def __init__(self, level: int, first: str, again: str) -> None:
        self.level, self.first, self.again = level, first, again
        self.count = 0
        self.args: tuple[object, ...] = ()
        self.timer: asyncio.TimerHandle | None = None

    def event(self, *args: object) -> None:
        self.args = args
        if self.timer is None:
            log.log(self.level, self.first, *args)
            self.timer = asyncio.get_running_loop().call_later(LOG_INTERVAL_SECS, self._flush)
        else:
            self.count += 1

    def _flush(self) -> None:
        self.timer = None
        if self.count:
            log.log(self.level, self.again, self.count, LOG_INTERVAL_SECS, *self.args)
            self.count = 0
            self.timer = asyncio.get_running_loop().call_later(LOG_INTERVAL_SECS, self._flush)


class LimitedServer(web.Server):
    """aiohttp's connection manager with a cap (see the module docstring)."""

    def __init__(self, *args: Any, max_connections: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.max_connections = max_connections
        # Insertion order is age order: the first idle one is the oldest.
        self._live: dict[RequestHandler, None] = {}
        self.refused = _CountedLog(
            logging.WARNING,
            "connection limit (%d) reached with every connection busy: closing new ones",
            "connection limit: %d more connection(s) closed in the last %gs (limit %d)",
        )

    def connection_made(self, handler: RequestHandler, transport: asyncio.Transport) -> None:
        super().connection_made(handler, transport)
        limit_recv_size(transport)
        self._live[handler] = None
        if len(self._live) > self.max_connections and not self.shed(1, keep=handler):
            self.refused.event(self.max_connections)
            handler.force_close()

    def connection_lost(self, handler: RequestHandler, exc: BaseException | None = None) -> None:
        self._live.pop(handler, None)
        super().connection_lost(handler, exc)

    @property
    def open_connections(self) -> int:
        return len(self._live)

    def shed(self, count: int, keep: RequestHandler | None = None) -> int:
        """Close up to ``count`` of the oldest idle connections; how many were closed."""
        victims = [h for h in self._live if h is not keep and not request_in_progress(h)][:count]
        for handler in victims:
            self._live.pop(handler, None)
            handler.force_close()
        return len(victims)


class LimitedAppRunner(web.AppRunner):
    """An ``AppRunner`` whose connection manager is a :class:`LimitedServer`."""

    def __init__(self, app: web.Application, *, max_connections: int, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self._max_connections = max_connections

    async def _make_server(self) -> web.Server:
        # aiohttp's (private) seam where a runner builds its connection manager: the one
        # place to put a subclass in, short of copying TCPSite/SockSite.start.
        plain = await super()._make_server()
        return LimitedServer(
            plain.request_handler,
            request_factory=plain.request_factory,
            handler_cancellation=plain.handler_cancellation,
            loop=asyncio.get_running_loop(),
            max_connections=self._max_connections,
            **server_settings(plain),
        )


class AcceptErrors:
    """The loop's exception handler for ``accept()`` running out of descriptors.

    asyncio reports such a failure once per queued connection per retry (it retries after
    a second); this turns them into one line per interval, and frees descriptors.
    """

    def __init__(self, runner: LimitedAppRunner) -> None:
        self.runner = runner
        self.shed_at = -1.0
        self.configured_cap: int | None = None
        self.restore: asyncio.TimerHandle | None = None
        self.logged = _CountedLog(
            logging.ERROR,
            "accept() failed: %s; closing idle connections and lowering the connection "
            "limit to %d (raise the open-file limit or lower [server] max_connections)",
            "accept() failed %d more time(s) in the last %gs: %s; connection limit %d",
        )
        self.previous: Any = None

    def install(self, loop: asyncio.AbstractEventLoop) -> None:
        self.previous = loop.get_exception_handler()
        loop.set_exception_handler(self)

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        if not (
            isinstance(exc, OSError)
            and exc.errno in RESOURCE_ERRNOS
            and "accept" in str(context.get("message", ""))
        ):
            if self.previous is not None:
                self.previous(loop, context)
            else:
                loop.default_exception_handler(context)
            return
        server = self.runner.server
        cap = 0
        if isinstance(server, LimitedServer):
            # asyncio reports every queued connection in one go: act once per retry.
            if loop.time() - self.shed_at >= 0.5:
                self.shed_at = loop.time()
                held = server.open_connections
                closed = server.shed(max(MIN_SHED, int(held * SHED_FRACTION)))
                if self.configured_cap is None:
                    self.configured_cap = server.max_connections
                server.max_connections = max(1, min(server.max_connections, held - closed))
                if self.restore is None:
                    self.restore = loop.call_later(RESTORE_AFTER_SECS, self._restore, server)
            cap = server.max_connections
        self.logged.event(exc, cap)

    def _restore(self, server: LimitedServer) -> None:
        """The configured cap again once accept() has not failed for a while (the shortage
        may have been other files, since closed)."""
        loop = asyncio.get_running_loop()
        quiet = loop.time() - self.shed_at
        if quiet < RESTORE_AFTER_SECS:
            self.restore = loop.call_later(RESTORE_AFTER_SECS - quiet, self._restore, server)
            return
        self.restore = None
        if self.configured_cap is not None and server.max_connections < self.configured_cap:
            log.info(
                "accept() has not failed for %gs: connection limit back to %d",
                RESTORE_AFTER_SECS,
                self.configured_cap,
            )
            server.max_connections = self.configured_cap
        self.configured_cap = None
