"""Listing at scale and the shared cache, Angos beside CNCF Distribution (issue 16).

    .venv/bin/python -m bench.scale [--repos 1000,10000,100000] [--tags 10000,50000]
                                    [--wrk-seconds 10] [--only catalog,tags,cache]
                                    [--before /work/main/.venv/bin/angos]

Every row runs Angos and Distribution (Debian's ``docker-registry``, its default config:
:mod:`bench.servers`) as separate processes on **the same store**: a tree of plain
directories in Distribution's layout built directly on disk (``bench.listing``), which
both read. Rows:

* catalog: first page ``n=100`` (median of 5) and the whole walk ``n=1000`` following
  ``Link`` (once), for each repository count;
* tags: first page ``n=1000`` (median of 5) and the whole walk ``n=1000`` (median of 3), on
  Angos with the fs listing cache on and off (``cache_listings``), and on Distribution
  (which ignores ``n``: one response holds every tag, and the walk is that one response);
* cache: ``GET`` a manifest by tag, 64 connections, ``wrk``: Angos with the memory cache
  and with the redis cache (a ``redis-server`` on a free port), on one store.

Registries alternate which goes first from one row to the next. Prints one markdown table
with the 1-minute load average before and after.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import ClientSession, ClientTimeout

from bench.listing import make_repositories, make_tags, walk
from bench.servers import Angos, Distribution, Registry, ensure_tools, free_port
from bench.workloads import MANIFEST_ACCEPT, OCI_CONFIG, OCI_LAYER, OCI_MANIFEST, wrk_get

Row = tuple[str, str, dict[str, float]]


async def _timed(run: Callable[[], Awaitable[object]], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        await run()
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


#: ``--before``: another Angos install (``angos`` executable) run beside this one on every
#: catalog and tag row, labelled "... before" (e.g. main's ``.venv/bin/angos``).
BEFORE: list[str] = []


def _servers(store: Path, work: Path, angos_extra: dict[str, str]) -> list[Registry]:
    """Registries serving ``store``: one Angos per extra config (and per ``--before``
    install), then Distribution."""
    made: list[Registry] = []
    for label, extra in angos_extra.items():
        for suffix, executable in [("", ""), *((" before", exe) for exe in BEFORE)]:
            wd = work / f"{label}{suffix}"
            wd.mkdir()
            (wd / "store").symlink_to(store)
            made.append(Angos(f"{label}{suffix}", wd, extra_toml=extra, executable=executable))
    wd = work / "distribution"
    (wd / "store/docker").mkdir(parents=True)
    # Distribution's filesystem driver keeps the tree under <rootdirectory>/docker/registry.
    (wd / "store/docker/registry").symlink_to(store)
    made.append(Distribution("distribution", wd, binary=TOOLS["docker-registry"]))
    return made


async def _first_page(session: ClientSession, url: str, key: str) -> list[str]:
    async with session.get(url) as resp:
        assert resp.status == 200, resp.status
        names: list[str] = (await resp.json())[key]
        return names


async def catalog_rows(count: int, work: Path, turn: int) -> list[Row]:
    store = work / "store"
    names = make_repositories(store, count)
    servers = _servers(store, work, {"angos": ""})
    page: dict[str, float] = {}
    whole: dict[str, float] = {}
    try:
        for s in servers:
            s.start()
        order = servers if turn % 2 == 0 else servers[::-1]
        async with ClientSession(timeout=ClientTimeout(total=600)) as session:
            for s in order:

                async def first(s: Registry = s) -> None:
                    got = await _first_page(session, f"{s.url}/v2/_catalog?n=100", "repositories")
                    assert got == names[:100], s.name

                async def everything(s: Registry = s) -> None:
                    got = await walk(session, s.url, "/v2/_catalog", 1000, "repositories")
                    assert got == names, s.name

                page[s.name] = await _timed(first, 5)
                whole[s.name] = await _timed(everything, 1)
    finally:
        for s in servers:
            s.stop()
    return [
        (f"catalog, {count:,} repositories, first page `n=100`", "s", page),
        (f"catalog, {count:,} repositories, whole walk `n=1000`", "s", whole),
    ]


async def tag_rows(count: int, work: Path, turn: int) -> list[Row]:
    store = work / "store"
    tags = make_tags(store, "lib/app", count)
    servers = _servers(
        store,
        work,
        {"angos (listing cache on)": "", "angos (listing cache off)": "cache_listings = false\n"},
    )
    page: dict[str, float] = {}
    whole: dict[str, float] = {}
    try:
        for s in servers:
            s.start()
        order = servers if turn % 2 == 0 else servers[::-1]
        async with ClientSession(timeout=ClientTimeout(total=600)) as session:
            for s in order:

                async def first(s: Registry = s) -> None:
                    url = f"{s.url}/v2/lib/app/tags/list?n=1000"
                    got = await _first_page(session, url, "tags")
                    # Distribution ignores n (its first page is every tag) and does not sort.
                    assert sorted(got) in (tags[:1000], tags), s.name

                async def everything(s: Registry = s) -> None:
                    got = await walk(session, s.url, "/v2/lib/app/tags/list", 1000, "tags")
                    assert sorted(got) == tags, s.name

                page[s.name] = await _timed(first, 5)
                whole[s.name] = await _timed(everything, 3)
    finally:
        for s in servers:
            s.stop()
    return [
        (f"tags on fs, {count:,} tags, first page `n=1000`", "s", page),
        (f"tags on fs, {count:,} tags, whole walk `n=1000`", "s", whole),
    ]


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


async def _push_image(session: ClientSession, url: str) -> None:
    refs = []
    for data in (b'{"architecture":"amd64","os":"linux"}', os.urandom(4096)):
        digest = _digest(data)
        async with session.post(f"{url}/v2/bench/app/blobs/uploads/") as resp:
            assert resp.status == 202, resp.status
            location = resp.headers["Location"]
        location = url + location if location.startswith("/") else location
        sep = "&" if "?" in location else "?"
        async with session.put(f"{location}{sep}digest={digest}", data=data) as resp:
            assert resp.status == 201, resp.status
        refs.append((digest, len(data)))
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": refs[0][0], "size": refs[0][1]},
            "layers": [{"mediaType": OCI_LAYER, "digest": refs[1][0], "size": refs[1][1]}],
        }
    ).encode()
    headers = {"Content-Type": OCI_MANIFEST}
    async with session.put(
        f"{url}/v2/bench/app/manifests/latest", data=manifest, headers=headers
    ) as resp:
        assert resp.status == 201, resp.status


def _start_redis(port: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [TOOLS["redis-server"], "--port", str(port), "--bind", "127.0.0.1", "--save", ""],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


async def cache_rows(work: Path, seconds: int) -> list[Row]:
    port = free_port()
    redis = _start_redis(port)
    store = work / "store"
    store.mkdir()
    redis_toml = f'\n[cache.redis]\nurl = "redis://127.0.0.1:{port}"\n'
    labels = {
        "angos, memory cache": "",
        "angos, redis cache": redis_toml,
        "angos, redis cache, near cache off": redis_toml + "near_cache_size = 0\n",
    }
    servers = _servers(store, work, labels)[:-1]
    rps: dict[str, float] = {}
    try:
        await asyncio.sleep(0.3)
        for s in servers:
            s.start()
        async with ClientSession() as session:
            await _push_image(session, servers[0].url)
        for s in servers:
            url = f"{s.url}/v2/bench/app/manifests/latest"
            measure = await wrk_get(TOOLS["wrk"], url, seconds, 64, MANIFEST_ACCEPT)
            rps[s.name] = measure.value
    finally:
        for s in servers:
            s.stop()
        redis.terminate()
        redis.wait(10)
    return [("GET manifest by tag, 64 connections (wrk)", "req/s", rps)]


TOOLS: dict[str, str] = {}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repos", default="1000,10000,100000")
    parser.add_argument("--tags", default="10000,50000")
    parser.add_argument("--wrk-seconds", type=int, default=10)
    parser.add_argument("--only", default="catalog,tags,cache")
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--before", default=None, help="another install's angos executable")
    args = parser.parse_args()
    if args.before:
        BEFORE.append(args.before)
    TOOLS.update(
        ensure_tools({"docker-registry": "docker-registry", "wrk": "wrk", "redis-server": "redis"})
    )
    only = set(args.only.split(","))
    load_before = os.getloadavg()
    rows: list[Row] = []
    jobs: list[tuple[str, int]] = []
    if "catalog" in only:
        jobs += [("catalog", int(c)) for c in args.repos.split(",") if c]
    if "tags" in only:
        jobs += [("tags", int(c)) for c in args.tags.split(",") if c]
    if "cache" in only:
        jobs.append(("cache", args.wrk_seconds))
    for turn, (kind, size) in enumerate(jobs):
        work = Path(tempfile.mkdtemp(prefix="angos-bench-scale-", dir=args.workdir))
        try:
            if kind == "catalog":
                rows += await catalog_rows(size, work, turn)
            elif kind == "tags":
                rows += await tag_rows(size, work, turn)
            else:
                rows += await cache_rows(work, size)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        # Rows as they come, so a run cut short still reports what it measured.
        print(json.dumps(rows[-1]), f"load {os.getloadavg()[0]:.1f}", file=sys.stderr, flush=True)
    load_after = os.getloadavg()
    print(f"load average (1 min): {load_before[0]:.2f} before, {load_after[0]:.2f} after\n")
    print("| workload | unit | registry | value |\n|---|---|---|---:|")
    for label, unit, values in rows:
        for name, value in values.items():
            shown = f"{value:,.0f}" if unit == "req/s" else f"{value:.4f}"
            print(f"| {label} | {unit} | {name} | {shown} |")


if __name__ == "__main__":
    asyncio.run(main())
