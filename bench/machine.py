"""The machine's own limits, measured in the same run as the registries.

- loopback TCP: a separate process blasts bytes with ``sendall`` from a 1 MiB buffer over one
  127.0.0.1 connection; this process drains them with ``recv_into``. Neither side parses
  anything, so this is what the kernel and two cores allow one stream, an upper bound for a
  blob pull.
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

from bench.datagen import BlobStream

_SENDER = """
import socket, sys
port, total = int(sys.argv[1]), int(sys.argv[2])
buf = bytes(1 << 20)
s = socket.create_connection(("127.0.0.1", port))
left = total
while left > 0:
    n = min(left, len(buf))
    s.sendall(buf[:n] if n < len(buf) else buf)
    left -= n
s.close()
"""


def loopback_mb_s(total: int, timeout: float = 120.0) -> float:
    """MB/s (10^6 bytes) of one loopback TCP stream between two processes."""
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen(1)
        srv.settimeout(timeout)
        port = srv.getsockname()[1]
        proc = subprocess.Popen([sys.executable, "-c", _SENDER, str(port), str(total)])
        try:
            conn, _ = srv.accept()
            with conn:
                conn.settimeout(timeout)
                buf = bytearray(1 << 20)
                got = 0
                t0 = time.perf_counter()
                while True:
                    n = conn.recv_into(buf)
                    if not n:
                        break
                    got += n
                elapsed = time.perf_counter() - t0
            proc.wait(timeout)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    if got != total:
        raise RuntimeError(f"loopback reference received {got} of {total} bytes")
    return total / elapsed / 1e6


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
