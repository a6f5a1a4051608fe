"""Three ``angos serve`` replicas sharing one store and one Redis (lock provider and cache).

Each test runs twice: replicas sharing (a) one filesystem root and (b) one S3 bucket on a
moto server. Requests go to the replicas in turn, as a load balancer would send them:

* hundreds of concurrent pushes, most of them to the same few tags, with concurrent tag
  deletes and re-pushes; afterwards every tag resolves on every replica to a manifest that
  was pushed, whose blobs are all there, and no request got a 5xx;
* one upload started on replica 1, continued with PATCH on replica 2, finished on 3;
* a tag moved (or deleted) through one replica is served as such by the others at once.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest
import redis.asyncio as aioredis

from angos_core.plugins import Kind, load_catalogue
from tests.support.angos_server import AngosServer, AngosServerFactory
from tests.support.tools import IN_CI

pytestmark = pytest.mark.timeout(540)

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
REPLICAS = 3
LOCK_PREFIX = "mr-locks"
CACHE_PREFIX = "mr-cache"


# --------------------------------------------------------------------------- deployment


def redis_tables(store: str, redis_url: str) -> str:
    # Many clients push to the same repository at once here, and a repository's writes take
    # turns under its lock; on a loaded test machine a turn on moto can take a second. Give
    # waiters room (two minutes) rather than the default second: the test is about
    # correctness, not a latency budget.
    return f"""
[metadata_store.{store}.redis]
url = "{redis_url}"
ttl = 10
key_prefix = "{LOCK_PREFIX}"
max_retries = 6000
retry_delay_ms = 20

