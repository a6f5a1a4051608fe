"""Idle connections cannot starve a request (issue 10, finding 6).

A real ``angos serve`` with a low open-file limit (``RLIMIT_NOFILE`` 256, set on the running
process with ``prlimit``) is sent more idle connections than both its ``[server]
max_connections`` and its open-file limit allow; a normal ``GET /v2/`` must still answer
(within a bound far below the 73 s it took before, while nothing else is asked of the
server), the server must hold no more connections than its cap, and asyncio's per-attempt
"socket.accept() out of system resource" ERROR lines must not flood the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import resource
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp import web

from angos_core.http import connections, make_app_from_toml
from angos_core.http.connections import LimitedAppRunner
from tests.support.angos_server import AngosServer, AngosServerFactory, loopback

pytestmark = pytest.mark.timeout(120)

#: Far below the 73 s a request waited before, far above a loaded machine's answer time.
ANSWER_TIMEOUT_SECS = 10.0


def _fs(root: Path, extra: str = "") -> str:
    return f'[blob_store.fs]\nroot_dir = "{root}"\n{extra}'


@contextlib.contextmanager
def soft_nofile(limit: int) -> Iterator[None]:
    """This process's soft open-file limit (inherited by what it starts) is ``limit``."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def open_idle(server: AngosServer, count: int) -> list[socket.socket]:
    """``count`` connections that send nothing (the kernel completes them from the backlog
    whether or not the server accepts them)."""
    conns = []
    for _ in range(count):
        conn = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        conns.append(conn)
    return conns


def get_v2(server: AngosServer) -> float:
    start = time.monotonic()
    with loopback.open(f"{server.url}/v2/", timeout=ANSWER_TIMEOUT_SECS) as resp:
        assert resp.status == 200
    return time.monotonic() - start


def server_sockets(pid: int) -> int:
    fd_dir = Path(f"/proc/{pid}/fd")
    count = 0
    for fd in fd_dir.iterdir():
        with contextlib.suppress(OSError):
            if os.readlink(fd).startswith("socket:"):
                count += 1
    return count


def nofile_limits(pid: int) -> tuple[int, int]:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            soft, hard = line.split()[3:5]
            return tuple(  # type: ignore[return-value]
                resource.RLIM_INFINITY if v == "unlimited" else int(v) for v in (soft, hard)
            )
    raise AssertionError("no open-file limit in /proc/PID/limits")


def accept_error_lines(server: AngosServer) -> list[str]:
    return [
        line
        for line in server.stderr_text().splitlines()
        if "out of system resource" in line or "accept() failed" in line
    ]


def settle(check: object, timeout: float = 10.0) -> None:
    """Wait (bounded) until ``check()`` is true: the server accepts in its own time."""
    deadline = time.monotonic() + timeout
    while not check() and time.monotonic() < deadline:  # type: ignore[operator]
        time.sleep(0.05)


def test_the_open_file_limit_is_raised_to_the_hard_limit(
    angos_server_factory: AngosServerFactory, tmp_path: Path
) -> None:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    with soft_nofile(256):
        server = angos_server_factory(_fs(tmp_path / "d"))
    soft_now, hard_now = nofile_limits(server.pid)
    assert soft_now == hard_now == hard
    raised = [line for line in server.stderr_text().splitlines() if "open-file limit" in line]
    assert len(raised) == 1, raised
    assert f"raised from 256 to {hard}" in raised[0]


def test_idle_connections_beyond_the_cap_do_not_starve_a_request(
    angos_server_factory: AngosServerFactory, tmp_path: Path
) -> None:
    cap = 50
    server = angos_server_factory(_fs(tmp_path / "d", f"[server]\nmax_connections = {cap}\n"))
    resource.prlimit(server.pid, resource.RLIMIT_NOFILE, (256, 256))
    idle_answer = min(get_v2(server) for _ in range(5))
    base = server_sockets(server.pid)
    conns = open_idle(server, 400)  # more than the cap and than the open-file limit
    try:
        # The oldest idle connections were closed by the server to make room.
        conns[0].settimeout(ANSWER_TIMEOUT_SECS)
        assert conns[0].recv(1) == b""
        loaded_answer = get_v2(server)
        held = server_sockets(server.pid) - base
        assert held <= cap + 1, held
        # The newest idle connections are the ones kept open.
        assert conns[-1].fileno() >= 0
        print(f"GET /v2/: idle {idle_answer:.4f}s, with 400 idle connections {loaded_answer:.4f}s")
    finally:
        for conn in conns:
            conn.close()
    # asyncio accepts a whole burst in one loop pass, before any connection is handed to
    # the cap: a burst larger than the free descriptors still meets EMFILE once, and says so
    # in one line, not one per attempt.
    assert len(accept_error_lines(server)) <= 3, accept_error_lines(server)
    assert "every connection busy" not in server.stderr_text()  # idle ones made room


