"""Plain TCP connections read at most RECV_BYTES per recv(): what one read brings in is
what a paused upload's reader holds beyond its high-water mark."""

from __future__ import annotations

import asyncio
import socket
from unittest.mock import Mock

from angos_core.http.connections import RECV_BYTES, limit_recv_size


async def test_a_socket_connection_reads_at_most_recv_bytes() -> None:
    loop = asyncio.get_running_loop()
    ours, theirs = socket.socketpair()
    try:
        transport, _ = await loop.connect_accepted_socket(asyncio.Protocol, ours)
        assert limit_recv_size(transport)
        assert transport.max_size == RECV_BYTES  # type: ignore[attr-defined]
        transport.close()
    finally:
        theirs.close()


def test_a_transport_without_a_read_size_is_left_alone() -> None:
    # TLS and uvloop transports: no per-instance max_size to lower.
    transport = Mock(spec=asyncio.Transport)
    assert not limit_recv_size(transport)
    assert not hasattr(transport, "max_size")
