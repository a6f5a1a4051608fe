"""The machine's own limits, measured in the same run as the registries.

- loopback TCP: a separate process blasts bytes with ``sendall`` from a 1 MiB buffer over
  127.0.0.1 connections; this process drains them with ``recv_into``. Neither side parses
  anything, so this is what the kernel and the cores allow: an upper bound for a blob pull.
  Measured with one stream, and with as many streams (one receiving thread each) as the
  pull row has clients.
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
import socket, sys, threading
port, total, streams = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
buf = bytes(1 << 20)

def send():
    s = socket.create_connection(("127.0.0.1", port))
    left = total
    while left > 0:
        n = min(left, len(buf))
        s.sendall(buf[:n] if n < len(buf) else buf)
        left -= n
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


def loopback_mb_s(total: int, streams: int = 1, timeout: float = 120.0) -> float:
    """MB/s (10^6 bytes) of ``streams`` loopback TCP connections between two processes,
    ``total`` bytes each; with several streams, one receiving thread per stream (the pull
    row's client shape)."""
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen(streams)
        srv.settimeout(timeout)
        port = srv.getsockname()[1]
        proc = subprocess.Popen(
            [sys.executable, "-c", _SENDER, str(port), str(total), str(streams)]
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