def test_running_out_of_descriptors_is_logged_once_and_recovers(
    angos_server_factory: AngosServerFactory, tmp_path: Path
) -> None:
    """A limit lowered under the running server (the cap no longer fits): accept() fails
    with EMFILE; idle connections are closed so the request still gets in, and the failures
    are a line per interval, not one per attempt."""
    server = angos_server_factory(_fs(tmp_path / "d"))
    resource.prlimit(server.pid, resource.RLIMIT_NOFILE, (128, 128))
    conns = open_idle(server, 300)
    try:
        settle(lambda: len(accept_error_lines(server)) > 0)
        answer = get_v2(server)
        print(f"GET /v2/ after EMFILE: {answer:.4f}s")
        time.sleep(1.5)  # asyncio would have retried (and logged) several times by now
    finally:
        for conn in conns:
            conn.close()
    lines = accept_error_lines(server)
    assert 1 <= len(lines) <= 3, lines
    assert "Too many open files" in lines[0]
    assert "Traceback" not in server.stderr_text()


async def test_at_the_cap_with_every_connection_busy_a_new_one_is_closed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Busy connections are never reclaimed: the newcomer is closed at once instead."""
    app = make_app_from_toml(_fs(tmp_path / "d"))
    runner = LimitedAppRunner(app, max_connections=2)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        digest = "sha256:" + "0" * 64
        busy = []
        for _ in range(2):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            # A monolithic upload whose body stalls half way: a request in progress.
            writer.write(
                f"POST /v2/lib/app/blobs/uploads/?digest={digest} HTTP/1.1\r\n"
                "Host: x\r\nContent-Length: 100\r\n\r\nhalf".encode()
            )
            await writer.drain()
            busy.append((reader, writer))
        await asyncio.sleep(0.2)  # both requests reach their handlers
        with caplog.at_level(logging.WARNING, logger="angos"):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n")
            assert await asyncio.wait_for(reader.read(), ANSWER_TIMEOUT_SECS) == b""
            writer.close()
        assert any("every connection busy" in r.getMessage() for r in caplog.records)
        # The busy ones were left alone: each still gets its answer.
        for reader, writer in busy:
            writer.write(b"x" * 96)
            await writer.drain()
            status = await asyncio.wait_for(reader.readline(), ANSWER_TIMEOUT_SECS)
            assert status.startswith(b"HTTP/1.1 400"), status  # wrong digest: DIGEST_INVALID
            writer.close()
    finally:
        await runner.cleanup()


async def test_the_lowered_cap_comes_back_after_a_quiet_while(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """EMFILE lowers the cap to what fitted; without another failure it is restored."""
    monkeypatch.setattr(connections, "RESTORE_AFTER_SECS", 0.2)
    app = make_app_from_toml(_fs(tmp_path / "d"))
    runner = LimitedAppRunner(app, max_connections=100)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        server = runner.server
        assert isinstance(server, connections.LimitedServer)
        loop = asyncio.get_running_loop()
        handler = connections.AcceptErrors(runner)
        emfile = OSError(errno.EMFILE, "Too many open files")
        context = {"message": "socket.accept() out of system resource", "exception": emfile}
        with caplog.at_level(logging.INFO, logger="angos"):
            for _ in range(50):  # asyncio's burst: one report per queued connection
                handler(loop, context)
            assert server.max_connections == 1  # nothing was open: nothing fitted
            await asyncio.sleep(0.5)
            assert server.max_connections == 100
        messages = [r.getMessage() for r in caplog.records]
        assert sum("accept() failed" in m for m in messages) == 1
        assert any("connection limit back to 100" in m for m in messages)
    finally:
        await runner.cleanup()
