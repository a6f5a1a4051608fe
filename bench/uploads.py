"""Peak server memory under many concurrent uploads, Angos against CNCF Distribution (issue 16).

    .venv/bin/python -m bench.uploads [--clients 64,256] [--mib 16] [--angos-toml EXTRA]

Starts Angos (``angos serve``, fs store, the single-node default) and Distribution 2.8
(Debian's ``docker-registry``, its default config: see :mod:`bench.servers`) side by side,
each on a fresh store, and for each client count pushes that many blobs of ``--mib`` MiB at
once to both (registries alternating which goes first): ``POST`` a session, one streamed
``PATCH`` of the whole blob in 256 KiB writes, ``PUT ?digest=``. Every blob is distinct
(its first 8 bytes are its number), checked by status and digest. A fresh server pair is
started per client count, so each peak (``VmHWM`` of the server's process tree) belongs to
that count alone. Prints one table: peak RSS of each, and Distribution/Angos (above 1:
Angos smaller).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import shutil
import sys
import time
from collections.abc import AsyncIterator

from aiohttp import ClientSession, ClientTimeout, TCPConnector

from bench.servers import Angos, Distribution, Registry, ensure_tools, make_workdir

WRITE = 256 * 1024


def _block(mib: int) -> bytes:
    return os.urandom(mib * 1024 * 1024)


def _blob_digest(block: bytes, i: int) -> str:
    h = hashlib.sha256(i.to_bytes(8, "big"))
    h.update(memoryview(block)[8:])
    return "sha256:" + h.hexdigest()


async def _body(block: bytes, i: int) -> AsyncIterator[bytes]:
    view = memoryview(block)
    yield i.to_bytes(8, "big") + bytes(view[8:WRITE])
    for offset in range(WRITE, len(block), WRITE):
        yield bytes(view[offset : offset + WRITE])


async def _push(session: ClientSession, url: str, block: bytes, i: int, digest: str) -> None:
    async with session.post(f"{url}/v2/bench/up/blobs/uploads/") as resp:
        assert resp.status == 202, (resp.status, await resp.text())
        location = resp.headers["Location"]
    if location.startswith("/"):
        location = url + location
    async with session.patch(location, data=_body(block, i)) as resp:
        assert resp.status == 202, (resp.status, await resp.text())
        location = resp.headers["Location"]
    if location.startswith("/"):
        location = url + location
    sep = "&" if "?" in location else "?"
    async with session.put(f"{location}{sep}digest={digest}") as resp:
        assert resp.status == 201, (resp.status, await resp.text())
        assert resp.headers["Docker-Content-Digest"] == digest


async def _round(reg: Registry, clients: int, block: bytes, digests: list[str]) -> float:
    connector = TCPConnector(limit=clients)
    timeout = ClientTimeout(total=600)
    async with ClientSession(connector=connector, timeout=timeout) as session:
        t0 = time.perf_counter()
        await asyncio.gather(
            *(_push(session, reg.url, block, i, digests[i]) for i in range(clients))
        )
        return time.perf_counter() - t0


def _start(clients: int, tools: dict[str, str], angos_toml: str) -> list[Registry]:
    regs: list[Registry] = [
        Angos("angos", make_workdir(None, "angos"), extra_toml=angos_toml),
        Distribution(
            "distribution", make_workdir(None, "distribution"), binary=tools["docker-registry"]
        ),
    ]
    for reg in regs:
        reg.start()
    return regs


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", default="64,256")
    parser.add_argument("--mib", type=int, default=16)
    parser.add_argument("--angos-toml", default="", help="extra TOML for Angos' config")
    args = parser.parse_args()
    tools = ensure_tools({"docker-registry": "docker-registry"})
    block = _block(args.mib)
    rows = []
    for k, clients in enumerate(int(c) for c in args.clients.split(",") if c):
        digests = [_blob_digest(block, i) for i in range(clients)]
        regs = _start(clients, tools, args.angos_toml)
        try:
            order = regs if k % 2 == 0 else regs[::-1]
            secs = {}
            for reg in order:
                secs[reg.name] = await _round(reg, clients, block, digests)
            peak = {reg.name: reg.peak_rss_kib() / 1024 for reg in regs}
        finally:
            for reg in regs:
                reg.stop()
                shutil.rmtree(reg.workdir, ignore_errors=True)
        rows.append((clients, peak, secs))
    print(
        "| workload | Angos peak RSS MiB | Distribution peak RSS MiB "
        "| D/A (>1: Angos smaller) | Angos s | Distribution s |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for clients, peak, secs in rows:
        print(
            f"| {clients} concurrent {args.mib} MiB uploads | {peak['angos']:.1f} | "
            f"{peak['distribution']:.1f} | {peak['distribution'] / peak['angos']:.2f}x | "
            f"{secs['angos']:.2f} | {secs['distribution']:.2f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
