"""Catalog and tag listing at scale, Angos alone, in process (issue 16): a quick before and
after figure, not the side-by-side bench.

    .venv/bin/python -m bench.listing [--repos 1000,10000] [--tags 10000]

Each store is a tree of plain directories made directly on disk (fast to build): ``N``
repositories spread as half top-level names and half ``ns<k>/name`` (so the walk meets
nested directories), and one repository with ``T`` tags. The server is the Angos app on an
aiohttp test server over real HTTP on 127.0.0.1, fs metadata with ``cache_listings =
false`` for the tag rows (the shared-filesystem setting) and the default for the catalog.
Each row is one run: this is a shared machine, compare ratios from the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import ClientSession
from aiohttp.test_utils import TestServer

from angos_core.http import make_app_from_toml

DIGEST = "sha256:" + "0" * 64


def make_repositories(root: Path, count: int) -> list[str]:
    names = []
    for i in range(count):
        name = f"repo{i:06d}" if i % 2 == 0 else f"ns{i % 50:02d}/app{i:06d}"
        os.makedirs(root / "v2/repositories" / name / "_manifests/tags", exist_ok=True)
        os.makedirs(root / "v2/repositories" / name / "_layers", exist_ok=True)
        names.append(name)
    return sorted(names)


def make_tags(root: Path, name: str, count: int) -> list[str]:
    tags = []
    base = root / "v2/repositories" / name / "_manifests/tags"
    for i in range(count):
        tag = f"v{i:06d}"
        os.makedirs(base / tag / "current", exist_ok=True)
        (base / tag / "current/link").write_text(DIGEST)
        tags.append(tag)
    return sorted(tags)


async def walk(session: ClientSession, url: str, path: str, n: int, key: str) -> list[str]:
    """Follow Link headers from ``path?n=`` to the end; every name returned, in order."""
    found: list[str] = []
    nxt: str | None = f"{path}?n={n}"
    while nxt:
        async with session.get(url + nxt) as resp:
            assert resp.status == 200, resp.status
            found += (await resp.json())[key]
            link = resp.headers.get("Link")
        nxt = link[1 : link.index(">")] if link else None
    return found


async def timed(coro_factory: Callable[[], Awaitable[None]], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        await coro_factory()
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


async def serve(root: Path, extra: str) -> TestServer:
    toml = f'[blob_store.fs]\nroot_dir = "{root}"\n{extra}'
    server = TestServer(make_app_from_toml(toml))
    await server.start_server()
    return server


async def catalog_rows(count: int) -> list[tuple[str, float]]:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        names = make_repositories(root, count)
        server = await serve(root, "")
        try:
            url = str(server.make_url(""))
            async with ClientSession() as session:

                async def first_page() -> None:
                    got = await walk_one(session, url, "/v2/_catalog?n=100")
                    assert got == names[:100]

                async def whole() -> None:
                    assert await walk(session, url, "/v2/_catalog", 1000, "repositories") == names

                page = await timed(first_page, 5)
                total = await timed(whole, 1)
        finally:
            await server.close()
    return [
        (f"catalog, {count:,} repositories, first page n=100", page),
        (f"catalog, {count:,} repositories, whole walk n=1000", total),
    ]


async def walk_one(session: ClientSession, url: str, path: str) -> list[str]:
    async with session.get(url + path) as resp:
        assert resp.status == 200, resp.status
        names: list[str] = (await resp.json())["repositories"]
        return names


async def tag_rows(count: int) -> list[tuple[str, float]]:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        tags = make_tags(root, "lib/app", count)
        server = await serve(root, "cache_listings = false\n")
        try:
            url = str(server.make_url(""))
            async with ClientSession() as session:

                async def whole() -> None:
                    assert await walk(session, url, "/v2/lib/app/tags/list", 1000, "tags") == tags

                total = await timed(whole, 3)
        finally:
            await server.close()
    return [(f"tags, fs without listing cache, {count:,} tags, whole walk n=1000", total)]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repos", default="1000,10000")
    parser.add_argument("--tags", default="10000")
    args = parser.parse_args()
    rows: list[tuple[str, float]] = []
    for count in (int(c) for c in args.repos.split(",") if c):
        rows += await catalog_rows(count)
    for count in (int(c) for c in args.tags.split(",") if c):
        rows += await tag_rows(count)
    print("| workload | seconds (median) |\n|---|---:|")
    for label, seconds in rows:
        print(f"| {label} | {seconds:.4f} |")


if __name__ == "__main__":
    asyncio.run(main())
