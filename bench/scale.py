"""Listing at scale and the shared cache, Angos beside CNCF Distribution (issue 16).

    .venv/bin/python -m bench.scale [--repos 1000,10000,100000] [--tags 10000,50000]
                                    [--s3-tags 10000] [--wrk-seconds 10]
                                    [--only catalog,tags,tags-s3,cache]
                                    [--before /work/main/.venv/bin/angos]

Every row runs Angos and Distribution (Debian's ``docker-registry``, its default config:
:mod:`bench.servers`) as separate processes on **the same store**: a tree of plain
directories in Distribution's layout built directly on disk (``bench.listing``), which
both read, or for ``tags-s3`` one bucket. Rows:

* catalog: first page ``n=100`` (median of 5) and the whole walk ``n=1000`` following
  ``Link`` (once), for each repository count;
* tags: first page ``n=1000`` (median of 5), the whole walk ``n=1000`` (median of 3) and
  every tag in one response (no ``n``, median of 3: the like-for-like row), on
  Angos with the fs listing cache on and off (``cache_listings``), and on Distribution
  (which ignores ``n``: one response holds every tag, and the walk is that one response);
* tags-s3: the same three rows (and the first page's cold first round) on one bucket of a
  moto server (its own process, over HTTP on 127.0.0.1), which Angos lists through its
  ``[blob_store.s3]`` store (metadata inherited, ``key_prefix`` ``bench/docker/registry``)
  and Distribution through its ``s3`` driver (``rootdirectory: /bench``). The tags are put
  straight into the bucket with boto3 (``SEED_THREADS`` threads), 2 keys a tag (``current``
  link and index entry) and the one manifest they point at; seeding is timed (a row) and
  costs about 6.5-8 ms of moto per key, 2-2.5 minutes at 10,000 tags, so ``--s3-tags``
  defaults to 10,000 alone. Rows also count the S3 requests of each registry's first and
  last round (moto's request log). Caveat: moto's ``ListObjects`` (v1, which Distribution 2.8 sends)
  applies ``max-keys`` to keys, not to common prefixes, so Distribution gets every tag in
  one request where S3 would take one per 1,000; Angos's ``ListObjectsV2`` is capped at
  1,000 as on S3. ``--before`` does not apply to these rows;
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
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple

from aiohttp import ClientSession, ClientTimeout

from angos_core import layout
from angos_core.testing.moto_server import ACCESS_KEY_ID, REGION, SECRET_KEY, create_bucket
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


class TagReads(NamedTuple):
    """The three tag reads of a row, each checked whole."""

    #: The first page ``n=1000``.
    first: Callable[[], Awaitable[None]]
    #: The whole walk in pages of ``n=1000``, following ``Link``.
    walk: Callable[[], Awaitable[None]]
    #: Every tag in one response (no ``n``): what Distribution answers to the other two.
    whole: Callable[[], Awaitable[None]]


def _tag_reads(session: ClientSession, s: Registry, tags: list[str]) -> TagReads:
    async def first() -> None:
        got = await _first_page(session, f"{s.url}/v2/lib/app/tags/list?n=1000", "tags")
        # Distribution ignores n (its first page is every tag) and does not sort.
        assert sorted(got) in (tags[:1000], tags), s.name

    async def walked() -> None:
        got = await walk(session, s.url, "/v2/lib/app/tags/list", 1000, "tags")
        assert sorted(got) == tags, s.name

    async def whole() -> None:
        got = await _first_page(session, f"{s.url}/v2/lib/app/tags/list", "tags")
        assert sorted(got) == tags, s.name

    return TagReads(first, walked, whole)


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
    one: dict[str, float] = {}
    try:
        for s in servers:
            s.start()
        order = servers if turn % 2 == 0 else servers[::-1]
        async with ClientSession(timeout=ClientTimeout(total=600)) as session:
            for s in order:
                reads = _tag_reads(session, s, tags)
                page[s.name] = await _timed(reads.first, 5)
                whole[s.name] = await _timed(reads.walk, 3)
                one[s.name] = await _timed(reads.whole, 3)
    finally:
        for s in servers:
            s.stop()
    return [
        (f"tags on fs, {count:,} tags, first page `n=1000`", "s", page),
        (f"tags on fs, {count:,} tags, whole walk `n=1000`", "s", whole),
        (f"tags on fs, {count:,} tags, every tag in one response (no `n`)", "s", one),
    ]


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


#: Threads putting the seed keys: moto answers one request at a time under its GIL (about
#: 6 ms of its CPU per PutObject), so more threads only add contention on 2 cores.
SEED_THREADS = 8
#: Distribution's ``rootdirectory`` in the bucket; its s3 driver keeps the tree under
#: ``<rootdirectory>/docker/registry``, which is Angos's ``key_prefix``.
S3_ROOT = "bench"


def _start_moto(log: Path) -> tuple[subprocess.Popen[bytes], str]:
    """A moto server (its own process, over HTTP on 127.0.0.1) whose request log goes to
    ``log``: one line per request, which :func:`_s3_requests` counts."""
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env={**os.environ, "AWS_DEFAULT_REGION": REGION},
        )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"moto exited at start:\n{log.read_text(errors='replace')}")
        try:
            with urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1):
                return proc, endpoint
        except urllib.error.HTTPError:
            return proc, endpoint  # it answered
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("moto did not answer within 30 s")


def _s3_requests(log: Path, offset: int) -> tuple[Counter[str], int]:
    """Requests in moto's log after byte ``offset``, by kind: ``list`` (a GET on the bucket
    itself), ``get``, ``head``, ``put`` (on a key), ``other``; and the offset read to."""
    counts: Counter[str] = Counter()
    with open(log, "rb") as f:
        f.seek(offset)
        data = f.read()
    # Only whole lines: a line still being written is counted with the next read.
    data = data[: data.rfind(b"\n") + 1]
    text = data.decode(errors="replace")
    for line in text.splitlines():
        m = _REQUEST_LINE.search(line)
        if m is None:
            continue
        method, path = m.group(1), m.group(2).split("?", 1)[0]
        on_key = "/" in path.strip("/")
        if method == "GET":
            counts["get" if on_key else "list"] += 1
        elif method in ("HEAD", "PUT") and on_key:
            counts[method.lower()] += 1
        else:
            counts["other"] += 1
    return counts, offset + len(data)


# werkzeug's access log line: ... "GET /bucket/key?query HTTP/1.1" 200 -
_REQUEST_LINE = re.compile(r'"(?:\x1b\[[0-9;]*m)*([A-Z]+) (\S+) HTTP/[0-9.]+')


def _seed_s3_tags(endpoint: str, bucket: str, name: str, count: int) -> list[str]:
    """``count`` tags of repository ``name`` in the bucket, in Distribution's layout under
    ``S3_ROOT/docker/registry`` (as a push leaves them: each tag's ``current`` link and
    its index entry, 2 keys, all pointing at one manifest whose revision link, layer links
    and blobs are there too); the sorted tags."""
    import boto3
    from botocore.config import Config

    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=ACCESS_KEY_ID,
        aws_secret_access_key=SECRET_KEY,
        region_name=REGION,
        config=Config(s3={"addressing_style": "path"}, max_pool_connections=SEED_THREADS),
    )
    config_blob = b'{"architecture":"amd64","os":"linux"}'
    layer_blob = b"bench layer"
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": OCI_CONFIG,
                "digest": _digest(config_blob),
                "size": len(config_blob),
            },
            "layers": [
                {"mediaType": OCI_LAYER, "digest": _digest(layer_blob), "size": len(layer_blob)}
            ],
        }
    ).encode()
    digest = _digest(manifest)
    link = layout.link_content(digest)
    objects: list[tuple[str, bytes]] = [(layout.revision_link_key(name, digest), link)]
    for blob in (config_blob, layer_blob, manifest):
        objects.append((layout.blob_data_key(_digest(blob)), blob))
    for blob in (config_blob, layer_blob):
        objects.append(
            (layout.layer_link_key(name, _digest(blob)), layout.link_content(_digest(blob)))
        )
    tags = [f"v{i:06d}" for i in range(count)]
    for tag in tags:
        objects.append((layout.tag_index_key(name, tag, digest), link))
        objects.append((layout.tag_current_key(name, tag), link))
    root = f"{S3_ROOT}/docker/registry/"

    def put(obj: tuple[str, bytes]) -> None:
        client.put_object(Bucket=bucket, Key=root + obj[0], Body=obj[1])

    with ThreadPoolExecutor(SEED_THREADS) as pool:
        list(pool.map(put, objects))
    return tags


async def tag_s3_rows(count: int, work: Path, turn: int) -> list[Row]:
    """The tag rows on one S3 bucket (moto) that Angos (its s3 blob and metadata store) and
    Distribution (its s3 driver) both list."""
    log = work / "moto.log"
    moto, endpoint = _start_moto(log)
    try:
        bucket = create_bucket(endpoint)
        t0 = time.perf_counter()
        tags = await asyncio.to_thread(_seed_s3_tags, endpoint, bucket, "lib/app", count)
        seeded = time.perf_counter() - t0
        print(f"seeded {count:,} tags on moto in {seeded:.1f} s", file=sys.stderr, flush=True)
        wd = work / "angos"
        wd.mkdir()
        angos = Angos(
            "angos",
            wd,
            store_toml=(
                "[blob_store.s3]\n"
                f'bucket = "{bucket}"\n'
                f'endpoint = "{endpoint}"\n'
                f'access_key_id = "{ACCESS_KEY_ID}"\n'
                f'secret_key = "{SECRET_KEY}"\n'
                f'region = "{REGION}"\n'
                f'key_prefix = "{S3_ROOT}/docker/registry"\n'
            ),
        )
        wd = work / "distribution"
        wd.mkdir()
        # With regionendpoint set, Distribution 2.8's s3 driver addresses the bucket by path
        # (it has no forcepathstyle key before 3.0), which is what moto on 127.0.0.1 needs.
        distribution = Distribution(
            "distribution",
            wd,
            binary=TOOLS["docker-registry"],
            storage_yaml=(
                "  s3:\n"
                f"    accesskey: {ACCESS_KEY_ID}\n"
                f"    secretkey: {SECRET_KEY}\n"
                f"    region: {REGION}\n"
                f"    regionendpoint: {endpoint}\n"
                f"    bucket: {bucket}\n"
                "    secure: false\n"
                "    v4auth: true\n"
                f"    rootdirectory: /{S3_ROOT}\n"
            ),
        )
        servers: list[Registry] = [angos, distribution]
        cold: dict[str, float] = {}
        page: dict[str, float] = {}
        whole: dict[str, float] = {}
        one: dict[str, float] = {}
        requests: dict[str, dict[str, float]] = {}
        try:
            for s in servers:
                s.start()
            order = servers if turn % 2 == 0 else servers[::-1]
            async with ClientSession(timeout=ClientTimeout(total=600)) as session:
                for s in order:
                    reads = _tag_reads(session, s, tags)
                    page_times, page_counts = await _timed_counted(reads.first, 5, log)
                    walk_times, walk_counts = await _timed_counted(reads.walk, 3, log)
                    one_times, one_counts = await _timed_counted(reads.whole, 3, log)
                    one[s.name] = _median(one_times)
                    cold[s.name] = page_times[0]
                    page[s.name] = _median(page_times)
                    whole[s.name] = _median(walk_times)
                    # The first round of each is cold (Angos's link cache holds nothing
                    # yet); the last shows what the cache spares.
                    for label, c in [
                        ("first page, round 1 of 5", page_counts[0]),
                        ("first page, round 5 of 5", page_counts[-1]),
                        ("whole walk, round 1 of 3", walk_counts[0]),
                        ("whole walk, round 3 of 3", walk_counts[-1]),
                        ("every tag in one response, round 3 of 3", one_counts[-1]),
                    ]:
                        requests.setdefault(label, {})[s.name] = c.total()
                    by_kind = [dict(c) for c in page_counts + walk_counts + one_counts]
                    print(f"{s.name} S3 requests per round: {by_kind}", file=sys.stderr)
        finally:
            for s in servers:
                s.stop()
    finally:
        moto.terminate()
        moto.wait(10)
    where = f"tags on S3 (moto), {count:,} tags"
    rows: list[Row] = [
        (
            f"{where}, seeding ({SEED_THREADS} threads of boto3 `put_object`)",
            "s",
            {"boto3": seeded},
        ),
        (f"{where}, first page `n=1000`", "s", page),
        (f"{where}, first page `n=1000`, round 1 of 5 (cold)", "s", cold),
        (f"{where}, whole walk `n=1000`", "s", whole),
        (f"{where}, every tag in one response (no `n`)", "s", one),
    ]
    rows += [(f"{where}, {label}", "S3 requests", v) for label, v in requests.items()]
    return rows


def _median(times: list[float]) -> float:
    return sorted(times)[len(times) // 2]


async def _timed_counted(
    run: Callable[[], Awaitable[object]], rounds: int, log: Path
) -> tuple[list[float], list[Counter[str]]]:
    """Each round's seconds, and the S3 requests each round made (read from moto's log
    between rounds, so reading it is not timed)."""
    times, counts = [], []
    _, offset = _s3_requests(log, 0)
    for _ in range(rounds):
        t0 = time.perf_counter()
        await run()
        times.append(time.perf_counter() - t0)
        # werkzeug logs a request before it writes the body: let the last lines land.
        await asyncio.sleep(0.1)
        counted, offset = _s3_requests(log, offset)
        counts.append(counted)
    return times, counts


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
    # 50,000 tags on moto take over 5 minutes to seed (about 5 ms of moto per PutObject).
    parser.add_argument("--s3-tags", default="10000", help="tag counts of the tags-s3 rows")
    parser.add_argument("--wrk-seconds", type=int, default=10)
    parser.add_argument("--only", default="catalog,tags,tags-s3,cache")
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
    if "tags-s3" in only:
        jobs += [("tags-s3", int(c)) for c in args.s3_tags.split(",") if c]
    if "cache" in only:
        jobs.append(("cache", args.wrk_seconds))
    for turn, (kind, size) in enumerate(jobs):
        work = Path(tempfile.mkdtemp(prefix="angos-bench-scale-", dir=args.workdir))
        try:
            if kind == "catalog":
                rows += await catalog_rows(size, work, turn)
            elif kind == "tags":
                rows += await tag_rows(size, work, turn)
            elif kind == "tags-s3":
                rows += await tag_s3_rows(size, work, turn)
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
            shown = f"{value:,.0f}" if unit in ("req/s", "S3 requests") else f"{value:.4f}"
            print(f"| {label} | {unit} | {name} | {shown} |")


if __name__ == "__main__":
    asyncio.run(main())
