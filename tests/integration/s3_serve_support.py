"""Helpers for the tests that drive ``angos serve`` on S3: streamed pushes and pulls, and a
faulty TCP proxy to put between the registry and the S3 endpoint.

Not a fixture module; the tests use these with the fixtures of tests/support.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import random
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp
from yarl import URL

from tests.support.moto_server import S3Bucket

CHUNK = 1024 * 1024


def s3_serve_toml(bucket: S3Bucket, *, redirect: bool = False, **s3: object) -> str:
    """An ``angos serve`` config with blobs and metadata in ``bucket``."""
    return f"[global]\nenable_redirect = {'true' if redirect else 'false'}\n\n" + bucket.toml(
        "blob_store", **s3
    )


def blob_chunks(seed: str, size: int, hasher: hashlib._Hash | None = None) -> AsyncIterator[bytes]:
    """``size`` pseudo-random bytes from ``seed`` in 1 MiB chunks, generated as sent."""
    block = hashlib.shake_256(seed.encode()).digest(CHUNK)

    async def gen() -> AsyncIterator[bytes]:
        sent, index = 0, 0
        while sent < size:
            data = (index.to_bytes(8, "big") + block[8:])[: size - sent]
            if hasher is not None:
                hasher.update(data)
            sent += len(data)
            index += 1
            yield data

    return gen()


def blob_digest(seed: str, size: int) -> str:
    hasher = hashlib.sha256()
    block = hashlib.shake_256(seed.encode()).digest(CHUNK)
    sent, index = 0, 0
    while sent < size:
        data = (index.to_bytes(8, "big") + block[8:])[: size - sent]
        hasher.update(data)
        sent += len(data)
        index += 1
    return f"sha256:{hasher.hexdigest()}"


def client_session() -> aiohttp.ClientSession:
    # trust_env=False: loopback traffic never goes through an http_proxy of the environment.
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=300)
    return aiohttp.ClientSession(timeout=timeout, trust_env=False)


async def push_streamed(
    http: aiohttp.ClientSession, base: str, repo: str, seed: str, size: int
) -> str:
    """POST, one streamed PATCH (chunked encoding, as docker sends a layer), PUT ?digest."""
    url = URL(base)
    async with http.post(url / f"v2/{repo}/blobs/uploads/") as resp:
        assert resp.status == 202, await resp.text()
        location = url.join(URL(resp.headers["Location"]))
    hasher = hashlib.sha256()
    async with http.patch(
        location,
        data=blob_chunks(seed, size, hasher),
        headers={"Content-Type": "application/octet-stream"},
    ) as resp:
        assert resp.status == 202, await resp.text()
        location = url.join(URL(resp.headers["Location"]))
    digest = f"sha256:{hasher.hexdigest()}"
    async with http.put(location.update_query({"digest": digest})) as resp:
        assert resp.status == 201, await resp.text()
    return digest


async def pull_sha256(
    http: aiohttp.ClientSession, base: str, repo: str, digest: str
) -> tuple[int, str]:
    """GET the blob (following redirects); its status and the sha256 digest of its body."""
    hasher = hashlib.sha256()
    async with http.get(URL(base) / f"v2/{repo}/blobs/{digest}") as resp:
        if resp.status != 200:
            return resp.status, ""
        async for chunk in resp.content.iter_chunked(CHUNK):
            hasher.update(chunk)
    return 200, f"sha256:{hasher.hexdigest()}"


# --------------------------------------------------------------------------- fault proxy


@dataclass
class FaultStats:
    connections: int = 0
    refused: int = 0
    delayed: int = 0
    cut: int = 0
    clean: int = 0
    #: Connections actually cut mid-stream (early cuts and end-of-lifetime cuts).
    cut_bytes: int = 0


@dataclass
class FaultProxy:
    """A TCP proxy on loopback in front of ``target`` that misbehaves on a share of the
    connections it accepts: resets some at once (``refuse``), delays some before connecting
    (``delay``), and cuts some early, after 0-256 KiB in either direction (``cut``). Every
    other connection is cut too, after a random 1 to ``max_lifetime_bytes`` bytes, so that
    pooled keep-alive connections keep failing mid-request and mid-response as traffic
    flows, not only when opened.

    Bounded: it serves until :meth:`close`; the shares are fixed, drawn from a seeded RNG.
    """

    target_host: str
    target_port: int
    refuse: float = 0.1
    delay: float = 0.1
    cut: float = 0.1
    max_delay_secs: float = 1.5
    max_lifetime_bytes: int = 8 * 1024 * 1024
    seed: int = 1
    stats: FaultStats = field(default_factory=FaultStats)
    _server: asyncio.Server | None = field(default=None, init=False, repr=False)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set, init=False, repr=False)

    def start(self) -> str:
        """Serve from a thread of its own (so blocking test code does not stall it); return
        the proxy's endpoint URL."""
        self._rng = random.Random(self.seed)
        self._loop = asyncio.new_event_loop()
        ready = threading.Event()

        async def main() -> None:
            self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
            self._stopped = asyncio.Event()
            ready.set()
            await self._stopped.wait()
            self._server.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

        self._thread = threading.Thread(
            target=self._loop.run_until_complete, args=(main(),), daemon=True
        )
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("fault proxy did not start")
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    def close(self) -> None:
        if self._server is None:
            return
        self._loop.call_soon_threadsafe(self._stopped.set)
        self._thread.join(10)
        self._loop.close()
        self._server = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self._serve(reader, writer)
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            self._tasks.discard(task)
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.stats.connections += 1
        roll = self._rng.random()
        if roll < self.refuse:
            self.stats.refused += 1
            # RST rather than FIN: what a crashed or overloaded endpoint looks like.
            sock = writer.get_extra_info("socket")
            if sock is not None:
                import socket
                import struct

                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            return
        cut_after: int | None = None
        if roll < self.refuse + self.delay:
            self.stats.delayed += 1
            await asyncio.sleep(self._rng.uniform(0.2, self.max_delay_secs))
        elif roll < self.refuse + self.delay + self.cut:
            self.stats.cut += 1
            cut_after = self._rng.randint(0, 256 * 1024)
        else:
            self.stats.clean += 1
            cut_after = self._rng.randint(1024 * 1024, self.max_lifetime_bytes)
        up_reader, up_writer = await asyncio.open_connection(self.target_host, self.target_port)
        budget = [cut_after]

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while True:
                    data = await src.read(65536)
                    if not data:
                        break
                    if budget[0] is not None:
                        if len(data) >= budget[0]:
                            dst.write(data[: budget[0]])
                            await dst.drain()
                            self.stats.cut_bytes += 1
                            raise ConnectionAbortedError("fault proxy cut the connection")
                        budget[0] -= len(data)
                    dst.write(data)
                    await dst.drain()
            finally:
                with contextlib.suppress(Exception):
                    dst.close()

        try:
            up = asyncio.ensure_future(pipe(reader, up_writer))
            down = asyncio.ensure_future(pipe(up_reader, writer))
            done, pending = await asyncio.wait({up, down}, return_when=asyncio.FIRST_EXCEPTION)
            if any(t.exception() for t in done if not t.cancelled()):
                for t in pending:
                    t.cancel()
            else:
                await asyncio.gather(*pending, return_exceptions=True)
        finally:
            up_writer.close()
