"""A manifest listing thousands of descriptors is checked without stalling the loop, and
one listing more than ``[global] max_manifest_descriptors`` is refused (issue 10, #1)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from pathlib import Path

import pytest

from angos_core import layout
from angos_core.oci import mediatypes as mt
from tests.support.api import OCI_CONFIG, OCI_LAYER, Api, descriptor, error_code
from tests.support.storage import Storage

#: The loop and the limit are the same whatever the store: one shape is enough.
pytestmark = pytest.mark.shapes("fs")

CONFIG = b'{"architecture":"amd64","os":"linux"}'


def layers(count: int) -> list[dict[str, object]]:
    return [
        {
            "mediaType": OCI_LAYER,
            "digest": "sha256:" + hashlib.sha256(str(i).encode()).hexdigest(),
            "size": 1,
        }
        for i in range(count)
    ]


def manifest(listed: list[dict[str, object]]) -> bytes:
    doc = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "config": descriptor(CONFIG, OCI_CONFIG),
        "layers": listed,
    }
    return json.dumps(doc, separators=(",", ":")).encode()


async def link_layers(api: Api, root: Path, name: str, listed: list[dict[str, object]]) -> None:
    """Make every listed layer present in ``name``: its link, and its bytes written straight
    into the fs tree (the check reads both; an upload per layer would take minutes)."""
    await api.push_blob(name, CONFIG)
    for i, d in enumerate(listed):
        path = root / layout.blob_data_key(str(d["digest"]))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(str(i).encode())
    gate = asyncio.Semaphore(16)

    async def link(digest: str) -> None:
        async with gate:
            await api.registry.links.put_layer(name, digest)

    await asyncio.gather(*(link(str(d["digest"])) for d in listed))


async def test_base_endpoint_answers_while_a_large_manifest_is_checked(storage: Storage) -> None:
    count = 5000
    async with storage.open_api() as api:
        listed = layers(count)
        await link_layers(api, storage.root, "big", listed)
        body = manifest(listed)

        gaps: list[float] = []
        stop = asyncio.Event()

        async def probe() -> None:
            while not stop.is_set():
                start = time.perf_counter()
                resp = await api.get("/v2/")
                assert resp.status == 200
                await resp.read()
                gaps.append(time.perf_counter() - start)
                await asyncio.sleep(0.005)

        prober = asyncio.create_task(probe())
        await asyncio.sleep(0.05)  # the probe is running before the push starts
        start = time.perf_counter()
        resp = await api.put_manifest("big", "wide", body)
        took = time.perf_counter() - start
        stop.set()
        await prober
        assert resp.status == 201, await resp.text()

        # A blocked loop shows as one answer taking a large share of the whole check (the
        # old one task per descriptor: about a fifth), so few answers during it.
        print(f"check {took:.2f}s, {len(gaps)} answers, slowest {max(gaps) * 1000:.1f}ms")
        assert max(gaps) < took / 10, (max(gaps), took)
        assert len(gaps) >= 10, (len(gaps), took)


async def test_more_descriptors_than_the_limit_is_manifest_invalid(storage: Storage) -> None:
    async with storage.open_api("[global]\nmax_manifest_descriptors = 3\n") as api:
        listed = layers(3)
        await link_layers(api, storage.root, "lib/app", listed)
        # config + 3 layers = 4 descriptors
        resp = await api.put_manifest("lib/app", "v1", manifest(listed))
        assert resp.status == 400
        assert await error_code(resp) == "MANIFEST_INVALID"
        error = (await resp.json())["errors"][0]
        assert "max_manifest_descriptors" in error["message"]
        assert error["detail"] == {"descriptors": 4, "limit": 3}
        assert (await api.get("/v2/lib/app/manifests/v1")).status == 404

        resp = await api.put_manifest("lib/app", "v1", manifest(listed[:2]))
        assert resp.status == 201, await resp.text()


async def test_default_limit_refuses_the_38000_descriptor_manifest(storage: Storage) -> None:
    async with storage.open_api() as api:
        listed = [{**d, "mediaType": "a/b"} for d in layers(36000)]
        body = manifest(listed)
        assert len(body) < 4 * 1024 * 1024  # under max_manifest_size: only the count refuses
        resp = await api.put_manifest("big", "v1", body)
        assert resp.status == 400
        assert await error_code(resp) == "MANIFEST_INVALID"
        assert (await resp.json())["errors"][0]["detail"]["limit"] == 10000


async def test_a_missing_blob_among_many_is_found_and_named(storage: Storage) -> None:
    async with storage.open_api() as api:
        listed = layers(200)
        await link_layers(api, storage.root, "lib/app", listed[:150] + listed[151:])
        # Listed twice: each distinct digest is checked once, the answer is the same.
        resp = await api.put_manifest("lib/app", "v1", manifest(listed + listed))
        assert resp.status == 400
        assert await error_code(resp) == "MANIFEST_BLOB_UNKNOWN"
        assert (await resp.json())["errors"][0]["detail"] == {"digest": listed[150]["digest"]}
