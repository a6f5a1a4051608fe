"""A real ``redis-server`` for the tests, on a free loopback port, with persistence off.

Fixtures (registered by :mod:`angos_core.testing.pytest_plugin`):

``redis_server`` (session scope) -> :class:`RedisServer`
    One ``redis-server`` process for the whole session, killed at the end. Use its ``url``
    (``redis://127.0.0.1:<port>/0``). ``stop()`` kills it, ``start()`` brings it back on the
    same port (empty: nothing is persisted), ``down()`` is a context manager doing both for
    outage tests. ``flushall()`` empties it. Skipped (failed under CI=true) if redis-server
    is not installed.

``redis_url`` (function scope) -> str
    The session server's URL, after making sure it is running and empty, so each test
    starts from a clean server. Tests that call ``stop()`` need not restart it themselves.

The module speaks just enough RESP over a raw socket (PING, FLUSHALL) to manage the server,
so it does not depend on a Redis client library.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from angos_core.testing.tools import require_tool

_START_TIMEOUT_SECS = 10.0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _command(port: int, *args: str, timeout: float = 2.0) -> bytes:
    """Send one RESP command and return the first reply line (e.g. ``b"+PONG"``)."""
    payload = f"*{len(args)}\r\n".encode() + b"".join(
        f"${len(a.encode())}\r\n{a}\r\n".encode() for a in args
    )
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(payload)
        reply = b""
        while not reply.endswith(b"\r\n"):
            chunk = s.recv(4096)
            if not chunk:
                break
            reply += chunk
    return reply.strip()


class RedisServer:
    """One ``redis-server`` subprocess; can be stopped and restarted on the same port."""

    def __init__(self, executable: str, workdir: Path, port: int | None = None) -> None:
        self.executable = executable
        self.workdir = workdir
        self.port = port or _free_port()
        self.host = "127.0.0.1"
        self._proc: subprocess.Popen[bytes] | None = None
        self._log = workdir / "redis.log"

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        """Start the server (no-op if running) and wait until it answers PING."""
        if self.running:
            return
        args = [
            self.executable,
            "--bind", self.host,
            "--port", str(self.port),
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.workdir),
            "--logfile", str(self._log),
            "--protected-mode", "no",
        ]  # fmt: skip
        self._proc = subprocess.Popen(args, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + _START_TIMEOUT_SECS
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(
                    f"redis-server exited with {self._proc.returncode}; log:\n{self.log_tail()}"
                )
            with contextlib.suppress(OSError):
                if _command(self.port, "PING", timeout=0.5) == b"+PONG":
                    return
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"redis-server did not answer PING on port {self.port}")

    def stop(self) -> None:
        """Kill the server and wait until its port refuses connections."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.kill()  # an outage, not a clean shutdown
        proc.wait(timeout=10)

    def restart(self) -> None:
        self.stop()
        self.start()

    @contextlib.contextmanager
    def down(self) -> Iterator[None]:
        """Redis is unreachable inside the block and running (empty) again after it."""
        self.stop()
        try:
            yield
        finally:
            self.start()

    @contextlib.contextmanager
    def frozen(self) -> Iterator[None]:
        """Redis hangs (SIGSTOP) inside the block and carries on with its data after it."""
        if self._proc is None or not self.running:
            raise RuntimeError("redis-server is not running")
        proc = self._proc
        proc.send_signal(signal.SIGSTOP)
        try:
            yield
        finally:
            proc.send_signal(signal.SIGCONT)

    def flushall(self) -> None:
        reply = _command(self.port, "FLUSHALL")
        if reply != b"+OK":
            raise RuntimeError(f"FLUSHALL answered {reply!r}")

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self._log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "<no log>"


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    executable = require_tool("redis-server", "install it with: apt-get install redis-server")
    with tempfile.TemporaryDirectory(prefix="angos-redis-") as workdir:
        server = RedisServer(executable, Path(workdir))
        server.start()
        try:
            yield server
        finally:
            server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    redis_server.start()
    redis_server.flushall()
    return redis_server.url


#: What tests import (fixtures and hooks come from angos_core.testing.pytest_plugin).
__all__ = [
    "RedisServer",
]
