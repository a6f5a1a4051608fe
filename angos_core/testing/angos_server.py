"""Fixtures that run the real ``angos serve`` as a subprocess on a free loopback port.

``angos_server_factory(toml_text)`` writes the config to a file, starts
``angos serve -c FILE --bind 127.0.0.1 --port N`` and waits until ``GET /v2/`` answers. The
config needs no ``[server]`` table: the command line picks the address. Several servers may
share one storage root (multi-replica tests). ``angos_server`` is one server on fs storage in
``tmp_path``.

Each server's stderr goes to a file; when a test fails, the stderr of every server it started
is added to the failure report.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from pathlib import Path

import pytest

# Slack for a busy machine (two test workers, other jobs): a start that answers at all is fine.
START_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 10.0

_servers_key = pytest.StashKey[list["AngosServer"]]()

#: urllib opener for the loopback servers of the tests. Unlike Go clients (docker, skopeo),
#: urllib would send even 127.0.0.1 through an http_proxy set in the environment.
loopback = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def angos_command() -> list[str]:
    """The ``angos`` console script of the running interpreter's environment.

    The script beside ``sys.executable`` is what a user runs after ``pip install``; it is a
    Python script, so the server's pid is the interpreter serving requests (what RSS reads).
    """
    script = Path(sys.executable).parent / "angos"
    if script.exists():
        return [str(script)]
    found = shutil.which("angos")
    if found:
        return [found]
    return [sys.executable, "-c", "import sys; from angos_core.cli import main; sys.exit(main())"]


def read_peak_rss_bytes(pid: int) -> int:
    """VmHWM (peak resident set size) of ``pid`` in bytes, from /proc/<pid>/status."""
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                value, unit = line.split()[1:3]
                assert unit == "kB", line
                return int(value) * 1024
    raise RuntimeError(f"no VmHWM in /proc/{pid}/status")


class AngosServer:
    """One ``angos serve`` process. Restartable on the same port and config."""

    def __init__(
        self,
        config_path: Path,
        workdir: Path,
        *,
        port: int | None = None,
        env: Mapping[str, str] | None = None,
        extra_args: Sequence[str] = (),
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.config_path = config_path
        #: For a server with ``[server.tls]``: the client context readiness is probed with
        #: (trusting the test CA; with a client certificate if the server requires one).
        self.ssl_context = ssl_context
        self.workdir = workdir
        self.port = port or free_port()
        self.stderr_path = workdir / f"angos-{self.port}.stderr"
        self._env = {**os.environ, **(env or {})}
        self._extra_args = list(extra_args)
        self._proc: subprocess.Popen[bytes] | None = None
        self._last_peak_rss: int | None = None
        self.starts = 0

    # ------------------------------------------------------------------ addresses

    @property
    def host(self) -> str:
        """``127.0.0.1:PORT``: the registry part of an image reference."""
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"{'https' if self.ssl_context is not None else 'http'}://{self.host}"

    @property
    def pid(self) -> int:
        if self._proc is None:
            raise RuntimeError("the server is not running")
        return self._proc.pid

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> AngosServer:
        if self.running:
            raise RuntimeError(f"angos on port {self.port} is already running")
        cmd = [
            *angos_command(),
            "serve",
            "-c",
            str(self.config_path),
            "--bind",
            "127.0.0.1",
            "--port",
            str(self.port),
            *self._extra_args,
        ]
        # Append, so a restart keeps the previous run's log for the failure report.
        with open(self.stderr_path, "ab") as err:
            err.write(f"==== start {self.starts + 1}: {' '.join(cmd)}\n".encode())
            err.flush()
            self._proc = subprocess.Popen(
                cmd,
                cwd=self.workdir,
                env=self._env,
                stdin=subprocess.DEVNULL,
                stdout=err,
                stderr=err,
            )
        self.starts += 1
        self._last_peak_rss = None
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            assert self._proc is not None
            code = self._proc.poll()
            if code is not None:
                self._proc = None
                raise RuntimeError(
                    f"angos serve exited with {code} before answering GET /v2/:\n"
                    + self.stderr_text()
                )
            try:
                with self.opener().open(f"{self.url}/v2/", timeout=2) as resp:
                    if resp.status == 200:
                        return
            except urllib.error.HTTPError as exc:
                # 401 is a live registry that wants auth: ready as well.
                if exc.code == 401:
                    return
                last_error = exc
            except (OSError, urllib.error.URLError) as exc:
                last_error = exc
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(
            f"angos serve did not answer GET /v2/ within {START_TIMEOUT_S}s "
            f"(last error: {last_error}):\n" + self.stderr_text()
        )

    def opener(self, ssl_context: ssl.SSLContext | None = None) -> urllib.request.OpenerDirector:
        """A urllib opener for this server, bypassing proxies; over HTTPS with
        ``ssl_context`` (default: the server's probe context)."""
        context = ssl_context or self.ssl_context
        if context is None:
            return loopback
        return urllib.request.build_opener(
            urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=context)
        )

    def peak_rss_bytes(self) -> int:
        """Peak RSS (VmHWM) of the running server, or of the last run once it stopped."""
        if self.running:
            self._last_peak_rss = read_peak_rss_bytes(self.pid)
        if self._last_peak_rss is None:
            raise RuntimeError("the server has not run")
        return self._last_peak_rss

    def _end(self, sig: signal.Signals) -> int | None:
        proc = self._proc
        if proc is None:
            return None
        if proc.poll() is None:
            with contextlib.suppress(OSError, RuntimeError):
                self._last_peak_rss = read_peak_rss_bytes(proc.pid)
            proc.send_signal(sig)
            try:
                proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._proc = None
        return proc.returncode

    def stop(self) -> int | None:
        """Graceful stop (SIGTERM, SIGKILL after a timeout). Returns the exit code."""
        return self._end(signal.SIGTERM)

    def kill(self) -> int | None:
        """Crash-stop (SIGKILL): what a power cut or OOM kill looks like to storage."""
        return self._end(signal.SIGKILL)

    def restart(self) -> AngosServer:
        """Stop (gracefully) and start again: same port, same config, same storage."""
        self.stop()
        return self.start()

    def stderr_text(self) -> str:
        try:
            return self.stderr_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no stderr file)"

    def wait_for_log(self, text: str, timeout: float = 10.0) -> str:
        """The server's stderr once it holds ``text``. The access log line of a request is
        written after its response is sent, so a client can finish before the line exists;
        a test asserting on it right after a client call waits here (bounded)."""
        deadline = time.monotonic() + timeout
        while True:
            log = self.stderr_text()
            if text in log:
                return log
            if time.monotonic() >= deadline:
                raise AssertionError(f"{text!r} not in the server's log after {timeout}s:\n{log}")
            time.sleep(0.05)

    def __repr__(self) -> str:
        return f"AngosServer({self.url}, config={self.config_path})"


