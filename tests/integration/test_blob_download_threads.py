"""Blob downloads from local files: sendfile in worker threads (angos_core.http.threaded_sendfile).

Against a real ``angos serve``: concurrent and ranged downloads get exactly the stored bytes,
and a client that hangs up mid-body costs the server neither a descriptor nor its service.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import socket
import threading
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import pytest

from angos_core.http import threaded_sendfile
from tests.support.angos_server import AngosServer

SIZE = 16 * 1024 * 1024
DATA = (hashlib.sha256(b"seed").digest() * (SIZE // 32))[:SIZE]
DIGEST = "sha256:" + hashlib.sha256(DATA).hexdigest()


async def _push(http: aiohttp.ClientSession, base: str) -> None:
    async with http.post(f"{base}/v2/dl/blobs/uploads/?digest={DIGEST}", data=DATA) as resp:
        assert resp.status == 201, await resp.text()


async def _get(http: aiohttp.ClientSession, url: str, headers: dict[str, str]) -> bytes:
    async with http.get(url, headers=headers) as resp:
        assert resp.status in (200, 206), await resp.text()
        return await resp.read()


def _open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def _hang_up_mid_body(url: str) -> None:
    """Ask for the blob, read 64 KiB of it, then reset the connection."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port)) as sock:
        sock.sendall(f"GET {parts.path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        received = 0
        while received < 64 * 1024:
            chunk = sock.recv(65536)
            assert chunk, "server closed before sending the body"
            received += len(chunk)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")


async def test_concurrent_and_ranged_downloads_are_exact(angos_server: AngosServer) -> None:
    url = f"{angos_server.url}/v2/dl/blobs/{DIGEST}"
    async with aiohttp.ClientSession(trust_env=False) as http:
        await _push(http, angos_server.url)
        bodies = await asyncio.gather(*(_get(http, url, {}) for _ in range(8)))
        assert all(body == DATA for body in bodies)
        start, end = 5_000_000, 9_999_999
        ranged = await _get(http, url, {"Range": f"bytes={start}-{end}"})
        assert ranged == DATA[start : end + 1]
        assert await _get(http, url, {"Range": "bytes=-10"}) == DATA[-10:]


async def test_client_hanging_up_mid_body_leaks_nothing(angos_server: AngosServer) -> None:
    url = f"{angos_server.url}/v2/dl/blobs/{DIGEST}"
    async with aiohttp.ClientSession(trust_env=False) as http:
        await _push(http, angos_server.url)
        assert await _get(http, url, {}) == DATA  # warm: the server's pools exist
    baseline = _open_fds(angos_server.pid)

    for _ in range(5):
        await asyncio.to_thread(_hang_up_mid_body, url)

    for _ in range(100):  # the server notices the resets within moments; allow 10 s
        if _open_fds(angos_server.pid) <= baseline:
            break
        await asyncio.sleep(0.1)
    assert _open_fds(angos_server.pid) <= baseline
    async with aiohttp.ClientSession(trust_env=False) as http:
        assert await _get(http, url, {}) == DATA


def _server_socket_flags(pid: int, client_port: int) -> int:
    """The ``flags`` of the server's descriptor for the connection from ``client_port``."""
    inode = None
    with open("/proc/net/tcp", encoding="ascii") as table:
        for line in table.readlines()[1:]:
            fields = line.split()
            if int(fields[2].split(":")[1], 16) == client_port:  # rem_address: the client
                inode = fields[9]
    assert inode is not None, f"no server socket for client port {client_port}"
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/{pid}/fd/{fd}") == f"socket:[{inode}]":
                with open(f"/proc/{pid}/fdinfo/{fd}", encoding="ascii") as info:
                    for line in info:
                        if line.startswith("flags:"):
                            return int(line.split()[1], 8)
    raise AssertionError(f"socket inode {inode} not among the server's descriptors")


def _read_response(sock: socket.socket) -> tuple[bytes, bytes]:
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(65536)
        assert chunk, "connection closed in the headers"
        head += chunk
    header, _, body = head.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in header.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    parts = [body]
    got = len(body)
    while got < length:
        chunk = sock.recv(1 << 20)
        assert chunk, "connection closed in the body"
        parts.append(chunk)
        got += len(chunk)
    return header, b"".join(parts)


async def test_keep_alive_connection_is_handed_back_non_blocking(
    angos_server: AngosServer,
) -> None:
    """The sending thread puts the shared socket in blocking mode; the event loop must get
    it back non-blocking, or one slow write would stall every other client."""
    async with aiohttp.ClientSession(trust_env=False) as http:
        await _push(http, angos_server.url)
    parts = urlsplit(angos_server.url)
    assert parts.hostname and parts.port

    def download_twice_on_one_connection() -> int:
        with socket.create_connection((parts.hostname, parts.port)) as sock:
            for _ in range(2):
                request = f"GET /v2/dl/blobs/{DIGEST} HTTP/1.1\r\nHost: x\r\n\r\n"
                sock.sendall(request.encode())
                header, body = _read_response(sock)
                assert header.startswith(b"HTTP/1.1 200"), header
                assert body == DATA
            return _server_socket_flags(angos_server.pid, sock.getsockname()[1])

    flags = await asyncio.to_thread(download_twice_on_one_connection)
    assert flags & os.O_NONBLOCK


async def test_stalled_reader_blocks_nobody_and_gets_every_byte(angos_server: AngosServer) -> None:
    url = f"{angos_server.url}/v2/dl/blobs/{DIGEST}"
    async with aiohttp.ClientSession(trust_env=False) as http:
        await _push(http, angos_server.url)
    parts = urlsplit(url)
    assert parts.hostname and parts.port
    with socket.create_connection((parts.hostname, parts.port)) as stalled:
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        stalled.sendall(f"GET {parts.path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        # The stalled client reads nothing for over two of the thread's send timeouts.
        async with aiohttp.ClientSession(trust_env=False) as http:
            for _ in range(3):
                assert await _get(http, url, {}) == DATA
                await asyncio.sleep(0.5)
        header, body = await asyncio.to_thread(_read_response, stalled)
    assert header.startswith(b"HTTP/1.1 200"), header
    assert body == DATA


def test_send_file_hands_the_socket_back_as_it_found_it(tmp_path: Path) -> None:
    """A large body is sent with Nagle on and in blocking mode; afterwards the connection's
    TCP_NODELAY, send timeout and non-blocking flag are what the event loop had set."""
    payload = os.urandom(threaded_sendfile.NAGLE_MIN_BYTES + 12345)
    path = tmp_path / "blob"
    path.write_bytes(payload)
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname())
        server, _ = listener.accept()
    with client, server, open(path, "rb") as f:
        server.setblocking(False)
        server.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        received = bytearray()

        def drain() -> None:
            while len(received) < len(payload):
                chunk = client.recv(1 << 20)
                assert chunk
                received.extend(chunk)

        reader = threading.Thread(target=drain)
        reader.start()
        threaded_sendfile._send_file(
            server.fileno(), f.fileno(), 0, len(payload), threading.Event()
        )
        reader.join(30)
        assert bytes(received) == payload
        assert server.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
        assert server.getsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, 16) == bytes(16)
        assert not os.get_blocking(server.fileno())
        with pytest.raises(ConnectionResetError):  # a file shorter than announced
            threaded_sendfile._send_file(
                server.fileno(), f.fileno(), len(payload), 10, threading.Event()
            )
        assert not os.get_blocking(server.fileno())
