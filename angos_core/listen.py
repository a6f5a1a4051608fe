"""The listening sockets of ``angos serve``, bound before anything else starts.

``angos serve`` binds first and opens the backends after, so a port in use, a bind address
the machine does not have or a privileged port is one line naming the fix, before a backend
has opened anything (the fs store creates its root directory when it opens).
"""

from __future__ import annotations

import contextlib
import errno
import socket

from angos_core.errors import AngosError

#: Pending connections the kernel queues for each listening socket.
BACKLOG = 1024


class ListenError(AngosError):
    """The server cannot listen where it was asked to; the message names the fix."""


def _explain(exc: OSError, host: str, port: int) -> str:
    where = f"port {port} on {host}"
    if exc.errno == errno.EADDRINUSE:
        return (
            f"{where} is in use (another angos?); stop it or pass --port (or change [server] port)"
        )
    if exc.errno == errno.EADDRNOTAVAIL:
        return (
            f"{host} is not an address of this machine; pass --bind 127.0.0.1 (this machine "
            "only), --bind 0.0.0.0 (every address) or one of its addresses"
        )
    if exc.errno == errno.EACCES and 0 < port < 1024:
        return (
            f"{where}: ports below 1024 need root or CAP_NET_BIND_SERVICE; pass --port 1024 "
            "or higher, e.g. --port 8000"
        )
    return f"cannot listen on {where}: {exc.strerror or exc}"


def listen_sockets(host: str, port: int, *, reuse_port: bool = False) -> list[socket.socket]:
    """Bound, listening, non-blocking sockets for every address ``host`` resolves to (as
    ``loop.create_server`` would make); :class:`ListenError` with a one-line fix otherwise.

    ``reuse_port``: ``SO_REUSEPORT``, for the workers that share one port.
    """
    try:
        infos = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except socket.gaierror as exc:
        raise ListenError(
            f"cannot listen on {host!r}: not an address, nor a host name this machine "
            f"resolves ({exc.strerror}); pass --bind 127.0.0.1, --bind 0.0.0.0 or one of "
            "its addresses"
        ) from None
    sockets: list[socket.socket] = []
    seen = set()
    try:
        for family, kind, proto, _, address in infos:
            if address in seen:
                continue
            seen.add(address)
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:
                # As asyncio does: an IPv6 socket must not also claim the IPv4 port.
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                sock.bind(address)
                sock.listen(BACKLOG)
            except OSError as exc:
                raise ListenError(_explain(exc, str(address[0]), port)) from None
            sock.setblocking(False)
    except BaseException:
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.close()
        raise
    return sockets


def check_port_free(host: str, port: int) -> int:
    """Raise :class:`ListenError` unless nothing listens on ``host:port``; the port (the one
    the kernel picked for 0).

    Bound without ``SO_REUSEPORT``, so it also fails when another set of workers holds the
    port with ``SO_REUSEPORT`` (which a worker's own bind would silently join).
    """
    sockets = listen_sockets(host, port)
    try:
        return int(sockets[0].getsockname()[1])
    finally:
        for sock in sockets:
            sock.close()