AngosServerFactory = Callable[..., AngosServer]


@pytest.fixture
def angos_server_factory(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AngosServerFactory]:
    """``factory(toml_text, *, port=None, env=None, extra_args=(), start=True,
    ssl_context=None) -> AngosServer`` (``ssl_context``: see :attr:`AngosServer.ssl_context`).

    Every server started through it is stopped when the test ends.
    """
    servers: list[AngosServer] = []
    request.node.stash[_servers_key] = servers

    def factory(
        toml_text: str,
        *,
        port: int | None = None,
        env: Mapping[str, str] | None = None,
        extra_args: Sequence[str] = (),
        start: bool = True,
        ssl_context: ssl.SSLContext | None = None,
    ) -> AngosServer:
        workdir = tmp_path_factory.mktemp("angos")
        config_path = workdir / "config.toml"
        config_path.write_text(toml_text)
        server = AngosServer(
            config_path,
            workdir,
            port=port,
            env=env,
            extra_args=extra_args,
            ssl_context=ssl_context,
        )
        servers.append(server)
        if start:
            server.start()
        return server

    yield factory
    for server in servers:
        server.stop()


def fs_config(root_dir: Path) -> str:
    """The smallest single-instance config: fs storage, memory lock and cache by default."""
    return f'[blob_store.fs]\nroot_dir = "{root_dir}"\n'


@pytest.fixture
def angos_server(angos_server_factory: AngosServerFactory, tmp_path: Path) -> AngosServer:
    """One running Angos on fs storage under ``tmp_path/registry-data``."""
    return angos_server_factory(fs_config(tmp_path / "registry-data"))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.failed:
        for server in item.stash.get(_servers_key, []):
            report.sections.append((f"angos server {server.host} stderr", server.stderr_text()))
    return report


#: What tests import (fixtures and hooks come from angos_core.testing.pytest_plugin).
__all__ = [
    "START_TIMEOUT_S",
    "STOP_TIMEOUT_S",
    "AngosServer",
    "AngosServerFactory",
    "angos_command",
    "free_port",
    "fs_config",
    "loopback",
    "read_peak_rss_bytes",
]
