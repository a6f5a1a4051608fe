"""``angos serve`` as a process: graceful SIGTERM and ``--workers N``.

* SIGTERM during a streamed upload: the listening socket closes at once (new connections are
  refused), the in-flight upload completes with 201, the process exits 0 and the blob is
  stored intact. Past ``shutdown_grace_secs`` the in-flight request is cancelled instead and
  nothing half-written becomes visible.
* ``--workers 2`` with Redis locks and cache: both worker processes answer requests on one
  port, and ``/metrics`` on either sums over both; SIGTERM to the master stops both and
  exits 0; a worker that dies is replaced; a killed master takes its workers with it.
  ``--workers 2`` with the memory lock or the memory cache refuses to start (exit 2) and
  says what to configure.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import time
import urllib.request
from pathlib import Path

import pytest

from tests.support.angos_server import AngosServer, AngosServerFactory, loopback
from tests.support.cli import run_angos
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.timeout(120)


def _fs(root: Path, extra: str = "") -> str:
    return f'[blob_store.fs]\nroot_dir = "{root}"\n{extra}'


def _redis(url: str) -> str:
    return f'[metadata_store.fs.redis]\nurl = "{url}"\n[cache.redis]\nurl = "{url}"\n'


def _start_upload(server: AngosServer, name: str) -> str:
    req = urllib.request.Request(f"{server.url}/v2/{name}/blobs/uploads/", method="POST")
    with loopback.open(req, timeout=10) as resp:
        assert resp.status == 202
        location: str = resp.headers["Location"]
        return location


def _send_partial_put(server: AngosServer, location: str, data: bytes, sent: int) -> socket.socket:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    sock.sendall(
        f"PUT {location}?digest={digest} HTTP/1.1\r\nHost: x\r\n"
        f"Content-Type: application/octet-stream\r\nContent-Length: {len(data)}\r\n\r\n".encode()
        + data[:sent]
    )
    return sock


def _read_status(sock: socket.socket) -> int:
    buf = b""
    while b"\r\n" not in buf:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError(f"closed before a status line: {buf!r}")
        buf += chunk
    return int(buf.split(b" ", 2)[1])


def _refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except ConnectionRefusedError:
        return True
    return False


def _wait_refused(port: int, secs: float = 10) -> None:
    deadline = time.monotonic() + secs
    while not _refused(port):
        assert time.monotonic() < deadline, "the port still accepts connections"
        time.sleep(0.05)


def _blob_file(root: Path, data: bytes) -> Path:
    hexd = hashlib.sha256(data).hexdigest()
    return root / "v2" / "blobs" / "sha256" / hexd[:2] / hexd / "data"


# --------------------------------------------------------------------------- graceful


def test_sigterm_lets_an_in_flight_upload_finish(
    angos_server_factory: AngosServerFactory, tmp_path: Path
) -> None:
    root = tmp_path / "data"
    server = angos_server_factory(_fs(root))
    data = os.urandom(4 * 1024 * 1024)
    location = _start_upload(server, "graceful")
    with _send_partial_put(server, location, data, len(data) // 2) as sock:
        time.sleep(0.3)  # the handler is reading the body
        os.kill(server.pid, signal.SIGTERM)
        _wait_refused(server.port)  # no new connections ...
        assert server.running  # ... while the in-flight request goes on
        sock.sendall(data[len(data) // 2 :])
        assert _read_status(sock) == 201
    assert server.stop() == 0
    assert _blob_file(root, data).read_bytes() == data
    assert "shutting down: listening stopped; 1 request(s) in flight" in server.stderr_text()


def test_past_the_grace_period_the_request_is_cancelled(
    angos_server_factory: AngosServerFactory, tmp_path: Path
) -> None:
    root = tmp_path / "data"
    server = angos_server_factory(_fs(root, "[server]\nshutdown_grace_secs = 1\n"))
    data = os.urandom(1024 * 1024)
    location = _start_upload(server, "graceful")
    with _send_partial_put(server, location, data, 1000):
        time.sleep(0.3)
        start = time.monotonic()
        os.kill(server.pid, signal.SIGTERM)
        proc = server._proc
        assert proc is not None
        assert proc.wait(timeout=30) == 0
        assert time.monotonic() - start < 20
    assert not _blob_file(root, data).exists()


def test_past_the_grace_period_a_stalled_download_is_cut(
    angos_server_factory: AngosServerFactory, tmp_path: Path
) -> None:
    """A download's bytes go out from a worker thread blocked in ``sendfile``; shutdown must
    wake it rather than wait for the client (or the one-minute stall limit)."""
    server = angos_server_factory(_fs(tmp_path / "data", "[server]\nshutdown_grace_secs = 1\n"))
    data = os.urandom(16 * 1024 * 1024)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    req = urllib.request.Request(
        f"{server.url}/v2/dl/blobs/uploads/?digest={digest}", data=data, method="POST"
    )
    with loopback.open(req, timeout=30) as resp:
        assert resp.status == 201
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        sock.sendall(f"GET /v2/dl/blobs/{digest} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        assert _read_status(sock) == 200  # and then the client reads nothing more
        start = time.monotonic()
        os.kill(server.pid, signal.SIGTERM)
        proc = server._proc
        assert proc is not None
        assert proc.wait(timeout=30) == 0
        assert time.monotonic() - start < 10
    assert "shutting down: listening stopped; 1 request(s) in flight" in server.stderr_text()


# --------------------------------------------------------------------------- workers


def test_workers_refuse_the_memory_lock(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text(_fs(tmp_path / "data"))
    result = run_angos(["serve", "-c", str(config), "--port", "0", "--workers", "2"], tmp_path)
    assert result.returncode == 2
    err = result.stderr.strip()
    assert err.startswith("angos: config error: server.workers: 2 workers need a lock provider")
    assert "is 'memory': it only excludes requests inside one process" in err
    assert "[metadata_store.fs.redis]" in err
    assert "Traceback" not in result.stderr
    # check-config says the same about a config asking for workers.
    config.write_text(_fs(tmp_path / "data", "[server]\nworkers = 3\n"))
    result = run_angos(["check-config", "-c", str(config)], tmp_path)
    assert result.returncode == 1
    assert "3 workers need a lock provider" in result.stderr


def test_workers_refuse_the_memory_cache(tmp_path: Path, redis_url: str) -> None:
    config = tmp_path / "c.toml"
    config.write_text(_fs(tmp_path / "data", f'[metadata_store.fs.redis]\nurl = "{redis_url}"\n'))
    result = run_angos(["serve", "-c", str(config), "--port", "0", "--workers", "2"], tmp_path)
    assert result.returncode == 2
    assert "2 workers need a cache shared by every process" in result.stderr
    assert "[cache.redis]" in result.stderr


def _children(pid: int) -> set[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except FileNotFoundError:
        return set()
    return {int(p) for p in text.split()}


def _access_pids(server: AngosServer) -> set[int]:
    pids = set()
    for line in server.stderr_text().splitlines():
        if line.startswith("{"):
            entry = json.loads(line)
            if entry.get("logger") == "angos.access":
                pids.add(int(entry["pid"]))
    return pids


def _wait_for(predicate: object, secs: float = 20) -> None:
    deadline = time.monotonic() + secs
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_two_workers_share_the_port(
    angos_server_factory: AngosServerFactory, tmp_path: Path, redis_url: str
) -> None:
    toml = _fs(tmp_path / "data", _redis(redis_url) + '[log]\nformat = "json"\n')
    server = angos_server_factory(toml, extra_args=["--workers", "2"])
    _wait_for(lambda: "with 2 workers" in server.stderr_text())
    workers = _children(server.pid)
    assert len(workers) == 2
    # Every request on a new connection: the kernel spreads them over both workers.
    for _ in range(60):
        with loopback.open(f"{server.url}/v2/", timeout=10) as resp:
            assert resp.status == 200
    _wait_for(lambda: _access_pids(server) == workers)

    # /metrics on either worker answers the sum over both (multiprocess files): every
    # scrape, whichever worker takes it, sees all 60 requests (+ the fixture's readiness GET).
    counts = {_base_requests(server) for _ in range(8)}
    assert len(counts) == 1
    assert counts.pop() >= 61

    # A push through one worker is seen by the other (shared lock, cache and store).
    data = b"shared" * 1000
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    req = urllib.request.Request(
        f"{server.url}/v2/w/blobs/uploads/?digest={digest}", data=data, method="POST"
    )
    with loopback.open(req, timeout=10) as resp:
        assert resp.status == 201
    for _ in range(10):
        with loopback.open(f"{server.url}/v2/w/blobs/{digest}", timeout=10) as resp:
            assert resp.read() == data

    assert server.stop() == 0
    for pid in workers:
        assert not Path(f"/proc/{pid}").exists() or _is_zombie(pid)
    assert _refused(server.port)


def _base_requests(server: AngosServer) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    with loopback.open(f"{server.url}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "angos_http_requests_total" and s.labels.get("route") == "/v2/"
    )


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except FileNotFoundError:
        return True


def test_a_dead_worker_is_replaced(
    angos_server_factory: AngosServerFactory, tmp_path: Path, redis_url: str
) -> None:
    server = angos_server_factory(
        _fs(tmp_path / "data", _redis(redis_url)), extra_args=["--workers", "2"]
    )
    _wait_for(lambda: "with 2 workers" in server.stderr_text())
    first = _children(server.pid)
    time.sleep(5.5)  # past the start-up window, where a death stops everything
    victim = min(first)
    os.kill(victim, signal.SIGKILL)
    _wait_for(lambda: len(_children(server.pid) - {victim}) == 2)
    assert "starting a new one" in server.stderr_text()
    for _ in range(10):
        with loopback.open(f"{server.url}/v2/", timeout=10) as resp:
            assert resp.status == 200
    assert server.stop() == 0


def test_a_killed_master_takes_its_workers(
    angos_server_factory: AngosServerFactory, tmp_path: Path, redis_url: str
) -> None:
    server = angos_server_factory(
        _fs(tmp_path / "data", _redis(redis_url)),
        extra_args=["--workers", "2"],
        env={"TMPDIR": str(tmp_path)},  # a killed master cannot remove its metrics dir
    )
    _wait_for(lambda: "with 2 workers" in server.stderr_text())
    workers = _children(server.pid)
    server.kill()
    _wait_for(lambda: all(not Path(f"/proc/{p}").exists() for p in workers), secs=30)
    _wait_refused(server.port)


def test_a_worker_failing_at_startup_stops_the_server(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    redis_server.start()
    url = redis_server.url
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    config = tmp_path / "c.toml"
    config.write_text(_fs(blocker / "data", _redis(url)))
    result = run_angos(
        ["serve", "-c", str(config), "--bind", "127.0.0.1", "--port", "0", "--workers", "2"],
        tmp_path,
    )
    assert result.returncode == 1
    assert "angos: worker" in result.stderr
    assert "exited with 1 while starting" in result.stderr
