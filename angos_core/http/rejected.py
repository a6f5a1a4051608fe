"""Requests aiohttp's HTTP parser rejects before the app sees them.

docker and skopeo first try TLS on a registry port, so every session against a plain-HTTP
Angos sends a TLS ClientHello the parser refuses; fuzzers and broken clients send malformed
request lines and headers. aiohttp answers each with 400 and logs it through its server
logger, as an ERROR with a traceback (or at debug level), and the access log would show a
request ``"UNKNOWN /"`` nobody sent. Here each becomes one INFO line saying what happened,
without a traceback, at most :data:`BURST` lines per :data:`WINDOW_SECS` (a flood is
summed up in the next line), and the access log skips the placeholder request.

The hook is aiohttp's ``logger`` argument of its request handler (passed through the app's
``handler_args``): :class:`ServerLog` wraps the logger aiohttp would use.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from aiohttp.http import HttpProcessingError

log = logging.getLogger("angos.http")

#: Lines about rejected requests per window; the rest are counted and reported after.
BURST = 10
WINDOW_SECS = 60.0
#: The longest parser message written (they quote the offending bytes).
MAX_DETAIL = 200

TLS_PROBE = (
    "client %s tried TLS on this plain-HTTP port; use http:// (docker: insecure-registries; "
    "skopeo: --tls-verify=false) or put a TLS-terminating proxy in front%s"
)
MALFORMED = "rejected a malformed request from %s with 400: %s%s"


class RateLimit:
    """At most ``burst`` events per ``window`` seconds; counts the ones it refuses."""

    def __init__(
        self,
        burst: int = BURST,
        window: float = WINDOW_SECS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.burst = burst
        self.window = window
        self.clock = clock
        self.start = clock()
        self.count = 0
        self.suppressed = 0

    def allow(self) -> int | None:
        """None: refused (counted). Else the number refused since the last allowed one."""
        now = self.clock()
        if now - self.start >= self.window:
            self.start, self.count = now, 0
        if self.count >= self.burst:
            self.suppressed += 1
            return None
        self.count += 1
        refused, self.suppressed = self.suppressed, 0
        return refused


def _printable(text: str) -> str:
    """One line, control characters escaped (the parser quotes client bytes)."""
    flat = " ".join(text.split())
    return "".join(c if c.isprintable() else ascii(c)[1:-1] for c in flat)[:MAX_DETAIL]


def is_tls_probe(exc: HttpProcessingError) -> bool:
    # aiohttp recognises the ClientHello (0x16 0x03) and says so in the message.
    line = str(getattr(exc, "line", ""))
    return "HTTPS traffic" in exc.message or line.startswith(("\x16\x03", "'\\x16\\x03"))


class ServerLog(logging.LoggerAdapter[logging.Logger]):
    """aiohttp's server logger with the rejected requests turned into one line each."""

    def __init__(self, logger: logging.Logger, limit: RateLimit | None = None) -> None:
        super().__init__(logger, {})
        self.limit = limit or RateLimit()

    def log(self, level: int, msg: object, *args: object, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info")
        if isinstance(exc, tuple):
            exc = exc[1]
        if not isinstance(exc, HttpProcessingError):
            super().log(level, msg, *args, **kwargs)
            return
        if not log.isEnabledFor(logging.INFO):
            return
        refused = self.limit.allow()
        if refused is None:
            return
        # aiohttp's message is "Error handling request from %s" with the peer's address.
        remote = str(args[0]) if args else "?"
        more = f" ({refused} more rejected requests not logged)" if refused else ""
        if is_tls_probe(exc):
            log.info(TLS_PROBE, remote, more)
        else:
            log.info(MALFORMED, remote, _printable(exc.message), more)


def server_log() -> ServerLog:
    """The logger for an app's ``handler_args``: aiohttp's own, wrapped."""
    return ServerLog(logging.getLogger("aiohttp.server"))
