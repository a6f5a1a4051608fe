"""Blob downloads from local files with ``sendfile`` run in worker threads.

aiohttp's ``FileResponse`` calls ``loop.sendfile``, which issues every ``os.sendfile`` on the
event loop's thread: the kernel's page-cache-to-socket copies of all concurrent downloads
then share one core. ``os.sendfile`` releases the GIL, so issuing it from worker threads lets
several downloads copy on several cores while the loop keeps serving other requests.

Over TLS the body goes through aiohttp's own path (the transport encrypts it; no sendfile).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import struct
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import IO, Any

from aiohttp import web
from aiohttp.abc import AbstractStreamWriter
from aiohttp.web_request import BaseRequest

from angos_core.http.aiohttp_compat import SendfileFileResponse

#: A client that accepts nothing for this long is dropped (the loop's own timeouts cannot
#: see a socket it has handed to a thread).
STALL_TIMEOUT_SECS = 60.0
#: Bytes per ``sendfile`` call: between calls the thread looks at its stop flag, so this
#: bounds how long a stop waits behind a fast client.
_MAX_CALL = 64 << 20
#: The kernel's send timeout while a thread owns the socket: how long one call waits for a
#: client that reads nothing before it returns and the thread looks at its stop flag.
_WAIT_SLICE_SECS = 0.5
#: Bodies from this size up are sent with Nagle's algorithm on (see ``_send_file``).
NAGLE_MIN_BYTES = 4 << 20
#: Threads for downloads only: a slow client holds one for as long as it reads, and must not
#: starve the default executor that hashing and file I/O use.
MAX_THREADS = 64
_executor: ThreadPoolExecutor | None = None


def _pool() -> ThreadPoolExecutor:
    global _executor
    if _executor is None:
        _executor = ThreadPoolExecutor(MAX_THREADS, thread_name_prefix="angos-sendfile")
    return _executor


def _timeval(seconds: float) -> bytes:
    whole = int(seconds)
    return struct.pack("ll", whole, int((seconds - whole) * 1_000_000))


def _abort(sock_fd: int) -> None:
    """The response is abandoned: wake a thread blocked in ``sendfile`` on it at once."""
    sock = socket.socket(fileno=sock_fd)
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.detach()


def _send_file(sock_fd: int, file_fd: int, offset: int, count: int, stop: threading.Event) -> None:
    """Blocking: send ``count`` bytes of ``file_fd`` from ``offset`` to the socket.

    The socket is switched to blocking mode with a kernel send timeout for the transfer:
    the thread then sleeps in the kernel until the client has room, instead of waking for
    every free buffer slot (a non-blocking loop with ``select`` cost 5-7% more server CPU
    per byte pulled in our measurements). Blocking mode is a flag of the open socket,
    shared with the event loop's descriptor, so it is put back before the loop may touch
    the socket again.
    """
    sock = socket.socket(fileno=sock_fd)
    nodelay = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, _timeval(_WAIT_SLICE_SECS))
        if count >= NAGLE_MIN_BYTES:
            # asyncio sets TCP_NODELAY on every connection, which makes the kernel push each
            # 64 KiB that sendfile splices as its own small burst of segments: 20-35% more
            # CPU per byte on loopback in our measurements. Off for a large body, the kernel
            # builds full-size segments; putting it back on afterwards pushes out the last
            # partial one. A small body is latency-bound: there it cost 0.25 ms per MiB.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 0)
        os.set_blocking(sock_fd, True)
        end = offset + count
        stalled = 0.0
        while offset < end and not stop.is_set():
            try:
                sent = os.sendfile(sock_fd, file_fd, offset, min(end - offset, _MAX_CALL))
            except BlockingIOError:  # the send timeout passed and nothing was accepted
                stalled += _WAIT_SLICE_SECS
                if stalled >= STALL_TIMEOUT_SECS:
                    raise TimeoutError("client accepted no data for a minute") from None
                continue
            if sent == 0:
                raise ConnectionResetError("file shorter than announced or socket closed")
            stalled = 0.0
            offset += sent
    finally:
        os.set_blocking(sock_fd, False)
        with contextlib.suppress(OSError):  # a reset connection refuses options
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, _timeval(0))
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, nodelay)
        sock.detach()  # the caller closes the descriptor


class ThreadedFileResponse(SendfileFileResponse):
    """``web.FileResponse`` (Range, If-Range, conditional requests) with threaded sendfile."""

    async def send_body(
        self, request: BaseRequest, fobj: IO[Any], offset: int, count: int
    ) -> AbstractStreamWriter:
        transport = request.transport
        sock = transport.get_extra_info("socket") if transport is not None else None
        # Over TLS the bytes must go through the transport's encryption: a raw sendfile on
        # the socket would put plaintext between TLS records (clients see a bad record MAC).
        tls = transport is not None and transport.get_extra_info("ssl_object") is not None
        if transport is None or sock is None or tls or self.compression or count == 0:
            return await self.aiohttp_send_body(request, fobj, offset, count)
        writer = await web.StreamResponse.prepare(self, request)
        assert writer is not None
        # The headers must be on the wire before the body, and the loop must not read (and
        # so notice a closed connection and close the socket) while a thread writes to it.
        transport.pause_reading()
        try:
            while transport.get_write_buffer_size():
                await writer.drain()
                await asyncio.sleep(0)
            # Duplicate descriptors: if the transport or the file is closed meanwhile
            # (shutdown, a cancelled handler), the thread never touches a reused fd.
            sock_fd, file_fd = os.dup(sock.fileno()), os.dup(fobj.fileno())
            stop = threading.Event()
            task = asyncio.get_running_loop().run_in_executor(
                _pool(), _send_file, sock_fd, file_fd, offset, count, stop
            )

            def close_fds(_f: object) -> None:
                os.close(sock_fd)
                os.close(file_fd)

            task.add_done_callback(close_fds)
            try:
                await asyncio.shield(task)
            except asyncio.CancelledError:
                stop.set()
                if not task.done():  # so the descriptors are still ours, not closed and reused
                    _abort(sock_fd)
                raise
        finally:
            if not transport.is_closing():
                transport.resume_reading()
        await web.StreamResponse.write_eof(self)
        return writer
