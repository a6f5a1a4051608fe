"""The machine's own limits, measured in the same run as the registries.

- loopback TCP: a separate process blasts bytes with ``sendall`` from a 1 MiB buffer of
  random bytes over 127.0.0.1 connections; this process drains them with ``recv_into``.
  Neither side parses anything, so this is what the kernel and the cores allow: an upper
  bound for a blob pull. Measured with one stream, and with as many streams (one receiving
  thread each) as the pull row has clients.
- sendfile from the page cache: the same, but each stream is a whole file of the pull
  row's size sent with ``sendfile``. Unlike the hot 1 MiB buffer, those bytes come from
  memory the CPU caches do not hold, which is what serving a real blob costs.
- sha256: :mod:`hashlib` (OpenSSL) over the same pseudo-random stream the pushes send,
  single-threaded, which is the cost every registry pays per pushed byte.
"""

from __future__ import annotations

import os
import platform
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from bench.datagen import BlobStream

_SENDER = """
import os, socket, sys, threading
port, streams, total, path = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
# Random bytes, as iperf3 sends: a buffer of zeros is mapped to the kernel's one zero page,
# which makes every copy out of it read the same 4 KiB and flatters the figure.
buf = os.urandom(1 << 20)

def send_buffer(s):
    left = total
    while left > 0:
        n = min(left, len(buf))
        s.sendall(buf[:n] if n < len(buf) else buf)
        left -= n

def send_file(s):
    fd = os.open(path, os.O_RDONLY)
    try:
        offset = 0
        while offset < total:
            offset += os.sendfile(s.fileno(), fd, offset, total - offset)
    finally:
        os.close(fd)

def send():
    s = socket.create_connection(("127.0.0.1", port))
    (send_file if path else send_buffer)(s)
    s.close()

threads = [threading.Thread(target=send) for _ in range(streams)]
for t in threads:
    t.start()
for t in threads:
    t.join()
"""


def _drain(conn: socket.socket, timeout: float) -> int:
    conn.settimeout(timeout)
    buf = bytearray(1 << 20)
    got = 0
    with conn:
        while True:
            n = conn.recv_into(buf)
            if not n:
                return got
            got += n


def _receive_mb_s(total: int, streams: int, path: str, timeout: float) -> float:
    """MB/s (10^6 bytes) received from ``streams`` connections of a sender process that
    sends ``total`` bytes on each: from a buffer, or with ``sendfile`` from ``path``."""
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen(streams)
        srv.settimeout(timeout)
        port = srv.getsockname()[1]
        # In its own session, as the registries run: with the kernel's autogroup scheduling
        # (on by default) a session is one scheduling group, so a sender sharing this
        # process's group would get the cores on better terms than a registry does.
        proc = subprocess.Popen(
            [sys.executable, "-c", _SENDER, str(port), str(streams), str(total), path],
            start_new_session=True,
        )
        try:
            conns = [srv.accept()[0] for _ in range(streams)]
            t0 = time.perf_counter()
            with ThreadPoolExecutor(streams) as pool:
                got = sum(pool.map(lambda c: _drain(c, timeout), conns))
            elapsed = time.perf_counter() - t0
            proc.wait(timeout)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    if got != total * streams:
        raise RuntimeError(f"loopback reference received {got} of {total * streams} bytes")
    return got / elapsed / 1e6


def loopback_mb_s(total: int, streams: int = 1, timeout: float = 120.0) -> float:
    """MB/s of ``streams`` loopback TCP connections between two processes, ``total`` bytes
    each from a 1 MiB buffer; with several streams, one receiving thread per stream (the
    pull row's client shape)."""
    return _receive_mb_s(total, streams, "", timeout)


def sendfile_mb_s(path: str, streams: int, timeout: float = 120.0) -> float:
    """MB/s of ``streams`` connections each carrying the whole file ``path`` with
    ``sendfile``: what the kernel allows for serving that file from the page cache, with no
    HTTP and no registry (the ceiling of the pull row, whatever the server)."""
    return _receive_mb_s(os.path.getsize(path), streams, path, timeout)


def write_reference_file(path: str, size: int) -> None:
    """``size`` pseudo-random bytes at ``path``, flushed, then read once, so the page cache
    holds them clean (as it holds a pushed blob by the time it is pulled)."""
    blob = BlobStream(seed=7, size=size)
    with open(path, "wb") as f:
        for piece in blob.pieces():
            f.write(piece)
        f.flush()
        os.fsync(f.fileno())
    with open(path, "rb") as f:
        while f.read(1 << 20):
            pass


def sha256_mb_s(size: int) -> float:
    """MB/s of hashlib.sha256 over ``size`` bytes of the benchmark's blob stream."""
    blob = BlobStream(seed=999, size=size)
    t0 = time.perf_counter()
    _ = blob.digest
    return size / (time.perf_counter() - t0) / 1e6


def describe() -> dict[str, str]:
    """nproc, CPU model, RAM, kernel: what docs/performance.md records beside the table."""
    model = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem_kib = 0
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    mem_kib = int(line.split()[1])
    except OSError:
        pass
    return {
        "nproc": str(os.cpu_count() or 0),
        "cpu": model,
        "ram": f"{mem_kib / 1024 / 1024:.1f} GiB",
        "kernel": platform.release(),
        "python": platform.python_version(),
    }