[cache.redis]
url = "{redis_url}"
key_prefix = "{CACHE_PREFIX}"
"""


def _require_backend(store: str) -> None:
    catalogue = load_catalogue()
    kinds: tuple[Kind, ...] = ("blob_store", "lock_provider", "cache")
    for kind in kinds:
        name = store if kind == "blob_store" else "redis"
        if not catalogue.has(kind, name):
            message = f"{kind} {name!r} is not installed (pip install -e plugins/angos-{name})"
            if IN_CI:
                pytest.fail(message)
            pytest.skip(message)


@pytest.fixture(params=["fs", "s3"])
def deployment_toml(
    request: pytest.FixtureRequest, redis_url: str, tmp_path: Path
) -> Iterator[str]:
    """The one config every replica runs: shared storage plus Redis locks and cache."""
    store: str = request.param
    _require_backend(store)
    if store == "fs":
        yield f'[blob_store.fs]\nroot_dir = "{tmp_path / "shared-root"}"\n' + redis_tables(
            "fs", redis_url
        )
    else:
        bucket = request.getfixturevalue("s3_bucket")
        yield bucket.toml("blob_store") + redis_tables("s3", redis_url)


@pytest.fixture
def replicas(angos_server_factory: AngosServerFactory, deployment_toml: str) -> list[AngosServer]:
    return [angos_server_factory(deployment_toml) for _ in range(REPLICAS)]


# --------------------------------------------------------------------------- images


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Image:
    manifest: bytes
    digest: str
    blobs: dict[str, bytes]  # digest -> bytes: config first, then layers


def make_image(rng: random.Random, label: str, shared_layer: bytes) -> Image:
    """A small image: a config unique to ``label`` and one or two layers.

    The layer is either one many images share (so several clients upload the same blob at
    once) or one of its own; one image in four has both.
    """
    own_layer = rng.randbytes(rng.randint(512, 3072))
    choice = rng.randrange(4)
    layers = [[shared_layer], [own_layer], [shared_layer], [shared_layer, own_layer]][choice]
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Labels": {"push": label}},
            "rootfs": {"type": "layers", "diff_ids": [sha256(x) for x in layers]},
        },
        sort_keys=True,
    ).encode()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": sha256(config), "size": len(config)},
            "layers": [
                {"mediaType": OCI_LAYER, "digest": sha256(x), "size": len(x)} for x in layers
            ],
        },
        indent=2,
    ).encode()
    blobs = {sha256(config): config, **{sha256(x): x for x in layers}}
    return Image(manifest, sha256(manifest), blobs)


# --------------------------------------------------------------------------- client


class UnexpectedStatus(AssertionError):
    pass


@dataclass
class Client:
    """HTTP to the replicas; counts every answer and keeps every 5xx."""

    session: aiohttp.ClientSession
    urls: list[str]
    statuses: Counter[tuple[str, str, int]] = field(default_factory=Counter)
    server_errors: list[str] = field(default_factory=list)

    async def request(
        self,
        method: str,
        replica: int,
        path: str,
        expect: set[int],
        *,
        data: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any, bytes]:
        url = self.urls[replica % len(self.urls)] + path
        async with self.session.request(method, url, data=data, headers=headers) as resp:
            body = await resp.read()
            status, resp_headers = resp.status, resp.headers
        kind = path.split("/")[-2] if "/blobs/uploads/" not in path else "uploads"
        self.statuses[(method, kind, status)] += 1
        if status >= 500:
            self.server_errors.append(f"{method} {url} -> {status} {body[:300]!r}")
        if status not in expect:
            raise UnexpectedStatus(
                f"{method} {url} -> {status} (expected {expect}): {body[:300]!r}"
            )
        return status, resp_headers, body

    @property
    def total(self) -> int:
        return sum(self.statuses.values())

    def by_status(self) -> dict[int, int]:
        counts: Counter[int] = Counter()
        for (_, _, status), n in self.statuses.items():
            counts[status] += n
        return dict(sorted(counts.items()))

    async def upload_blob(
        self, name: str, data: bytes, replicas: tuple[int, int, int], *, chunked: bool
    ) -> str:
        """POST on the first replica; PUT (after a PATCH on the second, if chunked) next."""
        digest = sha256(data)
        _, headers, _ = await self.request("POST", replicas[0], f"/v2/{name}/blobs/uploads/", {202})
        location = _path(headers["Location"])
        octets = {"Content-Type": "application/octet-stream"}
        if chunked:
            half = len(data) // 2
            _, headers, _ = await self.request(
                "PATCH",
                replicas[1],
                location,
                {202},
                data=data[:half],
                headers={**octets, "Content-Range": f"0-{half - 1}"},
            )
            location = _path(headers["Location"])
            rest, put_on = data[half:], replicas[2]
        else:
            rest, put_on = data, replicas[1]
        await self.request(
            "PUT", put_on, _with_digest(location, digest), {201}, data=rest, headers=octets
        )
        return digest

    async def push(self, name: str, tag: str, image: Image, turn: int) -> None:
        for i, data in enumerate(image.blobs.values()):
            replicas = (turn + i, turn + i + 1, turn + i + 2)
            await self.upload_blob(name, data, replicas, chunked=(turn + i) % 4 == 0)
        await self.request(
            "PUT",
            turn + 2,
            f"/v2/{name}/manifests/{tag}",
            {201},
            data=image.manifest,
            headers={"Content-Type": OCI_MANIFEST},
        )

    async def get_manifest(self, replica: int, name: str, ref: str, expect: set[int]) -> Any:
        return await self.request(
            "GET", replica, f"/v2/{name}/manifests/{ref}", expect, headers={"Accept": OCI_MANIFEST}
        )


def _path(location: str) -> str:
    parts = urlsplit(location)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def _with_digest(location: str, digest: str) -> str:
    return f"{location}{'&' if '?' in location else '?'}digest={digest}"


@pytest.fixture
async def client(replicas: list[AngosServer]) -> AsyncIterator[Client]:
    connector = aiohttp.TCPConnector(limit=64)
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        yield Client(session, [r.url for r in replicas])


# --------------------------------------------------------------------------- load


REPOS = ("mr/app", "mr/lib")
HOT_TAGS = ("latest", "stable", "v1")
#: Two thirds to the six hot tags, the rest to tags of their own; with the re-pushes, 212.
PUSHES = 180
IN_FLIGHT = 16


@dataclass
class Ledger:
    """What the clients tried, to judge what the registry answers afterwards."""

    attempted: dict[tuple[str, str], set[str]] = field(default_factory=lambda: defaultdict(set))
    images: dict[str, Image] = field(default_factory=dict)
    reads_checked: int = 0
    deletes: Counter[int] = field(default_factory=Counter)

    def record(self, name: str, tag: str, image: Image) -> None:
        # Before the PUT: a concurrent reader may see the manifest before the PUT returns.
        self.attempted[(name, tag)].add(image.digest)
        self.images[image.digest] = image


@pytest.mark.heavy
async def test_concurrent_pushes_tag_deletes_and_repushes(
    client: Client, replicas: list[AngosServer]
) -> None:
    rng = random.Random(20261128)
    shared_layers = [rng.randbytes(2048) for _ in range(4)]
    ledger = Ledger()
    gate = asyncio.Semaphore(IN_FLIGHT)
    unique_tags: list[tuple[str, str]] = []

    def new_image(label: str) -> Image:
        return make_image(rng, label, shared_layers[rng.randrange(len(shared_layers))])

    async def push(name: str, tag: str, turn: int) -> None:
        image = new_image(f"{name}:{tag}#{turn}")
        ledger.record(name, tag, image)
        await client.push(name, tag, image, turn)

    async def push_job(i: int) -> None:
        name = REPOS[i % 2]
        if i % 3:
            tag = HOT_TAGS[(i // 2) % len(HOT_TAGS)]
        else:
            tag = f"build-{i}"
            unique_tags.append((name, tag))
        async with gate:
            await push(name, tag, i)
            if i % 9 == 0:
                # Delete it through another replica, then push it again through a third.
                status, _, _ = await client.request(
                    "DELETE", i + 1, f"/v2/{name}/manifests/{tag}", {202}
                )
                ledger.deletes[status] += 1
                await push(name, tag, i + 2)

    async def delete_job(i: int) -> None:
        name, tag = REPOS[i % 2], HOT_TAGS[i % len(HOT_TAGS)]
        async with gate:
            # 404 when another delete got there first and no push came in between.
            status, _, _ = await client.request(
                "DELETE", i, f"/v2/{name}/manifests/{tag}", {202, 404}
            )
            ledger.deletes[status] += 1

    async def read_job(i: int) -> None:
        name, tag = REPOS[i % 2], HOT_TAGS[i % len(HOT_TAGS)]
        async with gate:
            status, headers, body = await client.get_manifest(i, name, tag, {200, 404})
        if status == 200:
            digest = headers["Docker-Content-Digest"]
            assert sha256(body) == digest
            assert digest in ledger.attempted[(name, tag)], f"{name}:{tag} -> unknown {digest}"
            ledger.reads_checked += 1

    jobs = (
        [push_job(i) for i in range(PUSHES)]
        + [delete_job(i) for i in range(30)]
        + [read_job(i) for i in range(60)]
    )
    rng.shuffle(jobs)
    started = time.monotonic()
    results = await asyncio.gather(*jobs, return_exceptions=True)
    errors = [r for r in results if isinstance(r, BaseException)]
    assert not client.server_errors, client.server_errors[:10]
    assert not errors, errors[:5]

    # Every hot tag is pushed once more, through two replicas at once, so every tag exists.
    repush = [
        push(name, tag, PUSHES + 2 * k + j)
        for k, (name, tag) in enumerate((n, t) for n in REPOS for t in HOT_TAGS)
        for j in range(2)
    ]
    await asyncio.gather(*repush)
    load_secs = time.monotonic() - started

    expected = {(n, t) for n in REPOS for t in HOT_TAGS} | set(unique_tags)
    checked = await verify_every_tag_on_every_replica(client, ledger, expected)

    assert not client.server_errors, client.server_errors[:10]
    pushes = PUSHES + len(repush) + sum(1 for i in range(0, PUSHES, 9))
    print(
        f"\n[multi-replica] {len(replicas)} replicas, {pushes} pushes, "
        f"{sum(ledger.deletes.values())} tag deletes {dict(ledger.deletes)}, "
        f"{ledger.reads_checked} tag reads under load checked, load {load_secs:.1f}s, "
        f"{checked} tag/replica resolutions verified, {client.total} requests, "
        f"5xx: {len(client.server_errors)}, statuses: {client.by_status()}"
    )


async def verify_every_tag_on_every_replica(
    client: Client, ledger: Ledger, expected: set[tuple[str, str]]
) -> int:
    """Each tag: the same pushed manifest on every replica, all its blobs present."""
    for name in REPOS:
        listed = [
            json.loads((await client.request("GET", r, f"/v2/{name}/tags/list", {200}))[2])
            for r in range(REPLICAS)
        ]
        want = sorted(t for n, t in expected if n == name)
        for answer in listed:
            assert sorted(answer["tags"]) == want, f"{name} tags differ: {answer['tags']}"

    blobs_seen: set[tuple[int, str, str]] = set()
    checked = 0
    for name, tag in sorted(expected):
        digests = set()
        for r in range(REPLICAS):
            _, headers, body = await client.get_manifest(r, name, tag, {200})
            digest = headers["Docker-Content-Digest"]
            assert sha256(body) == digest
            assert digest in ledger.attempted[(name, tag)], f"{name}:{tag} -> unknown {digest}"
            assert body == ledger.images[digest].manifest
            digests.add(digest)
            manifest = json.loads(body)
            for desc in [manifest["config"], *manifest["layers"]]:
                if (r, name, desc["digest"]) in blobs_seen:
                    continue
                blobs_seen.add((r, name, desc["digest"]))
                _, blob_headers, _ = await client.request(
                    "HEAD", r, f"/v2/{name}/blobs/{desc['digest']}", {200}
                )
                assert int(blob_headers["Content-Length"]) == desc["size"]
            checked += 1
        assert len(digests) == 1, f"replicas disagree on {name}:{tag}: {digests}"

    # Bytes, not just sizes, for one image per repository on every replica.
    for name in REPOS:
        _, headers, _ = await client.get_manifest(0, name, HOT_TAGS[0], {200})
        image = ledger.images[headers["Docker-Content-Digest"]]
        for r in range(REPLICAS):
            for digest, data in image.blobs.items():
                _, _, body = await client.request("GET", r, f"/v2/{name}/blobs/{digest}", {200})
                assert body == data
    return checked


# --------------------------------------------------------------------------- one upload


async def test_upload_started_patched_and_finished_on_different_replicas(
    client: Client,
) -> None:
    name = "mr/upload"
    data = random.Random(7).randbytes(3 * 1024 * 1024 + 123)
    digest = sha256(data)
    octets = {"Content-Type": "application/octet-stream"}
    first, second = data[: 1024 * 1024], data[1024 * 1024 : 2 * 1024 * 1024]

    _, headers, _ = await client.request("POST", 0, f"/v2/{name}/blobs/uploads/", {202})
    location = _path(headers["Location"])
    _, headers, _ = await client.request(
        "PATCH", 1, location, {202}, data=first, headers={**octets, "Content-Range": "0-1048575"}
    )
    location = _path(headers["Location"])
    # The third replica knows how far the upload got on the second.
    _, headers, _ = await client.request("GET", 2, location, {204})
    assert headers["Range"] == "0-1048575"
    # A chunk out of order is refused wherever it lands, and changes nothing.
    await client.request(
        "PATCH", 0, location, {416}, data=second, headers={**octets, "Content-Range": "5-1048580"}
    )
    _, headers, _ = await client.request(
        "PATCH",
        1,
        location,
        {202},
        data=second,
        headers={**octets, "Content-Range": "1048576-2097151"},
    )
    location = _path(headers["Location"])
    _, headers, _ = await client.request(
        "PUT",
        2,
        _with_digest(location, digest),
        {201},
        data=data[2 * 1024 * 1024 :],
        headers=octets,
    )
    assert headers["Docker-Content-Digest"] == digest

    for r in range(REPLICAS):
        _, _, body = await client.request("GET", r, f"/v2/{name}/blobs/{digest}", {200})
        assert body == data
    # The session is gone everywhere once the blob is committed.
    for r in range(REPLICAS):
        await client.request("GET", r, location, {404})
    assert not client.server_errors


# --------------------------------------------------------------------------- tag moves


async def test_a_moved_tag_is_served_new_by_every_replica_at_once(
    client: Client, redis_url: str
) -> None:
    name, tag = "mr/moving", "current"
    rng = random.Random(11)
    shared = rng.randbytes(1024)
    raw = aioredis.Redis.from_url(redis_url)
    try:
        previous: str | None = None
        for turn in range(9):
            image = make_image(rng, f"move-{turn}", shared)
            writer = turn % REPLICAS
            await client.push(name, tag, image, writer)
            # Every replica, the writer last: the others must not answer from a cache.
            for r in [*(x for x in range(REPLICAS) if x != writer), writer]:
                _, headers, body = await client.get_manifest(r, name, tag, {200})
                assert headers["Docker-Content-Digest"] == image.digest, (
                    f"replica {r} still serves {headers['Docker-Content-Digest']} "
                    f"(previous {previous}) after the tag moved on replica {writer}"
                )
                assert body == image.manifest
                _, head_headers, _ = await client.request(
                    "HEAD", r, f"/v2/{name}/manifests/{tag}", {200}
                )
                assert head_headers["Docker-Content-Digest"] == image.digest
            previous = image.digest
        # The replicas really share the Redis cache (else this test would prove little).
        assert [k async for k in raw.scan_iter(f"{CACHE_PREFIX}:*")], "nothing cached in Redis"

        await client.request("DELETE", 1, f"/v2/{name}/manifests/{tag}", {202})
        for r in (2, 0, 1):
            await client.get_manifest(r, name, tag, {404})
        # The manifest itself is still there by digest; only the tag went.
        assert previous is not None
        await client.get_manifest(0, name, previous, {200})
    finally:
        await raw.aclose()
    assert not client.server_errors
