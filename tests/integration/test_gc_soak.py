"""Soak: online garbage collection beside live pushes through three replicas (issue 13).

Three ``angos serve`` processes on one store (a shared fs root, or one moto bucket) with a
Redis lock provider and cache. Eight clients push on purpose what races a collection:

1. an image reusing an old blob of its own repository: ``HEAD``, and on 200 no upload
   (the old blob is often garbage: its image was deleted);
2. every upload: the blob is committed before its manifest links it;
3. an image whose layer is mounted from another client's repository (often garbage too);
4. an index whose children are pushed (by digest, untagged) before it;
5. a referrer pushed (by digest, untagged) before its subject;

and delete images, which makes garbage. Meanwhile ``angos gc --delete-untagged`` runs in a
loop on the same config. Afterwards, with the load stopped and one last collection:

- every acknowledged image that was not deleted pulls byte-identical from every replica;
- the store holds exactly what those images reference: every object left unreferenced by
  the load (counted) was reclaimed, and nothing else was;
- no response was a 5xx, and every collection exited 0.

The load is bounded in time and count (``LOAD_SECS``, ``UNITS_PER_CLIENT``).

Control: ``ANGOS_GC_SOAK_CONTROL=1`` starts the replicas with the writers' side of the
protocol switched off (no marks, no waiting on tombstones; :data:`UNPROTECT`, loaded as a
``sitecustomize`` module) and the same test must fail: acknowledged images lose objects.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest

from angos_core import layout
from angos_core.config import load_config
from angos_core.oci import mediatypes as mt
from angos_core.plugins import load_catalogue
from angos_core.registry.stores import Stores
from tests.integration.test_multi_replica import (
    OCI_CONFIG,
    OCI_LAYER,
    Client,
    UnexpectedStatus,
    _path,
    _with_digest,
    redis_tables,
    sha256,
)
from tests.support.angos_server import AngosServer, AngosServerFactory, angos_command

pytestmark = [pytest.mark.heavy, pytest.mark.timeout(420)]

REPLICAS = 3
CLIENTS = 8
#: Load bound: whichever comes first, per client.
LOAD_SECS = 50.0
UNITS_PER_CLIENT = 60
#: The collector's minimum age: what a push in flight relies on (an index's children, a
#: referrer before its subject, a committed blob before its manifest). Garbage older than
#: this, reused by a HEAD or a mount, is kept by the marks and tombstones alone.
MIN_AGE_SECS = 3
#: A clean refusal (a blob or child the collector took between the client's check and its
#: manifest) is answered by pushing again; after this many the unit is given up.
ATTEMPTS = 4
CONTROL = os.environ.get("ANGOS_GC_SOAK_CONTROL") == "1"

#: Loaded by every replica of the control run: the writers' side switched off, as the
#: ``unprotected`` fixture of tests/ops/test_gc_online.py does in-process.
UNPROTECT = """
from contextlib import asynccontextmanager

from angos_core.registry.references import References


async def _nothing(self, *args, **kw):
    return None


@asynccontextmanager
async def _no_marks(self, digests):
    yield


