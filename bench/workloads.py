"""The workloads, each a coroutine driving one registry over HTTP with aiohttp.

Every workload checks the status of every response (a registry that answers errors fast must
not look fast) and returns a :class:`Measure`: its figure plus what a reader needs to trust it.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import random
import re
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin, urlsplit

import aiohttp

from bench.datagen import BLOCK, BlobStream, small_blob

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
MANIFEST_ACCEPT = ", ".join(
    [
        OCI_MANIFEST,
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    ]
)
MB = 1_000_000


class BenchError(RuntimeError):
    """A registry answered something a correct registry would not."""


@dataclass
class Measure:
    value: float
    detail: dict[str, Any] = field(default_factory=dict)


def session(
    concurrency: int, timeout: float, headers: dict[str, str] | None = None
) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=concurrency)
    return aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=timeout),
        auto_decompress=False,
        headers=headers,  # e.g. Authorization, sent with every request
        # Reading a blob in large pieces keeps the client's share of the CPU small.
        read_bufsize=4 * 1024 * 1024,
    )


async def _expect(resp: aiohttp.ClientResponse, *statuses: int, what: str) -> None:
    if resp.status not in statuses:
        body = (await resp.read())[:500]
        raise BenchError(f"{what}: HTTP {resp.status} (expected {statuses}): {body!r}")


def _location(base: str, resp: aiohttp.ClientResponse) -> str:
    loc = resp.headers.get("Location")
    if not loc:
        raise BenchError(f"{resp.method} {resp.url}: no Location header")
    return urljoin(base + "/", loc)


def _with_query(url: str, query: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}{query}"


async def start_upload(s: aiohttp.ClientSession, base: str, repo: str) -> str:
    async with s.post(f"{base}/v2/{repo}/blobs/uploads/", data=b"") as resp:
        await _expect(resp, 202, what="POST upload")
        await resp.read()
        return _location(base, resp)


async def finish_upload(
    s: aiohttp.ClientSession, base: str, loc: str, digest: str, body: bytes = b""
) -> None:
    headers = {"Content-Type": "application/octet-stream"}
    async with s.put(_with_query(loc, f"digest={digest}"), data=body, headers=headers) as resp:
        await _expect(resp, 201, what="PUT upload")
        await resp.read()


async def push_streamed(s: aiohttp.ClientSession, base: str, repo: str, blob: BlobStream) -> None:
    """POST, one PATCH without a length (chunked transfer), PUT ?digest=."""
    loc = await start_upload(s, base, repo)
    headers = {"Content-Type": "application/octet-stream"}
    async with s.patch(loc, data=blob.aiter(), headers=headers) as resp:
        await _expect(resp, 202, what="PATCH streamed")
        await resp.read()
        loc = _location(base, resp)
    await finish_upload(s, base, loc, blob.digest)


async def push_chunked(
    s: aiohttp.ClientSession, base: str, repo: str, blob: BlobStream, chunk: int = BLOCK
) -> int:
    """POST, then PATCHes of ``chunk`` bytes with Content-Range, PUT ?digest=."""
    loc = await start_upload(s, base, repo)
    patches = 0
    for start in range(0, blob.size, chunk):
        end = min(blob.size, start + chunk)
        headers = {
            "Content-Type": "application/octet-stream",
            "Content-Range": f"{start}-{end - 1}",
            "Content-Length": str(end - start),
        }
        async with s.patch(loc, data=blob.aiter(start, end), headers=headers) as resp:
            await _expect(resp, 202, what=f"PATCH {start}-{end - 1}")
            await resp.read()
            loc = _location(base, resp)
        patches += 1
    await finish_upload(s, base, loc, blob.digest)
    return patches


async def pull(s: aiohttp.ClientSession, base: str, repo: str, digest: str, size: int) -> int:
    async with s.get(f"{base}/v2/{repo}/blobs/{digest}") as resp:
        await _expect(resp, 200, what="GET blob")
        n = 0
        async for piece in resp.content.iter_any():
            n += len(piece)
    if n != size:
        raise BenchError(f"GET blob returned {n} bytes, expected {size}")
    return n


def raw_get(url: str, size: int, timeout: float) -> int:
    """GET ``url`` over a plain blocking socket and count the body with ``recv_into``.

    The same receive loop as the loopback reference, so the pull row measures the server,
    not the client's HTTP parser (aiohttp's client costs about a CPU-second per 1.5 GB).
    Runs in a thread; ``recv_into`` releases the GIL.
    """
    u = urlsplit(url)
    host, port = u.hostname or "127.0.0.1", u.port or 80
    with socket.create_connection((host, port), timeout=timeout) as sock:
        request = f"GET {u.path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n"
        sock.sendall(request.encode())
        buf = bytearray(1 << 20)
        head = b""
        while b"\r\n\r\n" not in head:
            n = sock.recv_into(buf)
            if not n:
                raise BenchError(f"GET {url}: connection closed in the headers")
            head += bytes(buf[:n])
            if len(head) > 65536 and b"\r\n\r\n" not in head:
                raise BenchError(f"GET {url}: headers too long")
        header, _, rest = head.partition(b"\r\n\r\n")
        lines = header.decode("latin-1").split("\r\n")
        if lines[0].split()[1] != "200":
            raise BenchError(f"GET {url}: {lines[0]}")
        pairs = (ln.partition(":") for ln in lines[1:])
        fields = {k.strip().lower(): v.strip() for k, _, v in pairs}
        if "content-length" not in fields:
            raise BenchError(f"GET {url}: no Content-Length ({fields})")
        length = int(fields["content-length"])
        got = len(rest)
        while got < length:
            n = sock.recv_into(buf)
            if not n:
                break
            got += n
    if got != size or length != size:
        raise BenchError(f"GET {url}: {got} bytes of {length}, expected {size}")
    return got


async def head_blob(s: aiohttp.ClientSession, base: str, repo: str, digest: str) -> int:
    async with s.head(f"{base}/v2/{repo}/blobs/{digest}") as resp:
        await _expect(resp, 200, what="HEAD blob")
        if resp.headers.get("Docker-Content-Digest", digest) != digest:
            raise BenchError(f"HEAD blob: digest {resp.headers.get('Docker-Content-Digest')}")
        return int(resp.headers.get("Content-Length", "-1"))


async def push_blob(s: aiohttp.ClientSession, base: str, repo: str, data: bytes) -> str:
    """A small blob the way clients push one: POST for a session, PUT ?digest= with the body."""
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    loc = await start_upload(s, base, repo)
    await finish_upload(s, base, loc, digest, data)
    return digest


def image_manifest(config: tuple[str, int], layers: list[tuple[str, int]]) -> bytes:
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": config[0], "size": config[1]},
            "layers": [{"mediaType": OCI_LAYER, "digest": d, "size": n} for d, n in layers],
        },
        indent=3,
    ).encode()


async def put_manifest(
    s: aiohttp.ClientSession,
    base: str,
    repo: str,
    ref: str,
    manifest: bytes,
    retries: Retries | None = None,
) -> None:
    """PUT a manifest; with ``retries``, a 503 is retried after a pause (and counted)."""
    headers = {"Content-Type": OCI_MANIFEST}
    url = f"{base}/v2/{repo}/manifests/{ref}"
    while True:
        async with s.put(url, data=manifest, headers=headers) as r:
            if r.status == 503 and retries is not None and retries.take():
                await r.read()
                await asyncio.sleep(retries.pause)
                continue
            await _expect(r, 201, what=f"PUT manifest {ref}")
            await r.read()
            return


@dataclass
class Retries:
    """A budget of retries shared by the clients of one workload; ``used`` is reported."""

    budget: int
    pause: float = 0.05
    used: int = 0

    def take(self) -> bool:
        if self.used >= self.budget:
            return False
        self.used += 1
        return True


async def push_image(
    s: aiohttp.ClientSession,
    base: str,
    repo: str,
    ref: str,
    rng: random.Random,
    layer_min: int,
    layer_max: int,
) -> None:
    layers = [small_blob(rng, layer_min, layer_max) for _ in range(3)]
    layer_refs = [(await push_blob(s, base, repo, b), len(b)) for b in layers]
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "created": f"2026-01-01T00:00:{rng.randint(0, 59):02d}Z",
            "config": {"Env": [f"BENCH={rng.getrandbits(64):x}"]},
            "rootfs": {"type": "layers", "diff_ids": [d for d, _ in layer_refs]},
        }
    ).encode()
    config_digest = await push_blob(s, base, repo, config)
    await put_manifest(s, base, repo, ref, image_manifest((config_digest, len(config)), layer_refs))


async def run_pool(jobs: int, workers: int, job: Callable[[int], Awaitable[None]]) -> None:
    """Run ``job(i)`` for i in range(jobs) with ``workers`` at once; the first error wins."""
    queue = iter(range(jobs))

    async def worker() -> None:
        for i in queue:
            await job(i)

    try:
        async with asyncio.TaskGroup() as tg:
            for _ in range(workers):
                tg.create_task(worker())
    except ExceptionGroup as group:
        # One worker's error says what went wrong; the others were cancelled by it.
        raise group.exceptions[0] from None


_LINK_NEXT = re.compile(r'<([^>]+)>\s*;\s*rel="?next"?')


async def list_tags(s: aiohttp.ClientSession, base: str, repo: str, n: int) -> tuple[int, int]:
    """Follow ``Link: <...>; rel="next"`` from ``?n=``; return (tags seen, pages)."""
    url: str | None = f"{base}/v2/{repo}/tags/list?n={n}"
    seen, pages = 0, 0
    while url:
        async with s.get(url) as resp:
            await _expect(resp, 200, what="GET tags/list")
            body = await resp.json(content_type=None)
            link = resp.headers.get("Link", "")
        seen += len(body.get("tags") or [])
        pages += 1
        m = _LINK_NEXT.search(link)
        url = urljoin(base + "/", m.group(1)) if m else None
        if pages > 100_000:
            raise BenchError("tags/list pagination does not end")
    return seen, pages


def timed() -> Callable[[], float]:
    t0 = time.perf_counter()
    return lambda: time.perf_counter() - t0


async def wrk_get(
    wrk: str,
    url: str,
    seconds: int,
    connections: int,
    accept: str,
    headers: dict[str, str] | None = None,
) -> Measure:
    """``wrk`` GETs ``url`` for ``seconds`` over ``connections``; requests/s.

    Every response must be 2xx (wrk's non-2xx count is 0), so a registry that answers 401
    fast cannot look fast. ``headers`` are sent with every request (``Authorization``).
    """
    threads = max(1, min(connections, (os.cpu_count() or 1)))
    cmd = [wrk, f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s"]
    for name, value in {"Accept": accept, **(headers or {})}.items():
        cmd += ["-H", f"{name}: {value}"]
    cmd.append(url)
    proc = await asyncio.create_subprocess_exec(
        *cmd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    try:
        out = (await proc.communicate())[0].decode(errors="replace")
    finally:
        if proc.returncode is None:  # cancelled (timeout, Ctrl-C): stop our wrk
            proc.kill()
            await proc.wait()
    if proc.returncode != 0:
        raise BenchError(f"wrk failed ({proc.returncode}): {out}")
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    sock = re.search(r"Socket errors:(.*)", out)
    if not rps:
        raise BenchError(f"cannot read wrk's output: {out}")
    if bad and int(bad.group(1)) > 0:
        raise BenchError(f"wrk saw {bad.group(1)} non-2xx responses: {out}")
    detail: dict[str, Any] = {"wrk": " ".join(cmd[1:5])}
    if sock:
        detail["socket_errors"] = sock.group(1).strip()
    lat = re.search(r"Latency\s+(\S+)", out)
    if lat:
        detail["mean_latency"] = lat.group(1)
    return Measure(float(rps.group(1)), detail)