References.referencing = _no_marks
References.mark_recent = _nothing
References.head = _nothing
"""

OCI_INDEX = mt.OCI_INDEX


# --------------------------------------------------------------------------- images


@dataclass
class Unit:
    """What one push makes: manifests (digest -> (media type, body)) in push order, the
    last of them tagged, and the blobs they reference."""

    repo: str
    tag: str
    manifests: list[tuple[str, str, bytes]]
    blobs: dict[str, bytes]
    #: Blobs the client does not upload if the registry has them (races 1 and 3).
    reused: dict[str, str] = field(default_factory=dict)  # digest -> "head" | "mount:<repo>"

    @property
    def top(self) -> str:
        return self.manifests[-1][0]

    def digests(self) -> set[str]:
        return {d for d, _, _ in self.manifests} | set(self.blobs)


def _config(label: str) -> bytes:
    return json.dumps({"architecture": "amd64", "os": "linux", "label": label}).encode()


def _image(config: bytes, layers: list[bytes], **extra: object) -> bytes:
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": mt.OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": sha256(config), "size": len(config)},
            "layers": [
                {"mediaType": OCI_LAYER, "digest": sha256(x), "size": len(x)} for x in layers
            ],
            **extra,
        }
    ).encode()


# --------------------------------------------------------------------------- ledger


@dataclass
class Ledger:
    acknowledged: dict[str, Unit] = field(default_factory=dict)  # by tag
    deleted: set[str] = field(default_factory=set)  # tags
    #: Every object any push stored, or may have (a given-up unit's parts).
    written: set[str] = field(default_factory=set)
    #: (repo, digest, bytes) of every blob pushed: what races 1 and 3 reuse.
    blob_pool: list[tuple[str, str, bytes]] = field(default_factory=list)
    refusals: int = 0
    given_up: int = 0
    heads_skipped: int = 0
    mounts: int = 0
    units: int = 0

    def live(self) -> list[Unit]:
        return [u for t, u in self.acknowledged.items() if t not in self.deleted]


# --------------------------------------------------------------------------- clients


class Pusher:
    def __init__(self, client: Client, ledger: Ledger, k: int, rng: random.Random) -> None:
        self.client, self.ledger, self.k, self.rng = client, ledger, k, rng
        self.repo = f"soak/c{k}"
        self.turn = k

    def _next(self) -> int:
        self.turn += 1
        return self.turn

    async def has_blob(self, repo: str, digest: str) -> bool:
        status, _, _ = await self.client.request(
            "HEAD", self._next(), f"/v2/{repo}/blobs/{digest}", {200, 404}
        )
        return status == 200

    async def upload(self, data: bytes) -> None:
        t = self._next()
        await self.client.upload_blob(self.repo, data, (t, t + 1, t + 2), chunked=False)

    async def mount(self, digest: str, source: str, data: bytes) -> bool:
        """Race 3: True if mounted (201); on 202 the upload the server opened is finished."""
        status, headers, _ = await self.client.request(
            "POST",
            self._next(),
            f"/v2/{self.repo}/blobs/uploads/?mount={digest}&from={source}",
            {201, 202},
        )
        if status == 201:
            return True
        location = _with_digest(_path(headers["Location"]), digest)
        octets = {"Content-Type": "application/octet-stream"}
        await self.client.request("PUT", self._next(), location, {201}, data=data, headers=octets)
        return False

    def make_unit(self, i: int) -> Unit:
        rng, tag = self.rng, f"u{self.k}-{i}"
        own = rng.randbytes(rng.randint(256, 2048))
        config = _config(f"{self.repo}:{tag}")
        blobs = {sha256(config): config, sha256(own): own}
        reused: dict[str, str] = {}
        layers = [own]
        kind = i % 4
        mine = [p for p in self.ledger.blob_pool if p[0] == self.repo]
        theirs = [p for p in self.ledger.blob_pool if p[0] != self.repo]
        if kind in (0, 1) and mine:  # race 1
            _, digest, data = rng.choice(mine)
            if digest not in blobs:
                blobs[digest], reused[digest] = data, "head"
                layers.append(data)
        if kind in (0, 2) and theirs:  # race 3
            source, digest, data = rng.choice(theirs)
            if digest not in blobs:
                blobs[digest], reused[digest] = data, f"mount:{source}"
                layers.append(data)
        if kind == 2:  # race 4: children, then the index
            other = rng.randbytes(rng.randint(256, 1024))
            config2 = _config(f"{self.repo}:{tag}:arm64")
            blobs[sha256(other)], blobs[sha256(config2)] = other, config2
            child1, child2 = _image(config, layers), _image(config2, [other])
            index = json.dumps(
                {
                    "schemaVersion": 2,
                    "mediaType": OCI_INDEX,
                    "manifests": [
                        {"mediaType": mt.OCI_MANIFEST, "digest": sha256(c), "size": len(c)}
                        for c in (child1, child2)
                    ],
                }
            ).encode()
            manifests = [
                (sha256(child1), mt.OCI_MANIFEST, child1),
                (sha256(child2), mt.OCI_MANIFEST, child2),
                (sha256(index), OCI_INDEX, index),
            ]
        elif kind == 3:  # race 5: the referrer, then its subject
            subject = _image(config, layers)
            note = rng.randbytes(200)
            rconfig = _config(f"{self.repo}:{tag}:signature")
            blobs[sha256(note)], blobs[sha256(rconfig)] = note, rconfig
            referrer = _image(
                rconfig,
                [note],
                subject={
                    "mediaType": mt.OCI_MANIFEST,
                    "digest": sha256(subject),
                    "size": len(subject),
                },
            )
            manifests = [
                (sha256(referrer), mt.OCI_MANIFEST, referrer),
                (sha256(subject), mt.OCI_MANIFEST, subject),
            ]
        else:
            body = _image(config, layers)
            manifests = [(sha256(body), mt.OCI_MANIFEST, body)]
        return Unit(self.repo, tag, manifests, blobs, reused)

    async def push_blobs(self, unit: Unit, first: bool) -> None:
        for digest, data in unit.blobs.items():
            how = unit.reused.get(digest) if first else None
            if how == "head" or not first:
                # HEAD-then-skip (race 1); on a retry, every blob is checked this way.
                if await self.has_blob(self.repo, digest):
                    self.ledger.heads_skipped += how == "head"
                    continue
            elif how is not None:
                if await self.mount(digest, how.removeprefix("mount:"), data):
                    self.ledger.mounts += 1
                continue
            await self.upload(data)

    async def push_unit(self, unit: Unit) -> bool:
        self.ledger.written |= set(unit.blobs)
        for attempt in range(ATTEMPTS):
            await self.push_blobs(unit, first=attempt == 0)
            try:
                for n, (digest, media_type, body) in enumerate(unit.manifests):
                    ref = unit.tag if n == len(unit.manifests) - 1 else digest
                    self.ledger.written.add(digest)
                    await self.client.request(
                        "PUT",
                        self._next(),
                        f"/v2/{self.repo}/manifests/{ref}",
                        {201},
                        data=body,
                        headers={"Content-Type": media_type},
                    )
            except UnexpectedStatus as exc:
                # A blob or a child the collector reclaimed before the manifest came: the
                # registry refuses cleanly (400); push again.
                if " 400 " not in str(exc) or not re.search(r"(BLOB|MANIFEST)_UNKNOWN", str(exc)):
                    raise
                self.ledger.refusals += 1
                continue
            self.ledger.acknowledged[unit.tag] = unit
            for digest, data in unit.blobs.items():
                self.ledger.blob_pool.append((self.repo, digest, data))
            return True
        self.ledger.given_up += 1
        await self.client.request(
            "DELETE", self._next(), f"/v2/{self.repo}/manifests/{unit.tag}", {202, 404}
        )
        return False

    async def delete_one(self) -> None:
        mine = [u for u in self.ledger.live() if u.repo == self.repo]
        if not mine:
            return
        unit = self.rng.choice(mine)
        self.ledger.deleted.add(unit.tag)
        await self.client.request(
            "DELETE", self._next(), f"/v2/{self.repo}/manifests/{unit.top}", {202}
        )

    async def run(self, until: float) -> None:
        for i in range(UNITS_PER_CLIENT):
            if time.monotonic() > until:
                return
            self.ledger.units += 1
            await self.push_unit(self.make_unit(i))
            if self.rng.random() < 0.45:
                await self.delete_one()


# --------------------------------------------------------------------------- collector


@dataclass
class GcLoop:
    config: Path
    env: dict[str, str]
    runs: int = 0
    failures: list[str] = field(default_factory=list)
    deleted: dict[str, int] = field(
        default_factory=lambda: {"manifests": 0, "blobs": 0, "bodies": 0, "links": 0}
    )

    async def once(self, *, min_age: int = MIN_AGE_SECS) -> str:
        proc = await asyncio.create_subprocess_exec(
            *angos_command(), "gc", "-c", str(self.config), "--delete-untagged",
            "--min-age-secs", str(min_age),
            env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        out, err = await proc.communicate()
        self.runs += 1
        text = out.decode()
        if proc.returncode != 0:
            self.failures.append(f"exit {proc.returncode}: {err.decode()[-600:]}{text[-300:]}")
            return text
        summary = text.strip().splitlines()[-1]
        found = re.search(
            r"deleted (\d+) untagged manifests, (\d+) blobs, (\d+) manifest bodies, "
            r"(\d+) layer links",
            summary,
        )
        assert found, summary
        for key, value in zip(self.deleted, found.groups(), strict=True):
            self.deleted[key] += int(value)
        return summary

    async def loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self.once()


# --------------------------------------------------------------------------- store


async def stored_objects(config: Path) -> set[str]:
    """Every blob and manifest body in the store, read directly."""
    stores = Stores.from_config(load_config(config, load_catalogue()))
    await stores.open()
    try:
        found = {d async for d in stores.blobs.list_digests()}
        meta, prefix = stores.meta, layout.blobs_prefix()
        for alg in await meta.list_children(prefix):
            for fanout in await meta.list_children(f"{prefix}{alg}/"):
                for hexpart in await meta.list_children(f"{prefix}{alg}/{fanout}/"):
                    if await meta.get(layout.blob_data_key(f"{alg}:{hexpart}")) is not None:
                        found.add(f"{alg}:{hexpart}")
        return found
    finally:
        await stores.aclose()


# --------------------------------------------------------------------------- test


@pytest.fixture(params=["fs", "s3"])
def replicas(
    request: pytest.FixtureRequest,
    angos_server_factory: AngosServerFactory,
    redis_url: str,
    tmp_path: Path,
) -> list[AngosServer]:
    store: str = request.param
    if store == "fs":
        storage = f'[blob_store.fs]\nroot_dir = "{tmp_path / "shared-root"}"\n'
    else:
        storage = request.getfixturevalue("s3_bucket").toml("blob_store")
    env: dict[str, str] = {}
    if CONTROL:
        hook = tmp_path / "unprotected"
        hook.mkdir()
        (hook / "sitecustomize.py").write_text(UNPROTECT)
        env["PYTHONPATH"] = os.pathsep.join(
            [str(hook), *filter(None, [os.environ.get("PYTHONPATH")])]
        )
    toml = storage + redis_tables(store, redis_url)
    return [angos_server_factory(toml, env=env) for _ in range(REPLICAS)]


@pytest.fixture
async def client(replicas: list[AngosServer]) -> AsyncIterator[Client]:
    connector = aiohttp.TCPConnector(limit=64)
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        yield Client(session, [r.url for r in replicas])


async def verify(client: Client, unit: Unit) -> list[str]:
    """Pull ``unit`` from every replica; what differs or is missing."""
    lost: list[str] = []
    accept = {"Accept": f"{mt.OCI_MANIFEST}, {OCI_INDEX}"}
    for replica in range(REPLICAS):
        for n, (digest, _, body) in enumerate(unit.manifests):
            ref = unit.tag if n == len(unit.manifests) - 1 else digest
            status, _, got = await client.request(
                "GET", replica, f"/v2/{unit.repo}/manifests/{ref}", {200, 404}, headers=accept
            )
            if status != 200 or got != body:
                lost.append(f"{unit.repo}:{ref} manifest {digest} -> {status}")
        for digest, data in unit.blobs.items():
            status, _, got = await client.request(
                "GET", replica, f"/v2/{unit.repo}/blobs/{digest}", {200, 404}
            )
            if status != 200 or got != data:
                lost.append(f"{unit.repo}:{unit.tag} blob {digest} -> {status}")
    return lost


async def test_gc_loop_beside_eight_pushing_clients_loses_nothing_and_reclaims_garbage(
    client: Client, replicas: list[AngosServer]
) -> None:
    config = replicas[0].config_path
    gc = GcLoop(config, dict(os.environ))
    ledger = Ledger()
    stop = asyncio.Event()
    load_started = time.monotonic()
    collector = asyncio.create_task(gc.loop(stop))
    pushers = [Pusher(client, ledger, k, random.Random(1300 + k)) for k in range(CLIENTS)]
    until = load_started + LOAD_SECS
    results = await asyncio.gather(*(p.run(until) for p in pushers), return_exceptions=True)
    stop.set()
    await collector
    load_secs = time.monotonic() - load_started
    load_runs = gc.runs
    errors = [r for r in results if isinstance(r, BaseException)]

    # No writer left: the last collection, once the minimum age has passed, takes all the
    # garbage; a second one must find none.
    await asyncio.sleep(MIN_AGE_SECS + 1)
    await gc.once()
    last = await gc.once()

    live = ledger.live()
    lost: list[str] = []
    for unit in live:
        lost += await verify(client, unit)
    expected = set().union(*(u.digests() for u in live)) if live else set()
    stored = await stored_objects(config)
    garbage = ledger.written - expected
    left = stored & garbage
    missing = expected - stored
    report = (
        f"{'CONTROL (protection off)' if CONTROL else 'protected'}: {ledger.units} units pushed, "
        f"{len(ledger.acknowledged)} acknowledged, {len(ledger.deleted)} deleted, "
        f"{len(live)} kept; {ledger.heads_skipped} HEAD-then-skip, {ledger.mounts} mounts, "
        f"{ledger.refusals} clean refusals, {ledger.given_up} given up; "
        f"lost: {len(lost)} pulls of {sum(1 for u in live if any(u.tag in x for x in lost))} "
        f"images, {len(missing)} objects; garbage: {len(garbage)} objects left unreferenced, "
        f"{len(garbage - stored)} reclaimed, {len(left)} left; gc: {load_runs} runs during "
        f"{load_secs:.0f}s of load, deleted {gc.deleted}; {client.total} requests, "
        f"{len(client.server_errors)} 5xx; load average {os.getloadavg()}"
    )
    print(report, file=sys.stderr)
    assert not errors, f"{errors[:3]}\n{report}"
    assert not client.server_errors, f"{client.server_errors[:3]}\n{report}"
    assert not gc.failures, f"{gc.failures[:3]}\n{report}"
    assert load_runs >= 1, report
    assert not lost and not missing, f"{lost[:5]} {sorted(missing)[:5]}\n{report}"
    assert garbage and not left, f"{sorted(left)[:5]}\n{report}"
    assert stored == expected, f"{sorted(stored - expected)[:5]}\n{report}"
    assert "deleted 0 untagged manifests, 0 blobs, 0 manifest bodies" in last, last
